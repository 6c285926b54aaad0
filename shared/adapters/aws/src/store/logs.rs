//! Delivery-log queries. An account's deliveries are spread over the table's log shards
//! (`LOG_SHARDS` in a new table); a query reads each shard of the narrowest source for its filters (one webhook's deliveries
//! in `byWebhook`, the failures in `byStatus`, or else all of the account's), newest first,
//! and merges them. The creation-time filters are the range of every key (ids are ULIDs); the
//! other filters are applied to what the key reads. `total` comes from the status counters
//! when they cover the query (no filter, or only `status`), from `Select=COUNT` queries when
//! the key covers every filter, and otherwise from reading every match.

use super::*;
use aws_sdk_dynamodb::types::Select;
use futures::stream::{self, StreamExt, TryStreamExt};
use hookline_model::ids;

/// Shard queries in flight at once, per log query: a new table's 256 shards in 8 rounds, as
/// 128 took with 16.
const SHARDS_IN_FLIGHT: usize = 32;

/// Where a query reads its deliveries from, in each shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source<'a> {
    /// All of the account's deliveries (the table).
    All,
    /// One webhook's (`byWebhook`).
    Webhook(&'a str),
    /// One failure status's (`byStatus`).
    Failures(DeliveryStatus),
}

pub(super) fn source(query: &DeliveryQuery) -> Source<'_> {
    if let Some(webhook_id) = &query.webhook_id {
        Source::Webhook(webhook_id)
    } else if let Some(status) = query
        .status
        .filter(|s| matches!(s, DeliveryStatus::Retrying | DeliveryStatus::Failed))
    {
        Source::Failures(status)
    } else {
        Source::All
    }
}

/// Whether the query has filters its source's key does not cover.
fn has_other_filters(query: &DeliveryQuery, source: Source<'_>) -> bool {
    query.event_type.is_some()
        || query.last_attempt_from.is_some()
        || query.last_attempt_to.is_some()
        || (query.status.is_some() && !matches!(source, Source::Failures(_)))
}

/// Whether `delivery` passes every filter of `query` (a delivery never attempted matches no
/// last-attempt bound). Times compare to the millisecond, as the API gives them.
fn matches(delivery: &Delivery, query: &DeliveryQuery) -> bool {
    let ms = |t: DateTime<Utc>| t.timestamp_millis();
    let in_range = |t: DateTime<Utc>, from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>| {
        from.is_none_or(|f| ms(t) >= ms(f)) && to.is_none_or(|to| ms(t) <= ms(to))
    };
    let attempted_in_range = if query.last_attempt_from.is_some() || query.last_attempt_to.is_some()
    {
        delivery
            .last_attempt_at
            .is_some_and(|t| in_range(t, query.last_attempt_from, query.last_attempt_to))
    } else {
        true
    };
    query
        .webhook_id
        .as_ref()
        .is_none_or(|w| &delivery.webhook_id == w)
        && query.status.is_none_or(|s| delivery.status == s)
        && query
            .event_type
            .as_ref()
            .is_none_or(|t| &delivery.event_type == t)
        && in_range(delivery.created_at, query.created_from, query.created_to)
        && attempted_in_range
}

impl DynamoStore {
    /// The Query of one shard of `source`, newest first, within the created-time range.
    fn shard_query(
        &self,
        account_id: &str,
        query: &DeliveryQuery,
        source: Source<'_>,
        shard: u32,
    ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        let (index, hash_name, hash_value) = match source {
            Source::All => (None, PK, log_pk(account_id, shard)),
            Source::Webhook(webhook_id) => (
                Some(BY_WEBHOOK),
                WEBHOOK_KEY,
                log_index_key(account_id, webhook_id, shard),
            ),
            Source::Failures(status) => (
                Some(BY_STATUS),
                STATUS_KEY,
                log_index_key(account_id, status.as_str(), shard),
            ),
        };
        let (low, high) = ids::id_bounds(ids::DELIVERY, query.created_from, query.created_to);
        self.client
            .query()
            .table_name(&self.table)
            .set_index_name(index.map(String::from))
            .key_condition_expression("#hk = :hk AND #sk BETWEEN :low AND :high")
            .expression_attribute_names("#hk", hash_name)
            .expression_attribute_names("#sk", SK)
            .expression_attribute_values(":hk", s(hash_value))
            .expression_attribute_values(":low", s(format!("DLV#{low}")))
            .expression_attribute_values(":high", s(format!("DLV#{high}")))
            .scan_index_forward(false)
    }

    /// One Query of one shard of `source` from `start`, reading at most `limit` keys: the
    /// deliveries among them that match `query` (newest first), and where the next Query
    /// starts (`None`: the shard is read to its end).
    pub(super) async fn shard_page(
        &self,
        account_id: &str,
        query: &DeliveryQuery,
        source: Source<'_>,
        shard: u32,
        start: Option<Item>,
        limit: usize,
    ) -> PortResult<(Vec<Delivery>, Option<Item>)> {
        let out = self
            .shard_query(account_id, query, source, shard)
            .limit(limit.clamp(1, 1000) as i32)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(sdk("Query"))?;
        let items = out.items.unwrap_or_default();
        // An index holds keys only: read the deliveries (in the order of the keys).
        let deliveries: Vec<Delivery> = if source == Source::All {
            items
                .into_iter()
                .map(from_item)
                .collect::<PortResult<_>>()?
        } else {
            let order: Vec<String> = items
                .iter()
                .filter_map(|k| k.get(SK).and_then(|v| v.as_s().ok()).cloned())
                .collect();
            let keys = items
                .into_iter()
                .map(|mut k| {
                    HashMap::from_iter(
                        [PK, SK].map(|a| (a.to_string(), k.remove(a).unwrap_or(s("")))),
                    )
                })
                .collect();
            let mut by_sk: HashMap<String, Delivery> = HashMap::new();
            for item in self.batch_get(keys).await? {
                let sk = item
                    .get(SK)
                    .and_then(|v| v.as_s().ok())
                    .cloned()
                    .unwrap_or_default();
                by_sk.insert(sk, from_item(item)?);
            }
            order.iter().filter_map(|sk| by_sk.remove(sk)).collect()
        };
        Ok((
            deliveries
                .into_iter()
                .filter(|d| matches(d, query))
                .collect(),
            out.last_evaluated_key,
        ))
    }

