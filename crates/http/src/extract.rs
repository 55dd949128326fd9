//! Extractors that turn requests into typed values or well-formed errors: JSON bodies with
//! field-level messages, and the authenticated principal.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use flywheel_core::{FieldError, Principal};
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::state::AppState;

/// A JSON body. Wrong content type → 415, too large → 413, not JSON (syntax, invalid UTF-8,
/// nesting deeper than 128) → 400, wrong shape → 422 naming the field.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<ApiJson<T>, ApiError> {
        if !is_json_content_type(&req) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with `Content-Type: application/json`",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            let status = rejection.status();
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    status,
                    "payload_too_large",
                    "the request body is larger than server.max_body_bytes allows",
                )
            } else {
                ApiError::new(
                    status,
                    ApiError::code_for_status(status),
                    rejection.body_text(),
                )
            }
        })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Parses JSON text into `T`, classifying errors as syntax (400) or shape (422).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        json_error(&path, &inner)
    })?;
    deserializer.end().map_err(|err| json_error(".", &err))?;
    Ok(value)
}

pub(crate) fn json_error(path: &str, err: &serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    match err.classify() {
        Category::Data => {
            let field = if path == "." {
                "body".to_owned()
            } else {
                path.to_owned()
            };
            ApiError::validation(vec![FieldError::new(field, strip_position(err))])
        }
        Category::Syntax | Category::Eof | Category::Io => ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("the body is not valid JSON: {err}"),
        ),
    }
}

/// serde_json appends " at line L column C"; for data errors the field path says more.
fn strip_position(err: &serde_json::Error) -> String {
    let text = err.to_string();
    match text.rfind(" at line ") {
        Some(idx) => text[..idx].to_owned(),
        None => text,
    }
}

fn is_json_content_type(req: &Request) -> bool {
    let Some(value) = req.headers().get(header::CONTENT_TYPE) else {
        return false;
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The caller, authenticated from `Authorization: Bearer …` (an API key or a JWT).
#[derive(Debug, Clone)]
pub struct Authenticated(pub Principal);

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Authenticated, ApiError> {
        if let Some(principal) = parts.extensions.get::<Principal>() {
            return Ok(Authenticated(principal.clone()));
        }
        let header_value = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(ApiError::unauthenticated)?;
        let header_text = header_value
            .to_str()
            .map_err(|_| ApiError::unauthenticated())?;
        let (scheme, credential) = header_text
            .split_once(' ')
            .ok_or_else(ApiError::unauthenticated)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(ApiError::unauthenticated());
        }
        let principal = state.identity.authenticate(credential.trim()).await?;
        let span = tracing::Span::current();
        span.record("tenant", principal.tenant_id.as_str());
        span.record("principal", principal.subject.as_str());
        if let Some(slot) = parts.extensions.get::<crate::middleware::PrincipalSlot>() {
            let _ = slot.0.set(principal.clone());
        }
        parts.extensions.insert(principal.clone());
        Ok(Authenticated(principal))
    }
}

/// The caller's address and user agent (through trusted proxies), for enrichment.
#[derive(Debug, Clone)]
pub struct Client(pub flywheel_services::enrich::ClientContext);

impl FromRequestParts<AppState> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Client, Self::Rejection> {
        Ok(Client(crate::client::client_context(
            &parts.headers,
            &parts.extensions,
            &state.http.trusted_proxies,
        )))
    }
}
