//! Google's Gemini API (`generateContent`, `streamGenerateContent?alt=sse`,
//! `batchEmbedContents` under `{base_url}/v1beta/models/{model}:…`, key in `x-goog-api-key`).
//!
//! Translation choices, each following Gemini's API reference:
//!
//! - System messages become `systemInstruction` (one text part each, wherever they stood);
//!   assistant messages are role `model`; consecutive messages of one role are merged into one
//!   `Content`, so tool results answering parallel calls travel together as Gemini expects.
//! - Gemini has no tool-call ids. Answers get synthesised ids `call_<index>` (index among the
//!   answer's calls, identical streamed and not), and a tool message's `tool_call_id` is mapped
//!   back to the function name through the nearest earlier assistant message that made the
//!   call. A tool result that is a JSON object is sent as the `functionResponse.response`;
//!   anything else is wrapped as `{"output": …}` (the key Gemini documents for a function's
//!   output).
//! - Gemini 3 models reject replayed function calls without the `thoughtSignature` they were
//!   answered with. The OpenAI message shape cannot carry it back, so for those models the
//!   first function call of each replayed model turn carries Google's documented
//!   `skip_thought_signature_validator` value instead.
//! - Tool parameters and JSON-schema response formats are sent as `parametersJsonSchema` and
//!   `responseJsonSchema`, the fields that accept plain JSON Schema (`parameters` and
//!   `responseSchema` take Google's OpenAPI subset); a schema's `name` has no Gemini field and
//!   is not sent, and Gemini always constrains to the schema. `tool_choice` maps to
//!   `functionCallingConfig.mode` (auto → AUTO, none → NONE, required → ANY, a named
//!   function → ANY with `allowedFunctionNames`); a `strict` tool with automatic choice uses
//!   VALIDATED, Gemini's schema-constrained automatic mode.
//! - Usage: input tokens are `promptTokenCount` (which includes cached tokens) plus
//!   `toolUsePromptTokenCount`; output tokens are `candidatesTokenCount` plus
//!   `thoughtsTokenCount`, because Google bills thinking as output; cached input tokens are
//!   `cachedContentTokenCount` (absent means none). Gemini's `batchEmbedContents` reports no
//!   token usage, so embedding usage is zero rather than an invented count.
//! - `user` and message `name`s have no Gemini field and are not sent; `seed` must fit
//!   Gemini's 32-bit field and `stop` takes at most five sequences, otherwise `check` rejects
//!   them.

use async_trait::async_trait;
use reqwest::header::HeaderValue;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::sse::{self, Event, Translator};
use crate::types::{
    ChatMessage, ChatRequest, ChatResponse, ChatStream, EmbeddingRequest, EmbeddingResponse,
    FinishReason, ResponseFormat, Role, StreamEvent, ToolCall, ToolChoice, Usage,
};
use crate::{
    Credential, ErrorClass, HttpSettings, Provider, ProviderError, ProviderKind, Unsupported,
};

/// Gemini accepts at most this many stop sequences.
const MAX_STOP_SEQUENCES: usize = 5;

/// `batchEmbedContents` takes at most this many requests per call; longer inputs are sent in
/// several calls.
const MAX_EMBED_BATCH: usize = 100;

/// The value Google documents for replaying a function call whose thought signature is not
/// available (Gemini 3 rejects replayed calls without one).
const SKIP_SIGNATURE: &str = "skip_thought_signature_validator";

/// The header Gemini reads the API key from.
const KEY_HEADER: &str = "x-goog-api-key";

/// A Gemini API endpoint (`settings.base_url` is normally
/// `https://generativelanguage.googleapis.com`).
#[derive(Debug)]
pub struct GeminiProvider {
    name: String,
    settings: HttpSettings,
    client: reqwest::Client,
    platform_key: Option<SecretString>,
}

impl GeminiProvider {
    pub fn new(
        name: &str,
        settings: HttpSettings,
        platform_key: Option<SecretString>,
    ) -> Result<GeminiProvider, ProviderError> {
        let client = crate::sse::client(name, &settings)?;
        Ok(GeminiProvider {
            name: name.to_owned(),
            settings,
            client,
            platform_key,
        })
    }

