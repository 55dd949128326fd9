//! The OpenAI-compatible gateway: `POST /v1/chat/completions` (JSON or server-sent events),
//! `POST /v1/embeddings`, `GET /v1/models`, and `POST /v1/inferences/{id}/feedback`.
//!
//! Wire types follow OpenAI's API reference so existing SDKs work by changing the base URL.
//! Parameters Flywheel cannot honour are rejected with 422 naming them, never dropped.

use std::collections::BTreeMap;
use std::convert::Infallible;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use flywheel_core::{FieldError, ValidationErrors};
use flywheel_llm::{
    ChatMessage, ChatRequest, FinishReason, ResponseFormat, Role, StreamEvent, ToolChoice,
    ToolDefinition, Usage,
};
use flywheel_services::gateway::{
    ChatInput, ChatOutcome, EmbeddingsInput, GatewayStreamItem, RouteInfo,
};
use flywheel_services::ingest::{LinkedKind, OutcomeTarget};
use flywheel_services::RateLimitStatus;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, Authenticated, Client};
use crate::routes::interactions::{record_linked, LinkedResult};
use crate::state::AppState;

/// Header naming the conversation a call belongs to (logged with it).
const CONVERSATION_HEADER: &str = "x-flywheel-conversation-id";

/// An OpenAI chat completion request.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ChatCompletionRequest {
    /// `provider/model` (e.g. `openai/gpt-4o-mini`) or a configured alias.
    model: String,
    #[schema(value_type = Vec<Object>)]
    messages: Vec<Value>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    max_tokens: Option<u32>,
    max_completion_tokens: Option<u32>,
    /// A string or up to 4 strings.
    #[schema(value_type = Object)]
    stop: Option<Value>,
    seed: Option<i64>,
    user: Option<String>,
    #[schema(value_type = Object)]
    response_format: Option<Value>,
    #[schema(value_type = Vec<Object>)]
    tools: Option<Vec<Value>>,
    #[schema(value_type = Object)]
    tool_choice: Option<Value>,
    #[serde(default)]
    stream: Option<bool>,
    #[schema(value_type = Object)]
    stream_options: Option<Value>,
    /// Only 1 is supported.
    n: Option<u32>,
    /// Only `true` (the default) is supported.
    parallel_tool_calls: Option<bool>,
    /// Anything else: rejected by name unless null.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    other: BTreeMap<String, Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChatCompletionResponse {
    id: String,
    object: &'static str,
    created: i64,
    /// `provider/model` that answered.
    model: String,
    #[schema(value_type = Vec<Object>)]
    choices: Vec<Value>,
    #[schema(value_type = Object)]
    usage: Option<Value>,
    system_fingerprint: Option<String>,
}

/// Creates a chat completion (non-streaming, or `stream: true` as server-sent events ending
/// in `data: [DONE]`).
#[utoipa::path(post, path = "/v1/chat/completions", tag = "gateway", security(("bearer" = [])),
    request_body = ChatCompletionRequest,
    responses(
        (status = 200, body = ChatCompletionResponse, description = "JSON, or text/event-stream when `stream` is true"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 429, body = ErrorBody), (status = 502, body = ErrorBody),
        (status = 503, body = ErrorBody), (status = 504, body = ErrorBody)))]
