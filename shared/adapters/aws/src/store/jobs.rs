//! Background jobs (replay, recovery) and the walks they read: a job is one item under its
//! account (`ACCT#<account>` / `JOB#<id>`, written once per page of its walk), in the sparse
//! `due` index while it runs. A walk goes through the account's log shards one after another,
//! each from the last Query's `LastEvaluatedKey`, with no global order: a step never merges
//! every shard, and reads at most [`QUERIES_PER_STEP`] Query pages.

use super::logs::{Source, source};
use super::*;
use hookline_model::Job;
use hookline_service::ports::Walk;
use serde::Deserialize;
use std::collections::BTreeMap;

const KIND_JOB: &str = "job";
/// Query pages one walk step reads at most: over a sparse account's 256 shards a step moves
/// on through 16 of them, so no step reads without bound.
const QUERIES_PER_STEP: usize = 16;

/// Where a walk stands: the shard it is in and the key its last Query ended on (all the
/// table's and indexes' key attributes are strings).
#[derive(Debug, Default, Serialize, Deserialize)]
struct Position {
    shard: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    after: Option<BTreeMap<String, String>>,
}

impl Position {
    fn parse(cursor: Option<&str>) -> PortResult<Self> {
        cursor.map_or(Ok(Self::default()), |raw| {
            serde_json::from_str(raw).map_err(|_| PortError(format!("not a walk position: {raw}")))
        })
    }

    fn start_key(&self) -> Option<Item> {
        self.after
            .as_ref()
            .map(|key| key.iter().map(|(k, v)| (k.clone(), s(v.clone()))).collect())
    }

    /// Moves on past a Query that ended at `last` (`None`: its shard is done).
    fn advance(&mut self, last: Option<Item>) {
        match last {
            Some(key) => {
                self.after = Some(
                    key.into_iter()
                        .filter_map(|(k, v)| Some((k, v.as_s().ok()?.clone())))
                        .collect(),
                )
            }
            None => {
                self.shard += 1;
                self.after = None;
            }
        }
    }

    /// The cursor of the next step, or `None` past the last shard.
    fn next(&self, shards: u32) -> PortResult<Option<String>> {
        if self.shard >= shards {
            return Ok(None);
        }
        serde_json::to_string(self)
            .map(Some)
            .map_err(|e| PortError::new("encoding a walk position", e))
    }
}

pub(super) async fn walk_deliveries(
    store: &DynamoStore,
    account_id: &str,
    query: &DeliveryQuery,
    cursor: Option<&str>,
    limit: u32,
) -> PortResult<Walk<Delivery>> {
    let source: Source<'_> = source(query);
    let mut position = Position::parse(cursor)?;
    let mut items = Vec::new();
    let limit = limit.max(1) as usize;
    for _ in 0..QUERIES_PER_STEP {
        if position.shard >= store.log_shards || items.len() >= limit {
            break;
        }
        // Reading no more keys than still wanted keeps the step within its limit, and the
        // position exact.
        let (found, last) = store
            .shard_page(
                account_id,
                query,
                source,
                position.shard,
                position.start_key(),
                limit - items.len(),
            )
            .await?;
        items.extend(found);
        position.advance(last);
    }
    Ok(Walk {
        items,
        next: position.next(store.log_shards)?,
    })
}

/// Events created in `[from, to]`. An event's id may be the publisher's own, so its key says
/// nothing of its time: the walk reads every event the account keeps (within the log
/// retention) and keeps those in the range. A recovery is started by hand, rarely; an index
/// by time would cost a write on every publish.
pub(super) async fn walk_events(
    store: &DynamoStore,
    account_id: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    cursor: Option<&str>,
    limit: u32,
) -> PortResult<Walk<Event>> {
    let mut position = Position::parse(cursor)?;
    let mut items = Vec::new();
    let limit = limit.max(1) as usize;
    let (from_ms, to_ms) = (from.timestamp_millis(), to.timestamp_millis());
    for _ in 0..QUERIES_PER_STEP {
        if position.shard >= store.log_shards || items.len() >= limit {
            break;
        }
        let out = store
            .client
            .query()
            .table_name(&store.table)
            .key_condition_expression("#pk = :pk AND begins_with(#sk, :events)")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#sk", SK)
            .expression_attribute_values(":pk", s(log_pk(account_id, position.shard)))
            .expression_attribute_values(":events", s("EVT#"))
            .limit((limit - items.len()) as i32)
            .set_exclusive_start_key(position.start_key())
            .send()
            .await
            .map_err(sdk("Query"))?;
        for item in out.items.unwrap_or_default() {
            let event: Event = from_item(item)?;
            let at = event.created_at.timestamp_millis();
            if (from_ms..=to_ms).contains(&at) {
                items.push(event);
            }
        }
        position.advance(out.last_evaluated_key);
    }
    Ok(Walk {
        items,
        next: position.next(store.log_shards)?,
    })
}

