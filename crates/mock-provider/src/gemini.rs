//! Google Gemini API: `POST /v1beta/models/{model}:generateContent`,
//! `…:streamGenerateContent` (server-sent events with `?alt=sse`, otherwise one JSON array) and
//! `…:batchEmbedContents`, as documented in Google's API reference.
//!
//! Requests are validated the way the real API does (proto JSON: unknown fields are errors;
//! function responses must answer the function calls of the model turn right before them, one
//! for one; Gemini 3 models require a `thoughtSignature` on the first replayed function call)
//! and rejected with 400 `INVALID_ARGUMENT` in Google's error shape.
//!
//! One deliberate difference: Google answers a missing key with 403 and a wrong key with
//! 400 `API_KEY_INVALID`; like every provider of this mock, both answer 401 here (the message
//! echoes a wrong key, so adapters must scrub it).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::StreamExt;
use serde_json::{json, Map, Value};

use crate::{credential, plan, CallRecord, MockState, Plan, TOOL_ARGUMENTS};

/// Gemini accepts at most this many requests in one `batchEmbedContents` call.
const MAX_EMBED_BATCH: usize = 100;

/// Vector size when `outputDimensionality` is not given.
const DEFAULT_DIMENSIONS: u64 = 768;

/// What the mock sends as the thought signature of a Gemini 3 function call.
const MOCK_SIGNATURE: &str = "bW9jay10aG91Z2h0LXNpZ25hdHVyZQ==";

/// `POST /v1beta/models/{model}:{action}`: dispatches on the action after the colon.
pub async fn generate(
    State(state): State<Arc<MockState>>,
    Path(model_action): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some((model, action)) = model_action.split_once(':') else {
        return error(
            StatusCode::NOT_FOUND,
            &format!("models/{model_action} is not a method; expected models/{{model}}:{{action}}"),
        );
    };
    let api = match action {
        "generateContent" => "gemini.generate",
        "streamGenerateContent" => "gemini.stream",
        "batchEmbedContents" => "gemini.embed",
        _ => {
            return error(
                StatusCode::NOT_FOUND,
                &format!("Method {action} is not found for models/{model}"),
            )
        }
    };
    let key = credential(&headers, "x-goog-api-key").or_else(|| query.get("key").cloned());
    state.record(CallRecord {
        api,
        model: model.to_owned(),
        credential: key.clone(),
        streamed: api == "gemini.stream",
        body: serde_json::Value::Null,
    });
    if let Some(response) = check_key(key.as_deref()) {
        return response;
    }
    let request = match serde_json::from_slice::<Value>(&body) {
        Ok(request @ Value::Object(_)) => request,
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "Invalid JSON payload received. Expected an object.",
            )
        }
    };
    if api == "gemini.embed" {
        return embed(&state, model, &request).await;
    }
    if let Err(message) = validate_generate(model, &request) {
        return error(StatusCode::BAD_REQUEST, &message);
    }
    let mut plan = plan_for(&state, &request);
    crate::pause(plan.delay).await;
    if let Some(status) = plan.status {
        return status_error(status);
    }
    let finish_reason = truncate(&mut plan, &request);
    let frames = frames(model, &plan, finish_reason, api == "gemini.stream");
    if api == "gemini.generate" {
        return Json(frames.into_iter().next().unwrap_or_default()).into_response();
    }
    if query.get("alt").map(String::as_str) == Some("sse") {
        sse(frames, plan.fail_midstream, plan.chunk_delay)
    } else {
        // Without `alt=sse` the stream is one JSON array of the same responses.
        Json(Value::Array(frames)).into_response()
    }
}

fn check_key(key: Option<&str>) -> Option<Response> {
    match key {
        None | Some("") => Some(error(
            StatusCode::UNAUTHORIZED,
            "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
        )),
        Some("wrong-key") => Some(error(
            StatusCode::UNAUTHORIZED,
            "API key not valid. Please pass a valid API key. Invalid API key: wrong-key",
        )),
        Some(_) => None,
    }
}

