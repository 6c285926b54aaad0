//! The ports: what the use cases need from the outside world, and nothing more.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use hookline_model::{
    Account, ApiKeyRecord, Attempt, Delivery, DeliveryJob, DeliveryStatus, Event, EventTypeInfo,
    Job, StatusCounts, Webhook,
};
use std::time::Duration;
use thiserror::Error;

/// A backend failure (network, throttling, emulator down). Never a user's fault.
#[derive(Debug, Clone, Error)]
#[error("{0}")]
pub struct PortError(pub String);

impl PortError {
    pub fn new(context: &str, error: impl std::fmt::Display) -> Self {
        Self(format!("{context}: {error}"))
    }
}

pub type PortResult<T> = Result<T, PortError>;

/// Everything a delivery attempt needs, read in one go.
#[derive(Debug, Clone)]
pub struct DeliveryContext {
    pub delivery: Delivery,
    pub event: Option<Event>,
    pub webhook: Option<Webhook>,
    pub account: Option<Account>,
}

/// The outcome of one attempt, as the store records it.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub attempt: Attempt,
    pub status: DeliveryStatus,
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// When the sweep should step in if nothing else moves the delivery on; `None` once terminal.
    pub sweep_at: Option<DateTime<Utc>>,
    /// The endpoint answered 410 Gone: its webhook is deactivated in the same write.
    pub deactivates_webhook: bool,
}

/// Work the sweep found overdue.
#[derive(Debug, Clone, PartialEq)]
pub enum DueItem {
    /// An event whose fan-out did not finish.
    FanOut {
        account_id: String,
        event_id: String,
    },
    /// A delivery not yet terminal; `next_attempt_at` when a retry is scheduled.
    Delivery {
        job: DeliveryJob,
        next_attempt_at: Option<DateTime<Utc>>,
    },
    /// A background job (replay) still running whose lease ran out: resumed where it stopped.
    Job { account_id: String, job_id: String },
}

/// Which deliveries a log query wants. `created_*` bound the creation time, `last_attempt_*`
/// the time of the last attempt (a delivery never attempted matches no such bound).
#[derive(Debug, Clone, Default)]
pub struct DeliveryQuery {
    pub created_from: Option<DateTime<Utc>>,
    pub created_to: Option<DateTime<Utc>>,
    pub last_attempt_from: Option<DateTime<Utc>>,
    pub last_attempt_to: Option<DateTime<Utc>>,
    pub webhook_id: Option<String>,
    pub event_type: Option<String>,
    pub status: Option<DeliveryStatus>,
    pub page: u32,
    pub size: u32,
}

#[derive(Debug, Clone)]
pub struct DeliveryPage {
    pub items: Vec<Delivery>,
    pub total: u64,
}

/// One step of a walk through a range ([`DeliveryStore::walk_deliveries`],
/// [`DeliveryStore::walk_events`]): what it found, and where the next step starts (`None`: the walk
/// is over). A step may find nothing and still not be the last (the store read only items a filter
/// left out).
#[derive(Debug, Clone)]
pub struct Walk<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

/// One page of a list and the size of the whole list.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: u64,
}

/// The most deliveries [`DeliveryStore::insert_event_with_deliveries`] takes; a larger fan-out
/// stores its event first and its deliveries in chunks.
pub const MAX_ATOMIC_FAN_OUT: usize = 40;

/// [`DeliveryStore::attempts_per_write`] unless a store says otherwise.
pub const ATTEMPTS_PER_WRITE: usize = 40;

/// Everything a backend keeps, in four parts by concern: accounts and keys, webhooks, events
/// and deliveries, the sweep. A backend implements each part (an adapter keeps a file per
/// part) and is a `Store` by that alone.
pub trait Store: AccountStore + WebhookStore + DeliveryStore + SweepStore {}

impl<T> Store for T where T: AccountStore + WebhookStore + DeliveryStore + SweepStore {}

