//! Publishing events (admin).

use super::{ApiResult, Errors};
use crate::auth::Admin;
use crate::extract::Body;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use hookline_service::Service;
use hookline_service::publish::{NewEvent, Published};
use serde::Deserialize;
use serde_json::value::RawValue;
use utoipa::ToSchema;

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PublishBody {
    account_id: String,
    /// A built-in or registered event type.
    #[serde(rename = "type")]
    #[schema(example = "reading.weight")]
    event_type: String,
    /// A JSON object of at most 256 KiB.
    #[schema(value_type = Object)]
    payload: Box<RawValue>,
    /// Your id for the event: publishing the same id again returns the first result.
    id: Option<String>,
}

/// Publishes an event to every matching, active webhook of the account.
#[utoipa::path(post, path = "/events", tag = "events", request_body = PublishBody,
    responses((status = 202, body = Published, description = "Accepted: stored and fanned out"), Errors))]
pub async fn publish_event(
    State(service): State<Service>,
    _: Admin,
    Body(input): Body<PublishBody>,
) -> ApiResult<(StatusCode, Json<Published>)> {
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
