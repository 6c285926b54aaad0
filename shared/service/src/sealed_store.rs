//! A Store in front of another that keeps secrets sealed at rest: the account webhook secret,
//! each webhook's authorization token and every signing secret are sealed (AES-256-GCM, see
//! `hookline_model::sealing`) on every write and opened on every read. Everything else passes
//! through unchanged; API keys are stored as hashes already.
//!
//! Each value is sealed for its place (`<account>/webhookSecret`,
//! `<account>/<webhook>/authorizationToken`, `<account>/<webhook>/signingSecret`,
//! `<account>/<webhook>/header/<name>` for custom header values), so a
//! sealed value copied into another record does not open there.

use crate::ports::{
    AttemptRecord, DeliveryContext, DeliveryPage, DeliveryQuery, DueItem, Page, PortError,
    PortResult, Walk,
};
use crate::{AccountStore, DeliveryStore, Store, SweepStore, WebhookStore};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use hookline_model::sealing::{KeyRing, SealingError};
use hookline_model::{
    Account, ApiKeyRecord, Delivery, DeliveryJob, Event, EventTypeInfo, Job, StatusCounts, Webhook,
};
use std::sync::Arc;

pub struct SealedStore {
    inner: Arc<dyn Store>,
    ring: Arc<KeyRing>,
}

/// What [`SealedStore::reseal_all`] rewrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ResealReport {
    pub accounts: u64,
    pub webhooks: u64,
}

fn account_context(account_id: &str) -> String {
    format!("{account_id}/webhookSecret")
}

fn token_context(webhook: &Webhook) -> String {
    format!("{}/{}/authorizationToken", webhook.account_id, webhook.id)
}

fn signing_context(webhook: &Webhook) -> String {
    format!("{}/{}/signingSecret", webhook.account_id, webhook.id)
}

/// Custom header values (issue 15 item 6) may be the receiver's credentials: sealed like the
/// token, each for its own header.
fn header_context(webhook: &Webhook, name: &str) -> String {
    format!(
        "{}/{}/header/{}",
        webhook.account_id,
        webhook.id,
        name.to_ascii_lowercase()
    )
}

fn sealing_failed(error: SealingError) -> PortError {
    PortError::new("sealing a secret", error)
}

fn opening_failed(error: SealingError) -> PortError {
    PortError::new("opening a stored secret", error)
}

impl SealedStore {
    pub fn new(inner: Arc<dyn Store>, ring: Arc<KeyRing>) -> Self {
        Self { inner, ring }
    }

    /// The key ring, from which the host derives other keys (portal links).
    pub fn ring(&self) -> &KeyRing {
        &self.ring
    }

    fn seal_secret(&self, secret: &str, account_id: &str) -> PortResult<String> {
        self.ring
            .seal(secret, &account_context(account_id))
            .map_err(sealing_failed)
    }

    fn seal_account(&self, account: &Account) -> PortResult<Account> {
        let mut sealed = account.clone();
        if let Some(secret) = &account.webhook_secret {
            sealed.webhook_secret = Some(self.seal_secret(secret, &account.id)?);
        }
        Ok(sealed)
    }

    fn open_account(&self, mut account: Account) -> PortResult<Account> {
        if let Some(secret) = &account.webhook_secret {
            let opened = self
                .ring
                .open(secret, &account_context(&account.id))
                .map_err(opening_failed)?
                .into_owned();
            account.webhook_secret = Some(opened);
        }
        Ok(account)
    }

    fn seal_webhook(&self, webhook: &Webhook) -> PortResult<Webhook> {
        let mut sealed = webhook.clone();
        if let Some(token) = &webhook.authorization_token {
            sealed.authorization_token = Some(
                self.ring
                    .seal(token, &token_context(webhook))
                    .map_err(sealing_failed)?,
            );
        }
        let context = signing_context(webhook);
        for entry in &mut sealed.signing_secrets {
            entry.secret = self
                .ring
                .seal(&entry.secret, &context)
                .map_err(sealing_failed)?;
        }
        for (name, value) in &mut sealed.request.headers {
            *value = self
                .ring
                .seal(value, &header_context(webhook, name))
                .map_err(sealing_failed)?;
        }
        Ok(sealed)
    }

    fn open_webhook(&self, mut webhook: Webhook) -> PortResult<Webhook> {
        if let Some(token) = &webhook.authorization_token {
            let opened = self
                .ring
                .open(token, &token_context(&webhook))
                .map_err(opening_failed)?
                .into_owned();
            webhook.authorization_token = Some(opened);
        }
        let context = signing_context(&webhook);
        for entry in &mut webhook.signing_secrets {
            entry.secret = self
                .ring
                .open(&entry.secret, &context)
                .map_err(opening_failed)?
                .into_owned();
        }
        let mut headers = std::mem::take(&mut webhook.request.headers);
        for (name, value) in &mut headers {
            *value = self
                .ring
                .open(value, &header_context(&webhook, name))
                .map_err(opening_failed)?
                .into_owned();
        }
        webhook.request.headers = headers;
        Ok(webhook)
    }

