//! The LLM gateway's use case: validate a chat or embeddings request, route it (alias →
//! variant → fallback chain), pick the credential (the user's own key, or the platform's when
//! the tenant allows it), reserve budgets, call the provider with retries and fallback, price
//! the usage, settle the budgets and log the call as an interaction — without making the
//! caller wait for the log.

mod calllog;
mod metrics;
pub mod routing;
pub mod setup;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use flywheel_config::{Budget, BudgetsConfig, TenantGatewayConfig, ValidationConfig};
use flywheel_core::{Principal, ValidationErrors};
use flywheel_limits::{Charge, LimitError, Limiter, RateLimitStatus, Reservation, Window};
use flywheel_llm::pricing::PriceTable;
use flywheel_llm::{
    ChatRequest, ChatResponse, Credential, EmbeddingRequest, ErrorClass, FinishReason, Provider,
    ProviderError, StreamEvent, ToolCall, Usage,
};
use futures::stream::BoxStream;
use futures::StreamExt;
use rand::Rng;
use serde_json::{json, Map, Value};
use uuid::Uuid;

pub use metrics::GatewayMetrics;
use routing::{Alias, Route, Target};

use crate::enrich::ClientContext;
use crate::ingest::IngestService;
use crate::provider_keys::{ProviderKeyService, ResolvedProviderKey};
use crate::ServiceError;

/// Settings of the gateway, from `[gateway]` and `[limits]`.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    pub max_retries: u32,
    pub retry_base_delay: Duration,
    pub retry_max_delay: Duration,
    pub default_output_tokens_estimate: u32,
    pub validation: ValidationConfig,
    pub allow_platform_keys: bool,
    pub budgets: BudgetsConfig,
    pub tenants: BTreeMap<String, TenantGatewayConfig>,
}

/// A chat request as the gateway receives it.
#[derive(Debug, Clone)]
pub struct ChatInput {
    /// `provider/model` or an alias.
    pub model: String,
    /// The request; its `model` field is replaced by each target's model.
    pub request: ChatRequest,
    /// Optional conversation the call belongs to (logged with it).
    pub conversation_id: Option<String>,
    pub client: ClientContext,
}

/// Which provider and model answered, and why.
#[derive(Debug, Clone)]
pub struct RouteInfo {
    pub provider: String,
    pub model: String,
    pub alias: Option<String>,
    pub variant: Option<String>,
    /// True when the answer came from a fallback entry rather than the first.
    pub fell_back: bool,
}

/// A complete answer.
#[derive(Debug)]
pub struct ChatOutcome {
    pub interaction_id: Uuid,
    pub response: ChatResponse,
    pub route: RouteInfo,
    pub cost_usd: Option<f64>,
    pub rate_limit: Option<RateLimitStatus>,
}

/// What a streamed answer yields after its first event: events, or one final error.
#[derive(Debug, Clone)]
pub enum GatewayStreamItem {
    Event(StreamEvent),
    /// The upstream failed after the first token; the stream ends here.
    Error {
        class: ErrorClass,
        message: String,
    },
}

/// A streamed answer that has started (its first event arrived).
pub struct ChatStreamOutcome {
    pub interaction_id: Uuid,
    pub route: RouteInfo,
    pub rate_limit: Option<RateLimitStatus>,
    pub events: BoxStream<'static, GatewayStreamItem>,
}

impl std::fmt::Debug for ChatStreamOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatStreamOutcome")
            .field("interaction_id", &self.interaction_id)
            .field("route", &self.route)
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct EmbeddingsInput {
    pub model: String,
    pub inputs: Vec<String>,
    pub dimensions: Option<u32>,
    pub user: Option<String>,
    pub client: ClientContext,
}

#[derive(Debug)]
pub struct EmbeddingsOutcome {
    pub interaction_id: Uuid,
    pub model: String,
    pub vectors: Vec<Vec<f32>>,
    pub usage: Usage,
    pub rate_limit: Option<RateLimitStatus>,
}

/// A model the gateway can address, for `GET /v1/models`.
#[derive(Debug, Clone)]
pub struct ModelEntry {
    pub id: String,
    pub owned_by: String,
}

/// What the gateway knows about a model before calling it (see
/// [`GatewayService::model_profile`]).
#[derive(Debug, Clone)]
pub struct ModelProfile {
    pub provider: Arc<dyn Provider>,
    /// The provider's own model id.
    pub model: String,
    pub supports_tools: bool,
    pub context_window: Option<usize>,
}

impl ModelProfile {
    /// The exact prompt size when the provider can count it, else `None`.
    pub fn count_prompt_tokens(&self, messages: &[flywheel_llm::ChatMessage]) -> Option<usize> {
        self.provider.count_prompt_tokens(&self.model, messages)
    }
}

/// The gateway. Cheap to share behind an `Arc`.
pub struct GatewayService {
    providers: BTreeMap<String, Arc<dyn Provider>>,
    /// Models listed per provider in configuration.
    listed_models: BTreeMap<String, Vec<String>>,
    aliases: BTreeMap<String, Alias>,
    prices: PriceTable,
    limiter: Arc<dyn Limiter>,
    keys: Arc<ProviderKeyService>,
    settings: GatewaySettings,
    metrics: GatewayMetrics,
    logger: calllog::CallLogger,
}

impl std::fmt::Debug for GatewayService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayService")
            .field("providers", &self.providers.keys().collect::<Vec<_>>())
            .field("aliases", &self.aliases.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Everything the gateway is built from.
pub struct GatewayParts {
    pub providers: BTreeMap<String, Arc<dyn Provider>>,
    pub listed_models: BTreeMap<String, Vec<String>>,
    pub aliases: BTreeMap<String, Alias>,
    pub prices: PriceTable,
    pub limiter: Arc<dyn Limiter>,
    pub keys: Arc<ProviderKeyService>,
    pub ingest: Arc<IngestService>,
    pub settings: GatewaySettings,
}

impl std::fmt::Debug for GatewayParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GatewayParts")
    }
}

/// One admitted call: the budgets it reserved and what settling needs.
struct Admission {
    reservation: Reservation,
    /// Index of each kind of charge in the reservation.
    request_charges: Vec<usize>,
    token_charges: Vec<usize>,
    usd_charges: Vec<usize>,
}

/// A route entry ready to be called.
struct PreparedTarget {
    provider: Arc<dyn Provider>,
    request: ChatRequest,
    chosen: ChosenCredential,
    key_reservation: Option<Reservation>,
}

/// The credential chosen for one target.
struct ChosenCredential {
    credential: Credential,
    /// The user's stored key, when used (its monthly budgets apply).
    user_key: Option<ResolvedProviderKey>,
}

