//! `/healthz` (the process is alive) and `/readyz` (the database answers and is migrated; the
//! local models' states are reported as details and do not decide readiness).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct HealthResponse {
    status: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReadyResponse {
    status: &'static str,
    /// `sqlite` or `postgres`.
    database: &'static str,
    /// Local models and their state (`loading`, `ready`, `unavailable` with the reason and
    /// the fix). An unavailable model does not make the server unready: its requests get 503.
    models: Vec<ModelStatusResponse>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelStatusResponse {
    /// As addressed through the gateway, e.g. `local/smollm2-135m-instruct`.
    id: String,
    /// `chat` or `embedding`.
    kind: &'static str,
    state: &'static str,
    detail: Option<String>,
}

/// Liveness: answers 200 while the process runs.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "Alive", body = HealthResponse)))]
pub async fn healthz() -> Json<HealthResponse> {
    Json(HealthResponse { status: "ok" })
}

/// Readiness: 200 when the database is reachable and migrated, 503 otherwise.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "Ready", body = ReadyResponse),
        (status = 503, description = "Not ready", body = ErrorBody)))]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<ReadyResponse>, ApiError> {
    match state.store.ready().await {
        Ok(()) => Ok(Json(ReadyResponse {
            status: "ready",
            database: state.store.backend_name(),
            models: state
                .gateway
                .model_status()
                .into_iter()
                .map(|(provider, status)| ModelStatusResponse {
                    id: format!("{provider}/{}", status.name),
                    kind: status.kind,
                    state: status.state,
                    detail: status.detail,
                })
                .collect(),
        })),
        Err(err) => Err(ApiError {
            retry_after_secs: Some(1),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_ready",
                format!("not ready: {err}"),
            )
        }),
    }
}