    /// `{base_url}/v1beta/models/{model}:{action}`; a `models/` prefix on the id is accepted.
    fn url(&self, model: &str, action: &str) -> String {
        format!(
            "{}/v1beta/models/{}:{action}",
            self.settings.base_url.trim_end_matches('/'),
            model_id(model)
        )
    }

    fn key<'a>(&'a self, credential: &'a Credential) -> Result<&'a str, ProviderError> {
        let key = match credential {
            Credential::User(key) => Some(key.expose_secret()),
            Credential::Platform => self.platform_key.as_ref().map(|key| key.expose_secret()),
        };
        key.filter(|key| !key.is_empty()).ok_or_else(|| {
            ProviderError::new(
                &self.name,
                ErrorClass::Authentication,
                "no API key: store your own key for this provider or ask an operator to configure a platform key",
            )
        })
    }

    fn post(&self, url: String, key: &str) -> Result<reqwest::RequestBuilder, ProviderError> {
        let mut value = HeaderValue::from_str(key).map_err(|_| {
            ProviderError::new(
                &self.name,
                ErrorClass::Authentication,
                "the API key contains characters an HTTP header cannot carry",
            )
        })?;
        value.set_sensitive(true);
        Ok(self.client.post(url).header(KEY_HEADER, value))
    }

    /// Sends a request and classifies a failure, scrubbing the key from the message.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        key: &str,
        streaming: bool,
    ) -> Result<reqwest::Response, ProviderError> {
        let result = if streaming {
            sse::send_streaming(&self.name, request, Some(key), self.settings.timeout).await
        } else {
            sse::send(&self.name, request, Some(key)).await
        };
        result.map_err(reclassify)
    }

    fn wire_request(&self, request: &ChatRequest) -> Result<WireRequest, ProviderError> {
        let (system_instruction, contents) = contents(&self.name, request)?;
        let generation_config = generation_config(request);
        Ok(WireRequest {
            contents,
            system_instruction,
            tools: tools(request),
            tool_config: tool_config(request),
            generation_config: (!generation_config.is_empty()).then_some(generation_config),
        })
    }
}

#[async_trait]
impl Provider for GeminiProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> ProviderKind {
        ProviderKind::Gemini
    }

    fn check(&self, request: &ChatRequest) -> Result<(), Unsupported> {
        if let Some(seed) = request.seed {
            if i32::try_from(seed).is_err() {
                return Err(Unsupported::new(
                    &self.name,
                    "seed",
                    "Gemini's seed is a 32-bit integer",
                ));
            }
        }
        if request.stop.len() > MAX_STOP_SEQUENCES {
            return Err(Unsupported::new(
                &self.name,
                "stop",
                format!("Gemini accepts at most {MAX_STOP_SEQUENCES} stop sequences"),
            ));
        }
        Ok(())
    }

    async fn chat(
        &self,
        request: &ChatRequest,
        credential: &Credential,
    ) -> Result<ChatResponse, ProviderError> {
        let key = self.key(credential)?;
        let body = self.wire_request(request)?;
        let http = self
            .post(self.url(&request.model, "generateContent"), key)?
            .timeout(self.settings.timeout)
            .json(&body);
        let response = self.send(http, key, false).await?;
        let body: WireResponse = response
            .json()
            .await
            .map_err(|err| ProviderError::from_reqwest(&self.name, &err))?;
        answer(&self.name, &request.model, body)
    }

    async fn chat_stream(
        &self,
        request: &ChatRequest,
        credential: &Credential,
    ) -> Result<ChatStream, ProviderError> {
        let key = self.key(credential)?;
        let body = self.wire_request(request)?;
        let http = self
            .post(
                self.url(&request.model, "streamGenerateContent?alt=sse"),
                key,
            )?
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .json(&body);
        let response = self.send(http, key, true).await?;
        let events = sse::idle_timeout(
            &self.name,
            sse::events(&self.name, response),
            self.settings.timeout,
        );
        Ok(sse::translate(
            events,
            StreamState {
                provider: self.name.clone(),
                n_tool_calls: 0,
                finish_reason: None,
                usage: None,
            },
        ))
    }

    async fn embed(
        &self,
        request: &EmbeddingRequest,
        credential: &Credential,
    ) -> Result<EmbeddingResponse, ProviderError> {
        let key = self.key(credential)?;
        let model = format!("models/{}", model_id(&request.model));
        let mut vectors = Vec::with_capacity(request.inputs.len());
        // An empty input list still makes one call, so Gemini answers it as it would.
        let batches: Vec<&[String]> = if request.inputs.is_empty() {
            vec![&[]]
        } else {
            request.inputs.chunks(MAX_EMBED_BATCH).collect()
        };
        for batch in batches {
            let body = json!({
                "requests": batch
                    .iter()
                    .map(|text| {
                        let mut item = json!({
                            "model": model,
                            "content": {"parts": [{"text": text}]},
                        });
                        if let Some(dimensions) = request.dimensions {
                            item["outputDimensionality"] = json!(dimensions);
                        }
                        item
                    })
                    .collect::<Vec<_>>(),
            });
            let http = self
                .post(self.url(&request.model, "batchEmbedContents"), key)?
                .timeout(self.settings.timeout)
                .json(&body);
            let response = self.send(http, key, false).await?;
            let answer: WireEmbeddings = response
                .json()
                .await
                .map_err(|err| ProviderError::from_reqwest(&self.name, &err))?;
            if answer.embeddings.len() != batch.len() {
                return Err(ProviderError::invalid_response(
                    &self.name,
                    format!(
                        "{} embeddings for {} inputs",
                        answer.embeddings.len(),
                        batch.len()
                    ),
                ));
            }
            vectors.extend(answer.embeddings.into_iter().map(|item| item.values));
        }
        Ok(EmbeddingResponse {
            model: request.model.clone(),
            vectors,
            // Gemini's batchEmbedContents reports no token counts; zero is "not reported".
            usage: Usage::default(),
        })
    }

    fn supports_embeddings(&self) -> bool {
        true
    }
}

