//! Power100's domain core: contractor and partner profiles, explainable matching,
//! PowerConfidence, message consistency and survey links.
//!
//! Architecture invariant: this crate performs no I/O, holds no database or HTTP types and runs
//! no async code. Every score here is a documented formula over plain inputs (see
//! `docs/power100.md`), so the store, services and routes built on it can be tested without a
//! server and every number a user sees can be recomputed by hand.
//!
//! How the pieces connect: profiles are parsed against a [`Power100Catalogue`]; survey
//! responses ([`SurveyResponse::to_evidence`]), demo analyses and consistency reports
//! ([`EvidenceItem::from_score`] with [`EvidenceComponent::MessageConsistency`]) become
//! [`EvidenceItem`]s; [`compute_power_confidence`] turns them into a score whose value feeds
//! [`rank_partners`] as the PowerConfidence prior. Embeddings (semantic fit, semantic phrase
//! alignment) are computed by the caller and passed in, so no model lives here.

pub mod consistency;
pub mod matching;
pub mod powerconfidence;
pub mod profile;
pub mod survey;
pub mod text;

pub use consistency::{
    analyse_consistency, ClaimAssessment, ClaimVerdict, ConsistencyConfig, ConsistencyError,
    ConsistencyReport, ConsistencySources, Discrepancy, DiscrepancyKind, Embedder, SourceKind,
};
pub use matching::{
    rank_partners, score_match, FactorScore, MatchFactorKind, MatchWeights, MatchWeightsConfig,
    PartnerMatch,
};
pub use powerconfidence::{
    compute_power_confidence, momentum, peer_comparison, peers_serving_same_tiers,
    quarterly_history, verification_status, EvidenceComponent, EvidenceItem, Momentum,
    PowerConfidence, PowerConfidenceConfig, PowerConfidenceSettings, Quarter, Rating,
    VerificationStatus,
};
pub use profile::{
    ContractorId, ContractorProfile, ContractorProfileInput, FocusArea, FocusAreaCatalogue,
    PartnerId, PartnerProfile, PartnerProfileInput, Power100Catalogue, RevenueTier,
    RevenueTierScale, ServiceArea,
};
pub use survey::{
    redeem, verify, SurveyAudience, SurveyLink, SurveyLinkError, SurveyResponse,
    SurveyResponseInput, SurveyToken, SurveyTokenHash,
};
