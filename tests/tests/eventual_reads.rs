//! Deliver reads a delivery's context eventually consistently first (half the read units),
//! and consistently what that read cannot settle (issue 12). moto is always consistent, so an
//! SDK interceptor plays a replica that has not yet seen the table's latest writes: it answers
//! eventually consistent BatchGetItems with nothing found.

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeDeserializationInterceptorContextMut, BeforeTransmitInterceptorContextRef,
};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use hookline_aws::SweepRetries;
use hookline_aws::env::emulator_config;
use hookline_aws::table::ensure_table_with;
use hookline_fn_stream::pump::StreamPump;
use hookline_http::ReqwestSender;
use hookline_model::retry::RetryPolicy;
use hookline_model::{DeliveryJob, DeliveryStatus};
use hookline_service::deliver::DeliverOutcome;
use hookline_service::ports::DeliveryStore;
use hookline_service::ports::{PortResult, Queue};
use hookline_service::publish::NewEvent;
use hookline_service::webhooks::NewWebhook;
use hookline_service::{Ports, Service, SystemClock};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod common;
use common::{lambda_config, moto, unique};

/// The DynamoDB client's view of the table: which reads went out how, and a replica that
/// lags while `lagging` is on.
#[derive(Debug, Clone, Default)]
struct Replica {
    lagging: Arc<AtomicBool>,
    eventual_reads: Arc<AtomicUsize>,
    consistent_reads: Arc<AtomicUsize>,
    blanked: Arc<AtomicUsize>,
    /// BatchGetItems that read a webhook's item.
    webhook_reads: Arc<AtomicUsize>,
}

/// Marks a request whose answer the lagging replica gives.
#[derive(Debug)]
struct FromLaggingReplica;

impl Storable for FromLaggingReplica {
    type Storer = StoreReplace<Self>;
}

