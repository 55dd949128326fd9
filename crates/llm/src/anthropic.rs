//! The Anthropic Messages API adapter (`POST {base_url}/v1/messages`, JSON and server-sent
//! events), translating the gateway's OpenAI-shaped requests, answers, streams, usage and
//! errors faithfully from and to Anthropic's wire format.
//!
//! Translation choices, each forced by a difference between the two APIs:
//!
//! - System (and developer) messages become the top-level `system` text, joined by blank
//!   lines in conversation order; Anthropic has no system role inside `messages`.
//! - Tool results (`role: tool`) become `tool_result` blocks in a user message; consecutive
//!   messages that land on the same Anthropic role are merged into one message, so several
//!   tool results (and a user text that follows them) travel together, results first.
//! - `max_tokens` is required by Anthropic: when the caller gives none, the adapter's
//!   configured `default_max_tokens` is sent.
//! - `response_format: json_schema` maps to `output_config.format` (Anthropic's structured
//!   outputs); OpenAI's schema `name` and `description` have no place there and are dropped.
//! - A message's `name` has no Anthropic field and is dropped; `user` goes to
//!   `metadata.user_id`.
//! - Usage: Anthropic's `input_tokens` counts only the input after the last cache breakpoint,
//!   so [`Usage::input_tokens`] is `input_tokens + cache_read_input_tokens +
//!   cache_creation_input_tokens` (all input) and [`Usage::cached_input_tokens`] is
//!   `cache_read_input_tokens` (tokens served from the cache; cache writes are billed as
//!   input and are not "cached").
//!
//! Rejected by [`Provider::check`]: `seed` (no equivalent), `response_format: json_object`
//! (Anthropic's JSON output needs a schema) and `temperature` above 1 (Anthropic's range is
//! 0 to 1, and rescaling would change the meaning of the caller's value).

use std::collections::{HashMap, VecDeque};

use async_trait::async_trait;
use futures::{Stream, StreamExt};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::sse::{events, idle_timeout, send, send_streaming};
use crate::types::{
    ChatMessage, ChatRequest, ChatResponse, ChatStream, FinishReason, ResponseFormat, Role,
    StreamEvent, ToolCall, ToolChoice, Usage,
};
use crate::{
    Credential, ErrorClass, HttpSettings, Provider, ProviderError, ProviderKind, Unsupported,
};

/// The API version every request is pinned to (Anthropic requires the header).
const ANTHROPIC_VERSION: &str = "2023-06-01";

/// An adapter for the Anthropic Messages API.
#[derive(Debug)]
pub struct AnthropicProvider {
    name: String,
    settings: HttpSettings,
    platform_key: Option<SecretString>,
    /// Sent as `max_tokens` when the request has none, because Anthropic requires the field.
    default_max_tokens: u32,
    client: reqwest::Client,
}

impl AnthropicProvider {
    /// `settings.base_url` is the origin without the API path, e.g. `https://api.anthropic.com`
    /// (requests go to `{base_url}/v1/messages`). `platform_key` is the configured key used for
    /// [`Credential::Platform`]. `default_max_tokens` is sent when a request sets no
    /// `max_tokens`, since Anthropic requires one.
    pub fn new(
        name: &str,
        settings: HttpSettings,
        platform_key: Option<SecretString>,
        default_max_tokens: u32,
    ) -> Result<AnthropicProvider, ProviderError> {
        let client = crate::sse::client(name, &settings)?;
        Ok(AnthropicProvider {
            name: name.to_owned(),
            settings,
            platform_key,
            default_max_tokens,
            client,
        })
    }

    fn url(&self) -> String {
        format!(
            "{}/v1/messages",
            self.settings.base_url.trim_end_matches('/')
        )
    }

