//! OpenAI Chat Completions, Embeddings and Models (`/v1/chat/completions`, `/v1/embeddings`,
//! `/v1/models`), JSON and server-sent events, as documented in OpenAI's API reference.
//! Also what OpenAI-compatible servers (vLLM, Ollama, llama.cpp server) speak.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::StreamExt;
use serde_json::{json, Value};

use crate::{credential, plan, CallRecord, MockState, Plan, TOOL_ARGUMENTS};

/// `POST /v1/chat/completions`.
pub async fn chat(
    State(state): State<Arc<MockState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let key = credential(&headers, "authorization");
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "We could not parse the JSON body of your request.",
        );
    };
    let model = request["model"].as_str().unwrap_or_default().to_owned();
    let streamed = request["stream"].as_bool().unwrap_or(false);
    state.record(CallRecord {
        api: "openai.chat",
        model: model.clone(),
        credential: key.clone(),
        streamed,
        body: request.clone(),
    });
    if let Some(response) = check_key(key.as_deref()) {
        return response;
    }
    if let Err(message) = validate_chat(&request) {
        return error(StatusCode::BAD_REQUEST, "invalid_request_error", &message);
    }
    let messages = request["messages"].as_array().cloned().unwrap_or_default();
    let texts: Vec<String> = messages.iter().map(message_text).collect();
    let text_refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let last_user = messages
        .iter()
        .rposition(|message| message["role"] == "user")
        .map(|index| texts[index].as_str())
        .unwrap_or_default();
    // Like a real model, answer in text once the tool's result is in: only a turn that ends
    // with the user's message calls a tool.
    let answered_tool = messages
        .last()
        .is_some_and(|message| message["role"] == "tool");
    let tools: Vec<String> = request["tools"]
        .as_array()
        .filter(|_| !answered_tool)
        .map(|tools| {
            tools
                .iter()
                .filter_map(|tool| tool["function"]["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let json_answer = matches!(
        request["response_format"]["type"].as_str(),
        Some("json_object" | "json_schema")
    );
    let plan = plan(&state, last_user, &text_refs, &tools, json_answer);
    crate::pause(plan.delay).await;
    if let Some(status) = plan.status {
        return status_error(status);
    }
    if streamed {
        let include_usage = request["stream_options"]["include_usage"]
            .as_bool()
            .unwrap_or(false);
        stream(&model, &plan, include_usage)
    } else {
        Json(completion(&model, &plan)).into_response()
    }
}

/// `POST /v1/embeddings`: deterministic unit vectors derived from the text.
pub async fn embeddings(
    State(state): State<Arc<MockState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let key = credential(&headers, "authorization");
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "We could not parse the JSON body of your request.",
        );
    };
    let model = request["model"].as_str().unwrap_or_default().to_owned();
    state.record(CallRecord {
        api: "openai.embeddings",
        model: model.clone(),
        credential: key.clone(),
        streamed: false,
        body: Value::Null,
    });
    if let Some(response) = check_key(key.as_deref()) {
        return response;
    }
    let inputs: Vec<String> = match &request["input"] {
        Value::String(text) => vec![text.clone()],
        Value::Array(items) if !items.is_empty() => {
            let texts: Option<Vec<String>> = items
                .iter()
                .map(|item| item.as_str().map(str::to_owned))
                .collect();
            match texts {
                Some(texts) => texts,
                None => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "invalid_request_error",
                        "'input' must be a string or an array of strings",
                    )
                }
            }
        }
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "'input' is required",
            )
        }
    };
    let dimensions = request["dimensions"].as_u64().unwrap_or(8).clamp(1, 4096) as usize;
    let mut tokens = 0u64;
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, text)| {
            tokens += text.split_whitespace().count() as u64;
            json!({"object": "embedding", "index": index, "embedding": vector(text, dimensions)})
        })
        .collect();
    Json(json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }))
    .into_response()
}

/// `GET /v1/models`.
pub async fn models() -> Json<Value> {
    Json(json!({
        "object": "list",
        "data": [
            {"id": "mock-small", "object": "model", "created": 1_700_000_000, "owned_by": "mock"},
            {"id": "mock-large", "object": "model", "created": 1_700_000_000, "owned_by": "mock"},
        ],
    }))
}

/// A deterministic unit vector for `text` (the same text always maps to the same vector).
pub fn vector(text: &str, dimensions: usize) -> Vec<f32> {
    let mut state: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        state = (state ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    let mut values: Vec<f32> = (0..dimensions)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 2_000) as f32 / 1_000.0 - 1.0
        })
        .collect();
    let norm = values
        .iter()
        .map(|value| value * value)
        .sum::<f32>()
        .sqrt()
        .max(1e-6);
    for value in &mut values {
        *value /= norm;
    }
    values
}

fn check_key(key: Option<&str>) -> Option<Response> {
    match key {
        None | Some("") => Some(error(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "You didn't provide an API key.",
        )),
        Some("wrong-key") => Some(error(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "Incorrect API key provided: wrong-key. You can find your API key at https://platform.openai.com/account/api-keys.",
        )),
        Some(_) => None,
    }
}

