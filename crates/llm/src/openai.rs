//! OpenAI Chat Completions and Embeddings, and any OpenAI-compatible server (vLLM, Ollama,
//! llama.cpp server) by base URL.
//!
//! Differences between the two kinds: the official API takes `max_completion_tokens` (the
//! o-series rejects `max_tokens`), compatible servers take `max_tokens`; and a compatible
//! server's configuration may list parameters it does not honour, which are then rejected
//! before the call instead of being silently ignored upstream.

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::sse::{self, Event, Translator};
use crate::types::{
    ChatMessage, ChatRequest, ChatResponse, ChatStream, EmbeddingRequest, EmbeddingResponse,
    FinishReason, ResponseFormat, StreamEvent, ToolCall, ToolChoice, Usage,
};
use crate::{
    Credential, ErrorClass, HttpSettings, Provider, ProviderError, ProviderKind, Unsupported,
};

/// An OpenAI or OpenAI-compatible endpoint.
#[derive(Debug)]
pub struct OpenAiProvider {
    name: String,
    kind: ProviderKind,
    settings: HttpSettings,
    client: reqwest::Client,
    platform_key: Option<SecretString>,
    unsupported_parameters: Vec<String>,
    /// Parsed once: parsing a URL per request shows up in profiles.
    chat_url: reqwest::Url,
    embeddings_url: reqwest::Url,
}

/// Options of an OpenAI-compatible endpoint.
#[derive(Debug, Clone, Default)]
pub struct CompatibleOptions {
    /// OpenAI parameter names this server does not honour (e.g. `seed`, `tools`).
    pub unsupported_parameters: Vec<String>,
}

impl OpenAiProvider {
    /// The official API (`settings.base_url` is normally `https://api.openai.com/v1`).
    pub fn openai(
        name: &str,
        settings: HttpSettings,
        platform_key: Option<SecretString>,
    ) -> Result<OpenAiProvider, ProviderError> {
        OpenAiProvider::build(
            name,
            ProviderKind::OpenAi,
            settings,
            platform_key,
            Vec::new(),
        )
    }

    /// An OpenAI-compatible server. Compatible servers often need no key; one is sent when
    /// configured.
    pub fn compatible(
        name: &str,
        settings: HttpSettings,
        platform_key: Option<SecretString>,
        options: CompatibleOptions,
    ) -> Result<OpenAiProvider, ProviderError> {
        OpenAiProvider::build(
            name,
            ProviderKind::OpenAiCompatible,
            settings,
            platform_key,
            options.unsupported_parameters,
        )
    }

    fn build(
        name: &str,
        kind: ProviderKind,
        settings: HttpSettings,
        platform_key: Option<SecretString>,
        unsupported_parameters: Vec<String>,
    ) -> Result<OpenAiProvider, ProviderError> {
        let client = crate::sse::client(name, &settings)?;
        let url = |path: &str| {
            let text = format!("{}{path}", settings.base_url.trim_end_matches('/'));
            reqwest::Url::parse(&text).map_err(|err| {
                ProviderError::new(
                    name,
                    ErrorClass::InvalidRequest,
                    format!("base URL `{}` is not a URL: {err}", settings.base_url),
                )
            })
        };
        let chat_url = url("/chat/completions")?;
        let embeddings_url = url("/embeddings")?;
        Ok(OpenAiProvider {
            name: name.to_owned(),
            kind,
            settings,
            client,
            platform_key,
            unsupported_parameters,
            chat_url,
            embeddings_url,
        })
    }

    /// The key to send, or an authentication error when the official API has none.
    fn key<'a>(&'a self, credential: &'a Credential) -> Result<Option<&'a str>, ProviderError> {
        let key = match credential {
            Credential::User(key) => Some(key.expose_secret()),
            Credential::Platform => self.platform_key.as_ref().map(|key| key.expose_secret()),
        };
        if key.is_none() && self.kind == ProviderKind::OpenAi {
            return Err(ProviderError::new(
                &self.name,
                ErrorClass::Authentication,
                "no API key: store your own key for this provider or ask an operator to configure a platform key",
            ));
        }
        Ok(key)
    }