    /// The key to send, or an authentication error when the platform key is not configured.
    fn key<'a>(&'a self, credential: &'a Credential) -> Result<&'a str, ProviderError> {
        match credential {
            Credential::User(key) => Ok(key.expose_secret()),
            Credential::Platform => self
                .platform_key
                .as_ref()
                .map(|key| key.expose_secret())
                .ok_or_else(|| {
                    ProviderError::new(
                        &self.name,
                        ErrorClass::Authentication,
                        "no platform API key is configured for this provider",
                    )
                }),
        }
    }

    fn request_builder(&self, key: &str, body: &WireRequest<'_>) -> reqwest::RequestBuilder {
        self.client
            .post(self.url())
            .header("x-api-key", key)
            .header("anthropic-version", ANTHROPIC_VERSION)
            .json(body)
    }
}

#[async_trait]
impl Provider for AnthropicProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> ProviderKind {
        ProviderKind::Anthropic
    }

    fn check(&self, request: &ChatRequest) -> Result<(), Unsupported> {
        if request.seed.is_some() {
            return Err(Unsupported::new(
                &self.name,
                "seed",
                "Anthropic has no seed parameter, so sampling cannot be made reproducible",
            ));
        }
        if matches!(request.response_format, Some(ResponseFormat::JsonObject)) {
            return Err(Unsupported::new(
                &self.name,
                "response_format",
                "Anthropic has no JSON mode without a schema; use `json_schema`",
            ));
        }
        if request
            .temperature
            .is_some_and(|temperature| temperature > 1.0)
        {
            return Err(Unsupported::new(
                &self.name,
                "temperature",
                "Anthropic accepts temperatures from 0 to 1",
            ));
        }
        Ok(())
    }

    async fn chat(
        &self,
        request: &ChatRequest,
        credential: &Credential,
    ) -> Result<ChatResponse, ProviderError> {
        let body = wire_request(&self.name, request, self.default_max_tokens, false)?;
        let key = self.key(credential)?;
        let builder = self
            .request_builder(key, &body)
            .timeout(self.settings.timeout);
        let response = send(&self.name, builder, Some(key)).await?;
        let answer: WireResponse = response
            .json()
            .await
            .map_err(|err| ProviderError::from_reqwest(&self.name, &err))?;
        Ok(chat_response(answer))
    }

    async fn chat_stream(
        &self,
        request: &ChatRequest,
        credential: &Credential,
    ) -> Result<ChatStream, ProviderError> {
        let body = wire_request(&self.name, request, self.default_max_tokens, true)?;
        let key = self.key(credential)?;
        let builder = self.request_builder(key, &body);
        let response =
            send_streaming(&self.name, builder, Some(key), self.settings.timeout).await?;
        let upstream = idle_timeout(
            &self.name,
            events(&self.name, response),
            self.settings.timeout,
        );
        Ok(Box::pin(translate_stream(&self.name, upstream)))
    }
}

// ---------------------------------------------------------------------------------------------
// Requests.

#[derive(Debug, Serialize)]
struct WireRequest<'a> {
    model: &'a str,
    max_tokens: u32,
    messages: Vec<WireMessage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    stop_sequences: Vec<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<WireMetadata<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<WireTool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<WireToolChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_config: Option<WireOutputConfig<'a>>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
}

#[derive(Debug, Serialize)]
struct WireMetadata<'a> {
    user_id: &'a str,
}

#[derive(Debug, Serialize)]
struct WireMessage {
    role: &'static str,
    content: Vec<WireBlock>,
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireBlock {
    Text {
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
    ToolResult {
        tool_use_id: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        content: Option<String>,
    },
}

#[derive(Debug, Serialize)]
struct WireTool<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    input_schema: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    strict: Option<bool>,
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireToolChoice<'a> {
    Auto,
    Any,
    Tool { name: &'a str },
    None,
}

#[derive(Debug, Serialize)]
struct WireOutputConfig<'a> {
    format: WireOutputFormat<'a>,
}

#[derive(Debug, Serialize)]
struct WireOutputFormat<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    schema: &'a Value,
}

