//! Response bodies. Stored types never go out as they are: secrets and tokens are left out
//! here unless DESIGN.md says a response shows them.

use chrono::{DateTime, SecondsFormat, Utc};
use hookline_model::{
    Account, ApiKeyRecord, Attempt, Delivery, EventTypeInfo, StatusCounts, Webhook,
};
use hookline_service::webhooks::Shown;
use serde::Serialize;
use std::collections::BTreeMap;
use utoipa::ToSchema;

pub fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookView {
    #[schema(example = "wh_01JC6Y4V9M6T2Q8KJ1N3X5Z7B9")]
    pub id: String,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    pub url: String,
    pub events: Vec<String>,
    pub active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    /// Only on create and on the update that sets it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorization_token: Option<String>,
    /// The delivery body: `standard`, `compact`, `event` or `content`.
    #[schema(value_type = hookline_service::webhooks::FormatName)]
    pub format: String,
    /// The custom headers with their values: only on create and on the update that sets them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
    /// The custom headers' names, whenever there are any.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub header_names: Vec<String>,
    /// The header the token is sent in, when not the deployment's token header (webhooks
    /// made through `/api/v2/config/webhook`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_header: Option<String>,
    /// The payload filter, when one is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub filter: Option<serde_json::Value>,
    /// At most this many deliveries a second, when limited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<u32>,
    /// Deliveries go one at a time, in publish order; absent when off.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub ordered: bool,
    pub created_at: String,
    pub updated_at: String,
    /// When its endpoint's current run of failed attempts began; absent while its last
    /// attempt succeeded (or none was made).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<String>,
    /// Why Hookline switched it off (its endpoint answered 410, or kept failing); cleared
    /// when it is switched on again.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "every attempt failed since 2026-11-26T09:00:00Z (10 or more in a row)")]
    pub disabled_reason: Option<String>,
    /// When Hookline switched it off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_at: Option<String>,
}

impl WebhookView {
    /// The webhook without its token or custom header values.
    pub fn of(webhook: Webhook) -> Self {
        Self {
            format: webhook.request.format.as_str().to_string(),
            headers: None,
            header_names: webhook.request.headers.keys().cloned().collect(),
            token_header: webhook.request.token_header.clone(),
            id: webhook.id.clone(),
            event_type: webhook.single_type().map(String::from),
            url: webhook.url,
            events: webhook.events,
            active: webhook.active,
            description: webhook.description,
            metadata: webhook.metadata,
            authorization_token: None,
            filter: webhook.filter,
            rate_limit: webhook.rate_limit,
            ordered: webhook.ordered,
            created_at: timestamp(webhook.created_at),
            updated_at: timestamp(webhook.updated_at),
            failing_since: webhook.health.failing_since.map(timestamp),
            disabled_reason: webhook.health.disabled_reason,
            disabled_at: webhook.health.disabled_at.map(timestamp),
        }
    }

    /// The webhook with its token and custom header values (create).
    pub fn with_secrets(webhook: Webhook) -> Self {
        Self::showing(
            webhook,
            Shown {
                token: true,
                headers: true,
            },
        )
    }

