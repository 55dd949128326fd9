//! Explainable contractor–partner matching: a score in [0, 1] built from five named factors,
//! each reported with its value, the weight it was given, its contribution and a reason a
//! contractor can read.
//!
//! The factors and their formulas (constants in [`MatchWeightsConfig`], documented in
//! `docs/power100.md`):
//!
//! * **Focus-area fit.** The contractor's focus areas carry order weights (1st 0.5, 2nd 0.3,
//!   3rd 0.2), renormalised over the areas the contractor named. `base` is the sum of the
//!   weights of the areas the partner serves; `fit = (base + bonus·[serves primary]) / (1 + bonus)`
//!   with `bonus = 0.2`, so serving every area scores 1 and the primary area counts extra.
//! * **Revenue-tier fit.** By the distance `d` on the tier scale between the contractor's tier
//!   and the nearest tier the partner serves: `d = 0` → 1.0, `d = 1` → 0.5, farther → 0.0.
//! * **Service-area fit.** The share of the contractor's service areas the partner covers
//!   (`national` covers everything; a Census region covers its states).
//! * **Semantic fit.** A cosine similarity `s ∈ [-1, 1]` computed elsewhere from embeddings of
//!   the contractor's goals and challenges and the partner's offer, mapped to `(s + 1) / 2`.
//! * **PowerConfidence prior.** The partner's PowerConfidence score divided by 100.
//!
//! Missing data never invents a value: a factor without data has confidence 0, and the score is
//! `Σ wᵢ·cᵢ·vᵢ / Σ wᵢ·cᵢ`, which hands its weight to the known factors in proportion to theirs.

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap};

use flywheel_core::ValidationErrors;

use crate::profile::{
    areas_cover, ContractorProfile, FocusArea, PartnerId, PartnerProfile, RevenueTier,
};

/// Tolerance for "the factor weights sum to 1": configuration files hold decimals.
const WEIGHT_SUM_TOLERANCE: f64 = 1e-6;

/// Scores closer than this are ties; the ranking then falls back to the documented tie-break.
/// Comparing quantised scores (rather than with a tolerance) keeps the order total.
const SCORE_QUANTUM: f64 = 1e-9;

/// The matching constants as configuration holds them. [`MatchWeights::new`] checks them.
#[derive(Debug, Clone, PartialEq)]
pub struct MatchWeightsConfig {
    /// Weight of focus-area fit; the five factor weights must sum to 1.
    pub focus_area: f64,
    pub revenue_tier: f64,
    pub service_area: f64,
    pub semantic: f64,
    pub power_confidence: f64,
    /// Order weights of the contractor's 1st, 2nd and 3rd focus area (renormalised over the
    /// areas a contractor named, so they need not sum to 1).
    pub focus_order: [f64; 3],
    /// Extra credit for serving the contractor's primary focus area.
    pub primary_bonus: f64,
    /// Revenue-tier fit by tier distance: index 0 is the same tier, 1 an adjacent one; any
    /// distance past the end of the list scores 0.
    pub tier_fit_by_distance: Vec<f64>,
}

/// Matching constants that passed validation; only [`MatchWeights::new`] and `default` (the
/// documented defaults, which the tests check are valid) make one.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MatchWeights(MatchWeightsConfig);

/// The five factors of a match score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MatchFactorKind {
    FocusArea,
    RevenueTier,
    ServiceArea,
    Semantic,
    PowerConfidence,
}

/// One factor's part in a match score.
#[derive(Debug, Clone, PartialEq)]
pub struct FactorScore {
    pub kind: MatchFactorKind,
    /// The factor's value in [0, 1], or `None` when the data to compute it is missing.
    pub value: Option<f64>,
    /// The weight configuration gives the factor.
    pub configured_weight: f64,
    /// The weight after missing factors' weight was redistributed (0 for a missing factor).
    pub weight_used: f64,
    /// `weight_used × value`; the contributions sum to the match score.
    pub contribution: f64,
    /// 1 when the factor rests on data, 0 when its data is missing.
    pub confidence: f64,
    pub reason: String,
}

