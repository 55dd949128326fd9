//! The one trait every provider adapter implements, and what it is given to call upstream.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use secrecy::SecretString;

use crate::types::{
    ChatMessage, ChatRequest, ChatResponse, ChatStream, EmbeddingRequest, EmbeddingResponse,
};
use crate::{ErrorClass, ProviderError, Unsupported};

/// Which credential to call with.
#[derive(Clone)]
pub enum Credential {
    /// The provider's own configured credential (a platform key from an environment variable,
    /// or for Bedrock the AWS default credentials chain). May be absent; the call then fails
    /// with `ErrorClass::Authentication`.
    Platform,
    /// A user's own key (bring your own key).
    User(SecretString),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Platform => f.write_str("Credential::Platform"),
            Credential::User(_) => f.write_str("Credential::User(***)"),
        }
    }
}

/// Adapter family, for configuration and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    OpenAi,
    OpenAiCompatible,
    Anthropic,
    Gemini,
    Bedrock,
    Local,
    Mock,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::OpenAiCompatible => "openai_compatible",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Gemini => "gemini",
            ProviderKind::Bedrock => "bedrock",
            ProviderKind::Local => "local",
            ProviderKind::Mock => "mock",
        }
    }
}

/// The state of one model a provider runs itself, for readiness reports and model listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelStatus {
    pub name: String,
    /// `chat` or `embedding`.
    pub kind: &'static str,
    /// `loading`, `ready` or `unavailable`.
    pub state: &'static str,
    /// Why it is unavailable and what to do, or what is loaded.
    pub detail: Option<String>,
}

/// Settings common to HTTP adapters.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Base URL up to and excluding the API's own paths, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    pub connect_timeout: Duration,
    /// The whole answer for a non-streamed call; for a stream, the wait for the first event
    /// and then between events (a stalled stream fails with `ErrorClass::Timeout`).
    pub timeout: Duration,
}

/// A language-model provider. Implementations translate requests, responses, streams, errors
/// and usage faithfully from and to the provider's wire format.
#[async_trait]
pub trait Provider: Send + Sync + fmt::Debug {
    /// The configured name: `openai`, `anthropic`, or the name given to an
    /// OpenAI-compatible server.
    fn name(&self) -> &str;

    fn kind(&self) -> ProviderKind;

    /// Rejects, before any call, a parameter this provider cannot honour.
    fn check(&self, request: &ChatRequest) -> Result<(), Unsupported>;

    async fn chat(
        &self,
        request: &ChatRequest,
        credential: &Credential,
    ) -> Result<ChatResponse, ProviderError>;

    /// Starts a streamed answer. Errors before the first event come back here; later ones
    /// as items of the stream.
    async fn chat_stream(
        &self,
        request: &ChatRequest,
        credential: &Credential,
    ) -> Result<ChatStream, ProviderError>;

    /// Embeddings, for providers that have them.
    async fn embed(
        &self,
        request: &EmbeddingRequest,
        credential: &Credential,
    ) -> Result<EmbeddingResponse, ProviderError> {
        let _ = (request, credential);
        Err(ProviderError::new(
            self.name(),
            ErrorClass::InvalidRequest,
            "this provider has no embeddings API",
        ))
    }

    fn supports_embeddings(&self) -> bool {
        false
    }

    /// The context window of `model` in tokens, when the provider knows it (local models
    /// read it from their files).
    fn context_window(&self, model: &str) -> Option<usize> {
        let _ = model;
        None
    }

    /// The state of the models this provider runs itself (local models); empty for remote
    /// providers, whose models are not known until called.
    fn model_status(&self) -> Vec<ModelStatus> {
        Vec::new()
    }

    /// The exact prompt size of `messages` for `model` (its tokenizer and chat template), when
    /// the provider can count locally.
    fn count_prompt_tokens(&self, model: &str, messages: &[ChatMessage]) -> Option<usize> {
        let _ = (model, messages);
        None
    }
}
