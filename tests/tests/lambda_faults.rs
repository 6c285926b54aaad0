//! The Lambda path under faults, on moto: a share of every DynamoDB, SQS and Scheduler call
//! fails (before it is sent, or after it was applied with its answer lost), deliver
//! invocations die mid-batch, publishes die mid-request, and the stream function's batches
//! fail and are retried. Two thousand deliveries go through; none is lost, and the status
//! counts are exact once the stream has settled.
//!
//! moto's TransactWriteItems copies the whole table to roll back a cancelled transaction and
//! puts the copy back, undoing any write made meanwhile (DynamoDB does no such thing). So the
//! test keeps transactions apart from other writes: events are published one at a time, and
//! the sweep and the stream function run between deliver polls, not during them.

use aws_lambda_events::event::sqs::SqsEvent;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use aws_smithy_types::retry::RetryConfig;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use hookline_aws::env::emulator_config;
use hookline_aws::sealing_keys::kms_key_ring;
use hookline_aws::store::Counting;
use hookline_aws::table::ensure_table_with;
use hookline_aws::{DynamoStore, EventBridgeScheduler, SqsQueue, SweepRetries};
use hookline_fn_stream::pump::StreamPump;
use hookline_http::ReqwestSender;
use hookline_model::retry::RetryPolicy;
use hookline_model::{DeliveryStatus, RetryTrigger, StatusCounts};
use hookline_service::ports::{DeliveryQuery, RetryScheduler};
use hookline_service::publish::NewEvent;
use hookline_service::sealed_store::SealedStore;
use hookline_service::webhooks::NewWebhook;
use hookline_service::{Config, FanOutQueue, Mode, Ports, Service, SystemClock};
use lambda_runtime::{Context, LambdaEvent};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;
use common::{moto, unique};

/// Accounts as (events, webhooks): one small fan-out (its deliveries written with the event)
/// and one large (written in chunks after the event): 378 deliveries. moto handles one
/// DynamoDB request at a time, slowly, so the suite keeps to that;
/// `HOOKLINE_TEST_FAULT_SCALE=6` multiplies the events (2,268 deliveries; hours on moto, whose
/// index queries scan the table).
const MIXED: &[(u64, u64)] = &[(30, 3), (6, 48)];