    fn post(&self, url: &reqwest::Url, key: Option<&str>) -> reqwest::RequestBuilder {
        let request = self.client.post(url.clone());
        match key {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
    }

    fn wire_request<'a>(&self, request: &'a ChatRequest, stream: bool) -> WireRequest<'a> {
        let (max_tokens, max_completion_tokens) = match self.kind {
            ProviderKind::OpenAi => (None, request.max_tokens),
            _ => (request.max_tokens, None),
        };
        WireRequest {
            model: &request.model,
            messages: request.messages.iter().map(WireMessage::from).collect(),
            temperature: request.temperature,
            top_p: request.top_p,
            max_tokens,
            max_completion_tokens,
            stop: (!request.stop.is_empty()).then_some(&request.stop),
            seed: request.seed,
            user: request.user.as_deref(),
            response_format: request.response_format.as_ref().map(wire_response_format),
            tools: (!request.tools.is_empty()).then(|| {
                request
                    .tools
                    .iter()
                    .map(|tool| {
                        serde_json::json!({
                            "type": "function",
                            "function": {
                                "name": tool.name,
                                "description": tool.description,
                                "parameters": tool.parameters,
                                "strict": tool.strict,
                            },
                        })
                    })
                    .collect()
            }),
            tool_choice: request.tool_choice.as_ref().map(|choice| match choice {
                ToolChoice::Auto => Value::from("auto"),
                ToolChoice::None => Value::from("none"),
                ToolChoice::Required => Value::from("required"),
                ToolChoice::Function(name) => {
                    serde_json::json!({"type": "function", "function": {"name": name}})
                }
            }),
            stream: stream.then_some(true),
            stream_options: stream.then_some(StreamOptions {
                include_usage: true,
            }),
        }
    }
}

#[async_trait]
impl Provider for OpenAiProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> ProviderKind {
        self.kind
    }

    fn check(&self, request: &ChatRequest) -> Result<(), Unsupported> {
        let used = [
            ("temperature", request.temperature.is_some()),
            ("top_p", request.top_p.is_some()),
            ("max_tokens", request.max_tokens.is_some()),
            ("stop", !request.stop.is_empty()),
            ("seed", request.seed.is_some()),
            ("user", request.user.is_some()),
            ("response_format", request.response_format.is_some()),
            ("tools", !request.tools.is_empty()),
            ("tool_choice", request.tool_choice.is_some()),
        ];
        for (parameter, present) in used {
            if present
                && self
                    .unsupported_parameters
                    .iter()
                    .any(|unsupported| unsupported == parameter)
            {
                return Err(Unsupported::new(
                    &self.name,
                    parameter,
                    "this server is configured as not honouring it",
                ));
            }
        }
        Ok(())
    }

    async fn chat(
        &self,
        request: &ChatRequest,
        credential: &Credential,
    ) -> Result<ChatResponse, ProviderError> {
        let key = self.key(credential)?;
        let http = self
            .post(&self.chat_url, key)
            .timeout(self.settings.timeout)
            .json(&self.wire_request(request, false));
        let response = sse::send(&self.name, http, key).await?;
        let body: WireResponse = response
            .json()
            .await
            .map_err(|err| ProviderError::from_reqwest(&self.name, &err))?;
        let choice = body.choices.into_iter().next().ok_or_else(|| {
            ProviderError::invalid_response(&self.name, "the answer has no choices")
        })?;
        Ok(ChatResponse {
            id: body.id,
            model: body.model.unwrap_or_else(|| request.model.clone()),
            content: choice.message.content,
            tool_calls: choice
                .message
                .tool_calls
                .into_iter()
                .map(|call| ToolCall {
                    id: call.id,
                    name: call.function.name,
                    arguments: call.function.arguments,
                })
                .collect(),
            finish_reason: finish_reason(choice.finish_reason.as_deref()),
            usage: body.usage.map(Usage::from),
        })
    }

    async fn chat_stream(
        &self,
        request: &ChatRequest,
        credential: &Credential,
    ) -> Result<ChatStream, ProviderError> {
        let key = self.key(credential)?;
        let http = self
            .post(&self.chat_url, key)
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .json(&self.wire_request(request, true));
        let response = sse::send_streaming(&self.name, http, key, self.settings.timeout).await?;
        let events = sse::idle_timeout(
            &self.name,
            sse::events(&self.name, response),
            self.settings.timeout,
        );
        Ok(sse::translate(
            events,
            StreamState {
                provider: self.name.clone(),
                done: false,
                saw_finish_reason: false,
            },
        ))
    }

    async fn embed(
        &self,
        request: &EmbeddingRequest,
        credential: &Credential,
    ) -> Result<EmbeddingResponse, ProviderError> {
        let key = self.key(credential)?;
        let http = self
            .post(&self.embeddings_url, key)
            .timeout(self.settings.timeout)
            .json(&serde_json::json!({
                "model": request.model,
                "input": request.inputs,
                "dimensions": request.dimensions,
                "user": request.user,
                "encoding_format": "float",
            }));
        let response = sse::send(&self.name, http, key).await?;
        let mut body: WireEmbeddings = response
            .json()
            .await
            .map_err(|err| ProviderError::from_reqwest(&self.name, &err))?;
        if body.data.len() != request.inputs.len() {
            return Err(ProviderError::invalid_response(
                &self.name,
                format!(
                    "{} embeddings for {} inputs",
                    body.data.len(),
                    request.inputs.len()
                ),
            ));
        }
        body.data.sort_by_key(|item| item.index);
        Ok(EmbeddingResponse {
            model: body.model.unwrap_or_else(|| request.model.clone()),
            vectors: body.data.into_iter().map(|item| item.embedding).collect(),
            usage: Usage {
                input_tokens: body.usage.map(|usage| usage.prompt_tokens).unwrap_or(0),
                output_tokens: 0,
                cached_input_tokens: None,
            },
        })
    }

    fn supports_embeddings(&self) -> bool {
        true
    }
}

