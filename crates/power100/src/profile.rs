//! Contractor and strategic-partner profiles, parsed from raw input into types that cannot hold
//! invalid values.
//!
//! Raw input arrives as `*Input` structs of plain strings (from JSON, CSV or the concierge); the
//! `parse` constructors check every field against the [`Power100Catalogue`] (focus areas and
//! revenue tiers are configurable lists) and either return a profile or every problem at once,
//! each under its field path (`focus_areas[1]`, `contacts.ceo.email`). Past this module a focus
//! area is always one the catalogue knows, a contractor always has one to three distinct focus
//! areas, and a revenue tier always knows its rank on the scale, which matching relies on.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use flywheel_core::ValidationErrors;

/// The focus areas a fresh installation offers, in the order the Power100 plans list them.
pub const DEFAULT_FOCUS_AREAS: [&str; 10] = [
    "closing_higher_percentage",
    "controlling_lead_flow",
    "operational_efficiency",
    "marketing_automation",
    "recession_proofing",
    "customer_retention",
    "hiring_and_team_building",
    "technology_adoption",
    "financial_management",
    "business_development",
];

/// The revenue tiers a fresh installation offers, from smallest to largest annual revenue.
pub const DEFAULT_REVENUE_TIERS: [&str; 6] = [
    "0_5_million",
    "5_10_million",
    "10_25_million",
    "25_50_million",
    "50_100_million",
    "100_plus_million",
];

/// How many focus areas a contractor may name: the first is primary, the rest rank below it.
pub const MAX_CONTRACTOR_FOCUS_AREAS: usize = 3;

const MAX_NAME_CHARS: usize = 200;
const MAX_SHORT_TEXT_CHARS: usize = 500;
const MAX_LONG_TEXT_CHARS: usize = 5_000;
const MAX_LIST_ITEMS: usize = 60;
const MAX_SLUG_CHARS: usize = 64;
const MAX_TEAM_SIZE: u32 = 1_000_000;

/// Why one value was rejected; the profile parser files it under the value's field path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(String);

impl InvalidValue {
    pub fn new(reason: impl Into<String>) -> InvalidValue {
        InvalidValue(reason.into())
    }
}

/// The configurable vocabularies a profile is checked against.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Power100Catalogue {
    pub focus_areas: FocusAreaCatalogue,
    pub revenue_tiers: RevenueTierScale,
}

/// The focus areas an installation offers, as slugs (`controlling_lead_flow`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FocusAreaCatalogue {
    slugs: Vec<String>,
}

/// A focus area the catalogue knows. Only [`FocusAreaCatalogue::parse`] makes one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FocusArea(String);

/// The revenue tiers an installation offers, ordered from smallest to largest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevenueTierScale {
    slugs: Vec<String>,
}

/// A revenue tier together with its rank on the scale it was parsed against, so the distance
/// between two tiers is a subtraction. Only [`RevenueTierScale::parse`] makes one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RevenueTier {
    rank: usize,
    slug: String,
}

/// A contractor's one to three distinct focus areas in the contractor's order; the first is
/// the primary one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FocusAreas(Vec<FocusArea>);

/// A profile identifier as the store assigns it (a UUID or a slug): 1–64 characters of ASCII
/// letters, digits, `-` and `_`, so it is safe in paths, logs and CSV files.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProfileId(String);

/// Partners and contractors share the identifier rules but never each other's values.
pub type PartnerId = ProfileId;
pub type ContractorId = ProfileId;

/// Trimmed text that is not empty and not longer than the limit it was parsed with.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NonEmptyText(String);

/// An e-mail address with one `@`, a non-empty local part and a dotted domain. Deliverability
/// is not checked here: that needs I/O.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Email(String);

/// A two-letter code of a US state or the District of Columbia, upper case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UsState(&'static str);

/// Where a business works: the whole country, one state, or a named region.
///
/// Named regions are normalised to lower case with single spaces. The four US Census regions
/// (`northeast`, `midwest`, `south`, `west`) are known to contain their states, so a partner
/// serving `midwest` serves a contractor in `IL`; any other region matches only by name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ServiceArea {
    National,
    State(UsState),
    Region(String),
}

/// A person to talk to at a company.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    pub name: NonEmptyText,
    pub email: Option<Email>,
    pub phone: Option<NonEmptyText>,
}

/// The partner's named contacts; each role is optional because small partners often have one
/// person in all three.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PartnerContacts {
    pub ceo: Option<Contact>,
    pub customer_experience: Option<Contact>,
    pub sales: Option<Contact>,
}

/// A validated contractor profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContractorProfile {
    pub id: ContractorId,
    pub company_name: NonEmptyText,
    pub contact: Contact,
    pub service_areas: Vec<ServiceArea>,
    pub focus_areas: FocusAreas,
    pub revenue_tier: Option<RevenueTier>,
    pub team_size: Option<u32>,
    /// Tool category (slug, e.g. `crm`) → tools in use, in the contractor's order.
    pub tech_stack: BTreeMap<String, Vec<NonEmptyText>>,
    /// Readiness indicator (slug, e.g. `ready_to_invest`) → whether it holds.
    pub readiness_indicators: BTreeMap<String, bool>,
    pub business_goals: Option<NonEmptyText>,
    pub challenges: Option<NonEmptyText>,
}

