//! The Store port on DynamoDB (one table, see `table`). Every read is a GetItem, a
//! BatchGetItem or a Query on a key or index; nothing scans, except `delete_admin_keys`, which
//! only local mode calls, once (Lambda never stores an admin key).
//!
//! The port's four parts are implemented in `accounts`, `webhooks`, `deliveries` and `sweep`;
//! this file holds the store itself and the reads and writes they share.

mod accounts;
mod attempt_bodies;
mod context_cache;
mod counters;
mod deliveries;
mod fold;
mod jobs;

pub use fold::{CounterChange, counter_change, inserted_delivery_job};
mod logs;
mod planned;
pub use planned::{PlannedFanOut, inserted_planned_fan_out};
pub mod rate_limits;
mod sweep;
mod webhooks;

use crate::table::*;
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, Put, TransactWriteItem, Update};
use chrono::{DateTime, Utc};
use hookline_model::{
    Account, ApiKeyRecord, Delivery, DeliveryJob, DeliveryStatus, Event, EventTypeInfo, Job,
    StatusCounts, Webhook,
};
use hookline_service::ports::{
    AccountStore, AttemptRecord, DeliveryContext, DeliveryPage, DeliveryQuery, DeliveryStore,
    DueItem, MAX_ATOMIC_FAN_OUT, Page, PortResult, SweepStore, Walk, WebhookStore,
};
use hookline_service::{FanOutQueue, PortError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

type Item = HashMap<String, AttributeValue>;

#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
    /// How long events and deliveries are kept (DynamoDB TTL).
    retention: chrono::Duration,
    counting: Counting,
    /// Who queues new deliveries: when the stream does, they are not due for the sweep.
    fan_out_queue: FanOutQueue,
    /// Webhooks and accounts read by `load_delivery`, kept a few seconds (deliver on Lambda).
    context_cache: Option<std::sync::Arc<context_cache::ContextCache>>,
    /// Partition keys per account for events and deliveries: the table's own
    /// ([`crate::table::log_shards_of`]).
    log_shards: u32,
}

/// Who keeps the per-status counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counting {
    /// Every status change writes its counter in the same transaction (exact at once; each
    /// write of a delivery is then billed twice).
    InTransaction,
    /// A function on the table's stream folds status changes into the counters
    /// ([`DynamoStore::fold_counters`]); deliveries are written without transactions and
    /// the counts settle within seconds (Lambda).
    FromStream,
}

const KIND_ACCOUNT: &str = "account";
const KIND_KEY: &str = "key";
const KIND_KEY_REF: &str = "keyRef";
const KIND_ACCOUNT_ENTRY: &str = "accountEntry";
const KIND_EVENT_TYPE: &str = "eventType";
const KIND_WEBHOOK: &str = "webhook";
const KIND_EVENT: &str = "event";
const KIND_DELIVERY: &str = "delivery";
const KIND_ATTEMPT_BODY: &str = "attemptBody";
const KIND_COUNTER: &str = "counter";

pub(crate) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(crate) fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn key(pk: String, sk: String) -> Item {
    HashMap::from([(PK.to_string(), s(pk)), (SK.to_string(), s(sk))])
}

fn account_key(id: &str) -> Item {
    key(account_pk(id), "ACCOUNT".into())
}
fn api_key_key(hash: &str) -> Item {
    key(format!("KEY#{hash}"), "KEY".into())
}
fn webhook_key(account_id: &str, id: &str) -> Item {
    key(account_pk(account_id), format!("WH#{id}"))
}
fn names(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The due shard of an item, by a stable hash of its id.
fn due_shard(id: &str) -> AttributeValue {
    let hash = id
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32));
    s(format!("DUE#{}", hash % DUE_SHARDS))
}

fn to_item<T: Serialize>(value: &T, key: Item, kind: &str) -> PortResult<Item> {
    let mut item: Item =
        serde_dynamo::to_item(value).map_err(|e| PortError::new("encoding an item", e))?;
    item.extend(key);
    item.insert(KIND.into(), s(kind));
    Ok(item)
}

pub(super) fn item_kind(item: &Item) -> Option<&str> {
    item.get(KIND)
        .and_then(|k| k.as_s().ok())
        .map(String::as_str)
}

/// A delivery's context as `load_delivery` reads it: the delivery decoded (its state decides
/// what is read again), the rest as stored.
#[derive(Default)]
struct ContextItems {
    delivery: Option<Delivery>,
    event: Option<Item>,
    webhook: Option<Item>,
    account: Option<Item>,
}

