//! `POST/GET /v1/provider-keys`, `DELETE /v1/provider-keys/{id}`: users' own provider keys
//! (bring your own key). A stored key is never returned — only its provider, name and last
//! four characters.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use flywheel_services::{NewProviderKeyInput, ProviderKeyInfo};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, Authenticated};
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProviderKeyRequest {
    /// A configured provider name: `openai`, `anthropic`, `gemini`, `bedrock`, or an
    /// OpenAI-compatible server's name. For Bedrock the key is `ACCESS_KEY_ID:SECRET_ACCESS_KEY`.
    provider: String,
    /// A label for people.
    name: String,
    /// The key. Encrypted at rest; never shown again.
    key: String,
    /// Models this key may be used for; empty or absent means any.
    #[serde(default)]
    allowed_models: Vec<String>,
    /// Most tokens per calendar month (UTC) through this key.
    monthly_token_limit: Option<u64>,
    /// Most USD per calendar month (UTC) through this key, priced with the price table.
    monthly_usd_limit: Option<f64>,
}

// The request carries a key: never print it.
impl std::fmt::Debug for CreateProviderKeyRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateProviderKeyRequest")
            .field("provider", &self.provider)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderKeyResponse {
    id: String,
    provider: String,
    name: String,
    owner: String,
    /// The key's last four characters, to recognise it.
    last_four: String,
    allowed_models: Vec<String>,
    monthly_token_limit: Option<u64>,
    monthly_usd_limit: Option<f64>,
    created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderKeyList {
    provider_keys: Vec<ProviderKeyResponse>,
}

impl From<ProviderKeyInfo> for ProviderKeyResponse {
    fn from(info: ProviderKeyInfo) -> ProviderKeyResponse {
        ProviderKeyResponse {
            id: info.id,
            provider: info.provider,
            name: info.name,
            owner: info.owner.to_string(),
            last_four: info.last_four,
            allowed_models: info.allowed_models,
            monthly_token_limit: info.monthly_token_limit,
            monthly_usd_limit: info.monthly_usd_limit,
            created_at: info.created_at,
        }
    }
}

/// Stores one of the caller's own provider keys.
#[utoipa::path(post, path = "/v1/provider-keys", tag = "gateway", security(("bearer" = [])),
    request_body = CreateProviderKeyRequest,
    responses((status = 201, body = ProviderKeyResponse), (status = 401, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_provider_key(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    ApiJson(request): ApiJson<CreateProviderKeyRequest>,
) -> Result<(StatusCode, Json<ProviderKeyResponse>), ApiError> {
    let info = state
        .provider_keys
        .create(
            &principal,
            NewProviderKeyInput {
                provider: request.provider,
                name: request.name,
                key: SecretString::from(request.key),
                allowed_models: request.allowed_models,
                monthly_token_limit: request.monthly_token_limit,
                monthly_usd_limit: request.monthly_usd_limit,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(info.into())))
}

/// Lists the caller's provider keys (an admin: every key of its tenant), newest first.
#[utoipa::path(get, path = "/v1/provider-keys", tag = "gateway", security(("bearer" = [])),
    responses((status = 200, body = ProviderKeyList), (status = 401, body = ErrorBody)))]
pub async fn list_provider_keys(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
) -> Result<Json<ProviderKeyList>, ApiError> {
    let keys = state.provider_keys.list(&principal).await?;
    Ok(Json(ProviderKeyList {
        provider_keys: keys.into_iter().map(ProviderKeyResponse::from).collect(),
    }))
}

/// Deletes one of the caller's provider keys (an admin: any of its tenant).
#[utoipa::path(delete, path = "/v1/provider-keys/{id}", tag = "gateway", security(("bearer" = [])),
    params(("id" = String, Path, description = "The provider key's id")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_provider_key(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.provider_keys.delete(&principal, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
