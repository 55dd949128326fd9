//! Flywheel's use cases. Each service takes the acting [`Principal`](flywheel_core::Principal),
//! checks what it may do, validates input into domain types and talks to storage through the
//! store's traits.
//!
//! Architecture invariant: nothing here knows about HTTP (no status codes, no axum types) or
//! about a particular database; the CLI and the HTTP layer call the same functions.

pub mod analytics;
pub mod archive;
mod cache;
pub mod concierge;
pub mod enrich;
pub mod envelope;
mod error;
pub mod gateway;
pub mod identity;
pub mod ingest;
pub mod knowledge;
pub mod power100;
pub mod provider_keys;
pub mod secrets;
pub mod writer;

pub use envelope::{EnvelopeError, KeyRing, KeyRingError, Sealed};
pub use error::{RateLimited, ServiceError, UpstreamFailure};
pub use flywheel_limits::RateLimitStatus;
pub use identity::{
    local_cli_principal, BootstrapOutcome, CreatedApiKey, IdentityService, IssuedToken,
    NewApiKeyInput, NewTenantInput,
};
pub use provider_keys::{
    NewProviderKeyInput, ProviderKeyInfo, ProviderKeyService, ResolvedProviderKey, RotationReport,
};
pub use secrets::{MasterKey, MasterKeyError};