impl ContextItems {
    fn fill(&mut self, items: Vec<Item>) -> PortResult<()> {
        for item in items {
            match item_kind(&item) {
                Some(KIND_DELIVERY) => self.delivery = Some(from_item(item)?),
                Some(KIND_EVENT) => self.event = Some(item),
                Some(KIND_WEBHOOK) => self.webhook = Some(item),
                Some(KIND_ACCOUNT) => self.account = Some(item),
                _ => {}
            }
        }
        Ok(())
    }
}

/// Whether an eventually consistent copy of a delivery is enough to send `job`: a new delivery
/// awaiting its first send. Its state moves only by an attempt, so a stale copy can only be
/// one a duplicate of this job has just moved on, and that duplicate's record refuses this
/// one's (a duplicate send, as at-least-once allows). Anything else (a retry, a manual retry's
/// new round, a finished delivery) is read again consistently: a stale copy of those could
/// send a retry early or skip a manual retry.
fn settled_by_eventual_read(delivery: &Delivery, job: &DeliveryJob) -> bool {
    // An ordered job is not: a refused record ends its message without a retry held in its
    // lane, and its order would be left to the sweep.
    job.round == 0
        && !job.ordered
        && delivery.status == DeliveryStatus::Pending
        && delivery.attempts_made() == 0
}

fn from_item<T: DeserializeOwned>(item: Item) -> PortResult<T> {
    serde_dynamo::from_item(item).map_err(|e| PortError::new("decoding an item", e))
}

