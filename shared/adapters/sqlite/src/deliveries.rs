//! Events and their deliveries: publish and fan-out, attempts, manual retries, the logs.

use crate::db::sql;
use crate::{SqliteStore, db};
use crate::{accounts, counts, decode, encode, ms, nanos_text, page_bounds, webhooks};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use hookline_model::StatusCounts;
use hookline_model::{Delivery, DeliveryJob, Event};
use hookline_service::PortError;
use hookline_service::ports::DeliveryStore;
use hookline_service::ports::{
    AttemptRecord, DeliveryContext, DeliveryPage, DeliveryQuery, PortResult, Walk,
};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

/// The largest delivery record stored (the DynamoDB adapter's item limit, so both refuse
/// alike); attempts keep at most 4 KiB of each answer, so only a bug comes near it.
const MAX_RECORD_BYTES: usize = 400 * 1024;

/// Stores `event` unless its id is taken; the event stored under that id when it is. One
/// b-tree search, not a read before the insert: repeats are rare, every publish inserts.
fn put_event(
    conn: &Connection,
    event: &Event,
    due: Option<DateTime<Utc>>,
) -> PortResult<Option<Event>> {
    let body = encode(event)?;
    let inserted = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO events (account_id, id, created_ms, due_ms, body) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .and_then(|mut s| {
            s.execute(params![
                event.account_id,
                event.id,
                ms(event.created_at),
                due.map(ms),
                body
            ])
        })
        .map_err(sql("inserting an event"))?;
    if inserted > 0 {
        return Ok(None);
    }
    get_event(conn, &event.account_id, &event.id)?
        .map(Some)
        .ok_or_else(|| PortError(format!("event {} was neither stored nor found", event.id)))
}

pub(crate) fn insert_event(
    conn: &Connection,
    event: &Event,
    sweep_at: DateTime<Utc>,
) -> PortResult<Option<Event>> {
    put_event(conn, event, Some(sweep_at))
}

pub(crate) fn insert_event_with_deliveries(
    conn: &Connection,
    event: &Event,
    deliveries: &[Delivery],
    sweep_at: DateTime<Utc>,
) -> PortResult<Option<Event>> {
    let fanned_out = Event {
        deliveries: deliveries.len() as u32,
        fanned_out: true,
        ..event.clone()
    };
    if let Some(stored) = put_event(conn, &fanned_out, None)? {
        return Ok(Some(stored));
    }
    insert_deliveries(conn, deliveries, sweep_at)?;
    Ok(None)
}

pub(crate) fn get_event(
    conn: &Connection,
    account_id: &str,
    event_id: &str,
) -> PortResult<Option<Event>> {
    conn.prepare_cached("SELECT body FROM events WHERE account_id = ?1 AND id = ?2")
        .and_then(|mut s| {
            s.query_row([account_id, event_id], |row| row.get::<_, String>(0))
                .optional()
        })
        .map_err(sql("reading an event"))?
        .map(|body| decode(&body))
        .transpose()
}

pub(crate) fn get_events(
    conn: &Connection,
    account_id: &str,
    event_ids: &[String],
) -> PortResult<Vec<Event>> {
    let mut found = Vec::with_capacity(event_ids.len());
    for id in event_ids {
        if let Some(event) = get_event(conn, account_id, id)? {
            found.push(event);
        }
    }
    Ok(found)
}

/// Stores `delivery` unless it exists; whether it was new. The caller counts it.
fn insert_delivery(
    conn: &Connection,
    delivery: &Delivery,
    sweep_at: DateTime<Utc>,
) -> PortResult<bool> {
    let body = encode(delivery)?;
    let inserted = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO deliveries (account_id, id, webhook_id, event_id, event_type, \
             status, created_ms, last_attempt_ms, attempt_count, next_attempt_at, due_ms, body, \
             ordered) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        )
        .and_then(|mut s| {
            s.execute(params![
                delivery.account_id,
                delivery.id,
                delivery.webhook_id,
                delivery.event_id,
                delivery.event_type,
                delivery.status.as_str(),
                ms(delivery.created_at),
                delivery.last_attempt_at.map(ms),
                delivery.attempts_made() as i64,
                delivery.next_attempt_at.map(nanos_text),
                ms(sweep_at),
                body,
                delivery.ordered
            ])
        })
        .map_err(sql("inserting a delivery"))?;
    Ok(inserted > 0)
}

