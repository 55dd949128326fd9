//! Power100 on Flywheel: contractor and partner profiles, explainable matching, demo bookings
//! and deals, over the pure domain core `flywheel-power100` (docs/power100.md for the formulas,
//! docs/power100-api.md for the endpoints).
//!
//! Profiles are validated against the configured catalogue and stored as canonical JSON with a
//! version (optimistic concurrency). Every match, booking and deal is also an interaction:
//! a match is a `partner_match` root with `outcomes.partner_matched`, `match_score` and
//! `partner_id`; a booking is a `demo_booking` outcome linked to its match (or conversation),
//! and a deal a `deal_closed` outcome linked the same way, so `outcomes_latest` merges the
//! chain and the funnel report counts each step.
//!
//! Who may do what: admins and services manage everything in their tenant. A contractor reads
//! and edits its own profile (its subject is the contractor id), asks for its own matches,
//! books demos and records deals for itself, and may cancel its own bookings. A partner reads
//! and edits its own profile but never its `active` flag (nor any score: scores are not part of
//! a profile), and moves its own bookings through their lifecycle. Every role reads active
//! partners.

mod canonical;
mod tools;

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use flywheel_config::Power100Config;
use flywheel_core::{Principal, Role, ValidationErrors};
use flywheel_power100::matching::MatchWeightsConfig;
use flywheel_power100::{
    rank_partners, ContractorProfile, ContractorProfileInput, FocusAreaCatalogue, MatchWeights,
    PartnerId, PartnerMatch, PartnerProfile, PartnerProfileInput, Power100Catalogue,
    RevenueTierScale,
};
use flywheel_store::{
    DealRecord, DemoBookingRecord, MatchRecord, Power100Store, ProfileKind, ProfileRecord,
};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::enrich::ClientContext;
use crate::gateway::{EmbeddingsInput, GatewayService};
use crate::ingest::{IngestService, LinkedKind, OutcomeTarget, Submission};
use crate::ServiceError;

pub use tools::register_tools;

/// Default and largest page of a profile listing.
const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 500;
/// Default and largest number of matches returned.
const DEFAULT_TOP: usize = 3;
const MAX_TOP: usize = 20;
/// Partners read for one ranking, at most (pages of `MAX_PAGE`).
const MAX_PARTNERS: usize = 10_000;
/// Longest booking note.
const MAX_NOTES_CHARS: usize = 2_000;

/// A stored profile as callers see it.
#[derive(Debug, Clone)]
pub struct ProfileView {
    pub id: String,
    /// The canonical JSON of the validated profile.
    pub profile: Value,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A page of profiles, by id.
#[derive(Debug, Clone)]
pub struct ProfilePage {
    pub items: Vec<ProfileView>,
    /// The id to pass as `after` for the next page.
    pub next_after: Option<String>,
}

/// What a ranking needs.
#[derive(Debug, Clone, Default)]
pub struct MatchRequest {
    pub contractor_id: String,
    /// Default 3, at most 20.
    pub top: Option<usize>,
    /// The conversation that asked, logged on each match.
    pub conversation_id: Option<String>,
}

/// One ranked partner.
#[derive(Debug, Clone)]
pub struct RankedMatch {
    /// The stored match, also the `partner_match` interaction's id.
    pub match_id: String,
    /// From 1.
    pub rank: usize,
    pub partner_company_name: String,
    pub result: PartnerMatch,
}

/// Whether the semantic factor could be computed.
#[derive(Debug, Clone)]
pub struct SemanticStatus {
    pub model: String,
    /// False when no text was available or the embedding failed; the factor is then missing
    /// (confidence 0) for every partner.
    pub used: bool,
    pub note: Option<String>,
}

/// A ranking.
#[derive(Debug, Clone)]
pub struct MatchOutcome {
    pub contractor_id: String,
    pub matches: Vec<RankedMatch>,
    pub semantic: SemanticStatus,
}

/// A demo booking to create.
#[derive(Debug, Clone, Default)]
pub struct NewBookingInput {
    /// Defaults to the caller's subject for a contractor.
    pub contractor_id: Option<String>,
    pub partner_id: Option<String>,
    pub match_id: Option<String>,
    pub conversation_id: Option<String>,
    pub scheduled_for: Option<DateTime<Utc>>,
    pub notes: Option<String>,
}

/// A booking change (PATCH: absent fields are left alone).
#[derive(Debug, Clone, Default)]
pub struct BookingUpdate {
    pub status: Option<String>,
    pub scheduled_for: Option<DateTime<Utc>>,
    pub notes: Option<String>,
    /// The version the caller read (`If-Match`); a different stored version is a conflict.
    pub expected_version: Option<i64>,
}

/// A closed deal to record.
#[derive(Debug, Clone, Default)]
pub struct NewDealInput {
    pub contractor_id: Option<String>,
    pub partner_id: Option<String>,
    pub booking_id: Option<String>,
    pub match_id: Option<String>,
    pub conversation_id: Option<String>,
    pub value: f64,
    /// `YYYY-MM-DD`; default today (UTC).
    pub closed_on: Option<String>,
}

/// The statuses of a demo booking.
pub const BOOKING_STATUSES: [&str; 5] = [
    "requested",
    "scheduled",
    "completed",
    "no_show",
    "cancelled",
];

/// Whether a booking may go from `from` to `to`: requested → scheduled | cancelled;
/// scheduled → completed | no_show | cancelled; the last three are final.
pub fn booking_transition_allowed(from: &str, to: &str) -> bool {
    matches!(
        (from, to),
        ("requested", "scheduled" | "cancelled")
            | ("scheduled", "completed" | "no_show" | "cancelled")
    )
}

pub struct Power100Service {
    store: Arc<dyn Power100Store>,
    ingest: Arc<IngestService>,
    gateway: Arc<GatewayService>,
    catalogue: Power100Catalogue,
    weights: MatchWeights,
    embedding_model: String,
}

impl std::fmt::Debug for Power100Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Power100Service")
            .field("catalogue", &self.catalogue)
            .field("weights", &self.weights)
            .field("embedding_model", &self.embedding_model)
            .finish()
    }
}