/// Accounts, their API keys, and the deployment's registered event types.
#[async_trait]
pub trait AccountStore: Send + Sync + 'static {
    /// Stores a new account with its first API key.
    async fn insert_account(&self, account: &Account, key: &ApiKeyRecord) -> PortResult<()>;
    async fn get_account(&self, account_id: &str) -> PortResult<Option<Account>>;
    /// Accounts, oldest first.
    async fn list_accounts(&self, page: u32, size: u32) -> PortResult<Page<Account>>;
    /// Sets or clears the account webhook secret; false when the account does not exist.
    async fn set_account_secret(&self, account_id: &str, secret: Option<&str>) -> PortResult<bool>;
    /// Stores an API key (an account's, or the local admin key).
    async fn insert_api_key(&self, key: &ApiKeyRecord) -> PortResult<()>;
    async fn find_api_key(&self, key_hash: &str) -> PortResult<Option<ApiKeyRecord>>;
    /// An account's keys, oldest first.
    async fn list_api_keys(&self, account_id: &str) -> PortResult<Vec<ApiKeyRecord>>;
    /// Revokes a key; false when the account has no key with that id.
    async fn delete_api_key(&self, account_id: &str, key_id: &str) -> PortResult<bool>;
    /// Revokes every stored admin key (local mode's generated one); how many there were. May
    /// read the whole store: called once, when `HOOKLINE_ADMIN_KEY` replaces a generated key.
    async fn delete_admin_keys(&self) -> PortResult<u32>;

    // --- event types ---

    /// Registers a platform event type; false when the name is taken.
    async fn insert_event_type(&self, event_type: &EventTypeInfo) -> PortResult<bool>;
    /// Registered types, by name.
    async fn list_event_types(&self) -> PortResult<Vec<EventTypeInfo>>;
    async fn get_event_type(&self, name: &str) -> PortResult<Option<EventTypeInfo>>;
}

/// Webhooks, per account.
#[async_trait]
pub trait WebhookStore: Send + Sync + 'static {
    /// Stores a new webhook unless its account has `max_per_account` already (false then).
    async fn insert_webhook(&self, webhook: &Webhook, max_per_account: u32) -> PortResult<bool>;
    /// Replaces a stored webhook, as of the `version` it was read at, with `version + 1`;
    /// false when it no longer exists or changed since it was read (read it again and retry).
    async fn update_webhook(&self, webhook: &Webhook) -> PortResult<bool>;
    /// Marks a webhook inactive (its endpoint answered 410 Gone), moving its version on;
    /// false when it is gone.
    async fn deactivate_webhook(
        &self,
        account_id: &str,
        webhook_id: &str,
        at: DateTime<Utc>,
    ) -> PortResult<bool>;
    /// Deletes a webhook and returns it; `None` when there was none.
    async fn delete_webhook(
        &self,
        account_id: &str,
        webhook_id: &str,
    ) -> PortResult<Option<Webhook>>;
    async fn get_webhook(&self, account_id: &str, webhook_id: &str) -> PortResult<Option<Webhook>>;
    /// Every webhook of an account (fan-out).
    async fn list_webhooks(&self, account_id: &str) -> PortResult<Vec<Webhook>>;
    /// One page of an account's webhooks, oldest first.
    async fn list_webhooks_page(
        &self,
        account_id: &str,
        page: u32,
        size: u32,
    ) -> PortResult<Page<Webhook>>;
}

