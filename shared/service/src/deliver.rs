//! Delivering one delivery: one signed POST, its outcome recorded, the next attempt scheduled.

use crate::health::Health;
use crate::operational::{Emission, OperationalEvent};
use crate::ports::{
    AttemptRecord, DeliveryContext, OutboundRequest, PortError, PortResult, SendErrorKind,
    SendOutcome,
};
use crate::rate_limit::Turn;
use crate::telemetry;
use crate::{Service, ServiceResult};
use chrono::{DateTime, Utc};
use hookline_model::catalog::is_operational;
use hookline_model::envelope::delivery_body;
use hookline_model::limits::{MAX_RESPONSE_SNIPPET_BYTES, MAX_SUCCESS_SNIPPET_BYTES, snippet};
use hookline_model::signing::signature_header;
use hookline_model::{
    Account, Attempt, DeliveryJob, DeliveryStatus, GONE_DISABLED_REASON, Webhook,
};
use std::time::Duration;

/// What became of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliverOutcome {
    Delivered,
    /// Failed; another attempt is due `at` (scheduled, unless the queue brings an ordered
    /// job back itself: [`crate::ports::Queue::retries_ordered_in_place`]).
    WillRetry {
        at: DateTime<Utc>,
    },
    Failed,
    /// Nothing to do: already terminal (a duplicate message) or no longer stored.
    Skipped,
    /// A job for a retry that is not due yet (a duplicate message, a schedule that fired
    /// twice, the sweep): put back for its time `at`, nothing sent.
    NotYetDue {
        at: DateTime<Utc>,
    },
    /// Its webhook's rate limit gave it a later turn: put back on the queue for then.
    Deferred,
}

/// The longest a receiver's `Retry-After` may push an attempt back.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);
/// How early a retry's job may arrive and still be sent (clock skew between machines).
const EARLY_TOLERANCE: chrono::Duration = chrono::Duration::seconds(1);