impl GatewayService {
    /// Builds the gateway and starts its call-log task (so it must run inside a runtime).
    pub fn new(parts: GatewayParts) -> GatewayService {
        let metrics = GatewayMetrics::default();
        let logger = calllog::CallLogger::spawn(parts.ingest.clone(), metrics.clone());
        GatewayService {
            logger,
            providers: parts.providers,
            listed_models: parts.listed_models,
            aliases: parts.aliases,
            prices: parts.prices,
            limiter: parts.limiter,
            keys: parts.keys,
            settings: parts.settings,
            metrics,
        }
    }

    /// Logs every call already answered, then stops the call-log task. Call before the
    /// interaction writer shuts down.
    pub async fn shutdown(&self) {
        self.logger.shutdown().await;
    }

    pub fn metrics(&self) -> &GatewayMetrics {
        &self.metrics
    }

    pub fn provider_names(&self) -> Vec<String> {
        self.providers.keys().cloned().collect()
    }

    /// Every addressable model: aliases, configured models and priced models of configured
    /// providers.
    pub fn models(&self) -> Vec<ModelEntry> {
        let mut models: Vec<ModelEntry> = self
            .aliases
            .keys()
            .map(|alias| ModelEntry {
                id: alias.clone(),
                owned_by: "flywheel".to_owned(),
            })
            .collect();
        let mut seen = std::collections::BTreeSet::new();
        for (provider, listed) in &self.listed_models {
            for model in listed {
                seen.insert((provider.clone(), model.clone()));
            }
        }
        for entry in self.prices.entries() {
            if self.providers.contains_key(&entry.provider)
                && entry.model != flywheel_llm::pricing::ANY_MODEL
            {
                seen.insert((entry.provider.clone(), entry.model.clone()));
            }
        }
        models.extend(seen.into_iter().map(|(provider, model)| ModelEntry {
            id: format!("{provider}/{model}"),
            owned_by: provider,
        }));
        models
    }

    /// What the first entry of `model`'s route can tell before any call: its context window
    /// and an exact prompt counter, when its provider has them (local models do), and whether
    /// it accepts tool definitions. Used by the concierge to trim history and pick its tool
    /// route. Budgets and variants are not touched.
    pub fn model_profile(
        &self,
        actor: &Principal,
        model: &str,
    ) -> Result<ModelProfile, ServiceError> {
        let route = self.route(actor, model, None)?;
        let target = route
            .targets
            .first()
            .cloned()
            .ok_or_else(|| ServiceError::NotFound(format!("a route for `{model}`")))?;
        let provider = self
            .providers
            .get(&target.provider)
            .cloned()
            .ok_or_else(|| ServiceError::NotFound(format!("provider `{}`", target.provider)))?;
        let probe = ChatRequest {
            model: target.model.clone(),
            messages: vec![flywheel_llm::ChatMessage::text(
                flywheel_llm::Role::User,
                "probe",
            )],
            tools: vec![flywheel_llm::ToolDefinition {
                name: "probe".to_owned(),
                description: None,
                parameters: json!({"type": "object", "properties": {}}),
                strict: None,
            }],
            ..ChatRequest::default()
        };
        Ok(ModelProfile {
            supports_tools: provider.check(&probe).is_ok(),
            context_window: provider.context_window(&target.model),
            provider,
            model: target.model,
        })
    }

    /// The cost of `usage` on the provider and model that answered, from the price table;
    /// `None` when the model has no price (the gateway has counted and logged that already).
    pub fn cost_of(&self, route: &RouteInfo, usage: &Usage) -> Option<f64> {
        self.prices
            .lookup(&route.provider, &route.model)
            .map(|price| flywheel_llm::pricing::cost(price, usage))
    }

    /// The state of every model run by a provider itself (local models), by provider name.
    pub fn model_status(&self) -> Vec<(String, flywheel_llm::ModelStatus)> {
        self.providers
            .iter()
            .flat_map(|(name, provider)| {
                provider
                    .model_status()
                    .into_iter()
                    .map(move |status| (name.clone(), status))
            })
            .collect()
    }

    /// A non-streamed chat completion.
    pub async fn chat(
        &self,
        actor: &Principal,
        input: ChatInput,
    ) -> Result<ChatOutcome, ServiceError> {
        let started = Instant::now();
        let (route, admission) = self.admit(actor, &input).await?;
        let mut attempts: Vec<Value> = Vec::new();
        let mut last_error: Option<ProviderError> = None;
        for (position, target) in route.targets.iter().enumerate() {
            let prepared = self
                .prepare_target(
                    actor,
                    &input,
                    target,
                    position == 0,
                    position + 1 == route.targets.len() && last_error.is_none(),
                    &mut attempts,
                )
                .await;
            let PreparedTarget {
                provider,
                request,
                chosen,
                key_reservation,
            } = match prepared {
                Ok(Some(prepared)) => prepared,
                Ok(None) => continue,
                Err(err) => {
                    self.release(&admission).await;
                    return Err(err);
                }
            };
            let labels = GatewayMetrics::labels(&target.provider, &target.model);
            let result = self
                .with_retries(&labels, || provider.chat(&request, &chosen.credential))
                .await;
            match result {
                Ok(response) => {
                    let usage = response.usage.unwrap_or_default();
                    let cost = self.price(target, &usage);
                    self.settle(&admission, &usage, cost).await;
                    self.settle_user_key(key_reservation, &usage, cost).await;
                    let duration = started.elapsed();
                    self.observe_success(&labels, duration, None, &usage, cost);
                    let route_info = RouteInfo {
                        provider: target.provider.clone(),
                        model: target.model.clone(),
                        alias: route.alias.clone(),
                        variant: route.variant.as_ref().map(|(_, name)| name.clone()),
                        fell_back: position > 0,
                    };
                    let interaction_id = Uuid::now_v7();
                    self.logger
                        .enqueue(calllog::LogJob::Chat(Box::new(calllog::PendingChatLog {
                            actor: actor.clone(),
                            input,
                            route,
                            route_info: route_info.clone(),
                            content: response.content.clone(),
                            tool_calls: response.tool_calls.clone(),
                            finish_reason: Some(response.finish_reason.clone()),
                            usage: response.usage,
                            cost,
                            duration,
                            time_to_first_token: None,
                            error: None,
                            incomplete: false,
                            attempts,
                            streamed: false,
                            credential: credential_kind(&chosen),
                            interaction_id,
                        })));
                    return Ok(ChatOutcome {
                        interaction_id,
                        response,
                        route: route_info,
                        cost_usd: cost,
                        rate_limit: admission.reservation.tightest(),
                    });
                }
                Err(err) => {
                    self.settle_user_key(key_reservation, &Usage::default(), Some(0.0))
                        .await;
                    let fall_back = self.note_failure(&labels, &err, &mut attempts);
                    last_error = Some(err);
                    if !fall_back {
                        break;
                    }
                }
            }
        }
        self.settle(&admission, &Usage::default(), Some(0.0)).await;
        Err(self.route_failed(actor, input, route, attempts, last_error, started, false))
    }