pub(super) fn job_key(account_id: &str, job_id: &str) -> Item {
    key(account_pk(account_id), format!("JOB#{job_id}"))
}

/// The job's item: its JSON in `body` (its `kind` would clash with the item's own), the
/// attributes the `due` index reads, and its due time while it runs.
fn job_item(store: &DynamoStore, job: &Job, sweep_at: Option<DateTime<Utc>>) -> PortResult<Item> {
    let body = serde_json::to_string(job).map_err(|e| PortError::new("encoding a job", e))?;
    let mut item = job_key(&job.account_id, &job.id);
    item.insert(KIND.into(), s(KIND_JOB));
    item.insert("id".into(), s(&job.id));
    item.insert("accountId".into(), s(&job.account_id));
    item.insert("version".into(), n(job.version as i64));
    item.insert("body".into(), s(body));
    item.insert(EXPIRES_AT.into(), store.expires_at(job.created_at));
    if let Some(at) = sweep_at {
        item.insert(DUE_SHARD.into(), due_shard(&job.id));
        item.insert(DUE_AT.into(), n(at.timestamp_millis()));
    }
    Ok(item)
}

/// The due item of a job in the `due` index.
pub(super) fn due_job(item: &Item) -> Option<DueItem> {
    let get = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
    Some(DueItem::Job {
        account_id: get("accountId")?,
        job_id: get("id")?,
    })
}

pub(super) fn is_job(item: &Item) -> bool {
    super::item_kind(item) == Some(KIND_JOB)
}

pub(super) async fn insert_job(
    store: &DynamoStore,
    job: &Job,
    sweep_at: DateTime<Utc>,
) -> PortResult<()> {
    store
        .client
        .put_item()
        .table_name(&store.table)
        .set_item(Some(job_item(store, job, Some(sweep_at))?))
        .condition_expression("attribute_not_exists(pk)")
        .send()
        .await
        .map_err(sdk("PutItem"))?;
    Ok(())
}

pub(super) async fn get_job(
    store: &DynamoStore,
    account_id: &str,
    job_id: &str,
) -> PortResult<Option<Job>> {
    let out = store
        .client
        .get_item()
        .table_name(&store.table)
        .set_key(Some(job_key(account_id, job_id)))
        // A job just written by a sweep reads back as written.
        .consistent_read(true)
        .send()
        .await
        .map_err(sdk("GetItem"))?;
    out.item
        .and_then(|mut item| item.remove("body"))
        .map(|body| {
            let body = body
                .as_s()
                .map_err(|_| PortError("a job without a body".into()))?;
            serde_json::from_str(body).map_err(|e| PortError::new("decoding a job", e))
        })
        .transpose()
}

pub(super) async fn update_job(
    store: &DynamoStore,
    job: &Job,
    sweep_at: Option<DateTime<Utc>>,
) -> PortResult<bool> {
    let next = Job {
        version: job.version + 1,
        ..job.clone()
    };
    let result = store
        .client
        .put_item()
        .table_name(&store.table)
        .set_item(Some(job_item(store, &next, sweep_at)?))
        .condition_expression("#version = :read")
        .expression_attribute_names("#version", "version")
        .expression_attribute_values(":read", n(job.version as i64))
        .send()
        .await;
    match result {
        Ok(_) => Ok(true),
        Err(e) if is_conditional_failure(&e) => Ok(false),
        Err(e) => Err(sdk("PutItem")(e)),
    }
}
