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
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
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
