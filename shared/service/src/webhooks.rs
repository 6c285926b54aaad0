//! Webhook management.

use crate::operational::{Emission, OperationalEvent};
use crate::ports::Page;
use crate::{Service, ServiceError, ServiceResult};
use hookline_model::catalog::{Catalog, EventPattern, is_built_in};
use hookline_model::filter::Filter;
use hookline_model::keys::validate_header_text;
use hookline_model::limits::MAX_RATE_LIMIT;
use hookline_model::request_options::validate_custom_headers;
use hookline_model::signing::{generate_signing_secret, validate_signing_secret};
use hookline_model::types::{MAX_PREVIOUS_SIGNING_SECRETS, SigningSecretEntry};
use hookline_model::url_check::validate_webhook_url;
use hookline_model::{PayloadFormat, RequestOptions, ValidationError, Webhook, ids};
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;

/// `POST /webhook`: one `type` or several `events`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewWebhook {
    /// Where deliveries go: `https` (or `http` where allowed), at most 2 KiB.
    #[schema(example = "https://example.com/hooks")]
    pub url: String,
    /// One event type (or `ns.*`, `*`); give this or `events`.
    #[serde(rename = "type")]
    pub event_type: Option<String>,
    /// Several event types or patterns; give this or `type`.
    pub events: Option<Vec<String>>,
    /// Defaults to true.
    pub active: Option<bool>,
    pub description: Option<String>,
    /// Sent in the token header on every delivery; shown only in this response.
    pub authorization_token: Option<String>,
    /// Any JSON object, at most 8 KiB.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    /// The delivery body: `standard` (default) `{id,type,timestamp,payload}`, `compact`
    /// `{id,type,payload}`, `event` `{id,event,payload}` or `content` `{event_type,content}`.
    #[schema(value_type = Option<FormatName>)]
    pub format: Option<String>,
    /// Static headers added to every delivery: names are RFC 7230 tokens, none of
    /// Hookline's own; at most 20, values printable ASCII up to 1 KiB. Values are shown only
    /// in this response and in a PATCH that sets them.
    pub headers: Option<BTreeMap<String, String>>,
    /// The header carrying the token, set only by the Infermedica-style routes.
    #[serde(skip)]
    pub token_header: Option<String>,
    /// Only events whose payload passes this filter are delivered, e.g.
    /// `{"amount": {"$gte": 100}, "$or": [{"status": "paid"}, {"patient.id": {"$in": ["p1"]}}]}`.
    /// Keys are dotted payload paths or `$and`/`$or`; operators `$eq`, `$ne`, `$in`, `$gt`,
    /// `$gte`, `$lt`, `$lte`, `$exists`. At most 4 KiB, 50 conditions, `$and`/`$or` 5 deep.
    #[schema(value_type = Option<Object>)]
    pub filter: Option<serde_json::Value>,
    /// At most this many deliveries a second (1 to 500) go to this webhook; deliveries above
    /// the rate wait their turn, none is dropped. Absent: no limit.
    #[schema(minimum = 1, maximum = 500, example = 10)]
    pub rate_limit: Option<u32>,
    /// Deliveries go one at a time, in publish order: the next starts only once the one
    /// before it is delivered or has failed its last attempt. Defaults to false.
    pub ordered: Option<bool>,
}

/// `PATCH /webhook/{id}`: only the fields present change; `null` clears the optional ones.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookPatch {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub url: Option<Option<String>>,
    #[serde(rename = "type", default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub event_type: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Vec<String>>)]
    pub events: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<bool>)]
    pub active: Option<Option<bool>>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    /// Sets (shown in this response) or, with `null`, removes the token.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub authorization_token: Option<Option<String>>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Option<serde_json::Value>>,
    /// Sets the payload filter (as on create); `null` removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Object>)]
    pub filter: Option<Option<serde_json::Value>>,
    /// Sets the rate limit (deliveries a second, 1 to 500); `null` removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u32>, minimum = 1, maximum = 500)]
    pub rate_limit: Option<Option<u32>>,
    /// Switches ordered delivery on or off (`null` is off). Deliveries made before keep the
    /// way they were made.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<bool>)]
    pub ordered: Option<Option<bool>>,
    /// `standard`, `compact`, `event` or `content`; `null` is `standard`.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<FormatName>)]
    pub format: Option<Option<String>>,
    /// Replaces all custom headers (shown in this response); `null` or `{}` removes them.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<BTreeMap<String, String>>)]
    pub headers: Option<Option<BTreeMap<String, String>>>,
}

