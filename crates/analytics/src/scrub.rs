//! PII scrubbing of training data: e-mail addresses become `[EMAIL]`, phone numbers
//! `[PHONE]`, and what the configuration names — JSON keys, literal terms, regular
//! expressions — `[REDACTED]`.
//!
//! Every detector looks at the original text and overlapping matches are merged into one
//! replacement, so one rule cannot hide another's match (a configured term inside an e-mail
//! address still removes the whole address).
//!
//! Phone numbers are found by a regular expression for their written shapes and then checked
//! in code, because the `regex` crate has no look-around and the checks need context:
//! - international (`+44 20 7946 0958`, `+1 (555) 123-4567`, `+4915112345678`), an area code
//!   in parentheses (`(555) 123-4567`), groups joined by `-`, `.` or spaces (`555-123-4567`,
//!   `06 12 34 56 78`), and bare numbers with a national trunk `0` (`0612345678`);
//! - 7 to 15 digits (E.164 allows 15); numbers grouped by spaces only need 9, so quantities
//!   such as `1 234 567` stay;
//! - not part of a longer token (a letter, digit, `_`, `-`, `.`, `/` or currency sign next to
//!   it: UUIDs, hex ids, file names, prices such as `$1234567` or `1 234 567 €`), not a date
//!   (`2026-01-15`, `15.01.2026`), a time stamp (`2026-01-15 10:30`), an IPv4 address, a
//!   decimal number (`3.14159265`) or a number with `.` thousands separators (`1.234.567`).
//!
//! Deliberately not matched: bare digit runs that do not start with `0` or `+` (`5551234567`),
//! which cannot be told from order numbers and Unix timestamps.

use std::collections::HashSet;

use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::AnalyticsError;

pub const EMAIL_TOKEN: &str = "[EMAIL]";
pub const PHONE_TOKEN: &str = "[PHONE]";
pub const REDACTED_TOKEN: &str = "[REDACTED]";

/// What to scrub (`[analytics.scrub]` in the configuration, or a derivation's options).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScrubRules {
    /// Replace e-mail addresses by `[EMAIL]`.
    pub emails: bool,
    /// Replace phone numbers by `[PHONE]`.
    pub phones: bool,
    /// JSON keys whose values (strings and numbers, at any depth below the key) become
    /// `[REDACTED]` wherever they occur in a message's structured content or in metadata.
    /// Compared case-insensitively.
    pub fields: Vec<String>,
    /// Literal terms (names, account numbers) replaced by `[REDACTED]`: case-insensitive,
    /// and as whole words where the term starts or ends with a letter or digit.
    pub terms: Vec<String>,
    /// Regular expressions (`regex` crate syntax) whose matches become `[REDACTED]`.
    pub patterns: Vec<String>,
}

impl Default for ScrubRules {
    fn default() -> ScrubRules {
        ScrubRules {
            emails: true,
            phones: true,
            fields: Vec::new(),
            terms: Vec::new(),
            patterns: Vec::new(),
        }
    }
}

/// How many replacements a scrubber made (recorded in training manifests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScrubCounts {
    pub emails: u64,
    pub phones: u64,
    /// Values replaced because their JSON key is configured.
    pub fields: u64,
    /// Matches of configured terms and patterns.
    pub terms: u64,
}

impl ScrubCounts {
    pub fn add(&mut self, other: ScrubCounts) {
        self.emails += other.emails;
        self.phones += other.phones;
        self.fields += other.fields;
        self.terms += other.terms;
    }
}

/// [`ScrubRules`] compiled.
#[derive(Debug, Clone)]
pub struct Scrubber {
    terms: Option<Regex>,
    patterns: Vec<Regex>,
    email: Option<Regex>,
    phone: Option<Regex>,
    fields: HashSet<String>,
}

/// An e-mail address: a common local part, a dotted domain and an alphabetic top-level
/// domain (so `lodash@4.17.21` and `user@host` are left alone).
const EMAIL_PATTERN: &str = r"[\p{L}\p{N}._%+\-]+@[\p{L}\p{N}](?:[\p{L}\p{N}\-]*[\p{L}\p{N}])?(?:\.[\p{L}\p{N}](?:[\p{L}\p{N}\-]*[\p{L}\p{N}])?)*\.\p{L}{2,63}";

