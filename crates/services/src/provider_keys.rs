//! Users' own provider API keys for the LLM gateway ("bring your own key").
//!
//! A key is validated, sealed with envelope encryption ([`KeyRing`]) and stored; it is never
//! returned except decrypted to the gateway through [`ProviderKeyService::resolve`]. The
//! additional authenticated data of every ciphertext binds it to its tenant, record id, owner
//! and provider, so a ciphertext copied into another row (another user's, say) fails to open.
//! Users see and delete their own keys; a tenant's admins see and delete all of its keys.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use flywheel_core::{Principal, Subject, TenantId, ValidationErrors};
use flywheel_store::{ProviderKeyRecord, ProviderKeyStore, RewrappedDataKey, StoreError};
use secrecy::zeroize::Zeroize;
use secrecy::{ExposeSecret, SecretString};

use crate::cache::TtlCache;
use crate::envelope::{EnvelopeError, KeyRing, Sealed};
use crate::ServiceError;

/// Input to store a provider key, as received (validated here).
#[derive(Debug)]
pub struct NewProviderKeyInput {
    pub provider: String,
    pub name: String,
    pub key: SecretString,
    /// Models the key may be used for; empty means any.
    pub allowed_models: Vec<String>,
    pub monthly_token_limit: Option<u64>,
    pub monthly_usd_limit: Option<f64>,
}

/// A stored key as shown to users: never the key itself.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderKeyInfo {
    pub id: String,
    pub provider: String,
    pub name: String,
    /// The user who stored it (useful to admins, who see every key of their tenant).
    pub owner: Subject,
    pub last_four: String,
    pub allowed_models: Vec<String>,
    pub monthly_token_limit: Option<u64>,
    pub monthly_usd_limit: Option<f64>,
    pub created_at: DateTime<Utc>,
}

/// A decrypted key, for the gateway to call the provider with.
#[derive(Debug, Clone)]
pub struct ResolvedProviderKey {
    pub id: String,
    pub provider: String,
    pub name: String,
    pub secret: SecretString,
    pub allowed_models: Vec<String>,
    pub monthly_token_limit: Option<u64>,
    pub monthly_usd_limit: Option<f64>,
}

/// What a rotation did. Keys deleted (or re-wrapped by a concurrent rotation) while it ran are
/// counted in neither field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RotationReport {
    pub rewrapped: u64,
    pub already_current: u64,
}

/// Storing, listing, deleting and resolving provider keys, and re-wrapping them all.
pub struct ProviderKeyService {
    store: Arc<dyn ProviderKeyStore>,
    ring: Arc<KeyRing>,
    known_providers: Vec<String>,
    /// (tenant, owner, provider) → the newest key, or none.
    resolved: TtlCache<(String, String, String), Option<ResolvedProviderKey>>,
}

impl std::fmt::Debug for ProviderKeyService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderKeyService")
            .field("ring", &self.ring)
            .field("known_providers", &self.known_providers)
            .finish_non_exhaustive()
    }
}

const AAD_LABEL: &[u8] = b"flywheel/provider-key/v1";
const NAME_MAX_CHARS: usize = 100;
const KEY_MIN_CHARS: usize = 8;
const KEY_MAX_CHARS: usize = 4096;
const MODEL_MAX_CHARS: usize = 200;
const MAX_ALLOWED_MODELS: usize = 256;
const MICROS_PER_USD: f64 = 1_000_000.0;
const ROTATION_PAGE_ROWS: u32 = 500;

impl ProviderKeyService {
    pub fn new(
        store: Arc<dyn ProviderKeyStore>,
        ring: Arc<KeyRing>,
        known_providers: Vec<String>,
    ) -> ProviderKeyService {
        ProviderKeyService {
            store,
            ring,
            known_providers,
            resolved: TtlCache::new(Duration::ZERO, 1),
        }
    }

