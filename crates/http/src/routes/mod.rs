//! Route registration. Every API route is added here through `utoipa_axum::routes!`.

mod analytics;
mod api_keys;
mod concierge;
mod gateway;
mod health;
mod interactions;
mod knowledge;
mod me;
mod metrics;
mod power100;
mod provider_keys;
mod tenants;

use axum::http::StatusCode;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiError;
use crate::openapi::ApiDoc;
use crate::state::AppState;

pub(crate) fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(metrics::metrics))
        .routes(routes!(me::me))
        .routes(routes!(tenants::create_tenant, tenants::list_tenants))
        .routes(routes!(api_keys::create_api_key, api_keys::list_api_keys))
        .routes(routes!(api_keys::revoke_api_key))
        .routes(routes!(
            interactions::create_interactions,
            interactions::list_interactions
        ))
        .routes(routes!(interactions::list_rejected))
        .routes(routes!(interactions::get_interaction))
        .routes(routes!(interactions::record_outcome))
        .routes(routes!(interactions::record_feedback))
        .routes(routes!(interactions::record_outcome_by))
        .routes(routes!(gateway::chat_completions))
        .routes(routes!(gateway::embeddings))
        .routes(routes!(gateway::list_models))
        .routes(routes!(gateway::inference_feedback))
        .routes(routes!(
            provider_keys::create_provider_key,
            provider_keys::list_provider_keys
        ))
        .routes(routes!(provider_keys::delete_provider_key))
        .routes(routes!(concierge::start_session))
        .routes(routes!(concierge::send_message))
        .routes(routes!(concierge::get_session))
        .routes(routes!(concierge::end_session))
        .routes(routes!(
            concierge::list_conversations,
            concierge::erase_conversations
        ))
        .routes(routes!(concierge::message_feedback))
        .routes(routes!(analytics::sql))
        .routes(routes!(analytics::ai_usage))
        .routes(routes!(analytics::funnel))
        .routes(routes!(analytics::partners))
        .routes(routes!(analytics::models))
        .routes(routes!(analytics::datasets))
        .routes(routes!(
            knowledge::create_collection,
            knowledge::list_collections
        ))
        .routes(routes!(
            knowledge::get_collection,
            knowledge::delete_collection
        ))
        .routes(routes!(knowledge::reembed_collection))
        .routes(routes!(knowledge::add_document, knowledge::list_documents))
        .routes(routes!(knowledge::get_document, knowledge::delete_document))
        .routes(routes!(knowledge::get_job))
        .routes(routes!(knowledge::search))
        .routes(routes!(knowledge::answer))
        .routes(routes!(
            power100::create_contractor,
            power100::list_contractors
        ))
        .routes(routes!(
            power100::get_contractor,
            power100::update_contractor
        ))
        .routes(routes!(power100::contractor_matches))
        .routes(routes!(power100::create_partner, power100::list_partners))
        .routes(routes!(power100::get_partner, power100::update_partner))
        .routes(routes!(power100::create_booking))
        .routes(routes!(power100::get_booking, power100::update_booking))
        .routes(routes!(power100::create_deal))
        .routes(routes!(power100::get_deal))
}

pub(crate) async fn fallback() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such route; see /openapi.json for the API",
    )
}