/// The model id without a `models/` prefix.
fn model_id(model: &str) -> &str {
    model.strip_prefix("models/").unwrap_or(model)
}

/// Gemini 3 and later validate thought signatures on replayed function calls; 1.x and 2.x
/// (and other model families served by the API, such as Gemma) do not.
fn needs_signature_sentinel(model: &str) -> bool {
    let model = model_id(model);
    model.starts_with("gemini-") && !model.starts_with("gemini-1") && !model.starts_with("gemini-2")
}

/// Gemini answers an invalid API key with 400 `INVALID_ARGUMENT` (reason `API_KEY_INVALID`),
/// which is an authentication failure, not a malformed request.
fn reclassify(mut error: ProviderError) -> ProviderError {
    let message = error.message.to_ascii_lowercase();
    if error.status == Some(400)
        && (message.contains("api key not valid")
            || message.contains("api key not found")
            || message.contains("api_key_invalid"))
    {
        error.class = ErrorClass::Authentication;
    }
    error
}

/// The system instruction and the conversation as Gemini `Content`s.
fn contents(
    provider: &str,
    request: &ChatRequest,
) -> Result<(Option<WireContent>, Vec<WireContent>), ProviderError> {
    let sentinel = needs_signature_sentinel(&request.model);
    let mut system_parts = Vec::new();
    let mut contents: Vec<WireContent> = Vec::new();
    for (message_idx, message) in request.messages.iter().enumerate() {
        let (role, parts) = match message.role {
            Role::System => {
                if let Some(text) = message.content.as_deref().filter(|text| !text.is_empty()) {
                    system_parts.push(json!({ "text": text }));
                }
                continue;
            }
            Role::User => (
                "user",
                vec![json!({ "text": message.content.as_deref().unwrap_or_default() })],
            ),
            Role::Assistant => ("model", model_parts(provider, message, sentinel)?),
            Role::Tool => (
                "user",
                vec![function_response(
                    provider,
                    &request.messages[..message_idx],
                    message,
                )?],
            ),
        };
        if parts.is_empty() {
            continue;
        }
        match contents.last_mut() {
            Some(last) if last.role == Some(role) => {
                let had_call = last
                    .parts
                    .iter()
                    .any(|part| part.get("functionCall").is_some());
                for mut part in parts {
                    // Only the first call of a merged model turn carries the signature.
                    if had_call {
                        if let Some(object) = part.as_object_mut() {
                            object.remove("thoughtSignature");
                        }
                    }
                    last.parts.push(part);
                }
            }
            _ => contents.push(WireContent {
                role: Some(role),
                parts,
            }),
        }
    }
    let system_instruction = (!system_parts.is_empty()).then_some(WireContent {
        role: None,
        parts: system_parts,
    });
    Ok((system_instruction, contents))
}