/// Events, their deliveries and attempts, the delivery log and its status counts.
#[async_trait]
pub trait DeliveryStore: Send + Sync + 'static {
    /// Stores a new event, due for the sweep at `sweep_at` until its fan-out is done.
    /// Returns the stored event instead when one with that id exists (idempotent publish).
    async fn insert_event(
        &self,
        event: &Event,
        sweep_at: DateTime<Utc>,
    ) -> PortResult<Option<Event>>;
    /// The largest fan-out this store writes with [`DeliveryStore::insert_event_with_deliveries`];
    /// publish stores a larger one event first, then its deliveries in chunks. A store whose
    /// atomic write costs more than those separate writes (a DynamoDB transaction bills every
    /// item twice) answers less than [`MAX_ATOMIC_FAN_OUT`].
    fn max_atomic_fan_out(&self) -> usize {
        MAX_ATOMIC_FAN_OUT
    }
    /// Stores a new event already fanned out, together with its deliveries (at most
    /// [`DeliveryStore::max_atomic_fan_out`], each due for the sweep at `sweep_at` and counted as
    /// pending once), all or nothing: a small fan-out's publish in one write (or, where that write
    /// costs more, the event with its plan and then each delivery, a store-side process completing
    /// the plan should the rest fail: `DynamoStore`'s planned fan-outs). Returns the stored event
    /// instead, writing nothing, when one with that id exists (idempotent publish).
    async fn insert_event_with_deliveries(
        &self,
        event: &Event,
        deliveries: &[Delivery],
        sweep_at: DateTime<Utc>,
    ) -> PortResult<Option<Event>>;
    async fn get_event(&self, account_id: &str, event_id: &str) -> PortResult<Option<Event>>;
    async fn get_events(&self, account_id: &str, event_ids: &[String]) -> PortResult<Vec<Event>>;
    /// Stores those of `event`'s `deliveries` (part or all of its fan-out) that do not exist
    /// yet, each due for the sweep at `sweep_at` and counted as pending once. Answers, per
    /// delivery in order, whether it was new (a re-run of an interrupted fan-out finds most
    /// stored already, and must neither reset nor re-send them).
    async fn insert_deliveries(
        &self,
        event: &Event,
        deliveries: &[Delivery],
        sweep_at: DateTime<Utc>,
    ) -> PortResult<Vec<bool>>;
    /// Marks `event` fanned out to `deliveries` deliveries, all stored: it leaves the due index.
    async fn finish_fan_out(&self, event: &Event, deliveries: u32) -> PortResult<()>;
    /// A delivery with its event, webhook and account, read consistently (what was written
    /// before the job was queued is seen).
    async fn load_delivery(&self, job: &DeliveryJob) -> PortResult<Option<DeliveryContext>>;
    /// Records an attempt of `delivery` (as loaded): appends it (keeping the newest
    /// `MAX_KEPT_ATTEMPTS`), counts it, moves the status counters along and, when the record
    /// says so, deactivates the webhook, all in one write. False, recording nothing, when the
    /// stored delivery's status or attempt count is no longer as loaded (a concurrent
    /// duplicate got there first) or it is gone.
    async fn record_attempt(&self, delivery: &Delivery, record: &AttemptRecord)
    -> PortResult<bool>;
    /// [`DeliveryStore::record_attempt`] for many deliveries in as few writes as it can: one answer
    /// per delivery, in order, each as `record_attempt` would give it; one delivery's failure
    /// never fails another's answer.
    async fn record_attempts(&self, batch: &[(Delivery, AttemptRecord)]) -> Vec<PortResult<bool>>;
    /// How many attempt records the service gathers into one [`DeliveryStore::record_attempts`]
    /// call at most: a store that commits many writes at once (the local SQLite store) takes more
    /// than the default, which suits a DynamoDB transaction.
    fn attempts_per_write(&self) -> usize {
        ATTEMPTS_PER_WRITE
    }
    /// Puts a finished delivery (as loaded) back to `pending` for a new round of attempts, due
    /// for the sweep at `sweep_at`, moving the counters. False when its stored state moved on.
    async fn requeue_delivery(
        &self,
        delivery: &Delivery,
        sweep_at: DateTime<Utc>,
    ) -> PortResult<bool>;
    async fn list_deliveries(
        &self,
        account_id: &str,
        query: &DeliveryQuery,
    ) -> PortResult<DeliveryPage>;
    /// The first page of `query` (newest first, `query.size` at most) without counting the
    /// rest: for a caller that needs only a few, where a total could read a whole history.
    async fn first_deliveries(
        &self,
        account_id: &str,
        query: &DeliveryQuery,
    ) -> PortResult<Vec<Delivery>> {
        let first = DeliveryQuery {
            page: 0,
            ..query.clone()
        };
        Ok(self.list_deliveries(account_id, &first).await?.items)
    }
    async fn get_delivery(
        &self,
        account_id: &str,
        delivery_id: &str,
    ) -> PortResult<Option<Delivery>>;
    /// The account's deliveries per status, from counters kept as statuses change.
    async fn status_counts(&self, account_id: &str) -> PortResult<StatusCounts>;
    /// One step of a walk through the deliveries matching `query` (its `page` and `size` are
    /// ignored), in an order of the store's choosing: at most `limit` of them, from `cursor`
    /// (`None` to begin; then a step's `next`). Each delivery that matches throughout the walk is
    /// found exactly once; a walk never reads the whole range at once, so a job can walk a history
    /// of any size a page at a time. By default, the pages of [`DeliveryStore::list_deliveries`] by
    /// number: right only for a store whose pages stay put while a walk goes on. A replay filtered
    /// by status moves what it requeues out of the filter, so a real store walks by position (as
    /// SQLite and DynamoDB do), or a page's worth would be skipped.
    async fn walk_deliveries(
        &self,
        account_id: &str,
        query: &DeliveryQuery,
        cursor: Option<&str>,
        limit: u32,
    ) -> PortResult<Walk<Delivery>> {
        let page: u32 = match cursor {
            Some(raw) => raw
                .parse()
                .map_err(|_| PortError(format!("not a walk position: {raw}")))?,
            None => 0,
        };
        let found = self
            .list_deliveries(
                account_id,
                &DeliveryQuery {
                    page,
                    size: limit,
                    ..query.clone()
                },
            )
            .await?;
        let more = found.items.len() as u32 == limit && limit > 0;
        Ok(Walk {
            items: found.items,
            next: more.then(|| (page + 1).to_string()),
        })
    }
    /// One step of a walk through the account's events created in `[from, to]`, as
    /// [`DeliveryStore::walk_deliveries`] walks deliveries. An event's id may be the publisher's
    /// own, so it says nothing of the event's time: the range is on `created_at`.
    async fn walk_events(
        &self,
        account_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        cursor: Option<&str>,
        limit: u32,
    ) -> PortResult<Walk<Event>> {
        let _ = (account_id, from, to, cursor, limit);
        Err(PortError("this store cannot walk events".to_string()))
    }
}

