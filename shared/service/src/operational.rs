//! Operational events: Hookline's own events about a webhook (`hookline.webhook.disabled`,
//! `hookline.webhook.enabled`, `hookline.delivery.exhausted`). Each is published, through the
//! one publish use case, (a) into the account itself, so its webhooks that subscribe to them
//! (or to `hookline.*`) get them, and (b) into the platform's own account, whose one webhook is
//! the operational webhook of the configuration: signed, retried and logged like any delivery.

use crate::publish::NewEvent;
use crate::{Service, ServiceError, ServiceResult};
use chrono::SecondsFormat;
use hookline_model::catalog::subscriptions_match;
use hookline_model::types::SigningSecretEntry;
use hookline_model::{Account, ApiKeyRecord, Webhook, ids, keys};
use serde_json::value::RawValue;

/// The platform's own account, holding the operational webhook. Nobody holds a key to it: the
/// one key it is created with (the store requires one) is thrown away unseen.
pub const PLATFORM_ACCOUNT_ID: &str = "acct_hookline_platform";
/// The platform's operational webhook, kept as the configuration says at every start.
pub const OPERATIONAL_WEBHOOK_ID: &str = "wh_hookline_operational";

/// Which operational event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperationalEvent {
    WebhookDisabled,
    WebhookEnabled,
    DeliveryExhausted,
}

impl OperationalEvent {
    pub fn event_type(self) -> &'static str {
        match self {
            Self::WebhookDisabled => "hookline.webhook.disabled",
            Self::WebhookEnabled => "hookline.webhook.enabled",
            Self::DeliveryExhausted => "hookline.delivery.exhausted",
        }
    }
}

/// One operational event to publish.
#[derive(Debug, Clone)]
pub struct Emission<'a> {
    pub kind: OperationalEvent,
    pub account_id: &'a str,
    pub webhook_id: &'a str,
    pub delivery_id: Option<&'a str>,
    pub reason: String,
    /// Makes the event id: the same occurrence emitted again (a retried job, two deliveries
    /// of one webhook answering 410 at once) is published once.
    pub occurrence: String,
}

impl Service {
    /// Creates or updates the platform account and its operational webhook to match the
    /// configuration (URL, secret, on), or switches the webhook off when none is configured.
    /// Idempotent: a start that finds them as configured writes nothing.
    pub async fn ensure_operational_webhook(&self) -> ServiceResult<()> {
        let wanted = self.config.operational_webhook.clone();
        let store = &self.ports.store;
        let now = self.ports.clock.now();
        if store.get_account(PLATFORM_ACCOUNT_ID).await?.is_none() {
            if wanted.is_none() {
                return Ok(());
            }
            let account = Account {
                id: PLATFORM_ACCOUNT_ID.into(),
                name: "Hookline platform (operational events)".into(),
                created_at: now,
                webhook_secret: None,
            };
            let key = ApiKeyRecord {
                id: ids::new_id(ids::API_KEY, now),
                account_id: PLATFORM_ACCOUNT_ID.into(),
                key_hash: keys::hash_api_key(&keys::generate_api_key()),
                created_at: now,
            };
            if let Err(error) = store.insert_account(&account, &key).await {
                // Another instance starting at the same time may have made it.
                if store.get_account(PLATFORM_ACCOUNT_ID).await?.is_none() {
                    return Err(error.into());
                }
            }
        }
        let existing = store
            .get_webhook(PLATFORM_ACCOUNT_ID, OPERATIONAL_WEBHOOK_ID)
            .await?;
        match (existing, wanted) {
            (None, None) => {}
            (None, Some(wanted)) => {
                let webhook = Webhook {
                    id: OPERATIONAL_WEBHOOK_ID.into(),
                    account_id: PLATFORM_ACCOUNT_ID.into(),
                    url: wanted.url,
                    events: vec!["hookline.*".into()],
                    active: true,
                    description: Some("Hookline's operational events for the platform".into()),
                    metadata: None,
                    authorization_token: None,
                    request: Default::default(),
                    signing_secrets: vec![SigningSecretEntry {
                        secret: wanted.secret,
                        expires_at: None,
                    }],
                    filter: None,
                    rate_limit: None,
                    ordered: false,
                    created_at: now,
                    updated_at: now,
                    version: 0,
                    health: Default::default(),
                };
                if let Err(error) = store.insert_webhook(&webhook, u32::MAX).await
                    && store
                        .get_webhook(PLATFORM_ACCOUNT_ID, OPERATIONAL_WEBHOOK_ID)
                        .await?
                        .is_none()
                {
                    return Err(error.into());
                }
            }
            (Some(webhook), wanted) => {
                if !matches_configuration(&webhook, wanted.as_ref()) {
                    self.modify_webhook(PLATFORM_ACCOUNT_ID, OPERATIONAL_WEBHOOK_ID, |w, _| {
                        configure(w, wanted.as_ref())
                    })
                    .await?;
                }
            }
        }
        Ok(())
    }

