//! The interaction contract (schema version 1): parsing a JSON document into a validated
//! [`Interaction`], keeping unknown fields.
//!
//! An interaction is a JSON document by nature (products send what they have; unknown
//! top-level fields are kept), so this module works on `serde_json::Value` and checks the
//! contract's typed fields: their types, ranges and shapes. Field names follow
//! `shared/DESIGN.md` exactly.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::{TenantId, ValidationErrors};

/// Version of the contract this module validates; stored with every interaction.
pub const SCHEMA_VERSION: i64 = 1;

const MAX_ID_CHARS: usize = 256;
const MAX_TEXT_CHARS: usize = 100_000;
const MAX_MESSAGES: usize = 1_000;
const MAX_FUTURE_SKEW_HOURS: i64 = 24;

/// Message roles the contract allows.
pub const MESSAGE_ROLES: [&str; 4] = ["user", "assistant", "system", "tool"];

/// A validated, enriched interaction: the indexed fields plus the whole document.
#[derive(Debug, Clone, PartialEq)]
pub struct Interaction {
    pub tenant_id: TenantId,
    pub interaction_id: Uuid,
    pub timestamp: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub interaction_type: String,
    pub user_id: String,
    pub user_type: String,
    pub session_id: Option<String>,
    pub conversation_id: Option<String>,
    pub parent_interaction_id: Option<Uuid>,
    /// `outcomes.partner_id`, indexed for outcomes recorded by (user, partner).
    pub partner_id: Option<String>,
    /// The complete document, including unknown fields and the fields filled in here.
    pub document: Map<String, Value>,
}

impl Interaction {
    /// Validates `value` against the contract and fills `interaction_id` (UUID v7),
    /// `timestamp` (= `received_at`), `received_at`, `tenant_id` and `schema_version`.
    pub fn parse(
        value: Value,
        tenant_id: &TenantId,
        received_at: DateTime<Utc>,
    ) -> Result<Interaction, ValidationErrors> {
        Interaction::parse_or_return(value, tenant_id, received_at).map_err(|(errors, _)| errors)
    }

    /// Like [`Interaction::parse`], but a rejected value is handed back unchanged (for the
    /// quarantine) instead of being copied up front.
    pub fn parse_or_return(
        value: Value,
        tenant_id: &TenantId,
        received_at: DateTime<Utc>,
    ) -> Result<Interaction, (ValidationErrors, Value)> {
        let mut document = match value {
            Value::Object(document) => document,
            other => {
                return Err((
                    ValidationErrors::single("body", "an interaction must be a JSON object"),
                    other,
                ))
            }
        };
        let mut errors = ValidationErrors::new();

        let interaction_id = match optional_uuid(&mut errors, &document, "interaction_id") {
            Ok(Some(id)) => Some(id),
            Ok(None) => Some(Uuid::now_v7()),
            Err(Invalid) => None,
        };
        let timestamp = match document.get("timestamp") {
            None | Some(Value::Null) => Some(received_at),
            Some(value) => check_timestamp(&mut errors, "timestamp", value, received_at),
        };
        let interaction_type = required_identifier(&mut errors, &document, "interaction_type");
        let user_id = required_id(&mut errors, &document, "user_id");
        let user_type = required_identifier(&mut errors, &document, "user_type");
        let session_id = optional_id(&mut errors, &document, "session_id");
        let conversation_id = optional_id(&mut errors, &document, "conversation_id");
        let parent_interaction_id =
            optional_uuid(&mut errors, &document, "parent_interaction_id").unwrap_or(None);
        if let Some(value) = document.get("ai_conversation") {
            check_ai_conversation(&mut errors, value, received_at);
        }
        let partner_id = match document.get("outcomes") {
            Some(value) => check_outcomes(&mut errors, "outcomes", value),
            None => None,
        };
        if let Some(value) = document.get("feedback") {
            check_feedback(&mut errors, "feedback", value);
        }
        if let Some(value) = document.get("metadata") {
            check_metadata(&mut errors, value);
        }
        if let Some(value) = document.get("experiments") {
            check_experiments(&mut errors, value);
        }
        if !errors.is_empty() {
            return Err((errors, Value::Object(document)));
        }

        let (
            Some(interaction_id),
            Some(timestamp),
            Some(interaction_type),
            Some(user_id),
            Some(user_type),
        ) = (
            interaction_id,
            timestamp,
            interaction_type,
            user_id,
            user_type,
        )
        else {
            unreachable!("required fields parsed when no error was recorded")
        };
        document.insert(
            "interaction_id".to_owned(),
            Value::String(interaction_id.to_string()),
        );
        document.insert("timestamp".to_owned(), Value::String(rfc3339(timestamp)));
        document.insert(
            "received_at".to_owned(),
            Value::String(rfc3339(received_at)),
        );
        document.insert("tenant_id".to_owned(), Value::String(tenant_id.to_string()));
        document.insert("schema_version".to_owned(), Value::from(SCHEMA_VERSION));
        Ok(Interaction {
            tenant_id: tenant_id.clone(),
            interaction_id,
            timestamp,
            received_at,
            interaction_type,
            user_id,
            user_type,
            session_id,
            conversation_id,
            parent_interaction_id,
            partner_id,
            document,
        })
    }