/// OpenAI's finish reasons are ours; anything else is kept verbatim.
fn finish_reason(reason: Option<&str>) -> FinishReason {
    match reason {
        Some("stop") | None => FinishReason::Stop,
        Some("length") => FinishReason::Length,
        Some("tool_calls" | "function_call") => FinishReason::ToolCalls,
        Some("content_filter") => FinishReason::ContentFilter,
        Some(other) => FinishReason::Other(other.to_owned()),
    }
}

fn wire_response_format(format: &ResponseFormat) -> Value {
    match format {
        ResponseFormat::Text => serde_json::json!({"type": "text"}),
        ResponseFormat::JsonObject => serde_json::json!({"type": "json_object"}),
        ResponseFormat::JsonSchema {
            name,
            description,
            schema,
            strict,
        } => serde_json::json!({
            "type": "json_schema",
            "json_schema": {
                "name": name,
                "description": description,
                "schema": schema,
                "strict": strict,
            },
        }),
    }
}

struct StreamState {
    provider: String,
    /// `[DONE]` was seen.
    done: bool,
    /// A `finish_reason` was seen.
    saw_finish_reason: bool,
}

impl Translator for StreamState {
    fn on_event(&mut self, event: Event) -> Result<Vec<StreamEvent>, ProviderError> {
        let data = event.data.trim();
        if data == "[DONE]" {
            self.done = true;
            return Ok(Vec::new());
        }
        if data.is_empty() {
            return Ok(Vec::new());
        }
        let chunk: WireChunk = serde_json::from_str(data).map_err(|err| {
            ProviderError::invalid_response(&self.provider, format!("stream chunk: {err}"))
        })?;
        if let Some(error) = chunk.error {
            let message = error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("the upstream reported an error mid-stream")
                .to_owned();
            return Err(ProviderError::new(
                &self.provider,
                ErrorClass::Server,
                message,
            ));
        }
        let mut events = Vec::new();
        for choice in chunk.choices.into_iter().filter(|choice| choice.index == 0) {
            if let Some(text) = choice.delta.content.filter(|text| !text.is_empty()) {
                events.push(StreamEvent::Text(text));
            }
            for call in choice.delta.tool_calls {
                let function = call.function.unwrap_or_default();
                if let Some(id) = call.id {
                    events.push(StreamEvent::ToolCallStart {
                        index: call.index,
                        id,
                        name: function.name.unwrap_or_default(),
                    });
                }
                if let Some(fragment) = function.arguments.filter(|text| !text.is_empty()) {
                    events.push(StreamEvent::ToolCallArguments {
                        index: call.index,
                        fragment,
                    });
                }
            }
            if let Some(reason) = choice.finish_reason {
                self.saw_finish_reason = true;
                events.push(StreamEvent::Finish(finish_reason(Some(&reason))));
            }
        }
        if let Some(usage) = chunk.usage {
            events.push(StreamEvent::Usage(usage.into()));
        }
        Ok(events)
    }

