//! Flywheel's domain core: identifiers, roles, principals and validation rules.
//!
//! Architecture invariant: this crate performs no I/O and knows nothing of HTTP,
//! SQL or configuration files. Everything here is plain data plus the rules that
//! decide whether a value is valid ("parse, don't validate").

pub mod api_key;
pub mod identity;
pub mod interaction;
pub mod validation;

pub use api_key::{ApiKeyPrefix, PresentedApiKey};
pub use identity::{AuthMethod, Principal, Role, Subject, Tenant, TenantId};
pub use interaction::Interaction;
pub use validation::{FieldError, ValidationErrors};
