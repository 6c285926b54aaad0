//! Deliveries (one event to one webhook) and their attempts.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Waiting for its first attempt (or a manual retry).
    Pending,
    /// Failed at least once; the next attempt is scheduled.
    Retrying,
    Delivered,
    /// Every scheduled attempt failed (or the endpoint is gone); can be retried by hand.
    Failed,
}

impl DeliveryStatus {
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Delivered | Self::Failed)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Retrying => "retrying",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }
}

/// How many of an account's deliveries are in each status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusCounts {
    pub pending: u64,
    pub retrying: u64,
    pub delivered: u64,
    pub failed: u64,
}

impl StatusCounts {
    pub fn get(&self, status: DeliveryStatus) -> u64 {
        match status {
            DeliveryStatus::Pending => self.pending,
            DeliveryStatus::Retrying => self.retrying,
            DeliveryStatus::Delivered => self.delivered,
            DeliveryStatus::Failed => self.failed,
        }
    }

    pub fn total(&self) -> u64 {
        self.pending + self.retrying + self.delivered + self.failed
    }
}

impl DeliveryStatus {
    pub const ALL: [DeliveryStatus; 4] = [
        DeliveryStatus::Pending,
        DeliveryStatus::Retrying,
        DeliveryStatus::Delivered,
        DeliveryStatus::Failed,
    ];
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    pub id: String,
    pub account_id: String,
    pub webhook_id: String,
    /// The URL and type at fan-out time, so the log reads as it happened.
    pub webhook_url: String,
    pub event_id: String,
    pub event_type: String,
    pub status: DeliveryStatus,
    pub created_at: DateTime<Utc>,
    /// The latest attempts, at most [`MAX_KEPT_ATTEMPTS`]; older ones are dropped (their
    /// number stays in `attempt_count`) so a delivery retried by hand again and again never
    /// outgrows what a store item may hold.
    #[serde(default)]
    pub attempts: Vec<Attempt>,
    /// Every attempt ever made, kept or dropped.
    #[serde(default)]
    pub attempt_count: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_response_status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempt_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Attempts made before the current round: a manual retry starts a new round of the retry
    /// schedule while the earlier attempts stay in the log.
    #[serde(default)]
    pub round_start: u32,
    /// Made for an ordered webhook: its jobs go through the webhook's lane, one at a time.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ordered: bool,
}

impl Delivery {
    /// The pending delivery of `event` to `webhook`, as a fan-out creates it.
    pub fn pending(event: &crate::Event, webhook: &crate::Webhook) -> Self {
        Self {
            id: crate::ids::delivery_id(&event.id, &webhook.id, event.created_at),
            account_id: event.account_id.clone(),
            webhook_id: webhook.id.clone(),
            webhook_url: webhook.url.clone(),
            event_id: event.id.clone(),
            event_type: event.event_type.clone(),
            status: DeliveryStatus::Pending,
            created_at: event.created_at,
            attempts: vec![],
            attempt_count: 0,
            last_response_status: None,
            last_attempt_at: None,
            next_attempt_at: None,
            round_start: 0,
            ordered: webhook.ordered,
        }
    }

    /// The delivery sent again by hand: pending, in a new round of the retry schedule (the
    /// attempts so far stay in its log).
    pub fn requeued(&self) -> Self {
        Self {
            status: DeliveryStatus::Pending,
            round_start: self.attempts_made(),
            next_attempt_at: None,
            ..self.clone()
        }
    }

    /// Every attempt made so far (a delivery stored before `attempt_count` existed counts its
    /// list).
    pub fn attempts_made(&self) -> u32 {
        self.attempt_count.max(self.attempts.len() as u32)
    }

    /// The attempts as they are after `attempt` is added: the newest [`MAX_KEPT_ATTEMPTS`].
    pub fn attempts_with(&self, attempt: Attempt) -> Vec<Attempt> {
        let keep_old = MAX_KEPT_ATTEMPTS - 1;
        let skip = self.attempts.len().saturating_sub(keep_old);
        let mut kept: Vec<Attempt> = self.attempts[skip..].to_vec();
        kept.push(attempt);
        kept
    }

    /// Attempts in the current round (what the retry schedule counts).
    pub fn round_attempts(&self) -> u32 {
        self.attempts_made().saturating_sub(self.round_start)
    }

    /// Impilo's `retryAttempts`: attempts after the first.
    pub fn retry_attempts(&self) -> u32 {
        self.attempts_made().saturating_sub(1)
    }

