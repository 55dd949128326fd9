//! The error every use case returns; the HTTP layer maps each variant to a status in one place.

use flywheel_core::ValidationErrors;
use flywheel_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("invalid input: {0}")]
    Validation(ValidationErrors),
    #[error("missing or invalid credentials")]
    Unauthenticated,
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("conflict: {0}")]
    Conflict(String),
    /// A dependency (the database) cannot serve the request right now; retrying later may work.
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// Too much work queued; the caller should retry after a short pause.
    #[error("overloaded: {0}")]
    Overloaded(String),
    /// The operator switched this capability off in configuration.
    #[error("disabled: {0}")]
    Disabled(String),
    /// The request is well-formed but too large to accept (e.g. a batch over the limit).
    #[error("too large: {0}")]
    TooLarge(String),
    /// A budget (requests, tokens or dollars per window) is used up.
    #[error("rate limited: {}", .0.message)]
    RateLimited(RateLimited),
    /// The model provider failed after retries and fallback.
    #[error("upstream {}: {}", .0.class, .0.message)]
    Upstream(UpstreamFailure),
    /// A query over the lake was refused or failed by its own fault (bad SQL, over a limit);
    /// `code` says which (`invalid_query`, `query_timeout`, `query_too_large`).
    #[error("{code}: {message}")]
    Query { code: &'static str, message: String },
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Which budget refused a request, for the 429 and its `x-ratelimit-*` headers.
#[derive(Debug, Clone)]
pub struct RateLimited {
    pub message: String,
    pub limit: u64,
    pub remaining: u64,
    /// When the window resets (Unix seconds).
    pub reset_unix: i64,
    pub retry_after_secs: u64,
}

/// A provider failure as the caller sees it: its class decides the status.
#[derive(Debug, Clone)]
pub struct UpstreamFailure {
    /// `flywheel_llm::ErrorClass::as_str`.
    pub class: &'static str,
    pub provider: String,
    pub upstream_status: Option<u16>,
    /// Never contains a credential.
    pub message: String,
    pub retry_after: Option<std::time::Duration>,
}

impl From<ValidationErrors> for ServiceError {
    fn from(errors: ValidationErrors) -> ServiceError {
        ServiceError::Validation(errors)
    }
}

impl From<StoreError> for ServiceError {
    fn from(err: StoreError) -> ServiceError {
        match err {
            StoreError::Conflict { constraint } => ServiceError::Conflict(constraint),
            StoreError::Unavailable(inner) => {
                ServiceError::Unavailable(format!("database: {inner}"))
            }
            StoreError::NotReady => ServiceError::Unavailable(
                "database migrations have not been applied yet".to_owned(),
            ),
            other => ServiceError::Internal(anyhow::Error::new(other)),
        }
    }
}
