//! Tenants, API keys, JWT bearer tokens and authentication of presented credentials.
//!
//! API keys are stored as HMAC-SHA256(api-key sub-key, whole key): a keyed hash, so a stolen
//! database alone does not allow offline guessing, and verification costs microseconds (a slow
//! hash would put tens of milliseconds on every request). JWTs are HS256 with a required `exp`.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use flywheel_config::AuthConfig;
use flywheel_core::api_key::{PREFIX_LEN, SECRET_LEN};
use flywheel_core::{
    ApiKeyPrefix, AuthMethod, PresentedApiKey, Principal, Role, Subject, Tenant, TenantId,
    ValidationErrors,
};
use flywheel_store::{ApiKeyRecord, ApiKeyStore, NewApiKey, Store, StoreError, TenantStore};
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::distributions::{Alphanumeric, DistString};
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::cache::TtlCache;
use crate::secrets::MasterKey;
use crate::ServiceError;

/// Input to create a tenant, as received (validated here).
#[derive(Debug, Clone)]
pub struct NewTenantInput {
    pub id: String,
    pub name: String,
}

/// Input to create an API key, as received (validated here).
#[derive(Debug, Clone)]
pub struct NewApiKeyInput {
    /// Target tenant; absent means the caller's own. Only operator admins may name another.
    pub tenant_id: Option<String>,
    pub name: String,
    pub role: String,
    /// The user or service the key speaks for; default `key-<prefix>`.
    pub subject: Option<String>,
}

/// A created key: the record plus the whole key, to be shown once and then forgotten.
#[derive(Debug)]
pub struct CreatedApiKey {
    pub record: ApiKeyRecord,
    pub key: SecretString,
}

#[derive(Debug)]
pub struct IssuedToken {
    pub token: SecretString,
    pub expires_at: DateTime<Utc>,
}

/// What first start did on an empty database.
#[derive(Debug)]
pub struct BootstrapOutcome {
    pub tenant: Tenant,
    /// The generated admin key, to print once; `None` when it came from the environment.
    pub generated_key: Option<SecretString>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    tid: String,
    role: String,
    iat: i64,
    exp: i64,
    jti: String,
}

/// Authentication and administration of tenants and keys.
pub struct IdentityService {
    tenants: Arc<dyn TenantStore>,
    api_keys: Arc<dyn ApiKeyStore>,
    key_hash_key: [u8; 32],
    jwt_encoding: EncodingKey,
    jwt_decoding: DecodingKey,
    jwt_issuer: String,
    max_token_ttl: Duration,
    /// Keys recently read by prefix (`auth.key_cache_ttl`): saves a database round trip per
    /// request. Revoking through this process forgets the key at once.
    key_cache: TtlCache<String, ApiKeyRecord>,
}

impl std::fmt::Debug for IdentityService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityService")
            .field("jwt_issuer", &self.jwt_issuer)
            .finish_non_exhaustive()
    }
}

const NAME_MAX_CHARS: usize = 200;

impl IdentityService {
    pub fn new(
        store: &Store,
        master_key: &MasterKey,
        auth: &AuthConfig,
    ) -> Result<IdentityService, ServiceError> {
        let jwt_secret: Vec<u8> = match &auth.jwt_secret {
            Some(reference) => {
                let secret = reference.resolve().map_err(|err| {
                    ServiceError::Internal(anyhow::anyhow!("auth.jwt_secret: {err}"))
                })?;
                if secret.expose_secret().len() < 32 {
                    return Err(ServiceError::Internal(anyhow::anyhow!(
                        "auth.jwt_secret must be at least 32 characters long"
                    )));
                }
                secret.expose_secret().as_bytes().to_vec()
            }
            None => master_key.derive("flywheel/jwt-hs256/v1").to_vec(),
        };
        Ok(IdentityService {
            tenants: store.tenants(),
            api_keys: store.api_keys(),
            key_hash_key: master_key.derive("flywheel/api-key-hash/v1"),
            jwt_encoding: EncodingKey::from_secret(&jwt_secret),
            jwt_decoding: DecodingKey::from_secret(&jwt_secret),
            jwt_issuer: auth.jwt_issuer.clone(),
            max_token_ttl: auth.max_token_ttl,
            key_cache: TtlCache::new(auth.key_cache_ttl, 10_000),
        })
    }

