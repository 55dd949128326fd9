//! `GET /v1/me`: who the credential belongs to.

use axum::Json;
use flywheel_core::AuthMethod;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ErrorBody;
use crate::extract::Authenticated;

#[derive(Debug, Serialize, ToSchema)]
pub struct MeResponse {
    tenant_id: String,
    subject: String,
    /// `admin`, `partner`, `contractor` or `service`.
    role: String,
    operator: bool,
    /// `api_key` or `jwt`.
    auth: &'static str,
}

/// The authenticated principal.
#[utoipa::path(get, path = "/v1/me", tag = "identity", security(("bearer" = [])),
    responses((status = 200, body = MeResponse), (status = 401, body = ErrorBody)))]
pub async fn me(Authenticated(principal): Authenticated) -> Json<MeResponse> {
    Json(MeResponse {
        tenant_id: principal.tenant_id.to_string(),
        subject: principal.subject.to_string(),
        role: principal.role.to_string(),
        operator: principal.operator,
        auth: match principal.auth {
            AuthMethod::ApiKey { .. } => "api_key",
            AuthMethod::Jwt => "jwt",
            AuthMethod::LocalCli => "local_cli",
        },
    })
}