/// The written shapes of a phone number; each match is then checked by `is_phone`.
const PHONE_PATTERN: &str = r"(?x)
    \+\d{1,3} (?:[\x20.\-]?\(0\))? (?:[\x20.\-]?\(?\d{1,6}\)?){1,6}   # +CC, groups
  | \(\d{1,5}\) [\x20.\-]? \d{2,8} (?:[\x20.\-]\d{1,8}){0,4}         # (area) groups
  | \d{1,8} (?:[\x20.\-]\d{1,8}){1,5}                                # grouped
  | 0\d{8,10}                                                        # trunk 0, bare
";

const CURRENCY_SIGNS: &[char] = &['$', '€', '£', '¥', '₹', '₽', '¢'];
const CURRENCY_CODES: &[&str] = &["usd", "eur", "gbp", "chf", "jpy", "cad", "aud", "inr"];

impl Scrubber {
    pub fn new(rules: &ScrubRules) -> Result<Scrubber, AnalyticsError> {
        let compile = |pattern: &str| {
            Regex::new(pattern).map_err(|err| AnalyticsError::Engine(format!("scrubber: {err}")))
        };
        let mut terms: Vec<&str> = rules
            .terms
            .iter()
            .map(|term| term.trim())
            .filter(|term| !term.is_empty())
            .collect();
        // Longest first, so that "Acme Corp" wins over "Acme".
        terms.sort_by_key(|term| std::cmp::Reverse(term.len()));
        let terms = if terms.is_empty() {
            None
        } else {
            let alternatives: Vec<String> = terms
                .iter()
                .map(|term| {
                    let word = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
                    let start = if word(term.chars().next()) { r"\b" } else { "" };
                    let end = if word(term.chars().last()) { r"\b" } else { "" };
                    format!("{start}{}{end}", regex::escape(term))
                })
                .collect();
            Some(compile(&format!("(?i)(?:{})", alternatives.join("|")))?)
        };
        let mut patterns = Vec::with_capacity(rules.patterns.len());
        for (idx, pattern) in rules.patterns.iter().enumerate() {
            let regex = Regex::new(pattern).map_err(|err| {
                AnalyticsError::Invalid(format!("scrub pattern {idx} is not a valid regex: {err}"))
            })?;
            if regex.is_match("") {
                return Err(AnalyticsError::Invalid(format!(
                    "scrub pattern {idx} matches the empty string"
                )));
            }
            patterns.push(regex);
        }
        Ok(Scrubber {
            terms,
            patterns,
            email: if rules.emails {
                Some(compile(EMAIL_PATTERN)?)
            } else {
                None
            },
            phone: if rules.phones {
                Some(compile(PHONE_PATTERN)?)
            } else {
                None
            },
            fields: rules
                .fields
                .iter()
                .map(|field| field.trim().to_lowercase())
                .filter(|field| !field.is_empty())
                .collect(),
        })
    }

    /// `text` with every configured term and pattern, e-mail address and phone number
    /// replaced. All detectors look at the original text; overlapping matches are merged
    /// into one replacement named after the leftmost (then longest) of them, so a term inside
    /// an address (`jo@acme.com` with the term `acme`) still hides the whole address.
    pub fn text(&self, text: &str, counts: &mut ScrubCounts) -> String {
        let mut spans: Vec<Span> = Vec::new();
        let mut push_all = |regex: &Regex, kind: Kind| {
            for found in regex.find_iter(text) {
                spans.push(Span {
                    start: found.start(),
                    end: found.end(),
                    kind,
                });
            }
        };
        if let Some(terms) = &self.terms {
            push_all(terms, Kind::Redacted);
        }
        for pattern in &self.patterns {
            push_all(pattern, Kind::Redacted);
        }
        if let Some(email) = &self.email {
            push_all(email, Kind::Email);
        }
        if let Some(phone) = &self.phone {
            phone_spans(phone, text, &mut spans);
        }
        if spans.is_empty() {
            return text.to_owned();
        }
        spans.sort_by_key(|span| (span.start, std::cmp::Reverse(span.end)));
        let mut merged: Vec<Span> = Vec::with_capacity(spans.len());
        for span in spans {
            match merged.last_mut() {
                Some(last) if span.start < last.end => last.end = last.end.max(span.end),
                _ => merged.push(span),
            }
        }
        let mut out = String::with_capacity(text.len());
        let mut copied = 0;
        for span in merged {
            out.push_str(&text[copied..span.start]);
            let (token, count) = match span.kind {
                Kind::Redacted => (REDACTED_TOKEN, &mut counts.terms),
                Kind::Email => (EMAIL_TOKEN, &mut counts.emails),
                Kind::Phone => (PHONE_TOKEN, &mut counts.phones),
            };
            out.push_str(token);
            *count += 1;
            copied = span.end;
        }
        out.push_str(&text[copied..]);
        out
    }

