//! Request observation: request ids, one span per request, metrics, and uniform error bodies.

use std::time::Instant;

use std::sync::{Arc, OnceLock};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use flywheel_core::Principal;
use flywheel_services::ingest::ApiCall;

use crate::client::client_context;
use crate::error::ApiError;
use crate::state::AppState;

/// Routes whose handlers record their own interaction for every call.
const SELF_LOGGING_ROUTES: [&str; 2] = ["/v1/chat/completions", "/v1/embeddings"];
/// Filled by the `Authenticated` extractor so that the middleware learns who called.
#[derive(Debug, Clone, Default)]
pub struct PrincipalSlot(pub Arc<OnceLock<Principal>>);

pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Wraps every request: assigns or accepts `x-request-id`, runs the request inside a span with
/// request id, tenant, route, status and latency, records metrics, and rewrites any error
/// response that is not already our JSON error body (404 from the router, 405, 413 …).
pub async fn observe(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .filter(|value| is_acceptable_request_id(value))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().as_str().to_owned();
    let slot = PrincipalSlot::default();
    req.extensions_mut().insert(slot.clone());
    // Gateway calls are logged by the gateway itself, with far more than an `api_call` record
    // would hold (route, status, latency and caller included), so they are not tracked twice.
    let logs_itself = SELF_LOGGING_ROUTES.contains(&route.as_str());
    let tracking = (state.http.api_call_tracking && !logs_itself).then(|| {
        let client = client_context(req.headers(), req.extensions(), &state.http.trusted_proxies);
        let query: serde_json::Map<String, serde_json::Value> = req
            .uri()
            .query()
            .map(|query| {
                query
                    .split('&')
                    .filter(|pair| !pair.is_empty())
                    .map(|pair| {
                        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                        (key.to_owned(), serde_json::Value::String(value.to_owned()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        (client, query)
    });

    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %method,
        route = %route,
        tenant = tracing::field::Empty,
        principal = tracing::field::Empty,
        status = tracing::field::Empty,
        latency_ms = tracing::field::Empty,
    );
    let response = next.run(req).instrument(span.clone()).await;
    let mut response = normalize_error_body(response).await;

    let status = response.status();
    let elapsed = started.elapsed();
    span.record("status", status.as_u16());
    span.record("latency_ms", elapsed.as_secs_f64() * 1000.0);
    span.in_scope(|| {
        if status.is_server_error() {
            tracing::warn!("request finished");
        } else {
            tracing::info!("request finished");
        }
    });
    state
        .metrics
        .observe_request(&method, &route, status.as_u16(), elapsed.as_secs_f64());
    if let (Some((client, query)), Some(principal)) = (tracking, slot.0.get()) {
        // An in-memory enqueue only: the response is not held for the database.
        state.ingest.track_api_call(ApiCall {
            principal: principal.clone(),
            method: method.clone(),
            route: route.clone(),
            status: status.as_u16(),
            latency_ms: elapsed.as_secs_f64() * 1000.0,
            request_id: request_id.clone(),
            query,
            client,
        });
    }
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID.clone(), value);
    }
    response
}

fn is_acceptable_request_id(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 128
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

async fn normalize_error_body(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    if is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    // The original body is plain text from axum or tower; keep it as the message when short.
    let text = axum::body::to_bytes(body, 4096)
        .await
        .ok()
        .and_then(|bytes| String::from_utf8(bytes.to_vec()).ok())
        .filter(|text| !text.trim().is_empty())
        .unwrap_or_else(|| default_message(status).to_owned());
    let mut rewritten =
        ApiError::new(status, ApiError::code_for_status(status), text).into_response();
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            rewritten.headers_mut().insert(name.clone(), value.clone());
        }
    }
    rewritten
}

fn default_message(status: StatusCode) -> &'static str {
    match status {
        StatusCode::NOT_FOUND => "no such route; see /openapi.json for the API",
        StatusCode::METHOD_NOT_ALLOWED => "this route does not accept that method",
        StatusCode::PAYLOAD_TOO_LARGE => {
            "the request body is larger than server.max_body_bytes allows"
        }
        _ => status.canonical_reason().unwrap_or("error"),
    }
}
