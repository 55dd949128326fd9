//! In-process local models: GGUF chat models ([`chat`]) and sentence-embedding models
//! ([`embed`]) run on the CPU with candle, the gateway provider over them ([`provider`]), and
//! the model setup that fetches and verifies the shipped models ([`setup`]).
//!
//! Architecture invariant: nothing here knows about HTTP, tenants or the store; model work runs
//! on dedicated threads behind bounded queues, never on the async runtime's threads.

pub mod chat;
pub mod embed;
mod error;
pub mod provider;
pub mod setup;

pub use chat::{
    ChatModel, ChatModelInfo, ChatModelOptions, FinishReason, GenerationEvent, GenerationHandle,
    GenerationRequest, GenerationSummary, SamplingParams,
};
pub use embed::{EmbeddingModel, EmbeddingModelOptions, Embeddings};
pub use error::LocalError;
pub use provider::{
    ChatModelSpec, EmbeddingModelSpec, LocalModelStatus, LocalProvider, PROVIDER_NAME,
};