    /// A JSON value scrubbed in place: values under a configured key become `[REDACTED]`,
    /// every other string is scrubbed as text. Keys are kept.
    pub fn json(&self, value: &mut Value, counts: &mut ScrubCounts) {
        match value {
            Value::String(text) => *text = self.text(text, counts),
            Value::Array(items) => {
                for item in items {
                    self.json(item, counts);
                }
            }
            Value::Object(map) => {
                for (key, item) in map.iter_mut() {
                    if self.fields.contains(&key.to_lowercase()) {
                        redact_all(item, &mut counts.fields);
                    } else {
                        self.json(item, counts);
                    }
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }

    /// A message's content: a JSON object or array written as text is scrubbed as JSON (so
    /// configured keys apply inside it) and written back compactly; anything else as text.
    pub fn content(&self, content: &str, counts: &mut ScrubCounts) -> String {
        let trimmed = content.trim_start();
        if !self.fields.is_empty() && (trimmed.starts_with('{') || trimmed.starts_with('[')) {
            if let Ok(mut value) = serde_json::from_str::<Value>(content) {
                if value.is_object() || value.is_array() {
                    self.json(&mut value, counts);
                    return value.to_string();
                }
            }
        }
        self.text(content, counts)
    }
}

/// Every string and number inside `value` replaced by `[REDACTED]`.
fn redact_all(value: &mut Value, count: &mut u64) {
    match value {
        Value::String(_) | Value::Number(_) => {
            *value = Value::String(REDACTED_TOKEN.to_owned());
            *count += 1;
        }
        Value::Array(items) => {
            for item in items {
                redact_all(item, count);
            }
        }
        Value::Object(map) => {
            for item in map.values_mut() {
                redact_all(item, count);
            }
        }
        Value::Null | Value::Bool(_) => {}
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Redacted,
    Email,
    Phone,
}

/// A match to replace: `text[start..end]`.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: usize,
    end: usize,
    kind: Kind,
}

/// The phone numbers in `text`: the candidates `is_phone` accepts. After a rejected candidate
/// the search resumes one character later, so a number overlapping a rejected candidate is
/// still found.
fn phone_spans(regex: &Regex, text: &str, spans: &mut Vec<Span>) {
    let mut at = 0;
    while at < text.len() {
        let Some(found) = regex.find_at(text, at) else {
            break;
        };
        if is_phone(text, found.start(), found.end()) {
            spans.push(Span {
                start: found.start(),
                end: found.end(),
                kind: Kind::Phone,
            });
            at = found.end();
        } else {
            // The next character boundary after the candidate's start.
            at = found.start()
                + text[found.start()..]
                    .chars()
                    .next()
                    .map_or(1, char::len_utf8);
        }
    }
}

/// Whether the candidate `text[start..end]` is a phone number (see the module docs).
fn is_phone(text: &str, start: usize, end: usize) -> bool {
    let candidate = &text[start..end];
    let digits = candidate.chars().filter(char::is_ascii_digit).count();
    if !(7..=15).contains(&digits) {
        return false;
    }
    let before = text[..start].chars().next_back();
    let after_text = &text[end..];
    let mut after = after_text.chars();
    let next = after.next();
    let next_next = after.next();
    let part_of_token = |c: char| c.is_alphanumeric() || c == '_' || CURRENCY_SIGNS.contains(&c);
    if before.is_some_and(|c| part_of_token(c) || matches!(c, '-' | '.' | '/' | '+')) {
        return false;
    }
    if next.is_some_and(|c| part_of_token(c) || c == '%') {
        return false;
    }
    // A separator followed by more of the token: `…4567-89`, `…15:30`, `1.234.567,89`.
    if next.is_some_and(|c| matches!(c, '-' | '.' | '/' | ':' | ','))
        && next_next.is_some_and(char::is_alphanumeric)
    {
        return false;
    }
    if next_to_currency(&text[..start], after_text) {
        return false;
    }
    // A piece of a longer digit sequence grouped the same way (`4111 1111 1111 1111`).
    let separators: Vec<char> = candidate.chars().filter(|c| !c.is_ascii_digit()).collect();
    let mut back = text[..start].chars().rev();
    let (before_1, before_2) = (back.next(), back.next());
    let continues = |separator: Option<char>, digit: Option<char>| {
        separator.is_some_and(|c| separators.contains(&c))
            && digit.is_some_and(|c| c.is_ascii_digit())
    };
    if continues(before_1, before_2) || continues(next, next_next) {
        return false;
    }
    let international = candidate.starts_with('+');
    let area_code = candidate.contains('(');
    if international || area_code {
        return true;
    }
    let groups: Vec<&str> = candidate
        .split(|c: char| !c.is_ascii_digit())
        .filter(|group| !group.is_empty())
        .collect();
    if groups.len() == 1 {
        // Only the bare `0…` shape gets here.
        return true;
    }
    if separators.iter().all(|c| *c == ' ') && digits < 9 {
        return false;
    }
    if separators.len() == 1 && separators[0] == '.' {
        return false;
    }
    let lengths: Vec<usize> = groups.iter().map(|group| group.len()).collect();
    let all_dots = separators.iter().all(|c| *c == '.');
    let same_separator = separators.windows(2).all(|pair| pair[0] == pair[1]);
    // Dates: 2026-01-15, 15.01.2026, 01/15/2026 (slashes never match).
    if lengths.len() == 3 && same_separator {
        let value = |idx: usize| groups[idx].parse::<u32>().unwrap_or(0);
        let ymd = lengths[0] == 4 && lengths[1] <= 2 && lengths[2] <= 2;
        let dmy = lengths[0] <= 2 && lengths[1] <= 2 && (lengths[2] == 4 || lengths[2] == 2);
        if ymd && (1..=12).contains(&value(1)) && (1..=31).contains(&value(2)) {
            return false;
        }
        if dmy && value(0) <= 31 && value(1) <= 31 && value(0) > 0 && value(1) > 0 {
            return false;
        }
    }
    // IPv4 addresses and `.` thousands separators.
    if all_dots && lengths.len() == 4 && lengths.iter().all(|len| *len <= 3) {
        return false;
    }
    if all_dots && lengths[0] <= 3 && lengths[1..].iter().all(|len| *len == 3) {
        return false;
    }
    true
}

/// Whether a currency sign or code stands before or after the candidate, across the rest of
/// the amount (`€ 1 234 567 890`, `EUR 1 234 567 890`, `1 234 567 890 EUR`): a candidate found
/// inside a rejected amount must not pass for lack of context.
fn next_to_currency(before: &str, after: &str) -> bool {
    let amount = |c: char| c.is_ascii_digit() || matches!(c, ' ' | '.' | ',' | '\'');
    let before = before.trim_end_matches(amount);
    let after = after.trim_start_matches(amount);
    if before.ends_with(CURRENCY_SIGNS) || after.starts_with(CURRENCY_SIGNS) {
        return true;
    }
    let word_before: String = before
        .chars()
        .rev()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let word_after: String = after
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect();
    [word_before, word_after]
        .iter()
        .any(|word| CURRENCY_CODES.contains(&word.to_lowercase().as_str()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn scrubber(rules: ScrubRules) -> Scrubber {
        match Scrubber::new(&rules) {
            Ok(scrubber) => scrubber,
            Err(err) => panic!("{err}"),
        }
    }

    fn scrub(text: &str) -> String {
        scrubber(ScrubRules::default()).text(text, &mut ScrubCounts::default())
    }

    #[test]
    fn email_addresses_are_replaced() {
        for (input, expected) in [
            (
                "write to jane.doe@example.com today",
                "write to [EMAIL] today",
            ),
            ("Jane.Doe+tag@mail.example.co.uk.", "[EMAIL]."),
            ("<bob_99@sub-domain.example.org>", "<[EMAIL]>"),
            ("a@b.io and c@d.io", "[EMAIL] and [EMAIL]"),
            ("josé@exemple.fr", "[EMAIL]"),
        ] {
            assert_eq!(scrub(input), expected, "{input}");
        }
    }

    #[test]
    fn things_that_only_look_like_email_addresses_stay() {
        for input in [
            "follow @flywheel",
            "user@localhost",
            "install lodash@4.17.21",
            "a @ b.com",
            "price@",
        ] {
            assert_eq!(scrub(input), input);
        }
    }

    #[test]
    fn phone_numbers_are_replaced() {
        for input in [
            "+1 555 123 4567",
            "+1 (555) 123-4567",
            "+44 20 7946 0958",
            "+44 (0)20 7946 0958",
            "+4915112345678",
            "+33 6 12 34 56 78",
            "+49-30-1234567",
            "(555) 123-4567",
            "(020) 7946 0958",
            "555-123-4567",
            "555.123.4567",
            "555-1234567",
            "020 7946 0958",
            "06 12 34 56 78",
            "0171 1234567",
            "0612345678",
            "555-1234",
        ] {
            assert_eq!(
                scrub(&format!("call {input} now")),
                "call [PHONE] now",
                "{input}"
            );
            assert_eq!(scrub(input), "[PHONE]", "{input}");
        }
        assert_eq!(scrub("tel:+1-555-123-4567."), "tel:[PHONE].");
        // A number next to a rejected candidate is still found.
        assert_eq!(scrub("2026-01-15 555-123-4567"), "2026-01-15 [PHONE]");
        assert_eq!(
            scrub("mobile 0612345678, office (555) 123-4567"),
            "mobile [PHONE], office [PHONE]"
        );
    }

    #[test]
    fn dates_prices_ids_and_other_numbers_are_not_phone_numbers() {
        for input in [
            "2026-01-15",
            "on 2026-01-15 at 10:30",
            "2026-01-15T10:30:00Z",
            "2026-01-15 10:30:00",
            "15.01.2026",
            "15-01-2026",
            "01/15/2026",
            "it costs $1,234,567.89",
            "$12345678",
            "1 234 567 €",
            "EUR 1 234 567 890",
            "1.234.567,89",
            "1.234.567",
            "550e8400-e29b-41d4-a716-446655440000",
            "12345678-1234-1234-1234-123456789012",
            "order 1234567890123",
            "ts 1767225600",
            "5551234567",
            "pi is 3.14159265",
            "192.168.100.200",
            "v1.2.3",
            "grew 12.5% to 1234567",
            "room 12 of 34",
            "1 234 567 people",
            "4111 1111 1111 1111",
            "4111 1111 1111 1111 1111",
            "file_0612345678.txt",
            "id-0612345678",
        ] {
            assert_eq!(scrub(input), input, "{input}");
        }
    }

    #[test]
    fn configured_terms_and_patterns_are_redacted() {
        let scrubber = scrubber(ScrubRules {
            terms: vec!["Acme".into(), "Acme Corp".into(), " ".into()],
            patterns: vec![r"ACCT-\d+".into()],
            ..ScrubRules::default()
        });
        let mut counts = ScrubCounts::default();
        let text = scrubber.text(
            "ACME CORP and acme, not Acmeville; account ACCT-12345678, mail x@acme.com",
            &mut counts,
        );
        assert_eq!(
            text,
            "[REDACTED] and [REDACTED], not Acmeville; account [REDACTED], mail [EMAIL]"
        );
        assert_eq!((counts.terms, counts.emails), (3, 1));
    }

    #[test]
    fn configured_fields_are_redacted_at_any_depth() {
        let scrubber = scrubber(ScrubRules {
            fields: vec!["SSN".into(), "address".into()],
            ..ScrubRules::default()
        });
        let mut counts = ScrubCounts::default();
        let mut value = json!({
            "name": "Jo",
            "ssn": "123-45-6789",
            "nested": [{"Address": {"street": "1 Main St", "zip": 12345}}, {"note": "mail jo@x.io"}],
            "ok": true,
        });
        scrubber.json(&mut value, &mut counts);
        assert_eq!(
            value,
            json!({
                "name": "Jo",
                "ssn": "[REDACTED]",
                "nested": [{"Address": {"street": "[REDACTED]", "zip": "[REDACTED]"}},
                           {"note": "mail [EMAIL]"}],
                "ok": true,
            })
        );
        assert_eq!((counts.fields, counts.emails), (3, 1));
        let content = scrubber.content(r#"{"ssn": "1", "q": "hi"}"#, &mut counts);
        assert_eq!(content, r#"{"q":"hi","ssn":"[REDACTED]"}"#);
        assert_eq!(scrubber.content("{not json", &mut counts), "{not json");
    }

    #[test]
    fn disabled_rules_and_bad_patterns() {
        let off = scrubber(ScrubRules {
            emails: false,
            phones: false,
            ..ScrubRules::default()
        });
        let text = "a@b.io +1 555 123 4567";
        assert_eq!(off.text(text, &mut ScrubCounts::default()), text);
        for pattern in ["(unclosed", "x*"] {
            let rules = ScrubRules {
                patterns: vec![pattern.into()],
                ..ScrubRules::default()
            };
            assert!(
                matches!(Scrubber::new(&rules), Err(AnalyticsError::Invalid(_))),
                "{pattern}"
            );
        }
    }
}
