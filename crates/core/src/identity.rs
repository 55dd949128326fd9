//! Tenants, roles and the authenticated principal every request acts as.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};

/// A tenant (organization) identifier: a lower-case slug such as `acme` or `power100-prod`.
///
/// Slugs rather than UUIDs because operators type them (`flywheel token issue --tenant acme`)
/// and they appear in lake paths and logs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TenantIdError {
    #[error("must be 2 to 63 characters long")]
    Length,
    #[error(
        "must start with a lower-case letter or digit and contain only lower-case letters, digits and '-'"
    )]
    Characters,
}

impl TenantId {
    pub fn parse(raw: &str) -> Result<TenantId, TenantIdError> {
        if raw.len() < 2 || raw.len() > 63 {
            return Err(TenantIdError::Length);
        }
        let mut chars = raw.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !first_ok || !rest_ok {
            return Err(TenantIdError::Characters);
        }
        Ok(TenantId(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A tenant as stored. `operator` marks the tenant whose admins run the installation:
/// they may create other tenants and keys inside them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    pub operator: bool,
    pub created_at: DateTime<Utc>,
}

/// What a principal may do. Checked by services, never by handlers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Admin,
    Partner,
    Contractor,
    Service,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role '{0}': expected one of admin, partner, contractor, service")]
pub struct RoleError(String);

impl Role {
    pub const ALL: [Role; 4] = [Role::Admin, Role::Partner, Role::Contractor, Role::Service];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Partner => "partner",
            Role::Contractor => "contractor",
            Role::Service => "service",
        }
    }
}

impl FromStr for Role {
    type Err = RoleError;

    fn from_str(raw: &str) -> Result<Role, RoleError> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == raw)
            .ok_or_else(|| RoleError(raw.to_owned()))
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The user or service a principal speaks for (`user_id` in the interaction contract).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Subject(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubjectError {
    #[error("must be 1 to 128 characters long")]
    Length,
    #[error("must not contain control characters or whitespace")]
    Characters,
}

impl Subject {
    pub fn parse(raw: &str) -> Result<Subject, SubjectError> {
        if raw.is_empty() || raw.chars().count() > 128 {
            return Err(SubjectError::Length);
        }
        if raw.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(SubjectError::Characters);
        }
        Ok(Subject(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How a principal proved who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMethod {
    /// An API key, identified by its id (never its secret).
    ApiKey { key_id: String },
    /// A signed JWT bearer token.
    Jwt,
    /// Local command-line access to the database: full trust, operator scope.
    LocalCli,
}

/// The authenticated caller of a use case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub tenant_id: TenantId,
    pub subject: Subject,
    pub role: Role,
    /// True when the principal belongs to the operator tenant.
    pub operator: bool,
    pub auth: AuthMethod,
}

impl Principal {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Operators' admins may act on any tenant; everybody else only on their own.
    pub fn can_administer(&self, tenant_id: &TenantId) -> bool {
        self.is_admin() && (self.operator || &self.tenant_id == tenant_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids_are_slugs() {
        assert!(TenantId::parse("acme").is_ok());
        assert!(TenantId::parse("power100-prod").is_ok());
        assert_eq!(TenantId::parse("a"), Err(TenantIdError::Length));
        assert_eq!(TenantId::parse("Acme"), Err(TenantIdError::Characters));
        assert_eq!(TenantId::parse("-acme"), Err(TenantIdError::Characters));
        assert_eq!(TenantId::parse("ac me"), Err(TenantIdError::Characters));
    }

    #[test]
    fn roles_round_trip() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn subjects_reject_whitespace() {
        assert!(Subject::parse("user-42").is_ok());
        assert_eq!(Subject::parse(""), Err(SubjectError::Length));
        assert_eq!(Subject::parse("a b"), Err(SubjectError::Characters));
    }

    #[test]
    fn only_operator_admins_cross_tenants() {
        let acme = TenantId::parse("acme").unwrap();
        let other = TenantId::parse("other").unwrap();
        let mut principal = Principal {
            tenant_id: acme.clone(),
            subject: Subject::parse("u").unwrap(),
            role: Role::Admin,
            operator: false,
            auth: AuthMethod::Jwt,
        };
        assert!(principal.can_administer(&acme));
        assert!(!principal.can_administer(&other));
        principal.operator = true;
        assert!(principal.can_administer(&other));
        principal.role = Role::Contractor;
        assert!(!principal.can_administer(&acme));
    }
}