    /// The `metadata` object, created when absent.
    pub fn metadata_mut(&mut self) -> &mut Map<String, Value> {
        let entry = self
            .document
            .entry("metadata")
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        match entry {
            Value::Object(map) => map,
            _ => unreachable!("replaced by an object above"),
        }
    }
}

/// An interaction read back from the store together with its document exactly as stored, so
/// that writers of other formats (the lake) need not serialise it again.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredInteraction {
    pub interaction: Interaction,
    pub document_json: String,
}

/// An interaction as stored, unparsed: the indexed columns and the document as JSON text.
/// What the archiver reads and the lake writes, without building a JSON tree per row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InteractionRecord {
    pub tenant_id: String,
    pub interaction_id: String,
    pub timestamp_ms: i64,
    pub received_at_ms: i64,
    pub interaction_type: String,
    pub user_id: String,
    pub user_type: String,
    pub document_json: String,
}

impl From<&Interaction> for InteractionRecord {
    fn from(interaction: &Interaction) -> InteractionRecord {
        InteractionRecord {
            tenant_id: interaction.tenant_id.to_string(),
            interaction_id: interaction.interaction_id.to_string(),
            timestamp_ms: interaction.timestamp.timestamp_millis(),
            received_at_ms: interaction.received_at.timestamp_millis(),
            interaction_type: interaction.interaction_type.clone(),
            user_id: interaction.user_id.clone(),
            user_type: interaction.user_type.clone(),
            document_json: Value::Object(interaction.document.clone()).to_string(),
        }
    }
}

/// RFC 3339 in UTC with the precision the value has (`2026-11-22T10:00:00.123Z`).
pub fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Lower-case identifier: starts with a letter; letters, digits and `_`; at most 64 characters.
pub fn is_identifier(raw: &str) -> bool {
    let mut chars = raw.chars();
    raw.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Marks a field whose error has been recorded.
struct Invalid;

/// `Ok(None)` when absent or null, `Err(Invalid)` (error recorded) when not a UUID string.
fn optional_uuid(
    errors: &mut ValidationErrors,
    doc: &Map<String, Value>,
    field: &str,
) -> Result<Option<Uuid>, Invalid> {
    match doc.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(raw)) => Uuid::parse_str(raw).map(Some).map_err(|_| {
            errors.push(field, "must be a UUID");
            Invalid
        }),
        Some(_) => {
            errors.push(field, "must be a string (a UUID)");
            Err(Invalid)
        }
    }
}

fn required_identifier(
    errors: &mut ValidationErrors,
    doc: &Map<String, Value>,
    field: &str,
) -> Option<String> {
    match doc.get(field) {
        None | Some(Value::Null) => {
            errors.push(field, "is required");
            None
        }
        Some(Value::String(raw)) if is_identifier(raw) => Some(raw.clone()),
        Some(Value::String(_)) => {
            errors.push(
                field,
                "must be a lower-case identifier: a letter, then letters, digits or '_' (at most 64)",
            );
            None
        }
        Some(_) => {
            errors.push(field, "must be a string");
            None
        }
    }
}

fn check_id_text(errors: &mut ValidationErrors, field: &str, raw: &str) -> bool {
    if raw.is_empty() || raw.chars().count() > MAX_ID_CHARS {
        errors.push(field, format!("must be 1 to {MAX_ID_CHARS} characters"));
        false
    } else if raw.chars().any(char::is_control) {
        errors.push(field, "must not contain control characters");
        false
    } else {
        true
    }
}

