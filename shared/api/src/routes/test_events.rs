//! Test events (account): a realistic event published to the caller's own webhooks.

use super::{ApiResult, Errors};
use crate::extract::{Body, Ids, OptionalBody};
use crate::rate_limit::{RateLimited, RateLimitedCaller};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use hookline_service::Service;
use hookline_service::publish::Published;
use serde::Deserialize;
use serde_json::Number;
use utoipa::ToSchema;

/// Values for the test reading; every field is optional and the rest is sample data.
/// Impilo's blood-pressure test sends `{patientId, systolic, diastolic, heartRate}`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TestReading {
    patient_id: Option<i64>,
    // Numbers are passed on as given (120 stays 120, not 120.0).
    #[schema(value_type = Option<f64>)]
    systolic: Option<Number>,
    #[schema(value_type = Option<f64>)]
    diastolic: Option<Number>,
    #[schema(value_type = Option<f64>)]
    heart_rate: Option<Number>,
    #[schema(value_type = Option<f64>)]
    glucose: Option<Number>,
    #[schema(value_type = Option<f64>)]
    spo2: Option<Number>,
    #[schema(value_type = Option<f64>)]
    weight: Option<Number>,
    #[schema(value_type = Option<f64>)]
    temperature: Option<Number>,
}

/// Publishes a sample reading (`blood-pressure-webhook`, `blood-glucose-webhook`,
/// `blood-oxygen-webhook`, `weight-webhook`, `temperature-webhook`, `ecg-webhook`) to the
/// caller's webhooks. Test events and pings share a per-account rate limit.
#[utoipa::path(post, path = "/test/{reading}", tag = "test events",
    params(("reading" = String, Path, description = "Which reading",
        example = "blood-pressure-webhook")),
    request_body(content = Option<TestReading>, description = "Optional values; the rest is sample data"),
    responses((status = 202, body = Published, description = "Published to the caller's webhooks"), Errors, RateLimited))]
pub async fn test_reading(
    State(service): State<Service>,
    RateLimitedCaller(account_id): RateLimitedCaller,
    Ids(reading): Ids<String>,
    OptionalBody(values): OptionalBody<TestReading>,
) -> ApiResult<(StatusCode, Json<Published>)> {
    let kind = reading
        .strip_suffix("-webhook")
        .ok_or(hookline_service::ServiceError::NotFound("test route"))?;
    let overrides = [
        ("patientId", values.patient_id.map(serde_json::Value::from)),
        ("systolic", values.systolic.map(serde_json::Value::from)),
        ("diastolic", values.diastolic.map(serde_json::Value::from)),
        ("heartRate", values.heart_rate.map(serde_json::Value::from)),
        ("glucose", values.glucose.map(serde_json::Value::from)),
        ("spo2", values.spo2.map(serde_json::Value::from)),
        ("weight", values.weight.map(serde_json::Value::from)),
        (
            "temperature",
            values.temperature.map(serde_json::Value::from),
        ),
    ]
    .into_iter()
    .filter_map(|(name, value)| value.map(|v| (name.to_string(), v)))
    .collect();
    let published = service
        .publish_test_reading(&account_id, kind, overrides)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(published)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestEvent {
    /// Any known event type.
    #[serde(rename = "type")]
    #[schema(example = "patient.created")]
    event_type: String,
    /// The payload; a realistic sample of the type when absent.
    #[schema(value_type = Option<Object>)]
    payload: Option<serde_json::Value>,
}

/// Publishes a test event of any known type to the caller's webhooks.
#[utoipa::path(post, path = "/test/webhook", tag = "test events", request_body = TestEvent,
    responses((status = 202, body = Published, description = "Published to the caller's webhooks"), Errors, RateLimited))]
pub async fn test_event(
    State(service): State<Service>,
    RateLimitedCaller(account_id): RateLimitedCaller,
    Body(input): Body<TestEvent>,
) -> ApiResult<(StatusCode, Json<Published>)> {
    let published = service
        .publish_test_event(&account_id, &input.event_type, input.payload)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(published)))
}