    fn finished(&self) -> bool {
        self.done
    }

    fn on_end(&mut self) -> Result<Vec<StreamEvent>, ProviderError> {
        // Some compatible servers close without `[DONE]` after the finish reason; that is a
        // complete answer. Without a finish reason it is a truncation.
        if self.saw_finish_reason {
            Ok(Vec::new())
        } else {
            Err(ProviderError::invalid_response(
                &self.provider,
                "the stream ended before a finish reason",
            ))
        }
    }
}

#[derive(Serialize)]
struct WireRequest<'a> {
    model: &'a str,
    messages: Vec<WireMessage<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_completion_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop: Option<&'a Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tools: Option<Vec<Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

#[derive(Serialize)]
struct WireMessage<'a> {
    role: &'static str,
    /// `null` is meaningful for an assistant message that only calls tools.
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_call_id: Option<&'a str>,
}

impl<'a> From<&'a ChatMessage> for WireMessage<'a> {
    fn from(message: &'a ChatMessage) -> WireMessage<'a> {
        WireMessage {
            role: message.role.as_str(),
            content: message.content.as_deref(),
            name: message.name.as_deref(),
            tool_calls: message
                .tool_calls
                .iter()
                .map(|call| {
                    serde_json::json!({
                        "id": call.id,
                        "type": "function",
                        "function": {"name": call.name, "arguments": call.arguments},
                    })
                })
                .collect(),
            tool_call_id: message.tool_call_id.as_deref(),
        }
    }
}

#[derive(Deserialize)]
struct WireResponse {
    id: Option<String>,
    model: Option<String>,
    #[serde(default)]
    choices: Vec<WireChoice>,
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireChoice {
    message: WireAnswer,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireAnswer {
    content: Option<String>,
    #[serde(default)]
    tool_calls: Vec<WireToolCall>,
}

#[derive(Deserialize)]
struct WireToolCall {
    id: String,
    function: WireFunction,
}

#[derive(Deserialize)]
struct WireFunction {
    name: String,
    #[serde(default)]
    arguments: String,
}

#[derive(Deserialize, Clone, Copy)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    prompt_tokens_details: Option<WirePromptDetails>,
}

#[derive(Deserialize, Clone, Copy)]
struct WirePromptDetails {
    cached_tokens: Option<u64>,
}

impl From<WireUsage> for Usage {
    fn from(usage: WireUsage) -> Usage {
        Usage {
            input_tokens: usage.prompt_tokens,
            output_tokens: usage.completion_tokens,
            cached_input_tokens: usage
                .prompt_tokens_details
                .and_then(|details| details.cached_tokens),
        }
    }
}

#[derive(Deserialize)]
struct WireChunk {
    #[serde(default)]
    choices: Vec<WireChunkChoice>,
    usage: Option<WireUsage>,
    error: Option<Value>,
}

#[derive(Deserialize)]
struct WireChunkChoice {
    #[serde(default)]
    index: u32,
    #[serde(default)]
    delta: WireDelta,
    finish_reason: Option<String>,
}

#[derive(Deserialize, Default)]
struct WireDelta {
    content: Option<String>,
    #[serde(default)]
    tool_calls: Vec<WireToolCallDelta>,
}

#[derive(Deserialize)]
struct WireToolCallDelta {
    #[serde(default)]
    index: u32,
    id: Option<String>,
    function: Option<WireFunctionDelta>,
}

#[derive(Deserialize, Default)]
struct WireFunctionDelta {
    name: Option<String>,
    arguments: Option<String>,
}

#[derive(Deserialize)]
struct WireEmbeddings {
    model: Option<String>,
    data: Vec<WireEmbedding>,
    usage: Option<WireEmbeddingUsage>,
}

#[derive(Deserialize)]
struct WireEmbedding {
    #[serde(default)]
    index: usize,
    embedding: Vec<f32>,
}

#[derive(Deserialize)]
struct WireEmbeddingUsage {
    #[serde(default)]
    prompt_tokens: u64,
}