    /// A streamed chat completion. Returns once the first event arrived (falling back while
    /// nothing has been sent); later failures end the stream with an error item.
    pub async fn chat_stream(
        self: &Arc<Self>,
        actor: &Principal,
        input: ChatInput,
    ) -> Result<ChatStreamOutcome, ServiceError> {
        let started = Instant::now();
        let (route, admission) = self.admit(actor, &input).await?;
        let mut attempts: Vec<Value> = Vec::new();
        let mut last_error: Option<ProviderError> = None;
        for (position, target) in route.targets.iter().enumerate() {
            let prepared = self
                .prepare_target(
                    actor,
                    &input,
                    target,
                    position == 0,
                    position + 1 == route.targets.len() && last_error.is_none(),
                    &mut attempts,
                )
                .await;
            let PreparedTarget {
                provider,
                request,
                chosen,
                key_reservation,
            } = match prepared {
                Ok(Some(prepared)) => prepared,
                Ok(None) => continue,
                Err(err) => {
                    self.release(&admission).await;
                    return Err(err);
                }
            };
            let labels = GatewayMetrics::labels(&target.provider, &target.model);
            // Open the stream and wait for its first event; until then, failures fall back.
            let opened = self
                .with_retries(&labels, || async {
                    let mut stream = provider.chat_stream(&request, &chosen.credential).await?;
                    match stream.next().await {
                        Some(Ok(first)) => Ok((first, stream)),
                        Some(Err(err)) => Err(err),
                        None => Err(ProviderError::invalid_response(
                            &target.provider,
                            "the stream ended before any event",
                        )),
                    }
                })
                .await;
            match opened {
                Ok((first, rest)) => {
                    let time_to_first_token = started.elapsed();
                    let route_info = RouteInfo {
                        provider: target.provider.clone(),
                        model: target.model.clone(),
                        alias: route.alias.clone(),
                        variant: route.variant.as_ref().map(|(_, name)| name.clone()),
                        fell_back: position > 0,
                    };
                    let interaction_id = Uuid::now_v7();
                    let rate_limit = admission.reservation.tightest();
                    let tracker = StreamTracker {
                        gateway: self.clone(),
                        actor: actor.clone(),
                        input,
                        route: route.clone(),
                        route_info: route_info.clone(),
                        admission: Some(admission),
                        key_reservation,
                        credential: credential_kind(&chosen),
                        attempts,
                        labels,
                        interaction_id,
                        started,
                        time_to_first_token,
                        text: String::new(),
                        tool_calls: Vec::new(),
                        finish_reason: None,
                        usage: None,
                        error: None,
                        finished: false,
                    };
                    let events = tracked_stream(first, rest, tracker);
                    return Ok(ChatStreamOutcome {
                        interaction_id,
                        route: route_info,
                        rate_limit,
                        events,
                    });
                }
                Err(err) => {
                    self.settle_user_key(key_reservation, &Usage::default(), Some(0.0))
                        .await;
                    let fall_back = self.note_failure(&labels, &err, &mut attempts);
                    last_error = Some(err);
                    if !fall_back {
                        break;
                    }
                }
            }
        }
        self.settle(&admission, &Usage::default(), Some(0.0)).await;
        Err(self.route_failed(actor, input, route, attempts, last_error, started, true))
    }

    /// Makes one route entry ready to call: the provider, the request for its model, the
    /// credential and the stored key's budget. `Ok(None)` skips the entry (recorded in
    /// `attempts`); an error answers the request — a parameter the first entry cannot honour,
    /// or the last entry's missing credential or budget when nothing was tried before it.
    async fn prepare_target(
        &self,
        actor: &Principal,
        input: &ChatInput,
        target: &Target,
        is_first: bool,
        is_last_hope: bool,
        attempts: &mut Vec<Value>,
    ) -> Result<Option<PreparedTarget>, ServiceError> {
        let Some(provider) = self.providers.get(&target.provider).cloned() else {
            return Ok(None);
        };
        let mut request = input.request.clone();
        request.model = target.model.clone();
        let mut skip = |reason: String| {
            attempts.push(
                json!({"provider": target.provider, "model": target.model, "skipped": reason}),
            );
        };
        if let Err(unsupported) = provider.check(&request) {
            if is_first {
                return Err(unsupported_error(&unsupported));
            }
            skip(unsupported.to_string());
            return Ok(None);
        }
        let chosen = match self.credential_for(actor, target).await {
            Ok(chosen) => chosen,
            Err(err) if is_last_hope => return Err(err),
            Err(err) => {
                skip(err.to_string());
                return Ok(None);
            }
        };
        let key_reservation = match self.reserve_user_key(&chosen, &request).await {
            Ok(reservation) => reservation,
            Err(err) => {
                skip(err.to_string());
                if is_last_hope {
                    return Err(err);
                }
                return Ok(None);
            }
        };
        Ok(Some(PreparedTarget {
            provider,
            request,
            chosen,
            key_reservation,
        }))
    }

    /// Counts a failed entry and says whether the next one may be tried.
    fn note_failure(
        &self,
        labels: &metrics::ModelLabels,
        err: &ProviderError,
        attempts: &mut Vec<Value>,
    ) -> bool {
        self.observe_error(labels, err);
        attempts.push(json!({"provider": labels.provider, "model": labels.model, "error_class": err.class.as_str()}));
        let fall_back = err.class.fallback_eligible();
        if fall_back {
            self.metrics.fallbacks.get_or_create(labels).inc();
        }
        fall_back
    }

    /// Logs a request no entry answered and turns its last error into the caller's error.
    #[allow(clippy::too_many_arguments)]
    fn route_failed(
        &self,
        actor: &Principal,
        input: ChatInput,
        route: Route,
        attempts: Vec<Value>,
        last_error: Option<ProviderError>,
        started: Instant,
        streamed: bool,
    ) -> ServiceError {
        let error = last_error.unwrap_or_else(|| {
            ProviderError::new(
                "gateway",
                ErrorClass::InvalidRequest,
                "no entry of the route could take this request",
            )
        });
        let failure = upstream_error(&error);
        self.log_failure(
            actor,
            input,
            route,
            attempts,
            error,
            started.elapsed(),
            streamed,
        );
        failure
    }