    /// Stores a key for the caller (its owner).
    pub async fn create(
        &self,
        actor: &Principal,
        input: NewProviderKeyInput,
    ) -> Result<ProviderKeyInfo, ServiceError> {
        let mut errors = ValidationErrors::new();
        let provider = errors.check("provider", self.parse_provider(&input.provider));
        let name = errors.check("name", parse_name(&input.name));
        let key = errors.check("key", check_key(input.key.expose_secret()));
        let allowed_models = parse_models(&mut errors, input.allowed_models);
        let token_limit = errors.check(
            "monthly_token_limit",
            parse_token_limit(input.monthly_token_limit),
        );
        let usd_micros = errors.check(
            "monthly_usd_limit",
            parse_usd_limit(input.monthly_usd_limit),
        );
        errors.into_result()?;
        let (Some(provider), Some(name), Some(key), Some(token_limit), Some(usd_micros)) =
            (provider, name, key, token_limit, usd_micros)
        else {
            unreachable!("all fields parsed when no error was recorded")
        };

        let id = uuid::Uuid::now_v7().to_string();
        let aad = record_aad(&actor.tenant_id, &id, &actor.subject, &provider);
        let sealed = self
            .ring
            .seal(key.as_bytes(), &aad)
            .map_err(|err| envelope_error(&id, err))?;
        let now = now_millis();
        let record = ProviderKeyRecord {
            id,
            tenant_id: actor.tenant_id.clone(),
            owner: actor.subject.clone(),
            provider,
            name,
            last_four: last_four(key),
            ciphertext: sealed.ciphertext,
            nonce: sealed.nonce,
            wrapped_data_key: sealed.wrapped_data_key,
            wrap_nonce: sealed.wrap_nonce,
            master_key_id: sealed.key_id,
            allowed_models,
            monthly_token_limit: token_limit,
            monthly_usd_micros: usd_micros,
            created_at: now,
            updated_at: now,
        };
        match self.store.insert_provider_key(&record).await {
            Ok(()) => {
                self.forget(&record.tenant_id, &record.owner);
                Ok(info(&record))
            }
            Err(StoreError::Conflict { .. }) => Err(ServiceError::Conflict(format!(
                "you already have a {} key named '{}'",
                record.provider, record.name
            ))),
            Err(err) => Err(err.into()),
        }
    }

    /// The caller's keys, newest first; an admin gets every key of its tenant.
    pub async fn list(&self, actor: &Principal) -> Result<Vec<ProviderKeyInfo>, ServiceError> {
        let owner = (!actor.is_admin()).then_some(&actor.subject);
        let records = self
            .store
            .list_provider_keys(&actor.tenant_id, owner)
            .await?;
        Ok(records.iter().map(info).collect())
    }

    /// Deletes one of the caller's keys (an admin: any key of its tenant). Any other id is
    /// NotFound, whether it exists elsewhere or not.
    pub async fn delete(&self, actor: &Principal, id: &str) -> Result<(), ServiceError> {
        let not_found = || ServiceError::NotFound(format!("provider key '{id}'"));
        let record = self
            .store
            .get_provider_key(&actor.tenant_id, id)
            .await?
            .filter(|record| actor.is_admin() || record.owner == actor.subject)
            .ok_or_else(not_found)?;
        if self
            .store
            .delete_provider_key(&actor.tenant_id, &record.id)
            .await?
        {
            self.forget(&record.tenant_id, &record.owner);
            Ok(())
        } else {
            Err(not_found())
        }
    }

    /// The caller's newest key for `provider`, decrypted; `None` when it has none.
    pub async fn resolve(
        &self,
        actor: &Principal,
        provider: &str,
    ) -> Result<Option<ResolvedProviderKey>, ServiceError> {
        let cache_key = (
            actor.tenant_id.to_string(),
            actor.subject.to_string(),
            provider.to_owned(),
        );
        if let Some(cached) = self.resolved.get(&cache_key) {
            return Ok(cached);
        }
        let resolved = self.resolve_uncached(actor, provider).await?;
        self.resolved.insert(cache_key, resolved.clone());
        Ok(resolved)
    }

    /// Reuses resolved keys for `ttl` (`auth.key_cache_ttl`); changes made through this
    /// process are seen at once.
    pub fn with_cache_ttl(mut self, ttl: Duration) -> ProviderKeyService {
        self.resolved = TtlCache::new(ttl, 10_000);
        self
    }

