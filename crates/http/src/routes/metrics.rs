//! `GET /metrics`: Prometheus text exposition, for admin and service principals.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use flywheel_core::Role;

use crate::error::{ApiError, ErrorBody};
use crate::extract::Authenticated;
use crate::state::AppState;

/// Prometheus metrics (OpenMetrics text). Needs an admin or service credential.
#[utoipa::path(get, path = "/metrics", tag = "observability", security(("bearer" = [])),
    responses(
        (status = 200, description = "Metrics", content_type = "application/openmetrics-text", body = String),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn metrics(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
) -> Result<Response, ApiError> {
    if !matches!(principal.role, Role::Admin | Role::Service) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "metrics need the admin or service role",
        ));
    }
    let text = state.metrics.render().map_err(|err| {
        ApiError::from(flywheel_services::ServiceError::Internal(anyhow_like(err)))
    })?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

fn anyhow_like(err: std::fmt::Error) -> anyhow::Error {
    anyhow::anyhow!("encoding metrics: {err}")
}
