//! The gateway's `local` provider: named slots for the local chat and embedding models, each
//! loading, ready or unavailable (with the reason), served through [`flywheel_llm::Provider`].
//!
//! A model that is missing or broken makes its slot unavailable, never the provider: requests
//! for it fail with [`ErrorClass::Unavailable`] and a message saying how to fix it.

use std::path::PathBuf;
use std::sync::{RwLock, RwLockReadGuard};
use std::time::Duration;

use async_trait::async_trait;
use flywheel_llm::{
    ChatMessage, ChatRequest, ChatResponse, ChatStream, Credential, EmbeddingRequest,
    EmbeddingResponse, ErrorClass, FinishReason as LlmFinishReason, ModelStatus, Provider,
    ProviderError, ProviderKind, ResponseFormat, StreamEvent, ToolChoice, Unsupported, Usage,
};
use futures::StreamExt;

use crate::chat::{
    ChatModel, ChatModelOptions, FinishReason, GenerationEvent, GenerationRequest, SamplingParams,
};
use crate::embed::{EmbeddingModel, EmbeddingModelOptions};
use crate::LocalError;

/// The provider's configured name and the prefix of its models (`local/<name>`).
pub const PROVIDER_NAME: &str = "local";

/// How long a caller should wait for a model that is still loading.
const LOADING_RETRY_AFTER: Duration = Duration::from_secs(5);

/// A chat model to serve.
#[derive(Debug, Clone)]
pub struct ChatModelSpec {
    pub name: String,
    /// The GGUF file.
    pub path: PathBuf,
    pub options: ChatModelOptions,
}

/// An embedding model to serve.
#[derive(Debug, Clone)]
pub struct EmbeddingModelSpec {
    pub name: String,
    /// The directory holding `model.safetensors`, `tokenizer.json` and `config.json`.
    pub dir: PathBuf,
    pub options: EmbeddingModelOptions,
}

/// One model's state, for `flywheel models status`, `/readyz`-style reports and the UI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalModelStatus {
    pub name: String,
    /// `chat` or `embedding`.
    pub kind: &'static str,
    /// `loading`, `ready` or `unavailable`.
    pub state: &'static str,
    /// For an unavailable model, why; for a ready one, a short description.
    pub detail: Option<String>,
    pub path: PathBuf,
    /// The context window of a ready chat model.
    pub context_length: Option<usize>,
    /// The vector length of a ready embedding model.
    pub dimensions: Option<usize>,
}

/// The `local` provider.
#[derive(Debug)]
pub struct LocalProvider {
    chat: Vec<Slot<ChatModelSpec, ChatModel>>,
    embeddings: Vec<Slot<EmbeddingModelSpec, EmbeddingModel>>,
}

#[derive(Debug)]
struct Slot<S, M> {
    spec: S,
    state: RwLock<SlotState<M>>,
}

#[derive(Debug, Clone)]
enum SlotState<M> {
    Loading,
    Ready(M),
    Unavailable(String),
}

impl<S, M: Clone> Slot<S, M> {
    fn new(spec: S) -> Slot<S, M> {
        Slot {
            spec,
            state: RwLock::new(SlotState::Loading),
        }
    }

    fn state(&self) -> RwLockReadGuard<'_, SlotState<M>> {
        // A panic while holding this lock cannot leave the state half-written (it is only
        // ever replaced whole), so a poisoned lock is still good to read.
        self.state
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn set(&self, state: SlotState<M>) {
        *self
            .state
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = state;
    }

    fn is_loading(&self) -> bool {
        matches!(*self.state(), SlotState::Loading)
    }

    fn ready(&self) -> Option<M> {
        match &*self.state() {
            SlotState::Ready(model) => Some(model.clone()),
            _ => None,
        }
    }
}

impl LocalProvider {
    /// A provider with every model in state loading; [`LocalProvider::load_all`] loads them.
    pub fn new(chat: Vec<ChatModelSpec>, embeddings: Vec<EmbeddingModelSpec>) -> LocalProvider {
        LocalProvider {
            chat: chat.into_iter().map(Slot::new).collect(),
            embeddings: embeddings.into_iter().map(Slot::new).collect(),
        }
    }

