//! Background jobs (replay, recovery): per account, written over the version they were read
//! at, due for the sweep while they run.

use crate::db::sql;
use crate::{decode, encode, ms};
use chrono::{DateTime, Utc};
use hookline_model::Job;
use hookline_service::ports::PortResult;
use rusqlite::{Connection, OptionalExtension, params};

pub(crate) fn insert_job(conn: &Connection, job: &Job, sweep_at: DateTime<Utc>) -> PortResult<()> {
    let body = encode(job)?;
    conn.prepare_cached(
        "INSERT INTO jobs (account_id, id, version, created_ms, due_ms, body) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .and_then(|mut s| {
        s.execute(params![
            job.account_id,
            job.id,
            job.version as i64,
            ms(job.created_at),
            ms(sweep_at),
            body
        ])
    })
    .map_err(sql("inserting a job"))?;
    Ok(())
}

pub(crate) fn get_job(
    conn: &Connection,
    account_id: &str,
    job_id: &str,
) -> PortResult<Option<Job>> {
    conn.prepare_cached("SELECT body FROM jobs WHERE account_id = ?1 AND id = ?2")
        .and_then(|mut s| {
            s.query_row([account_id, job_id], |row| row.get::<_, String>(0))
                .optional()
        })
        .map_err(sql("reading a job"))?
        .map(|body| decode(&body))
        .transpose()
}

pub(crate) fn update_job(
    conn: &Connection,
    job: &Job,
    sweep_at: Option<DateTime<Utc>>,
) -> PortResult<bool> {
    let next = Job {
        version: job.version + 1,
        ..job.clone()
    };
    let body = encode(&next)?;
    let updated = conn
        .prepare_cached(
            "UPDATE jobs SET version = ?4, due_ms = ?5, body = ?6 \
             WHERE account_id = ?1 AND id = ?2 AND version = ?3",
        )
        .and_then(|mut s| {
            s.execute(params![
                job.account_id,
                job.id,
                job.version as i64,
                next.version as i64,
                sweep_at.map(ms),
                body
            ])
        })
        .map_err(sql("updating a job"))?;
    Ok(updated > 0)
}

/// Deletes at most `batch` jobs created before `before` (they outlive no log they read).
pub(crate) fn delete_expired(
    conn: &Connection,
    before: DateTime<Utc>,
    batch: usize,
) -> PortResult<usize> {
    conn.prepare_cached(
        "DELETE FROM jobs WHERE rowid IN \
         (SELECT rowid FROM jobs WHERE created_ms < ?1 LIMIT ?2)",
    )
    .and_then(|mut s| s.execute(params![ms(before), batch as i64]))
    .map_err(sql("deleting expired jobs"))
}
