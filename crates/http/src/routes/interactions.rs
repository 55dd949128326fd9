//! The collector API: `POST/GET /v1/interactions`, `GET /v1/interactions/{id}`,
//! outcomes and feedback linked later, and the quarantine of rejected input.

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use flywheel_core::{FieldError, Interaction};
use flywheel_services::ingest::{
    InteractionView, ItemOutcome, LinkedKind, ListQuery, OutcomeTarget, Submission,
};
use flywheel_store::RejectedInteraction;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::client::client_context;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, Authenticated, Client};
use crate::state::AppState;

/// The result for one submitted item.
#[derive(Debug, Serialize, ToSchema)]
pub struct ItemResult {
    /// Position in the submitted batch (0 for a single object).
    index: usize,
    /// `created`, `duplicate` (the id was stored before; nothing changed) or `rejected`.
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    interaction_id: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<FieldErrorBody>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FieldErrorBody {
    field: String,
    problem: String,
}

/// Per-item results of a batch.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResult {
    created: usize,
    duplicates: usize,
    rejected: usize,
    results: Vec<ItemResult>,
}

/// An interaction as stored (the enriched document), with later outcomes and feedback merged
/// into `outcomes` and `feedback`, and the linked interactions listed in `linked`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(value_type = Object)]
pub struct InteractionDocument(serde_json::Map<String, Value>);

#[derive(Debug, Serialize, ToSchema)]
pub struct InteractionPage {
    #[schema(value_type = Vec<Object>)]
    interactions: Vec<serde_json::Map<String, Value>>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    user_id: Option<String>,
    interaction_type: Option<String>,
    conversation_id: Option<String>,
    /// RFC 3339, inclusive.
    from: Option<String>,
    /// RFC 3339, exclusive.
    to: Option<String>,
    /// 1–1000, default 50.
    limit: Option<u32>,
    cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RejectedEntry {
    id: String,
    received_at: chrono::DateTime<chrono::Utc>,
    principal: String,
    batch_index: Option<i64>,
    #[schema(value_type = Vec<Object>)]
    reason: Value,
    /// The input as received (possibly truncated to 64 KiB).
    payload: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RejectedPage {
    rejected: Vec<RejectedEntry>,
    next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RejectedParams {
    limit: Option<u32>,
    cursor: Option<String>,
}

/// A linked record's result.
#[derive(Debug, Serialize, ToSchema)]
pub struct LinkedResult {
    /// The interaction the record was linked to.
    parent_interaction_id: String,
    /// The new interaction holding the record.
    interaction_id: Option<String>,
    status: &'static str,
}

/// `POST /v1/outcomes`: find the interaction by conversation or by (user, partner).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OutcomeByRequest {
    conversation_id: Option<String>,
    user_id: Option<String>,
    partner_id: Option<String>,
    /// `partner_matched`, `partner_id`, `match_score`, `demo_booked`, `deal_closed`, `deal_value`, `satisfaction_score`.
    #[schema(value_type = Object)]
    outcomes: Value,
    /// RFC 3339; default now.
    timestamp: Option<String>,
    interaction_type: Option<String>,
}

fn item_result(index: usize, outcome: &ItemOutcome) -> ItemResult {
    match outcome {
        ItemOutcome::Created { interaction_id } => ItemResult {
            index,
            status: "created",
            interaction_id: Some(interaction_id.to_string()),
            errors: Vec::new(),
        },
        ItemOutcome::Duplicate { interaction_id } => ItemResult {
            index,
            status: "duplicate",
            interaction_id: Some(interaction_id.to_string()),
            errors: Vec::new(),
        },
        ItemOutcome::Rejected { errors } => ItemResult {
            index,
            status: "rejected",
            interaction_id: None,
            errors: errors
                .iter()
                .map(|e| FieldErrorBody {
                    field: e.field.clone(),
                    problem: e.problem.clone(),
                })
                .collect(),
        },
    }
}

/// Whether the request says its body is JSON (`application/json`, any parameters).
pub(crate) fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(|value| {
            value
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .is_some_and(|essence| essence == "application/json" || essence.ends_with("+json"))
}

/// Stores one interaction (a JSON object) or a batch (a JSON array). The response comes once
/// the data is durable. Single: 201 created, 200 duplicate, 422 rejected. Batch: 200 with a
/// result per item when any was accepted, 422 when none was.
#[utoipa::path(post, path = "/v1/interactions", tag = "interactions", security(("bearer" = [])),
    request_body(content = Object, description = "An interaction (see the contract in DESIGN.md) or an array of them"),
    responses(
        (status = 201, body = ItemResult), (status = 200, body = BatchResult),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
pub async fn create_interactions(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    request: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    if !is_json(&parts.headers) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send interactions as JSON with `Content-Type: application/json`",
        ));
    }
    let client = client_context(
        &parts.headers,
        &parts.extensions,
        &state.http.trusted_proxies,
    );
    let bytes = axum::body::to_bytes(body, state.http.max_body_bytes)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the request body is larger than server.max_body_bytes allows; send smaller batches",
            )
        })?;
    // A plain parse: a `Value` cannot fail on shape, so field-path tracking would only cost.
    let value: Value =
        match serde_json::from_slice(&bytes).map_err(|err| crate::extract::json_error(".", &err)) {
            Ok(value) => value,
            Err(err) => {
                state
                    .ingest
                    .quarantine_body(&principal, &bytes, &err.message)
                    .await?;
                return Err(err);
            }
        };
    let submission = match value {
        Value::Array(items) => Submission::Batch(items),
        other => Submission::One(other),
    };
    let report = state.ingest.ingest(&principal, submission, &client).await?;
    if !report.batch {
        let outcome = &report.items[0];
        return Ok(match outcome {
            ItemOutcome::Created { .. } => {
                (StatusCode::CREATED, Json(item_result(0, outcome))).into_response()
            }
            ItemOutcome::Duplicate { .. } => {
                (StatusCode::OK, Json(item_result(0, outcome))).into_response()
            }
            ItemOutcome::Rejected { errors } => {
                ApiError::validation(errors.clone()).into_response()
            }
        });
    }
    let results: Vec<ItemResult> = report
        .items
        .iter()
        .enumerate()
        .map(|(index, outcome)| item_result(index, outcome))
        .collect();
    let rejected = report.count(|o| matches!(o, ItemOutcome::Rejected { .. }));
    if rejected == report.items.len() {
        let details = report
            .items
            .iter()
            .enumerate()
            .flat_map(|(index, outcome)| match outcome {
                ItemOutcome::Rejected { errors } => errors
                    .iter()
                    .map(|e| FieldError::new(format!("[{index}].{}", e.field), e.problem.clone()))
                    .collect(),
                _ => Vec::new(),
            })
            .collect();
        return Err(ApiError::validation(details));
    }
    Ok((
        StatusCode::OK,
        Json(BatchResult {
            created: report.count(|o| matches!(o, ItemOutcome::Created { .. })),
            duplicates: report.count(|o| matches!(o, ItemOutcome::Duplicate { .. })),
            rejected,
            results,
        }),
    )
        .into_response())
}