    /// Embeddings through the first target that has them.
    pub async fn embeddings(
        &self,
        actor: &Principal,
        input: EmbeddingsInput,
    ) -> Result<EmbeddingsOutcome, ServiceError> {
        let started = Instant::now();
        if input.inputs.is_empty() {
            return Err(ValidationErrors::single("input", "must not be empty").into());
        }
        const MAX_INPUTS: usize = 2_048;
        if input.inputs.len() > MAX_INPUTS {
            return Err(ValidationErrors::single(
                "input",
                format!("at most {MAX_INPUTS} inputs per request"),
            )
            .into());
        }
        let route = self.route(actor, &input.model, input.user.as_deref())?;
        let estimated: u64 = input.inputs.iter().map(|text| estimate_tokens(text)).sum();
        let admission = self.reserve(actor, estimated, 0.0).await?;
        let mut last_error = None;
        for target in &route.targets {
            let Some(provider) = self.providers.get(&target.provider).cloned() else {
                continue;
            };
            if !provider.supports_embeddings() {
                continue;
            }
            let chosen = match self.credential_for(actor, target).await {
                Ok(chosen) => chosen,
                Err(err) => {
                    self.release(&admission).await;
                    return Err(err);
                }
            };
            let request = EmbeddingRequest {
                model: target.model.clone(),
                inputs: input.inputs.clone(),
                dimensions: input.dimensions,
                user: input.user.clone(),
            };
            let labels = GatewayMetrics::labels(&target.provider, &target.model);
            match self
                .with_retries(&labels, || provider.embed(&request, &chosen.credential))
                .await
            {
                Ok(answer) => {
                    let cost = self.price(target, &answer.usage);
                    self.settle(&admission, &answer.usage, cost).await;
                    self.observe_success(&labels, started.elapsed(), None, &answer.usage, cost);
                    let mut document = json!({
                        "interaction_type": "ai_embedding",
                        "user_id": actor.subject.to_string(),
                        "user_type": actor.role.to_string(),
                        "gateway": {
                            "operation": "embeddings",
                            "provider": target.provider,
                            "model": target.model,
                            "requested_model": input.model,
                            "n_inputs": input.inputs.len(),
                            "input_tokens": answer.usage.input_tokens,
                            "cost_usd": cost,
                            "duration_ms": started.elapsed().as_millis() as u64,
                            "credential": credential_kind(&chosen),
                            "end_user": input.user,
                        },
                    });
                    if let Some((experiment, variant)) = &route.variant {
                        document["experiments"] = json!({ experiment: variant });
                    }
                    let interaction_id = self.record(actor, document, &input.client);
                    return Ok(EmbeddingsOutcome {
                        interaction_id,
                        model: format!("{}/{}", target.provider, target.model),
                        vectors: answer.vectors,
                        usage: answer.usage,
                        rate_limit: admission.reservation.tightest(),
                    });
                }
                Err(err) => {
                    self.observe_error(&labels, &err);
                    let fall_back = err.class.fallback_eligible();
                    last_error = Some(err);
                    if !fall_back {
                        break;
                    }
                }
            }
        }
        self.settle(&admission, &Usage::default(), Some(0.0)).await;
        match last_error {
            Some(err) => Err(upstream_error(&err)),
            None => Err(ValidationErrors::single(
                "model",
                format!("`{}` has no provider with an embeddings API", input.model),
            )
            .into()),
        }
    }

    // --- Admission --------------------------------------------------------------------------

    async fn admit(
        &self,
        actor: &Principal,
        input: &ChatInput,
    ) -> Result<(Route, Admission), ServiceError> {
        self.validate(actor, &input.request)?;
        let route = self.route(actor, &input.model, input.request.user.as_deref())?;
        let input_tokens = estimate_request_tokens(&input.request);
        let output_tokens = u64::from(
            input
                .request
                .max_tokens
                .unwrap_or(self.settings.default_output_tokens_estimate),
        );
        let estimated_usd = route
            .targets
            .first()
            .and_then(|target| self.prices.lookup(&target.provider, &target.model))
            .map(|price| {
                flywheel_llm::pricing::cost(
                    price,
                    &Usage {
                        input_tokens,
                        output_tokens,
                        cached_input_tokens: None,
                    },
                )
            })
            .unwrap_or(0.0);
        let admission = self
            .reserve(actor, input_tokens + output_tokens, estimated_usd)
            .await?;
        Ok((route, admission))
    }

    fn validate(&self, actor: &Principal, request: &ChatRequest) -> Result<(), ServiceError> {
        let limits = self
            .tenant(actor)
            .and_then(|tenant| tenant.validation)
            .unwrap_or(self.settings.validation);
        let mut errors = ValidationErrors::default();
        let n_messages = request.messages.len();
        if n_messages == 0 || n_messages > limits.max_messages {
            errors.push(
                "messages",
                format!(
                    "must have between 1 and {} messages (got {n_messages})",
                    limits.max_messages
                ),
            );
        }
        for (idx, message) in request
            .messages
            .iter()
            .enumerate()
            .take(limits.max_messages)
        {
            let chars = message
                .content
                .as_deref()
                .map(|text| text.chars().count())
                .unwrap_or(0);
            let may_be_empty = !message.tool_calls.is_empty();
            if chars > limits.max_message_chars || (chars == 0 && !may_be_empty) {
                errors.push(
                    format!("messages[{idx}].content"),
                    format!(
                        "must have between 1 and {} characters (got {chars})",
                        limits.max_message_chars
                    ),
                );
            }
        }
        if let Some(temperature) = request.temperature {
            if !(0.0..=limits.max_temperature).contains(&temperature) {
                errors.push(
                    "temperature",
                    format!("must be between 0 and {}", limits.max_temperature),
                );
            }
        }
        if let Some(top_p) = request.top_p {
            if !(0.0..=1.0).contains(&top_p) {
                errors.push("top_p", "must be between 0 and 1");
            }
        }
        if let Some(max_tokens) = request.max_tokens {
            if max_tokens == 0 || max_tokens > limits.max_tokens {
                errors.push(
                    "max_tokens",
                    format!("must be between 1 and {}", limits.max_tokens),
                );
            }
        }
        if request.stop.len() > 4 {
            errors.push("stop", "at most 4 stop sequences");
        }
        errors.into_result().map_err(ServiceError::from)
    }

    fn route(
        &self,
        actor: &Principal,
        model: &str,
        end_user: Option<&str>,
    ) -> Result<Route, ServiceError> {
        if let Some(alias) = self.aliases.get(model) {
            let user = end_user.unwrap_or(actor.subject.as_str());
            let variant = alias.choose(actor.tenant_id.as_str(), user);
            return Ok(Route {
                alias: Some(alias.name.clone()),
                variant: (alias.variants.len() > 1)
                    .then(|| (alias.experiment.clone(), variant.name.clone())),
                targets: variant.targets.clone(),
            });
        }
        let target = Target::parse(model).ok_or_else(|| {
            ServiceError::from(ValidationErrors::single(
                "model",
                format!(
                    "`{model}` is neither `provider/model` nor a configured alias; GET /v1/models lists what is available"
                ),
            ))
        })?;
        if !self.providers.contains_key(&target.provider) {
            return Err(ServiceError::NotFound(format!(
                "provider `{}` (configured: {}; add it under [gateway.providers])",
                target.provider,
                self.provider_names().join(", ")
            )));
        }
        Ok(Route {
            alias: None,
            variant: None,
            targets: vec![target],
        })
    }