/// Translates a request; fails when the conversation cannot be expressed (a tool result
/// without the id of its call, tool-call arguments that are not a JSON object).
fn wire_request<'a>(
    provider: &str,
    request: &'a ChatRequest,
    default_max_tokens: u32,
    stream: bool,
) -> Result<WireRequest<'a>, ProviderError> {
    let system_texts: Vec<&str> = request
        .messages
        .iter()
        .filter(|message| message.role == Role::System)
        .filter_map(|message| message.content.as_deref())
        .collect();
    let system = (!system_texts.is_empty()).then(|| system_texts.join("\n\n"));

    let mut messages: Vec<WireMessage> = Vec::new();
    for message in &request.messages {
        let (role, blocks) = match message.role {
            Role::System => continue,
            Role::User => ("user", text_blocks(message)),
            Role::Assistant => ("assistant", assistant_blocks(provider, message)?),
            Role::Tool => ("user", vec![tool_result_block(provider, message)?]),
        };
        match messages.last_mut() {
            Some(last) if last.role == role => last.content.extend(blocks),
            _ => messages.push(WireMessage {
                role,
                content: blocks,
            }),
        }
    }

    let tools: Vec<WireTool<'a>> = request
        .tools
        .iter()
        .map(|tool| WireTool {
            name: &tool.name,
            description: tool.description.as_deref(),
            input_schema: match &tool.parameters {
                // OpenAI allows a function without parameters; Anthropic requires a schema.
                Value::Null => serde_json::json!({"type": "object", "properties": {}}),
                schema => schema.clone(),
            },
            strict: tool.strict,
        })
        .collect();
    let tool_choice = match &request.tool_choice {
        None => None,
        // Without tools, "auto" and "none" both mean no call, and Anthropic refuses a
        // `tool_choice` without `tools`.
        Some(ToolChoice::Auto | ToolChoice::None) if tools.is_empty() => None,
        Some(ToolChoice::Auto) => Some(WireToolChoice::Auto),
        Some(ToolChoice::None) => Some(WireToolChoice::None),
        Some(ToolChoice::Required) => Some(WireToolChoice::Any),
        Some(ToolChoice::Function(name)) => Some(WireToolChoice::Tool { name }),
    };
    let output_config = match &request.response_format {
        Some(ResponseFormat::JsonSchema { schema, .. }) => Some(WireOutputConfig {
            format: WireOutputFormat {
                kind: "json_schema",
                schema,
            },
        }),
        // `json_object` is refused by `check`; plain text needs no setting.
        Some(ResponseFormat::Text | ResponseFormat::JsonObject) | None => None,
    };

    Ok(WireRequest {
        model: &request.model,
        max_tokens: request.max_tokens.unwrap_or(default_max_tokens),
        messages,
        system,
        temperature: request.temperature,
        top_p: request.top_p,
        stop_sequences: request.stop.iter().map(String::as_str).collect(),
        metadata: request
            .user
            .as_deref()
            .map(|user_id| WireMetadata { user_id }),
        tools,
        tool_choice,
        output_config,
        stream,
    })
}

fn text_blocks(message: &ChatMessage) -> Vec<WireBlock> {
    match &message.content {
        Some(text) => vec![WireBlock::Text { text: text.clone() }],
        None => Vec::new(),
    }
}

fn assistant_blocks(
    provider: &str,
    message: &ChatMessage,
) -> Result<Vec<WireBlock>, ProviderError> {
    let mut blocks = Vec::new();
    // Anthropic refuses empty text blocks; an assistant turn that only calls tools often
    // carries `content: ""` in OpenAI's format.
    if let Some(text) = message.content.as_deref().filter(|text| !text.is_empty()) {
        blocks.push(WireBlock::Text {
            text: text.to_owned(),
        });
    }
    for call in &message.tool_calls {
        let input: Value = match call.arguments.trim() {
            "" => Value::Object(serde_json::Map::new()),
            arguments => serde_json::from_str(arguments).map_err(|err| {
                ProviderError::new(
                    provider,
                    ErrorClass::InvalidRequest,
                    format!(
                        "the arguments of tool call {} are not valid JSON: {err}",
                        call.id
                    ),
                )
            })?,
        };
        if !input.is_object() {
            return Err(ProviderError::new(
                provider,
                ErrorClass::InvalidRequest,
                format!(
                    "the arguments of tool call {} must be a JSON object for Anthropic",
                    call.id
                ),
            ));
        }
        blocks.push(WireBlock::ToolUse {
            id: call.id.clone(),
            name: call.name.clone(),
            input,
        });
    }
    Ok(blocks)
}

