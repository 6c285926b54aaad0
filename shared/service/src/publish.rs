//! Publishing events, one at a time (`POST /events`) or in batches (`POST /events/batch`), and
//! fanning each out to its account's matching, active webhooks. Both go through
//! [`Service::publish_events`]: one validation, one way of storing and queueing.

use crate::{FanOutQueue, Service, ServiceError, ServiceResult};
use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};
use hookline_model::catalog::{subscriptions_match, validate_event_type_name};
use hookline_model::filter::Filter;
use hookline_model::limits::MAX_PAYLOAD_BYTES;
use hookline_model::{Delivery, DeliveryJob, Event, ValidationError, Webhook, ids};
use serde::Serialize;
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::time::Instant;

/// Deliveries of a large fan-out stored (and queued) at a time.
const FAN_OUT_CHUNK: usize = 500;

/// The most events one `POST /events/batch` takes.
pub const MAX_BATCH_EVENTS: usize = 100;

/// Store requests a batch keeps in flight at once (event inserts, account and type lookups).
pub const PUBLISH_CONCURRENCY: usize = 8;

/// `POST /events`, and each event of `POST /events/batch`.
#[derive(Debug)]
pub struct NewEvent {
    pub account_id: String,
    pub event_type: String,
    pub payload: Box<RawValue>,
    /// Caller's id: publishing the same id again returns the first result.
    pub id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Published {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    /// How many deliveries the event fanned out to.
    pub deliveries: u32,
}

/// One result per event of a batch, in order: published, or why this event was refused
/// (a validation error, a payload over its limit, an unknown account).
pub type BatchResults = Vec<ServiceResult<Published>>;

/// The number of events a batch may hold: 1 to [`MAX_BATCH_EVENTS`].
pub fn validate_batch_size(len: usize) -> Result<(), ValidationError> {
    if (1..=MAX_BATCH_EVENTS).contains(&len) {
        Ok(())
    } else {
        Err(ValidationError::new(
            "events",
            format!("must hold 1 to {MAX_BATCH_EVENTS} events (got {len})"),
        ))
    }
}

/// A stored event's result and the jobs of its small fan-out, still to be queued.
type StoredEvent = (Published, Vec<DeliveryJob>);

/// An event that passed validation, with the account's webhooks, ready to be stored.
struct ToStore {
    index: usize,
    event: Event,
    deliveries: Vec<Delivery>,
}

impl Service {
    pub async fn publish(&self, input: NewEvent) -> ServiceResult<Published> {
        let mut results = self.publish_events(vec![input]).await?;
        results.pop().expect("one result per event")
    }

    /// Publishes up to [`MAX_BATCH_EVENTS`] events, each as [`Service::publish`] would: one
    /// result per event, in order, a refused event not keeping the others from being
    /// accepted. Fails as a whole only when the queue applies backpressure (nothing is
    /// stored) or a backend fails (what was stored stays stored and queued, and publishing
    /// the batch again is safe: stored ids answer their first result).
    pub async fn publish_batch(&self, inputs: Vec<NewEvent>) -> ServiceResult<BatchResults> {
        if inputs.len() > MAX_BATCH_EVENTS {
            return Err(validate_batch_size(inputs.len()).unwrap_err().into());
        }
        self.publish_events(inputs).await
    }

    /// The one way events are published. Per batch: each distinct event type and each
    /// distinct account (with its webhooks) is read once; the events are stored at most
    /// [`PUBLISH_CONCURRENCY`] at a time, each (with a small fan-out's deliveries) in one
    /// write and due for the sweep; then the jobs of every small fan-out are queued with one
    /// call (a large fan-out queues its chunks as it stores them, as it always did). An
    /// event is therefore stored before any of its jobs is queued, and a failed enqueue is
    /// left to the sweep.
    async fn publish_events(&self, inputs: Vec<NewEvent>) -> ServiceResult<BatchResults> {
        let known_types = self.known_event_types(&inputs).await?;
        let mut results: Vec<Option<ServiceResult<Published>>> = Vec::with_capacity(inputs.len());
        let mut valid = Vec::with_capacity(inputs.len());
        for (index, input) in inputs.into_iter().enumerate() {
            match check_event(&input, &known_types) {
                Ok(()) => {
                    results.push(None);
                    valid.push((index, input));
                }
                Err(error) => results.push(Some(Err(error))),
            }
        }
        if valid.is_empty() {
            return Ok(results.into_iter().flatten().collect());
        }
        if let Some(wait) = self.ports.queue.wait_for_room().await {
            return Err(ServiceError::Busy {
                retry_after_secs: wait.as_secs().max(1),
            });
        }
        let webhooks = self.webhooks_of_accounts(&valid).await?;

        let now = self.ports.clock.now();
        let sweep_at = self.sweep_time(now);
        let mut to_store = Vec::with_capacity(valid.len());
        // A caller id given twice in one batch is stored once; the later ones answer the
        // first's result, as a later request would.
        let mut first_with_id: HashMap<(String, String), usize> = HashMap::new();
        let mut repeats = Vec::new();
        for (index, input) in valid {
            let Some(Some(account_webhooks)) = webhooks.get(&input.account_id) else {
                results[index] = Some(Err(ServiceError::NotFound("account")));
                continue;
            };
            if let Some(id) = &input.id {
                match first_with_id.entry((input.account_id.clone(), id.clone())) {
                    Entry::Occupied(first) => {
                        repeats.push((index, *first.get()));
                        continue;
                    }
                    Entry::Vacant(slot) => {
                        slot.insert(index);
                    }
                }
            }
            let event = Event {
                id: input.id.unwrap_or_else(|| ids::new_id(ids::EVENT, now)),
                account_id: input.account_id,
                event_type: input.event_type,
                payload: input.payload.get().to_string(),
                created_at: now,
                deliveries: 0,
                fanned_out: false,
            };
            let deliveries = deliveries_of(&event, account_webhooks);
            to_store.push(ToStore {
                index,
                event,
                deliveries,
            });
        }

        // Each future owns what it uses (a clone of the service is a few `Arc`s): futures
        // borrowing through the stream's closure are not provably `Send` for the Router.
        let stored: Vec<(usize, ServiceResult<StoredEvent>)> = stream::iter(to_store)
            .map(|item| {
                let service = self.clone();
                async move {
                    let result = service
                        .store_event(item.event, item.deliveries, sweep_at)
                        .await;
                    (item.index, result)
                }
            })
            .buffered(PUBLISH_CONCURRENCY)
            .collect()
            .await;
        let mut jobs = Vec::new();
        let mut failure = None;
        for (index, result) in stored {
            match result {
                Ok((published, new_jobs)) => {
                    jobs.extend(new_jobs);
                    results[index] = Some(Ok(published));
                }
                Err(error) => {
                    failure.get_or_insert(error);
                }
            }
        }
        // Everything stored is queued, even when another event of the batch failed: those
        // events would otherwise wait for the sweep, since publishing them again answers
        // their first result without queueing anything.
        self.enqueue_new_deliveries(jobs).await;
        if let Some(error) = failure {
            return Err(error);
        }
        for (index, first) in repeats {
            results[index] = match &results[first] {
                Some(Ok(published)) => Some(Ok(published.clone())),
                _ => unreachable!("the first event with an id is stored or the batch failed"),
            };
        }
        Ok(results
            .into_iter()
            .map(|r| r.expect("every event has a result"))
            .collect())
    }

