//! A Store in front of another, for a store that this process alone writes (local mode): it
//! keeps what the hot path reads again and again (accounts, an account's webhooks, API keys,
//! registered event types) and the deliveries a fan-out just wrote, so their first attempt
//! needs no read at all (the sweep and a restart still read them from the store). Every write passes through here, so every write invalidates what it
//! changes: nothing is served stale, and no time-to-live is needed.
//!
//! Each write invalidates once it is done. A read that raced with a write must not put the
//! value it read before that write into the cache: each cache has a generation, bumped by
//! every invalidation, and a value read under an older generation is returned but not kept.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use hookline_model::{
    Account, ApiKeyRecord, Delivery, DeliveryJob, Event, EventTypeInfo, Job, StatusCounts, Webhook,
};
use hookline_service::ports::{
    AttemptRecord, DeliveryContext, DeliveryPage, DeliveryQuery, DueItem, Page, PortResult, Walk,
};
use hookline_service::{AccountStore, DeliveryStore, Store, SweepStore, WebhookStore};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};

/// Most accounts (and API keys, and webhook lists) kept; past it a cache starts again empty.
const MAX_ENTRIES: usize = 10_000;
/// Most fresh deliveries kept for their first attempt; past it they are read from the store.
const MAX_FRESH: usize = 50_000;
/// Most payload bytes kept with them (a fan-out's event is kept once for all its deliveries),
/// so memory stays bounded when publishing outpaces delivery.
const MAX_FRESH_BYTES: usize = 64 * 1024 * 1024;

/// A map with a generation: a value read from the store is kept only if no invalidation
/// happened since the read began.
struct Generational<V> {
    inner: Mutex<(u64, HashMap<String, V>)>,
}

impl<V: Clone> Generational<V> {
    fn new() -> Self {
        Self {
            inner: Mutex::new((0, HashMap::new())),
        }
    }

    /// The cached value, or else `load`'s, kept unless something was invalidated meanwhile.
    async fn get_or_load<Fut: Future<Output = PortResult<V>>>(
        &self,
        key: &str,
        load: impl FnOnce() -> Fut,
    ) -> PortResult<V> {
        let generation = {
            let inner = self.inner.lock().unwrap();
            match inner.1.get(key) {
                Some(value) => return Ok(value.clone()),
                None => inner.0,
            }
        };
        let value = load().await?;
        let mut inner = self.inner.lock().unwrap();
        if inner.0 == generation {
            if inner.1.len() >= MAX_ENTRIES {
                inner.1.clear();
            }
            inner.1.insert(key.to_string(), value.clone());
        }
        Ok(value)
    }

    fn invalidate(&self, key: &str) {
        let mut inner = self.inner.lock().unwrap();
        inner.0 += 1;
        inner.1.remove(key);
    }

    fn invalidate_all(&self) {
        let mut inner = self.inner.lock().unwrap();
        inner.0 += 1;
        inner.1.clear();
    }
}

/// Deliveries a fan-out just stored, until their first attempt takes them: exactly what the
/// store holds for them until then (every write of a delivery passes through here).
#[derive(Default)]
struct Fresh {
    /// Payload bytes of the events below.
    bytes: usize,
    deliveries: HashMap<String, Delivery>,
    /// Their events as stored now, with how many of the deliveries above each still has.
    events: HashMap<String, (Arc<Event>, usize)>,
    /// Events inserted here whose fan-out is not finished: only their deliveries are certainly
    /// new (a sweep's re-run of an old fan-out may meet deliveries that moved on long ago).
    fanning_out: HashSet<String>,
}

impl Fresh {
    /// `event` as stored now, and deliveries of it just stored.
    fn add(&mut self, event: &Event, deliveries: &[Delivery]) {
        let Fresh {
            bytes,
            deliveries: fresh,
            events,
            ..
        } = self;
        if !events.contains_key(&event.id) && *bytes + event.payload.len() > MAX_FRESH_BYTES {
            // Full: these are read from the store at their first attempt instead.
            return;
        }
        let (_, waiting) = events.entry(event.id.clone()).or_insert_with(|| {
            *bytes += event.payload.len();
            (Arc::new(event.clone()), 0)
        });
        for delivery in deliveries {
            if fresh.len() >= MAX_FRESH {
                break;
            }
            if fresh
                .insert(delivery.id.clone(), delivery.clone())
                .is_none()
            {
                *waiting += 1;
            }
        }
        if *waiting == 0 {
            events.remove(&event.id);
            *bytes -= event.payload.len();
        }
    }

