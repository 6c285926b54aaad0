//! The account webhook secret and each webhook's signing secret (account).

use super::{ApiResult, Errors};
use crate::auth::AccountCaller;
use crate::extract::{Ids, OptionalBody};
use crate::views::SecretView;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use hookline_service::Service;
use hookline_service::webhooks::RotateSecret;
use serde::Deserialize;
use utoipa::ToSchema;

/// The webhook's current Standard Webhooks signing secret.
#[utoipa::path(get, path = "/webhook/{id}/signing-secret", tag = "secrets",
    params(("id" = String, Path, description = "Webhook id")),
    responses((status = 200, body = SecretView, description = "The current `whsec_` secret"), Errors))]
pub async fn signing_secret(
    State(service): State<Service>,
    AccountCaller(account_id): AccountCaller,
    Ids(id): Ids<String>,
) -> ApiResult<Json<SecretView>> {
    Ok(Json(SecretView {
        secret: service.signing_secret(&account_id, &id).await?,
    }))
}

/// Replaces the signing secret (given or generated). The previous one keeps signing for
/// 24 hours, so deliveries carry both signatures meanwhile.
#[utoipa::path(post, path = "/webhook/{id}/signing-secret/rotate", tag = "secrets",
    request_body(content = Option<RotateSecret>, description = "Optional; an empty body generates a secret"),
    params(("id" = String, Path, description = "Webhook id")),
    responses((status = 204, description = "Rotated"), Errors))]
pub async fn rotate_signing_secret(
    State(service): State<Service>,
    AccountCaller(account_id): AccountCaller,
    Ids(id): Ids<String>,
    OptionalBody(input): OptionalBody<RotateSecret>,
) -> ApiResult<StatusCode> {
    service
        .rotate_signing_secret(&account_id, &id, input)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookSecretBody {
    /// 1 to 256 printable characters; generated when absent.
    secret: Option<String>,
}

/// Sets the account webhook secret, sent in a header on every delivery; generated when the
/// body has none.
#[utoipa::path(post, path = "/webhook-secret", tag = "secrets",
    request_body(content = Option<WebhookSecretBody>, description = "Optional; `{}` or an empty body generates a secret"),
    responses((status = 200, body = SecretView, description = "The secret now in use"), Errors))]
pub async fn set_webhook_secret(
    State(service): State<Service>,
    AccountCaller(account_id): AccountCaller,
    OptionalBody(input): OptionalBody<WebhookSecretBody>,
) -> ApiResult<Json<SecretView>> {
    Ok(Json(SecretView {
        secret: service
            .set_webhook_secret(&account_id, input.secret)
            .await?,
    }))
}

/// The account webhook secret.
#[utoipa::path(get, path = "/webhook-secret", tag = "secrets",
    responses((status = 200, body = SecretView, description = "The secret"), Errors))]
pub async fn get_webhook_secret(
    State(service): State<Service>,
    AccountCaller(account_id): AccountCaller,
) -> ApiResult<Json<SecretView>> {
    Ok(Json(SecretView {
        secret: service.webhook_secret(&account_id).await?,
    }))
}

/// Removes the account webhook secret: deliveries no longer carry the header.
#[utoipa::path(delete, path = "/webhook-secret", tag = "secrets",
    responses((status = 204, description = "Removed"), Errors))]
pub async fn delete_webhook_secret(
    State(service): State<Service>,
    AccountCaller(account_id): AccountCaller,
) -> ApiResult<StatusCode> {
    service.delete_webhook_secret(&account_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
