//! Power100: contractor and partner profiles, explainable matches, demo bookings and deals
//! (`/v1/contractors`, `/v1/partners`, `/v1/demo-bookings`, `/v1/deals`; docs/power100-api.md).
//!
//! Profile responses carry the version as an `ETag`; `PUT` and `PATCH` accept it back in
//! `If-Match` (or as `version` in the body) and answer 409 when the stored version moved on.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use flywheel_core::ValidationErrors;
use flywheel_power100::profile::{ContactInput, PartnerContactsInput};
use flywheel_power100::{ContractorProfileInput, PartnerProfileInput};
use flywheel_services::power100::{
    BookingUpdate, MatchOutcome, MatchRequest, NewBookingInput, NewDealInput, Power100Service,
    ProfilePage, ProfileView,
};
use flywheel_services::ServiceError;
use flywheel_store::{DealRecord, DemoBookingRecord};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, Authenticated};
use crate::state::AppState;

fn service(state: &AppState) -> Result<&Power100Service, ApiError> {
    state.power100.as_deref().ok_or_else(|| {
        ApiError::from(ServiceError::Disabled(
            "Power100 is not configured in this process".to_owned(),
        ))
    })
}

/// The version named by `If-Match` (`"3"`, `W/"3"` or `3`) or by the body, which must agree.
fn expected_version(headers: &HeaderMap, body: Option<i64>) -> Result<Option<i64>, ApiError> {
    let header = match headers.get(header::IF_MATCH) {
        None => None,
        Some(value) => {
            let raw = value.to_str().unwrap_or_default().trim();
            let raw = raw.strip_prefix("W/").unwrap_or(raw).trim_matches('"');
            match raw.parse::<i64>() {
                Ok(version) => Some(version),
                Err(_) => {
                    return Err(ApiError::from(ServiceError::from(
                        ValidationErrors::single(
                            "If-Match",
                            "must be a profile version such as \"3\"",
                        ),
                    )))
                }
            }
        }
    };
    match (header, body) {
        (Some(a), Some(b)) if a != b => Err(ApiError::from(ServiceError::from(
            ValidationErrors::single("version", "differs from If-Match"),
        ))),
        (header, body) => Ok(header.or(body)),
    }
}

fn with_etag(status: StatusCode, version: i64, body: impl IntoResponse) -> Response {
    let mut response = (status, body).into_response();
    if let Ok(value) = HeaderValue::from_str(&format!("\"{version}\"")) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

// ----- profiles -----

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactBody {
    name: String,
    email: Option<String>,
    phone: Option<String>,
}

impl From<ContactBody> for ContactInput {
    fn from(body: ContactBody) -> ContactInput {
        ContactInput {
            name: body.name,
            email: body.email,
            phone: body.phone,
        }
    }
}

/// A contractor profile (docs/power100.md, "Profiles", for the rules).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContractorBody {
    /// Required on `POST`; on `PUT` absent or equal to the path's.
    #[serde(default)]
    id: Option<String>,
    company_name: String,
    contact: ContactBody,
    #[serde(default)]
    service_areas: Vec<String>,
    /// 1–3 from the catalogue, the first is primary.
    focus_areas: Vec<String>,
    revenue_tier: Option<String>,
    team_size: Option<i64>,
    #[serde(default)]
    tech_stack: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    readiness_indicators: BTreeMap<String, bool>,
    business_goals: Option<String>,
    challenges: Option<String>,
    /// The version being replaced (`PUT`; like `If-Match`).
    version: Option<i64>,
}