/// The names `format` takes, for the OpenAPI document (the field is read as a string, so a
/// wrong name is a 400 naming `format`).
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum FormatName {
    Standard,
    Compact,
    Event,
    Content,
}

/// Which secrets an update's response may show: those the update set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Shown {
    pub token: bool,
    pub headers: bool,
}

fn checked_format(format: Option<&str>) -> Result<Option<PayloadFormat>, ValidationError> {
    format
        .map(|name| PayloadFormat::parse("format", name))
        .transpose()
}

/// Tells a field given as `null` (`Some(None)`) from one left out (`None`).
pub fn present<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

/// A required field may be left out of a PATCH but not set to `null`.
fn not_null<T>(field: &str, value: Option<Option<T>>) -> Result<Option<T>, ValidationError> {
    match value {
        Some(None) => Err(ValidationError::new(field, "must not be null")),
        Some(Some(v)) => Ok(Some(v)),
        None => Ok(None),
    }
}

/// `POST /webhook/{id}/signing-secret/rotate`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSecret {
    /// `whsec_` + base64 of 24 to 64 bytes; generated when absent.
    pub secret: Option<String>,
}

/// How long a replaced signing secret keeps signing, so receivers can switch over.
pub const ROTATION_GRACE: chrono::Duration = chrono::Duration::hours(24);

const MAX_SUBSCRIPTIONS: usize = 100;
const MAX_DESCRIPTION: usize = 1000;
const MAX_TOKEN: usize = 1024;
const MAX_METADATA_BYTES: usize = 8 * 1024;
/// How often a webhook change is re-applied when other writes keep getting there first.
const MAX_WRITE_CONFLICTS: usize = 20;

