//! A table keeps the log layout its items were written with. The first function to start on a
//! table records its log shards: 256 for a new table; 128 for one that already holds accounts
//! (written by the version that spread an account's log over 128 keys and recorded nothing).
//! Either way, what a deployment stored stays listed and found after an upgrade.

use aws_sdk_dynamodb::types::AttributeValue;
use hookline_aws::table::{
    LAYOUT_KEY, LOG_SHARDS, LOG_SHARDS_BEFORE_LAYOUT, PK, SK, log_shard, log_shards_of,
};
use hookline_aws::{DynamoStore, SweepRetries};
use hookline_http::ReqwestSender;
use hookline_service::ports::DeliveryQuery;
use hookline_service::publish::NewEvent;
use hookline_service::sealed_store::SealedStore;
use hookline_service::webhooks::NewWebhook;
use hookline_service::{Ports, Service, ServiceError, SystemClock};
use std::sync::Arc;

mod common;
use common::{LambdaBase, deliver_message, lambda_base, lambda_config};
use hookline_model::DeliveryStatus;

fn service(base: &LambdaBase, store: DynamoStore) -> Service {
    let config = lambda_config();
    Service::new(
        Ports {
            store: Arc::new(SealedStore::new(
                Arc::new(store),
                Arc::new(base.ring.clone()),
            )),
            queue: Arc::new(base.queue.clone()),
            scheduler: Arc::new(SweepRetries),
            clock: Arc::new(SystemClock),
            sender: Arc::new(ReqwestSender::from_config(&config).unwrap()),
        },
        config,
    )
}

