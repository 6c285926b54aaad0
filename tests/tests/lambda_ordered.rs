//! Ordered delivery on the Lambda path, on moto (issue 15 item 4): an ordered webhook's
//! deliveries go through a FIFO queue with the webhook id as message group. Two deliver
//! functions take batches from both queues at once, as their event source mappings would; a
//! real receiver on 127.0.0.1 gets the ordered webhook's events one at a time and in publish
//! order, a delivery being retried holding the ones after it, while an unordered webhook of
//! the same account gets the same events concurrently.

use aws_lambda_events::event::sqs::SqsEvent;
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use hookline_aws::{SqsQueue, SweepRetries};
use hookline_http::ReqwestSender;
use hookline_model::DeliveryStatus;
use hookline_model::retry::RetryPolicy;
use hookline_service::ports::{DeliveryQuery, Queue};
use hookline_service::publish::NewEvent;
use hookline_service::sealed_store::SealedStore;
use hookline_service::webhooks::NewWebhook;
use hookline_service::{Config, Ports, Service, SystemClock};
use lambda_runtime::{Context, LambdaEvent};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;
use common::{fixture, lambda_base, lambda_config, unique};

const EVENTS: usize = 12;
/// The event whose first two attempts the ordered receiver fails.
const FAILING: u64 = 3;

/// What one endpoint saw: each attempt's event number and answer, in the order they came,
/// and the most requests it had in flight at once.
#[derive(Default)]
struct Seen {
    attempts: Mutex<Vec<(u64, u16)>>,
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
    failures_left: AtomicUsize,
}

async fn endpoint(State(seen): State<Arc<Seen>>, body: axum::body::Bytes) -> StatusCode {
    let now = seen.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    seen.most_in_flight.fetch_max(now, Ordering::SeqCst);
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let n = body["payload"]["n"].as_u64().unwrap();
    // Long enough for a second delivery to arrive meanwhile, were one sent.
    tokio::time::sleep(Duration::from_millis(60)).await;
    let status = if n == FAILING
        && seen
            .failures_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(1)
            })
            .is_ok()
    {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    };
    seen.attempts.lock().unwrap().push((n, status.as_u16()));
    seen.in_flight.fetch_sub(1, Ordering::SeqCst);
    status
}

async fn receiver(failures: usize) -> (String, Arc<Seen>) {
    let seen = Arc::new(Seen {
        failures_left: AtomicUsize::new(failures),
        ..Default::default()
    });
    let app = Router::new()
        .route("/hook", post(endpoint))
        .with_state(seen.clone());
    let url = format!("{}/hook", common::serve_on_loopback(app).await);
    (url, seen)
}

