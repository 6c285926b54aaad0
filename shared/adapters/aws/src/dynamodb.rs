//! The Store port on DynamoDB (one table, see `table`). Every read is a GetItem, a
//! BatchGetItem or a Query on a key or index; nothing scans.

use crate::table::*;
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::{
    AttributeValue, KeysAndAttributes, PutRequest, Select, WriteRequest,
};
use chrono::{DateTime, Utc};
use hookline_model::{Account, ApiKeyRecord, Delivery, DeliveryJob, Event, Webhook, ids};
use hookline_service::PortError;
use hookline_service::ports::{
    AttemptRecord, DeliveryContext, DeliveryPage, DeliveryQuery, DueItem, PortResult, Store,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::time::Duration;

type Item = HashMap<String, AttributeValue>;

#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
    /// How long events and deliveries are kept (DynamoDB TTL).
    retention: chrono::Duration,
}

const KIND_ACCOUNT: &str = "account";
const KIND_KEY: &str = "key";
const KIND_WEBHOOK: &str = "webhook";
const KIND_EVENT: &str = "event";
const KIND_DELIVERY: &str = "delivery";

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: i64) -> AttributeValue {
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
fn event_key(account_id: &str, id: &str) -> Item {
    key(account_pk(account_id), format!("EVT#{id}"))
}
fn delivery_key(account_id: &str, id: &str) -> Item {
    key(account_pk(account_id), format!("DLV#{id}"))
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
        }
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

    async fn put(&self, item: Item) -> PortResult<()> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(sdk("PutItem"))?;
        Ok(())
    }

    /// BatchGetItem over any number of keys, retrying unprocessed keys.
    async fn batch_get(&self, keys: Vec<Item>) -> PortResult<Vec<Item>> {
        let mut found = Vec::new();
        for chunk in keys.chunks(100) {
            let mut pending = Some(HashMap::from([(
                self.table.clone(),
                KeysAndAttributes::builder()
                    .set_keys(Some(chunk.to_vec()))
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

    /// BatchWriteItem of puts, retrying unprocessed items.
    async fn batch_put(&self, items: Vec<Item>) -> PortResult<()> {
        for chunk in items.chunks(25) {
            let mut requests: Vec<WriteRequest> = chunk
                .iter()
                .map(|item| {
                    Ok(WriteRequest::builder()
                        .put_request(
                            PutRequest::builder()
                                .set_item(Some(item.clone()))
                                .build()
                                .map_err(sdk("BatchWriteItem"))?,
                        )
                        .build())
                })
                .collect::<PortResult<_>>()?;
            let mut backoff = Duration::from_millis(20);
            while !requests.is_empty() {
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, requests)
                    .send()
                    .await
                    .map_err(sdk("BatchWriteItem"))?;
                requests = out
                    .unprocessed_items
                    .and_then(|mut u| u.remove(&self.table))
                    .unwrap_or_default();
                if !requests.is_empty() {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
        Ok(())
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

    /// The key condition, filter, names and values of a delivery-log query.
    fn log_query_parts(
        account_id: &str,
        query: &DeliveryQuery,
    ) -> (String, Option<String>, HashMap<String, String>, Item) {
        let (low, high) = ids::id_bounds(ids::DELIVERY, query.created_from, query.created_to);
        let mut names = HashMap::from([
            ("#pk".to_string(), PK.to_string()),
            ("#sk".to_string(), SK.to_string()),
        ]);
        let mut values = HashMap::from([
            (":pk".to_string(), s(account_pk(account_id))),
            (":low".to_string(), s(format!("DLV#{low}"))),
            (":high".to_string(), s(format!("DLV#{high}"))),
        ]);
        let mut filters = Vec::new();
        if let Some(webhook_id) = &query.webhook_id {
            names.insert("#wh".into(), "webhookId".into());
            values.insert(":wh".into(), s(webhook_id.as_str()));
            filters.push("#wh = :wh");
        }
        if let Some(event_type) = &query.event_type {
            names.insert("#type".into(), "eventType".into());
            values.insert(":type".into(), s(event_type.as_str()));
            filters.push("#type = :type");
        }
        if let Some(status) = query.status {
            names.insert("#status".into(), "status".into());
            values.insert(":status".into(), s(status.as_str()));
            filters.push("#status = :status");
        }
        let filter = (!filters.is_empty()).then(|| filters.join(" AND "));
        (
            "#pk = :pk AND #sk BETWEEN :low AND :high".to_string(),
            filter,
            names,
            values,
        )
    }
}

fn is_conditional_failure<E, R>(error: &aws_sdk_dynamodb::error::SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    error.as_service_error().and_then(|e| e.code()) == Some("ConditionalCheckFailedException")
}

fn job_of(item: &Item) -> Option<DeliveryJob> {
    let get = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
    Some(DeliveryJob {
        account_id: get("accountId")?,
        delivery_id: get("id")?,
        event_id: get("eventId")?,
        webhook_id: get("webhookId")?,
    })
}

#[async_trait]
impl Store for DynamoStore {
    async fn insert_account(&self, account: &Account, key: &ApiKeyRecord) -> PortResult<()> {
        use aws_sdk_dynamodb::types::{Put, TransactWriteItem};
        let put = |item: Item| -> PortResult<TransactWriteItem> {
            Ok(TransactWriteItem::builder()
                .put(
                    Put::builder()
                        .table_name(&self.table)
                        .set_item(Some(item))
                        .condition_expression("attribute_not_exists(pk)")
                        .build()
                        .map_err(sdk("TransactWriteItems"))?,
                )
                .build())
        };
        self.client
            .transact_write_items()
            .transact_items(put(to_item(
                account,
                account_key(&account.id),
                KIND_ACCOUNT,
            )?)?)
            .transact_items(put(to_item(key, api_key_key(&key.key_hash), KIND_KEY)?)?)
            .send()
            .await
            .map_err(sdk("TransactWriteItems"))?;
        Ok(())
    }

    async fn get_account(&self, account_id: &str) -> PortResult<Option<Account>> {
        self.get_as(account_key(account_id)).await
    }

    async fn insert_api_key(&self, key: &ApiKeyRecord) -> PortResult<()> {
        self.put(to_item(key, api_key_key(&key.key_hash), KIND_KEY)?)
            .await
    }

    async fn find_api_key(&self, key_hash: &str) -> PortResult<Option<ApiKeyRecord>> {
        self.get_as(api_key_key(key_hash)).await
    }

    async fn put_webhook(&self, webhook: &Webhook) -> PortResult<()> {
        self.put(to_item(
            webhook,
            webhook_key(&webhook.account_id, &webhook.id),
            KIND_WEBHOOK,
        )?)
        .await
    }

    async fn get_webhook(&self, account_id: &str, webhook_id: &str) -> PortResult<Option<Webhook>> {
        self.get_as(webhook_key(account_id, webhook_id)).await
    }

    async fn list_webhooks(&self, account_id: &str) -> PortResult<Vec<Webhook>> {
        self.query_all(
            "#pk = :pk AND begins_with(#sk, :prefix)",
            HashMap::from([("#pk".into(), PK.into()), ("#sk".into(), SK.into())]),
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

    async fn insert_event(
        &self,
        event: &Event,
        sweep_at: DateTime<Utc>,
    ) -> PortResult<Option<Event>> {
        let mut item = to_item(event, event_key(&event.account_id, &event.id), KIND_EVENT)?;
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

    async fn get_event(&self, account_id: &str, event_id: &str) -> PortResult<Option<Event>> {
        self.get_as(event_key(account_id, event_id)).await
    }

    async fn get_events(&self, account_id: &str, event_ids: &[String]) -> PortResult<Vec<Event>> {
        let keys = event_ids
            .iter()
            .map(|id| event_key(account_id, id))
            .collect();
        self.batch_get(keys)
            .await?
            .into_iter()
            .map(from_item)
            .collect()
    }

    async fn insert_deliveries(
        &self,
        event: &Event,
        deliveries: &[Delivery],
        sweep_at: DateTime<Utc>,
    ) -> PortResult<()> {
        let items = deliveries
            .iter()
            .map(|d| {
                let mut item = to_item(d, delivery_key(&d.account_id, &d.id), KIND_DELIVERY)?;
                item.insert(DUE_SHARD.into(), due_shard(&d.id));
                item.insert(DUE_AT.into(), n(sweep_at.timestamp_millis()));
                item.insert(EXPIRES_AT.into(), self.expires_at(d.created_at));
                Ok(item)
            })
            .collect::<PortResult<Vec<_>>>()?;
        self.batch_put(items).await?;
        // Only once every delivery is stored does the event leave the due index.
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(event_key(&event.account_id, &event.id)))
            .update_expression("SET fannedOut = :true, deliveries = :count REMOVE dueShard, dueAt")
            .expression_attribute_values(":true", AttributeValue::Bool(true))
            .expression_attribute_values(":count", n(deliveries.len() as i64))
            .send()
            .await
            .map_err(sdk("UpdateItem"))?;
        Ok(())
    }

    async fn load_delivery(&self, job: &DeliveryJob) -> PortResult<Option<DeliveryContext>> {
        let items = self
            .batch_get(vec![
                delivery_key(&job.account_id, &job.delivery_id),
                event_key(&job.account_id, &job.event_id),
                webhook_key(&job.account_id, &job.webhook_id),
                account_key(&job.account_id),
            ])
            .await?;
        let (mut delivery, mut event, mut webhook, mut account) = (None, None, None, None);
        for item in items {
            match item
                .get(KIND)
                .and_then(|k| k.as_s().ok())
                .map(String::as_str)
            {
                Some(KIND_DELIVERY) => delivery = Some(from_item::<Delivery>(item)?),
                Some(KIND_EVENT) => event = Some(from_item(item)?),
                Some(KIND_WEBHOOK) => webhook = Some(from_item(item)?),
                Some(KIND_ACCOUNT) => account = Some(from_item(item)?),
                _ => {}
            }
        }
        Ok(delivery
            .filter(|d| d.event_id == job.event_id && d.webhook_id == job.webhook_id)
            .map(|delivery| DeliveryContext {
                delivery,
                event,
                webhook,
                account,
            }))
    }

    async fn record_attempt(
        &self,
        account_id: &str,
        delivery_id: &str,
        record: &AttemptRecord,
    ) -> PortResult<()> {
        let attempt = serde_dynamo::to_attribute_value(&record.attempt)
            .map_err(|e| PortError::new("encoding an attempt", e))?;
        let mut set = vec![
            "#status = :status",
            "attempts = list_append(if_not_exists(attempts, :empty), :attempt)",
            "lastAttemptAt = :at",
        ];
        let mut remove = Vec::new();
        let mut values: Item = HashMap::from([
            (":status".into(), s(record.status.as_str())),
            (":empty".into(), AttributeValue::L(vec![])),
            (":attempt".into(), AttributeValue::L(vec![attempt])),
            (":at".into(), s(record.attempt.at.to_rfc3339())),
        ]);
        match record.attempt.status_code {
            Some(code) => {
                set.push("lastResponseStatus = :code");
                values.insert(":code".into(), n(code as i64));
            }
            None => remove.push("lastResponseStatus"),
        }
        match record.next_attempt_at {
            Some(at) => {
                set.push("nextAttemptAt = :next");
                values.insert(":next".into(), s(at.to_rfc3339()));
            }
            None => remove.push("nextAttemptAt"),
        }
        match record.sweep_at {
            Some(at) => {
                set.push("dueShard = :shard");
                set.push("dueAt = :due");
                values.insert(":shard".into(), due_shard(delivery_id));
                values.insert(":due".into(), n(at.timestamp_millis()));
            }
            None => remove.extend(["dueShard", "dueAt"]),
        }
        let mut expression = format!("SET {}", set.join(", "));
        if !remove.is_empty() {
            expression.push_str(&format!(" REMOVE {}", remove.join(", ")));
        }
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(delivery_key(account_id, delivery_id)))
            .update_expression(expression)
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#status", "status")
            .set_expression_attribute_values(Some(values))
            .send()
            .await;
        match result {
            // Expired or deleted meanwhile: nothing left to record.
            Err(e) if is_conditional_failure(&e) => Ok(()),
            other => other.map(|_| ()).map_err(sdk("UpdateItem")),
        }
    }

    async fn list_deliveries(
        &self,
        account_id: &str,
        query: &DeliveryQuery,
    ) -> PortResult<DeliveryPage> {
        let (key_condition, filter, names, values) = Self::log_query_parts(account_id, query);
        // The total: a COUNT query (keys only cross the wire).
        let mut total = 0u64;
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression(&key_condition)
                .set_filter_expression(filter.clone())
                .set_expression_attribute_names(Some(names.clone()))
                .set_expression_attribute_values(Some(values.clone()))
                .select(Select::Count)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(sdk("Query"))?;
            total += out.count as u64;
            start = out.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        // The page: newest first, skipping earlier pages.
        let skip = query.page as u64 * query.size as u64;
        let mut seen = 0u64;
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        while skip + (query.size as u64) > seen && seen < total {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression(&key_condition)
                .set_filter_expression(filter.clone())
                .set_expression_attribute_names(Some(names.clone()))
                .set_expression_attribute_values(Some(values.clone()))
                .scan_index_forward(false)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(sdk("Query"))?;
            for item in out.items.unwrap_or_default() {
                if seen >= skip && items.len() < query.size as usize {
                    items.push(from_item(item)?);
                }
                seen += 1;
            }
            start = out.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        Ok(DeliveryPage { items, total })
    }

    async fn get_delivery(
        &self,
        account_id: &str,
        delivery_id: &str,
    ) -> PortResult<Option<Delivery>> {
        self.get_as(delivery_key(account_id, delivery_id)).await
    }

    async fn due(&self, before: DateTime<Utc>, limit: usize) -> PortResult<Vec<DueItem>> {
        let mut found: Vec<(i64, DueItem)> = Vec::new();
        for shard in 0..DUE_SHARDS {
            let mut start: Option<Item> = None;
            let mut taken = 0usize;
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
                    let kind = item
                        .get(KIND)
                        .and_then(|k| k.as_s().ok())
                        .map(String::as_str);
                    let due = match kind {
                        Some(KIND_EVENT) => item
                            .get("accountId")
                            .zip(item.get("id"))
                            .and_then(|(a, i)| {
                                Some((a.as_s().ok()?.clone(), i.as_s().ok()?.clone()))
                            })
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
                        _ => None,
                    };
                    if let Some(due) = due {
                        found.push((due_at, due));
                        taken += 1;
                    }
                }
                start = out.last_evaluated_key;
                if start.is_none() || taken >= limit {
                    break;
                }
            }
        }
        found.sort_by_key(|(at, _)| *at);
        Ok(found
            .into_iter()
            .take(limit)
            .map(|(_, item)| item)
            .collect())
    }

    async fn postpone(&self, item: &DueItem, until: DateTime<Utc>) -> PortResult<()> {
        let key = match item {
            DueItem::FanOut {
                account_id,
                event_id,
            } => event_key(account_id, event_id),
            DueItem::Delivery { job, .. } => delivery_key(&job.account_id, &job.delivery_id),
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