impl Power100Service {
    /// Checks the configured vocabularies and weights with the domain crate's constructors.
    /// `default_embedding_model` is used when `power100.embedding_model` is unset.
    pub fn new(
        store: Arc<dyn Power100Store>,
        ingest: Arc<IngestService>,
        gateway: Arc<GatewayService>,
        config: &Power100Config,
        default_embedding_model: &str,
    ) -> Result<Power100Service, ValidationErrors> {
        let mut errors = ValidationErrors::new();
        let focus_areas = prefixed(
            &mut errors,
            "power100.focus_areas",
            FocusAreaCatalogue::new(config.focus_areas.iter()),
        );
        let revenue_tiers = prefixed(
            &mut errors,
            "power100.revenue_tiers",
            RevenueTierScale::new(config.revenue_tiers.iter()),
        );
        let weights = prefixed(
            &mut errors,
            "power100.match_weights",
            MatchWeights::new(MatchWeightsConfig::from(&config.match_weights)),
        );
        let (Some(focus_areas), Some(revenue_tiers), Some(weights)) =
            (focus_areas, revenue_tiers, weights)
        else {
            return Err(errors);
        };
        Ok(Power100Service {
            store,
            ingest,
            gateway,
            catalogue: Power100Catalogue {
                focus_areas,
                revenue_tiers,
            },
            weights,
            embedding_model: config
                .embedding_model
                .clone()
                .unwrap_or_else(|| default_embedding_model.to_owned()),
        })
    }

    pub fn catalogue(&self) -> &Power100Catalogue {
        &self.catalogue
    }

    // ----- profiles -----

    /// Creates a contractor profile: admins and services, or a contractor for itself.
    pub async fn create_contractor(
        &self,
        actor: &Principal,
        input: ContractorProfileInput,
    ) -> Result<ProfileView, ServiceError> {
        match actor.role {
            Role::Admin | Role::Service => {}
            Role::Contractor if input.id.trim() == actor.subject.as_str() => {}
            Role::Contractor => {
                return Err(ServiceError::Forbidden(
                    "a contractor may create only its own profile (id = its subject)".to_owned(),
                ))
            }
            Role::Partner => {
                return Err(ServiceError::Forbidden(
                    "partners cannot create contractor profiles".to_owned(),
                ))
            }
        }
        let profile = ContractorProfile::parse(&input, &self.catalogue)?;
        self.insert(
            actor,
            ProfileKind::Contractor,
            profile.id.as_str(),
            canonical::contractor_json(&profile),
        )
        .await
    }

    /// Creates a partner profile (admins and services).
    pub async fn create_partner(
        &self,
        actor: &Principal,
        input: PartnerProfileInput,
    ) -> Result<ProfileView, ServiceError> {
        require_manager(actor, "create partner profiles")?;
        let profile = PartnerProfile::parse(&input, &self.catalogue)?;
        self.insert(
            actor,
            ProfileKind::Partner,
            profile.id.as_str(),
            canonical::partner_json(&profile),
        )
        .await
    }

    /// Replaces a contractor profile: admins and services, or the contractor itself.
    pub async fn update_contractor(
        &self,
        actor: &Principal,
        id: &str,
        mut input: ContractorProfileInput,
        expected_version: Option<i64>,
    ) -> Result<ProfileView, ServiceError> {
        let current = self.get_contractor(actor, id).await?;
        if actor.role == Role::Partner {
            return Err(ServiceError::Forbidden(
                "partners cannot edit contractor profiles".to_owned(),
            ));
        }
        check_body_id(&mut input.id, id)?;
        let profile = ContractorProfile::parse(&input, &self.catalogue)?;
        self.replace(
            actor,
            ProfileKind::Contractor,
            current,
            canonical::contractor_json(&profile),
            expected_version,
        )
        .await
    }

    /// Replaces a partner profile: admins and services, or the partner itself, which cannot
    /// change its `active` flag. `active = None` keeps the stored flag.
    pub async fn update_partner(
        &self,
        actor: &Principal,
        id: &str,
        mut input: PartnerProfileInput,
        active: Option<bool>,
        expected_version: Option<i64>,
    ) -> Result<ProfileView, ServiceError> {
        let current = self.get_partner(actor, id).await?;
        let stored_active = current
            .profile
            .get("active")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        input.active = active.unwrap_or(stored_active);
        match actor.role {
            Role::Admin | Role::Service => {}
            Role::Partner if actor.subject.as_str() == id => {
                if input.active != stored_active {
                    return Err(ServiceError::Forbidden(
                        "a partner cannot change its own active flag; an admin does".to_owned(),
                    ));
                }
            }
            Role::Partner | Role::Contractor => {
                return Err(ServiceError::Forbidden(
                    "only admins and the partner itself may edit a partner profile".to_owned(),
                ))
            }
        }
        check_body_id(&mut input.id, id)?;
        let profile = PartnerProfile::parse(&input, &self.catalogue)?;
        self.replace(
            actor,
            ProfileKind::Partner,
            current,
            canonical::partner_json(&profile),
            expected_version,
        )
        .await
    }