impl Service {
    pub async fn create_webhook(
        &self,
        account_id: &str,
        input: NewWebhook,
    ) -> ServiceResult<Webhook> {
        let url = validate_webhook_url("url", input.url.trim(), self.config.targets)?;
        let events = self.subscriptions(input.event_type, input.events).await?;
        validate_description(input.description.as_deref())?;
        if let Some(token) = &input.authorization_token {
            validate_token(token)?;
        }
        validate_metadata(input.metadata.as_ref())?;
        let request = RequestOptions {
            format: checked_format(input.format.as_deref())?.unwrap_or_default(),
            headers: self.checked_headers(input.headers.unwrap_or_default())?,
            token_header: input.token_header,
        };
        validate_filter(input.filter.as_ref())?;
        validate_rate_limit(input.rate_limit)?;
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
            request,
            signing_secrets: vec![SigningSecretEntry {
                secret: generate_signing_secret(),
                expires_at: None,
            }],
            filter: input.filter,
            rate_limit: input.rate_limit,
            ordered: input.ordered.unwrap_or(false),
            created_at: now,
            updated_at: now,
            version: 0,
            health: Default::default(),
        };
        let quota = self.config.max_webhooks_per_account;
        if !self.ports.store.insert_webhook(&webhook, quota).await? {
            return Err(ServiceError::Conflict(format!(
                "the account has {quota} webhooks, the most it may have: delete one first"
            )));
        }
        Ok(webhook)
    }

    /// Applies a partial update; [`Shown`] says which secrets it set (the token, the custom
    /// headers), which its response shows.
    pub async fn update_webhook(
        &self,
        account_id: &str,
        webhook_id: &str,
        patch: WebhookPatch,
    ) -> ServiceResult<(Webhook, Shown)> {
        // Validated once, before any write; the changes apply to the webhook as stored when
        // they are written (see `modify_webhook`).
        let url = not_null("url", patch.url)?
            .map(|url| validate_webhook_url("url", url.trim(), self.config.targets))
            .transpose()?
            .map(|url| url.to_string());
        let event_type = not_null("type", patch.event_type)?;
        let events = not_null("events", patch.events)?;
        let events = if event_type.is_some() || events.is_some() {
            Some(self.subscriptions(event_type, events).await?)
        } else {
            None
        };
        let active = not_null("active", patch.active)?;
        if let Some(description) = &patch.description {
            validate_description(description.as_deref())?;
        }
        if let Some(metadata) = &patch.metadata {
            validate_metadata(metadata.as_ref())?;
        }
        if let Some(Some(token)) = &patch.authorization_token {
            validate_token(token)?;
        }
        // `null` goes back to the default, as `null` clears other optional fields.
        let format = patch
            .format
            .map(|format| checked_format(format.as_deref()).map(Option::unwrap_or_default))
            .transpose()?;
        let headers = patch
            .headers
            .map(|headers| self.checked_headers(headers.unwrap_or_default()))
            .transpose()?;
        let shown = Shown {
            token: matches!(patch.authorization_token, Some(Some(_))),
            headers: headers.is_some(),
        };
        if let Some(filter) = &patch.filter {
            validate_filter(filter.as_ref())?;
        }
        if let Some(rate_limit) = patch.rate_limit {
            validate_rate_limit(rate_limit)?;
        }
        let mut enabled = false;
        let webhook = self
            .modify_webhook(account_id, webhook_id, |webhook, _| {
                // As of the version written (the closure runs again after a conflict).
                enabled = active == Some(true) && !webhook.active;
                if let Some(url) = &url
                    && *url != webhook.url
                {
                    // A new endpoint starts with no failures.
                    webhook.health.failing_since = None;
                    webhook.url = url.clone();
                }
                if let Some(events) = &events {
                    webhook.events = events.clone();
                }
                if let Some(active) = active {
                    if active && !webhook.active {
                        // Switched on afresh: its failures so far and why it went off are over.
                        webhook.health = Default::default();
                    }
                    webhook.active = active;
                }
                if let Some(description) = &patch.description {
                    webhook.description = description.clone();
                }
                if let Some(metadata) = &patch.metadata {
                    webhook.metadata = metadata.clone();
                }
                if let Some(token) = &patch.authorization_token {
                    webhook.authorization_token = token.clone();
                }
                if let Some(format) = format {
                    webhook.request.format = format;
                }
                if let Some(headers) = &headers {
                    webhook.request.headers = headers.clone();
                }
                if let Some(rate_limit) = patch.rate_limit {
                    webhook.rate_limit = rate_limit;
                }
                if let Some(ordered) = patch.ordered {
                    webhook.ordered = ordered.unwrap_or(false);
                }
                if let Some(filter) = &patch.filter {
                    webhook.filter = filter.clone();
                }
            })
            .await?;
        if enabled {
            let emission = Emission {
                kind: OperationalEvent::WebhookEnabled,
                account_id,
                webhook_id,
                delivery_id: None,
                reason: "switched on by PATCH".into(),
                occurrence: format!("{webhook_id}:{}", webhook.version),
            };
            // The change is made; a failure to tell is logged, not answered as the PATCH's.
            if let Err(error) = self.emit_operational(emission).await {
                tracing::warn!(%webhook_id, %error, "the webhook.enabled event could not be stored");
            }
        }
        Ok((webhook, shown))
    }

    /// Custom headers checked against Hookline's own, including this deployment's secret and
    /// token headers.
    fn checked_headers(
        &self,
        headers: BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, ValidationError> {
        validate_custom_headers(
            &headers,
            &[&self.config.secret_header, &self.config.token_header],
        )?;
        Ok(headers)
    }

    /// Deletes a webhook and returns it. Its deliveries still in flight end `failed`.
    pub async fn delete_webhook(
        &self,
        account_id: &str,
        webhook_id: &str,
    ) -> ServiceResult<Webhook> {
        if !ids::has_prefix(webhook_id, ids::WEBHOOK) {
            return Err(ServiceError::NotFound("webhook"));
        }
        self.ports
            .store
            .delete_webhook(account_id, webhook_id)
            .await?
            .ok_or(ServiceError::NotFound("webhook"))
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

    pub async fn list_webhooks(
        &self,
        account_id: &str,
        page: u32,
        size: u32,
    ) -> ServiceResult<Page<Webhook>> {
        Ok(self
            .ports
            .store
            .list_webhooks_page(account_id, page, size)
            .await?)
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

    /// Replaces the signing secret. The old one keeps signing for [`ROTATION_GRACE`], so
    /// deliveries carry both signatures while receivers switch over; at most
    /// [`MAX_PREVIOUS_SIGNING_SECRETS`] old ones are kept.
    pub async fn rotate_signing_secret(
        &self,
        account_id: &str,
        webhook_id: &str,
        input: RotateSecret,
    ) -> ServiceResult<()> {
        let secret = match input.secret {
            Some(secret) => {
                validate_signing_secret("secret", &secret)?;
                secret
            }
            None => generate_signing_secret(),
        };
        self.modify_webhook(account_id, webhook_id, |webhook, now| {
            let mut secrets = vec![SigningSecretEntry {
                secret: secret.clone(),
                expires_at: None,
            }];
            secrets.extend(
                std::mem::take(&mut webhook.signing_secrets)
                    .into_iter()
                    .map(|mut old| {
                        old.expires_at = Some(
                            old.expires_at
                                .map_or(now + ROTATION_GRACE, |at| at.min(now + ROTATION_GRACE)),
                        );
                        old
                    })
                    .filter(|old| old.expires_at.is_some_and(|at| at > now))
                    // Newest first, so the oldest are the ones dropped.
                    .take(MAX_PREVIOUS_SIGNING_SECRETS),
            );
            webhook.signing_secrets = secrets;
        })
        .await?;
        Ok(())
    }

    /// Reads a webhook, applies `change` (given the time) and writes it over the version it
    /// read; when another write got there first, reads it again and re-applies the change, so
    /// concurrent changes (a PATCH and a 410, two rotations) all take effect.
    pub(crate) async fn modify_webhook(
        &self,
        account_id: &str,
        webhook_id: &str,
        mut change: impl FnMut(&mut Webhook, chrono::DateTime<chrono::Utc>),
    ) -> ServiceResult<Webhook> {
        for _ in 0..MAX_WRITE_CONFLICTS {
            let mut webhook = self.get_webhook(account_id, webhook_id).await?;
            let now = self.ports.clock.now();
            change(&mut webhook, now);
            webhook.updated_at = now;
            if self.ports.store.update_webhook(&webhook).await? {
                webhook.version += 1;
                return Ok(webhook);
            }
        }
        Err(ServiceError::Conflict(
            "the webhook is being changed by other requests; try again".into(),
        ))
    }

    /// Normalises `type` / `events[]` into the stored subscription list, checking each name
    /// against the catalog (read only when a name is not built in).
    async fn subscriptions(
        &self,
        event_type: Option<String>,
        events: Option<Vec<String>>,
    ) -> ServiceResult<Vec<String>> {
        let needs_catalog = event_type
            .iter()
            .chain(events.iter().flatten())
            .any(|name| {
                let name = name.trim();
                name != "*" && !is_built_in(name) && !is_built_in_namespace(name)
            });
        let catalog = if needs_catalog {
            self.catalog().await?
        } else {
            Catalog::default()
        };
        Ok(subscriptions(event_type, events, &catalog)?)
    }
}

fn is_built_in_namespace(pattern: &str) -> bool {
    pattern
        .strip_suffix(".*")
        .is_some_and(|ns| Catalog::default().has_namespace(ns))
}

fn validate_description(description: Option<&str>) -> Result<(), ValidationError> {
    match description {
        Some(d) if d.chars().count() > MAX_DESCRIPTION => Err(ValidationError::new(
            "description",
            format!("must be at most {MAX_DESCRIPTION} characters"),
        )),
        _ => Ok(()),
    }
}

fn validate_metadata(metadata: Option<&serde_json::Value>) -> Result<(), ValidationError> {
    let Some(metadata) = metadata else {
        return Ok(());
    };
    if !metadata.is_object() {
        return Err(ValidationError::new("metadata", "must be a JSON object"));
    }
    if metadata.to_string().len() > MAX_METADATA_BYTES {
        return Err(ValidationError::new(
            "metadata",
            format!("must be at most {MAX_METADATA_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// A rate limit is a whole number of deliveries a second, 1 to [`MAX_RATE_LIMIT`].
fn validate_rate_limit(rate_limit: Option<u32>) -> Result<(), ValidationError> {
    match rate_limit {
        Some(rate) if !(1..=MAX_RATE_LIMIT).contains(&rate) => Err(ValidationError::new(
            "rateLimit",
            format!("must be 1 to {MAX_RATE_LIMIT} deliveries a second (or absent for no limit)"),
        )),
        _ => Ok(()),
    }
}

/// A filter is stored as given once it parses (see `hookline_model::filter`).
fn validate_filter(filter: Option<&serde_json::Value>) -> Result<(), ValidationError> {
    filter.map_or(Ok(()), |f| Filter::parse("filter", f).map(|_| ()))
}

/// Normalises `type` / `events[]` into the stored subscription list.
fn subscriptions(
    event_type: Option<String>,
    events: Option<Vec<String>>,
    catalog: &Catalog,
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
        EventPattern::parse(&field, &name, catalog)?;
        if !out.contains(&name) {
            out.push(name);
        }
    }
    Ok(out)
}

/// The token goes into a header.
fn validate_token(token: &str) -> Result<(), ValidationError> {
    validate_header_text("authorizationToken", token, MAX_TOKEN, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_take_type_or_events_and_name_the_bad_one() {
        let subscriptions = |t, e| subscriptions(t, e, &Catalog::default());
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