fn tool_result_block(provider: &str, message: &ChatMessage) -> Result<WireBlock, ProviderError> {
    let tool_use_id = message.tool_call_id.clone().ok_or_else(|| {
        ProviderError::new(
            provider,
            ErrorClass::InvalidRequest,
            "a tool message needs the `tool_call_id` of the call it answers",
        )
    })?;
    Ok(WireBlock::ToolResult {
        tool_use_id,
        content: message.content.clone().filter(|text| !text.is_empty()),
    })
}

// ---------------------------------------------------------------------------------------------
// Answers.

#[derive(Debug, Deserialize)]
struct WireResponse {
    id: Option<String>,
    #[serde(default)]
    model: String,
    #[serde(default)]
    content: Vec<WireResponseBlock>,
    stop_reason: Option<String>,
    usage: Option<WireUsage>,
}

/// A content block of an answer. A plain struct rather than a tagged enum so that `input`
/// can stay raw JSON text (the model's arguments exactly as produced); block types the
/// adapter does not ask for (thinking, server tools) are skipped by `kind`.
#[derive(Debug, Deserialize)]
struct WireResponseBlock {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
    id: Option<String>,
    name: Option<String>,
    input: Option<Box<RawValue>>,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
struct WireUsage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
}

impl WireUsage {
    /// Later counts replace earlier ones: `message_delta` usage is cumulative.
    fn merge(&mut self, later: WireUsage) {
        self.input_tokens = later.input_tokens.or(self.input_tokens);
        self.output_tokens = later.output_tokens.or(self.output_tokens);
        self.cache_read_input_tokens = later
            .cache_read_input_tokens
            .or(self.cache_read_input_tokens);
        self.cache_creation_input_tokens = later
            .cache_creation_input_tokens
            .or(self.cache_creation_input_tokens);
    }

    fn usage(self) -> Usage {
        let cache_read = self.cache_read_input_tokens.unwrap_or(0);
        let cache_creation = self.cache_creation_input_tokens.unwrap_or(0);
        Usage {
            input_tokens: self.input_tokens.unwrap_or(0) + cache_read + cache_creation,
            output_tokens: self.output_tokens.unwrap_or(0),
            cached_input_tokens: self.cache_read_input_tokens,
        }
    }
}

fn chat_response(answer: WireResponse) -> ChatResponse {
    let mut text: Option<String> = None;
    let mut tool_calls = Vec::new();
    for block in answer.content {
        match block.kind.as_str() {
            "text" => text
                .get_or_insert_with(String::new)
                .push_str(block.text.as_deref().unwrap_or_default()),
            "tool_use" => tool_calls.push(ToolCall {
                id: block.id.unwrap_or_default(),
                name: block.name.unwrap_or_default(),
                arguments: block
                    .input
                    .map(|input| input.get().to_owned())
                    .unwrap_or_else(|| "{}".to_owned()),
            }),
            _ => {}
        }
    }
    ChatResponse {
        id: answer.id,
        model: answer.model,
        content: text,
        tool_calls,
        finish_reason: finish_reason(answer.stop_reason.as_deref()),
        usage: answer.usage.map(WireUsage::usage),
    }
}

