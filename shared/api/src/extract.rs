//! Request extractors whose rejections are API errors naming what is wrong.

use crate::ApiError;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use hookline_model::limits::MAX_REQUEST_BODY_BYTES;
use serde::de::DeserializeOwned;

/// `Json<T>`, answering 400 (naming the field serde names) or 413 instead of axum's plain text.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(Body(value)),
            Err(rejection) => Err(json_error(rejection)),
        }
    }
}

/// A JSON rejection as an API error: 415, 413, or a 400 naming the field.
pub fn json_error(rejection: JsonRejection) -> ApiError {
    match rejection {
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
        JsonRejection::JsonDataError(e) => ApiError::bad_request(field_first(&e.body_text())),
        JsonRejection::JsonSyntaxError(e) => {
            ApiError::bad_request(format!("body is not valid JSON: {}", e.body_text()))
        }
        other => ApiError::bad_request(other.body_text()),
    }
}

/// Like [`Body`], but a comma before a closing `}` or `]` is allowed: the Infermedica guide's
/// own example requests have one (`{"authorization_token": "...",}`), and they must work as
/// written. Anything else that is not JSON is still refused.
pub struct LenientBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for LenientBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let (parts, body) = request.into_parts();
        let bytes = axum::body::to_bytes(body, MAX_REQUEST_BODY_BYTES)
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "the request body is larger than 1 MiB",
                )
            })?;
        let cleaned = without_trailing_commas(&bytes);
        let request = Request::from_parts(parts, axum::body::Body::from(cleaned));
        Body::<T>::from_request(request, state)
            .await
            .map(|Body(value)| LenientBody(value))
    }
}

/// `json` without the commas that stand right before a closing `}` or `]` (outside strings).
pub fn without_trailing_commas(json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for (i, &b) in json.iter().enumerate() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else if b == b'"' {
            in_string = true;
        } else if b == b',' {
            let next = json[i + 1..].iter().find(|c| !c.is_ascii_whitespace());
            if matches!(next, Some(b'}' | b']')) {
                continue;
            }
        }
        out.push(b);
    }
    out
}

/// Like [`Body`], but an empty body (no content at all) is `T::default()`: for requests whose
/// fields are all optional, such as `POST /webhook-secret`.
pub struct OptionalBody<T>(pub T);

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for OptionalBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let (parts, body) = request.into_parts();
        let bytes = axum::body::to_bytes(body, MAX_REQUEST_BODY_BYTES)
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "the request body is larger than 1 MiB",
                )
            })?;
        if bytes.is_empty() {
            return Ok(OptionalBody(T::default()));
        }
        let request = Request::from_parts(parts, axum::body::Body::from(bytes));
        Body::<T>::from_request(request, state)
            .await
            .map(|Body(value)| OptionalBody(value))
    }
}

/// The query string (its documented parameters, as strings); a malformed one is a 400 in the
/// API's error shape.
pub struct Params<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(params)| Params(params))
            .map_err(|e| ApiError::bad_request(format!("invalid query string: {}", e.body_text())))
    }
}

/// Path parameters; one that cannot be read (such as invalid UTF-8) is a 404, as an unknown id.
pub struct Ids<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Ids<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(ids)| Ids(ids))
            .map_err(|_| ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such resource"))
    }
}

/// Rewrites serde's message so it starts with the field at fault: `url: is required`,
/// `active: invalid type: string "yes", expected a boolean at line 1 column 15`.
fn field_first(axum_text: &str) -> String {
    match field_and_message(axum_text) {
        (Some(field), message) => format!("{field}: {message}"),
        (None, message) => message,
    }
}

/// Splits axum's text of a JSON data error into the field at fault (its path, such as
/// `payload` or `events[2].type`, when serde knows one) and what is wrong with it.
pub fn field_and_message(axum_text: &str) -> (Option<String>, String) {
    let text = axum_text
        .strip_prefix("Failed to deserialize the JSON body into the target type: ")
        .unwrap_or(axum_text);
    let (path, rest) = match text.strip_prefix(".: ") {
        Some(rest) => (None, rest),
        None => match text.split_once(": ") {
            Some((path, rest))
                if !path.is_empty()
                    && path.bytes().all(|b| {
                        b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'[' | b']')
                    }) =>
            {
                (Some(path), rest)
            }
            _ => (None, text),
        },
    };
    let quoted = |rest: &str| rest.split('`').nth(1).map(str::to_string);
    // serde_path_to_error sometimes already ends the path with the unknown field itself.
    let within = |field: String| match path {
        Some(path) if path == field || path.ends_with(&format!(".{field}")) => path.to_string(),
        Some(path) => format!("{path}.{field}"),
        None => field,
    };
    if let Some(field) = rest.strip_prefix("missing field ").and_then(quoted) {
        return (Some(within(field)), "is required".into());
    }
    if let Some(field) = rest.strip_prefix("unknown field ").and_then(quoted) {
        return (Some(within(field)), "is not a field of this request".into());
    }
    (path.map(str::to_string), rest.to_string())
}

#[cfg(test)]
mod tests {
    use super::{field_and_message, field_first, without_trailing_commas};

    #[test]
    fn only_commas_before_a_closing_bracket_outside_strings_go() {
        let clean = |s: &str| String::from_utf8(without_trailing_commas(s.as_bytes())).unwrap();
        assert_eq!(
            clean("{\n\"authorization_token\": \"a,}\",\n}"),
            "{\n\"authorization_token\": \"a,}\"\n}"
        );
        assert_eq!(
            clean(r#"{"a":[1,2, ],"b":"\",]"}"#),
            r#"{"a":[1,2 ],"b":"\",]"}"#
        );
        assert_eq!(clean(r#"{"a":1,"b":2}"#), r#"{"a":1,"b":2}"#);
    }

    #[test]
    fn messages_start_with_the_field() {
        let prefix = "Failed to deserialize the JSON body into the target type: ";
        assert_eq!(
            field_first(&format!("{prefix}missing field `url` at line 1 column 2")),
            "url: is required"
        );
        assert_eq!(
            field_first(&format!(
                "{prefix}unknown field `urll`, expected one of `url`, `type` at line 1 column 7"
            )),
            "urll: is not a field of this request"
        );
        assert!(
            field_first(&format!(
                "{prefix}active: invalid type: string \"yes\", expected a boolean"
            ))
            .starts_with("active: ")
        );
        assert_eq!(
            field_and_message(&format!("{prefix}.: invalid type: integer `1`, expected x")),
            (None, "invalid type: integer `1`, expected x".to_string())
        );
        assert_eq!(
            field_and_message(&format!("{prefix}payload: invalid type: string \"a\"")),
            (
                Some("payload".into()),
                "invalid type: string \"a\"".to_string()
            )
        );
        assert_eq!(
            field_and_message("invalid type: sequence, expected a map"),
            (None, "invalid type: sequence, expected a map".to_string())
        );
    }
}
