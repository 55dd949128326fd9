//! Builds the gateway's providers, aliases and prices from configuration, with errors that
//! name the configuration key at fault.

use std::collections::BTreeMap;
use std::sync::Arc;

use flywheel_config::{Config, ProviderConfig, ProviderKindConfig, SecretRef};
use flywheel_llm::anthropic::AnthropicProvider;
use flywheel_llm::gemini::GeminiProvider;
use flywheel_llm::openai::{CompatibleOptions, OpenAiProvider};
use flywheel_llm::pricing::{Price, PriceTable};
use flywheel_llm::{HttpSettings, Provider};
use secrecy::SecretString;

use super::routing::{aliases_from_config, Alias};
use super::GatewaySettings;

/// Providers by name, and the models configuration lists for each.
pub type Providers = (
    BTreeMap<String, Arc<dyn Provider>>,
    BTreeMap<String, Vec<String>>,
);

/// Builds every configured provider. A platform key given as an unset environment variable
/// means "no platform key" (users' own keys still work); any other unreadable key is an error.
pub async fn providers_from_config(config: &Config) -> anyhow::Result<Providers> {
    let mut providers: BTreeMap<String, Arc<dyn Provider>> = BTreeMap::new();
    let mut listed = BTreeMap::new();
    for (name, provider) in &config.gateway.providers {
        if name.contains('/') || name.is_empty() {
            anyhow::bail!(
                "gateway.providers.{name}: a provider name may not be empty or contain `/`"
            );
        }
        let built = build(name, provider)
            .await
            .map_err(|err| anyhow::anyhow!("gateway.providers.{name}: {err}"))?;
        providers.insert(name.clone(), built);
        listed.insert(name.clone(), provider.models.clone());
    }
    Ok((providers, listed))
}

async fn build(name: &str, config: &ProviderConfig) -> anyhow::Result<Arc<dyn Provider>> {
    let key = platform_key(name, config.api_key.as_ref())?;
    let http = || -> anyhow::Result<HttpSettings> {
        let base_url = config
            .base_url
            .clone()
            .ok_or_else(|| anyhow::anyhow!("`base_url` is required for kind {:?}", config.kind))?;
        Ok(HttpSettings {
            base_url,
            connect_timeout: config.connect_timeout,
            timeout: config.timeout,
        })
    };
    let provider: Arc<dyn Provider> = match config.kind {
        ProviderKindConfig::Openai => Arc::new(OpenAiProvider::openai(name, http()?, key)?),
        ProviderKindConfig::OpenaiCompatible => Arc::new(OpenAiProvider::compatible(
            name,
            http()?,
            key,
            CompatibleOptions {
                unsupported_parameters: config.unsupported_parameters.clone(),
            },
        )?),
        ProviderKindConfig::Anthropic => Arc::new(AnthropicProvider::new(
            name,
            http()?,
            key,
            config.default_max_tokens,
        )?),
        ProviderKindConfig::Gemini => Arc::new(GeminiProvider::new(name, http()?, key)?),
        ProviderKindConfig::Bedrock => bedrock(name, config).await?,
    };
    Ok(provider)
}

async fn bedrock(name: &str, config: &ProviderConfig) -> anyhow::Result<Arc<dyn Provider>> {
    let settings = flywheel_llm::bedrock::BedrockSettings {
        region: config
            .region
            .clone()
            .unwrap_or_else(|| "us-east-1".to_owned()),
        endpoint_url: config.base_url.clone(),
        connect_timeout: config.connect_timeout,
        timeout: config.timeout,
    };
    Ok(Arc::new(
        flywheel_llm::bedrock::BedrockProvider::new(name, settings).await?,
    ))
}

fn platform_key(name: &str, reference: Option<&SecretRef>) -> anyhow::Result<Option<SecretString>> {
    let Some(reference) = reference else {
        return Ok(None);
    };
    match reference.resolve() {
        Ok(key) => Ok(Some(key)),
        Err(flywheel_config::SecretRefError::EnvMissing { name: variable }) => {
            tracing::info!(provider = name, variable = %variable, "no platform key for this provider: only users' own keys will be used");
            Ok(None)
        }
        Err(err) => Err(anyhow::anyhow!("api_key: {err}")),
    }
}

/// The shipped price table with configuration overrides applied.
pub fn prices_from_config(config: &Config) -> anyhow::Result<PriceTable> {
    let table = PriceTable::builtin().map_err(|err| anyhow::anyhow!("price table: {err}"))?;
    let mut overrides = Vec::new();
    for (idx, entry) in config.gateway.prices.iter().enumerate() {
        let price = Price {
            input_per_million: entry.input,
            cached_input_per_million: entry.cached_input,
            output_per_million: entry.output,
        };
        price
            .check()
            .map_err(|err| anyhow::anyhow!("gateway.prices[{idx}]: {err}"))?;
        overrides.push(((entry.provider.clone(), entry.model.clone()), price));
    }
    Ok(table.with_overrides(overrides))
}

pub fn aliases(config: &Config, providers: &[String]) -> anyhow::Result<BTreeMap<String, Alias>> {
    aliases_from_config(&config.gateway.aliases, providers).map_err(|err| anyhow::anyhow!(err))
}

pub fn settings_from_config(config: &Config) -> GatewaySettings {
    let gateway = &config.gateway;
    GatewaySettings {
        max_retries: gateway.max_retries,
        retry_base_delay: gateway.retry_base_delay,
        retry_max_delay: gateway.retry_max_delay,
        default_output_tokens_estimate: gateway.default_output_tokens_estimate,
        validation: gateway.validation,
        allow_platform_keys: gateway.allow_platform_keys,
        budgets: config.limits.budgets,
        tenants: gateway.tenants.clone(),
    }
}