    fn forget(&self, tenant: &TenantId, owner: &Subject) {
        let (tenant, owner) = (tenant.to_string(), owner.to_string());
        self.resolved
            .remove_where(|(cached_tenant, cached_owner, _)| {
                *cached_tenant == tenant && *cached_owner == owner
            });
    }

    async fn resolve_uncached(
        &self,
        actor: &Principal,
        provider: &str,
    ) -> Result<Option<ResolvedProviderKey>, ServiceError> {
        let records = self
            .store
            .find_provider_keys(&actor.tenant_id, &actor.subject, provider)
            .await?;
        let Some(record) = records.into_iter().next() else {
            return Ok(None);
        };
        let aad = record_aad(
            &record.tenant_id,
            &record.id,
            &record.owner,
            &record.provider,
        );
        let plaintext = self
            .ring
            .open(&sealed(&record), &aad)
            .map_err(|err| envelope_error(&record.id, err))?;
        let secret = String::from_utf8(plaintext.expose_secret().to_vec()).map_err(|err| {
            err.into_bytes().zeroize();
            ServiceError::Internal(anyhow::anyhow!(
                "provider key {} decrypted to bytes that are not UTF-8",
                record.id
            ))
        })?;
        let info = info(&record);
        Ok(Some(ResolvedProviderKey {
            id: info.id,
            provider: info.provider,
            name: info.name,
            secret: SecretString::from(secret),
            allowed_models: info.allowed_models,
            monthly_token_limit: info.monthly_token_limit,
            monthly_usd_limit: info.monthly_usd_limit,
        }))
    }

    /// Re-wraps every key's data key under the current key-encryption key, leaving the
    /// ciphertexts untouched; `progress(done, total)` is called after each key. Fails on the
    /// first key whose data key no configured key can unwrap. For the local CLI
    /// (`flywheel keys rotate-master`), which has the database and the keys: it takes no
    /// principal because it spans every tenant.
    pub async fn rotate(
        &self,
        progress: impl Fn(u64, u64),
    ) -> Result<RotationReport, ServiceError> {
        let total = self.store.count_all_provider_keys().await?;
        let mut report = RotationReport::default();
        let mut n_done: u64 = 0;
        let mut after_id: Option<String> = None;
        loop {
            let page = self
                .store
                .scan_provider_keys(after_id.as_deref(), ROTATION_PAGE_ROWS)
                .await?;
            let Some(last) = page.last() else {
                break;
            };
            after_id = Some(last.id.clone());
            for record in &page {
                let rewrapped = self
                    .ring
                    .rewrap(&sealed(record))
                    .map_err(|err| envelope_error(&record.id, err))?;
                match rewrapped {
                    None => report.already_current += 1,
                    Some(rewrapped) => {
                        let update = RewrappedDataKey {
                            wrapped_data_key: rewrapped.wrapped_data_key,
                            wrap_nonce: rewrapped.wrap_nonce,
                            master_key_id: rewrapped.key_id,
                            updated_at: now_millis(),
                        };
                        if self
                            .store
                            .update_provider_key_wrap(&record.id, &record.master_key_id, &update)
                            .await?
                        {
                            report.rewrapped += 1;
                        }
                    }
                }
                n_done += 1;
                progress(n_done, total.max(n_done));
            }
        }
        Ok(report)
    }

    fn parse_provider(&self, raw: &str) -> Result<String, String> {
        if self.known_providers.iter().any(|known| known == raw) {
            Ok(raw.to_owned())
        } else if self.known_providers.is_empty() {
            Err("no providers are configured".to_owned())
        } else {
            Err(format!(
                "must be one of: {}",
                self.known_providers.join(", ")
            ))
        }
    }
}

/// The AAD of a key's ciphertext: a label, then each part prefixed by its length, so that no
/// two different records produce the same bytes.
fn record_aad(tenant_id: &TenantId, id: &str, owner: &Subject, provider: &str) -> Vec<u8> {
    let mut aad = AAD_LABEL.to_vec();
    for part in [tenant_id.as_str(), id, owner.as_str(), provider] {
        aad.extend_from_slice(&(part.len() as u64).to_be_bytes());
        aad.extend_from_slice(part.as_bytes());
    }
    aad
}

