//! AWS Bedrock Converse and ConverseStream (`POST /model/{modelId}/converse` and
//! `/converse-stream`), as documented in the Amazon Bedrock API reference: JSON answers, binary
//! `application/vnd.amazon.eventstream` frames for streams, and the restJson1 error shape
//! (`x-amzn-errortype` header, `{"message": …}` body) that the AWS SDK parses into its typed
//! errors.
//!
//! The credential recorded is the access key id of the SigV4 `Authorization` header; the
//! signature itself is not verified (the mock does not know secrets), but its shape and scope
//! (service `bedrock`) are. Specific to this API: in a stream, `[[status:N]]` for a 5xx status
//! answers 200 and sends the error as an exception frame before any event (Bedrock reports
//! failures of a started invocation that way), and `[[fail_midstream]]` together with
//! `[[status:N]]` sends that exception frame after two text chunks instead of breaking the
//! connection.

use std::collections::HashSet;
use std::sync::Arc;

use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use aws_smithy_types::str_bytes::StrBytes;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue as HttpHeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{json, Map, Value};

use crate::{plan, CallRecord, MockState, Plan, TOOL_ARGUMENTS};

/// The request id every answer carries in `x-amzn-requestid`.
const REQUEST_ID: &str = "00000000-0000-4000-8000-00000000b3d0";

/// The id of the mock's tool call (Bedrock's ids look like `tooluse_…`).
pub const TOOL_USE_ID: &str = "tooluse_mock0";

/// `POST /model/{modelId}/converse`.
pub async fn converse(
    State(state): State<Arc<MockState>>,
    Path(model_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let plan = match prepare(&state, &model_id, &headers, &body, false).await {
        Ok(plan) => plan,
        Err(response) => return response,
    };
    if let Some(status) = plan.status {
        return status_error(status);
    }
    let (content, stop_reason) = match &plan.tool_call {
        Some(name) => (
            json!([{"toolUse": {"toolUseId": TOOL_USE_ID, "name": name, "input": tool_input()}}]),
            "tool_use",
        ),
        None => (json!([{"text": plan.answer}]), "end_turn"),
    };
    let body = json!({
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop_reason,
        "usage": usage(&plan),
        "metrics": {"latencyMs": 1},
    });
    let mut response = (StatusCode::OK, body.to_string()).into_response();
    set_headers(&mut response, "application/json");
    response
}

/// `POST /model/{modelId}/converse-stream`.
pub async fn converse_stream(
    State(state): State<Arc<MockState>>,
    Path(model_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let plan = match prepare(&state, &model_id, &headers, &body, true).await {
        Ok(plan) => plan,
        Err(response) => return response,
    };
    // Bedrock answers errors found before the invocation starts (validation, throttling,
    // permissions) with an HTTP error; a failing invocation reports in the stream.
    let in_stream_error = match plan.status {
        Some(status) if status >= 500 || plan.fail_midstream => Some(status),
        Some(status) => return status_error(status),
        None => None,
    };
    let mut frames: Vec<Result<Bytes, std::io::Error>> = Vec::new();
    if let Some(status) = in_stream_error.filter(|_| !plan.fail_midstream) {
        frames.push(exception_frame(status));
        return stream_response(frames, plan.chunk_delay);
    }
    frames.push(event("messageStart", json!({"role": "assistant"})));
    match &plan.tool_call {
        Some(name) => {
            frames.push(event(
                "contentBlockStart",
                json!({"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": TOOL_USE_ID, "name": name}}}),
            ));
            let (first, second) = TOOL_ARGUMENTS.split_at(TOOL_ARGUMENTS.len() / 2);
            for fragment in [first, second] {
                frames.push(event(
                    "contentBlockDelta",
                    json!({"contentBlockIndex": 0, "delta": {"toolUse": {"input": fragment}}}),
                ));
            }
        }
        None => {
            for piece in plan.answer_chunks() {
                frames.push(event(
                    "contentBlockDelta",
                    json!({"contentBlockIndex": 0, "delta": {"text": piece}}),
                ));
            }
        }
    }
    if plan.fail_midstream {
        frames.truncate(3);
        frames.push(match in_stream_error {
            Some(status) => exception_frame(status),
            None => Err(std::io::Error::other("mock: connection broken mid-stream")),
        });
        return stream_response(frames, plan.chunk_delay);
    }
    let stop_reason = if plan.tool_call.is_some() {
        "tool_use"
    } else {
        "end_turn"
    };
    frames.push(event("contentBlockStop", json!({"contentBlockIndex": 0})));
    frames.push(event("messageStop", json!({"stopReason": stop_reason})));
    frames.push(event(
        "metadata",
        json!({"usage": usage(&plan), "metrics": {"latencyMs": 1}}),
    ));
    stream_response(frames, plan.chunk_delay)
}

