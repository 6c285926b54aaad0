//! One JSON log line per request, with a request id that the publish log line inside it shares
//! (and the event id there links to the delivery attempts), and the publish counter. Nothing
//! from the request but its method, route template and status: no query, header or body.

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use hookline_service::telemetry::PUBLISHES;
use std::time::Instant;
use tracing::Instrument;

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub async fn observe(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = request_id(&request);
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let span = tracing::info_span!("request", request_id = %request_id);
    let mut response = next.run(request).instrument(span).await;
    let status = response.status().as_u16();
    tracing::info!(
        target: "hookline::request",
        request_id = %request_id,
        method = %method,
        route = %route,
        status,
        duration_ms = started.elapsed().as_millis() as u64,
        "request"
    );
    if method == Method::POST && matches!(route.as_str(), "/api/v3/events" | "/api/v3/events/batch")
    {
        metrics::counter!(PUBLISHES, "route" => route, "status" => status.to_string()).increment(1);
    }
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID.clone(), value);
    }
    response
}

/// The caller's `X-Request-Id` when it is a plain token (so it cannot forge log fields),
/// else a new one.
fn request_id(request: &Request) -> String {
    request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            (1..=64).contains(&v.len())
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        })
        .map_or_else(|| format!("req_{}", ulid::Ulid::new()), String::from)
}