    fn tenant(&self, actor: &Principal) -> Option<&TenantGatewayConfig> {
        self.settings.tenants.get(actor.tenant_id.as_str())
    }

    fn budgets(&self, actor: &Principal) -> BudgetsConfig {
        self.tenant(actor)
            .and_then(|tenant| tenant.limits)
            .unwrap_or(self.settings.budgets)
    }

    async fn reserve(
        &self,
        actor: &Principal,
        estimated_tokens: u64,
        estimated_usd: f64,
    ) -> Result<Admission, ServiceError> {
        let budgets = self.budgets(actor);
        let tenant = actor.tenant_id.as_str();
        let principal_key = format!("p:{tenant}:{}", actor.subject.as_str());
        let tenant_key = format!("t:{tenant}");
        let mut charges = Vec::new();
        let mut admission = Admission {
            reservation: Reservation::new(Vec::new()),
            request_charges: Vec::new(),
            token_charges: Vec::new(),
            usd_charges: Vec::new(),
        };
        let mut add = |key: &str, budget: &Budget| {
            let mut push = |suffix: &str, window: Window, limit: u64, amount: u64, kind: u8| {
                let idx = charges.len();
                charges.push(Charge::new(
                    format!("{key}:{suffix}"),
                    window,
                    limit,
                    amount,
                ));
                match kind {
                    0 => admission.request_charges.push(idx),
                    1 => admission.token_charges.push(idx),
                    _ => admission.usd_charges.push(idx),
                }
            };
            if let Some(limit) = budget.requests_per_minute {
                push("req", Window::Minute, limit, 1, 0);
            }
            if let Some(limit) = budget.requests_per_hour {
                push("req", Window::Hour, limit, 1, 0);
            }
            if let Some(limit) = budget.tokens_per_day {
                push("tok", Window::Day, limit, estimated_tokens, 1);
            }
            if let Some(limit) = budget.usd_per_month {
                push(
                    "usd",
                    Window::Month,
                    micros(limit),
                    micros(estimated_usd),
                    2,
                );
            }
        };
        add(&principal_key, &budgets.principal);
        add(&tenant_key, &budgets.tenant);
        if charges.is_empty() {
            return Ok(admission);
        }
        admission.reservation = self
            .limiter
            .reserve(&charges, Utc::now())
            .await
            .map_err(|err| self.limit_error(err))?;
        Ok(admission)
    }

    fn limit_error(&self, err: LimitError) -> ServiceError {
        match err {
            LimitError::Exceeded(exceeded) => {
                let scope = exceeded.key.split(':').next().unwrap_or("p");
                let scope = match scope {
                    "t" => "tenant",
                    "k" => "provider_key",
                    _ => "principal",
                };
                self.metrics
                    .rate_limited
                    .get_or_create(&metrics::ScopeLabels {
                        scope: scope.to_owned(),
                    })
                    .inc();
                let what = match exceeded.key.rsplit(':').next() {
                    Some("req") => "requests",
                    Some("tok") => "tokens",
                    Some("usd") => "dollars (in micro-USD)",
                    _ => "budget",
                };
                ServiceError::RateLimited(crate::error::RateLimited {
                    message: format!(
                        "{scope} {what} per {} exceeded: {} of {} used, this request needs {}; retry after {} s",
                        exceeded.window.as_str(),
                        exceeded.used,
                        exceeded.limit,
                        exceeded.requested,
                        exceeded.retry_after_secs()
                    ),
                    limit: exceeded.limit,
                    remaining: exceeded.limit.saturating_sub(exceeded.used),
                    reset_unix: exceeded.reset_at.timestamp(),
                    retry_after_secs: exceeded.retry_after_secs(),
                })
            }
            other => ServiceError::Unavailable(format!("rate-limit backend: {other}")),
        }
    }

    /// Settles with real usage: one request, the real tokens, the real cost (an unknown cost
    /// settles the dollar budget at zero — the call still counted in requests and tokens).
    async fn settle(&self, admission: &Admission, usage: &Usage, cost: Option<f64>) {
        let charges = admission.reservation.charges();
        if charges.is_empty() {
            return;
        }
        let mut actual: Vec<u64> = charges.iter().map(|charge| charge.amount).collect();
        for &idx in &admission.token_charges {
            actual[idx] = usage.total_tokens();
        }
        for &idx in &admission.usd_charges {
            actual[idx] = micros(cost.unwrap_or(0.0));
        }
        if let Err(err) = self.limiter.settle(&admission.reservation, &actual).await {
            tracing::warn!(error = %err, "settling a budget reservation failed");
        }
    }

    /// Gives back everything of a reservation whose call never happened.
    async fn release(&self, admission: &Admission) {
        let charges = admission.reservation.charges();
        if charges.is_empty() {
            return;
        }
        let zeros = vec![0; charges.len()];
        if let Err(err) = self.limiter.settle(&admission.reservation, &zeros).await {
            tracing::warn!(error = %err, "releasing a budget reservation failed");
        }
    }

    async fn credential_for(
        &self,
        actor: &Principal,
        target: &Target,
    ) -> Result<ChosenCredential, ServiceError> {
        let provider = self.providers.get(&target.provider);
        if provider.is_some_and(|p| p.kind() == flywheel_llm::ProviderKind::Local) {
            return Ok(ChosenCredential {
                credential: Credential::Platform,
                user_key: None,
            });
        }
        if let Some(key) = self.keys.resolve(actor, &target.provider).await? {
            if !key.allowed_models.is_empty()
                && !key
                    .allowed_models
                    .iter()
                    .any(|model| model == &target.model)
            {
                return Err(ServiceError::Forbidden(format!(
                    "your {} key `{}` is limited to the models {}; `{}` is not one of them",
                    target.provider,
                    key.name,
                    key.allowed_models.join(", "),
                    target.model
                )));
            }
            return Ok(ChosenCredential {
                credential: Credential::User(key.secret.clone()),
                user_key: Some(key),
            });
        }
        let allowed = self
            .tenant(actor)
            .and_then(|tenant| tenant.allow_platform_keys)
            .unwrap_or(self.settings.allow_platform_keys);
        if allowed {
            Ok(ChosenCredential {
                credential: Credential::Platform,
                user_key: None,
            })
        } else {
            Err(ServiceError::Forbidden(format!(
                "no {provider} key of yours is stored and this tenant does not allow the platform's keys; store one with POST /v1/provider-keys {{\"provider\": \"{provider}\", …}}",
                provider = target.provider
            )))
        }
    }