    /// One contractor profile: admins and services, or the contractor itself.
    pub async fn get_contractor(
        &self,
        actor: &Principal,
        id: &str,
    ) -> Result<ProfileView, ServiceError> {
        let visible = match actor.role {
            Role::Admin | Role::Service => true,
            Role::Contractor => actor.subject.as_str() == id,
            Role::Partner => false,
        };
        let record = if visible {
            self.store
                .get_profile(ProfileKind::Contractor, &actor.tenant_id, id)
                .await?
        } else {
            None
        };
        record
            .map(view)
            .transpose()?
            .ok_or_else(|| ServiceError::NotFound(format!("contractor {id}")))
    }

    /// The stored contractor profile for the concierge's `lookup_profile`, when there is one
    /// and the caller may see it.
    pub async fn find_contractor(
        &self,
        actor: &Principal,
        id: &str,
    ) -> Result<Option<ProfileView>, ServiceError> {
        match self.get_contractor(actor, id).await {
            Ok(found) => Ok(Some(found)),
            Err(ServiceError::NotFound(_)) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// One partner profile: every role sees active partners; an inactive one only admins,
    /// services and the partner itself.
    pub async fn get_partner(
        &self,
        actor: &Principal,
        id: &str,
    ) -> Result<ProfileView, ServiceError> {
        let record = self
            .store
            .get_profile(ProfileKind::Partner, &actor.tenant_id, id)
            .await?;
        record
            .map(view)
            .transpose()?
            .filter(|found| may_see_partner(actor, found))
            .ok_or_else(|| ServiceError::NotFound(format!("partner {id}")))
    }

    /// The tenant's contractor profiles by id (admins and services).
    pub async fn list_contractors(
        &self,
        actor: &Principal,
        after: Option<&str>,
        limit: Option<u32>,
    ) -> Result<ProfilePage, ServiceError> {
        require_manager(actor, "list contractor profiles")?;
        self.list(actor, ProfileKind::Contractor, after, limit, |_| true)
            .await
    }

    /// The tenant's partner profiles by id: all for admins and services; the active ones
    /// (and its own) for everyone else.
    pub async fn list_partners(
        &self,
        actor: &Principal,
        after: Option<&str>,
        limit: Option<u32>,
    ) -> Result<ProfilePage, ServiceError> {
        self.list(actor, ProfileKind::Partner, after, limit, |found| {
            may_see_partner(actor, found)
        })
        .await
    }

    async fn insert(
        &self,
        actor: &Principal,
        kind: ProfileKind,
        id: &str,
        profile: Value,
    ) -> Result<ProfileView, ServiceError> {
        let now = Utc::now();
        let record = ProfileRecord {
            tenant_id: actor.tenant_id.clone(),
            id: id.to_owned(),
            profile: profile.to_string(),
            version: 1,
            created_at: now,
            updated_at: now,
        };
        match self.store.insert_profile(kind, &record).await {
            Ok(()) => view(record),
            Err(flywheel_store::StoreError::Conflict { .. }) => Err(ServiceError::Conflict(
                format!("{} {id} already exists", kind_name(kind)),
            )),
            Err(err) => Err(err.into()),
        }
    }

    async fn replace(
        &self,
        actor: &Principal,
        kind: ProfileKind,
        current: ProfileView,
        profile: Value,
        expected_version: Option<i64>,
    ) -> Result<ProfileView, ServiceError> {
        if let Some(expected) = expected_version {
            if expected != current.version {
                return Err(ServiceError::Conflict(format!(
                    "{} {} is at version {}, not {expected}; read it again",
                    kind_name(kind),
                    current.id,
                    current.version
                )));
            }
        }
        let record = ProfileRecord {
            tenant_id: actor.tenant_id.clone(),
            id: current.id.clone(),
            profile: profile.to_string(),
            version: current.version + 1,
            created_at: current.created_at,
            updated_at: Utc::now().max(current.updated_at),
        };
        if !self.store.update_profile(kind, &record).await? {
            return Err(ServiceError::Conflict(format!(
                "{} {} was changed meanwhile; read it again",
                kind_name(kind),
                current.id
            )));
        }
        view(record)
    }

    async fn list(
        &self,
        actor: &Principal,
        kind: ProfileKind,
        after: Option<&str>,
        limit: Option<u32>,
        keep: impl Fn(&ProfileView) -> bool,
    ) -> Result<ProfilePage, ServiceError> {
        let limit = limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
        let records = self
            .store
            .list_profiles(kind, &actor.tenant_id, after, limit)
            .await?;
        let full = records.len() == limit as usize;
        let next_after = full
            .then(|| records.last().map(|record| record.id.clone()))
            .flatten();
        let items = records
            .into_iter()
            .map(view)
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .filter(|found| keep(found))
            .collect();
        Ok(ProfilePage { items, next_after })
    }

    // ----- matching -----

    /// Ranks the active partners for a contractor (admins, services, or the contractor
    /// itself), stores each match and logs it as a `partner_match` interaction.
    pub async fn matches(
        &self,
        actor: &Principal,
        request: MatchRequest,
    ) -> Result<MatchOutcome, ServiceError> {
        let top = request.top.unwrap_or(DEFAULT_TOP);
        if top == 0 || top > MAX_TOP {
            return Err(ValidationErrors::single(
                "top",
                format!("must be between 1 and {MAX_TOP}"),
            )
            .into());
        }
        if actor.role == Role::Partner {
            return Err(ServiceError::Forbidden(
                "partners cannot rank partners for a contractor".to_owned(),
            ));
        }
        let contractor_view = self.get_contractor(actor, &request.contractor_id).await?;
        let contractor = ContractorProfile::parse(
            &canonical::contractor_input(&contractor_view.profile),
            &self.catalogue,
        )
        .map_err(|errors| stale_profile("contractor", &contractor_view.id, &errors))?;
        let partners = self.active_partners(actor).await?;
        let (semantic_scores, semantic) = self.semantic_scores(actor, &contractor, &partners).await;
        // No PowerConfidence is stored yet: the prior is missing for every partner, which the
        // ranking treats as "no data" (its weight moves to the known factors).
        let confidences: HashMap<PartnerId, f64> = HashMap::new();
        let ranked = rank_partners(
            &contractor,
            &partners,
            &semantic_scores,
            &confidences,
            &self.weights,
            top,
        );
        let names: HashMap<&PartnerId, &str> = partners
            .iter()
            .map(|partner| (&partner.id, partner.company_name.as_str()))
            .collect();
        let now = Utc::now();
        let matches: Vec<RankedMatch> = ranked
            .into_iter()
            .enumerate()
            .map(|(idx, result)| RankedMatch {
                match_id: Uuid::now_v7().to_string(),
                rank: idx + 1,
                partner_company_name: names
                    .get(&result.partner_id)
                    .map(|name| (*name).to_owned())
                    .unwrap_or_default(),
                result,
            })
            .collect();
        let records: Vec<MatchRecord> = matches
            .iter()
            .map(|found| MatchRecord {
                id: found.match_id.clone(),
                tenant_id: actor.tenant_id.clone(),
                contractor_id: contractor_view.id.clone(),
                partner_id: found.result.partner_id.to_string(),
                rank: found.rank as i64,
                score: found.result.score,
                details: match_details(found).to_string(),
                conversation_id: request.conversation_id.clone(),
                created_at: now,
            })
            .collect();
        if !records.is_empty() {
            self.store.insert_matches(&records).await?;
            let documents = matches
                .iter()
                .map(|found| {
                    let mut document = json!({
                        "interaction_id": found.match_id,
                        "interaction_type": "partner_match",
                        "user_id": contractor_view.id,
                        "user_type": "contractor",
                        "outcomes": {
                            "partner_matched": true,
                            "partner_id": found.result.partner_id.as_str(),
                            "match_score": found.result.score,
                        },
                        "power100": match_details(found),
                    });
                    if let Some(conversation_id) = &request.conversation_id {
                        document["conversation_id"] = json!(conversation_id);
                    }
                    document
                })
                .collect();
            self.log(actor, Submission::Batch(documents), "partner matches")
                .await?;
        }
        Ok(MatchOutcome {
            contractor_id: contractor_view.id,
            matches,
            semantic,
        })
    }

    /// Every partner of the tenant that parses with the current catalogue and is active.
    async fn active_partners(
        &self,
        actor: &Principal,
    ) -> Result<Vec<PartnerProfile>, ServiceError> {
        let mut partners = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let records = self
                .store
                .list_profiles(
                    ProfileKind::Partner,
                    &actor.tenant_id,
                    after.as_deref(),
                    MAX_PAGE,
                )
                .await?;
            let done = records.len() < MAX_PAGE as usize || partners.len() >= MAX_PARTNERS;
            after = records.last().map(|record| record.id.clone());
            for record in records {
                let Ok(value) = serde_json::from_str::<Value>(&record.profile) else {
                    tracing::warn!(partner = %record.id, "stored partner profile is not JSON; skipped");
                    continue;
                };
                match PartnerProfile::parse(&canonical::partner_input(&value), &self.catalogue) {
                    Ok(partner) if partner.active => partners.push(partner),
                    Ok(_) => {}
                    Err(errors) => tracing::warn!(
                        partner = %record.id,
                        errors = %errors,
                        "stored partner profile does not fit the current catalogue; skipped"
                    ),
                }
            }
            if done {
                return Ok(partners);
            }
        }
    }

    /// Cosine similarities between the contractor's goals and challenges and each partner's
    /// offer, embedded in one gateway call. Any failure leaves every score missing.
    async fn semantic_scores(
        &self,
        actor: &Principal,
        contractor: &ContractorProfile,
        partners: &[PartnerProfile],
    ) -> (HashMap<PartnerId, f64>, SemanticStatus) {
        let mut status = SemanticStatus {
            model: self.embedding_model.clone(),
            used: false,
            note: None,
        };
        let Some(contractor_text) = contractor.semantic_text() else {
            status.note = Some("the contractor has no goals or challenges".to_owned());
            return (HashMap::new(), status);
        };
        let with_text: Vec<(&PartnerId, String)> = partners
            .iter()
            .filter_map(|partner| partner.semantic_text().map(|text| (&partner.id, text)))
            .collect();
        if with_text.is_empty() {
            status.note = Some("no partner describes its offer".to_owned());
            return (HashMap::new(), status);
        }
        let mut inputs = vec![contractor_text];
        inputs.extend(with_text.iter().map(|(_, text)| text.clone()));
        let outcome = self
            .gateway
            .embeddings(
                actor,
                EmbeddingsInput {
                    model: self.embedding_model.clone(),
                    inputs,
                    dimensions: None,
                    user: None,
                    client: ClientContext::default(),
                },
            )
            .await;
        let vectors = match outcome {
            Ok(outcome) if outcome.vectors.len() == with_text.len() + 1 => outcome.vectors,
            Ok(outcome) => {
                status.note = Some(format!(
                    "the embedding model returned {} vectors for {} texts",
                    outcome.vectors.len(),
                    with_text.len() + 1
                ));
                return (HashMap::new(), status);
            }
            Err(err) => {
                tracing::warn!(error = %err, model = %self.embedding_model, "semantic fit skipped: embedding failed");
                status.note = Some(format!("embedding failed: {err}"));
                return (HashMap::new(), status);
            }
        };
        let contractor_vector = &vectors[0];
        let scores: HashMap<PartnerId, f64> = with_text
            .iter()
            .zip(&vectors[1..])
            .filter_map(|((id, _), vector)| {
                cosine(contractor_vector, vector).map(|similarity| ((*id).clone(), similarity))
            })
            .collect();
        status.used = !scores.is_empty();
        (scores, status)
    }

    // ----- bookings and deals -----

    /// Books a demo (status `requested`): admins and services, or a contractor for itself.
    /// The booking is a `demo_booking` interaction linked as an outcome (`demo_booked`) to its
    /// match, else to the conversation, else to the contractor's latest interaction with the
    /// partner; with none of those it is a root interaction of its own.
    pub async fn create_booking(
        &self,
        actor: &Principal,
        input: NewBookingInput,
    ) -> Result<DemoBookingRecord, ServiceError> {
        let contractor_id = self.acting_contractor(actor, input.contractor_id.as_deref())?;
        let notes = check_notes(input.notes)?;
        let (partner_id, match_id) = self
            .resolve_match(actor, &contractor_id, input.partner_id, input.match_id)
            .await?;
        self.get_contractor(actor, &contractor_id).await?;
        let partner = self.store_partner(actor, &partner_id).await?;
        if partner.profile.get("active").and_then(Value::as_bool) != Some(true) {
            return Err(ServiceError::Conflict(format!(
                "partner {partner_id} is not active"
            )));
        }
        let now = Utc::now();
        let booking = DemoBookingRecord {
            id: Uuid::now_v7().to_string(),
            tenant_id: actor.tenant_id.clone(),
            contractor_id,
            partner_id,
            match_id,
            conversation_id: input.conversation_id,
            status: "requested".to_owned(),
            scheduled_for: input.scheduled_for,
            notes,
            version: 1,
            created_by: actor.subject.to_string(),
            created_at: now,
            updated_at: now,
        };
        self.store.insert_booking(&booking).await?;
        let body = json!({
            "interaction_id": booking.id,
            "interaction_type": "demo_booking",
            "outcomes": {"demo_booked": true, "partner_id": booking.partner_id},
            "metadata": {"power100": {"booking_id": booking.id, "status": booking.status}},
        });
        self.log_linked(
            actor,
            parent_target(
                booking.match_id.as_deref(),
                booking.conversation_id.as_deref(),
                &booking.contractor_id,
                &booking.partner_id,
            ),
            body,
            &booking.contractor_id,
            booking.conversation_id.as_deref(),
        )
        .await?;
        Ok(booking)
    }

    /// The best-ranked match of the contractor's latest ranking (in the conversation when
    /// given), for booking "the best one" from a conversation.
    pub async fn latest_match_id(
        &self,
        actor: &Principal,
        contractor_id: &str,
        conversation_id: Option<&str>,
    ) -> Result<Option<String>, ServiceError> {
        self.get_contractor(actor, contractor_id).await?;
        Ok(self
            .store
            .latest_match(&actor.tenant_id, contractor_id, conversation_id)
            .await?
            .map(|found| found.id))
    }

    pub async fn get_booking(
        &self,
        actor: &Principal,
        id: &str,
    ) -> Result<DemoBookingRecord, ServiceError> {
        self.store
            .get_booking(&actor.tenant_id, id)
            .await?
            .filter(|booking| involved(actor, &booking.contractor_id, &booking.partner_id))
            .ok_or_else(|| ServiceError::NotFound(format!("demo booking {id}")))
    }

    /// Moves a booking through its lifecycle (see [`booking_transition_allowed`]) or changes
    /// its time and notes. Admins and services may do anything; the partner of the booking
    /// every transition but none other's; the contractor only cancels. Each status change is a
    /// `demo_booking_status` outcome linked to the booking (`demo_booked` false once cancelled).
    pub async fn update_booking(
        &self,
        actor: &Principal,
        id: &str,
        update: BookingUpdate,
    ) -> Result<DemoBookingRecord, ServiceError> {
        let current = self.get_booking(actor, id).await?;
        if let Some(expected) = update.expected_version {
            if expected != current.version {
                return Err(ServiceError::Conflict(format!(
                    "demo booking {id} is at version {}, not {expected}; read it again",
                    current.version
                )));
            }
        }
        let mut next = current.clone();
        if let Some(status) = &update.status {
            if !BOOKING_STATUSES.contains(&status.as_str()) {
                return Err(ValidationErrors::single(
                    "status",
                    format!("must be one of {}", BOOKING_STATUSES.join(", ")),
                )
                .into());
            }
            if *status != current.status {
                if !booking_transition_allowed(&current.status, status) {
                    return Err(ServiceError::Conflict(format!(
                        "a {} demo booking cannot become {status}",
                        current.status
                    )));
                }
                if actor.role == Role::Contractor && status != "cancelled" {
                    return Err(ServiceError::Forbidden(
                        "a contractor may only cancel its booking".to_owned(),
                    ));
                }
                next.status = status.clone();
            }
        }
        if actor.role == Role::Contractor
            && (update.scheduled_for.is_some() || update.notes.is_some())
        {
            return Err(ServiceError::Forbidden(
                "a contractor may only cancel its booking".to_owned(),
            ));
        }
        if let Some(at) = update.scheduled_for {
            next.scheduled_for = Some(at);
        }
        if update.notes.is_some() {
            next.notes = check_notes(update.notes)?;
        }
        if next == current {
            return Ok(current);
        }
        next.version = current.version + 1;
        next.updated_at = Utc::now().max(current.updated_at);
        if !self.store.update_booking(&next).await? {
            return Err(ServiceError::Conflict(format!(
                "demo booking {id} was changed meanwhile; read it again"
            )));
        }
        if next.status != current.status {
            let body = json!({
                "interaction_type": "demo_booking_status",
                "outcomes": {"demo_booked": next.status != "cancelled", "partner_id": next.partner_id},
                "metadata": {"power100": {"booking_id": next.id, "from": current.status, "status": next.status}},
            });
            self.log_linked(
                actor,
                OutcomeTarget::Interaction(next.id.clone()),
                body,
                &next.contractor_id,
                next.conversation_id.as_deref(),
            )
            .await?;
        }
        Ok(next)
    }

    /// Records a closed deal: admins and services, the contractor for itself, or the partner
    /// for itself. Linked as a `deal_closed` outcome (`deal_closed`, `deal_value`) to the
    /// match, else the booking, else the conversation, else the latest interaction of the
    /// contractor with the partner.
    pub async fn create_deal(
        &self,
        actor: &Principal,
        input: NewDealInput,
    ) -> Result<DealRecord, ServiceError> {
        let mut errors = ValidationErrors::new();
        if !input.value.is_finite() || input.value < 0.0 {
            errors.push("value", "must be a number ≥ 0");
        }
        let closed_on = match &input.closed_on {
            None => Some(Utc::now().date_naive()),
            Some(raw) => errors.check("closed_on", NaiveDate::parse_from_str(raw, "%Y-%m-%d")),
        };
        let Some(closed_on) = closed_on.filter(|_| errors.is_empty()) else {
            return Err(errors.into());
        };
        let booking = match &input.booking_id {
            Some(booking_id) => Some(self.get_booking(actor, booking_id).await?),
            None => None,
        };
        let contractor_id = match (&booking, input.contractor_id.as_deref()) {
            (Some(booking), Some(given)) if given != booking.contractor_id => {
                return Err(ValidationErrors::single(
                    "contractor_id",
                    "differs from the booking's contractor",
                )
                .into())
            }
            (Some(booking), _) => booking.contractor_id.clone(),
            (None, Some(given)) => given.to_owned(),
            (None, None) if actor.role == Role::Contractor => actor.subject.to_string(),
            (None, None) => {
                return Err(ValidationErrors::single(
                    "contractor_id",
                    "is required without a booking",
                )
                .into())
            }
        };
        let partner_hint = input
            .partner_id
            .clone()
            .or_else(|| booking.as_ref().map(|booking| booking.partner_id.clone()));
        let match_hint = input.match_id.clone().or_else(|| {
            booking
                .as_ref()
                .and_then(|booking| booking.match_id.clone())
        });
        let (partner_id, match_id) = self
            .resolve_match(actor, &contractor_id, partner_hint, match_hint)
            .await?;
        if let Some(booking) = &booking {
            if booking.partner_id != partner_id {
                return Err(ValidationErrors::single(
                    "partner_id",
                    "differs from the booking's partner",
                )
                .into());
            }
        }
        match actor.role {
            Role::Admin | Role::Service => {}
            Role::Contractor if actor.subject.as_str() == contractor_id => {}
            Role::Partner if actor.subject.as_str() == partner_id => {}
            Role::Contractor | Role::Partner => {
                return Err(ServiceError::Forbidden(
                    "a contractor or partner records only its own deals".to_owned(),
                ))
            }
        }
        // The contractor must exist whoever records the deal (a partner cannot read the
        // profile itself, so the store is asked directly).
        if self
            .store
            .get_profile(ProfileKind::Contractor, &actor.tenant_id, &contractor_id)
            .await?
            .is_none()
        {
            return Err(ServiceError::NotFound(format!(
                "contractor {contractor_id}"
            )));
        }
        self.store_partner(actor, &partner_id).await?;
        let conversation_id = input.conversation_id.clone().or_else(|| {
            booking
                .as_ref()
                .and_then(|booking| booking.conversation_id.clone())
        });
        let deal = DealRecord {
            id: Uuid::now_v7().to_string(),
            tenant_id: actor.tenant_id.clone(),
            contractor_id,
            partner_id,
            booking_id: booking.as_ref().map(|booking| booking.id.clone()),
            match_id,
            conversation_id,
            value: input.value,
            closed_on: closed_on.format("%Y-%m-%d").to_string(),
            created_by: actor.subject.to_string(),
            created_at: Utc::now(),
        };
        self.store.insert_deal(&deal).await?;
        let target = match (&deal.match_id, &deal.booking_id) {
            (None, Some(booking_id)) => OutcomeTarget::Interaction(booking_id.clone()),
            _ => parent_target(
                deal.match_id.as_deref(),
                deal.conversation_id.as_deref(),
                &deal.contractor_id,
                &deal.partner_id,
            ),
        };
        let body = json!({
            "interaction_id": deal.id,
            "interaction_type": "deal_closed",
            "outcomes": {"deal_closed": true, "deal_value": deal.value, "partner_id": deal.partner_id},
            "metadata": {"power100": {
                "deal_id": deal.id,
                "booking_id": deal.booking_id,
                "closed_on": deal.closed_on,
            }},
        });
        self.log_linked(
            actor,
            target,
            body,
            &deal.contractor_id,
            deal.conversation_id.as_deref(),
        )
        .await?;
        Ok(deal)
    }

    pub async fn get_deal(&self, actor: &Principal, id: &str) -> Result<DealRecord, ServiceError> {
        self.store
            .get_deal(&actor.tenant_id, id)
            .await?
            .filter(|deal| involved(actor, &deal.contractor_id, &deal.partner_id))
            .ok_or_else(|| ServiceError::NotFound(format!("deal {id}")))
    }

    /// The contractor a booking is for: a contractor books for itself only.
    fn acting_contractor(
        &self,
        actor: &Principal,
        given: Option<&str>,
    ) -> Result<String, ServiceError> {
        match (actor.role, given) {
            (Role::Admin | Role::Service, Some(id)) => Ok(id.to_owned()),
            (Role::Admin | Role::Service, None) => {
                Err(ValidationErrors::single("contractor_id", "is required").into())
            }
            (Role::Contractor, None) => Ok(actor.subject.to_string()),
            (Role::Contractor, Some(id)) if id == actor.subject.as_str() => Ok(id.to_owned()),
            (Role::Contractor, Some(_)) => Err(ServiceError::Forbidden(
                "a contractor books demos only for itself".to_owned(),
            )),
            (Role::Partner, _) => Err(ServiceError::Forbidden(
                "partners do not book demos; the contractor or an admin does".to_owned(),
            )),
        }
    }

    /// The partner and match of a booking or deal: a given match must be the contractor's
    /// and name the same partner; without a match the partner is required.
    async fn resolve_match(
        &self,
        actor: &Principal,
        contractor_id: &str,
        partner_id: Option<String>,
        match_id: Option<String>,
    ) -> Result<(String, Option<String>), ServiceError> {
        let Some(match_id) = match_id else {
            let partner_id = partner_id.ok_or_else(|| {
                ValidationErrors::single("partner_id", "is required without a match_id")
            })?;
            return Ok((partner_id, None));
        };
        let found = self
            .store
            .get_match(&actor.tenant_id, &match_id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("match {match_id}")))?;
        if found.contractor_id != contractor_id {
            return Err(
                ValidationErrors::single("match_id", "is a match of another contractor").into(),
            );
        }
        if let Some(partner_id) = &partner_id {
            if *partner_id != found.partner_id {
                return Err(ValidationErrors::single(
                    "partner_id",
                    "differs from the match's partner",
                )
                .into());
            }
        }
        Ok((found.partner_id, Some(found.id)))
    }

