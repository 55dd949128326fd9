//! PowerConfidence: a partner's 0–100 score from multi-stakeholder evidence, with a confidence
//! band that is wide when evidence is scarce, the 15-point verification status, the
//! quarter-by-quarter history, momentum, and the difference from the peer average.
//!
//! The formula (constants in [`PowerConfidenceConfig`], worked examples in `docs/power100.md`):
//!
//! 1. Each evidence item has a score `xᵢ` in 0–100 (a survey's 0–10 ratings: mean × 10; a demo
//!    analysis or consistency analysis: its own 0–100 score) and a recency weight
//!    `wᵢ = 0.5^(ageᵢ / half_life)` with `half_life = 180` days, so a year-old response counts
//!    a quarter as much as today's. Only valid items count: not rejected, not in the future,
//!    not older than `max_evidence_age_days` (730).
//! 2. Per component (customer, employee, demo, message consistency):
//!    mean `m = Σwx / Σw`; effective sample size `n_eff = (Σw)² / Σw²`; sample variance with
//!    reliability weights `s² = Σw(x − m)² / (Σw − Σw²/Σw)`; the spread used is shrunk towards
//!    a prior `σ₀ = 20` points held with the strength of `k = 1` observation:
//!    `sd² = (k·σ₀² + (n_eff − 1)·s²) / (k + n_eff − 1)`, so one response (or identical ones)
//!    never claims certainty; standard error `se = sd / √n_eff`.
//! 3. Overall: weights customer 0.35, employee 0.25, demo 0.25, message consistency 0.15,
//!    renormalised over the components that have evidence: `S = Σ w_c m_c / Σ w_c`,
//!    `SE = √Σ (w_c / Σw)² se_c²`, band `S ± 1.96·SE` clamped to [0, 100].

use chrono::{DateTime, Datelike, Duration, TimeZone, Utc};
use flywheel_core::ValidationErrors;

use crate::profile::{InvalidValue, PartnerId, PartnerProfile};

/// The kinds of evidence PowerConfidence combines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EvidenceComponent {
    Customer,
    Employee,
    Demo,
    MessageConsistency,
}

/// A 0–10 rating from a survey question.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rating(u8);

/// One piece of evidence about a partner, already reduced to a 0–100 score.
#[derive(Debug, Clone, PartialEq)]
pub struct EvidenceItem {
    id: String,
    component: EvidenceComponent,
    score: f64,
    observed_at: DateTime<Utc>,
    rejection: Option<String>,
}

/// The PowerConfidence constants as configuration holds them; [`PowerConfidenceSettings::new`]
/// checks them.
#[derive(Debug, Clone, PartialEq)]
pub struct PowerConfidenceConfig {
    /// Age in days at which an item's weight halves.
    pub half_life_days: f64,
    /// Items older than this are no longer valid evidence.
    pub max_evidence_age_days: f64,
    pub customer_weight: f64,
    pub employee_weight: f64,
    pub demo_weight: f64,
    pub message_consistency_weight: f64,
    /// The spread assumed before any data (points on the 0–100 scale).
    pub prior_sd: f64,
    /// How many observations the prior spread is worth.
    pub prior_strength: f64,
    /// The normal quantile of the band: 1.96 for 95 %.
    pub band_z: f64,
    /// Valid items needed per kind (employees, customers, demos) for the 15-point verification.
    pub required_per_kind: usize,
    /// Momentum is rising (falling) when the quarterly slope is at least this many points per
    /// quarter up (down).
    pub momentum_threshold_per_quarter: f64,
}

/// PowerConfidence constants that passed validation; `default` gives the documented defaults,
/// which a test checks are valid.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PowerConfidenceSettings(PowerConfidenceConfig);

/// One component's share of a PowerConfidence score.
#[derive(Debug, Clone, PartialEq)]
pub struct ComponentScore {
    pub component: EvidenceComponent,
    /// The recency-weighted mean, 0–100.
    pub score: f64,
    pub n_items: usize,
    /// `(Σw)² / Σw²`: how many equally weighted items the evidence is worth.
    pub effective_n: f64,
    pub standard_error: f64,
    /// The component's own band, clamped to [0, 100].
    pub band_low: f64,
    pub band_high: f64,
    /// The configured weight renormalised over the components with evidence.
    pub weight_used: f64,
}

/// A partner's PowerConfidence at one point in time.
#[derive(Debug, Clone, PartialEq)]
pub struct PowerConfidence {
    pub score: f64,
    pub band_low: f64,
    pub band_high: f64,
    pub standard_error: f64,
    /// The components that had evidence, in [`EvidenceComponent`] order.
    pub components: Vec<ComponentScore>,
    pub n_valid_items: usize,
}

/// The 15-point verification: valid employee feedbacks, customer references and demo analyses
/// out of the required number of each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerificationStatus {
    pub employees: VerificationCount,
    pub customers: VerificationCount,
    pub demos: VerificationCount,
    /// Valid items counted towards the target, at most `3 × required_per_kind`.
    pub points: usize,
    pub max_points: usize,
    pub complete: bool,
    /// What is still missing, in words ("2 more customer references").
    pub missing: Vec<String>,
}

