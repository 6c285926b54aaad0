//! Request extractors whose rejections are API errors naming what is wrong.

use crate::ApiError;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

/// `Json<T>`, answering 400 (naming the field serde names) or 413 instead of axum's plain text.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(Body(value)),
            Err(rejection) => Err(match rejection {
                JsonRejection::MissingJsonContentType(_) => ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    "send the body as JSON with Content-Type: application/json",
                ),
                JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                    ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "payload_too_large",
                        "the request body is larger than 1 MiB",
                    )
                }
                JsonRejection::JsonDataError(e) => {
                    ApiError::bad_request(format!("invalid body: {}", e.body_text()))
                }
                JsonRejection::JsonSyntaxError(e) => {
                    ApiError::bad_request(format!("body is not valid JSON: {}", e.body_text()))
                }
                other => ApiError::bad_request(other.body_text()),
            }),
        }
    }
}