    /// Up to `want` (every one when `None`) deliveries of one shard that match `query`,
    /// newest first.
    async fn shard_matches(
        &self,
        account_id: &str,
        query: &DeliveryQuery,
        source: Source<'_>,
        shard: u32,
        want: Option<usize>,
    ) -> PortResult<Vec<Delivery>> {
        let mut found = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let limit = want.map_or(1000, |w| (w - found.len()).clamp(10, 1000));
            let (deliveries, next) = self
                .shard_page(account_id, query, source, shard, start, limit)
                .await?;
            found.extend(deliveries);
            start = next;
            if start.is_none() || want.is_some_and(|w| found.len() >= w) {
                if let Some(w) = want {
                    found.truncate(w);
                }
                return Ok(found);
            }
        }
    }

    /// How many deliveries one shard of `source` holds in the created-time range.
    async fn shard_count(
        &self,
        account_id: &str,
        query: &DeliveryQuery,
        source: Source<'_>,
        shard: u32,
    ) -> PortResult<u64> {
        let mut total = 0u64;
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .shard_query(account_id, query, source, shard)
                .select(Select::Count)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(sdk("Query"))?;
            total += out.count.max(0) as u64;
            start = out.last_evaluated_key;
            if start.is_none() {
                return Ok(total);
            }
        }
    }

    /// The matches of every shard, up to `want` each, newest first.
    async fn all_shards(
        &self,
        account_id: &str,
        query: &DeliveryQuery,
        source: Source<'_>,
        want: Option<usize>,
    ) -> PortResult<Vec<Delivery>> {
        let shards: Vec<Vec<Delivery>> = stream::iter(0..self.log_shards)
            .map(|shard| self.shard_matches(account_id, query, source, shard, want))
            .buffer_unordered(SHARDS_IN_FLIGHT)
            .try_collect()
            .await?;
        let mut all: Vec<Delivery> = shards.into_iter().flatten().collect();
        all.sort_by(|a, b| b.id.cmp(&a.id));
        Ok(all)
    }
}

/// Page 0 of `query` without a total: each shard reads until it has `query.size` matches
/// (a total would read every match: with a filter its key does not cover, a whole history).
pub(super) async fn first_deliveries(
    store: &DynamoStore,
    account_id: &str,
    query: &DeliveryQuery,
) -> PortResult<Vec<Delivery>> {
    let first = DeliveryQuery {
        page: 0,
        ..query.clone()
    };
    let mut all = store
        .all_shards(
            account_id,
            &first,
            source(&first),
            Some(first.size as usize),
        )
        .await?;
    all.truncate(first.size as usize);
    Ok(all)
}

pub(super) async fn list_deliveries(
    store: &DynamoStore,
    account_id: &str,
    query: &DeliveryQuery,
) -> PortResult<DeliveryPage> {
    let source = source(query);
    let counted = query.webhook_id.is_none()
        && query.event_type.is_none()
        && query.created_from.is_none()
        && query.created_to.is_none()
        && query.last_attempt_from.is_none()
        && query.last_attempt_to.is_none();
    let skip = query.page as usize * query.size as usize;
    let page = |all: Vec<Delivery>| -> Vec<Delivery> {
        all.into_iter()
            .skip(skip)
            .take(query.size as usize)
            .collect()
    };
    if !counted && has_other_filters(query, source) {
        // Only reading every match counts them: the page comes from the same reads.
        let all = store.all_shards(account_id, query, source, None).await?;
        let total = all.len() as u64;
        return Ok(DeliveryPage {
            items: page(all),
            total,
        });
    }
    let total = if counted {
        let counts = counters::status_counts(store, account_id).await?;
        query.status.map_or(counts.total(), |s| counts.get(s))
    } else {
        let totals: Vec<u64> = stream::iter(0..store.log_shards)
            .map(|shard| store.shard_count(account_id, query, source, shard))
            .buffer_unordered(SHARDS_IN_FLIGHT)
            .try_collect()
            .await?;
        totals.iter().sum()
    };
    // Counters folded from the stream lag the log by a moment: a total from them never hides
    // a page of deliveries already stored.
    let lagging = counted && store.counting == Counting::FromStream;
    if query.size == 0 || (skip as u64 >= total && !lagging) {
        return Ok(DeliveryPage {
            items: vec![],
            total,
        });
    }
    let all = store
        .all_shards(account_id, query, source, Some(skip + query.size as usize))
        .await?;
    let items = page(all);
    Ok(DeliveryPage {
        total: total.max((skip + items.len()) as u64),
        items,
    })
}