    /// The principal a bearer credential (an API key or a JWT) stands for.
    pub async fn authenticate(&self, bearer: &str) -> Result<Principal, ServiceError> {
        if bearer.matches('.').count() == 2 {
            self.authenticate_jwt(bearer).await
        } else {
            self.authenticate_api_key(bearer).await
        }
    }

    async fn authenticate_api_key(&self, bearer: &str) -> Result<Principal, ServiceError> {
        let presented =
            PresentedApiKey::parse(bearer).map_err(|_| ServiceError::Unauthenticated)?;
        let prefix = presented.prefix().to_string();
        let record = match self.key_cache.get(&prefix) {
            Some(record) => record,
            None => {
                let record = self
                    .api_keys
                    .find_api_key_by_prefix(presented.prefix())
                    .await?
                    .ok_or(ServiceError::Unauthenticated)?;
                self.key_cache.insert(prefix, record.clone());
                record
            }
        };
        if !self.verify_key_hash(&presented, &record.secret_hash) || record.revoked_at.is_some() {
            return Err(ServiceError::Unauthenticated);
        }
        Ok(Principal {
            tenant_id: record.tenant_id,
            subject: record.subject,
            role: record.role,
            operator: record.tenant_operator,
            auth: AuthMethod::ApiKey { key_id: record.id },
        })
    }

    async fn authenticate_jwt(&self, bearer: &str) -> Result<Principal, ServiceError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[&self.jwt_issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.leeway = 30;
        let claims = jsonwebtoken::decode::<Claims>(bearer, &self.jwt_decoding, &validation)
            .map_err(|err| {
                tracing::debug!(error = %err, "rejected bearer token");
                ServiceError::Unauthenticated
            })?
            .claims;
        let tenant_id = TenantId::parse(&claims.tid).map_err(|_| ServiceError::Unauthenticated)?;
        let subject = Subject::parse(&claims.sub).map_err(|_| ServiceError::Unauthenticated)?;
        let role: Role = claims
            .role
            .parse()
            .map_err(|_| ServiceError::Unauthenticated)?;
        // The tenant must still exist; this also yields its operator flag.
        let tenant = self
            .tenants
            .get_tenant(&tenant_id)
            .await?
            .ok_or(ServiceError::Unauthenticated)?;
        Ok(Principal {
            tenant_id,
            subject,
            role,
            operator: tenant.operator,
            auth: AuthMethod::Jwt,
        })
    }