    async fn reserve_user_key(
        &self,
        chosen: &ChosenCredential,
        request: &ChatRequest,
    ) -> Result<Option<Reservation>, ServiceError> {
        let Some(key) = &chosen.user_key else {
            return Ok(None);
        };
        let mut charges = Vec::new();
        let tokens = estimate_request_tokens(request)
            + u64::from(
                request
                    .max_tokens
                    .unwrap_or(self.settings.default_output_tokens_estimate),
            );
        if let Some(limit) = key.monthly_token_limit {
            charges.push(Charge::new(
                format!("k:{}:tok", key.id),
                Window::Month,
                limit,
                tokens,
            ));
        }
        if let Some(limit) = key.monthly_usd_limit {
            charges.push(Charge::new(
                format!("k:{}:usd", key.id),
                Window::Month,
                micros(limit),
                0,
            ));
        }
        if charges.is_empty() {
            return Ok(None);
        }
        self.limiter
            .reserve(&charges, Utc::now())
            .await
            .map(Some)
            .map_err(|err| self.limit_error(err))
    }

    async fn settle_user_key(
        &self,
        reservation: Option<Reservation>,
        usage: &Usage,
        cost: Option<f64>,
    ) {
        let Some(reservation) = reservation else {
            return;
        };
        let actual: Vec<u64> = reservation
            .charges()
            .iter()
            .map(|charge| {
                if charge.key.ends_with(":tok") {
                    usage.total_tokens()
                } else {
                    micros(cost.unwrap_or(0.0))
                }
            })
            .collect();
        if let Err(err) = self.limiter.settle(&reservation, &actual).await {
            tracing::warn!(error = %err, "settling a provider key budget failed");
        }
    }

    // --- Calling ----------------------------------------------------------------------------

    /// Calls `attempt` until it succeeds, fails for a reason retries cannot fix, or the
    /// retries run out; pauses with full jitter, honouring a short `Retry-After`.
    async fn with_retries<T, F, Fut>(
        &self,
        labels: &metrics::ModelLabels,
        mut attempt: F,
    ) -> Result<T, ProviderError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, ProviderError>>,
    {
        let mut retry = 0;
        loop {
            match attempt().await {
                Ok(value) => return Ok(value),
                Err(err) if err.class.retryable() && retry < self.settings.max_retries => {
                    let ceiling = self
                        .settings
                        .retry_base_delay
                        .saturating_mul(1 << retry.min(16))
                        .min(self.settings.retry_max_delay);
                    let jittered = ceiling.mul_f64(rand::thread_rng().gen_range(0.0..=1.0));
                    let pause = match err.retry_after {
                        Some(asked) if asked <= self.settings.retry_max_delay => {
                            asked.max(jittered)
                        }
                        _ => jittered,
                    };
                    tracing::debug!(provider = %labels.provider, model = %labels.model, class = err.class.as_str(), retry, pause_ms = pause.as_millis() as u64, "retrying a provider call");
                    self.metrics.retries.get_or_create(labels).inc();
                    tokio::time::sleep(pause).await;
                    retry += 1;
                }
                Err(err) => return Err(err),
            }
        }
    }

    fn price(&self, target: &Target, usage: &Usage) -> Option<f64> {
        match self.prices.lookup(&target.provider, &target.model) {
            Some(price) => Some(flywheel_llm::pricing::cost(price, usage)),
            None => {
                self.metrics
                    .unpriced
                    .get_or_create(&GatewayMetrics::labels(&target.provider, &target.model))
                    .inc();
                tracing::warn!(provider = %target.provider, model = %target.model, "no price for this model: cost recorded as null (add it under [[gateway.prices]])");
                None
            }
        }
    }

    fn observe_success(
        &self,
        labels: &metrics::ModelLabels,
        duration: Duration,
        time_to_first_token: Option<Duration>,
        usage: &Usage,
        cost: Option<f64>,
    ) {
        self.metrics.requests.get_or_create(labels).inc();
        self.metrics
            .latency
            .get_or_create(labels)
            .observe(duration.as_secs_f64());
        if let Some(ttft) = time_to_first_token {
            self.metrics
                .time_to_first_token
                .get_or_create(labels)
                .observe(ttft.as_secs_f64());
        }
        let tokens = |kind: &str, count: u64| {
            self.metrics
                .tokens
                .get_or_create(&metrics::TokenLabels {
                    provider: labels.provider.clone(),
                    model: labels.model.clone(),
                    kind: kind.to_owned(),
                })
                .inc_by(count);
        };
        tokens("input", usage.input_tokens);
        tokens("output", usage.output_tokens);
        if let Some(cached) = usage.cached_input_tokens {
            tokens("cached_input", cached);
        }
        if let Some(cost) = cost {
            self.metrics.cost.get_or_create(labels).inc_by(cost);
        }
    }

    fn observe_error(&self, labels: &metrics::ModelLabels, err: &ProviderError) {
        self.metrics
            .errors
            .get_or_create(&metrics::ErrorLabels {
                provider: labels.provider.clone(),
                model: labels.model.clone(),
                class: err.class.as_str().to_owned(),
            })
            .inc();
    }

    // --- Logging ----------------------------------------------------------------------------

    #[allow(clippy::too_many_arguments)]
    fn log_failure(
        &self,
        actor: &Principal,
        input: ChatInput,
        route: Route,
        attempts: Vec<Value>,
        error: ProviderError,
        duration: Duration,
        streamed: bool,
    ) {
        let first = route.targets.first();
        let route_info = RouteInfo {
            provider: first.map(|t| t.provider.clone()).unwrap_or_default(),
            model: first.map(|t| t.model.clone()).unwrap_or_default(),
            alias: route.alias.clone(),
            variant: route.variant.as_ref().map(|(_, name)| name.clone()),
            fell_back: false,
        };
        self.logger
            .enqueue(calllog::LogJob::Chat(Box::new(calllog::PendingChatLog {
                actor: actor.clone(),
                input,
                route,
                route_info,
                content: None,
                tool_calls: Vec::new(),
                finish_reason: None,
                usage: None,
                cost: Some(0.0),
                duration,
                time_to_first_token: None,
                error: Some(error),
                incomplete: false,
                attempts,
                streamed,
                credential: "none",
                interaction_id: Uuid::now_v7(),
            })));
    }