/// One deliver function: batches of up to 10 from each queue through its handler, as the event
/// source mappings hand them over (with the FIFO queue's message attributes), deleting what
/// the handler did not report failed, until `stop`.
async fn deliver_function(
    service: Service,
    queue: SqsQueue,
    sqs: aws_sdk_sqs::Client,
    queue_urls: [String; 2],
    stop: Arc<AtomicBool>,
) {
    let plain: SqsEvent = serde_json::from_str(&fixture("sqs-deliver.json")).unwrap();
    let ordered: SqsEvent = serde_json::from_str(&fixture("sqs-deliver-ordered.json")).unwrap();
    while !stop.load(Ordering::Relaxed) {
        for (queue_url, template) in queue_urls.iter().zip([&plain, &ordered]) {
            let out = sqs
                .receive_message()
                .queue_url(queue_url)
                .max_number_of_messages(10)
                .message_system_attribute_names(MessageSystemAttributeName::All)
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
                    if let Some(group) = m
                        .attributes()
                        .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
                    {
                        record
                            .attributes
                            .insert("MessageGroupId".into(), group.clone());
                    }
                    record
                })
                .collect();
            let response = hookline_fn_deliver::handle_with_lanes(
                &service,
                Some(&queue),
                LambdaEvent::new(event, Context::default()),
            )
            .await
            .unwrap();
            let failed: Vec<String> = response
                .batch_item_failures
                .iter()
                .map(|f| f.item_identifier.clone())
                .collect();
            for m in &messages {
                if failed.iter().any(|id| id == m.message_id().unwrap()) {
                    continue;
                }
                sqs.delete_message()
                    .queue_url(queue_url)
                    .receipt_handle(m.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A FIFO queue on moto, as the template's `OrderedDeliveryQueue`; its URL.
async fn fifo_queue(base: &common::LambdaBase, prefix: &str) -> String {
    base.sqs
        .create_queue()
        .queue_name(format!("{}.fifo", unique(prefix)))
        .attributes(QueueAttributeName::FifoQueue, "true")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap()
}

/// A function's service, as `env::lambda_service` builds it, sending to `queue`.
fn function(base: &common::LambdaBase, queue: Arc<dyn Queue>, config: &Config) -> Service {
    Service::new(
        Ports {
            store: Arc::new(SealedStore::new(
                Arc::new(base.counted.clone()),
                Arc::new(base.ring.clone()),
            )),
            queue,
            scheduler: Arc::new(SweepRetries),
            clock: Arc::new(SystemClock),
            sender: Arc::new(ReqwestSender::from_config(config).unwrap()),
        },
        config.clone(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_ordered_webhook_gets_its_deliveries_one_at_a_time_in_publish_order() {
    let mut base = lambda_base("hookline-ordered").await;
    let fifo_url = fifo_queue(&base, "hookline-ordered").await;
    let queue = base.queue.clone().with_ordered(fifo_url.clone(), None);
    let mut config = lambda_config();
    // Two quick retries: the failing event's third attempt succeeds.
    config.retry_policy = RetryPolicy::new(vec![Duration::from_secs(2), Duration::from_secs(2)]);
    let [api, first, second] = [(); 3].map(|_| function(&base, Arc::new(queue.clone()), &config));
    let account = api
        .create_account("Ordered on Lambda")
        .await
        .unwrap()
        .account
        .id;
    let (ordered_url, ordered_seen) = receiver(2).await;
    let (free_url, free_seen) = receiver(0).await;
    let ordered = api
        .create_webhook(
            &account,
            NewWebhook {
                url: ordered_url,
                events: Some(vec!["reading.weight".into()]),
                ordered: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(ordered.ordered);
    // Two unordered webhooks (the second on the same receiver): with three, each event's
    // fan-out is larger than this store writes at once, so publish stores it in chunks.
    for _ in 0..2 {
        api.create_webhook(
            &account,
            NewWebhook {
                url: free_url.clone(),
                events: Some(vec!["reading.weight".into()]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    }
    let event = |n: usize| NewEvent {
        account_id: account.clone(),
        event_type: "reading.weight".into(),
        payload: serde_json::value::RawValue::from_string(format!(r#"{{"n":{n}}}"#)).unwrap(),
        id: None,
    };
    // Half one by one, half in one batch (whose events are stored concurrently).
    for n in 0..EVENTS / 2 {
        api.publish(event(n)).await.unwrap();
    }
    api.publish_batch((EVENTS / 2..EVENTS).map(event).collect())
        .await
        .unwrap();
    // The stream function queues every delivery; the ordered webhook's copies go to the FIFO
    // queue under the ids publish sent them with, and SQS keeps one of each.
    base.stream
        .pump(&base.counted, Some(&queue as &dyn Queue), 1000)
        .await
        .unwrap();
    // The unordered ones ten to a message (`sqs::JOBS_PER_MESSAGE`), the ordered one each.
    assert_eq!(
        waiting(&base.sqs, &base.queue_url).await,
        (2 * EVENTS).div_ceil(hookline_aws::sqs::JOBS_PER_MESSAGE)
    );
    assert_eq!(
        waiting(&base.sqs, &fifo_url).await,
        EVENTS,
        "the ordered webhook's deliveries once each"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let functions: Vec<_> = [first, second]
        .into_iter()
        .map(|service| {
            tokio::spawn(deliver_function(
                service,
                queue.clone(),
                base.sqs.clone(),
                [base.queue_url.clone(), fifo_url.clone()],
                stop.clone(),
            ))
        })
        .collect();
    let delivered = |seen: &Seen| {
        seen.attempts
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, status)| *status == 200)
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    while (delivered(&ordered_seen) < EVENTS || delivered(&free_seen) < 2 * EVENTS)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for function in functions {
        function.await.unwrap();
    }

    let attempts = ordered_seen.attempts.lock().unwrap().clone();
    eprintln!("ordered webhook's attempts, in arrival order: {attempts:?}");
    let expected: Vec<(u64, u16)> = (0..EVENTS as u64)
        .flat_map(|n| {
            if n == FAILING {
                vec![(n, 500), (n, 500), (n, 200)]
            } else {
                vec![(n, 200)]
            }
        })
        .collect();
    assert_eq!(
        attempts, expected,
        "in publish order, and nothing after the failing event until its retries succeeded"
    );
    assert_eq!(
        ordered_seen.most_in_flight.load(Ordering::SeqCst),
        1,
        "one delivery at a time"
    );
    assert_eq!(delivered(&free_seen), 2 * EVENTS);
    assert!(
        free_seen.most_in_flight.load(Ordering::SeqCst) > 1,
        "the unordered webhook keeps its concurrency"
    );
    // The logs agree: every delivery delivered, none left in either queue.
    let logs = api
        .list_logs(
            &account,
            DeliveryQuery {
                webhook_id: Some(ordered.id.clone()),
                size: 50,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(logs.items.len(), EVENTS);
    assert!(
        logs.items
            .iter()
            .all(|(d, _)| d.status == DeliveryStatus::Delivered && d.ordered)
    );
    for url in [&base.queue_url, &fifo_url] {
        assert_eq!(waiting(&base.sqs, url).await, 0, "nothing left in {url}");
    }
}

/// Messages in a queue, seen or not.
async fn waiting(sqs: &aws_sdk_sqs::Client, url: &str) -> usize {
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap_or_default();
    attributes
        .values()
        .map(|v| v.parse::<usize>().unwrap())
        .sum()
}

/// A queue whose sends all fail, as publish's would while SQS refuses it.
struct Refusing;

#[async_trait::async_trait]
impl Queue for Refusing {
    async fn enqueue(
        &self,
        _: &[hookline_model::DeliveryJob],
    ) -> hookline_service::ports::PortResult<()> {
        Err(hookline_service::PortError("SQS refused it".into()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ordered_delivery_whose_publish_send_was_lost_comes_from_the_stream() {
    let mut base = lambda_base("hookline-ordered-lost").await;
    let fifo_url = fifo_queue(&base, "hookline-ordered-lost").await;
    let queue = base.queue.clone().with_ordered(fifo_url.clone(), None);
    let config = lambda_config();
    let api = function(&base, Arc::new(Refusing), &config);
    let deliver = function(&base, Arc::new(queue.clone()), &config);
    let account = api.create_account("Lost send").await.unwrap().account.id;
    let (url, seen) = receiver(0).await;
    api.create_webhook(
        &account,
        NewWebhook {
            url,
            events: Some(vec!["reading.weight".into()]),
            ordered: Some(true),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    // Accepted although its send failed: the event and its delivery are stored.
    api.publish(NewEvent {
        account_id: account.clone(),
        event_type: "reading.weight".into(),
        payload: serde_json::value::RawValue::from_string(r#"{"n":0}"#.into()).unwrap(),
        id: None,
    })
    .await
    .unwrap();
    assert_eq!(
        waiting(&base.sqs, &fifo_url).await,
        0,
        "publish's send was lost"
    );
    // The stream function sees the insert and queues it on the FIFO queue.
    base.stream
        .pump(&base.counted, Some(&queue as &dyn Queue), 1000)
        .await
        .unwrap();
    assert_eq!(waiting(&base.sqs, &fifo_url).await, 1);
    let stop = Arc::new(AtomicBool::new(false));
    let function = tokio::spawn(deliver_function(
        deliver,
        queue.clone(),
        base.sqs.clone(),
        [base.queue_url.clone(), fifo_url.clone()],
        stop.clone(),
    ));
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.attempts.lock().unwrap().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    function.await.unwrap();
    assert_eq!(*seen.attempts.lock().unwrap(), vec![(0, 200)]);
}
