//! The OpenAPI 3.1 document, generated from the handlers' annotations and served at `/openapi.json`.

use std::sync::Arc;

use axum::routing::get;
use axum::{Json, Router};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::OpenApi as OpenApiDocument;
use utoipa::{Modify, OpenApi};

use crate::error::ErrorBody;
use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Flywheel",
        description = "Self-hosted platform for AI-first products: capture every interaction, link it to outcomes, analyse, experiment, train.",
        license(name = "Apache-2.0")
    ),
    modifiers(&BearerAuth),
    components(schemas(ErrorBody)),
    tags(
        (name = "health", description = "Liveness and readiness (no authentication)"),
        (name = "analytics", description = "SQL over the lake, the reports and the derived datasets"),
        (name = "knowledge", description = "Knowledge base: collections, documents, search and grounded answers"),
        (name = "concierge", description = "The AI Concierge: sessions, messages, transcripts, erasure and feedback"),
        (name = "identity", description = "Tenants, API keys and the calling principal"),
        (name = "interactions", description = "Capture interactions, link outcomes and feedback, inspect rejects"),
        (name = "observability", description = "Prometheus metrics"),
        (name = "power100", description = "Power100: contractor and partner profiles, explainable matches, demo bookings and deals"),
    )
)]
pub(crate) struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut OpenApiDocument) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key (`fw_<prefix>_<secret>`) or an HS256 JWT from `flywheel token issue`",
                    ))
                    .build(),
            ),
        );
    }
}

/// The document as served, built from every registered route.
pub fn openapi_document() -> OpenApiDocument {
    crate::routes::api_router().split_for_parts().1
}

pub(crate) fn document_route(document: Arc<OpenApiDocument>) -> Router<AppState> {
    Router::new().route(
        "/openapi.json",
        get(move || {
            let document = document.clone();
            async move { Json(document.as_ref().clone()) }
        }),
    )
}