    fn hash_key(&self, key: &PresentedApiKey) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key_hash_key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(key.expose().as_bytes());
        mac
    }

    fn verify_key_hash(&self, key: &PresentedApiKey, stored_hex: &str) -> bool {
        let Ok(stored) = hex::decode(stored_hex) else {
            return false;
        };
        // Constant-time comparison.
        self.hash_key(key).verify_slice(&stored).is_ok()
    }

    pub async fn create_tenant(
        &self,
        actor: &Principal,
        input: NewTenantInput,
    ) -> Result<Tenant, ServiceError> {
        if !(actor.is_admin() && actor.operator) {
            return Err(ServiceError::Forbidden(
                "only admins of the operator tenant may create tenants".to_owned(),
            ));
        }
        let mut errors = ValidationErrors::new();
        let id = errors.check("id", TenantId::parse(&input.id));
        let name = errors.check("name", parse_name(&input.name));
        errors.into_result()?;
        let (Some(id), Some(name)) = (id, name) else {
            unreachable!("both fields parsed when no error was recorded")
        };
        let tenant = Tenant {
            id,
            name,
            operator: false,
            created_at: now_millis(),
        };
        match self.tenants.insert_tenant(&tenant).await {
            Ok(()) => Ok(tenant),
            Err(StoreError::Conflict { .. }) => Err(ServiceError::Conflict(format!(
                "a tenant with id '{}' already exists",
                tenant.id
            ))),
            Err(err) => Err(err.into()),
        }
    }

    /// Operator admins see every tenant; other admins their own.
    pub async fn list_tenants(&self, actor: &Principal) -> Result<Vec<Tenant>, ServiceError> {
        require_admin(actor)?;
        let tenants = self.tenants.list_tenants().await?;
        Ok(tenants
            .into_iter()
            .filter(|tenant| actor.can_administer(&tenant.id))
            .collect())
    }

    pub async fn create_api_key(
        &self,
        actor: &Principal,
        input: NewApiKeyInput,
    ) -> Result<CreatedApiKey, ServiceError> {
        require_admin(actor)?;
        let mut errors = ValidationErrors::new();
        let tenant_id = match &input.tenant_id {
            Some(raw) => errors.check("tenant_id", TenantId::parse(raw)),
            None => Some(actor.tenant_id.clone()),
        };
        let name = errors.check("name", parse_name(&input.name));
        let role = errors.check("role", input.role.parse::<Role>());
        let subject = match &input.subject {
            Some(raw) => errors.check("subject", Subject::parse(raw)).map(Some),
            None => Some(None),
        };
        errors.into_result()?;
        let (Some(tenant_id), Some(name), Some(role), Some(subject)) =
            (tenant_id, name, role, subject)
        else {
            unreachable!("all fields parsed when no error was recorded")
        };
        let tenant = self.visible_tenant(actor, &tenant_id).await?;

        let prefix_raw = random_lowercase_alphanumeric(PREFIX_LEN);
        let prefix = ApiKeyPrefix::parse(&prefix_raw)
            .unwrap_or_else(|_| unreachable!("generated prefixes are well-formed"));
        let secret = Alphanumeric.sample_string(&mut rand::rngs::OsRng, SECRET_LEN);
        let presented = PresentedApiKey::from_parts(prefix.clone(), &secret)
            .unwrap_or_else(|_| unreachable!("generated keys are well-formed"));
        let subject = match subject {
            Some(subject) => subject,
            None => Subject::parse(&format!("key-{prefix}"))
                .unwrap_or_else(|_| unreachable!("prefixes are valid subjects")),
        };
        let record = self
            .store_key(&tenant, &presented, name, role, subject, &actor.subject)
            .await?;
        Ok(CreatedApiKey {
            record,
            key: SecretString::from(presented.expose().to_owned()),
        })
    }

    async fn store_key(
        &self,
        tenant: &Tenant,
        presented: &PresentedApiKey,
        name: String,
        role: Role,
        subject: Subject,
        created_by: &Subject,
    ) -> Result<ApiKeyRecord, ServiceError> {
        let new_key = NewApiKey {
            id: uuid::Uuid::now_v7().to_string(),
            tenant_id: tenant.id.clone(),
            prefix: presented.prefix().clone(),
            secret_hash: hex::encode(self.hash_key(presented).finalize().into_bytes()),
            name,
            role,
            subject,
            created_by: created_by.to_string(),
            created_at: now_millis(),
        };
        self.api_keys
            .insert_api_key(&new_key)
            .await
            .map_err(|err| match err {
                StoreError::Conflict { .. } => {
                    ServiceError::Conflict("an API key with this prefix already exists".to_owned())
                }
                other => other.into(),
            })?;
        Ok(ApiKeyRecord {
            id: new_key.id,
            tenant_id: new_key.tenant_id,
            prefix: new_key.prefix,
            secret_hash: new_key.secret_hash,
            name: new_key.name,
            role: new_key.role,
            subject: new_key.subject,
            created_by: new_key.created_by,
            created_at: new_key.created_at,
            revoked_at: None,
            tenant_operator: tenant.operator,
        })
    }

    pub async fn list_api_keys(
        &self,
        actor: &Principal,
        tenant_id: Option<&str>,
    ) -> Result<Vec<ApiKeyRecord>, ServiceError> {
        require_admin(actor)?;
        let tenant_id = self.target_tenant(actor, tenant_id)?;
        let tenant = self.visible_tenant(actor, &tenant_id).await?;
        Ok(self.api_keys.list_api_keys(&tenant.id).await?)
    }

    pub async fn revoke_api_key(
        &self,
        actor: &Principal,
        tenant_id: Option<&str>,
        key_id: &str,
    ) -> Result<ApiKeyRecord, ServiceError> {
        require_admin(actor)?;
        let tenant_id = self.target_tenant(actor, tenant_id)?;
        let tenant = self.visible_tenant(actor, &tenant_id).await?;
        let revoked = self
            .api_keys
            .revoke_api_key(&tenant.id, key_id, now_millis())
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("API key '{key_id}'")))?;
        let prefix = revoked.prefix.to_string();
        self.key_cache.remove_where(|cached| *cached == prefix);
        Ok(revoked)
    }

    /// Issues a JWT for a user of a tenant. Only operator admins (and the local CLI) may.
    pub async fn issue_token(
        &self,
        actor: &Principal,
        tenant_id: &str,
        subject: &str,
        role: &str,
        ttl: Duration,
    ) -> Result<IssuedToken, ServiceError> {
        let mut errors = ValidationErrors::new();
        let tenant_id = errors.check("tenant", TenantId::parse(tenant_id));
        let subject = errors.check("user", Subject::parse(subject));
        let role = errors.check("role", role.parse::<Role>());
        if ttl.is_zero() {
            errors.push("ttl", "must be positive");
        } else if ttl > self.max_token_ttl {
            errors.push(
                "ttl",
                format!(
                    "must be at most {} (auth.max_token_ttl)",
                    humantime::format_duration(self.max_token_ttl)
                ),
            );
        }
        errors.into_result()?;
        let (Some(tenant_id), Some(subject), Some(role)) = (tenant_id, subject, role) else {
            unreachable!("all fields parsed when no error was recorded")
        };
        if !actor.can_administer(&tenant_id) {
            return Err(ServiceError::Forbidden(
                "only admins of the tenant may issue its tokens".to_owned(),
            ));
        }
        let tenant = self.visible_tenant(actor, &tenant_id).await?;
        let issued_at = Utc::now();
        let ttl = chrono::Duration::from_std(ttl)
            .map_err(|err| ServiceError::Internal(anyhow::anyhow!("ttl out of range: {err}")))?;
        let expires_at = issued_at + ttl;
        let claims = Claims {
            iss: self.jwt_issuer.clone(),
            sub: subject.to_string(),
            tid: tenant.id.to_string(),
            role: role.to_string(),
            iat: issued_at.timestamp(),
            exp: expires_at.timestamp(),
            jti: uuid::Uuid::now_v7().to_string(),
        };
        let token =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.jwt_encoding)
                .map_err(|err| ServiceError::Internal(anyhow::anyhow!("signing token: {err}")))?;
        Ok(IssuedToken {
            token: SecretString::from(token),
            expires_at,
        })
    }

    /// On an empty database: creates the operator tenant and its admin key, using
    /// `provided_key` (from `FLYWHEEL_BOOTSTRAP_ADMIN_KEY`) when given. Returns `None` when the
    /// database already has tenants (or another replica bootstrapped it first).
    pub async fn bootstrap(
        &self,
        tenant_id: &str,
        tenant_name: &str,
        provided_key: Option<&SecretString>,
    ) -> Result<Option<BootstrapOutcome>, ServiceError> {
        if self.tenants.count_tenants().await? > 0 {
            return Ok(None);
        }
        let mut errors = ValidationErrors::new();
        let id = errors.check("bootstrap.tenant_id", TenantId::parse(tenant_id));
        let name = errors.check("bootstrap.tenant_name", parse_name(tenant_name));
        let presented = match provided_key {
            Some(key) => errors
                .check(
                    "FLYWHEEL_BOOTSTRAP_ADMIN_KEY",
                    PresentedApiKey::parse(key.expose_secret()),
                )
                .map(Some),
            None => Some(None),
        };
        errors.into_result()?;
        let (Some(id), Some(name), Some(presented)) = (id, name, presented) else {
            unreachable!("all fields parsed when no error was recorded")
        };
        let tenant = Tenant {
            id,
            name,
            operator: true,
            created_at: now_millis(),
        };
        match self.tenants.insert_tenant(&tenant).await {
            Ok(()) => {}
            Err(StoreError::Conflict { .. }) => return Ok(None),
            Err(err) => return Err(err.into()),
        }
        let (presented, generated) = match presented {
            Some(presented) => (presented, false),
            None => {
                let prefix = ApiKeyPrefix::parse(&random_lowercase_alphanumeric(PREFIX_LEN))
                    .unwrap_or_else(|_| unreachable!("generated prefixes are well-formed"));
                let secret = Alphanumeric.sample_string(&mut rand::rngs::OsRng, SECRET_LEN);
                let key = PresentedApiKey::from_parts(prefix, &secret)
                    .unwrap_or_else(|_| unreachable!("generated keys are well-formed"));
                (key, true)
            }
        };
        let admin = Subject::parse("bootstrap-admin")
            .unwrap_or_else(|_| unreachable!("literal subject is valid"));
        self.store_key(
            &tenant,
            &presented,
            "bootstrap admin".to_owned(),
            Role::Admin,
            admin.clone(),
            &admin,
        )
        .await?;
        Ok(Some(BootstrapOutcome {
            tenant,
            generated_key: generated.then(|| SecretString::from(presented.expose().to_owned())),
        }))
    }

    /// A tenant the actor may administer, or NotFound (never revealing other tenants exist).
    async fn visible_tenant(
        &self,
        actor: &Principal,
        tenant_id: &TenantId,
    ) -> Result<Tenant, ServiceError> {
        if !actor.can_administer(tenant_id) {
            return Err(ServiceError::NotFound(format!("tenant '{tenant_id}'")));
        }
        self.tenants
            .get_tenant(tenant_id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("tenant '{tenant_id}'")))
    }

    fn target_tenant(
        &self,
        actor: &Principal,
        raw: Option<&str>,
    ) -> Result<TenantId, ServiceError> {
        match raw {
            None => Ok(actor.tenant_id.clone()),
            Some(raw) => TenantId::parse(raw)
                .map_err(|err| ValidationErrors::single("tenant_id", err.to_string()).into()),
        }
    }
}

