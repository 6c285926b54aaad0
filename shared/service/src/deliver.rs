//! Delivering one delivery: one signed POST, its outcome recorded, the next attempt scheduled.

use crate::Service;
use crate::ports::{AttemptRecord, DeliveryContext, OutboundRequest, PortResult, SendErrorKind};
use hookline_model::envelope::envelope_body;
use hookline_model::signing::signature_header;
use hookline_model::{Attempt, DeliveryJob, DeliveryStatus};

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
        let attempt = match self.request_for(&context, now) {
            Ok(request) => {
                let outcome = self.ports.sender.send(request).await;
                Attempt {
                    at: now,
                    status_code: outcome.status,
                    duration_ms: outcome.duration.as_millis() as u64,
                    error: match (&outcome.error, outcome.is_success()) {
                        (Some((kind, message)), _) => Some(format!("{}: {message}", kind.as_str())),
                        (None, false) => Some(SendErrorKind::Status.as_str().to_string()),
                        (None, true) => None,
                    },
                    response_body: outcome.body,
                }
            }
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
                if !self
                    .ports
                    .store
                    .record_attempt(&context.delivery, &record)
                    .await?
                {
                    return Ok(DeliverOutcome::Skipped);
                }
                return Ok(DeliverOutcome::Failed);
            }
        };
        let succeeded = attempt.error.is_none();
        let failed_attempts = context.delivery.attempts.len() + 1;
        let next_delay = (!succeeded)
            .then(|| self.config.retry_policy.delay_after(failed_attempts))
            .flatten();
        let (status, next_attempt_at, outcome) = match (succeeded, next_delay) {
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
        if !self
            .ports
            .store
            .record_attempt(&context.delivery, &record)
            .await?
        {
            // A duplicate of this job moved the delivery on first; its outcome stands.
            return Ok(DeliverOutcome::Skipped);
        }
        if let Some(at) = next_attempt_at
            && let Err(error) = self.ports.scheduler.schedule(job, at).await
        {
            // Recorded as due: the sweep enqueues it once its sweep time passes.
            tracing::warn!(delivery_id = %job.delivery_id, %error, "scheduling the retry failed; the sweep will retry");
        }
        Ok(outcome)
    }

    /// The signed request of one attempt, or why none can be made.
    fn request_for(
        &self,
        context: &DeliveryContext,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<OutboundRequest, &'static str> {
        let webhook = context.webhook.as_ref().ok_or("webhook deleted")?;
        if !webhook.active {
            return Err("webhook inactive");
        }
        let event = context.event.as_ref().ok_or("event missing")?;
        let body = envelope_body(event).map_err(|_| "stored payload unreadable")?;
        let msg_id = &context.delivery.id;
        let timestamp = now.timestamp();
        let mut headers = vec![
            ("content-type".to_string(), "application/json".to_string()),
            ("webhook-id".to_string(), msg_id.clone()),
            ("webhook-timestamp".to_string(), timestamp.to_string()),
            (
                "webhook-signature".to_string(),
                signature_header(webhook.valid_signing_secrets(now), msg_id, timestamp, &body),
            ),
        ];
        if let Some(secret) = context
            .account
            .as_ref()
            .and_then(|a| a.webhook_secret.as_ref())
        {
            headers.push((self.config.secret_header.clone(), secret.clone()));
        }
        if let Some(token) = &webhook.authorization_token {
            headers.push((self.config.token_header.clone(), token.clone()));
        }
        Ok(OutboundRequest {
            url: webhook.url.clone(),
            headers,
            body,
        })
    }
}