pub async fn chat_completions(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Client(client): Client,
    headers: HeaderMap,
    ApiJson(body): ApiJson<ChatCompletionRequest>,
) -> Result<Response, ApiError> {
    let stream = body.stream.unwrap_or(false);
    let include_usage = match &body.stream_options {
        None | Some(Value::Null) => false,
        Some(options) if stream => options
            .get("include_usage")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        Some(_) => {
            return Err(field_error(
                "stream_options",
                "only allowed when `stream` is true",
            ))
        }
    };
    let model_requested = body.model.clone();
    let request = chat_request(body)?;
    let input = ChatInput {
        model: model_requested,
        request,
        conversation_id: headers
            .get(CONVERSATION_HEADER)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned),
        client,
    };
    let gateway = state.gateway.clone();
    if !stream {
        let outcome = gateway.chat(&principal, input).await?;
        return Ok(completion_response(outcome));
    }
    let outcome = gateway.chat_stream(&principal, input).await?;
    let id = format!("chatcmpl-{}", outcome.interaction_id);
    let model = format!("{}/{}", outcome.route.provider, outcome.route.model);
    let created = chrono::Utc::now().timestamp();
    let mut response_headers = route_headers(&outcome.route, outcome.interaction_id, None);
    add_rate_headers(&mut response_headers, outcome.rate_limit);
    let events = sse_chunks(outcome.events, id, model, created, include_usage);
    let mut response = Sse::new(events).into_response();
    response.headers_mut().extend(response_headers);
    Ok(response)
}

fn completion_response(outcome: ChatOutcome) -> Response {
    let response = &outcome.response;
    let mut message = json!({
        "role": "assistant",
        "content": response.content,
        "refusal": null,
    });
    if !response.tool_calls.is_empty() {
        message["tool_calls"] = Value::Array(
            response
                .tool_calls
                .iter()
                .map(|call| {
                    json!({"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}})
                })
                .collect(),
        );
    }
    let body = ChatCompletionResponse {
        id: format!("chatcmpl-{}", outcome.interaction_id),
        object: "chat.completion",
        created: chrono::Utc::now().timestamp(),
        model: format!("{}/{}", outcome.route.provider, outcome.route.model),
        choices: vec![json!({
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": response.finish_reason.as_str(),
        })],
        usage: response.usage.as_ref().map(usage_json),
        system_fingerprint: None,
    };
    let mut headers = route_headers(&outcome.route, outcome.interaction_id, outcome.cost_usd);
    add_rate_headers(&mut headers, outcome.rate_limit);
    let mut response = Json(body).into_response();
    response.headers_mut().extend(headers);
    response
}

fn usage_json(usage: &Usage) -> Value {
    json!({
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens(),
        "prompt_tokens_details": {"cached_tokens": usage.cached_input_tokens.unwrap_or(0)},
    })
}

fn route_headers(route: &RouteInfo, interaction_id: uuid::Uuid, cost: Option<f64>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let mut put = |name: &'static str, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    };
    put("x-flywheel-interaction-id", interaction_id.to_string());
    put("x-flywheel-provider", route.provider.clone());
    put("x-flywheel-model", route.model.clone());
    if let Some(variant) = &route.variant {
        put("x-flywheel-variant", variant.clone());
    }
    if let Some(cost) = cost {
        put("x-flywheel-cost-usd", format!("{cost:.8}"));
    }
    headers
}

fn add_rate_headers(headers: &mut HeaderMap, status: Option<RateLimitStatus>) {
    if let Some(status) = status {
        headers.insert("x-ratelimit-limit", HeaderValue::from(status.limit));
        headers.insert("x-ratelimit-remaining", HeaderValue::from(status.remaining));
        headers.insert(
            "x-ratelimit-reset",
            HeaderValue::from(status.reset_at.timestamp()),
        );
    }
}

/// OpenAI's chunk stream: a role chunk, content and tool-call deltas, the finish chunk, the
/// usage chunk when asked for, `[DONE]`. An upstream failure after the first token ends the
/// stream with an `error` event instead of `[DONE]`, so no client takes it for complete.
fn sse_chunks(
    events: futures::stream::BoxStream<'static, GatewayStreamItem>,
    id: String,
    model: String,
    created: i64,
    include_usage: bool,
) -> impl futures::Stream<Item = Result<Event, Infallible>> + Send + 'static {
    struct ChunkState {
        events: futures::stream::BoxStream<'static, GatewayStreamItem>,
        id: String,
        model: String,
        created: i64,
        include_usage: bool,
        usage: Option<Usage>,
        started: bool,
        done: bool,
    }
    let state = ChunkState {
        events,
        id,
        model,
        created,
        include_usage,
        usage: None,
        started: false,
        done: false,
    };
    futures::stream::unfold(state, |mut state| async move {
        if state.done {
            return None;
        }
        let chunk = |state: &ChunkState, delta: Value, finish: Option<&FinishReason>| {
            let mut chunk = json!({
                "id": state.id,
                "object": "chat.completion.chunk",
                "created": state.created,
                "model": state.model,
                "system_fingerprint": null,
                "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish.map(FinishReason::as_str)}],
            });
            if state.include_usage {
                chunk["usage"] = Value::Null;
            }
            Event::default().data(chunk.to_string())
        };
        if !state.started {
            state.started = true;
            let first = chunk(&state, json!({"role": "assistant", "content": ""}), None);
            return Some((vec![first], state));
        }
        loop {
            match state.events.next().await {
                Some(GatewayStreamItem::Event(event)) => {
                    let emitted = match event {
                        StreamEvent::Text(text) => Some(chunk(&state, json!({"content": text}), None)),
                        StreamEvent::ToolCallStart { index, id, name } => Some(chunk(
                            &state,
                            json!({"tool_calls": [{"index": index, "id": id, "type": "function", "function": {"name": name, "arguments": ""}}]}),
                            None,
                        )),
                        StreamEvent::ToolCallArguments { index, fragment } => Some(chunk(
                            &state,
                            json!({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]}),
                            None,
                        )),
                        StreamEvent::Finish(reason) => Some(chunk(&state, json!({}), Some(&reason))),
                        StreamEvent::Usage(usage) => {
                            state.usage = Some(usage);
                            None
                        }
                    };
                    if let Some(event) = emitted {
                        return Some((vec![event], state));
                    }
                }
                Some(GatewayStreamItem::Error { class, message }) => {
                    state.done = true;
                    let error = json!({"error": {
                        "message": message,
                        "type": "upstream_error",
                        "code": class.as_str(),
                        "param": null,
                    }});
                    return Some((vec![Event::default().data(error.to_string())], state));
                }
                None => {
                    state.done = true;
                    // The stream ended properly: usage (when asked for and known), then [DONE].
                    let mut tail = Vec::new();
                    if state.include_usage {
                        if let Some(usage) = &state.usage {
                            let last = json!({
                                "id": state.id,
                                "object": "chat.completion.chunk",
                                "created": state.created,
                                "model": state.model,
                                "system_fingerprint": null,
                                "choices": [],
                                "usage": usage_json(usage),
                            });
                            tail.push(Event::default().data(last.to_string()));
                        }
                    }
                    tail.push(Event::default().data("[DONE]"));
                    return Some((tail, state));
                }
            }
        }
    })
    .flat_map(|events| futures::stream::iter(events.into_iter().map(Ok::<Event, Infallible>)))
}