impl Intercept for Replica {
    fn name(&self) -> &'static str {
        "Replica"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = context.request();
        if request.headers().get("x-amz-target") != Some("DynamoDB_20120810.BatchGetItem") {
            return Ok(());
        }
        let body = String::from_utf8_lossy(request.body().bytes().unwrap_or_default());
        if body.contains("\"WH#") {
            self.webhook_reads.fetch_add(1, Ordering::SeqCst);
        }
        // Deliver's context read names the delivery's key; the stream's reads do too, but
        // they run while the replica keeps up.
        if !body.contains("\"DLV#") {
            return Ok(());
        }
        if body.contains("\"ConsistentRead\":true") {
            self.consistent_reads.fetch_add(1, Ordering::SeqCst);
        } else {
            self.eventual_reads.fetch_add(1, Ordering::SeqCst);
            if self.lagging.load(Ordering::SeqCst) {
                cfg.interceptor_state().store_put(FromLaggingReplica);
            }
        }
        Ok(())
    }

    fn modify_before_deserialization(
        &self,
        context: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if cfg.load::<FromLaggingReplica>().is_some() {
            let response = context.response_mut();
            response.headers_mut().remove("x-amz-crc32");
            response.headers_mut().remove("content-length");
            *response.body_mut() = SdkBody::from(r#"{"Responses":{},"UnprocessedKeys":{}}"#);
            self.blanked.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
}

impl Replica {
    fn reads(&self) -> (usize, usize) {
        (
            self.eventual_reads.swap(0, Ordering::SeqCst),
            self.consistent_reads.swap(0, Ordering::SeqCst),
        )
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

impl KeptJobs {
    fn take(&self) -> Vec<DeliveryJob> {
        std::mem::take(&mut self.0.lock().unwrap())
    }
}

/// A receiver on 127.0.0.1 that answers 500 to its first `failures` requests, then 200.
async fn receiver(failures: usize) -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let app = Router::new()
        .route(
            "/hook",
            post(move |State(hits): State<Arc<AtomicUsize>>| async move {
                if hits.fetch_add(1, Ordering::SeqCst) < failures {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::OK
                }
            }),
        )
        .with_state(hits.clone());
    let url = format!("{}/hook", common::serve_on_loopback(app).await);
    (url, hits)
}

struct Stack {
    service: Service,
    replica: Replica,
    pump: StreamPump,
    store: hookline_aws::DynamoStore,
    queue: Arc<KeptJobs>,
}

/// The deliver function's store (webhooks and accounts cached 5 s) over the replica's client.
async fn stack() -> Stack {
    let aws = emulator_config(&moto()).await;
    let replica = Replica::default();
    let dynamodb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&aws)
            .interceptor(replica.clone())
            .build(),
    );
    let table = unique("eventual");
    ensure_table_with(&dynamodb, &table, true).await.unwrap();
    let pump = StreamPump::new(&aws, &dynamodb, &table).await;
    let mut config = lambda_config();
    config.retry_policy = RetryPolicy::parse("1s").unwrap();
    let store = hookline_aws::env::lambda_store(dynamodb, table, &config)
        .await
        .unwrap()
        .with_context_cache(Duration::from_secs(5));
    let queue = Arc::new(KeptJobs::default());
    let ports = Ports {
        store: Arc::new(store.clone()),
        queue: queue.clone(),
        scheduler: Arc::new(SweepRetries),
        clock: Arc::new(SystemClock),
        sender: Arc::new(ReqwestSender::from_config(&config).unwrap()),
    };
    Stack {
        service: Service::new(ports, config),
        replica,
        pump,
        store,
        queue,
    }
}

impl Stack {
    /// An account with one webhook to `url`, and one event published to it; the stream
    /// function queues its delivery, whose job this answers.
    async fn published(&mut self, url: &str) -> DeliveryJob {
        let mut jobs = self.published_many(url, 1).await;
        jobs.remove(0)
    }

    /// [`Stack::published`] with `events` events: their jobs.
    async fn published_many(&mut self, url: &str, events: usize) -> Vec<DeliveryJob> {
        let account = self
            .service
            .create_account("Eventual Clinic")
            .await
            .unwrap()
            .account
            .id;
        self.service
            .create_webhook(
                &account,
                NewWebhook {
                    url: url.into(),
                    event_type: Some("reading.weight".into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        for _ in 0..events {
            self.service
                .publish(NewEvent {
                    account_id: account.clone(),
                    event_type: "reading.weight".into(),
                    payload: serde_json::value::to_raw_value(&serde_json::json!({"kg": 81.5}))
                        .unwrap(),
                    id: None,
                })
                .await
                .unwrap();
        }
        self.pump
            .pump(&self.store, Some(self.queue.as_ref()), 1000)
            .await
            .unwrap();
        let jobs = self.queue.take();
        assert_eq!(jobs.len(), events, "the stream queued every delivery");
        jobs
    }

    async fn status(&self, job: &DeliveryJob) -> (DeliveryStatus, u32) {
        let delivery = self
            .store
            .get_delivery(&job.account_id, &job.delivery_id)
            .await
            .unwrap()
            .expect("the delivery is stored");
        (delivery.status, delivery.attempt_count)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_delivery_is_sent_even_when_the_replica_has_not_seen_it_yet() {
    let mut stack = stack().await;
    let (url, hits) = receiver(0).await;
    let job = stack.published(&url).await;
    stack.replica.reads();

    // The replica read finds nothing (not the delivery, its event, webhook or account): deliver
    // reads them again consistently and sends, instead of dropping a job it takes for stale.
    stack.replica.lagging.store(true, Ordering::SeqCst);
    let outcome = stack.service.deliver(&job).await.unwrap();
    stack.replica.lagging.store(false, Ordering::SeqCst);
    assert_eq!(outcome, DeliverOutcome::Delivered);
    assert!(stack.replica.blanked.load(Ordering::SeqCst) >= 1);
    assert_eq!(stack.replica.reads(), (1, 1));
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    assert_eq!(stack.status(&job).await, (DeliveryStatus::Delivered, 1));

    // The same job again (SQS delivers at least once) while the replica lags: the consistent
    // read sees it delivered, and nothing is sent twice.
    stack.replica.lagging.store(true, Ordering::SeqCst);
    let outcome = stack.service.deliver(&job).await.unwrap();
    stack.replica.lagging.store(false, Ordering::SeqCst);
    assert_eq!(outcome, DeliverOutcome::Skipped);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_first_send_reads_once_eventually_and_a_retry_reads_its_delivery_consistently() {
    let mut stack = stack().await;
    let (url, hits) = receiver(1).await;
    let job = stack.published(&url).await;
    stack.replica.reads();

    // A replica that keeps up: the first send is settled by the eventually consistent read
    // (webhook and account with it, then cached).
    let outcome = stack.service.deliver(&job).await.unwrap();
    assert!(
        matches!(outcome, DeliverOutcome::WillRetry { .. }),
        "{outcome:?}"
    );
    assert_eq!(stack.replica.reads(), (1, 0), "one eventual read, no other");
    assert_eq!(stack.status(&job).await, (DeliveryStatus::Retrying, 1));

    // Its retry, once due: the delivery's state has moved, so it is read again consistently
    // (a stale copy would show it still pending); the event is not.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let outcome = stack.service.deliver(&job).await.unwrap();
    assert_eq!(outcome, DeliverOutcome::Delivered);
    assert_eq!(stack.replica.reads(), (1, 1));
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    assert_eq!(stack.status(&job).await, (DeliveryStatus::Delivered, 2));
}

/// The jobs of a message start together (up to 100 an invocation): one of them reads the
/// webhook and account the cache does not have, and the others take them from the cache.
#[tokio::test(flavor = "multi_thread")]
async fn jobs_started_together_read_their_webhook_once() {
    let mut stack = stack().await;
    let (url, hits) = receiver(0).await;
    let jobs = stack.published_many(&url, 10).await;
    stack.replica.webhook_reads.store(0, Ordering::SeqCst);
    let outcomes =
        futures::future::join_all(jobs.iter().map(|job| stack.service.deliver(job))).await;
    for outcome in outcomes {
        assert_eq!(outcome.unwrap(), DeliverOutcome::Delivered);
    }
    assert_eq!(hits.load(Ordering::SeqCst), 10);
    assert_eq!(stack.replica.webhook_reads.load(Ordering::SeqCst), 1);
}