/// A partner's match score for one contractor, with its explanation.
#[derive(Debug, Clone, PartialEq)]
pub struct PartnerMatch {
    pub partner_id: PartnerId,
    /// The match score in [0, 1].
    pub score: f64,
    /// The share of the configured weight that rested on data (`Σ wᵢ·cᵢ`): 1 when every factor
    /// was known. A low coverage says the score stands on little.
    pub coverage: f64,
    /// The PowerConfidence score used (0–100), kept for the tie-break and for display.
    pub power_confidence: Option<f64>,
    /// The five factors in [`MatchFactorKind`] order.
    pub factors: Vec<FactorScore>,
}

impl Default for MatchWeightsConfig {
    fn default() -> MatchWeightsConfig {
        MatchWeightsConfig {
            focus_area: 0.35,
            revenue_tier: 0.15,
            service_area: 0.15,
            semantic: 0.20,
            power_confidence: 0.15,
            focus_order: [0.5, 0.3, 0.2],
            primary_bonus: 0.2,
            tier_fit_by_distance: vec![1.0, 0.5],
        }
    }
}

impl MatchWeights {
    /// Checks that every constant is finite and non-negative, that the five factor weights sum
    /// to 1, that the focus order weights are not all 0, and that tier fits lie in [0, 1] and
    /// never grow with distance.
    pub fn new(config: MatchWeightsConfig) -> Result<MatchWeights, ValidationErrors> {
        let mut errors = ValidationErrors::new();
        let factor_weights = [
            ("focus_area", config.focus_area),
            ("revenue_tier", config.revenue_tier),
            ("service_area", config.service_area),
            ("semantic", config.semantic),
            ("power_confidence", config.power_confidence),
        ];
        for (field, weight) in factor_weights {
            if !weight.is_finite() || weight < 0.0 {
                errors.push(
                    field,
                    format!("must be a non-negative number, got {weight}"),
                );
            }
        }
        let sum: f64 = factor_weights.iter().map(|(_, weight)| weight).sum();
        if errors.is_empty() && (sum - 1.0).abs() > WEIGHT_SUM_TOLERANCE {
            errors.push(
                "weights",
                format!("the five factor weights must sum to 1, got {sum}"),
            );
        }
        for (idx, weight) in config.focus_order.iter().enumerate() {
            if !weight.is_finite() || *weight < 0.0 {
                errors.push(
                    format!("focus_order[{idx}]"),
                    format!("must be a non-negative number, got {weight}"),
                );
            }
        }
        if config.focus_order[0] <= 0.0 {
            errors.push("focus_order[0]", "the primary focus area must carry weight");
        }
        if !config.primary_bonus.is_finite() || config.primary_bonus < 0.0 {
            errors.push(
                "primary_bonus",
                format!(
                    "must be a non-negative number, got {}",
                    config.primary_bonus
                ),
            );
        }
        let mut previous = 1.0;
        for (idx, fit) in config.tier_fit_by_distance.iter().enumerate() {
            if !fit.is_finite() || !(0.0..=previous).contains(fit) {
                errors.push(
                    format!("tier_fit_by_distance[{idx}]"),
                    format!(
                        "must lie in [0, {previous}] (fit never grows with distance), got {fit}"
                    ),
                );
            } else {
                previous = *fit;
            }
        }
        errors.into_result().map(|()| MatchWeights(config))
    }

    pub fn config(&self) -> &MatchWeightsConfig {
        &self.0
    }

    fn weight_of(&self, kind: MatchFactorKind) -> f64 {
        match kind {
            MatchFactorKind::FocusArea => self.0.focus_area,
            MatchFactorKind::RevenueTier => self.0.revenue_tier,
            MatchFactorKind::ServiceArea => self.0.service_area,
            MatchFactorKind::Semantic => self.0.semantic,
            MatchFactorKind::PowerConfidence => self.0.power_confidence,
        }
    }
}

impl MatchFactorKind {
    pub const ALL: [MatchFactorKind; 5] = [
        MatchFactorKind::FocusArea,
        MatchFactorKind::RevenueTier,
        MatchFactorKind::ServiceArea,
        MatchFactorKind::Semantic,
        MatchFactorKind::PowerConfidence,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MatchFactorKind::FocusArea => "focus_area",
            MatchFactorKind::RevenueTier => "revenue_tier",
            MatchFactorKind::ServiceArea => "service_area",
            MatchFactorKind::Semantic => "semantic",
            MatchFactorKind::PowerConfidence => "power_confidence",
        }
    }
}