fn scale() -> u64 {
    std::env::var("HOOKLINE_TEST_FAULT_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}
/// As the template's recurring schedules (Sweep0..Sweep3).
const SWEEP_PARTS: u32 = 4;
/// Calls failed per thousand, for each of the two ways a call fails.
const FAILED_BEFORE_SENDING: u64 = 50;
const ANSWER_LOST: u64 = 50;
/// Deliver invocations (and publishes) that die part way, per thousand.
const DEATHS: u64 = 150;

/// A shared, deterministic stream of dice rolls (per thousand).
#[derive(Debug, Clone, Default)]
struct Dice(Arc<AtomicU64>);

impl Dice {
    fn roll(&self) -> u64 {
        // splitmix64 of a counter: spread evenly, the same sequence on every run.
        let mut z = self
            .0
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % 1000
    }

    fn strikes(&self, per_thousand: u64) -> bool {
        self.roll() < per_thousand
    }
}

/// Fails a share of an SDK client's calls: some before they are sent (a throttle, a network
/// error), some after the service applied them (the answer is lost on the way back).
#[derive(Debug, Clone)]
struct FaultInjector {
    dice: Dice,
    injected: Arc<AtomicU64>,
}

impl Intercept for FaultInjector {
    fn name(&self) -> &'static str {
        "FaultInjector"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if self.dice.strikes(FAILED_BEFORE_SENDING) {
            self.injected.fetch_add(1, Ordering::Relaxed);
            return Err("injected fault: throttled before sending".into());
        }
        Ok(())
    }

    fn read_before_deserialization(
        &self,
        _context: &BeforeDeserializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if self.dice.strikes(ANSWER_LOST) {
            self.injected.fetch_add(1, Ordering::Relaxed);
            return Err("injected fault: applied, but the answer was lost".into());
        }
        Ok(())
    }
}

/// What the receiver saw: every (webhook, event) answered 2xx, and attempts per pair.
#[derive(Default)]
struct Received {
    delivered: HashSet<(String, String)>,
    attempts: HashMap<(String, String), u32>,
}

/// Webhook `n` of account `a` posts to `/w/{a}-{n}`. The first attempt of every fourth event fails with 503.
async fn receiver() -> (String, Arc<Mutex<Received>>) {
    let received = Arc::new(Mutex::new(Received::default()));
    async fn hook(
        State(received): State<Arc<Mutex<Received>>>,
        Path(webhook): Path<String>,
        body: String,
    ) -> StatusCode {
        let envelope: serde_json::Value = serde_json::from_str(&body).unwrap();
        let event_id = envelope["id"].as_str().unwrap().to_string();
        let seq: u64 = event_id.trim_start_matches("order-").parse().unwrap();
        let mut received = received.lock().unwrap();
        let attempts = received
            .attempts
            .entry((webhook.clone(), event_id.clone()))
            .or_default();
        *attempts += 1;
        if seq.is_multiple_of(4) && *attempts == 1 {
            return StatusCode::SERVICE_UNAVAILABLE;
        }
        received.delivered.insert((webhook, event_id));
        StatusCode::OK
    }
    let app = Router::new()
        .route("/w/{webhook}", post(hook))
        .with_state(received.clone());
    (common::serve_on_loopback(app).await, received)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum RetryTimer {
    Sweep,
    Schedules,
}

struct Stack {
    /// The functions' service: every call through the faulty clients.
    faulty: Service,
    /// The same table without faults: setup and checks.
    clean: Service,
    faulty_store: DynamoStore,
    clean_store: DynamoStore,
    /// The stream function's queue (it queues the fan-out), through the faulty client.
    faulty_queue: SqsQueue,
    stream: StreamPump,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    scheduler: aws_sdk_scheduler::Client,
    group: String,
    injected: Arc<AtomicU64>,
    dice: Dice,
}

async fn stack(timer: RetryTimer) -> Stack {
    let aws = emulator_config(&moto()).await;
    let dice = Dice::default();
    let injected = Arc::new(AtomicU64::new(0));
    let injector = FaultInjector {
        dice: dice.clone(),
        injected: injected.clone(),
    };
    // SDK retries off: every injected fault reaches Hookline's code.
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws);
    let faulty_dynamodb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&aws)
            .interceptor(injector.clone())
            .retry_config(RetryConfig::disabled())
            .build(),
    );
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let faulty_sqs = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::config::Builder::from(&aws)
            .interceptor(injector.clone())
            .retry_config(RetryConfig::disabled())
            .build(),
    );
    let scheduler = aws_sdk_scheduler::Client::new(&aws);
    let faulty_scheduler = aws_sdk_scheduler::Client::from_conf(
        aws_sdk_scheduler::config::Builder::from(&aws)
            .interceptor(injector)
            .retry_config(RetryConfig::disabled())
            .build(),
    );

    let table = unique("faults");
    ensure_table_with(&dynamodb, &table, true).await.unwrap();
    let stream = StreamPump::new(&aws, &dynamodb, &table).await;
    let dead_letter_url = sqs
        .create_queue()
        .queue_name(unique("deliveries-dlq"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let dead_letter_arn = sqs
        .get_queue_attributes()
        .queue_url(&dead_letter_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    let queue_url = sqs
        .create_queue()
        .queue_name(unique("deliveries"))
        // A message a dead invocation held comes back after 2 s.
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
            "2",
        )
        // After 3 receives (the stack: 5) a job goes to the DLQ, and the sweep sends it back.
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy,
            serde_json::json!({"deadLetterTargetArn": dead_letter_arn, "maxReceiveCount": "3"})
                .to_string(),
        )
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let group = unique("retries");
    scheduler
        .create_schedule_group()
        .name(&group)
        .send()
        .await
        .unwrap();
    let kms = aws_sdk_kms::Client::new(&aws);
    let kms_key_id = kms
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id;
    let ring = Arc::new(
        kms_key_ring(&dynamodb, &table, &kms, &kms_key_id)
            .await
            .unwrap(),
    );

    let mut config = Config::for_mode(Mode::Lambda);
    config.targets.allow_http = true;
    config.targets.allow_private_targets = true;
    config.retry_policy = RetryPolicy::parse("1s,1s,1s,1s,1s").unwrap();
    // Work nobody queued (a publish that died before its enqueue) is found by the sweep 15 s
    // on (120 s on a stack); a dead deliver invocation's messages come back from SQS.
    config.sweep_lease = Duration::from_secs(15);
    let sender = Arc::new(ReqwestSender::from_config(&config).unwrap());
    // As on Lambda: counters folded and the fan-out queued by the stream function.
    assert_eq!(config.fan_out_queue, FanOutQueue::Stream);
    let faulty_store = DynamoStore::new(faulty_dynamodb, table.clone(), 30)
        .with_counting(Counting::FromStream)
        .with_fan_out_queue(FanOutQueue::Stream);
    let clean_store = DynamoStore::new(dynamodb, table.clone(), 30)
        .with_counting(Counting::FromStream)
        .with_fan_out_queue(FanOutQueue::Stream);
    let queue = |sqs: aws_sdk_sqs::Client| {
        SqsQueue::new(sqs, queue_url.clone()).with_dead_letters(&dead_letter_url)
    };
    let retry_scheduler = |client: aws_sdk_scheduler::Client| -> Arc<dyn RetryScheduler> {
        match timer {
            RetryTimer::Sweep => Arc::new(SweepRetries),
            RetryTimer::Schedules => Arc::new(EventBridgeScheduler::new(
                client,
                &group,
                "arn:aws:lambda:us-east-1:123456789012:function:hookline-retry",
                "arn:aws:iam::123456789012:role/hookline-scheduler",
            )),
        }
    };
    let service =
        |store: &DynamoStore, sqs: aws_sdk_sqs::Client, scheduler: aws_sdk_scheduler::Client| {
            Service::new(
                Ports {
                    store: Arc::new(SealedStore::new(Arc::new(store.clone()), ring.clone())),
                    queue: Arc::new(queue(sqs)),
                    scheduler: retry_scheduler(scheduler),
                    clock: Arc::new(SystemClock),
                    sender: sender.clone(),
                },
                config.clone(),
            )
        };
    Stack {
        faulty_queue: queue(faulty_sqs.clone()),
        faulty: service(&faulty_store, faulty_sqs, faulty_scheduler),
        clean: service(&clean_store, sqs.clone(), scheduler.clone()),
        faulty_store,
        clean_store,
        stream,
        sqs,
        queue_url,
        scheduler,
        group,
        injected,
        dice,
    }
}

