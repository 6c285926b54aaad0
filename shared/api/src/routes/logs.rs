//! Delivery logs and status counts (account).

use super::{ApiResult, Errors, paging, time_param};
use crate::ApiError;
use crate::auth::AccountCaller;
use crate::extract::{Ids, OptionalBody, Params};
use crate::views::{LogView, Paged, StatusCountsView};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use hookline_model::DeliveryStatus;
use hookline_service::Service;
use hookline_service::ports::DeliveryQuery;
use hookline_service::retries::RetryFilter;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// The log filters (Impilo's four time filters and more); all optional.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct LogParams {
    /// Created at or after (RFC 3339).
    #[param(value_type = Option<chrono::DateTime<chrono::Utc>>)]
    start_timestamp: Option<String>,
    /// Created at or before (RFC 3339).
    #[param(value_type = Option<chrono::DateTime<chrono::Utc>>)]
    end_timestamp: Option<String>,
    /// Last attempted at or after (RFC 3339); never-attempted deliveries do not match.
    #[param(value_type = Option<chrono::DateTime<chrono::Utc>>)]
    start_last_retry_timestamp: Option<String>,
    /// Last attempted at or before (RFC 3339).
    #[param(value_type = Option<chrono::DateTime<chrono::Utc>>)]
    end_last_retry_timestamp: Option<String>,
    /// Only this webhook's deliveries.
    webhook_id: Option<String>,
    /// Only this event type.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    event_type: Option<String>,
    /// `pending`, `retrying`, `delivered` or `failed`.
    #[param(value_type = Option<String>, pattern = "^(pending|retrying|delivered|failed)$")]
    status: Option<String>,
    /// The page, from 0.
    #[param(value_type = Option<u32>, minimum = 0, maximum = 100000)]
    page: Option<String>,
    /// Items per page, 1 to 100 (default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    size: Option<String>,
}

/// The account's deliveries, newest first (by last attempt when a last-retry filter is given).
#[utoipa::path(get, path = "/webhook/logs", tag = "logs", params(LogParams),
    responses((status = 200, body = Paged<LogView>, description = "A page of deliveries"), Errors))]
pub async fn list_logs(
    State(service): State<Service>,
    AccountCaller(account_id): AccountCaller,
    Params(params): Params<LogParams>,
) -> ApiResult<Json<Paged<LogView>>> {
    let (page, size) = paging(&params.page, &params.size)?;
    let query = DeliveryQuery {
        created_from: time_param("startTimestamp", &params.start_timestamp)?,
        created_to: time_param("endTimestamp", &params.end_timestamp)?,
        last_attempt_from: time_param(
            "startLastRetryTimestamp",
            &params.start_last_retry_timestamp,
        )?,
        last_attempt_to: time_param("endLastRetryTimestamp", &params.end_last_retry_timestamp)?,
        webhook_id: params.webhook_id,
        event_type: params.event_type,
        status: params
            .status
            .map(|s| {
                DeliveryStatus::parse(&s).ok_or_else(|| {
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

/// One delivery with its attempts.
#[utoipa::path(get, path = "/webhook/logs/{id}", tag = "logs",
    params(("id" = String, Path, description = "Delivery id")),
    responses((status = 200, body = LogView, description = "The delivery and its attempts"), Errors))]
pub async fn get_log(
    State(service): State<Service>,
    AccountCaller(account_id): AccountCaller,
    Ids(id): Ids<String>,
) -> ApiResult<Json<LogView>> {
    let (delivery, payload) = service.get_log(&account_id, &id).await?;
    Ok(Json(LogView::of(delivery, payload, true)))
}

/// How many of the account's deliveries are in each status (within the log retention).
#[utoipa::path(get, path = "/webhook/status", tag = "logs",
    responses((status = 200, body = StatusCountsView, description = "Counts per status"), Errors))]
pub async fn status_counts(
    State(service): State<Service>,
    AccountCaller(account_id): AccountCaller,
) -> ApiResult<Json<StatusCountsView>> {
    Ok(Json(StatusCountsView::of(
        service.status_counts(&account_id).await?,
    )))
}

/// Sends a finished (failed or delivered) delivery again, starting a new round of retries.
#[utoipa::path(post, path = "/webhook/logs/{id}/retry", tag = "logs",
    params(("id" = String, Path, description = "Delivery id")),
    responses((status = 202, body = LogView, description = "Queued again; the delivery as it is now"), Errors))]
pub async fn retry_log(
    State(service): State<Service>,
    AccountCaller(account_id): AccountCaller,
    Ids(id): Ids<String>,
) -> ApiResult<(StatusCode, Json<LogView>)> {
    let delivery = service.retry_delivery(&account_id, &id).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(LogView::of(delivery, None, false)),
    ))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryFailedBody {
    /// Only this webhook's failed deliveries.
    webhook_id: Option<String>,
    /// Only deliveries created at or after this time (RFC 3339).
    #[schema(value_type = Option<chrono::DateTime<chrono::Utc>>)]
    since: Option<String>,
    /// Only deliveries created at or before this time (RFC 3339).
    #[schema(value_type = Option<chrono::DateTime<chrono::Utc>>)]
    until: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct RetriedView {
    /// How many failed deliveries were queued again (at most 10,000 per request).
    retried: u32,
}

/// Sends every failed delivery again (of active webhooks), optionally of one webhook and
/// within a creation-time range.
#[utoipa::path(post, path = "/webhook/retry", tag = "logs",
    request_body(content = Option<RetryFailedBody>, description = "Optional filters; an empty body retries every failed delivery"),
    responses((status = 202, body = RetriedView, description = "Queued again"), Errors))]
pub async fn retry_failed(
    State(service): State<Service>,
    AccountCaller(account_id): AccountCaller,
    OptionalBody(input): OptionalBody<RetryFailedBody>,
) -> ApiResult<(StatusCode, Json<RetriedView>)> {
    let filter = RetryFilter {
        webhook_id: input.webhook_id,
        since: time_param("since", &input.since)?,
        until: time_param("until", &input.until)?,
    };
    let retried = service.retry_failed(&account_id, filter).await?;
    Ok((StatusCode::ACCEPTED, Json(RetriedView { retried })))
}
