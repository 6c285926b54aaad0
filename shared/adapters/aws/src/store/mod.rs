//! The Store port on DynamoDB (one table, see `table`). Every read is a GetItem, a
//! BatchGetItem or a Query on a key or index; nothing scans, except `delete_admin_keys`, which
//! only local mode calls, once (Lambda never stores an admin key).

mod accounts;
mod attempt_bodies;
mod context_cache;
mod counters;
mod fold;
mod jobs;

pub use fold::{CounterChange, counter_change, inserted_delivery_job};
mod logs;
mod planned;
pub use planned::{PlannedFanOut, inserted_planned_fan_out};
pub mod rate_limits;
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
    AttemptRecord, DeliveryContext, DeliveryPage, DeliveryQuery, DueItem, MAX_ATOMIC_FAN_OUT, Page,
    PortResult, Store, Walk,
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

impl DynamoStore {
    /// Up to `limit` items of one due shard whose sweep time is at or before `before`, with
    /// their sweep times.
    async fn due_in_shard(
        &self,
        shard: u32,
        before: DateTime<Utc>,
        limit: usize,
    ) -> PortResult<Vec<(i64, DueItem)>> {
        let mut found = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(DUE_INDEX)
                .key_condition_expression("#shard = :shard AND #due <= :before")
                .expression_attribute_names("#shard", DUE_SHARD)
                .expression_attribute_names("#due", DUE_AT)
                .expression_attribute_values(":shard", s(format!("DUE#{shard}")))
                .expression_attribute_values(":before", n(before.timestamp_millis()))
                // Read no more than a page needs: a backlog is read once, not once per page.
                .limit((limit - found.len()).clamp(1, 1000) as i32)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(sdk("Query"))?;
            for item in out.items.unwrap_or_default() {
                let due_at = item
                    .get(DUE_AT)
                    .and_then(|v| v.as_n().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let due = match item_kind(&item) {
                    Some(KIND_EVENT) => item
                        .get("accountId")
                        .zip(item.get("id"))
                        .and_then(|(a, i)| Some((a.as_s().ok()?.clone(), i.as_s().ok()?.clone())))
                        .map(|(account_id, event_id)| DueItem::FanOut {
                            account_id,
                            event_id,
                        }),
                    Some(KIND_DELIVERY) => job_of(&item).map(|job| DueItem::Delivery {
                        job,
                        next_attempt_at: item
                            .get("nextAttemptAt")
                            .and_then(|v| v.as_s().ok())
                            .and_then(|v| DateTime::parse_from_rfc3339(v).ok())
                            .map(|t| t.with_timezone(&Utc)),
                    }),
                    _ if jobs::is_job(&item) => jobs::due_job(&item),
                    _ => None,
                };
                if let Some(due) = due {
                    found.push((due_at, due));
                }
            }
            start = out.last_evaluated_key;
            if start.is_none() || found.len() >= limit {
                return Ok(found);
            }
        }
    }

    /// The items due at `before` in `shards`, oldest first, at most `limit`.
    async fn due_in_shards(
        &self,
        shards: Vec<u32>,
        before: DateTime<Utc>,
        limit: usize,
    ) -> PortResult<Vec<DueItem>> {
        if shards.is_empty() {
            return Ok(Vec::new());
        }
        use futures::stream::StreamExt;
        // The hash spreads items evenly, so twice a shard's share of the page (at least 50)
        // fills it; a shard holding more than that keeps the rest for the next page or sweep.
        let per_shard = (limit.saturating_mul(2) / shards.len()).max(50);
        let count = shards.len();
        let read: Vec<PortResult<Vec<(i64, DueItem)>>> = futures::stream::iter(shards)
            .map(|shard| self.due_in_shard(shard, before, per_shard))
            .buffer_unordered(32)
            .collect()
            .await;
        // A shard that cannot be read now (throttled) is read by the next sweep; failing the
        // whole sweep for it would leave the others unswept too.
        let mut found: Vec<(i64, DueItem)> = Vec::new();
        let mut unread = Vec::new();
        for shard in read {
            match shard {
                Ok(items) => found.extend(items),
                Err(error) => unread.push(error),
            }
        }
        if unread.len() == count {
            return Err(unread.swap_remove(0));
        }
        if let Some(error) = unread.first() {
            tracing::warn!(shards = unread.len(), %error, "due shards left for the next sweep");
        }
        found.sort_by_key(|(at, _)| *at);
        let mut page: Vec<DueItem> = found
            .into_iter()
            .take(limit)
            .map(|(_, item)| item)
            .collect();
        if let Err(error) = self.mark_ordered(&mut page).await {
            // Not known to be unordered, so not sent as such: left for the next sweep.
            tracing::warn!(%error, "due deliveries left for the next sweep");
            page.retain(|item| !matches!(item, DueItem::Delivery { .. }));
        }
        Ok(page)
    }

