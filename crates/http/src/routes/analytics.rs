//! SQL over the lake (`POST /v1/analytics/sql`), the plan's reports (`GET /v1/reports/…`)
//! and the derived datasets (`GET /v1/datasets`).

use axum::extract::{Query, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use flywheel_analytics::output::{self, Format};
use flywheel_core::ValidationErrors;
use flywheel_services::analytics::Report;
use flywheel_services::ServiceError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, Authenticated};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlRequest {
    /// One read-only statement (SELECT, WITH, EXPLAIN, SHOW …) over the tables `interactions`,
    /// `outcomes_latest` and `conversations` of the caller's tenant.
    sql: String,
    /// `json` (default), `csv` or `parquet`; `?format=` works too.
    format: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SqlParams {
    /// `json` (default), `csv` or `parquet`.
    format: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Column {
    name: String,
    /// The Arrow type, e.g. `Int64`, `Utf8View`, `Timestamp(ms, "UTC")`.
    r#type: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SqlResponse {
    columns: Vec<Column>,
    /// One object per row, keyed by column name.
    #[schema(value_type = Vec<Object>)]
    rows: Value,
    row_count: usize,
    /// More rows existed than `analytics.max_rows`; aggregate more or download as CSV/Parquet.
    truncated: bool,
    elapsed_ms: u64,
}

fn parse_format(raw: Option<&str>) -> Result<Format, ApiError> {
    match raw {
        None => Ok(Format::Json),
        Some(text) => Format::parse(text).ok_or_else(|| {
            let mut errors = ValidationErrors::new();
            errors.push(
                "format",
                format!("'{text}' is not a format; use json, csv or parquet"),
            );
            ApiError::from(ServiceError::from(errors))
        }),
    }
}

/// Runs a read-only SQL query over the caller's tenant's lake (admins).
#[utoipa::path(post, path = "/v1/analytics/sql", tag = "analytics", security(("bearer" = [])),
    params(SqlParams), request_body = SqlRequest,
    responses((status = 200, body = SqlResponse, description = "JSON rows, or a CSV / Parquet download"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "the SQL engine's message: invalid_query, query_timeout or query_too_large")))]
pub async fn sql(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Query(params): Query<SqlParams>,
    ApiJson(body): ApiJson<SqlRequest>,
) -> Result<Response, ApiError> {
    let format = parse_format(params.format.as_deref().or(body.format.as_deref()))?;
    let result = state.analytics.sql(&principal, &body.sql, format).await?;
    let encoded = output::encode(&result, format)
        .map_err(|err| ServiceError::Internal(anyhow::Error::new(err)))?;
    if format == Format::Json {
        let rows: Value = serde_json::from_slice(&encoded)
            .map_err(|err| ServiceError::Internal(anyhow::Error::new(err)))?;
        let columns = result
            .schema
            .fields()
            .iter()
            .map(|field| Column {
                name: field.name().clone(),
                r#type: field.data_type().to_string(),
            })
            .collect();
        return Ok(Json(SqlResponse {
            columns,
            rows,
            row_count: result.rows,
            truncated: result.truncated,
            elapsed_ms: result.elapsed.as_millis() as u64,
        })
        .into_response());
    }
    let mut response = encoded.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    let disposition = format!("attachment; filename=\"query.{}\"", format.extension());
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    headers.insert("x-row-count", HeaderValue::from(result.rows));
    headers.insert(
        "x-truncated",
        HeaderValue::from_static(if result.truncated { "true" } else { "false" }),
    );
    Ok(response)
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct WindowParams {
    /// RFC 3339 instant or `YYYY-MM-DD` (inclusive); default 30 days before `to`.
    from: Option<String>,
    /// RFC 3339 instant or `YYYY-MM-DD` (exclusive); default now.
    to: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct TypedWindowParams {
    /// RFC 3339 instant or `YYYY-MM-DD` (inclusive); default 30 days before `to`.
    from: Option<String>,
    /// RFC 3339 instant or `YYYY-MM-DD` (exclusive); default now.
    to: Option<String>,
    /// Which interactions count (see the report's description).
    interaction_type: Option<String>,
}

async fn report(
    state: &AppState,
    principal: &flywheel_core::Principal,
    report: Report,
    from: Option<String>,
    to: Option<String>,
) -> Result<Json<Value>, ApiError> {
    let value = state
        .analytics
        .report(principal, report, from.as_deref(), to.as_deref())
        .await?;
    Ok(Json(value))
}

/// Concierge usage per UTC day: answered turns (`interaction_type`, default
/// `ai_concierge_response`), average and total tokens, total cost.
#[utoipa::path(get, path = "/v1/reports/ai-usage", tag = "analytics", security(("bearer" = [])),
    params(TypedWindowParams),
    responses((status = 200, body = Object), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn ai_usage(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Query(params): Query<TypedWindowParams>,
) -> Result<Json<Value>, ApiError> {
    let kind = Report::AiUsage {
        interaction_type: params.interaction_type,
    };
    report(&state, &principal, kind, params.from, params.to).await
}

/// The contractor funnel: active → partner matched → demo booked → deal closed (distinct
/// users, with conversion rates), late outcomes merged.
#[utoipa::path(get, path = "/v1/reports/funnel", tag = "analytics", security(("bearer" = [])),
    params(WindowParams),
    responses((status = 200, body = Object), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn funnel(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Query(params): Query<WindowParams>,
) -> Result<Json<Value>, ApiError> {
    report(&state, &principal, Report::Funnel, params.from, params.to).await
}

/// Partner performance: matches, average match score and satisfaction, demos, deals and
/// deal value per partner.
#[utoipa::path(get, path = "/v1/reports/partners", tag = "analytics", security(("bearer" = [])),
    params(WindowParams),
    responses((status = 200, body = Object), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn partners(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Query(params): Query<WindowParams>,
) -> Result<Json<Value>, ApiError> {
    report(&state, &principal, Report::Partners, params.from, params.to).await
}

/// Cost and latency (p50/p95) by provider and model of the gateway's calls (or of
/// `interaction_type`).
#[utoipa::path(get, path = "/v1/reports/models", tag = "analytics", security(("bearer" = [])),
    params(TypedWindowParams),
    responses((status = 200, body = Object), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn models(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Query(params): Query<TypedWindowParams>,
) -> Result<Json<Value>, ApiError> {
    let kind = Report::Models {
        interaction_type: params.interaction_type,
    };
    report(&state, &principal, kind, params.from, params.to).await
}

/// The caller's tenant's derived datasets and training files, each with its manifest
/// (row count, time range, filters, created_at, source files, checksum).
#[utoipa::path(get, path = "/v1/datasets", tag = "analytics", security(("bearer" = [])),
    responses((status = 200, body = Object, description = "`{\"datasets\": [manifest, …]}`"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn datasets(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
) -> Result<Json<Value>, ApiError> {
    let manifests = state.analytics.datasets(&principal).await?;
    let manifests = serde_json::to_value(manifests)
        .map_err(|err| ServiceError::Internal(anyhow::Error::new(err)))?;
    Ok(Json(serde_json::json!({ "datasets": manifests })))
}
