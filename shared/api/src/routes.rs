//! The routes, one function each, grouped by resource.

use crate::ApiError;
use crate::auth::{AccountCaller, Admin};
use crate::extract::{Body, Params};
use crate::views::{LogView, Paged, WebhookView, timestamp};
use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use hookline_model::{BUILT_IN_EVENT_TYPES, DeliveryStatus};
use hookline_service::Service;
use hookline_service::ports::DeliveryQuery;
use hookline_service::publish::NewEvent;
use hookline_service::webhooks::NewWebhook;
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;
use std::collections::HashMap;

type ApiResult<T> = Result<T, ApiError>;

pub fn api_v3() -> Router<Service> {
    Router::new()
        .route("/accounts", post(create_account))
        .route("/events", post(publish_event))
        .route("/webhook", post(create_webhook).get(list_webhooks))
        .route("/webhook/types", get(event_types))
        .route("/webhook/logs", get(list_logs))
        .route("/webhook/logs/{id}", get(get_log))
        .route("/webhook/{id}", get(get_webhook))
        .route("/webhook/{id}/signing-secret", get(signing_secret))
}

pub async fn health() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
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

// --- accounts (admin) ---

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAccount {
    name: String,
}

async fn create_account(
    State(service): State<Service>,
    _: Admin,
    Body(input): Body<NewAccount>,
) -> ApiResult<impl IntoResponse> {
    let created = service.create_account(&input.name).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "id": created.account.id,
            "name": created.account.name,
            "createdAt": timestamp(created.account.created_at),
            "apiKey": created.api_key,
        })),
    ))
}

// --- events (admin) ---

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PublishBody {
    account_id: String,
    #[serde(rename = "type")]
    event_type: String,
    payload: Box<RawValue>,
    id: Option<String>,
}

async fn publish_event(
    State(service): State<Service>,
    _: Admin,
    Body(input): Body<PublishBody>,
) -> ApiResult<impl IntoResponse> {
    let published = service
        .publish(NewEvent {
            account_id: input.account_id,
            event_type: input.event_type,
            payload: input.payload,
            id: input.id,
        })
        .await?;
    Ok((StatusCode::ACCEPTED, Json(published)))
}

// --- webhooks (account) ---

async fn create_webhook(
    State(service): State<Service>,
    AccountCaller(account_id): AccountCaller,
    Body(input): Body<NewWebhook>,
) -> ApiResult<impl IntoResponse> {
    let webhook = service.create_webhook(&account_id, input).await?;
    Ok((StatusCode::CREATED, Json(WebhookView::with_token(webhook))))
}

async fn list_webhooks(
    State(service): State<Service>,
    AccountCaller(account_id): AccountCaller,
    Params(params): Params,
) -> ApiResult<impl IntoResponse> {
    let (page, size) = paging(&params)?;
    let all = service.list_webhooks(&account_id).await?;
    let total = all.len() as u64;
    let content: Vec<WebhookView> = all
        .into_iter()
        .skip(page as usize * size as usize)
        .take(size as usize)
        .map(WebhookView::of)
        .collect();
    Ok(Json(Paged::new(content, page, size, total)))
}

async fn get_webhook(
    State(service): State<Service>,
    AccountCaller(account_id): AccountCaller,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(WebhookView::of(
        service.get_webhook(&account_id, &id).await?,
    )))
}

async fn signing_secret(
    State(service): State<Service>,
    AccountCaller(account_id): AccountCaller,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(
        json!({"secret": service.signing_secret(&account_id, &id).await?}),
    ))
}

async fn event_types(_: AccountCaller) -> impl IntoResponse {
    Json(
        BUILT_IN_EVENT_TYPES
            .iter()
            .map(|(name, description)| json!({"name": name, "description": description}))
            .collect::<Vec<_>>(),
    )
}

// --- logs (account) ---

async fn list_logs(
    State(service): State<Service>,
    AccountCaller(account_id): AccountCaller,
    Params(params): Params,
) -> ApiResult<impl IntoResponse> {
    for unsupported in ["startLastRetryTimestamp", "endLastRetryTimestamp"] {
        if params.contains_key(unsupported) {
            return Err(ApiError::bad_request(format!(
                "{unsupported}: filtering by last retry time is not supported yet"
            )));
        }
    }
    let (page, size) = paging(&params)?;
    let query = DeliveryQuery {
        created_from: time_param(&params, "startTimestamp")?,
        created_to: time_param(&params, "endTimestamp")?,
        webhook_id: params.get("webhookId").cloned(),
        event_type: params.get("type").cloned(),
        status: params
            .get("status")
            .map(|s| {
                DeliveryStatus::parse(s).ok_or_else(|| {
                    ApiError::bad_request("status: must be pending, retrying, delivered or failed")
                })
            })
            .transpose()?,
        page,
        size,
    };
    let logs = service.list_logs(&account_id, query).await?;
    let content = logs
        .items
        .into_iter()
        .map(|(d, payload)| LogView::of(d, payload, false))
        .collect();
    Ok(Json(Paged::new(content, logs.page, logs.size, logs.total)))
}

async fn get_log(
    State(service): State<Service>,
    AccountCaller(account_id): AccountCaller,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let (delivery, payload) = service.get_log(&account_id, &id).await?;
    Ok(Json(LogView::of(delivery, payload, true)))
}

// --- query parameters ---

fn paging(params: &HashMap<String, String>) -> ApiResult<(u32, u32)> {
    let number = |name: &str, default: u32| -> ApiResult<u32> {
        params.get(name).map_or(Ok(default), |v| {
            v.parse::<u32>()
                .map_err(|_| ApiError::bad_request(format!("{name}: must be a whole number >= 0")))
        })
    };
    let page = number("page", 0)?;
    let size = number("size", hookline_model::limits::DEFAULT_PAGE_SIZE)?;
    if size == 0 || size > hookline_model::limits::MAX_PAGE_SIZE {
        return Err(ApiError::bad_request(format!(
            "size: must be 1 to {}",
            hookline_model::limits::MAX_PAGE_SIZE
        )));
    }
    if page > 100_000 {
        return Err(ApiError::bad_request("page: must be at most 100000"));
    }
    Ok((page, size))
}

fn time_param(params: &HashMap<String, String>, name: &str) -> ApiResult<Option<DateTime<Utc>>> {
    params
        .get(name)
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
