//! Endpoint health and auto-disable (issue 15 item 1): a webhook whose attempts have all failed
//! for `HOOKLINE_DISABLE_AFTER`, and at least `HOOKLINE_DISABLE_MIN_FAILURES` in a row, is
//! switched off with its reason and time, and `hookline.webhook.disabled` is told.
//!
//! The webhook stores only when its current run of failures began (`failingSince`). Each
//! process notes what it sees in memory (its last success, the failures it saw while the store
//! showed the current run) and, only when that and the stored run disagree, reads the webhook
//! afresh and writes it, or reads the log: to begin a run or decide, at most once per interval
//! per webhook (a tenth of the limit, between 100 ms and a minute); to end one, at most once a
//! second. A webhook taking thousands of deliveries a second, failing or flapping, costs each
//! process at most that many reads, and writes only where a fresh copy still needs them.

use crate::operational::{Emission, OperationalEvent, PLATFORM_ACCOUNT_ID};
use crate::ports::{DeliveryContext, DeliveryQuery};
use crate::{Service, ServiceResult};
use chrono::{DateTime, Utc};
use hookline_model::Webhook;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The most often one process reads a webhook afresh to end its run: while a stale copy still
/// shows the run (5 s on Lambda), each success would otherwise read it again.
const MAX_CLEAR_SPACING: Duration = Duration::from_secs(1);

/// Webhooks one process keeps a view of; past it, it starts afresh (a lost view delays a
/// switch-off or a clear until the log or another process sees the same).
const VIEWS_KEPT: usize = 10_000;

/// What one process has seen of a webhook's attempts.
#[derive(Debug, Clone, Default)]
struct View {
    /// The webhook's `updatedAt` this view is of: a user's change (a new URL, switched off and
    /// on) starts a new view. An older copy (a delivery that read before) changes nothing.
    webhook_updated_at: Option<DateTime<Utc>>,
    /// When this process last read the webhook afresh or its log for it to begin a run or to
    /// decide, and when to end a run (ends are not held back by the interval: an endpoint
    /// fixed shows healthy at once).
    last_look: Option<Instant>,
    last_clear: Option<Instant>,
    /// The run the store showed at this process's last attempt, and the failures this process
    /// saw while it showed that run (so never a failure from before it).
    stored_run: Option<DateTime<Utc>>,
    failures_in_run: u32,
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
    /// A run began (`Some`, now) or ended (`None`): checked against a fresh read, with the
    /// last success this process saw, before it is written.
    Write {
        failing_since: Option<DateTime<Utc>>,
        last_success: Option<DateTime<Utc>>,
    },
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
        if view
            .webhook_updated_at
            .is_none_or(|seen| webhook.updated_at > seen)
        {
            *view = View {
                webhook_updated_at: Some(webhook.updated_at),
                ..View::default()
            };
        }
        if view.stored_run != stored {
            view.stored_run = stored;
            view.failures_in_run = 0;
        }
        match health {
            Health::Succeeded => view.last_success = Some(now),
            Health::Failed if stored.is_some_and(|since| now >= since) => {
                view.failures_in_run = view.failures_in_run.saturating_add(1);
            }
            Health::Failed => {}
        }
        let write = |failing_since| Needed::Write {
            failing_since,
            last_success: view.last_success,
        };
        let needed = match (health, stored) {
            (Health::Succeeded, None) => Needed::Nothing,
            (Health::Succeeded, Some(_)) => write(None),
            (Health::Failed, None) => write(Some(now)),
            // A success after the stored run began: that run is over (its clear was held
            // back, lost, or is still in flight); a new one begins.
            (Health::Failed, Some(since)) if view.last_success.is_some_and(|s| s >= since) => {
                write(Some(now))
            }
            (Health::Failed, Some(since)) if now - since >= after => Needed::Check {
                since,
                seen: view.failures_in_run,
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
        let (last, spacing) = if health == Health::Succeeded {
            (&mut view.last_clear, interval.min(MAX_CLEAR_SPACING))
        } else {
            (&mut view.last_look, interval)
        };
        if last.is_some_and(|at| at.elapsed() < spacing) {
            return Needed::Nothing;
        }
        *last = Some(Instant::now());
        needed
    }
}

/// Whether a fresh copy still needs `failing_since` written: a run begins when none is stored;
/// a stored run is replaced or cleared only when this process saw a success since it began
/// (a run another process began after that success stands).
fn still_needed(
    failing_since: Option<DateTime<Utc>>,
    fresh: Option<DateTime<Utc>>,
    last_success: Option<DateTime<Utc>>,
) -> bool {
    match (failing_since, fresh) {
        (None, None) => false,
        (Some(_), None) => true,
        (_, Some(began)) => last_success.is_some_and(|s| s >= began),
    }
}

/// The longest health tracking may take after an attempt (a log read on a slow store):
/// past it, it is dropped and a later attempt looks again.
const HEALTH_BUDGET: Duration = Duration::from_secs(5);

impl Service {
    /// Notes an attempt's outcome on its webhook, switching the webhook off when it has failed
    /// long enough. Called once the attempt is recorded and its retry scheduled; a failure
    /// here is logged, never the delivery's (a later attempt looks again).
    pub(crate) async fn track_health(
        &self,
        context: &DeliveryContext,
        health: Health,
        now: DateTime<Utc>,
    ) {
        // Decided in memory first: most attempts need nothing and pay for no timer.
        let Some((webhook, needed, min_failures)) = self.health_needs(context, health, now) else {
            return;
        };
        let step = self.take_health_step(webhook, needed, min_failures, now);
        let error = match tokio::time::timeout(HEALTH_BUDGET, step).await {
            Ok(Ok(())) => return,
            Ok(Err(error)) => error.to_string(),
            Err(_) => format!("took over {HEALTH_BUDGET:?}"),
        };
        tracing::warn!(webhook_id = %context.delivery.webhook_id, %error, "tracking the webhook's health failed");
    }

