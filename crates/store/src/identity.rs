//! Storage of tenants and API keys.

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use flywheel_core::{ApiKeyPrefix, Role, Subject, Tenant, TenantId};
use sqlx::FromRow;

use crate::StoreError;

/// Tenants (organizations).
#[async_trait]
pub trait TenantStore: Send + Sync {
    /// Inserts a tenant; `StoreError::Conflict` when the id is taken.
    async fn insert_tenant(&self, tenant: &Tenant) -> Result<(), StoreError>;
    async fn get_tenant(&self, id: &TenantId) -> Result<Option<Tenant>, StoreError>;
    /// All tenants, oldest first.
    async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError>;
    async fn count_tenants(&self) -> Result<i64, StoreError>;
}

/// A key to insert: the hash only, never the secret.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub id: String,
    pub tenant_id: TenantId,
    pub prefix: ApiKeyPrefix,
    pub secret_hash: String,
    pub name: String,
    pub role: Role,
    pub subject: Subject,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

/// A stored key as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub id: String,
    pub tenant_id: TenantId,
    pub prefix: ApiKeyPrefix,
    pub secret_hash: String,
    pub name: String,
    pub role: Role,
    pub subject: Subject,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// Whether the key's tenant is the operator tenant.
    pub tenant_operator: bool,
}

/// API keys. Every read except the lookup by prefix (used to authenticate) is tenant-scoped.
#[async_trait]
pub trait ApiKeyStore: Send + Sync {
    async fn insert_api_key(&self, key: &NewApiKey) -> Result<(), StoreError>;
    /// The key with this prefix, revoked or not, with its tenant's operator flag.
    async fn find_api_key_by_prefix(
        &self,
        prefix: &ApiKeyPrefix,
    ) -> Result<Option<ApiKeyRecord>, StoreError>;
    /// The tenant's keys, newest first.
    async fn list_api_keys(&self, tenant_id: &TenantId) -> Result<Vec<ApiKeyRecord>, StoreError>;
    /// Marks the key revoked; returns the record, or `None` when the tenant has no such key.
    /// Revoking twice keeps the first revocation time.
    async fn revoke_api_key(
        &self,
        tenant_id: &TenantId,
        id: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<ApiKeyRecord>, StoreError>;
}

#[derive(FromRow)]
struct TenantRow {
    id: String,
    name: String,
    operator: bool,
    created_at: i64,
}

#[derive(FromRow)]
struct ApiKeyRow {
    id: String,
    tenant_id: String,
    prefix: String,
    secret_hash: String,
    name: String,
    role: String,
    subject: String,
    created_by: String,
    created_at: i64,
    revoked_at: Option<i64>,
    tenant_operator: bool,
}

fn millis_to_time(table: &'static str, millis: i64) -> Result<DateTime<Utc>, StoreError> {
    Utc.timestamp_millis_opt(millis)
        .single()
        .ok_or_else(|| StoreError::Corrupt {
            table,
            problem: format!("timestamp {millis} out of range"),
        })
}

fn corrupt(table: &'static str, err: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        table,
        problem: err.to_string(),
    }
}

impl TryFrom<TenantRow> for Tenant {
    type Error = StoreError;

    fn try_from(row: TenantRow) -> Result<Tenant, StoreError> {
        Ok(Tenant {
            id: TenantId::parse(&row.id).map_err(|e| corrupt("tenants", e))?,
            name: row.name,
            operator: row.operator,
            created_at: millis_to_time("tenants", row.created_at)?,
        })
    }
}

impl TryFrom<ApiKeyRow> for ApiKeyRecord {
    type Error = StoreError;

    fn try_from(row: ApiKeyRow) -> Result<ApiKeyRecord, StoreError> {
        Ok(ApiKeyRecord {
            id: row.id,
            tenant_id: TenantId::parse(&row.tenant_id).map_err(|e| corrupt("api_keys", e))?,
            prefix: ApiKeyPrefix::parse(&row.prefix).map_err(|e| corrupt("api_keys", e))?,
            secret_hash: row.secret_hash,
            name: row.name,
            role: row.role.parse().map_err(|e| corrupt("api_keys", e))?,
            subject: Subject::parse(&row.subject).map_err(|e| corrupt("api_keys", e))?,
            created_by: row.created_by,
            created_at: millis_to_time("api_keys", row.created_at)?,
            revoked_at: row
                .revoked_at
                .map(|millis| millis_to_time("api_keys", millis))
                .transpose()?,
            tenant_operator: row.tenant_operator,
        })
    }
}

const API_KEY_COLUMNS: &str =
    "k.id, k.tenant_id, k.prefix, k.secret_hash, k.name, k.role, k.subject, \
     k.created_by, k.created_at, k.revoked_at, t.operator AS tenant_operator";

