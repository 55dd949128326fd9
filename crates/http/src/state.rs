//! The state every handler shares.

use std::sync::Arc;

use flywheel_services::analytics::AnalyticsService;
use flywheel_services::concierge::ConciergeService;
use flywheel_services::gateway::GatewayService;
use flywheel_services::ingest::IngestService;
use flywheel_services::knowledge::KnowledgeService;
use flywheel_services::power100::Power100Service;
use flywheel_services::{IdentityService, ProviderKeyService};
use flywheel_store::Store;
use ipnet::IpNet;

use crate::metrics::HttpMetrics;

/// HTTP settings the router needs (a subset of the server configuration).
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub max_body_bytes: usize,
    pub cors_allowed_origins: Vec<String>,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Record every authenticated request as an `api_call` interaction.
    pub api_call_tracking: bool,
}

/// The use cases the router calls.
#[derive(Debug, Clone)]
pub struct Services {
    pub identity: Arc<IdentityService>,
    pub ingest: Arc<IngestService>,
    pub gateway: Arc<GatewayService>,
    pub provider_keys: Arc<ProviderKeyService>,
    pub concierge: Arc<ConciergeService>,
    pub analytics: Arc<AnalyticsService>,
    /// `None` when `knowledge.enabled = false`.
    pub knowledge: Option<Arc<KnowledgeService>>,
    /// Power100's profiles, matching, bookings and deals.
    pub power100: Option<Arc<Power100Service>>,
}

#[derive(Debug, Clone)]
pub struct AppState {
    pub identity: Arc<IdentityService>,
    pub ingest: Arc<IngestService>,
    pub gateway: Arc<GatewayService>,
    pub provider_keys: Arc<ProviderKeyService>,
    pub concierge: Arc<ConciergeService>,
    pub analytics: Arc<AnalyticsService>,
    pub knowledge: Option<Arc<KnowledgeService>>,
    pub power100: Option<Arc<Power100Service>>,
    pub store: Store,
    pub metrics: Arc<HttpMetrics>,
    pub http: Arc<HttpSettings>,
}

impl AppState {
    pub fn new(services: Services, store: Store, settings: HttpSettings) -> AppState {
        let Services {
            identity,
            ingest,
            gateway,
            provider_keys,
            concierge,
            analytics,
            knowledge,
            power100,
        } = services;
        AppState {
            identity,
            metrics: Arc::new(HttpMetrics::new(
                store.clone(),
                ingest.clone(),
                gateway.metrics(),
            )),
            ingest,
            gateway,
            provider_keys,
            concierge,
            analytics,
            knowledge,
            power100,
            store,
            http: Arc::new(settings),
        }
    }
}