/// One interaction of the caller's tenant, with later outcomes and feedback merged in.
#[utoipa::path(get, path = "/v1/interactions/{id}", tag = "interactions", security(("bearer" = [])),
    params(("id" = String, Path, description = "interaction_id")),
    responses((status = 200, body = InteractionDocument), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_interaction(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<InteractionDocument>, ApiError> {
    let view: InteractionView = state.ingest.get(&principal, &id).await?;
    Ok(Json(InteractionDocument(view.document)))
}

/// The caller's tenant's interactions, newest first, cursor-paginated.
#[utoipa::path(get, path = "/v1/interactions", tag = "interactions", security(("bearer" = [])),
    params(ListParams),
    responses((status = 200, body = InteractionPage), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list_interactions(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Query(params): Query<ListParams>,
) -> Result<Json<InteractionPage>, ApiError> {
    let page = state
        .ingest
        .list(
            &principal,
            ListQuery {
                user_id: params.user_id,
                interaction_type: params.interaction_type,
                conversation_id: params.conversation_id,
                from: params.from,
                to: params.to,
                limit: params.limit,
                cursor: params.cursor,
            },
        )
        .await?;
    Ok(Json(InteractionPage {
        interactions: page
            .items
            .into_iter()
            .map(|item: Interaction| item.document)
            .collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Rejected input kept for inspection (admins), newest first.
#[utoipa::path(get, path = "/v1/interactions/rejected", tag = "interactions", security(("bearer" = [])),
    params(RejectedParams),
    responses((status = 200, body = RejectedPage), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_rejected(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Query(params): Query<RejectedParams>,
) -> Result<Json<RejectedPage>, ApiError> {
    let page = state
        .ingest
        .list_rejected(&principal, params.cursor.as_deref(), params.limit)
        .await?;
    Ok(Json(RejectedPage {
        rejected: page.items.into_iter().map(rejected_entry).collect(),
        next_cursor: page.next_cursor,
    }))
}

fn rejected_entry(item: RejectedInteraction) -> RejectedEntry {
    RejectedEntry {
        id: item.id,
        received_at: item.received_at,
        principal: item.principal,
        batch_index: item.batch_index,
        reason: serde_json::from_str(&item.reason).unwrap_or(Value::String(item.reason)),
        payload: item.payload,
    }
}

pub(super) async fn record_linked(
    state: &AppState,
    principal: &flywheel_core::Principal,
    client: &flywheel_services::enrich::ClientContext,
    target: OutcomeTarget,
    kind: LinkedKind,
    body: Value,
) -> Result<(StatusCode, Json<LinkedResult>), ApiError> {
    let (parent, outcome) = state
        .ingest
        .record_linked(principal, target, kind, body, client)
        .await?;
    linked_result(parent, outcome)
}

/// The answer to a recorded outcome or feedback: 201 when new, 200 when a duplicate.
pub(super) fn linked_result(
    parent: uuid::Uuid,
    outcome: ItemOutcome,
) -> Result<(StatusCode, Json<LinkedResult>), ApiError> {
    let (status, code, id) = match outcome {
        ItemOutcome::Created { interaction_id } => {
            (StatusCode::CREATED, "created", Some(interaction_id))
        }
        ItemOutcome::Duplicate { interaction_id } => {
            (StatusCode::OK, "duplicate", Some(interaction_id))
        }
        ItemOutcome::Rejected { errors } => return Err(ApiError::validation(errors)),
    };
    Ok((
        status,
        Json(LinkedResult {
            parent_interaction_id: parent.to_string(),
            interaction_id: id.map(|id| id.to_string()),
            status: code,
        }),
    ))
}

/// Records a business outcome for an interaction, days after it happened
/// (e.g. `{"deal_closed": true, "deal_value": 48000}`). Stored as its own interaction
/// (`deal_closed`, `demo_booking`, `partner_match` or `outcome`) with `parent_interaction_id`.
#[utoipa::path(post, path = "/v1/interactions/{id}/outcomes", tag = "interactions", security(("bearer" = [])),
    params(("id" = String, Path, description = "the parent interaction_id")),
    request_body(content = Object, description = "outcome fields, bare or under `outcomes`"),
    responses((status = 201, body = LinkedResult), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn record_outcome(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Path(id): Path<String>,
    Client(client): Client,
    ApiJson(body): ApiJson<Value>,
) -> Result<(StatusCode, Json<LinkedResult>), ApiError> {
    record_linked(
        &state,
        &principal,
        &client,
        OutcomeTarget::Interaction(id),
        LinkedKind::Outcome,
        body,
    )
    .await
}

/// Records feedback on an interaction (`helpful`, `accuracy`, `would_recommend`, `comments`).
#[utoipa::path(post, path = "/v1/interactions/{id}/feedback", tag = "interactions", security(("bearer" = [])),
    params(("id" = String, Path, description = "the parent interaction_id")),
    request_body(content = Object, description = "feedback fields, bare or under `feedback`"),
    responses((status = 201, body = LinkedResult), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn record_feedback(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Path(id): Path<String>,
    Client(client): Client,
    ApiJson(body): ApiJson<Value>,
) -> Result<(StatusCode, Json<LinkedResult>), ApiError> {
    record_linked(
        &state,
        &principal,
        &client,
        OutcomeTarget::Interaction(id),
        LinkedKind::Feedback,
        body,
    )
    .await
}

/// Records an outcome found by `conversation_id` (its latest interaction) or by
/// `user_id` + `partner_id` (the latest interaction naming that partner, e.g. a match made
/// outside a conversation).
#[utoipa::path(post, path = "/v1/outcomes", tag = "interactions", security(("bearer" = [])),
    request_body = OutcomeByRequest,
    responses((status = 201, body = LinkedResult), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn record_outcome_by(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Client(client): Client,
    ApiJson(request): ApiJson<OutcomeByRequest>,
) -> Result<(StatusCode, Json<LinkedResult>), ApiError> {
    let target = match (request.conversation_id, request.user_id, request.partner_id) {
        (Some(conversation), None, None) => OutcomeTarget::Conversation(conversation),
        (None, Some(user_id), Some(partner_id)) => OutcomeTarget::UserPartner {
            user_id,
            partner_id,
        },
        _ => {
            return Err(ApiError::validation(vec![FieldError::new(
                "conversation_id",
                "give either conversation_id, or user_id together with partner_id",
            )]))
        }
    };
    let mut body = serde_json::Map::new();
    body.insert("outcomes".to_owned(), request.outcomes);
    if let Some(timestamp) = request.timestamp {
        body.insert("timestamp".to_owned(), Value::String(timestamp));
    }
    if let Some(kind) = request.interaction_type {
        body.insert("interaction_type".to_owned(), Value::String(kind));
    }
    record_linked(
        &state,
        &principal,
        &client,
        target,
        LinkedKind::Outcome,
        Value::Object(body),
    )
    .await
}