impl PartnerMatch {
    pub fn factor(&self, kind: MatchFactorKind) -> Option<&FactorScore> {
        self.factors.iter().find(|factor| factor.kind == kind)
    }

    /// The factors' reasons in factor order, for a one-paragraph explanation.
    pub fn reasons(&self) -> Vec<&str> {
        self.factors
            .iter()
            .map(|factor| factor.reason.as_str())
            .collect()
    }
}

/// Scores one partner for one contractor.
///
/// `semantic_similarity` is the cosine similarity of the two profiles' embedded texts, `None`
/// when either side has no text; `power_confidence` is the partner's score (0–100), `None` when
/// it has no evidence. Values outside those ranges are treated as missing rather than guessed at.
pub fn score_match(
    contractor: &ContractorProfile,
    partner: &PartnerProfile,
    semantic_similarity: Option<f64>,
    power_confidence: Option<f64>,
    weights: &MatchWeights,
) -> PartnerMatch {
    let power_confidence = power_confidence.filter(|score| (0.0..=100.0).contains(score));
    let observations = [
        focus_area_fit(contractor, partner, weights),
        revenue_tier_fit(contractor, partner, weights),
        service_area_fit(contractor, partner),
        semantic_fit(semantic_similarity),
        power_confidence_fit(power_confidence),
    ];
    let known_weight: f64 = MatchFactorKind::ALL
        .iter()
        .zip(&observations)
        .map(|(kind, observation)| weights.weight_of(*kind) * observation.confidence())
        .sum();
    let factors: Vec<FactorScore> = MatchFactorKind::ALL
        .iter()
        .zip(observations)
        .map(|(kind, observation)| {
            let configured_weight = weights.weight_of(*kind);
            let confidence = observation.confidence();
            let weight_used = if known_weight > 0.0 {
                configured_weight * confidence / known_weight
            } else {
                0.0
            };
            let value = observation.value;
            FactorScore {
                kind: *kind,
                value,
                configured_weight,
                weight_used,
                contribution: weight_used * value.unwrap_or(0.0),
                confidence,
                reason: observation.reason,
            }
        })
        .collect();
    let score = factors
        .iter()
        .map(|factor| factor.contribution)
        .sum::<f64>()
        .clamp(0.0, 1.0);
    PartnerMatch {
        partner_id: partner.id.clone(),
        score,
        coverage: known_weight,
        power_confidence,
        factors,
    }
}

/// Ranks the active partners for a contractor and returns the best `top`.
///
/// Inactive partners are skipped. `semantic_scores` and `confidences` are keyed by partner id;
/// a partner absent from either has that factor missing. Order: higher score first; scores
/// within 1e-9 are tied and ordered by higher PowerConfidence (a partner with a score before
/// one without), then by partner id ascending, so equal inputs always give the same ranking.
pub fn rank_partners(
    contractor: &ContractorProfile,
    partners: &[PartnerProfile],
    semantic_scores: &HashMap<PartnerId, f64>,
    confidences: &HashMap<PartnerId, f64>,
    weights: &MatchWeights,
    top: usize,
) -> Vec<PartnerMatch> {
    let mut matches: Vec<PartnerMatch> = partners
        .iter()
        .filter(|partner| partner.active)
        .map(|partner| {
            score_match(
                contractor,
                partner,
                semantic_scores.get(&partner.id).copied(),
                confidences.get(&partner.id).copied(),
                weights,
            )
        })
        .collect();
    matches.sort_by(compare_matches);
    matches.truncate(top);
    matches
}

/// The ranking order documented on [`rank_partners`].
fn compare_matches(a: &PartnerMatch, b: &PartnerMatch) -> Ordering {
    let quantised = |score: f64| (score / SCORE_QUANTUM).round() as i64;
    quantised(b.score)
        .cmp(&quantised(a.score))
        .then_with(|| match (a.power_confidence, b.power_confidence) {
            (Some(x), Some(y)) => y.total_cmp(&x),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        })
        .then_with(|| a.partner_id.cmp(&b.partner_id))
}

/// A factor's value (or its absence) and the sentence explaining it.
struct Observation {
    value: Option<f64>,
    reason: String,
}

impl Observation {
    fn known(value: f64, reason: String) -> Observation {
        Observation {
            value: Some(value.clamp(0.0, 1.0)),
            reason,
        }
    }

