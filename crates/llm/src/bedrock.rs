//! AWS Bedrock through the Converse and ConverseStream operations, called with the official AWS
//! SDK (SigV4 signing, regions, the event-stream framing and the default credentials chain
//! come from it).
//!
//! The platform credential is whatever the AWS default chain finds (environment, profile, web
//! identity, container or instance metadata); a user's own key is
//! `ACCESS_KEY_ID:SECRET_ACCESS_KEY[:SESSION_TOKEN]` and signs only that call. The SDK's own
//! retries and stalled-stream protection are off: the gateway decides retries and fallbacks,
//! and [`crate::sse::idle_timeout`] bounds a stalled stream with the configured timeout.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_bedrockruntime::config::http::HttpResponse;
use aws_sdk_bedrockruntime::config::retry::RetryConfig;
use aws_sdk_bedrockruntime::config::timeout::TimeoutConfig;
use aws_sdk_bedrockruntime::config::{
    BehaviorVersion, Credentials, IdentityCache, Region, SharedHttpClient,
    StalledStreamProtectionConfig,
};
use aws_sdk_bedrockruntime::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_bedrockruntime::operation::RequestId;
use aws_sdk_bedrockruntime::types::error::ConverseStreamOutputError;
use aws_sdk_bedrockruntime::types::{
    self as wire, AnyToolChoice, AutoToolChoice, ContentBlock, ContentBlockDelta,
    ContentBlockStart, ConversationRole, ConverseStreamOutput, InferenceConfiguration,
    JsonSchemaDefinition, OutputConfig, OutputFormat, OutputFormatStructure, OutputFormatType,
    SpecificToolChoice, StopReason, SystemContentBlock, TokenUsage, Tool, ToolConfiguration,
    ToolInputSchema, ToolResultBlock, ToolResultContentBlock, ToolSpecification, ToolUseBlock,
};
use aws_sdk_bedrockruntime::Client;
use aws_smithy_types::event_stream::RawMessage;
use aws_smithy_types::{Document, Number};
use futures::StreamExt;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::types::{
    ChatMessage, ChatRequest, ChatResponse, ChatStream, FinishReason, ResponseFormat, Role,
    StreamEvent, ToolCall, ToolChoice, Usage,
};
use crate::{
    scrub, sse, Credential, ErrorClass, HttpSettings, Provider, ProviderError, ProviderKind,
    Unsupported,
};

/// Where and how patiently to call Bedrock.
#[derive(Debug, Clone)]
pub struct BedrockSettings {
    /// The AWS region, e.g. `us-east-1`.
    pub region: String,
    /// Overrides the regional endpoint (a VPC endpoint, a proxy, or the mock in tests).
    pub endpoint_url: Option<String>,
    pub connect_timeout: Duration,
    /// The whole answer for Converse; for ConverseStream, the wait for the answer and then
    /// between events.
    pub timeout: Duration,
}

impl BedrockSettings {
    /// Settings from the HTTP settings every adapter has: a non-empty `base_url` becomes the
    /// endpoint override.
    pub fn new(region: &str, http: &HttpSettings) -> BedrockSettings {
        let base_url = http.base_url.trim();
        BedrockSettings {
            region: region.to_owned(),
            endpoint_url: (!base_url.is_empty()).then(|| base_url.to_owned()),
            connect_timeout: http.connect_timeout,
            timeout: http.timeout,
        }
    }
}

/// Bedrock's Converse API.
#[derive(Debug)]
pub struct BedrockProvider {
    name: String,
    client: Client,
    errors: ErrorClassifier,
    /// Whether the configuration has any platform credentials provider at all.
    has_platform_credentials: bool,
}

