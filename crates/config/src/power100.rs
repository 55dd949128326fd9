//! `[power100]`: Power100's vocabularies (focus-area catalogue, ordered revenue tiers), the
//! matching weights and the PowerConfidence constants. Defaults come from the
//! `flywheel-power100` crate, whose formulas they parameterise (docs/power100.md); the services
//! layer checks them with the crate's constructors at start.

use flywheel_power100::matching::MatchWeightsConfig;
use flywheel_power100::powerconfidence::PowerConfidenceConfig;
use flywheel_power100::profile::{DEFAULT_FOCUS_AREAS, DEFAULT_REVENUE_TIERS};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Power100Config {
    /// Focus-area slugs a profile may name.
    pub focus_areas: Vec<String>,
    /// Revenue-tier slugs, smallest first (tier distance is the difference of positions).
    pub revenue_tiers: Vec<String>,
    /// The gateway model that embeds goals and offers for semantic fit; default
    /// `knowledge.embedding_model`.
    pub embedding_model: Option<String>,
    pub match_weights: MatchWeightsSection,
    pub power_confidence: PowerConfidenceSection,
}

/// Matching weights (docs/power100.md, "Matching").
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MatchWeightsSection {
    /// The five factor weights; they must sum to 1.
    pub focus_area: f64,
    pub revenue_tier: f64,
    pub service_area: f64,
    pub semantic: f64,
    pub power_confidence: f64,
    /// Order weights of a contractor's 1st, 2nd and 3rd focus area.
    pub focus_order: [f64; 3],
    /// Added when the partner serves the contractor's primary focus area.
    pub primary_bonus: f64,
    /// Revenue-tier fit by distance (0, 1, …); farther is 0.
    pub tier_fit_by_distance: Vec<f64>,
}

/// PowerConfidence constants (docs/power100.md, "PowerConfidence").
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PowerConfidenceSection {
    pub half_life_days: f64,
    pub max_evidence_age_days: f64,
    pub customer_weight: f64,
    pub employee_weight: f64,
    pub demo_weight: f64,
    pub message_consistency_weight: f64,
    pub prior_sd: f64,
    pub prior_strength: f64,
    pub band_z: f64,
    pub required_per_kind: usize,
    pub momentum_threshold_per_quarter: f64,
}

impl Default for Power100Config {
    fn default() -> Power100Config {
        Power100Config {
            focus_areas: DEFAULT_FOCUS_AREAS
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            revenue_tiers: DEFAULT_REVENUE_TIERS
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            embedding_model: None,
            match_weights: MatchWeightsSection::default(),
            power_confidence: PowerConfidenceSection::default(),
        }
    }
}

impl Default for MatchWeightsSection {
    fn default() -> MatchWeightsSection {
        MatchWeightsSection::from(MatchWeightsConfig::default())
    }
}

impl From<MatchWeightsConfig> for MatchWeightsSection {
    fn from(config: MatchWeightsConfig) -> MatchWeightsSection {
        MatchWeightsSection {
            focus_area: config.focus_area,
            revenue_tier: config.revenue_tier,
            service_area: config.service_area,
            semantic: config.semantic,
            power_confidence: config.power_confidence,
            focus_order: config.focus_order,
            primary_bonus: config.primary_bonus,
            tier_fit_by_distance: config.tier_fit_by_distance,
        }
    }
}

impl From<&MatchWeightsSection> for MatchWeightsConfig {
    fn from(section: &MatchWeightsSection) -> MatchWeightsConfig {
        MatchWeightsConfig {
            focus_area: section.focus_area,
            revenue_tier: section.revenue_tier,
            service_area: section.service_area,
            semantic: section.semantic,
            power_confidence: section.power_confidence,
            focus_order: section.focus_order,
            primary_bonus: section.primary_bonus,
            tier_fit_by_distance: section.tier_fit_by_distance.clone(),
        }
    }
}

impl Default for PowerConfidenceSection {
    fn default() -> PowerConfidenceSection {
        PowerConfidenceSection::from(PowerConfidenceConfig::default())
    }
}

impl From<PowerConfidenceConfig> for PowerConfidenceSection {
    fn from(config: PowerConfidenceConfig) -> PowerConfidenceSection {
        PowerConfidenceSection {
            half_life_days: config.half_life_days,
            max_evidence_age_days: config.max_evidence_age_days,
            customer_weight: config.customer_weight,
            employee_weight: config.employee_weight,
            demo_weight: config.demo_weight,
            message_consistency_weight: config.message_consistency_weight,
            prior_sd: config.prior_sd,
            prior_strength: config.prior_strength,
            band_z: config.band_z,
            required_per_kind: config.required_per_kind,
            momentum_threshold_per_quarter: config.momentum_threshold_per_quarter,
        }
    }
}

impl From<&PowerConfidenceSection> for PowerConfidenceConfig {
    fn from(section: &PowerConfidenceSection) -> PowerConfidenceConfig {
        PowerConfidenceConfig {
            half_life_days: section.half_life_days,
            max_evidence_age_days: section.max_evidence_age_days,
            customer_weight: section.customer_weight,
            employee_weight: section.employee_weight,
            demo_weight: section.demo_weight,
            message_consistency_weight: section.message_consistency_weight,
            prior_sd: section.prior_sd,
            prior_strength: section.prior_strength,
            band_z: section.band_z,
            required_per_kind: section.required_per_kind,
            momentum_threshold_per_quarter: section.momentum_threshold_per_quarter,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_crates_and_round_trip() {
        let config = Power100Config::default();
        assert_eq!(config.focus_areas.len(), DEFAULT_FOCUS_AREAS.len());
        assert_eq!(
            MatchWeightsConfig::from(&config.match_weights),
            MatchWeightsConfig::default()
        );
        assert_eq!(
            PowerConfidenceConfig::from(&config.power_confidence),
            PowerConfidenceConfig::default()
        );
    }
}