    pub fn job(&self) -> DeliveryJob {
        DeliveryJob {
            account_id: self.account_id.clone(),
            delivery_id: self.id.clone(),
            event_id: self.event_id.clone(),
            webhook_id: self.webhook_id.clone(),
            not_before: None,
            ordered: self.ordered,
            round: self.round_start,
        }
    }
}

/// The most attempts a delivery keeps in its log (each with at most
/// [`crate::limits::MAX_RESPONSE_SNIPPET_BYTES`] of the answer, so under 100 KB in all, well
/// within DynamoDB's 400 KB item limit); older ones are dropped, their number kept.
pub const MAX_KEPT_ATTEMPTS: usize = 20;

/// One try of a delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    pub duration_ms: u64,
    /// Why it failed, when it did: `timeout`, `connect`, `status`, `redirect`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// At most 4 KiB of the receiver's answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_body: Option<String>,
}

/// What travels on the queue: everything needed to load a delivery in one batch read.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryJob {
    pub account_id: String,
    pub delivery_id: String,
    pub event_id: String,
    pub webhook_id: String,
    /// The send time its webhook's rate limit gave it (issue 15 item 5), set when the job was
    /// put back to wait for it: the job goes out then without taking a second slot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<DateTime<Utc>>,
    /// For a delivery to an ordered webhook: it goes through the webhook's lane (one at a
    /// time, in publish order), and its retries hold the lane.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ordered: bool,
    /// The round of attempts it is for (`Delivery::round_start`): 0 for a new delivery, the
    /// attempts made before for one sent again by hand or by a replay. The same delivery's
    /// first sends (by publish and by the stream's safety net) are one message to a FIFO
    /// queue's deduplication; a later round is a new one.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub round: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// What the retry function is invoked with: a scheduled retry of one job (the input of its
/// one-time schedule) or the recurring sweep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum RetryTrigger {
    Retry(DeliveryJob),
    Sweep,
    /// One part of a sweep done by several invocations at once (`{"action":"sweepPart",
    /// "part":1,"parts":4}`): the due shards whose number modulo `parts` is `part`.
    #[serde(rename = "sweepPart")]
    SweepPart {
        part: u32,
        parts: u32,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(n: u64) -> Attempt {
        Attempt {
            at: Utc::now(),
            status_code: Some(500),
            duration_ms: n,
            error: Some("status".into()),
            response_body: Some("x".repeat(4096)),
        }
    }

    #[test]
    fn a_delivery_keeps_its_latest_attempts_and_counts_them_all() {
        let mut delivery: Delivery = serde_json::from_value(serde_json::json!({
            "id": "dlv_1", "accountId": "acct_1", "webhookId": "wh_1", "webhookUrl": "http://x",
            "eventId": "evt_1", "eventType": "patient.created", "status": "failed",
            "createdAt": "2026-01-01T00:00:00Z"
        }))
        .unwrap();
        for n in 0..100u64 {
            delivery.attempts = delivery.attempts_with(attempt(n));
            delivery.attempt_count += 1;
            delivery = delivery.requeued();
        }
        assert_eq!(delivery.attempts.len(), MAX_KEPT_ATTEMPTS);
        assert_eq!(delivery.attempts.last().unwrap().duration_ms, 99);
        assert_eq!(delivery.attempts[0].duration_ms, 80);
        assert_eq!(delivery.attempts_made(), 100);
        assert_eq!(delivery.retry_attempts(), 99);
        assert_eq!(delivery.round_attempts(), 0);
        // What a store item holds stays far below DynamoDB's 400 KB.
        assert!(serde_json::to_vec(&delivery).unwrap().len() < 120_000);
    }

    #[test]
    fn retry_trigger_wire_format() {
        let job = DeliveryJob {
            account_id: "acct_1".into(),
            delivery_id: "dlv_1".into(),
            event_id: "evt_1".into(),
            webhook_id: "wh_1".into(),
            not_before: None,
            ordered: false,
            round: 0,
        };
        let json = serde_json::to_value(RetryTrigger::Retry(job.clone())).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"action":"retry","accountId":"acct_1","deliveryId":"dlv_1","eventId":"evt_1","webhookId":"wh_1"})
        );
        assert_eq!(
            serde_json::from_str::<RetryTrigger>(r#"{"action":"sweep"}"#).unwrap(),
            RetryTrigger::Sweep
        );
        assert_eq!(
            serde_json::from_value::<RetryTrigger>(json).unwrap(),
            RetryTrigger::Retry(job)
        );
    }
}