    /// Loads every model still in state loading (blocking: call it from `spawn_blocking`).
    /// A model that fails to load is marked unavailable with the reason, logged at warn; the
    /// others are unaffected. Models already marked unavailable (e.g. by a failed fetch) keep
    /// their reason.
    pub fn load_all(&self) {
        for slot in &self.chat {
            if !slot.is_loading() {
                continue;
            }
            let spec = &slot.spec;
            match ChatModel::load(&spec.name, &spec.path, spec.options.clone()) {
                Ok(model) => slot.set(SlotState::Ready(model)),
                Err(err) => {
                    tracing::warn!(model = %spec.name, error = %err, "local chat model unavailable");
                    slot.set(SlotState::Unavailable(err.to_string()));
                }
            }
        }
        for slot in &self.embeddings {
            if !slot.is_loading() {
                continue;
            }
            let spec = &slot.spec;
            match EmbeddingModel::load(&spec.name, &spec.dir, spec.options.clone()) {
                Ok(model) => slot.set(SlotState::Ready(model)),
                Err(err) => {
                    tracing::warn!(
                        model = %spec.name,
                        error = %err,
                        "local embedding model unavailable"
                    );
                    slot.set(SlotState::Unavailable(err.to_string()));
                }
            }
        }
    }

    /// Marks the model `name` unavailable (e.g. its download failed). Unknown names are
    /// ignored.
    pub fn mark_unavailable(&self, name: &str, reason: String) {
        if let Some(slot) = self.chat.iter().find(|slot| slot.spec.name == name) {
            slot.set(SlotState::Unavailable(reason));
        } else if let Some(slot) = self.embeddings.iter().find(|slot| slot.spec.name == name) {
            slot.set(SlotState::Unavailable(reason));
        }
    }

    /// Every model's state, chat models first, in configuration order.
    pub fn status(&self) -> Vec<LocalModelStatus> {
        let chat = self.chat.iter().map(|slot| {
            let (state, detail, context_length) = match &*slot.state() {
                SlotState::Loading => ("loading", None, None),
                SlotState::Unavailable(reason) => ("unavailable", Some(reason.clone()), None),
                SlotState::Ready(model) => {
                    let info = model.info();
                    let detail = format!(
                        "{}, {}-token context, {} tensors requantized to Q8_0",
                        info.architecture, info.context_length, info.requantized_tensors
                    );
                    ("ready", Some(detail), Some(info.context_length))
                }
            };
            LocalModelStatus {
                name: slot.spec.name.clone(),
                kind: "chat",
                state,
                detail,
                path: slot.spec.path.clone(),
                context_length,
                dimensions: None,
            }
        });
        let embeddings = self.embeddings.iter().map(|slot| {
            let (state, detail, dimensions) = match &*slot.state() {
                SlotState::Loading => ("loading", None, None),
                SlotState::Unavailable(reason) => ("unavailable", Some(reason.clone()), None),
                SlotState::Ready(model) => (
                    "ready",
                    Some(format!("{}-dimensional vectors", model.dimensions())),
                    Some(model.dimensions()),
                ),
            };
            LocalModelStatus {
                name: slot.spec.name.clone(),
                kind: "embedding",
                state,
                detail,
                path: slot.spec.dir.clone(),
                context_length: None,
                dimensions,
            }
        });
        chat.chain(embeddings).collect()
    }

    /// The chat model `name` when it is ready.
    pub fn chat_model(&self, name: &str) -> Option<ChatModel> {
        self.chat
            .iter()
            .find(|slot| slot.spec.name == name)
            .and_then(Slot::ready)
    }

    /// The embedding model `name` when it is ready.
    pub fn embedding_model(&self, name: &str) -> Option<EmbeddingModel> {
        self.embeddings
            .iter()
            .find(|slot| slot.spec.name == name)
            .and_then(Slot::ready)
    }

    /// The names of all configured models, chat models first.
    pub fn model_names(&self) -> Vec<String> {
        self.chat
            .iter()
            .map(|slot| slot.spec.name.clone())
            .chain(self.embeddings.iter().map(|slot| slot.spec.name.clone()))
            .collect()
    }

    fn ready_chat_model(&self, name: &str) -> Result<ChatModel, ProviderError> {
        let Some(slot) = self.chat.iter().find(|slot| slot.spec.name == name) else {
            return Err(self.not_found(name, "chat"));
        };
        let path = slot.spec.path.display();
        let fix =
            format!("run `flywheel models fetch`, or set models.chat.{name}.path to a GGUF file");
        let state = slot.state().clone();
        match state {
            SlotState::Ready(model) => Ok(model),
            SlotState::Loading => Err(loading(name, &path.to_string())),
            SlotState::Unavailable(reason) => Err(ProviderError::new(
                PROVIDER_NAME,
                ErrorClass::Unavailable,
                format!("local model `{name}` ({path}) is unavailable: {reason}. To fix: {fix}"),
            )),
        }
    }

    fn ready_embedding_model(&self, name: &str) -> Result<EmbeddingModel, ProviderError> {
        let Some(slot) = self.embeddings.iter().find(|slot| slot.spec.name == name) else {
            return Err(self.not_found(name, "embedding"));
        };
        let path = slot.spec.dir.display();
        let fix = format!(
            "run `flywheel models fetch`, or set models.embeddings.{name}.path to a directory \
             holding model.safetensors, tokenizer.json and config.json"
        );
        let state = slot.state().clone();
        match state {
            SlotState::Ready(model) => Ok(model),
            SlotState::Loading => Err(loading(name, &path.to_string())),
            SlotState::Unavailable(reason) => Err(ProviderError::new(
                PROVIDER_NAME,
                ErrorClass::Unavailable,
                format!("local model `{name}` ({path}) is unavailable: {reason}. To fix: {fix}"),
            )),
        }
    }

