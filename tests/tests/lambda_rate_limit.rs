//! Rate limits on the Lambda path, on moto (issue 15 item 5): two deliver functions (two
//! sandboxes, each with its own memory) take SQS batches at once and share one limit through
//! the table's `RATE#<webhook>` item. A real receiver on 127.0.0.1 gets every delivery, and
//! never more than the webhook's rate over any 10 s window (within 10 %); the deliveries that
//! wait go back to SQS with a delay and come out at their turn.

use aws_lambda_events::event::sqs::SqsEvent;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hookline_aws::SweepRetries;
use hookline_http::ReqwestSender;
use hookline_service::ports::Queue;
use hookline_service::publish::NewEvent;
use hookline_service::sealed_store::SealedStore;
use hookline_service::webhooks::NewWebhook;
use hookline_service::{Ports, Service, SystemClock};
use lambda_runtime::{Context, LambdaEvent};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;
use common::{fixture, lambda_base, lambda_config};

type Hits = Arc<Mutex<Vec<(String, Instant)>>>;

async fn receiver() -> (String, Hits) {
    let hits: Hits = Arc::default();
    let app = Router::new()
        .route(
            "/hook",
            post(|State(hits): State<Hits>, headers: HeaderMap| async move {
                let id = headers["webhook-id"].to_str().unwrap().to_string();
                hits.lock().unwrap().push((id, Instant::now()));
                StatusCode::OK
            }),
        )
        .with_state(hits.clone());
    let url = format!("{}/hook", common::serve_on_loopback(app).await);
    (url, hits)
}

/// One deliver function: SQS batches of up to 10 through its handler, as the event source
/// mapping hands them over, until `stop`.
async fn deliver_function(
    service: Service,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    let template: SqsEvent = serde_json::from_str(&fixture("sqs-deliver.json")).unwrap();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let out = sqs
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .visibility_timeout(60)
            .send()
            .await
            .unwrap();
        let messages = out.messages.unwrap_or_default();
        if messages.is_empty() {
            continue;
        }
        let mut event = template.clone();
        event.records = messages
            .iter()
            .map(|m| {
                let mut record = template.records[0].clone();
                record.message_id = m.message_id.clone();
                record.receipt_handle = m.receipt_handle.clone();
                record.body = m.body.clone();
                record
            })
            .collect();
        let response =
            hookline_fn_deliver::handle(&service, LambdaEvent::new(event, Context::default()))
                .await
                .unwrap();
        assert!(response.batch_item_failures.is_empty());
        for m in &messages {
            sqs.delete_message()
                .queue_url(&queue_url)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
}

/// The most requests in any 10 s window.
fn busiest_ten_seconds(times: &[Instant]) -> usize {
    let mut times = times.to_vec();
    times.sort();
    (0..times.len())
        .map(|i| {
            times[i..]
                .iter()
                .take_while(|t| **t - times[i] < Duration::from_secs(10))
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_deliver_functions_share_one_webhook_rate_through_the_table() {
    const EVENTS: usize = 150;
    const RATE: u32 = 10;
    let mut base = lambda_base("hookline-rate").await;
    let config = lambda_config();
    // Each deliver function as `lambda_service` builds it: its own store handle and its own
    // limiter, sharing only the table.
    let function = |base: &common::LambdaBase| {
        Service::new(
            Ports {
                store: Arc::new(SealedStore::new(
                    Arc::new(base.counted.clone()),
                    Arc::new(base.ring.clone()),
                )),
                queue: Arc::new(base.queue.clone()),
                scheduler: Arc::new(SweepRetries),
                clock: Arc::new(SystemClock),
                sender: Arc::new(ReqwestSender::from_config(&config).unwrap()),
            },
            config.clone(),
        )
        .with_rate_limiter(Arc::new(base.counted.rate_limiter()))
    };
    let (first, second) = (function(&base), function(&base));
    let account = first
        .create_account("Rate on Lambda")
        .await
        .unwrap()
        .account
        .id;
    let (url, hits) = receiver().await;
    let webhook = first
        .create_webhook(
            &account,
            NewWebhook {
                url: url.clone(),
                events: Some(vec!["reading.weight".into()]),
                rate_limit: Some(RATE),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(webhook.rate_limit, Some(RATE));
    for n in 0..EVENTS {
        first
            .publish(NewEvent {
                account_id: account.clone(),
                event_type: "reading.weight".into(),
                payload: serde_json::value::RawValue::from_string(format!(r#"{{"n":{n}}}"#))
                    .unwrap(),
                id: None,
            })
            .await
            .unwrap();
    }
    // The stream function queues every delivery at once.
    base.stream
        .pump(&base.counted, Some(&base.queue as &dyn Queue), 1000)
        .await
        .unwrap();

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let functions: Vec<_> = [first, second]
        .into_iter()
        .map(|service| {
            tokio::spawn(deliver_function(
                service,
                base.sqs.clone(),
                base.queue_url.clone(),
                stop.clone(),
            ))
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let distinct: HashSet<String> = hits
            .lock()
            .unwrap()
            .iter()
            .map(|(id, _)| id.clone())
            .collect();
        if distinct.len() == EVENTS || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for function in functions {
        function.await.unwrap();
    }

    let hits = hits.lock().unwrap().clone();
    let distinct: HashSet<&String> = hits.iter().map(|(id, _)| id).collect();
    assert_eq!(distinct.len(), EVENTS, "every delivery arrived");
    let times: Vec<Instant> = hits.iter().map(|(_, at)| *at).collect();
    let busiest = busiest_ten_seconds(&times);
    assert!(
        busiest <= 110,
        "at most {RATE}/s over any 10 s, within 10 %: {busiest}"
    );
    let span = *times.iter().max().unwrap() - *times.iter().min().unwrap();
    eprintln!(
        "{} arrivals, busiest 10 s: {busiest}, first to last: {span:?}",
        times.len()
    );
    assert!(
        span >= Duration::from_secs(14),
        "150 at 10 a second take about 15 s: {span:?}"
    );
    assert!(
        busiest >= 80,
        "close to its rate, not far below: {busiest} in the busiest 10 s"
    );
}
