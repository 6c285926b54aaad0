//! Retries on the Lambda path: schedules per retry and the sweep (its four parts, lost messages,
//! the dead-letter queue, duplicates), with the retry function's fixtures.

use hookline_aws::SweepRetries;
use hookline_model::retry::RetryPolicy;
use hookline_model::{DeliveryStatus, RetryTrigger};
use hookline_service::{FanOutQueue, Ports, Service};
use lambda_runtime::{Context, LambdaEvent};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

mod common;
mod lambda_stack;
use common::fixture;
use lambda_stack::*;

#[tokio::test(flavor = "multi_thread")]
async fn sqs_batch_to_delivery_then_scheduled_retry_until_delivered() {
    let stack = stack().await;
    let (url, hits) = flaky_receiver(1).await;
    let account = stack.account_with_webhook(&url).await;
    stack.publish(&account).await;

    // Publish queued one job on SQS; the deliver handler gets it in the fixture's batch.
    let bodies = stack.receive_bodies().await;
    assert_eq!(bodies.len(), 1);
    let event = Stack::sqs_event(&bodies[0]);
    let poison_id = event.records[1].message_id.clone().unwrap();
    let response =
        hookline_fn_deliver::handle(&stack.service, LambdaEvent::new(event, Context::default()))
            .await
            .unwrap();
    let failed: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    assert_eq!(
        failed,
        vec![poison_id],
        "only the unparseable message is reported failed"
    );
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "the receiver was called once (and failed)"
    );

    // The failure is logged as retrying, and a one-time schedule targets the retry function.
    let (delivery, _) = &stack.only_log(&account).await;
    assert_eq!(delivery.status, DeliveryStatus::Retrying);
    assert_eq!(delivery.last_response_status, Some(500));
    let schedule = stack.only_schedule().await;
    let expected_at = delivery.next_attempt_at.unwrap();
    assert_eq!(
        schedule.schedule_expression().unwrap(),
        format!("at({})", expected_at.format("%Y-%m-%dT%H:%M:%S"))
    );
    assert_eq!(
        schedule.flexible_time_window().unwrap().mode().as_str(),
        "OFF"
    );
    assert_eq!(
        schedule.action_after_completion().unwrap().as_str(),
        "DELETE"
    );

    // moto never fires schedules: invoke the retry handler with the schedule's input.
    stack.fire(&schedule).await;
    let bodies = stack.receive_bodies().await;
    assert_eq!(bodies.len(), 1, "the retry re-enqueued the delivery");
    let response = hookline_fn_deliver::handle(
        &stack.service,
        LambdaEvent::new(Stack::sqs_event(&bodies[0]), Context::default()),
    )
    .await
    .unwrap();
    assert_eq!(
        response.batch_item_failures.len(),
        1,
        "again only the poison message"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 2);

    let (delivery, payload) = &stack.only_log(&account).await;
    assert_eq!(delivery.status, DeliveryStatus::Delivered);
    assert_eq!(delivery.last_response_status, Some(200));
    assert_eq!(delivery.retry_attempts(), 1);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(payload.as_ref().unwrap()).unwrap()["weight"],
        81.5
    );

    // A duplicate message for a delivered delivery sends nothing.
    hookline_fn_deliver::handle(
        &stack.service,
        LambdaEvent::new(Stack::sqs_event(&bodies[0]), Context::default()),
    )
    .await
    .unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sweep_re_enqueues_a_delivery_whose_message_was_lost() {
    // Publish queues the fan-out itself (HOOKLINE_FAN_OUT_QUEUE=api), so each new delivery is
    // due for the sweep in case the message is lost. (Queued by the stream, see the next test.)
    let stack = stack_with(FanOutQueue::Api).await;
    let (url, hits) = flaky_receiver(0).await;
    let account = stack.account_with_webhook(&url).await;
    stack.publish(&account).await;
    // The message is lost (received and deleted without being handled).
    assert_eq!(stack.receive_bodies().await.len(), 1);

    // Not yet overdue: the sweep leaves it alone.
    let sweep: RetryTrigger = serde_json::from_str(&fixture("retry-sweep.json")).unwrap();
    let report = hookline_fn_retry::handle(
        &stack.service,
        LambdaEvent::new(sweep.clone(), Context::default()),
    )
    .await
    .unwrap();
    assert_eq!(report["enqueued"], 0);

    // Past its lease, the recurring sweep re-enqueues it, and it is delivered.
    let later = Service::new(
        Ports {
            clock: Arc::new(Shifted(
                chrono::Duration::from_std(stack.config.sweep_lease).unwrap()
                    + chrono::Duration::seconds(5),
            )),
            ..stack.ports.clone()
        },
        stack.config.clone(),
    );
    let report =
        hookline_fn_retry::handle(&later, LambdaEvent::new(sweep.clone(), Context::default()))
            .await
            .unwrap();
    assert_eq!(report["enqueued"], 1);
    let bodies = stack.receive_bodies().await;
    assert_eq!(bodies.len(), 1);
    hookline_fn_deliver::handle(
        &stack.service,
        LambdaEvent::new(Stack::sqs_event(&bodies[0]), Context::default()),
    )
    .await
    .unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    assert_eq!(
        stack.only_log(&account).await.0.status,
        DeliveryStatus::Delivered
    );

    // Delivered work is no longer due.
    let report = hookline_fn_retry::handle(&later, LambdaEvent::new(sweep, Context::default()))
        .await
        .unwrap();
    assert_eq!(report["enqueued"], 0);
    tokio::time::sleep(Duration::from_millis(10)).await;
}

