use crate::ports::PortError;
use hookline_model::ValidationError;
use thiserror::Error;

/// What a use case can answer instead of a result. The API maps each to one status code.
#[derive(Debug, Error)]
pub enum ServiceError {
    /// Bad input (400), naming the field.
    #[error(transparent)]
    Validation(#[from] ValidationError),
    /// Not found, or another account's (404).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// No valid API key (401).
    #[error("a valid API key is required")]
    Unauthorized,
    /// A valid key that may not do this (403).
    #[error("{0}")]
    Forbidden(&'static str),
    /// The name or id is taken (409).
    #[error("{0}")]
    Conflict(String),
    /// A payload over its limit (413).
    #[error("{field}: larger than {limit} bytes")]
    TooLarge { field: &'static str, limit: usize },
    /// Hookline's backlog is past its bound (503 with `Retry-After`): publish again later.
    #[error("too much work is waiting to be delivered; publish again in {retry_after_secs} s")]
    Busy { retry_after_secs: u64 },
    /// A backend failed (500); never caused by input.
    #[error(transparent)]
    Port(#[from] PortError),
}

pub type ServiceResult<T> = Result<T, ServiceError>;
