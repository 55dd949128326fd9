//! Storage of users' own provider API keys ("bring your own key"), sealed by the services layer.
//!
//! The store never sees a plaintext key: it keeps the AES-256-GCM ciphertext, the per-record
//! data key wrapped by a key-encryption key, and that key's id. Binary columns are `BLOB` in
//! SQLite and `BYTEA` in PostgreSQL; sqlx decodes both as `Vec<u8>`, so one SQL text serves both.
//! Every read is tenant-scoped except the paged scan and the re-wrap, which exist for key
//! rotation (`flywheel keys rotate-master`) and touch every tenant by design.

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use flywheel_core::{Subject, TenantId};
use sqlx::FromRow;

use crate::identity::{PgBackend, SqliteBackend};
use crate::StoreError;

/// A stored provider key: its metadata and its sealed secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderKeyRecord {
    pub id: String,
    pub tenant_id: TenantId,
    /// The subject of the user who stored the key.
    pub owner: Subject,
    pub provider: String,
    pub name: String,
    /// The key's last four characters, to tell keys apart in listings.
    pub last_four: String,
    /// The key encrypted under the data key.
    pub ciphertext: Vec<u8>,
    pub nonce: Vec<u8>,
    /// The data key encrypted under the key-encryption key `master_key_id`.
    pub wrapped_data_key: Vec<u8>,
    pub wrap_nonce: Vec<u8>,
    pub master_key_id: String,
    /// Models this key may be used for; empty means any.
    pub allowed_models: Vec<String>,
    pub monthly_token_limit: Option<i64>,
    /// Monthly spending limit in millionths of a US dollar.
    pub monthly_usd_micros: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A data key wrapped again, under another key-encryption key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewrappedDataKey {
    pub wrapped_data_key: Vec<u8>,
    pub wrap_nonce: Vec<u8>,
    pub master_key_id: String,
    pub updated_at: DateTime<Utc>,
}

/// Provider keys.
#[async_trait]
pub trait ProviderKeyStore: Send + Sync {
    /// Inserts a key; `StoreError::Conflict` when the owner already has a key with this name
    /// for this provider.
    async fn insert_provider_key(&self, key: &ProviderKeyRecord) -> Result<(), StoreError>;
    /// The tenant's keys (only `owner`'s when given), newest first.
    async fn list_provider_keys(
        &self,
        tenant_id: &TenantId,
        owner: Option<&Subject>,
    ) -> Result<Vec<ProviderKeyRecord>, StoreError>;
    async fn get_provider_key(
        &self,
        tenant_id: &TenantId,
        id: &str,
    ) -> Result<Option<ProviderKeyRecord>, StoreError>;
    /// One owner's keys for one provider, newest first.
    async fn find_provider_keys(
        &self,
        tenant_id: &TenantId,
        owner: &Subject,
        provider: &str,
    ) -> Result<Vec<ProviderKeyRecord>, StoreError>;
    /// Deletes the key; returns whether the tenant had it.
    async fn delete_provider_key(&self, tenant_id: &TenantId, id: &str)
        -> Result<bool, StoreError>;
    /// How many keys all tenants hold together (for rotation progress).
    async fn count_all_provider_keys(&self) -> Result<u64, StoreError>;
    /// Up to `limit` keys of every tenant with ids greater than `after_id`, in id order: one
    /// page of a scan over all keys (for rotation).
    async fn scan_provider_keys(
        &self,
        after_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ProviderKeyRecord>, StoreError>;
    /// Replaces the wrapped data key of key `id` if it is still wrapped under
    /// `previous_master_key_id`; returns whether a row changed (false when the key was deleted
    /// or re-wrapped by someone else meanwhile).
    async fn update_provider_key_wrap(
        &self,
        id: &str,
        previous_master_key_id: &str,
        rewrapped: &RewrappedDataKey,
    ) -> Result<bool, StoreError>;
}

#[derive(FromRow)]
struct ProviderKeyRow {
    id: String,
    tenant_id: String,
    owner: String,
    provider: String,
    name: String,
    last_four: String,
    ciphertext: Vec<u8>,
    nonce: Vec<u8>,
    wrapped_data_key: Vec<u8>,
    wrap_nonce: Vec<u8>,
    master_key_id: String,
    allowed_models: String,
    monthly_token_limit: Option<i64>,
    monthly_usd_micros: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

const TABLE: &str = "provider_keys";

const PROVIDER_KEY_COLUMNS: &str =
    "id, tenant_id, owner, provider, name, last_four, ciphertext, nonce, wrapped_data_key, \
     wrap_nonce, master_key_id, allowed_models, monthly_token_limit, monthly_usd_micros, \
     created_at, updated_at";

fn corrupt(err: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        table: TABLE,
        problem: err.to_string(),
    }
}

fn millis_to_time(millis: i64) -> Result<DateTime<Utc>, StoreError> {
    Utc.timestamp_millis_opt(millis)
        .single()
        .ok_or_else(|| corrupt(format!("timestamp {millis} out of range")))
}

fn models_to_json(models: &[String]) -> String {
    // Serialising a list of strings to JSON cannot fail.
    serde_json::to_string(models)
        .unwrap_or_else(|_| unreachable!("a list of strings always serialises"))
}

impl TryFrom<ProviderKeyRow> for ProviderKeyRecord {
    type Error = StoreError;