#[test]
fn retry_fixtures_parse_as_the_retry_function_input() {
    assert_eq!(
        serde_json::from_str::<RetryTrigger>(&fixture("retry-sweep.json")).unwrap(),
        RetryTrigger::Sweep
    );
    assert!(matches!(
        serde_json::from_str::<RetryTrigger>(&fixture("retry-one.json")).unwrap(),
        RetryTrigger::Retry(_)
    ));
    assert_eq!(
        serde_json::from_str::<RetryTrigger>(&fixture("retry-sweep-part.json")).unwrap(),
        RetryTrigger::SweepPart { part: 1, parts: 4 }
    );
}

/// The template's four sweep schedules each read a quarter of the due shards: together they
/// enqueue every overdue delivery once; each alone only its own part.
#[tokio::test(flavor = "multi_thread")]
async fn four_sweep_parts_enqueue_every_overdue_delivery_once() {
    let stack = stack_with(FanOutQueue::Api).await;
    let (url, _hits) = flaky_receiver(0).await;
    let account = stack.account_with_webhook(&url).await;
    for _ in 0..24 {
        stack.publish(&account).await;
    }
    // Every message is lost.
    assert_eq!(stack.drain_jobs().await.len(), 24);
    let later = stack.service_with(
        stack.config.clone(),
        Some(
            chrono::Duration::from_std(stack.config.sweep_lease).unwrap()
                + chrono::Duration::seconds(5),
        ),
    );
    let mut enqueued = Vec::new();
    let mut ids = std::collections::HashSet::new();
    for part in 0..4 {
        let trigger = RetryTrigger::SweepPart { part, parts: 4 };
        let report =
            hookline_fn_retry::handle(&later, LambdaEvent::new(trigger, Context::default()))
                .await
                .unwrap();
        let count = report["enqueued"].as_u64().unwrap();
        let jobs = stack.drain_jobs().await;
        assert_eq!(jobs.len() as u64, count);
        for job in jobs {
            assert!(ids.insert(job.delivery_id), "enqueued by two parts");
        }
        enqueued.push(count);
    }
    assert_eq!(ids.len(), 24, "every overdue delivery, once: {enqueued:?}");
    assert!(
        enqueued.iter().filter(|n| **n > 0).count() >= 2,
        "the parts share the work: {enqueued:?}"
    );
    // A part outside the sweep's parts sweeps nothing.
    let report = hookline_fn_retry::handle(
        &later,
        LambdaEvent::new(
            RetryTrigger::SweepPart { part: 4, parts: 4 },
            Context::default(),
        ),
    )
    .await
    .unwrap();
    assert_eq!(report["enqueued"], 0);
}