    fn not_found(&self, name: &str, wanted: &str) -> ProviderError {
        let list = |names: Vec<&str>| {
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        };
        let chat = list(self.chat.iter().map(|s| s.spec.name.as_str()).collect());
        let embeddings = list(
            self.embeddings
                .iter()
                .map(|s| s.spec.name.as_str())
                .collect(),
        );
        ProviderError::new(
            PROVIDER_NAME,
            ErrorClass::ModelNotFound,
            format!(
                "there is no local {wanted} model `{name}`; local chat models: {chat}; local \
                 embedding models: {embeddings}"
            ),
        )
    }

    async fn generate(&self, request: &ChatRequest) -> Result<ChatStream, ProviderError> {
        if let Err(unsupported) = self.check(request) {
            return Err(ProviderError::new(
                PROVIDER_NAME,
                ErrorClass::InvalidRequest,
                unsupported.to_string(),
            ));
        }
        let model = self.ready_chat_model(&request.model)?;
        let generation = GenerationRequest {
            messages: request.messages.clone(),
            sampling: SamplingParams {
                temperature: request.temperature,
                top_p: request.top_p,
                // A negative seed is as good a seed as any: its bits are used as they are.
                seed: request.seed.map(|seed| seed as u64),
                max_tokens: request.max_tokens,
                stop: request.stop.clone(),
            },
        };
        let handle = model
            .generate(generation)
            .map_err(|err| provider_error(&request.model, err))?;
        let model_name = request.model.clone();
        let events = handle.flat_map(move |event| {
            let events: Vec<Result<StreamEvent, ProviderError>> = match event {
                Ok(GenerationEvent::Text(text)) => vec![Ok(StreamEvent::Text(text))],
                Ok(GenerationEvent::Done(summary)) => vec![
                    Ok(StreamEvent::Finish(match summary.finish_reason {
                        FinishReason::Stop => LlmFinishReason::Stop,
                        FinishReason::Length => LlmFinishReason::Length,
                    })),
                    Ok(StreamEvent::Usage(Usage {
                        input_tokens: summary.prompt_tokens,
                        output_tokens: summary.completion_tokens,
                        cached_input_tokens: None,
                    })),
                ],
                Err(err) => vec![Err(provider_error(&model_name, err))],
            };
            futures::stream::iter(events)
        });
        Ok(Box::pin(events))
    }
}

fn loading(name: &str, path: &str) -> ProviderError {
    let mut err = ProviderError::new(
        PROVIDER_NAME,
        ErrorClass::Unavailable,
        format!("local model `{name}` ({path}) is still loading; retry in a few seconds"),
    );
    err.retry_after = Some(LOADING_RETRY_AFTER);
    err
}

/// Classifies a model's error for the gateway.
fn provider_error(model: &str, err: LocalError) -> ProviderError {
    let class = match &err {
        LocalError::Busy { .. } => ErrorClass::Overloaded,
        LocalError::ContextOverflow { .. } | LocalError::InvalidRequest(_) => {
            ErrorClass::InvalidRequest
        }
        LocalError::Unavailable { .. }
        | LocalError::ModelFile { .. }
        | LocalError::UnsupportedArchitecture { .. } => ErrorClass::Unavailable,
        LocalError::Inference(_) => ErrorClass::Server,
    };
    let retry_after = match &err {
        LocalError::Busy { retry_after, .. } => Some(*retry_after),
        _ => None,
    };
    let message = match &err {
        // The error names the model already.
        LocalError::Busy { .. } | LocalError::Unavailable { .. } => err.to_string(),
        _ => format!("local model `{model}`: {err}"),
    };
    let mut error = ProviderError::new(PROVIDER_NAME, class, message);
    error.retry_after = retry_after;
    error
}

#[async_trait]
impl Provider for LocalProvider {
    fn name(&self) -> &str {
        PROVIDER_NAME
    }

    fn kind(&self) -> ProviderKind {
        ProviderKind::Local
    }

