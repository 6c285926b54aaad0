//! Replay and recovery as background jobs (issue 15 item 3), and reading a job.

use super::{ApiResult, Errors, time_param};
use crate::ApiError;
use crate::auth::AccountCaller;
use crate::extract::{Body, Ids};
use crate::views::JobView;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use hookline_model::DeliveryStatus;
use hookline_service::Service;
use hookline_service::replay::ReplayRequest;
use serde::Deserialize;
use utoipa::ToSchema;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReplayBody {
    /// Only this webhook's deliveries.
    webhook_id: Option<String>,
    /// Deliveries created at or after this time (RFC 3339).
    #[schema(value_type = chrono::DateTime<chrono::Utc>)]
    since: String,
    /// Deliveries created at or before this time (RFC 3339).
    #[schema(value_type = chrono::DateTime<chrono::Utc>)]
    until: String,
    /// Only `delivered` or only `failed` deliveries; every finished one when left out.
    #[schema(pattern = "^(delivered|failed)$")]
    status: Option<String>,
}

/// Sends every finished delivery created in a time range again (not only failed ones), as
/// new attempts of the same deliveries: the same `webhook-id`, a new round of retries.
/// Deliveries still pending or retrying are left to their own attempts; those of inactive or
/// deleted webhooks are left out. Runs as a job: a small range is done when this answers
/// (`status` `completed`), a large one carries on in the background.
#[utoipa::path(post, path = "/webhook/replay", tag = "jobs",
    request_body = ReplayBody,
    responses((status = 202, body = JobView, description = "The job, as it stands"), Errors))]
pub async fn replay(
    State(service): State<Service>,
    AccountCaller(account_id): AccountCaller,
    Body(input): Body<ReplayBody>,
) -> ApiResult<(StatusCode, Json<JobView>)> {
    let status = input
        .status
        .as_deref()
        .map(|raw| {
            DeliveryStatus::parse(raw)
                .filter(|s| s.is_terminal())
                .ok_or_else(|| ApiError::bad_request("status: must be delivered or failed"))
        })
        .transpose()?;
    let request = ReplayRequest {
        webhook_id: input.webhook_id,
        since: required_time("since", &input.since)?,
        until: required_time("until", &input.until)?,
        status,
    };
    let job = service.replay(&account_id, request).await?;
    Ok((StatusCode::ACCEPTED, Json(JobView::of(job))))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReplayMissingBody {
    /// Events published at or after this time (RFC 3339), until now.
    #[schema(value_type = chrono::DateTime<chrono::Utc>)]
    since: String,
}

/// Sends the webhook every event published since a time that it matches (its subscriptions
/// and filter as they are now) and never got a delivery of, for example because it was
/// created later or was inactive. Runs as a job, as a replay does.
#[utoipa::path(post, path = "/webhook/{id}/replay-missing", tag = "jobs",
    params(("id" = String, Path, description = "Webhook id")),
    request_body = ReplayMissingBody,
    responses((status = 202, body = JobView, description = "The job, as it stands"), Errors))]
pub async fn replay_missing(
    State(service): State<Service>,
    AccountCaller(account_id): AccountCaller,
    Ids(id): Ids<String>,
    Body(input): Body<ReplayMissingBody>,
) -> ApiResult<(StatusCode, Json<JobView>)> {
    let since = required_time("since", &input.since)?;
    let job = service.replay_missing(&account_id, &id, since).await?;
    Ok((StatusCode::ACCEPTED, Json(JobView::of(job))))
}

/// A replay or recovery job: how far it got.
#[utoipa::path(get, path = "/webhook/jobs/{id}", tag = "jobs",
    params(("id" = String, Path, description = "Job id")),
    responses((status = 200, body = JobView, description = "The job"), Errors))]
pub async fn get_job(
    State(service): State<Service>,
    AccountCaller(account_id): AccountCaller,
    Ids(id): Ids<String>,
) -> ApiResult<Json<JobView>> {
    Ok(Json(JobView::of(service.get_job(&account_id, &id).await?)))
}

fn required_time(name: &str, value: &str) -> ApiResult<chrono::DateTime<chrono::Utc>> {
    time_param(name, &Some(value.to_string()))?
        .ok_or_else(|| ApiError::bad_request(format!("{name}: required")))
}