/// A validated strategic-partner profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartnerProfile {
    pub id: PartnerId,
    pub company_name: NonEmptyText,
    pub description: Option<NonEmptyText>,
    pub value_proposition: Option<NonEmptyText>,
    pub key_differentiators: Vec<NonEmptyText>,
    pub focus_areas_served: BTreeSet<FocusArea>,
    /// Ordered by rank, smallest tier first.
    pub revenue_tiers_served: BTreeSet<RevenueTier>,
    pub service_areas: Vec<ServiceArea>,
    pub contacts: PartnerContacts,
    /// A slug such as `standard` or `premium`; the list is the operator's business.
    pub engagement_tier: String,
    pub active: bool,
}

/// Raw contact fields as they arrive.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContactInput {
    pub name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
}

/// Raw contractor fields as they arrive.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContractorProfileInput {
    pub id: String,
    pub company_name: String,
    pub contact: ContactInput,
    pub service_areas: Vec<String>,
    pub focus_areas: Vec<String>,
    pub revenue_tier: Option<String>,
    pub team_size: Option<i64>,
    pub tech_stack: BTreeMap<String, Vec<String>>,
    pub readiness_indicators: BTreeMap<String, bool>,
    pub business_goals: Option<String>,
    pub challenges: Option<String>,
}

/// Raw partner contacts as they arrive.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PartnerContactsInput {
    pub ceo: Option<ContactInput>,
    pub customer_experience: Option<ContactInput>,
    pub sales: Option<ContactInput>,
}

/// Raw partner fields as they arrive.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PartnerProfileInput {
    pub id: String,
    pub company_name: String,
    pub description: Option<String>,
    pub value_proposition: Option<String>,
    pub key_differentiators: Vec<String>,
    pub focus_areas_served: Vec<String>,
    pub revenue_tiers_served: Vec<String>,
    pub service_areas: Vec<String>,
    pub contacts: PartnerContactsInput,
    /// Absent means `standard`.
    pub engagement_tier: Option<String>,
    pub active: bool,
}

impl FocusAreaCatalogue {
    /// Builds a catalogue from slugs; each must be a valid slug and appear once.
    pub fn new<I, S>(slugs: I) -> Result<FocusAreaCatalogue, ValidationErrors>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        parse_slug_list("focus_areas", slugs).map(|slugs| FocusAreaCatalogue { slugs })
    }

    /// Accepts a slug in any case, with spaces or hyphens for underscores
    /// (`Controlling Lead Flow` → `controlling_lead_flow`), as CSV files and people write it.
    pub fn parse(&self, raw: &str) -> Result<FocusArea, InvalidValue> {
        let slug = normalise_slug(raw);
        if self.slugs.contains(&slug) {
            Ok(FocusArea(slug))
        } else {
            Err(InvalidValue::new(format!(
                "unknown focus area '{}'; expected one of: {}",
                raw.trim(),
                self.slugs.join(", ")
            )))
        }
    }

    pub fn slugs(&self) -> impl Iterator<Item = &str> {
        self.slugs.iter().map(String::as_str)
    }
}

impl Default for FocusAreaCatalogue {
    fn default() -> FocusAreaCatalogue {
        FocusAreaCatalogue {
            slugs: DEFAULT_FOCUS_AREAS.iter().map(|s| s.to_string()).collect(),
        }
    }
}

impl FocusArea {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The slug as words (`controlling lead flow`), for reasons shown to people.
    pub fn label(&self) -> String {
        self.0.replace('_', " ")
    }
}

impl fmt::Display for FocusArea {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl RevenueTierScale {
    /// Builds a scale from slugs ordered smallest first; each must be a valid slug and appear once.
    pub fn new<I, S>(slugs: I) -> Result<RevenueTierScale, ValidationErrors>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        parse_slug_list("revenue_tiers", slugs).map(|slugs| RevenueTierScale { slugs })
    }

    /// Accepts a tier slug in any case, with spaces or hyphens for underscores.
    pub fn parse(&self, raw: &str) -> Result<RevenueTier, InvalidValue> {
        let slug = normalise_slug(raw);
        match self.slugs.iter().position(|known| *known == slug) {
            Some(rank) => Ok(RevenueTier { rank, slug }),
            None => Err(InvalidValue::new(format!(
                "unknown revenue tier '{}'; expected one of: {}",
                raw.trim(),
                self.slugs.join(", ")
            ))),
        }
    }

    pub fn slugs(&self) -> impl Iterator<Item = &str> {
        self.slugs.iter().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.slugs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slugs.is_empty()
    }
}