/// Builds the provider-neutral request, rejecting what cannot be honoured.
fn chat_request(body: ChatCompletionRequest) -> Result<ChatRequest, ApiError> {
    let mut errors = ValidationErrors::default();
    for (name, value) in &body.other {
        if !value.is_null() {
            errors.push(
                name.clone(),
                "is not supported by this gateway; remove it (it would otherwise be silently ignored)",
            );
        }
    }
    if let Some(n) = body.n {
        if n != 1 {
            errors.push("n", "only n = 1 is supported");
        }
    }
    if body.parallel_tool_calls == Some(false) {
        errors.push(
            "parallel_tool_calls",
            "only the default (true) is supported",
        );
    }
    let max_tokens = match (body.max_tokens, body.max_completion_tokens) {
        (Some(_), Some(_)) => {
            errors.push(
                "max_completion_tokens",
                "give either max_tokens or max_completion_tokens, not both",
            );
            None
        }
        (one, other) => one.or(other),
    };
    let stop = match body.stop {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(text)) => vec![text],
        Some(Value::Array(items)) => {
            let texts: Option<Vec<String>> = items
                .into_iter()
                .map(|item| item.as_str().map(str::to_owned))
                .collect();
            texts.unwrap_or_else(|| {
                errors.push("stop", "must be a string or an array of strings");
                Vec::new()
            })
        }
        Some(_) => {
            errors.push("stop", "must be a string or an array of strings");
            Vec::new()
        }
    };
    let messages: Vec<ChatMessage> = body
        .messages
        .iter()
        .enumerate()
        .filter_map(|(idx, message)| parse_message(&mut errors, idx, message))
        .collect();
    let tools: Vec<ToolDefinition> = body
        .tools
        .unwrap_or_default()
        .iter()
        .enumerate()
        .filter_map(|(idx, tool)| parse_tool(&mut errors, idx, tool))
        .collect();
    let tool_choice = match body.tool_choice {
        None | Some(Value::Null) => None,
        Some(Value::String(choice)) => match choice.as_str() {
            "auto" => Some(ToolChoice::Auto),
            "none" => Some(ToolChoice::None),
            "required" => Some(ToolChoice::Required),
            _ => {
                errors.push("tool_choice", "must be auto, none, required or {\"type\": \"function\", \"function\": {\"name\": …}}");
                None
            }
        },
        Some(value) => match value["function"]["name"].as_str() {
            Some(name) if value["type"] == "function" => {
                Some(ToolChoice::Function(name.to_owned()))
            }
            _ => {
                errors.push("tool_choice", "must be auto, none, required or {\"type\": \"function\", \"function\": {\"name\": …}}");
                None
            }
        },
    };
    let response_format = match body.response_format {
        None | Some(Value::Null) => None,
        Some(format) => match format["type"].as_str() {
            Some("text") => Some(ResponseFormat::Text),
            Some("json_object") => Some(ResponseFormat::JsonObject),
            Some("json_schema") => {
                let spec = &format["json_schema"];
                match (spec["name"].as_str(), spec.get("schema")) {
                    (Some(name), Some(schema)) if schema.is_object() => {
                        Some(ResponseFormat::JsonSchema {
                            name: name.to_owned(),
                            description: spec["description"].as_str().map(str::to_owned),
                            schema: schema.clone(),
                            strict: spec["strict"].as_bool(),
                        })
                    }
                    _ => {
                        errors.push(
                            "response_format.json_schema",
                            "needs `name` and an object `schema`",
                        );
                        None
                    }
                }
            }
            _ => {
                errors.push(
                    "response_format.type",
                    "must be text, json_object or json_schema",
                );
                None
            }
        },
    };
    errors
        .into_result()
        .map_err(|errors| ApiError::validation(errors.errors().to_vec()))?;
    Ok(ChatRequest {
        model: String::new(),
        messages,
        temperature: body.temperature,
        top_p: body.top_p,
        max_tokens,
        stop,
        seed: body.seed,
        user: body.user,
        response_format,
        tools,
        tool_choice,
    })
}