/// An assistant message: its text, then its function calls.
fn model_parts(
    provider: &str,
    message: &ChatMessage,
    sentinel: bool,
) -> Result<Vec<Value>, ProviderError> {
    let mut parts = Vec::new();
    if let Some(text) = message.content.as_deref().filter(|text| !text.is_empty()) {
        parts.push(json!({ "text": text }));
    }
    for (call_idx, call) in message.tool_calls.iter().enumerate() {
        let args = if call.arguments.trim().is_empty() {
            Value::Object(Map::new())
        } else {
            match serde_json::from_str::<Value>(&call.arguments) {
                Ok(args @ Value::Object(_)) => args,
                _ => {
                    return Err(ProviderError::new(
                        provider,
                        ErrorClass::InvalidRequest,
                        format!(
                            "the arguments of tool call {} are not a JSON object, which Gemini requires",
                            call.id
                        ),
                    ))
                }
            }
        };
        let mut part = json!({ "functionCall": { "name": call.name, "args": args } });
        if sentinel && call_idx == 0 {
            part["thoughtSignature"] = json!(SKIP_SIGNATURE);
        }
        parts.push(part);
    }
    Ok(parts)
}

/// A tool message as a `functionResponse`, named after the call it answers.
fn function_response(
    provider: &str,
    earlier: &[ChatMessage],
    message: &ChatMessage,
) -> Result<Value, ProviderError> {
    let call_id = message.tool_call_id.as_deref().unwrap_or_default();
    let name = earlier
        .iter()
        .rev()
        .filter(|earlier| earlier.role == Role::Assistant)
        .find_map(|earlier| {
            earlier
                .tool_calls
                .iter()
                .find(|call| call.id == call_id)
                .map(|call| call.name.clone())
        })
        .or_else(|| message.name.clone())
        .ok_or_else(|| {
            ProviderError::new(
                provider,
                ErrorClass::InvalidRequest,
                format!(
                    "the tool message with tool_call_id {call_id:?} answers no earlier tool call"
                ),
            )
        })?;
    let content = message.content.as_deref().unwrap_or_default();
    let response = match serde_json::from_str::<Value>(content) {
        Ok(object @ Value::Object(_)) => object,
        Ok(other) => json!({ "output": other }),
        Err(_) => json!({ "output": content }),
    };
    Ok(json!({ "functionResponse": { "name": name, "response": response } }))
}

fn tools(request: &ChatRequest) -> Vec<Value> {
    if request.tools.is_empty() {
        return Vec::new();
    }
    let declarations: Vec<Value> = request
        .tools
        .iter()
        .map(|tool| {
            let mut declaration = json!({ "name": tool.name });
            if let Some(description) = &tool.description {
                declaration["description"] = json!(description);
            }
            if !tool.parameters.is_null() {
                declaration["parametersJsonSchema"] = tool.parameters.clone();
            }
            declaration
        })
        .collect();
    vec![json!({ "functionDeclarations": declarations })]
}

fn tool_config(request: &ChatRequest) -> Option<Value> {
    if request.tools.is_empty() {
        return None;
    }
    let strict = request.tools.iter().any(|tool| tool.strict == Some(true));
    let automatic = if strict { "VALIDATED" } else { "AUTO" };
    let config = match (&request.tool_choice, strict) {
        (None, false) => return None,
        (None | Some(ToolChoice::Auto), _) => json!({ "mode": automatic }),
        (Some(ToolChoice::None), _) => json!({ "mode": "NONE" }),
        (Some(ToolChoice::Required), _) => json!({ "mode": "ANY" }),
        (Some(ToolChoice::Function(name)), _) => {
            json!({ "mode": "ANY", "allowedFunctionNames": [name] })
        }
    };
    Some(json!({ "functionCallingConfig": config }))
}