    fn take(&mut self, delivery_id: &str) -> Option<(Delivery, Arc<Event>)> {
        let delivery = self.deliveries.remove(delivery_id)?;
        let (event, waiting) = self.events.get_mut(&delivery.event_id)?;
        let event = event.clone();
        *waiting -= 1;
        if *waiting == 0 {
            self.events.remove(&delivery.event_id);
            self.bytes -= event.payload.len();
        }
        Some((delivery, event))
    }

    fn fan_out_finished(&mut self, event: &Event, deliveries: u32) {
        self.fanning_out.remove(&event.id);
        if let Some((stored, _)) = self.events.get_mut(&event.id) {
            *stored = Arc::new(Event {
                fanned_out: true,
                deliveries,
                ..event.clone()
            });
        }
    }
}

/// An account's webhooks as the store lists them, and by id: a delivery looks its webhook up
/// without copying the list (a fan-out to 10,000 webhooks makes 10,000 lookups).
struct AccountWebhooks {
    list: Vec<Webhook>,
    by_id: HashMap<String, usize>,
}

impl AccountWebhooks {
    fn new(list: Vec<Webhook>) -> Self {
        let by_id = list
            .iter()
            .enumerate()
            .map(|(i, w)| (w.id.clone(), i))
            .collect();
        Self { list, by_id }
    }

    fn get(&self, id: &str) -> Option<&Webhook> {
        self.by_id.get(id).map(|&i| &self.list[i])
    }
}

pub struct CachedStore {
    inner: Arc<dyn Store>,
    accounts: Generational<Option<Account>>,
    webhooks: Generational<Arc<AccountWebhooks>>,
    api_keys: Generational<Option<ApiKeyRecord>>,
    event_types: Generational<Option<EventTypeInfo>>,
    fresh: Mutex<Fresh>,
}

impl CachedStore {
    pub fn new(inner: Arc<dyn Store>) -> Self {
        Self {
            inner,
            accounts: Generational::new(),
            webhooks: Generational::new(),
            api_keys: Generational::new(),
            event_types: Generational::new(),
            fresh: Mutex::new(Fresh::default()),
        }
    }

    fn forget_fresh(&self, delivery_id: &str) {
        self.fresh.lock().unwrap().take(delivery_id);
    }
}

#[async_trait]
impl AccountStore for CachedStore {
    async fn insert_account(&self, account: &Account, key: &ApiKeyRecord) -> PortResult<()> {
        let result = self.inner.insert_account(account, key).await;
        self.accounts.invalidate(&account.id);
        self.api_keys.invalidate(&key.key_hash);
        result
    }

    async fn get_account(&self, account_id: &str) -> PortResult<Option<Account>> {
        self.accounts
            .get_or_load(account_id, || self.inner.get_account(account_id))
            .await
    }

    async fn list_accounts(&self, page: u32, size: u32) -> PortResult<Page<Account>> {
        self.inner.list_accounts(page, size).await
    }

    async fn set_account_secret(&self, account_id: &str, secret: Option<&str>) -> PortResult<bool> {
        let result = self.inner.set_account_secret(account_id, secret).await;
        self.accounts.invalidate(account_id);
        result
    }

    async fn insert_api_key(&self, key: &ApiKeyRecord) -> PortResult<()> {
        let result = self.inner.insert_api_key(key).await;
        self.api_keys.invalidate(&key.key_hash);
        result
    }

    async fn find_api_key(&self, key_hash: &str) -> PortResult<Option<ApiKeyRecord>> {
        self.api_keys
            .get_or_load(key_hash, || self.inner.find_api_key(key_hash))
            .await
    }

    async fn list_api_keys(&self, account_id: &str) -> PortResult<Vec<ApiKeyRecord>> {
        self.inner.list_api_keys(account_id).await
    }

    async fn delete_api_key(&self, account_id: &str, key_id: &str) -> PortResult<bool> {
        let result = self.inner.delete_api_key(account_id, key_id).await;
        // Keys are cached by hash, which a revocation does not name: forget them all, so a
        // revoked key is refused from the next request on.
        self.api_keys.invalidate_all();
        result
    }

    async fn delete_admin_keys(&self) -> PortResult<u32> {
        let result = self.inner.delete_admin_keys().await;
        self.api_keys.invalidate_all();
        result
    }

    async fn insert_event_type(&self, event_type: &EventTypeInfo) -> PortResult<bool> {
        let result = self.inner.insert_event_type(event_type).await;
        self.event_types.invalidate(&event_type.name);
        result
    }

    async fn list_event_types(&self) -> PortResult<Vec<EventTypeInfo>> {
        self.inner.list_event_types().await
    }

    async fn get_event_type(&self, name: &str) -> PortResult<Option<EventTypeInfo>> {
        self.event_types
            .get_or_load(name, || self.inner.get_event_type(name))
            .await
    }
}

