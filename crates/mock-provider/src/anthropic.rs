//! Anthropic Messages API (`POST /v1/messages`), JSON and server-sent events, as documented
//! in Anthropic's API reference: `x-api-key` and `anthropic-version` headers, content blocks
//! (`text`, `tool_use`, `tool_result`), the top-level `system`, `tool_choice`
//! (`auto`/`any`/`tool`/`none`), `output_config.format` for JSON answers, usage with cache
//! counts, and the stream events `message_start` … `message_stop`.
//!
//! Requests are validated as the real API does — unknown fields, roles, empty text, tool
//! results that do not answer the preceding assistant's `tool_use` blocks — and refused with
//! 400 in Anthropic's error shape, so adapter bugs show up in tests.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::openai::sse_response;
use crate::{credential, plan, CallRecord, MockState, Plan, TOOL_ARGUMENTS};

/// Top-level request fields the mock knows; anything else is "Extra inputs are not
/// permitted", as the real API answers.
const REQUEST_FIELDS: &[&str] = &[
    "model",
    "messages",
    "max_tokens",
    "system",
    "temperature",
    "top_p",
    "top_k",
    "stop_sequences",
    "stream",
    "metadata",
    "tools",
    "tool_choice",
    "output_config",
    "thinking",
    "service_tier",
];