fn generation_config(request: &ChatRequest) -> WireGenerationConfig {
    let (response_mime_type, response_json_schema) = match &request.response_format {
        None | Some(ResponseFormat::Text) => (None, None),
        Some(ResponseFormat::JsonObject) => (Some("application/json"), None),
        Some(ResponseFormat::JsonSchema { schema, .. }) => {
            (Some("application/json"), Some(schema.clone()))
        }
    };
    WireGenerationConfig {
        temperature: request.temperature,
        top_p: request.top_p,
        max_output_tokens: request.max_tokens,
        stop_sequences: request.stop.clone(),
        // `check` rejects seeds outside the 32-bit range.
        seed: request.seed.and_then(|seed| i32::try_from(seed).ok()),
        response_mime_type,
        response_json_schema,
    }
}

/// A complete answer from a `generateContent` response.
fn answer(provider: &str, model: &str, body: WireResponse) -> Result<ChatResponse, ProviderError> {
    let usage = body.usage_metadata.map(Usage::from);
    let Some(candidate) = body.candidates.into_iter().next() else {
        return Err(no_candidate(provider, body.prompt_feedback));
    };
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for part in candidate.parts() {
        if part.thought == Some(true) {
            continue;
        }
        if let Some(piece) = part.text {
            text.push_str(&piece);
        }
        if let Some(call) = part.function_call {
            let arguments = call.arguments();
            tool_calls.push(ToolCall {
                id: call_id(tool_calls.len()),
                name: call.name,
                arguments,
            });
        }
    }
    Ok(ChatResponse {
        id: body.response_id,
        model: body.model_version.unwrap_or_else(|| model.to_owned()),
        content: (!text.is_empty() || tool_calls.is_empty()).then_some(text),
        finish_reason: finish_reason(candidate.finish_reason.as_deref(), !tool_calls.is_empty()),
        tool_calls,
        usage,
    })
}

/// The error for a response without candidates: a blocked prompt, or a protocol violation.
fn no_candidate(provider: &str, feedback: Option<WirePromptFeedback>) -> ProviderError {
    match feedback.and_then(|feedback| feedback.block_reason) {
        Some(reason) => ProviderError::new(
            provider,
            ErrorClass::ContentFilter,
            format!("Gemini blocked the prompt: {reason}"),
        ),
        None => ProviderError::invalid_response(provider, "the answer has no candidates"),
    }
}

fn call_id(index: usize) -> String {
    format!("call_{index}")
}

/// Gemini's finish reasons in OpenAI's vocabulary. Gemini says `STOP` after function calls,
/// where OpenAI says `tool_calls`.
fn finish_reason(reason: Option<&str>, has_tool_calls: bool) -> FinishReason {
    match reason {
        Some("STOP") | None if has_tool_calls => FinishReason::ToolCalls,
        Some("STOP") | None => FinishReason::Stop,
        Some("MAX_TOKENS") => FinishReason::Length,
        Some(
            "SAFETY"
            | "RECITATION"
            | "BLOCKLIST"
            | "PROHIBITED_CONTENT"
            | "SPII"
            | "IMAGE_SAFETY"
            | "IMAGE_PROHIBITED_CONTENT"
            | "IMAGE_RECITATION",
        ) => FinishReason::ContentFilter,
        Some(other) => FinishReason::Other(other.to_owned()),
    }
}

/// Translates `streamGenerateContent?alt=sse` events: each carries a whole
/// `GenerateContentResponse` with the next piece of the answer. Gemini has no end marker; the
/// finish reason comes in the last chunk and the stream closes, so `Finish` and `Usage` are
/// emitted at the close.
struct StreamState {
    provider: String,
    n_tool_calls: u32,
    finish_reason: Option<String>,
    usage: Option<Usage>,
}