    fn open_webhooks(&self, webhooks: Vec<Webhook>) -> PortResult<Vec<Webhook>> {
        webhooks.into_iter().map(|w| self.open_webhook(w)).collect()
    }

    /// Seals again, under the current key, every stored secret that is legacy plaintext or
    /// sealed under an older key, so an older key can leave the ring afterwards. For a store
    /// with no other writer at the time (local start-up, before serving).
    pub async fn reseal_all(&self) -> PortResult<ResealReport> {
        const PAGE: u32 = 100;
        let mut report = ResealReport::default();
        let stale = |value: &str| !self.ring.is_sealed_with_current(value);
        let mut page = 0;
        loop {
            let accounts = self.inner.list_accounts(page, PAGE).await?;
            for entry in &accounts.items {
                // The list entry may be older than the account item: read the account itself.
                if let Some(account) = self.inner.get_account(&entry.id).await?
                    && let Some(secret) = &account.webhook_secret
                    && stale(secret)
                {
                    let opened = self.open_account(account)?;
                    self.set_account_secret(&opened.id, opened.webhook_secret.as_deref())
                        .await?;
                    report.accounts += 1;
                }
                for webhook in self.inner.list_webhooks(&entry.id).await? {
                    let needs_reseal = webhook.authorization_token.as_deref().is_some_and(stale)
                        || webhook.signing_secrets.iter().any(|s| stale(&s.secret))
                        || webhook.request.headers.values().any(|v| stale(v));
                    if needs_reseal {
                        let opened = self.open_webhook(webhook)?;
                        self.update_webhook(&opened).await?;
                        report.webhooks += 1;
                    }
                }
            }
            if accounts.items.len() < PAGE as usize {
                return Ok(report);
            }
            page += 1;
        }
    }
}

#[async_trait]
impl AccountStore for SealedStore {
    async fn insert_account(&self, account: &Account, key: &ApiKeyRecord) -> PortResult<()> {
        self.inner
            .insert_account(&self.seal_account(account)?, key)
            .await
    }
    async fn get_account(&self, account_id: &str) -> PortResult<Option<Account>> {
        match self.inner.get_account(account_id).await? {
            Some(account) => Ok(Some(self.open_account(account)?)),
            None => Ok(None),
        }
    }
    async fn list_accounts(&self, page: u32, size: u32) -> PortResult<Page<Account>> {
        let listed = self.inner.list_accounts(page, size).await?;
        Ok(Page {
            items: listed
                .items
                .into_iter()
                .map(|a| self.open_account(a))
                .collect::<PortResult<_>>()?,
            total: listed.total,
        })
    }
    async fn set_account_secret(&self, account_id: &str, secret: Option<&str>) -> PortResult<bool> {
        let sealed = secret
            .map(|secret| self.seal_secret(secret, account_id))
            .transpose()?;
        self.inner
            .set_account_secret(account_id, sealed.as_deref())
            .await
    }
    async fn insert_api_key(&self, key: &ApiKeyRecord) -> PortResult<()> {
        self.inner.insert_api_key(key).await
    }
    async fn find_api_key(&self, key_hash: &str) -> PortResult<Option<ApiKeyRecord>> {
        self.inner.find_api_key(key_hash).await
    }
    async fn list_api_keys(&self, account_id: &str) -> PortResult<Vec<ApiKeyRecord>> {
        self.inner.list_api_keys(account_id).await
    }
    async fn delete_api_key(&self, account_id: &str, key_id: &str) -> PortResult<bool> {
        self.inner.delete_api_key(account_id, key_id).await
    }
    async fn delete_admin_keys(&self) -> PortResult<u32> {
        self.inner.delete_admin_keys().await
    }
    async fn insert_event_type(&self, event_type: &EventTypeInfo) -> PortResult<bool> {
        self.inner.insert_event_type(event_type).await
    }
    async fn list_event_types(&self) -> PortResult<Vec<EventTypeInfo>> {
        self.inner.list_event_types().await
    }
    async fn get_event_type(&self, name: &str) -> PortResult<Option<EventTypeInfo>> {
        self.inner.get_event_type(name).await
    }
}