#[async_trait]
impl WebhookStore for CachedStore {
    async fn insert_webhook(&self, webhook: &Webhook, max_per_account: u32) -> PortResult<bool> {
        let result = self.inner.insert_webhook(webhook, max_per_account).await;
        self.webhooks.invalidate(&webhook.account_id);
        result
    }

    async fn update_webhook(&self, webhook: &Webhook) -> PortResult<bool> {
        let result = self.inner.update_webhook(webhook).await;
        self.webhooks.invalidate(&webhook.account_id);
        result
    }

    async fn deactivate_webhook(
        &self,
        account_id: &str,
        webhook_id: &str,
        at: DateTime<Utc>,
    ) -> PortResult<bool> {
        let result = self
            .inner
            .deactivate_webhook(account_id, webhook_id, at)
            .await;
        self.webhooks.invalidate(account_id);
        result
    }

    async fn delete_webhook(
        &self,
        account_id: &str,
        webhook_id: &str,
    ) -> PortResult<Option<Webhook>> {
        let result = self.inner.delete_webhook(account_id, webhook_id).await;
        self.webhooks.invalidate(account_id);
        result
    }

    async fn get_webhook(&self, account_id: &str, webhook_id: &str) -> PortResult<Option<Webhook>> {
        Ok(self.webhooks_of(account_id).await?.get(webhook_id).cloned())
    }

    async fn list_webhooks(&self, account_id: &str) -> PortResult<Vec<Webhook>> {
        Ok(self.webhooks_of(account_id).await?.list.clone())
    }

    async fn list_webhooks_page(
        &self,
        account_id: &str,
        page: u32,
        size: u32,
    ) -> PortResult<Page<Webhook>> {
        self.inner.list_webhooks_page(account_id, page, size).await
    }
}

#[async_trait]
impl DeliveryStore for CachedStore {
    async fn insert_event(
        &self,
        event: &Event,
        sweep_at: DateTime<Utc>,
    ) -> PortResult<Option<Event>> {
        let existing = self.inner.insert_event(event, sweep_at).await?;
        if existing.is_none() {
            self.fresh
                .lock()
                .unwrap()
                .fanning_out
                .insert(event.id.clone());
        }
        Ok(existing)
    }

    fn max_atomic_fan_out(&self) -> usize {
        self.inner.max_atomic_fan_out()
    }

    async fn insert_event_with_deliveries(
        &self,
        event: &Event,
        deliveries: &[Delivery],
        sweep_at: DateTime<Utc>,
    ) -> PortResult<Option<Event>> {
        let existing = self
            .inner
            .insert_event_with_deliveries(event, deliveries, sweep_at)
            .await?;
        if existing.is_none() {
            let stored = Event {
                fanned_out: true,
                deliveries: deliveries.len() as u32,
                ..event.clone()
            };
            self.fresh.lock().unwrap().add(&stored, deliveries);
        }
        Ok(existing)
    }

    async fn get_event(&self, account_id: &str, event_id: &str) -> PortResult<Option<Event>> {
        self.inner.get_event(account_id, event_id).await
    }

    async fn get_events(&self, account_id: &str, event_ids: &[String]) -> PortResult<Vec<Event>> {
        self.inner.get_events(account_id, event_ids).await
    }

    async fn insert_deliveries(
        &self,
        event: &Event,
        deliveries: &[Delivery],
        sweep_at: DateTime<Utc>,
    ) -> PortResult<Vec<bool>> {
        let result = self
            .inner
            .insert_deliveries(event, deliveries, sweep_at)
            .await;
        let mut fresh = self.fresh.lock().unwrap();
        match &result {
            // Only what was new: a delivery stored before (a re-run after a failure) may have
            // moved on, and caching it as pending would send it again.
            Ok(new) if fresh.fanning_out.contains(&event.id) => {
                let new: Vec<Delivery> = deliveries
                    .iter()
                    .zip(new)
                    .filter(|(_, new)| **new)
                    .map(|(delivery, _)| delivery.clone())
                    .collect();
                fresh.add(event, &new)
            }
            Ok(_) => {}
            // Whatever of it was stored is no longer certainly new when the sweep retries it.
            Err(_) => {
                fresh.fanning_out.remove(&event.id);
            }
        }
        result
    }

    async fn finish_fan_out(&self, event: &Event, deliveries: u32) -> PortResult<()> {
        self.inner.finish_fan_out(event, deliveries).await?;
        self.fresh
            .lock()
            .unwrap()
            .fan_out_finished(event, deliveries);
        Ok(())
    }