    /// Whether each distinct, well-formed event type of `inputs` may be published: built-in
    /// types are known without asking, each registered one is read once.
    async fn known_event_types(&self, inputs: &[NewEvent]) -> ServiceResult<HashMap<String, bool>> {
        let mut names: Vec<String> = inputs
            .iter()
            .map(|i| &i.event_type)
            .filter(|name| validate_event_type_name("type", name).is_ok())
            .cloned()
            .collect();
        names.sort_unstable();
        names.dedup();
        let known: Vec<ServiceResult<(String, bool)>> = stream::iter(names)
            .map(|name| {
                let service = self.clone();
                async move {
                    let known = service.is_known_event_type(&name).await?;
                    Ok((name, known))
                }
            })
            .buffered(PUBLISH_CONCURRENCY)
            .collect()
            .await;
        known.into_iter().collect()
    }

    /// The webhooks of each distinct account of `events`, read once per account; `None` for
    /// an account that does not exist (an id of the wrong shape is not looked up).
    async fn webhooks_of_accounts(
        &self,
        events: &[(usize, NewEvent)],
    ) -> ServiceResult<HashMap<String, Option<Vec<Webhook>>>> {
        let mut accounts: Vec<String> = events.iter().map(|(_, e)| e.account_id.clone()).collect();
        accounts.sort_unstable();
        accounts.dedup();
        let found: Vec<ServiceResult<(String, Option<Vec<Webhook>>)>> = stream::iter(accounts)
            .map(|account_id| {
                let store = self.ports.store.clone();
                async move {
                    let webhooks = if ids::has_prefix(&account_id, ids::ACCOUNT)
                        && store.get_account(&account_id).await?.is_some()
                    {
                        Some(store.list_webhooks(&account_id).await?)
                    } else {
                        None
                    };
                    Ok((account_id, webhooks))
                }
            })
            .buffered(PUBLISH_CONCURRENCY)
            .collect()
            .await;
        found.into_iter().collect()
    }

    /// Stores one new event with its deliveries: a small fan-out in one write, whose jobs are
    /// returned for the caller to queue; a large one event first, then its deliveries a chunk
    /// at a time, each queued once stored. An existing id answers the first result and
    /// stores and queues nothing.
    async fn store_event(
        &self,
        event: Event,
        deliveries: Vec<Delivery>,
        sweep_at: DateTime<Utc>,
    ) -> ServiceResult<StoredEvent> {
        let small = deliveries.len() <= self.ports.store.max_atomic_fan_out();
        let started = std::time::Instant::now();
        let existing = if small {
            self.ports
                .store
                .insert_event_with_deliveries(&event, &deliveries, sweep_at)
                .await?
        } else {
            self.ports.store.insert_event(&event, sweep_at).await?
        };
        crate::telemetry::store_write("publish", started);
        if let Some(existing) = existing {
            if !existing.fanned_out
                && let Some(count) = self.resume_fan_out(&existing, None).await?
            {
                // A publish that died part way through a large fan-out: this one finishes it,
                // as the sweep would, and answers the whole count rather than the 0 stored so
                // far.
                return Ok((
                    Published {
                        deliveries: count,
                        ..published(&existing)
                    },
                    Vec::new(),
                ));
            }
            return Ok((published(&existing), Vec::new()));
        }
        let count = deliveries.len() as u32;
        let jobs = if small {
            deliveries.iter().map(Delivery::job).collect()
        } else {
            // Its ordered webhooks' jobs are queued by the caller with the other events' in
            // their publish order (this runs beside other events' stores).
            let mut ordered = Vec::new();
            self.store_fan_out(&event, deliveries, None, Some(&mut ordered))
                .await?;
            ordered
        };
        // Within the request's span (its request_id); the event id links it to the attempts.
        tracing::info!(
            target: "hookline::publish",
            event_id = %event.id,
            account_id = %event.account_id,
            event_type = %event.event_type,
            deliveries = count,
            "event published"
        );
        Ok((
            Published {
                id: event.id,
                event_type: event.event_type,
                deliveries: count,
            },
            jobs,
        ))
    }

