//! Gateway metrics per provider and model: requests, errors by class, latency and
//! time-to-first-token histograms, tokens, cost — the plan's PromptExecutions,
//! AIResponseTime and TokensUsed — plus unpriced calls, dropped logs and refused requests.
//!
//! The families are cheap clones sharing their values; the HTTP layer registers them in the
//! application's registry.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    pub provider: String,
    pub model: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub provider: String,
    pub model: String,
    pub class: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    pub provider: String,
    pub model: String,
    /// `input`, `cached_input` or `output`.
    pub kind: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScopeLabels {
    pub scope: String,
}

type Histograms = Family<ModelLabels, Histogram, fn() -> Histogram>;

fn seconds_histogram() -> Histogram {
    // 1 ms … ~65 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

#[derive(Debug, Clone)]
pub struct GatewayMetrics {
    pub requests: Family<ModelLabels, Counter>,
    pub errors: Family<ErrorLabels, Counter>,
    pub latency: Histograms,
    pub time_to_first_token: Histograms,
    pub tokens: Family<TokenLabels, Counter>,
    pub cost: Family<ModelLabels, Counter<f64, std::sync::atomic::AtomicU64>>,
    pub unpriced: Family<ModelLabels, Counter>,
    pub fallbacks: Family<ModelLabels, Counter>,
    pub retries: Family<ModelLabels, Counter>,
    pub logs_dropped: Counter,
    pub rate_limited: Family<ScopeLabels, Counter>,
}

impl Default for GatewayMetrics {
    fn default() -> GatewayMetrics {
        GatewayMetrics {
            requests: Family::default(),
            errors: Family::default(),
            latency: Family::new_with_constructor(seconds_histogram),
            time_to_first_token: Family::new_with_constructor(seconds_histogram),
            tokens: Family::default(),
            cost: Family::default(),
            unpriced: Family::default(),
            fallbacks: Family::default(),
            retries: Family::default(),
            logs_dropped: Counter::default(),
            rate_limited: Family::default(),
        }
    }
}

impl GatewayMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "llm_requests",
            "Model calls answered, by provider and model (PromptExecutions)",
            self.requests.clone(),
        );
        registry.register(
            "llm_errors",
            "Failed provider calls by provider, model and error class",
            self.errors.clone(),
        );
        registry.register(
            "llm_request_duration_seconds",
            "Model call latency, whole answer (AIResponseTime)",
            self.latency.clone(),
        );
        registry.register(
            "llm_time_to_first_token_seconds",
            "Time from the request to the first streamed token",
            self.time_to_first_token.clone(),
        );
        registry.register(
            "llm_tokens",
            "Tokens by provider, model and kind (TokensUsed)",
            self.tokens.clone(),
        );
        registry.register(
            "llm_cost_usd",
            "Cost in USD by provider and model, from the price table",
            self.cost.clone(),
        );
        registry.register(
            "llm_unpriced_calls",
            "Calls to a model missing from the price table (cost recorded as null)",
            self.unpriced.clone(),
        );
        registry.register(
            "llm_fallbacks",
            "Times a fallback chain moved past this provider and model",
            self.fallbacks.clone(),
        );
        registry.register(
            "llm_retries",
            "Retries of a provider call after a connect error, 429 or 5xx",
            self.retries.clone(),
        );
        registry.register(
            "llm_call_logs_dropped",
            "Gateway calls not logged because the interaction write queue was full",
            self.logs_dropped.clone(),
        );
        registry.register(
            "llm_rate_limited",
            "Requests refused by a budget, by scope",
            self.rate_limited.clone(),
        );
    }

    pub fn labels(provider: &str, model: &str) -> ModelLabels {
        ModelLabels {
            provider: provider.to_owned(),
            model: model.to_owned(),
        }
    }
}
