//! Callers: an API key in the configured header or `Authorization: Bearer`, or a browser
//! session (cookie plus its CSRF header, see `crate::portal`).

use crate::ApiError;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use hookline_model::Principal;
use hookline_service::{Service, ServiceError};

async fn principal(parts: &Parts, service: &Service) -> Result<Principal, ApiError> {
    let from_header = parts
        .headers
        .get(service.config().api_key_header.as_str())
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    let from_bearer = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    if let Some(key) = from_header.or(from_bearer).filter(|k| !k.is_empty()) {
        return Ok(service.authenticate(key).await?);
    }
    match crate::portal::session_principal(parts) {
        Some(session) => session,
        None => Err(ServiceError::Unauthorized.into()),
    }
}

/// The platform (admin key).
pub struct Admin;

impl FromRequestParts<Service> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, service: &Service) -> Result<Self, ApiError> {
        match principal(parts, service).await? {
            Principal::Admin => Ok(Admin),
            Principal::Account(_) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this route needs the admin key",
            )),
        }
    }
}

/// A customer account (account key); carries the account id.
pub struct AccountCaller(pub String);

impl FromRequestParts<Service> for AccountCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, service: &Service) -> Result<Self, ApiError> {
        match principal(parts, service).await? {
            Principal::Account(id) => Ok(AccountCaller(id)),
            Principal::Admin => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this route needs an account API key, not the admin key",
            )),
        }
    }
}

/// Either kind of caller: for the organization-style route, where the admin key acts for the
/// account named in the body and an account key for its own account.
pub struct AnyCaller(pub Principal);

impl FromRequestParts<Service> for AnyCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, service: &Service) -> Result<Self, ApiError> {
        Ok(AnyCaller(principal(parts, service).await?))
    }
}