/// `POST /v1/messages`.
pub async fn messages(
    State(state): State<Arc<MockState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let key = credential(&headers, "x-api-key");
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "There was an issue with the format of your request: the body is not valid JSON",
        );
    };
    let model = request["model"].as_str().unwrap_or_default().to_owned();
    let streamed = request["stream"].as_bool().unwrap_or(false);
    state.record(CallRecord {
        api: "anthropic.messages",
        model: model.clone(),
        credential: key.clone(),
        streamed,
        body: serde_json::Value::Null,
    });
    match key.as_deref() {
        None | Some("") => {
            return error(
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                "x-api-key header is required",
            )
        }
        Some("wrong-key") => {
            return error(
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                "invalid x-api-key: wrong-key",
            )
        }
        Some(_) => {}
    }
    if headers.get("anthropic-version").is_none() {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "anthropic-version: header is required",
        );
    }
    if let Err(message) = validate(&request) {
        return error(StatusCode::BAD_REQUEST, "invalid_request_error", &message);
    }

    let messages = request["messages"].as_array().cloned().unwrap_or_default();
    let mut texts: Vec<String> = vec![system_text(&request["system"])];
    texts.extend(messages.iter().map(message_text));
    let text_refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    // The directives come from the last user text, skipping user turns that only carry
    // tool results (the OpenAI mock likewise reads the last `user` message).
    let last_user = messages
        .iter()
        .rev()
        .filter(|message| message["role"] == "user")
        .map(user_text)
        .find(|text| !text.is_empty())
        .unwrap_or_default();
    let tools: Vec<String> = request["tools"]
        .as_array()
        .map(|tools| {
            tools
                .iter()
                .filter_map(|tool| tool["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let json_answer = request["output_config"]["format"]["type"] == "json_schema";
    let plan = plan(&state, &last_user, &text_refs, &tools, json_answer);
    crate::pause(plan.delay).await;
    if let Some(status) = plan.status {
        return status_error(status);
    }
    if streamed {
        stream(&model, &plan)
    } else {
        Json(message(&model, &plan)).into_response()
    }
}

fn validate(request: &Value) -> Result<(), String> {
    let Some(fields) = request.as_object() else {
        return Err("the request body must be a JSON object".to_owned());
    };
    extra_fields("", fields, REQUEST_FIELDS)?;
    if !request["model"].is_string() {
        return Err("model: Field required".to_owned());
    }
    match request["max_tokens"].as_u64() {
        Some(1..) => {}
        Some(0) => return Err("max_tokens: Input should be greater than or equal to 1".to_owned()),
        None => return Err("max_tokens: Field required".to_owned()),
    }
    let Some(messages) = request["messages"].as_array() else {
        return Err("messages: Field required".to_owned());
    };
    if messages.is_empty() {
        return Err("messages: at least one message is required".to_owned());
    }
    validate_system(&request["system"])?;
    for name in ["temperature", "top_p"] {
        if let Some(value) = request.get(name) {
            match value.as_f64() {
                Some(number) if (0.0..=1.0).contains(&number) => {}
                _ => return Err(format!("{name}: range: 0..1")),
            }
        }
    }
    if let Some(stops) = request.get("stop_sequences") {
        let valid = stops
            .as_array()
            .is_some_and(|stops| stops.iter().all(Value::is_string));
        if !valid {
            return Err("stop_sequences: Input should be a valid list of strings".to_owned());
        }
    }
    if let Some(stream) = request.get("stream") {
        if !stream.is_boolean() {
            return Err("stream: Input should be a valid boolean".to_owned());
        }
    }
    if let Some(metadata) = request.get("metadata") {
        let Some(fields) = metadata.as_object() else {
            return Err("metadata: Input should be a valid dictionary".to_owned());
        };
        extra_fields("metadata.", fields, &["user_id"])?;
        if !(metadata["user_id"].is_string() || metadata["user_id"].is_null()) {
            return Err("metadata.user_id: Input should be a valid string".to_owned());
        }
    }
    let tool_names = validate_tools(&request["tools"])?;
    validate_tool_choice(request.get("tool_choice"), &tool_names)?;
    validate_output_config(request.get("output_config"))?;
    validate_messages(messages)
}

fn extra_fields(
    path: &str,
    fields: &serde_json::Map<String, Value>,
    allowed: &[&str],
) -> Result<(), String> {
    match fields.keys().find(|key| !allowed.contains(&key.as_str())) {
        Some(key) => Err(format!("{path}{key}: Extra inputs are not permitted")),
        None => Ok(()),
    }
}

fn validate_system(system: &Value) -> Result<(), String> {
    match system {
        Value::Null | Value::String(_) => Ok(()),
        Value::Array(blocks) => {
            for (index, block) in blocks.iter().enumerate() {
                if block["type"] != "text" || !block["text"].is_string() {
                    return Err(format!("system.{index}: system blocks must be text blocks"));
                }
            }
            Ok(())
        }
        _ => Err("system: Input should be a valid string or list of text blocks".to_owned()),
    }
}

fn validate_tools(tools: &Value) -> Result<Vec<String>, String> {
    let tools = match tools {
        Value::Null => return Ok(Vec::new()),
        Value::Array(tools) => tools,
        _ => return Err("tools: Input should be a valid list".to_owned()),
    };
    let mut names = Vec::new();
    for (index, tool) in tools.iter().enumerate() {
        let Some(fields) = tool.as_object() else {
            return Err(format!("tools.{index}: Input should be a valid dictionary"));
        };
        extra_fields(
            &format!("tools.{index}.custom."),
            fields,
            &[
                "type",
                "name",
                "description",
                "input_schema",
                "strict",
                "cache_control",
            ],
        )?;
        let name = tool["name"].as_str().unwrap_or_default();
        let valid_name = !name.is_empty()
            && name.len() <= 128
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid_name {
            return Err(format!(
                "tools.{index}.custom.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'"
            ));
        }
        if tool["input_schema"]["type"] != "object" {
            return Err(format!(
                "tools.{index}.custom.input_schema: JSON schema must have type 'object'"
            ));
        }
        if names.iter().any(|known| known == name) {
            return Err(format!("tools: Tool names must be unique ({name})"));
        }
        names.push(name.to_owned());
    }
    Ok(names)
}

fn validate_tool_choice(choice: Option<&Value>, tools: &[String]) -> Result<(), String> {
    let Some(choice) = choice else {
        return Ok(());
    };
    let Some(fields) = choice.as_object() else {
        return Err("tool_choice: Input should be a valid dictionary".to_owned());
    };
    match choice["type"].as_str() {
        Some("auto" | "any" | "none") => {
            extra_fields("tool_choice.", fields, &["type", "disable_parallel_tool_use"])?;
        }
        Some("tool") => {
            extra_fields(
                "tool_choice.",
                fields,
                &["type", "name", "disable_parallel_tool_use"],
            )?;
            let name = choice["name"].as_str().unwrap_or_default();
            if !tools.iter().any(|tool| tool == name) {
                return Err(format!(
                    "tool_choice.name: tool {name:?} is not one of the request's tools"
                ));
            }
        }
        other => {
            return Err(format!(
                "tool_choice.type: Input tag {other:?} does not match any of the expected tags: 'auto', 'any', 'tool', 'none'"
            ))
        }
    }
    if tools.is_empty() {
        return Err("tool_choice may only be specified while providing tools".to_owned());
    }
    Ok(())
}

fn validate_output_config(config: Option<&Value>) -> Result<(), String> {
    let Some(config) = config else {
        return Ok(());
    };
    let Some(fields) = config.as_object() else {
        return Err("output_config: Input should be a valid dictionary".to_owned());
    };
    extra_fields("output_config.", fields, &["format", "effort"])?;
    if let Some(format) = config.get("format") {
        let Some(format_fields) = format.as_object() else {
            return Err("output_config.format: Input should be a valid dictionary".to_owned());
        };
        extra_fields("output_config.format.", format_fields, &["type", "schema"])?;
        if format["type"] != "json_schema" {
            return Err("output_config.format.type: Input should be 'json_schema'".to_owned());
        }
        if !format["schema"].is_object() {
            return Err("output_config.format.schema: Field required".to_owned());
        }
    }
    Ok(())
}

/// Checks roles and content blocks, then tool pairing over the turns as the API sees them
/// (consecutive messages of one role form one turn).
fn validate_messages(messages: &[Value]) -> Result<(), String> {
    let last_index = messages.len() - 1;
    // (role, blocks with their message index) per turn.
    let mut turns: Vec<(&str, Vec<(usize, Value)>)> = Vec::new();
    for (index, message) in messages.iter().enumerate() {
        let Some(fields) = message.as_object() else {
            return Err(format!(
                "messages.{index}: Input should be a valid dictionary"
            ));
        };
        extra_fields(&format!("messages.{index}."), fields, &["role", "content"])?;
        let role = match message["role"].as_str() {
            Some(role @ ("user" | "assistant")) => role,
            Some("system") => {
                return Err(format!(
                    "messages.{index}.role: Unexpected role \"system\". The Messages API accepts a top-level `system` parameter, not \"system\" as an input message role."
                ))
            }
            other => {
                return Err(format!(
                    "messages.{index}.role: Input should be 'user' or 'assistant' (got {other:?})"
                ))
            }
        };
        let blocks: Vec<Value> = match &message["content"] {
            Value::String(text) => vec![json!({"type": "text", "text": text})],
            Value::Array(blocks) => blocks.clone(),
            _ => return Err(format!("messages.{index}.content: Field required")),
        };
        let final_assistant = index == last_index && role == "assistant";
        if blocks.is_empty() && !final_assistant {
            return Err(format!(
                "messages.{index}: all messages must have non-empty content except for the optional final assistant message"
            ));
        }
        for (block_index, block) in blocks.iter().enumerate() {
            validate_block(index, block_index, role, block)?;
        }
        match turns.last_mut() {
            Some((last_role, last_blocks)) if *last_role == role => {
                last_blocks.extend(blocks.into_iter().map(|block| (index, block)));
            }
            _ => turns.push((
                role,
                blocks.into_iter().map(|block| (index, block)).collect(),
            )),
        }
    }
    for (turn_index, (role, blocks)) in turns.iter().enumerate() {
        if *role == "user" {
            // Tool results come first in their user turn.
            let first_other = blocks
                .iter()
                .position(|(_, block)| block["type"] != "tool_result");
            if let Some(first_other) = first_other {
                if let Some((index, _)) = blocks[first_other..]
                    .iter()
                    .find(|(_, block)| block["type"] == "tool_result")
                {
                    return Err(format!(
                        "messages.{index}: `tool_result` blocks must come first in the user message content, before any other content"
                    ));
                }
            }
            let previous_calls: Vec<&str> = turn_index
                .checked_sub(1)
                .map(|previous| tool_use_ids(&turns[previous].1))
                .unwrap_or_default();
            for (index, block) in blocks {
                if block["type"] == "tool_result" {
                    let id = block["tool_use_id"].as_str().unwrap_or_default();
                    if !previous_calls.contains(&id) {
                        return Err(format!(
                            "messages.{index}: unexpected `tool_use_id` found in `tool_result` blocks: {id}. Each `tool_result` block must have a corresponding `tool_use` block in the previous message."
                        ));
                    }
                }
            }
        } else {
            let calls = tool_use_ids(blocks);
            if calls.is_empty() {
                continue;
            }
            let answered: Vec<&str> = turns
                .get(turn_index + 1)
                .map(|(_, next)| {
                    next.iter()
                        .filter(|(_, block)| block["type"] == "tool_result")
                        .filter_map(|(_, block)| block["tool_use_id"].as_str())
                        .collect()
                })
                .unwrap_or_default();
            let missing: Vec<&str> = calls
                .iter()
                .copied()
                .filter(|id| !answered.contains(id))
                .collect();
            if !missing.is_empty() {
                let index = blocks.first().map(|(index, _)| *index).unwrap_or_default();
                return Err(format!(
                    "messages.{index}: `tool_use` ids were found without `tool_result` blocks immediately after: {}. Each `tool_use` block must have a corresponding `tool_result` block in the next message.",
                    missing.join(", ")
                ));
            }
        }
    }
    Ok(())
}

fn tool_use_ids(blocks: &[(usize, Value)]) -> Vec<&str> {
    blocks
        .iter()
        .filter(|(_, block)| block["type"] == "tool_use")
        .filter_map(|(_, block)| block["id"].as_str())
        .collect()
}

fn validate_block(
    index: usize,
    block_index: usize,
    role: &str,
    block: &Value,
) -> Result<(), String> {
    let path = format!("messages.{index}.content.{block_index}");
    let Some(fields) = block.as_object() else {
        return Err(format!("{path}: Input should be a valid dictionary"));
    };
    match block["type"].as_str() {
        Some("text") => {
            extra_fields(&format!("{path}.text."), fields, &["type", "text", "cache_control", "citations"])?;
            match block["text"].as_str() {
                Some("") => Err("messages: text content blocks must be non-empty".to_owned()),
                Some(_) => Ok(()),
                None => Err(format!("{path}.text.text: Field required")),
            }
        }
        Some("tool_use") => {
            extra_fields(&format!("{path}.tool_use."), fields, &["type", "id", "name", "input", "cache_control"])?;
            if role != "assistant" {
                return Err(format!("{path}: `tool_use` blocks can only be in `assistant` messages"));
            }
            if !block["id"].is_string() || !block["name"].is_string() {
                return Err(format!("{path}.tool_use: `id` and `name` are required"));
            }
            if !block["input"].is_object() {
                return Err(format!("{path}.tool_use.input: Input should be a valid dictionary"));
            }
            Ok(())
        }
        Some("tool_result") => {
            extra_fields(
                &format!("{path}.tool_result."),
                fields,
                &["type", "tool_use_id", "content", "is_error", "cache_control"],
            )?;
            if role != "user" {
                return Err(format!("{path}: `tool_result` blocks can only be in `user` messages"));
            }
            if !block["tool_use_id"].is_string() {
                return Err(format!("{path}.tool_result.tool_use_id: Field required"));
            }
            match &block["content"] {
                Value::Null | Value::String(_) => Ok(()),
                Value::Array(parts) if parts.iter().all(|part| part["type"] == "text" && part["text"].is_string()) => Ok(()),
                _ => Err(format!("{path}.tool_result.content: Input should be a valid string or list of content blocks")),
            }
        }
        other => Err(format!(
            "{path}: Input tag {other:?} found using 'type' does not match any of the expected tags: 'text', 'tool_use', 'tool_result'"
        )),
    }
}

fn system_text(system: &Value) -> String {
    match system {
        Value::String(text) => text.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter_map(|block| block["text"].as_str())
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// Every text of a message: text blocks and tool-result contents (for the token count).
fn message_text(message: &Value) -> String {
    match &message["content"] {
        Value::String(text) => text.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter_map(|block| match block["type"].as_str() {
                Some("text") => block["text"].as_str().map(str::to_owned),
                Some("tool_result") => Some(system_text(&block["content"])),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// The text blocks of a user message (tool results excluded), where directives live.
fn user_text(message: &Value) -> String {
    match &message["content"] {
        Value::String(text) => text.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter(|block| block["type"] == "text")
            .filter_map(|block| block["text"].as_str())
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// Anthropic reports the input after the last cache breakpoint in `input_tokens`, and cache
/// reads separately.
fn usage(plan: &Plan, output_tokens: u64) -> Value {
    json!({
        "input_tokens": plan.input_tokens.saturating_sub(plan.cached_input_tokens),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": plan.cached_input_tokens,
        "output_tokens": output_tokens,
    })
}

fn tool_input() -> Value {
    serde_json::from_str(TOOL_ARGUMENTS).unwrap_or_else(|_| json!({}))
}

fn message(model: &str, plan: &Plan) -> Value {
    let (content, stop_reason) = match &plan.tool_call {
        Some(name) => (
            json!([{"type": "tool_use", "id": "toolu_mock_0", "name": name, "input": tool_input()}]),
            "tool_use",
        ),
        None => (json!([{"type": "text", "text": plan.answer}]), "end_turn"),
    };
    json!({
        "id": "msg_mock",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": null,
        "usage": usage(plan, plan.output_tokens),
    })
}

fn stream(model: &str, plan: &Plan) -> Response {
    let mut events: Vec<Result<Event, std::io::Error>> = Vec::new();
    let mut push = |kind: &str, data: Value| {
        events.push(Ok(Event::default().event(kind).data(data.to_string())));
    };
    push(
        "message_start",
        json!({"type": "message_start", "message": {
            "id": "msg_mock",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": null,
            "stop_sequence": null,
            "usage": usage(plan, 1),
        }}),
    );
    let stop_reason = match &plan.tool_call {
        Some(name) => {
            push(
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block":
                    {"type": "tool_use", "id": "toolu_mock_0", "name": name, "input": {}}}),
            );
            let (first, second) = TOOL_ARGUMENTS.split_at(TOOL_ARGUMENTS.len() / 2);
            for fragment in ["", first, second] {
                push(
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": 0, "delta":
                        {"type": "input_json_delta", "partial_json": fragment}}),
                );
            }
            "tool_use"
        }
        None => {
            push(
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            );
            push("ping", json!({"type": "ping"}));
            for piece in plan.answer_chunks() {
                push(
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}),
                );
            }
            "end_turn"
        }
    };
    push(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    );
    push(
        "message_delta",
        json!({"type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": null},
            "usage": {"output_tokens": plan.output_tokens}}),
    );
    push("message_stop", json!({"type": "message_stop"}));
    if plan.fail_midstream {
        // message_start, content_block_start, ping, then two text deltas.
        events.truncate(5);
        events.push(Err(std::io::Error::other(
            "mock: connection broken mid-stream",
        )));
    }
    sse_response(events, plan.chunk_delay)
}

fn status_error(status: u16) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let kind = match status {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    };
    let mut response = error(code, kind, &format!("mock: status {status} as requested"));
    if status == 429 {
        response
            .headers_mut()
            .insert("retry-after", HeaderValue::from_static("0"));
    }
    response
}

/// Anthropic's error shape.
pub fn error(status: StatusCode, kind: &str, message: &str) -> Response {
    let body = json!({
        "type": "error",
        "error": {"type": kind, "message": message},
        "request_id": "req_mock",
    });
    (status, Json(body)).into_response()
}