/// An account with one webhook and events published to it until the newest delivery's key
/// differs between the two layouts (half of them do): (account, webhook, deliveries, that one).
async fn deliveries(service: &Service) -> (String, String, Vec<String>, String) {
    let account = service
        .create_account("Layout Clinic")
        .await
        .unwrap()
        .account
        .id;
    let webhook = service
        .create_webhook(
            &account,
            NewWebhook {
                url: "http://127.0.0.1:9/hook".into(),
                event_type: Some("reading.weight".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .id;
    for _ in 0..32 {
        service
            .publish(NewEvent {
                account_id: account.clone(),
                event_type: "reading.weight".into(),
                payload: serde_json::value::to_raw_value(&serde_json::json!({"kg": 81.5})).unwrap(),
                id: None,
            })
            .await
            .unwrap();
        let ids = logged(service, &account, None).await;
        let newest = ids[0].clone();
        if log_shard(&newest, LOG_SHARDS) != log_shard(&newest, LOG_SHARDS_BEFORE_LAYOUT) {
            return (account, webhook, ids, newest);
        }
    }
    panic!("32 deliveries in a row kept their shard in both layouts");
}

/// The delivery ids of the account's log (of one webhook's), newest first.
async fn logged(service: &Service, account: &str, webhook: Option<&str>) -> Vec<String> {
    let query = DeliveryQuery {
        size: 100,
        webhook_id: webhook.map(String::from),
        ..Default::default()
    };
    let page = service.list_logs(account, query).await.unwrap();
    page.items.into_iter().map(|(d, _)| d.id).collect()
}

/// Every delivery is in the account's log, in its webhook's log, and found by its id.
async fn assert_found(service: &Service, account: &str, webhook: &str, deliveries: &[String]) {
    assert_eq!(logged(service, account, None).await, deliveries);
    assert_eq!(logged(service, account, Some(webhook)).await, deliveries);
    for delivery in deliveries {
        let (found, payload) = service.get_log(account, delivery).await.unwrap();
        assert_eq!(found.webhook_id, webhook);
        assert!(payload.unwrap().contains("81.5"));
    }
}

#[tokio::test]
async fn a_new_table_records_256_log_shards_and_keeps_them() {
    // lambda_base builds the store as the functions do, which records the layout.
    let base = lambda_base("layout-new").await;
    assert_eq!(base.counted.log_shards(), LOG_SHARDS);
    let service = service(&base, base.counted.clone());
    let (account, webhook, deliveries, _) = deliveries(&service).await;
    // The table now has an account, and the recorded layout still holds.
    assert_eq!(
        log_shards_of(&base.dynamodb, &base.table).await.unwrap(),
        LOG_SHARDS
    );
    assert_found(&service, &account, &webhook, &deliveries).await;
}

#[tokio::test]
async fn a_table_from_before_the_layout_keeps_128_log_shards_and_its_deliveries() {
    let base = lambda_base("layout-old").await;
    // The table as the earlier version left it: no layout item, its items under 128 keys.
    base.dynamodb
        .delete_item()
        .table_name(&base.table)
        .key(PK, AttributeValue::S(LAYOUT_KEY.into()))
        .key(SK, AttributeValue::S(LAYOUT_KEY.into()))
        .send()
        .await
        .unwrap();
    let earlier = service(
        &base,
        base.counted
            .clone()
            .with_log_shards(LOG_SHARDS_BEFORE_LAYOUT),
    );
    let (account, webhook, deliveries, moved) = deliveries(&earlier).await;

    // The upgraded functions start on it.
    let upgraded = hookline_aws::env::lambda_store(
        base.dynamodb.clone(),
        base.table.clone(),
        &lambda_config(),
    )
    .await
    .unwrap();
    assert_eq!(upgraded.log_shards(), LOG_SHARDS_BEFORE_LAYOUT);
    // The stream function reads the layout as well (it completes planned fan-outs under the
    // keys publish used).
    let upgraded_stream = upgraded.clone();
    let upgraded = service(&base, upgraded);
    assert_found(&upgraded, &account, &webhook, &deliveries).await;

    // The upgraded deliver function attempts them (nothing listens on port 9): each failed
    // attempt is recorded on the delivery and in the `retrying` index under the old keys.
    let mut base = base;
    base.stream
        .pump(&upgraded_stream, Some(&base.queue), 1000)
        .await
        .unwrap();
    let mut attempted = 0;
    while attempted < deliveries.len() {
        let received = base
            .sqs
            .receive_message()
            .queue_url(&base.queue_url)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap();
        let messages = received.messages.unwrap_or_default();
        assert!(
            !messages.is_empty(),
            "{attempted} of {} jobs queued",
            deliveries.len()
        );
        for message in &messages {
            // Up to ten jobs to a message.
            attempted += hookline_aws::sqs::jobs_of_body(message.body().unwrap())
                .unwrap()
                .len();
            deliver_message(&upgraded, &base.sqs, &base.queue_url, message).await;
        }
    }
    let retrying = upgraded
        .list_logs(
            &account,
            DeliveryQuery {
                size: 100,
                status: Some(DeliveryStatus::Retrying),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let retrying: Vec<String> = retrying.items.into_iter().map(|(d, _)| d.id).collect();
    assert_eq!(retrying, deliveries);
    let (found, _) = upgraded.get_log(&account, &moved).await.unwrap();
    assert_eq!(found.status, DeliveryStatus::Retrying);
    assert_eq!(found.attempts.len(), 1);

    // What an upgrade that ignored the layout would have done: a delivery whose key moved is
    // lost to it.
    let ignoring = service(&base, base.counted.clone().with_log_shards(LOG_SHARDS));
    assert!(matches!(
        ignoring.get_log(&account, &moved).await,
        Err(ServiceError::NotFound(_))
    ));
}

#[tokio::test]
async fn functions_starting_together_on_a_new_table_agree_on_its_layout() {
    let aws = hookline_aws::env::emulator_config(&common::moto()).await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws);
    let table = common::unique("layout-race");
    hookline_aws::table::ensure_table(&dynamodb, &table)
        .await
        .unwrap();
    // Every one reads no layout; one records it, the others lose the put and read it.
    let answers = futures::future::join_all((0..8).map(|_| log_shards_of(&dynamodb, &table))).await;
    for answer in answers {
        assert_eq!(answer.unwrap(), LOG_SHARDS);
    }
}