fn parse_message(
    errors: &mut ValidationErrors,
    idx: usize,
    message: &Value,
) -> Option<ChatMessage> {
    let path = format!("messages[{idx}]");
    let role = match message["role"].as_str() {
        Some("system" | "developer") => Role::System,
        Some("user") => Role::User,
        Some("assistant") => Role::Assistant,
        Some("tool") => Role::Tool,
        _ => {
            errors.push(
                format!("{path}.role"),
                "must be system, developer, user, assistant or tool",
            );
            return None;
        }
    };
    let content = match &message["content"] {
        Value::Null => None,
        Value::String(text) => Some(text.clone()),
        Value::Array(parts) => {
            let mut text = String::new();
            for (part_idx, part) in parts.iter().enumerate() {
                match (part["type"].as_str(), part["text"].as_str()) {
                    (Some("text"), Some(piece)) => text.push_str(piece),
                    (kind, _) => {
                        errors.push(
                            format!("{path}.content[{part_idx}]"),
                            format!(
                                "content parts of type {} are not supported; send text",
                                kind.unwrap_or("?")
                            ),
                        );
                    }
                }
            }
            Some(text)
        }
        _ => {
            errors.push(
                format!("{path}.content"),
                "must be a string, an array of text parts or null",
            );
            None
        }
    };
    let tool_calls = match &message["tool_calls"] {
        Value::Null => Vec::new(),
        Value::Array(calls) if role == Role::Assistant => calls
            .iter()
            .enumerate()
            .filter_map(|(call_idx, call)| {
                match (
                    call["id"].as_str(),
                    call["function"]["name"].as_str(),
                    call["function"]["arguments"].as_str(),
                ) {
                    (Some(id), Some(name), Some(arguments)) => Some(flywheel_llm::ToolCall {
                        id: id.to_owned(),
                        name: name.to_owned(),
                        arguments: arguments.to_owned(),
                    }),
                    _ => {
                        errors.push(
                            format!("{path}.tool_calls[{call_idx}]"),
                            "needs id, function.name and function.arguments",
                        );
                        None
                    }
                }
            })
            .collect(),
        _ => {
            errors.push(
                format!("{path}.tool_calls"),
                "only assistant messages carry tool_calls, as an array",
            );
            Vec::new()
        }
    };
    let tool_call_id = message["tool_call_id"].as_str().map(str::to_owned);
    if role == Role::Tool && tool_call_id.is_none() {
        errors.push(format!("{path}.tool_call_id"), "is required for role tool");
    }
    Some(ChatMessage {
        role,
        content,
        name: message["name"].as_str().map(str::to_owned),
        tool_calls,
        tool_call_id,
    })
}

