//! `POST/GET /v1/tenants`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use flywheel_core::Tenant;
use flywheel_services::NewTenantInput;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, Authenticated};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenantRequest {
    /// Lower-case slug, 2–63 characters: letters, digits, '-'.
    id: String,
    name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantResponse {
    id: String,
    name: String,
    operator: bool,
    created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantList {
    tenants: Vec<TenantResponse>,
}

impl From<Tenant> for TenantResponse {
    fn from(tenant: Tenant) -> TenantResponse {
        TenantResponse {
            id: tenant.id.to_string(),
            name: tenant.name,
            operator: tenant.operator,
            created_at: tenant.created_at,
        }
    }
}

/// Creates a tenant. Only admins of the operator tenant may.
#[utoipa::path(post, path = "/v1/tenants", tag = "identity", security(("bearer" = [])),
    request_body = CreateTenantRequest,
    responses(
        (status = 201, body = TenantResponse),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_tenant(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    ApiJson(request): ApiJson<CreateTenantRequest>,
) -> Result<(StatusCode, Json<TenantResponse>), ApiError> {
    let tenant = state
        .identity
        .create_tenant(
            &principal,
            NewTenantInput {
                id: request.id,
                name: request.name,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(tenant.into())))
}

/// Lists tenants: all of them for operator admins, the caller's own for other admins.
#[utoipa::path(get, path = "/v1/tenants", tag = "identity", security(("bearer" = [])),
    responses(
        (status = 200, body = TenantList),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_tenants(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
) -> Result<Json<TenantList>, ApiError> {
    let tenants = state.identity.list_tenants(&principal).await?;
    Ok(Json(TenantList {
        tenants: tenants.into_iter().map(TenantResponse::from).collect(),
    }))
}
