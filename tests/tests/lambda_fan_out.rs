//! Fan-out on the Lambda path: planned and resumed fan-outs, jobs packed into a message, a
//! delivery whose event cannot be read yet.

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::Utc;
use hookline_aws::table::{log_pk, log_shard};
use hookline_model::{Delivery, DeliveryStatus, RetryTrigger};
use lambda_runtime::{Context, LambdaEvent};
use std::sync::atomic::Ordering;

mod common;
mod lambda_stack;
use lambda_stack::*;

/// Before: the sweep re-ran an interrupted fan-out from the start, one transaction per stored
/// delivery, and queued every delivery again, the delivered ones too.
#[tokio::test(flavor = "multi_thread")]
async fn a_fan_out_resumed_by_the_sweep_queues_only_the_deliveries_it_adds() {
    let stack = stack().await;
    let (url, hits) = flaky_receiver(0).await;
    let account = stack.account_with_webhook(&url).await;
    stack.add_webhooks(&account, &url, 59).await;
    // A publish that died after storing 45 of its 60 deliveries.
    let now = Utc::now();
    let event = hookline_model::Event {
        id: hookline_model::ids::new_id(hookline_model::ids::EVENT, now),
        account_id: account.clone(),
        event_type: "reading.weight".into(),
        payload: r#"{"weight":80}"#.into(),
        created_at: now,
        deliveries: 0,
        fanned_out: false,
    };
    let store = &stack.ports.store;
    assert!(store.insert_event(&event, now).await.unwrap().is_none());
    let webhooks = store.list_webhooks(&account).await.unwrap();
    assert_eq!(webhooks.len(), 60);
    let deliveries: Vec<Delivery> = webhooks
        .iter()
        .map(|w| Delivery::pending(&event, w))
        .collect();
    // Stored deliveries are due a lease later; the unfinished event now.
    let lease = chrono::Duration::from_std(stack.config.sweep_lease).unwrap();
    assert!(
        store
            .insert_deliveries(&event, &deliveries[..45], now + lease)
            .await
            .unwrap()
            .iter()
            .all(|new| *new)
    );
    // The stream function queued those 45 as they were stored.
    assert_eq!(stack.drain_jobs().await.len(), 45);
    // 10 of them were delivered before the crash.
    for delivery in &deliveries[..10] {
        stack.deliver_job(&stack.service, &delivery.job()).await;
    }
    assert_eq!(hits.load(Ordering::SeqCst), 10);

    let later = stack.service_with(stack.config.clone(), Some(chrono::Duration::seconds(1)));
    let report = hookline_fn_retry::handle(
        &later,
        LambdaEvent::new(RetryTrigger::Sweep, Context::default()),
    )
    .await
    .unwrap();
    assert_eq!(report["fanOuts"], 1, "{report}");
    let queued = stack.drain_jobs().await;
    let queued_ids: std::collections::HashSet<String> =
        queued.iter().map(|j| j.delivery_id.clone()).collect();
    let added: std::collections::HashSet<String> =
        deliveries[45..].iter().map(|d| d.id.clone()).collect();
    assert_eq!(queued_ids, added, "only the 15 new deliveries are queued");
    assert_eq!(queued.len(), 15);
    let stored = store.get_event(&account, &event.id).await.unwrap().unwrap();
    assert!(stored.fanned_out);
    assert_eq!(stored.deliveries, 60);
    stack.settle().await;
    let counts = stack.service.status_counts(&account).await.unwrap();
    assert_eq!((counts.pending, counts.delivered), (50, 10));
}