    /// Enqueues a finished document for logging and returns its interaction id.
    fn record(&self, actor: &Principal, mut document: Value, client: &ClientContext) -> Uuid {
        let interaction_id = Uuid::now_v7();
        document["interaction_id"] = json!(interaction_id.to_string());
        self.logger.enqueue(calllog::LogJob::Document {
            actor: actor.clone(),
            document,
            client: client.clone(),
        });
        interaction_id
    }
}

/// What one call did, for its log record.
pub(super) struct CallSummary<'a> {
    route: &'a RouteInfo,
    content: Option<&'a str>,
    tool_calls: &'a [ToolCall],
    finish_reason: Option<&'a FinishReason>,
    usage: Option<Usage>,
    cost: Option<f64>,
    duration: Duration,
    time_to_first_token: Option<Duration>,
    error: Option<&'a ProviderError>,
    attempts: &'a [Value],
    streamed: bool,
    credential: &'static str,
}

pub(super) fn chat_document(
    actor: &Principal,
    input: &ChatInput,
    route: &Route,
    summary: &CallSummary<'_>,
) -> Value {
    let model_label = format!("{}/{}", summary.route.provider, summary.route.model);
    let mut messages: Vec<Value> = input
        .request
        .messages
        .iter()
        .map(|message| {
            let mut entry = json!({"role": message.role.as_str(), "content": message.content});
            if !message.tool_calls.is_empty() {
                entry["tool_calls"] = tool_calls_json(&message.tool_calls);
            }
            if let Some(id) = &message.tool_call_id {
                entry["tool_call_id"] = json!(id);
            }
            entry
        })
        .collect();
    if summary.error.is_none() {
        let mut answer = json!({
            "role": "assistant",
            "content": summary.content,
            "model": model_label,
        });
        if let Some(usage) = summary.usage {
            answer["tokens"] = json!(usage.output_tokens);
        }
        if !summary.tool_calls.is_empty() {
            answer["tool_calls"] = tool_calls_json(summary.tool_calls);
        }
        messages.push(answer);
    }
    let usage = summary.usage;
    let mut gateway = Map::new();
    gateway.insert("operation".into(), json!("chat.completions"));
    gateway.insert("provider".into(), json!(summary.route.provider));
    gateway.insert("model".into(), json!(summary.route.model));
    gateway.insert("requested_model".into(), json!(input.model));
    gateway.insert("alias".into(), json!(summary.route.alias));
    gateway.insert("variant".into(), json!(summary.route.variant));
    gateway.insert("fell_back".into(), json!(summary.route.fell_back));
    gateway.insert("stream".into(), json!(summary.streamed));
    gateway.insert("input_tokens".into(), json!(usage.map(|u| u.input_tokens)));
    gateway.insert(
        "output_tokens".into(),
        json!(usage.map(|u| u.output_tokens)),
    );
    gateway.insert(
        "cached_input_tokens".into(),
        json!(usage.and_then(|u| u.cached_input_tokens)),
    );
    gateway.insert("cost_usd".into(), json!(summary.cost));
    gateway.insert(
        "duration_ms".into(),
        json!(summary.duration.as_millis() as u64),
    );
    gateway.insert(
        "time_to_first_token_ms".into(),
        json!(summary.time_to_first_token.map(|d| d.as_millis() as u64)),
    );
    gateway.insert(
        "finish_reason".into(),
        json!(summary.finish_reason.map(FinishReason::as_str)),
    );
    gateway.insert(
        "error_class".into(),
        json!(summary.error.map(|err| err.class.as_str())),
    );
    gateway.insert(
        "error".into(),
        json!(summary.error.map(|err| err.message.clone())),
    );
    gateway.insert("attempts".into(), json!(summary.attempts));
    gateway.insert("credential".into(), json!(summary.credential));
    gateway.insert("end_user".into(), json!(input.request.user));
    gateway.insert("temperature".into(), json!(input.request.temperature));
    gateway.insert("max_tokens".into(), json!(input.request.max_tokens));
    gateway.insert(
        "tools".into(),
        json!(input
            .request
            .tools
            .iter()
            .map(|t| t.name.clone())
            .collect::<Vec<_>>()),
    );
    let mut document = json!({
        "interaction_type": "ai_completion",
        "user_id": actor.subject.to_string(),
        "user_type": actor.role.to_string(),
        "ai_conversation": {
            "messages": messages,
            "total_tokens": usage.map(|u| u.total_tokens()).unwrap_or(0),
            "duration_ms": summary.duration.as_millis() as u64,
        },
        "gateway": gateway,
    });
    if let Some(cost) = summary.cost {
        document["ai_conversation"]["cost"] = json!(cost);
    }
    if let Some(conversation_id) = &input.conversation_id {
        document["conversation_id"] = json!(conversation_id);
    }
    if let Some((experiment, variant)) = &route.variant {
        document["experiments"] = json!({ experiment: variant });
    }
    document
}

fn tool_calls_json(calls: &[ToolCall]) -> Value {
    Value::Array(
        calls
            .iter()
            .map(|call| json!({"id": call.id, "name": call.name, "arguments": call.arguments}))
            .collect(),
    )
}

fn credential_kind(chosen: &ChosenCredential) -> &'static str {
    match (&chosen.credential, &chosen.user_key) {
        (Credential::User(_), _) => "user_key",
        (Credential::Platform, _) => "platform",
    }
}

/// Follows a started stream, records what passes, and on completion, failure or the client
/// going away settles budgets, updates metrics and logs the call — exactly once.
struct StreamTracker {
    gateway: Arc<GatewayService>,
    actor: Principal,
    input: ChatInput,
    route: Route,
    route_info: RouteInfo,
    admission: Option<Admission>,
    key_reservation: Option<Reservation>,
    credential: &'static str,
    attempts: Vec<Value>,
    labels: metrics::ModelLabels,
    interaction_id: Uuid,
    started: Instant,
    time_to_first_token: Duration,
    text: String,
    tool_calls: Vec<ToolCall>,
    finish_reason: Option<FinishReason>,
    usage: Option<Usage>,
    error: Option<ProviderError>,
    finished: bool,
}

impl StreamTracker {
    fn observe(&mut self, event: &StreamEvent) {
        match event {
            StreamEvent::Text(text) => self.text.push_str(text),
            StreamEvent::ToolCallStart { index, id, name } => {
                let index = *index as usize;
                if self.tool_calls.len() <= index {
                    self.tool_calls.resize(
                        index + 1,
                        ToolCall {
                            id: String::new(),
                            name: String::new(),
                            arguments: String::new(),
                        },
                    );
                }
                self.tool_calls[index].id = id.clone();
                self.tool_calls[index].name = name.clone();
            }
            StreamEvent::ToolCallArguments { index, fragment } => {
                if let Some(call) = self.tool_calls.get_mut(*index as usize) {
                    call.arguments.push_str(fragment);
                }
            }
            StreamEvent::Finish(reason) => self.finish_reason = Some(reason.clone()),
            StreamEvent::Usage(usage) => self.usage = Some(*usage),
        }
    }