fn validate_chat(request: &Value) -> Result<(), String> {
    if !request["model"].is_string() {
        return Err("you must provide a model parameter".to_owned());
    }
    let Some(messages) = request["messages"].as_array().filter(|m| !m.is_empty()) else {
        return Err("'messages' must be a non-empty array".to_owned());
    };
    let mut open_calls: Vec<String> = Vec::new();
    for (index, message) in messages.iter().enumerate() {
        match message["role"].as_str() {
            Some("system" | "developer" | "user") => {}
            Some("assistant") => {
                if let Some(calls) = message["tool_calls"].as_array() {
                    for call in calls {
                        let id = call["id"].as_str().ok_or(format!("messages[{index}].tool_calls[].id is required"))?;
                        if call["type"] != "function" || !call["function"]["name"].is_string() || !call["function"]["arguments"].is_string() {
                            return Err(format!("messages[{index}].tool_calls[] must be {{id, type: function, function: {{name, arguments}}}}"));
                        }
                        open_calls.push(id.to_owned());
                    }
                }
            }
            Some("tool") => {
                let id = message["tool_call_id"].as_str().unwrap_or_default();
                if !open_calls.iter().any(|open| open == id) {
                    return Err(format!("messages[{index}] with role 'tool' must be a response to a preceding message with 'tool_calls' (tool_call_id {id:?})"));
                }
            }
            other => return Err(format!("messages[{index}].role {other:?} is not one of system, developer, user, assistant, tool")),
        }
    }
    if request.get("stream_options").is_some() && request["stream"] != true {
        return Err(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.".to_owned(),
        );
    }
    Ok(())
}

fn message_text(message: &Value) -> String {
    match &message["content"] {
        Value::String(text) => text.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|part| part["text"].as_str())
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

fn usage(plan: &Plan) -> Value {
    json!({
        "prompt_tokens": plan.input_tokens,
        "completion_tokens": plan.output_tokens,
        "total_tokens": plan.input_tokens + plan.output_tokens,
        "prompt_tokens_details": {"cached_tokens": plan.cached_input_tokens, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    })
}

fn completion(model: &str, plan: &Plan) -> Value {
    let (message, finish_reason) = match &plan.tool_call {
        Some(name) => (
            json!({"role": "assistant", "content": null, "refusal": null, "tool_calls": [
                {"id": "call_mock_0", "type": "function", "function": {"name": name, "arguments": TOOL_ARGUMENTS}}
            ]}),
            "tool_calls",
        ),
        None => (
            json!({"role": "assistant", "content": plan.answer, "refusal": null}),
            "stop",
        ),
    };
    json!({
        "id": "chatcmpl-mock",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish_reason}],
        "usage": usage(plan),
        "system_fingerprint": "fp_mock",
    })
}

fn stream(model: &str, plan: &Plan, include_usage: bool) -> Response {
    let chunk = |delta: Value, finish_reason: Value| {
        json!({
            "id": "chatcmpl-mock",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": model,
            "system_fingerprint": "fp_mock",
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}],
        })
    };
    let mut events: Vec<Result<Event, std::io::Error>> = Vec::new();
    let mut push = |value: Value| events.push(Ok(Event::default().data(value.to_string())));
    push(chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    ));
    match &plan.tool_call {
        Some(name) => {
            push(chunk(
                json!({"tool_calls": [{"index": 0, "id": "call_mock_0", "type": "function", "function": {"name": name, "arguments": ""}}]}),
                Value::Null,
            ));
            let (first, second) = TOOL_ARGUMENTS.split_at(TOOL_ARGUMENTS.len() / 2);
            for fragment in [first, second] {
                push(chunk(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": fragment}}]}),
                    Value::Null,
                ));
            }
            push(chunk(json!({}), json!("tool_calls")));
        }
        None => {
            for piece in plan.answer_chunks() {
                push(chunk(json!({"content": piece}), Value::Null));
            }
            push(chunk(json!({}), json!("stop")));
        }
    }
    if include_usage {
        let mut last = chunk(json!({}), Value::Null);
        last["choices"] = json!([]);
        last["usage"] = usage(plan);
        push(last);
    }
    events.push(Ok(Event::default().data("[DONE]")));
    if plan.fail_midstream {
        events.truncate(3);
        events.push(Err(std::io::Error::other(
            "mock: connection broken mid-stream",
        )));
    }
    sse_response(events, plan.chunk_delay)
}

/// Serves `events` as `text/event-stream`, pausing `delay` before each; an `Err` aborts the
/// connection as a crashed upstream would.
pub fn sse_response(events: Vec<Result<Event, std::io::Error>>, delay: Duration) -> Response {
    let stream = futures::stream::iter(events).then(move |event| async move {
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if event.is_err() {
            // Let the chunks before the break reach the client first, as they would from a
            // real upstream that crashes mid-answer.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        event
    });
    Sse::new(stream).into_response()
}

fn status_error(status: u16) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let kind = match status {
        429 => "rate_limit_exceeded",
        400..=499 => "invalid_request_error",
        _ => "server_error",
    };
    let mut response = error(code, kind, &format!("mock: status {status} as requested"));
    if status == 429 {
        response
            .headers_mut()
            .insert("retry-after", HeaderValue::from_static("0"));
    }
    response
}

/// OpenAI's error shape.
pub fn error(status: StatusCode, kind: &str, message: &str) -> Response {
    let body = json!({"error": {"message": message, "type": kind, "param": null, "code": null}});
    (status, Json(body)).into_response()
}