/// Plans the answer from the last user turn's text (or, after tool results, from the
/// function responses, so a follow-up answer shows what the tool said).
fn plan_for(state: &MockState, request: &Value) -> Plan {
    let contents = array(&request["contents"]);
    let mut texts: Vec<String> = array(&request["systemInstruction"]["parts"])
        .iter()
        .filter_map(|part| part["text"].as_str().map(str::to_owned))
        .collect();
    for content in contents {
        texts.extend(
            array(&content["parts"])
                .iter()
                .filter_map(|part| part["text"].as_str().map(str::to_owned)),
        );
    }
    let last_user = contents
        .iter()
        .rev()
        .find(|content| content["role"].as_str().unwrap_or("user") == "user")
        .map(|content| {
            let parts = array(&content["parts"]);
            let text: Vec<&str> = parts
                .iter()
                .filter_map(|part| part["text"].as_str())
                .collect();
            if text.is_empty() {
                parts
                    .iter()
                    .filter_map(|part| part.get("functionResponse"))
                    .map(|response| response["response"].to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            } else {
                text.join(" ")
            }
        })
        .unwrap_or_default();
    let calling = &request["toolConfig"]["functionCallingConfig"];
    let tools: Vec<String> = if calling["mode"] == "NONE" {
        Vec::new()
    } else if let Some(allowed) = calling["allowedFunctionNames"].as_array() {
        allowed
            .iter()
            .filter_map(|name| name.as_str().map(str::to_owned))
            .collect()
    } else {
        declared_functions(request)
    };
    let json_answer = request["generationConfig"]["responseMimeType"] == "application/json";
    let text_refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    plan(state, &last_user, &text_refs, &tools, json_answer)
}

/// Applies `maxOutputTokens` (one token per word) and returns the finish reason.
fn truncate(plan: &mut Plan, request: &Value) -> &'static str {
    let Some(max) = request["generationConfig"]["maxOutputTokens"].as_u64() else {
        return "STOP";
    };
    if plan.tool_call.is_some() || plan.output_tokens <= max {
        return "STOP";
    }
    plan.answer = plan
        .answer
        .split_whitespace()
        .take(usize::try_from(max).unwrap_or(usize::MAX))
        .collect::<Vec<_>>()
        .join(" ");
    plan.output_tokens = max;
    "MAX_TOKENS"
}

/// The answer as `GenerateContentResponse`s: one for `generateContent`, one per chunk for a
/// stream (the finish reason and the complete usage in the last).
fn frames(model: &str, plan: &Plan, finish_reason: &str, streamed: bool) -> Vec<Value> {
    let frame = |parts: Value, last: bool| {
        let mut candidate = json!({"content": {"parts": parts, "role": "model"}, "index": 0});
        let usage = if last {
            candidate["finishReason"] = json!(finish_reason);
            usage(plan)
        } else {
            json!({"promptTokenCount": plan.input_tokens, "totalTokenCount": plan.input_tokens})
        };
        json!({
            "candidates": [candidate],
            "usageMetadata": usage,
            "modelVersion": model,
            "responseId": "mock-response-id",
        })
    };
    if let Some(name) = &plan.tool_call {
        let args: Value = serde_json::from_str(TOOL_ARGUMENTS).unwrap_or_default();
        let mut part = json!({"functionCall": {"name": name, "args": args}});
        if requires_signatures(model) {
            part["thoughtSignature"] = json!(MOCK_SIGNATURE);
        }
        return vec![frame(json!([part]), true)];
    }
    if !streamed {
        return vec![frame(json!([{"text": plan.answer}]), true)];
    }
    let chunks = plan.answer_chunks();
    let n_chunks = chunks.len();
    chunks
        .into_iter()
        .enumerate()
        .map(|(chunk_idx, piece)| frame(json!([{"text": piece}]), chunk_idx + 1 == n_chunks))
        .collect()
}

fn usage(plan: &Plan) -> Value {
    let mut usage = json!({
        "promptTokenCount": plan.input_tokens,
        "candidatesTokenCount": plan.output_tokens,
        "totalTokenCount": plan.input_tokens + plan.output_tokens,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": plan.input_tokens}],
    });
    // Proto JSON leaves zero counts out, as the real API does.
    if plan.cached_input_tokens > 0 {
        usage["cachedContentTokenCount"] = json!(plan.cached_input_tokens);
    }
    usage
}