/// One kind's progress towards its part of the verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerificationCount {
    pub valid: usize,
    pub required: usize,
    /// `min(valid, required)`: the points this kind contributes.
    pub counted: usize,
    pub invalid: Vec<InvalidEvidence>,
}

/// An item that does not count, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidEvidence {
    pub id: String,
    pub reason: String,
}

/// A calendar quarter (`2025-Q3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Quarter {
    year: i32,
    /// 1 to 4.
    number: u8,
}

/// The PowerConfidence as of the last instant of a quarter, `None` without valid evidence then.
#[derive(Debug, Clone, PartialEq)]
pub struct QuarterScore {
    pub quarter: Quarter,
    pub power_confidence: Option<PowerConfidence>,
}

/// Which way the score moved over the last three quarters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Momentum {
    Rising,
    Falling,
    Steady,
    /// One of the last three quarters had no score, or there are fewer than three.
    Insufficient,
}

/// Momentum with the slope it was decided on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MomentumReport {
    pub momentum: Momentum,
    /// Least-squares slope through the last three quarterly scores, in points per quarter.
    pub slope_per_quarter: Option<f64>,
}

/// A partner's score against the average of its peers.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerComparison {
    pub peer_average: f64,
    pub n_peers: usize,
    /// `score − peer_average`: what Power100 calls the variance from the peer average (a signed
    /// difference in points, not the statistical variance).
    pub variance: f64,
}

impl EvidenceComponent {
    pub const ALL: [EvidenceComponent; 4] = [
        EvidenceComponent::Customer,
        EvidenceComponent::Employee,
        EvidenceComponent::Demo,
        EvidenceComponent::MessageConsistency,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EvidenceComponent::Customer => "customer",
            EvidenceComponent::Employee => "employee",
            EvidenceComponent::Demo => "demo",
            EvidenceComponent::MessageConsistency => "message_consistency",
        }
    }
}

impl Rating {
    pub fn new(value: i64) -> Result<Rating, InvalidValue> {
        match u8::try_from(value) {
            Ok(rating) if rating <= 10 => Ok(Rating(rating)),
            _ => Err(invalid(format!("a rating must be 0 to 10, got {value}"))),
        }
    }

    pub fn value(self) -> u8 {
        self.0
    }
}

impl EvidenceItem {
    /// Evidence from survey ratings: the mean rating × 10.
    pub fn from_ratings(
        id: impl Into<String>,
        component: EvidenceComponent,
        ratings: &[Rating],
        observed_at: DateTime<Utc>,
    ) -> Result<EvidenceItem, InvalidValue> {
        if ratings.is_empty() {
            return Err(invalid("evidence needs at least one rating"));
        }
        let sum: f64 = ratings.iter().map(|r| f64::from(r.0)).sum();
        EvidenceItem::from_score(
            id,
            component,
            10.0 * sum / ratings.len() as f64,
            observed_at,
        )
    }

    /// Evidence that is already a 0–100 score (a demo or consistency analysis).
    pub fn from_score(
        id: impl Into<String>,
        component: EvidenceComponent,
        score: f64,
        observed_at: DateTime<Utc>,
    ) -> Result<EvidenceItem, InvalidValue> {
        if !score.is_finite() || !(0.0..=100.0).contains(&score) {
            return Err(invalid(format!(
                "an evidence score must be 0 to 100, got {score}"
            )));
        }
        Ok(EvidenceItem {
            id: id.into(),
            component,
            score,
            observed_at,
            rejection: None,
        })
    }

    /// Evidence from a mean of ratings the caller already validated (each 0–10), so the
    /// score `10 × mean` is in range by construction; clamped all the same.
    pub(crate) fn from_rating_mean(
        id: impl Into<String>,
        component: EvidenceComponent,
        mean_rating: f64,
        observed_at: DateTime<Utc>,
    ) -> EvidenceItem {
        EvidenceItem {
            id: id.into(),
            component,
            score: (10.0 * mean_rating).clamp(0.0, 100.0),
            observed_at,
            rejection: None,
        }
    }

