//! Endpoint health and auto-disable (issue 15 item 1): a webhook whose attempts have all failed
//! for `HOOKLINE_DISABLE_AFTER`, and at least `HOOKLINE_DISABLE_MIN_FAILURES` in a row, is
//! switched off with its reason and time, and `hookline.webhook.disabled` is told.
//!
//! The webhook item is written only when its health changes (the first failure after a success,
//! the first success after failures, the switch-off), each over the version the delivery read;
//! marks and switch-off checks at most once a second per webhook from one process: a webhook
//! taking thousands of deliveries a second, failing or flapping, does not make its item a hot
//! key. A write that loses to another is dropped; the next attempt looks again.

use crate::operational::{Emission, OperationalEvent, PLATFORM_ACCOUNT_ID};
use crate::ports::{DeliveryContext, DeliveryQuery};
use crate::{Service, ServiceResult};
use chrono::{DateTime, Utc};
use hookline_model::Webhook;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often one process may write one webhook's health.
const HEALTH_WRITE_INTERVAL: Duration = Duration::from_secs(1);
/// Webhooks remembered by the gate; past it, it starts afresh (it only spaces writes out).
const GATE_ENTRIES: usize = 10_000;

/// When this process last wrote each webhook's health.
#[derive(Default)]
pub(crate) struct HealthGate {
    last_write: Mutex<HashMap<String, Instant>>,
}

impl HealthGate {
    /// True when `webhook_id`'s health may be written now (and notes that it is).
    fn admit(&self, webhook_id: &str) -> bool {
        let mut last = self.last_write.lock().unwrap_or_else(|e| e.into_inner());
        if last
            .get(webhook_id)
            .is_some_and(|at| at.elapsed() < HEALTH_WRITE_INTERVAL)
        {
            return false;
        }
        if last.len() >= GATE_ENTRIES {
            last.clear();
        }
        last.insert(webhook_id.to_string(), Instant::now());
        true
    }
}

/// What an attempt says about its endpoint's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Health {
    Succeeded,
    Failed,
}

impl Service {
    /// Notes an attempt's outcome on its webhook, switching the webhook off when it has failed
    /// long enough. Called after the attempt is recorded; a failure here is logged, never the
    /// delivery's (the next attempt looks again).
    pub(crate) async fn track_health(
        &self,
        context: &DeliveryContext,
        health: Health,
        now: DateTime<Utc>,
    ) {
        if let Err(error) = self.try_track_health(context, health, now).await {
            tracing::warn!(webhook_id = %context.delivery.webhook_id, %error, "tracking the webhook's health failed");
        }
    }

    async fn try_track_health(
        &self,
        context: &DeliveryContext,
        health: Health,
        now: DateTime<Utc>,
    ) -> ServiceResult<()> {
        let Some(policy) = self.config.auto_disable else {
            return Ok(());
        };
        let Some(webhook) = &context.webhook else {
            return Ok(());
        };
        // The platform's own webhook is put back as configured at every start; nothing
        // reports on it.
        if !webhook.active || webhook.account_id == PLATFORM_ACCOUNT_ID {
            return Ok(());
        }
        // The common case, a success on a healthy webhook, costs one comparison.
        let failing_since = match (health, webhook.health.failing_since) {
            (Health::Succeeded, None) => return Ok(()),
            // Never held back: a success the webhook does not show could let it be switched
            // off. Each clear follows a mark, so the two are as rare as the marks.
            (Health::Succeeded, Some(_)) => None,
            (Health::Failed, None) => {
                if !self.health_gate.admit(&webhook.id) {
                    return Ok(());
                }
                Some(now)
            }
            (Health::Failed, Some(since)) => {
                let after =
                    chrono::Duration::from_std(policy.after).unwrap_or(chrono::Duration::MAX);
                if now - since < after {
                    return Ok(());
                }
                if !self.health_gate.admit(&webhook.id) {
                    return Ok(());
                }
                let failures = self
                    .failures_since(webhook, since, policy.min_failures)
                    .await?;
                if failures < policy.min_failures {
                    return Ok(());
                }
                return self.auto_disable(webhook, since, failures, now).await;
            }
        };
        let mut next = webhook.clone();
        next.health.failing_since = failing_since;
        // Lost to another write: that write saw this or a later state, or the next attempt
        // (reading the webhook afresh) tries again.
        self.ports.store.update_webhook(&next).await?;
        Ok(())
    }

    /// Failed attempts to `webhook` at or after `since`, counted up to `enough` from its
    /// newest deliveries (all failed: a success would have ended the run).
    async fn failures_since(
        &self,
        webhook: &Webhook,
        since: DateTime<Utc>,
        enough: u32,
    ) -> ServiceResult<u32> {
        let query = DeliveryQuery {
            webhook_id: Some(webhook.id.clone()),
            last_attempt_from: Some(since),
            page: 0,
            size: enough,
            ..DeliveryQuery::default()
        };
        let page = self
            .ports
            .store
            .list_deliveries(&webhook.account_id, &query)
            .await?;
        let failures = page
            .items
            .iter()
            .flat_map(|delivery| &delivery.attempts)
            .filter(|attempt| attempt.at >= since && attempt.error.is_some())
            .count();
        Ok(failures.min(u32::MAX as usize) as u32)
    }

    /// Switches `webhook` off, telling `hookline.webhook.disabled` first under the version
    /// read, so deliveries deciding together tell it once and a failure to tell leaves the
    /// webhook on for the next attempt to try again (nothing is lost). The cost: when a PATCH
    /// changes the webhook between the telling and the write, the event was told and the
    /// webhook stays on (the next failure decides again).
    async fn auto_disable(
        &self,
        webhook: &Webhook,
        since: DateTime<Utc>,
        failures: u32,
        now: DateTime<Utc>,
    ) -> ServiceResult<()> {
        let reason = format!(
            "every attempt failed since {} ({failures} or more in a row)",
            since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        self.emit_operational(Emission {
            kind: OperationalEvent::WebhookDisabled,
            account_id: &webhook.account_id,
            webhook_id: &webhook.id,
            delivery_id: None,
            reason: reason.clone(),
            occurrence: format!("{}:{}", webhook.id, webhook.version),
        })
        .await?;
        let mut disabled = webhook.clone();
        disabled.active = false;
        disabled.updated_at = now;
        disabled.health.disabled_reason = Some(reason);
        disabled.health.disabled_at = Some(now);
        if self.ports.store.update_webhook(&disabled).await? {
            tracing::info!(webhook_id = %webhook.id, "webhook switched off: its endpoint kept failing");
        }
        Ok(())
    }
}
