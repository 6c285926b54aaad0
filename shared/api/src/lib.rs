//! The one axum `Router` of Hookline's API. Lambda serves it through `lambda_http`, the local
//! process through `axum::serve`; no route is written twice.

mod auth;
mod docs;
mod error;
mod extract;
mod portal;
mod rate_limit;
mod routes;
mod telemetry;
mod views;

pub use error::ApiError;

use axum::extract::DefaultBodyLimit;
use axum::{Extension, Router};
use hookline_model::limits::MAX_REQUEST_BODY_BYTES;
use hookline_service::Service;
use std::sync::Arc;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The whole API: `/health` and everything under `/api/v3`, with its OpenAPI document at
/// `/api/v3/openapi.json`, and the browser pages (`/`, `/portal`, `/console`).
pub fn router(service: Service) -> Router {
    let (router, doc) = OpenApiRouter::with_openapi(docs::ApiDoc::openapi())
        .routes(routes!(routes::health))
        .nest("/api/v3", routes::api_v3())
        .merge(routes::guide_routes())
        .split_for_parts();
    let doc = docs::finish(doc, &service.config().api_key_header);
    let test_rate_limiter = rate_limit::TestRateLimiter::new(service.config().test_rate_limit);
    let browser = portal::Browser::from_service(&service);
    router
        .merge(portal::routes())
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BODY_BYTES))
        .layer(Extension(routes::OpenApiJson(Arc::new(doc))))
        .layer(Extension(test_rate_limiter))
        .layer(Extension(browser))
        // Outermost, so it logs the status every other layer settled on.
        .layer(axum::middleware::from_fn(telemetry::observe))
        .with_state(service)
}