    /// A partner by id for a reference (any role; inactive ones included).
    async fn store_partner(
        &self,
        actor: &Principal,
        id: &str,
    ) -> Result<ProfileView, ServiceError> {
        self.store
            .get_profile(ProfileKind::Partner, &actor.tenant_id, id)
            .await?
            .map(view)
            .transpose()?
            .ok_or_else(|| ServiceError::NotFound(format!("partner {id}")))
    }

    /// Logs an outcome linked to its parent; without a parent, a root interaction of the
    /// contractor's. Switched-off data collection or outcome tracking is not an error.
    async fn log_linked(
        &self,
        actor: &Principal,
        target: OutcomeTarget,
        body: Value,
        contractor_id: &str,
        conversation_id: Option<&str>,
    ) -> Result<(), ServiceError> {
        let writer = flywheel_actor(actor);
        let result = self
            .ingest
            .record_linked(
                &writer,
                target,
                LinkedKind::Outcome,
                body.clone(),
                &ClientContext::default(),
            )
            .await;
        match result {
            Ok(_) | Err(ServiceError::Disabled(_)) => Ok(()),
            Err(ServiceError::NotFound(_)) => {
                let mut document = body;
                document["user_id"] = json!(contractor_id);
                document["user_type"] = json!("contractor");
                if let Some(conversation_id) = conversation_id {
                    document["conversation_id"] = json!(conversation_id);
                }
                self.log(actor, Submission::One(document), "an unlinked outcome")
                    .await
            }
            Err(err) => Err(err),
        }
    }