/// What the sweep finds overdue (unfinished fan-outs, deliveries, background jobs), and the
/// background jobs themselves.
#[async_trait]
pub trait SweepStore: Send + Sync + 'static {
    /// Stores a new job, due for the sweep at `sweep_at` (its lease) while it runs.
    async fn insert_job(&self, job: &Job, sweep_at: DateTime<Utc>) -> PortResult<()> {
        let _ = (job, sweep_at);
        Err(PortError("this store keeps no jobs".to_string()))
    }
    async fn get_job(&self, account_id: &str, job_id: &str) -> PortResult<Option<Job>> {
        let _ = (account_id, job_id);
        Ok(None)
    }
    /// Replaces a stored job, as of the `version` it was read at, with `version + 1`, due for
    /// the sweep at `sweep_at` (`None`: it ended, and leaves the sweep's sight). False when it
    /// changed since it was read (another worker moved it on) or is gone.
    async fn update_job(&self, job: &Job, sweep_at: Option<DateTime<Utc>>) -> PortResult<bool> {
        let _ = (job, sweep_at);
        Err(PortError("this store keeps no jobs".to_string()))
    }

    /// [`SweepStore::due`] for one part of a sweep done by `parts` invocations at once: a store
    /// that spreads its due items over shards answers those of the shards in part `part`; one that
    /// does not answers everything in part 0 and nothing in the others.
    async fn due_in_part(
        &self,
        before: DateTime<Utc>,
        limit: usize,
        part: u32,
        parts: u32,
    ) -> PortResult<Vec<DueItem>> {
        let _ = parts;
        if part == 0 {
            self.due(before, limit).await
        } else {
            Ok(Vec::new())
        }
    }
    /// Items whose sweep time is at or before `before`, oldest first, at most `limit`.
    async fn due(&self, before: DateTime<Utc>, limit: usize) -> PortResult<Vec<DueItem>>;
    /// Moves an item's sweep time to `until` (it was just re-enqueued).
    async fn postpone(&self, item: &DueItem, until: DateTime<Utc>) -> PortResult<()>;
}