impl ContractorBody {
    fn into_input(self) -> (ContractorProfileInput, Option<i64>) {
        (
            ContractorProfileInput {
                id: self.id.unwrap_or_default(),
                company_name: self.company_name,
                contact: self.contact.into(),
                service_areas: self.service_areas,
                focus_areas: self.focus_areas,
                revenue_tier: self.revenue_tier,
                team_size: self.team_size,
                tech_stack: self.tech_stack,
                readiness_indicators: self.readiness_indicators,
                business_goals: self.business_goals,
                challenges: self.challenges,
            },
            self.version,
        )
    }
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PartnerContactsBody {
    ceo: Option<ContactBody>,
    customer_experience: Option<ContactBody>,
    sales: Option<ContactBody>,
}

/// A strategic partner's profile. It holds no score: PowerConfidence is computed from evidence.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PartnerBody {
    /// Required on `POST`; on `PUT` absent or equal to the path's. A partner's credential has
    /// this id as its subject.
    #[serde(default)]
    id: Option<String>,
    company_name: String,
    description: Option<String>,
    value_proposition: Option<String>,
    #[serde(default)]
    key_differentiators: Vec<String>,
    #[serde(default)]
    focus_areas_served: Vec<String>,
    #[serde(default)]
    revenue_tiers_served: Vec<String>,
    #[serde(default)]
    service_areas: Vec<String>,
    #[serde(default)]
    contacts: PartnerContactsBody,
    /// A slug; default `standard`.
    engagement_tier: Option<String>,
    /// Admins only. Default `true` on creation; absent on `PUT` keeps the stored value.
    active: Option<bool>,
    /// The version being replaced (`PUT`; like `If-Match`).
    version: Option<i64>,
}

impl PartnerBody {
    fn into_input(self) -> (PartnerProfileInput, Option<bool>, Option<i64>) {
        (
            PartnerProfileInput {
                id: self.id.unwrap_or_default(),
                company_name: self.company_name,
                description: self.description,
                value_proposition: self.value_proposition,
                key_differentiators: self.key_differentiators,
                focus_areas_served: self.focus_areas_served,
                revenue_tiers_served: self.revenue_tiers_served,
                service_areas: self.service_areas,
                contacts: PartnerContactsInput {
                    ceo: self.contacts.ceo.map(Into::into),
                    customer_experience: self.contacts.customer_experience.map(Into::into),
                    sales: self.contacts.sales.map(Into::into),
                },
                engagement_tier: self.engagement_tier,
                active: self.active.unwrap_or(true),
            },
            self.active,
            self.version,
        )
    }
}

/// A stored profile: its canonical fields, with the version and times.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProfileResponse {
    id: String,
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    /// The validated profile in canonical form (slugs, state codes, `null` for absent values).
    #[schema(value_type = Object)]
    profile: Value,
}

impl From<ProfileView> for ProfileResponse {
    fn from(view: ProfileView) -> ProfileResponse {
        ProfileResponse {
            id: view.id,
            version: view.version,
            created_at: view.created_at,
            updated_at: view.updated_at,
            profile: view.profile,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProfileList {
    data: Vec<ProfileResponse>,
    /// Pass as `after` for the next page; absent on the last page.
    next_after: Option<String>,
}

impl From<ProfilePage> for ProfileList {
    fn from(page: ProfilePage) -> ProfileList {
        ProfileList {
            data: page.items.into_iter().map(ProfileResponse::from).collect(),
            next_after: page.next_after,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// The `next_after` of the previous page.
    after: Option<String>,
    /// At most 500; default 50.
    limit: Option<u32>,
}

fn profile_response(status: StatusCode, view: ProfileView) -> Response {
    let version = view.version;
    with_etag(status, version, Json(ProfileResponse::from(view)))
}

/// Creates a contractor profile (admins, services, or the contractor itself: id = subject).
#[utoipa::path(post, path = "/v1/contractors", tag = "power100", security(("bearer" = [])),
    request_body = ContractorBody,
    responses((status = 201, body = ProfileResponse), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "the id is taken"), (status = 422, body = ErrorBody)))]
pub async fn create_contractor(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    ApiJson(body): ApiJson<ContractorBody>,
) -> Result<Response, ApiError> {
    let (input, _) = body.into_input();
    let view = service(&state)?
        .create_contractor(&principal, input)
        .await?;
    Ok(profile_response(StatusCode::CREATED, view))
}

/// The tenant's contractor profiles by id (admins and services).
#[utoipa::path(get, path = "/v1/contractors", tag = "power100", security(("bearer" = [])),
    params(ListParams),
    responses((status = 200, body = ProfileList), (status = 403, body = ErrorBody)))]
pub async fn list_contractors(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Query(params): Query<ListParams>,
) -> Result<Json<ProfileList>, ApiError> {
    let page = service(&state)?
        .list_contractors(&principal, params.after.as_deref(), params.limit)
        .await?;
    Ok(Json(page.into()))
}

