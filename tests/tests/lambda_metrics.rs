//! The deliver handler's metrics as CloudWatch embedded metric format lines, as the deliver
//! function flushes them after each invocation. The store is the embedded one (the DynamoDB
//! adapter in-process), so no emulator is needed; the handler is the one Lambda runs.

use aws_lambda_events::event::sqs::SqsEvent;
use axum::Router;
use axum::routing::post;
use hookline_aws::DynamoStore;
use hookline_aws::emf::{Metrics, NAMESPACE};
use hookline_aws::table::ensure_table;
use hookline_embedded::{EmbeddedDynamo, InProcessQueue, InProcessScheduler};
use hookline_http::ReqwestSender;
use hookline_service::publish::NewEvent;
use hookline_service::webhooks::NewWebhook;
use hookline_service::{Config, Mode, Ports, Service, SystemClock};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::Value;
use std::sync::Arc;

mod common;

async fn receiver_answering_200() -> String {
    let app = Router::new().route("/hook", post(|| async { "ok" }));
    let url = format!("{}/hook", common::serve_on_loopback(app).await);
    url
}

#[tokio::test(flavor = "multi_thread")]
async fn the_deliver_handler_reports_deliveries_and_attempt_times_as_emf() {
    let metrics = Metrics::install("deliver").unwrap();
    let dir = std::env::temp_dir().join(format!("hookline-emf-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let dynamo = EmbeddedDynamo::start(&dir).unwrap();
    ensure_table(&dynamo.client(), "hookline").await.unwrap();
    let config = Config::for_mode(Mode::Local);
    let (queue, mut queued) = InProcessQueue::new(100);
    let service = Service::new(
        Ports {
            store: Arc::new(DynamoStore::new(dynamo.client(), "hookline", 30)),
            queue: Arc::new(queue.clone()),
            scheduler: Arc::new(InProcessScheduler::new(queue)),
            clock: Arc::new(SystemClock),
            sender: Arc::new(ReqwestSender::from_config(&config).unwrap()),
        },
        config,
    );
    let account = service
        .create_account("EMF Clinic")
        .await
        .unwrap()
        .account
        .id;
    let url = receiver_answering_200().await;
    service
        .create_webhook(
            &account,
            NewWebhook {
                url,
                event_type: Some("patient.created".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    service
        .publish(NewEvent {
            account_id: account.clone(),
            event_type: "patient.created".into(),
            payload: serde_json::value::to_raw_value(&serde_json::json!({"patientId": 1})).unwrap(),
            id: None,
        })
        .await
        .unwrap();
    // What the queue holds is what SQS would carry to the function (in the fixture's message).
    let job = queued.recv().await.unwrap();
    let fixture = format!(
        "{}/../infra/events/sqs-deliver.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut event: SqsEvent =
        serde_json::from_str(&std::fs::read_to_string(fixture).unwrap()).unwrap();
    event.records.truncate(1);
    event.records[0].body = Some(serde_json::to_string(&job).unwrap());

    let response =
        hookline_fn_deliver::handle(&service, LambdaEvent::new(event, Context::default()))
            .await
            .unwrap();
    assert!(response.batch_item_failures.is_empty());
    let mut out = Vec::new();
    metrics.flush_to(&mut out);
    let lines: Vec<Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is one JSON document"))
        .collect();

    let delivered = lines
        .iter()
        .find(|l| l["hookline_deliveries_total"].is_number())
        .unwrap_or_else(|| panic!("no deliveries line: {lines:?}"));
    assert_eq!(delivered["hookline_deliveries_total"], 1);
    assert_eq!(delivered["outcome"], "delivered");
    assert_eq!(delivered["function"], "deliver");
    let directive = &delivered["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(directive["Namespace"], NAMESPACE);
    assert_eq!(
        directive["Dimensions"][0],
        serde_json::json!(["function", "outcome"])
    );
    assert_eq!(directive["Metrics"][0]["Name"], "hookline_deliveries_total");
    assert!(delivered["_aws"]["Timestamp"].is_u64());

    let timed = lines
        .iter()
        .find(|l| l["hookline_attempt_duration_seconds"].is_array())
        .unwrap_or_else(|| panic!("no attempt duration line: {lines:?}"));
    assert_eq!(
        timed["hookline_attempt_duration_seconds"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let unit = timed["_aws"]["CloudWatchMetrics"][0]["Metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["Name"] == "hookline_attempt_duration_seconds")
        .unwrap()["Unit"]
        .clone();
    assert_eq!(unit, "Seconds");
    let text = serde_json::to_string(&lines).unwrap();
    assert!(!text.contains(&account), "no account id in metrics");

    // Flushed: the next flush has no new deliveries to report.
    let mut again = Vec::new();
    metrics.flush_to(&mut again);
    assert!(
        !String::from_utf8(again)
            .unwrap()
            .contains("hookline_deliveries_total")
    );
}