fn required_id(
    errors: &mut ValidationErrors,
    doc: &Map<String, Value>,
    field: &str,
) -> Option<String> {
    match doc.get(field) {
        None | Some(Value::Null) => {
            errors.push(field, "is required");
            None
        }
        Some(Value::String(raw)) => check_id_text(errors, field, raw).then(|| raw.clone()),
        Some(_) => {
            errors.push(field, "must be a string");
            None
        }
    }
}

fn optional_id(
    errors: &mut ValidationErrors,
    doc: &Map<String, Value>,
    field: &str,
) -> Option<String> {
    match doc.get(field) {
        None | Some(Value::Null) => None,
        Some(Value::String(raw)) => check_id_text(errors, field, raw).then(|| raw.clone()),
        Some(_) => {
            errors.push(field, "must be a string");
            None
        }
    }
}

fn check_timestamp(
    errors: &mut ValidationErrors,
    field: &str,
    value: &Value,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let Some(raw) = value.as_str() else {
        errors.push(
            field,
            "must be an RFC 3339 string such as 2026-11-22T10:00:00Z",
        );
        return None;
    };
    match DateTime::parse_from_rfc3339(raw) {
        Ok(parsed) => {
            let parsed = parsed.with_timezone(&Utc);
            if parsed > now + Duration::hours(MAX_FUTURE_SKEW_HOURS) {
                errors.push(
                    field,
                    format!("is more than {MAX_FUTURE_SKEW_HOURS} hours in the future"),
                );
                None
            } else if parsed.timestamp() < 0 {
                errors.push(field, "must not be before 1970");
                None
            } else {
                Some(parsed)
            }
        }
        Err(err) => {
            errors.push(
                field,
                format!("is not RFC 3339 ({err}); write e.g. 2026-11-22T10:00:00Z"),
            );
            None
        }
    }
}

fn as_object<'a>(
    errors: &mut ValidationErrors,
    field: &str,
    value: &'a Value,
) -> Option<&'a Map<String, Value>> {
    match value {
        Value::Object(map) => Some(map),
        _ => {
            errors.push(field, "must be an object");
            None
        }
    }
}

fn check_bool(errors: &mut ValidationErrors, field: &str, map: &Map<String, Value>, key: &str) {
    if let Some(value) = map.get(key) {
        if !(value.is_boolean() || value.is_null()) {
            errors.push(format!("{field}.{key}"), "must be true or false");
        }
    }
}

fn check_number(
    errors: &mut ValidationErrors,
    field: &str,
    map: &Map<String, Value>,
    key: &str,
    min: f64,
    max: Option<f64>,
) {
    let Some(value) = map.get(key) else { return };
    if value.is_null() {
        return;
    }
    let path = format!("{field}.{key}");
    match value.as_f64() {
        Some(number)
            if number.is_finite() && number >= min && max.is_none_or(|max| number <= max) => {}
        Some(_) => match max {
            Some(max) => errors.push(path, format!("must be between {min} and {max}")),
            None => errors.push(path, format!("must be at least {min}")),
        },
        None => errors.push(path, "must be a number"),
    }
}

fn check_count(errors: &mut ValidationErrors, field: &str, map: &Map<String, Value>, key: &str) {
    let Some(value) = map.get(key) else { return };
    if value.is_null() {
        return;
    }
    if value.as_u64().is_none() {
        errors.push(
            format!("{field}.{key}"),
            "must be a non-negative whole number",
        );
    }
}

fn check_text(
    errors: &mut ValidationErrors,
    field: &str,
    map: &Map<String, Value>,
    key: &str,
    max_chars: usize,
) {
    let Some(value) = map.get(key) else { return };
    match value {
        Value::Null => {}
        Value::String(text) if text.chars().count() <= max_chars => {}
        Value::String(_) => errors.push(
            format!("{field}.{key}"),
            format!("must be at most {max_chars} characters"),
        ),
        _ => errors.push(format!("{field}.{key}"), "must be a string"),
    }
}

