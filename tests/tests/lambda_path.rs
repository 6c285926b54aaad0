//! The Lambda path on moto (DynamoDB, SQS, EventBridge Scheduler): the deliver and retry
//! handlers run in-process with the `infra/events/` fixtures that `sam local invoke` uses, a
//! real receiver on 127.0.0.1 answers.

use aws_sdk_dynamodb::types::AttributeValue;
use hookline_aws::table::{log_index_key, log_pk, log_shard};
use hookline_model::DeliveryStatus;
use std::sync::atomic::Ordering;

mod common;
mod lambda_stack;
use common::fixture;
use lambda_stack::*;

#[tokio::test(flavor = "multi_thread")]
async fn whole_cycle_from_api_gateway_through_sqs_scheduler_and_retry_to_the_logs() {
    let stack = stack().await;
    let router = api_router(&stack);
    let (url, hits) = flaky_receiver(1).await;

    // API Gateway v2 -> api: the platform creates an account, the account a webhook.
    let (status, account) = invoke_api(router.clone(), "apigw-create-account.json").await;
    assert_eq!(status, 201, "{account}");
    let account_id = account["id"].as_str().unwrap();
    let key = account["apiKey"].as_str().unwrap();
    let (status, webhook) = invoke_api_with(
        router.clone(),
        "apigw-create-webhook.json",
        Some(key),
        Some(serde_json::json!({"type": "reading.weight", "url": url})),
    )
    .await;
    assert_eq!(status, 201, "{webhook}");

    // The platform publishes through the api function: the fan-out lands on SQS.
    let mut publish: serde_json::Value =
        serde_json::from_str(
            serde_json::from_str::<serde_json::Value>(&fixture("apigw-publish-event.json"))
                .unwrap()["body"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
    publish["accountId"] = account_id.into();
    let (status, published) = invoke_api_with(
        router.clone(),
        "apigw-publish-event.json",
        None,
        Some(publish),
    )
    .await;
    assert_eq!(
        (status, published["deliveries"].clone()),
        (202, 1.into()),
        "{published}"
    );

    // SQS -> deliver: the receiver fails; the delivery is retrying with a one-time schedule.
    assert_eq!(deliver_from_queue(&stack).await, 0);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    let schedule = stack.only_schedule().await;
    assert!(schedule.schedule_expression().unwrap().starts_with("at("));

    // Scheduler -> retry (moto does not fire it: the test does, with the schedule's input)
    // -> SQS -> deliver: delivered.
    stack.fire(&schedule).await;
    assert_eq!(deliver_from_queue(&stack).await, 0);
    assert_eq!(hits.load(Ordering::SeqCst), 2);

    // DynamoDB stream -> stream: the status counters (and so the log's total) catch up.
    stack.settle().await;
    // API Gateway v2 -> api: the logs show it delivered after one retry.
    let (status, logs) =
        invoke_api_with(router.clone(), "apigw-list-logs.json", Some(key), None).await;
    assert_eq!(status, 200, "{logs}");
    assert_eq!(logs["total"], 1, "{logs}");
    let log = &logs["content"][0];
    assert_eq!(log["eventId"], published["id"]);
    assert_eq!(log["status"], "delivered");
    assert_eq!(log["retryAttempts"], 1);
    assert_eq!(log["lastResponseStatus"], 200);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(log["payload"].as_str().unwrap()).unwrap()["weight"],
        81.5
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn api_gateway_events_are_served_by_the_shared_router() {
    let stack = stack().await;
    let router = api_router(&stack);

    let (status, body) = invoke_api(router.clone(), "apigw-health.json").await;
    assert_eq!((status, body), (200, serde_json::json!({"status": "ok"})));

    let (status, account) = invoke_api(router, "apigw-create-account.json").await;
    assert_eq!(status, 201, "{account}");
    assert_eq!(account["name"], "Acme Clinic");
    let id = account["id"].as_str().unwrap();
    assert!(
        stack.ports.store.get_account(id).await.unwrap().is_some(),
        "stored in DynamoDB"
    );
}

/// Before: bulk retry requeued whatever status the (possibly lagging) status index returned,
/// resetting the round of a delivery that was `retrying`.
#[tokio::test(flavor = "multi_thread")]
async fn bulk_retry_requeues_only_failed_deliveries() {
    let stack = stack().await;
    let (url, _) = flaky_receiver(usize::MAX).await;
    let account = stack.account_with_webhook(&url).await;
    stack.publish(&account).await;
    let bodies = stack.receive_bodies().await;
    stack.deliver_body(&stack.service, &bodies[0]).await;
    let (delivery, _) = stack.only_log(&account).await;
    assert_eq!(delivery.status, DeliveryStatus::Retrying);
    // The status index still says `failed` (it lags the table).
    stack
        .dynamodb
        .update_item()
        .table_name(&stack.table)
        .key(
            "pk",
            AttributeValue::S(log_pk(
                &account,
                log_shard(&delivery.id, stack.counted.log_shards()),
            )),
        )
        .key("sk", AttributeValue::S(format!("DLV#{}", delivery.id)))
        // Only an existing delivery: a wrong key must not pass by writing a new item.
        .condition_expression("attribute_exists(pk)")
        .update_expression("SET statusKey = :failed")
        .expression_attribute_values(
            ":failed",
            AttributeValue::S(log_index_key(
                &account,
                "failed",
                log_shard(&delivery.id, stack.counted.log_shards()),
            )),
        )
        .send()
        .await
        .unwrap();
    let retried = stack
        .service
        .retry_failed(&account, Default::default())
        .await
        .unwrap();
    assert_eq!(retried, 0);
    let (after, _) = stack.only_log(&account).await;
    assert_eq!(after.status, DeliveryStatus::Retrying);
    assert_eq!(after.round_start, 0, "its round goes on");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_published_through_the_api_function_puts_every_job_on_sqs() {
    let stack = stack().await;
    let router = api_router(&stack);
    let (url, hits) = flaky_receiver(0).await;
    let account = stack.account_with_webhook(&url).await;
    let events: Vec<serde_json::Value> = (0..25)
        .map(|n| {
            serde_json::json!({
                "accountId": account,
                "type": "reading.weight",
                "payload": {"id": n, "weight": 80 + n},
                "id": format!("scale-{n}"),
            })
        })
        .collect();
    let batch = serde_json::json!({ "events": events });
    let (status, answer) = invoke_batch(router.clone(), batch.clone()).await;
    assert_eq!(status, 200, "{answer}");
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results.len(), 25);
    for (n, result) in results.iter().enumerate() {
        assert_eq!(
            result,
            &serde_json::json!({"status": 202, "id": format!("scale-{n}"), "type": "reading.weight", "deliveries": 1})
        );
    }

    // One job per event on SQS (ten to a message), each for its own delivery.
    let jobs = stack.drain_jobs().await;
    assert_eq!(jobs.len(), 25);
    let mut event_ids: Vec<String> = jobs.iter().map(|j| j.event_id.clone()).collect();
    event_ids.sort();
    let mut expected: Vec<String> = (0..25).map(|n| format!("scale-{n}")).collect();
    expected.sort();
    assert_eq!(event_ids, expected);
    let mut delivery_ids: Vec<&str> = jobs.iter().map(|j| j.delivery_id.as_str()).collect();
    delivery_ids.sort();
    delivery_ids.dedup();
    assert_eq!(delivery_ids.len(), 25);

    // The jobs deliver (one through the deliver handler is enough to show they are real).
    let one = hookline_aws::sqs::message_body(&jobs[..1]).unwrap();
    stack.deliver_body(&stack.service, &one).await;
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    // The same batch again: the first results, and nothing new on the queue.
    let (status, again) = invoke_batch(router, batch).await;
    assert_eq!((status, &again), (200, &answer));
    assert!(stack.drain_bodies().await.is_empty());
}