impl Translator for StreamState {
    fn on_event(&mut self, event: Event) -> Result<Vec<StreamEvent>, ProviderError> {
        let data = event.data.trim();
        if data.is_empty() {
            return Ok(Vec::new());
        }
        let chunk: WireResponse = serde_json::from_str(data).map_err(|err| {
            ProviderError::invalid_response(&self.provider, format!("stream chunk: {err}"))
        })?;
        if let Some(error) = chunk.error {
            let message = format!(
                "{}: {}",
                error.status.as_deref().unwrap_or("ERROR"),
                error
                    .message
                    .as_deref()
                    .unwrap_or("the upstream reported an error mid-stream")
            );
            return Err(match error.code.and_then(|code| u16::try_from(code).ok()) {
                Some(status) => ProviderError::from_status(&self.provider, status, message, None),
                None => ProviderError::new(&self.provider, ErrorClass::Server, message),
            });
        }
        if let Some(usage) = chunk.usage_metadata {
            self.usage = Some(usage.into());
        }
        let Some(candidate) = chunk.candidates.into_iter().next() else {
            // Usage-only chunks are fine; a blocked prompt ends the stream.
            return match chunk.prompt_feedback {
                Some(feedback) if feedback.block_reason.is_some() => {
                    Err(no_candidate(&self.provider, Some(feedback)))
                }
                _ => Ok(Vec::new()),
            };
        };
        if let Some(reason) = &candidate.finish_reason {
            self.finish_reason = Some(reason.clone());
        }
        let mut events = Vec::new();
        for part in candidate.parts() {
            if part.thought == Some(true) {
                continue;
            }
            if let Some(text) = part.text.filter(|text| !text.is_empty()) {
                events.push(StreamEvent::Text(text));
            }
            if let Some(call) = part.function_call {
                let index = self.n_tool_calls;
                self.n_tool_calls += 1;
                let fragment = call.arguments();
                events.push(StreamEvent::ToolCallStart {
                    index,
                    id: call_id(index as usize),
                    name: call.name,
                });
                events.push(StreamEvent::ToolCallArguments { index, fragment });
            }
        }
        Ok(events)
    }

    fn finished(&self) -> bool {
        false
    }