impl Stack {
    /// Publishes `events` to the account through the faulty api function, one at a time, as
    /// a careful client does: an event not answered as accepted (an error, a publish that
    /// died) is sent again with its id until it is.
    async fn publish_all(&self, account_id: &str, events: u64, webhooks: u64) {
        for seq in 0..events {
            for attempt in 0.. {
                assert!(attempt < 50, "event {seq} was never accepted");
                let publish = self.faulty.publish(NewEvent {
                    account_id: account_id.into(),
                    event_type: "reading.weight".into(),
                    payload: serde_json::value::to_raw_value(
                        &serde_json::json!({ "seq": seq, "kg": 81.5 }),
                    )
                    .unwrap(),
                    id: Some(format!("order-{seq}")),
                });
                let answer = if self.dice.strikes(DEATHS) {
                    // The api function dies part way: the client gets no answer.
                    let after = Duration::from_millis(self.dice.roll() % 40);
                    tokio::time::timeout(after, publish).await.ok()
                } else {
                    Some(publish.await)
                };
                match answer {
                    Some(Ok(published)) => {
                        assert_eq!(u64::from(published.deliveries), webhooks);
                        break;
                    }
                    Some(Err(error)) if attempt > 40 => eprintln!("publish {seq}: {error}"),
                    _ => {}
                }
            }
        }
    }

