//! Background jobs: a replay of a time range of deliveries, or the recovery of the events a
//! webhook missed. A job walks its range a page at a time, keeping where it stopped, so it
//! never loads the range whole and carries on after a crash (the sweep resumes it).

use crate::DeliveryStatus;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The id prefix of jobs (`job_<ULID>`).
pub const JOB: &str = "job";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Still walking its range.
    Running,
    /// Walked its whole range.
    Completed,
    /// Stopped before the end; `error` says why (its webhook was deleted or switched off).
    Failed,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
        }
    }
}

/// What a job does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum JobKind {
    /// Sends every finished delivery created in `[since, until]` again (of one webhook, and
    /// of one status, when given), as new attempts of the same deliveries.
    #[serde(rename_all = "camelCase")]
    Replay {
        webhook_id: Option<String>,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        delivery_status: Option<DeliveryStatus>,
    },
    /// Creates and sends the deliveries a webhook would have had for the events published in
    /// `[since, until]` (`until`: when the job began) and never got.
    #[serde(rename_all = "camelCase")]
    ReplayMissing {
        webhook_id: String,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    },
}

impl JobKind {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Replay { .. } => "replay",
            Self::ReplayMissing { .. } => "replayMissing",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    pub id: String,
    pub account_id: String,
    #[serde(flatten)]
    pub kind: JobKind,
    pub status: JobStatus,
    /// What the job found in its range so far (deliveries for a replay, events the webhook
    /// matches for a recovery); final once the job is completed.
    pub total: u64,
    /// Of those, what it sent (again).
    pub done: u64,
    /// Where the walk stands: the store's own position, `None` before the first page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Moves on with every write, so two workers never both advance one job.
    pub version: u64,
}

impl Job {
    pub fn new(id: String, account_id: &str, kind: JobKind, at: DateTime<Utc>) -> Self {
        Self {
            id,
            account_id: account_id.to_string(),
            kind,
            status: JobStatus::Running,
            total: 0,
            done: 0,
            cursor: None,
            error: None,
            created_at: at,
            updated_at: at,
            version: 0,
        }
    }

    /// The webhook the job is about, when it has one.
    pub fn webhook_id(&self) -> Option<&str> {
        match &self.kind {
            JobKind::Replay { webhook_id, .. } => webhook_id.as_deref(),
            JobKind::ReplayMissing { webhook_id, .. } => Some(webhook_id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_round_trips_through_json_with_its_kind() {
        let at = DateTime::from_timestamp_millis(1_700_000_000_000).unwrap();
        let job = Job::new(
            "job_1".into(),
            "acct_1",
            JobKind::Replay {
                webhook_id: Some("wh_1".into()),
                since: at,
                until: at,
                delivery_status: Some(DeliveryStatus::Failed),
            },
            at,
        );
        let json = serde_json::to_value(&job).unwrap();
        assert_eq!(json["kind"], "replay");
        assert_eq!(json["webhookId"], "wh_1");
        assert_eq!(json["status"], "running");
        assert_eq!(json["deliveryStatus"], "failed");
        let back: Job = serde_json::from_value(json).unwrap();
        assert_eq!(back, job);
    }
}