pub(crate) struct SqliteBackend {
    pub(crate) pool: sqlx::SqlitePool,
    /// One connection for interaction writes: SQLite has one writer anyway, and a dedicated
    /// connection keeps the indexes' hot pages in *its* page cache between commits.
    pub(crate) writer: sqlx::SqlitePool,
}

pub(crate) struct PgBackend {
    pub(crate) pool: sqlx::PgPool,
    /// The same pool: PostgreSQL serialises interaction commits with an advisory lock.
    pub(crate) writer: sqlx::PgPool,
}

/// One implementation for both backends: the SQL below is valid for SQLite and PostgreSQL.
macro_rules! impl_identity_stores {
    ($store:ty) => {
        #[async_trait]
        impl TenantStore for $store {
            async fn insert_tenant(&self, tenant: &Tenant) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO tenants (id, name, operator, created_at) VALUES ($1, $2, $3, $4)",
                )
                .bind(tenant.id.as_str())
                .bind(&tenant.name)
                .bind(tenant.operator)
                .bind(tenant.created_at.timestamp_millis())
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn get_tenant(&self, id: &TenantId) -> Result<Option<Tenant>, StoreError> {
                let row: Option<TenantRow> = sqlx::query_as(
                    "SELECT id, name, operator, created_at FROM tenants WHERE id = $1",
                )
                .bind(id.as_str())
                .fetch_optional(&self.pool)
                .await?;
                row.map(Tenant::try_from).transpose()
            }

            async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError> {
                let rows: Vec<TenantRow> = sqlx::query_as(
                    "SELECT id, name, operator, created_at FROM tenants ORDER BY created_at, id",
                )
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter().map(Tenant::try_from).collect()
            }

            async fn count_tenants(&self) -> Result<i64, StoreError> {
                let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tenants")
                    .fetch_one(&self.pool)
                    .await?;
                Ok(count)
            }
        }

        #[async_trait]
        impl ApiKeyStore for $store {
            async fn insert_api_key(&self, key: &NewApiKey) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO api_keys (id, tenant_id, prefix, secret_hash, name, role, subject, \
                     created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(&key.id)
                .bind(key.tenant_id.as_str())
                .bind(key.prefix.as_str())
                .bind(&key.secret_hash)
                .bind(&key.name)
                .bind(key.role.as_str())
                .bind(key.subject.as_str())
                .bind(&key.created_by)
                .bind(key.created_at.timestamp_millis())
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn find_api_key_by_prefix(
                &self,
                prefix: &ApiKeyPrefix,
            ) -> Result<Option<ApiKeyRecord>, StoreError> {
                let row: Option<ApiKeyRow> = sqlx::query_as(&format!(
                    "SELECT {API_KEY_COLUMNS} FROM api_keys k JOIN tenants t ON t.id = k.tenant_id \
                     WHERE k.prefix = $1"
                ))
                .bind(prefix.as_str())
                .fetch_optional(&self.pool)
                .await?;
                row.map(ApiKeyRecord::try_from).transpose()
            }

            async fn list_api_keys(
                &self,
                tenant_id: &TenantId,
            ) -> Result<Vec<ApiKeyRecord>, StoreError> {
                let rows: Vec<ApiKeyRow> = sqlx::query_as(&format!(
                    "SELECT {API_KEY_COLUMNS} FROM api_keys k JOIN tenants t ON t.id = k.tenant_id \
                     WHERE k.tenant_id = $1 ORDER BY k.created_at DESC, k.id DESC"
                ))
                .bind(tenant_id.as_str())
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter().map(ApiKeyRecord::try_from).collect()
            }

            async fn revoke_api_key(
                &self,
                tenant_id: &TenantId,
                id: &str,
                at: DateTime<Utc>,
            ) -> Result<Option<ApiKeyRecord>, StoreError> {
                sqlx::query(
                    "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $3) \
                     WHERE tenant_id = $1 AND id = $2",
                )
                .bind(tenant_id.as_str())
                .bind(id)
                .bind(at.timestamp_millis())
                .execute(&self.pool)
                .await?;
                let row: Option<ApiKeyRow> = sqlx::query_as(&format!(
                    "SELECT {API_KEY_COLUMNS} FROM api_keys k JOIN tenants t ON t.id = k.tenant_id \
                     WHERE k.tenant_id = $1 AND k.id = $2"
                ))
                .bind(tenant_id.as_str())
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
                row.map(ApiKeyRecord::try_from).transpose()
            }
        }
    };
}

impl_identity_stores!(SqliteBackend);
impl_identity_stores!(PgBackend);
