//! The event-type catalog: registration (admin) and the listing customers read.

use super::{ApiResult, Errors};
use crate::auth::{AccountCaller, Admin};
use crate::extract::Body;
use crate::views::EventTypeView;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use hookline_service::Service;
use hookline_service::event_types::NewEventType;

/// Registers a platform event type beside the built-in catalog.
#[utoipa::path(post, path = "/event-types", tag = "event types", request_body = NewEventType,
    responses((status = 201, body = EventTypeView, description = "Registered"), Errors))]
pub async fn register_event_type(
    State(service): State<Service>,
    _: Admin,
    Body(input): Body<NewEventType>,
) -> ApiResult<(StatusCode, Json<EventTypeView>)> {
    let info = service.register_event_type(input).await?;
    Ok((StatusCode::CREATED, Json(EventTypeView::of(info))))
}

/// Every event type: built-in, then registered.
#[utoipa::path(get, path = "/event-types", tag = "event types",
    responses((status = 200, body = Vec<EventTypeView>, description = "The catalog"), Errors))]
pub async fn list_event_types(
    State(service): State<Service>,
    _: Admin,
) -> ApiResult<Json<Vec<EventTypeView>>> {
    catalog(&service).await
}

/// The event types a webhook can subscribe to.
#[utoipa::path(get, path = "/webhook/types", tag = "webhooks",
    responses((status = 200, body = Vec<EventTypeView>, description = "The catalog"), Errors))]
pub async fn webhook_types(
    State(service): State<Service>,
    _: AccountCaller,
) -> ApiResult<Json<Vec<EventTypeView>>> {
    catalog(&service).await
}

async fn catalog(service: &Service) -> ApiResult<Json<Vec<EventTypeView>>> {
    let catalog = service.catalog().await?;
    Ok(Json(
        catalog.all().into_iter().map(EventTypeView::of).collect(),
    ))
}