    fn check(&self, request: &ChatRequest) -> Result<(), Unsupported> {
        let unsupported =
            |parameter: &str, reason: &str| Err(Unsupported::new(PROVIDER_NAME, parameter, reason));
        if !request.tools.is_empty() {
            return unsupported(
                "tools",
                "the local runtime has no function calling; use a hosted model for tools",
            );
        }
        if matches!(&request.tool_choice, Some(choice) if *choice != ToolChoice::None) {
            return unsupported(
                "tool_choice",
                "the local runtime has no function calling; use a hosted model for tools",
            );
        }
        match &request.response_format {
            Some(ResponseFormat::JsonObject) | Some(ResponseFormat::JsonSchema { .. }) => {
                return unsupported(
                    "response_format",
                    "the local runtime has no constrained decoding, so JSON output cannot be \
                     guaranteed; ask for JSON in the prompt or use a hosted model",
                );
            }
            Some(ResponseFormat::Text) | None => {}
        }
        if let Some(temperature) = request.temperature {
            if !(0.0..=2.0).contains(&temperature) {
                return unsupported("temperature", "must be between 0 and 2");
            }
        }
        if let Some(top_p) = request.top_p {
            if !(top_p > 0.0 && top_p <= 1.0) {
                return unsupported("top_p", "must be greater than 0 and at most 1");
            }
        }
        Ok(())
    }

    async fn chat(
        &self,
        request: &ChatRequest,
        _credential: &Credential,
    ) -> Result<ChatResponse, ProviderError> {
        let mut stream = self.generate(request).await?;
        let mut content = String::new();
        let mut finish_reason = None;
        let mut usage = None;
        while let Some(event) = stream.next().await {
            match event? {
                StreamEvent::Text(text) => content.push_str(&text),
                StreamEvent::Finish(reason) => finish_reason = Some(reason),
                StreamEvent::Usage(reported) => usage = Some(reported),
                StreamEvent::ToolCallStart { .. } | StreamEvent::ToolCallArguments { .. } => {}
            }
        }
        let finish_reason = finish_reason.ok_or_else(|| {
            ProviderError::new(
                PROVIDER_NAME,
                ErrorClass::Server,
                format!(
                    "local model `{}` stopped without finishing its answer",
                    request.model
                ),
            )
        })?;
        Ok(ChatResponse {
            id: None,
            model: request.model.clone(),
            content: Some(content),
            tool_calls: Vec::new(),
            finish_reason,
            usage,
        })
    }

    async fn chat_stream(
        &self,
        request: &ChatRequest,
        _credential: &Credential,
    ) -> Result<ChatStream, ProviderError> {
        self.generate(request).await
    }

    async fn embed(
        &self,
        request: &EmbeddingRequest,
        _credential: &Credential,
    ) -> Result<EmbeddingResponse, ProviderError> {
        let model = self.ready_embedding_model(&request.model)?;
        if let Some(dimensions) = request.dimensions {
            if dimensions as usize != model.dimensions() {
                return Err(ProviderError::new(
                    PROVIDER_NAME,
                    ErrorClass::InvalidRequest,
                    format!(
                        "`dimensions` {dimensions} is not supported: local model `{}` produces \
                         {}-dimensional vectors; omit `dimensions` or set it to {}",
                        request.model,
                        model.dimensions(),
                        model.dimensions()
                    ),
                ));
            }
        }
        let embeddings = model
            .embed(request.inputs.clone())
            .await
            .map_err(|err| provider_error(&request.model, err))?;
        Ok(EmbeddingResponse {
            model: request.model.clone(),
            vectors: embeddings.vectors,
            usage: Usage {
                input_tokens: embeddings.tokens,
                output_tokens: 0,
                cached_input_tokens: None,
            },
        })
    }

    fn supports_embeddings(&self) -> bool {
        true
    }

    fn context_window(&self, model: &str) -> Option<usize> {
        self.chat_model(model)
            .map(|model| model.info().context_length)
    }

    fn model_status(&self) -> Vec<ModelStatus> {
        self.status()
            .into_iter()
            .map(|status| ModelStatus {
                name: status.name,
                kind: status.kind,
                state: status.state,
                detail: status.detail,
            })
            .collect()
    }

    fn count_prompt_tokens(&self, model: &str, messages: &[ChatMessage]) -> Option<usize> {
        self.chat_model(model)?.count_prompt_tokens(messages).ok()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn errors_are_classified_for_the_gateway() {
        let busy = provider_error(
            "m",
            LocalError::Busy {
                model: "m".to_owned(),
                queue: 4,
                retry_after: Duration::from_secs(3),
            },
        );
        assert_eq!(busy.class, ErrorClass::Overloaded);
        assert_eq!(busy.retry_after, Some(Duration::from_secs(3)));
        let overflow = provider_error(
            "m",
            LocalError::ContextOverflow {
                prompt_tokens: 5000,
                context_length: 4096,
            },
        );
        assert_eq!(overflow.class, ErrorClass::InvalidRequest);
        assert!(overflow.message.contains("5000"), "{}", overflow.message);
        assert_eq!(
            provider_error("m", LocalError::Inference("x".to_owned())).class,
            ErrorClass::Server
        );
    }
}
