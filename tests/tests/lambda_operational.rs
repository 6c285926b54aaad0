//! Operational events and endpoint health on the Lambda path, on moto: the deliver handler
//! publishes `hookline.delivery.exhausted` and `hookline.webhook.disabled` through the same
//! publish use case (the table's stream queues their deliveries, as on Lambda), and the
//! platform's operational webhook, ensured as at a cold start, receives them signed with its
//! own secret; a webhook failing long enough is switched off.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hookline_aws::{DynamoStore, SqsQueue, SweepRetries};
use hookline_fn_stream::pump::StreamPump;
use hookline_http::ReqwestSender;
use hookline_model::RetryTrigger;
use hookline_model::retry::RetryPolicy;
use hookline_service::config::{AutoDisable, OperationalWebhook};
use hookline_service::operational::{OPERATIONAL_WEBHOOK_ID, PLATFORM_ACCOUNT_ID};
use hookline_service::ports::Queue;
use hookline_service::publish::NewEvent;
use hookline_service::sealed_store::SealedStore;
use hookline_service::webhooks::NewWebhook;
use hookline_service::{Ports, Service, SystemClock};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod common;
use common::{deliver_message, lambda_base, lambda_config};

/// Each request's headers, body as parsed, and body as sent.
type Hits = Arc<Mutex<Vec<(HeaderMap, Value, String)>>>;

/// A receiver on 127.0.0.1 answering `status`, keeping what it was sent.
async fn receiver(status: StatusCode) -> (String, Hits) {
    let (url, hits, _) = switchable(status).await;
    (url, hits)
}

/// A receiver answering the status the test sets (starting with `status`).
async fn switchable(status: StatusCode) -> (String, Hits, Arc<AtomicU16>) {
    let hits: Hits = Arc::default();
    let status = Arc::new(AtomicU16::new(status.as_u16()));
    let app = Router::new()
        .route(
            "/hook",
            post(
                |State((hits, status)): State<(Hits, Arc<AtomicU16>)>,
                 headers: HeaderMap,
                 body: String| async move {
                    let parsed = serde_json::from_str(&body).unwrap();
                    hits.lock().unwrap().push((headers, parsed, body));
                    StatusCode::from_u16(status.load(Ordering::SeqCst)).unwrap()
                },
            ),
        )
        .with_state((hits.clone(), status.clone()));
    let url = format!("{}/hook", common::serve_on_loopback(app).await);
    (url, hits, status)
}

fn types(hits: &Hits) -> Vec<String> {
    hits.lock()
        .unwrap()
        .iter()
        .map(|(_, b, _)| b["type"].as_str().unwrap().to_string())
        .collect()
}

struct Stack {
    service: Service,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    queue: SqsQueue,
    counted: DynamoStore,
    stream: tokio::sync::Mutex<StreamPump>,
}

async fn stack(operational: OperationalWebhook, auto_disable: Option<AutoDisable>) -> Stack {
    let base = lambda_base("hookline-ops").await;
    let mut config = lambda_config();
    config.retry_policy = RetryPolicy::parse("1s").unwrap();
    config.operational_webhook = Some(operational);
    config.auto_disable = auto_disable;
    let service = Service::new(
        Ports {
            // As the deliver function keeps webhooks and accounts for 5 s.
            store: Arc::new(SealedStore::new(
                Arc::new(
                    base.counted
                        .clone()
                        .with_context_cache(Duration::from_secs(5)),
                ),
                Arc::new(base.ring),
            )),
            queue: Arc::new(base.queue.clone()),
            // The default RetryTimer: the sweep sends retries when due.
            scheduler: Arc::new(SweepRetries),
            clock: Arc::new(SystemClock),
            sender: Arc::new(ReqwestSender::from_config(&config).unwrap()),
        },
        config,
    );
    Stack {
        service,
        sqs: base.sqs,
        queue_url: base.queue_url,
        queue: base.queue,
        counted: base.counted,
        stream: tokio::sync::Mutex::new(base.stream),
    }
}

impl Stack {
    /// The stream function, then the deliver function on every message, until the queue
    /// stays empty: what Lambda does between two sweeps.
    async fn deliver_all(&self) {
        self.deliver_all_in(&self.service).await
    }