fn check_ai_conversation(errors: &mut ValidationErrors, value: &Value, now: DateTime<Utc>) {
    let field = "ai_conversation";
    let Some(map) = as_object(errors, field, value) else {
        return;
    };
    check_count(errors, field, map, "total_tokens");
    check_number(errors, field, map, "cost", 0.0, None);
    check_count(errors, field, map, "duration_ms");
    match map.get("messages") {
        None | Some(Value::Null) => {}
        Some(Value::Array(messages)) => {
            if messages.len() > MAX_MESSAGES {
                errors.push(
                    "ai_conversation.messages",
                    format!("must have at most {MAX_MESSAGES} messages"),
                );
            }
            for (idx, message) in messages.iter().enumerate().take(MAX_MESSAGES) {
                let path = format!("ai_conversation.messages[{idx}]");
                let Some(message) = as_object(errors, &path, message) else {
                    continue;
                };
                match message.get("role").and_then(Value::as_str) {
                    Some(role) if MESSAGE_ROLES.contains(&role) => {}
                    _ => errors.push(
                        format!("{path}.role"),
                        "must be one of user, assistant, system, tool",
                    ),
                }
                match message.get("content") {
                    Some(Value::String(text)) if text.chars().count() <= MAX_TEXT_CHARS => {}
                    Some(Value::String(_)) => errors.push(
                        format!("{path}.content"),
                        format!("must be at most {MAX_TEXT_CHARS} characters"),
                    ),
                    Some(Value::Null) | None => {}
                    Some(_) => errors.push(format!("{path}.content"), "must be a string"),
                }
                if let Some(timestamp) = message.get("timestamp") {
                    if !timestamp.is_null() {
                        check_timestamp(errors, &format!("{path}.timestamp"), timestamp, now);
                    }
                }
                check_count(errors, &path, message, "tokens");
                check_text(errors, &path, message, "model", MAX_ID_CHARS);
            }
        }
        Some(_) => errors.push("ai_conversation.messages", "must be an array"),
    }
}

fn check_outcomes(errors: &mut ValidationErrors, field: &str, value: &Value) -> Option<String> {
    let map = as_object(errors, field, value)?;
    for key in ["partner_matched", "demo_booked", "deal_closed"] {
        check_bool(errors, field, map, key);
    }
    check_number(errors, field, map, "match_score", 0.0, Some(1.0));
    check_number(errors, field, map, "deal_value", 0.0, None);
    check_number(errors, field, map, "satisfaction_score", 0.0, Some(10.0));
    match map.get("partner_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(raw)) => {
            check_id_text(errors, "outcomes.partner_id", raw).then(|| raw.clone())
        }
        Some(_) => {
            errors.push("outcomes.partner_id", "must be a string");
            None
        }
    }
}

fn check_feedback(errors: &mut ValidationErrors, field: &str, value: &Value) {
    let Some(map) = as_object(errors, field, value) else {
        return;
    };
    check_bool(errors, field, map, "helpful");
    check_bool(errors, field, map, "would_recommend");
    check_number(errors, field, map, "accuracy", 0.0, Some(10.0));
    check_text(errors, field, map, "comments", MAX_TEXT_CHARS);
}

fn check_metadata(errors: &mut ValidationErrors, value: &Value) {
    let field = "metadata";
    let Some(map) = as_object(errors, field, value) else {
        return;
    };
    for key in [
        "app_version",
        "api_version",
        "environment",
        "device_type",
        "referrer",
    ] {
        check_text(errors, field, map, key, 2_048);
    }
    check_text(errors, field, map, "user_agent", 4_096);
    match map.get("client_ip") {
        None | Some(Value::Null) => {}
        Some(Value::String(raw)) if raw.parse::<std::net::IpAddr>().is_ok() => {}
        Some(_) => errors.push("metadata.client_ip", "must be an IPv4 or IPv6 address"),
    }
    if let Some(location) = map.get("location") {
        if let Some(location) = as_object(errors, "metadata.location", location) {
            for key in ["country", "state", "city"] {
                check_text(errors, "metadata.location", location, key, MAX_ID_CHARS);
            }
        }
    }
}

