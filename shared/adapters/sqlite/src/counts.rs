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

/// Count changes of one write, gathered and applied together: a batch of attempts moves each
/// (account, status) row once rather than twice per attempt.
#[derive(Default)]
pub(crate) struct Moves(Vec<(String, DeliveryStatus, i64)>);

impl Moves {
    pub(crate) fn add(&mut self, account_id: &str, status: DeliveryStatus, delta: i64) {
        match self
            .0
            .iter_mut()
            .find(|(a, s, _)| a == account_id && *s == status)
        {
            Some((_, _, n)) => *n += delta,
            None => self.0.push((account_id.to_string(), status, delta)),
        }
    }

    /// One delivery went from `from` to `to`.
    pub(crate) fn moved(&mut self, account_id: &str, from: DeliveryStatus, to: DeliveryStatus) {
        if from != to {
            self.add(account_id, from, -1);
            self.add(account_id, to, 1);
        }
    }

    pub(crate) fn merge(&mut self, other: Moves) {
        for (account_id, status, delta) in other.0 {
            self.add(&account_id, status, delta);
        }
    }

    /// Writes them (in the caller's transaction, which holds the status changes too).
    pub(crate) fn apply(self, conn: &Connection) -> PortResult<()> {
        for (account_id, status, delta) in self.0 {
            bump(conn, &account_id, status, delta)?;
        }
        Ok(())
    }
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
