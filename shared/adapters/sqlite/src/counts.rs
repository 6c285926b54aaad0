//! Exact per-account status counts: every status change moves them in its own transaction.

use crate::db::sql;
use hookline_model::{DeliveryStatus, StatusCounts};
use hookline_service::ports::PortResult;
use rusqlite::{Connection, params};

/// Adds `delta` to the account's count of `status`.
pub(crate) fn bump(
    conn: &Connection,
    account_id: &str,
    status: DeliveryStatus,
    delta: i64,
) -> PortResult<()> {
    if delta == 0 {
        return Ok(());
    }
    conn.prepare_cached(
        "INSERT INTO status_counts (account_id, status, n) VALUES (?1, ?2, ?3) \
         ON CONFLICT (account_id, status) DO UPDATE SET n = n + excluded.n",
    )
    .and_then(|mut s| s.execute(params![account_id, status.as_str(), delta]))
    .map_err(sql("moving a status count"))?;
    Ok(())
}

/// Moves one delivery from `from` to `to`.
pub(crate) fn moved(
    conn: &Connection,
    account_id: &str,
    from: DeliveryStatus,
    to: DeliveryStatus,
) -> PortResult<()> {
    if from != to {
        bump(conn, account_id, from, -1)?;
        bump(conn, account_id, to, 1)?;
    }
    Ok(())
}

pub(crate) fn status_counts(conn: &Connection, account_id: &str) -> PortResult<StatusCounts> {
    let rows = conn
        .prepare_cached("SELECT status, n FROM status_counts WHERE account_id = ?1")
        .and_then(|mut s| {
            s.query_map([account_id], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(sql("reading status counts"))?;
    let mut counts = StatusCounts::default();
    for (status, n) in rows {
        let n = n.max(0) as u64;
        match DeliveryStatus::parse(&status) {
            Some(DeliveryStatus::Pending) => counts.pending = n,
            Some(DeliveryStatus::Retrying) => counts.retrying = n,
            Some(DeliveryStatus::Delivered) => counts.delivered = n,
            Some(DeliveryStatus::Failed) => counts.failed = n,
            None => {}
        }
    }
    Ok(counts)
}