    /// Marks the item as not counting (an admin found it fake, a duplicate respondent, …).
    pub fn rejected(mut self, reason: impl Into<String>) -> EvidenceItem {
        self.rejection = Some(reason.into());
        self
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn component(&self) -> EvidenceComponent {
        self.component
    }

    pub fn score(&self) -> f64 {
        self.score
    }

    pub fn observed_at(&self) -> DateTime<Utc> {
        self.observed_at
    }

    /// Why the item does not count at `now`, or `None` when it is valid.
    pub fn invalid_reason(
        &self,
        now: DateTime<Utc>,
        settings: &PowerConfidenceSettings,
    ) -> Option<String> {
        if let Some(reason) = &self.rejection {
            return Some(format!("rejected: {reason}"));
        }
        if self.observed_at > now {
            return Some("recorded after the evaluation time".to_owned());
        }
        let max_age = settings.0.max_evidence_age_days;
        if age_days(self.observed_at, now) > max_age {
            return Some(format!("older than {max_age} days"));
        }
        None
    }
}

impl Default for PowerConfidenceConfig {
    fn default() -> PowerConfidenceConfig {
        PowerConfidenceConfig {
            half_life_days: 180.0,
            max_evidence_age_days: 730.0,
            customer_weight: 0.35,
            employee_weight: 0.25,
            demo_weight: 0.25,
            message_consistency_weight: 0.15,
            prior_sd: 20.0,
            prior_strength: 1.0,
            band_z: 1.96,
            required_per_kind: 5,
            momentum_threshold_per_quarter: 2.5,
        }
    }
}

impl PowerConfidenceSettings {
    /// Checks that every constant is finite and positive (weights non-negative, not all 0).
    pub fn new(config: PowerConfidenceConfig) -> Result<PowerConfidenceSettings, ValidationErrors> {
        let mut errors = ValidationErrors::new();
        let positive = [
            ("half_life_days", config.half_life_days),
            ("max_evidence_age_days", config.max_evidence_age_days),
            ("prior_sd", config.prior_sd),
            ("prior_strength", config.prior_strength),
            ("band_z", config.band_z),
            (
                "momentum_threshold_per_quarter",
                config.momentum_threshold_per_quarter,
            ),
        ];
        for (field, value) in positive {
            if !value.is_finite() || value <= 0.0 {
                errors.push(field, format!("must be a positive number, got {value}"));
            }
        }
        let weights = [
            ("customer_weight", config.customer_weight),
            ("employee_weight", config.employee_weight),
            ("demo_weight", config.demo_weight),
            (
                "message_consistency_weight",
                config.message_consistency_weight,
            ),
        ];
        for (field, value) in weights {
            if !value.is_finite() || value < 0.0 {
                errors.push(field, format!("must be a non-negative number, got {value}"));
            }
        }
        if weights.iter().all(|(_, value)| *value <= 0.0) {
            errors.push("weights", "at least one component weight must be positive");
        }
        if config.required_per_kind == 0 {
            errors.push("required_per_kind", "must be at least 1");
        }
        errors
            .into_result()
            .map(|()| PowerConfidenceSettings(config))
    }

    pub fn config(&self) -> &PowerConfidenceConfig {
        &self.0
    }