/// Stores each of `deliveries` that does not exist yet; which were new. The counts move once
/// per account and status, not once per delivery (a fan-out's are all one account's pending).
pub(crate) fn insert_deliveries(
    conn: &Connection,
    deliveries: &[Delivery],
    sweep_at: DateTime<Utc>,
) -> PortResult<Vec<bool>> {
    let mut new = Vec::with_capacity(deliveries.len());
    let mut moves = counts::Moves::default();
    for delivery in deliveries {
        let inserted = insert_delivery(conn, delivery, sweep_at)?;
        if inserted {
            moves.add(&delivery.account_id, delivery.status, 1);
        }
        new.push(inserted);
    }
    moves.apply(conn)?;
    Ok(new)
}

pub(crate) fn finish_fan_out(conn: &Connection, event: &Event, deliveries: u32) -> PortResult<()> {
    let Some(stored) = get_event(conn, &event.account_id, &event.id)? else {
        return Err(PortError(format!("event {} is not stored", event.id)));
    };
    let done = Event {
        deliveries,
        fanned_out: true,
        ..stored
    };
    let body = encode(&done)?;
    conn.prepare_cached(
        "UPDATE events SET due_ms = NULL, body = ?3 WHERE account_id = ?1 AND id = ?2",
    )
    .and_then(|mut s| s.execute(params![event.account_id, event.id, body]))
    .map_err(sql("finishing a fan-out"))?;
    Ok(())
}

pub(crate) fn get_delivery(
    conn: &Connection,
    account_id: &str,
    delivery_id: &str,
) -> PortResult<Option<Delivery>> {
    conn.prepare_cached("SELECT body FROM deliveries WHERE account_id = ?1 AND id = ?2")
        .and_then(|mut s| {
            s.query_row([account_id, delivery_id], |row| row.get::<_, String>(0))
                .optional()
        })
        .map_err(sql("reading a delivery"))?
        .map(|body| decode(&body))
        .transpose()
}

pub(crate) fn load_delivery(
    conn: &Connection,
    job: &DeliveryJob,
) -> PortResult<Option<DeliveryContext>> {
    let Some(delivery) = get_delivery(conn, &job.account_id, &job.delivery_id)? else {
        return Ok(None);
    };
    Ok(Some(DeliveryContext {
        event: get_event(conn, &delivery.account_id, &delivery.event_id)?,
        webhook: webhooks::get_webhook(conn, &delivery.account_id, &delivery.webhook_id)?,
        account: accounts::get_account(conn, &delivery.account_id)?,
        delivery,
    }))
}

/// Writes `next` over the stored delivery if it is still as `loaded` (same status, same
/// number of attempts), its count move added to `moves`; false when it moved on or is gone.
fn replace_delivery(
    conn: &Connection,
    loaded: &Delivery,
    next: &Delivery,
    due: Option<DateTime<Utc>>,
    moves: &mut counts::Moves,
) -> PortResult<bool> {
    let body = encode(next)?;
    if body.len() > MAX_RECORD_BYTES {
        return Err(PortError(format!(
            "delivery {} would take {} bytes, over the {MAX_RECORD_BYTES} a record may hold",
            loaded.id,
            body.len()
        )));
    }
    let updated = conn
        .prepare_cached(
            "UPDATE deliveries SET status = ?5, last_attempt_ms = ?6, attempt_count = ?7, \
             next_attempt_at = ?8, due_ms = ?9, body = ?10 \
             WHERE account_id = ?1 AND id = ?2 AND status = ?3 AND attempt_count = ?4",
        )
        .and_then(|mut s| {
            s.execute(params![
                loaded.account_id,
                loaded.id,
                loaded.status.as_str(),
                loaded.attempts_made() as i64,
                next.status.as_str(),
                next.last_attempt_at.map(ms),
                next.attempts_made() as i64,
                next.next_attempt_at.map(nanos_text),
                due.map(ms),
                body
            ])
        })
        .map_err(sql("updating a delivery"))?;
    if updated == 0 {
        return Ok(false);
    }
    moves.moved(&loaded.account_id, loaded.status, next.status);
    Ok(true)
}

/// Records one attempt; its count move is added to `moves`, which the caller applies in the
/// same transaction.
pub(crate) fn record_attempt(
    conn: &Connection,
    delivery: &Delivery,
    record: &AttemptRecord,
    moves: &mut counts::Moves,
) -> PortResult<bool> {
    let next = Delivery {
        attempts: delivery.attempts_with(record.attempt.clone()),
        attempt_count: delivery.attempts_made() + 1,
        status: record.status,
        last_response_status: record.attempt.status_code,
        last_attempt_at: Some(record.attempt.at),
        next_attempt_at: record.next_attempt_at,
        ..delivery.clone()
    };
    if !replace_delivery(conn, delivery, &next, record.sweep_at, moves)? {
        return Ok(false);
    }
    // A 410 deactivates the webhook in the same transaction; one deleted meanwhile has
    // nothing to deactivate, and the attempt stands.
    if record.deactivates_webhook {
        webhooks::deactivate_webhook(
            conn,
            &delivery.account_id,
            &delivery.webhook_id,
            record.attempt.at,
        )?;
    }
    Ok(true)
}