fn sdk<E: std::error::Error + 'static>(context: &'static str) -> impl Fn(E) -> PortError {
    move |e| PortError::new(context, DisplayErrorContext(e))
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>, retention_days: u32) -> Self {
        Self {
            client,
            table: table.into(),
            retention: chrono::Duration::days(retention_days as i64),
            counting: Counting::InTransaction,
            fan_out_queue: FanOutQueue::Api,
            context_cache: None,
            log_shards: LOG_SHARDS,
        }
    }

    /// Spreads each account's events and deliveries over `shards` partition keys: what the
    /// table was laid out with ([`crate::table::log_shards_of`]; a new table's is
    /// [`LOG_SHARDS`]).
    pub fn with_log_shards(mut self, shards: u32) -> Self {
        self.log_shards = shards.max(1);
        self
    }

    /// The stored event with `event`'s id, after a publish's conditional write found one
    /// (idempotent publish: its deliveries are stored, or being completed). Its absence means
    /// the store is not as the write found it: `why` says how.
    async fn existing_event(&self, event: &Event, why: &str) -> PortResult<Event> {
        self.get_event(&event.account_id, &event.id)
            .await?
            .ok_or_else(|| PortError(format!("publishing {}: {why}", event.id)))
    }

    /// The item of a new event stored with its `deliveries` deliveries (fanned out, so never
    /// due), expiring with the log.
    fn fanned_out_event_item(&self, event: &Event, deliveries: usize) -> PortResult<Item> {
        let stored = Event {
            fanned_out: true,
            deliveries: deliveries as u32,
            ..event.clone()
        };
        let mut item = to_item(
            &stored,
            self.event_key(&event.account_id, &event.id),
            KIND_EVENT,
        )?;
        item.insert(EXPIRES_AT.into(), self.expires_at(event.created_at));
        Ok(item)
    }

    /// The ids of the deliveries stored under `keys` (their sort keys only).
    async fn stored_delivery_ids(
        &self,
        keys: Vec<Item>,
        consistent: bool,
    ) -> PortResult<HashSet<String>> {
        Ok(self
            .batch_get_with(keys, consistent, Some("sk"))
            .await?
            .iter()
            .filter_map(|item| {
                let sk = item.get(SK)?.as_s().ok()?;
                sk.strip_prefix("DLV#").map(String::from)
            })
            .collect())
    }

    pub fn log_shards(&self) -> u32 {
        self.log_shards
    }

    /// The log shard of an event or delivery id in this table.
    fn shard_of(&self, id: &str) -> u32 {
        log_shard(id, self.log_shards)
    }

    fn event_key(&self, account_id: &str, id: &str) -> Item {
        key(log_pk(account_id, self.shard_of(id)), format!("EVT#{id}"))
    }

    fn delivery_key(&self, account_id: &str, id: &str) -> Item {
        key(log_pk(account_id, self.shard_of(id)), format!("DLV#{id}"))
    }

    /// Leaves the counters to the table's stream (see [`Counting::FromStream`]).
    pub fn with_counting(mut self, counting: Counting) -> Self {
        self.counting = counting;
        self
    }

    /// Leaves new deliveries out of the due index when the stream function queues them
    /// ([`FanOutQueue::Stream`]; it must match the service's `Config::fan_out_queue`).
    pub fn with_fan_out_queue(mut self, fan_out_queue: FanOutQueue) -> Self {
        self.fan_out_queue = fan_out_queue;
        self
    }

    /// Keeps the webhook and account items `load_delivery` reads for `ttl`, so a delivery
    /// reads only its own item and its event while they are fresh. A change to a webhook or an
    /// account reaches deliveries within `ttl` (the deliver function: 5 s).
    pub fn with_context_cache(mut self, ttl: Duration) -> Self {
        self.context_cache = Some(std::sync::Arc::new(context_cache::ContextCache::new(ttl)));
        self
    }

    /// Keeps the webhooks and accounts among `items` in the context cache (deliver on Lambda).
    fn cached_context(&self, items: Vec<Item>) -> Vec<Item> {
        if let Some(cache) = &self.context_cache {
            for item in &items {
                if matches!(item_kind(item), Some(KIND_WEBHOOK | KIND_ACCOUNT)) {
                    cache.put(item);
                }
            }
        }
        items
    }

    fn forget_cached(&self, key: Item) {
        if let Some(cache) = &self.context_cache {
            cache.forget(&key);
        }
    }

    pub fn counting(&self) -> Counting {
        self.counting
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    fn expires_at(&self, from: DateTime<Utc>) -> AttributeValue {
        n((from + self.retention).timestamp())
    }

    async fn get(&self, key: Item) -> PortResult<Option<Item>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .send()
            .await
            .map_err(sdk("GetItem"))?;
        Ok(out.item)
    }

    async fn get_as<T: DeserializeOwned>(&self, key: Item) -> PortResult<Option<T>> {
        self.get(key).await?.map(from_item).transpose()
    }

    /// BatchGetItem over any number of keys, retrying unprocessed keys.
    async fn batch_get(&self, keys: Vec<Item>) -> PortResult<Vec<Item>> {
        self.batch_get_with(keys, false, None).await
    }

    /// BatchGetItem, strongly consistent when asked, of only `projection` when given.
    pub(crate) async fn batch_get_with(
        &self,
        keys: Vec<Item>,
        consistent: bool,
        projection: Option<&str>,
    ) -> PortResult<Vec<Item>> {
        let mut found = Vec::new();
        for chunk in keys.chunks(100) {
            let mut pending = Some(HashMap::from([(
                self.table.clone(),
                KeysAndAttributes::builder()
                    .set_keys(Some(chunk.to_vec()))
                    .consistent_read(consistent)
                    .set_projection_expression(projection.map(String::from))
                    .build()
                    .map_err(sdk("BatchGetItem"))?,
            )]));
            let mut backoff = Duration::from_millis(20);
            while let Some(request) = pending.take().filter(|r| !r.is_empty()) {
                let out = self
                    .client
                    .batch_get_item()
                    .set_request_items(Some(request))
                    .send()
                    .await
                    .map_err(sdk("BatchGetItem"))?;
                if let Some(mut responses) = out.responses {
                    found.extend(responses.remove(&self.table).unwrap_or_default());
                }
                pending = out.unprocessed_keys;
                if pending.as_ref().is_some_and(|p| !p.is_empty()) {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
        Ok(found)
    }

    /// Every item of a key condition, following pages.
    async fn query_all(
        &self,
        key_condition: &str,
        names: HashMap<String, String>,
        values: Item,
    ) -> PortResult<Vec<Item>> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression(key_condition)
                .set_expression_attribute_names(Some(names.clone()))
                .set_expression_attribute_values(Some(values.clone()))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(sdk("Query"))?;
            items.extend(out.items.unwrap_or_default());
            start = out.last_evaluated_key;
            if start.is_none() {
                return Ok(items);
            }
        }
    }

    /// Runs a transaction. Cancellations by a conflicting transaction are retried; a failed
    /// condition is reported.
    async fn transact(&self, items: Vec<TransactWriteItem>) -> PortResult<Tx> {
        let mut backoff = Duration::from_millis(10);
        for _ in 0..8 {
            // An idempotency token: when the SDK sends the request again after a lost answer,
            // DynamoDB answers as for the first, instead of failing the conditions the first
            // one's writes now break (which would read as a duplicate and skip what follows).
            let result = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .client_request_token(ulid::Ulid::new().to_string())
                .send()
                .await;
            let error = match result {
                Ok(_) => return Ok(Tx::Done),
                Err(e) => e,
            };
            let reasons: Option<Vec<Option<String>>> = match error.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) => Some(
                    cancelled
                        .cancellation_reasons()
                        .iter()
                        .map(|r| r.code().map(String::from))
                        .collect(),
                ),
                _ => None,
            };
            let Some(reasons) = reasons else {
                return Err(sdk("TransactWriteItems")(error));
            };
            let has = |wanted: &[&str]| {
                reasons
                    .iter()
                    .any(|code| code.as_deref().is_some_and(|c| wanted.contains(&c)))
            };
            if has(&["ConditionalCheckFailed"]) {
                return Ok(Tx::ConditionFailed);
            }

            if !has(&[
                "TransactionConflict",
                "ThrottlingError",
                "ProvisionedThroughputExceeded",
            ]) {
                return Err(PortError::new(
                    "TransactWriteItems cancelled",
                    format!("{reasons:?}"),
                ));
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(500));
        }
        Err(PortError(
            "TransactWriteItems: still conflicting after retries".into(),
        ))
    }

    /// One page of an offset-paged list under `pk` whose sort keys start with `prefix`,
    /// oldest first.
    async fn query_prefix_page(
        &self,
        pk: String,
        prefix: &str,
        page: u32,
        size: u32,
    ) -> PortResult<Vec<Item>> {
        let skip = page as usize * size as usize;
        let mut seen = 0usize;
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_names("#sk", SK)
                .expression_attribute_values(":pk", s(pk.as_str()))
                .expression_attribute_values(":prefix", s(prefix))
                .limit((skip + size as usize - seen).clamp(1, 1000) as i32)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(sdk("Query"))?;
            for item in out.items.unwrap_or_default() {
                if seen >= skip {
                    items.push(item);
                }
                seen += 1;
            }
            start = out.last_evaluated_key;
            if start.is_none() || items.len() >= size as usize {
                items.truncate(size as usize);
                return Ok(items);
            }
        }
    }
}

