//! Flywheel's HTTP interface: the axum router, wire types, the single error mapping, request
//! observation (request ids, spans, metrics) and the OpenAPI document.
//!
//! Architecture invariant: handlers are thin — they extract wire types, convert them to
//! service inputs, call one service function and map the result. No business rule lives here.
//! Every route is registered through `utoipa_axum::routes!`, so it is in `/openapi.json` by
//! construction (a tidy test forbids plain `.route(` calls).

mod client;
mod error;
mod extract;
mod metrics;
mod middleware;
mod openapi;
mod routes;
mod state;

pub use client::parse_trusted_proxies;
pub use error::{ApiError, ErrorBody};
pub use metrics::HttpMetrics;
pub use openapi::openapi_document;
pub use state::{AppState, HttpSettings, Services};

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderName, HeaderValue, Method};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// The whole HTTP application for `state`.
pub fn router(state: AppState) -> Router {
    let (api_routes, document) = routes::api_router().split_for_parts();
    let document = std::sync::Arc::new(document);
    let max_body_bytes = state.http.max_body_bytes;
    let cors = cors_layer(&state.http.cors_allowed_origins);
    let mut app = api_routes
        .merge(openapi::document_route(document))
        .fallback(routes::fallback)
        .with_state(state.clone())
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            state,
            middleware::observe,
        ))
        .layer(CatchPanicLayer::custom(error::panic_response));
    if let Some(cors) = cors {
        app = app.layer(cors);
    }
    app
}

fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|origin| match HeaderValue::from_str(origin) {
            Ok(value) => Some(value),
            Err(_) => {
                tracing::warn!(origin = %origin, "ignoring CORS origin that is not a valid header value");
                None
            }
        })
        .collect();
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("x-request-id"),
            ])
            .expose_headers([HeaderName::from_static("x-request-id")]),
    )
}
