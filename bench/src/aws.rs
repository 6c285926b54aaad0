//! What the Lambda path costs per delivery, and where its DynamoDB writes land. The api,
//! deliver and retry handlers run in-process against moto, every SDK client metered by
//! `billing::Meter` (units as AWS bills them, from the items themselves); SQS is drained the way
//! Lambda's event source mapping does it (ReceiveMessage up to 10, the deliver handler,
//! DeleteMessageBatch of the successes), and retry schedules are fired by calling the retry
//! handler with their input. The bills become a cost per million deliveries, and the write
//! units per partition key become the heat at production loads (`heat`).

use crate::billing::{Ledger, Meter, OpBill, Schema, TABLE};
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use hookline_aws::env::emulator_config;
use hookline_aws::store::Counting;
use hookline_aws::table::ensure_table_with;
use hookline_aws::{DynamoStore, SqsQueue, SweepRetries};
use hookline_fn_stream::pump::StreamPump;
use hookline_http::ReqwestSender;
use hookline_model::RetryTrigger;
use hookline_model::retry::RetryPolicy;
use hookline_service::webhooks::NewWebhook;
use hookline_service::{Config, FanOutQueue, Mode, Ports, Service, SystemClock};
use lambda_runtime::{Context, LambdaEvent};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tower::ServiceExt;

/// us-east-1 list prices used for the cost (USD).
#[derive(Debug, Clone, Serialize)]
pub struct Prices {
    pub dynamodb_per_million_wru: f64,
    pub dynamodb_per_million_rru: f64,
    pub sqs_per_million_requests: f64,
    /// A FIFO queue's requests (the ordered webhooks' queue).
    pub sqs_fifo_per_million_requests: f64,
    pub scheduler_per_million_invocations: f64,
    pub lambda_per_million_requests: f64,
    pub lambda_arm64_per_gb_second: f64,
    pub api_gateway_http_per_million: f64,
    pub lambda_memory_mb: f64,
    /// Billed duration assumed per invocation, in ms.
    pub api_ms: f64,
    pub deliver_batch_ms: f64,
    /// Added to a deliver invocation per job it handles (jobs go up to ten to a message).
    pub deliver_job_ms: f64,
    pub retry_ms: f64,
    pub stream_batch_ms: f64,
}

pub const PRICES: Prices = Prices {
    dynamodb_per_million_wru: 0.625,
    dynamodb_per_million_rru: 0.125,
    sqs_per_million_requests: 0.40,
    sqs_fifo_per_million_requests: 0.50,
    scheduler_per_million_invocations: 1.00,
    lambda_per_million_requests: 0.20,
    lambda_arm64_per_gb_second: 0.0000133334,
    api_gateway_http_per_million: 1.00,
    lambda_memory_mb: 256.0,
    api_ms: 20.0,
    deliver_batch_ms: 100.0,
    deliver_job_ms: 5.0,
    retry_ms: 10.0,
    stream_batch_ms: 50.0,
};

/// How the scenario's events reach the api function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Publish {
    /// `POST /events`, one request per event.
    OneByOne,
    /// `POST /events/batch`, up to 100 events per request.
    Batch,
}

/// What the receiver answers. Every answer carries a 4 KiB body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Receiver {
    /// 200 to everything.
    Accepts,
    /// 500 to the first attempt of every delivery, then 200.
    FailsFirstAttempt,
    /// 500 to every attempt: each delivery runs its whole retry schedule and ends `failed`.
    FailsEverything,
}

