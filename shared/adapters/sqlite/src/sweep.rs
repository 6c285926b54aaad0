//! The sweep's due index (unfinished fan-outs, deliveries not yet terminal, running jobs) and
//! retention: expired events and deliveries deleted in small batches, their counts with them.
//! The port's `SweepStore` part is here; the jobs' own rows are written by `jobs`.

use crate::db::sql;
use crate::{SqliteStore, jobs};
use crate::{counts, ms, parse_nanos_text};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use hookline_model::Job;
use hookline_model::{DeliveryJob, DeliveryStatus};
use hookline_service::ports::SweepStore;
use hookline_service::ports::{DueItem, PortResult};
use rusqlite::{Connection, params};

/// Oldest first; among items due at the same millisecond, in the order they were stored (the
/// deliveries of one batch publish share their time: their publish order is their order of
/// insertion, which an ordered webhook's lane keeps after a restart).
pub(crate) fn due(
    conn: &Connection,
    before: DateTime<Utc>,
    limit: usize,
) -> PortResult<Vec<DueItem>> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    conn.prepare_cached(
        "SELECT * FROM ( \
           SELECT due_ms, 0 AS kind, account_id, id, NULL AS event_id, NULL AS webhook_id, \
                  NULL AS next_attempt_at, 0 AS ordered, rowid AS seq \
           FROM events WHERE due_ms <= ?1 \
           UNION ALL \
           SELECT due_ms, 1, account_id, id, event_id, webhook_id, next_attempt_at, ordered, \
                  rowid \
           FROM deliveries WHERE due_ms <= ?1 \
           UNION ALL \
           SELECT due_ms, 2, account_id, id, NULL, NULL, NULL, 0, rowid FROM jobs \
           WHERE due_ms <= ?1 \
         ) ORDER BY due_ms, seq LIMIT ?2",
    )
    .and_then(|mut s| {
        s.query_map(params![ms(before), limit], |row| {
            let kind: i64 = row.get(1)?;
            let account_id: String = row.get(2)?;
            let id: String = row.get(3)?;
            Ok(if kind == 0 {
                DueItem::FanOut {
                    account_id,
                    event_id: id,
                }
            } else if kind == 2 {
                DueItem::Job {
                    account_id,
                    job_id: id,
                }
            } else {
                let next: Option<String> = row.get(6)?;
                DueItem::Delivery {
                    job: DeliveryJob {
                        account_id,
                        delivery_id: id,
                        event_id: row.get(4)?,
                        webhook_id: row.get(5)?,
                        not_before: None,
                        ordered: row.get(7)?,
                        round: 0,
                    },
                    next_attempt_at: next.as_deref().and_then(parse_nanos_text),
                }
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()
    })
    .map_err(sql("reading due work"))
}

pub(crate) fn postpone(conn: &Connection, item: &DueItem, until: DateTime<Utc>) -> PortResult<()> {
    // Only what is still due: a delivery that became terminal meanwhile stays out.
    let (statement, account_id, id) = match item {
        DueItem::FanOut {
            account_id,
            event_id,
        } => (
            "UPDATE events SET due_ms = ?3 WHERE account_id = ?1 AND id = ?2 \
             AND due_ms IS NOT NULL",
            account_id,
            event_id,
        ),
        DueItem::Delivery { job, .. } => (
            "UPDATE deliveries SET due_ms = ?3 WHERE account_id = ?1 AND id = ?2 \
             AND due_ms IS NOT NULL",
            &job.account_id,
            &job.delivery_id,
        ),
        DueItem::Job { account_id, job_id } => (
            "UPDATE jobs SET due_ms = ?3 WHERE account_id = ?1 AND id = ?2 \
             AND due_ms IS NOT NULL",
            account_id,
            job_id,
        ),
    };
    conn.prepare_cached(statement)
        .and_then(|mut s| s.execute(params![account_id, id, ms(until)]))
        .map_err(sql("postponing due work"))?;
    Ok(())
}

/// Deletes at most `batch` deliveries and `batch` events created before `before`, taking
/// them out of the counts; how many rows went. Deliveries are found per account on
/// `deliveries_by_age` (every account with deliveries has counts).
pub(crate) fn delete_expired(
    conn: &Connection,
    before: DateTime<Utc>,
    batch: usize,
) -> PortResult<usize> {
    let accounts = conn
        .prepare_cached("SELECT DISTINCT account_id FROM status_counts")
        .and_then(|mut s| {
            s.query_map([], |row| row.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(sql("listing accounts with deliveries"))?;
    let mut expired: Vec<String> = Vec::new();
    for account_id in &accounts {
        let left = batch - expired.len();
        if left == 0 {
            break;
        }
        let statuses = conn
            .prepare_cached(
                "DELETE FROM deliveries WHERE rowid IN \
                 (SELECT rowid FROM deliveries WHERE account_id = ?1 AND created_ms < ?2 \
                  LIMIT ?3) \
                 RETURNING status",
            )
            .and_then(|mut s| {
                s.query_map(params![account_id, ms(before), left as i64], |row| {
                    row.get::<_, String>(0)
                })?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(sql("deleting expired deliveries"))?;
        let mut moved: std::collections::HashMap<&str, i64> = Default::default();
        for status in &statuses {
            *moved.entry(status.as_str()).or_default() += 1;
        }
        for (status, n) in moved {
            if let Some(status) = DeliveryStatus::parse(status) {
                counts::bump(conn, account_id, status, -n)?;
            }
        }
        expired.extend(statuses);
    }
    let events = conn
        .prepare_cached(
            "DELETE FROM events WHERE rowid IN \
             (SELECT rowid FROM events WHERE created_ms < ?1 LIMIT ?2)",
        )
        .and_then(|mut s| s.execute(params![ms(before), batch as i64]))
        .map_err(sql("deleting expired events"))?;
    let jobs = crate::jobs::delete_expired(conn, before, batch)?;
    Ok(expired.len() + events + jobs)
}

#[async_trait]
impl SweepStore for SqliteStore {
    async fn insert_job(&self, job: &Job, sweep_at: DateTime<Utc>) -> PortResult<()> {
        owned!(job);
        self.db
            .write(move |c| jobs::insert_job(c, &job, sweep_at))
            .await
    }

    async fn get_job(&self, account_id: &str, job_id: &str) -> PortResult<Option<Job>> {
        owned!(account_id, job_id);
        self.db
            .read(move |c| jobs::get_job(c, &account_id, &job_id))
            .await
    }

    async fn update_job(&self, job: &Job, sweep_at: Option<DateTime<Utc>>) -> PortResult<bool> {
        owned!(job);
        self.db
            .write(move |c| jobs::update_job(c, &job, sweep_at))
            .await
    }

    async fn due(&self, before: DateTime<Utc>, limit: usize) -> PortResult<Vec<DueItem>> {
        self.db.read(move |c| due(c, before, limit)).await
    }

    async fn postpone(&self, item: &DueItem, until: DateTime<Utc>) -> PortResult<()> {
        owned!(item);
        self.db.write(move |c| postpone(c, &item, until)).await
    }
}
