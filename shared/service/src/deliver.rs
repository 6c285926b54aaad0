//! Delivering one delivery: one signed POST, its outcome recorded, the next attempt scheduled.

use crate::Service;
use crate::ports::{
    AttemptRecord, DeliveryContext, OutboundRequest, PortResult, SendErrorKind, SendOutcome,
};
use chrono::{DateTime, Utc};
use hookline_model::envelope::envelope_body;
use hookline_model::signing::signature_header;
use hookline_model::{Account, Attempt, DeliveryJob, DeliveryStatus, Webhook};
use std::time::Duration;

/// What became of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliverOutcome {
    Delivered,
    /// Failed; another attempt is scheduled.
    WillRetry,
    Failed,
    /// Nothing to do: already terminal (a duplicate message) or no longer stored.
    Skipped,
}

/// The longest a receiver's `Retry-After` may push an attempt back.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

impl Service {
    /// Attempts `job` once. `Err` only when a backend failed, so the job must be tried again.
    pub async fn deliver(&self, job: &DeliveryJob) -> PortResult<DeliverOutcome> {
        let Some(context) = self.ports.store.load_delivery(job).await? else {
            return Ok(DeliverOutcome::Skipped);
        };
        if context.delivery.status.is_terminal() {
            return Ok(DeliverOutcome::Skipped);
        }
        let now = self.ports.clock.now();
        let request = match self.request_for(&context, now) {
            Ok(request) => request,
            // The webhook or event is gone or unusable: nothing to send, ever.
            Err(reason) => {
                let record = AttemptRecord {
                    attempt: Attempt {
                        at: now,
                        status_code: None,
                        duration_ms: 0,
                        error: Some(reason.into()),
                        response_body: None,
                    },
                    status: DeliveryStatus::Failed,
                    next_attempt_at: None,
                    sweep_at: None,
                };
                let recorded = self.recorder.record(&context.delivery, &record).await?;
                return Ok(if recorded {
                    DeliverOutcome::Failed
                } else {
                    DeliverOutcome::Skipped
                });
            }
        };
        let outcome = self.ports.sender.send(request).await;
        let gone = outcome.status == Some(410);
        let attempt = attempt_of(&outcome, now);
        let succeeded = attempt.error.is_none();
        let next_delay = if succeeded || gone {
            None
        } else {
            let failed_attempts = context.delivery.round_attempts() as usize + 1;
            self.config
                .retry_policy
                .delay_after(failed_attempts)
                .map(|delay| match outcome.retry_after {
                    // 429 and 503 may ask for more time; never for less than the schedule.
                    Some(asked) if matches!(outcome.status, Some(429 | 503)) => {
                        delay.max(asked.min(MAX_RETRY_AFTER))
                    }
                    _ => delay,
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
                    DeliverOutcome::WillRetry,
                )
            }
            (false, None) => (DeliveryStatus::Failed, None, DeliverOutcome::Failed),
        };
        let record = AttemptRecord {
            attempt,
            status,
            next_attempt_at,
            sweep_at: next_attempt_at.map(|at| self.sweep_time(at)),
        };
        if !self.recorder.record(&context.delivery, &record).await? {
            // A duplicate of this job moved the delivery on first; its outcome stands.
            return Ok(DeliverOutcome::Skipped);
        }
        if gone {
            // 410 Gone: the receiver asks for no more; its other deliveries fail as inactive.
            self.ports
                .store
                .deactivate_webhook(&job.account_id, &job.webhook_id, now)
                .await?;
            tracing::info!(webhook_id = %job.webhook_id, "endpoint answered 410; webhook deactivated");
        }
        if let Some(at) = next_attempt_at
            && let Err(error) = self.ports.scheduler.schedule(job, at).await
        {
            // Recorded as due: the sweep enqueues it once its sweep time passes.
            tracing::warn!(delivery_id = %job.delivery_id, %error, "scheduling the retry failed; the sweep will retry");
        }
        Ok(result)
    }

    /// The signed request of one attempt, or why none can be made.
    fn request_for(
        &self,
        context: &DeliveryContext,
        now: DateTime<Utc>,
    ) -> Result<OutboundRequest, &'static str> {
        let webhook = context.webhook.as_ref().ok_or("webhook deleted")?;
        if !webhook.active {
            return Err("webhook inactive");
        }
        let event = context.event.as_ref().ok_or("event missing")?;
        let body = envelope_body(event).map_err(|_| "stored payload unreadable")?;
        Ok(self.signed_request(
            webhook,
            context.account.as_ref(),
            &context.delivery.id,
            body,
            now,
        ))
    }

    /// A POST to the webhook with every header a delivery carries: Standard Webhooks
    /// signatures (one per valid secret), the account secret and the webhook's token.
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
            headers.push((self.config.token_header.clone(), token.clone()));
        }
        OutboundRequest {
            url: webhook.url.clone(),
            headers,
            body,
        }
    }
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
        response_body: outcome.body.clone(),
    }
}