/// A fan-out of more than ten is stored as the event (due until finished), one plain put per
/// delivery and the event marked finished, not as one transaction (which bills every item
/// twice): each delivery is queued by the stream once, and nothing is left for the sweep.
/// (Up to ten, the event carries its plan instead: `planned_fan_out.rs`.)
#[tokio::test(flavor = "multi_thread")]
async fn a_fan_out_of_eleven_is_stored_without_a_transaction_and_finished() {
    let stack = stack().await;
    assert_eq!(stack.ports.store.max_atomic_fan_out(), 10);
    let (url, hits) = flaky_receiver(0).await;
    let account = stack.account_with_webhook(&url).await;
    stack.add_webhooks(&account, &url, 10).await;
    let event_id = stack.publish(&account).await;
    let stored = stack
        .ports
        .store
        .get_event(&account, &event_id)
        .await
        .unwrap()
        .unwrap();
    assert!(stored.fanned_out, "publish finished its fan-out");
    assert_eq!(stored.deliveries, 11);
    let jobs = stack.drain_jobs().await;
    assert_eq!(jobs.len(), 11, "each delivery queued once: {jobs:?}");
    for job in &jobs {
        stack.deliver_job(&stack.service, job).await;
    }
    assert_eq!(hits.load(Ordering::SeqCst), 11);
    // An hour on, the sweep finds no unfinished fan-out and nothing due.
    let later = stack.service_with(stack.config.clone(), Some(chrono::Duration::hours(1)));
    let report = hookline_fn_retry::handle(
        &later,
        LambdaEvent::new(RetryTrigger::Sweep, Context::default()),
    )
    .await
    .unwrap();
    assert_eq!(
        (&report["fanOuts"], &report["enqueued"]),
        (&serde_json::json!(0), &serde_json::json!(0)),
        "{report}"
    );
    assert!(stack.drain_bodies().await.is_empty());
    stack.settle().await;
    let counts = stack.service.status_counts(&account).await.unwrap();
    assert_eq!((counts.pending, counts.delivered), (0, 11));
}

/// Issue 12: the jobs of a fan-out go ten to a message (fewer SQS requests and deliver
/// invocations); deliver attempts each, and a message that comes back sends none again.
#[tokio::test(flavor = "multi_thread")]
async fn several_jobs_share_a_message_and_each_is_delivered_once() {
    let stack = stack().await;
    let (url, hits) = flaky_receiver(0).await;
    let account = stack.account_with_webhook(&url).await;
    stack.add_webhooks(&account, &url, 2).await;
    stack.publish(&account).await;
    let bodies = stack.receive_bodies().await;
    assert_eq!(bodies.len(), 1, "one message");
    assert_eq!(
        hookline_aws::sqs::jobs_of_body(&bodies[0]).unwrap().len(),
        3
    );
    stack.deliver_body(&stack.service, &bodies[0]).await;
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    // Redelivered (a batch that failed, SQS's at-least-once): every job reads as delivered.
    stack.deliver_body(&stack.service, &bodies[0]).await;
    assert_eq!(hits.load(Ordering::SeqCst), 3, "nothing sent twice");
    stack.settle().await;
    let counts = stack.service.status_counts(&account).await.unwrap();
    assert_eq!((counts.delivered, counts.pending), (3, 0));
}

/// Before: a delivery read right after publish could miss its event (an eventually
/// consistent read) and end `failed` ("event missing") without a request. Now what the read
/// misses is read again consistently, and what that still misses is retried.
#[tokio::test(flavor = "multi_thread")]
async fn a_delivery_whose_event_cannot_be_read_is_retried_not_failed() {
    let stack = stack().await;
    let (url, hits) = flaky_receiver(0).await;
    let account = stack.account_with_webhook(&url).await;
    let event_id = stack.publish(&account).await;
    let bodies = stack.receive_bodies().await;
    stack
        .dynamodb
        .delete_item()
        .table_name(&stack.table)
        .key(
            "pk",
            AttributeValue::S(log_pk(
                &account,
                log_shard(&event_id, stack.counted.log_shards()),
            )),
        )
        .key("sk", AttributeValue::S(format!("EVT#{event_id}")))
        .send()
        .await
        .unwrap();
    stack.deliver_body(&stack.service, &bodies[0]).await;
    assert_eq!(hits.load(Ordering::SeqCst), 0);
    let (delivery, _) = stack.only_log(&account).await;
    assert_eq!(delivery.status, DeliveryStatus::Retrying);
    assert_eq!(
        delivery.attempts[0].error.as_deref(),
        Some("event not found")
    );
    assert_eq!(stack.schedules().await, 1, "its retry is scheduled");
}
