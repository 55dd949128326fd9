//! Configuration of the LLM gateway (`[gateway]`: providers, aliases, validation, per-tenant
//! settings) and of its rate limits (`[limits]`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::humantime_serde_compat;
use crate::SecretRef;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Upstream providers by name; models are addressed as `<name>/<model>`.
    pub providers: BTreeMap<String, ProviderConfig>,
    /// Model aliases: a name clients use instead of `provider/model`.
    pub aliases: BTreeMap<String, AliasConfig>,
    /// Retries per provider on connect errors, 429 and 5xx, before falling back.
    pub max_retries: u32,
    /// First retry delay; doubled each time, with full jitter, up to `retry_max_delay`.
    #[serde(with = "humantime_serde_compat")]
    pub retry_base_delay: Duration,
    #[serde(with = "humantime_serde_compat")]
    pub retry_max_delay: Duration,
    /// Output tokens reserved against token budgets when a request sets no `max_tokens`.
    pub default_output_tokens_estimate: u32,
    /// Request validation defaults (the Engify plan's limits); per tenant in `tenants`.
    pub validation: ValidationConfig,
    /// Whether users without their own key may use the platform's keys (per tenant below).
    pub allow_platform_keys: bool,
    /// Prices overriding or adding to the shipped price table (`crates/llm/data/prices.toml`).
    pub prices: Vec<PriceOverride>,
    /// Per-tenant settings, by tenant id.
    pub tenants: BTreeMap<String, TenantGatewayConfig>,
}

impl Default for GatewayConfig {
    fn default() -> GatewayConfig {
        let mut providers = BTreeMap::new();
        providers.insert(
            "openai".to_owned(),
            ProviderConfig::http(
                ProviderKindConfig::Openai,
                "https://api.openai.com/v1",
                "OPENAI_API_KEY",
            ),
        );
        providers.insert(
            "anthropic".to_owned(),
            ProviderConfig::http(
                ProviderKindConfig::Anthropic,
                "https://api.anthropic.com",
                "ANTHROPIC_API_KEY",
            ),
        );
        providers.insert(
            "gemini".to_owned(),
            ProviderConfig::http(
                ProviderKindConfig::Gemini,
                "https://generativelanguage.googleapis.com",
                "GEMINI_API_KEY",
            ),
        );
        providers.insert(
            "bedrock".to_owned(),
            ProviderConfig {
                kind: ProviderKindConfig::Bedrock,
                base_url: None,
                api_key: None,
                region: Some("us-east-1".to_owned()),
                ..ProviderConfig::default()
            },
        );
        GatewayConfig {
            providers,
            aliases: BTreeMap::new(),
            max_retries: 2,
            retry_base_delay: Duration::from_millis(100),
            retry_max_delay: Duration::from_secs(2),
            default_output_tokens_estimate: 1024,
            validation: ValidationConfig::default(),
            allow_platform_keys: true,
            prices: Vec::new(),
            tenants: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKindConfig {
    #[default]
    Openai,
    /// Any server speaking OpenAI's API (vLLM, Ollama, llama.cpp server).
    OpenaiCompatible,
    Anthropic,
    Gemini,
    Bedrock,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProviderConfig {
    pub kind: ProviderKindConfig,
    /// The API's base URL (for Bedrock: an endpoint override; absent means AWS's endpoint).
    pub base_url: Option<String>,
    /// The platform key. An `env` reference whose variable is unset means "no platform key":
    /// only users' own keys work for this provider.
    pub api_key: Option<SecretRef>,
    /// AWS region (Bedrock).
    pub region: Option<String>,
    /// Time allowed for a whole answer, or for a stream's first event and between events.
    #[serde(with = "humantime_serde_compat")]
    pub timeout: Duration,
    #[serde(with = "humantime_serde_compat")]
    pub connect_timeout: Duration,
    /// OpenAI parameters this provider does not honour (for OpenAI-compatible servers):
    /// requests using them are rejected with 422 instead of silently losing them.
    pub unsupported_parameters: Vec<String>,
    /// Anthropic requires `max_tokens`; sent when the request has none.
    pub default_max_tokens: u32,
    /// Models listed by `GET /v1/models` for this provider (any model id may be requested).
    pub models: Vec<String>,
}

impl Default for ProviderConfig {
    fn default() -> ProviderConfig {
        ProviderConfig {
            kind: ProviderKindConfig::Openai,
            base_url: None,
            api_key: None,
            region: None,
            timeout: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(5),
            unsupported_parameters: Vec::new(),
            default_max_tokens: 4096,
            models: Vec::new(),
        }
    }
}

impl ProviderConfig {
    fn http(kind: ProviderKindConfig, base_url: &str, key_variable: &str) -> ProviderConfig {
        ProviderConfig {
            kind,
            base_url: Some(base_url.to_owned()),
            api_key: Some(SecretRef::Env {
                env: key_variable.to_owned(),
            }),
            ..ProviderConfig::default()
        }
    }
}

/// An alias: either one fallback chain (`targets`) or weighted variants, each with its own.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AliasConfig {
    /// `provider/model` entries tried in order.
    pub targets: Vec<String>,
    /// Weighted variants; a user sticks to one (hash of tenant, alias and user).
    pub variants: Vec<VariantConfig>,
    /// The experiment name recorded in the interaction's `experiments` map (default: the
    /// alias name).
    pub experiment: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct VariantConfig {
    pub name: String,
    pub weight: u32,
    pub targets: Vec<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ValidationConfig {
    pub max_messages: usize,
    pub max_message_chars: usize,
    pub max_temperature: f64,
    pub max_tokens: u32,
}

impl Default for ValidationConfig {
    fn default() -> ValidationConfig {
        ValidationConfig {
            max_messages: 50,
            max_message_chars: 10_000,
            max_temperature: 2.0,
            max_tokens: 4_096,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceOverride {
    pub provider: String,
    pub model: String,
    /// USD per million input tokens.
    pub input: f64,
    /// USD per million cached input tokens (absent: billed as input).
    pub cached_input: Option<f64>,
    /// USD per million output tokens.
    pub output: f64,
}

/// Per-tenant gateway settings; absent fields take the global value.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TenantGatewayConfig {
    pub allow_platform_keys: Option<bool>,
    pub validation: Option<ValidationConfig>,
    pub limits: Option<BudgetsConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// `redis://host:port/db`: share budgets between replicas. Absent: in-process.
    pub redis_url: Option<String>,
    /// Prefix of every Redis key.
    pub redis_key_prefix: String,
    /// Budgets applied to every tenant (overridable per tenant in `gateway.tenants`).
    pub budgets: BudgetsConfig,
}

impl Default for LimitsConfig {
    fn default() -> LimitsConfig {
        LimitsConfig {
            redis_url: None,
            redis_key_prefix: "flywheel:limits".to_owned(),
            budgets: BudgetsConfig::default(),
        }
    }
}

/// Budgets per principal (one user, key or token subject) and per tenant (all its principals).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetsConfig {
    pub principal: Budget,
    pub tenant: Budget,
}

/// One set of limits; absent means unlimited.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Budget {
    pub requests_per_minute: Option<u64>,
    pub requests_per_hour: Option<u64>,
    pub tokens_per_day: Option<u64>,
    pub usd_per_month: Option<f64>,
}