/// Anthropic's `stop_reason` in OpenAI's vocabulary.
fn finish_reason(stop_reason: Option<&str>) -> FinishReason {
    match stop_reason {
        Some("end_turn" | "stop_sequence") => FinishReason::Stop,
        // The context window ran out: as OpenAI reports it, the answer was cut for length.
        Some("max_tokens" | "model_context_window_exceeded") => FinishReason::Length,
        Some("tool_use") => FinishReason::ToolCalls,
        Some("refusal") => FinishReason::ContentFilter,
        Some(other) => FinishReason::Other(other.to_owned()),
        None => FinishReason::Other("unknown".to_owned()),
    }
}

// ---------------------------------------------------------------------------------------------
// Streams.

/// The data of one stream event; which fields are present depends on `type`.
#[derive(Debug, Deserialize)]
struct WireStreamEvent {
    #[serde(rename = "type")]
    kind: String,
    message: Option<WireStreamMessage>,
    index: Option<u32>,
    content_block: Option<WireResponseBlock>,
    delta: Option<WireDelta>,
    usage: Option<WireUsage>,
    error: Option<WireError>,
}

#[derive(Debug, Deserialize)]
struct WireStreamMessage {
    usage: Option<WireUsage>,
}

#[derive(Debug, Deserialize)]
struct WireDelta {
    #[serde(rename = "type")]
    kind: Option<String>,
    text: Option<String>,
    partial_json: Option<String>,
    stop_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WireError {
    #[serde(rename = "type")]
    kind: Option<String>,
    message: Option<String>,
}

/// What a stream has seen so far.
#[derive(Debug)]
struct StreamTranslator {
    provider: String,
    usage: WireUsage,
    /// Content-block index → (tool-call index, whether any argument text arrived).
    tool_blocks: HashMap<u32, (u32, bool)>,
    n_tool_calls: u32,
    stopped: bool,
}

impl StreamTranslator {
    fn new(provider: &str) -> StreamTranslator {
        StreamTranslator {
            provider: provider.to_owned(),
            usage: WireUsage::default(),
            tool_blocks: HashMap::new(),
            n_tool_calls: 0,
            stopped: false,
        }
    }

    fn on_event(&mut self, data: &str) -> Result<Vec<StreamEvent>, ProviderError> {
        let event: WireStreamEvent = serde_json::from_str(data).map_err(|err| {
            ProviderError::invalid_response(
                &self.provider,
                format!("unreadable stream event: {err}"),
            )
        })?;
        let mut out = Vec::new();
        match event.kind.as_str() {
            "message_start" => {
                if let Some(usage) = event.message.and_then(|message| message.usage) {
                    self.usage.merge(usage);
                }
            }
            "content_block_start" => {
                let block = event
                    .content_block
                    .ok_or_else(|| self.malformed(&event.kind))?;
                let index = event
                    .index
                    .ok_or_else(|| self.malformed("content_block_start"))?;
                match block.kind.as_str() {
                    "text" => {
                        if let Some(text) = block.text.filter(|text| !text.is_empty()) {
                            out.push(StreamEvent::Text(text));
                        }
                    }
                    "tool_use" => {
                        let tool_index = self.n_tool_calls;
                        self.n_tool_calls += 1;
                        self.tool_blocks.insert(index, (tool_index, false));
                        out.push(StreamEvent::ToolCallStart {
                            index: tool_index,
                            id: block.id.unwrap_or_default(),
                            name: block.name.unwrap_or_default(),
                        });
                    }
                    _ => {}
                }
            }
            "content_block_delta" => {
                let delta = event
                    .delta
                    .ok_or_else(|| self.malformed("content_block_delta"))?;
                match delta.kind.as_deref() {
                    Some("text_delta") => {
                        if let Some(text) = delta.text.filter(|text| !text.is_empty()) {
                            out.push(StreamEvent::Text(text));
                        }
                    }
                    Some("input_json_delta") => {
                        let index = event
                            .index
                            .ok_or_else(|| self.malformed("content_block_delta"))?;
                        let fragment = delta.partial_json.unwrap_or_default();
                        if let Some((tool_index, seen)) = self.tool_blocks.get_mut(&index) {
                            if !fragment.is_empty() {
                                *seen = true;
                                out.push(StreamEvent::ToolCallArguments {
                                    index: *tool_index,
                                    fragment,
                                });
                            }
                        }
                    }
                    // Thinking, signature and citation deltas carry nothing the gateway sends.
                    _ => {}
                }
            }
            "content_block_stop" => {
                // A tool called without arguments streams no JSON at all; the non-streamed
                // answer has `input: {}`, so the streamed one says the same.
                if let Some((tool_index, false)) = event
                    .index
                    .and_then(|index| self.tool_blocks.get(&index).copied())
                {
                    out.push(StreamEvent::ToolCallArguments {
                        index: tool_index,
                        fragment: "{}".to_owned(),
                    });
                }
            }
            "message_delta" => {
                if let Some(usage) = event.usage {
                    self.usage.merge(usage);
                }
                let stop_reason = event.delta.and_then(|delta| delta.stop_reason);
                out.push(StreamEvent::Finish(finish_reason(stop_reason.as_deref())));
                out.push(StreamEvent::Usage(self.usage.usage()));
            }
            "message_stop" => self.stopped = true,
            "error" => return Err(self.stream_error(event.error)),
            // `ping`, and event types added later, which Anthropic asks clients to ignore.
            _ => {}
        }
        Ok(out)
    }