    async fn log(
        &self,
        actor: &Principal,
        submission: Submission,
        what: &str,
    ) -> Result<(), ServiceError> {
        match self
            .ingest
            .ingest(
                &flywheel_actor(actor),
                submission,
                &ClientContext::default(),
            )
            .await
        {
            Ok(report) => {
                for item in &report.items {
                    if let crate::ingest::ItemOutcome::Rejected { errors } = item {
                        // A bug: Flywheel built a document that does not validate.
                        tracing::error!(what, errors = ?errors, "a Power100 interaction was rejected");
                    }
                }
                Ok(())
            }
            Err(ServiceError::Disabled(_)) => Ok(()),
            Err(err) => Err(err),
        }
    }
}

/// The factors, reasons and coverage of a match, as stored and logged.
fn match_details(found: &RankedMatch) -> Value {
    json!({
        "rank": found.rank,
        "score": found.result.score,
        "coverage": found.result.coverage,
        "power_confidence": found.result.power_confidence,
        "factors": found.result.factors.iter().map(|factor| json!({
            "factor": factor.kind.as_str(),
            "value": factor.value,
            "configured_weight": factor.configured_weight,
            "weight_used": factor.weight_used,
            "contribution": factor.contribution,
            "confidence": factor.confidence,
            "reason": factor.reason,
        })).collect::<Vec<_>>(),
    })
}

