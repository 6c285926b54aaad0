//! Webhooks (account).

use super::{ApiResult, Errors, PageParams};
use crate::auth::AccountCaller;
use crate::extract::{Body, Ids, Params};
use crate::rate_limit::{RateLimited, RateLimitedCaller};
use crate::views::{Paged, WebhookView};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use hookline_service::Service;
use hookline_service::ping::PingResult;
use hookline_service::webhooks::{NewWebhook, WebhookPatch};

/// Creates a webhook. The response is the only one, besides a PATCH that sets them, showing
/// the `authorizationToken` and the custom `headers`' values.
#[utoipa::path(post, path = "/webhook", tag = "webhooks", request_body = NewWebhook,
    responses((status = 201, body = WebhookView, description = "Created"), Errors))]
pub async fn create_webhook(
    State(service): State<Service>,
    AccountCaller(account_id): AccountCaller,
    Body(input): Body<NewWebhook>,
) -> ApiResult<(StatusCode, Json<WebhookView>)> {
    let webhook = service.create_webhook(&account_id, input).await?;
    Ok((
        StatusCode::CREATED,
        Json(WebhookView::with_secrets(webhook)),
    ))
}

/// Lists the account's webhooks, oldest first.
#[utoipa::path(get, path = "/webhook", tag = "webhooks", params(PageParams),
    responses((status = 200, body = Paged<WebhookView>, description = "A page of webhooks"), Errors))]
pub async fn list_webhooks(
    State(service): State<Service>,
    AccountCaller(account_id): AccountCaller,
    Params(params): Params<PageParams>,
) -> ApiResult<Json<Paged<WebhookView>>> {
    let (page, size) = params.parse()?;
    let webhooks = service.list_webhooks(&account_id, page, size).await?;
    let content = webhooks.items.into_iter().map(WebhookView::of).collect();
    Ok(Json(Paged::new(content, page, size, webhooks.total)))
}

/// One webhook.
#[utoipa::path(get, path = "/webhook/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "Webhook id")),
    responses((status = 200, body = WebhookView, description = "The webhook"), Errors))]
pub async fn get_webhook(
    State(service): State<Service>,
    AccountCaller(account_id): AccountCaller,
    Ids(id): Ids<String>,
) -> ApiResult<Json<WebhookView>> {
    Ok(Json(WebhookView::of(
        service.get_webhook(&account_id, &id).await?,
    )))
}

/// Changes the fields given; `null` clears `description`, `metadata`, `authorizationToken` or
/// `headers`. The token and the headers' values are shown only when this request set them.
#[utoipa::path(patch, path = "/webhook/{id}", tag = "webhooks", request_body = WebhookPatch,
    params(("id" = String, Path, description = "Webhook id")),
    responses((status = 200, body = WebhookView, description = "The updated webhook; with the token only when this request set it"), Errors))]
pub async fn update_webhook(
    State(service): State<Service>,
    AccountCaller(account_id): AccountCaller,
    Ids(id): Ids<String>,
    Body(patch): Body<WebhookPatch>,
) -> ApiResult<Json<WebhookView>> {
    let (webhook, shown) = service.update_webhook(&account_id, &id, patch).await?;
    Ok(Json(WebhookView::showing(webhook, shown)))
}

/// Deletes a webhook and returns it.
#[utoipa::path(delete, path = "/webhook/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "Webhook id")),
    responses((status = 200, body = WebhookView, description = "The deleted webhook"), Errors))]
pub async fn delete_webhook(
    State(service): State<Service>,
    AccountCaller(account_id): AccountCaller,
    Ids(id): Ids<String>,
) -> ApiResult<Json<WebhookView>> {
    Ok(Json(WebhookView::of(
        service.delete_webhook(&account_id, &id).await?,
    )))
}

/// Sends `{"ping":"<random>"}` to the webhook now and reports whether it answered
/// `{"pong":"<same>"}`. Pings and test events share a per-account rate limit.
#[utoipa::path(post, path = "/webhook/{id}/ping", tag = "webhooks",
    params(("id" = String, Path, description = "Webhook id")),
    responses((status = 200, body = PingResult, description = "What the endpoint answered"), Errors, RateLimited))]
pub async fn ping_webhook(
    State(service): State<Service>,
    RateLimitedCaller(account_id): RateLimitedCaller,
    Ids(id): Ids<String>,
) -> ApiResult<Json<PingResult>> {
    Ok(Json(service.ping(&account_id, &id).await?))
}
