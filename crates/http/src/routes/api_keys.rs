//! `POST/GET /v1/api-keys`, `DELETE /v1/api-keys/{id}` (admin only).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use flywheel_services::NewApiKeyInput;
use flywheel_store::ApiKeyRecord;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, Authenticated};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKeyRequest {
    /// A label for people: what or who uses the key.
    name: String,
    /// `admin`, `partner`, `contractor` or `service`.
    role: String,
    /// The user or service the key speaks for; default `key-<prefix>`.
    #[serde(default)]
    subject: Option<String>,
    /// Another tenant (operator admins only); default the caller's.
    #[serde(default)]
    tenant_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyResponse {
    id: String,
    tenant_id: String,
    /// The visible part of the key (`fw_<prefix>_…`).
    prefix: String,
    name: String,
    role: String,
    subject: String,
    created_by: String,
    created_at: DateTime<Utc>,
    revoked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedApiKeyResponse {
    api_key: ApiKeyResponse,
    /// The whole key. Shown only in this response: store it now.
    key: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyList {
    api_keys: Vec<ApiKeyResponse>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct TenantQuery {
    /// Another tenant (operator admins only); default the caller's.
    tenant_id: Option<String>,
}

impl From<ApiKeyRecord> for ApiKeyResponse {
    fn from(record: ApiKeyRecord) -> ApiKeyResponse {
        ApiKeyResponse {
            id: record.id,
            tenant_id: record.tenant_id.to_string(),
            prefix: record.prefix.to_string(),
            name: record.name,
            role: record.role.to_string(),
            subject: record.subject.to_string(),
            created_by: record.created_by,
            created_at: record.created_at,
            revoked_at: record.revoked_at,
        }
    }
}

/// Creates an API key and returns it once.
#[utoipa::path(post, path = "/v1/api-keys", tag = "identity", security(("bearer" = [])),
    request_body = CreateApiKeyRequest,
    responses(
        (status = 201, body = CreatedApiKeyResponse),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_api_key(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    ApiJson(request): ApiJson<CreateApiKeyRequest>,
) -> Result<(StatusCode, Json<CreatedApiKeyResponse>), ApiError> {
    let created = state
        .identity
        .create_api_key(
            &principal,
            NewApiKeyInput {
                tenant_id: request.tenant_id,
                name: request.name,
                role: request.role,
                subject: request.subject,
            },
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedApiKeyResponse {
            api_key: created.record.into(),
            key: created.key.expose_secret().to_owned(),
        }),
    ))
}

/// Lists a tenant's keys (never their secrets), newest first.
#[utoipa::path(get, path = "/v1/api-keys", tag = "identity", security(("bearer" = [])),
    params(TenantQuery),
    responses(
        (status = 200, body = ApiKeyList),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_api_keys(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Query(query): Query<TenantQuery>,
) -> Result<Json<ApiKeyList>, ApiError> {
    let keys = state
        .identity
        .list_api_keys(&principal, query.tenant_id.as_deref())
        .await?;
    Ok(Json(ApiKeyList {
        api_keys: keys.into_iter().map(ApiKeyResponse::from).collect(),
    }))
}

/// Revokes a key; it stops working at once. Revoking twice is harmless.
#[utoipa::path(delete, path = "/v1/api-keys/{id}", tag = "identity", security(("bearer" = [])),
    params(("id" = String, Path, description = "The key's id"), TenantQuery),
    responses(
        (status = 200, body = ApiKeyResponse),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn revoke_api_key(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Path(id): Path<String>,
    Query(query): Query<TenantQuery>,
) -> Result<Json<ApiKeyResponse>, ApiError> {
    let record = state
        .identity
        .revoke_api_key(&principal, query.tenant_id.as_deref(), &id)
        .await?;
    Ok(Json(record.into()))
}