    /// What the attempt asks of the stored health, if anything, and of which webhook.
    fn health_needs<'c>(
        &self,
        context: &'c DeliveryContext,
        health: Health,
        now: DateTime<Utc>,
    ) -> Option<(&'c Webhook, Needed, u32)> {
        let policy = self.config.auto_disable?;
        let webhook = context.webhook.as_ref()?;
        // The platform's own webhook is put back as configured at every start; nothing
        // reports on it.
        if !webhook.active || webhook.account_id == PLATFORM_ACCOUNT_ID {
            return None;
        }
        let after = chrono::Duration::from_std(policy.after).unwrap_or(chrono::Duration::MAX);
        let interval =
            (policy.after / 10).clamp(Duration::from_millis(100), Duration::from_secs(60));
        match self
            .health_views
            .note(webhook, health, now, after, interval)
        {
            Needed::Nothing => None,
            needed => Some((webhook, needed, policy.min_failures)),
        }
    }

    async fn take_health_step(
        &self,
        webhook: &Webhook,
        needed: Needed,
        min_failures: u32,
        now: DateTime<Utc>,
    ) -> ServiceResult<()> {
        match needed {
            Needed::Nothing => Ok(()),
            Needed::Write {
                failing_since,
                last_success,
            } => self.write_run(webhook, failing_since, last_success).await,
            Needed::Check { since, seen } => {
                let failures = if seen >= min_failures {
                    seen
                } else {
                    // Fewer here than needed: this process is new, or the endpoint is quiet
                    // (so its log is short). The log says.
                    match self.failures_since(webhook, since, min_failures).await? {
                        Some(failures) => failures,
                        // The log holds a success since the run began: it is over.
                        None => return self.write_run(webhook, None, Some(now)).await,
                    }
                };
                if failures >= min_failures {
                    self.auto_disable(webhook, since, failures).await?;
                }
                Ok(())
            }
        }
    }