    /// [`Stack::deliver_all`] with the deliver function of another container.
    async fn deliver_all_in(&self, service: &Service) {
        loop {
            self.stream
                .lock()
                .await
                .pump(&self.counted, Some(&self.queue as &dyn Queue), 1000)
                .await
                .unwrap();
            let out = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await
                .unwrap();
            let messages = out.messages.unwrap_or_default();
            if messages.is_empty() {
                return;
            }
            for message in messages {
                deliver_message(service, &self.sqs, &self.queue_url, &message).await;
            }
        }
    }

    async fn sweep(&self) {
        hookline_fn_retry::handle(
            &self.service,
            LambdaEvent::new(RetryTrigger::Sweep, Context::default()),
        )
        .await
        .unwrap();
    }

    async fn webhook(&self, account: &str, url: &str, events: &[&str]) -> String {
        self.service
            .create_webhook(
                account,
                NewWebhook {
                    url: url.into(),
                    events: Some(events.iter().map(|e| e.to_string()).collect()),
                    ..Default::default()
                },
            )
            .await
            .unwrap()
            .id
    }

    async fn publish(&self, account: &str, event_type: &str) {
        self.service
            .publish(NewEvent {
                account_id: account.into(),
                event_type: event_type.into(),
                payload: serde_json::value::RawValue::from_string(r#"{"patientId":7}"#.into())
                    .unwrap(),
                id: None,
            })
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_deliver_function_tells_the_platform_and_the_account() {
    let (ops_url, ops_hits) = receiver(StatusCode::OK).await;
    let secret = hookline_model::signing::generate_signing_secret();
    let stack = stack(
        OperationalWebhook {
            url: ops_url.clone(),
            secret: secret.clone(),
        },
        None,
    )
    .await;
    // Cold starts ensure the platform's webhook; a second one finds it as configured.
    stack.service.ensure_operational_webhook().await.unwrap();
    let store = &stack.service.ports().store;
    let first = store
        .get_webhook(PLATFORM_ACCOUNT_ID, OPERATIONAL_WEBHOOK_ID)
        .await
        .unwrap()
        .unwrap();
    stack.service.ensure_operational_webhook().await.unwrap();
    let again = store
        .get_webhook(PLATFORM_ACCOUNT_ID, OPERATIONAL_WEBHOOK_ID)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (first.version, again.version),
        (0, 0),
        "nothing written again"
    );
    assert_eq!(
        (again.url.as_str(), again.signing_secret()),
        (ops_url.as_str(), Some(secret.as_str()))
    );

    let account = stack
        .service
        .create_account("Ops on Lambda")
        .await
        .unwrap()
        .account
        .id;
    let (failing_url, _) = receiver(StatusCode::INTERNAL_SERVER_ERROR).await;
    let (gone_url, _) = receiver(StatusCode::GONE).await;
    let (own_url, own_hits) = receiver(StatusCode::OK).await;
    let failing = stack
        .webhook(&account, &failing_url, &["reading.weight"])
        .await;
    let gone = stack
        .webhook(&account, &gone_url, &["patient.created"])
        .await;
    stack.webhook(&account, &own_url, &["hookline.*"]).await;

    // The first attempt fails; the sweep sends the retry when due; it fails too: exhausted.
    stack.publish(&account, "reading.weight").await;
    stack.deliver_all().await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    stack.sweep().await;
    stack.deliver_all().await;
    // A 410 deactivates the other webhook: disabled.
    stack.publish(&account, "patient.created").await;
    stack.deliver_all().await;

    assert_eq!(
        types(&ops_hits),
        ["hookline.delivery.exhausted", "hookline.webhook.disabled"]
    );
    assert_eq!(types(&own_hits), types(&ops_hits));
    let hits = ops_hits.lock().unwrap().clone();
    let (headers, exhausted, raw) = &hits[0];
    assert_eq!(exhausted["payload"]["accountId"], json!(account));
    assert_eq!(exhausted["payload"]["webhookId"], json!(failing));
    assert!(
        exhausted["payload"]["deliveryId"]
            .as_str()
            .unwrap()
            .starts_with("dlv_")
    );
    assert_eq!(hits[1].1["payload"]["webhookId"], json!(gone));
    assert_eq!(
        hits[1].1["payload"]["reason"],
        "the endpoint answered 410 Gone"
    );
    // Signed with the operational secret over the body as sent.
    let key = hookline_model::signing::secret_key(&secret).unwrap();
    let id = headers["webhook-id"].to_str().unwrap();
    let timestamp: i64 = headers["webhook-timestamp"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let expected = hookline_model::signing::sign(&key, id, timestamp, raw.as_bytes());
    assert_eq!(headers["webhook-signature"].to_str().unwrap(), expected);
    assert!(
        !store
            .get_webhook(&account, &gone)
            .await
            .unwrap()
            .unwrap()
            .active
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_deliver_function_switches_off_a_webhook_failing_long_enough() {
    let (ops_url, ops_hits) = receiver(StatusCode::OK).await;
    let after = Duration::from_secs(2);
    let auto_disable = AutoDisable {
        after,
        min_failures: 3,
    };
    let stack = stack(
        OperationalWebhook {
            url: ops_url,
            secret: hookline_model::signing::generate_signing_secret(),
        },
        Some(auto_disable),
    )
    .await;
    stack.service.ensure_operational_webhook().await.unwrap();
    let store = &stack.service.ports().store;
    let account = stack
        .service
        .create_account("Health on Lambda")
        .await
        .unwrap()
        .account
        .id;
    let (url, _, status) = switchable(StatusCode::INTERNAL_SERVER_ERROR).await;
    let flaky = stack.webhook(&account, &url, &["reading.weight"]).await;
    let health = || async { store.get_webhook(&account, &flaky).await.unwrap().unwrap() };
    let attempt_one = || async {
        stack.publish(&account, "reading.weight").await;
        stack.deliver_all().await;
    };

    // A failure starts a run; a success ends it; failing again starts another.
    attempt_one().await;
    let first_run = health()
        .await
        .health
        .failing_since
        .expect("a run of failures");
    status.store(200, Ordering::SeqCst);
    attempt_one().await;
    assert_eq!(health().await.health.failing_since, None);
    status.store(500, Ordering::SeqCst);
    attempt_one().await;
    let run = health().await.health.failing_since.expect("a new run");
    assert!(run > first_run);
    assert!(health().await.active, "not before HOOKLINE_DISABLE_AFTER");

    // Past the limit with 2 failures in a row: not enough.
    tokio::time::sleep(after).await;
    attempt_one().await;
    assert!(
        health().await.active,
        "2 of HOOKLINE_DISABLE_MIN_FAILURES=3 in a row"
    );
    assert_eq!(health().await.health.failing_since, Some(run));

    // The third, in a new container (which has seen none of them: the log counts them),
    // switches the webhook off and tells the platform.
    let cold = Service::new(
        stack.service.ports().clone(),
        stack.service.config().clone(),
    );
    stack.publish(&account, "reading.weight").await;
    stack.deliver_all_in(&cold).await;
    let off = health().await;
    assert!(!off.active);
    let reason = off.health.disabled_reason.clone().unwrap();
    assert!(reason.starts_with("every attempt failed since"), "{reason}");
    assert!(reason.contains("(3 or more in a row)"), "{reason}");
    assert!(off.health.disabled_at.unwrap() - run >= chrono::Duration::from_std(after).unwrap());
    stack.deliver_all().await;
    let told: Vec<Value> = ops_hits
        .lock()
        .unwrap()
        .iter()
        .map(|(_, body, _)| body.clone())
        .filter(|body| body["type"] == "hookline.webhook.disabled")
        .collect();
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0]["payload"]["webhookId"], json!(flaky));
    assert_eq!(told[0]["payload"]["reason"], json!(reason));

    // Switched on by PATCH, it starts afresh.
    let on = stack
        .service
        .update_webhook(
            &account,
            &flaky,
            serde_json::from_value(json!({"active": true})).unwrap(),
        )
        .await
        .unwrap()
        .0;
    assert!(on.active && on.health.is_healthy(), "{:?}", on.health);
}
