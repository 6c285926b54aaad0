//! The one axum `Router` of Hookline's API. Lambda serves it through `lambda_http`, the local
//! process through `axum::serve`; no route is written twice.

mod auth;
mod error;
mod extract;
mod routes;
mod views;

pub use error::ApiError;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use hookline_model::limits::MAX_REQUEST_BODY_BYTES;
use hookline_service::Service;

/// The whole API: `/health` and everything under `/api/v3`.
pub fn router(service: Service) -> Router {
    Router::new()
        .route("/health", axum::routing::get(routes::health))
        .nest("/api/v3", routes::api_v3())
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BODY_BYTES))
        .with_state(service)
}