/// The principal Power100 logs its interactions as: the caller's tenant and subject with the
/// service role, because the records are about the contractor (whoever acted) and the rights
/// were checked by this service already.
fn flywheel_actor(actor: &Principal) -> Principal {
    Principal {
        role: Role::Service,
        ..actor.clone()
    }
}

fn parent_target(
    match_id: Option<&str>,
    conversation_id: Option<&str>,
    contractor_id: &str,
    partner_id: &str,
) -> OutcomeTarget {
    match (match_id, conversation_id) {
        (Some(match_id), _) => OutcomeTarget::Interaction(match_id.to_owned()),
        (None, Some(conversation_id)) => OutcomeTarget::Conversation(conversation_id.to_owned()),
        (None, None) => OutcomeTarget::UserPartner {
            user_id: contractor_id.to_owned(),
            partner_id: partner_id.to_owned(),
        },
    }
}

fn cosine(a: &[f32], b: &[f32]) -> Option<f64> {
    if a.len() != b.len() || a.is_empty() {
        return None;
    }
    let (mut dot, mut norm_a, mut norm_b) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (f64::from(*x), f64::from(*y));
        dot += x * y;
        norm_a += x * x;
        norm_b += y * y;
    }
    let denominator = norm_a.sqrt() * norm_b.sqrt();
    (denominator > 0.0).then(|| (dot / denominator).clamp(-1.0, 1.0))
}

