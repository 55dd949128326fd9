//! `/v1/concierge/…`: the AI Concierge's sessions, messages (JSON or server-sent events),
//! transcripts, conversation listings, erasure and feedback on answers.

use std::convert::Infallible;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use flywheel_services::concierge::{
    ErasureView, FeedbackInput, MessageView, SessionView, StartSessionInput, TurnEvent, TurnStream,
    TurnSummary,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};

use super::interactions::{linked_result, LinkedResult};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, Authenticated, Client};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartSessionRequest {
    /// The user the conversation is with. Required for admin and service credentials;
    /// contractors and partners always talk for themselves.
    user_id: Option<String>,
    /// `contractor` (default), `partner`, … for admin and service credentials.
    user_type: Option<String>,
    /// The subject's profile, given to the model as structured context. For Power100:
    /// `company`, `focus_areas`, `revenue_tier`, `team_size`, `goals`; other fields are kept.
    #[schema(value_type = Option<Object>)]
    profile: Option<Value>,
    /// Anything else the concierge should know for this conversation.
    #[schema(value_type = Option<Object>)]
    context: Option<Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionResponse {
    id: String,
    user_id: String,
    user_type: String,
    /// The model or alias answering.
    model: String,
    /// `active` or `ended`.
    status: String,
    #[schema(value_type = Option<Object>)]
    profile: Option<Value>,
    #[schema(value_type = Option<Object>)]
    context: Option<Value>,
    created_at: DateTime<Utc>,
    ended_at: Option<DateTime<Utc>>,
    message_count: Option<u64>,
    last_message_at: Option<DateTime<Utc>>,
}

impl From<SessionView> for SessionResponse {
    fn from(view: SessionView) -> SessionResponse {
        SessionResponse {
            id: view.id,
            user_id: view.user_id,
            user_type: view.user_type,
            model: view.model,
            status: view.status,
            profile: view.profile,
            context: view.context,
            created_at: view.created_at,
            ended_at: view.ended_at,
            message_count: view.message_count,
            last_message_at: view.last_message_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MessageResponse {
    /// Also the id of the interaction that logged the message.
    id: String,
    seq: i64,
    /// `user` or `assistant`.
    role: String,
    content: Option<String>,
    /// Tools run while answering: name, arguments, result, route.
    #[schema(value_type = Option<Vec<Object>>)]
    tool_calls: Option<Value>,
    /// `complete`, `pending`, `incomplete` (cut off: by a disconnect, a crash or a failed
    /// stream) or `failed`.
    status: String,
    model: Option<String>,
    input_tokens: Option<i64>,
    output_tokens: Option<i64>,
    cost_usd: Option<f64>,
    duration_ms: Option<i64>,
    /// Context trimming, tool route, timings, error.
    #[schema(value_type = Option<Object>)]
    details: Option<Value>,
    created_at: DateTime<Utc>,
    completed_at: Option<DateTime<Utc>>,
}

impl From<MessageView> for MessageResponse {
    fn from(view: MessageView) -> MessageResponse {
        MessageResponse {
            id: view.id,
            seq: view.seq,
            role: view.role,
            content: view.content,
            tool_calls: view.tool_calls,
            status: view.status,
            model: view.model,
            input_tokens: view.input_tokens,
            output_tokens: view.output_tokens,
            cost_usd: view.cost_usd,
            duration_ms: view.duration_ms,
            details: view.details,
            created_at: view.created_at,
            completed_at: view.completed_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendMessageRequest {
    /// The user's message (1 to `concierge.max_message_chars` characters).
    content: String,
    /// Answer as server-sent events: `tool_call`, `delta` (`{"content": …}`), then `done`
    /// (the stored messages) or `error`.
    #[serde(default)]
    stream: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TurnResponse {
    user_message: MessageResponse,
    message: MessageResponse,
}

impl From<TurnSummary> for TurnResponse {
    fn from(summary: TurnSummary) -> TurnResponse {
        TurnResponse {
            user_message: summary.user_message.into(),
            message: summary.answer.into(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TranscriptResponse {
    session: SessionResponse,
    messages: Vec<MessageResponse>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationList {
    conversations: Vec<SessionResponse>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ConversationParams {
    /// Whose conversations (contractors and partners: only their own).
    user_id: Option<String>,
    /// 1–500, default 50.
    limit: Option<u32>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EraseParams {
    /// Whose conversations to erase; required for admin and service credentials.
    user_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErasureResponse {
    /// The erasure's id, also recorded as a `data_erasure` interaction.
    id: String,
    user_id: String,
    requested_at: DateTime<Utc>,
    sessions_deleted: u64,
    messages_deleted: u64,
    /// Interactions deleted from the operational store. Copies already archived to the lake
    /// stay until the lake is rewritten (docs/concierge.md).
    interactions_deleted: u64,
}

impl From<ErasureView> for ErasureResponse {
    fn from(view: ErasureView) -> ErasureResponse {
        ErasureResponse {
            id: view.id,
            user_id: view.user_id,
            requested_at: view.requested_at,
            sessions_deleted: view.sessions_deleted,
            messages_deleted: view.messages_deleted,
            interactions_deleted: view.interactions_deleted,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConciergeFeedback {
    helpful: Option<bool>,
    /// 0 (wrong) to 10 (fully accurate).
    accuracy: Option<f64>,
    comments: Option<String>,
}

/// Opens a concierge session (and logs its start).
#[utoipa::path(post, path = "/v1/concierge/sessions", tag = "concierge", security(("bearer" = [])),
    request_body = StartSessionRequest,
    responses((status = 201, body = SessionResponse), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn start_session(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Client(client): Client,
    ApiJson(request): ApiJson<StartSessionRequest>,
) -> Result<(StatusCode, Json<SessionResponse>), ApiError> {
    let session = state
        .concierge
        .start_session(
            &principal,
            StartSessionInput {
                user_id: request.user_id,
                user_type: request.user_type,
                profile: request.profile,
                context: request.context,
            },
            &client,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(session.into())))
}

/// Sends a message and answers it, as JSON or (with `stream: true`) as server-sent events.
#[utoipa::path(post, path = "/v1/concierge/sessions/{id}/messages", tag = "concierge", security(("bearer" = [])),
    params(("id" = String, Path, description = "The session id")),
    request_body = SendMessageRequest,
    responses((status = 200, body = TurnResponse, description = "JSON, or `text/event-stream` when streaming"),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
pub async fn send_message(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Client(client): Client,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<SendMessageRequest>,
) -> Result<Response, ApiError> {
    let turn = state
        .concierge
        .send_message(&principal, &id, request.content, &client)
        .await?;
    if !request.stream {
        let summary = turn.collect().await?;
        return Ok(Json(TurnResponse::from(summary)).into_response());
    }
    Ok(Sse::new(turn_events(turn))
        .keep_alive(KeepAlive::default())
        .into_response())
}

fn turn_events(turn: TurnStream) -> impl futures::Stream<Item = Result<Event, Infallible>> {
    futures::stream::unfold(Some(turn), |turn| async move {
        let mut turn = turn?;
        let event = match turn.next().await? {
            Ok(TurnEvent::ToolCall { name, arguments }) => Event::default()
                .event("tool_call")
                .data(json!({"name": name, "arguments": arguments}).to_string()),
            Ok(TurnEvent::Delta(text)) => Event::default()
                .event("delta")
                .data(json!({ "content": text }).to_string()),
            Ok(TurnEvent::Done(summary)) => {
                let body = TurnResponse::from(*summary);
                let data = serde_json::to_string(&body).unwrap_or_else(|_| "{}".to_owned());
                return Some((Ok(Event::default().event("done").data(data)), None));
            }
            Err(err) => {
                let api = ApiError::from(err);
                let data = json!({"error": {"code": api.code, "message": api.message}});
                return Some((
                    Ok(Event::default().event("error").data(data.to_string())),
                    None,
                ));
            }
        };
        Some((Ok(event), Some(turn)))
    })
}

/// A session and its messages in order.
#[utoipa::path(get, path = "/v1/concierge/sessions/{id}", tag = "concierge", security(("bearer" = [])),
    params(("id" = String, Path, description = "The session id")),
    responses((status = 200, body = TranscriptResponse), (status = 404, body = ErrorBody)))]
pub async fn get_session(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<TranscriptResponse>, ApiError> {
    let transcript = state.concierge.transcript(&principal, &id).await?;
    Ok(Json(TranscriptResponse {
        session: transcript.session.into(),
        messages: transcript
            .messages
            .into_iter()
            .map(MessageResponse::from)
            .collect(),
    }))
}

/// Ends a session (and logs its end).
#[utoipa::path(post, path = "/v1/concierge/sessions/{id}/end", tag = "concierge", security(("bearer" = [])),
    params(("id" = String, Path, description = "The session id")),
    responses((status = 200, body = SessionResponse), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn end_session(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Client(client): Client,
    Path(id): Path<String>,
) -> Result<Json<SessionResponse>, ApiError> {
    let session = state
        .concierge
        .end_session(&principal, &id, &client)
        .await?;
    Ok(Json(session.into()))
}

/// Conversations (sessions), newest first.
#[utoipa::path(get, path = "/v1/concierge/conversations", tag = "concierge", security(("bearer" = [])),
    params(ConversationParams),
    responses((status = 200, body = ConversationList), (status = 403, body = ErrorBody)))]
pub async fn list_conversations(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Query(params): Query<ConversationParams>,
) -> Result<Json<ConversationList>, ApiError> {
    let sessions = state
        .concierge
        .conversations(&principal, params.user_id, params.limit.unwrap_or(50))
        .await?;
    Ok(Json(ConversationList {
        conversations: sessions.into_iter().map(SessionResponse::from).collect(),
    }))
}

/// Erases a user's conversations (the right to erasure) and records the erasure.
#[utoipa::path(delete, path = "/v1/concierge/conversations", tag = "concierge", security(("bearer" = [])),
    params(EraseParams),
    responses((status = 200, body = ErasureResponse), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn erase_conversations(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Client(client): Client,
    Query(params): Query<EraseParams>,
) -> Result<Json<ErasureResponse>, ApiError> {
    let erasure = state
        .concierge
        .erase(&principal, params.user_id, &client)
        .await?;
    Ok(Json(erasure.into()))
}

/// Feedback on one of the concierge's answers, linked to the answer's interaction.
#[utoipa::path(post, path = "/v1/concierge/messages/{id}/feedback", tag = "concierge", security(("bearer" = [])),
    params(("id" = String, Path, description = "The answer's message id")),
    request_body = ConciergeFeedback,
    responses((status = 201, body = LinkedResult), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn message_feedback(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Client(client): Client,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ConciergeFeedback>,
) -> Result<(StatusCode, Json<LinkedResult>), ApiError> {
    let (parent, outcome) = state
        .concierge
        .feedback(
            &principal,
            &id,
            FeedbackInput {
                helpful: body.helpful,
                accuracy: body.accuracy,
                comments: body.comments,
            },
            &client,
        )
        .await?;
    linked_result(parent, outcome)
}