    fn weight_of(&self, component: EvidenceComponent) -> f64 {
        match component {
            EvidenceComponent::Customer => self.0.customer_weight,
            EvidenceComponent::Employee => self.0.employee_weight,
            EvidenceComponent::Demo => self.0.demo_weight,
            EvidenceComponent::MessageConsistency => self.0.message_consistency_weight,
        }
    }
}

/// Computes the PowerConfidence at `now` from the valid items, or `None` when no component
/// with a positive weight has valid evidence (a partner without evidence has no score rather
/// than an invented one).
pub fn compute_power_confidence(
    items: &[EvidenceItem],
    now: DateTime<Utc>,
    settings: &PowerConfidenceSettings,
) -> Option<PowerConfidence> {
    let config = settings.config();
    let valid: Vec<&EvidenceItem> = items
        .iter()
        .filter(|item| item.invalid_reason(now, settings).is_none())
        .collect();
    let mut components: Vec<ComponentScore> = EvidenceComponent::ALL
        .iter()
        .filter(|component| settings.weight_of(**component) > 0.0)
        .filter_map(|component| {
            let observations: Vec<(f64, f64)> = valid
                .iter()
                .filter(|item| item.component == *component)
                .map(|item| {
                    let weight =
                        0.5_f64.powf(age_days(item.observed_at, now) / config.half_life_days);
                    (item.score, weight)
                })
                .collect();
            component_score(*component, &observations, config)
        })
        .collect();
    let total_weight: f64 = components
        .iter()
        .map(|component| settings.weight_of(component.component))
        .sum();
    if components.is_empty() || total_weight <= 0.0 {
        return None;
    }
    let mut score = 0.0;
    let mut variance = 0.0;
    for component in &mut components {
        component.weight_used = settings.weight_of(component.component) / total_weight;
        score += component.weight_used * component.score;
        variance += (component.weight_used * component.standard_error).powi(2);
    }
    let standard_error = variance.sqrt();
    let (band_low, band_high) = band(score, standard_error, config.band_z);
    Some(PowerConfidence {
        score,
        band_low,
        band_high,
        standard_error,
        n_valid_items: components.iter().map(|c| c.n_items).sum(),
        components,
    })
}

/// The 15-point verification status at `now`. Message-consistency analyses are not part of it.
pub fn verification_status(
    items: &[EvidenceItem],
    now: DateTime<Utc>,
    settings: &PowerConfidenceSettings,
) -> VerificationStatus {
    let required = settings.config().required_per_kind;
    let count = |component: EvidenceComponent| {
        let mut valid = 0;
        let mut invalid_items = Vec::new();
        for item in items.iter().filter(|item| item.component == component) {
            match item.invalid_reason(now, settings) {
                None => valid += 1,
                Some(reason) => invalid_items.push(InvalidEvidence {
                    id: item.id.clone(),
                    reason,
                }),
            }
        }
        VerificationCount {
            valid,
            required,
            counted: valid.min(required),
            invalid: invalid_items,
        }
    };
    let employees = count(EvidenceComponent::Employee);
    let customers = count(EvidenceComponent::Customer);
    let demos = count(EvidenceComponent::Demo);
    let mut missing = Vec::new();
    for (count, singular, plural) in [
        (&employees, "employee feedback", "employee feedbacks"),
        (&customers, "customer reference", "customer references"),
        (&demos, "demo analysis", "demo analyses"),
    ] {
        let n_missing = count.required - count.counted;
        match n_missing {
            0 => {}
            1 => missing.push(format!("1 more {singular}")),
            n => missing.push(format!("{n} more {plural}")),
        }
    }
    let points = employees.counted + customers.counted + demos.counted;
    VerificationStatus {
        max_points: 3 * required,
        complete: missing.is_empty(),
        points,
        employees,
        customers,
        demos,
        missing,
    }
}

/// The PowerConfidence as of the end of each quarter from `first` to `last` inclusive, each
/// computed only from the evidence recorded by then (and still valid then).
pub fn quarterly_history(
    items: &[EvidenceItem],
    first: Quarter,
    last: Quarter,
    settings: &PowerConfidenceSettings,
) -> Vec<QuarterScore> {
    let mut history = Vec::new();
    let mut quarter = first;
    while quarter <= last {
        history.push(QuarterScore {
            quarter,
            power_confidence: compute_power_confidence(items, quarter.last_instant(), settings),
        });
        quarter = quarter.next();
    }
    history
}

/// Momentum over the last three quarters of `history`: the least-squares slope through their
/// scores at x = 0, 1, 2, which is `(s₃ − s₁) / 2` points per quarter; rising when the slope is
/// at least the threshold (2.5 points per quarter by default), falling when at most minus it,
/// steady otherwise. Fewer than three quarters, or a quarter without a score, is insufficient.
pub fn momentum(history: &[QuarterScore], settings: &PowerConfidenceSettings) -> MomentumReport {
    let insufficient = MomentumReport {
        momentum: Momentum::Insufficient,
        slope_per_quarter: None,
    };
    let Some(last_three) = history.len().checked_sub(3).map(|start| &history[start..]) else {
        return insufficient;
    };
    let scores: Option<Vec<f64>> = last_three
        .iter()
        .map(|entry| entry.power_confidence.as_ref().map(|pc| pc.score))
        .collect();
    let Some(scores) = scores else {
        return insufficient;
    };
    let slope = (scores[2] - scores[0]) / 2.0;
    let threshold = settings.config().momentum_threshold_per_quarter;
    let momentum = if slope >= threshold {
        Momentum::Rising
    } else if slope <= -threshold {
        Momentum::Falling
    } else {
        Momentum::Steady
    };
    MomentumReport {
        momentum,
        slope_per_quarter: Some(slope),
    }
}

/// Compares a score with the mean of its peers' scores; `None` without peers.
pub fn peer_comparison(score: f64, peer_scores: &[f64]) -> Option<PeerComparison> {
    if peer_scores.is_empty() {
        return None;
    }
    let peer_average = peer_scores.iter().sum::<f64>() / peer_scores.len() as f64;
    Some(PeerComparison {
        peer_average,
        n_peers: peer_scores.len(),
        variance: score - peer_average,
    })
}

/// The partner's peers: the other partners that serve at least one of its revenue tiers.
pub fn peers_serving_same_tiers<'a>(
    partner: &PartnerProfile,
    partners: &'a [PartnerProfile],
) -> Vec<&'a PartnerId> {
    partners
        .iter()
        .filter(|other| other.id != partner.id)
        .filter(|other| {
            other
                .revenue_tiers_served
                .iter()
                .any(|tier| partner.revenue_tiers_served.contains(tier))
        })
        .map(|other| &other.id)
        .collect()
}

impl Quarter {
    pub fn new(year: i32, number: u8) -> Result<Quarter, InvalidValue> {
        if !(1..=4).contains(&number) {
            return Err(invalid(format!("a quarter is 1 to 4, got {number}")));
        }
        if !(1970..=9999).contains(&year) {
            return Err(invalid(format!("the year {year} is out of range")));
        }
        Ok(Quarter { year, number })
    }

    /// Parses `2025-Q3` (case-insensitive).
    pub fn parse(raw: &str) -> Result<Quarter, InvalidValue> {
        let bad = || invalid(format!("'{raw}' is not a quarter like 2025-Q3"));
        let upper = raw.trim().to_ascii_uppercase();
        let (year, number) = upper.split_once("-Q").ok_or_else(bad)?;
        let year: i32 = year.parse().map_err(|_| bad())?;
        let number: u8 = number.parse().map_err(|_| bad())?;
        Quarter::new(year, number)
    }