    /// Publishes an operational event into the account and to the platform. `Err` when it
    /// could not be stored (the caller decides whether that fails its own step); an account
    /// that no longer exists is skipped. Never emitted about the platform's own webhook:
    /// its failures would only report to itself.
    pub async fn emit_operational(&self, emission: Emission<'_>) -> ServiceResult<()> {
        if emission.account_id == PLATFORM_ACCOUNT_ID {
            return Ok(());
        }
        let mut body = serde_json::json!({
            "accountId": emission.account_id,
            "webhookId": emission.webhook_id,
            "reason": emission.reason,
            "at": self.ports.clock.now().to_rfc3339_opts(SecondsFormat::Millis, true),
        });
        if let Some(delivery_id) = emission.delivery_id {
            body["deliveryId"] = delivery_id.into();
        }
        let event_type = emission.kind.event_type();
        // Letters, digits and `.:_-` only (the ids in it are of that shape), at most 128.
        let id = format!("{event_type}:{}", emission.occurrence);
        let mut accounts = Vec::with_capacity(2);
        // An account none of whose webhooks asks for the type is told nothing, and nothing is
        // stored for it (a failing webhook's every exhausted delivery would otherwise add an
        // event item). Only a sure "no" is decided here; publish matches as always.
        let subscribed = self
            .ports
            .store
            .list_webhooks(emission.account_id)
            .await?
            .iter()
            .any(|w| w.active && subscriptions_match(&w.events, event_type));
        if subscribed {
            accounts.push(emission.account_id);
        }
        if self.config.operational_webhook.is_some() {
            accounts.push(PLATFORM_ACCOUNT_ID);
        }
        for account_id in accounts {
            let payload =
                RawValue::from_string(body.to_string()).expect("a JSON object is valid JSON");
            match self
                .publish(NewEvent {
                    account_id: account_id.to_string(),
                    event_type: event_type.to_string(),
                    payload,
                    id: Some(id.clone()),
                })
                .await
            {
                Ok(published) => tracing::info!(
                    target: "hookline::operational",
                    event_type,
                    account_id,
                    webhook_id = %emission.webhook_id,
                    deliveries = published.deliveries,
                    "operational event"
                ),
                // Deleted meanwhile: nobody left to tell there.
                Err(ServiceError::NotFound("account")) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }
}

fn matches_configuration(
    webhook: &Webhook,
    wanted: Option<&crate::config::OperationalWebhook>,
) -> bool {
    let mut configured = webhook.clone();
    configure(&mut configured, wanted);
    configured == *webhook
}

fn configure(webhook: &mut Webhook, wanted: Option<&crate::config::OperationalWebhook>) {
    match wanted {
        Some(wanted) => {
            webhook.url = wanted.url.clone();
            webhook.events = vec!["hookline.*".into()];
            webhook.active = true;
            // On as configured: a 410's reason from before is over.
            webhook.health = Default::default();
            webhook.filter = None;
            // A secret changed in the configuration replaces the old one at once: the operator
            // changed both ends.
            if webhook.signing_secret() != Some(wanted.secret.as_str())
                || webhook.signing_secrets.len() != 1
            {
                webhook.signing_secrets = vec![SigningSecretEntry {
                    secret: wanted.secret.clone(),
                    expires_at: None,
                }];
            }
        }
        None => webhook.active = false,
    }
}
