//! Endpoint health and auto-disable (issue 15 item 1): a webhook whose attempts have all failed
//! for `HOOKLINE_DISABLE_AFTER`, and at least `HOOKLINE_DISABLE_MIN_FAILURES` in a row, is
//! switched off with its reason and time, and `hookline.webhook.disabled` is told.
//!
//! The webhook stores only when its current run of failures began (`failingSince`). Each
//! process counts what it sees in memory (consecutive failures, its last success) and writes
//! the webhook, or reads the log, only when its view and the stored one disagree, at most once
//! per interval per webhook (a tenth of the limit, between 100 ms and a minute): a webhook
//! taking thousands of deliveries a second, failing or flapping, costs each process at most
//! one write a minute. A write that loses to another is dropped; a later attempt looks again.

use crate::operational::{Emission, OperationalEvent, PLATFORM_ACCOUNT_ID};
use crate::ports::{DeliveryContext, DeliveryQuery};
use crate::{Service, ServiceResult};
use chrono::{DateTime, Utc};
use hookline_model::Webhook;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Webhooks one process keeps a view of; past it, it starts afresh (the views only save
/// writes and reads: a lost one delays a switch-off, never causes one).
const VIEWS_KEPT: usize = 10_000;

/// What one process has seen of a webhook's attempts since it last agreed with the store.
#[derive(Debug, Clone, Default)]
struct View {
    /// The webhook's `updatedAt` when this view began: a user's change (a new URL, switched
    /// off and on) starts a new view, so an old run is not carried over.
    webhook_updated_at: Option<DateTime<Utc>>,
    /// When this process last wrote the webhook's health or read its log for it.
    last_look: Option<Instant>,
    /// Failed attempts in a row, as this process saw them.
    failures: u32,
    /// The first of them.
    run_began: Option<DateTime<Utc>>,
    /// The last success this process saw.
    last_success: Option<DateTime<Utc>>,
}

/// Every webhook's [`View`] in this process.
#[derive(Default)]
pub(crate) struct HealthViews {
    views: Mutex<HashMap<String, View>>,
}

/// What an attempt says about its endpoint's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Health {
    Succeeded,
    Failed,
}

/// What the stored health needs, by one process's view.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Needed {
    Nothing,
    /// `failingSince` should be this (a run began, ended, or began again after a success).
    Write(Option<DateTime<Utc>>),
    /// The run has lasted long enough: count its failures and maybe switch off.
    Check {
        since: DateTime<Utc>,
        seen: u32,
    },
}

impl HealthViews {
    /// Notes an attempt and says what the stored health needs; `Nothing` as well when this
    /// process looked at the webhook less than `interval` ago (it looks again later).
    fn note(
        &self,
        webhook: &Webhook,
        health: Health,
        now: DateTime<Utc>,
        after: chrono::Duration,
        interval: Duration,
    ) -> Needed {
        let stored = webhook.health.failing_since;
        let mut views = self.views.lock().unwrap_or_else(|e| e.into_inner());
        // The common case, a success on a healthy webhook this process has no view of, costs
        // one lookup.
        if health == Health::Succeeded && stored.is_none() && !views.contains_key(&webhook.id) {
            return Needed::Nothing;
        }
        if views.len() >= VIEWS_KEPT && !views.contains_key(&webhook.id) {
            views.clear();
        }
        let view = views.entry(webhook.id.clone()).or_default();
        if view.webhook_updated_at != Some(webhook.updated_at) {
            *view = View {
                webhook_updated_at: Some(webhook.updated_at),
                ..View::default()
            };
        }
        match health {
            Health::Succeeded => {
                view.failures = 0;
                view.run_began = None;
                view.last_success = Some(now);
            }
            Health::Failed => {
                view.failures = view.failures.saturating_add(1);
                view.run_began.get_or_insert(now);
            }
        }
        let needed = match (health, stored) {
            (Health::Succeeded, None) => Needed::Nothing,
            (Health::Succeeded, Some(_)) => Needed::Write(None),
            (Health::Failed, None) => Needed::Write(view.run_began),
            // A success after the stored run began: that run is over (its clear was held
            // back or lost); this one began after the success.
            (Health::Failed, Some(since)) if view.last_success.is_some_and(|s| s >= since) => {
                Needed::Write(view.run_began)
            }
            (Health::Failed, Some(since)) if now - since >= after => Needed::Check {
                since,
                seen: view.failures,
            },
            (Health::Failed, Some(_)) => Needed::Nothing,
        };
        if needed == Needed::Nothing {
            if health == Health::Succeeded && stored.is_none() {
                // Agreed again: no view to keep.
                views.remove(&webhook.id);
            }
            return Needed::Nothing;
        }
        if view.last_look.is_some_and(|at| at.elapsed() < interval) {
            return Needed::Nothing;
        }
        view.last_look = Some(Instant::now());
        needed
    }
}