    /// The quarter containing `instant`.
    pub fn containing(instant: DateTime<Utc>) -> Quarter {
        Quarter {
            year: instant.year(),
            // month0 is 0..=11, so the quotient is 0..=3 and fits a u8.
            number: (instant.month0() / 3) as u8 + 1,
        }
    }

    pub fn year(self) -> i32 {
        self.year
    }

    pub fn number(self) -> u8 {
        self.number
    }

    pub fn next(self) -> Quarter {
        if self.number == 4 {
            Quarter {
                year: self.year + 1,
                number: 1,
            }
        } else {
            Quarter {
                year: self.year,
                number: self.number + 1,
            }
        }
    }

    pub fn previous(self) -> Quarter {
        if self.number == 1 {
            Quarter {
                year: self.year - 1,
                number: 4,
            }
        } else {
            Quarter {
                year: self.year,
                number: self.number - 1,
            }
        }
    }

    /// Midnight UTC on the quarter's first day.
    pub fn start(self) -> DateTime<Utc> {
        let month = u32::from(self.number - 1) * 3 + 1;
        // Every quarter of a year in 1970..=10000 starts on a valid date; the fallback is unreachable.
        Utc.with_ymd_and_hms(self.year, month, 1, 0, 0, 0)
            .single()
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    /// The last nanosecond of the quarter: evidence recorded at or before it belongs to it.
    pub fn last_instant(self) -> DateTime<Utc> {
        self.next().start() - Duration::nanoseconds(1)
    }
}

impl std::fmt::Display for Quarter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-Q{}", self.year, self.number)
    }
}

/// A component's recency-weighted mean and standard error from `(score, weight)` pairs.
fn component_score(
    component: EvidenceComponent,
    observations: &[(f64, f64)],
    config: &PowerConfidenceConfig,
) -> Option<ComponentScore> {
    let sum_w: f64 = observations.iter().map(|(_, w)| w).sum();
    if observations.is_empty() || sum_w <= 0.0 {
        return None;
    }
    let sum_w2: f64 = observations.iter().map(|(_, w)| w * w).sum();
    let mean = observations.iter().map(|(x, w)| w * x).sum::<f64>() / sum_w;
    let effective_n = sum_w * sum_w / sum_w2;
    let weighted_squares: f64 = observations
        .iter()
        .map(|(x, w)| w * (x - mean).powi(2))
        .sum();
    // (n_eff − 1)·s² with s² = Σw(x − m)² / (Σw − Σw²/Σw) simplifies to Σw(x − m)²·n_eff/Σw,
    // which stays defined (0) when n_eff = 1.
    let degrees_of_freedom = effective_n - 1.0;
    let scaled_sample_variance = weighted_squares * effective_n / sum_w;
    let variance = (config.prior_strength * config.prior_sd.powi(2) + scaled_sample_variance)
        / (config.prior_strength + degrees_of_freedom);
    let standard_error = variance.sqrt() / effective_n.sqrt();
    let (band_low, band_high) = band(mean, standard_error, config.band_z);
    Some(ComponentScore {
        component,
        score: mean,
        n_items: observations.len(),
        effective_n,
        standard_error,
        band_low,
        band_high,
        weight_used: 0.0,
    })
}

fn band(score: f64, standard_error: f64, z: f64) -> (f64, f64) {
    let half_width = z * standard_error;
    (
        (score - half_width).clamp(0.0, 100.0),
        (score + half_width).clamp(0.0, 100.0),
    )
}

/// Days from `then` to `now`, fractional, never negative.
fn age_days(then: DateTime<Utc>, now: DateTime<Utc>) -> f64 {
    let seconds = (now - then).num_seconds().max(0);
    seconds as f64 / 86_400.0
}