/// One contractor profile (admins, services, the contractor itself).
#[utoipa::path(get, path = "/v1/contractors/{id}", tag = "power100", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = ProfileResponse), (status = 404, body = ErrorBody)))]
pub async fn get_contractor(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let view = service(&state)?.get_contractor(&principal, &id).await?;
    Ok(profile_response(StatusCode::OK, view))
}

/// Replaces a contractor profile (admins, services, the contractor itself).
#[utoipa::path(put, path = "/v1/contractors/{id}", tag = "power100", security(("bearer" = [])),
    params(("id" = String, Path), ("If-Match" = Option<String>, Header, description = "the version read, e.g. \"3\"")),
    request_body = ContractorBody,
    responses((status = 200, body = ProfileResponse), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "the stored version differs"), (status = 422, body = ErrorBody)))]
pub async fn update_contractor(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<ContractorBody>,
) -> Result<Response, ApiError> {
    let (input, version) = body.into_input();
    let version = expected_version(&headers, version)?;
    let view = service(&state)?
        .update_contractor(&principal, &id, input, version)
        .await?;
    Ok(profile_response(StatusCode::OK, view))
}

/// Creates a partner profile (admins and services).
#[utoipa::path(post, path = "/v1/partners", tag = "power100", security(("bearer" = [])),
    request_body = PartnerBody,
    responses((status = 201, body = ProfileResponse), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "the id is taken"), (status = 422, body = ErrorBody)))]
pub async fn create_partner(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    ApiJson(body): ApiJson<PartnerBody>,
) -> Result<Response, ApiError> {
    let (input, _, _) = body.into_input();
    let view = service(&state)?.create_partner(&principal, input).await?;
    Ok(profile_response(StatusCode::CREATED, view))
}

/// Partner profiles by id: all for admins and services, active ones (and its own) for others.
#[utoipa::path(get, path = "/v1/partners", tag = "power100", security(("bearer" = [])),
    params(ListParams),
    responses((status = 200, body = ProfileList)))]
pub async fn list_partners(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Query(params): Query<ListParams>,
) -> Result<Json<ProfileList>, ApiError> {
    let page = service(&state)?
        .list_partners(&principal, params.after.as_deref(), params.limit)
        .await?;
    Ok(Json(page.into()))
}

/// One partner profile (inactive ones: admins, services and the partner itself).
#[utoipa::path(get, path = "/v1/partners/{id}", tag = "power100", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = ProfileResponse), (status = 404, body = ErrorBody)))]
pub async fn get_partner(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let view = service(&state)?.get_partner(&principal, &id).await?;
    Ok(profile_response(StatusCode::OK, view))
}

/// Replaces a partner profile (admins, services, or the partner itself — which cannot change
/// `active`).
#[utoipa::path(put, path = "/v1/partners/{id}", tag = "power100", security(("bearer" = [])),
    params(("id" = String, Path), ("If-Match" = Option<String>, Header, description = "the version read, e.g. \"3\"")),
    request_body = PartnerBody,
    responses((status = 200, body = ProfileResponse), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "the stored version differs"), (status = 422, body = ErrorBody)))]
pub async fn update_partner(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<PartnerBody>,
) -> Result<Response, ApiError> {
    let (input, active, version) = body.into_input();
    let version = expected_version(&headers, version)?;
    let view = service(&state)?
        .update_partner(&principal, &id, input, active, version)
        .await?;
    Ok(profile_response(StatusCode::OK, view))
}