/// A principal for local command-line use: the CLI has the database and the master key, so it
/// is as trusted as the operator's admins.
pub fn local_cli_principal(operator_tenant: TenantId) -> Principal {
    Principal {
        tenant_id: operator_tenant,
        subject: Subject::parse("local-cli")
            .unwrap_or_else(|_| unreachable!("literal subject is valid")),
        role: Role::Admin,
        operator: true,
        auth: AuthMethod::LocalCli,
    }
}

fn require_admin(actor: &Principal) -> Result<(), ServiceError> {
    if actor.is_admin() {
        Ok(())
    } else {
        Err(ServiceError::Forbidden(format!(
            "this needs the admin role; the caller has role '{}'",
            actor.role
        )))
    }
}

fn parse_name(raw: &str) -> Result<String, String> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if trimmed.chars().count() > NAME_MAX_CHARS {
        return Err(format!("must be at most {NAME_MAX_CHARS} characters"));
    }
    if trimmed.chars().any(char::is_control) {
        return Err("must not contain control characters".to_owned());
    }
    Ok(trimmed.to_owned())
}

fn random_lowercase_alphanumeric(len: usize) -> String {
    const CHARSET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rngs::OsRng;
    (0..len)
        .map(|_| char::from(CHARSET[rng.gen_range(0..CHARSET.len())]))
        .collect()
}

/// Now, truncated to milliseconds so values read back from the store compare equal.
fn now_millis() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
}
