//! The one place where errors become HTTP responses: status, machine-readable code, log level.
//!
//! Internal details are logged once here and never sent to the client.

use std::any::Any;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use flywheel_core::FieldError;
use flywheel_services::ServiceError;
use serde::Serialize;
use utoipa::ToSchema;

/// `{"error": {"code": …, "message": …, "details": [{"field": …, "problem": …}]}}`
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorObject,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorObject {
    /// Machine-readable: `malformed_json`, `unauthenticated`, `forbidden`, `not_found`,
    /// `conflict`, `payload_too_large`, `unsupported_media_type`, `validation_failed`,
    /// `rate_limited`, `unavailable`, `internal`, …
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<ErrorDetail>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    pub field: String,
    pub problem: String,
}

/// An error on its way to the client.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Vec<FieldError>,
    pub retry_after_secs: Option<u64>,
    /// `(limit, remaining, reset unix seconds)` for the `x-ratelimit-*` headers.
    pub rate_limit: Option<(u64, u64, i64)>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            details: Vec::new(),
            retry_after_secs: None,
            rate_limit: None,
        }
    }

    pub fn validation(details: Vec<FieldError>) -> ApiError {
        ApiError {
            details,
            ..ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                "the request has invalid fields; see details",
            )
        }
    }

    pub fn unauthenticated() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "missing or invalid credentials: send `Authorization: Bearer <API key or token>`",
        )
    }

    /// The code for a status when nothing more specific is known (used to normalise bodies
    /// produced outside our handlers, such as 405 from the router).
    pub fn code_for_status(status: StatusCode) -> &'static str {
        match status {
            StatusCode::BAD_REQUEST => "bad_request",
            StatusCode::UNAUTHORIZED => "unauthenticated",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
            StatusCode::CONFLICT => "conflict",
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            StatusCode::UNPROCESSABLE_ENTITY => "validation_failed",
            StatusCode::TOO_MANY_REQUESTS => "rate_limited",
            StatusCode::SERVICE_UNAVAILABLE => "unavailable",
            StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => "timeout",
            status if status.is_client_error() => "bad_request",
            _ => "internal",
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(err: ServiceError) -> ApiError {
        match err {
            ServiceError::Validation(errors) => ApiError::validation(errors.errors().to_vec()),
            ServiceError::Unauthenticated => ApiError::unauthenticated(),
            ServiceError::Forbidden(message) => {
                ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
            }
            ServiceError::NotFound(what) => ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("{what} not found"),
            ),
            ServiceError::Conflict(message) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", message)
            }
            ServiceError::Unavailable(detail) => {
                tracing::warn!(error = %detail, "dependency unavailable");
                ApiError {
                    retry_after_secs: Some(1),
                    ..ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "unavailable",
                        "a backing service is unavailable; retry shortly",
                    )
                }
            }
            ServiceError::Overloaded(detail) => ApiError {
                retry_after_secs: Some(1),
                ..ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "overloaded",
                    format!("{detail}; retry after the Retry-After delay"),
                )
            },
            ServiceError::Disabled(detail) => {
                ApiError::new(StatusCode::FORBIDDEN, "feature_disabled", detail)
            }
            ServiceError::TooLarge(detail) => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "batch_too_large", detail)
            }
            ServiceError::RateLimited(limited) => ApiError {
                retry_after_secs: Some(limited.retry_after_secs.max(1)),
                rate_limit: Some((limited.limit, limited.remaining, limited.reset_unix)),
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    limited.message,
                )
            },
            ServiceError::Upstream(failure) => {
                let (status, code) = match failure.class {
                    "rate_limited" => (StatusCode::TOO_MANY_REQUESTS, "upstream_rate_limited"),
                    "timeout" => (StatusCode::GATEWAY_TIMEOUT, "upstream_timeout"),
                    "invalid_request" => (StatusCode::BAD_REQUEST, "upstream_invalid_request"),
                    "content_filter" => (StatusCode::BAD_REQUEST, "content_filter"),
                    "model_not_found" => (StatusCode::NOT_FOUND, "model_not_found"),
                    "authentication" => (StatusCode::BAD_GATEWAY, "upstream_authentication"),
                    "overloaded" => (StatusCode::SERVICE_UNAVAILABLE, "overloaded"),
                    "unavailable" => (StatusCode::SERVICE_UNAVAILABLE, "model_unavailable"),
                    _ => (StatusCode::BAD_GATEWAY, "upstream_error"),
                };
                tracing::warn!(provider = %failure.provider, class = failure.class, upstream_status = ?failure.upstream_status, error = %failure.message, "model provider failed");
                let retry_after = match status {
                    StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => Some(
                        failure
                            .retry_after
                            .map(|pause| pause.as_secs().max(1))
                            .unwrap_or(1),
                    ),
                    _ => None,
                };
                ApiError {
                    retry_after_secs: retry_after,
                    ..ApiError::new(status, code, failure.message)
                }
            }
            ServiceError::Query { code, message } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
            }
            ServiceError::Internal(err) => {
                tracing::error!(error = ?err, "internal error");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; the server log has details under this request id",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorObject {
                code: self.code.to_owned(),
                message: self.message,
                details: self
                    .details
                    .into_iter()
                    .map(|detail| ErrorDetail {
                        field: detail.field,
                        problem: detail.problem,
                    })
                    .collect(),
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some((limit, remaining, reset)) = self.rate_limit {
            let headers = response.headers_mut();
            headers.insert("x-ratelimit-limit", HeaderValue::from(limit));
            headers.insert("x-ratelimit-remaining", HeaderValue::from(remaining));
            headers.insert("x-ratelimit-reset", HeaderValue::from(reset));
        }
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// A panic in a handler becomes a logged 500 with the usual body, never a dropped connection.
pub fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    tracing::error!(panic = %detail, "handler panicked");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal error; the server log has details",
    )
    .into_response()
}