    /// Finishes the fan-out of a stored event that a crash interrupted (the sweep): creates
    /// and queues the deliveries not stored yet; deterministic delivery ids make those already
    /// stored known, and they are neither reset nor queued again. Answers how many deliveries
    /// the event has; `None` when `deadline` came first: what was stored stays, and the event
    /// stays due for the next sweep.
    pub(crate) async fn resume_fan_out(
        &self,
        event: &Event,
        deadline: Option<Instant>,
    ) -> ServiceResult<Option<u32>> {
        let webhooks = self.ports.store.list_webhooks(&event.account_id).await?;
        let deliveries = deliveries_of(event, &webhooks);
        self.store_fan_out(event, deliveries, deadline, None).await
    }

    /// Stores the deliveries of a stored event a chunk at a time, queueing the new ones of each
    /// chunk once it is stored (the first deliveries go out while the rest are written), then
    /// marks the event fanned out. Until then the event stays due, so the sweep finishes a
    /// fan-out that a crash interrupted. `None` when `deadline` passed before the end. With
    /// `hold_ordered`, the new jobs of ordered webhooks go there instead, for the caller to
    /// queue in publish order.
    async fn store_fan_out(
        &self,
        event: &Event,
        deliveries: Vec<Delivery>,
        deadline: Option<Instant>,
        mut hold_ordered: Option<&mut Vec<DeliveryJob>>,
    ) -> ServiceResult<Option<u32>> {
        let sweep_at = self.sweep_time(self.ports.clock.now());
        for chunk in deliveries.chunks(FAN_OUT_CHUNK) {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(None);
            }
            let new = self
                .ports
                .store
                .insert_deliveries(event, chunk, sweep_at)
                .await?;
            // Stored and due for the sweep (or queued by the stream): a failed enqueue is not
            // an error for the publisher.
            let mut jobs: Vec<DeliveryJob> = chunk
                .iter()
                .zip(new)
                .filter(|(_, new)| *new)
                .map(|(delivery, _)| delivery.job())
                .collect();
            if let Some(held) = hold_ordered.as_deref_mut() {
                held.extend(jobs.iter().filter(|job| job.ordered).cloned());
                jobs.retain(|job| !job.ordered);
            }
            self.enqueue_new_deliveries(jobs).await;
        }
        let count = deliveries.len() as u32;
        self.ports.store.finish_fan_out(event, count).await?;
        Ok(Some(count))
    }

    /// Queues newly stored deliveries, unless the table's stream function does
    /// ([`FanOutQueue::Stream`]: it sees each insert and is retried until it queues it).
    /// Those of ordered webhooks are always queued here, before the publish is answered: the
    /// stream's shards are read in parallel, so it would not keep their publish order. The
    /// stream queues them too, as the safety net; the queue makes the two sends one (a FIFO
    /// queue's deduplication).
    pub(crate) async fn enqueue_new_deliveries(&self, mut jobs: Vec<DeliveryJob>) {
        if self.config.fan_out_queue == FanOutQueue::Stream {
            jobs.retain(|job| job.ordered);
        }
        if !jobs.is_empty() {
            self.enqueue_or_leave_to_sweep(jobs).await;
        }
    }

    pub(crate) fn sweep_time(&self, from: DateTime<Utc>) -> DateTime<Utc> {
        from + chrono::Duration::from_std(self.config.sweep_lease)
            .unwrap_or(chrono::Duration::minutes(2))
    }
}

/// The pending deliveries of `event`: one per active webhook whose subscriptions match and
/// whose payload filter, if any, passes. The one place an event is matched to webhooks
/// (publish, batch, test events and the sweep's resumed fan-outs all come here).
pub(crate) fn deliveries_of(event: &Event, webhooks: &[Webhook]) -> Vec<Delivery> {
    // Parsed once per event, and only when a subscribed webhook has a filter.
    let mut payload: Option<Option<serde_json::Value>> = None;
    webhooks
        .iter()
        .filter(|w| w.active && subscriptions_match(&w.events, &event.event_type))
        .filter(|w| passes_filter(w, event, &mut payload))
        .map(|w| Delivery::pending(event, w))
        .collect()
}

fn passes_filter(
    webhook: &Webhook,
    event: &Event,
    payload: &mut Option<Option<serde_json::Value>>,
) -> bool {
    let Some(raw) = &webhook.filter else {
        return true;
    };
    let filter = match Filter::parse("filter", raw) {
        Ok(filter) => filter,
        Err(error) => {
            // Checked when set, so only a store edited by hand gets here: deliver nothing
            // rather than what the filter was meant to keep out.
            tracing::warn!(webhook_id = %webhook.id, %error, "stored filter does not parse; no delivery");
            return false;
        }
    };
    payload
        .get_or_insert_with(|| serde_json::from_str(&event.payload).ok())
        .as_ref()
        .is_some_and(|payload| filter.matches(payload))
}

/// Everything about one event that needs no store: the checks of `POST /events`, in its
/// order, with whether its type is known looked up beforehand.
fn check_event(input: &NewEvent, known_types: &HashMap<String, bool>) -> ServiceResult<()> {
    validate_event_type_name("type", &input.event_type)?;
    if !known_types.get(&input.event_type).copied().unwrap_or(false) {
        return Err(ValidationError::new(
            "type",
            format!("unknown event type '{}'", input.event_type),
        )
        .into());
    }
    if input.payload.get().len() > MAX_PAYLOAD_BYTES {
        return Err(ServiceError::TooLarge {
            field: "payload",
            limit: MAX_PAYLOAD_BYTES,
        });
    }
    if !input.payload.get().trim_start().starts_with('{') {
        return Err(ValidationError::new("payload", "must be a JSON object").into());
    }
    if let Some(id) = &input.id {
        validate_event_id(id)?;
    }
    Ok(())
}

fn published(event: &Event) -> Published {
    Published {
        id: event.id.clone(),
        event_type: event.event_type.clone(),
        deliveries: event.deliveries,
    }
}

