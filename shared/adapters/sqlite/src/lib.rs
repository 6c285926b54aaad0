//! The Store port on embedded SQLite: local mode's store (`hookline serve`).
//!
//! One file, `<data dir>/hookline.sqlite3`, in WAL mode with `synchronous=NORMAL`. A schema of
//! its own (`schema_v1.sql`), versioned by `PRAGMA user_version` and migrated at start. Writes
//! go to one thread that commits many at once (`db`); reads use connections of their own.
//! Status counts are exact: they move in the same transaction as the status. Events and
//! deliveries past the log retention are deleted in small batches (`sweep`).

mod accounts;
mod counts;
mod db;
mod deliveries;
mod jobs;
mod sweep;
mod webhooks;

pub use db::DB_FILE;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use db::Db;
use hookline_model::{
    Account, ApiKeyRecord, Delivery, DeliveryJob, Event, EventTypeInfo, Job, StatusCounts, Webhook,
};
use hookline_service::PortError;
use hookline_service::ports::{
    AttemptRecord, DeliveryContext, DeliveryPage, DeliveryQuery, DueItem, Page, PortResult, Store,
    Walk,
};
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

/// Clones what a write needs into the writer thread.
macro_rules! owned {
    ($($name:ident),*) => { $(let $name = $name.to_owned();)* };
}

#[async_trait]
impl Store for SqliteStore {
    async fn insert_account(&self, account: &Account, key: &ApiKeyRecord) -> PortResult<()> {
        owned!(account, key);
        self.db
            .write(move |c| accounts::insert_account(c, &account, &key))
            .await
    }

    async fn get_account(&self, account_id: &str) -> PortResult<Option<Account>> {
        owned!(account_id);
        self.db
            .read(move |c| accounts::get_account(c, &account_id))
            .await
    }

    async fn list_accounts(&self, page: u32, size: u32) -> PortResult<Page<Account>> {
        self.db
            .read(move |c| accounts::list_accounts(c, page, size))
            .await
    }

    async fn set_account_secret(&self, account_id: &str, secret: Option<&str>) -> PortResult<bool> {
        owned!(account_id);
        let secret = secret.map(String::from);
        self.db
            .write(move |c| accounts::set_account_secret(c, &account_id, secret.as_deref()))
            .await
    }

    async fn insert_api_key(&self, key: &ApiKeyRecord) -> PortResult<()> {
        owned!(key);
        self.db
            .write(move |c| accounts::insert_api_key(c, &key))
            .await
    }

    async fn find_api_key(&self, key_hash: &str) -> PortResult<Option<ApiKeyRecord>> {
        owned!(key_hash);
        self.db
            .read(move |c| accounts::find_api_key(c, &key_hash))
            .await
    }

    async fn list_api_keys(&self, account_id: &str) -> PortResult<Vec<ApiKeyRecord>> {
        owned!(account_id);
        self.db
            .read(move |c| accounts::list_api_keys(c, &account_id))
            .await
    }

    async fn delete_api_key(&self, account_id: &str, key_id: &str) -> PortResult<bool> {
        owned!(account_id, key_id);
        self.db
            .write(move |c| accounts::delete_api_key(c, &account_id, &key_id))
            .await
    }

    async fn delete_admin_keys(&self) -> PortResult<u32> {
        self.db.write(accounts::delete_admin_keys).await
    }

    async fn insert_event_type(&self, event_type: &EventTypeInfo) -> PortResult<bool> {
        owned!(event_type);
        self.db
            .write(move |c| accounts::insert_event_type(c, &event_type))
            .await
    }

    async fn list_event_types(&self) -> PortResult<Vec<EventTypeInfo>> {
        self.db.read(accounts::list_event_types).await
    }

    async fn get_event_type(&self, name: &str) -> PortResult<Option<EventTypeInfo>> {
        owned!(name);
        self.db
            .read(move |c| accounts::get_event_type(c, &name))
            .await
    }

    async fn insert_webhook(&self, webhook: &Webhook, max_per_account: u32) -> PortResult<bool> {
        owned!(webhook);
        self.db
            .write(move |c| webhooks::insert_webhook(c, &webhook, max_per_account))
            .await
    }

    async fn update_webhook(&self, webhook: &Webhook) -> PortResult<bool> {
        owned!(webhook);
        self.db
            .write(move |c| webhooks::update_webhook(c, &webhook))
            .await
    }

