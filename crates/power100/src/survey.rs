//! Survey links and survey responses: the employee-feedback and customer-reference evidence of
//! the 15-point verification, collected without an account.
//!
//! A link carries a [`SurveyToken`]: 32 random bytes from the operating system's generator,
//! base64url without padding (43 characters, 256 bits: unguessable). Only its SHA-256 hash is
//! stored in the [`SurveyLink`], so a leaked database reveals no live link. A presented token is
//! hashed and compared with the stored hash in constant time; [`verify`] then rejects a link of
//! another partner, a used link and an expired one. The store must mark a link used atomically
//! (`UPDATE … SET used_at = ? WHERE token_hash = ? AND used_at IS NULL`) so two concurrent
//! submissions cannot both succeed; [`redeem`] computes the record it should write.

use std::collections::BTreeMap;
use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use flywheel_core::ValidationErrors;
use rand::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::powerconfidence::{EvidenceComponent, EvidenceItem, Rating};
use crate::profile::{InvalidValue, NonEmptyText, PartnerId, RevenueTier, RevenueTierScale};

/// Random bytes in a survey token.
pub const SURVEY_TOKEN_BYTES: usize = 32;

/// The questions employees rate 0–10, in display order.
pub const EMPLOYEE_QUESTIONS: [&str; 5] = [
    "satisfaction",
    "recommendation",
    "culture",
    "leadership",
    "growth",
];

/// The questions customers rate 0–10, in display order.
pub const CUSTOMER_QUESTIONS: [&str; 3] = ["satisfaction", "recommendation", "results"];

/// The shortest and longest life a survey link may be given.
pub const MIN_LINK_TTL_HOURS: i64 = 1;
pub const MAX_LINK_TTL_DAYS: i64 = 90;

const MAX_FREE_TEXT_CHARS: usize = 5_000;
const MAX_ROLE_CHARS: usize = 200;

/// The secret part of a survey link. Shown once, when the link is created; its `Debug` output
/// is redacted so it never reaches a log.
#[derive(Clone, PartialEq, Eq)]
pub struct SurveyToken(String);

/// A token as presented in a URL, checked for shape (43 base64url characters, 32 bytes) but not
/// yet matched to a link.
#[derive(Clone, PartialEq, Eq)]
pub struct PresentedSurveyToken([u8; SURVEY_TOKEN_BYTES]);

/// The SHA-256 hash of a token: what the store keeps and looks links up by.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SurveyTokenHash([u8; 32]);

/// Who a survey is for; it decides the questions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SurveyAudience {
    Employee,
    Customer,
}

/// A survey link as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SurveyLink {
    pub partner_id: PartnerId,
    pub audience: SurveyAudience,
    pub token_hash: SurveyTokenHash,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
}

/// Why a presented token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SurveyLinkError {
    #[error("the survey link is malformed")]
    Malformed,
    /// No link has this token: it was never issued or was altered.
    #[error("the survey link is not valid")]
    Unknown,
    #[error("the survey link belongs to another partner")]
    WrongPartner,
    #[error("the survey link has already been used")]
    AlreadyUsed,
    #[error("the survey link has expired")]
    Expired,
}

/// Raw survey answers as they arrive.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SurveyResponseInput {
    /// Question → 0–10 rating; every question of the audience must be answered.
    pub ratings: BTreeMap<String, i64>,
    pub free_text: Option<String>,
    /// The respondent's role ("project manager", "owner").
    pub respondent_role: Option<String>,
    /// Customers only: their company's revenue tier.
    pub respondent_revenue_tier: Option<String>,
}

/// A validated survey response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SurveyResponse {
    audience: SurveyAudience,
    /// One rating per question of the audience, in question order.
    ratings: Vec<(&'static str, Rating)>,
    pub free_text: Option<NonEmptyText>,
    pub respondent_role: Option<NonEmptyText>,
    pub respondent_revenue_tier: Option<RevenueTier>,
}

impl SurveyToken {
    /// A fresh token from the operating system's random number generator.
    pub fn generate() -> SurveyToken {
        SurveyToken::generate_with(&mut rand::rngs::OsRng)
    }

    /// A fresh token from `rng`, which must be a cryptographic generator.
    pub fn generate_with<R: RngCore + CryptoRng>(rng: &mut R) -> SurveyToken {
        let mut bytes = [0_u8; SURVEY_TOKEN_BYTES];
        rng.fill_bytes(&mut bytes);
        SurveyToken(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// The token's text, to put in the link sent to the respondent.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> SurveyTokenHash {
        SurveyTokenHash(Sha256::digest(self.0.as_bytes()).into())
    }
}

impl fmt::Debug for SurveyToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SurveyToken(<redacted>)")
    }
}

