//! The routes: a file per resource, one function per route. Each route's OpenAPI entry sits
//! on its handler, and `api_v3` registers handler and document together.

mod accounts;
mod config_webhooks;
mod event_types;
mod events;
mod jobs;
mod logs;
mod portal_links;
mod secrets;
mod test_events;
mod webhook_events;
mod webhooks;

use crate::ApiError;
use crate::views::{ErrorBody, HealthView};
use axum::http::StatusCode;
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use hookline_model::limits::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
use hookline_service::Service;
use serde::Deserialize;
use std::sync::Arc;
use utoipa::{IntoParams, IntoResponses};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

type ApiResult<T> = Result<T, ApiError>;

/// Everything under `/api/v3`. `routes!` groups handlers by path.
pub fn api_v3() -> OpenApiRouter<Service> {
    OpenApiRouter::new()
        .routes(routes!(accounts::create_account, accounts::list_accounts))
        .routes(routes!(accounts::get_account))
        .routes(routes!(accounts::add_api_key))
        .routes(routes!(accounts::revoke_api_key))
        .routes(routes!(portal_links::create_portal_link))
        .routes(routes!(
            event_types::register_event_type,
            event_types::list_event_types
        ))
        .routes(routes!(events::publish_event))
        .routes(routes!(events::publish_batch))
        .routes(routes!(webhooks::create_webhook, webhooks::list_webhooks))
        .routes(routes!(
            webhooks::get_webhook,
            webhooks::update_webhook,
            webhooks::delete_webhook
        ))
        .routes(routes!(webhooks::ping_webhook))
        .routes(routes!(event_types::webhook_types))
        .routes(routes!(secrets::signing_secret))
        .routes(routes!(secrets::rotate_signing_secret))
        .routes(routes!(
            secrets::set_webhook_secret,
            secrets::get_webhook_secret,
            secrets::delete_webhook_secret
        ))
        .routes(routes!(logs::list_logs))
        .routes(routes!(logs::get_log))
        .routes(routes!(logs::retry_log))
        .routes(routes!(logs::retry_failed))
        .routes(routes!(logs::status_counts))
        .routes(routes!(jobs::replay))
        .routes(routes!(jobs::replay_missing))
        .routes(routes!(jobs::get_job))
        .routes(routes!(test_events::test_event))
        .routes(routes!(test_events::test_reading))
        .routes(routes!(openapi_json))
}

/// The guides' own requests, at the paths the guides write (issue 15 item 8): thin routes onto
/// the same use cases as `/api/v3`.
pub fn guide_routes() -> OpenApiRouter<Service> {
    OpenApiRouter::new()
        .routes(routes!(
            config_webhooks::create_config_webhook,
            config_webhooks::list_config_webhooks
        ))
        .routes(routes!(
            config_webhooks::get_config_webhook,
            config_webhooks::update_config_webhook,
            config_webhooks::delete_config_webhook
        ))
        .routes(routes!(webhook_events::webhook_events))
}

/// The OpenAPI document, rendered once when the router is built.
#[derive(Clone)]
pub struct OpenApiJson(pub Arc<String>);

/// The OpenAPI 3 document of this API.
#[utoipa::path(get, path = "/openapi.json", tag = "meta", security(),
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json")))]
pub async fn openapi_json(
    Extension(doc): Extension<OpenApiJson>,
) -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        doc.0.as_str().to_owned(),
    )
}

/// Whether the process can serve. No key needed.
#[utoipa::path(get, path = "/health", tag = "meta", security(),
    responses((status = 200, body = HealthView, description = "Serving")))]
pub async fn health() -> Json<HealthView> {
    Json(HealthView {
        status: "ok".into(),
    })
}

pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method",
    )
}

/// The errors any route may answer, documented once.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum Errors {
    /// Bad input: the message starts with the field at fault.
    #[response(status = 400)]
    BadRequest(#[to_schema] ErrorBody),
    /// No valid API key.
    #[response(status = 401)]
    Unauthorized(#[to_schema] ErrorBody),
    /// A valid key of the wrong kind (admin key on an account route, or the reverse).
    #[response(status = 403)]
    Forbidden(#[to_schema] ErrorBody),
    /// No such resource for this caller (another account's resources are not found either).
    #[response(status = 404)]
    NotFound(#[to_schema] ErrorBody),
    /// The name or id is taken.
    #[response(status = 409)]
    Conflict(#[to_schema] ErrorBody),
    /// The body is over 1 MiB, or the payload over 256 KiB.
    #[response(status = 413)]
    TooLarge(#[to_schema] ErrorBody),
    /// The body is not sent as `application/json`.
    #[response(status = 415)]
    UnsupportedMediaType(#[to_schema] ErrorBody),
}

/// What publishing answers when local mode's backlog is past its bound.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum Busy {
    /// Too much work is waiting to be delivered: publish again after `Retry-After` seconds.
    #[response(status = 503, headers(("Retry-After" = u64, description = "Seconds to wait before publishing again")))]
    Unavailable(#[to_schema] ErrorBody),
}

/// `page` (0-based) and `size` (1 to 100, default 20).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// The page, from 0.
    #[param(value_type = Option<u32>, minimum = 0, maximum = 100000)]
    page: Option<String>,
    /// Items per page, 1 to 100 (default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    size: Option<String>,
}

impl PageParams {
    pub fn parse(&self) -> ApiResult<(u32, u32)> {
        paging(&self.page, &self.size)
    }
}

/// Reads `page` and `size`, naming the one at fault.
pub fn paging(page: &Option<String>, size: &Option<String>) -> ApiResult<(u32, u32)> {
    let number = |name: &str, value: &Option<String>, default: u32| -> ApiResult<u32> {
        value.as_deref().map_or(Ok(default), |v| {
            v.parse::<u32>()
                .map_err(|_| ApiError::bad_request(format!("{name}: must be a whole number >= 0")))
        })
    };
    let page = number("page", page, 0)?;
    let size = number("size", size, DEFAULT_PAGE_SIZE)?;
    if size == 0 || size > MAX_PAGE_SIZE {
        return Err(ApiError::bad_request(format!(
            "size: must be 1 to {MAX_PAGE_SIZE}"
        )));
    }
    if page > 100_000 {
        return Err(ApiError::bad_request("page: must be at most 100000"));
    }
    Ok((page, size))
}

/// An RFC 3339 time parameter, named in the error when it is not one.
pub fn time_param(name: &str, value: &Option<String>) -> ApiResult<Option<DateTime<Utc>>> {
    value
        .as_deref()
        .map(|v| {
            DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| {
                    ApiError::bad_request(format!(
                        "{name}: must be an RFC 3339 time like 2022-03-10T16:15:50Z"
                    ))
                })
        })
        .transpose()
}