fn invalid(reason: impl Into<String>) -> InvalidValue {
    InvalidValue::new(reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EPS: f64 = 1e-6;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 6, 30, 12, 0, 0).unwrap()
    }

    fn days_ago(days: i64) -> DateTime<Utc> {
        now() - Duration::days(days)
    }

    fn item(id: &str, component: EvidenceComponent, score: f64, at: DateTime<Utc>) -> EvidenceItem {
        EvidenceItem::from_score(id, component, score, at).unwrap()
    }

    fn ratings(values: &[i64]) -> Vec<Rating> {
        values.iter().map(|v| Rating::new(*v).unwrap()).collect()
    }

    #[test]
    fn one_response_gets_the_prior_band() {
        // One customer: ratings 8, 8, 8 → score 80. n_eff = 1, so sd = σ₀ = 20, se = 20,
        // half-width 1.96·20 = 39.2: band [40.8, 119.2] clamped to [40.8, 100].
        let customer = EvidenceItem::from_ratings(
            "r1",
            EvidenceComponent::Customer,
            &ratings(&[8, 8, 8]),
            now(),
        )
        .unwrap();
        let pc = compute_power_confidence(&[customer], now(), &PowerConfidenceSettings::default())
            .unwrap();
        assert!((pc.score - 80.0).abs() < EPS);
        assert!((pc.standard_error - 20.0).abs() < EPS);
        assert!((pc.band_low - 40.8).abs() < EPS);
        assert_eq!(pc.band_high, 100.0);
        assert_eq!(pc.components.len(), 1);
        assert!((pc.components[0].weight_used - 1.0).abs() < EPS);
    }

    #[test]
    fn three_fresh_responses_by_hand() {
        // Scores 80, 90, 100, all today (w = 1): m = 90, n_eff = 3,
        // s² = (100 + 0 + 100) / 2 = 100, sd² = (1·400 + 2·100) / (1 + 2) = 200,
        // se = √200 / √3 = 8.164966, half-width 1.96·se = 16.003333: band [73.996667, 100].
        let items: Vec<EvidenceItem> = [80.0, 90.0, 100.0]
            .iter()
            .enumerate()
            .map(|(i, x)| item(&format!("c{i}"), EvidenceComponent::Customer, *x, now()))
            .collect();
        let pc =
            compute_power_confidence(&items, now(), &PowerConfidenceSettings::default()).unwrap();
        assert!((pc.score - 90.0).abs() < EPS);
        assert!((pc.components[0].effective_n - 3.0).abs() < EPS);
        assert!((pc.standard_error - 8.164_966).abs() < EPS);
        assert!((pc.band_low - 73.996_667).abs() < EPS, "{}", pc.band_low);
        assert_eq!(pc.band_high, 100.0);
    }

    #[test]
    fn old_evidence_counts_less_by_half_life() {
        // 100 today (w = 1) and 40 from 180 days ago (w = 0.5): Σw = 1.5, m = 120 / 1.5 = 80;
        // Σw² = 1.25, n_eff = 2.25 / 1.25 = 1.8; Σw(x − m)² = 400 + 800 = 1200;
        // (n_eff − 1)s² = 1200·1.8 / 1.5 = 1440; sd² = (400 + 1440) / 1.8 = 1022.2222;
        // se = √(1022.2222 / 1.8) = 23.830678; band 80 ± 46.708130 → [33.291870, 100].
        let items = [
            item("new", EvidenceComponent::Employee, 100.0, now()),
            item("old", EvidenceComponent::Employee, 40.0, days_ago(180)),
        ];
        let pc =
            compute_power_confidence(&items, now(), &PowerConfidenceSettings::default()).unwrap();
        assert!((pc.score - 80.0).abs() < EPS, "{}", pc.score);
        assert!((pc.components[0].effective_n - 1.8).abs() < EPS);
        assert!(
            (pc.standard_error - 23.830_678).abs() < EPS,
            "{}",
            pc.standard_error
        );
        assert!((pc.band_low - 33.291_870).abs() < EPS, "{}", pc.band_low);
    }

    #[test]
    fn components_combine_with_renormalised_weights() {
        // Customers 80, 90, 100 today: m = 90, se² = 200 / 3. One employee 60: se² = 400.
        // No demo or consistency evidence, so W = 0.35 + 0.25 = 0.6:
        // S = (0.35·90 + 0.25·60) / 0.6 = 77.5;
        // SE² = (0.35/0.6)²·66.6667 + (0.25/0.6)²·400 = 22.685185 + 69.444444 = 92.129630,
        // SE = 9.598418, band 77.5 ± 18.812899 = [58.687101, 96.312899].
        let mut items: Vec<EvidenceItem> = [80.0, 90.0, 100.0]
            .iter()
            .enumerate()
            .map(|(i, x)| item(&format!("c{i}"), EvidenceComponent::Customer, *x, now()))
            .collect();
        items.push(item("e1", EvidenceComponent::Employee, 60.0, now()));
        let pc =
            compute_power_confidence(&items, now(), &PowerConfidenceSettings::default()).unwrap();
        assert!((pc.score - 77.5).abs() < EPS);
        assert!(
            (pc.standard_error - 9.598_418).abs() < EPS,
            "{}",
            pc.standard_error
        );
        assert!((pc.band_low - 58.687_101).abs() < EPS, "{}", pc.band_low);
        assert!((pc.band_high - 96.312_899).abs() < EPS, "{}", pc.band_high);
        let weights: Vec<f64> = pc.components.iter().map(|c| c.weight_used).collect();
        assert!((weights[0] - 0.35 / 0.6).abs() < EPS && (weights[1] - 0.25 / 0.6).abs() < EPS);
    }

    #[test]
    fn more_evidence_narrows_the_band() {
        let settings = PowerConfidenceSettings::default();
        let width = |n: usize| {
            let items: Vec<EvidenceItem> = (0..n)
                .map(|i| {
                    let x = if i % 2 == 0 { 70.0 } else { 90.0 };
                    item(&format!("c{i}"), EvidenceComponent::Customer, x, now())
                })
                .collect();
            let pc = compute_power_confidence(&items, now(), &settings).unwrap();
            pc.band_high - pc.band_low
        };
        assert!(width(2) > width(6));
        assert!(width(6) > width(20));
    }

    #[test]
    fn no_valid_evidence_means_no_score() {
        let settings = PowerConfidenceSettings::default();
        assert_eq!(compute_power_confidence(&[], now(), &settings), None);
        let items = [
            item("stale", EvidenceComponent::Customer, 90.0, days_ago(731)),
            item("fake", EvidenceComponent::Customer, 90.0, now()).rejected("duplicate respondent"),
            item(
                "future",
                EvidenceComponent::Customer,
                90.0,
                now() + Duration::days(1),
            ),
        ];
        assert_eq!(compute_power_confidence(&items, now(), &settings), None);
    }

    #[test]
    fn verification_counts_valid_items_and_names_what_is_missing() {
        let settings = PowerConfidenceSettings::default();
        let mut items: Vec<EvidenceItem> = (0..6)
            .map(|i| {
                item(
                    &format!("e{i}"),
                    EvidenceComponent::Employee,
                    70.0,
                    days_ago(10),
                )
            })
            .collect();
        items.push(item("c1", EvidenceComponent::Customer, 80.0, days_ago(5)));
        items.push(item("c2", EvidenceComponent::Customer, 80.0, days_ago(800)));
        items.push(item("c3", EvidenceComponent::Customer, 80.0, now()).rejected("not a customer"));
        items.push(item("d1", EvidenceComponent::Demo, 65.0, days_ago(3)));
        items.push(item("d2", EvidenceComponent::Demo, 75.0, days_ago(3)));
        items.push(item("d3", EvidenceComponent::Demo, 85.0, days_ago(3)));
        items.push(item("d4", EvidenceComponent::Demo, 85.0, days_ago(3)));
        items.push(item(
            "m1",
            EvidenceComponent::MessageConsistency,
            60.0,
            now(),
        ));
        let status = verification_status(&items, now(), &settings);
        assert_eq!((status.employees.valid, status.employees.counted), (6, 5));
        assert_eq!(status.customers.valid, 1);
        assert_eq!(status.demos.counted, 4);
        // 5 employees (capped) + 1 customer + 4 demos.
        assert_eq!(status.points, 10);
        assert_eq!(status.max_points, 15);
        assert!(!status.complete);
        assert_eq!(
            status.missing,
            vec!["4 more customer references", "1 more demo analysis"]
        );
        assert_eq!(
            status.customers.invalid,
            vec![
                InvalidEvidence {
                    id: "c2".into(),
                    reason: "older than 730 days".into()
                },
                InvalidEvidence {
                    id: "c3".into(),
                    reason: "rejected: not a customer".into()
                },
            ]
        );
    }

    #[test]
    fn quarters_parse_and_step() {
        let q = Quarter::parse("2024-q4").unwrap();
        assert_eq!(q.next().to_string(), "2025-Q1");
        assert_eq!(q.next().previous(), q);
        assert_eq!(Quarter::containing(now()).to_string(), "2025-Q2");
        assert_eq!(
            q.start(),
            Utc.with_ymd_and_hms(2024, 10, 1, 0, 0, 0).unwrap()
        );
        assert!(q.last_instant() < q.next().start());
        assert!(Quarter::parse("2024-Q5").is_err());
        assert!(Quarter::parse("Q1-2024").is_err());
    }

    fn quarter_item(id: &str, score: f64, quarter: &str) -> EvidenceItem {
        let start = Quarter::parse(quarter).unwrap().start();
        item(
            id,
            EvidenceComponent::Customer,
            score,
            start + Duration::days(10),
        )
    }

    #[test]
    fn history_uses_only_evidence_recorded_by_each_quarter_end() {
        let items = [
            quarter_item("a", 60.0, "2024-Q3"),
            quarter_item("b", 90.0, "2025-Q1"),
        ];
        let history = quarterly_history(
            &items,
            Quarter::parse("2024-Q2").unwrap(),
            Quarter::parse("2025-Q1").unwrap(),
            &PowerConfidenceSettings::default(),
        );
        let labels: Vec<String> = history.iter().map(|h| h.quarter.to_string()).collect();
        assert_eq!(labels, vec!["2024-Q2", "2024-Q3", "2024-Q4", "2025-Q1"]);
        assert_eq!(history[0].power_confidence, None);
        let q3 = history[1].power_confidence.as_ref().unwrap();
        assert!((q3.score - 60.0).abs() < EPS);
        // At the end of 2025-Q1 (midnight of 1 April) item a (11 July) is 264 days old and
        // item b (11 January) 80 days old: w_a = 0.5^(264/180) = 0.361817,
        // w_b = 0.5^(80/180) = 0.734867; S = (0.361817·60 + 0.734867·90) / 1.096684 = 80.102424.
        let q1 = history[3].power_confidence.as_ref().unwrap();
        let (wa, wb) = (0.5_f64.powf(264.0 / 180.0), 0.5_f64.powf(80.0 / 180.0));
        let expected = (wa * 60.0 + wb * 90.0) / (wa + wb);
        // The quarter ends a nanosecond before midnight, so ages fall short of whole days by 1 s.
        assert!(
            (q1.score - expected).abs() < 1e-3,
            "{} vs {expected}",
            q1.score
        );
        assert!((expected - 80.102_424).abs() < 1e-6);
    }

    fn scored(scores: &[Option<f64>]) -> Vec<QuarterScore> {
        let mut quarter = Quarter::parse("2024-Q1").unwrap();
        scores
            .iter()
            .map(|score| {
                let entry = QuarterScore {
                    quarter,
                    power_confidence: score.map(|s| PowerConfidence {
                        score: s,
                        band_low: s,
                        band_high: s,
                        standard_error: 0.0,
                        components: Vec::new(),
                        n_valid_items: 1,
                    }),
                };
                quarter = quarter.next();
                entry
            })
            .collect()
    }

    #[test]
    fn momentum_uses_the_slope_of_the_last_three_quarters() {
        let settings = PowerConfidenceSettings::default();
        // Slope (s₃ − s₁) / 2 over the last three: (76 − 70) / 2 = 3 ≥ 2.5.
        let rising = momentum(
            &scored(&[Some(90.0), Some(70.0), Some(60.0), Some(76.0)]),
            &settings,
        );
        assert_eq!(rising.momentum, Momentum::Rising);
        assert_eq!(rising.slope_per_quarter, Some((76.0 - 70.0) / 2.0));
        // (75 − 80) / 2 = −2.5 ≤ −2.5.
        let falling = momentum(&scored(&[Some(80.0), Some(90.0), Some(75.0)]), &settings);
        assert_eq!(falling.momentum, Momentum::Falling);
        // (84 − 80) / 2 = 2 < 2.5.
        let steady = momentum(&scored(&[Some(80.0), Some(60.0), Some(84.0)]), &settings);
        assert_eq!(steady.momentum, Momentum::Steady);
        let gap = momentum(&scored(&[Some(80.0), None, Some(84.0)]), &settings);
        assert_eq!(gap.momentum, Momentum::Insufficient);
        assert_eq!(
            momentum(&scored(&[Some(1.0), Some(2.0)]), &settings).momentum,
            Momentum::Insufficient
        );
    }

    #[test]
    fn peer_comparison_is_the_signed_difference_from_the_mean() {
        let comparison = peer_comparison(82.0, &[70.0, 80.0, 75.0]).unwrap();
        assert!((comparison.peer_average - 75.0).abs() < EPS);
        assert!((comparison.variance - 7.0).abs() < EPS);
        assert_eq!(comparison.n_peers, 3);
        assert_eq!(peer_comparison(82.0, &[]), None);
    }

    #[test]
    fn peers_share_a_revenue_tier() {
        use crate::profile::{PartnerProfileInput, Power100Catalogue};
        let partner = |id: &str, tiers: &[&str]| {
            PartnerProfile::parse(
                &PartnerProfileInput {
                    id: id.into(),
                    company_name: id.into(),
                    revenue_tiers_served: tiers.iter().map(|t| t.to_string()).collect(),
                    ..PartnerProfileInput::default()
                },
                &Power100Catalogue::default(),
            )
            .unwrap()
        };
        let all = vec![
            partner("me", &["5_10_million", "10_25_million"]),
            partner("overlap", &["10_25_million"]),
            partner("apart", &["100_plus_million"]),
        ];
        let peers: Vec<&str> = peers_serving_same_tiers(&all[0], &all)
            .iter()
            .map(|id| id.as_str())
            .collect();
        assert_eq!(peers, vec!["overlap"]);
    }

    #[test]
    fn settings_and_inputs_are_checked() {
        assert_eq!(
            PowerConfidenceSettings::new(PowerConfidenceConfig::default()).unwrap(),
            PowerConfidenceSettings::default()
        );
        assert!(Rating::new(11).is_err());
        assert!(Rating::new(-1).is_err());
        assert!(EvidenceItem::from_score("x", EvidenceComponent::Demo, 101.0, now()).is_err());
        assert!(EvidenceItem::from_ratings("x", EvidenceComponent::Demo, &[], now()).is_err());
        let config = PowerConfidenceConfig {
            half_life_days: 0.0,
            customer_weight: -1.0,
            required_per_kind: 0,
            ..PowerConfidenceConfig::default()
        };
        let fields: Vec<String> = PowerConfidenceSettings::new(config)
            .unwrap_err()
            .errors()
            .iter()
            .map(|e| e.field.clone())
            .collect();
        assert_eq!(
            fields,
            vec!["half_life_days", "customer_weight", "required_per_kind"]
        );
    }
}
