//! Flywheel configuration, layered: built-in defaults → `flywheel.toml` → `FLYWHEEL_…`
//! environment variables (`__` separates nesting levels) → command-line flags.
//!
//! Architecture invariant: loading is the only I/O here (reading the optional file and the
//! environment). Unknown keys are errors that name the key and where it came from. Secrets are
//! never stored as values in [`Config`]; they are [`SecretRef`]s resolved when needed, and
//! `Debug`/`Serialize` of the configuration never show a secret.

mod analytics;
mod gateway;
mod knowledge;
mod load;
mod models;
mod power100;
mod secret;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use analytics::{AnalyticsConfig, TrainingConfig};
pub use gateway::{
    AliasConfig, Budget, BudgetsConfig, GatewayConfig, LimitsConfig, PriceOverride, ProviderConfig,
    ProviderKindConfig, TenantGatewayConfig, ValidationConfig, VariantConfig,
};
pub use knowledge::{KnowledgeBackend, KnowledgeConfig};
pub use load::{ConfigError, Overrides, NON_CONFIG_ENV_VARS};
pub use models::{
    ConciergeConfig, LocalChatModelConfig, LocalEmbeddingModelConfig, ModelsConfig,
    TenantConciergeConfig, DEFAULT_CHAT_MODEL, DEFAULT_EMBEDDING_MODEL,
};
pub use power100::{MatchWeightsSection, Power100Config, PowerConfidenceSection};
pub use secret::{redact_url_password, SecretRef, SecretRefError};

/// The effective configuration of one Flywheel process.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the embedded defaults keep their files: the SQLite database, the lake, the master key.
    pub data_dir: PathBuf,
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub lake: LakeConfig,
    pub ingest: IngestConfig,
    pub retention: RetentionConfig,
    pub log: LogConfig,
    pub features: FeatureFlags,
    pub auth: AuthConfig,
    pub secrets: SecretsConfig,
    pub bootstrap: BootstrapConfig,
    pub gateway: GatewayConfig,
    pub limits: LimitsConfig,
    pub models: ModelsConfig,
    pub concierge: ConciergeConfig,
    pub analytics: AnalyticsConfig,
    pub training: TrainingConfig,
    pub knowledge: KnowledgeConfig,
    pub power100: Power100Config,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on; port 0 picks a free port.
    pub bind: SocketAddr,
    /// Largest accepted request body in bytes; larger bodies get 413.
    pub max_body_bytes: usize,
    /// Origins allowed by CORS (exact matches, e.g. `https://app.example.com`). Empty: CORS off.
    pub cors_allowed_origins: Vec<String>,
    /// How long in-flight requests may take to finish after SIGINT/SIGTERM.
    #[serde(with = "humantime_serde_compat")]
    pub shutdown_grace: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` (default: `<data_dir>/flywheel.db`) or `postgres://user@host:port/db`.
    pub url: Option<String>,
    /// Password for PostgreSQL, kept out of the URL: `{ env = "VAR" }` or `{ file = "PATH" }`.
    pub password: Option<SecretRef>,
    pub max_connections: u32,
    #[serde(with = "humantime_serde_compat")]
    pub connect_timeout: Duration,
}

/// Which database backend a URL selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DatabaseBackend {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LakeConfig {
    /// A local directory (default `<data_dir>/lake`) or `s3://bucket/prefix`.
    pub url: Option<String>,
    /// Archive as soon as this many interactions wait…
    pub flush_max_rows: u32,
    /// …or when the oldest waiting one is this old.
    #[serde(with = "humantime_serde_compat")]
    pub flush_max_age: Duration,
    /// How often the archiver checks.
    #[serde(with = "humantime_serde_compat")]
    pub flush_interval: Duration,
    /// How often `serve` rewrites `processed/outcomes/` when new data arrived (0s: never).
    #[serde(with = "humantime_serde_compat")]
    pub derive_interval: Duration,
    /// How often `serve` compacts small files (0s: never; `flywheel lake compact` any time).
    #[serde(with = "humantime_serde_compat")]
    pub compact_interval: Duration,
    /// Size compaction aims for per output file.
    pub compact_target_bytes: u64,
    pub s3: S3Config,
}

