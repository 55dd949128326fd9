//! What can go wrong talking to a provider, classified so the gateway can decide to retry,
//! fall back or answer, and so metrics count errors by class.

use std::time::Duration;

/// The kind of failure. Decides retries (`retryable`) and fallback (`fallback_eligible`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// The connection could not be made or broke before a response.
    Connect,
    /// No answer (or no next stream event) within the provider's timeout.
    Timeout,
    /// The provider answered 429.
    RateLimited,
    /// The provider answered 5xx (or reported it is overloaded).
    Server,
    /// The provider refused the request as malformed (400/404/422 on a valid model).
    InvalidRequest,
    /// The credential is missing, invalid (401) or lacks permission (403).
    Authentication,
    /// The model does not exist at this provider.
    ModelNotFound,
    /// The provider's safety system blocked the request or answer.
    ContentFilter,
    /// The provider's answer could not be understood (a protocol violation).
    InvalidResponse,
    /// A local model's queue is full.
    Overloaded,
    /// The model cannot answer at all right now: a local model that is missing, still
    /// loading or failed to load. The message says what to do.
    Unavailable,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Connect => "connect",
            ErrorClass::Timeout => "timeout",
            ErrorClass::RateLimited => "rate_limited",
            ErrorClass::Server => "server",
            ErrorClass::InvalidRequest => "invalid_request",
            ErrorClass::Authentication => "authentication",
            ErrorClass::ModelNotFound => "model_not_found",
            ErrorClass::ContentFilter => "content_filter",
            ErrorClass::InvalidResponse => "invalid_response",
            ErrorClass::Overloaded => "overloaded",
            ErrorClass::Unavailable => "unavailable",
        }
    }

    /// Worth trying the same provider again after a pause: connect errors, 429 and 5xx.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            ErrorClass::Connect
                | ErrorClass::RateLimited
                | ErrorClass::Server
                | ErrorClass::Overloaded
        )
    }

    /// Worth trying the next entry of a fallback chain. A malformed request or a blocked
    /// prompt would fail the same way everywhere, so those are answered at once.
    pub fn fallback_eligible(self) -> bool {
        !matches!(self, ErrorClass::InvalidRequest | ErrorClass::ContentFilter)
    }
}

/// A failed provider call. `message` never contains a credential: adapters build it from the
/// provider's error body, which they scrub of the key they sent.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{provider}: {message}")]
pub struct ProviderError {
    pub provider: String,
    pub class: ErrorClass,
    /// The upstream HTTP status, when there was one.
    pub status: Option<u16>,
    pub message: String,
    /// The provider's `Retry-After`, when it sent one.
    pub retry_after: Option<Duration>,
}

impl ProviderError {
    pub fn new(provider: &str, class: ErrorClass, message: impl Into<String>) -> ProviderError {
        ProviderError {
            provider: provider.to_owned(),
            class,
            status: None,
            message: message.into(),
            retry_after: None,
        }
    }

    /// Classifies an HTTP error answer by status code.
    pub fn from_status(
        provider: &str,
        status: u16,
        message: impl Into<String>,
        retry_after: Option<Duration>,
    ) -> ProviderError {
        let class = match status {
            401 | 403 => ErrorClass::Authentication,
            404 => ErrorClass::ModelNotFound,
            408 => ErrorClass::Timeout,
            429 => ErrorClass::RateLimited,
            500..=599 => ErrorClass::Server,
            _ => ErrorClass::InvalidRequest,
        };
        ProviderError {
            provider: provider.to_owned(),
            class,
            status: Some(status),
            message: message.into(),
            retry_after,
        }
    }

    /// Classifies a transport error from reqwest.
    pub fn from_reqwest(provider: &str, err: &reqwest::Error) -> ProviderError {
        let class = if err.is_timeout() {
            ErrorClass::Timeout
        } else if err.is_decode() {
            ErrorClass::InvalidResponse
        } else {
            ErrorClass::Connect
        };
        // reqwest's Display names the URL but never headers, so no credential can leak here.
        ProviderError::new(provider, class, format!("request failed: {err}"))
    }

    pub fn invalid_response(provider: &str, message: impl Into<String>) -> ProviderError {
        ProviderError::new(provider, ErrorClass::InvalidResponse, message)
    }
}

/// A request parameter the chosen provider cannot honour (answered as 422 naming it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{parameter}` is not supported by provider {provider}: {reason}")]
pub struct Unsupported {
    pub provider: String,
    pub parameter: String,
    pub reason: String,
}

impl Unsupported {
    pub fn new(provider: &str, parameter: &str, reason: impl Into<String>) -> Unsupported {
        Unsupported {
            provider: provider.to_owned(),
            parameter: parameter.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Removes every occurrence of `secret` from `text` (used on upstream error bodies, which
/// sometimes echo the key that was sent).
pub fn scrub(text: &str, secret: &str) -> String {
    if secret.len() < 4 {
        return text.to_owned();
    }
    text.replace(secret, "[redacted]")
}
