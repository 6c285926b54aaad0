//! Replay and recovery on the Lambda path, on moto (issue 15 item 3): the API function starts
//! a job and does its first step; the retry function's sweep carries it on to the end; the
//! deliver function sends what it queued (recovered deliveries through the table's stream, as
//! on Lambda). A real receiver on 127.0.0.1 sees every delivery again under the same
//! `webhook-id`, and a webhook created later gets the events it missed, once.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use chrono::Utc;
use hookline_aws::{DynamoStore, SqsQueue, SweepRetries};
use hookline_fn_stream::pump::StreamPump;
use hookline_http::ReqwestSender;
use hookline_model::{JobStatus, RetryTrigger};
use hookline_service::ports::Queue;
use hookline_service::publish::NewEvent;
use hookline_service::replay::ReplayRequest;
use hookline_service::sealed_store::SealedStore;
use hookline_service::webhooks::NewWebhook;
use hookline_service::{Ports, Service, SystemClock};
use lambda_runtime::{Context, LambdaEvent};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod common;
use common::{deliver_message, lambda_base, lambda_config};

/// The `webhook-id` of every request a receiver got.
type Hits = Arc<Mutex<Vec<String>>>;

async fn receiver() -> (String, Hits) {
    let hits: Hits = Arc::default();
    let app = Router::new()
        .route(
            "/hook",
            post(|State(hits): State<Hits>, headers: HeaderMap| async move {
                let id = headers["webhook-id"].to_str().unwrap().to_string();
                hits.lock().unwrap().push(id);
                StatusCode::OK
            }),
        )
        .with_state(hits.clone());
    let url = format!("{}/hook", common::serve_on_loopback(app).await);
    (url, hits)
}

struct Stack {
    service: Service,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    queue: SqsQueue,
    counted: DynamoStore,
    stream: tokio::sync::Mutex<StreamPump>,
}

async fn stack() -> Stack {
    let base = lambda_base("hookline-replay").await;
    let mut config = lambda_config();
    // The request answers after its first step: the sweep does the rest.
    config.job_inline = Duration::ZERO;
    let service = Service::new(
        Ports {
            store: Arc::new(SealedStore::new(
                Arc::new(base.counted.clone()),
                Arc::new(base.ring),
            )),
            queue: Arc::new(base.queue.clone()),
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
    /// stays empty.
    async fn deliver_all(&self) {
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
                deliver_message(&self.service, &self.sqs, &self.queue_url, &message).await;
            }
        }
    }

    /// The retry function's recurring sweep.
    async fn sweep(&self) {
        hookline_fn_retry::handle(
            &self.service,
            LambdaEvent::new(RetryTrigger::Sweep, Context::default()),
        )
        .await
        .unwrap();
    }

    async fn webhook(&self, account: &str, url: &str) -> String {
        self.service
            .create_webhook(
                account,
                NewWebhook {
                    url: url.into(),
                    events: Some(vec!["reading.weight".into()]),
                    ..Default::default()
                },
            )
            .await
            .unwrap()
            .id
    }
}

fn counted(hits: &Hits) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for id in hits.lock().unwrap().iter() {
        *seen.entry(id.clone()).or_default() += 1;
    }
    seen
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sweep_finishes_a_replay_and_a_recovery_that_the_api_began() {
    const EVENTS: usize = 60;
    let stack = stack().await;
    let account = stack
        .service
        .create_account("Replay on Lambda")
        .await
        .unwrap()
        .account
        .id;
    let (url, hits) = receiver().await;
    let first = stack.webhook(&account, &url).await;
    let since = Utc::now() - chrono::Duration::seconds(1);
    for n in 0..EVENTS {
        stack
            .service
            .publish(NewEvent {
                account_id: account.clone(),
                event_type: "reading.weight".into(),
                payload: serde_json::value::RawValue::from_string(format!(r#"{{"n":{n}}}"#))
                    .unwrap(),
                // Every third one with the publisher's own id.
                id: (n % 3 == 0).then(|| format!("scale-{n}")),
            })
            .await
            .unwrap();
    }
    stack.deliver_all().await;
    let delivered = counted(&hits);
    assert_eq!(delivered.len(), EVENTS);

    // The API function's part: the first step, then the answer.
    let until = Utc::now() + chrono::Duration::seconds(1);
    let started = stack
        .service
        .replay(
            &account,
            ReplayRequest {
                webhook_id: Some(first.clone()),
                since,
                until,
                status: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(started.status, JobStatus::Running, "{started:?}");
    assert!(started.done < EVENTS as u64, "{started:?}");
    // The sweep's part, as many sweeps as it takes (one, at the default budget).
    for _ in 0..5 {
        stack.sweep().await;
        let job = stack.service.get_job(&account, &started.id).await.unwrap();
        if job.status != JobStatus::Running {
            break;
        }
    }
    let job = stack.service.get_job(&account, &started.id).await.unwrap();
    assert_eq!(job.status, JobStatus::Completed, "{job:?}");
    assert_eq!((job.total, job.done), (EVENTS as u64, EVENTS as u64));
    stack.deliver_all().await;
    let replayed = counted(&hits);
    assert_eq!(replayed.len(), EVENTS, "the same webhook-ids");
    assert!(
        replayed.values().all(|n| *n == 2),
        "each sent twice: {replayed:?}"
    );

    // A webhook created later gets what it missed, once.
    let (late_url, late_hits) = receiver().await;
    let late = stack.webhook(&account, &late_url).await;
    let recovery = stack
        .service
        .replay_missing(&account, &late, since)
        .await
        .unwrap();
    for _ in 0..5 {
        if stack
            .service
            .get_job(&account, &recovery.id)
            .await
            .unwrap()
            .status
            != JobStatus::Running
        {
            break;
        }
        stack.sweep().await;
    }
    let recovery = stack.service.get_job(&account, &recovery.id).await.unwrap();
    assert_eq!(recovery.status, JobStatus::Completed, "{recovery:?}");
    assert_eq!(
        (recovery.total, recovery.done),
        (EVENTS as u64, EVENTS as u64)
    );
    stack.deliver_all().await;
    let recovered = counted(&late_hits);
    assert_eq!(recovered.len(), EVENTS);
    assert!(recovered.values().all(|n| *n == 1), "{recovered:?}");
    assert!(
        recovered.keys().all(|id| !replayed.contains_key(id)),
        "deliveries of their own"
    );
    // Again: nothing is missing now, nothing is sent.
    let again = stack
        .service
        .replay_missing(&account, &late, since)
        .await
        .unwrap();
    for _ in 0..5 {
        if stack
            .service
            .get_job(&account, &again.id)
            .await
            .unwrap()
            .status
            != JobStatus::Running
        {
            break;
        }
        stack.sweep().await;
    }
    let again = stack.service.get_job(&account, &again.id).await.unwrap();
    assert_eq!(
        (again.status, again.total, again.done),
        (JobStatus::Completed, EVENTS as u64, 0)
    );
    stack.deliver_all().await;
    assert_eq!(late_hits.lock().unwrap().len(), EVENTS);
    assert_eq!(hits.lock().unwrap().len(), 2 * EVENTS);
}