    async fn load_delivery(&self, job: &DeliveryJob) -> PortResult<Option<DeliveryContext>> {
        let fresh = self.fresh.lock().unwrap().take(&job.delivery_id);
        let Some((delivery, event)) = fresh.filter(|(d, _)| {
            d.account_id == job.account_id
                && d.event_id == job.event_id
                && d.webhook_id == job.webhook_id
        }) else {
            return self.inner.load_delivery(job).await;
        };
        Ok(Some(DeliveryContext {
            delivery,
            event: Some(Arc::unwrap_or_clone(event)),
            webhook: self.get_webhook(&job.account_id, &job.webhook_id).await?,
            account: self.get_account(&job.account_id).await?,
        }))
    }

    async fn record_attempt(
        &self,
        delivery: &Delivery,
        record: &AttemptRecord,
    ) -> PortResult<bool> {
        self.forget_fresh(&delivery.id);
        let result = self.inner.record_attempt(delivery, record).await;
        if record.deactivates_webhook {
            self.webhooks.invalidate(&delivery.account_id);
        }
        result
    }

    async fn record_attempts(&self, batch: &[(Delivery, AttemptRecord)]) -> Vec<PortResult<bool>> {
        for (delivery, _) in batch {
            self.forget_fresh(&delivery.id);
        }
        let result = self.inner.record_attempts(batch).await;
        for (delivery, record) in batch {
            if record.deactivates_webhook {
                self.webhooks.invalidate(&delivery.account_id);
            }
        }
        result
    }

    fn attempts_per_write(&self) -> usize {
        self.inner.attempts_per_write()
    }

    async fn requeue_delivery(
        &self,
        delivery: &Delivery,
        sweep_at: DateTime<Utc>,
    ) -> PortResult<bool> {
        self.forget_fresh(&delivery.id);
        self.inner.requeue_delivery(delivery, sweep_at).await
    }

    async fn list_deliveries(
        &self,
        account_id: &str,
        query: &DeliveryQuery,
    ) -> PortResult<DeliveryPage> {
        self.inner.list_deliveries(account_id, query).await
    }

    async fn first_deliveries(
        &self,
        account_id: &str,
        query: &DeliveryQuery,
    ) -> PortResult<Vec<Delivery>> {
        self.inner.first_deliveries(account_id, query).await
    }

    async fn get_delivery(
        &self,
        account_id: &str,
        delivery_id: &str,
    ) -> PortResult<Option<Delivery>> {
        self.inner.get_delivery(account_id, delivery_id).await
    }

    async fn status_counts(&self, account_id: &str) -> PortResult<StatusCounts> {
        self.inner.status_counts(account_id).await
    }

    // Walks read what this cache does not keep: straight through.
    async fn walk_deliveries(
        &self,
        account_id: &str,
        query: &DeliveryQuery,
        cursor: Option<&str>,
        limit: u32,
    ) -> PortResult<Walk<Delivery>> {
        self.inner
            .walk_deliveries(account_id, query, cursor, limit)
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
        self.inner
            .walk_events(account_id, from, to, cursor, limit)
            .await
    }
}

#[async_trait]
impl SweepStore for CachedStore {
    async fn due_in_part(
        &self,
        before: DateTime<Utc>,
        limit: usize,
        part: u32,
        parts: u32,
    ) -> PortResult<Vec<DueItem>> {
        self.inner.due_in_part(before, limit, part, parts).await
    }

    async fn due(&self, before: DateTime<Utc>, limit: usize) -> PortResult<Vec<DueItem>> {
        self.inner.due(before, limit).await
    }

    async fn postpone(&self, item: &DueItem, until: DateTime<Utc>) -> PortResult<()> {
        self.inner.postpone(item, until).await
    }

    // Jobs are what this cache does not keep: straight through.
    async fn insert_job(&self, job: &Job, sweep_at: DateTime<Utc>) -> PortResult<()> {
        self.inner.insert_job(job, sweep_at).await
    }

    async fn get_job(&self, account_id: &str, job_id: &str) -> PortResult<Option<Job>> {
        self.inner.get_job(account_id, job_id).await
    }

    async fn update_job(&self, job: &Job, sweep_at: Option<DateTime<Utc>>) -> PortResult<bool> {
        self.inner.update_job(job, sweep_at).await
    }
}

impl CachedStore {
    async fn webhooks_of(&self, account_id: &str) -> PortResult<Arc<AccountWebhooks>> {
        self.webhooks
            .get_or_load(account_id, || async {
                Ok(Arc::new(AccountWebhooks::new(
                    self.inner.list_webhooks(account_id).await?,
                )))
            })
            .await
    }
}
