//! The Infermedica guide's configuration API, as that guide writes it (issue 15 item 8):
//! `/api/v2/config/webhook` with `url`, `authorization_token` and `subscribed_events`. Thin
//! routes onto the same webhook use cases as `/api/v3/webhook`; only the names and shapes
//! differ. Webhooks made here send `{event_type, content}` bodies and their token in
//! `x-webhook-infermedica-token`, as the guide says. Authentication is the account's API key as
//! `Authorization: Bearer <key>` (the guide's `<CREDENTIALS>`) or in the API-key header.

use super::{ApiResult, Errors};
use crate::auth::AccountCaller;
use crate::extract::{Ids, LenientBody};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use hookline_model::limits::MAX_PAGE_SIZE;
use hookline_model::request_options::INFERMEDICA_TOKEN_HEADER;
use hookline_model::{PayloadFormat, Webhook};
use hookline_service::webhooks::{NewWebhook, WebhookPatch, present};
use hookline_service::{Service, ServiceError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The guide's create request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewConfigWebhook {
    /// Where webhooks are sent; must accept POST requests.
    #[schema(example = "https://mywebsite.com/webhook_receiver")]
    url: String,
    /// Sent in the `x-webhook-infermedica-token` header of every webhook request.
    #[schema(example = "zGORr7q1I4egIr0c0eKXD7CMpIcjFooJ")]
    authorization_token: Option<String>,
    /// The event types listened for.
    #[schema(example = json!(["survey_finished"]))]
    subscribed_events: Vec<String>,
}

/// The guide's update request: the fields given change; a request that sets
/// `authorization_token` shows it in its response (`null` removes it).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigWebhookPatch {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    url: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Vec<String>>)]
    subscribed_events: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    authorization_token: Option<Option<String>>,
}

/// A webhook configuration as the guide shows it; the token only on create and on the
/// update that sets it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConfigWebhookView {
    #[schema(example = "wh_01JC6Y4V9M6T2Q8KJ1N3X5Z7B9")]
    id: String,
    url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    authorization_token: Option<String>,
    subscribed_events: Vec<String>,
}

impl ConfigWebhookView {
    fn of(webhook: Webhook, with_token: bool) -> Self {
        Self {
            id: webhook.id,
            url: webhook.url,
            authorization_token: webhook.authorization_token.filter(|_| with_token),
            subscribed_events: webhook.events,
        }
    }
}

/// The use cases name fields as `/api/v3` does; here they go by the guide's names.
fn guide_names(error: ServiceError) -> ServiceError {
    match error {
        ServiceError::Validation(mut e) => {
            e.field = match e.field.as_str() {
                "authorizationToken" => "authorization_token".to_string(),
                "type" | "events" => "subscribed_events".to_string(),
                other => match other.strip_prefix("events[") {
                    Some(rest) => format!("subscribed_events[{rest}"),
                    None => other.to_string(),
                },
            };
            ServiceError::Validation(e)
        }
        other => other,
    }
}

/// Registers a webhook configuration (the guide's create request).
#[utoipa::path(post, path = "/api/v2/config/webhook", tag = "guide routes",
    request_body = NewConfigWebhook,
    responses((status = 201, body = ConfigWebhookView, description = "The configuration, with its id and token"), Errors))]
pub async fn create_config_webhook(
    State(service): State<Service>,
    AccountCaller(account_id): AccountCaller,
    LenientBody(input): LenientBody<NewConfigWebhook>,
) -> ApiResult<(StatusCode, Json<ConfigWebhookView>)> {
    let new = NewWebhook {
        url: input.url,
        events: Some(input.subscribed_events),
        authorization_token: input.authorization_token,
        format: Some(PayloadFormat::Content.as_str().to_string()),
        token_header: Some(INFERMEDICA_TOKEN_HEADER.to_string()),
        ..NewWebhook::default()
    };
    let webhook = service
        .create_webhook(&account_id, new)
        .await
        .map_err(guide_names)?;
    Ok((
        StatusCode::CREATED,
        Json(ConfigWebhookView::of(webhook, true)),
    ))
}

/// Every webhook configuration of the caller, tokens excluded.
#[utoipa::path(get, path = "/api/v2/config/webhook", tag = "guide routes",
    responses((status = 200, body = Vec<ConfigWebhookView>, description = "All configurations"), Errors))]
pub async fn list_config_webhooks(
    State(service): State<Service>,
    AccountCaller(account_id): AccountCaller,
) -> ApiResult<Json<Vec<ConfigWebhookView>>> {
    // The guide's list is not paginated; the account's webhooks are bounded by its quota.
    let mut all = Vec::new();
    for page in 0.. {
        let listed = service
            .list_webhooks(&account_id, page, MAX_PAGE_SIZE)
            .await?;
        let last = listed.items.len() < MAX_PAGE_SIZE as usize;
        all.extend(
            listed
                .items
                .into_iter()
                .map(|w| ConfigWebhookView::of(w, false)),
        );
        if last || all.len() as u64 >= listed.total {
            break;
        }
    }
    Ok(Json(all))
}

/// One webhook configuration, token excluded.
#[utoipa::path(get, path = "/api/v2/config/webhook/{id}", tag = "guide routes",
    params(("id" = String, Path, description = "Webhook configuration id")),
    responses((status = 200, body = ConfigWebhookView, description = "The configuration"), Errors))]
pub async fn get_config_webhook(
    State(service): State<Service>,
    AccountCaller(account_id): AccountCaller,
    Ids(id): Ids<String>,
) -> ApiResult<Json<ConfigWebhookView>> {
    let webhook = service.get_webhook(&account_id, &id).await?;
    Ok(Json(ConfigWebhookView::of(webhook, false)))
}

/// Updates `url` and `subscribed_events`, or the token; the response shows the token only
/// when this request set it.
#[utoipa::path(patch, path = "/api/v2/config/webhook/{id}", tag = "guide routes",
    request_body = ConfigWebhookPatch,
    params(("id" = String, Path, description = "Webhook configuration id")),
    responses((status = 200, body = ConfigWebhookView, description = "The updated configuration"), Errors))]
pub async fn update_config_webhook(
    State(service): State<Service>,
    AccountCaller(account_id): AccountCaller,
    Ids(id): Ids<String>,
    LenientBody(patch): LenientBody<ConfigWebhookPatch>,
) -> ApiResult<Json<ConfigWebhookView>> {
    let patch = WebhookPatch {
        url: patch.url,
        events: patch.subscribed_events,
        authorization_token: patch.authorization_token,
        ..WebhookPatch::default()
    };
    let (webhook, shown) = service
        .update_webhook(&account_id, &id, patch)
        .await
        .map_err(guide_names)?;
    Ok(Json(ConfigWebhookView::of(webhook, shown.token)))
}

/// Deletes a webhook configuration and returns it, token excluded.
#[utoipa::path(delete, path = "/api/v2/config/webhook/{id}", tag = "guide routes",
    params(("id" = String, Path, description = "Webhook configuration id")),
    responses((status = 200, body = ConfigWebhookView, description = "The deleted configuration"), Errors))]
pub async fn delete_config_webhook(
    State(service): State<Service>,
    AccountCaller(account_id): AccountCaller,
    Ids(id): Ids<String>,
) -> ApiResult<Json<ConfigWebhookView>> {
    let webhook = service.delete_webhook(&account_id, &id).await?;
    Ok(Json(ConfigWebhookView::of(webhook, false)))
}