pub(crate) fn requeue_delivery(
    conn: &Connection,
    delivery: &Delivery,
    sweep_at: DateTime<Utc>,
) -> PortResult<bool> {
    let mut moves = counts::Moves::default();
    let replaced = replace_delivery(
        conn,
        delivery,
        &delivery.requeued(),
        Some(sweep_at),
        &mut moves,
    )?;
    moves.apply(conn)?;
    Ok(replaced)
}

/// The WHERE clause of a log query and its parameters.
fn log_filter(account_id: &str, query: &DeliveryQuery) -> (String, Vec<Value>) {
    let mut clauses = vec!["account_id = ?".to_string()];
    let mut values = vec![Value::Text(account_id.into())];
    let mut add = |clause: &str, value: Value| {
        clauses.push(clause.into());
        values.push(value);
    };
    if let Some(webhook_id) = &query.webhook_id {
        add("webhook_id = ?", Value::Text(webhook_id.clone()));
    }
    if let Some(status) = query.status {
        add("status = ?", Value::Text(status.as_str().into()));
    }
    if let Some(event_type) = &query.event_type {
        add("event_type = ?", Value::Text(event_type.clone()));
    }
    if let Some(from) = query.created_from {
        add("created_ms >= ?", Value::Integer(ms(from)));
    }
    if let Some(to) = query.created_to {
        add("created_ms <= ?", Value::Integer(ms(to)));
    }
    // A delivery never attempted has no last attempt, so it matches no such bound.
    if let Some(from) = query.last_attempt_from {
        add("last_attempt_ms >= ?", Value::Integer(ms(from)));
    }
    if let Some(to) = query.last_attempt_to {
        add("last_attempt_ms <= ?", Value::Integer(ms(to)));
    }
    (clauses.join(" AND "), values)
}