/// Settings for an `s3://` lake. Absent credentials fall back to the standard AWS
/// environment variables (`AWS_ACCESS_KEY_ID`, …).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    /// For S3-compatible stores (MinIO, moto, Ceph): `http://127.0.0.1:9000`.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<SecretRef>,
    pub secret_access_key: Option<SecretRef>,
    /// Allow a plain-HTTP endpoint (local test stores only).
    pub allow_http: bool,
}

/// How client IP addresses are anonymised before they are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientIpMode {
    /// Keep the network only: IPv4 /24, IPv6 /48.
    Truncate,
    /// Do not store the address.
    Drop,
    /// Replace it with a keyed hash (HMAC-SHA256 under a sub-key of the master key).
    Hash,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Most interactions accepted in one `POST /v1/interactions` batch.
    pub max_batch_items: usize,
    /// Interactions that may wait for the database at once (about 1.5 KB each); beyond it
    /// writers get 503 + Retry-After instead of the server growing its memory.
    pub max_queued_rows: usize,
    /// Most interactions committed in one transaction (group commit).
    pub max_commit_rows: usize,
    pub client_ip: ClientIpMode,
    /// Proxies (IP or CIDR) whose `X-Forwarded-For` is trusted for the client address.
    pub trusted_proxies: Vec<String>,
    /// Written into `metadata.environment` when an interaction has none.
    pub environment: String,
    /// Written into `metadata.app_version` when an interaction has none.
    pub app_version: Option<String>,
    /// Extra field names redacted (besides password, api_key, authorization, token, secret)
    /// when API calls are tracked.
    pub sensitive_fields: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Delete operational copies of interactions older than this many days once they are in
    /// the lake (the lake keeps history). 0 keeps them forever.
    pub operational_days: u32,
}

impl Default for LakeConfig {
    fn default() -> LakeConfig {
        LakeConfig {
            url: None,
            flush_max_rows: 10_000,
            flush_max_age: Duration::from_secs(30),
            flush_interval: Duration::from_secs(5),
            derive_interval: Duration::from_secs(15 * 60),
            compact_interval: Duration::from_secs(3600),
            compact_target_bytes: 128 * 1024 * 1024,
            s3: S3Config::default(),
        }
    }
}