    /// Writes `failing_since` over a fresh copy of the webhook when that copy still needs it:
    /// the read spares the write when another process got there first (many processes can see
    /// the same change within a cache's lifetime), and a write that loses anyway is dropped.
    async fn write_run(
        &self,
        seen: &Webhook,
        failing_since: Option<DateTime<Utc>>,
        last_success: Option<DateTime<Utc>>,
    ) -> ServiceResult<()> {
        let store = &self.ports.store;
        let Some(mut fresh) = store.get_webhook(&seen.account_id, &seen.id).await? else {
            return Ok(());
        };
        if fresh.active && still_needed(failing_since, fresh.health.failing_since, last_success) {
            fresh.health.failing_since = failing_since;
            store.update_webhook(&fresh).await?;
        }
        Ok(())
    }

    /// Failed attempts to `webhook` at or after `since` in its newest `enough` deliveries
    /// attempted since then, or `None` when one of those attempts succeeded. Only deliveries
    /// created late enough to be attempted since (their retry schedule and a sweep lease
    /// before `since`) are read, so a store reads no further back than that.
    async fn failures_since(
        &self,
        webhook: &Webhook,
        since: DateTime<Utc>,
        enough: u32,
    ) -> ServiceResult<Option<u32>> {
        let schedule = self
            .config
            .retry_policy
            .delays()
            .iter()
            .try_fold(self.config.sweep_lease, |sum, delay| {
                sum.checked_add(*delay)
            });
        let reach = schedule
            .and_then(|reach| chrono::Duration::from_std(reach).ok())
            .unwrap_or(chrono::Duration::MAX);
        let query = DeliveryQuery {
            webhook_id: Some(webhook.id.clone()),
            created_from: since.checked_sub_signed(reach),
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

    /// Switches the webhook off. Read afresh first (a delivery's copy may be seconds old),
    /// then `hookline.webhook.disabled` is told under that version, so deliveries deciding
    /// together tell it once and a failure to tell leaves the webhook on for a later attempt
    /// to try again (nothing is lost). The cost: when another write (a PATCH, a health write)
    /// lands between the telling and the switch-off, the event was told and the webhook stays
    /// on.
    async fn auto_disable(
        &self,
        seen: &Webhook,
        since: DateTime<Utc>,
        failures: u32,
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
        let now = self.ports.clock.now();
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

    fn write(failing_since: Option<DateTime<Utc>>, last_success: Option<DateTime<Utc>>) -> Needed {
        Needed::Write {
            failing_since,
            last_success,
        }
    }

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
    fn one_process_looks_at_a_failing_webhook_once_an_interval() {
        let views = HealthViews::default();
        let t0 = Utc::now();
        // The first failure begins the run; the thousand after it, read before the mark
        // lands, are held back by the interval.
        assert_eq!(
            views.note(&webhook(None), Health::Failed, t0, AFTER, INTERVAL),
            write(Some(t0), None)
        );
        for _ in 0..1000 {
            let needed = views.note(&webhook(None), Health::Failed, t0, AFTER, INTERVAL);
            assert_eq!(needed, Needed::Nothing);
        }
        // Marked, and within the limit: nothing, at no cost.
        let marked = webhook(Some(t0));
        let later = t0 + chrono::Duration::seconds(50);
        assert_eq!(
            views.note(&marked, Health::Failed, later, AFTER, Duration::ZERO),
            Needed::Nothing
        );
        // Past the limit: a check, counting only the failures seen while the run was stored.
        let past = t0 + AFTER;
        assert_eq!(
            views.note(&marked, Health::Failed, past, AFTER, Duration::ZERO),
            Needed::Check { since: t0, seen: 2 }
        );
    }

    #[test]
    fn a_success_ends_the_run_even_when_its_clear_was_held_back() {
        let views = HealthViews::default();
        let t0 = Utc::now();
        let marked = webhook(Some(t0));
        let at = |s| t0 + chrono::Duration::seconds(s);
        let note = |health, t, interval| views.note(&marked, health, t, AFTER, interval);
        assert_eq!(note(Health::Failed, t0, INTERVAL), Needed::Nothing);
        assert_eq!(
            note(Health::Succeeded, at(1), INTERVAL),
            write(None, Some(at(1)))
        );
        // A second success right after is held back (the interval)...
        assert_eq!(note(Health::Succeeded, at(2), INTERVAL), Needed::Nothing);
        // ...and if the clear was lost and the endpoint fails again past the limit, this
        // process knows of its success: a new run, not a check.
        let t3 = at(105);
        assert_eq!(
            note(Health::Failed, t3, Duration::ZERO),
            write(Some(t3), Some(at(2)))
        );
    }

    #[test]
    fn a_fixed_endpoint_ends_its_run_at_once() {
        let views = HealthViews::default();
        let t0 = Utc::now();
        let t1 = t0 + chrono::Duration::seconds(1);
        assert_eq!(
            views.note(&webhook(None), Health::Failed, t0, AFTER, INTERVAL),
            write(Some(t0), None)
        );
        // The run's start was just written; its end is not held back by the interval.
        assert_eq!(
            views.note(&webhook(Some(t0)), Health::Succeeded, t1, AFTER, INTERVAL),
            write(None, Some(t1))
        );
        // Successes read with the stale copy right after: held back (a second).
        assert_eq!(
            views.note(&webhook(Some(t0)), Health::Succeeded, t1, AFTER, INTERVAL),
            Needed::Nothing
        );
    }

    #[test]
    fn a_run_another_process_ended_is_not_carried_over() {
        let views = HealthViews::default();
        let t0 = Utc::now();
        let at = |s| t0 + chrono::Duration::seconds(s);
        // This process sees a dozen failures of the run begun at t0...
        for s in 0..12 {
            views.note(&webhook(Some(t0)), Health::Failed, at(s), AFTER, INTERVAL);
        }
        // ...another clears it (a success there); days later it fails here again: the run
        // begins now, not at t0, and counts from zero.
        let days = at(6 * 86_400);
        assert_eq!(
            views.note(&webhook(None), Health::Failed, days, AFTER, Duration::ZERO),
            write(Some(days), None)
        );
        let past = days + AFTER;
        assert_eq!(
            views.note(
                &webhook(Some(days)),
                Health::Failed,
                past,
                AFTER,
                Duration::ZERO
            ),
            Needed::Check {
                since: days,
                seen: 1
            }
        );
    }

    #[test]
    fn a_webhook_changed_by_its_user_starts_a_new_view_and_an_older_copy_does_not() {
        let views = HealthViews::default();
        let t0 = Utc::now();
        views.note(&webhook(None), Health::Succeeded, t0, AFTER, INTERVAL);
        views.note(&webhook(Some(t0)), Health::Succeeded, t0, AFTER, INTERVAL);
        // PATCHed (which clears the stored run): this process's success is forgotten.
        let mut patched = webhook(None);
        patched.updated_at = t0 + chrono::Duration::days(6);
        let t1 = patched.updated_at + chrono::Duration::seconds(1);
        assert_eq!(
            views.note(&patched, Health::Failed, t1, AFTER, Duration::ZERO),
            write(Some(t1), None)
        );
        // A delivery still holding the copy from before the PATCH resets nothing.
        let t2 = t1 + chrono::Duration::seconds(1);
        assert_eq!(
            views.note(&webhook(None), Health::Failed, t2, AFTER, Duration::ZERO),
            write(Some(t2), None)
        );
    }

    #[test]
    fn a_write_is_spared_when_a_fresh_copy_has_it_already() {
        let t0 = Utc::now();
        let t1 = t0 + chrono::Duration::seconds(1);
        // A run begins only where none is stored, or where this process saw it end.
        assert!(still_needed(Some(t1), None, None));
        assert!(!still_needed(Some(t1), Some(t0), None));
        assert!(still_needed(Some(t1), Some(t0), Some(t0)));
        // A clear only of a run that began before this process's success.
        assert!(still_needed(None, Some(t0), Some(t1)));
        assert!(!still_needed(None, Some(t1), Some(t0)));
        assert!(!still_needed(None, None, Some(t1)));
    }
}