/// One page of `query`, newest first, without its total.
pub(crate) fn page_of_deliveries(
    conn: &Connection,
    account_id: &str,
    query: &DeliveryQuery,
) -> PortResult<Vec<Delivery>> {
    let (filter, mut values) = log_filter(account_id, query);
    let (limit, offset) = page_bounds(query.page, query.size);
    values.push(Value::Integer(limit));
    values.push(Value::Integer(offset));
    let bodies = conn
        .prepare_cached(&format!(
            "SELECT body FROM deliveries WHERE {filter} \
             ORDER BY created_ms DESC, id DESC LIMIT ? OFFSET ?"
        ))
        .and_then(|mut s| {
            s.query_map(params_from_iter(values), |row| row.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<String>>>()
        })
        .map_err(sql("listing deliveries"))?;
    bodies.iter().map(|b| decode(b)).collect()
}

pub(crate) fn list_deliveries(
    conn: &Connection,
    account_id: &str,
    query: &DeliveryQuery,
) -> PortResult<DeliveryPage> {
    let items = page_of_deliveries(conn, account_id, query)?;
    let (filter, values) = log_filter(account_id, query);
    let only_status = query.webhook_id.is_none()
        && query.event_type.is_none()
        && query.created_from.is_none()
        && query.created_to.is_none()
        && query.last_attempt_from.is_none()
        && query.last_attempt_to.is_none();
    // The counts cover a query with no filter but status; others are counted on the index.
    let total = if only_status {
        let counts = counts::status_counts(conn, account_id)?;
        match query.status {
            Some(status) => counts.get(status),
            None => counts.total(),
        }
    } else {
        conn.prepare_cached(&format!("SELECT count(*) FROM deliveries WHERE {filter}"))
            .and_then(|mut s| s.query_row(params_from_iter(values), |row| row.get::<_, i64>(0)))
            .map_err(sql("counting deliveries"))? as u64
    };
    Ok(DeliveryPage { items, total })
}

/// Where a walk stands: the creation time and id of the last row it found (rows come newest
/// first, as `deliveries_by_age` orders them).
fn walk_position(cursor: Option<&str>) -> PortResult<Option<(i64, String)>> {
    let Some(raw) = cursor else {
        return Ok(None);
    };
    raw.split_once(':')
        .and_then(|(created, id)| Some((created.parse().ok()?, id.to_string())))
        .map(Some)
        .ok_or_else(|| PortError(format!("not a walk position: {raw}")))
}

/// One step of a walk through `query`'s deliveries, newest first, from `cursor`.
pub(crate) fn walk_deliveries(
    conn: &Connection,
    account_id: &str,
    query: &DeliveryQuery,
    cursor: Option<&str>,
    limit: u32,
) -> PortResult<Walk<Delivery>> {
    let (mut filter, mut values) = log_filter(account_id, query);
    if let Some((created_ms, id)) = walk_position(cursor)? {
        filter.push_str(" AND (created_ms, id) < (?, ?)");
        values.push(Value::Integer(created_ms));
        values.push(Value::Text(id));
    }
    values.push(Value::Integer(limit as i64));
    let bodies = conn
        .prepare_cached(&format!(
            "SELECT body FROM deliveries WHERE {filter} ORDER BY created_ms DESC, id DESC LIMIT ?"
        ))
        .and_then(|mut s| {
            s.query_map(params_from_iter(values), |row| row.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<String>>>()
        })
        .map_err(sql("walking deliveries"))?;
    let items: Vec<Delivery> = bodies
        .iter()
        .map(|b| decode(b))
        .collect::<PortResult<_>>()?;
    let next = match items.last() {
        Some(last) if items.len() as u32 == limit => {
            Some(format!("{}:{}", ms(last.created_at), last.id))
        }
        _ => None,
    };
    Ok(Walk { items, next })
}

/// One step of a walk through the account's events created in `[from, to]`, newest first,
/// from `cursor` (as deliveries are walked: an event's id may be the publisher's own, so it
/// says nothing of its time).
pub(crate) fn walk_events(
    conn: &Connection,
    account_id: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    cursor: Option<&str>,
    limit: u32,
) -> PortResult<Walk<Event>> {
    // Past the end of the range when there is no cursor yet: every row is below it.
    let (after_ms, after_id) = walk_position(cursor)?.unwrap_or((ms(to) + 1, String::new()));
    let bodies = conn
        .prepare_cached(
            "SELECT body FROM events WHERE account_id = ?1 AND created_ms >= ?2 \
             AND created_ms <= ?3 AND (created_ms, id) < (?4, ?5) \
             ORDER BY created_ms DESC, id DESC LIMIT ?6",
        )
        .and_then(|mut s| {
            s.query_map(
                params![
                    account_id,
                    ms(from),
                    ms(to),
                    after_ms,
                    after_id,
                    limit as i64
                ],
                |row| row.get::<_, String>(0),
            )?
            .collect::<rusqlite::Result<Vec<String>>>()
        })
        .map_err(sql("walking events"))?;
    let items: Vec<Event> = bodies
        .iter()
        .map(|b| decode(b))
        .collect::<PortResult<_>>()?;
    let next = match items.last() {
        Some(last) if items.len() as u32 == limit => {
            Some(format!("{}:{}", ms(last.created_at), last.id))
        }
        _ => None,
    };
    Ok(Walk { items, next })
}

#[async_trait]
impl DeliveryStore for SqliteStore {
    async fn insert_event(
        &self,
        event: &Event,
        sweep_at: DateTime<Utc>,
    ) -> PortResult<Option<Event>> {
        owned!(event);
        self.db
            .write(move |c| insert_event(c, &event, sweep_at))
            .await
    }

    async fn insert_event_with_deliveries(
        &self,
        event: &Event,
        deliveries: &[Delivery],
        sweep_at: DateTime<Utc>,
    ) -> PortResult<Option<Event>> {
        owned!(event, deliveries);
        self.db
            .write(move |c| insert_event_with_deliveries(c, &event, &deliveries, sweep_at))
            .await
    }

    async fn get_event(&self, account_id: &str, event_id: &str) -> PortResult<Option<Event>> {
        owned!(account_id, event_id);
        self.db
            .read(move |c| get_event(c, &account_id, &event_id))
            .await
    }

    async fn get_events(&self, account_id: &str, event_ids: &[String]) -> PortResult<Vec<Event>> {
        owned!(account_id, event_ids);
        self.db
            .read(move |c| get_events(c, &account_id, &event_ids))
            .await
    }

    async fn insert_deliveries(
        &self,
        _event: &Event,
        deliveries: &[Delivery],
        sweep_at: DateTime<Utc>,
    ) -> PortResult<Vec<bool>> {
        owned!(deliveries);
        self.db
            .write(move |c| insert_deliveries(c, &deliveries, sweep_at))
            .await
    }

    async fn finish_fan_out(&self, event: &Event, deliveries: u32) -> PortResult<()> {
        owned!(event);
        self.db
            .write(move |c| finish_fan_out(c, &event, deliveries))
            .await
    }

    async fn load_delivery(&self, job: &DeliveryJob) -> PortResult<Option<DeliveryContext>> {
        owned!(job);
        self.db.read(move |c| load_delivery(c, &job)).await
    }

    async fn record_attempt(
        &self,
        delivery: &Delivery,
        record: &AttemptRecord,
    ) -> PortResult<bool> {
        owned!(delivery, record);
        self.db
            .write(move |c| {
                let mut moves = counts::Moves::default();
                let recorded = record_attempt(c, &delivery, &record, &mut moves)?;
                moves.apply(c)?;
                Ok(recorded)
            })
            .await
    }

    async fn record_attempts(&self, batch: &[(Delivery, AttemptRecord)]) -> Vec<PortResult<bool>> {
        // All in one write (and one commit), each in a savepoint of its own, so one that
        // cannot be written fails only itself.
        let size = batch.len();
        owned!(batch);
        let answers = self
            .db
            .write(move |c| {
                // The counts move once for the batch, after its records: an attempt that
                // failed adds no move.
                let mut moves = counts::Moves::default();
                let answers = batch
                    .iter()
                    .map(|(delivery, record)| {
                        // One statement undoes itself when it fails; only an attempt that also
                        // deactivates its webhook (two statements) needs a savepoint. The three
                        // savepoint statements per attempt showed in the writer's profile.
                        let guarded = record.deactivates_webhook;
                        if guarded {
                            db::run(c, "SAVEPOINT attempt")?;
                        }
                        let mut own = counts::Moves::default();
                        let answer = record_attempt(c, delivery, record, &mut own);
                        if answer.is_ok() {
                            moves.merge(own);
                        } else if guarded {
                            db::run(c, "ROLLBACK TO attempt")?;
                        }
                        if guarded {
                            db::run(c, "RELEASE attempt")?;
                        }
                        answer
                    })
                    .collect::<Vec<PortResult<bool>>>();
                moves.apply(c)?;
                Ok(answers)
            })
            .await;
        match answers {
            Ok(answers) => answers,
            Err(error) => vec![Err(error); size],
        }
    }

    /// The writer commits everything waiting in one transaction anyway; a small bound would
    /// only leave finished deliveries waiting for their turn (with 256 workers and two writes
    /// of 40 in flight, a fan-out's deliveries queued behind their own records).
    fn attempts_per_write(&self) -> usize {
        db::MAX_GROUP
    }

    async fn requeue_delivery(
        &self,
        delivery: &Delivery,
        sweep_at: DateTime<Utc>,
    ) -> PortResult<bool> {
        owned!(delivery);
        self.db
            .write(move |c| requeue_delivery(c, &delivery, sweep_at))
            .await
    }

    async fn list_deliveries(
        &self,
        account_id: &str,
        query: &DeliveryQuery,
    ) -> PortResult<DeliveryPage> {
        owned!(account_id, query);
        self.db
            .read(move |c| list_deliveries(c, &account_id, &query))
            .await
    }

    async fn first_deliveries(
        &self,
        account_id: &str,
        query: &DeliveryQuery,
    ) -> PortResult<Vec<Delivery>> {
        let query = DeliveryQuery {
            page: 0,
            ..query.clone()
        };
        owned!(account_id);
        self.db
            .read(move |c| page_of_deliveries(c, &account_id, &query))
            .await
    }

    async fn get_delivery(
        &self,
        account_id: &str,
        delivery_id: &str,
    ) -> PortResult<Option<Delivery>> {
        owned!(account_id, delivery_id);
        self.db
            .read(move |c| get_delivery(c, &account_id, &delivery_id))
            .await
    }

    async fn status_counts(&self, account_id: &str) -> PortResult<StatusCounts> {
        owned!(account_id);
        self.db
            .read(move |c| counts::status_counts(c, &account_id))
            .await
    }

    async fn walk_deliveries(
        &self,
        account_id: &str,
        query: &DeliveryQuery,
        cursor: Option<&str>,
        limit: u32,
    ) -> PortResult<Walk<Delivery>> {
        owned!(account_id, query);
        let cursor = cursor.map(str::to_owned);
        self.db
            .read(move |c| walk_deliveries(c, &account_id, &query, cursor.as_deref(), limit))
            .await
    }

    async fn walk_events(
        &self,
        account_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        cursor: Option<&str>,
        limit: u32,
    ) -> PortResult<Walk<Event>> {
        owned!(account_id);
        let cursor = cursor.map(str::to_owned);
        self.db
            .read(move |c| walk_events(c, &account_id, from, to, cursor.as_deref(), limit))
            .await
    }
}