fn check_experiments(errors: &mut ValidationErrors, value: &Value) {
    let Some(map) = as_object(errors, "experiments", value) else {
        return;
    };
    for (name, variant) in map {
        if !variant.is_string() {
            errors.push(
                format!("experiments.{name}"),
                "must be a string (the variant)",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn tenant() -> TenantId {
        TenantId::parse("acme").unwrap()
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn fields(errors: &ValidationErrors) -> Vec<&str> {
        errors.errors().iter().map(|e| e.field.as_str()).collect()
    }

    #[test]
    fn minimal_interaction_is_completed() {
        let parsed = Interaction::parse(
            json!({"interaction_type": "ai_concierge", "user_id": "c-1", "user_type": "contractor", "custom": {"a": 1}}),
            &tenant(),
            now(),
        )
        .unwrap();
        assert_eq!(parsed.interaction_id.get_version_num(), 7);
        assert_eq!(parsed.timestamp, now());
        assert_eq!(parsed.document["timestamp"], "2026-11-22T10:00:00Z");
        assert_eq!(parsed.document["tenant_id"], "acme");
        assert_eq!(
            parsed.document["custom"],
            json!({"a": 1}),
            "unknown fields are kept"
        );
        assert_eq!(parsed.document["schema_version"], 1);
    }

    #[test]
    fn full_interaction_is_accepted() {
        let parsed = Interaction::parse(
            json!({
                "interaction_id": "0191c8a4-7e5b-7c3e-9d2a-1b2c3d4e5f60",
                "timestamp": "2026-11-21T09:30:00+01:00",
                "interaction_type": "ai_concierge_response", "user_id": "c-1", "user_type": "contractor",
                "session_id": "s", "conversation_id": "conv", "parent_interaction_id": "0191c8a4-7e5b-7c3e-9d2a-1b2c3d4e5f61",
                "ai_conversation": {"messages": [{"role": "user", "content": "hi", "tokens": 3, "model": "m", "timestamp": "2026-11-21T08:30:00Z"}], "total_tokens": 3, "cost": 0.001, "duration_ms": 120},
                "outcomes": {"partner_matched": true, "partner_id": "p-9", "match_score": 0.8, "demo_booked": false, "deal_closed": true, "deal_value": 48000, "satisfaction_score": 9},
                "feedback": {"helpful": true, "accuracy": 4, "would_recommend": true, "comments": "great"},
                "metadata": {"client_ip": "203.0.113.7", "location": {"country": "US", "state": "TX", "city": "Austin"}},
                "experiments": {"ui_variant": "b"}
            }),
            &tenant(),
            now(),
        )
        .unwrap();
        assert_eq!(parsed.partner_id.as_deref(), Some("p-9"));
        assert_eq!(
            parsed.document["timestamp"], "2026-11-21T08:30:00Z",
            "normalised to UTC"
        );
        assert!(parsed.parent_interaction_id.is_some());
    }

    #[test]
    fn typed_fields_are_checked() {
        let errors = Interaction::parse(
            json!({
                "interaction_id": "nope", "interaction_type": "Bad Type", "user_id": 5,
                "timestamp": "yesterday",
                "ai_conversation": {"messages": [{"role": "robot", "content": 1}], "total_tokens": -1, "cost": -0.5},
                "outcomes": {"match_score": 1.5, "deal_value": -1, "satisfaction_score": 11, "deal_closed": "yes"},
                "metadata": {"client_ip": "999.1.1.1"},
                "experiments": {"x": 1}
            }),
            &tenant(),
            now(),
        )
        .unwrap_err();
        let fields = fields(&errors);
        for expected in [
            "interaction_id",
            "timestamp",
            "interaction_type",
            "user_id",
            "user_type",
            "ai_conversation.total_tokens",
            "ai_conversation.cost",
            "ai_conversation.messages[0].role",
            "ai_conversation.messages[0].content",
            "outcomes.deal_closed",
            "outcomes.match_score",
            "outcomes.deal_value",
            "outcomes.satisfaction_score",
            "metadata.client_ip",
            "experiments.x",
        ] {
            assert!(
                fields.contains(&expected),
                "{expected} missing from {fields:?}"
            );
        }
    }

    #[test]
    fn non_objects_and_future_times_are_rejected() {
        assert!(Interaction::parse(json!([1]), &tenant(), now()).is_err());
        let errors = Interaction::parse(
            json!({"interaction_type": "x", "user_id": "u", "user_type": "admin", "timestamp": "2026-11-25T10:00:00Z"}),
            &tenant(),
            now(),
        )
        .unwrap_err();
        assert_eq!(fields(&errors), vec!["timestamp"]);
    }

    #[test]
    fn identifiers() {
        assert!(is_identifier("ai_concierge"));
        assert!(is_identifier("deal_closed2"));
        assert!(!is_identifier("AI"));
        assert!(!is_identifier("2fa"));
        assert!(!is_identifier("a-b"));
        assert!(!is_identifier(""));
    }
}