    /// Sets `ordered` on the jobs of due deliveries made for ordered webhooks. The due index
    /// does not project the flag (CloudFormation cannot change an index's projection in
    /// place, so a stack deployed before ordered delivery could not be updated): it is read
    /// from the deliveries themselves, one eventually consistent BatchGetItem per 100 (half a
    /// read unit each), only for the few deliveries a sweep finds.
    async fn mark_ordered(&self, page: &mut [DueItem]) -> PortResult<()> {
        let keys: Vec<Item> = page
            .iter()
            .filter_map(|item| match item {
                DueItem::Delivery { job, .. } => {
                    Some(self.delivery_key(&job.account_id, &job.delivery_id))
                }
                _ => None,
            })
            .collect();
        if keys.is_empty() {
            return Ok(());
        }
        let ordered: HashSet<String> = self
            .batch_get_with(keys, false, Some("id, ordered"))
            .await?
            .into_iter()
            .filter(|item| item.get("ordered").and_then(|v| v.as_bool().ok()) == Some(&true))
            .filter_map(|item| item.get("id").and_then(|v| v.as_s().ok()).cloned())
            .collect();
        for item in page.iter_mut() {
            if let DueItem::Delivery { job, .. } = item {
                job.ordered = ordered.contains(&job.delivery_id);
            }
        }
        Ok(())
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

#[async_trait]
impl Store for DynamoStore {
    async fn insert_account(&self, account: &Account, key: &ApiKeyRecord) -> PortResult<()> {
        accounts::insert_account(self, account, key).await
    }

    async fn get_account(&self, account_id: &str) -> PortResult<Option<Account>> {
        self.get_as(account_key(account_id)).await
    }

    async fn list_accounts(&self, page: u32, size: u32) -> PortResult<Page<Account>> {
        accounts::list_accounts(self, page, size).await
    }

    async fn set_account_secret(&self, account_id: &str, secret: Option<&str>) -> PortResult<bool> {
        accounts::set_account_secret(self, account_id, secret).await
    }

    async fn insert_api_key(&self, key: &ApiKeyRecord) -> PortResult<()> {
        accounts::insert_api_key(self, key).await
    }

    async fn find_api_key(&self, key_hash: &str) -> PortResult<Option<ApiKeyRecord>> {
        self.get_as(api_key_key(key_hash)).await
    }

    async fn list_api_keys(&self, account_id: &str) -> PortResult<Vec<ApiKeyRecord>> {
        accounts::list_api_keys(self, account_id).await
    }

    async fn delete_api_key(&self, account_id: &str, key_id: &str) -> PortResult<bool> {
        accounts::delete_api_key(self, account_id, key_id).await
    }

    async fn delete_admin_keys(&self) -> PortResult<u32> {
        accounts::delete_admin_keys(self).await
    }

    async fn insert_event_type(&self, event_type: &EventTypeInfo) -> PortResult<bool> {
        accounts::insert_event_type(self, event_type).await
    }

    async fn list_event_types(&self) -> PortResult<Vec<EventTypeInfo>> {
        accounts::list_event_types(self).await
    }

    async fn get_event_type(&self, name: &str) -> PortResult<Option<EventTypeInfo>> {
        self.get_as(accounts::event_type_key(name)).await
    }

    async fn insert_webhook(&self, webhook: &Webhook, max_per_account: u32) -> PortResult<bool> {
        webhooks::insert_webhook(self, webhook, max_per_account).await
    }

    async fn update_webhook(&self, webhook: &Webhook) -> PortResult<bool> {
        // Written or lost to a newer version: either way the cached copy is old (forgotten
        // after the write too, in case a delivery read the old one back in meanwhile).
        let key = || webhook_key(&webhook.account_id, &webhook.id);
        self.forget_cached(key());
        let written = webhooks::update_webhook(self, webhook).await;
        self.forget_cached(key());
        written
    }

    async fn deactivate_webhook(
        &self,
        account_id: &str,
        webhook_id: &str,
        at: DateTime<Utc>,
    ) -> PortResult<bool> {
        self.forget_cached(webhook_key(account_id, webhook_id));
        webhooks::deactivate_webhook(self, account_id, webhook_id, at).await
    }

    async fn delete_webhook(
        &self,
        account_id: &str,
        webhook_id: &str,
    ) -> PortResult<Option<Webhook>> {
        webhooks::delete_webhook(self, account_id, webhook_id).await
    }

    async fn get_webhook(&self, account_id: &str, webhook_id: &str) -> PortResult<Option<Webhook>> {
        // Strongly consistent: a read before a write over its version (a PATCH, a health
        // write, a switch-off) sees the last write.
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(webhook_key(account_id, webhook_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk("GetItem"))?;
        out.item.map(from_item).transpose()
    }

    async fn list_webhooks(&self, account_id: &str) -> PortResult<Vec<Webhook>> {
        self.query_all(
            "#pk = :pk AND begins_with(#sk, :prefix)",
            names(&[("#pk", PK), ("#sk", SK)]),
            HashMap::from([
                (":pk".into(), s(account_pk(account_id))),
                (":prefix".into(), s("WH#")),
            ]),
        )
        .await?
        .into_iter()
        .map(from_item)
        .collect()
    }

    async fn list_webhooks_page(
        &self,
        account_id: &str,
        page: u32,
        size: u32,
    ) -> PortResult<Page<Webhook>> {
        webhooks::list_webhooks_page(self, account_id, page, size).await
    }

    async fn insert_event(
        &self,
        event: &Event,
        sweep_at: DateTime<Utc>,
    ) -> PortResult<Option<Event>> {
        let mut item = to_item(
            event,
            self.event_key(&event.account_id, &event.id),
            KIND_EVENT,
        )?;
        item.insert(DUE_SHARD.into(), due_shard(&event.id));
        item.insert(DUE_AT.into(), n(sweep_at.timestamp_millis()));
        item.insert(EXPIRES_AT.into(), self.expires_at(event.created_at));
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match put {
            Ok(_) => Ok(None),
            Err(e) if is_conditional_failure(&e) => {
                self.get_event(&event.account_id, &event.id).await
            }
            Err(e) => Err(sdk("PutItem")(e)),
        }
    }

    /// With counters in the transaction, one transaction is what keeps them exact. Folded from
    /// the stream, a transaction of n deliveries bills 2(n + 1) write units against n + 4 for
    /// the event put as due, n plain puts and the event marked finished (its `due` entry a put
    /// and a delete): from three deliveries on, the separate writes cost less.
    ///
    /// With the fan-out queued by the stream as well, a small fan-out is stored as planned
    /// (`planned`): n + 1 write units, and its plan on the event stays small up to ten.
    fn max_atomic_fan_out(&self) -> usize {
        match self.counting {
            Counting::InTransaction => MAX_ATOMIC_FAN_OUT,
            Counting::FromStream if self.plans_fan_outs() => planned::MAX_PLANNED_FAN_OUT,
            Counting::FromStream => 2,
        }
    }

    async fn insert_event_with_deliveries(
        &self,
        event: &Event,
        deliveries: &[Delivery],
        sweep_at: DateTime<Utc>,
    ) -> PortResult<Option<Event>> {
        if self.plans_fan_outs() {
            return self.insert_planned(event, deliveries, sweep_at).await;
        }
        // Fanned out already, so never in the due index; its deliveries are.
        let item = self.fanned_out_event_item(event, deliveries.len())?;
        let mut actions = vec![put_action(
            &self.table,
            item,
            Some("attribute_not_exists(pk)"),
        )?];
        let deliveries: Vec<&Delivery> = deliveries.iter().collect();
        actions.extend(self.insert_counted_actions(&deliveries, sweep_at)?);
        match self.transact(actions).await? {
            Tx::Done => Ok(None),
            // Delivery ids derive from the event id: only an existing event fails this.
            Tx::ConditionFailed => match self.get_event(&event.account_id, &event.id).await? {
                Some(existing) => Ok(Some(existing)),
                None => Err(PortError(format!(
                    "publishing {}: a delivery exists without its event",
                    event.id
                ))),
            },
        }
    }

    async fn get_event(&self, account_id: &str, event_id: &str) -> PortResult<Option<Event>> {
        self.get_as(self.event_key(account_id, event_id)).await
    }

    async fn get_events(&self, account_id: &str, event_ids: &[String]) -> PortResult<Vec<Event>> {
        let keys = event_ids
            .iter()
            .map(|id| self.event_key(account_id, id))
            .collect();
        self.batch_get(keys)
            .await?
            .into_iter()
            .map(from_item)
            .collect()
    }

    async fn insert_deliveries(
        &self,
        _event: &Event,
        deliveries: &[Delivery],
        sweep_at: DateTime<Utc>,
    ) -> PortResult<Vec<bool>> {
        counters::insert_deliveries(self, deliveries, sweep_at).await
    }

    async fn finish_fan_out(&self, event: &Event, deliveries: u32) -> PortResult<()> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(self.event_key(&event.account_id, &event.id)))
            .update_expression("SET fannedOut = :true, deliveries = :count REMOVE dueShard, dueAt")
            .expression_attribute_values(":true", AttributeValue::Bool(true))
            .expression_attribute_values(":count", n(deliveries as i64))
            .send()
            .await
            .map_err(sdk("UpdateItem"))?;
        Ok(())
    }

    async fn load_delivery(&self, job: &DeliveryJob) -> PortResult<Option<DeliveryContext>> {
        // The delivery and its event eventually consistently first (half the read units),
        // then consistently whatever that read cannot settle: an item it did not find (a job
        // is queued right after its delivery is written, and a replica may not have it yet)
        // or a delivery past its first attempt (its state moves; a stale copy would send a
        // retry early or a finished delivery again). A new delivery's first send, the
        // commonest read, is settled by the first read alone. An event never changes once
        // stored. Webhook and account come from the cache while fresh, else consistently, at
        // the same time: a stale webhook could fail a delivery for good (inactive a moment
        // ago) or be sent to after its 410, and then be kept for the cache's time to live.
        let delivery_key = self.delivery_key(&job.account_id, &job.delivery_id);
        let event_key = self.event_key(&job.account_id, &job.event_id);
        let webhook_key = webhook_key(&job.account_id, &job.webhook_id);
        let account_key = account_key(&job.account_id);
        let cached = |key: &Item| self.context_cache.as_ref().and_then(|c| c.get(key));
        let mut fills = Vec::new();
        if let Some(cache) = &self.context_cache {
            let missing: Vec<&Item> = [&webhook_key, &account_key]
                .into_iter()
                .filter(|key| cache.get(key).is_none())
                .collect();
            fills = cache.fill_guards(&missing).await;
        }
        let mut context = ContextItems {
            webhook: cached(&webhook_key),
            account: cached(&account_key),
            ..Default::default()
        };
        let uncached: Vec<Item> = [
            (&webhook_key, context.webhook.is_some()),
            (&account_key, context.account.is_some()),
        ]
        .into_iter()
        .filter(|(_, found)| !found)
        .map(|(key, _)| key.clone())
        .collect();
        let (eventual, consistent) = tokio::join!(
            self.batch_get_with(vec![delivery_key.clone(), event_key.clone()], false, None),
            async {
                if uncached.is_empty() {
                    Ok(Vec::new())
                } else {
                    self.batch_get_with(uncached, true, None).await
                }
            }
        );
        context.fill(eventual?)?;
        context.fill(self.cached_context(consistent?))?;
        // Cached now: the jobs waiting on these keys read them there.
        drop(fills);
        let mut unsettled = Vec::new();
        if !context
            .delivery
            .as_ref()
            .is_some_and(|d| settled_by_eventual_read(d, job))
        {
            // What the consistent read finds replaces the eventual copy, found or not.
            context.delivery = None;
            unsettled.push(delivery_key);
        }
        if context.event.is_none() {
            unsettled.push(event_key);
        }
        if !unsettled.is_empty() {
            let items = self.batch_get_with(unsettled, true, None).await?;
            context.fill(items)?;
        }
        let ContextItems {
            delivery,
            event,
            webhook,
            account,
        } = context;
        Ok(delivery
            .filter(|d| d.event_id == job.event_id && d.webhook_id == job.webhook_id)
            .map(|delivery| -> PortResult<DeliveryContext> {
                Ok(DeliveryContext {
                    delivery,
                    event: event.map(from_item).transpose()?,
                    webhook: webhook.map(from_item).transpose()?,
                    account: account.map(from_item).transpose()?,
                })
            })
            .transpose()?)
    }

    async fn record_attempt(
        &self,
        delivery: &Delivery,
        record: &AttemptRecord,
    ) -> PortResult<bool> {
        if record.deactivates_webhook {
            self.forget_cached(webhook_key(&delivery.account_id, &delivery.webhook_id));
        }
        counters::record_attempts(self, &[(delivery, record)])
            .await
            .remove(0)
    }

    async fn record_attempts(&self, batch: &[(Delivery, AttemptRecord)]) -> Vec<PortResult<bool>> {
        // A 410 deactivates the webhook: the next delivery here must see it.
        for (delivery, record) in batch {
            if record.deactivates_webhook {
                self.forget_cached(webhook_key(&delivery.account_id, &delivery.webhook_id));
            }
        }
        let batch: Vec<(&Delivery, &AttemptRecord)> = batch.iter().map(|(d, r)| (d, r)).collect();
        counters::record_attempts(self, &batch).await
    }

    async fn requeue_delivery(
        &self,
        delivery: &Delivery,
        sweep_at: DateTime<Utc>,
    ) -> PortResult<bool> {
        counters::requeue_delivery(self, delivery, sweep_at).await
    }

    async fn list_deliveries(
        &self,
        account_id: &str,
        query: &DeliveryQuery,
    ) -> PortResult<DeliveryPage> {
        logs::list_deliveries(self, account_id, query).await
    }

    async fn first_deliveries(
        &self,
        account_id: &str,
        query: &DeliveryQuery,
    ) -> PortResult<Vec<Delivery>> {
        logs::first_deliveries(self, account_id, query).await
    }

    async fn status_counts(&self, account_id: &str) -> PortResult<StatusCounts> {
        counters::status_counts(self, account_id).await
    }

    async fn get_delivery(
        &self,
        account_id: &str,
        delivery_id: &str,
    ) -> PortResult<Option<Delivery>> {
        let Some(mut delivery) = self
            .get_as::<Delivery>(self.delivery_key(account_id, delivery_id))
            .await?
        else {
            return Ok(None);
        };
        attempt_bodies::attach(self, &mut delivery).await?;
        Ok(Some(delivery))
    }

    async fn due(&self, before: DateTime<Utc>, limit: usize) -> PortResult<Vec<DueItem>> {
        self.due_in_shards((0..DUE_SHARDS).collect(), before, limit)
            .await
    }

    async fn due_in_part(
        &self,
        before: DateTime<Utc>,
        limit: usize,
        part: u32,
        parts: u32,
    ) -> PortResult<Vec<DueItem>> {
        let shards = (0..DUE_SHARDS)
            .filter(|shard| shard % parts.max(1) == part)
            .collect();
        self.due_in_shards(shards, before, limit).await
    }

    async fn walk_deliveries(
        &self,
        account_id: &str,
        query: &DeliveryQuery,
        cursor: Option<&str>,
        limit: u32,
    ) -> PortResult<Walk<Delivery>> {
        jobs::walk_deliveries(self, account_id, query, cursor, limit).await
    }

    async fn walk_events(
        &self,
        account_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        cursor: Option<&str>,
        limit: u32,
    ) -> PortResult<Walk<Event>> {
        jobs::walk_events(self, account_id, from, to, cursor, limit).await
    }

    async fn insert_job(&self, job: &Job, sweep_at: DateTime<Utc>) -> PortResult<()> {
        jobs::insert_job(self, job, sweep_at).await
    }

    async fn get_job(&self, account_id: &str, job_id: &str) -> PortResult<Option<Job>> {
        jobs::get_job(self, account_id, job_id).await
    }

    async fn update_job(&self, job: &Job, sweep_at: Option<DateTime<Utc>>) -> PortResult<bool> {
        jobs::update_job(self, job, sweep_at).await
    }

    async fn postpone(&self, item: &DueItem, until: DateTime<Utc>) -> PortResult<()> {
        let key = match item {
            DueItem::FanOut {
                account_id,
                event_id,
            } => self.event_key(account_id, event_id),
            DueItem::Delivery { job, .. } => self.delivery_key(&job.account_id, &job.delivery_id),
            DueItem::Job { account_id, job_id } => jobs::job_key(account_id, job_id),
        };
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .update_expression("SET dueAt = :until")
            // Never put a finished item back into the due index.
            .condition_expression("attribute_exists(dueShard)")
            .expression_attribute_values(":until", n(until.timestamp_millis()))
            .send()
            .await;
        match result {
            Err(e) if is_conditional_failure(&e) => Ok(()),
            other => other.map(|_| ()).map_err(sdk("UpdateItem")),
        }
    }
}
