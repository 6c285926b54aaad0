//! The organization-style guide's one route, as it writes it (issue 15 item 8):
//! `POST /webhook-events` creates a webhook (`organization`, `active`, `url`, `events` as one
//! name or a list) or, given `{webhook, event: "ping"}`, sends that webhook a ping event.
//! Webhooks made here send `{id, event, payload}` bodies. The organization is the Hookline
//! account: an account key acts for its own (naming another is 404), the admin key for the
//! account the body names.

use super::{ApiResult, Errors};
use crate::ApiError;
use crate::auth::AnyCaller;
use crate::extract::Body;
use crate::rate_limit::{RateLimited, TestRateLimiter, within_test_rate_limit};
use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use hookline_model::{PayloadFormat, Principal, ValidationError, Webhook};
use hookline_service::ping::PingEvent;
use hookline_service::webhooks::NewWebhook;
use hookline_service::{Service, ServiceError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;
use utoipa::ToSchema;

/// A webhook to create (`organization`, `active`, `url`, `events`) or a ping event to send
/// (`webhook`, `event: "ping"`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookEventsRequest {
    /// The account (organization) id. With an account key it may be left out and must be
    /// the key's own; with the admin key it is required.
    #[schema(example = "acct_01JC6Y4V9M6T2Q8KJ1N3X5Z7B9")]
    organization: Option<String>,
    /// Defaults to true.
    active: Option<bool>,
    /// Where the webhook's POST requests go.
    #[schema(example = "https://example.com/webhook")]
    url: Option<String>,
    /// Events to listen on (`<service-name>.<method>`): one name or a list.
    #[schema(value_type = Option<EventNames>)]
    events: Option<Value>,
    /// The webhook to send a ping event to.
    webhook: Option<String>,
    /// With `webhook`: the event to send; only `ping`.
    #[schema(example = "ping")]
    event: Option<String>,
}

/// One event name or a list of them.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
#[serde(untagged)]
pub enum EventNames {
    One(String),
    Many(Vec<String>),
}

/// A webhook as this route shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrganizationWebhookView {
    id: String,
    organization: String,
    active: bool,
    url: String,
    events: Vec<String>,
}

impl OrganizationWebhookView {
    fn of(webhook: Webhook) -> Self {
        Self {
            id: webhook.id,
            organization: webhook.account_id,
            active: webhook.active,
            url: webhook.url,
            events: webhook.events,
        }
    }
}

/// The created webhook, or the ping event sent and what the endpoint answered.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum WebhookEventsResponse {
    Webhook(OrganizationWebhookView),
    Ping(PingEvent),
}

fn bad(field: &str, message: &str) -> ApiError {
    ApiError::from(ServiceError::from(ValidationError::new(field, message)))
}

/// `events` as the guide allows it: one name or a list of names.
fn event_names(value: Value) -> Result<Vec<String>, ApiError> {
    match value {
        Value::String(name) => Ok(vec![name]),
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(name) => Ok(name),
                _ => Err(bad(&format!("events[{i}]"), "must be an event name")),
            })
            .collect(),
        _ => Err(bad("events", "must be an event name or a list of them")),
    }
}

/// Creates a webhook for an organization, or sends a ping event to one webhook. Ping events
/// share the per-account rate limit of pings and test events.
#[utoipa::path(post, path = "/webhook-events", tag = "guide routes",
    request_body = WebhookEventsRequest,
    responses((status = 201, body = WebhookEventsResponse, description = "The created webhook, or the ping event sent"), Errors, RateLimited))]
pub async fn webhook_events(
    State(service): State<Service>,
    AnyCaller(caller): AnyCaller,
    Extension(limiter): Extension<Arc<TestRateLimiter>>,
    Body(input): Body<WebhookEventsRequest>,
) -> ApiResult<(StatusCode, Json<WebhookEventsResponse>)> {
    // The request's shape first, so bad input is a 400 before anything is looked up.
    if input.webhook.is_some() {
        for (field, given) in [
            ("url", input.url.is_some()),
            ("events", input.events.is_some()),
            ("active", input.active.is_some()),
        ] {
            if given {
                return Err(bad(
                    field,
                    "is not part of a ping event, which takes 'webhook' and 'event'",
                ));
            }
        }
        match input.event.as_deref() {
            Some("ping") => {}
            Some(_) => return Err(bad("event", "must be \"ping\"")),
            None => return Err(bad("event", "is required with 'webhook'")),
        }
    } else if input.event.is_some() {
        return Err(bad(
            "event",
            "is sent to one webhook: give 'webhook' with it",
        ));
    }
    let account_id = match (caller, input.organization) {
        (Principal::Account(own), None) => own,
        (Principal::Account(own), Some(named)) if named == own => own,
        // Another account's organization is not found, as everywhere.
        (Principal::Account(_), Some(_)) => {
            return Err(ApiError::from(ServiceError::NotFound("organization")));
        }
        (Principal::Admin, Some(named)) => {
            match service.get_account(&named).await {
                Ok(_) => {}
                Err(ServiceError::NotFound(_)) => {
                    return Err(ServiceError::NotFound("organization").into());
                }
                Err(other) => return Err(other.into()),
            }
            named
        }
        (Principal::Admin, None) => {
            return Err(bad("organization", "is required with the admin key"));
        }
    };
    if let Some(webhook_id) = input.webhook {
        within_test_rate_limit(Some(&limiter), &account_id)?;
        let sent = service.send_ping_event(&account_id, &webhook_id).await?;
        return Ok((StatusCode::CREATED, Json(WebhookEventsResponse::Ping(sent))));
    }
    let url = input.url.ok_or_else(|| bad("url", "is required"))?;
    let events = event_names(input.events.ok_or_else(|| bad("events", "is required"))?)?;
    let new = NewWebhook {
        url,
        events: Some(events),
        active: input.active,
        format: Some(PayloadFormat::Event.as_str().to_string()),
        ..NewWebhook::default()
    };
    let webhook = service.create_webhook(&account_id, new).await?;
    Ok((
        StatusCode::CREATED,
        Json(WebhookEventsResponse::Webhook(OrganizationWebhookView::of(
            webhook,
        ))),
    ))
}