    /// Settles, measures and logs. Runs once; the budget settlement is spawned because this
    /// may run from `Drop`.
    fn finish(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        let duration = self.started.elapsed();
        let target = Target {
            provider: self.route_info.provider.clone(),
            model: self.route_info.model.clone(),
        };
        let usage = self.usage;
        let cost = match usage {
            Some(usage) => self.gateway.price(&target, &usage),
            None => None,
        };
        if self.error.is_none() && self.finish_reason.is_none() {
            // The client went away before the end: log what was sent, marked incomplete.
            self.error = Some(ProviderError::new(
                &target.provider,
                ErrorClass::InvalidResponse,
                "the client disconnected before the answer was complete",
            ));
        }
        match &self.error {
            None => self.gateway.observe_success(
                &self.labels,
                duration,
                Some(self.time_to_first_token),
                &usage.unwrap_or_default(),
                cost,
            ),
            Some(err) => self.gateway.observe_error(&self.labels, err),
        }
        let incomplete = self.error.is_some();
        self.gateway
            .logger
            .enqueue(calllog::LogJob::Chat(Box::new(calllog::PendingChatLog {
                actor: self.actor.clone(),
                input: self.input.clone(),
                route: self.route.clone(),
                route_info: self.route_info.clone(),
                content: (!self.text.is_empty()).then(|| std::mem::take(&mut self.text)),
                tool_calls: std::mem::take(&mut self.tool_calls),
                finish_reason: self.finish_reason.clone(),
                usage,
                cost,
                duration,
                time_to_first_token: Some(self.time_to_first_token),
                error: self.error.clone(),
                incomplete,
                attempts: std::mem::take(&mut self.attempts),
                streamed: true,
                credential: self.credential,
                interaction_id: self.interaction_id,
            })));
        let gateway = self.gateway.clone();
        let admission = self.admission.take();
        let key_reservation = self.key_reservation.take();
        let settled_usage = usage.unwrap_or_default();
        let settle = async move {
            if let Some(admission) = admission {
                gateway.settle(&admission, &settled_usage, cost).await;
            }
            gateway
                .settle_user_key(key_reservation, &settled_usage, cost)
                .await;
        };
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            // A short task with no owner beyond the runtime: it only settles counters, and a
            // runtime shutting down simply leaves a reservation to expire with its window.
            handle.spawn(settle);
        }
    }
}

impl Drop for StreamTracker {
    fn drop(&mut self) {
        self.finish();
    }
}

fn tracked_stream(
    first: StreamEvent,
    rest: flywheel_llm::ChatStream,
    mut tracker: StreamTracker,
) -> BoxStream<'static, GatewayStreamItem> {
    tracker.observe(&first);
    let head = futures::stream::iter([GatewayStreamItem::Event(first)]);
    let tail = futures::stream::unfold(Some((rest, tracker)), |state| async move {
        let (mut rest, mut tracker) = state?;
        match rest.next().await {
            Some(Ok(event)) => {
                tracker.observe(&event);
                Some((GatewayStreamItem::Event(event), Some((rest, tracker))))
            }
            Some(Err(err)) => {
                let item = GatewayStreamItem::Error {
                    class: err.class,
                    message: err.message.clone(),
                };
                tracker.error = Some(err);
                tracker.finish();
                Some((item, None))
            }
            None => {
                if tracker.finish_reason.is_none() {
                    let err = ProviderError::invalid_response(
                        &tracker.route_info.provider,
                        "the stream ended without a finish reason",
                    );
                    let item = GatewayStreamItem::Error {
                        class: err.class,
                        message: err.message.clone(),
                    };
                    tracker.error = Some(err);
                    tracker.finish();
                    return Some((item, None));
                }
                tracker.finish();
                None
            }
        }
    });
    Box::pin(head.chain(tail))
}

fn unsupported_error(unsupported: &flywheel_llm::Unsupported) -> ServiceError {
    ValidationErrors::single(unsupported.parameter.clone(), unsupported.to_string()).into()
}

fn upstream_error(error: &ProviderError) -> ServiceError {
    if error.class == ErrorClass::Authentication && error.status.is_none() {
        // No credential at all (the adapter refused before calling): nothing upstream said
        // no, and the caller can fix it, so say how.
        return ServiceError::Upstream(crate::error::UpstreamFailure {
            class: ErrorClass::Unavailable.as_str(),
            provider: error.provider.clone(),
            upstream_status: None,
            message: format!(
                "{provider}: {message}. Configure a platform key (gateway.providers.{provider}.api_key, e.g. from OPENAI_API_KEY for openai), store your own with POST /v1/provider-keys, or use a local model (`local/…`; GET /v1/models lists what is available)",
                provider = error.provider,
                message = error.message,
            ),
            retry_after: None,
        });
    }
    ServiceError::Upstream(crate::error::UpstreamFailure {
        class: error.class.as_str(),
        provider: error.provider.clone(),
        upstream_status: error.status,
        message: match error.class {
            // The provider's own words may name the key's owner or a fragment of it.
            ErrorClass::Authentication => format!(
                "{} rejected the credentials (HTTP {}); check the stored provider key",
                error.provider,
                error
                    .status
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "-".into())
            ),
            _ => error.to_string(),
        },
        retry_after: error.retry_after,
    })
}

/// Dollars as integer micro-dollars for the budget counters.
fn micros(usd: f64) -> u64 {
    if usd.is_finite() && usd > 0.0 {
        (usd * 1_000_000.0).round() as u64
    } else {
        0
    }
}

/// A conservative token estimate for budgets before the provider counts: about four
/// characters per token for English text, rounded up.
fn estimate_tokens(text: &str) -> u64 {
    (text.len() as u64).div_ceil(4)
}

fn estimate_request_tokens(request: &ChatRequest) -> u64 {
    let messages: u64 = request
        .messages
        .iter()
        .map(|message| {
            4 + message.content.as_deref().map(estimate_tokens).unwrap_or(0)
                + message
                    .tool_calls
                    .iter()
                    .map(|call| estimate_tokens(&call.arguments) + 4)
                    .sum::<u64>()
        })
        .sum();
    let tools: u64 = request
        .tools
        .iter()
        .map(|tool| estimate_tokens(&tool.parameters.to_string()) + 8)
        .sum();
    messages + tools
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micro_dollars_round_and_clamp() {
        assert_eq!(micros(1.5), 1_500_000);
        assert_eq!(micros(-1.0), 0);
        assert_eq!(micros(f64::NAN), 0);
        assert_eq!(estimate_tokens("abcde"), 2);
    }
}
