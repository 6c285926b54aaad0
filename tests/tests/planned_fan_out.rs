//! A small fan-out stored without a transaction (issue 12): publish puts the event with its
//! planned webhooks, then each delivery; when publish dies between the two, the stream function
//! stores what is missing and queues it. On moto, with the delivery puts failed on purpose.

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use hookline_aws::DynamoStore;
use hookline_aws::env::emulator_config;
use hookline_aws::store::Counting;
use hookline_aws::table::ensure_table_with;
use hookline_fn_stream::pump::StreamPump;
use hookline_model::{
    Account, Delivery, DeliveryJob, DeliveryStatus, Event, StatusCounts, Webhook, ids,
};
use hookline_service::FanOutQueue;
use hookline_service::ports::{AccountStore, DeliveryStore, WebhookStore};
use hookline_service::ports::{PortResult, Queue};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

mod common;
use common::moto;

/// Fails every PutItem of a delivery while `on`: a publish that dies after its event's put.
#[derive(Debug, Clone, Default)]
struct FailDeliveryPuts(Arc<AtomicBool>);

impl Intercept for FailDeliveryPuts {
    fn name(&self) -> &'static str {
        "FailDeliveryPuts"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = context.request();
        let put = request.headers().get("x-amz-target") == Some("DynamoDB_20120810.PutItem");
        let delivery = request
            .body()
            .bytes()
            .is_some_and(|b| String::from_utf8_lossy(b).contains("\"DLV#"));
        if self.0.load(Ordering::Relaxed) && put && delivery {
            return Err("injected: the publish died before its delivery's put".into());
        }
        Ok(())
    }
}

#[derive(Default)]
struct KeptJobs(Mutex<Vec<DeliveryJob>>);

#[async_trait::async_trait]
impl Queue for KeptJobs {
    async fn enqueue(&self, jobs: &[DeliveryJob]) -> PortResult<()> {
        self.0.lock().unwrap().extend_from_slice(jobs);
        Ok(())
    }
}

fn webhook(account_id: &str, n: u8) -> Webhook {
    let now = chrono::Utc::now();
    Webhook {
        id: ids::new_id(ids::WEBHOOK, now),
        account_id: account_id.into(),
        url: format!("http://127.0.0.1:9/hook/{n}"),
        events: vec!["patient.created".into()],
        active: true,
        description: None,
        metadata: None,
        authorization_token: None,
        request: Default::default(),
        signing_secrets: vec![],
        filter: None,
        rate_limit: None,
        ordered: false,
        created_at: now,
        updated_at: now,
        version: 0,
        health: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_publish_that_dies_after_its_event_is_completed_by_the_stream() {
    let aws = emulator_config(&moto()).await;
    let failing = FailDeliveryPuts::default();
    let dynamodb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&aws)
            .interceptor(failing.clone())
            .build(),
    );
    let table = format!("planned-{}", ulid::Ulid::new().to_string().to_lowercase());
    ensure_table_with(&dynamodb, &table, true).await.unwrap();
    let mut pump = StreamPump::new(&aws, &dynamodb, &table).await;
    // As every function builds it on Lambda: counters and fan-out on the stream.
    let store = DynamoStore::new(dynamodb, table, 30)
        .with_counting(Counting::FromStream)
        .with_fan_out_queue(FanOutQueue::Stream);
    assert_eq!(
        store.max_atomic_fan_out(),
        10,
        "fan-outs up to ten are planned"
    );

    let now = chrono::Utc::now();
    let account = Account {
        id: ids::new_id(ids::ACCOUNT, now),
        name: "Planned".into(),
        created_at: now,
        webhook_secret: None,
    };
    store
        .insert_account(
            &account,
            &hookline_model::ApiKeyRecord {
                id: ids::new_id(ids::API_KEY, now),
                account_id: account.id.clone(),
                key_hash: "planned-key-hash".into(),
                created_at: now,
            },
        )
        .await
        .unwrap();
    let webhooks = [webhook(&account.id, 1), webhook(&account.id, 2)];
    for w in &webhooks {
        assert!(store.insert_webhook(w, 100).await.unwrap());
    }
    let event = Event {
        id: ids::new_id(ids::EVENT, now),
        account_id: account.id.clone(),
        event_type: "patient.created".into(),
        payload: r#"{"patientId":7}"#.into(),
        created_at: now,
        deliveries: 0,
        fanned_out: false,
    };
    let deliveries: Vec<Delivery> = webhooks
        .iter()
        .map(|w| Delivery::pending(&event, w))
        .collect();

    // The publish dies after the event's put: the client is answered an error.
    failing.0.store(true, Ordering::Relaxed);
    assert!(
        store
            .insert_event_with_deliveries(&event, &deliveries, now)
            .await
            .is_err()
    );
    failing.0.store(false, Ordering::Relaxed);
    for d in &deliveries {
        assert_eq!(store.get_delivery(&account.id, &d.id).await.unwrap(), None);
    }
    // Its retry finds the event stored (idempotent publish), with its fan-out decided.
    let existing = store
        .insert_event_with_deliveries(&event, &deliveries, now)
        .await
        .unwrap()
        .expect("the event is there");
    assert_eq!((existing.fanned_out, existing.deliveries), (true, 2));

    // The stream sees the event inserted and stores both deliveries, then sees those inserted
    // and queues them, each once.
    let queue = KeptJobs::default();
    pump.pump(&store, Some(&queue), 1000).await.unwrap();
    pump.pump(&store, Some(&queue), 1000).await.unwrap();
    for d in &deliveries {
        let stored = store.get_delivery(&account.id, &d.id).await.unwrap();
        let stored = stored.expect("the stream stored the missing delivery");
        assert_eq!(
            (stored.status, &stored.webhook_url),
            (DeliveryStatus::Pending, &d.webhook_url)
        );
    }
    let mut queued: Vec<String> = queue
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|j| j.delivery_id.clone())
        .collect();
    queued.sort();
    let mut expected: Vec<String> = deliveries.iter().map(|d| d.id.clone()).collect();
    expected.sort();
    assert_eq!(queued, expected, "each queued once");
    assert_eq!(
        store.status_counts(&account.id).await.unwrap(),
        StatusCounts {
            pending: 2,
            ..Default::default()
        },
        "counted once each"
    );

    // A publish that goes through stores everything itself; the stream's look finds it all.
    let second = Event {
        id: ids::new_id(ids::EVENT, chrono::Utc::now()),
        ..event.clone()
    };
    let second_deliveries: Vec<Delivery> = webhooks
        .iter()
        .map(|w| Delivery::pending(&second, w))
        .collect();
    assert_eq!(
        store
            .insert_event_with_deliveries(&second, &second_deliveries, now)
            .await
            .unwrap(),
        None
    );
    let queue = KeptJobs::default();
    pump.pump(&store, Some(&queue), 1000).await.unwrap();
    assert_eq!(
        queue.0.lock().unwrap().len(),
        2,
        "its two inserts, queued once"
    );
    assert_eq!(store.status_counts(&account.id).await.unwrap().pending, 4);
}