/// One measured scenario.
#[derive(Debug, Clone, Serialize)]
pub struct Scenario {
    pub name: &'static str,
    pub webhooks: usize,
    pub events: usize,
    pub publish: Publish,
    pub receiver: Receiver,
    /// The webhooks' `rateLimit`, deliveries a second (issue 15 item 5).
    pub rate_limit: Option<u32>,
    /// The webhooks deliver in order, one at a time (issue 15 item 4): through the FIFO queue.
    pub ordered: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct CostRun {
    pub scenario: Scenario,
    pub deliveries: usize,
    pub invocations: BTreeMap<String, u64>,
    /// Jobs the deliver invocations handled (attempts, and jobs skipped or put back).
    pub deliver_jobs: u64,
    pub operations: BTreeMap<String, OpBill>,
    pub per_delivery: PerDelivery,
    /// USD per million deliveries.
    pub cost: Cost,
    /// The busiest partition keys, on the table and on each index.
    pub heat: Vec<KeyHeat>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct PerDelivery {
    pub dynamodb_write_requests: f64,
    pub dynamodb_read_requests: f64,
    /// Write units on the table (items per started KB, twice in a transaction).
    pub dynamodb_table_wru: f64,
    /// Write units on the indexes.
    pub dynamodb_index_wru: f64,
    pub dynamodb_rru: f64,
    /// SQS requests as billed (per started 64 KB).
    pub sqs_requests: f64,
    /// Scheduler API requests (CreateSchedule and the like; not billed, but rate-limited).
    pub scheduler_requests: f64,
    /// Schedules that fired (billed as invocations).
    pub scheduler_invocations: f64,
    pub lambda_invocations: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Cost {
    pub dynamodb: f64,
    pub sqs: f64,
    pub scheduler: f64,
    pub lambda: f64,
    /// DynamoDB, SQS, Scheduler and Lambda.
    pub total: f64,
    /// Not in `total`: API Gateway (HTTP API) for the publish requests.
    pub api_gateway: f64,
}

/// Who shares a partition key, which decides how its traffic grows with load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum KeyScope {
    /// One event's or delivery's own key: its writes end with it.
    Item,
    /// Every delivery of one account (or of one of its webhooks) may write it.
    Account,
    /// Every delivery of the deployment may write it.
    Deployment,
    /// One rate-limited webhook's (`RATE#<webhook>`): its deliveries go out at most at its
    /// `rateLimit`, at most 500 a second, whatever the load.
    RateLimited,
}

/// One partition key's share of a scenario's write units.
#[derive(Debug, Clone, Serialize)]
pub struct KeyHeat {
    /// `table` or the index name.
    pub place: String,
    /// The key with ids replaced by their kind (`<account>`, `<event>`...).
    pub key: String,
    pub scope: KeyScope,
    /// Write units on this key per delivery of the scenario.
    pub units_per_delivery: f64,
    /// Of all write units on its table or index.
    pub share: f64,
    /// The most write units any one key of this shape took (an item key's whole life).
    pub max_units: f64,
}

/// A production load the heat is projected to.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Load {
    pub name: &'static str,
    pub deliveries_per_sec: f64,
    pub accounts: f64,
}

pub const LOADS: [Load; 2] = [
    Load {
        name: "one account, 10,000 deliveries/s",
        deliveries_per_sec: 10_000.0,
        accounts: 1.0,
    },
    Load {
        name: "1,000 accounts, 100,000 deliveries/s in all",
        deliveries_per_sec: 100_000.0,
        accounts: 1_000.0,
    },
];

impl KeyHeat {
    /// Write units per second on this key at `load`. An item key gets its whole life's units
    /// within about a second (a delivery and its first attempt), whatever the load.
    pub fn units_per_sec(&self, load: &Load) -> f64 {
        match self.scope {
            KeyScope::Item => self.max_units,
            KeyScope::Account => self.units_per_delivery * load.deliveries_per_sec / load.accounts,
            KeyScope::Deployment => self.units_per_delivery * load.deliveries_per_sec,
            KeyScope::RateLimited => {
                self.units_per_delivery
                    * (load.deliveries_per_sec / load.accounts)
                        .min(f64::from(hookline_model::limits::MAX_RATE_LIMIT))
            }
        }
    }
}

const WRITES: [&str; 5] = [
    "PutItem",
    "UpdateItem",
    "DeleteItem",
    "BatchWriteItem",
    "TransactWriteItems",
];
const READS: [&str; 4] = ["GetItem", "BatchGetItem", "Query", "Scan"];

struct Stack {
    service: Service,
    /// The deliver function's: webhooks and accounts kept 5 s, as on Lambda.
    deliver: Service,
    ledger: Arc<Mutex<Ledger>>,
    /// The table's stream and the store the stream function folds into.
    stream: tokio::sync::Mutex<StreamPump>,
    counted: DynamoStore,
    /// The stream function's queue: it queues each new delivery (and the api an ordered
    /// webhook's, on its FIFO queue).
    stream_queue: SqsQueue,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    fifo_url: String,
    admin_key: String,
    /// Jobs handed to deliver so far (a message holds up to ten).
    deliver_jobs: std::sync::atomic::AtomicU64,
}

async fn stack(moto: &str) -> Stack {
    let sdk = emulator_config(moto).await;
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let unique = ulid::Ulid::new().to_string().to_lowercase();
    let reader = aws_sdk_dynamodb::Client::new(&sdk);
    let table = format!("bench-{unique}");
    ensure_table_with(&reader, &table, true).await.unwrap();
    let schema = Schema::describe(&reader, &table).await;
    let stream = tokio::sync::Mutex::new(StreamPump::new(&sdk, &reader, &table).await);
    let dynamodb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&sdk)
            .interceptor(Meter::for_dynamodb(ledger.clone(), schema, reader))
            .build(),
    );
    let sqs = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::config::Builder::from(&sdk)
            .interceptor(Meter::new(ledger.clone()))
            .build(),
    );
    let queue_url = sqs
        .create_queue()
        .queue_name(format!("bench-{unique}"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let fifo_url = sqs
        .create_queue()
        .queue_name(format!("bench-{unique}.fifo"))
        .attributes(aws_sdk_sqs::types::QueueAttributeName::FifoQueue, "true")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    // As on Lambda: the stream function keeps the counters and queues the fan-out.
    let counted = DynamoStore::new(dynamodb, table, 30)
        .with_counting(Counting::FromStream)
        .with_fan_out_queue(FanOutQueue::Stream);
    let stream_queue =
        SqsQueue::new(sqs.clone(), queue_url.clone()).with_ordered(fifo_url.clone(), None);
    let admin_key = "bench-admin-key-0123456789abcdefghij".to_string();
    let mut config = Config::for_mode(Mode::Lambda);
    config.targets.allow_http = true;
    config.targets.allow_private_targets = true;
    config.retry_policy = RetryPolicy::parse("1s,2s,3s").unwrap();
    config.admin_key_hash = Some(hookline_model::keys::hash_api_key(&admin_key));
    assert_eq!(config.fan_out_queue, FanOutQueue::Stream);
    let ports = Ports {
        store: Arc::new(counted.clone()),
        queue: Arc::new(stream_queue.clone()),
        // The stack's default (RetryTimer=sweep): retries are found by the sweep.
        scheduler: Arc::new(SweepRetries),
        clock: Arc::new(SystemClock),
        sender: Arc::new(ReqwestSender::from_config(&config).unwrap()),
    };
    // As on Lambda: rate-limit turns from the table, metered like every other write.
    let deliver = Service::new(
        Ports {
            store: Arc::new(counted.clone().with_context_cache(Duration::from_secs(5))),
            ..ports.clone()
        },
        config.clone(),
    )
    .with_rate_limiter(Arc::new(counted.rate_limiter()));
    Stack {
        service: Service::new(ports, config),
        deliver,
        ledger,
        stream,
        counted,
        stream_queue,
        sqs,
        queue_url,
        fifo_url,
        admin_key,
        deliver_jobs: Default::default(),
    }
}

/// A receiver on 127.0.0.1 that answers as `behaviour` says, always with a 4 KiB body.
async fn receiver(behaviour: Receiver) -> String {
    let seen = Arc::new(Mutex::new(HashSet::<String>::new()));
    let body: &'static str = Box::leak("x".repeat(4096).into_boxed_str());
    let app = axum::Router::new().route(
        "/{*path}",
        axum::routing::post(move |headers: axum::http::HeaderMap| {
            let seen = seen.clone();
            async move {
                let id = headers
                    .get("webhook-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                let first = seen.lock().unwrap().insert(id);
                let status = match behaviour {
                    Receiver::Accepts => StatusCode::OK,
                    Receiver::FailsFirstAttempt if first => StatusCode::INTERNAL_SERVER_ERROR,
                    Receiver::FailsFirstAttempt => StatusCode::OK,
                    Receiver::FailsEverything => StatusCode::INTERNAL_SERVER_ERROR,
                };
                (status, body)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

impl Stack {
    /// What the stream function does: folds the status changes so far into the counters and
    /// queues the new deliveries, in batches of up to 1,000 (the template's BatchSize).
    /// Returns its invocations.
    async fn fold(&self) -> u64 {
        self.stream
            .lock()
            .await
            .pump(&self.counted, Some(&self.stream_queue), 1000)
            .await
            .unwrap()
    }

    /// Takes what was measured so far.
    fn take(&self) -> Ledger {
        std::mem::take(&mut *self.ledger.lock().unwrap())
    }

    /// What the event source mapping does until the queue is empty: receive up to 10, invoke
    /// deliver, delete the successes. Returns the number of deliver invocations; adds the time
    /// they took to `waited` (a rate-limited delivery waits for its turn inside them).
    async fn drain(&self, waited: &mut Duration) -> u64 {
        let mut invocations = 0;
        for queue_url in [&self.queue_url, &self.fifo_url] {
            invocations += self.drain_queue(queue_url, waited).await;
        }
        invocations
    }

    /// [`Stack::drain`] of one queue. The FIFO queue's messages carry their group, as its
    /// event source mapping hands them over; a held one (a retry) comes back after its time,
    /// so polls go on while any is held.
    async fn drain_queue(&self, queue_url: &str, waited: &mut Duration) -> u64 {
        let fifo = queue_url == self.fifo_url;
        let mut invocations = 0;
        let (mut empty_polls, mut all_empty_polls) = (0, 0);
        while empty_polls < 2 || (fifo && self.held(queue_url).await) {
            let out = self
                .sqs
                .receive_message()
                .queue_url(queue_url)
                .max_number_of_messages(10)
                .message_system_attribute_names(
                    aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId,
                )
                .send()
                .await
                .unwrap();
            let messages = out.messages.unwrap_or_default();
            if messages.is_empty() {
                empty_polls += 1;
                all_empty_polls += 1;
                if fifo {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                continue;
            }
            empty_polls = 0;
            let records = messages
                .iter()
                .map(|m| {
                    let mut record = SqsMessage::default();
                    record.message_id = m.message_id.clone();
                    record.receipt_handle = m.receipt_handle.clone();
                    record.body = m.body.clone();
                    if let Some(group) = m.attributes().and_then(|a| {
                        a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId)
                    }) {
                        record
                            .attributes
                            .insert("MessageGroupId".into(), group.clone());
                    }
                    record
                })
                .collect();
            let jobs: usize = messages
                .iter()
                .map(|m| {
                    m.body()
                        .and_then(|b| hookline_aws::sqs::jobs_of_body(b).ok())
                        .map_or(1, |jobs| jobs.len())
                })
                .sum();
            self.deliver_jobs
                .fetch_add(jobs as u64, std::sync::atomic::Ordering::Relaxed);
            let mut event = SqsEvent::default();
            event.records = records;
            let started = std::time::Instant::now();
            let response = hookline_fn_deliver::handle_with_lanes(
                &self.deliver,
                Some(&self.stream_queue),
                LambdaEvent::new(event, Context::default()),
            )
            .await
            .unwrap();
            *waited += started.elapsed();
            invocations += 1;
            let failed: HashSet<String> = response
                .batch_item_failures
                .iter()
                .map(|f| f.item_identifier.clone())
                .collect();
            let entries: Vec<_> = messages
                .iter()
                .enumerate()
                .filter(|(_, m)| !failed.contains(m.message_id().unwrap_or_default()))
                .map(|(i, m)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(m.receipt_handle().unwrap())
                        .build()
                        .unwrap()
                })
                .collect();
            if !entries.is_empty() {
                self.sqs
                    .delete_message_batch()
                    .queue_url(queue_url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                    .unwrap();
            }
        }
        // Empty polls (the two that ended the drain, those while a retry was held) are not
        // per-delivery work: an idle event source mapping polls anyway, whatever the load.
        let mut ledger = self.ledger.lock().unwrap();
        if let Some(bill) = ledger.ops.get_mut("SQS.ReceiveMessage") {
            bill.requests -= all_empty_polls;
            bill.billed_requests -= all_empty_polls;
        }
        invocations
    }

    /// Whether `queue_url` holds messages out of sight (ordered retries waiting for their
    /// time). Not billed: the bench's own look, no function makes it.
    async fn held(&self, queue_url: &str) -> bool {
        let attributes = self
            .sqs
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(
                aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
            )
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap_or_default();
        self.ledger
            .lock()
            .unwrap()
            .ops
            .remove("SQS.GetQueueAttributes");
        attributes.values().any(|v| v != "0")
    }

    /// What the retry function does every minute: sweeps what is due. Waits a second first,
    /// the shortest step of the benchmark's retry schedule. The sweep's own reads of the due
    /// index are dropped from the bill: 256 small Queries a minute when nothing is overdue (under
    /// a dollar a month), plus about one read of each due entry it sends, which this leaves out
    /// (an entry is under 200 bytes: 0.5 RRU per 20 of them). What it does per retry (the
    /// enqueue, the postpone) stays.
    async fn sweep_when_due(&self) -> usize {
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        let report = hookline_fn_retry::handle(
            &self.service,
            LambdaEvent::new(RetryTrigger::Sweep, Context::default()),
        )
        .await
        .unwrap();
        self.ledger.lock().unwrap().ops.remove(&format!(
            "DynamoDB.Query@{}",
            hookline_aws::table::DUE_INDEX
        ));
        report["enqueued"].as_u64().unwrap_or(0) as usize
    }

    fn event_body(account_id: &str, i: usize) -> serde_json::Value {
        serde_json::json!({
            "accountId": account_id,
            "type": "patient.created",
            "payload": {"patientId": i, "firstName": "Ada", "lastName": "Lovelace",
                        "dateOfBirth": "1815-12-10", "site": {"id": 7, "name": "Main Street Clinic"}},
        })
    }

    /// Posts to the api function's router; returns the answer's JSON.
    async fn post(&self, path: &str, body: serde_json::Value) -> serde_json::Value {
        let request = Request::post(path)
            .header("content-type", "application/json")
            .header("x-api-key", &self.admin_key)
            .body(Body::from(body.to_string()))
            .unwrap();
        let response = hookline_api::router(self.service.clone())
            .oneshot(request)
            .await
            .unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        assert!(
            status.is_success(),
            "{path}: {status} {}",
            String::from_utf8_lossy(&bytes)
        );
        serde_json::from_slice(&bytes).unwrap()
    }

    /// Publishes `events` events; returns the api function's invocations.
    async fn publish(&self, account_id: &str, events: usize, how: Publish) -> u64 {
        match how {
            Publish::OneByOne => {
                for i in 0..events {
                    self.post("/api/v3/events", Self::event_body(account_id, i))
                        .await;
                }
                events as u64
            }
            Publish::Batch => {
                let mut requests = 0;
                for start in (0..events).step_by(100) {
                    let batch: Vec<_> = (start..events.min(start + 100))
                        .map(|i| Self::event_body(account_id, i))
                        .collect();
                    let answer = self
                        .post(
                            "/api/v3/events/batch",
                            serde_json::json!({ "events": batch }),
                        )
                        .await;
                    let accepted = answer["results"]
                        .as_array()
                        .map_or(0, |r| r.iter().filter(|r| r["status"] == 202).count());
                    assert_eq!(
                        accepted,
                        batch.len(),
                        "every event of the batch is accepted"
                    );
                    requests += 1;
                }
                requests
            }
        }
    }
}

/// One measured scenario.
pub async fn run(moto: &str, scenario: Scenario) -> CostRun {
    let stack = stack(moto).await;
    let base = receiver(scenario.receiver).await;
    let account_id = stack
        .service
        .create_account("Bench Clinic")
        .await
        .unwrap()
        .account
        .id;
    let mut webhook_ids = Vec::new();
    for i in 0..scenario.webhooks {
        let created = stack
            .service
            .create_webhook(
                &account_id,
                NewWebhook {
                    url: format!("{base}/hook/{i}"),
                    event_type: Some("patient.created".into()),
                    rate_limit: scenario.rate_limit,
                    ordered: Some(scenario.ordered),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        webhook_ids.push(created.id.clone());
    }
    stack.take();

    let api_invocations = stack
        .publish(&account_id, scenario.events, scenario.publish)
        .await;
    // Publish only writes: the stream function queues the deliveries.
    let mut stream_invocations = stack.fold().await;
    let mut deliver_time = Duration::ZERO;
    let mut deliver_invocations = stack.drain(&mut deliver_time).await;
    stream_invocations += stack.fold().await;
    // Retries: the sweep sends what is due, until nothing is left to retry.
    let mut sweeps = 0;
    loop {
        let counts = stack.service.status_counts(&account_id).await.unwrap();
        if counts.pending + counts.retrying == 0 {
            break;
        }
        sweeps += 1;
        assert!(
            sweeps < 60,
            "{}: retries never ended ({counts:?})",
            scenario.name
        );
        // Deliveries waiting for a rate-limit turn come back on the queue by themselves.
        if stack.sweep_when_due().await > 0 || scenario.rate_limit.is_some() || scenario.ordered {
            deliver_invocations += stack.drain(&mut deliver_time).await;
            stream_invocations += stack.fold().await;
        }
    }
    // One sweep a minute serves the whole deployment: not a cost per delivery.
    let retry_invocations = 0;
    let ledger = stack.take();
    let counts = stack.service.status_counts(&account_id).await.unwrap();
    let deliveries = scenario.webhooks * scenario.events;
    let ended = match scenario.receiver {
        Receiver::FailsEverything => counts.failed,
        _ => counts.delivered,
    };
    assert_eq!(
        ended as usize, deliveries,
        "{}: every delivery ends as the receiver decides ({counts:?})",
        scenario.name
    );
    let invocations = BTreeMap::from([
        ("api".to_string(), api_invocations),
        ("deliver".to_string(), deliver_invocations),
        ("retry".to_string(), retry_invocations),
        ("stream".to_string(), stream_invocations),
    ]);
    let per_delivery = per_delivery(&ledger, &invocations, 0, deliveries);
    // A rate-limited deliver invocation lasts as long as its deliveries wait: billed as
    // measured here (moto's latency included, so an upper bound), not at the model's pace.
    // So does an ordered one, whose deliveries go one after the other.
    let measured_deliver =
        (scenario.rate_limit.is_some() || scenario.ordered).then_some(deliver_time);
    let deliver_jobs = stack
        .deliver_jobs
        .load(std::sync::atomic::Ordering::Relaxed);
    let cost = cost(
        &per_delivery,
        &invocations,
        deliver_jobs,
        deliveries,
        measured_deliver,
        scenario.ordered,
    );
    let heat = heat(&ledger, &account_id, &webhook_ids, deliveries);
    let result = CostRun {
        scenario,
        deliveries,
        invocations,
        deliver_jobs,
        operations: ledger.ops,
        per_delivery,
        cost,
        heat,
    };
    eprintln!("{}", crate::report::cost_line(&result));
    result
}

fn per_delivery(
    ledger: &Ledger,
    invocations: &BTreeMap<String, u64>,
    fired_schedules: u64,
    deliveries: usize,
) -> PerDelivery {
    let d = deliveries as f64;
    let sum = |service: &str, names: &[&str], f: &dyn Fn(&OpBill) -> f64| -> f64 {
        ledger
            .ops
            .iter()
            .filter(|(op, _)| {
                op.split_once('.')
                    .is_some_and(|(s, n)| s == service && (names.is_empty() || names.contains(&n)))
            })
            .map(|(_, bill)| f(bill))
            .sum::<f64>()
            / d
            + 0.0 // an empty sum is -0.0
    };
    PerDelivery {
        dynamodb_write_requests: sum("DynamoDB", &WRITES, &|b| b.requests as f64),
        dynamodb_read_requests: sum("DynamoDB", &READS, &|b| b.requests as f64),
        dynamodb_table_wru: sum("DynamoDB", &[], &|b| b.table_wru),
        dynamodb_index_wru: sum("DynamoDB", &[], &|b| b.index_wru),
        dynamodb_rru: sum("DynamoDB", &[], &|b| b.rru),
        sqs_requests: sum("SQS", &[], &|b| b.billed_requests as f64),
        scheduler_requests: sum("Scheduler", &[], &|b| b.requests as f64),
        scheduler_invocations: fired_schedules as f64 / d,
        lambda_invocations: invocations.values().sum::<u64>() as f64 / d,
    }
}

fn round4(v: f64) -> f64 {
    (v * 10_000.0).round() / 10_000.0
}

fn cost(
    per: &PerDelivery,
    invocations: &BTreeMap<String, u64>,
    deliver_jobs: u64,
    deliveries: usize,
    measured_deliver: Option<Duration>,
    fifo: bool,
) -> Cost {
    let p = &PRICES;
    let scale = 1_000_000.0 / deliveries as f64;
    let gb = p.lambda_memory_mb / 1024.0;
    let deliver_seconds = measured_deliver.map_or(
        (invocations["deliver"] as f64 * p.deliver_batch_ms
            + deliver_jobs as f64 * p.deliver_job_ms)
            / 1000.0,
        |measured| measured.as_secs_f64(),
    );
    let seconds = invocations["api"] as f64 * p.api_ms / 1000.0
        + deliver_seconds
        + invocations["retry"] as f64 * p.retry_ms / 1000.0
        + invocations["stream"] as f64 * p.stream_batch_ms / 1000.0;
    let lambda = (per.lambda_invocations * p.lambda_per_million_requests)
        + seconds * scale * gb * p.lambda_arm64_per_gb_second;
    let dynamodb = (per.dynamodb_table_wru + per.dynamodb_index_wru) * p.dynamodb_per_million_wru
        + per.dynamodb_rru * p.dynamodb_per_million_rru;
    // An ordered scenario's messages are all on the FIFO queue (the stream queues none).
    let sqs = per.sqs_requests
        * if fifo {
            p.sqs_fifo_per_million_requests
        } else {
            p.sqs_per_million_requests
        };
    let scheduler = per.scheduler_invocations * p.scheduler_per_million_invocations;
    Cost {
        dynamodb: round4(dynamodb),
        sqs: round4(sqs),
        scheduler: round4(scheduler),
        lambda: round4(lambda),
        total: round4(dynamodb + sqs + scheduler + lambda),
        api_gateway: round4(
            invocations["api"] as f64 * scale / 1_000_000.0 * p.api_gateway_http_per_million,
        ),
    }
}

/// Groups the measured keys by shape (ids and shard numbers replaced by their kind) and keeps,
/// per table or index, the shapes that took the most units. A sharded shape's units are spread
/// over its shards (`table::shards_of`), as the hash spreads them at production volume (a short
/// run's few deliveries land unevenly on 64 shards); an item key's are its busiest key's.
fn heat(
    ledger: &Ledger,
    account_id: &str,
    webhook_ids: &[String],
    deliveries: usize,
) -> Vec<KeyHeat> {
    let mut totals: BTreeMap<&str, f64> = BTreeMap::new();
    for ((place, _), units) in &ledger.heat {
        *totals.entry(place.as_str()).or_default() += units;
    }
    // (place, shape) -> (scope, shards, units of the shape, units of its busiest key)
    let mut shapes: BTreeMap<(String, String), (KeyScope, u32, f64, f64)> = BTreeMap::new();
    for ((place, key), units) in &ledger.heat {
        let (shape, scope) = shape_of(key, account_id, webhook_ids);
        let entry = shapes.entry((place.clone(), shape)).or_insert((
            scope,
            hookline_aws::table::shards_of(key),
            0.0,
            0.0,
        ));
        entry.2 += units;
        entry.3 = entry.3.max(*units);
    }
    let mut found: Vec<KeyHeat> = shapes
        .into_iter()
        .map(|((place, key), (scope, shards, units, busiest))| {
            // One key's share: an item key's busiest, a sharded key's even part.
            let per_key = if scope == KeyScope::Item {
                busiest
            } else {
                units / shards as f64
            };
            KeyHeat {
                share: per_key / totals[place.as_str()].max(f64::MIN_POSITIVE),
                units_per_delivery: per_key / deliveries as f64,
                place,
                key,
                scope,
                max_units: busiest,
            }
        })
        .collect();
    found.sort_by(|a, b| {
        (a.place != TABLE, a.place.clone())
            .cmp(&(b.place != TABLE, b.place.clone()))
            .then(b.units_per_delivery.total_cmp(&a.units_per_delivery))
    });
    // The three busiest shapes per place.
    let mut kept: BTreeMap<String, usize> = BTreeMap::new();
    found.retain(|k| {
        let n = kept.entry(k.place.clone()).or_default();
        *n += 1;
        *n <= 3
    });
    found
}

/// A key with its ids replaced by their kind, and who shares it.
fn shape_of(key: &str, account_id: &str, webhook_ids: &[String]) -> (String, KeyScope) {
    if key.starts_with("RATE#") {
        return ("RATE#<webhook>".into(), KeyScope::RateLimited);
    }
    // Keys of one item each: an API key's, a folded stream batch's marker.
    for (prefix, shape) in [("KEY#", "KEY#<hash>"), ("FOLD#", "FOLD#<batch>")] {
        if key.starts_with(prefix) {
            return (shape.into(), KeyScope::Item);
        }
    }
    let mut shape = key.replace(account_id, "<account>");
    for id in webhook_ids {
        shape = shape.replace(id.as_str(), "<webhook>");
    }
    let mut scope = if shape != key {
        KeyScope::Account
    } else {
        KeyScope::Deployment
    };
    // A shard number (the last `#` part, all digits) is one of the shape's shards.
    if let Some((head, shard)) = shape.rsplit_once('#')
        && !shard.is_empty()
        && shard.bytes().all(|b| b.is_ascii_digit())
    {
        shape = format!("{head}#<shard>");
    }
    for (prefix, kind) in [("evt_", "<event>"), ("dlv_", "<delivery>")] {
        if let Some(at) = shape.find(prefix) {
            let end = shape[at..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(shape.len(), |e| at + e);
            shape.replace_range(at..end, kind);
            scope = KeyScope::Item;
        }
    }
    (shape, scope)
}