    fn missing(reason: String) -> Observation {
        Observation {
            value: None,
            reason,
        }
    }

    fn confidence(&self) -> f64 {
        if self.value.is_some() {
            1.0
        } else {
            0.0
        }
    }
}

fn focus_area_fit(
    contractor: &ContractorProfile,
    partner: &PartnerProfile,
    weights: &MatchWeights,
) -> Observation {
    let config = weights.config();
    let areas = contractor.focus_areas.as_slice();
    let order_weights = &config.focus_order[..areas.len()];
    let order_sum: f64 = order_weights.iter().sum();
    let served = |area: &FocusArea| partner.focus_areas_served.contains(area);
    let base: f64 = areas
        .iter()
        .zip(order_weights)
        .filter(|(area, _)| served(area))
        .map(|(_, weight)| weight / order_sum)
        .sum();
    let primary = contractor.focus_areas.primary();
    let serves_primary = served(primary);
    let bonus = if serves_primary {
        config.primary_bonus
    } else {
        0.0
    };
    let value = (base + bonus) / (1.0 + config.primary_bonus);

    let labels = |keep: bool| -> Vec<String> {
        areas[1..]
            .iter()
            .filter(|area| served(area) == keep)
            .map(FocusArea::label)
            .collect()
    };
    let (others_served, others_missing) = (labels(true), labels(false));
    let mut reason = if serves_primary {
        format!("serves your primary focus area: {}", primary.label())
    } else if others_served.is_empty() {
        let all: Vec<String> = areas.iter().map(FocusArea::label).collect();
        format!("serves none of your focus areas: {}", all.join(", "))
    } else {
        format!(
            "does not serve your primary focus area ({}) but serves: {}",
            primary.label(),
            others_served.join(", ")
        )
    };
    if serves_primary && !others_served.is_empty() {
        reason.push_str(&format!("; also serves: {}", others_served.join(", ")));
    }
    if (serves_primary || !others_served.is_empty()) && !others_missing.is_empty() {
        reason.push_str(&format!("; not: {}", others_missing.join(", ")));
    }
    Observation::known(value, reason)
}

fn revenue_tier_fit(
    contractor: &ContractorProfile,
    partner: &PartnerProfile,
    weights: &MatchWeights,
) -> Observation {
    let Some(tier) = &contractor.revenue_tier else {
        return Observation::missing("your revenue tier is unknown: not used".to_owned());
    };
    let Some(nearest) = nearest_tier(tier, &partner.revenue_tiers_served) else {
        return Observation::missing(
            "the partner has not said which revenue tiers it serves: not used".to_owned(),
        );
    };
    let distance = tier.distance(nearest);
    let value = weights
        .config()
        .tier_fit_by_distance
        .get(distance)
        .copied()
        .unwrap_or(0.0);
    let reason = match distance {
        0 => format!("serves your revenue tier: {}", tier.label()),
        1 => format!(
            "serves an adjacent revenue tier ({}) but not yours ({})",
            nearest.label(),
            tier.label()
        ),
        _ => format!(
            "serves no revenue tier near yours ({}); the nearest is {}",
            tier.label(),
            nearest.label()
        ),
    };
    Observation::known(value, reason)
}

/// The served tier closest to `tier`; on equal distance the smaller tier, for determinism.
fn nearest_tier<'a>(
    tier: &RevenueTier,
    served: &'a BTreeSet<RevenueTier>,
) -> Option<&'a RevenueTier> {
    served
        .iter()
        .min_by_key(|candidate| tier.distance(candidate))
}