/// How a transaction ended when it did not fail outright.
pub(crate) enum Tx {
    Done,
    /// An action's condition failed; nothing was written.
    ConditionFailed,
}

fn put_action(table: &str, item: Item, condition: Option<&str>) -> PortResult<TransactWriteItem> {
    Ok(TransactWriteItem::builder()
        .put(
            Put::builder()
                .table_name(table)
                .set_item(Some(item))
                .set_condition_expression(condition.map(String::from))
                .build()
                .map_err(sdk("TransactWriteItems"))?,
        )
        .build())
}

/// Sends an update built for a transaction as a plain UpdateItem (billed once, not twice);
/// false when its condition failed.
async fn send_update(store: &DynamoStore, update: Update) -> PortResult<bool> {
    let result = store
        .client
        .update_item()
        .table_name(update.table_name())
        .set_key(Some(update.key().clone()))
        .update_expression(update.update_expression())
        .set_condition_expression(update.condition_expression().map(String::from))
        .set_expression_attribute_names(update.expression_attribute_names().cloned())
        .set_expression_attribute_values(update.expression_attribute_values().cloned())
        .send()
        .await;
    written(result, "UpdateItem")
}

fn number_of(item: &Item, name: &str) -> u64 {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse::<i64>().ok())
        .map_or(0, |v| v.max(0) as u64)
}

pub(crate) fn is_conditional_failure<E, R>(error: &aws_sdk_dynamodb::error::SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    error.as_service_error().and_then(|e| e.code()) == Some("ConditionalCheckFailedException")
}

/// A conditional write's result: whether it was written (false when its condition failed).
fn written<T, E, R>(
    result: Result<T, aws_sdk_dynamodb::error::SdkError<E, R>>,
    operation: &'static str,
) -> PortResult<bool>
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    match result {
        Ok(_) => Ok(true),
        Err(e) if is_conditional_failure(&e) => Ok(false),
        Err(e) => Err(sdk(operation)(e)),
    }
}

fn job_of(item: &Item) -> Option<DeliveryJob> {
    let get = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
    Some(DeliveryJob {
        account_id: get("accountId")?,
        delivery_id: get("id")?,
        event_id: get("eventId")?,
        webhook_id: get("webhookId")?,
        not_before: None,
        ordered: false,
        round: 0,
    })
}