impl Service {
    /// Notes an attempt's outcome on its webhook, switching the webhook off when it has failed
    /// long enough. Called after the attempt is recorded; a failure here is logged, never the
    /// delivery's (a later attempt looks again).
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
        let after = chrono::Duration::from_std(policy.after).unwrap_or(chrono::Duration::MAX);
        let interval =
            (policy.after / 10).clamp(Duration::from_millis(100), Duration::from_secs(60));
        match self
            .health_views
            .note(webhook, health, now, after, interval)
        {
            Needed::Nothing => Ok(()),
            Needed::Write(failing_since) => {
                let mut next = webhook.clone();
                next.health.failing_since = failing_since;
                // Lost to another write: that one saw this or a later state, or a later
                // attempt (reading the webhook afresh) looks again.
                self.ports.store.update_webhook(&next).await?;
                Ok(())
            }
            Needed::Check { since, seen } => {
                let failures = if seen >= policy.min_failures {
                    seen
                } else {
                    // Fewer here than needed: this process is new, or the endpoint is quiet
                    // (so its log is short). The log says.
                    match self
                        .failures_since(webhook, since, policy.min_failures)
                        .await?
                    {
                        Some(failures) => failures,
                        None => {
                            // The log holds a success since the run began: it is over.
                            let mut next = webhook.clone();
                            next.health.failing_since = None;
                            self.ports.store.update_webhook(&next).await?;
                            return Ok(());
                        }
                    }
                };
                if failures >= policy.min_failures {
                    self.auto_disable(webhook, since, failures, now).await?;
                }
                Ok(())
            }
        }
    }

    /// Failed attempts to `webhook` at or after `since` in its newest `enough` deliveries
    /// attempted since then, or `None` when one of those attempts succeeded. Reads those few,
    /// never the webhook's whole history.
    async fn failures_since(
        &self,
        webhook: &Webhook,
        since: DateTime<Utc>,
        enough: u32,
    ) -> ServiceResult<Option<u32>> {
        let query = DeliveryQuery {
            webhook_id: Some(webhook.id.clone()),
            last_attempt_from: Some(since),
            page: 0,
            size: enough,
            ..DeliveryQuery::default()
        };
        let newest = self
            .ports
            .store
            .first_deliveries(&webhook.account_id, &query)
            .await?;
        let attempts = newest
            .iter()
            .flat_map(|delivery| &delivery.attempts)
            .filter(|attempt| attempt.at >= since);
        let mut failures = 0u32;
        for attempt in attempts {
            if attempt.error.is_none() {
                return Ok(None);
            }
            failures = failures.saturating_add(1);
        }
        Ok(Some(failures))
    }

    /// Switches `webhook` off. Read afresh first (a delivery's copy may be seconds old), then
    /// `hookline.webhook.disabled` is told under that version, so deliveries deciding together
    /// tell it once and a failure to tell leaves the webhook on for a later attempt to try
    /// again (nothing is lost). The cost: when a PATCH lands between the telling and the
    /// write, the event was told and the webhook stays on.
    async fn auto_disable(
        &self,
        seen: &Webhook,
        since: DateTime<Utc>,
        failures: u32,
        now: DateTime<Utc>,
    ) -> ServiceResult<()> {
        let Some(webhook) = self
            .ports
            .store
            .get_webhook(&seen.account_id, &seen.id)
            .await?
        else {
            return Ok(());
        };
        if !webhook.active || webhook.health.failing_since != Some(since) {
            // Switched off, or the run moved on, since the delivery read it.
            return Ok(());
        }
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
            // Its own suffix: a 410 deciding on the same version tells its own reason.
            occurrence: format!("{}:{}:failing", webhook.id, webhook.version),
        })
        .await?;
        let mut disabled = webhook.clone();
        disabled.active = false;
        disabled.updated_at = now;
        // As a 410 leaves it: the run is in the reason; `failingSince` is for webhooks on.
        disabled.health.failing_since = None;
        disabled.health.disabled_reason = Some(reason);
        disabled.health.disabled_at = Some(now);
        if self.ports.store.update_webhook(&disabled).await? {
            tracing::info!(webhook_id = %webhook.id, "webhook switched off: its endpoint kept failing");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn webhook(failing_since: Option<DateTime<Utc>>) -> Webhook {
        let mut webhook: Webhook = serde_json::from_value(serde_json::json!({
            "id": "wh_1", "accountId": "acct_1", "url": "https://example.com/h",
            "events": ["*"], "active": true, "signingSecrets": [],
            "createdAt": "2026-01-01T00:00:00Z", "updatedAt": "2026-01-01T00:00:00Z"
        }))
        .unwrap();
        webhook.health.failing_since = failing_since;
        webhook
    }

    const AFTER: chrono::Duration = chrono::Duration::seconds(100);
    const INTERVAL: Duration = Duration::from_secs(60);

    #[test]
    fn a_busy_healthy_webhook_leaves_no_view_and_needs_nothing() {
        let views = HealthViews::default();
        let now = Utc::now();
        for _ in 0..1000 {
            let needed = views.note(&webhook(None), Health::Succeeded, now, AFTER, INTERVAL);
            assert_eq!(needed, Needed::Nothing);
        }
        assert!(views.views.lock().unwrap().is_empty());
    }

    #[test]
    fn one_process_writes_a_failing_webhook_once_an_interval() {
        let views = HealthViews::default();
        let t0 = Utc::now();
        // The first failure marks the run; the thousand after it, read before the mark
        // lands, are held back by the interval.
        assert_eq!(
            views.note(&webhook(None), Health::Failed, t0, AFTER, INTERVAL),
            Needed::Write(Some(t0))
        );
        for _ in 0..1000 {
            assert_eq!(
                views.note(&webhook(None), Health::Failed, t0, AFTER, INTERVAL),
                Needed::Nothing
            );
        }
        // Marked, and within the limit: nothing, at no cost.
        let marked = webhook(Some(t0));
        let later = t0 + chrono::Duration::seconds(50);
        assert_eq!(
            views.note(&marked, Health::Failed, later, AFTER, Duration::ZERO),
            Needed::Nothing
        );
        // Past the limit: a check, with the failures this process saw in a row.
        let past = t0 + AFTER;
        assert_eq!(
            views.note(&marked, Health::Failed, past, AFTER, Duration::ZERO),
            Needed::Check {
                since: t0,
                seen: 1003
            }
        );
    }

    #[test]
    fn a_webhook_changed_by_its_user_starts_a_new_view() {
        let views = HealthViews::default();
        let t0 = Utc::now();
        views.note(&webhook(None), Health::Failed, t0, AFTER, INTERVAL);
        // Switched off, and on again days later by PATCH (which clears the stored run).
        let mut patched = webhook(None);
        patched.updated_at = t0 + chrono::Duration::days(6);
        let t1 = t0 + chrono::Duration::days(6) + chrono::Duration::seconds(1);
        assert_eq!(
            views.note(&patched, Health::Failed, t1, AFTER, INTERVAL),
            Needed::Write(Some(t1)),
            "the run begins now, not at the failure before the change"
        );
    }

    #[test]
    fn a_success_ends_the_run_even_when_its_clear_was_held_back() {
        let views = HealthViews::default();
        let t0 = Utc::now();
        let marked = webhook(Some(t0));
        let t1 = t0 + chrono::Duration::seconds(1);
        assert_eq!(
            views.note(&marked, Health::Failed, t0, AFTER, INTERVAL),
            Needed::Nothing,
            "already marked, within the limit"
        );
        // The success's clear is due; this process looked too recently? Not yet: it clears.
        assert_eq!(
            views.note(&marked, Health::Succeeded, t1, AFTER, INTERVAL),
            Needed::Write(None)
        );
        // A second success right after is held back (the interval)...
        let t2 = t1 + chrono::Duration::seconds(1);
        assert_eq!(
            views.note(&marked, Health::Succeeded, t2, AFTER, INTERVAL),
            Needed::Nothing
        );
        // ...and when the clear was lost and the endpoint fails again past the limit, the
        // process knows of its success: it moves the run on instead of checking.
        let t3 = t0 + AFTER + chrono::Duration::seconds(5);
        assert_eq!(
            views.note(&marked, Health::Failed, t3, AFTER, Duration::ZERO),
            Needed::Write(Some(t3))
        );
    }
}