#[async_trait]
impl WebhookStore for SealedStore {
    async fn insert_webhook(&self, webhook: &Webhook, max_per_account: u32) -> PortResult<bool> {
        self.inner
            .insert_webhook(&self.seal_webhook(webhook)?, max_per_account)
            .await
    }
    async fn update_webhook(&self, webhook: &Webhook) -> PortResult<bool> {
        self.inner
            .update_webhook(&self.seal_webhook(webhook)?)
            .await
    }
    async fn deactivate_webhook(
        &self,
        account_id: &str,
        webhook_id: &str,
        at: DateTime<Utc>,
    ) -> PortResult<bool> {
        self.inner
            .deactivate_webhook(account_id, webhook_id, at)
            .await
    }
    async fn delete_webhook(
        &self,
        account_id: &str,
        webhook_id: &str,
    ) -> PortResult<Option<Webhook>> {
        match self.inner.delete_webhook(account_id, webhook_id).await? {
            Some(webhook) => Ok(Some(self.open_webhook(webhook)?)),
            None => Ok(None),
        }
    }
    async fn get_webhook(&self, account_id: &str, webhook_id: &str) -> PortResult<Option<Webhook>> {
        match self.inner.get_webhook(account_id, webhook_id).await? {
            Some(webhook) => Ok(Some(self.open_webhook(webhook)?)),
            None => Ok(None),
        }
    }
    async fn list_webhooks(&self, account_id: &str) -> PortResult<Vec<Webhook>> {
        self.open_webhooks(self.inner.list_webhooks(account_id).await?)
    }
    async fn list_webhooks_page(
        &self,
        account_id: &str,
        page: u32,
        size: u32,
    ) -> PortResult<Page<Webhook>> {
        let listed = self
            .inner
            .list_webhooks_page(account_id, page, size)
            .await?;
        Ok(Page {
            items: self.open_webhooks(listed.items)?,
            total: listed.total,
        })
    }
}

#[async_trait]
impl DeliveryStore for SealedStore {
    async fn insert_event(
        &self,
        event: &Event,
        sweep_at: DateTime<Utc>,
    ) -> PortResult<Option<Event>> {
        self.inner.insert_event(event, sweep_at).await
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
        self.inner
            .insert_event_with_deliveries(event, deliveries, sweep_at)
            .await
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
        self.inner
            .insert_deliveries(event, deliveries, sweep_at)
            .await
    }
    async fn finish_fan_out(&self, event: &Event, deliveries: u32) -> PortResult<()> {
        self.inner.finish_fan_out(event, deliveries).await
    }
    async fn load_delivery(&self, job: &DeliveryJob) -> PortResult<Option<DeliveryContext>> {
        let Some(mut context) = self.inner.load_delivery(job).await? else {
            return Ok(None);
        };
        context.webhook = context.webhook.map(|w| self.open_webhook(w)).transpose()?;
        context.account = context.account.map(|a| self.open_account(a)).transpose()?;
        Ok(Some(context))
    }
    async fn record_attempt(
        &self,
        delivery: &Delivery,
        record: &AttemptRecord,
    ) -> PortResult<bool> {
        self.inner.record_attempt(delivery, record).await
    }
    async fn record_attempts(&self, batch: &[(Delivery, AttemptRecord)]) -> Vec<PortResult<bool>> {
        self.inner.record_attempts(batch).await
    }
    fn attempts_per_write(&self) -> usize {
        self.inner.attempts_per_write()
    }
    async fn requeue_delivery(
        &self,
        delivery: &Delivery,
        sweep_at: DateTime<Utc>,
    ) -> PortResult<bool> {
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
impl SweepStore for SealedStore {
    async fn due_in_part(
        &self,
        before: DateTime<Utc>,
        limit: usize,
        part: u32,
        parts: u32,
    ) -> PortResult<Vec<DueItem>> {
        self.inner.due_in_part(before, limit, part, parts).await
    }
    async fn insert_job(&self, job: &Job, sweep_at: DateTime<Utc>) -> PortResult<()> {
        self.inner.insert_job(job, sweep_at).await
    }
    async fn get_job(&self, account_id: &str, job_id: &str) -> PortResult<Option<Job>> {
        self.inner.get_job(account_id, job_id).await
    }
    async fn update_job(&self, job: &Job, sweep_at: Option<DateTime<Utc>>) -> PortResult<bool> {
        self.inner.update_job(job, sweep_at).await
    }
    async fn due(&self, before: DateTime<Utc>, limit: usize) -> PortResult<Vec<DueItem>> {
        self.inner.due(before, limit).await
    }
    async fn postpone(&self, item: &DueItem, until: DateTime<Utc>) -> PortResult<()> {
        self.inner.postpone(item, until).await
    }
}