impl PresentedSurveyToken {
    /// Accepts exactly the shape [`SurveyToken`] produces.
    pub fn parse(raw: &str) -> Result<PresentedSurveyToken, SurveyLinkError> {
        let raw = raw.trim();
        let bytes = URL_SAFE_NO_PAD
            .decode(raw)
            .map_err(|_| SurveyLinkError::Malformed)?;
        let bytes: [u8; SURVEY_TOKEN_BYTES] =
            bytes.try_into().map_err(|_| SurveyLinkError::Malformed)?;
        Ok(PresentedSurveyToken(bytes))
    }

    /// The hash of the canonical text of the token, equal to [`SurveyToken::hash`] of the
    /// token it came from.
    pub fn hash(&self) -> SurveyTokenHash {
        SurveyTokenHash(Sha256::digest(URL_SAFE_NO_PAD.encode(self.0).as_bytes()).into())
    }
}

impl fmt::Debug for PresentedSurveyToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PresentedSurveyToken(<redacted>)")
    }
}

impl SurveyTokenHash {
    /// Lower-case hex, for a database column.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn from_hex(raw: &str) -> Result<SurveyTokenHash, InvalidValue> {
        let invalid = || InvalidValue::new("a token hash is 64 hexadecimal characters");
        if raw.len() != 64 || !raw.is_ascii() {
            return Err(invalid());
        }
        let mut bytes = [0_u8; 32];
        for (idx, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&raw[2 * idx..2 * idx + 2], 16).map_err(|_| invalid())?;
        }
        Ok(SurveyTokenHash(bytes))
    }

    /// Compares in constant time, so response timing says nothing about how much matched.
    pub fn matches(&self, other: &SurveyTokenHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for SurveyTokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SurveyTokenHash({})", self.to_hex())
    }
}

impl SurveyAudience {
    pub fn parse(raw: &str) -> Result<SurveyAudience, InvalidValue> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "employee" => Ok(SurveyAudience::Employee),
            "customer" => Ok(SurveyAudience::Customer),
            other => Err(InvalidValue::new(format!(
                "unknown audience '{other}'; expected employee or customer"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SurveyAudience::Employee => "employee",
            SurveyAudience::Customer => "customer",
        }
    }

    pub fn questions(self) -> &'static [&'static str] {
        match self {
            SurveyAudience::Employee => &EMPLOYEE_QUESTIONS,
            SurveyAudience::Customer => &CUSTOMER_QUESTIONS,
        }
    }

    /// The PowerConfidence component this audience's responses feed.
    pub fn evidence_component(self) -> EvidenceComponent {
        match self {
            SurveyAudience::Employee => EvidenceComponent::Employee,
            SurveyAudience::Customer => EvidenceComponent::Customer,
        }
    }

    /// The interaction type a response is recorded as.
    pub fn interaction_type(self) -> &'static str {
        match self {
            SurveyAudience::Employee => "employee_feedback",
            SurveyAudience::Customer => "customer_reference",
        }
    }
}