impl Default for RevenueTierScale {
    fn default() -> RevenueTierScale {
        RevenueTierScale {
            slugs: DEFAULT_REVENUE_TIERS
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }
}

impl RevenueTier {
    pub fn as_str(&self) -> &str {
        &self.slug
    }

    /// The position on the scale, 0 for the smallest tier.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// How many steps apart two tiers are on the scale (0 for the same tier).
    pub fn distance(&self, other: &RevenueTier) -> usize {
        self.rank.abs_diff(other.rank)
    }

    /// A label for people: `5_10_million` → `$5–10 million`, `100_plus_million` →
    /// `$100+ million`; other slugs become words.
    pub fn label(&self) -> String {
        let parts: Vec<&str> = self.slug.split('_').collect();
        let is_number = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
        match parts.as_slice() {
            [low, high, unit] if is_number(low) && is_number(high) => {
                format!("${low}–{high} {unit}")
            }
            [low, "plus", unit] if is_number(low) => format!("${low}+ {unit}"),
            _ => self.slug.replace('_', " "),
        }
    }
}

impl fmt::Display for RevenueTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.slug)
    }
}

impl FocusAreas {
    /// Parses one to three distinct focus areas, keeping the caller's order.
    pub fn parse(
        catalogue: &FocusAreaCatalogue,
        raw: &[String],
    ) -> Result<FocusAreas, ValidationErrors> {
        let mut errors = ValidationErrors::new();
        if raw.is_empty() || raw.len() > MAX_CONTRACTOR_FOCUS_AREAS {
            errors.push(
                "focus_areas",
                format!(
                    "must name 1 to {MAX_CONTRACTOR_FOCUS_AREAS} focus areas, got {}",
                    raw.len()
                ),
            );
            return Err(errors);
        }
        let mut areas: Vec<FocusArea> = Vec::with_capacity(raw.len());
        for (idx, item) in raw.iter().enumerate() {
            let field = format!("focus_areas[{idx}]");
            if let Some(area) = errors.check(&field, catalogue.parse(item)) {
                if areas.contains(&area) {
                    errors.push(field, format!("'{area}' is listed twice"));
                } else {
                    areas.push(area);
                }
            }
        }
        errors.into_result().map(|()| FocusAreas(areas))
    }

    /// The contractor's first focus area. A `FocusAreas` is never empty.
    pub fn primary(&self) -> &FocusArea {
        // The parser rejects an empty list, and no other constructor exists.
        &self.0[0]
    }

