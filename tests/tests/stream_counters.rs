//! Status counters folded from the table's stream (the Lambda stack's `Counting::FromStream`):
//! the stream function on moto's stream, the store contract in that mode, and a retried batch.

use aws_lambda_events::event::dynamodb::Event;
use aws_sdk_dynamodb::types::AttributeValue;
use hookline_aws::DynamoStore;
use hookline_aws::env::emulator_config;
use hookline_aws::store::Counting;
use hookline_aws::table::ensure_table_with;
use hookline_fn_stream::pump::StreamPump;
use hookline_model::{DeliveryJob, StatusCounts};
use hookline_service::ports::DeliveryStore;
use hookline_service::ports::{PortResult, Queue};
use lambda_runtime::{Context, LambdaEvent};
use std::sync::Arc;
use tokio::sync::Mutex;

mod common;
use common::moto;

async fn streamed_store() -> (DynamoStore, StreamPump) {
    let aws = emulator_config(&moto()).await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws);
    let table = format!("stream-{}", ulid::Ulid::new().to_string().to_lowercase());
    ensure_table_with(&dynamodb, &table, true).await.unwrap();
    let pump = StreamPump::new(&aws, &dynamodb, &table).await;
    let store = DynamoStore::new(dynamodb, table, 30).with_counting(Counting::FromStream);
    (store, pump)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_store_contract_holds_with_counters_folded_from_the_stream() {
    let (store, pump) = streamed_store().await;
    let pump = Arc::new(Mutex::new(pump));
    let folding = store.clone();
    let settle = move || -> futures::future::BoxFuture<'static, ()> {
        let (pump, store) = (pump.clone(), folding.clone());
        Box::pin(async move {
            pump.lock().await.pump(&store, None, 1000).await.unwrap();
        })
    };
    hookline_service::contract::store_contract_settling(&store, &settle).await;
}

/// The fixture `sam local invoke` would send, dated today (the counters cover the retention).
fn fixture_event() -> Event {
    let today = chrono::Utc::now().format("%Y-%m-%dT00:00:00Z").to_string();
    let json = std::fs::read_to_string(format!(
        "{}/../infra/events/dynamodb-stream.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
    .replace("2026-12-01T00:00:00Z", &today);
    serde_json::from_str(&json).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_batch_is_counted_once_however_often_lambda_retries_it() {
    let (store, _pump) = streamed_store().await;
    let account = "acct_01JD2X5YQ3K8V6W9Z0A1B2C3D4";
    for _ in 0..3 {
        let folded = hookline_fn_stream::handle(
            &store,
            None,
            LambdaEvent::new(fixture_event(), Context::default()),
        )
        .await
        .unwrap();
        // Two changes of the delivery; the webhook's record is no delivery.
        assert_eq!((folded.records, folded.changes, folded.queued), (3, 2, 0));
        assert_eq!(
            store.status_counts(account).await.unwrap(),
            StatusCounts {
                delivered: 1,
                ..Default::default()
            }
        );
    }
}

/// Folded counters spread over the account's 16 counter keys; a counter folded before that,
/// under the account's own key (`COUNT#<day>#stream`), still counts.
#[tokio::test(flavor = "multi_thread")]
async fn folded_counters_spread_over_keys_and_older_ones_still_count() {
    let (store, _pump) = streamed_store().await;
    let account = "acct_01JD2X5YQ3K8V6W9Z0A1B2C3D4";
    let today = chrono::Utc::now().format("%Y%m%d").to_string();
    store
        .client()
        .put_item()
        .table_name(store.table())
        .item("pk", AttributeValue::S(format!("ACCT#{account}")))
        .item("sk", AttributeValue::S(format!("COUNT#{today}#stream")))
        .item("kind", AttributeValue::S("counter".into()))
        .item("failed", AttributeValue::N("2".into()))
        .send()
        .await
        .unwrap();
    hookline_fn_stream::handle(
        &store,
        None,
        LambdaEvent::new(fixture_event(), Context::default()),
    )
    .await
    .unwrap();
    assert_eq!(
        store.status_counts(account).await.unwrap(),
        StatusCounts {
            delivered: 1,
            failed: 2,
            ..Default::default()
        }
    );
    let folded = store
        .client()
        .scan()
        .table_name(store.table())
        .send()
        .await
        .unwrap()
        .items
        .unwrap_or_default()
        .into_iter()
        .filter_map(|item| item.get("pk")?.as_s().ok().cloned())
        .filter(|pk| pk.starts_with(&format!("CNT#{account}#")))
        .count();
    assert_eq!(folded, 1, "the batch's counter is under one CNT# key");
}

/// A queue that keeps what it is given.
#[derive(Default)]
struct KeptJobs(std::sync::Mutex<Vec<DeliveryJob>>);

#[async_trait::async_trait]
impl Queue for KeptJobs {
    async fn enqueue(&self, jobs: &[DeliveryJob]) -> PortResult<()> {
        self.0.lock().unwrap().extend_from_slice(jobs);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_stream_function_queues_each_inserted_delivery_and_nothing_else() {
    let (store, _pump) = streamed_store().await;
    let queue = KeptJobs::default();
    let folded = hookline_fn_stream::handle(
        &store,
        Some(&queue),
        LambdaEvent::new(fixture_event(), Context::default()),
    )
    .await
    .unwrap();
    // The insert is queued; the delivery's later change and the webhook's record are not.
    assert_eq!((folded.records, folded.changes, folded.queued), (3, 2, 1));
    assert_eq!(
        *queue.0.lock().unwrap(),
        [DeliveryJob {
            account_id: "acct_01JD2X5YQ3K8V6W9Z0A1B2C3D4".into(),
            delivery_id: "dlv_01JD2X5YQ3K8V6W9Z0A1B2C3D5".into(),
            event_id: "evt_01JD2X5YQ3K8V6W9Z0A1B2C3D6".into(),
            webhook_id: "wh_01JD2X5YQ3K8V6W9Z0A1B2C3D7".into(),
            not_before: None,
            ordered: false,
            round: 0,
        }]
    );
}