impl SurveyLink {
    /// Creates a link for `partner_id` that lives for `ttl` (1 hour to 90 days) and returns it
    /// with its token, which exists nowhere else afterwards.
    pub fn issue(
        partner_id: PartnerId,
        audience: SurveyAudience,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<(SurveyToken, SurveyLink), InvalidValue> {
        if ttl < Duration::hours(MIN_LINK_TTL_HOURS) || ttl > Duration::days(MAX_LINK_TTL_DAYS) {
            return Err(InvalidValue::new(format!(
                "a survey link must live between {MIN_LINK_TTL_HOURS} hour and {MAX_LINK_TTL_DAYS} days"
            )));
        }
        let token = SurveyToken::generate();
        let link = SurveyLink {
            partner_id,
            audience,
            token_hash: token.hash(),
            created_at: now,
            expires_at: now + ttl,
            used_at: None,
        };
        Ok((token, link))
    }
}

/// Checks a presented token against the link the store found for it (or any link: a token
/// whose hash differs is refused as unknown) and against the partner the survey is for.
///
/// The checks run in this order: shape, hash (constant time), partner, use, expiry; a link
/// expires at `expires_at` exactly.
pub fn verify(
    presented: &str,
    link: &SurveyLink,
    partner_id: &PartnerId,
    now: DateTime<Utc>,
) -> Result<(), SurveyLinkError> {
    let presented = PresentedSurveyToken::parse(presented)?;
    if !presented.hash().matches(&link.token_hash) {
        return Err(SurveyLinkError::Unknown);
    }
    if link.partner_id != *partner_id {
        return Err(SurveyLinkError::WrongPartner);
    }
    if link.used_at.is_some() {
        return Err(SurveyLinkError::AlreadyUsed);
    }
    if now >= link.expires_at {
        return Err(SurveyLinkError::Expired);
    }
    Ok(())
}

/// Verifies the token and returns the link marked used at `now`, for the store to write
/// (conditionally on it still being unused).
pub fn redeem(
    presented: &str,
    link: &SurveyLink,
    partner_id: &PartnerId,
    now: DateTime<Utc>,
) -> Result<SurveyLink, SurveyLinkError> {
    verify(presented, link, partner_id, now)?;
    Ok(SurveyLink {
        used_at: Some(now),
        ..link.clone()
    })
}

impl SurveyResponse {
    /// Checks that every question of the audience is rated 0–10 and no other is, that texts
    /// fit, and that only customers give a revenue tier (from `tiers`).
    pub fn parse(
        audience: SurveyAudience,
        input: &SurveyResponseInput,
        tiers: &RevenueTierScale,
    ) -> Result<SurveyResponse, ValidationErrors> {
        let mut errors = ValidationErrors::new();
        let mut ratings = Vec::new();
        for question in audience.questions() {
            let field = format!("ratings.{question}");
            match input.ratings.get(*question) {
                None => errors.push(field, "is required"),
                Some(value) => {
                    if let Some(rating) = errors.check(&field, Rating::new(*value)) {
                        ratings.push((*question, rating));
                    }
                }
            }
        }
        for question in input.ratings.keys() {
            if !audience.questions().contains(&question.as_str()) {
                errors.push(
                    format!("ratings.{question}"),
                    format!(
                        "is not a {} question; expected: {}",
                        audience.as_str(),
                        audience.questions().join(", ")
                    ),
                );
            }
        }
        let free_text = optional_text(
            &mut errors,
            "free_text",
            &input.free_text,
            MAX_FREE_TEXT_CHARS,
        );
        let respondent_role = optional_text(
            &mut errors,
            "respondent_role",
            &input.respondent_role,
            MAX_ROLE_CHARS,
        );
        let respondent_revenue_tier = match (&input.respondent_revenue_tier, audience) {
            (None, _) => None,
            (Some(raw), _) if raw.trim().is_empty() => None,
            (Some(_), SurveyAudience::Employee) => {
                errors.push(
                    "respondent_revenue_tier",
                    "only customers give a revenue tier",
                );
                None
            }
            (Some(raw), SurveyAudience::Customer) => {
                errors.check("respondent_revenue_tier", tiers.parse(raw))
            }
        };
        errors.into_result()?;
        Ok(SurveyResponse {
            audience,
            ratings,
            free_text,
            respondent_role,
            respondent_revenue_tier,
        })
    }

    pub fn audience(&self) -> SurveyAudience {
        self.audience
    }

