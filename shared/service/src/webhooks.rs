//! Webhook management.

use crate::{Service, ServiceError, ServiceResult};
use hookline_model::catalog::{EventPattern, is_built_in};
use hookline_model::signing::generate_signing_secret;
use hookline_model::types::SigningSecretEntry;
use hookline_model::url_check::validate_webhook_url;
use hookline_model::{ValidationError, Webhook, ids};
use serde::Deserialize;

/// `POST /webhook`: one `type` or several `events`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewWebhook {
    pub url: String,
    #[serde(rename = "type")]
    pub event_type: Option<String>,
    pub events: Option<Vec<String>>,
    pub active: Option<bool>,
    pub description: Option<String>,
    pub authorization_token: Option<String>,
    pub metadata: Option<serde_json::Value>,
}

const MAX_SUBSCRIPTIONS: usize = 100;
const MAX_DESCRIPTION: usize = 1000;
const MAX_TOKEN: usize = 1024;
const MAX_METADATA_BYTES: usize = 8 * 1024;

impl Service {
    pub async fn create_webhook(
        &self,
        account_id: &str,
        input: NewWebhook,
    ) -> ServiceResult<Webhook> {
        let url = validate_webhook_url("url", input.url.trim(), self.config.targets)?;
        let events = subscriptions(input.event_type, input.events)?;
        if let Some(d) = &input.description
            && d.chars().count() > MAX_DESCRIPTION
        {
            return Err(ValidationError::new(
                "description",
                format!("must be at most {MAX_DESCRIPTION} characters"),
            )
            .into());
        }
        if let Some(token) = &input.authorization_token {
            validate_token(token)?;
        }
        if let Some(metadata) = &input.metadata {
            if !metadata.is_object() {
                return Err(ValidationError::new("metadata", "must be a JSON object").into());
            }
            if metadata.to_string().len() > MAX_METADATA_BYTES {
                return Err(ValidationError::new(
                    "metadata",
                    format!("must be at most {MAX_METADATA_BYTES} bytes"),
                )
                .into());
            }
        }
        let now = self.ports.clock.now();
        let webhook = Webhook {
            id: ids::new_id(ids::WEBHOOK, now),
            account_id: account_id.to_string(),
            url: url.to_string(),
            events,
            active: input.active.unwrap_or(true),
            description: input.description,
            metadata: input.metadata,
            authorization_token: input.authorization_token,
            signing_secrets: vec![SigningSecretEntry {
                secret: generate_signing_secret(),
                expires_at: None,
            }],
            created_at: now,
            updated_at: now,
        };
        self.ports.store.put_webhook(&webhook).await?;
        Ok(webhook)
    }

    /// One of the account's webhooks; another account's is simply not found.
    pub async fn get_webhook(&self, account_id: &str, webhook_id: &str) -> ServiceResult<Webhook> {
        if !ids::has_prefix(webhook_id, ids::WEBHOOK) {
            return Err(ServiceError::NotFound("webhook"));
        }
        self.ports
            .store
            .get_webhook(account_id, webhook_id)
            .await?
            .ok_or(ServiceError::NotFound("webhook"))
    }

    pub async fn list_webhooks(&self, account_id: &str) -> ServiceResult<Vec<Webhook>> {
        Ok(self.ports.store.list_webhooks(account_id).await?)
    }

    /// The webhook's current `whsec_` signing secret.
    pub async fn signing_secret(
        &self,
        account_id: &str,
        webhook_id: &str,
    ) -> ServiceResult<String> {
        let webhook = self.get_webhook(account_id, webhook_id).await?;
        Ok(webhook.signing_secret().unwrap_or_default().to_string())
    }
}

/// Normalises `type` / `events[]` into the stored subscription list.
fn subscriptions(
    event_type: Option<String>,
    events: Option<Vec<String>>,
) -> Result<Vec<String>, ValidationError> {
    let (field, raw) = match (event_type, events) {
        (Some(_), Some(_)) => {
            return Err(ValidationError::new(
                "type",
                "give either 'type' or 'events', not both",
            ));
        }
        (Some(t), None) => ("type", vec![t]),
        (None, Some(list)) => ("events", list),
        (None, None) => {
            return Err(ValidationError::new(
                "type",
                "a webhook needs 'type' or 'events'",
            ));
        }
    };
    if raw.is_empty() {
        return Err(ValidationError::new(
            field,
            "must name at least one event type",
        ));
    }
    if raw.len() > MAX_SUBSCRIPTIONS {
        return Err(ValidationError::new(
            field,
            format!("at most {MAX_SUBSCRIPTIONS} event types"),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(raw.len());
    for (i, name) in raw.into_iter().enumerate() {
        let name = name.trim().to_string();
        let field = if field == "type" {
            "type".to_string()
        } else {
            format!("events[{i}]")
        };
        EventPattern::parse(&field, &name, is_built_in)?;
        if !out.contains(&name) {
            out.push(name);
        }
    }
    Ok(out)
}

fn validate_token(token: &str) -> Result<(), ValidationError> {
    if token.is_empty() || token.len() > MAX_TOKEN {
        return Err(ValidationError::new(
            "authorizationToken",
            format!("must be 1 to {MAX_TOKEN} characters"),
        ));
    }
    // It goes into a header: visible ASCII only.
    if !token.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(ValidationError::new(
            "authorizationToken",
            "must be printable ASCII",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_take_type_or_events_and_name_the_bad_one() {
        assert_eq!(
            subscriptions(Some("patient.created".into()), None).unwrap(),
            vec!["patient.created"]
        );
        assert_eq!(
            subscriptions(
                None,
                Some(vec!["reading.*".into(), "reading.*".into(), "*".into()])
            )
            .unwrap(),
            vec!["reading.*", "*"]
        );
        assert_eq!(
            subscriptions(None, Some(vec!["patient.created".into(), "nope".into()]))
                .unwrap_err()
                .field,
            "events[1]"
        );
        assert_eq!(subscriptions(None, None).unwrap_err().field, "type");
        assert_eq!(
            subscriptions(None, Some(vec![])).unwrap_err().field,
            "events"
        );
        assert!(subscriptions(Some("a".into()), Some(vec![])).is_err());
    }

    #[test]
    fn tokens_must_fit_a_header() {
        assert!(validate_token("Bearer abc").is_ok());
        assert!(validate_token("line\nbreak").is_err());
        assert!(validate_token("").is_err());
    }
}