/// Why no request can be made for an attempt.
enum Unsendable {
    /// Worth trying again later (what is missing may be a read that came too early).
    Retry(&'static str),
    /// Never sendable.
    Final(&'static str),
}

impl Service {
    /// Attempts `job` once. `Err` only when a backend failed, so the job must be tried again.
    pub async fn deliver(&self, job: &DeliveryJob) -> PortResult<DeliverOutcome> {
        let Some(context) = self.ports.store.load_delivery(job).await? else {
            return Ok(DeliverOutcome::Skipped);
        };
        let delivery = &context.delivery;
        if delivery.status.is_terminal() {
            return Ok(DeliverOutcome::Skipped);
        }
        let now = self.ports.clock.now();
        if delivery.status == DeliveryStatus::Retrying
            && let Some(due) = delivery.next_attempt_at
            && due > now + EARLY_TOLERANCE
        {
            // Sending now would spend a step of the schedule early and start a second chain
            // of retries; its own schedule (or the sweep) brings it back when due.
            if !self.queue_holds_retry(job) {
                self.ports.scheduler.schedule(job, due).await?;
            }
            return Ok(DeliverOutcome::NotYetDue { at: due });
        }
        let mut now = now;
        let mut request = self.request_for(&context, now);
        // A sendable delivery to a rate-limited webhook waits for its turn first.
        if let (Ok(_), Some(per_second)) = (
            &request,
            context.webhook.as_ref().and_then(|w| w.rate_limit),
        ) {
            if let Turn::Later = self.take_turn(job, per_second).await? {
                return Ok(DeliverOutcome::Deferred);
            }
            // Signed at the time it is sent.
            now = self.ports.clock.now();
            request = self.request_for(&context, now);
        }
        let _in_flight = telemetry::InFlight::start();
        let mut sent = None;
        let (attempt, retryable, gone, retry_after) = match request {
            Ok(request) => {
                let outcome = self.ports.sender.send(request).await;
                sent = Some(outcome.duration);
                let gone = outcome.status == Some(410);
                // 429 and 503 may ask for more time.
                let retry_after = outcome
                    .retry_after
                    .filter(|_| matches!(outcome.status, Some(429 | 503)));
                (attempt_of(&outcome, now), true, gone, retry_after)
            }
            Err(unsendable) => {
                let (reason, retryable) = match unsendable {
                    Unsendable::Retry(reason) => (reason, true),
                    Unsendable::Final(reason) => (reason, false),
                };
                let attempt = Attempt {
                    at: now,
                    status_code: None,
                    duration_ms: 0,
                    error: Some(reason.into()),
                    response_body: None,
                };
                (attempt, retryable, false, None)
            }
        };
        let succeeded = attempt.error.is_none();
        let next_delay = if succeeded || gone || !retryable {
            None
        } else {
            let failed_attempts = delivery.round_attempts() as usize + 1;
            self.config
                .retry_policy
                .delay_after(failed_attempts)
                // Never sooner than the schedule.
                .map(|delay| match retry_after {
                    Some(asked) => delay.max(asked.min(MAX_RETRY_AFTER)),
                    None => delay,
                })
        };
        let (status, next_attempt_at, result) = match (succeeded, next_delay) {
            (true, _) => (DeliveryStatus::Delivered, None, DeliverOutcome::Delivered),
            (false, Some(delay)) => {
                let at =
                    now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::zero());
                (
                    DeliveryStatus::Retrying,
                    Some(at),
                    DeliverOutcome::WillRetry { at },
                )
            }
            (false, None) => (DeliveryStatus::Failed, None, DeliverOutcome::Failed),
        };
        // Told before the outcome is recorded, under ids that make a second telling a no-op:
        // when it cannot be stored the job fails and comes back whole (the attempt is made
        // again), so neither the user's outcome nor the operational event is lost.
        let exhausted = status == DeliveryStatus::Failed && retryable && !gone;
        self.emit_for_attempt(&context, &record_reason(&attempt), gone, exhausted)
            .await
            .map_err(|e| PortError::new("storing an operational event", e))?;
        let record = AttemptRecord {
            attempt,
            status,
            next_attempt_at,
            sweep_at: next_attempt_at.map(|at| self.retry_due_at(job, at)),
            // 410 Gone: the receiver asks for no more; its other deliveries fail as inactive.
            deactivates_webhook: gone,
        };
        if !self.recorder.record(delivery, &record).await? {
            // A duplicate of this job moved the delivery on first; its outcome stands.
            return Ok(DeliverOutcome::Skipped);
        }
        telemetry::attempt_recorded(result, sent);
        // No URL, error detail, header or body: they may carry credentials or patient data.
        tracing::info!(
            target: "hookline::attempt",
            delivery_id = %job.delivery_id,
            event_id = %job.event_id,
            webhook_id = %job.webhook_id,
            account_id = %job.account_id,
            status_code = record.attempt.status_code,
            duration_ms = record.attempt.duration_ms,
            error = record.attempt.error.as_deref().map(error_class),
            status = record.status.as_str(),
            "attempt"
        );
        if gone {
            tracing::info!(webhook_id = %job.webhook_id, "endpoint answered 410; webhook deactivated");
        }
        if let Some(at) = next_attempt_at
            && !self.queue_holds_retry(job)
            && let Err(error) = self.ports.scheduler.schedule(job, at).await
        {
            // Recorded as due: the sweep enqueues it once its sweep time passes.
            tracing::warn!(delivery_id = %job.delivery_id, %error, "scheduling the retry failed; the sweep will retry");
        }
        // Last, once the outcome is safe: only attempts that reached for the endpoint say
        // anything of its health; a 410 has switched the webhook off already.
        if sent.is_some() && !gone {
            let health = if succeeded {
                Health::Succeeded
            } else {
                Health::Failed
            };
            self.track_health(&context, health, now).await;
        }
        Ok(result)
    }

    /// Whether the queue itself brings `job` back for its retry (an ordered job on SQS FIFO,
    /// whose message stays in its group, unseen until then): no schedule is made for it.
    pub(crate) fn queue_holds_retry(&self, job: &DeliveryJob) -> bool {
        job.ordered && self.ports.queue.retries_ordered_in_place()
    }

    /// The operational events an attempt causes: its webhook disabled by a 410, or the
    /// delivery exhausted (never for a delivery of an operational event: no event about an
    /// event about an event).
    async fn emit_for_attempt(
        &self,
        context: &DeliveryContext,
        reason: &str,
        gone: bool,
        exhausted: bool,
    ) -> ServiceResult<()> {
        let delivery = &context.delivery;
        if gone && let Some(webhook) = &context.webhook {
            self.emit_operational(Emission {
                kind: OperationalEvent::WebhookDisabled,
                account_id: &delivery.account_id,
                webhook_id: &delivery.webhook_id,
                delivery_id: Some(&delivery.id),
                reason: GONE_DISABLED_REASON.into(),
                // Once per deactivation: deliveries that meet the 410 together read one version.
                occurrence: format!("{}:{}", webhook.id, webhook.version),
            })
            .await?;
        }
        if exhausted && !is_operational(&delivery.event_type) {
            self.emit_operational(Emission {
                kind: OperationalEvent::DeliveryExhausted,
                account_id: &delivery.account_id,
                webhook_id: &delivery.webhook_id,
                delivery_id: Some(&delivery.id),
                reason: format!("the last scheduled attempt failed: {reason}"),
                // A manual retry that fails again is a new exhaustion.
                occurrence: format!("{}:{}", delivery.id, delivery.attempts_made() + 1),
            })
            .await?;
        }
        Ok(())
    }

    /// The signed request of one attempt, or why none can be made.
    fn request_for(
        &self,
        context: &DeliveryContext,
        now: DateTime<Utc>,
    ) -> Result<OutboundRequest, Unsendable> {
        let webhook = context
            .webhook
            .as_ref()
            .ok_or(if context.delivery.ordered {
                // Its lane would wait out a whole retry schedule per delivery behind it.
                Unsendable::Final("webhook not found")
            } else {
                Unsendable::Retry("webhook not found")
            })?;
        if !webhook.active {
            return Err(Unsendable::Final("webhook inactive"));
        }
        let event = context
            .event
            .as_ref()
            .ok_or(Unsendable::Retry("event not found"))?;
        let body = delivery_body(event, webhook.request.format)
            .map_err(|_| Unsendable::Final("stored payload unreadable"))?;
        Ok(self.signed_request(
            webhook,
            context.account.as_ref(),
            &context.delivery.id,
            body,
            now,
        ))
    }

    /// A POST to the webhook with every header a delivery carries: Standard Webhooks
    /// signatures (one per valid secret) over `body` exactly as sent, the account secret, the
    /// webhook's token (in its own token header when it has one) and its custom headers
    /// (whose names never clash with these: see `validate_custom_headers`).
    pub(crate) fn signed_request(
        &self,
        webhook: &Webhook,
        account: Option<&Account>,
        msg_id: &str,
        body: Vec<u8>,
        now: DateTime<Utc>,
    ) -> OutboundRequest {
        let timestamp = now.timestamp();
        let mut headers = vec![
            ("content-type".to_string(), "application/json".to_string()),
            ("webhook-id".to_string(), msg_id.to_string()),
            ("webhook-timestamp".to_string(), timestamp.to_string()),
            (
                "webhook-signature".to_string(),
                signature_header(webhook.valid_signing_secrets(now), msg_id, timestamp, &body),
            ),
        ];
        if let Some(secret) = account.and_then(|a| a.webhook_secret.as_ref()) {
            headers.push((self.config.secret_header.clone(), secret.clone()));
        }
        if let Some(token) = &webhook.authorization_token {
            let name = webhook
                .request
                .token_header
                .as_ref()
                .unwrap_or(&self.config.token_header);
            headers.push((name.clone(), token.clone()));
        }
        headers.extend(
            webhook
                .request
                .headers
                .iter()
                .map(|(name, value)| (name.clone(), value.clone())),
        );
        OutboundRequest {
            url: webhook.url.clone(),
            headers,
            body,
        }
    }
}

/// Why an attempt failed, for an operational event: the status or the error class, never
/// the detail or the body (they may carry credentials or patient data).
fn record_reason(attempt: &Attempt) -> String {
    match (attempt.status_code, attempt.error.as_deref()) {
        (Some(status), _) => format!("the endpoint answered {status}"),
        (None, Some(error)) => error_class(error).to_string(),
        (None, None) => "unknown".into(),
    }
}

/// The class of an attempt's error (`timeout`, `connect`, `status`, ...), without its detail.
fn error_class(error: &str) -> &str {
    error.split(':').next().unwrap_or(error)
}

/// An attempt as logged: its error is the failure class and detail, or `status` for a non-2xx.
fn attempt_of(outcome: &SendOutcome, at: DateTime<Utc>) -> Attempt {
    Attempt {
        at,
        status_code: outcome.status,
        duration_ms: outcome.duration.as_millis() as u64,
        error: match (&outcome.error, outcome.is_success()) {
            (Some((kind, message)), _) => Some(format!("{}: {message}", kind.as_str())),
            (None, false) => Some(match outcome.status {
                Some(410) => "gone: the endpoint answered 410; webhook deactivated".to_string(),
                _ => SendErrorKind::Status.as_str().to_string(),
            }),
            (None, true) => None,
        },
        // A 2xx answer keeps less of its body than a failure (limits::MAX_SUCCESS_SNIPPET_BYTES).
        response_body: outcome.body.as_deref().map(|body| {
            let max = if outcome.is_success() {
                MAX_SUCCESS_SNIPPET_BYTES
            } else {
                MAX_RESPONSE_SNIPPET_BYTES
            };
            snippet(body, max).to_string()
        }),
    }
}