impl BedrockProvider {
    /// Loads the AWS configuration for the platform credential (the default credentials
    /// chain; nothing is fetched until the first call) and builds the client.
    pub async fn new(name: &str, settings: BedrockSettings) -> Result<Self, ProviderError> {
        let sdk_config = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(settings.region.clone()))
            .http_client(http_client())
            .load()
            .await;
        BedrockProvider::with_sdk_config(name, &sdk_config, settings)
    }

    /// Uses `sdk_config`'s credentials provider as the platform credential (for callers that
    /// load the AWS configuration themselves, and for tests that must not reach AWS). Region,
    /// endpoint, timeouts and the HTTP client come from `settings` regardless.
    pub fn with_sdk_config(
        name: &str,
        sdk_config: &SdkConfig,
        settings: BedrockSettings,
    ) -> Result<Self, ProviderError> {
        if settings.region.trim().is_empty() {
            return Err(ProviderError::new(
                name,
                ErrorClass::InvalidRequest,
                "Bedrock needs an AWS region",
            ));
        }
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(settings.connect_timeout)
            .operation_timeout(settings.timeout)
            .build();
        let mut config = aws_sdk_bedrockruntime::config::Builder::from(sdk_config)
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(settings.region.clone()))
            .http_client(http_client())
            .timeout_config(timeouts)
            .retry_config(RetryConfig::disabled())
            .stalled_stream_protection(StalledStreamProtectionConfig::disabled());
        if let Some(endpoint_url) = &settings.endpoint_url {
            config = config.endpoint_url(endpoint_url.trim_end_matches('/'));
        }
        Ok(BedrockProvider {
            name: name.to_owned(),
            client: Client::from_conf(config.build()),
            errors: ErrorClassifier {
                provider: name.to_owned(),
                timeout: settings.timeout,
            },
            has_platform_credentials: sdk_config.credentials_provider().is_some(),
        })
    }

    /// The per-call configuration for `credential` (user keys replace the platform's, uncached
    /// so one user's key never serves another call), and the secrets to scrub from errors.
    fn credentials(
        &self,
        credential: &Credential,
    ) -> Result<(Option<aws_sdk_bedrockruntime::config::Builder>, Vec<String>), ProviderError> {
        match credential {
            Credential::Platform if self.has_platform_credentials => Ok((None, Vec::new())),
            Credential::Platform => Err(self.error(
                ErrorClass::Authentication,
                "no AWS credentials: store your own key for this provider or ask an operator to configure AWS credentials",
            )),
            Credential::User(key) => {
                let key = UserKey::parse(key).ok_or_else(|| {
                    self.error(
                        ErrorClass::Authentication,
                        "the Bedrock key must be ACCESS_KEY_ID:SECRET_ACCESS_KEY or ACCESS_KEY_ID:SECRET_ACCESS_KEY:SESSION_TOKEN",
                    )
                })?;
                let secrets = key.secrets();
                let credentials = Credentials::new(
                    key.access_key_id,
                    key.secret_access_key,
                    key.session_token,
                    None,
                    "flywheel-user-key",
                );
                let config = aws_sdk_bedrockruntime::config::Builder::default()
                    .credentials_provider(credentials)
                    .identity_cache(IdentityCache::no_cache());
                Ok((Some(config), secrets))
            }
        }
    }

    fn error(&self, class: ErrorClass, message: impl Into<String>) -> ProviderError {
        ProviderError::new(&self.name, class, message)
    }

    /// Translates the provider-neutral request into Converse's parts.
    fn translate(&self, request: &ChatRequest) -> Result<Converse, ProviderError> {
        let mut system = Vec::new();
        let mut messages: Vec<(ConversationRole, Vec<ContentBlock>)> = Vec::new();
        for message in &request.messages {
            let (role, blocks) = match message.role {
                Role::System => {
                    if let Some(text) = message.content.as_deref().filter(|t| !t.trim().is_empty())
                    {
                        system.push(SystemContentBlock::Text(text.to_owned()));
                    }
                    continue;
                }
                Role::User => (ConversationRole::User, text_block(message)),
                Role::Assistant => {
                    let mut blocks = text_block(message);
                    for call in &message.tool_calls {
                        blocks.push(ContentBlock::ToolUse(self.tool_use(call)?));
                    }
                    (ConversationRole::Assistant, blocks)
                }
                Role::Tool => (ConversationRole::User, vec![self.tool_result(message)?]),
            };
            if blocks.is_empty() {
                continue;
            }
            // Bedrock wants user and assistant turns to alternate: consecutive messages of one
            // role (several tool results, or tool results and then user text) share a turn.
            match messages.last_mut() {
                Some((last_role, last_blocks)) if *last_role == role => last_blocks.extend(blocks),
                _ => messages.push((role, blocks)),
            }
        }
        let messages = messages
            .into_iter()
            .map(|(role, content)| {
                wire::Message::builder()
                    .role(role)
                    .set_content(Some(content))
                    .build()
                    .map_err(|err| self.error(ErrorClass::InvalidRequest, err.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let inference = (request.max_tokens.is_some()
            || request.temperature.is_some()
            || request.top_p.is_some()
            || !request.stop.is_empty())
        .then(|| {
            InferenceConfiguration::builder()
                .set_max_tokens(
                    request
                        .max_tokens
                        .map(|tokens| i32::try_from(tokens).unwrap_or(i32::MAX)),
                )
                // Converse takes 32-bit floats; the rounding is far below sampling noise.
                .set_temperature(request.temperature.map(|t| t as f32))
                .set_top_p(request.top_p.map(|p| p as f32))
                .set_stop_sequences((!request.stop.is_empty()).then(|| request.stop.clone()))
                .build()
        });
        Ok(Converse {
            messages,
            system,
            inference,
            tool_config: self.tool_config(request)?,
            output_config: self.output_config(request)?,
        })
    }

    fn tool_use(&self, call: &ToolCall) -> Result<ToolUseBlock, ProviderError> {
        let arguments = if call.arguments.trim().is_empty() {
            Value::Object(serde_json::Map::new())
        } else {
            serde_json::from_str(&call.arguments).map_err(|err| {
                self.error(
                    ErrorClass::InvalidRequest,
                    format!("the arguments of tool call {} are not JSON: {err}", call.id),
                )
            })?
        };
        ToolUseBlock::builder()
            .tool_use_id(&call.id)
            .name(&call.name)
            .input(to_document(&arguments))
            .build()
            .map_err(|err| self.error(ErrorClass::InvalidRequest, err.to_string()))
    }

    /// A tool message becomes a `toolResult` block of a user turn. The content stays text:
    /// every Converse model takes text results, not all take `json` ones.
    fn tool_result(&self, message: &ChatMessage) -> Result<ContentBlock, ProviderError> {
        let tool_use_id = message.tool_call_id.as_deref().ok_or_else(|| {
            self.error(
                ErrorClass::InvalidRequest,
                "a tool message needs the tool_call_id it answers",
            )
        })?;
        let block = ToolResultBlock::builder()
            .tool_use_id(tool_use_id)
            .content(ToolResultContentBlock::Text(
                message.content.clone().unwrap_or_default(),
            ))
            .build()
            .map_err(|err| self.error(ErrorClass::InvalidRequest, err.to_string()))?;
        Ok(ContentBlock::ToolResult(block))
    }

    fn tool_config(
        &self,
        request: &ChatRequest,
    ) -> Result<Option<ToolConfiguration>, ProviderError> {
        let invalid = |err: aws_sdk_bedrockruntime::error::BuildError| {
            self.error(ErrorClass::InvalidRequest, err.to_string())
        };
        let choice = match &request.tool_choice {
            // Converse has no "none": the model cannot call tools it is not told about, and
            // `check` rejects the case where the tools must still be sent.
            Some(ToolChoice::None) => return Ok(None),
            None => None,
            Some(ToolChoice::Auto) => {
                Some(wire::ToolChoice::Auto(AutoToolChoice::builder().build()))
            }
            Some(ToolChoice::Required) => {
                Some(wire::ToolChoice::Any(AnyToolChoice::builder().build()))
            }
            Some(ToolChoice::Function(name)) => Some(wire::ToolChoice::Tool(
                SpecificToolChoice::builder()
                    .name(name)
                    .build()
                    .map_err(invalid)?,
            )),
        };
        if request.tools.is_empty() {
            if matches!(
                request.tool_choice,
                Some(ToolChoice::Required | ToolChoice::Function(_))
            ) {
                return Err(self.error(
                    ErrorClass::InvalidRequest,
                    "tool_choice needs at least one tool in tools",
                ));
            }
            return Ok(None);
        }
        let tools = request
            .tools
            .iter()
            .map(|tool| {
                ToolSpecification::builder()
                    .name(&tool.name)
                    .set_description(tool.description.clone())
                    .input_schema(ToolInputSchema::Json(to_document(&tool.parameters)))
                    .set_strict(tool.strict)
                    .build()
                    .map(Tool::ToolSpec)
                    .map_err(invalid)
            })
            .collect::<Result<Vec<_>, _>>()?;
        ToolConfiguration::builder()
            .set_tools(Some(tools))
            .set_tool_choice(choice)
            .build()
            .map(Some)
            .map_err(invalid)
    }

    fn output_config(&self, request: &ChatRequest) -> Result<Option<OutputConfig>, ProviderError> {
        let Some(ResponseFormat::JsonSchema {
            name,
            description,
            schema,
            strict: _,
        }) = &request.response_format
        else {
            // `text` is the default and `json_object` is rejected by `check`.
            return Ok(None);
        };
        let invalid = |err: aws_sdk_bedrockruntime::error::BuildError| {
            self.error(ErrorClass::InvalidRequest, err.to_string())
        };
        // Bedrock's structured output is always enforced by constrained decoding, so OpenAI's
        // `strict` needs no counterpart. The schema travels as a JSON string.
        let definition = JsonSchemaDefinition::builder()
            .schema(schema.to_string())
            .name(name)
            .set_description(description.clone())
            .build()
            .map_err(invalid)?;
        let format = OutputFormat::builder()
            .r#type(OutputFormatType::JsonSchema)
            .structure(OutputFormatStructure::JsonSchema(definition))
            .build()
            .map_err(invalid)?;
        Ok(Some(OutputConfig::builder().text_format(format).build()))
    }
}

/// Turns SDK errors into classified provider errors, scrubbing the caller's secrets.
#[derive(Debug, Clone)]
struct ErrorClassifier {
    provider: String,
    timeout: Duration,
}

impl ErrorClassifier {
    /// Classifies an error of the Converse or ConverseStream call itself.
    fn call_error<E>(&self, err: SdkError<E, HttpResponse>, secrets: &[String]) -> ProviderError
    where
        E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
    {
        let Some(service_error) = err.as_service_error() else {
            return self.transport_error(&err, secrets);
        };
        let status = err.raw_response().map(|raw| raw.status().as_u16());
        let retry_after = err
            .raw_response()
            .and_then(|raw| raw.headers().get("retry-after"))
            .and_then(|value| value.trim().parse::<f64>().ok())
            .filter(|seconds| seconds.is_finite() && *seconds >= 0.0)
            .map(Duration::from_secs_f64);
        let code = service_error.code().unwrap_or("UnknownError");
        let message = service_error.message().unwrap_or("no message");
        let mut error = self.service_error(code, message, status, secrets);
        error.retry_after = retry_after;
        error
    }

    /// Classifies an error reported inside a stream: an exception frame or a broken stream.
    fn event_error(
        &self,
        err: SdkError<ConverseStreamOutputError, RawMessage>,
        secrets: &[String],
    ) -> ProviderError {
        let Some(exception) = err.as_service_error() else {
            return self.transport_error(&err, secrets);
        };
        let code = match exception {
            ConverseStreamOutputError::InternalServerException(_) => "InternalServerException",
            ConverseStreamOutputError::ModelStreamErrorException(_) => "ModelStreamErrorException",
            ConverseStreamOutputError::ValidationException(_) => "ValidationException",
            ConverseStreamOutputError::ThrottlingException(_) => "ThrottlingException",
            ConverseStreamOutputError::ServiceUnavailableException(_) => {
                "ServiceUnavailableException"
            }
            other => other.code().unwrap_or("UnknownStreamException"),
        };
        let message = exception.message().unwrap_or("no message");
        self.service_error(code, message, None, secrets)
    }

    /// Classifies an error Bedrock answered, by its type (which says more than the status:
    /// Bedrock answers 429 for both throttling and a model that is still loading).
    fn service_error(
        &self,
        code: &str,
        message: &str,
        status: Option<u16>,
        secrets: &[String],
    ) -> ProviderError {
        let message = secrets
            .iter()
            .fold(message.to_owned(), |text, secret| scrub(&text, secret));
        let class = match code {
            "ThrottlingException" | "ServiceQuotaExceededException" => ErrorClass::RateLimited,
            "InternalServerException"
            | "ServiceUnavailableException"
            | "ModelNotReadyException"
            | "ModelErrorException"
            | "ModelStreamErrorException" => ErrorClass::Server,
            "ModelTimeoutException" => ErrorClass::Timeout,
            "ResourceNotFoundException" => ErrorClass::ModelNotFound,
            "ValidationException" if message.contains("model identifier is invalid") => {
                ErrorClass::ModelNotFound
            }
            "ValidationException" | "SerializationException" => ErrorClass::InvalidRequest,
            "AccessDeniedException"
            | "UnrecognizedClientException"
            | "MissingAuthenticationTokenException"
            | "InvalidSignatureException"
            | "IncompleteSignatureException"
            | "SignatureDoesNotMatch"
            | "ExpiredTokenException"
            | "InvalidClientTokenId" => ErrorClass::Authentication,
            _ => match status {
                Some(status) => ProviderError::from_status(&self.provider, status, "", None).class,
                None => ErrorClass::Server,
            },
        };
        let text = match status {
            Some(status) => format!("HTTP {status}: {code}: {message}"),
            None => format!("{code}: {message}"),
        };
        ProviderError {
            provider: self.provider.clone(),
            class,
            status,
            message: text,
            retry_after: None,
        }
    }

    /// Classifies a failure that is not an answer from Bedrock.
    fn transport_error<E, R>(&self, err: &SdkError<E, R>, secrets: &[String]) -> ProviderError
    where
        E: StdError + 'static,
        R: std::fmt::Debug + 'static,
    {
        let class = match err {
            SdkError::TimeoutError(_) => ErrorClass::Timeout,
            SdkError::DispatchFailure(failure) if failure.is_timeout() => ErrorClass::Timeout,
            _ if caused_by::<CredentialsError>(err) => ErrorClass::Authentication,
            SdkError::DispatchFailure(_) => ErrorClass::Connect,
            SdkError::ResponseError(_) if caused_by::<std::io::Error>(err) => ErrorClass::Connect,
            SdkError::ResponseError(_) => ErrorClass::InvalidResponse,
            SdkError::ConstructionFailure(_) => ErrorClass::InvalidRequest,
            _ => ErrorClass::Connect,
        };
        let message = match class {
            ErrorClass::Timeout => format!("no answer within {} ms", self.timeout.as_millis()),
            ErrorClass::Authentication => {
                format!("could not load AWS credentials: {}", error_chain(err))
            }
            _ => format!("request failed: {}", error_chain(err)),
        };
        let message = secrets
            .iter()
            .fold(message, |text, secret| scrub(&text, secret));
        ProviderError::new(&self.provider, class, message)
    }
}

/// A Converse request's parts, shared by both operations.
struct Converse {
    messages: Vec<wire::Message>,
    system: Vec<SystemContentBlock>,
    inference: Option<InferenceConfiguration>,
    tool_config: Option<ToolConfiguration>,
    output_config: Option<OutputConfig>,
}

/// A user's own AWS key.
struct UserKey {
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
}

impl UserKey {
    /// `ACCESS_KEY_ID:SECRET_ACCESS_KEY[:SESSION_TOKEN]` (neither ids, secrets nor session
    /// tokens contain `:`).
    fn parse(key: &SecretString) -> Option<UserKey> {
        let mut parts = key.expose_secret().trim().split(':');
        let access_key_id = parts.next().filter(|part| valid_key_part(part))?;
        let secret_access_key = parts.next().filter(|part| valid_key_part(part))?;
        let session_token = match parts.next() {
            None => None,
            Some(token) if valid_key_part(token) => Some(token.to_owned()),
            Some(_) => return None,
        };
        if parts.next().is_some() {
            return None;
        }
        Some(UserKey {
            access_key_id: access_key_id.to_owned(),
            secret_access_key: secret_access_key.to_owned(),
            session_token,
        })
    }

    fn secrets(&self) -> Vec<String> {
        let mut secrets = vec![self.access_key_id.clone(), self.secret_access_key.clone()];
        secrets.extend(self.session_token.clone());
        secrets
    }
}

fn valid_key_part(part: &str) -> bool {
    !part.is_empty() && !part.chars().any(char::is_whitespace)
}

/// The HTTP client for Bedrock and the credential providers: hyper 1 with rustls on `ring`,
/// the same TLS stack the rest of Flywheel uses.
fn http_client() -> SharedHttpClient {
    use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// The messages of an error and its sources, joined (the SDK's own `Display` says only
/// "dispatch failure").
fn error_chain(err: &(dyn StdError + 'static)) -> String {
    let mut messages: Vec<String> = Vec::new();
    let mut source = Some(err);
    while let Some(err) = source {
        let message = err.to_string();
        if messages.last() != Some(&message) {
            messages.push(message);
        }
        source = err.source();
    }
    messages.join(": ")
}

fn caused_by<T: StdError + 'static>(err: &(dyn StdError + 'static)) -> bool {
    let mut source = Some(err);
    while let Some(err) = source {
        if err.downcast_ref::<T>().is_some() {
            return true;
        }
        source = err.source();
    }
    false
}

fn text_block(message: &ChatMessage) -> Vec<ContentBlock> {
    // Bedrock rejects blank text blocks; an empty content says nothing anyway.
    match message.content.as_deref() {
        Some(text) if !text.trim().is_empty() => vec![ContentBlock::Text(text.to_owned())],
        _ => Vec::new(),
    }
}

fn to_document(value: &Value) -> Document {
    match value {
        Value::Null => Document::Null,
        Value::Bool(flag) => Document::Bool(*flag),
        Value::Number(number) => Document::Number(if let Some(unsigned) = number.as_u64() {
            Number::PosInt(unsigned)
        } else if let Some(signed) = number.as_i64() {
            Number::NegInt(signed)
        } else {
            Number::Float(number.as_f64().unwrap_or(0.0))
        }),
        Value::String(text) => Document::String(text.clone()),
        Value::Array(items) => Document::Array(items.iter().map(to_document).collect()),
        Value::Object(fields) => Document::Object(
            fields
                .iter()
                .map(|(key, value)| (key.clone(), to_document(value)))
                .collect(),
        ),
    }
}

fn to_json(document: &Document) -> Value {
    match document {
        Document::Null => Value::Null,
        Document::Bool(flag) => Value::Bool(*flag),
        Document::Number(Number::PosInt(unsigned)) => Value::from(*unsigned),
        Document::Number(Number::NegInt(signed)) => Value::from(*signed),
        Document::Number(Number::Float(float)) => serde_json::Number::from_f64(*float)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        Document::String(text) => Value::String(text.clone()),
        Document::Array(items) => Value::Array(items.iter().map(to_json).collect()),
        Document::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(key, value)| (key.clone(), to_json(value)))
                .collect(),
        ),
    }
}

fn finish_reason(reason: &StopReason) -> FinishReason {
    match reason {
        StopReason::EndTurn | StopReason::StopSequence => FinishReason::Stop,
        // A full context window ends the answer early, as OpenAI reports with `length`.
        StopReason::MaxTokens | StopReason::ModelContextWindowExceeded => FinishReason::Length,
        StopReason::ToolUse => FinishReason::ToolCalls,
        StopReason::GuardrailIntervened | StopReason::ContentFiltered => {
            FinishReason::ContentFilter
        }
        other => FinishReason::Other(other.as_str().to_owned()),
    }
}

/// Bedrock reports input tokens read from and written to the prompt cache beside
/// `inputTokens`, not inside it.
fn usage(usage: &TokenUsage) -> Usage {
    let count = |tokens: i32| u64::try_from(tokens).unwrap_or(0);
    let cache_read = usage.cache_read_input_tokens.map(count);
    let cache_write = usage.cache_write_input_tokens.map(count).unwrap_or(0);
    Usage {
        input_tokens: count(usage.input_tokens) + cache_read.unwrap_or(0) + cache_write,
        output_tokens: count(usage.output_tokens),
        cached_input_tokens: cache_read,
    }
}

/// Turns ConverseStream events into stream events.
#[derive(Debug, Default)]
struct StreamTranslator {
    /// Content block index → tool call index.
    tool_calls: HashMap<i32, u32>,
    finished: bool,
}

impl StreamTranslator {
    fn translate(&mut self, event: ConverseStreamOutput) -> Vec<StreamEvent> {
        match event {
            ConverseStreamOutput::ContentBlockStart(start) => match start.start {
                Some(ContentBlockStart::ToolUse(tool_use)) => {
                    let index = u32::try_from(self.tool_calls.len()).unwrap_or(u32::MAX);
                    self.tool_calls.insert(start.content_block_index, index);
                    vec![StreamEvent::ToolCallStart {
                        index,
                        id: tool_use.tool_use_id,
                        name: tool_use.name,
                    }]
                }
                _ => Vec::new(),
            },
            ConverseStreamOutput::ContentBlockDelta(delta) => match delta.delta {
                Some(ContentBlockDelta::Text(text)) if !text.is_empty() => {
                    vec![StreamEvent::Text(text)]
                }
                Some(ContentBlockDelta::ToolUse(tool_use)) => {
                    match self.tool_calls.get(&delta.content_block_index) {
                        Some(index) if !tool_use.input.is_empty() => {
                            vec![StreamEvent::ToolCallArguments {
                                index: *index,
                                fragment: tool_use.input,
                            }]
                        }
                        _ => Vec::new(),
                    }
                }
                _ => Vec::new(),
            },
            ConverseStreamOutput::MessageStop(stop) => {
                self.finished = true;
                vec![StreamEvent::Finish(finish_reason(&stop.stop_reason))]
            }
            ConverseStreamOutput::Metadata(metadata) => metadata
                .usage
                .as_ref()
                .map(|tokens| vec![StreamEvent::Usage(usage(tokens))])
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }
}

#[async_trait]
impl Provider for BedrockProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> ProviderKind {
        ProviderKind::Bedrock
    }

    fn check(&self, request: &ChatRequest) -> Result<(), Unsupported> {
        if request.seed.is_some() {
            return Err(Unsupported::new(
                &self.name,
                "seed",
                "Bedrock Converse has no seed parameter",
            ));
        }
        if request.response_format == Some(ResponseFormat::JsonObject) {
            return Err(Unsupported::new(
                &self.name,
                "response_format",
                "Bedrock Converse has no JSON mode without a schema; use json_schema",
            ));
        }
        if request
            .temperature
            .is_some_and(|temperature| temperature > 1.0)
        {
            return Err(Unsupported::new(
                &self.name,
                "temperature",
                "Bedrock Converse accepts a temperature from 0 to 1",
            ));
        }
        let has_tool_history = request
            .messages
            .iter()
            .any(|message| message.role == Role::Tool || !message.tool_calls.is_empty());
        if request.tool_choice == Some(ToolChoice::None)
            && !request.tools.is_empty()
            && has_tool_history
        {
            return Err(Unsupported::new(
                &self.name,
                "tool_choice",
                "Bedrock Converse has no `none` tool choice, and a conversation with tool calls must declare its tools",
            ));
        }
        Ok(())
    }

    async fn chat(
        &self,
        request: &ChatRequest,
        credential: &Credential,
    ) -> Result<ChatResponse, ProviderError> {
        let (config_override, secrets) = self.credentials(credential)?;
        let converse = self.translate(request)?;
        let mut call = self
            .client
            .converse()
            .model_id(&request.model)
            .set_messages(Some(converse.messages))
            .set_system((!converse.system.is_empty()).then_some(converse.system))
            .set_inference_config(converse.inference)
            .set_tool_config(converse.tool_config)
            .set_output_config(converse.output_config)
            .customize();
        if let Some(config_override) = config_override {
            call = call.config_override(config_override);
        }
        let output = call
            .send()
            .await
            .map_err(|err| self.errors.call_error(err, &secrets))?;
        let mut texts = Vec::new();
        let mut tool_calls = Vec::new();
        if let Some(wire::ConverseOutput::Message(message)) = &output.output {
            for block in &message.content {
                match block {
                    ContentBlock::Text(text) => texts.push(text.as_str()),
                    ContentBlock::ToolUse(tool_use) => tool_calls.push(ToolCall {
                        id: tool_use.tool_use_id.clone(),
                        name: tool_use.name.clone(),
                        arguments: to_json(&tool_use.input).to_string(),
                    }),
                    // Reasoning, citations and other blocks have no place in the answer.
                    _ => {}
                }
            }
        }
        Ok(ChatResponse {
            // Bedrock has no response id; its request id identifies the call to AWS support.
            id: output.request_id().map(str::to_owned),
            model: request.model.clone(),
            content: (!texts.is_empty()).then(|| texts.concat()),
            tool_calls,
            finish_reason: finish_reason(&output.stop_reason),
            usage: output.usage.as_ref().map(usage),
        })
    }

    async fn chat_stream(
        &self,
        request: &ChatRequest,
        credential: &Credential,
    ) -> Result<ChatStream, ProviderError> {
        let (config_override, secrets) = self.credentials(credential)?;
        let converse = self.translate(request)?;
        let mut call = self
            .client
            .converse_stream()
            .model_id(&request.model)
            .set_messages(Some(converse.messages))
            .set_system((!converse.system.is_empty()).then_some(converse.system))
            .set_inference_config(converse.inference)
            .set_tool_config(converse.tool_config)
            .set_output_config(converse.output_config)
            .customize();
        if let Some(config_override) = config_override {
            call = call.config_override(config_override);
        }
        let output = call
            .send()
            .await
            .map_err(|err| self.errors.call_error(err, &secrets))?;
        let translator = StreamTranslator::default();
        let errors = self.errors.clone();
        let events = futures::stream::unfold(
            Some((output.stream, translator, errors, secrets)),
            |state| async move {
                let (mut receiver, mut translator, errors, secrets) = state?;
                loop {
                    match receiver.recv().await {
                        Ok(Some(event)) => {
                            let items = translator.translate(event);
                            if !items.is_empty() {
                                let items: Vec<Result<StreamEvent, ProviderError>> =
                                    items.into_iter().map(Ok).collect();
                                return Some((
                                    items,
                                    Some((receiver, translator, errors, secrets)),
                                ));
                            }
                        }
                        Ok(None) if translator.finished => return None,
                        Ok(None) => {
                            let error = ProviderError::invalid_response(
                                &errors.provider,
                                "the stream ended without a messageStop event",
                            );
                            return Some((vec![Err(error)], None));
                        }
                        Err(err) => {
                            return Some((vec![Err(errors.event_error(err, &secrets))], None))
                        }
                    }
                }
            },
        )
        .flat_map(futures::stream::iter);
        let mut events = Box::pin(sse::idle_timeout(&self.name, events, self.errors.timeout));
        // Errors before the first event (an exception frame, a stalled start) are the call's.
        match events.next().await {
            Some(Err(err)) => Err(err),
            Some(Ok(first)) => Ok(Box::pin(
                futures::stream::once(async { Ok(first) }).chain(events),
            )),
            None => Ok(Box::pin(futures::stream::empty())),
        }
    }
}
