//! Publishing events (admin): one, or a batch of up to 100.

use super::{ApiResult, Busy, Errors};
use crate::ApiError;
use crate::auth::Admin;
use crate::extract::{Body, field_and_message, json_error};
use crate::views::{
    BatchAcceptedView, BatchRefusedView, BatchResultView, BatchResultsView, ErrorDetail,
};
use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use hookline_service::publish::{NewEvent, Published, validate_batch_size};
use hookline_service::{Service, ServiceError};
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

impl From<PublishBody> for NewEvent {
    fn from(body: PublishBody) -> Self {
        NewEvent {
            account_id: body.account_id,
            event_type: body.event_type,
            payload: body.payload,
            id: body.id,
        }
    }
}

/// Publishes an event to every matching, active webhook of the account.
#[utoipa::path(post, path = "/events", tag = "events", request_body = PublishBody,
    responses((status = 202, body = Published, description = "Accepted: stored and fanned out"), Errors, Busy))]
pub async fn publish_event(
    State(service): State<Service>,
    _: Admin,
    Body(input): Body<PublishBody>,
) -> ApiResult<(StatusCode, Json<Published>)> {
    let published = service.publish(input.into()).await?;
    Ok((StatusCode::ACCEPTED, Json(published)))
}

/// `POST /events/batch`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishBatchBody {
    /// 1 to 100 events, each as `POST /events` takes it. Each is read on its own: one that
    /// is malformed gets its error in its result, the others are still published.
    #[schema(value_type = Vec<PublishBody>, min_items = 1, max_items = 100)]
    events: Vec<Box<RawValue>>,
}

/// Publishes up to 100 events at once, each as `POST /events` would (idempotent by `id`).
/// Answers one result per event, in order: `status` 202 with the event's `id`, `type` and
/// `deliveries`, or the status and error `POST /events` would answer for it (its message
/// naming `events[i].<field>`). A refused event does not keep the others from being published.
#[utoipa::path(post, path = "/events/batch", tag = "events", request_body = PublishBatchBody,
    responses((status = 200, body = BatchResultsView, description = "One result per event, in order"), Errors, Busy))]
pub async fn publish_batch(
    State(service): State<Service>,
    _: Admin,
    Body(body): Body<Box<RawValue>>,
) -> ApiResult<Json<BatchResultsView>> {
    // Any JSON is read first (415, 413 and syntax errors as everywhere), so that a body that
    // is not an object (serde would read an array as the struct's fields) names `events`.
    if !body.get().starts_with('{') {
        return Err(ApiError::bad_request(
            "events: the body must be an object {\"events\": [...]}",
        ));
    }
    let body = axum::Json::<PublishBatchBody>::from_bytes(body.get().as_bytes())
        .map_err(json_error)?
        .0;
    validate_batch_size(body.events.len()).map_err(ServiceError::from)?;

    // Each event is read on its own, so a malformed one is refused alone.
    let mut results: Vec<Option<BatchResultView>> = Vec::with_capacity(body.events.len());
    let mut inputs = Vec::with_capacity(body.events.len());
    let mut positions = Vec::with_capacity(body.events.len());
    for (i, raw) in body.events.iter().enumerate() {
        match axum::Json::<PublishBody>::from_bytes(raw.get().as_bytes()) {
            Ok(Json(event)) => {
                results.push(None);
                inputs.push(NewEvent::from(event));
                positions.push(i);
            }
            Err(rejection) => results.push(Some(malformed(i, &rejection))),
        }
    }
    drop(body);
    if !inputs.is_empty() {
        let published = service.publish_batch(inputs).await?;
        for (i, result) in positions.into_iter().zip(published) {
            results[i] = Some(match result {
                Ok(published) => BatchResultView::Accepted(BatchAcceptedView {
                    status: StatusCode::ACCEPTED.as_u16(),
                    id: published.id,
                    event_type: published.event_type,
                    deliveries: published.deliveries,
                }),
                Err(error) => refused(i, error),
            });
        }
    }
    Ok(Json(BatchResultsView {
        results: results
            .into_iter()
            .map(|r| r.expect("every event has a result"))
            .collect(),
    }))
}

/// The result of an event that could not be read as `POST /events` reads its body.
fn malformed(i: usize, rejection: &JsonRejection) -> BatchResultView {
    let (field, message) = field_and_message(&rejection.body_text());
    let message = match field {
        Some(field) => format!("events[{i}].{field}: {message}"),
        None => format!("events[{i}]: {message}"),
    };
    BatchResultView::Refused(BatchRefusedView {
        status: StatusCode::BAD_REQUEST.as_u16(),
        error: ErrorDetail {
            code: "validation_error".into(),
            message,
        },
    })
}

/// The result of an event the service refused: the status and code `POST /events` answers for
/// that error, the message naming `events[i].<field>`.
fn refused(i: usize, error: ServiceError) -> BatchResultView {
    let message = match &error {
        ServiceError::Validation(e) => format!("events[{i}].{}: {}", e.field, e.message),
        ServiceError::TooLarge { .. } => format!("events[{i}].{error}"),
        ServiceError::NotFound("account") => format!("events[{i}].accountId: {error}"),
        other => format!("events[{i}]: {other}"),
    };
    let ApiError { status, code, .. } = ApiError::from(error);
    BatchResultView::Refused(BatchRefusedView {
        status: status.as_u16(),
        error: ErrorDetail {
            code: code.to_string(),
            message,
        },
    })
}