    pub fn as_slice(&self) -> &[FocusArea] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false; present because clippy expects it beside `len`.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl ProfileId {
    pub fn parse(raw: &str) -> Result<ProfileId, InvalidValue> {
        let raw = raw.trim();
        if raw.is_empty() || raw.len() > 64 {
            return Err(InvalidValue::new("must be 1 to 64 characters long"));
        }
        if !raw
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(InvalidValue::new(
                "may contain only ASCII letters, digits, '-' and '_'",
            ));
        }
        Ok(ProfileId(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProfileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl NonEmptyText {
    /// Trims `raw` and accepts it when it is not empty and at most `max_chars` characters long.
    pub fn parse(raw: &str, max_chars: usize) -> Result<NonEmptyText, InvalidValue> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(InvalidValue::new("must not be empty"));
        }
        let n_chars = trimmed.chars().count();
        if n_chars > max_chars {
            return Err(InvalidValue::new(format!(
                "must be at most {max_chars} characters, got {n_chars}"
            )));
        }
        Ok(NonEmptyText(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NonEmptyText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Email {
    pub fn parse(raw: &str) -> Result<Email, InvalidValue> {
        let raw = raw.trim();
        let invalid = || InvalidValue::new(format!("'{raw}' is not an e-mail address"));
        if raw.len() > 254 || raw.chars().any(char::is_whitespace) {
            return Err(invalid());
        }
        let (local, domain) = raw.split_once('@').ok_or_else(invalid)?;
        let domain_ok = domain.contains('.')
            && !domain.contains('@')
            && domain.split('.').all(|label| !label.is_empty());
        if local.is_empty() || !domain_ok {
            return Err(invalid());
        }
        Ok(Email(raw.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// US states and the District of Columbia.
const US_STATES: [&str; 51] = [
    "AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "DC", "FL", "GA", "HI", "ID", "IL", "IN", "IA",
    "KS", "KY", "LA", "ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH", "NJ", "NM",
    "NY", "NC", "ND", "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT", "VT", "VA", "WA",
    "WV", "WI", "WY",
];

/// The four US Census Bureau regions and their states (DC counts as South, as the Bureau has it).
const CENSUS_REGIONS: [(&str, &[&str]); 4] = [
    (
        "northeast",
        &["CT", "ME", "MA", "NH", "RI", "VT", "NJ", "NY", "PA"],
    ),
    (
        "midwest",
        &[
            "IL", "IN", "MI", "OH", "WI", "IA", "KS", "MN", "MO", "NE", "ND", "SD",
        ],
    ),
    (
        "south",
        &[
            "DE", "FL", "GA", "MD", "NC", "SC", "VA", "DC", "WV", "AL", "KY", "MS", "TN", "AR",
            "LA", "OK", "TX",
        ],
    ),
    (
        "west",
        &[
            "AZ", "CO", "ID", "MT", "NV", "NM", "UT", "WY", "AK", "CA", "HI", "OR", "WA",
        ],
    ),
];

/// Words that mean "the whole country" in service-area lists.
const NATIONAL_WORDS: [&str; 6] = [
    "national",
    "nationwide",
    "us",
    "usa",
    "united states",
    "all states",
];

impl UsState {
    pub fn parse(raw: &str) -> Result<UsState, InvalidValue> {
        let code = raw.trim().to_ascii_uppercase();
        US_STATES
            .iter()
            .find(|known| **known == code)
            .map(|known| UsState(known))
            .ok_or_else(|| InvalidValue::new(format!("'{}' is not a US state code", raw.trim())))
    }

    pub fn as_str(&self) -> &'static str {
        self.0
    }
}

impl ServiceArea {
    /// A two-letter string must be a state code; `national` and its synonyms mean the whole
    /// country; anything else is a named region of at most 100 characters.
    pub fn parse(raw: &str) -> Result<ServiceArea, InvalidValue> {
        let collapsed = raw.split_whitespace().collect::<Vec<_>>().join(" ");
        if collapsed.is_empty() {
            return Err(InvalidValue::new("must not be empty"));
        }
        let lower = collapsed.to_lowercase();
        if NATIONAL_WORDS.contains(&lower.as_str()) {
            return Ok(ServiceArea::National);
        }
        if collapsed.chars().count() == 2 {
            return UsState::parse(&collapsed).map(ServiceArea::State);
        }
        if collapsed.chars().count() > 100 {
            return Err(InvalidValue::new(
                "a region name must be at most 100 characters",
            ));
        }
        Ok(ServiceArea::Region(lower))
    }

    /// Whether a business working in `self` works in `area` too.
    pub fn covers(&self, area: &ServiceArea) -> bool {
        match (self, area) {
            (ServiceArea::National, _) => true,
            (ServiceArea::Region(region), ServiceArea::State(state)) => {
                census_region_states(region).is_some_and(|states| states.contains(&state.0))
            }
            (own, other) => own == other,
        }
    }

    /// A label for people: `national`, `TX`, `midwest`.
    pub fn label(&self) -> String {
        match self {
            ServiceArea::National => "national".to_owned(),
            ServiceArea::State(state) => state.as_str().to_owned(),
            ServiceArea::Region(region) => region.clone(),
        }
    }
}

/// Whether the areas a partner lists cover `area`: one listed area covers it, or, for a Census
/// region, the listed states cover every state in it.
pub fn areas_cover(areas: &[ServiceArea], area: &ServiceArea) -> bool {
    if areas.iter().any(|own| own.covers(area)) {
        return true;
    }
    match area {
        ServiceArea::Region(region) => census_region_states(region).is_some_and(|states| {
            states.iter().all(|state| {
                areas
                    .iter()
                    .any(|own| own.covers(&ServiceArea::State(UsState(state))))
            })
        }),
        _ => false,
    }
}

fn census_region_states(region: &str) -> Option<&'static [&'static str]> {
    CENSUS_REGIONS
        .iter()
        .find(|(name, _)| *name == region)
        .map(|(_, states)| *states)
}

impl Contact {
    pub fn parse(
        input: &ContactInput,
        field: &str,
        errors: &mut ValidationErrors,
    ) -> Option<Contact> {
        let name = errors.check(
            &format!("{field}.name"),
            NonEmptyText::parse(&input.name, MAX_NAME_CHARS),
        );
        let email = parse_optional(
            errors,
            &format!("{field}.email"),
            &input.email,
            Email::parse,
        );
        let phone = parse_optional(errors, &format!("{field}.phone"), &input.phone, |raw| {
            NonEmptyText::parse(raw, 40)
        });
        Some(Contact {
            name: name?,
            email: email?,
            phone: phone?,
        })
    }
}

impl ContractorProfile {
    /// Parses every field, collecting all problems under their field paths.
    pub fn parse(
        input: &ContractorProfileInput,
        catalogue: &Power100Catalogue,
    ) -> Result<ContractorProfile, ValidationErrors> {
        let mut errors = ValidationErrors::new();
        let id = errors.check("id", ProfileId::parse(&input.id));
        let company_name = errors.check(
            "company_name",
            NonEmptyText::parse(&input.company_name, MAX_NAME_CHARS),
        );
        let contact = Contact::parse(&input.contact, "contact", &mut errors);
        let service_areas = parse_service_areas(&mut errors, &input.service_areas);
        let focus_areas = match FocusAreas::parse(&catalogue.focus_areas, &input.focus_areas) {
            Ok(areas) => Some(areas),
            Err(focus_errors) => {
                for error in focus_errors.errors() {
                    errors.push(error.field.clone(), error.problem.clone());
                }
                None
            }
        };
        let revenue_tier =
            parse_optional(&mut errors, "revenue_tier", &input.revenue_tier, |raw| {
                catalogue.revenue_tiers.parse(raw)
            });
        let team_size = match input.team_size {
            None => Some(None),
            Some(n) if (1..=i64::from(MAX_TEAM_SIZE)).contains(&n) => Some(u32::try_from(n).ok()),
            Some(n) => {
                errors.push(
                    "team_size",
                    format!("must be between 1 and {MAX_TEAM_SIZE}, got {n}"),
                );
                None
            }
        };
        let tech_stack = parse_tech_stack(&mut errors, &input.tech_stack);
        let readiness_indicators = parse_slug_keys(
            &mut errors,
            "readiness_indicators",
            &input.readiness_indicators,
        );
        let business_goals = parse_optional(
            &mut errors,
            "business_goals",
            &input.business_goals,
            |raw| NonEmptyText::parse(raw, MAX_LONG_TEXT_CHARS),
        );
        let challenges = parse_optional(&mut errors, "challenges", &input.challenges, |raw| {
            NonEmptyText::parse(raw, MAX_LONG_TEXT_CHARS)
        });
        let (
            Some(id),
            Some(company_name),
            Some(contact),
            Some(service_areas),
            Some(focus_areas),
            Some(revenue_tier),
            Some(team_size),
            Some(tech_stack),
            Some(readiness_indicators),
            Some(business_goals),
            Some(challenges),
            true,
        ) = (
            id,
            company_name,
            contact,
            service_areas,
            focus_areas,
            revenue_tier,
            team_size,
            tech_stack,
            readiness_indicators,
            business_goals,
            challenges,
            errors.is_empty(),
        )
        else {
            return Err(errors);
        };
        Ok(ContractorProfile {
            id,
            company_name,
            contact,
            service_areas,
            focus_areas,
            revenue_tier,
            team_size,
            tech_stack,
            readiness_indicators,
            business_goals,
            challenges,
        })
    }

    /// The contractor's own words that semantic matching compares with a partner's offer: goals
    /// then challenges, or `None` when the contractor wrote neither.
    pub fn semantic_text(&self) -> Option<String> {
        join_texts([self.business_goals.as_ref(), self.challenges.as_ref()])
    }
}

impl PartnerProfile {
    /// Parses every field, collecting all problems under their field paths.
    pub fn parse(
        input: &PartnerProfileInput,
        catalogue: &Power100Catalogue,
    ) -> Result<PartnerProfile, ValidationErrors> {
        let mut errors = ValidationErrors::new();
        let id = errors.check("id", ProfileId::parse(&input.id));
        let company_name = errors.check(
            "company_name",
            NonEmptyText::parse(&input.company_name, MAX_NAME_CHARS),
        );
        let description = parse_optional(&mut errors, "description", &input.description, |raw| {
            NonEmptyText::parse(raw, MAX_LONG_TEXT_CHARS)
        });
        let value_proposition = parse_optional(
            &mut errors,
            "value_proposition",
            &input.value_proposition,
            |raw| NonEmptyText::parse(raw, MAX_LONG_TEXT_CHARS),
        );
        let key_differentiators = parse_list(
            &mut errors,
            "key_differentiators",
            &input.key_differentiators,
            |raw| NonEmptyText::parse(raw, MAX_SHORT_TEXT_CHARS),
        );
        let focus_areas_served = parse_list(
            &mut errors,
            "focus_areas_served",
            &input.focus_areas_served,
            |raw| catalogue.focus_areas.parse(raw),
        )
        .map(|areas| areas.into_iter().collect::<BTreeSet<_>>());
        let revenue_tiers_served = parse_list(
            &mut errors,
            "revenue_tiers_served",
            &input.revenue_tiers_served,
            |raw| catalogue.revenue_tiers.parse(raw),
        )
        .map(|tiers| tiers.into_iter().collect::<BTreeSet<_>>());
        let service_areas = parse_service_areas(&mut errors, &input.service_areas);
        let contacts = (
            parse_optional_contact(&mut errors, "contacts.ceo", &input.contacts.ceo),
            parse_optional_contact(
                &mut errors,
                "contacts.customer_experience",
                &input.contacts.customer_experience,
            ),
            parse_optional_contact(&mut errors, "contacts.sales", &input.contacts.sales),
        );
        let engagement_tier = match &input.engagement_tier {
            None => Some("standard".to_owned()),
            Some(raw) => errors.check("engagement_tier", parse_slug(raw)),
        };
        let (
            Some(id),
            Some(company_name),
            Some(description),
            Some(value_proposition),
            Some(key_differentiators),
            Some(focus_areas_served),
            Some(revenue_tiers_served),
            Some(service_areas),
            Some(ceo),
            Some(customer_experience),
            Some(sales),
            Some(engagement_tier),
            true,
        ) = (
            id,
            company_name,
            description,
            value_proposition,
            key_differentiators,
            focus_areas_served,
            revenue_tiers_served,
            service_areas,
            contacts.0,
            contacts.1,
            contacts.2,
            engagement_tier,
            errors.is_empty(),
        )
        else {
            return Err(errors);
        };
        Ok(PartnerProfile {
            id,
            company_name,
            description,
            value_proposition,
            key_differentiators,
            focus_areas_served,
            revenue_tiers_served,
            service_areas,
            contacts: PartnerContacts {
                ceo,
                customer_experience,
                sales,
            },
            engagement_tier,
            active: input.active,
        })
    }

    /// The partner's offer in words, for semantic matching: value proposition, differentiators
    /// and description, or `None` when the partner wrote none of them.
    pub fn semantic_text(&self) -> Option<String> {
        let differentiators = self
            .key_differentiators
            .iter()
            .map(NonEmptyText::as_str)
            .collect::<Vec<_>>()
            .join(". ");
        let differentiators = NonEmptyText::parse(&differentiators, usize::MAX).ok();
        join_texts([
            self.value_proposition.as_ref(),
            differentiators.as_ref(),
            self.description.as_ref(),
        ])
    }
}

fn join_texts<'a>(parts: impl IntoIterator<Item = Option<&'a NonEmptyText>>) -> Option<String> {
    let parts: Vec<&str> = parts
        .into_iter()
        .flatten()
        .map(NonEmptyText::as_str)
        .collect();
    if parts.is_empty() {
        None
    } else {
        Some(parts.join("\n"))
    }
}

/// Lower-cases, trims and turns runs of spaces and hyphens into one underscore.
fn normalise_slug(raw: &str) -> String {
    raw.trim()
        .to_lowercase()
        .split(|c: char| c.is_whitespace() || c == '-')
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join("_")
}

fn parse_slug(raw: &str) -> Result<String, InvalidValue> {
    let slug = normalise_slug(raw);
    let valid = !slug.is_empty()
        && slug.len() <= MAX_SLUG_CHARS
        && slug
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && slug
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if valid {
        Ok(slug)
    } else {
        Err(InvalidValue::new(format!(
            "'{}' is not a slug: use 1 to {MAX_SLUG_CHARS} lower-case letters, digits and '_'",
            raw.trim()
        )))
    }
}

fn parse_slug_list<I, S>(field: &str, slugs: I) -> Result<Vec<String>, ValidationErrors>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut errors = ValidationErrors::new();
    let mut parsed: Vec<String> = Vec::new();
    for (idx, raw) in slugs.into_iter().enumerate() {
        let item_field = format!("{field}[{idx}]");
        if let Some(slug) = errors.check(&item_field, parse_slug(raw.as_ref())) {
            if parsed.contains(&slug) {
                errors.push(item_field, format!("'{slug}' is listed twice"));
            } else {
                parsed.push(slug);
            }
        }
    }
    if parsed.is_empty() && errors.is_empty() {
        errors.push(field, "must list at least one value");
    }
    errors.into_result().map(|()| parsed)
}

/// Parses an optional field; the outer `Option` is `None` when the field was invalid.
fn parse_optional<T>(
    errors: &mut ValidationErrors,
    field: &str,
    raw: &Option<String>,
    parse: impl Fn(&str) -> Result<T, InvalidValue>,
) -> Option<Option<T>> {
    match raw.as_deref() {
        None => Some(None),
        // Blank optional text is treated as absent: CSV cells and forms send "" for "not given".
        Some(text) if text.trim().is_empty() => Some(None),
        Some(text) => errors.check(field, parse(text)).map(Some),
    }
}

fn parse_optional_contact(
    errors: &mut ValidationErrors,
    field: &str,
    raw: &Option<ContactInput>,
) -> Option<Option<Contact>> {
    match raw {
        None => Some(None),
        Some(input) => Contact::parse(input, field, errors).map(Some),
    }
}

/// Parses each item of a list (at most `MAX_LIST_ITEMS`), dropping exact duplicates.
fn parse_list<T: PartialEq>(
    errors: &mut ValidationErrors,
    field: &str,
    raw: &[String],
    parse: impl Fn(&str) -> Result<T, InvalidValue>,
) -> Option<Vec<T>> {
    if raw.len() > MAX_LIST_ITEMS {
        errors.push(
            field,
            format!(
                "must list at most {MAX_LIST_ITEMS} items, got {}",
                raw.len()
            ),
        );
        return None;
    }
    let mut parsed = Vec::with_capacity(raw.len());
    let mut ok = true;
    for (idx, item) in raw.iter().enumerate() {
        match errors.check(&format!("{field}[{idx}]"), parse(item)) {
            Some(value) if !parsed.contains(&value) => parsed.push(value),
            Some(_) => {}
            None => ok = false,
        }
    }
    ok.then_some(parsed)
}

fn parse_service_areas(errors: &mut ValidationErrors, raw: &[String]) -> Option<Vec<ServiceArea>> {
    parse_list(errors, "service_areas", raw, ServiceArea::parse)
}

fn parse_tech_stack(
    errors: &mut ValidationErrors,
    raw: &BTreeMap<String, Vec<String>>,
) -> Option<BTreeMap<String, Vec<NonEmptyText>>> {
    let mut parsed = BTreeMap::new();
    let mut ok = true;
    for (category, tools) in raw {
        let field = format!("tech_stack.{category}");
        let slug = errors.check(&field, parse_slug(category));
        let tools = parse_list(errors, &field, tools, |tool| {
            NonEmptyText::parse(tool, MAX_NAME_CHARS)
        });
        match (slug, tools) {
            (Some(slug), Some(tools)) => {
                parsed.insert(slug, tools);
            }
            _ => ok = false,
        }
    }
    ok.then_some(parsed)
}

fn parse_slug_keys(
    errors: &mut ValidationErrors,
    field: &str,
    raw: &BTreeMap<String, bool>,
) -> Option<BTreeMap<String, bool>> {
    let mut parsed = BTreeMap::new();
    let mut ok = true;
    for (key, value) in raw {
        match errors.check(&format!("{field}.{key}"), parse_slug(key)) {
            Some(slug) => {
                parsed.insert(slug, *value);
            }
            None => ok = false,
        }
    }
    ok.then_some(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contractor_input() -> ContractorProfileInput {
        ContractorProfileInput {
            id: "c-1".into(),
            company_name: "  Acme Roofing ".into(),
            contact: ContactInput {
                name: "Dana Smith".into(),
                email: Some("Dana@Acme-Roofing.com".into()),
                phone: None,
            },
            service_areas: vec!["tx".into(), "Dallas  Fort Worth".into()],
            focus_areas: vec![
                "Controlling Lead Flow".into(),
                "closing-higher-percentage".into(),
            ],
            revenue_tier: Some("5_10_million".into()),
            team_size: Some(25),
            tech_stack: BTreeMap::from([("CRM".into(), vec!["JobNimbus".into()])]),
            readiness_indicators: BTreeMap::from([("ready_to_invest".into(), true)]),
            business_goals: Some("Grow to $15M".into()),
            challenges: Some("".into()),
        }
    }

    fn partner_input() -> PartnerProfileInput {
        PartnerProfileInput {
            id: "p-1".into(),
            company_name: "LeadFlow Pro".into(),
            value_proposition: Some("We double qualified leads.".into()),
            key_differentiators: vec!["Exclusive leads".into(), "Exclusive leads".into()],
            focus_areas_served: vec!["controlling_lead_flow".into()],
            revenue_tiers_served: vec!["10_25_million".into(), "0_5_million".into()],
            service_areas: vec!["national".into()],
            active: true,
            ..PartnerProfileInput::default()
        }
    }

    #[test]
    fn parses_a_contractor_and_normalises_its_fields() {
        let profile =
            ContractorProfile::parse(&contractor_input(), &Power100Catalogue::default()).unwrap();
        assert_eq!(profile.company_name.as_str(), "Acme Roofing");
        assert_eq!(
            profile.contact.email.as_ref().unwrap().as_str(),
            "dana@acme-roofing.com"
        );
        assert_eq!(
            profile.focus_areas.primary().as_str(),
            "controlling_lead_flow"
        );
        assert_eq!(
            profile.focus_areas.as_slice()[1].as_str(),
            "closing_higher_percentage"
        );
        assert_eq!(profile.revenue_tier.as_ref().unwrap().rank(), 1);
        assert_eq!(
            profile.service_areas,
            vec![
                ServiceArea::State(UsState::parse("TX").unwrap()),
                ServiceArea::Region("dallas fort worth".into())
            ]
        );
        assert!(profile.tech_stack.contains_key("crm"));
        // A blank optional text counts as absent rather than as an error.
        assert_eq!(profile.challenges, None);
        assert_eq!(profile.semantic_text().as_deref(), Some("Grow to $15M"));
    }

    #[test]
    fn collects_every_contractor_error_under_its_field_path() {
        let mut input = contractor_input();
        input.id = "".into();
        input.contact.email = Some("not-an-email".into());
        input.focus_areas = vec![
            "controlling_lead_flow".into(),
            "underwater_basket_weaving".into(),
            "controlling lead flow".into(),
        ];
        input.revenue_tier = Some("1_billion".into());
        input.team_size = Some(0);
        input.service_areas = vec!["ZZ".into()];
        let errors = ContractorProfile::parse(&input, &Power100Catalogue::default()).unwrap_err();
        let fields: Vec<&str> = errors.errors().iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "id",
                "contact.email",
                "service_areas[0]",
                "focus_areas[1]",
                "focus_areas[2]",
                "revenue_tier",
                "team_size"
            ]
        );
        assert!(errors.errors()[4].problem.contains("listed twice"));
    }

    #[test]
    fn a_contractor_needs_one_to_three_focus_areas() {
        let catalogue = Power100Catalogue::default();
        let mut input = contractor_input();
        input.focus_areas = vec![];
        assert!(ContractorProfile::parse(&input, &catalogue).is_err());
        input.focus_areas = DEFAULT_FOCUS_AREAS[..4]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let errors = ContractorProfile::parse(&input, &catalogue).unwrap_err();
        assert_eq!(errors.errors()[0].field, "focus_areas");
        input.focus_areas = DEFAULT_FOCUS_AREAS[..3]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            ContractorProfile::parse(&input, &catalogue)
                .unwrap()
                .focus_areas
                .len(),
            3
        );
    }

    #[test]
    fn parses_a_partner_with_sets_ordered_by_tier_rank() {
        let partner =
            PartnerProfile::parse(&partner_input(), &Power100Catalogue::default()).unwrap();
        let tiers: Vec<&str> = partner
            .revenue_tiers_served
            .iter()
            .map(RevenueTier::as_str)
            .collect();
        assert_eq!(tiers, vec!["0_5_million", "10_25_million"]);
        assert_eq!(
            partner.key_differentiators.len(),
            1,
            "exact duplicates are dropped"
        );
        assert_eq!(partner.engagement_tier, "standard");
        assert_eq!(
            partner.semantic_text().as_deref(),
            Some("We double qualified leads.\nExclusive leads")
        );
    }

    #[test]
    fn partner_contact_errors_name_the_contact_role() {
        let mut input = partner_input();
        input.contacts.sales = Some(ContactInput {
            name: " ".into(),
            email: Some("sales@".into()),
            phone: None,
        });
        input.engagement_tier = Some("Gold!".into());
        let errors = PartnerProfile::parse(&input, &Power100Catalogue::default()).unwrap_err();
        let fields: Vec<&str> = errors.errors().iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "contacts.sales.name",
                "contacts.sales.email",
                "engagement_tier"
            ]
        );
    }

    #[test]
    fn catalogues_are_configurable_and_reject_bad_lists() {
        let catalogue = FocusAreaCatalogue::new(["pricing", "Lead Gen"]).unwrap();
        assert_eq!(catalogue.parse("lead-gen").unwrap().as_str(), "lead_gen");
        assert!(catalogue.parse("controlling_lead_flow").is_err());
        let errors = FocusAreaCatalogue::new(["a", "A", "!"]).unwrap_err();
        assert_eq!(errors.errors().len(), 2);
        assert!(RevenueTierScale::new(Vec::<String>::new()).is_err());
    }

    #[test]
    fn revenue_tiers_know_rank_distance_and_label() {
        let scale = RevenueTierScale::default();
        let small = scale.parse("0_5_million").unwrap();
        let big = scale.parse("100_plus_million").unwrap();
        assert_eq!(small.distance(&big), 5);
        assert!(small < big);
        assert_eq!(
            scale.parse("5-10 million").unwrap().label(),
            "$5–10 million"
        );
        assert_eq!(big.label(), "$100+ million");
        let custom = RevenueTierScale::new(["startup", "scale_up"]).unwrap();
        assert_eq!(custom.parse("scale_up").unwrap().label(), "scale up");
    }

    #[test]
    fn service_areas_cover_states_through_regions_and_national() {
        let tx = ServiceArea::parse("TX").unwrap();
        let il = ServiceArea::parse("il").unwrap();
        let midwest = ServiceArea::parse(" Midwest ").unwrap();
        assert!(ServiceArea::parse("USA").unwrap().covers(&tx));
        assert!(midwest.covers(&il));
        assert!(!midwest.covers(&tx));
        assert!(!il.covers(&midwest), "one state does not cover a region");
        let all_midwest: Vec<ServiceArea> = CENSUS_REGIONS[1]
            .1
            .iter()
            .map(|s| ServiceArea::parse(s).unwrap())
            .collect();
        assert!(areas_cover(&all_midwest, &midwest));
        assert!(!areas_cover(&all_midwest[1..], &midwest));
        assert!(ServiceArea::parse("QQ").is_err());
        assert_eq!(
            ServiceArea::parse("Gulf  Coast").unwrap(),
            ServiceArea::Region("gulf coast".into())
        );
    }

    #[test]
    fn emails_need_a_local_part_and_a_dotted_domain() {
        assert!(Email::parse("a@b.co").is_ok());
        for bad in ["a@b", "@b.co", "a@@b.co", "a b@c.co", "a@.co", "a@b..co"] {
            assert!(Email::parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn profile_ids_are_path_safe() {
        assert!(ProfileId::parse("0190f3c2-7a1b-7c00-8000-000000000001").is_ok());
        assert!(ProfileId::parse("a/b").is_err());
        assert!(ProfileId::parse(&"x".repeat(65)).is_err());
    }
}