fn validate_event_id(id: &str) -> Result<(), ValidationError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
    if ok {
        Ok(())
    } else {
        Err(ValidationError::new(
            "id",
            "must be 1 to 128 letters, digits, '_', '-', '.' or ':'",
        ))
    }
}

#[cfg(test)]
mod tests {
    //! Publishing over in-memory ports that count what the service asks of them.

    use super::*;
    use crate::ports::*;
    use crate::{Config, Mode, Ports};
    use async_trait::async_trait;
    use chrono::TimeZone;
    use hookline_model::types::SigningSecretEntry;
    use hookline_model::{Account, ApiKeyRecord, EventTypeInfo, StatusCounts};
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    const ACCOUNT: &str = "acct_01JC6Y4V9M6T2Q8KJ1N3X5Z7B9";
    const OTHER_ACCOUNT: &str = "acct_01JC6Y4V9M6T2Q8KJ1N3X5Z7C0";
    const MISSING_ACCOUNT: &str = "acct_01JC6Y4V9M6T2Q8KJ1N3X5Z7C1";

    /// A store holding accounts, webhooks, registered types and events in memory. Writes
    /// take a few milliseconds, so concurrent ones overlap.
    #[derive(Default)]
    struct MemoryStore {
        accounts: Mutex<HashMap<String, Vec<Webhook>>>,
        types: Mutex<HashSet<String>>,
        events: Mutex<HashMap<(String, String), Event>>,
        /// Delivery ids stored.
        deliveries: Mutex<HashSet<String>>,
        /// Event ids whose insert fails.
        failing: Mutex<HashSet<String>>,
        /// How many of the next chunk inserts of a large fan-out fail.
        failing_chunks: AtomicUsize,
        get_account: AtomicUsize,
        list_webhooks: AtomicUsize,
        get_event_type: AtomicUsize,
        inserts: AtomicUsize,
        in_flight: AtomicUsize,
        most_in_flight: AtomicUsize,
    }

    impl MemoryStore {
        fn with_account(self, account: &str, webhooks: usize) -> Self {
            let now = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
            let hooks = (0..webhooks)
                .map(|n| Webhook {
                    id: format!("wh_{account}_{n}"),
                    account_id: account.into(),
                    url: format!("https://example.com/{n}"),
                    events: vec!["*".into()],
                    active: true,
                    description: None,
                    metadata: None,
                    authorization_token: None,
                    request: Default::default(),
                    signing_secrets: vec![SigningSecretEntry {
                        secret: "whsec_x".into(),
                        expires_at: None,
                    }],
                    filter: None,
                    rate_limit: None,
                    ordered: false,
                    created_at: now,
                    updated_at: now,
                    version: 0,
                    health: Default::default(),
                })
                .collect();
            self.accounts.lock().unwrap().insert(account.into(), hooks);
            self
        }

        fn with_type(self, name: &str) -> Self {
            self.types.lock().unwrap().insert(name.into());
            self
        }

        fn stored_events(&self) -> usize {
            self.events.lock().unwrap().len()
        }

        async fn write<T>(&self, event: &Event, write: impl FnOnce() -> T) -> PortResult<T> {
            self.inserts.fetch_add(1, Ordering::SeqCst);
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.most_in_flight.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(5)).await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            if self.failing.lock().unwrap().contains(&event.id) {
                return Err(PortError("the table is throttled".into()));
            }
            Ok(write())
        }