    async fn deactivate_webhook(
        &self,
        account_id: &str,
        webhook_id: &str,
        at: DateTime<Utc>,
    ) -> PortResult<bool> {
        owned!(account_id, webhook_id);
        self.db
            .write(move |c| webhooks::deactivate_webhook(c, &account_id, &webhook_id, at))
            .await
    }

    async fn delete_webhook(
        &self,
        account_id: &str,
        webhook_id: &str,
    ) -> PortResult<Option<Webhook>> {
        owned!(account_id, webhook_id);
        self.db
            .write(move |c| webhooks::delete_webhook(c, &account_id, &webhook_id))
            .await
    }

    async fn get_webhook(&self, account_id: &str, webhook_id: &str) -> PortResult<Option<Webhook>> {
        owned!(account_id, webhook_id);
        self.db
            .read(move |c| webhooks::get_webhook(c, &account_id, &webhook_id))
            .await
    }

    async fn list_webhooks(&self, account_id: &str) -> PortResult<Vec<Webhook>> {
        owned!(account_id);
        self.db
            .read(move |c| webhooks::list_webhooks(c, &account_id))
            .await
    }

    async fn list_webhooks_page(
        &self,
        account_id: &str,
        page: u32,
        size: u32,
    ) -> PortResult<Page<Webhook>> {
        owned!(account_id);
        self.db
            .read(move |c| webhooks::list_webhooks_page(c, &account_id, page, size))
            .await
    }

    async fn insert_event(
        &self,
        event: &Event,
        sweep_at: DateTime<Utc>,
    ) -> PortResult<Option<Event>> {
        owned!(event);
        self.db
            .write(move |c| deliveries::insert_event(c, &event, sweep_at))
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
            .write(move |c| {
                deliveries::insert_event_with_deliveries(c, &event, &deliveries, sweep_at)
            })
            .await
    }

    async fn get_event(&self, account_id: &str, event_id: &str) -> PortResult<Option<Event>> {
        owned!(account_id, event_id);
        self.db
            .read(move |c| deliveries::get_event(c, &account_id, &event_id))
            .await
    }

    async fn get_events(&self, account_id: &str, event_ids: &[String]) -> PortResult<Vec<Event>> {
        owned!(account_id, event_ids);
        self.db
            .read(move |c| deliveries::get_events(c, &account_id, &event_ids))
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
            .write(move |c| deliveries::insert_deliveries(c, &deliveries, sweep_at))
            .await
    }

    async fn finish_fan_out(&self, event: &Event, deliveries: u32) -> PortResult<()> {
        owned!(event);
        self.db
            .write(move |c| deliveries::finish_fan_out(c, &event, deliveries))
            .await
    }

    async fn load_delivery(&self, job: &DeliveryJob) -> PortResult<Option<DeliveryContext>> {
        owned!(job);
        self.db
            .read(move |c| deliveries::load_delivery(c, &job))
            .await
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
                let recorded = deliveries::record_attempt(c, &delivery, &record, &mut moves)?;
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
                        let answer = deliveries::record_attempt(c, delivery, record, &mut own);
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
            .write(move |c| deliveries::requeue_delivery(c, &delivery, sweep_at))
            .await
    }

    async fn list_deliveries(
        &self,
        account_id: &str,
        query: &DeliveryQuery,
    ) -> PortResult<DeliveryPage> {
        owned!(account_id, query);
        self.db
            .read(move |c| deliveries::list_deliveries(c, &account_id, &query))
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
            .read(move |c| deliveries::page_of_deliveries(c, &account_id, &query))
            .await
    }

    async fn get_delivery(
        &self,
        account_id: &str,
        delivery_id: &str,
    ) -> PortResult<Option<Delivery>> {
        owned!(account_id, delivery_id);
        self.db
            .read(move |c| deliveries::get_delivery(c, &account_id, &delivery_id))
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
            .read(move |c| {
                deliveries::walk_deliveries(c, &account_id, &query, cursor.as_deref(), limit)
            })
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
            .read(move |c| {
                deliveries::walk_events(c, &account_id, from, to, cursor.as_deref(), limit)
            })
            .await
    }

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
        self.db.read(move |c| sweep::due(c, before, limit)).await
    }

    async fn postpone(&self, item: &DueItem, until: DateTime<Utc>) -> PortResult<()> {
        owned!(item);
        self.db
            .write(move |c| sweep::postpone(c, &item, until))
            .await
    }
}