    /// One poll of Lambda's event source mapping: a batch of up to 10 messages to the deliver
    /// function, which may die part way; what it did not report done comes back after the
    /// visibility timeout. Returns whether there was a message.
    async fn deliver_batch(&self) -> bool {
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
            return false;
        }
        let receipts: HashMap<String, String> = messages
            .iter()
            .map(|m| {
                (
                    m.message_id.clone().unwrap(),
                    m.receipt_handle.clone().unwrap(),
                )
            })
            .collect();
        let mut event = SqsEvent::default();
        for m in messages {
            let mut record = aws_lambda_events::event::sqs::SqsMessage::default();
            record.message_id = m.message_id;
            record.receipt_handle = m.receipt_handle;
            record.body = m.body;
            event.records.push(record);
        }
        let invocation =
            hookline_fn_deliver::handle(&self.faulty, LambdaEvent::new(event, Context::default()));
        let response = if self.dice.strikes(DEATHS) {
            let after = Duration::from_millis(self.dice.roll() % 60);
            match tokio::time::timeout(after, invocation).await {
                Ok(response) => response.unwrap(),
                // Died: nothing is deleted.
                Err(_) => return true,
            }
        } else {
            invocation.await.unwrap()
        };
        let failed: HashSet<String> = response
            .batch_item_failures
            .into_iter()
            .map(|f| f.item_identifier)
            .collect();
        for (id, receipt) in receipts {
            if !failed.contains(&id) {
                // Refused when the handle is out of date (the batch outlived the visibility
                // timeout, so another poll holds the message, or SQS moved it to the DLQ):
                // the message is handled again, as with the event source mapping.
                let _ = self
                    .sqs
                    .delete_message()
                    .queue_url(&self.queue_url)
                    .receipt_handle(receipt)
                    .send()
                    .await;
            }
        }
        true
    }

    /// What EventBridge Scheduler does at each one-time schedule's time: invokes the retry
    /// function with its input, again after a failed invocation. Returns the names fired.
    async fn fire_due_schedules(&self, fired: &mut HashSet<String>) {
        let schedules = self
            .scheduler
            .list_schedules()
            .group_name(&self.group)
            .send()
            .await
            .unwrap();
        for summary in schedules.schedules() {
            let name = summary.name().unwrap().to_string();
            if fired.contains(&name) {
                continue;
            }
            let schedule = self
                .scheduler
                .get_schedule()
                .group_name(&self.group)
                .name(&name)
                .send()
                .await
                .unwrap();
            let expression = schedule.schedule_expression().unwrap();
            let at = chrono::NaiveDateTime::parse_from_str(
                expression.trim_start_matches("at(").trim_end_matches(')'),
                "%Y-%m-%dT%H:%M:%S",
            )
            .unwrap()
            .and_utc();
            if at > chrono::Utc::now() {
                continue;
            }
            let trigger: RetryTrigger =
                serde_json::from_str(schedule.target().unwrap().input().unwrap()).unwrap();
            if hookline_fn_retry::handle(
                &self.faulty,
                LambdaEvent::new(trigger, Context::default()),
            )
            .await
            .is_ok()
            {
                fired.insert(name);
            }
        }
    }
}

