//! AWS requests per delivery on the Lambda path. The api, deliver and retry handlers run
//! in-process against moto, with every SDK client wrapped in a counting interceptor; SQS is
//! drained the way Lambda's event source mapping does it (ReceiveMessage up to 10, the deliver
//! handler, DeleteMessageBatch of the successes), and retry schedules are fired by calling
//! the retry handler with their input. The counts become a cost per million deliveries.

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use aws_sdk_dynamodb::operation::batch_get_item::{BatchGetItemInput, BatchGetItemOutput};
use aws_sdk_dynamodb::operation::batch_write_item::BatchWriteItemInput;
use aws_sdk_dynamodb::operation::query::QueryOutput;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsInput;
use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use hookline_aws::env::emulator_config;
use hookline_aws::table::ensure_table;
use hookline_aws::{DynamoStore, EventBridgeScheduler, SqsQueue};
use hookline_http::ReqwestSender;
use hookline_model::RetryTrigger;
use hookline_model::retry::RetryPolicy;
use hookline_service::webhooks::NewWebhook;
use hookline_service::{Config, Mode, Ports, Service, SystemClock};
use lambda_runtime::{Context, LambdaEvent};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use tower::ServiceExt;

/// Per operation: requests, and the items they wrote or read.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Tally {
    pub requests: u64,
    /// Items written outside transactions (1 WRU each up to 1 KB).
    pub items_written: u64,
    /// Items written inside TransactWriteItems (2 WRU each up to 1 KB).
    pub items_written_in_transactions: u64,
    /// Items read (0.5 RRU each up to 4 KB, eventually consistent).
    pub items_read: u64,
}

#[derive(Debug, Clone, Default)]
pub struct Counter(Arc<Mutex<BTreeMap<String, Tally>>>);

impl Counter {
    fn with(&self, cfg: &ConfigBag, f: impl FnOnce(&mut Tally)) {
        let name = cfg
            .load::<Metadata>()
            .map(|m| format!("{}.{}", m.service(), m.name()))
            .unwrap_or_else(|| "unknown".into());
        f(self.0.lock().unwrap().entry(name).or_default());
    }

    pub fn take(&self) -> BTreeMap<String, Tally> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

impl Intercept for Counter {
    fn name(&self) -> &'static str {
        "RequestCounter"
    }

    fn read_before_serialization(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let input = context.input();
        self.with(cfg, |tally| {
            tally.requests += 1;
            if let Some(tx) = input.downcast_ref::<TransactWriteItemsInput>() {
                tally.items_written_in_transactions += tx.transact_items().len() as u64;
            } else if let Some(batch) = input.downcast_ref::<BatchWriteItemInput>() {
                tally.items_written += batch
                    .request_items()
                    .map_or(0, |r| r.values().map(|v| v.len() as u64).sum());
            } else if input
                .downcast_ref::<aws_sdk_dynamodb::operation::put_item::PutItemInput>()
                .is_some()
                || input
                    .downcast_ref::<aws_sdk_dynamodb::operation::update_item::UpdateItemInput>()
                    .is_some()
                || input
                    .downcast_ref::<aws_sdk_dynamodb::operation::delete_item::DeleteItemInput>()
                    .is_some()
            {
                tally.items_written += 1;
            } else if input
                .downcast_ref::<aws_sdk_dynamodb::operation::get_item::GetItemInput>()
                .is_some()
            {
                tally.items_read += 1;
            } else if let Some(batch) = input.downcast_ref::<BatchGetItemInput>() {
                let _ = batch; // counted from the output: only what was found costs
            }
        });
        Ok(())
    }

    fn read_after_execution(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(Ok(output)) = context.output_or_error() else {
            return Ok(());
        };
        let read = if let Some(query) = output.downcast_ref::<QueryOutput>() {
            query.count() as u64
        } else if let Some(batch) = output.downcast_ref::<BatchGetItemOutput>() {
            batch
                .responses()
                .map_or(0, |r| r.values().map(|v| v.len() as u64).sum())
        } else {
            0
        };
        if read > 0 {
            self.with(cfg, |tally| tally.items_read += read);
        }
        Ok(())
    }
}