fn sealed(record: &ProviderKeyRecord) -> Sealed {
    Sealed {
        ciphertext: record.ciphertext.clone(),
        nonce: record.nonce.clone(),
        wrapped_data_key: record.wrapped_data_key.clone(),
        wrap_nonce: record.wrap_nonce.clone(),
        key_id: record.master_key_id.clone(),
    }
}

fn envelope_error(id: &str, err: EnvelopeError) -> ServiceError {
    ServiceError::Internal(anyhow::anyhow!("provider key {id}: {err}"))
}

fn info(record: &ProviderKeyRecord) -> ProviderKeyInfo {
    ProviderKeyInfo {
        id: record.id.clone(),
        provider: record.provider.clone(),
        name: record.name.clone(),
        owner: record.owner.clone(),
        last_four: record.last_four.clone(),
        allowed_models: record.allowed_models.clone(),
        // Limits are stored positive (validated on the way in).
        monthly_token_limit: record.monthly_token_limit.map(|limit| limit.unsigned_abs()),
        monthly_usd_limit: record
            .monthly_usd_micros
            .map(|micros| micros as f64 / MICROS_PER_USD),
        created_at: record.created_at,
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

/// Checks the key's shape; the messages never repeat the key.
fn check_key(key: &str) -> Result<&str, String> {
    let n_chars = key.chars().count();
    if !(KEY_MIN_CHARS..=KEY_MAX_CHARS).contains(&n_chars) {
        return Err(format!(
            "must be {KEY_MIN_CHARS} to {KEY_MAX_CHARS} characters long"
        ));
    }
    if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain whitespace or control characters".to_owned());
    }
    Ok(key)
}

fn last_four(key: &str) -> String {
    let mut tail: Vec<char> = key.chars().rev().take(4).collect();
    tail.reverse();
    tail.into_iter().collect()
}

fn parse_models(errors: &mut ValidationErrors, raw: Vec<String>) -> Vec<String> {
    if raw.len() > MAX_ALLOWED_MODELS {
        errors.push(
            "allowed_models",
            format!("must list at most {MAX_ALLOWED_MODELS} models"),
        );
        return Vec::new();
    }
    let mut models: Vec<String> = Vec::with_capacity(raw.len());
    for (idx, model) in raw.into_iter().enumerate() {
        let field = format!("allowed_models[{idx}]");
        let n_chars = model.chars().count();
        if n_chars == 0 || n_chars > MODEL_MAX_CHARS {
            errors.push(
                field,
                format!("must be 1 to {MODEL_MAX_CHARS} characters long"),
            );
        } else if model.chars().any(|c| c.is_whitespace() || c.is_control()) {
            errors.push(field, "must not contain whitespace or control characters");
        } else if models.contains(&model) {
            errors.push(field, format!("'{model}' is listed twice"));
        } else {
            models.push(model);
        }
    }
    models
}

fn parse_token_limit(raw: Option<u64>) -> Result<Option<i64>, String> {
    match raw {
        None => Ok(None),
        Some(0) => Err("must be positive".to_owned()),
        Some(limit) => i64::try_from(limit)
            .map(Some)
            .map_err(|_| format!("must be at most {}", i64::MAX)),
    }
}

/// Dollars to whole millionths of a dollar.
fn parse_usd_limit(raw: Option<f64>) -> Result<Option<i64>, String> {
    let Some(usd) = raw else {
        return Ok(None);
    };
    if !usd.is_finite() || usd <= 0.0 {
        return Err("must be a positive number of US dollars".to_owned());
    }
    let micros = (usd * MICROS_PER_USD).round();
    if micros < 1.0 {
        return Err("must be at least 0.000001".to_owned());
    }
    // 9.2e12 dollars: far beyond any real budget, and the largest amount stored exactly enough.
    if micros >= i64::MAX as f64 {
        return Err("is too large".to_owned());
    }
    Ok(Some(micros as i64))
}

/// Now, truncated to milliseconds so values read back from the store compare equal.
fn now_millis() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use flywheel_core::{AuthMethod, Role, Tenant};
    use flywheel_store::{ConnectOptions, Store};

    use super::*;

    const OPENAI_KEY: &str = "sk-proj-Zq8WmV3xT7kLp2Nc9RbYd4Hf6Js1Ga5E";

    struct Fixture {
        store: Store,
        dir: tempfile::TempDir,
    }

    async fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("flywheel.db").display());
        let options = ConnectOptions {
            max_connections: 2,
            connect_timeout: Duration::from_secs(10),
            password: None,
        };
        let store = Store::open(&url, &options).await.unwrap();
        store.migrate().await.unwrap();
        for id in ["acme", "beta"] {
            store
                .tenants()
                .insert_tenant(&Tenant {
                    id: TenantId::parse(id).unwrap(),
                    name: id.to_owned(),
                    operator: false,
                    created_at: now_millis(),
                })
                .await
                .unwrap();
        }
        Fixture { store, dir }
    }

    fn service(fixture: &Fixture, ring: KeyRing) -> ProviderKeyService {
        ProviderKeyService::new(
            fixture.store.provider_keys(),
            Arc::new(ring),
            vec!["openai".to_owned(), "anthropic".to_owned()],
        )
    }

    fn ring(current: u8, retired: &[u8]) -> KeyRing {
        KeyRing::new([current; 32], retired.iter().map(|byte| [*byte; 32]))
    }

    fn principal(tenant: &str, subject: &str, role: Role) -> Principal {
        Principal {
            tenant_id: TenantId::parse(tenant).unwrap(),
            subject: Subject::parse(subject).unwrap(),
            role,
            operator: false,
            auth: AuthMethod::Jwt,
        }
    }

    fn input(provider: &str, name: &str, key: &str) -> NewProviderKeyInput {
        NewProviderKeyInput {
            provider: provider.to_owned(),
            name: name.to_owned(),
            key: SecretString::from(key.to_owned()),
            allowed_models: vec!["gpt-4o-mini".to_owned()],
            monthly_token_limit: Some(1_000_000),
            monthly_usd_limit: Some(12.5),
        }
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack
            .windows(needle.len())
            .any(|window| window == needle)
    }

    #[tokio::test]
    async fn round_trip_never_shows_the_key() {
        let fixture = fixture().await;
        let keys = service(&fixture, ring(1, &[]));
        let alice = principal("acme", "alice", Role::Partner);

        let created = keys
            .create(&alice, input("openai", " work ", OPENAI_KEY))
            .await
            .unwrap();
        assert_eq!(created.name, "work");
        assert_eq!(created.last_four, "Ga5E");
        assert_eq!(created.monthly_token_limit, Some(1_000_000));
        assert_eq!(created.monthly_usd_limit, Some(12.5));
        assert_eq!(keys.list(&alice).await.unwrap(), vec![created.clone()]);

        let resolved = keys.resolve(&alice, "openai").await.unwrap().unwrap();
        assert_eq!(resolved.secret.expose_secret(), OPENAI_KEY);
        assert_eq!(resolved.id, created.id);
        assert_eq!(resolved.allowed_models, vec!["gpt-4o-mini"]);
        assert!(keys.resolve(&alice, "anthropic").await.unwrap().is_none());

        let newer = keys
            .create(&alice, input("openai", "personal", "sk-second-key-1234"))
            .await
            .unwrap();
        let resolved_newer = keys.resolve(&alice, "openai").await.unwrap().unwrap();
        assert_eq!(resolved_newer.id, newer.id, "newest first");
        assert_eq!(resolved_newer.secret.expose_secret(), "sk-second-key-1234");

        for shown in [
            format!("{created:?}"),
            format!("{resolved:?}"),
            format!("{:?}", input("openai", "x", OPENAI_KEY)),
            format!("{keys:?}"),
        ] {
            assert!(!shown.contains(OPENAI_KEY), "{shown}");
        }

        let duplicate = keys
            .create(&alice, input("openai", "work", "sk-another-key-5678"))
            .await
            .unwrap_err();
        assert!(
            matches!(duplicate, ServiceError::Conflict(_)),
            "{duplicate}"
        );
    }

    #[tokio::test]
    async fn stored_rows_hold_no_plaintext_key() {
        let fixture = fixture().await;
        let keys = service(&fixture, ring(1, &[]));
        let alice = principal("acme", "alice", Role::Partner);
        let created = keys
            .create(&alice, input("openai", "work", OPENAI_KEY))
            .await
            .unwrap();

        let row = fixture
            .store
            .provider_keys()
            .get_provider_key(&alice.tenant_id, &created.id)
            .await
            .unwrap()
            .unwrap();
        let secret = OPENAI_KEY.as_bytes();
        for column in [
            &row.ciphertext,
            &row.nonce,
            &row.wrapped_data_key,
            &row.wrap_nonce,
        ] {
            assert!(!contains(column, secret));
        }
        assert_eq!(row.ciphertext.len(), secret.len() + 16, "ciphertext + tag");
        assert_eq!(row.master_key_id, ring(1, &[]).current_key_id());
        assert!(!format!("{row:?}").contains(OPENAI_KEY));

        // Nothing the database wrote to disk (main file, WAL) holds the key either.
        let mut on_disk = Vec::new();
        for entry in std::fs::read_dir(fixture.dir.path()).unwrap() {
            on_disk.extend(std::fs::read(entry.unwrap().path()).unwrap());
        }
        assert!(
            contains(&on_disk, b"Ga5E"),
            "the row is on disk (last four)"
        );
        assert!(!contains(&on_disk, secret));
        assert!(!contains(&on_disk, &secret[..secret.len() - 4]));
    }

    #[tokio::test]
    async fn invalid_input_gets_field_errors_without_the_key() {
        let fixture = fixture().await;
        let keys = service(&fixture, ring(1, &[]));
        let alice = principal("acme", "alice", Role::Partner);
        let bad = NewProviderKeyInput {
            provider: "acme-llm".to_owned(),
            name: "  ".to_owned(),
            key: SecretString::from("sk bad key with spaces".to_owned()),
            allowed_models: vec!["gpt-4o".to_owned(), String::new(), "gpt-4o".to_owned()],
            monthly_token_limit: Some(0),
            monthly_usd_limit: Some(-1.0),
        };
        let ServiceError::Validation(errors) = keys.create(&alice, bad).await.unwrap_err() else {
            panic!("expected a validation error")
        };
        let fields: Vec<&str> = errors.errors().iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "provider",
                "name",
                "key",
                "allowed_models[1]",
                "allowed_models[2]",
                "monthly_token_limit",
                "monthly_usd_limit"
            ]
        );
        assert!(!errors.to_string().contains("bad key"), "{errors}");
        assert!(errors.to_string().contains("openai, anthropic"), "{errors}");

        let short = keys
            .create(&alice, input("openai", "x", "sk-1234"))
            .await
            .unwrap_err();
        assert!(matches!(short, ServiceError::Validation(_)), "{short}");
        assert!(keys.list(&alice).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn rotation_rewraps_every_key_and_keeps_them_usable() {
        let fixture = fixture().await;
        let before = service(&fixture, ring(1, &[]));
        let alice = principal("acme", "alice", Role::Partner);
        let bob = principal("beta", "bob", Role::Admin);
        before
            .create(&alice, input("openai", "work", OPENAI_KEY))
            .await
            .unwrap();
        before
            .create(&alice, input("anthropic", "work", "sk-ant-0123456789"))
            .await
            .unwrap();
        before
            .create(&bob, input("openai", "team", "sk-bob-0123456789"))
            .await
            .unwrap();
        let originals = fixture
            .store
            .provider_keys()
            .scan_provider_keys(None, 100)
            .await
            .unwrap();

        let during = service(&fixture, ring(2, &[1]));
        let calls = Mutex::new(Vec::new());
        let report = during
            .rotate(|done, total| calls.lock().unwrap().push((done, total)))
            .await
            .unwrap();
        assert_eq!(
            report,
            RotationReport {
                rewrapped: 3,
                already_current: 0
            }
        );
        assert_eq!(*calls.lock().unwrap(), vec![(1, 3), (2, 3), (3, 3)]);

        let rows = fixture
            .store
            .provider_keys()
            .scan_provider_keys(None, 100)
            .await
            .unwrap();
        let new_id = ring(2, &[]).current_key_id().to_owned();
        for (row, original) in rows.iter().zip(&originals) {
            assert_eq!(row.master_key_id, new_id);
            assert_eq!(row.ciphertext, original.ciphertext, "ciphertext untouched");
            assert_ne!(row.wrapped_data_key, original.wrapped_data_key);
        }

        // The retired key is no longer needed.
        let after = service(&fixture, ring(2, &[]));
        let resolved = after.resolve(&alice, "openai").await.unwrap().unwrap();
        assert_eq!(resolved.secret.expose_secret(), OPENAI_KEY);
        let resolved = after.resolve(&bob, "openai").await.unwrap().unwrap();
        assert_eq!(resolved.secret.expose_secret(), "sk-bob-0123456789");
        let again = after.rotate(|_, _| {}).await.unwrap();
        assert_eq!(
            again,
            RotationReport {
                rewrapped: 0,
                already_current: 3
            }
        );
    }

    #[tokio::test]
    async fn a_wrong_key_encryption_key_fails_clearly() {
        let fixture = fixture().await;
        let alice = principal("acme", "alice", Role::Partner);
        service(&fixture, ring(1, &[]))
            .create(&alice, input("openai", "work", OPENAI_KEY))
            .await
            .unwrap();
        let stored_id = ring(1, &[]).current_key_id().to_owned();

        let wrong = service(&fixture, ring(9, &[]));
        let err = wrong.resolve(&alice, "openai").await.unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, ServiceError::Internal(_)), "{message}");
        assert!(message.contains(&stored_id), "{message}");
        assert!(
            message.contains("secrets.retired_encryption_keys"),
            "{message}"
        );
        let rotation = wrong.rotate(|_, _| {}).await.unwrap_err().to_string();
        assert!(rotation.contains(&stored_id), "{rotation}");
    }

    #[tokio::test]
    async fn tenants_and_owners_are_isolated() {
        let fixture = fixture().await;
        let keys = service(&fixture, ring(1, &[]));
        let alice = principal("acme", "alice", Role::Partner);
        let bob = principal("acme", "bob", Role::Partner);
        let acme_admin = principal("acme", "root", Role::Admin);
        let beta_alice = principal("beta", "alice", Role::Admin);
        let created = keys
            .create(&alice, input("openai", "work", OPENAI_KEY))
            .await
            .unwrap();

        // Another user of the tenant, and a namesake admin of another tenant, see nothing.
        for other in [&bob, &beta_alice] {
            assert!(keys.list(other).await.unwrap().is_empty());
            assert!(keys.resolve(other, "openai").await.unwrap().is_none());
            let err = keys.delete(other, &created.id).await.unwrap_err();
            assert!(matches!(err, ServiceError::NotFound(_)), "{err}");
        }
        // The tenant's admin lists it but cannot use it.
        let listed = keys.list(&acme_admin).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].owner.as_str(), "alice");
        assert!(keys.resolve(&acme_admin, "openai").await.unwrap().is_none());

        // A ciphertext copied into a row of another owner does not open there.
        let provider_keys = fixture.store.provider_keys();
        let mut copied = provider_keys
            .get_provider_key(&alice.tenant_id, &created.id)
            .await
            .unwrap()
            .unwrap();
        copied.id = uuid::Uuid::now_v7().to_string();
        copied.owner = bob.subject.clone();
        provider_keys.insert_provider_key(&copied).await.unwrap();
        let err = keys.resolve(&bob, "openai").await.unwrap_err();
        assert!(err.to_string().contains("authentication"), "{err}");
        keys.delete(&bob, &copied.id).await.unwrap();

        keys.delete(&acme_admin, &created.id).await.unwrap();
        assert!(keys.resolve(&alice, "openai").await.unwrap().is_none());
        let again = keys.delete(&alice, &created.id).await.unwrap_err();
        assert!(matches!(again, ServiceError::NotFound(_)), "{again}");
    }
}