#[async_trait]
pub trait Queue: Send + Sync + 'static {
    /// Hands jobs to the delivery workers.
    async fn enqueue(&self, jobs: &[DeliveryJob]) -> PortResult<()>;
    /// How long a publisher should wait before adding more work, when the queue's backlog is
    /// past its bound; `None` when it takes more (SQS always does).
    fn backpressure(&self) -> Option<Duration> {
        None
    }
    /// [`Queue::backpressure`] for a publisher that can wait a little: a queue that knows its
    /// pace holds the publisher until its backlog is short enough to deliver soon (or gives
    /// up and answers the wait as `backpressure` does). By default, `backpressure` at once.
    async fn wait_for_room(&self) -> Option<Duration> {
        self.backpressure()
    }
    /// Hands `job` to the workers at `at`, not before (a rate-limited delivery waiting for its
    /// turn). It holds the job durably as `enqueue` does; a queue that cannot wait says so.
    async fn defer(&self, job: &DeliveryJob, at: DateTime<Utc>) -> PortResult<()> {
        let _ = (job, at);
        Err(PortError("this queue cannot hold a job back".to_string()))
    }
    /// Whether this queue brings an ordered job back for its retry by itself, holding its
    /// webhook's lane until then (SQS FIFO: the message stays in its group, unseen until the
    /// retry is due), so no retry is scheduled for it. By default the retry scheduler brings
    /// it back, and the queue's lane waits for it.
    fn retries_ordered_in_place(&self) -> bool {
        false
    }
    /// Sends the jobs its workers gave up on (a dead-letter queue) back to them, and answers
    /// how many. Where new deliveries are queued by the table's stream they are in no sweep
    /// index, so these jobs are their only trace. Nothing to do by default.
    async fn redrive_dead_letters(&self) -> PortResult<usize> {
        Ok(0)
    }
}

/// Spaces the deliveries of a rate-limited webhook (issue 15 item 5) across every worker that
/// sends to it: each call takes the next free send time, at least `1 / per_second` after the
/// previous one (a generic cell rate algorithm with no burst).
#[async_trait]
pub trait RateLimiter: Send + Sync + 'static {
    /// Takes a send time at or after `now` for a delivery to `webhook_id`.
    async fn reserve(
        &self,
        webhook_id: &str,
        per_second: u32,
        now: DateTime<Utc>,
    ) -> PortResult<DateTime<Utc>>;
}

#[async_trait]
pub trait RetryScheduler: Send + Sync + 'static {
    /// Arranges for `job` to be enqueued again at `at`. Best effort: the sweep covers a failure.
    async fn schedule(&self, job: &DeliveryJob, at: DateTime<Utc>) -> PortResult<()>;
    /// Whether this scheduler enqueues a job at its time by itself. When it does, the sweep is
    /// only its safety net and a retry is due for the sweep a lease after its time; when it
    /// does not (the store's due index is the schedule), a retry is due at its own time.
    fn fires_on_time(&self) -> bool {
        true
    }
}

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

#[derive(Debug, Clone)]
pub struct OutboundRequest {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Why an attempt failed, as logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendErrorKind {
    Timeout,
    Connect,
    Redirect,
    Status,
    Refused,
    Other,
}

impl SendErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Connect => "connect",
            Self::Redirect => "redirect",
            Self::Status => "status",
            Self::Refused => "refused",
            Self::Other => "other",
        }
    }
}

#[derive(Debug, Clone)]
pub struct SendOutcome {
    pub status: Option<u16>,
    pub duration: Duration,
    pub error: Option<(SendErrorKind, String)>,
    /// At most 4 KiB of the answer.
    pub body: Option<String>,
    /// From a `Retry-After` header, when the receiver sent one.
    pub retry_after: Option<Duration>,
}

impl SendOutcome {
    pub fn is_success(&self) -> bool {
        self.error.is_none() && self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

#[async_trait]
pub trait HttpSender: Send + Sync + 'static {
    /// POSTs once, without following redirects. Never fails: every problem is in the outcome.
    async fn send(&self, request: OutboundRequest) -> SendOutcome;
}