fn parse_tool(errors: &mut ValidationErrors, idx: usize, tool: &Value) -> Option<ToolDefinition> {
    let path = format!("tools[{idx}]");
    if tool["type"] != "function" {
        errors.push(format!("{path}.type"), "only function tools are supported");
        return None;
    }
    let function = &tool["function"];
    let Some(name) = function["name"].as_str() else {
        errors.push(format!("{path}.function.name"), "is required");
        return None;
    };
    Some(ToolDefinition {
        name: name.to_owned(),
        description: function["description"].as_str().map(str::to_owned),
        parameters: match &function["parameters"] {
            Value::Null => json!({"type": "object", "properties": {}}),
            other => other.clone(),
        },
        strict: function["strict"].as_bool(),
    })
}

fn field_error(field: &str, problem: &str) -> ApiError {
    ApiError::validation(vec![FieldError {
        field: field.to_owned(),
        problem: problem.to_owned(),
    }])
}

/// An OpenAI embeddings request.
#[derive(Debug, Deserialize, ToSchema)]
pub struct EmbeddingsRequest {
    model: String,
    /// A string or an array of strings (token arrays are not supported).
    #[schema(value_type = Object)]
    input: Value,
    dimensions: Option<u32>,
    /// `float` (default) or `base64` (little-endian f32, as OpenAI's SDKs request).
    encoding_format: Option<String>,
    user: Option<String>,
    #[serde(flatten)]
    #[schema(value_type = Object)]
    other: BTreeMap<String, Value>,
}

/// Creates embeddings.
#[utoipa::path(post, path = "/v1/embeddings", tag = "gateway", security(("bearer" = [])),
    request_body = EmbeddingsRequest,
    responses((status = 200, body = Object), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 502, body = ErrorBody)))]
