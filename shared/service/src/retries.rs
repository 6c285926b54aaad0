//! Manual retries: one delivery, or every failed one (optionally of one webhook, in a time
//! range). Each starts a new round of the retry schedule; earlier attempts stay in the log.

use crate::ports::{DeliveryQuery, PortResult};
use crate::{Service, ServiceError, ServiceResult};
use chrono::{DateTime, Utc};
use hookline_model::{Delivery, DeliveryJob, DeliveryStatus, ValidationError};
use std::collections::HashMap;

/// `POST /webhook/retry`: which failed deliveries to send again (creation-time bounds).
#[derive(Debug, Clone, Default)]
pub struct RetryFilter {
    pub webhook_id: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

/// The most deliveries one bulk retry requeues; call again for more.
pub const MAX_BULK_RETRY: usize = 10_000;
const PAGE: u32 = 100;

impl Service {
    /// Sends a finished (failed or delivered) delivery again.
    pub async fn retry_delivery(
        &self,
        account_id: &str,
        delivery_id: &str,
    ) -> ServiceResult<Delivery> {
        let delivery = self.find_delivery(account_id, delivery_id).await?;
        if !delivery.status.is_terminal() {
            return Err(ServiceError::Conflict(format!(
                "the delivery is {}: it will be attempted anyway",
                delivery.status.as_str()
            )));
        }
        match self
            .ports
            .store
            .get_webhook(account_id, &delivery.webhook_id)
            .await?
        {
            None => {
                return Err(ServiceError::Conflict(
                    "its webhook was deleted".to_string(),
                ));
            }
            Some(webhook) if !webhook.active => {
                return Err(ServiceError::Conflict(
                    "its webhook is inactive: PATCH it with {\"active\":true} first".to_string(),
                ));
            }
            Some(_) => {}
        }
        if !self.requeue(&delivery).await? {
            return Err(ServiceError::Conflict(
                "the delivery changed meanwhile; try again".to_string(),
            ));
        }
        let requeued = delivery.requeued();
        self.enqueue_or_leave_to_sweep(vec![requeued.job()]).await;
        Ok(requeued)
    }

    /// Sends every matching failed delivery again (of active webhooks); returns how many.
    pub async fn retry_failed(&self, account_id: &str, filter: RetryFilter) -> ServiceResult<u32> {
        if let (Some(since), Some(until)) = (filter.since, filter.until)
            && since > until
        {
            return Err(ValidationError::new("since", "must not be after until").into());
        }
        if let Some(webhook_id) = &filter.webhook_id {
            self.get_webhook(account_id, webhook_id).await?;
        }
        // Collect first, then requeue: requeued deliveries leave the failed set being paged.
        let mut failed = Vec::new();
        for page in 0.. {
            let found = self
                .ports
                .store
                .list_deliveries(
                    account_id,
                    &DeliveryQuery {
                        created_from: filter.since,
                        created_to: filter.until,
                        webhook_id: filter.webhook_id.clone(),
                        status: Some(DeliveryStatus::Failed),
                        page,
                        size: PAGE,
                        ..Default::default()
                    },
                )
                .await?;
            let last = found.items.len() < PAGE as usize;
            // Only what is failed as read now: an index may lag, and requeueing a delivery
            // that moved on (retrying) would reset its round.
            failed.extend(
                found
                    .items
                    .into_iter()
                    .filter(|d| d.status == DeliveryStatus::Failed),
            );
            if last || failed.len() >= MAX_BULK_RETRY {
                break;
            }
        }
        failed.truncate(MAX_BULK_RETRY);
        let mut active: HashMap<String, bool> = HashMap::new();
        let mut jobs: Vec<DeliveryJob> = Vec::new();
        for delivery in &failed {
            let usable = match active.get(&delivery.webhook_id) {
                Some(usable) => *usable,
                None => {
                    let usable = self
                        .ports
                        .store
                        .get_webhook(account_id, &delivery.webhook_id)
                        .await?
                        .is_some_and(|w| w.active);
                    active.insert(delivery.webhook_id.clone(), usable);
                    usable
                }
            };
            if usable && self.requeue(delivery).await? {
                jobs.push(delivery.requeued().job());
            }
        }
        let retried = jobs.len() as u32;
        self.enqueue_or_leave_to_sweep(jobs).await;
        Ok(retried)
    }

    pub(crate) async fn requeue(&self, delivery: &Delivery) -> PortResult<bool> {
        let now = self.ports.clock.now();
        self.ports
            .store
            .requeue_delivery(delivery, self.sweep_time(now))
            .await
    }

    /// Hands jobs to the workers; stored as due, so a failure here only delays them.
    pub(crate) async fn enqueue_or_leave_to_sweep(&self, jobs: Vec<DeliveryJob>) {
        for chunk in jobs.chunks(500) {
            if let Err(error) = self.ports.queue.enqueue(chunk).await {
                tracing::warn!(%error, "enqueue failed; the sweep will deliver");
            }
        }
    }
}