/// Serves `frames` as Gemini's `text/event-stream` (`data: {…}\r\n\r\n`), pausing `delay`
/// between them; `fail_midstream` breaks the connection after two.
fn sse(frames: Vec<Value>, fail_midstream: bool, delay: Duration) -> Response {
    let mut items: Vec<Result<Bytes, std::io::Error>> = frames
        .iter()
        .map(|frame| Ok(Bytes::from(format!("data: {frame}\r\n\r\n"))))
        .collect();
    if fail_midstream {
        items.truncate(2);
        items.push(Err(std::io::Error::other(
            "mock: connection broken mid-stream",
        )));
    }
    let stream = futures::stream::iter(items.into_iter().enumerate()).then(
        move |(item_idx, item)| async move {
            if item_idx > 0 && !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if item.is_err() {
                // Let the chunks before the break reach the client first, as they would from
                // a real upstream; an immediate error makes hyper drop the unflushed response.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            item
        },
    );
    let mut response = Body::from_stream(stream).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    response
}

/// `batchEmbedContents`: deterministic unit vectors; the real API reports no token usage.
async fn embed(state: &MockState, model: &str, request: &Value) -> Response {
    if let Err(message) = validate_embed(model, request) {
        return error(StatusCode::BAD_REQUEST, &message);
    }
    let requests = array(&request["requests"]);
    let texts: Vec<String> = requests
        .iter()
        .map(|item| {
            array(&item["content"]["parts"])
                .iter()
                .filter_map(|part| part["text"].as_str())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    let text_refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let plan = plan(state, &texts.join(" "), &text_refs, &[], false);
    crate::pause(plan.delay).await;
    if let Some(status) = plan.status {
        return status_error(status);
    }
    let embeddings: Vec<Value> = requests
        .iter()
        .zip(&texts)
        .map(|(item, text)| {
            let dimensions = item["outputDimensionality"]
                .as_u64()
                .unwrap_or(DEFAULT_DIMENSIONS);
            let dimensions = usize::try_from(dimensions).unwrap_or(1);
            json!({"values": crate::openai::vector(text, dimensions)})
        })
        .collect();
    Json(json!({ "embeddings": embeddings })).into_response()
}

fn validate_embed(model: &str, request: &Value) -> Result<(), String> {
    known_fields(request, "", &["requests"])?;
    let requests = array(&request["requests"]);
    if requests.is_empty() {
        return Err("* BatchEmbedContentsRequest.requests: contents is not specified".to_owned());
    }
    if requests.len() > MAX_EMBED_BATCH {
        return Err(format!(
            "* BatchEmbedContentsRequest.requests: at most {MAX_EMBED_BATCH} requests can be in one batch"
        ));
    }
    let expected = format!("models/{model}");
    for (item_idx, item) in requests.iter().enumerate() {
        let at = format!("requests[{item_idx}]");
        known_fields(
            item,
            &at,
            &[
                "model",
                "content",
                "taskType",
                "title",
                "outputDimensionality",
            ],
        )?;
        if item["model"].as_str() != Some(expected.as_str()) {
            return Err(format!(
                "* BatchEmbedContentsRequest.{at}.model: unexpected model name format; it must be {expected}, the batch's model"
            ));
        }
        let parts = array(&item["content"]["parts"]);
        if parts.is_empty() || parts.iter().any(|part| !part["text"].is_string()) {
            return Err(format!(
                "* BatchEmbedContentsRequest.{at}.content.parts: must be non-empty text parts"
            ));
        }
        if let Some(dimensions) = item.get("outputDimensionality") {
            if dimensions
                .as_u64()
                .is_none_or(|value| !(1..=3072).contains(&value))
            {
                return Err(format!(
                    "* BatchEmbedContentsRequest.{at}.output_dimensionality: must be between 1 and 3072"
                ));
            }
        }
    }
    Ok(())
}

/// Validates a `GenerateContentRequest` as the real API does.
fn validate_generate(model: &str, request: &Value) -> Result<(), String> {
    known_fields(
        request,
        "",
        &[
            "contents",
            "systemInstruction",
            "tools",
            "toolConfig",
            "generationConfig",
            "safetySettings",
            "cachedContent",
        ],
    )?;
    let contents = array(&request["contents"]);
    if contents.is_empty() {
        return Err("* GenerateContentRequest.contents: contents is not specified".to_owned());
    }
    if let Some(system) = request.get("systemInstruction") {
        known_fields(system, "system_instruction", &["role", "parts"])?;
        let parts = array(&system["parts"]);
        if parts.is_empty() || parts.iter().any(|part| !part["text"].is_string()) {
            return Err(
                "* GenerateContentRequest.system_instruction.parts: must be non-empty text parts"
                    .to_owned(),
            );
        }
    }
    let declared = validate_tools(request)?;
    for (content_idx, content) in contents.iter().enumerate() {
        validate_content(model, content_idx, content, &declared)?;
    }
    validate_turns(contents)?;
    validate_generation_config(&request["generationConfig"])
}

fn validate_content(
    model: &str,
    content_idx: usize,
    content: &Value,
    declared: &[String],
) -> Result<(), String> {
    let at = format!("contents[{content_idx}]");
    known_fields(content, &at, &["role", "parts"])?;
    let role = match content.get("role") {
        None => "user",
        Some(Value::String(role)) if role == "user" || role == "model" => role.as_str(),
        Some(other) => {
            return Err(format!(
                "* GenerateContentRequest.{at}.role: Please use a valid role: user, model (got {other})"
            ))
        }
    };
    let parts = array(&content["parts"]);
    if parts.is_empty() {
        return Err(format!(
            "* GenerateContentRequest.{at}.parts: contents.parts must not be empty."
        ));
    }
    let mut first_call = true;
    for (part_idx, part) in parts.iter().enumerate() {
        let at = format!("{at}.parts[{part_idx}]");
        known_fields(
            part,
            &at,
            &[
                "text",
                "inlineData",
                "fileData",
                "functionCall",
                "functionResponse",
                "executableCode",
                "codeExecutionResult",
                "thought",
                "thoughtSignature",
                "videoMetadata",
            ],
        )?;
        let data = [
            "text",
            "inlineData",
            "fileData",
            "functionCall",
            "functionResponse",
            "executableCode",
            "codeExecutionResult",
        ];
        match data.iter().filter(|field| part.get(**field).is_some()).count() {
            0 => {
                return Err(format!(
                    "* GenerateContentRequest.{at}.data: required oneof field 'data' must have one initialized field"
                ))
            }
            1 => {}
            _ => {
                return Err(format!(
                    "* GenerateContentRequest.{at}.data: oneof field 'data' is already set. Cannot set more than one of its fields."
                ))
            }
        }
        if let Some(text) = part.get("text") {
            if !text.is_string() {
                return Err(format!(
                    "Invalid value at '{at}.text' (TYPE_STRING), {text}"
                ));
            }
        }
        if let Some(signature) = part.get("thoughtSignature") {
            if !signature.is_string() {
                return Err(format!(
                    "Invalid value at '{at}.thought_signature' (TYPE_BYTES), {signature}"
                ));
            }
        }
        if let Some(call) = part.get("functionCall") {
            known_fields(
                call,
                &format!("{at}.function_call"),
                &["id", "name", "args"],
            )?;
            if role != "model" {
                return Err(format!(
                    "* GenerateContentRequest.{at}.function_call: a function call must come from the model role"
                ));
            }
            if call["name"].as_str().is_none_or(str::is_empty) {
                return Err(format!(
                    "* GenerateContentRequest.{at}.function_call.name: Name cannot be empty."
                ));
            }
            if call.get("args").is_some_and(|args| !args.is_object()) {
                return Err(format!(
                    "Invalid value at '{at}.function_call.args' (type.googleapis.com/google.protobuf.Struct), {}",
                    call["args"]
                ));
            }
            if first_call && requires_signatures(model) && !part["thoughtSignature"].is_string() {
                return Err(format!(
                    "Function call is missing a thought_signature in functionCall parts. This is required for tools to work correctly, and missing thought_signature may lead to degraded model performance. Additional data, function call `default_api:{}` , position {}.",
                    call["name"].as_str().unwrap_or_default(),
                    part_idx + 1
                ));
            }
            first_call = false;
        }
        if let Some(response) = part.get("functionResponse") {
            known_fields(
                response,
                &format!("{at}.function_response"),
                &[
                    "id",
                    "name",
                    "response",
                    "parts",
                    "willContinue",
                    "scheduling",
                ],
            )?;
            if role != "user" {
                return Err(format!(
                    "* GenerateContentRequest.{at}.function_response: a function response must come from the user role"
                ));
            }
            let name = response["name"].as_str().unwrap_or_default();
            if name.is_empty() {
                return Err(format!(
                    "* GenerateContentRequest.{at}.function_response.name: Name cannot be empty."
                ));
            }
            if !declared.iter().any(|declared| declared == name) {
                return Err(format!(
                    "* GenerateContentRequest.{at}.function_response.name: function {name:?} is not declared in tools"
                ));
            }
            if !response["response"].is_object() {
                return Err(format!(
                    "Invalid value at '{at}.function_response.response' (type.googleapis.com/google.protobuf.Struct), {}",
                    response["response"]
                ));
            }
        }
    }
    Ok(())
}

/// A model turn that calls functions must be followed by a user turn holding exactly one
/// response per call, by name; a function response turn must follow a function call turn.
fn validate_turns(contents: &[Value]) -> Result<(), String> {
    let names = |content: &Value, field: &str| -> Vec<String> {
        let mut names: Vec<String> = array(&content["parts"])
            .iter()
            .filter_map(|part| part[field]["name"].as_str().map(str::to_owned))
            .collect();
        names.sort();
        names
    };
    for (content_idx, content) in contents.iter().enumerate() {
        let responses = names(content, "functionResponse");
        if responses.is_empty() {
            continue;
        }
        let calls = content_idx
            .checked_sub(1)
            .map(|previous| names(&contents[previous], "functionCall"))
            .unwrap_or_default();
        if calls.is_empty() {
            return Err("Please ensure that function response turn comes immediately after a function call turn.".to_owned());
        }
        if calls.len() != responses.len() {
            return Err("Please ensure that the number of function response parts is equal to the number of function call parts of the function call turn.".to_owned());
        }
        if calls != responses {
            return Err(format!(
                "* GenerateContentRequest.contents[{content_idx}]: function responses {responses:?} do not answer the function calls {calls:?} of the previous turn"
            ));
        }
    }
    for (content_idx, content) in contents.iter().enumerate() {
        let calls = names(content, "functionCall");
        let Some(next) = contents.get(content_idx + 1) else {
            continue;
        };
        if !calls.is_empty() && names(next, "functionResponse").is_empty() {
            return Err("Please ensure that function call turn comes immediately after a user turn or after a function response turn.".to_owned());
        }
    }
    Ok(())
}

/// Validates `tools` and `toolConfig`; returns the declared function names.
fn validate_tools(request: &Value) -> Result<Vec<String>, String> {
    let mut declared = Vec::new();
    if let Some(tools) = request.get("tools") {
        let Some(tools) = tools.as_array() else {
            return Err(format!("Invalid value at 'tools', {tools}"));
        };
        for (tool_idx, tool) in tools.iter().enumerate() {
            let at = format!("tools[{tool_idx}]");
            known_fields(
                tool,
                &at,
                &[
                    "functionDeclarations",
                    "googleSearch",
                    "googleSearchRetrieval",
                    "codeExecution",
                    "urlContext",
                ],
            )?;
            for (declaration_idx, declaration) in
                array(&tool["functionDeclarations"]).iter().enumerate()
            {
                let at = format!("{at}.function_declarations[{declaration_idx}]");
                known_fields(
                    declaration,
                    &at,
                    &[
                        "name",
                        "description",
                        "parameters",
                        "parametersJsonSchema",
                        "response",
                        "responseJsonSchema",
                        "behavior",
                    ],
                )?;
                let name = declaration["name"].as_str().unwrap_or_default();
                if !valid_function_name(name) {
                    return Err(format!(
                        "* GenerateContentRequest.{at}.name: Invalid function name. Must start with a letter or an underscore. Must be alphameric (a-z, A-Z, 0-9), underscores (_), dots (.), colons (:) or dashes (-), with a maximum length of 64."
                    ));
                }
                if declaration.get("parameters").is_some()
                    && declaration.get("parametersJsonSchema").is_some()
                {
                    return Err(format!(
                        "* GenerateContentRequest.{at}: parameters and parameters_json_schema are mutually exclusive"
                    ));
                }
                if let Some(schema) = declaration.get("parametersJsonSchema") {
                    if !schema.is_object() {
                        return Err(format!(
                            "Invalid value at '{at}.parameters_json_schema', {schema}"
                        ));
                    }
                }
                declared.push(name.to_owned());
            }
        }
    }
    if let Some(config) = request.get("toolConfig") {
        known_fields(
            config,
            "tool_config",
            &["functionCallingConfig", "retrievalConfig"],
        )?;
        let calling = &config["functionCallingConfig"];
        if calling.is_object() {
            known_fields(
                calling,
                "tool_config.function_calling_config",
                &["mode", "allowedFunctionNames"],
            )?;
            let mode = calling["mode"].as_str().unwrap_or("AUTO");
            if !matches!(mode, "AUTO" | "ANY" | "NONE" | "VALIDATED") {
                return Err(format!(
                    "Invalid value at 'tool_config.function_calling_config.mode' (type.googleapis.com/google.ai.generativelanguage.v1beta.FunctionCallingConfig.Mode), \"{mode}\""
                ));
            }
            if let Some(allowed) = calling.get("allowedFunctionNames") {
                if !matches!(mode, "ANY" | "VALIDATED") {
                    return Err("* GenerateContentRequest.tool_config.function_calling_config.allowed_function_names: allowed_function_names should only be set when the Mode is ANY or VALIDATED.".to_owned());
                }
                for name in array(allowed) {
                    let name = name.as_str().unwrap_or_default();
                    if !declared.iter().any(|declared| declared == name) {
                        return Err(format!(
                            "* GenerateContentRequest.tool_config.function_calling_config.allowed_function_names: function {name:?} is not declared"
                        ));
                    }
                }
            }
            if mode != "NONE" && mode != "AUTO" && declared.is_empty() {
                return Err("* GenerateContentRequest.tool_config.function_calling_config.mode: function calling mode requires function declarations".to_owned());
            }
        }
    }
    Ok(declared)
}

fn validate_generation_config(config: &Value) -> Result<(), String> {
    if config.is_null() {
        return Ok(());
    }
    known_fields(
        config,
        "generation_config",
        &[
            "stopSequences",
            "responseMimeType",
            "responseSchema",
            "responseJsonSchema",
            "responseModalities",
            "candidateCount",
            "maxOutputTokens",
            "temperature",
            "topP",
            "topK",
            "seed",
            "presencePenalty",
            "frequencyPenalty",
            "responseLogprobs",
            "logprobs",
            "thinkingConfig",
            "mediaResolution",
            "speechConfig",
        ],
    )?;
    let stops = &config["stopSequences"];
    if !stops.is_null()
        && (!stops.is_array()
            || array(stops).len() > 5
            || array(stops).iter().any(|stop| !stop.is_string()))
    {
        return Err("* GenerateContentRequest.generation_config.stop_sequences: at most 5 stop sequences (strings) are allowed".to_owned());
    }
    let in_range = |field: &str, low: f64, high: f64| -> Result<(), String> {
        match config.get(field) {
            None => Ok(()),
            Some(value) if value.as_f64().is_some_and(|value| (low..=high).contains(&value)) => {
                Ok(())
            }
            Some(value) => Err(format!(
                "* GenerateContentRequest.generation_config.{field}: {value} is out of range [{low}, {high}]"
            )),
        }
    };
    in_range("temperature", 0.0, 2.0)?;
    in_range("topP", 0.0, 1.0)?;
    if let Some(max) = config.get("maxOutputTokens") {
        if max.as_u64().is_none_or(|max| max == 0) {
            return Err(format!(
                "* GenerateContentRequest.generation_config.max_output_tokens: must be a positive integer, got {max}"
            ));
        }
    }
    if let Some(seed) = config.get("seed") {
        if seed
            .as_i64()
            .is_none_or(|seed| i32::try_from(seed).is_err())
        {
            return Err(format!(
                "Invalid value at 'generation_config.seed' (TYPE_INT32), {seed}"
            ));
        }
    }
    let mime = config["responseMimeType"].as_str();
    if let Some(mime) = mime {
        if !matches!(mime, "text/plain" | "application/json" | "text/x.enum") {
            return Err(format!(
                "* GenerateContentRequest.generation_config.response_mime_type: allowed mimetypes are `text/plain`, `application/json`, and `text/x.enum`, got {mime}"
            ));
        }
    }
    if config.get("responseSchema").is_some() && config.get("responseJsonSchema").is_some() {
        return Err("* GenerateContentRequest.generation_config: response_schema and response_json_schema are mutually exclusive".to_owned());
    }
    if let Some(schema) = config.get("responseJsonSchema") {
        if mime != Some("application/json") {
            return Err("* GenerateContentRequest.generation_config.response_mime_type: response_mime_type must be application/json when response_json_schema is set".to_owned());
        }
        if !schema.is_object() {
            return Err(format!(
                "Invalid value at 'generation_config.response_json_schema', {schema}"
            ));
        }
    }
    Ok(())
}

/// Proto JSON rejects fields the message does not have.
fn known_fields(value: &Value, at: &str, fields: &[&str]) -> Result<(), String> {
    let Some(object) = value.as_object() else {
        return Err(format!(
            "Invalid JSON payload received. '{at}' must be an object, got {value}"
        ));
    };
    match unknown_field(object, fields) {
        Some(name) => {
            let at = if at.is_empty() {
                String::new()
            } else {
                format!(" at '{at}'")
            };
            Err(format!(
                "Invalid JSON payload received. Unknown name \"{name}\"{at}: Cannot find field."
            ))
        }
        None => Ok(()),
    }
}

fn unknown_field<'a>(object: &'a Map<String, Value>, fields: &[&str]) -> Option<&'a str> {
    object
        .keys()
        .map(String::as_str)
        .find(|key| !fields.contains(key))
}

fn declared_functions(request: &Value) -> Vec<String> {
    array(&request["tools"])
        .iter()
        .flat_map(|tool| array(&tool["functionDeclarations"]))
        .filter_map(|declaration| declaration["name"].as_str().map(str::to_owned))
        .collect()
}

fn valid_function_name(name: &str) -> bool {
    let mut characters = name.chars();
    let Some(first) = characters.next() else {
        return false;
    };
    name.len() <= 64
        && (first.is_ascii_alphabetic() || first == '_')
        && characters
            .all(|character| character.is_ascii_alphanumeric() || "_.:-".contains(character))
}

/// Gemini 3 and later require thought signatures on replayed function calls.
fn requires_signatures(model: &str) -> bool {
    model.starts_with("gemini-") && !model.starts_with("gemini-1") && !model.starts_with("gemini-2")
}

fn array(value: &Value) -> &[Value] {
    value.as_array().map(Vec::as_slice).unwrap_or_default()
}

fn status_error(status: u16) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = error(code, &format!("mock: status {status} as requested"));
    if status == 429 {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("0"));
    }
    response
}

/// Google's error shape: `{"error": {"code", "message", "status"}}`, `status` being the
/// canonical gRPC code name for the HTTP status.
fn error(status: StatusCode, message: &str) -> Response {
    let name = match status.as_u16() {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        500 => "INTERNAL",
        501 => "NOT_IMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "UNKNOWN",
    };
    let body = json!({"error": {"code": status.as_u16(), "message": message, "status": name}});
    (status, Json(body)).into_response()
}
