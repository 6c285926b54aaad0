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
    #[serde(default)]
    pub attempts: Vec<Attempt>,
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
            last_response_status: None,
            last_attempt_at: None,
            next_attempt_at: None,
            round_start: 0,
        }
    }

    /// The delivery sent again by hand: pending, in a new round of the retry schedule (the
    /// attempts so far stay in its log).
    pub fn requeued(&self) -> Self {
        Self {
            status: DeliveryStatus::Pending,
            round_start: self.attempts.len() as u32,
            next_attempt_at: None,
            ..self.clone()
        }
    }

    /// Attempts in the current round (what the retry schedule counts).
    pub fn round_attempts(&self) -> u32 {
        (self.attempts.len() as u32).saturating_sub(self.round_start)
    }

    /// Impilo's `retryAttempts`: attempts after the first.
    pub fn retry_attempts(&self) -> u32 {
        (self.attempts.len() as u32).saturating_sub(1)
    }

    pub fn job(&self) -> DeliveryJob {
        DeliveryJob {
            account_id: self.account_id.clone(),
            delivery_id: self.id.clone(),
            event_id: self.event_id.clone(),
            webhook_id: self.webhook_id.clone(),
        }
    }
}

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
}

/// What the retry function is invoked with: a scheduled retry of one job (the input of its
/// one-time schedule) or the recurring sweep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum RetryTrigger {
    Retry(DeliveryJob),
    Sweep,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_trigger_wire_format() {
        let job = DeliveryJob {
            account_id: "acct_1".into(),
            delivery_id: "dlv_1".into(),
            event_id: "evt_1".into(),
            webhook_id: "wh_1".into(),
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
