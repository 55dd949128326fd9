//! Talking to language-model providers: provider-neutral types (`types`), the [`Provider`]
//! trait, one adapter per provider family (`openai`, `anthropic`, `gemini`, `bedrock`), the
//! price table (`pricing`) and the server-sent-events reader they share (`sse`).
//!
//! Architecture invariant: adapters know wire formats and nothing about tenants, limits or
//! logging (that is the gateway service's job). Wire types are private to their adapter.

pub mod anthropic;
pub mod bedrock;
mod error;
pub mod gemini;
pub mod openai;
pub mod pricing;
mod provider;
pub mod sse;
pub mod types;

pub use error::{scrub, ErrorClass, ProviderError, Unsupported};
pub use provider::{Credential, HttpSettings, ModelStatus, Provider, ProviderKind};
pub use types::*;