async fn everything_delivered_under_faults(timer: RetryTimer, accounts: &[(u64, u64)]) {
    let accounts: Vec<(u64, u64)> = accounts.iter().map(|(e, w)| (e * scale(), *w)).collect();
    let accounts = accounts.as_slice();
    // A guard against a hang, not a target: two runs at once on a busy machine took 13 minutes.
    let deadline = Duration::from_secs(1200 * scale());
    let mut stack = stack(timer).await;
    let (url, received) = receiver().await;
    let mut account_ids = Vec::new();
    for (a, (_, webhooks)) in accounts.iter().enumerate() {
        let account = stack
            .clean
            .create_account("Faulty Clinic")
            .await
            .unwrap()
            .account
            .id;
        for n in 0..*webhooks {
            stack
                .clean
                .create_webhook(
                    &account,
                    NewWebhook {
                        url: format!("{url}/w/{a}-{n}"),
                        event_type: Some("reading.weight".into()),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
        }
        account_ids.push(account);
    }
    let expected: u64 = accounts.iter().map(|(e, w)| e * w).sum();
    let started = Instant::now();
    for (account, (events, webhooks)) in account_ids.iter().zip(accounts) {
        stack.publish_all(account, *events, *webhooks).await;
    }
    eprintln!("published in {:?}", started.elapsed());

    let delivered_in_counts = async |stack: &Stack| {
        let mut delivered = 0;
        for account in &account_ids {
            delivered += stack.clean.status_counts(account).await.unwrap().delivered;
        }
        delivered
    };
    let mut fired = HashSet::new();
    let mut last_sweep = Instant::now();
    let mut sweeps = 0;
    loop {
        let at_receiver = received.lock().unwrap().delivered.len();
        assert!(
            started.elapsed() < deadline,
            "not everything delivered in {deadline:?}: {at_receiver} of {expected} at the receiver",
        );
        // Four concurrent polls, as the event source mapping scales out, for a few seconds.
        let mut idle = false;
        while !idle && last_sweep.elapsed() < Duration::from_secs(3) {
            let polled = futures::future::join_all((0..4).map(|_| stack.deliver_batch())).await;
            idle = !polled.contains(&true);
        }
        // The template's four recurring schedules each sweep a quarter of the due shards; here
        // they take turns. A failed sweep is simply the next one's work.
        let part = RetryTrigger::SweepPart {
            part: sweeps % SWEEP_PARTS,
            parts: SWEEP_PARTS,
        };
        sweeps += 1;
        let _ =
            hookline_fn_retry::handle(&stack.faulty, LambdaEvent::new(part, Context::default()))
                .await;
        last_sweep = Instant::now();
        if timer == RetryTimer::Schedules {
            stack.fire_due_schedules(&mut fired).await;
        }
        // The stream function: a failed batch is handed over again, as it was.
        let _ = stack
            .stream
            .pump(&stack.faulty_store, Some(&stack.faulty_queue), 1000)
            .await;
        // The counts (17 Queries an account) are read once the receiver has everything.
        let counted = if at_receiver as u64 == expected {
            delivered_in_counts(&stack).await
        } else {
            0
        };
        eprintln!(
            "{:?}: {at_receiver} at the receiver, {counted} counted delivered, {} faults",
            started.elapsed(),
            stack.injected.load(Ordering::Relaxed)
        );
        if idle && counted == expected {
            break;
        }
        if idle {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    // Settled: whatever the stream still holds is folded.
    while stack
        .stream
        .pump(&stack.faulty_store, Some(&stack.faulty_queue), 1000)
        .await
        .is_err()
    {}
    stack
        .stream
        .pump(&stack.clean_store, None, 1000)
        .await
        .unwrap();
    let injected = stack.injected.load(Ordering::Relaxed);
    assert!(injected > 50, "only {injected} faults were injected");

    // Every (webhook, event) reached the receiver with a 2xx ...
    assert_eq!(received.lock().unwrap().delivered.len() as u64, expected);
    for (account, (events, webhooks)) in account_ids.iter().zip(accounts) {
        // ... every delivery in the log is delivered, one per (webhook, event) ...
        let mut seen = HashSet::new();
        for page in 0.. {
            let query = DeliveryQuery {
                page,
                size: 100,
                ..Default::default()
            };
            let logs = stack.clean.list_logs(account, query).await.unwrap();
            for (delivery, _) in &logs.items {
                assert_eq!(delivery.status, DeliveryStatus::Delivered, "{delivery:?}");
                assert!(seen.insert((delivery.webhook_id.clone(), delivery.event_id.clone())));
            }
            if logs.items.len() < 100 {
                break;
            }
        }
        assert_eq!(seen.len() as u64, events * webhooks);
        // ... and the counts are exact: every change counted once, whatever was retried.
        assert_eq!(
            stack.clean.status_counts(account).await.unwrap(),
            StatusCounts {
                delivered: events * webhooks,
                ..Default::default()
            }
        );
    }
    eprintln!(
        "{expected} deliveries under {injected} injected faults in {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_is_lost_under_faults_with_retries_found_by_the_sweep() {
    everything_delivered_under_faults(RetryTimer::Sweep, MIXED).await;
}

/// Every retry is a schedule the test lists and fires.
#[tokio::test(flavor = "multi_thread")]
async fn nothing_is_lost_under_faults_with_a_schedule_per_retry() {
    everything_delivered_under_faults(RetryTimer::Schedules, MIXED).await;
}