fn service_area_fit(contractor: &ContractorProfile, partner: &PartnerProfile) -> Observation {
    if contractor.service_areas.is_empty() {
        return Observation::missing("your service areas are unknown: not used".to_owned());
    }
    if partner.service_areas.is_empty() {
        return Observation::missing(
            "the partner has not listed its service areas: not used".to_owned(),
        );
    }
    let (covered, uncovered): (Vec<_>, Vec<_>) = contractor
        .service_areas
        .iter()
        .partition(|area| areas_cover(&partner.service_areas, area));
    let label = |areas: &[&crate::profile::ServiceArea]| {
        areas
            .iter()
            .map(|area| area.label())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let n_areas = contractor.service_areas.len();
    let value = covered.len() as f64 / n_areas as f64;
    let reason = if uncovered.is_empty() {
        format!("serves all of your service areas: {}", label(&covered))
    } else if covered.is_empty() {
        format!("serves none of your service areas: {}", label(&uncovered))
    } else {
        format!(
            "serves {} of your {n_areas} service areas: {}; not: {}",
            covered.len(),
            label(&covered),
            label(&uncovered)
        )
    };
    Observation::known(value, reason)
}

fn semantic_fit(similarity: Option<f64>) -> Observation {
    match similarity {
        None => Observation::missing(
            "no text to compare your goals and challenges with the partner's offer: not used"
                .to_owned(),
        ),
        // Embedding cosines can stray past ±1 by rounding; anything farther is a caller bug.
        Some(cosine) if !cosine.is_finite() || cosine.abs() > 1.0 + 1e-6 => Observation::missing(
            format!("the semantic similarity {cosine} is not a cosine in [-1, 1]: not used"),
        ),
        Some(cosine) => {
            let cosine = cosine.clamp(-1.0, 1.0);
            let value = (cosine + 1.0) / 2.0;
            Observation::known(
                value,
                format!(
                    "similarity of your goals and challenges to the partner's offer: {value:.2} (cosine {cosine:.2})"
                ),
            )
        }
    }
}

fn power_confidence_fit(power_confidence: Option<f64>) -> Observation {
    match power_confidence {
        None => Observation::missing(
            "the partner has no PowerConfidence evidence yet: not used".to_owned(),
        ),
        Some(score) => Observation::known(score / 100.0, format!("PowerConfidence {score:.0}/100")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{
        ContactInput, ContractorProfileInput, PartnerProfileInput, Power100Catalogue,
    };

    const EPS: f64 = 1e-9;

    fn contractor(revenue_tier: Option<&str>) -> ContractorProfile {
        ContractorProfile::parse(
            &ContractorProfileInput {
                id: "contractor-1".into(),
                company_name: "Acme Roofing".into(),
                contact: ContactInput {
                    name: "Dana".into(),
                    ..ContactInput::default()
                },
                service_areas: vec!["TX".into(), "OK".into()],
                focus_areas: vec![
                    "controlling_lead_flow".into(),
                    "closing_higher_percentage".into(),
                    "marketing_automation".into(),
                ],
                revenue_tier: revenue_tier.map(str::to_owned),
                ..ContractorProfileInput::default()
            },
            &Power100Catalogue::default(),
        )
        .unwrap()
    }

    fn partner(
        id: &str,
        focus: &[&str],
        tiers: &[&str],
        areas: &[&str],
        active: bool,
    ) -> PartnerProfile {
        let strings = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        PartnerProfile::parse(
            &PartnerProfileInput {
                id: id.into(),
                company_name: id.into(),
                focus_areas_served: strings(focus),
                revenue_tiers_served: strings(tiers),
                service_areas: strings(areas),
                active,
                ..PartnerProfileInput::default()
            },
            &Power100Catalogue::default(),
        )
        .unwrap()
    }

    fn id(raw: &str) -> PartnerId {
        PartnerId::parse(raw).unwrap()
    }

    /// The scenario partners. Their hand-computed scores under the default weights
    /// (focus 0.35, tier 0.15, area 0.15, semantic 0.20, PowerConfidence 0.15; order weights
    /// 0.5/0.3/0.2; primary bonus 0.2) are in `ranks_the_scenario_partners`.
    fn scenario() -> (
        Vec<PartnerProfile>,
        HashMap<PartnerId, f64>,
        HashMap<PartnerId, f64>,
    ) {
        let partners = vec![
            partner(
                "leadflow",
                &["controlling_lead_flow", "marketing_automation"],
                &["5_10_million"],
                &["national"],
                true,
            ),
            partner(
                "closer",
                &["closing_higher_percentage"],
                &["10_25_million"],
                &["TX"],
                true,
            ),
            partner(
                "newcomer",
                &["controlling_lead_flow"],
                &["5_10_million"],
                &["south"],
                true,
            ),
            partner(
                "dormant",
                &[
                    "controlling_lead_flow",
                    "closing_higher_percentage",
                    "marketing_automation",
                ],
                &["5_10_million"],
                &["national"],
                false,
            ),
            partner(
                "bigco",
                &["marketing_automation"],
                &["100_plus_million"],
                &["national"],
                true,
            ),
        ];
        let semantic = HashMap::from([
            (id("leadflow"), 0.6),
            (id("closer"), 0.2),
            (id("newcomer"), 0.6),
            (id("dormant"), 1.0),
            (id("bigco"), -0.2),
        ]);
        // "newcomer" has no PowerConfidence evidence.
        let confidences = HashMap::from([
            (id("leadflow"), 80.0),
            (id("closer"), 90.0),
            (id("dormant"), 100.0),
            (id("bigco"), 95.0),
        ]);
        (partners, semantic, confidences)
    }

    #[test]
    fn ranks_the_scenario_partners() {
        let (partners, semantic, confidences) = scenario();
        let ranked = rank_partners(
            &contractor(Some("5_10_million")),
            &partners,
            &semantic,
            &confidences,
            &MatchWeights::default(),
            10,
        );
        let order: Vec<&str> = ranked.iter().map(|m| m.partner_id.as_str()).collect();
        // "dormant" would score highest but is inactive.
        assert_eq!(order, vec!["leadflow", "newcomer", "closer", "bigco"]);

        // leadflow: focus (0.5 + 0.2 + bonus 0.2) / 1.2 = 0.75; tier 1; area 1; semantic
        // (0.6 + 1) / 2 = 0.8; PowerConfidence 0.8.
        // 0.35·0.75 + 0.15·1 + 0.15·1 + 0.20·0.8 + 0.15·0.8 = 0.8425.
        assert!(
            (ranked[0].score - 0.8425).abs() < EPS,
            "{}",
            ranked[0].score
        );
        assert!((ranked[0].coverage - 1.0).abs() < EPS);
        assert_eq!(
            ranked[0].reasons(),
            vec![
                "serves your primary focus area: controlling lead flow; also serves: marketing automation; not: closing higher percentage",
                "serves your revenue tier: $5–10 million",
                "serves all of your service areas: TX, OK",
                "similarity of your goals and challenges to the partner's offer: 0.80 (cosine 0.60)",
                "PowerConfidence 80/100",
            ]
        );

        // newcomer: focus (0.5 + 0.2) / 1.2 = 0.583333; tier 1; area 1 (TX and OK are in the
        // South); semantic 0.8; no PowerConfidence, so the known weight is 0.85 and
        // score = (0.35·0.583333 + 0.15 + 0.15 + 0.16) / 0.85 = 0.664167 / 0.85 = 0.781373.
        let newcomer = &ranked[1];
        assert!(
            (newcomer.score - 0.664_166_666_7 / 0.85).abs() < 1e-9,
            "{}",
            newcomer.score
        );
        assert!((newcomer.coverage - 0.85).abs() < EPS);
        let prior = newcomer.factor(MatchFactorKind::PowerConfidence).unwrap();
        assert_eq!(prior.value, None);
        assert_eq!(prior.confidence, 0.0);
        assert_eq!(prior.weight_used, 0.0);
        assert_eq!(prior.contribution, 0.0);
        assert_eq!(
            prior.reason,
            "the partner has no PowerConfidence evidence yet: not used"
        );
        let focus = newcomer.factor(MatchFactorKind::FocusArea).unwrap();
        assert!((focus.weight_used - 0.35 / 0.85).abs() < EPS);

        // closer: focus 0.3 / 1.2 = 0.25; tier adjacent 0.5; area 1 of 2 = 0.5; semantic 0.6;
        // PowerConfidence 0.9. 0.0875 + 0.075 + 0.075 + 0.12 + 0.135 = 0.4925.
        let closer = &ranked[2];
        assert!((closer.score - 0.4925).abs() < EPS, "{}", closer.score);
        assert_eq!(
            closer.reasons()[..3],
            [
                "does not serve your primary focus area (controlling lead flow) but serves: closing higher percentage; not: marketing automation",
                "serves an adjacent revenue tier ($10–25 million) but not yours ($5–10 million)",
                "serves 1 of your 2 service areas: TX; not: OK",
            ]
        );

        // bigco: focus 0.2 / 1.2; tier distance 4 → 0; area 1; semantic 0.4; PowerConfidence
        // 0.95. 0.058333 + 0 + 0.15 + 0.08 + 0.1425 = 0.430833.
        let bigco = &ranked[3];
        assert!((bigco.score - (0.35 * 0.2 / 1.2 + 0.15 + 0.08 + 0.1425)).abs() < EPS);
        assert_eq!(
            bigco.factor(MatchFactorKind::RevenueTier).unwrap().reason,
            "serves no revenue tier near yours ($5–10 million); the nearest is $100+ million"
        );
        assert_eq!(
            bigco.factor(MatchFactorKind::RevenueTier).unwrap().value,
            Some(0.0)
        );
    }

    #[test]
    fn a_contractor_without_revenue_tier_gets_that_weight_redistributed() {
        let (partners, semantic, confidences) = scenario();
        let ranked = rank_partners(
            &contractor(None),
            &partners,
            &semantic,
            &confidences,
            &MatchWeights::default(),
            3,
        );
        let order: Vec<&str> = ranked.iter().map(|m| m.partner_id.as_str()).collect();
        assert_eq!(order, vec!["leadflow", "newcomer", "bigco"]);
        let best = &ranked[0];
        // leadflow without the tier factor: (0.2625 + 0.15 + 0.16 + 0.12) / 0.85 = 0.814706.
        assert!((best.score - 0.6925 / 0.85).abs() < EPS, "{}", best.score);
        let tier = best.factor(MatchFactorKind::RevenueTier).unwrap();
        assert_eq!(tier.value, None);
        assert_eq!(tier.confidence, 0.0);
        assert_eq!(tier.reason, "your revenue tier is unknown: not used");
        let used: f64 = best.factors.iter().map(|f| f.weight_used).sum();
        assert!((used - 1.0).abs() < EPS, "redistributed weights sum to 1");
        // newcomer lacks both the tier and PowerConfidence: known weight 0.70.
        // (0.35·0.583333 + 0.15 + 0.16) / 0.70 = 0.514167 / 0.70 = 0.734524.
        assert!((ranked[1].score - 0.514_166_666_7 / 0.70).abs() < 1e-9);
        // bigco: (0.058333 + 0.15 + 0.08 + 0.1425) / 0.85 = 0.506863, ahead of closer's
        // (0.0875 + 0.075 + 0.12 + 0.135) / 0.85 = 0.491176 now the far tier no longer counts.
        assert!((ranked[2].score - 0.430_833_333_3 / 0.85).abs() < 1e-9);
    }

    #[test]
    fn ties_break_on_power_confidence_then_partner_id() {
        let focus = ["controlling_lead_flow"];
        let partners = vec![
            partner("zeta", &focus, &[], &[], true),
            partner("beta", &focus, &[], &[], true),
            partner("alpha", &focus, &[], &[], true),
            partner("gamma", &focus, &[], &[], true),
        ];
        // Focus fit is (0.5 + 0.2) / 1.2 = 0.583333 for all four; tier and area are missing.
        // Equal scores by construction: zeta (0.35·0.583333 + 0.2·0.25 + 0.15·1.0) / 0.70 and
        // beta/alpha (0.35·0.583333 + 0.2·1.0 + 0.15·0.0) / 0.70 are both 0.404167 / 0.70.
        // gamma has no PowerConfidence: (0.204167 + 0.2) / 0.55 = 0.734848, so it leads.
        let semantic = HashMap::from([
            (id("zeta"), -0.5),
            (id("beta"), 1.0),
            (id("alpha"), 1.0),
            (id("gamma"), 1.0),
        ]);
        let confidences =
            HashMap::from([(id("zeta"), 100.0), (id("beta"), 0.0), (id("alpha"), 0.0)]);
        let ranked = rank_partners(
            &contractor(None),
            &partners,
            &semantic,
            &confidences,
            &MatchWeights::default(),
            10,
        );
        let order: Vec<&str> = ranked.iter().map(|m| m.partner_id.as_str()).collect();
        assert_eq!(order, vec!["gamma", "zeta", "alpha", "beta"]);
        assert!((ranked[1].score - ranked[2].score).abs() < 1e-12);
    }

    #[test]
    fn a_partner_with_no_evidence_ranks_after_an_equal_one_with_evidence() {
        let focus = [
            "controlling_lead_flow",
            "closing_higher_percentage",
            "marketing_automation",
        ];
        let partners = vec![
            partner("a-no-evidence", &focus, &[], &[], true),
            partner("b-evidence", &focus, &[], &[], true),
        ];
        // Both serve every focus area (fit 1). a-no-evidence is scored on focus alone: 1.0;
        // b-evidence on focus and PowerConfidence: (0.35·1 + 0.15·1) / 0.5 = 1.0.
        let confidences = HashMap::from([(id("b-evidence"), 100.0)]);
        let ranked = rank_partners(
            &contractor(None),
            &partners,
            &HashMap::new(),
            &confidences,
            &MatchWeights::default(),
            10,
        );
        assert_eq!(ranked[0].partner_id.as_str(), "b-evidence");
        assert!((ranked[0].score - ranked[1].score).abs() < EPS);
        assert!(ranked[1].coverage < ranked[0].coverage);
    }

    #[test]
    fn focus_fit_renormalises_order_weights_over_named_areas() {
        let mut one_area = contractor(Some("5_10_million"));
        one_area.focus_areas = crate::profile::FocusAreas::parse(
            &Power100Catalogue::default().focus_areas,
            &["controlling_lead_flow".to_owned()],
        )
        .unwrap();
        let serving = partner("p", &["controlling_lead_flow"], &[], &[], true);
        let fit = score_match(&one_area, &serving, None, None, &MatchWeights::default());
        assert_eq!(
            fit.factor(MatchFactorKind::FocusArea).unwrap().value,
            Some(1.0)
        );
        let other = partner("q", &["recession_proofing"], &[], &[], true);
        let fit = score_match(&one_area, &other, None, None, &MatchWeights::default());
        let focus = fit.factor(MatchFactorKind::FocusArea).unwrap();
        assert_eq!(focus.value, Some(0.0));
        assert_eq!(
            focus.reason,
            "serves none of your focus areas: controlling lead flow"
        );
    }

    #[test]
    fn out_of_range_inputs_are_missing_not_guessed() {
        let c = contractor(Some("5_10_million"));
        let p = partner(
            "p",
            &["controlling_lead_flow"],
            &["5_10_million"],
            &["TX"],
            true,
        );
        let m = score_match(
            &c,
            &p,
            Some(f64::NAN),
            Some(140.0),
            &MatchWeights::default(),
        );
        assert_eq!(m.factor(MatchFactorKind::Semantic).unwrap().value, None);
        assert_eq!(
            m.factor(MatchFactorKind::PowerConfidence).unwrap().value,
            None
        );
        assert!((m.coverage - 0.65).abs() < EPS);
        assert!((0.0..=1.0).contains(&m.score));
    }

    #[test]
    fn no_data_at_all_scores_zero_with_zero_coverage() {
        let mut c = contractor(None);
        c.service_areas.clear();
        let weights = MatchWeights::new(MatchWeightsConfig {
            focus_area: 0.0,
            service_area: 0.5,
            ..MatchWeightsConfig::default()
        })
        .unwrap();
        let p = partner("p", &["controlling_lead_flow"], &[], &[], true);
        let m = score_match(&c, &p, None, None, &weights);
        assert_eq!(m.score, 0.0);
        assert_eq!(m.coverage, 0.0);
    }

    #[test]
    fn weights_must_be_valid() {
        assert!(MatchWeights::new(MatchWeightsConfig::default()).is_ok());
        let mut config = MatchWeightsConfig {
            semantic: 0.3,
            ..MatchWeightsConfig::default()
        };
        let errors = MatchWeights::new(config.clone()).unwrap_err();
        assert_eq!(errors.errors()[0].field, "weights");
        config.semantic = -0.1;
        config.focus_area = 0.65;
        assert_eq!(
            MatchWeights::new(config).unwrap_err().errors()[0].field,
            "semantic"
        );
        let config = MatchWeightsConfig {
            tier_fit_by_distance: vec![1.0, 0.5, 0.7],
            focus_order: [0.0, 0.5, 0.5],
            ..MatchWeightsConfig::default()
        };
        let fields: Vec<String> = MatchWeights::new(config)
            .unwrap_err()
            .errors()
            .iter()
            .map(|e| e.field.clone())
            .collect();
        assert_eq!(fields, vec!["focus_order[0]", "tier_fit_by_distance[2]"]);
    }
}