/// Queued by the stream function, a new delivery is in no sweep index: a job the deliver
/// function gave up on (SQS moved it to the DLQ after maxReceiveCount) would be its only trace,
/// so the sweep sends the DLQ's jobs back.
#[tokio::test(flavor = "multi_thread")]
async fn a_job_that_went_to_the_dead_letter_queue_is_sent_back_by_the_sweep() {
    let stack = stack().await;
    let (url, hits) = flaky_receiver(0).await;
    let account = stack.account_with_webhook(&url).await;
    stack.add_webhooks(&account, &url, 1).await;
    stack.publish(&account).await;
    // Publish only wrote: the jobs are on the queue once the stream function has run, both
    // in one message.
    let job = stack.drain_bodies().await;
    assert_eq!(job.len(), 1);
    assert_eq!(hookline_aws::sqs::jobs_of_body(&job[0]).unwrap().len(), 2);
    // SQS gives up on it (as after five failed receives) and moves it to the DLQ, beside a
    // message that is no job.
    for body in [job[0].as_str(), "not a job"] {
        stack
            .sqs
            .send_message()
            .queue_url(&stack.dead_letter_url)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }
    // Nothing else would bring it back: the delivery is not due, even past any lease.
    let later = stack.service_with(stack.config.clone(), Some(chrono::Duration::hours(2)));
    let report = hookline_fn_retry::handle(
        &later,
        LambdaEvent::new(RetryTrigger::Sweep, Context::default()),
    )
    .await
    .unwrap();
    assert_eq!(
        (report["enqueued"].as_u64(), report["redriven"].as_u64()),
        (Some(0), Some(2)),
        "{report}"
    );
    let bodies = stack.drain_bodies().await;
    assert_eq!(bodies, job);
    stack.deliver_body(&stack.service, &bodies[0]).await;
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    stack.settle().await;
    let counts = stack.service.status_counts(&account).await.unwrap();
    assert_eq!((counts.delivered, counts.pending), (2, 0));
    // The message that is no job stays in the DLQ, for its alarm and a person to read.
    let left = stack
        .sqs
        .get_queue_attributes()
        .queue_url(&stack.dead_letter_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(
            aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
        )
        .send()
        .await
        .unwrap();
    let total: u64 = left
        .attributes()
        .unwrap()
        .values()
        .map(|v| v.parse::<u64>().unwrap())
        .sum();
    assert_eq!(total, 1);
}

/// Before: a second job for a `retrying` delivery (an SQS duplicate, a schedule firing twice,
/// the sweep) was sent at once and spent a step of the schedule; four used the whole schedule
/// in 0.16 s.
#[tokio::test(flavor = "multi_thread")]
async fn a_duplicate_job_for_a_retry_not_yet_due_sends_nothing() {
    let stack = stack().await;
    let mut config = stack.config.clone();
    config.retry_policy = RetryPolicy::parse("15m,30m,60m").unwrap();
    let service = stack.service_with(config, None);
    let (url, hits) = flaky_receiver(usize::MAX).await;
    let account = stack.account_with_webhook(&url).await;
    stack.publish(&account).await;
    let bodies = stack.receive_bodies().await;
    assert_eq!(bodies.len(), 1);
    stack.deliver_body(&service, &bodies[0]).await;
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    // The same message again, three times (a redelivered batch, duplicates).
    for _ in 0..3 {
        stack.deliver_body(&service, &bodies[0]).await;
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "nothing sent before it is due"
    );
    let (delivery, _) = stack.only_log(&account).await;
    assert_eq!(delivery.status, DeliveryStatus::Retrying);
    assert_eq!(delivery.attempt_count, 1, "no step of the schedule spent");
    assert_eq!(stack.schedules().await, 1, "one retry chain, not two");
}

/// The stack's default (`RetryTimer=sweep`): no schedule per retry. The retry function's sweep
/// sends a retry once its time has passed, and not before.
#[tokio::test(flavor = "multi_thread")]
async fn without_schedules_the_sweep_sends_each_retry_when_it_is_due() {
    let stack = stack().await;
    let mut config = stack.config.clone();
    config.retry_policy = RetryPolicy::parse("10m").unwrap();
    let by_sweep = |shift: Option<chrono::Duration>| {
        let mut ports = stack.ports.clone();
        ports.scheduler = Arc::new(SweepRetries);
        if let Some(shift) = shift {
            ports.clock = Arc::new(Shifted(shift));
        }
        Service::new(ports, config.clone())
    };
    let (url, hits) = flaky_receiver(1).await;
    let account = stack.account_with_webhook(&url).await;
    stack.publish(&account).await;
    let bodies = stack.receive_bodies().await;
    stack.deliver_body(&by_sweep(None), &bodies[0]).await;
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    let (delivery, _) = stack.only_log(&account).await;
    assert_eq!(delivery.status, DeliveryStatus::Retrying);
    assert_eq!(stack.schedules().await, 0, "no schedule per retry");

    let sweep = |service: Service| async move {
        hookline_fn_retry::handle(
            &service,
            LambdaEvent::new(RetryTrigger::Sweep, Context::default()),
        )
        .await
        .unwrap()
    };
    // Nine minutes on, the retry is not due: nothing is sent.
    let report = sweep(by_sweep(Some(chrono::Duration::minutes(9)))).await;
    assert_eq!(report["enqueued"], 0, "{report}");
    assert!(stack.receive_bodies().await.is_empty());
    // Eleven minutes on, it is: the sweep sends it, and it is delivered.
    let later = by_sweep(Some(chrono::Duration::minutes(11)));
    let report = sweep(later.clone()).await;
    assert_eq!(report["enqueued"], 1, "{report}");
    let bodies = stack.receive_bodies().await;
    assert_eq!(bodies.len(), 1);
    stack.deliver_body(&later, &bodies[0]).await;
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    let (delivery, _) = stack.only_log(&account).await;
    assert_eq!(delivery.status, DeliveryStatus::Delivered);
    assert_eq!(stack.schedules().await, 0);
}