    pub fn ratings(&self) -> &[(&'static str, Rating)] {
        &self.ratings
    }

    /// The response as PowerConfidence evidence: mean rating × 10, for the audience's component.
    pub fn to_evidence(&self, id: impl Into<String>, observed_at: DateTime<Utc>) -> EvidenceItem {
        let sum: f64 = self.ratings.iter().map(|(_, r)| f64::from(r.value())).sum();
        // The parser stores one rating per question and every audience has questions, so the
        // count is never 0; `max(1)` keeps the division total anyway.
        let mean = sum / self.ratings.len().max(1) as f64;
        EvidenceItem::from_rating_mean(id, self.audience.evidence_component(), mean, observed_at)
    }
}

fn optional_text(
    errors: &mut ValidationErrors,
    field: &str,
    raw: &Option<String>,
    max_chars: usize,
) -> Option<NonEmptyText> {
    match raw.as_deref() {
        None => None,
        Some(text) if text.trim().is_empty() => None,
        Some(text) => errors.check(field, NonEmptyText::parse(text, max_chars)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 5, 1, 9, 0, 0).unwrap()
    }

    fn partner(raw: &str) -> PartnerId {
        PartnerId::parse(raw).unwrap()
    }

    fn issued() -> (SurveyToken, SurveyLink) {
        SurveyLink::issue(
            partner("acme"),
            SurveyAudience::Customer,
            now(),
            Duration::days(14),
        )
        .unwrap()
    }

    #[test]
    fn a_fresh_link_verifies_once() {
        let (token, link) = issued();
        assert_eq!(token.as_str().len(), 43);
        assert_eq!(
            verify(token.as_str(), &link, &partner("acme"), now()),
            Ok(())
        );
        let used = redeem(
            token.as_str(),
            &link,
            &partner("acme"),
            now() + Duration::hours(1),
        )
        .unwrap();
        assert_eq!(used.used_at, Some(now() + Duration::hours(1)));
        assert_eq!(
            redeem(
                token.as_str(),
                &used,
                &partner("acme"),
                now() + Duration::hours(2)
            ),
            Err(SurveyLinkError::AlreadyUsed)
        );
    }

    #[test]
    fn an_expired_link_is_refused() {
        let (token, link) = issued();
        let just_before = link.expires_at - Duration::seconds(1);
        assert_eq!(
            verify(token.as_str(), &link, &partner("acme"), just_before),
            Ok(())
        );
        assert_eq!(
            verify(token.as_str(), &link, &partner("acme"), link.expires_at),
            Err(SurveyLinkError::Expired)
        );
    }

    #[test]
    fn another_partners_link_is_refused() {
        let (token, link) = issued();
        assert_eq!(
            verify(token.as_str(), &link, &partner("rival"), now()),
            Err(SurveyLinkError::WrongPartner)
        );
    }

    #[test]
    fn tampered_and_malformed_tokens_are_refused() {
        let (token, link) = issued();
        let mut tampered: Vec<char> = token.as_str().chars().collect();
        tampered[0] = if tampered[0] == 'A' { 'B' } else { 'A' };
        let tampered: String = tampered.into_iter().collect();
        assert_eq!(
            verify(&tampered, &link, &partner("acme"), now()),
            Err(SurveyLinkError::Unknown)
        );
        let (other_token, _) = issued();
        assert_eq!(
            verify(other_token.as_str(), &link, &partner("acme"), now()),
            Err(SurveyLinkError::Unknown)
        );
        for malformed in [
            "",
            "short",
            &format!("{}=", token.as_str()),
            &"!".repeat(43),
        ] {
            assert_eq!(
                verify(malformed, &link, &partner("acme"), now()),
                Err(SurveyLinkError::Malformed),
                "{malformed}"
            );
        }
    }

    #[test]
    fn only_the_hash_is_stored_and_the_token_is_never_printed() {
        let (token, link) = issued();
        let hex = link.token_hash.to_hex();
        assert_eq!(hex.len(), 64);
        assert!(!hex.contains(token.as_str()));
        assert_eq!(SurveyTokenHash::from_hex(&hex).unwrap(), link.token_hash);
        assert!(SurveyTokenHash::from_hex("zz").is_err());
        assert!(!format!("{token:?} {link:?}").contains(token.as_str()));
        assert_eq!(
            PresentedSurveyToken::parse(token.as_str()).unwrap().hash(),
            token.hash()
        );
        assert_ne!(SurveyToken::generate(), SurveyToken::generate());
    }

    #[test]
    fn link_lifetimes_are_bounded() {
        let issue = |ttl| SurveyLink::issue(partner("acme"), SurveyAudience::Employee, now(), ttl);
        assert!(issue(Duration::minutes(59)).is_err());
        assert!(issue(Duration::days(91)).is_err());
        assert!(issue(Duration::days(90)).is_ok());
    }

    fn answers(pairs: &[(&str, i64)]) -> SurveyResponseInput {
        SurveyResponseInput {
            ratings: pairs.iter().map(|(q, v)| (q.to_string(), *v)).collect(),
            free_text: Some("  They respond within the hour. ".into()),
            respondent_role: Some("Owner".into()),
            respondent_revenue_tier: Some("5_10_million".into()),
        }
    }

    #[test]
    fn a_customer_response_parses_and_becomes_evidence() {
        let response = SurveyResponse::parse(
            SurveyAudience::Customer,
            &answers(&[("satisfaction", 9), ("recommendation", 10), ("results", 8)]),
            &RevenueTierScale::default(),
        )
        .unwrap();
        assert_eq!(
            response.free_text.as_ref().unwrap().as_str(),
            "They respond within the hour."
        );
        assert_eq!(
            response.respondent_revenue_tier.as_ref().unwrap().as_str(),
            "5_10_million"
        );
        // (9 + 10 + 8) / 3 × 10 = 90.
        let evidence = response.to_evidence("resp-1", now());
        assert!((evidence.score() - 90.0).abs() < 1e-9);
        assert_eq!(evidence.component(), EvidenceComponent::Customer);
        assert_eq!(
            SurveyAudience::Customer.interaction_type(),
            "customer_reference"
        );
    }

    #[test]
    fn response_errors_name_each_question() {
        let errors = SurveyResponse::parse(
            SurveyAudience::Employee,
            &answers(&[
                ("satisfaction", 11),
                ("culture", 5),
                ("leadership", 5),
                ("growth", 5),
                ("results", 3),
            ]),
            &RevenueTierScale::default(),
        )
        .unwrap_err();
        let fields: Vec<&str> = errors.errors().iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "ratings.satisfaction",
                "ratings.recommendation",
                "ratings.results",
                "respondent_revenue_tier"
            ]
        );
    }

    #[test]
    fn audiences_parse() {
        assert_eq!(
            SurveyAudience::parse(" Employee ").unwrap(),
            SurveyAudience::Employee
        );
        assert!(SurveyAudience::parse("vendor").is_err());
    }
}
