//! The Store port on embedded SQLite: local mode's store (`hookline serve`).
//!
//! One file, `<data dir>/hookline.sqlite3`, in WAL mode with `synchronous=NORMAL`. A schema of
//! its own (`schema_v1.sql`), versioned by `PRAGMA user_version` and migrated at start. Writes
//! go to one thread that commits many at once (`db`); reads use connections of their own.
//! Status counts are exact: they move in the same transaction as the status. Events and
//! deliveries past the log retention are deleted in small batches (`sweep`). The port's four
//! parts are implemented in `accounts`, `webhooks`, `deliveries` and `sweep`.

/// Clones what a write needs into the writer thread.
macro_rules! owned {
    ($($name:ident),*) => { $(let $name = $name.to_owned();)* };
}
mod accounts;
mod counts;
mod db;
mod deliveries;
mod jobs;
mod sweep;
mod webhooks;

pub use db::DB_FILE;

use chrono::{DateTime, Utc};
use db::Db;
use hookline_service::PortError;
use hookline_service::ports::PortResult;
use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// The file the emulated DynamoDB store (dynoxide) kept under a data directory, before this
/// store existed.
pub const EMULATED_STORE_FILE: &str = "hookline.db";
/// How often expired logs are looked for, and how many rows one transaction deletes (small,
/// so no write waits long behind it).
const RETENTION_EVERY: Duration = Duration::from_secs(60);
const RETENTION_BATCH: usize = 500;

#[derive(Clone)]
pub struct SqliteStore {
    db: Arc<Db>,
    retention: chrono::Duration,
}

impl SqliteStore {
    /// Opens (or creates) the store under `data_dir` (made private to its user), migrates its
    /// schema and, inside a tokio runtime, starts deleting logs older than `retention_days`.
    /// A data directory of the emulated DynamoDB store is refused, with what to do.
    pub fn open(data_dir: &Path, retention_days: u32) -> Result<Self, String> {
        let path = data_dir.join(DB_FILE);
        let legacy = data_dir.join(EMULATED_STORE_FILE);
        if legacy.exists() && !path.exists() {
            return Err(format!(
                "{} holds data of the emulated DynamoDB store of an earlier Hookline, which this \
                 version no longer reads. Start with a new data directory (--data-dir or \
                 HOOKLINE_DATA_DIR) and set your accounts and webhooks up again, or run the \
                 earlier Hookline on this one until its deliveries are done and move \
                 {} away.",
                data_dir.display(),
                legacy.display()
            ));
        }
        make_private(data_dir)?;
        let db = Db::open(&path)?;
        // SQLite gives the -wal and -shm files the database file's mode; set them all.
        make_private(data_dir)?;
        let store = Self {
            db,
            retention: chrono::Duration::days(retention_days as i64),
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(delete_expired_forever(
                Arc::downgrade(&store.db),
                store.retention,
            ));
        }
        Ok(store)
    }

    /// A value of the `meta` table (the main key's check).
    pub async fn meta(&self, key: &str) -> PortResult<Option<String>> {
        let key = key.to_string();
        self.db
            .read(move |conn| {
                use rusqlite::OptionalExtension;
                conn.prepare_cached("SELECT value FROM meta WHERE key = ?1")
                    .and_then(|mut s| s.query_row([key], |row| row.get(0)).optional())
                    .map_err(db::sql("reading meta"))
            })
            .await
    }

    pub async fn set_meta(&self, key: &str, value: &str) -> PortResult<()> {
        let (key, value) = (key.to_string(), value.to_string());
        self.db
            .write(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO meta (key, value) VALUES (?1, ?2) \
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                )
                .and_then(|mut s| s.execute([&key, &value]))
                .map_err(db::sql("writing meta"))?;
                Ok(())
            })
            .await
    }

    /// Deletes the events and deliveries created before `before`, a small batch per
    /// transaction; how many rows went.
    pub async fn delete_expired(&self, before: DateTime<Utc>) -> PortResult<usize> {
        delete_expired(&self.db, before).await
    }
}

async fn delete_expired(db: &Db, before: DateTime<Utc>) -> PortResult<usize> {
    let mut total = 0;
    loop {
        let deleted = db
            .write(move |conn| sweep::delete_expired(conn, before, RETENTION_BATCH))
            .await?;
        total += deleted;
        if deleted == 0 {
            return Ok(total);
        }
    }
}

async fn delete_expired_forever(db: Weak<Db>, retention: chrono::Duration) {
    let mut every = tokio::time::interval(RETENTION_EVERY);
    loop {
        every.tick().await;
        let Some(db) = db.upgrade() else { return };
        match delete_expired(&db, Utc::now() - retention).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "deleted logs past their retention"),
            Err(error) => tracing::warn!(%error, "deleting expired logs failed"),
        }
    }
}

pub(crate) fn encode<T: serde::Serialize>(value: &T) -> PortResult<String> {
    serde_json::to_string(value).map_err(|e| PortError::new("encoding a record", e))
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(body: &str) -> PortResult<T> {
    serde_json::from_str(body).map_err(|e| PortError::new("decoding a record", e))
}

/// A time as the indexes keep it: Unix milliseconds (the API's precision).
pub(crate) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// A time kept exactly (to the nanosecond), as text.
pub(crate) fn nanos_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

pub(crate) fn parse_nanos_text(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// LIMIT and OFFSET of a 0-based page.
pub(crate) fn page_bounds(page: u32, size: u32) -> (i64, i64) {
    (size as i64, page as i64 * size as i64)
}

fn make_private(dir: &Path) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let set = |path: &Path, mode: u32| {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                .map_err(|e| format!("setting the mode of {}: {e}", path.display()))
        };
        set(dir, 0o700)?;
        let entries =
            std::fs::read_dir(dir).map_err(|e| format!("reading {}: {e}", dir.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("reading {}: {e}", dir.display()))?;
            // Not followed: a symlink's target may be anyone's file.
            let kind = entry.file_type().map_err(|e| e.to_string())?;
            if kind.is_file() {
                set(&entry.path(), 0o600)?;
            }
        }
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    Ok(())
}