    fn try_from(row: ProviderKeyRow) -> Result<ProviderKeyRecord, StoreError> {
        Ok(ProviderKeyRecord {
            id: row.id,
            tenant_id: TenantId::parse(&row.tenant_id).map_err(corrupt)?,
            owner: Subject::parse(&row.owner).map_err(corrupt)?,
            provider: row.provider,
            name: row.name,
            last_four: row.last_four,
            ciphertext: row.ciphertext,
            nonce: row.nonce,
            wrapped_data_key: row.wrapped_data_key,
            wrap_nonce: row.wrap_nonce,
            master_key_id: row.master_key_id,
            allowed_models: serde_json::from_str(&row.allowed_models)
                .map_err(|err| corrupt(format!("allowed_models: {err}")))?,
            monthly_token_limit: row.monthly_token_limit,
            monthly_usd_micros: row.monthly_usd_micros,
            created_at: millis_to_time(row.created_at)?,
            updated_at: millis_to_time(row.updated_at)?,
        })
    }
}

/// One implementation for both backends: the SQL below is valid for SQLite and PostgreSQL.
macro_rules! impl_provider_key_store {
    ($store:ty) => {
        #[async_trait]
        impl ProviderKeyStore for $store {
            async fn insert_provider_key(&self, key: &ProviderKeyRecord) -> Result<(), StoreError> {
                sqlx::query(&format!(
                    "INSERT INTO provider_keys ({PROVIDER_KEY_COLUMNS}) VALUES \
                     ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
                ))
                .bind(&key.id)
                .bind(key.tenant_id.as_str())
                .bind(key.owner.as_str())
                .bind(&key.provider)
                .bind(&key.name)
                .bind(&key.last_four)
                .bind(key.ciphertext.as_slice())
                .bind(key.nonce.as_slice())
                .bind(key.wrapped_data_key.as_slice())
                .bind(key.wrap_nonce.as_slice())
                .bind(&key.master_key_id)
                .bind(models_to_json(&key.allowed_models))
                .bind(key.monthly_token_limit)
                .bind(key.monthly_usd_micros)
                .bind(key.created_at.timestamp_millis())
                .bind(key.updated_at.timestamp_millis())
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn list_provider_keys(
                &self,
                tenant_id: &TenantId,
                owner: Option<&Subject>,
            ) -> Result<Vec<ProviderKeyRecord>, StoreError> {
                let rows: Vec<ProviderKeyRow> = match owner {
                    Some(owner) => {
                        sqlx::query_as(&format!(
                            "SELECT {PROVIDER_KEY_COLUMNS} FROM provider_keys \
                             WHERE tenant_id = $1 AND owner = $2 \
                             ORDER BY created_at DESC, id DESC"
                        ))
                        .bind(tenant_id.as_str())
                        .bind(owner.as_str())
                        .fetch_all(&self.pool)
                        .await?
                    }
                    None => {
                        sqlx::query_as(&format!(
                            "SELECT {PROVIDER_KEY_COLUMNS} FROM provider_keys \
                             WHERE tenant_id = $1 ORDER BY created_at DESC, id DESC"
                        ))
                        .bind(tenant_id.as_str())
                        .fetch_all(&self.pool)
                        .await?
                    }
                };
                rows.into_iter().map(ProviderKeyRecord::try_from).collect()
            }

            async fn get_provider_key(
                &self,
                tenant_id: &TenantId,
                id: &str,
            ) -> Result<Option<ProviderKeyRecord>, StoreError> {
                let row: Option<ProviderKeyRow> = sqlx::query_as(&format!(
                    "SELECT {PROVIDER_KEY_COLUMNS} FROM provider_keys \
                     WHERE tenant_id = $1 AND id = $2"
                ))
                .bind(tenant_id.as_str())
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
                row.map(ProviderKeyRecord::try_from).transpose()
            }

            async fn find_provider_keys(
                &self,
                tenant_id: &TenantId,
                owner: &Subject,
                provider: &str,
            ) -> Result<Vec<ProviderKeyRecord>, StoreError> {
                let rows: Vec<ProviderKeyRow> = sqlx::query_as(&format!(
                    "SELECT {PROVIDER_KEY_COLUMNS} FROM provider_keys \
                     WHERE tenant_id = $1 AND owner = $2 AND provider = $3 \
                     ORDER BY created_at DESC, id DESC"
                ))
                .bind(tenant_id.as_str())
                .bind(owner.as_str())
                .bind(provider)
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter().map(ProviderKeyRecord::try_from).collect()
            }

            async fn delete_provider_key(
                &self,
                tenant_id: &TenantId,
                id: &str,
            ) -> Result<bool, StoreError> {
                let result =
                    sqlx::query("DELETE FROM provider_keys WHERE tenant_id = $1 AND id = $2")
                        .bind(tenant_id.as_str())
                        .bind(id)
                        .execute(&self.pool)
                        .await?;
                Ok(result.rows_affected() > 0)
            }

            async fn count_all_provider_keys(&self) -> Result<u64, StoreError> {
                let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM provider_keys")
                    .fetch_one(&self.pool)
                    .await?;
                u64::try_from(count).map_err(corrupt)
            }

            async fn scan_provider_keys(
                &self,
                after_id: Option<&str>,
                limit: u32,
            ) -> Result<Vec<ProviderKeyRecord>, StoreError> {
                // Every id is greater than the empty string, so `None` starts at the beginning.
                let rows: Vec<ProviderKeyRow> = sqlx::query_as(&format!(
                    "SELECT {PROVIDER_KEY_COLUMNS} FROM provider_keys \
                     WHERE id > $1 ORDER BY id LIMIT $2"
                ))
                .bind(after_id.unwrap_or(""))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter().map(ProviderKeyRecord::try_from).collect()
            }

            async fn update_provider_key_wrap(
                &self,
                id: &str,
                previous_master_key_id: &str,
                rewrapped: &RewrappedDataKey,
            ) -> Result<bool, StoreError> {
                let result = sqlx::query(
                    "UPDATE provider_keys SET wrapped_data_key = $3, wrap_nonce = $4, \
                     master_key_id = $5, updated_at = $6 WHERE id = $1 AND master_key_id = $2",
                )
                .bind(id)
                .bind(previous_master_key_id)
                .bind(rewrapped.wrapped_data_key.as_slice())
                .bind(rewrapped.wrap_nonce.as_slice())
                .bind(&rewrapped.master_key_id)
                .bind(rewrapped.updated_at.timestamp_millis())
                .execute(&self.pool)
                .await?;
                Ok(result.rows_affected() > 0)
            }
        }
    };
}

impl_provider_key_store!(SqliteBackend);
impl_provider_key_store!(PgBackend);