    /// The webhook with the secrets an update set.
    pub fn showing(webhook: Webhook, shown: Shown) -> Self {
        let token = shown
            .token
            .then(|| webhook.authorization_token.clone())
            .flatten();
        let headers = shown.headers.then(|| webhook.request.headers.clone());
        Self {
            authorization_token: token,
            headers,
            ..Self::of(webhook)
        }
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LogView {
    pub id: String,
    pub webhook_id: String,
    pub webhook_type: String,
    pub webhook_url: String,
    pub event_id: String,
    /// The event payload as a JSON string, as in Impilo's log.
    pub payload: Option<String>,
    /// `pending`, `retrying`, `delivered` or `failed`.
    pub status: String,
    pub create_timestamp: String,
    pub last_response_status: Option<u16>,
    pub retry_attempts: u32,
    pub last_retry_timestamp: Option<String>,
    pub next_retry_timestamp: Option<String>,
    /// Only on `GET /webhook/logs/{id}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<Vec<AttemptView>>,
}

impl LogView {
    pub fn of(delivery: Delivery, payload: Option<String>, with_attempts: bool) -> Self {
        Self {
            id: delivery.id.clone(),
            webhook_id: delivery.webhook_id.clone(),
            webhook_type: delivery.event_type.clone(),
            webhook_url: delivery.webhook_url.clone(),
            event_id: delivery.event_id.clone(),
            payload,
            status: delivery.status.as_str().to_string(),
            create_timestamp: timestamp(delivery.created_at),
            last_response_status: delivery.last_response_status,
            retry_attempts: delivery.retry_attempts(),
            last_retry_timestamp: delivery.last_attempt_at.map(timestamp),
            next_retry_timestamp: delivery.next_attempt_at.map(timestamp),
            attempts: with_attempts
                .then(|| delivery.attempts.into_iter().map(AttemptView::of).collect()),
        }
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttemptView {
    pub timestamp: String,
    pub status_code: Option<u16>,
    pub duration_ms: u64,
    pub error: Option<String>,
    pub response_body: Option<String>,
}

impl AttemptView {
    fn of(attempt: Attempt) -> Self {
        Self {
            timestamp: timestamp(attempt.at),
            status_code: attempt.status_code,
            duration_ms: attempt.duration_ms,
            error: attempt.error,
            response_body: attempt.response_body,
        }
    }
}

/// Impilo's page envelope.
#[derive(Serialize, ToSchema)]
pub struct Paged<T> {
    pub content: Vec<T>,
    pub page: u32,
    pub size: u32,
    pub total: u64,
    pub first: bool,
    pub last: bool,
}

impl<T> Paged<T> {
    pub fn new(content: Vec<T>, page: u32, size: u32, total: u64) -> Self {
        let last = (page as u64 + 1) * size as u64 >= total;
        Self {
            content,
            page,
            size,
            total,
            first: page == 0,
            last,
        }
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountView {
    #[schema(example = "acct_01JC6Y4V9M6T2Q8KJ1N3X5Z7B9")]
    pub id: String,
    pub name: String,
    pub created_at: String,
}

impl AccountView {
    pub fn of(account: &Account) -> Self {
        Self {
            id: account.id.clone(),
            name: account.name.clone(),
            created_at: timestamp(account.created_at),
        }
    }
}

/// A new account with its first API key, shown this once.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedAccountView {
    pub id: String,
    pub name: String,
    pub created_at: String,
    pub api_key: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountDetailsView {
    pub id: String,
    pub name: String,
    pub created_at: String,
    /// The account's keys: ids and times only, never the keys.
    pub api_keys: Vec<ApiKeyView>,
}

impl AccountDetailsView {
    pub fn of(account: &Account, keys: &[ApiKeyRecord]) -> Self {
        Self {
            id: account.id.clone(),
            name: account.name.clone(),
            created_at: timestamp(account.created_at),
            api_keys: keys.iter().map(ApiKeyView::of).collect(),
        }
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyView {
    #[schema(example = "key_01JC6Y4V9M6T2Q8KJ1N3X5Z7B9")]
    pub id: String,
    pub created_at: String,
}

impl ApiKeyView {
    fn of(record: &ApiKeyRecord) -> Self {
        Self {
            id: record.id.clone(),
            created_at: timestamp(record.created_at),
        }
    }
}

/// A new API key, shown this once.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedKeyView {
    pub id: String,
    pub api_key: String,
    pub created_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct EventTypeView {
    #[schema(example = "reading.weight")]
    pub name: String,
    pub description: String,
}

impl EventTypeView {
    pub fn of(info: EventTypeInfo) -> Self {
        Self {
            name: info.name,
            description: info.description,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct SecretView {
    pub secret: String,
}

/// Deliveries per status.
#[derive(Serialize, ToSchema)]
pub struct StatusCountsView {
    pub pending: u64,
    pub retrying: u64,
    pub delivered: u64,
    pub failed: u64,
}

impl StatusCountsView {
    pub fn of(counts: StatusCounts) -> Self {
        Self {
            pending: counts.pending,
            retrying: counts.retrying,
            delivered: counts.delivered,
            failed: counts.failed,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct HealthView {
    #[schema(example = "ok")]
    pub status: String,
}

/// Every error: `{"error":{"code","message"}}`; a 400's message starts with the field at fault.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    #[schema(example = "validation_error")]
    pub code: String,
    #[schema(example = "url: must use https")]
    pub message: String,
}

/// `POST /events/batch`: one result per event, in the order sent.
#[derive(Serialize, ToSchema)]
pub struct BatchResultsView {
    pub results: Vec<BatchResultView>,
}

/// One event of a batch: accepted, as `POST /events` answers it, or refused with the error
/// `POST /events` would give, its message naming the field as `events[i].<field>`.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum BatchResultView {
    Accepted(BatchAcceptedView),
    Refused(BatchRefusedView),
}

#[derive(Serialize, ToSchema)]
pub struct BatchAcceptedView {
    /// 202: stored and fanned out (or published before with this id: its first result).
    #[schema(example = 202)]
    pub status: u16,
    #[schema(example = "evt_01JC6Y4V9M6T2Q8KJ1N3X5Z7B9")]
    pub id: String,
    #[serde(rename = "type")]
    #[schema(example = "reading.weight")]
    pub event_type: String,
    /// How many deliveries the event fanned out to.
    pub deliveries: u32,
}

#[derive(Serialize, ToSchema)]
pub struct BatchRefusedView {
    /// 400 (invalid), 404 (unknown account) or 413 (payload over 256 KiB).
    #[schema(example = 400)]
    pub status: u16,
    pub error: ErrorDetail,
}

/// A background job (replay, recovery) as it stands.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobView {
    #[schema(example = "job_01JC6Y4V9M6T2Q8KJ1N3X5Z7B9")]
    pub id: String,
    /// `replay` or `replayMissing`.
    pub kind: String,
    /// `running`, `completed` or `failed`.
    pub status: String,
    /// What the job found in its range so far (deliveries for a replay, events the webhook
    /// matches for a recovery); final once `status` is `completed`.
    pub total: u64,
    /// Of those, how many it sent (again). A replay leaves out deliveries still pending or
    /// retrying (they are attempted anyway) and those of inactive or deleted webhooks; a
    /// recovery leaves out events the webhook already has a delivery of.
    pub done: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_id: Option<String>,
    pub since: String,
    pub until: String,
    /// A replay's status filter (`delivered` or `failed`), when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery_status: Option<String>,
    /// Why a failed job stopped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl JobView {
    pub fn of(job: hookline_model::Job) -> Self {
        use hookline_model::JobKind;
        let (since, until, delivery_status) = match &job.kind {
            JobKind::Replay {
                since,
                until,
                delivery_status,
                ..
            } => (
                *since,
                *until,
                delivery_status.map(|s| s.as_str().to_string()),
            ),
            JobKind::ReplayMissing { since, until, .. } => (*since, *until, None),
        };
        Self {
            kind: job.kind.name().to_string(),
            status: job.status.as_str().to_string(),
            total: job.total,
            done: job.done,
            webhook_id: job.webhook_id().map(String::from),
            since: timestamp(since),
            until: timestamp(until),
            delivery_status,
            error: job.error,
            created_at: timestamp(job.created_at),
            updated_at: timestamp(job.updated_at),
            id: job.id,
        }
    }
}