        /// Stores `event` (with its `deliveries` when `fanned_out`) unless its id is there.
        fn insert(
            &self,
            event: &Event,
            deliveries: &[Delivery],
            fanned_out: bool,
        ) -> Option<Event> {
            let mut events = self.events.lock().unwrap();
            let key = (event.account_id.clone(), event.id.clone());
            if let Some(existing) = events.get(&key) {
                return Some(existing.clone());
            }
            let mut stored = event.clone();
            stored.deliveries = deliveries.len() as u32;
            stored.fanned_out = fanned_out;
            events.insert(key, stored);
            let mut stored_deliveries = self.deliveries.lock().unwrap();
            stored_deliveries.extend(deliveries.iter().map(|d| d.id.clone()));
            None
        }
    }

    #[async_trait]
    impl AccountStore for MemoryStore {
        async fn get_account(&self, account_id: &str) -> PortResult<Option<Account>> {
            self.get_account.fetch_add(1, Ordering::SeqCst);
            Ok(self
                .accounts
                .lock()
                .unwrap()
                .contains_key(account_id)
                .then(|| Account {
                    id: account_id.into(),
                    name: "Clinic".into(),
                    created_at: Utc::now(),
                    webhook_secret: None,
                }))
        }

        async fn get_event_type(&self, name: &str) -> PortResult<Option<EventTypeInfo>> {
            self.get_event_type.fetch_add(1, Ordering::SeqCst);
            Ok(self
                .types
                .lock()
                .unwrap()
                .contains(name)
                .then(|| EventTypeInfo {
                    name: name.into(),
                    description: "registered".into(),
                }))
        }

        // Publishing calls none of these: reaching one is a test failure.
        async fn insert_account(&self, _: &Account, _: &ApiKeyRecord) -> PortResult<()> {
            unreachable!("publishing never calls this")
        }

        async fn list_accounts(&self, _: u32, _: u32) -> PortResult<Page<Account>> {
            unreachable!("publishing never calls this")
        }

        async fn set_account_secret(&self, _: &str, _: Option<&str>) -> PortResult<bool> {
            unreachable!("publishing never calls this")
        }

        async fn insert_api_key(&self, _: &ApiKeyRecord) -> PortResult<()> {
            unreachable!("publishing never calls this")
        }

        async fn find_api_key(&self, _: &str) -> PortResult<Option<ApiKeyRecord>> {
            unreachable!("publishing never calls this")
        }

        async fn list_api_keys(&self, _: &str) -> PortResult<Vec<ApiKeyRecord>> {
            unreachable!("publishing never calls this")
        }

        async fn delete_api_key(&self, _: &str, _: &str) -> PortResult<bool> {
            unreachable!("publishing never calls this")
        }

        async fn delete_admin_keys(&self) -> PortResult<u32> {
            unreachable!("publishing never calls this")
        }

        async fn insert_event_type(&self, _: &EventTypeInfo) -> PortResult<bool> {
            unreachable!("publishing never calls this")
        }

        async fn list_event_types(&self) -> PortResult<Vec<EventTypeInfo>> {
            unreachable!("publishing never calls this")
        }
    }

    #[async_trait]
    impl WebhookStore for MemoryStore {
        async fn list_webhooks(&self, account_id: &str) -> PortResult<Vec<Webhook>> {
            self.list_webhooks.fetch_add(1, Ordering::SeqCst);
            Ok(self
                .accounts
                .lock()
                .unwrap()
                .get(account_id)
                .cloned()
                .unwrap_or_default())
        }

        async fn insert_webhook(&self, _: &Webhook, _: u32) -> PortResult<bool> {
            unreachable!("publishing never calls this")
        }

        async fn update_webhook(&self, _: &Webhook) -> PortResult<bool> {
            unreachable!("publishing never calls this")
        }

        async fn deactivate_webhook(&self, _: &str, _: &str, _: DateTime<Utc>) -> PortResult<bool> {
            unreachable!("publishing never calls this")
        }

        async fn delete_webhook(&self, _: &str, _: &str) -> PortResult<Option<Webhook>> {
            unreachable!("publishing never calls this")
        }

        async fn get_webhook(&self, _: &str, _: &str) -> PortResult<Option<Webhook>> {
            unreachable!("publishing never calls this")
        }

        async fn list_webhooks_page(&self, _: &str, _: u32, _: u32) -> PortResult<Page<Webhook>> {
            unreachable!("publishing never calls this")
        }
    }

    #[async_trait]
    impl DeliveryStore for MemoryStore {
        async fn insert_event_with_deliveries(
            &self,
            event: &Event,
            deliveries: &[Delivery],
            _: DateTime<Utc>,
        ) -> PortResult<Option<Event>> {
            self.write(event, || self.insert(event, deliveries, true))
                .await
        }

        async fn insert_event(&self, event: &Event, _: DateTime<Utc>) -> PortResult<Option<Event>> {
            self.write(event, || self.insert(event, &[], false)).await
        }

        async fn insert_deliveries(
            &self,
            _: &Event,
            deliveries: &[Delivery],
            _: DateTime<Utc>,
        ) -> PortResult<Vec<bool>> {
            let fail = self
                .failing_chunks
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if fail {
                return Err(PortError("the table is throttled".into()));
            }
            let mut stored = self.deliveries.lock().unwrap();
            Ok(deliveries
                .iter()
                .map(|d| stored.insert(d.id.clone()))
                .collect())
        }

        async fn finish_fan_out(&self, event: &Event, deliveries: u32) -> PortResult<()> {
            let mut events = self.events.lock().unwrap();
            let stored = events
                .get_mut(&(event.account_id.clone(), event.id.clone()))
                .unwrap();
            stored.deliveries = deliveries;
            stored.fanned_out = true;
            Ok(())
        }

        async fn get_event(&self, _: &str, _: &str) -> PortResult<Option<Event>> {
            unreachable!("publishing never calls this")
        }

        async fn get_events(&self, _: &str, _: &[String]) -> PortResult<Vec<Event>> {
            unreachable!("publishing never calls this")
        }

        async fn load_delivery(&self, _: &DeliveryJob) -> PortResult<Option<DeliveryContext>> {
            unreachable!("publishing never calls this")
        }

        async fn record_attempt(&self, _: &Delivery, _: &AttemptRecord) -> PortResult<bool> {
            unreachable!("publishing never calls this")
        }

        async fn record_attempts(&self, _: &[(Delivery, AttemptRecord)]) -> Vec<PortResult<bool>> {
            unreachable!("publishing never calls this")
        }

        async fn requeue_delivery(&self, _: &Delivery, _: DateTime<Utc>) -> PortResult<bool> {
            unreachable!("publishing never calls this")
        }

        async fn list_deliveries(&self, _: &str, _: &DeliveryQuery) -> PortResult<DeliveryPage> {
            unreachable!("publishing never calls this")
        }

        async fn get_delivery(&self, _: &str, _: &str) -> PortResult<Option<Delivery>> {
            unreachable!("publishing never calls this")
        }

        async fn status_counts(&self, _: &str) -> PortResult<StatusCounts> {
            unreachable!("publishing never calls this")
        }
    }

    #[async_trait]
    impl SweepStore for MemoryStore {
        async fn due(&self, _: DateTime<Utc>, _: usize) -> PortResult<Vec<DueItem>> {
            unreachable!("publishing never calls this")
        }

        async fn postpone(&self, _: &DueItem, _: DateTime<Utc>) -> PortResult<()> {
            unreachable!("publishing never calls this")
        }
    }

    /// A queue recording each `enqueue` call, and whether every job's delivery was stored
    /// when it was queued.
    struct RecordingQueue {
        store: Arc<MemoryStore>,
        calls: Mutex<Vec<Vec<DeliveryJob>>>,
        queued_before_stored: AtomicUsize,
        fail: bool,
        backpressure: Option<Duration>,
    }

    #[async_trait]
    impl Queue for RecordingQueue {
        async fn enqueue(&self, jobs: &[DeliveryJob]) -> PortResult<()> {
            let stored = self.store.deliveries.lock().unwrap();
            let early = jobs
                .iter()
                .filter(|j| !stored.contains(&j.delivery_id))
                .count();
            self.queued_before_stored.fetch_add(early, Ordering::SeqCst);
            self.calls.lock().unwrap().push(jobs.to_vec());
            if self.fail {
                return Err(PortError("the queue is down".into()));
            }
            Ok(())
        }
        fn backpressure(&self) -> Option<Duration> {
            self.backpressure
        }
    }

    struct NoScheduler;
    #[async_trait]
    impl RetryScheduler for NoScheduler {
        async fn schedule(&self, _: &DeliveryJob, _: DateTime<Utc>) -> PortResult<()> {
            unreachable!("publishing never calls this")
        }
    }

    struct NoSender;
    #[async_trait]
    impl HttpSender for NoSender {
        async fn send(&self, _: OutboundRequest) -> SendOutcome {
            unreachable!("publishing never calls this")
        }
    }

    struct Setup {
        service: Service,
        store: Arc<MemoryStore>,
        queue: Arc<RecordingQueue>,
    }

    impl Setup {
        fn new(store: MemoryStore) -> Self {
            Self::with_queue(store, false, None)
        }

        /// Publish queues what it stores (`HOOKLINE_FAN_OUT_QUEUE=api`), which these tests
        /// watch; with `stream` it queues nothing (see the test of that).
        fn with_queue(store: MemoryStore, fail: bool, backpressure: Option<Duration>) -> Self {
            Self::with_config(store, fail, backpressure, FanOutQueue::Api)
        }

        fn with_config(
            store: MemoryStore,
            fail: bool,
            backpressure: Option<Duration>,
            fan_out_queue: FanOutQueue,
        ) -> Self {
            let store = Arc::new(store);
            let queue = Arc::new(RecordingQueue {
                store: store.clone(),
                calls: Mutex::default(),
                queued_before_stored: AtomicUsize::new(0),
                fail,
                backpressure,
            });
            let ports = Ports {
                store: store.clone(),
                queue: queue.clone(),
                scheduler: Arc::new(NoScheduler),
                clock: Arc::new(SystemClock),
                sender: Arc::new(NoSender),
            };
            let mut config = Config::for_mode(Mode::Lambda);
            config.fan_out_queue = fan_out_queue;
            Self {
                service: Service::new(ports, config),
                store,
                queue,
            }
        }

        fn enqueue_calls(&self) -> Vec<usize> {
            self.queue
                .calls
                .lock()
                .unwrap()
                .iter()
                .map(Vec::len)
                .collect()
        }
    }

    fn event(account: &str, event_type: &str, payload: &str, id: Option<&str>) -> NewEvent {
        NewEvent {
            account_id: account.into(),
            event_type: event_type.into(),
            payload: RawValue::from_string(payload.into()).unwrap(),
            id: id.map(String::from),
        }
    }

    fn good(n: usize) -> NewEvent {
        event(
            ACCOUNT,
            "reading.weight",
            &format!(r#"{{"n":{n}}}"#),
            Some(&format!("ext-{n}")),
        )
    }

    /// The field a refused event's error names, or its id when accepted.
    fn outcome(result: &ServiceResult<Published>) -> String {
        match result {
            Ok(published) => format!("ok {} {}", published.id, published.deliveries),
            Err(ServiceError::Validation(e)) => format!("400 {}", e.field),
            Err(ServiceError::TooLarge { field, .. }) => format!("413 {field}"),
            Err(ServiceError::NotFound(what)) => format!("404 {what}"),
            Err(other) => format!("other {other}"),
        }
    }

    /// On Lambda the table's stream function queues each stored delivery: publish only writes.
    #[tokio::test]
    async fn with_the_fan_out_queued_by_the_stream_publish_only_stores() {
        let webhooks = MAX_ATOMIC_FAN_OUT + 5;
        let setup = Setup::with_config(
            MemoryStore::default().with_account(ACCOUNT, webhooks),
            false,
            None,
            FanOutQueue::Stream,
        );
        let batch = setup
            .service
            .publish_batch(vec![good(0), good(1)])
            .await
            .unwrap();
        assert!(batch.iter().all(|r| r.is_ok()));
        let large = setup.service.publish(good(2)).await.unwrap();
        assert_eq!(large.deliveries, webhooks as u32);
        assert_eq!(setup.store.deliveries.lock().unwrap().len(), 3 * webhooks);
        assert!(
            setup.enqueue_calls().is_empty(),
            "nothing queued by publish"
        );
    }

    #[tokio::test]
    async fn publishing_again_after_a_fan_out_failed_part_way_finishes_it_and_answers_its_count() {
        let webhooks = MAX_ATOMIC_FAN_OUT + 5;
        let setup = Setup::new(MemoryStore::default().with_account(ACCOUNT, webhooks));
        setup.store.failing_chunks.store(1, Ordering::SeqCst);
        let first = setup.service.publish(good(0)).await;
        assert!(first.is_err(), "the chunk insert failed: {first:?}");
        assert_eq!(setup.store.deliveries.lock().unwrap().len(), 0);

        // The caller publishes the same id again: the event is there, its fan-out is not.
        let again = setup.service.publish(good(0)).await.unwrap();
        assert_eq!(again.deliveries, webhooks as u32);
        assert_eq!(setup.store.deliveries.lock().unwrap().len(), webhooks);
        assert_eq!(setup.enqueue_calls().iter().sum::<usize>(), webhooks);
        // Once finished, a third publish answers the stored count and queues nothing more.
        let third = setup.service.publish(good(0)).await.unwrap();
        assert_eq!(third.deliveries, webhooks as u32);
        assert_eq!(setup.enqueue_calls().iter().sum::<usize>(), webhooks);
    }

    #[tokio::test]
    async fn a_batch_answers_each_event_in_order_and_publishes_only_the_good_ones() {
        let setup = Setup::new(
            MemoryStore::default()
                .with_account(ACCOUNT, 2)
                .with_type("survey_finished"),
        );
        let big = format!(r#"{{"x":"{}"}}"#, "a".repeat(MAX_PAYLOAD_BYTES));
        let results = setup
            .service
            .publish_batch(vec![
                good(0),
                event(ACCOUNT, "no.such.type", "{}", None),
                event(ACCOUNT, "bad type!", "{}", None),
                event(MISSING_ACCOUNT, "reading.weight", "{}", None),
                event("not-an-account-id", "reading.weight", "{}", None),
                event(ACCOUNT, "reading.weight", "{}", Some("bad id!")),
                event(ACCOUNT, "reading.weight", &big, None),
                event(ACCOUNT, "reading.weight", "[1]", None),
                event(ACCOUNT, "survey_finished", "{}", Some("ext-survey")),
                // Both a bad type and a bad id: the type is named, as POST /events does.
                event(ACCOUNT, "no.such.type", "{}", Some("bad id!")),
            ])
            .await
            .unwrap();
        let outcomes: Vec<String> = results.iter().map(outcome).collect();
        assert_eq!(
            outcomes,
            [
                "ok ext-0 2",
                "400 type",
                "400 type",
                "404 account",
                "404 account",
                "400 id",
                "413 payload",
                "400 payload",
                "ok ext-survey 2",
                "400 type",
            ]
        );
        assert_eq!(setup.store.stored_events(), 2);
        assert_eq!(setup.enqueue_calls(), [4], "both events' jobs in one call");
        // An account id of the wrong shape is not looked up.
        assert_eq!(setup.store.get_account.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_batch_queues_once_and_reads_each_account_and_type_once() {
        let setup = Setup::new(
            MemoryStore::default()
                .with_account(ACCOUNT, 1)
                .with_account(OTHER_ACCOUNT, 2)
                .with_type("survey_finished")
                .with_type("medical-encounters.created"),
        );
        let types = [
            "survey_finished",
            "medical-encounters.created",
            "reading.weight",
        ];
        let events = (0..99)
            .map(|n| {
                let account = if n % 2 == 0 { ACCOUNT } else { OTHER_ACCOUNT };
                event(account, types[n % 3], "{}", None)
            })
            .collect();
        let results = setup.service.publish_batch(events).await.unwrap();
        assert_eq!(results.len(), 99);
        let deliveries: u32 = results.iter().map(|r| r.as_ref().unwrap().deliveries).sum();
        assert_eq!(deliveries, 50 + 49 * 2);
        assert_eq!(
            setup.enqueue_calls(),
            [148],
            "every job of the batch in one call"
        );
        assert_eq!(setup.queue.queued_before_stored.load(Ordering::SeqCst), 0);
        assert_eq!(setup.store.get_account.load(Ordering::SeqCst), 2);
        assert_eq!(setup.store.list_webhooks.load(Ordering::SeqCst), 2);
        // Built-in types are known without asking the store.
        assert_eq!(setup.store.get_event_type.load(Ordering::SeqCst), 2);
        assert_eq!(setup.store.inserts.load(Ordering::SeqCst), 99);
        let most = setup.store.most_in_flight.load(Ordering::SeqCst);
        assert!(
            (2..=PUBLISH_CONCURRENCY).contains(&most),
            "stored concurrently, at most {PUBLISH_CONCURRENCY} at once: {most}"
        );
    }

    #[tokio::test]
    async fn publishing_a_batch_again_answers_the_first_results_and_queues_nothing() {
        let setup = Setup::new(MemoryStore::default().with_account(ACCOUNT, 1));
        let batch = || (0..5).map(good).collect::<Vec<_>>();
        let first: Vec<String> = setup
            .service
            .publish_batch(batch())
            .await
            .unwrap()
            .iter()
            .map(outcome)
            .collect();
        let mut again = batch();
        // A different body under a known id changes nothing.
        again[2] = event(
            ACCOUNT,
            "patient.created",
            r#"{"other":true}"#,
            Some("ext-2"),
        );
        let second: Vec<String> = setup
            .service
            .publish_batch(again)
            .await
            .unwrap()
            .iter()
            .map(outcome)
            .collect();
        assert_eq!(first, second);
        assert_eq!(setup.store.stored_events(), 5);
        assert_eq!(setup.enqueue_calls(), [5], "nothing queued the second time");
    }

    #[tokio::test]
    async fn an_id_given_twice_in_one_batch_is_published_once() {
        let setup = Setup::new(MemoryStore::default().with_account(ACCOUNT, 1));
        let results = setup
            .service
            .publish_batch(vec![
                event(ACCOUNT, "reading.weight", "{}", Some("twice")),
                event(ACCOUNT, "no.such.type", "{}", Some("twice")),
                event(ACCOUNT, "patient.created", "{}", Some("twice")),
                event(OTHER_ACCOUNT, "patient.created", "{}", Some("twice")),
            ])
            .await
            .unwrap();
        let outcomes: Vec<String> = results.iter().map(outcome).collect();
        assert_eq!(
            outcomes,
            ["ok twice 1", "400 type", "ok twice 1", "404 account"]
        );
        assert_eq!(results[2].as_ref().unwrap().event_type, "reading.weight");
        assert_eq!(setup.store.inserts.load(Ordering::SeqCst), 1);
        assert_eq!(setup.enqueue_calls(), [1]);
    }

    #[tokio::test]
    async fn backpressure_refuses_the_whole_batch_before_anything_is_stored() {
        let setup = Setup::with_queue(
            MemoryStore::default().with_account(ACCOUNT, 1),
            false,
            Some(Duration::from_secs(3)),
        );
        let error = setup
            .service
            .publish_batch((0..10).map(good).collect())
            .await
            .unwrap_err();
        assert!(matches!(
            error,
            ServiceError::Busy {
                retry_after_secs: 3
            }
        ));
        assert_eq!(setup.store.stored_events(), 0);
        // A batch of refused events only is answered event by event, as POST /events
        // answers a bad event with its 400 when busy.
        let results = setup
            .service
            .publish_batch(vec![event(ACCOUNT, "no.such.type", "{}", None)])
            .await
            .unwrap();
        assert_eq!(outcome(&results[0]), "400 type");
    }

    #[tokio::test]
    async fn a_backend_failure_fails_the_batch_but_queues_what_was_stored_and_a_retry_completes_it()
    {
        let store = MemoryStore::default().with_account(ACCOUNT, 1);
        store.failing.lock().unwrap().insert("ext-3".into());
        let setup = Setup::new(store);
        let error = setup
            .service
            .publish_batch((0..6).map(good).collect())
            .await
            .unwrap_err();
        assert!(matches!(error, ServiceError::Port(_)), "{error}");
        assert_eq!(setup.store.stored_events(), 5);
        assert_eq!(setup.enqueue_calls(), [5], "the stored events are queued");

        setup.store.failing.lock().unwrap().clear();
        let results = setup
            .service
            .publish_batch((0..6).map(good).collect())
            .await
            .unwrap();
        let outcomes: Vec<String> = results.iter().map(outcome).collect();
        assert_eq!(
            outcomes,
            (0..6).map(|n| format!("ok ext-{n} 1")).collect::<Vec<_>>()
        );
        assert_eq!(setup.store.stored_events(), 6);
        assert_eq!(
            setup.enqueue_calls(),
            [5, 1],
            "only the new event is queued"
        );
    }

    #[tokio::test]
    async fn a_failed_enqueue_is_left_to_the_sweep() {
        let setup = Setup::with_queue(MemoryStore::default().with_account(ACCOUNT, 1), true, None);
        let results = setup
            .service
            .publish_batch((0..3).map(good).collect())
            .await
            .unwrap();
        assert!(results.iter().all(Result::is_ok));
        assert_eq!(setup.store.stored_events(), 3);
        assert_eq!(setup.enqueue_calls(), [3]);
    }

    #[tokio::test]
    async fn a_large_fan_out_in_a_batch_is_stored_in_chunks_and_counted() {
        let setup = Setup::new(
            MemoryStore::default()
                .with_account(ACCOUNT, MAX_ATOMIC_FAN_OUT + 1)
                .with_account(OTHER_ACCOUNT, 1),
        );
        let results = setup
            .service
            .publish_batch(vec![
                event(ACCOUNT, "reading.weight", "{}", Some("large")),
                event(OTHER_ACCOUNT, "reading.weight", "{}", Some("small")),
            ])
            .await
            .unwrap();
        let outcomes: Vec<String> = results.iter().map(outcome).collect();
        assert_eq!(outcomes, ["ok large 41", "ok small 1"]);
        let mut calls = setup.enqueue_calls();
        calls.sort_unstable();
        assert_eq!(calls, [1, 41]);
        assert_eq!(setup.queue.queued_before_stored.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_batch_holds_at_most_100_events() {
        let setup = Setup::new(MemoryStore::default().with_account(ACCOUNT, 1));
        let error = setup
            .service
            .publish_batch((0..101).map(good).collect())
            .await
            .unwrap_err();
        assert!(
            matches!(&error, ServiceError::Validation(e) if e.field == "events"),
            "{error}"
        );
        assert_eq!(setup.store.stored_events(), 0);
        assert!(validate_batch_size(0).is_err());
        assert!(validate_batch_size(1).is_ok());
        assert!(validate_batch_size(MAX_BATCH_EVENTS).is_ok());
    }

    #[tokio::test]
    async fn publish_answers_as_before() {
        let setup = Setup::new(MemoryStore::default().with_account(ACCOUNT, 3));
        let published = setup.service.publish(good(7)).await.unwrap();
        assert_eq!((published.id.as_str(), published.deliveries), ("ext-7", 3));
        assert!(matches!(
            setup
                .service
                .publish(event(MISSING_ACCOUNT, "reading.weight", "{}", None))
                .await,
            Err(ServiceError::NotFound("account"))
        ));
        assert!(matches!(
            setup.service.publish(event(ACCOUNT, "nope.x", "{}", None)).await,
            Err(ServiceError::Validation(e)) if e.field == "type"
        ));
        assert_eq!(setup.enqueue_calls(), [3]);
    }

    #[tokio::test]
    async fn filters_keep_out_events_they_do_not_pass_also_in_a_resumed_fan_out() {
        let webhooks = MAX_ATOMIC_FAN_OUT + 6;
        let store = MemoryStore::default().with_account(ACCOUNT, webhooks);
        for (n, webhook) in store
            .accounts
            .lock()
            .unwrap()
            .get_mut(ACCOUNT)
            .unwrap()
            .iter_mut()
            .enumerate()
        {
            // Half want heavy readings only; the others have no filter.
            if n % 2 == 0 {
                webhook.filter = Some(serde_json::json!({"reading.kg": {"$gte": 100}}));
            }
        }
        let setup = Setup::new(store);
        let light = |id: &str| {
            event(
                ACCOUNT,
                "reading.weight",
                r#"{"reading":{"kg":70}}"#,
                Some(id),
            )
        };
        let heavy = |id: &str| {
            event(
                ACCOUNT,
                "reading.weight",
                r#"{"reading":{"kg":120}}"#,
                Some(id),
            )
        };
        assert_eq!(
            setup
                .service
                .publish(light("light"))
                .await
                .unwrap()
                .deliveries,
            (webhooks / 2) as u32
        );
        // The sweep's path: a fan-out interrupted after its event was stored matches again.
        setup.store.failing_chunks.store(1, Ordering::SeqCst);
        assert!(setup.service.publish(heavy("heavy")).await.is_err());
        assert_eq!(
            setup
                .service
                .publish(heavy("heavy"))
                .await
                .unwrap()
                .deliveries,
            webhooks as u32
        );
        assert_eq!(
            setup.store.deliveries.lock().unwrap().len(),
            webhooks / 2 + webhooks
        );
    }
}