/// us-east-1 list prices used for the cost (USD).
#[derive(Debug, Clone, Serialize)]
pub struct Prices {
    pub dynamodb_per_million_wru: f64,
    pub dynamodb_per_million_rru: f64,
    pub sqs_per_million_requests: f64,
    pub scheduler_per_million_invocations: f64,
    pub lambda_per_million_requests: f64,
    pub lambda_arm64_per_gb_second: f64,
    pub api_gateway_http_per_million: f64,
    pub lambda_memory_mb: f64,
    /// Billed duration assumed per invocation, in ms.
    pub api_ms: f64,
    pub deliver_batch_ms: f64,
    pub retry_ms: f64,
}

pub const PRICES: Prices = Prices {
    dynamodb_per_million_wru: 0.625,
    dynamodb_per_million_rru: 0.125,
    sqs_per_million_requests: 0.40,
    scheduler_per_million_invocations: 1.00,
    lambda_per_million_requests: 0.20,
    lambda_arm64_per_gb_second: 0.0000133334,
    api_gateway_http_per_million: 1.00,
    lambda_memory_mb: 256.0,
    api_ms: 20.0,
    deliver_batch_ms: 100.0,
    retry_ms: 10.0,
};

#[derive(Debug, Clone, Serialize)]
pub struct CostRun {
    pub name: String,
    pub webhooks: usize,
    pub events: usize,
    pub deliveries: usize,
    /// Deliveries whose receiver failed the first attempt (a scheduled retry each).
    pub failed_first: usize,
    pub invocations: BTreeMap<String, u64>,
    pub operations: BTreeMap<String, Tally>,
    pub per_delivery: PerDelivery,
    /// USD per million deliveries.
    pub cost: Cost,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct PerDelivery {
    pub dynamodb_write_requests: f64,
    pub dynamodb_read_requests: f64,
    pub dynamodb_wru: f64,
    pub dynamodb_rru: f64,
    pub sqs_requests: f64,
    pub scheduler_requests: f64,
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
    counter: Counter,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    scheduler: aws_sdk_scheduler::Client,
    group: String,
    admin_key: String,
}

async fn stack(moto: &str) -> Stack {
    let sdk = emulator_config(moto).await;
    let counter = Counter::default();
    let unique = ulid::Ulid::new().to_string().to_lowercase();
    let dynamodb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&sdk)
            .interceptor(counter.clone())
            .build(),
    );
    let table = format!("bench-{unique}");
    ensure_table(&dynamodb, &table).await.unwrap();
    let sqs = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::config::Builder::from(&sdk)
            .interceptor(counter.clone())
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
    let scheduler = aws_sdk_scheduler::Client::from_conf(
        aws_sdk_scheduler::config::Builder::from(&sdk)
            .interceptor(counter.clone())
            .build(),
    );
    let group = format!("bench-{unique}");
    scheduler
        .create_schedule_group()
        .name(&group)
        .send()
        .await
        .unwrap();
    let admin_key = "bench-admin-key-0123456789abcdefghij".to_string();
    let mut config = Config::for_mode(Mode::Lambda);
    config.targets.allow_http = true;
    config.targets.allow_private_targets = true;
    config.retry_policy = RetryPolicy::parse("1s,2s,3s").unwrap();
    config.admin_key_hash = Some(hookline_model::keys::hash_api_key(&admin_key));
    let ports = Ports {
        store: Arc::new(DynamoStore::new(dynamodb, table, 30)),
        queue: Arc::new(SqsQueue::new(sqs.clone(), queue_url.clone())),
        scheduler: Arc::new(EventBridgeScheduler::new(
            scheduler.clone(),
            &group,
            "arn:aws:lambda:us-east-1:123456789012:function:hookline-retry",
            "arn:aws:iam::123456789012:role/hookline-scheduler",
        )),
        clock: Arc::new(SystemClock),
        sender: Arc::new(ReqwestSender::from_config(&config).unwrap()),
    };
    Stack {
        service: Service::new(ports, config),
        counter,
        sqs,
        queue_url,
        scheduler,
        group,
        admin_key,
    }
}