pub async fn embeddings(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Client(client): Client,
    ApiJson(body): ApiJson<EmbeddingsRequest>,
) -> Result<Response, ApiError> {
    let mut errors = ValidationErrors::default();
    for (name, value) in &body.other {
        if !value.is_null() {
            errors.push(name.clone(), "is not supported by this gateway; remove it");
        }
    }
    let base64 = match body.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(_) => {
            errors.push("encoding_format", "must be float or base64");
            false
        }
    };
    let inputs: Vec<String> = match body.input {
        Value::String(text) => vec![text],
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .filter_map(|(idx, item)| match item {
                Value::String(text) => Some(text),
                _ => {
                    errors.push(
                        format!("input[{idx}]"),
                        "must be a string (token arrays are not supported)",
                    );
                    None
                }
            })
            .collect(),
        _ => {
            errors.push("input", "must be a string or an array of strings");
            Vec::new()
        }
    };
    errors
        .into_result()
        .map_err(|errors| ApiError::validation(errors.errors().to_vec()))?;
    let outcome = state
        .gateway
        .embeddings(
            &principal,
            EmbeddingsInput {
                model: body.model,
                inputs,
                dimensions: body.dimensions,
                user: body.user,
                client,
            },
        )
        .await?;
    let data: Vec<Value> = outcome
        .vectors
        .iter()
        .enumerate()
        .map(|(index, vector)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = vector
                    .iter()
                    .flat_map(|value| value.to_le_bytes())
                    .collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    let body = json!({
        "object": "list",
        "data": data,
        "model": outcome.model,
        "usage": {"prompt_tokens": outcome.usage.input_tokens, "total_tokens": outcome.usage.input_tokens},
    });
    let mut response = Json(body).into_response();
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_str(&outcome.interaction_id.to_string()) {
        headers.insert("x-flywheel-interaction-id", value);
    }
    add_rate_headers(&mut headers, outcome.rate_limit);
    response.headers_mut().extend(headers);
    Ok(response)
}

/// Lists addressable models: aliases and `provider/model` ids.
#[utoipa::path(get, path = "/v1/models", tag = "gateway", security(("bearer" = [])),
    responses((status = 200, body = Object), (status = 401, body = ErrorBody)))]
pub async fn list_models(
    State(state): State<AppState>,
    Authenticated(_principal): Authenticated,
) -> Json<Value> {
    let data: Vec<Value> = state
        .gateway
        .models()
        .into_iter()
        .map(|model| json!({"id": model.id, "object": "model", "created": 0, "owned_by": model.owned_by}))
        .collect();
    Json(json!({"object": "list", "data": data}))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InferenceFeedback {
    helpful: Option<bool>,
    /// 1 (worst) to 5 (best).
    rating: Option<f64>,
    comment: Option<String>,
}

/// Links feedback to a logged gateway call (its id is the `x-flywheel-interaction-id` header,
/// or the completion id without `chatcmpl-`).
#[utoipa::path(post, path = "/v1/inferences/{id}/feedback", tag = "gateway", security(("bearer" = [])),
    params(("id" = String, Path, description = "the call's interaction id (or `chatcmpl-<id>`)")),
    request_body = InferenceFeedback,
    responses((status = 201, body = LinkedResult), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn inference_feedback(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Path(id): Path<String>,
    Client(client): Client,
    ApiJson(body): ApiJson<InferenceFeedback>,
) -> Result<(StatusCode, Json<LinkedResult>), ApiError> {
    let mut errors = ValidationErrors::default();
    if body.helpful.is_none() && body.rating.is_none() && body.comment.is_none() {
        errors.push("body", "give at least one of helpful, rating, comment");
    }
    if let Some(rating) = body.rating {
        if !(1.0..=5.0).contains(&rating) {
            errors.push("rating", "must be between 1 and 5");
        }
    }
    errors
        .into_result()
        .map_err(|errors| ApiError::validation(errors.errors().to_vec()))?;
    let id = id.strip_prefix("chatcmpl-").unwrap_or(&id).to_owned();
    let mut feedback = serde_json::Map::new();
    if let Some(helpful) = body.helpful {
        feedback.insert("helpful".into(), json!(helpful));
    }
    if let Some(rating) = body.rating {
        feedback.insert("rating".into(), json!(rating));
    }
    if let Some(comment) = body.comment {
        feedback.insert("comments".into(), json!(comment));
    }
    record_linked(
        &state,
        &principal,
        &client,
        OutcomeTarget::Interaction(id),
        LinkedKind::Feedback,
        json!({"feedback": feedback}),
    )
    .await
}