fn prefixed<T>(
    errors: &mut ValidationErrors,
    prefix: &str,
    result: Result<T, ValidationErrors>,
) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(inner) => {
            for error in inner.errors() {
                errors.push(format!("{prefix}.{}", error.field), error.problem.clone());
            }
            None
        }
    }
}

fn require_manager(actor: &Principal, what: &str) -> Result<(), ServiceError> {
    match actor.role {
        Role::Admin | Role::Service => Ok(()),
        Role::Contractor | Role::Partner => Err(ServiceError::Forbidden(format!(
            "only admins and services may {what}"
        ))),
    }
}

fn may_see_partner(actor: &Principal, found: &ProfileView) -> bool {
    match actor.role {
        Role::Admin | Role::Service => true,
        Role::Partner if actor.subject.as_str() == found.id => true,
        Role::Partner | Role::Contractor => {
            found.profile.get("active").and_then(Value::as_bool) == Some(true)
        }
    }
}

/// Whether the caller may see a booking or deal between these two.
fn involved(actor: &Principal, contractor_id: &str, partner_id: &str) -> bool {
    match actor.role {
        Role::Admin | Role::Service => true,
        Role::Contractor => actor.subject.as_str() == contractor_id,
        Role::Partner => actor.subject.as_str() == partner_id,
    }
}

