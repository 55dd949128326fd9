//! The state every handler shares.

use std::sync::Arc;

use flywheel_services::IdentityService;
use flywheel_store::Store;

use crate::metrics::HttpMetrics;

/// HTTP settings the router needs (a subset of the server configuration).
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub max_body_bytes: usize,
    pub cors_allowed_origins: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct AppState {
    pub identity: Arc<IdentityService>,
    pub store: Store,
    pub metrics: Arc<HttpMetrics>,
    pub http: Arc<HttpSettings>,
}

impl AppState {
    pub fn new(
        identity: Arc<IdentityService>,
        store: Store,
        max_body_bytes: usize,
        cors_allowed_origins: Vec<String>,
    ) -> AppState {
        AppState {
            identity,
            metrics: Arc::new(HttpMetrics::new(store.clone())),
            store,
            http: Arc::new(HttpSettings {
                max_body_bytes,
                cors_allowed_origins,
            }),
        }
    }
}