/// Records the call, checks the credential and the request, and plans the answer (after its
/// delay). An `Err` is the error answer to send.
async fn prepare(
    state: &MockState,
    model_id: &str,
    headers: &HeaderMap,
    body: &[u8],
    streamed: bool,
) -> Result<Plan, Response> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    let access_key_id = authorization.and_then(access_key_id);
    state.record(CallRecord {
        api: if streamed {
            "bedrock.converse_stream"
        } else {
            "bedrock.converse"
        },
        model: model_id.to_owned(),
        credential: access_key_id.clone(),
        streamed,
        body: serde_json::Value::Null,
    });
    check_signature(authorization, headers)
        .map_err(|rejection| error(StatusCode::FORBIDDEN, rejection.kind, &rejection.message))?;
    let request = serde_json::from_slice::<Value>(body).map_err(|_| {
        error(
            StatusCode::BAD_REQUEST,
            "SerializationException",
            "Unable to parse the request body as JSON.",
        )
    })?;
    validate(&request)
        .map_err(|message| error(StatusCode::BAD_REQUEST, "ValidationException", &message))?;
    let messages = request["messages"].as_array().cloned().unwrap_or_default();
    let mut texts: Vec<String> = request["system"]
        .as_array()
        .map(|blocks| {
            blocks
                .iter()
                .filter_map(|block| block["text"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let mut last_user_text = String::new();
    for message in &messages {
        let text = message_text(message, false);
        // Directives come from the text of the last user message that has some (a turn of
        // only tool results has none), as OpenAI's mock reads the last `user` message.
        if message["role"] == "user" && !text.is_empty() {
            last_user_text.clone_from(&text);
        }
        texts.push(message_text(message, true));
    }
    let text_refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let tools: Vec<String> = request["toolConfig"]["tools"]
        .as_array()
        .map(|tools| {
            tools
                .iter()
                .filter_map(|tool| tool["toolSpec"]["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let json_answer = request["outputConfig"]["textFormat"]["type"] == "json_schema";
    let plan = plan(state, &last_user_text, &text_refs, &tools, json_answer);
    crate::pause(plan.delay).await;
    Ok(plan)
}

/// The access key id in `AWS4-HMAC-SHA256 Credential=AKID/date/region/service/aws4_request, …`.
fn access_key_id(authorization: &str) -> Option<String> {
    let rest = authorization.strip_prefix("AWS4-HMAC-SHA256 ")?;
    let credential = rest
        .split(',')
        .find_map(|part| part.trim().strip_prefix("Credential="))?;
    Some(credential.split('/').next()?.to_owned())
}

/// Checks the SigV4 `Authorization` header's shape and the access key id; the answers are
/// those of AWS (403 with the error types below).
fn check_signature(authorization: Option<&str>, headers: &HeaderMap) -> Result<(), Rejection> {
    let Some(authorization) = authorization else {
        return Err(Rejection::new(
            "MissingAuthenticationTokenException",
            "Missing Authentication Token".to_owned(),
        ));
    };
    let incomplete = |what: &str| {
        Rejection::new(
            "IncompleteSignatureException",
            format!("Authorization header requires {what}. Authorization={authorization}"),
        )
    };
    let Some(rest) = authorization.strip_prefix("AWS4-HMAC-SHA256 ") else {
        return Err(incomplete("the AWS4-HMAC-SHA256 algorithm"));
    };
    let field = |name: &str| {
        rest.split(',')
            .find_map(|part| part.trim().strip_prefix(name))
            .map(str::to_owned)
    };
    let credential = field("Credential=").ok_or_else(|| incomplete("'Credential' parameter"))?;
    let signed_headers =
        field("SignedHeaders=").ok_or_else(|| incomplete("'SignedHeaders' parameter"))?;
    let signature = field("Signature=").ok_or_else(|| incomplete("'Signature' parameter"))?;
    let scope: Vec<&str> = credential.split('/').collect();
    if scope.len() != 5 || scope[0].is_empty() || scope[4] != "aws4_request" {
        return Err(incomplete(
            "a Credential of the form AKID/date/region/service/aws4_request",
        ));
    }
    if scope[3] != "bedrock" {
        return Err(Rejection::new(
            "InvalidSignatureException",
            format!(
                "Credential should be scoped to correct service: 'bedrock'. (found '{}')",
                scope[3]
            ),
        ));
    }
    let signed: Vec<&str> = signed_headers.split(';').collect();
    if !signed.contains(&"host") || !signed.contains(&"x-amz-date") {
        return Err(incomplete("SignedHeaders including host and x-amz-date"));
    }
    if !headers.contains_key("x-amz-date") {
        return Err(incomplete("an X-Amz-Date header"));
    }
    if signature.len() != 64 || !signature.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return Err(incomplete("a hex 'Signature'"));
    }
    if scope[0] == "wrong-key" {
        // Real AWS does not echo the key; the mock does, so adapters prove they scrub it.
        return Err(Rejection::new(
            "UnrecognizedClientException",
            format!(
                "The security token included in the request is invalid (access key id {}).",
                scope[0]
            ),
        ));
    }
    Ok(())
}

/// A refused signature: AWS answers 403 with the error type.
#[derive(Debug)]
struct Rejection {
    kind: &'static str,
    message: String,
}

impl Rejection {
    fn new(kind: &'static str, message: String) -> Rejection {
        Rejection { kind, message }
    }
}

/// Validates a Converse request the way Bedrock does, naming the offending field.
fn validate(request: &Value) -> Result<(), String> {
    let Some(fields) = request.as_object() else {
        return Err("The request body must be a JSON object.".to_owned());
    };
    const KNOWN: &[&str] = &[
        "messages",
        "system",
        "inferenceConfig",
        "toolConfig",
        "guardrailConfig",
        "additionalModelRequestFields",
        "additionalModelResponseFieldPaths",
        "promptVariables",
        "requestMetadata",
        "performanceConfig",
        "serviceTier",
        "outputConfig",
    ];
    if let Some(unknown) = fields.keys().find(|key| !KNOWN.contains(&key.as_str())) {
        return Err(format!("Unknown field in the request: {unknown}"));
    }
    let tool_names = validate_tool_config(request.get("toolConfig"))?;
    if let Some(system) = request.get("system") {
        let blocks = system.as_array().ok_or("system must be an array")?;
        for (index, block) in blocks.iter().enumerate() {
            let block = single_member(block, &format!("system.{index}"))?;
            match block {
                ("text", Value::String(text)) if !text.trim().is_empty() => {}
                ("text", _) => return Err(format!("The text field in the SystemContentBlock object at system.{index} is blank. Add text to the text field, and try again.")),
                ("guardContent" | "cachePoint", _) => {}
                (other, _) => return Err(format!("system.{index}: unknown SystemContentBlock member {other}")),
            }
        }
    }
    validate_inference_config(request.get("inferenceConfig"))?;
    validate_output_config(request.get("outputConfig"))?;
    let messages = match request.get("messages") {
        Some(Value::Array(messages)) if !messages.is_empty() => messages,
        _ => {
            return Err(
                "The messages field is required and must contain at least one message.".to_owned(),
            )
        }
    };
    let mut uses_tools = false;
    let mut open_tool_uses: HashSet<String> = HashSet::new();
    let mut previous_role: Option<&str> = None;
    for (index, message) in messages.iter().enumerate() {
        let role = match message["role"].as_str() {
            Some(role @ ("user" | "assistant")) => role,
            other => {
                return Err(format!(
                    "messages.{index}.role: {other:?} is not one of [user, assistant]"
                ))
            }
        };
        if index == 0 && role != "user" {
            return Err("A conversation must start with a user message. Try again with a conversation that starts with a user message.".to_owned());
        }
        if previous_role == Some(role) {
            return Err("A conversation must alternate between user and assistant roles. Make sure the conversation alternates between user and assistant roles and try again.".to_owned());
        }
        previous_role = Some(role);
        let content = match message.get("content") {
            Some(Value::Array(content)) if !content.is_empty() => content,
            _ => {
                return Err(format!(
                    "messages.{index}.content must contain at least one ContentBlock."
                ))
            }
        };
        let mut answered: HashSet<String> = HashSet::new();
        let mut new_tool_uses: HashSet<String> = HashSet::new();
        for (block_index, block) in content.iter().enumerate() {
            let place = format!("messages.{index}.content.{block_index}");
            match single_member(block, &place)? {
                ("text", Value::String(text)) if !text.trim().is_empty() => {}
                ("text", _) => return Err(format!("The text field in the ContentBlock object at {place} is blank. Add text to the text field, and try again.")),
                ("toolUse", tool_use) => {
                    uses_tools = true;
                    if role != "assistant" {
                        return Err(format!("{place}: toolUse blocks are only allowed in assistant messages."));
                    }
                    let id = tool_use["toolUseId"].as_str().filter(|id| valid_name(id)).ok_or(format!("{place}.toolUse.toolUseId must match [a-zA-Z0-9_-]{{1,64}}"))?;
                    tool_use["name"].as_str().filter(|name| valid_name(name)).ok_or(format!("{place}.toolUse.name must match [a-zA-Z0-9_-]{{1,64}}"))?;
                    if !tool_use.get("input").is_some_and(Value::is_object) {
                        return Err(format!("{place}.toolUse.input must be a JSON object."));
                    }
                    new_tool_uses.insert(id.to_owned());
                }
                ("toolResult", tool_result) => {
                    uses_tools = true;
                    if role != "user" {
                        return Err(format!("{place}: toolResult blocks are only allowed in user messages."));
                    }
                    let id = tool_result["toolUseId"].as_str().ok_or(format!("{place}.toolResult.toolUseId is required"))?;
                    if !open_tool_uses.contains(id) {
                        return Err(format!("{place}: the toolResult block's toolUseId {id} does not match any toolUse block in the previous assistant message."));
                    }
                    answered.insert(id.to_owned());
                    let parts = tool_result["content"].as_array().ok_or(format!("{place}.toolResult.content is required"))?;
                    for (part_index, part) in parts.iter().enumerate() {
                        let part_place = format!("{place}.toolResult.content.{part_index}");
                        match single_member(part, &part_place)? {
                            ("text", Value::String(_)) | ("json", _) | ("image" | "document" | "video", _) => {}
                            (other, _) => return Err(format!("{part_place}: unknown ToolResultContentBlock member {other}")),
                        }
                    }
                    match tool_result.get("status").map(Value::as_str) {
                        None | Some(Some("success" | "error")) => {}
                        Some(other) => return Err(format!("{place}.toolResult.status {other:?} is not one of [success, error]")),
                    }
                }
                ("image" | "document" | "video" | "guardContent" | "cachePoint" | "reasoningContent", _) => {}
                (other, _) => return Err(format!("{place}: unknown ContentBlock member {other}")),
            }
        }
        if role == "user" {
            if let Some(missing) = open_tool_uses.iter().find(|id| !answered.contains(*id)) {
                return Err(format!("messages.{index}: the toolUse block with id {missing} in the previous assistant message has no matching toolResult block."));
            }
        }
        open_tool_uses = new_tool_uses;
    }
    if uses_tools && tool_names.is_empty() {
        return Err("The toolConfig field must be defined when using toolUse and toolResult content blocks.".to_owned());
    }
    Ok(())
}

/// Validates `toolConfig` and returns the names of its tools.
fn validate_tool_config(tool_config: Option<&Value>) -> Result<Vec<String>, String> {
    let Some(tool_config) = tool_config else {
        return Ok(Vec::new());
    };
    let tools = match tool_config.get("tools") {
        Some(Value::Array(tools)) if !tools.is_empty() => tools,
        _ => return Err("toolConfig.tools must contain at least one tool.".to_owned()),
    };
    let mut names = Vec::new();
    for (index, tool) in tools.iter().enumerate() {
        let place = format!("toolConfig.tools.{index}");
        match single_member(tool, &place)? {
            ("toolSpec", spec) => {
                let name = spec["name"]
                    .as_str()
                    .filter(|name| valid_name(name))
                    .ok_or(format!(
                        "{place}.toolSpec.name must match [a-zA-Z0-9_-]{{1,64}}"
                    ))?;
                if spec
                    .get("description")
                    .is_some_and(|d| d.as_str().is_none_or(str::is_empty))
                {
                    return Err(format!(
                        "{place}.toolSpec.description must be a non-empty string"
                    ));
                }
                if !spec["inputSchema"]["json"].is_object() {
                    return Err(format!(
                        "{place}.toolSpec.inputSchema.json must be a JSON object"
                    ));
                }
                if spec
                    .get("strict")
                    .is_some_and(|strict| !strict.is_boolean())
                {
                    return Err(format!("{place}.toolSpec.strict must be a boolean"));
                }
                if names.iter().any(|known| known == name) {
                    return Err(format!("{place}: tool names must be unique ({name})"));
                }
                names.push(name.to_owned());
            }
            ("cachePoint" | "systemTool", _) => {}
            (other, _) => return Err(format!("{place}: unknown Tool member {other}")),
        }
    }
    if let Some(choice) = tool_config.get("toolChoice") {
        match single_member(choice, "toolConfig.toolChoice")? {
            ("auto" | "any", Value::Object(empty)) if empty.is_empty() => {}
            ("tool", specific) => {
                let name = specific["name"].as_str().unwrap_or_default();
                if !names.iter().any(|known| known == name) {
                    return Err(format!("toolConfig.toolChoice.tool.name {name:?} is not one of the tools in toolConfig.tools"));
                }
            }
            (other, _) => {
                return Err(format!(
                "toolConfig.toolChoice: {other} is not one of auto {{}}, any {{}}, tool {{name}}"
            ))
            }
        }
    }
    Ok(names)
}

fn validate_inference_config(config: Option<&Value>) -> Result<(), String> {
    let Some(config) = config else {
        return Ok(());
    };
    let fields = config
        .as_object()
        .ok_or("inferenceConfig must be an object")?;
    for (key, value) in fields {
        match key.as_str() {
            "maxTokens" => {
                if value.as_i64().is_none_or(|tokens| tokens < 1) {
                    return Err(
                        "inferenceConfig.maxTokens must be an integer of at least 1".to_owned()
                    );
                }
            }
            "temperature" | "topP" => {
                if !value
                    .as_f64()
                    .is_some_and(|number| (0.0..=1.0).contains(&number))
                {
                    return Err(format!(
                        "inferenceConfig.{key} must be a number from 0 to 1"
                    ));
                }
            }
            "stopSequences" => {
                let sequences = value
                    .as_array()
                    .ok_or("inferenceConfig.stopSequences must be an array")?;
                if sequences
                    .iter()
                    .any(|sequence| sequence.as_str().is_none_or(str::is_empty))
                {
                    return Err(
                        "inferenceConfig.stopSequences must hold non-empty strings".to_owned()
                    );
                }
            }
            other => return Err(format!("Unknown field in inferenceConfig: {other}")),
        }
    }
    Ok(())
}

fn validate_output_config(config: Option<&Value>) -> Result<(), String> {
    let Some(config) = config else {
        return Ok(());
    };
    let Some(format) = config.get("textFormat") else {
        return Ok(());
    };
    if format["type"] != "json_schema" {
        return Err("outputConfig.textFormat.type must be json_schema".to_owned());
    }
    let schema = format["structure"]["jsonSchema"]["schema"].as_str().ok_or(
        "outputConfig.textFormat.structure.jsonSchema.schema is required and must be a string",
    )?;
    if !serde_json::from_str::<Value>(schema).is_ok_and(|schema| schema.is_object()) {
        return Err(
            "outputConfig.textFormat.structure.jsonSchema.schema must hold a JSON Schema object"
                .to_owned(),
        );
    }
    Ok(())
}

/// A union member: exactly one key of a JSON object.
fn single_member<'a>(value: &'a Value, place: &str) -> Result<(&'a str, &'a Value), String> {
    let object: &'a Map<String, Value> = value
        .as_object()
        .ok_or(format!("{place} must be an object"))?;
    let mut members = object.iter();
    match (members.next(), members.next()) {
        (Some((key, value)), None) => Ok((key.as_str(), value)),
        _ => Err(format!("{place} must set exactly one member of its union")),
    }
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-')
}

/// The text blocks of a message (with the text of its tool results when asked), joined by
/// spaces.
fn message_text(message: &Value, with_tool_results: bool) -> String {
    let mut texts = Vec::new();
    for block in message["content"].as_array().into_iter().flatten() {
        if let Some(text) = block["text"].as_str() {
            texts.push(text.to_owned());
        }
        if !with_tool_results {
            continue;
        }
        for part in block["toolResult"]["content"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if let Some(text) = part["text"].as_str() {
                texts.push(text.to_owned());
            }
        }
    }
    texts.join(" ")
}

fn tool_input() -> Value {
    serde_json::from_str(TOOL_ARGUMENTS).unwrap_or(Value::Null)
}

/// Bedrock's `inputTokens` leaves out tokens read from or written to the prompt cache; they
/// are reported beside it.
fn usage(plan: &Plan) -> Value {
    let cached = plan.cached_input_tokens;
    let uncached = plan.input_tokens.saturating_sub(cached);
    let mut usage = json!({
        "inputTokens": uncached,
        "outputTokens": plan.output_tokens,
        "totalTokens": uncached + cached + plan.output_tokens,
    });
    if cached > 0 {
        usage["cacheReadInputTokens"] = json!(cached);
        usage["cacheWriteInputTokens"] = json!(0);
    }
    usage
}

fn string_header(name: &'static str, value: impl Into<StrBytes>) -> Header {
    Header::new(name, HeaderValue::String(value.into()))
}

/// One encoded event-stream frame (prelude, headers, payload and both CRC32 checksums).
fn frame(headers: Vec<Header>, payload: &Value) -> Result<Bytes, std::io::Error> {
    let message = Message::new_from_parts(headers, payload.to_string());
    let mut buffer: Vec<u8> = Vec::new();
    aws_smithy_eventstream::frame::write_message_to(&message, &mut buffer)
        .map_err(std::io::Error::other)?;
    Ok(Bytes::from(buffer))
}

fn event(event_type: &'static str, mut payload: Value) -> Result<Bytes, std::io::Error> {
    // Bedrock pads event payloads with a `p` field of varying length (against length-based
    // side channels); clients must ignore it.
    payload["p"] = json!("abcdefghijklmnopqrstuvwxyz");
    frame(
        vec![
            string_header(":event-type", event_type),
            string_header(":content-type", "application/json"),
            string_header(":message-type", "event"),
        ],
        &payload,
    )
}

fn exception_frame(status: u16) -> Result<Bytes, std::io::Error> {
    let exception_type = match status {
        429 => "throttlingException",
        503 => "serviceUnavailableException",
        400 => "validationException",
        424 => "modelStreamErrorException",
        _ => "internalServerException",
    };
    frame(
        vec![
            string_header(":exception-type", exception_type),
            string_header(":content-type", "application/json"),
            string_header(":message-type", "exception"),
        ],
        &json!({"message": format!("mock: status {status} as requested")}),
    )
}

/// Serves `frames` as `application/vnd.amazon.eventstream`, pausing `delay` before each; an
/// `Err` aborts the connection as a crashed upstream would.
fn stream_response(
    frames: Vec<Result<Bytes, std::io::Error>>,
    delay: std::time::Duration,
) -> Response {
    let stream = futures::stream::iter(frames).then(move |frame| async move {
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if frame.is_err() {
            // Let the frames before the crash reach the client first: hyper drops what it
            // has buffered when the body fails in the same write.
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        frame
    });
    let mut response = Body::from_stream(stream).into_response();
    set_headers(&mut response, "application/vnd.amazon.eventstream");
    response
}

fn set_headers(response: &mut Response, content_type: &'static str) {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HttpHeaderValue::from_static(content_type),
    );
    headers.insert("x-amzn-requestid", HttpHeaderValue::from_static(REQUEST_ID));
}

fn status_error(status: u16) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let kind = match status {
        403 => "AccessDeniedException",
        404 => "ResourceNotFoundException",
        408 => "ModelTimeoutException",
        424 => "ModelErrorException",
        429 => "ThrottlingException",
        503 => "ServiceUnavailableException",
        400..=499 => "ValidationException",
        _ => "InternalServerException",
    };
    let mut response = error(code, kind, &format!("mock: status {status} as requested"));
    if status == 429 {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HttpHeaderValue::from_static("0"));
    }
    response
}

/// Bedrock's (restJson1) error shape: the type in `x-amzn-errortype`, the message in the body.
pub fn error(status: StatusCode, kind: &str, message: &str) -> Response {
    let mut response = (status, json!({ "message": message }).to_string()).into_response();
    set_headers(&mut response, "application/json");
    if let Ok(value) = HttpHeaderValue::from_str(&format!(
        "{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/"
    )) {
        response.headers_mut().insert("x-amzn-errortype", value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(messages: Value) -> Value {
        json!({
            "messages": messages,
            "toolConfig": {"tools": [{"toolSpec": {"name": "lookup", "inputSchema": {"json": {"type": "object"}}}}]},
        })
    }

    #[test]
    fn accepts_a_tool_round_trip() {
        let request = request(json!([
            {"role": "user", "content": [{"text": "hi"}]},
            {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t1", "name": "lookup", "input": {}}}]},
            {"role": "user", "content": [{"toolResult": {"toolUseId": "t1", "content": [{"text": "42"}]}}]},
        ]));
        assert_eq!(validate(&request), Ok(()));
    }

    #[test]
    fn rejects_what_bedrock_rejects() {
        let unanswered = request(json!([
            {"role": "user", "content": [{"text": "hi"}]},
            {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t1", "name": "lookup", "input": {}}}]},
            {"role": "user", "content": [{"text": "and?"}]},
        ]));
        assert!(validate(&unanswered).is_err());
        let not_alternating = request(json!([
            {"role": "user", "content": [{"text": "hi"}]},
            {"role": "user", "content": [{"text": "again"}]},
        ]));
        assert!(validate(&not_alternating).is_err());
        let blank = request(json!([{"role": "user", "content": [{"text": " "}]}]));
        assert!(validate(&blank).is_err());
        let mut no_tool_config = request(json!([
            {"role": "user", "content": [{"text": "hi"}]},
            {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t1", "name": "lookup", "input": {}}}]},
            {"role": "user", "content": [{"toolResult": {"toolUseId": "t1", "content": [{"text": "42"}]}}]},
        ]));
        no_tool_config
            .as_object_mut()
            .map(|fields| fields.remove("toolConfig"));
        assert!(validate(&no_tool_config).is_err());
    }

    #[test]
    fn reads_the_access_key_id() {
        let header = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/us-east-1/bedrock/aws4_request, SignedHeaders=host;x-amz-date, Signature=00";
        assert_eq!(access_key_id(header).as_deref(), Some("AKIDEXAMPLE"));
    }

    #[test]
    fn frames_decode() {
        let Ok(bytes) = event("messageStart", json!({"role": "assistant"})) else {
            panic!("encoding failed");
        };
        let Ok(message) = aws_smithy_eventstream::frame::read_message_from(bytes) else {
            panic!("decoding failed");
        };
        assert_eq!(message.headers().len(), 3);
    }
}