/// A receiver that fails the first attempt of the first `fail_first` distinct deliveries.
async fn receiver(fail_first: usize) -> String {
    let seen = Arc::new(Mutex::new(HashSet::<String>::new()));
    let failed = Arc::new(Mutex::new(0usize));
    let app = axum::Router::new().route(
        "/{*path}",
        axum::routing::post(move |headers: axum::http::HeaderMap| {
            let (seen, failed) = (seen.clone(), failed.clone());
            async move {
                let id = headers
                    .get("webhook-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                let first = seen.lock().unwrap().insert(id);
                let mut failed = failed.lock().unwrap();
                if first && *failed < fail_first {
                    *failed += 1;
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

impl Stack {
    /// What the event source mapping does until the queue is empty: receive up to 10, invoke
    /// deliver, delete the successes. Returns the number of deliver invocations.
    async fn drain(&self) -> u64 {
        let mut invocations = 0;
        let mut empty_polls = 0;
        while empty_polls < 2 {
            let out = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .send()
                .await
                .unwrap();
            let messages = out.messages.unwrap_or_default();
            if messages.is_empty() {
                empty_polls += 1;
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
                    record
                })
                .collect();
            let mut event = SqsEvent::default();
            event.records = records;
            let response = hookline_fn_deliver::handle(
                &self.service,
                LambdaEvent::new(event, Context::default()),
            )
            .await
            .unwrap();
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
                    .queue_url(&self.queue_url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                    .unwrap();
            }
        }
        // The two empty polls that ended the drain are not per-delivery work.
        let mut ops = self.counter.0.lock().unwrap();
        if let Some(t) = ops.get_mut("SQS.ReceiveMessage") {
            t.requests -= 2;
        }
        invocations
    }

    /// Fires every retry schedule in the group, as Scheduler would, and deletes it (as
    /// `ActionAfterCompletion: DELETE` does). Listing and deleting are not counted.
    async fn fire_schedules(&self) -> u64 {
        let before = self.counter.take();
        let mut names = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .scheduler
                .list_schedules()
                .group_name(&self.group)
                .set_next_token(token)
                .send()
                .await
                .unwrap();
            names.extend(
                out.schedules()
                    .iter()
                    .filter_map(|s| s.name().map(String::from)),
            );
            token = out.next_token;
            if token.is_none() {
                break;
            }
        }
        let mut triggers = Vec::new();
        for name in &names {
            let schedule = self
                .scheduler
                .get_schedule()
                .group_name(&self.group)
                .name(name)
                .send()
                .await
                .unwrap();
            let input = schedule.target().unwrap().input().unwrap().to_string();
            triggers.push(serde_json::from_str::<RetryTrigger>(&input).unwrap());
            self.scheduler
                .delete_schedule()
                .group_name(&self.group)
                .name(name)
                .send()
                .await
                .unwrap();
        }
        self.counter.take();
        restore(&self.counter, before);
        for trigger in triggers {
            hookline_fn_retry::handle(&self.service, LambdaEvent::new(trigger, Context::default()))
                .await
                .unwrap();
        }
        names.len() as u64
    }

    async fn publish_through_api(&self, account_id: &str, i: usize) {
        let body = serde_json::json!({
            "accountId": account_id,
            "type": "patient.created",
            "payload": {"patientId": i, "firstName": "Ada", "lastName": "Lovelace",
                        "dateOfBirth": "1815-12-10", "site": {"id": 7, "name": "Main Street Clinic"}},
        });
        let request = Request::post("/api/v3/events")
            .header("content-type", "application/json")
            .header("x-api-key", &self.admin_key)
            .body(Body::from(body.to_string()))
            .unwrap();
        let response = hookline_api::router(self.service.clone())
            .oneshot(request)
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
    }
}

fn restore(counter: &Counter, tallies: BTreeMap<String, Tally>) {
    let mut ops = counter.0.lock().unwrap();
    for (name, tally) in tallies {
        let entry = ops.entry(name).or_default();
        entry.requests += tally.requests;
        entry.items_written += tally.items_written;
        entry.items_written_in_transactions += tally.items_written_in_transactions;
        entry.items_read += tally.items_read;
    }
}

/// One measured cycle: `events` events to `webhooks` webhooks; the receiver fails the first
/// attempt of `fail_first` deliveries.
pub async fn run(
    moto: &str,
    name: &str,
    webhooks: usize,
    events: usize,
    fail_first: usize,
) -> CostRun {
    let stack = stack(moto).await;
    let base = receiver(fail_first).await;
    let account_id = stack
        .service
        .create_account("Bench Clinic")
        .await
        .unwrap()
        .account
        .id;
    for i in 0..webhooks {
        stack
            .service
            .create_webhook(
                &account_id,
                NewWebhook {
                    url: format!("{base}/hook/{i}"),
                    event_type: Some("patient.created".into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
    }
    stack.counter.take();

    for i in 0..events {
        stack.publish_through_api(&account_id, i).await;
    }
    let mut deliver_invocations = stack.drain().await;
    let mut retry_invocations = 0;
    loop {
        let fired = stack.fire_schedules().await;
        if fired == 0 {
            break;
        }
        retry_invocations += fired;
        deliver_invocations += stack.drain().await;
    }
    let operations = stack.counter.take();
    let counts = stack.service.status_counts(&account_id).await.unwrap();
    let deliveries = webhooks * events;
    assert_eq!(
        counts.delivered as usize, deliveries,
        "every delivery ends delivered ({counts:?})"
    );
    let invocations = BTreeMap::from([
        ("api".to_string(), events as u64),
        ("deliver".to_string(), deliver_invocations),
        ("retry".to_string(), retry_invocations),
    ]);
    let per_delivery = per_delivery(&operations, &invocations, deliveries);
    let cost = cost(&per_delivery, &invocations, events, deliveries);
    let result = CostRun {
        name: name.into(),
        webhooks,
        events,
        deliveries,
        failed_first: fail_first,
        invocations,
        operations,
        per_delivery,
        cost,
    };
    eprintln!("{}", crate::report::cost_line(&result));
    result
}

fn per_delivery(
    operations: &BTreeMap<String, Tally>,
    invocations: &BTreeMap<String, u64>,
    deliveries: usize,
) -> PerDelivery {
    let d = deliveries as f64;
    let sum = |service: &str, names: &[&str], f: &dyn Fn(&Tally) -> u64| -> f64 {
        operations
            .iter()
            .filter(|(op, _)| {
                op.split_once('.')
                    .is_some_and(|(s, n)| s == service && (names.is_empty() || names.contains(&n)))
            })
            .map(|(_, t)| f(t))
            .sum::<u64>() as f64
            / d
    };
    PerDelivery {
        dynamodb_write_requests: sum("DynamoDB", &WRITES, &|t| t.requests),
        dynamodb_read_requests: sum("DynamoDB", &READS, &|t| t.requests),
        dynamodb_wru: sum("DynamoDB", &[], &|t| {
            t.items_written + 2 * t.items_written_in_transactions
        }),
        dynamodb_rru: sum("DynamoDB", &[], &|t| t.items_read) * 0.5,
        sqs_requests: sum("SQS", &[], &|t| t.requests),
        scheduler_requests: sum("Scheduler", &[], &|t| t.requests),
        lambda_invocations: invocations.values().sum::<u64>() as f64 / d,
    }
}

fn round4(v: f64) -> f64 {
    (v * 10_000.0).round() / 10_000.0
}

fn cost(
    per: &PerDelivery,
    invocations: &BTreeMap<String, u64>,
    events: usize,
    deliveries: usize,
) -> Cost {
    let p = &PRICES;
    let million = 1_000_000.0;
    let scale = million / deliveries as f64;
    let gb = p.lambda_memory_mb / 1024.0;
    let seconds = invocations["api"] as f64 * p.api_ms / 1000.0
        + invocations["deliver"] as f64 * p.deliver_batch_ms / 1000.0
        + invocations["retry"] as f64 * p.retry_ms / 1000.0;
    let lambda = (per.lambda_invocations * p.lambda_per_million_requests)
        + seconds * scale * gb * p.lambda_arm64_per_gb_second;
    let dynamodb = per.dynamodb_wru * p.dynamodb_per_million_wru
        + per.dynamodb_rru * p.dynamodb_per_million_rru;
    let sqs = per.sqs_requests * p.sqs_per_million_requests;
    let scheduler =
        invocations["retry"] as f64 * scale / million * p.scheduler_per_million_invocations;
    Cost {
        dynamodb: round4(dynamodb),
        sqs: round4(sqs),
        scheduler: round4(scheduler),
        lambda: round4(lambda),
        total: round4(dynamodb + sqs + scheduler + lambda),
        api_gateway: round4(events as f64 * scale / million * p.api_gateway_http_per_million),
    }
}