// ----- matching -----

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct MatchParams {
    /// 1–20; default 3.
    top: Option<usize>,
    /// The conversation that asked; logged on each match.
    conversation_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FactorResponse {
    /// `focus_area`, `revenue_tier`, `service_area`, `semantic` or `power_confidence`.
    factor: String,
    /// In [0, 1]; absent when the data is missing.
    value: Option<f64>,
    configured_weight: f64,
    /// The weight after missing factors' weight moved to the known ones.
    weight_used: f64,
    contribution: f64,
    /// 1 with data, 0 without.
    confidence: f64,
    reason: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MatchResponse {
    /// The stored match; also the `partner_match` interaction's id.
    match_id: String,
    rank: usize,
    partner_id: String,
    partner_company_name: String,
    /// In [0, 1].
    score: f64,
    /// The share of the configured weight that rested on data.
    coverage: f64,
    power_confidence: Option<f64>,
    factors: Vec<FactorResponse>,
    reasons: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SemanticResponse {
    model: String,
    /// False when the semantic factor is missing for every partner (see `note`).
    used: bool,
    note: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MatchList {
    contractor_id: String,
    semantic: SemanticResponse,
    data: Vec<MatchResponse>,
}

impl From<MatchOutcome> for MatchList {
    fn from(outcome: MatchOutcome) -> MatchList {
        MatchList {
            contractor_id: outcome.contractor_id,
            semantic: SemanticResponse {
                model: outcome.semantic.model,
                used: outcome.semantic.used,
                note: outcome.semantic.note,
            },
            data: outcome
                .matches
                .into_iter()
                .map(|found| MatchResponse {
                    reasons: found
                        .result
                        .reasons()
                        .into_iter()
                        .map(str::to_owned)
                        .collect(),
                    match_id: found.match_id,
                    rank: found.rank,
                    partner_id: found.result.partner_id.to_string(),
                    partner_company_name: found.partner_company_name,
                    score: found.result.score,
                    coverage: found.result.coverage,
                    power_confidence: found.result.power_confidence,
                    factors: found
                        .result
                        .factors
                        .into_iter()
                        .map(|factor| FactorResponse {
                            factor: factor.kind.as_str().to_owned(),
                            value: factor.value,
                            configured_weight: factor.configured_weight,
                            weight_used: factor.weight_used,
                            contribution: factor.contribution,
                            confidence: factor.confidence,
                            reason: factor.reason,
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

/// Ranks the active partners for a contractor, with each factor's contribution and reason;
/// every match is stored and logged as a `partner_match` interaction.
#[utoipa::path(get, path = "/v1/contractors/{id}/matches", tag = "power100", security(("bearer" = [])),
    params(("id" = String, Path), MatchParams),
    responses((status = 200, body = MatchList), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn contractor_matches(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Path(id): Path<String>,
    Query(params): Query<MatchParams>,
) -> Result<Json<MatchList>, ApiError> {
    let outcome = service(&state)?
        .matches(
            &principal,
            MatchRequest {
                contractor_id: id,
                top: params.top,
                conversation_id: params.conversation_id,
            },
        )
        .await?;
    Ok(Json(outcome.into()))
}

// ----- bookings and deals -----

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBookingRequest {
    /// Default: the caller, for a contractor.
    contractor_id: Option<String>,
    /// Required without `match_id`.
    partner_id: Option<String>,
    match_id: Option<String>,
    conversation_id: Option<String>,
    scheduled_for: Option<DateTime<Utc>>,
    notes: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateBookingRequest {
    /// `scheduled`, `completed`, `no_show` or `cancelled` (see the lifecycle).
    status: Option<String>,
    scheduled_for: Option<DateTime<Utc>>,
    notes: Option<String>,
    /// The version being changed (like `If-Match`).
    version: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BookingResponse {
    /// Also the `demo_booking` interaction's id.
    id: String,
    contractor_id: String,
    partner_id: String,
    match_id: Option<String>,
    conversation_id: Option<String>,
    /// `requested` → `scheduled` → `completed` | `no_show` | `cancelled`.
    status: String,
    scheduled_for: Option<DateTime<Utc>>,
    notes: Option<String>,
    version: i64,
    created_by: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<DemoBookingRecord> for BookingResponse {
    fn from(record: DemoBookingRecord) -> BookingResponse {
        BookingResponse {
            id: record.id,
            contractor_id: record.contractor_id,
            partner_id: record.partner_id,
            match_id: record.match_id,
            conversation_id: record.conversation_id,
            status: record.status,
            scheduled_for: record.scheduled_for,
            notes: record.notes,
            version: record.version,
            created_by: record.created_by,
            created_at: record.created_at,
            updated_at: record.updated_at,
        }
    }
}

fn booking_response(status: StatusCode, record: DemoBookingRecord) -> Response {
    let version = record.version;
    with_etag(status, version, Json(BookingResponse::from(record)))
}

/// Books a demo with a partner (status `requested`); an interaction and a `demo_booked`
/// outcome linked to the match or conversation.
#[utoipa::path(post, path = "/v1/demo-bookings", tag = "power100", security(("bearer" = [])),
    request_body = CreateBookingRequest,
    responses((status = 201, body = BookingResponse), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "the partner is not active"), (status = 422, body = ErrorBody)))]
pub async fn create_booking(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    ApiJson(body): ApiJson<CreateBookingRequest>,
) -> Result<Response, ApiError> {
    let booking = service(&state)?
        .create_booking(
            &principal,
            NewBookingInput {
                contractor_id: body.contractor_id,
                partner_id: body.partner_id,
                match_id: body.match_id,
                conversation_id: body.conversation_id,
                scheduled_for: body.scheduled_for,
                notes: body.notes,
            },
        )
        .await?;
    Ok(booking_response(StatusCode::CREATED, booking))
}

/// One demo booking (admins, services, its contractor and its partner).
#[utoipa::path(get, path = "/v1/demo-bookings/{id}", tag = "power100", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = BookingResponse), (status = 404, body = ErrorBody)))]
pub async fn get_booking(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let booking = service(&state)?.get_booking(&principal, &id).await?;
    Ok(booking_response(StatusCode::OK, booking))
}

/// Moves a booking through its lifecycle or changes its time and notes; an invalid transition
/// is 409, an unknown status 422.
#[utoipa::path(patch, path = "/v1/demo-bookings/{id}", tag = "power100", security(("bearer" = [])),
    params(("id" = String, Path), ("If-Match" = Option<String>, Header, description = "the version read")),
    request_body = UpdateBookingRequest,
    responses((status = 200, body = BookingResponse), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "invalid transition or stale version"), (status = 422, body = ErrorBody)))]
pub async fn update_booking(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<UpdateBookingRequest>,
) -> Result<Response, ApiError> {
    let expected_version = expected_version(&headers, body.version)?;
    let booking = service(&state)?
        .update_booking(
            &principal,
            &id,
            BookingUpdate {
                status: body.status,
                scheduled_for: body.scheduled_for,
                notes: body.notes,
                expected_version,
            },
        )
        .await?;
    Ok(booking_response(StatusCode::OK, booking))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDealRequest {
    /// Default: the booking's, or the caller for a contractor.
    contractor_id: Option<String>,
    /// Default: the booking's or the match's.
    partner_id: Option<String>,
    booking_id: Option<String>,
    match_id: Option<String>,
    conversation_id: Option<String>,
    /// The deal's value, ≥ 0.
    value: f64,
    /// `YYYY-MM-DD`; default today (UTC).
    closed_on: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DealResponse {
    /// Also the `deal_closed` interaction's id.
    id: String,
    contractor_id: String,
    partner_id: String,
    booking_id: Option<String>,
    match_id: Option<String>,
    conversation_id: Option<String>,
    status: &'static str,
    value: f64,
    closed_on: String,
    created_by: String,
    created_at: DateTime<Utc>,
}

impl From<DealRecord> for DealResponse {
    fn from(record: DealRecord) -> DealResponse {
        DealResponse {
            id: record.id,
            contractor_id: record.contractor_id,
            partner_id: record.partner_id,
            booking_id: record.booking_id,
            match_id: record.match_id,
            conversation_id: record.conversation_id,
            status: "closed",
            value: record.value,
            closed_on: record.closed_on,
            created_by: record.created_by,
            created_at: record.created_at,
        }
    }
}

/// Records a closed deal; an interaction and a `deal_closed` outcome (with `deal_value`)
/// linked to the match, booking or conversation that led to it.
#[utoipa::path(post, path = "/v1/deals", tag = "power100", security(("bearer" = [])),
    request_body = CreateDealRequest,
    responses((status = 201, body = DealResponse), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn create_deal(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    ApiJson(body): ApiJson<CreateDealRequest>,
) -> Result<(StatusCode, Json<DealResponse>), ApiError> {
    let deal = service(&state)?
        .create_deal(
            &principal,
            NewDealInput {
                contractor_id: body.contractor_id,
                partner_id: body.partner_id,
                booking_id: body.booking_id,
                match_id: body.match_id,
                conversation_id: body.conversation_id,
                value: body.value,
                closed_on: body.closed_on,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(deal.into())))
}

/// One deal (admins, services, its contractor and its partner).
#[utoipa::path(get, path = "/v1/deals/{id}", tag = "power100", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = DealResponse), (status = 404, body = ErrorBody)))]
pub async fn get_deal(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<DealResponse>, ApiError> {
    let deal = service(&state)?.get_deal(&principal, &id).await?;
    Ok(Json(deal.into()))
}