/// A body's id must be absent (taken from the path) or equal to the path's.
fn check_body_id(body_id: &mut String, path_id: &str) -> Result<(), ServiceError> {
    if body_id.trim().is_empty() {
        *body_id = path_id.to_owned();
        Ok(())
    } else if body_id.trim() == path_id {
        Ok(())
    } else {
        Err(
            ValidationErrors::single("id", "differs from the id in the path; ids cannot change")
                .into(),
        )
    }
}

fn check_notes(notes: Option<String>) -> Result<Option<String>, ServiceError> {
    match notes {
        Some(text) if text.chars().count() > MAX_NOTES_CHARS => Err(ValidationErrors::single(
            "notes",
            format!("must be at most {MAX_NOTES_CHARS} characters"),
        )
        .into()),
        Some(text) if text.trim().is_empty() => Ok(None),
        other => Ok(other),
    }
}

fn kind_name(kind: ProfileKind) -> &'static str {
    match kind {
        ProfileKind::Contractor => "contractor",
        ProfileKind::Partner => "partner",
    }
}

fn stale_profile(kind: &str, id: &str, errors: &ValidationErrors) -> ServiceError {
    ServiceError::Conflict(format!(
        "the stored {kind} profile {id} does not fit the current catalogue ({errors}); update it"
    ))
}

fn view(record: ProfileRecord) -> Result<ProfileView, ServiceError> {
    let profile: Value = serde_json::from_str(&record.profile).map_err(|err| {
        ServiceError::Internal(anyhow::anyhow!(
            "stored profile {} is not JSON: {err}",
            record.id
        ))
    })?;
    Ok(ProfileView {
        id: record.id,
        profile,
        version: record.version,
        created_at: record.created_at,
        updated_at: record.updated_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_booking_lifecycle_allows_only_its_arrows() {
        let allowed: Vec<(&str, &str)> = BOOKING_STATUSES
            .iter()
            .flat_map(|from| BOOKING_STATUSES.iter().map(move |to| (*from, *to)))
            .filter(|(from, to)| booking_transition_allowed(from, to))
            .collect();
        assert_eq!(
            allowed,
            [
                ("requested", "scheduled"),
                ("requested", "cancelled"),
                ("scheduled", "completed"),
                ("scheduled", "no_show"),
                ("scheduled", "cancelled"),
            ]
        );
    }

    #[test]
    fn cosine_is_defined_only_for_comparable_vectors() {
        let same = cosine(&[1.0, 0.0], &[2.0, 0.0]).unwrap_or(f64::NAN);
        assert!((same - 1.0).abs() < 1e-12);
        let opposite = cosine(&[1.0, 0.0], &[-1.0, 0.0]).unwrap_or(f64::NAN);
        assert!((opposite + 1.0).abs() < 1e-12);
        assert_eq!(cosine(&[1.0], &[1.0, 0.0]), None);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 0.0]), None);
        assert_eq!(cosine(&[], &[]), None);
    }
}