impl Default for IngestConfig {
    fn default() -> IngestConfig {
        IngestConfig {
            max_batch_items: 1_000,
            max_queued_rows: 50_000,
            max_commit_rows: 10_000,
            client_ip: ClientIpMode::Truncate,
            trusted_proxies: Vec::new(),
            environment: "development".to_owned(),
            app_version: None,
            sensitive_fields: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A `tracing` filter: `info`, `debug`, or directives such as `info,flywheel_http=debug`.
    pub level: String,
    pub format: LogFormat,
}

/// The seed plan's feature flags.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeatureFlags {
    /// Capture interactions at all.
    pub data_collection: bool,
    /// Accept outcomes and feedback linked to earlier interactions.
    pub outcome_tracking: bool,
    /// Record every API request as an `api_call` interaction.
    pub api_call_tracking: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// HS256 secret for JWT bearer tokens. Absent: derived from the master key.
    pub jwt_secret: Option<SecretRef>,
    /// `iss` claim written into and required from tokens.
    pub jwt_issuer: String,
    /// Longest lifetime `flywheel token issue` accepts.
    #[serde(with = "humantime_serde_compat")]
    pub max_token_ttl: Duration,
    /// How long an API key (and a user's provider key) read from the database is reused
    /// without reading it again (then served stale for as long again while one request reads
    /// it anew). Revoking through one replica takes effect there at once and on the others
    /// within twice this time. `0s` reads on every request.
    #[serde(with = "humantime_serde_compat")]
    pub key_cache_ttl: Duration,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecretsConfig {
    /// 32 random bytes, base64-encoded. Absent: `<data_dir>/master.key`, generated on first
    /// start. Every replica of one installation must use the same key.
    pub master_key: Option<SecretRef>,
    /// Key-encryption key (KEK) for stored provider keys: 32 random bytes, base64-encoded.
    /// Absent: derived from the master key.
    pub encryption_key: Option<SecretRef>,
    /// Earlier KEKs, still accepted to unwrap stored keys until `flywheel keys rotate-master`
    /// has re-wrapped every record under the current one.
    pub retired_encryption_keys: Vec<SecretRef>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BootstrapConfig {
    /// Id of the operator tenant created on first start with an empty database.
    pub tenant_id: String,
    pub tenant_name: String,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            data_dir: PathBuf::from("./data"),
            server: ServerConfig::default(),
            database: DatabaseConfig::default(),
            lake: LakeConfig::default(),
            ingest: IngestConfig::default(),
            retention: RetentionConfig::default(),
            log: LogConfig::default(),
            features: FeatureFlags::default(),
            auth: AuthConfig::default(),
            secrets: SecretsConfig::default(),
            bootstrap: BootstrapConfig::default(),
            gateway: GatewayConfig::default(),
            limits: LimitsConfig::default(),
            models: ModelsConfig::default(),
            concierge: ConciergeConfig::default(),
            analytics: AnalyticsConfig::default(),
            training: TrainingConfig::default(),
            knowledge: KnowledgeConfig::default(),
            power100: Power100Config::default(),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 2 * 1024 * 1024,
            cors_allowed_origins: Vec::new(),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> DatabaseConfig {
        DatabaseConfig {
            url: None,
            password: None,
            max_connections: 16,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

impl Default for LogConfig {
    fn default() -> LogConfig {
        LogConfig {
            level: "info".to_owned(),
            format: LogFormat::Pretty,
        }
    }
}

impl Default for FeatureFlags {
    fn default() -> FeatureFlags {
        FeatureFlags {
            data_collection: true,
            outcome_tracking: true,
            api_call_tracking: false,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> AuthConfig {
        AuthConfig {
            jwt_secret: None,
            jwt_issuer: "flywheel".to_owned(),
            max_token_ttl: Duration::from_secs(30 * 24 * 3600),
            key_cache_ttl: Duration::from_secs(5),
        }
    }
}

impl Default for BootstrapConfig {
    fn default() -> BootstrapConfig {
        BootstrapConfig {
            tenant_id: "default".to_owned(),
            tenant_name: "Default".to_owned(),
        }
    }
}

impl Config {
    /// The database URL in effect: the configured one or the SQLite file in the data directory.
    pub fn database_url(&self) -> String {
        match &self.database.url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.data_dir.join("flywheel.db").display()),
        }
    }

    pub fn database_backend(&self) -> Result<DatabaseBackend, ConfigError> {
        let url = self.database_url();
        if url.starts_with("sqlite:") {
            Ok(DatabaseBackend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(DatabaseBackend::Postgres)
        } else {
            Err(ConfigError::Invalid {
                key: "database.url".to_owned(),
                problem: format!(
                    "'{}' is neither sqlite://PATH nor postgres://…",
                    redact_url_password(&url)
                ),
            })
        }
    }

    /// The lake location in effect: the configured URL or `<data_dir>/lake`.
    pub fn lake_url(&self) -> String {
        match &self.lake.url {
            Some(url) => url.clone(),
            None => self.data_dir.join("lake").display().to_string(),
        }
    }

    /// The master key reference in effect, and whether it is the default generated file.
    pub fn master_key_ref(&self) -> (SecretRef, bool) {
        match &self.secrets.master_key {
            Some(secret) => (secret.clone(), false),
            None => (
                SecretRef::File {
                    file: self.data_dir.join("master.key"),
                },
                true,
            ),
        }
    }

    /// The effective configuration as TOML, with defaults filled in and secrets redacted.
    pub fn to_redacted_toml(&self) -> Result<String, ConfigError> {
        let mut shown = self.clone();
        shown.database.url = Some(redact_url_password(&self.database_url()));
        shown.lake.url = Some(self.lake_url());
        shown.knowledge.pgvector_url = self
            .knowledge
            .pgvector_url
            .as_deref()
            .map(redact_url_password);
        shown.secrets.master_key = Some(self.master_key_ref().0);
        toml::to_string_pretty(&shown).map_err(|err| ConfigError::Invalid {
            key: "<all>".to_owned(),
            problem: err.to_string(),
        })
    }
}

/// Durations written the human way in files and environment (`30s`, `1h`, `500ms`).
pub(crate) mod humantime_serde_compat {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&humantime::format_duration(*duration).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let raw = String::deserialize(deserializer)?;
        humantime::parse_duration(&raw).map_err(|err| {
            serde::de::Error::custom(format!(
                "'{raw}' is not a duration ({err}); write e.g. 30s, 5m or 1h"
            ))
        })
    }
}