    fn on_end(&mut self) -> Result<Vec<StreamEvent>, ProviderError> {
        let Some(reason) = self.finish_reason.as_deref() else {
            return Err(ProviderError::invalid_response(
                &self.provider,
                "the stream ended before a finish reason",
            ));
        };
        let mut events = vec![StreamEvent::Finish(finish_reason(
            Some(reason),
            self.n_tool_calls > 0,
        ))];
        if let Some(usage) = self.usage {
            events.push(StreamEvent::Usage(usage));
        }
        Ok(events)
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireRequest {
    contents: Vec<WireContent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system_instruction: Option<WireContent>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_config: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    generation_config: Option<WireGenerationConfig>,
}

#[derive(Serialize)]
struct WireContent {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    parts: Vec<Value>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireGenerationConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_output_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    stop_sequences: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_mime_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_json_schema: Option<Value>,
}

impl WireGenerationConfig {
    fn is_empty(&self) -> bool {
        self.temperature.is_none()
            && self.top_p.is_none()
            && self.max_output_tokens.is_none()
            && self.stop_sequences.is_empty()
            && self.seed.is_none()
            && self.response_mime_type.is_none()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireResponse {
    #[serde(default)]
    candidates: Vec<WireCandidate>,
    prompt_feedback: Option<WirePromptFeedback>,
    usage_metadata: Option<WireUsage>,
    model_version: Option<String>,
    response_id: Option<String>,
    /// Only in a stream, when the upstream fails after it started answering.
    error: Option<WireError>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireCandidate {
    content: Option<WireCandidateContent>,
    finish_reason: Option<String>,
}

impl WireCandidate {
    fn parts(&self) -> Vec<WirePart> {
        self.content
            .as_ref()
            .map(|content| content.parts.clone())
            .unwrap_or_default()
    }
}

#[derive(Deserialize)]
struct WireCandidateContent {
    #[serde(default)]
    parts: Vec<WirePart>,
}

#[derive(Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
struct WirePart {
    text: Option<String>,
    function_call: Option<WireFunctionCall>,
    /// Set on thought summaries, which are not part of the answer.
    thought: Option<bool>,
}

#[derive(Deserialize, Clone)]
struct WireFunctionCall {
    name: String,
    args: Option<Value>,
}

impl WireFunctionCall {
    /// The arguments as JSON text (`{}` when Gemini sent none).
    fn arguments(&self) -> String {
        match &self.args {
            Some(args) if !args.is_null() => args.to_string(),
            _ => "{}".to_owned(),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WirePromptFeedback {
    block_reason: Option<String>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "camelCase")]
struct WireUsage {
    #[serde(default)]
    prompt_token_count: u64,
    #[serde(default)]
    candidates_token_count: u64,
    cached_content_token_count: Option<u64>,
    #[serde(default)]
    thoughts_token_count: u64,
    #[serde(default)]
    tool_use_prompt_token_count: u64,
}

impl From<WireUsage> for Usage {
    fn from(usage: WireUsage) -> Usage {
        Usage {
            input_tokens: usage.prompt_token_count + usage.tool_use_prompt_token_count,
            output_tokens: usage.candidates_token_count + usage.thoughts_token_count,
            // Gemini leaves the field out when nothing came from the cache.
            cached_input_tokens: Some(usage.cached_content_token_count.unwrap_or(0)),
        }
    }
}

#[derive(Deserialize)]
struct WireError {
    code: Option<i64>,
    message: Option<String>,
    status: Option<String>,
}

#[derive(Deserialize)]
struct WireEmbeddings {
    #[serde(default)]
    embeddings: Vec<WireEmbedding>,
}

#[derive(Deserialize)]
struct WireEmbedding {
    #[serde(default)]
    values: Vec<f32>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::ToolDefinition;

    fn call(id: &str, name: &str, arguments: &str) -> ToolCall {
        ToolCall {
            id: id.to_owned(),
            name: name.to_owned(),
            arguments: arguments.to_owned(),
        }
    }

    fn tool_conversation(model: &str) -> ChatRequest {
        let assistant = ChatMessage {
            role: Role::Assistant,
            content: None,
            name: None,
            tool_calls: vec![
                call("call_0", "weather", r#"{"city":"Paris"}"#),
                call("call_1", "time", ""),
            ],
            tool_call_id: None,
        };
        let result = |id: &str, content: &str| ChatMessage {
            role: Role::Tool,
            content: Some(content.to_owned()),
            name: None,
            tool_calls: Vec::new(),
            tool_call_id: Some(id.to_owned()),
        };
        ChatRequest {
            model: model.to_owned(),
            messages: vec![
                ChatMessage::text(Role::System, "Be brief."),
                ChatMessage::text(Role::User, "Weather and time in Paris?"),
                assistant,
                result("call_1", "12:00"),
                result("call_0", r#"{"sky":"clear"}"#),
            ],
            tools: vec![ToolDefinition {
                name: "weather".to_owned(),
                description: Some("Weather".to_owned()),
                parameters: json!({"type": "object"}),
                strict: None,
            }],
            ..ChatRequest::default()
        }
    }

    #[test]
    fn conversation_translates_to_contents() -> Result<(), ProviderError> {
        let request = tool_conversation("gemini-2.5-flash");
        let (system, contents) = contents("gemini", &request)?;
        let wire = serde_json::to_value(WireRequest {
            contents,
            system_instruction: system,
            tools: tools(&request),
            tool_config: tool_config(&request),
            generation_config: None,
        })
        .map_err(|err| ProviderError::invalid_response("gemini", err.to_string()))?;
        assert_eq!(
            wire,
            json!({
                "systemInstruction": {"parts": [{"text": "Be brief."}]},
                "contents": [
                    {"role": "user", "parts": [{"text": "Weather and time in Paris?"}]},
                    {"role": "model", "parts": [
                        {"functionCall": {"name": "weather", "args": {"city": "Paris"}}},
                        {"functionCall": {"name": "time", "args": {}}},
                    ]},
                    {"role": "user", "parts": [
                        {"functionResponse": {"name": "time", "response": {"output": "12:00"}}},
                        {"functionResponse": {"name": "weather", "response": {"sky": "clear"}}},
                    ]},
                ],
                "tools": [{"functionDeclarations": [
                    {"name": "weather", "description": "Weather", "parametersJsonSchema": {"type": "object"}},
                ]}],
            })
        );
        Ok(())
    }

    #[test]
    fn gemini_3_replays_calls_with_the_documented_signature_sentinel() -> Result<(), ProviderError>
    {
        let (_, contents) = contents("gemini", &tool_conversation("gemini-3-pro-preview"))?;
        let signatures: Vec<Option<&str>> = contents[1]
            .parts
            .iter()
            .map(|part| part["thoughtSignature"].as_str())
            .collect();
        assert_eq!(signatures, vec![Some(SKIP_SIGNATURE), None]);
        assert!(!needs_signature_sentinel("models/gemini-2.5-pro"));
        assert!(!needs_signature_sentinel("gemma-3-27b-it"));
        Ok(())
    }

    #[test]
    fn unknown_tool_call_id_is_an_invalid_request() {
        let mut request = tool_conversation("gemini-2.5-flash");
        request.messages[3].tool_call_id = Some("call_9".to_owned());
        let error = contents("gemini", &request).err().map(|error| error.class);
        assert_eq!(error, Some(ErrorClass::InvalidRequest));
    }

    #[test]
    fn tool_choice_maps_to_function_calling_modes() {
        let mut request = tool_conversation("gemini-2.5-flash");
        assert_eq!(tool_config(&request), None);
        request.tool_choice = Some(ToolChoice::Function("weather".to_owned()));
        assert_eq!(
            tool_config(&request),
            Some(
                json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["weather"]}})
            )
        );
        request.tool_choice = None;
        request.tools[0].strict = Some(true);
        assert_eq!(
            tool_config(&request),
            Some(json!({"functionCallingConfig": {"mode": "VALIDATED"}}))
        );
        request.tool_choice = Some(ToolChoice::None);
        assert_eq!(
            tool_config(&request),
            Some(json!({"functionCallingConfig": {"mode": "NONE"}}))
        );
    }

    #[test]
    fn finish_reasons_and_usage_translate() {
        assert_eq!(finish_reason(Some("STOP"), true), FinishReason::ToolCalls);
        assert_eq!(
            finish_reason(Some("MAX_TOKENS"), false),
            FinishReason::Length
        );
        assert_eq!(
            finish_reason(Some("SAFETY"), false),
            FinishReason::ContentFilter
        );
        assert_eq!(
            finish_reason(Some("MALFORMED_FUNCTION_CALL"), false),
            FinishReason::Other("MALFORMED_FUNCTION_CALL".to_owned())
        );
        let usage: WireUsage = serde_json::from_value(json!({
            "promptTokenCount": 10, "candidatesTokenCount": 4, "thoughtsTokenCount": 6,
            "cachedContentTokenCount": 3, "totalTokenCount": 20,
        }))
        .expect("usage parses");
        assert_eq!(
            Usage::from(usage),
            Usage {
                input_tokens: 10,
                output_tokens: 10,
                cached_input_tokens: Some(3)
            }
        );
    }

    #[test]
    fn blocked_prompt_is_a_content_filter_error() {
        let body: WireResponse = serde_json::from_value(json!({
            "promptFeedback": {"blockReason": "SAFETY"},
            "usageMetadata": {"promptTokenCount": 3},
        }))
        .expect("response parses");
        let error = answer("gemini", "gemini-2.5-flash", body).expect_err("blocked");
        assert_eq!(error.class, ErrorClass::ContentFilter);
    }

    #[test]
    fn invalid_key_answered_with_400_is_an_authentication_error() {
        let error = reclassify(ProviderError::from_status(
            "gemini",
            400,
            "HTTP 400: INVALID_ARGUMENT: API key not valid. Please pass a valid API key.",
            None,
        ));
        assert_eq!(error.class, ErrorClass::Authentication);
        let error = reclassify(ProviderError::from_status(
            "gemini",
            400,
            "HTTP 400: INVALID_ARGUMENT: contents is not specified",
            None,
        ));
        assert_eq!(error.class, ErrorClass::InvalidRequest);
    }

    #[test]
    fn check_rejects_what_gemini_cannot_take() {
        let provider = GeminiProvider::new(
            "gemini",
            HttpSettings {
                base_url: "http://127.0.0.1:9".to_owned(),
                connect_timeout: std::time::Duration::from_secs(1),
                timeout: std::time::Duration::from_secs(1),
            },
            None,
        )
        .expect("client builds");
        let mut request = ChatRequest {
            seed: Some(7),
            stop: vec!["a".to_owned(); 5],
            ..ChatRequest::default()
        };
        assert!(provider.check(&request).is_ok());
        request.seed = Some(i64::from(i32::MAX) + 1);
        assert_eq!(
            provider.check(&request).err().map(|error| error.parameter),
            Some("seed".to_owned())
        );
        request.seed = None;
        request.stop.push("b".to_owned());
        assert_eq!(
            provider.check(&request).err().map(|error| error.parameter),
            Some("stop".to_owned())
        );
    }
}