    fn malformed(&self, kind: &str) -> ProviderError {
        ProviderError::invalid_response(&self.provider, format!("malformed `{kind}` event"))
    }

    /// An `error` event sent after the 200 (for example `overloaded_error`), classified as
    /// the same error would be as an HTTP status.
    fn stream_error(&self, error: Option<WireError>) -> ProviderError {
        let kind = error
            .as_ref()
            .and_then(|error| error.kind.clone())
            .unwrap_or_else(|| "error".to_owned());
        let message = error
            .and_then(|error| error.message)
            .unwrap_or_else(|| "no message".to_owned());
        let class = match kind.as_str() {
            "rate_limit_error" => ErrorClass::RateLimited,
            "overloaded_error" | "api_error" => ErrorClass::Server,
            "timeout_error" => ErrorClass::Timeout,
            "authentication_error" | "permission_error" | "billing_error" => {
                ErrorClass::Authentication
            }
            "not_found_error" => ErrorClass::ModelNotFound,
            "invalid_request_error" | "request_too_large" => ErrorClass::InvalidRequest,
            _ => ErrorClass::Server,
        };
        ProviderError::new(
            &self.provider,
            class,
            format!("error during the stream: {kind}: {message}"),
        )
    }
}

/// Turns Anthropic's events into [`StreamEvent`]s. The stream ends after `message_stop`;
/// an upstream that ends before it yields an `InvalidResponse` error, since the answer may
/// be cut short.
fn translate_stream<S>(
    provider: &str,
    upstream: S,
) -> impl Stream<Item = Result<StreamEvent, ProviderError>> + Send + 'static
where
    S: Stream<Item = Result<eventsource_stream::Event, ProviderError>> + Send + 'static,
{
    struct State<S> {
        upstream: std::pin::Pin<Box<S>>,
        translator: StreamTranslator,
        pending: VecDeque<Result<StreamEvent, ProviderError>>,
        finished: bool,
    }
    let state = State {
        upstream: Box::pin(upstream),
        translator: StreamTranslator::new(provider),
        pending: VecDeque::new(),
        finished: false,
    };
    futures::stream::unfold(state, |mut state| async move {
        loop {
            if let Some(item) = state.pending.pop_front() {
                return Some((item, state));
            }
            if state.finished {
                return None;
            }
            match state.upstream.next().await {
                Some(Ok(event)) => match state.translator.on_event(&event.data) {
                    Ok(items) => {
                        state.pending.extend(items.into_iter().map(Ok));
                        state.finished = state.translator.stopped;
                    }
                    Err(err) => {
                        state.pending.push_back(Err(err));
                        state.finished = true;
                    }
                },
                Some(Err(err)) => {
                    state.pending.push_back(Err(err));
                    state.finished = true;
                }
                None => {
                    state.pending.push_back(Err(ProviderError::invalid_response(
                        &state.translator.provider,
                        "the stream ended before `message_stop`",
                    )));
                    state.finished = true;
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::ToolDefinition;

    fn request() -> ChatRequest {
        ChatRequest {
            model: "claude-test".to_owned(),
            messages: vec![
                ChatMessage::text(Role::System, "Be brief."),
                ChatMessage::text(Role::User, "Weather?"),
                ChatMessage {
                    role: Role::Assistant,
                    content: Some(String::new()),
                    name: None,
                    tool_calls: vec![
                        ToolCall {
                            id: "call_1".to_owned(),
                            name: "lookup".to_owned(),
                            arguments: r#"{"city":"Oslo"}"#.to_owned(),
                        },
                        ToolCall {
                            id: "call_2".to_owned(),
                            name: "lookup".to_owned(),
                            arguments: r#"{"city":"Bergen"}"#.to_owned(),
                        },
                    ],
                    tool_call_id: None,
                },
                ChatMessage {
                    tool_call_id: Some("call_1".to_owned()),
                    ..ChatMessage::text(Role::Tool, "sunny")
                },
                ChatMessage {
                    tool_call_id: Some("call_2".to_owned()),
                    ..ChatMessage::text(Role::Tool, "rain")
                },
                ChatMessage::text(Role::System, "Answer in English."),
            ],
            max_tokens: None,
            stop: vec!["END".to_owned()],
            user: Some("user-1".to_owned()),
            tools: vec![ToolDefinition {
                name: "lookup".to_owned(),
                description: Some("Looks up the weather".to_owned()),
                parameters: Value::Null,
                strict: None,
            }],
            tool_choice: Some(ToolChoice::Required),
            ..ChatRequest::default()
        }
    }

    #[test]
    fn requests_translate_to_the_messages_shape() {
        let request = request();
        let wire = wire_request("anthropic", &request, 4096, false).unwrap();
        let body = serde_json::to_value(&wire).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "model": "claude-test",
                "max_tokens": 4096,
                "system": "Be brief.\n\nAnswer in English.",
                "messages": [
                    {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
                    {"role": "assistant", "content": [
                        {"type": "tool_use", "id": "call_1", "name": "lookup", "input": {"city": "Oslo"}},
                        {"type": "tool_use", "id": "call_2", "name": "lookup", "input": {"city": "Bergen"}},
                    ]},
                    {"role": "user", "content": [
                        {"type": "tool_result", "tool_use_id": "call_1", "content": "sunny"},
                        {"type": "tool_result", "tool_use_id": "call_2", "content": "rain"},
                    ]},
                ],
                "stop_sequences": ["END"],
                "metadata": {"user_id": "user-1"},
                "tools": [{
                    "name": "lookup",
                    "description": "Looks up the weather",
                    "input_schema": {"type": "object", "properties": {}},
                }],
                "tool_choice": {"type": "any"},
            })
        );
    }

    #[test]
    fn json_schema_maps_to_output_config() {
        let schema = serde_json::json!({"type": "object", "properties": {"a": {"type": "string"}}});
        let request = ChatRequest {
            model: "m".to_owned(),
            messages: vec![ChatMessage::text(Role::User, "hi")],
            max_tokens: Some(10),
            response_format: Some(ResponseFormat::JsonSchema {
                name: "answer".to_owned(),
                description: None,
                schema: schema.clone(),
                strict: Some(true),
            }),
            tool_choice: Some(ToolChoice::Auto),
            ..ChatRequest::default()
        };
        let body = serde_json::to_value(wire_request("a", &request, 1, true).unwrap()).unwrap();
        assert_eq!(
            body["output_config"],
            serde_json::json!({"format": {"type": "json_schema", "schema": schema}})
        );
        assert_eq!(body["max_tokens"], 10);
        assert_eq!(body["stream"], true);
        assert!(
            body.get("tool_choice").is_none(),
            "no tools, no tool_choice"
        );
    }

    #[test]
    fn invalid_tool_arguments_are_refused() {
        let mut request = request();
        request.messages[2].tool_calls[0].arguments = "[1]".to_owned();
        let err = wire_request("anthropic", &request, 1, false).unwrap_err();
        assert_eq!(err.class, ErrorClass::InvalidRequest);
    }

    #[test]
    fn usage_counts_cache_reads_and_writes_as_input() {
        let usage = WireUsage {
            input_tokens: Some(10),
            output_tokens: Some(3),
            cache_read_input_tokens: Some(100),
            cache_creation_input_tokens: Some(5),
        }
        .usage();
        assert_eq!(
            usage,
            Usage {
                input_tokens: 115,
                output_tokens: 3,
                cached_input_tokens: Some(100),
            }
        );
    }

    #[test]
    fn stop_reasons_map_to_openai_finish_reasons() {
        assert_eq!(finish_reason(Some("end_turn")), FinishReason::Stop);
        assert_eq!(finish_reason(Some("stop_sequence")), FinishReason::Stop);
        assert_eq!(finish_reason(Some("max_tokens")), FinishReason::Length);
        assert_eq!(finish_reason(Some("tool_use")), FinishReason::ToolCalls);
        assert_eq!(finish_reason(Some("refusal")), FinishReason::ContentFilter);
        assert_eq!(
            finish_reason(Some("pause_turn")),
            FinishReason::Other("pause_turn".to_owned())
        );
    }

    #[test]
    fn stream_events_translate_in_order() {
        let mut translator = StreamTranslator::new("anthropic");
        let events = [
            r#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"m","stop_reason":null,"usage":{"input_tokens":7,"cache_read_input_tokens":3,"cache_creation_input_tokens":0,"output_tokens":1}}}"#,
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
            r#"{"type":"ping"}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#,
            r#"{"type":"content_block_stop","index":0}"#,
            r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_1","name":"lookup","input":{}}}"#,
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}"#,
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"a\":1}"}}"#,
            r#"{"type":"content_block_stop","index":1}"#,
            r#"{"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_2","name":"now","input":{}}}"#,
            r#"{"type":"content_block_stop","index":2}"#,
            r#"{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":12}}"#,
            r#"{"type":"message_stop"}"#,
        ];
        let mut out = Vec::new();
        for event in events {
            out.extend(translator.on_event(event).unwrap());
        }
        assert!(translator.stopped);
        assert_eq!(
            out,
            vec![
                StreamEvent::Text("Hi".to_owned()),
                StreamEvent::ToolCallStart {
                    index: 0,
                    id: "toolu_1".to_owned(),
                    name: "lookup".to_owned()
                },
                StreamEvent::ToolCallArguments {
                    index: 0,
                    fragment: r#"{"a":1}"#.to_owned()
                },
                StreamEvent::ToolCallStart {
                    index: 1,
                    id: "toolu_2".to_owned(),
                    name: "now".to_owned()
                },
                StreamEvent::ToolCallArguments {
                    index: 1,
                    fragment: "{}".to_owned()
                },
                StreamEvent::Finish(FinishReason::ToolCalls),
                StreamEvent::Usage(Usage {
                    input_tokens: 10,
                    output_tokens: 12,
                    cached_input_tokens: Some(3),
                }),
            ]
        );
    }

    #[test]
    fn error_events_are_classified() {
        let mut translator = StreamTranslator::new("anthropic");
        let err = translator
            .on_event(
                r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
            )
            .unwrap_err();
        assert_eq!(err.class, ErrorClass::Server);
        assert!(err.message.contains("Overloaded"));
    }
}
