//! Accounts, keys, webhooks and events, as stored.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    pub id: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
    /// The account webhook secret, sent as a header on every delivery when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<String>,
}

/// An API key as stored: only its hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyRecord {
    pub id: String,
    pub account_id: String,
    pub key_hash: String,
    pub created_at: DateTime<Utc>,
}

/// Who is calling the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Admin,
    Account(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    pub id: String,
    pub account_id: String,
    pub url: String,
    /// Subscriptions: event type names, `ns.*` wildcards or `*`.
    pub events: Vec<String>,
    pub active: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
    /// Sent in the token header on deliveries; never shown but on create and token update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_token: Option<String>,
    /// Body format, custom headers and token header (issue 15 item 6); absent when default.
    #[serde(default, skip_serializing_if = "crate::RequestOptions::is_default")]
    pub request: crate::RequestOptions,
    /// Standard Webhooks secrets (`whsec_...`), newest first. Older ones stay until their
    /// grace period ends, so receivers keep verifying through a rotation.
    pub signing_secrets: Vec<SigningSecretEntry>,
    /// A payload filter (see [`crate::filter`]), validated when set: only events whose
    /// payload passes it get a delivery. Absent on webhooks stored before filters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<serde_json::Value>,
    /// At most this many deliveries a second go to it (issue 15 item 5); the rest wait.
    /// Absent: no limit but the endpoint concurrency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<u32>,
    /// Its deliveries go one at a time, in publish order (issue 15 item 4): the next starts
    /// only once the one before it is delivered or has failed its last attempt.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ordered: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Moves on every stored change: an update is written only over the version it read, so
    /// two concurrent changes (a PATCH and a 410's deactivation, two rotations) never lose one.
    #[serde(default)]
    pub version: u64,
    /// Its endpoint's failures as Hookline tracks them, and why Hookline switched it off;
    /// absent (not written) while healthy.
    #[serde(default, skip_serializing_if = "WebhookHealth::is_healthy")]
    pub health: WebhookHealth,
}

/// What auto-disable knows of a webhook (issue 15 item 1). Written only when it changes (a run
/// of failures begins or ends, a switch-off), by each process at most once a minute per
/// webhook, never per attempt (see `hookline_service::health`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookHealth {
    /// When its current run of failed attempts began: no attempt has succeeded since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<DateTime<Utc>>,
    /// Why Hookline switched it off (a 410, or failing too long); cleared when switched on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_at: Option<DateTime<Utc>>,
}

impl WebhookHealth {
    pub fn is_healthy(&self) -> bool {
        *self == Self::default()
    }
}

/// `disabledReason` of a webhook switched off because its endpoint answered 410 Gone.
pub const GONE_DISABLED_REASON: &str = "the endpoint answered 410 Gone";

/// How many replaced signing secrets keep signing during their grace period, besides the
/// current one. Each valid secret adds a signature to every delivery's `webhook-signature`
/// header, so rotating again and again must not grow it without bound: past this many, the
/// oldest is dropped first.
pub const MAX_PREVIOUS_SIGNING_SECRETS: usize = 3;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SigningSecretEntry {
    pub secret: String,
    /// When this secret stops being used to sign; `None` for the current one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

impl Webhook {
    /// The current signing secret.
    pub fn signing_secret(&self) -> Option<&str> {
        self.signing_secrets.first().map(|s| s.secret.as_str())
    }

    /// Every secret a delivery at `now` is signed with: the current one and at most
    /// [`MAX_PREVIOUS_SIGNING_SECRETS`] of the newest replaced ones still in their grace
    /// (also for webhooks stored before rotation kept that cap).
    pub fn valid_signing_secrets(&self, now: DateTime<Utc>) -> impl Iterator<Item = &str> {
        self.signing_secrets
            .iter()
            .filter(move |s| s.expires_at.is_none_or(|at| at > now))
            .take(1 + MAX_PREVIOUS_SIGNING_SECRETS)
            .map(|s| s.secret.as_str())
    }

    /// `type` in API responses: the one subscription when there is exactly one.
    pub fn single_type(&self) -> Option<&str> {
        match self.events.as_slice() {
            [only] => Some(only),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub id: String,
    pub account_id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    /// The payload exactly as published (serialised JSON).
    pub payload: String,
    pub created_at: DateTime<Utc>,
    /// How many deliveries the fan-out created.
    pub deliveries: u32,
    /// False until every delivery of the fan-out is stored; an unfinished fan-out is
    /// completed by the sweep.
    pub fanned_out: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Webhooks are stored as one document: one written before `request` existed still reads,
    /// with the default options, and a default `request` is not written at all.
    #[test]
    fn a_webhook_stored_before_request_options_reads_with_the_defaults() {
        let stored = r#"{"id":"wh_1","accountId":"acct_1","url":"https://example.com/h",
            "events":["*"],"active":true,"authorizationToken":"tok",
            "signingSecrets":[{"secret":"whsec_x"}],
            "createdAt":"2026-01-01T00:00:00Z","updatedAt":"2026-01-01T00:00:00Z","version":3}"#;
        let mut webhook: Webhook = serde_json::from_str(stored).unwrap();
        assert!(webhook.request.is_default());
        assert_eq!(webhook.authorization_token.as_deref(), Some("tok"));
        assert!(
            !serde_json::to_string(&webhook)
                .unwrap()
                .contains("\"request\"")
        );
        webhook.request.format = crate::PayloadFormat::Content;
        webhook
            .request
            .headers
            .insert("X-Tenant".into(), "t1".into());
        let again: Webhook =
            serde_json::from_str(&serde_json::to_string(&webhook).unwrap()).unwrap();
        assert_eq!(again, webhook);
    }

    #[test]
    fn a_webhook_stored_before_filters_still_reads() {
        let stored = r#"{"id":"wh_1","accountId":"acct_1","url":"https://example.com/h",
            "events":["*"],"active":true,"signingSecrets":[{"secret":"whsec_x"}],
            "createdAt":"2026-01-01T00:00:00Z","updatedAt":"2026-01-01T00:00:00Z","version":3}"#;
        let webhook: Webhook = serde_json::from_str(stored).unwrap();
        assert_eq!((webhook.filter, webhook.version), (None, 3));
    }
}
