//! How a webhook's delivery requests differ from Hookline's default (issue 15 item 6): the
//! body's format, static headers of the customer's choosing, and, for webhooks made through the
//! Infermedica-style routes, the header its token travels in.

use crate::envelope::PayloadFormat;
use crate::error::ValidationError;
use crate::keys::validate_header_text;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Stored inside the webhook document; absent (all defaults) for webhooks that use none of it,
/// and for webhooks stored before it existed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestOptions {
    #[serde(default, skip_serializing_if = "PayloadFormat::is_standard")]
    pub format: PayloadFormat,
    /// Added to every delivery and ping. Values may be credentials: sealed at rest, never
    /// logged, shown only in the response that set them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// The header carrying the webhook's token, when not the deployment's token header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_header: Option<String>,
}

impl RequestOptions {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// The header Infermedica's guide sends a webhook's token in; webhooks made through the
/// Infermedica-style routes use it. Reserved on every webhook, so no custom header takes it.
pub const INFERMEDICA_TOKEN_HEADER: &str = "x-webhook-infermedica-token";

pub const MAX_CUSTOM_HEADERS: usize = 20;
pub const MAX_HEADER_NAME_BYTES: usize = 64;
pub const MAX_HEADER_VALUE_BYTES: usize = 1024;
/// All names and values together.
pub const MAX_CUSTOM_HEADERS_BYTES: usize = 8 * 1024;

/// Headers Hookline sets on a delivery or that HTTP itself owns (framing, connection, the
/// client). Any name starting with `webhook-` is reserved as well (Standard Webhooks).
/// The deployment's secret and token headers are added by the caller.
pub const RESERVED_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "content-encoding",
    "transfer-encoding",
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "upgrade",
    "te",
    "trailer",
    "expect",
    "user-agent",
    "accept-encoding",
];

/// An RFC 7230 `token`: what a header name may be.
pub fn is_header_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Whether `name` is one of Hookline's own headers: [`RESERVED_HEADERS`], `webhook-*`, or one
/// of `also_reserved` (the deployment's secret and token headers).
pub fn is_reserved_header(name: &str, also_reserved: &[&str]) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.starts_with("webhook-")
        || RESERVED_HEADERS.contains(&lower.as_str())
        || lower == INFERMEDICA_TOKEN_HEADER
        || also_reserved.iter().any(|r| r.eq_ignore_ascii_case(&lower))
}

/// Checks custom headers: names are RFC 7230 tokens of at most 64 bytes, none of Hookline's
/// own, none given twice (names ignore case); values are printable ASCII of 1 to 1024 bytes;
/// at most 20 headers and 8 KiB in all. The error names the header (never its value).
pub fn validate_custom_headers(
    headers: &BTreeMap<String, String>,
    also_reserved: &[&str],
) -> Result<(), ValidationError> {
    if headers.len() > MAX_CUSTOM_HEADERS {
        return Err(ValidationError::new(
            "headers",
            format!("at most {MAX_CUSTOM_HEADERS} headers"),
        ));
    }
    let mut total = 0;
    let mut seen: Vec<String> = Vec::with_capacity(headers.len());
    for (name, value) in headers {
        if !is_header_token(name) || name.len() > MAX_HEADER_NAME_BYTES {
            let shown: String = name.chars().take(MAX_HEADER_NAME_BYTES).collect();
            return Err(ValidationError::new(
                "headers",
                format!(
                    "{shown:?} is not a valid header name (1 to {MAX_HEADER_NAME_BYTES} letters, digits or !#$%&'*+-.^_`|~)"
                ),
            ));
        }
        let field = format!("headers.{name}");
        if is_reserved_header(name, also_reserved) {
            return Err(ValidationError::new(
                field,
                "is set by Hookline and cannot be overridden",
            ));
        }
        let lower = name.to_ascii_lowercase();
        if seen.contains(&lower) {
            return Err(ValidationError::new(
                field,
                "is given twice (header names ignore case)",
            ));
        }
        seen.push(lower);
        validate_header_text(&field, value, MAX_HEADER_VALUE_BYTES, true)?;
        total += name.len() + value.len();
    }
    if total > MAX_CUSTOM_HEADERS_BYTES {
        return Err(ValidationError::new(
            "headers",
            format!("must be at most {MAX_CUSTOM_HEADERS_BYTES} bytes in all"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn field_of(pairs: &[(&str, &str)]) -> String {
        validate_custom_headers(&headers(pairs), &["X-Webhook-Token"])
            .unwrap_err()
            .field
    }

    #[test]
    fn custom_headers_are_checked_and_named() {
        assert!(
            validate_custom_headers(
                &headers(&[("X-Tenant", "t-1"), ("Authorization", "Basic abc=")]),
                &[]
            )
            .is_ok()
        );
        assert_eq!(
            field_of(&[("Webhook-Signature", "x")]),
            "headers.Webhook-Signature"
        );
        assert_eq!(field_of(&[("content-type", "x")]), "headers.content-type");
        assert_eq!(field_of(&[("HOST", "x")]), "headers.HOST");
        assert_eq!(
            field_of(&[("x-webhook-token", "x")]),
            "headers.x-webhook-token"
        );
        assert_eq!(field_of(&[("Bad Name", "x")]), "headers");
        assert_eq!(
            field_of(&[("X-Line", "a\r\nInjected: 1")]),
            "headers.X-Line"
        );
        assert_eq!(field_of(&[("X-Empty", "")]), "headers.X-Empty");
        assert_eq!(field_of(&[("X-A", "1"), ("x-a", "2")]), "headers.x-a");
        let many: Vec<(String, String)> = (0..21).map(|i| (format!("X-{i}"), "v".into())).collect();
        assert_eq!(
            validate_custom_headers(&many.into_iter().collect(), &[])
                .unwrap_err()
                .field,
            "headers"
        );
        let message = validate_custom_headers(&headers(&[("X-Line", "secret\n")]), &[])
            .unwrap_err()
            .message;
        assert!(!message.contains("secret"), "{message}");
    }
}
