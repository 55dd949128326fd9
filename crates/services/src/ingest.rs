//! The interaction pipeline's front half: validate, enrich, make durable (group commit),
//! quarantine what is rejected, link later outcomes, and read back with outcomes merged.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine;
use chrono::{DateTime, Utc};
use flywheel_core::interaction::{rfc3339, StoredInteraction};
use flywheel_core::{FieldError, Interaction, Principal, Role, ValidationErrors};
use flywheel_store::{InteractionCursor, InteractionFilter, InteractionStore, RejectedInteraction};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::enrich::{enrich, ClientContext, EnrichSettings};
use crate::writer::GroupCommitWriter;
use crate::ServiceError;

/// Fields always redacted from tracked API calls, at any depth (case-insensitive).
pub const ALWAYS_SENSITIVE: [&str; 5] = ["password", "api_key", "authorization", "token", "secret"];

/// Longest payload kept in the quarantine per rejected item.
const MAX_QUARANTINE_PAYLOAD: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub struct IngestSettings {
    pub max_batch_items: usize,
    pub data_collection: bool,
    pub outcome_tracking: bool,
    pub enrich: EnrichSettings,
    pub sensitive_fields: Vec<String>,
}

/// What was submitted: one object or an array of them.
#[derive(Debug)]
pub enum Submission {
    One(Value),
    Batch(Vec<Value>),
}

/// The fate of one submitted item.
#[derive(Debug, Clone, PartialEq)]
pub enum ItemOutcome {
    Created { interaction_id: Uuid },
    Duplicate { interaction_id: Uuid },
    Rejected { errors: Vec<FieldError> },
}

#[derive(Debug)]
pub struct IngestReport {
    pub batch: bool,
    pub items: Vec<ItemOutcome>,
}

impl IngestReport {
    pub fn count(&self, wanted: fn(&ItemOutcome) -> bool) -> usize {
        self.items.iter().filter(|item| wanted(item)).count()
    }
}

/// An interaction as read back: the stored document with later outcomes and feedback merged in.
#[derive(Debug, Clone)]
pub struct InteractionView {
    pub interaction: Interaction,
    /// The document as returned: `outcomes` and `feedback` are the latest merged values,
    /// `linked` lists the later interactions they came from.
    pub document: Map<String, Value>,
}

/// A page of a listing.
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// Raw listing parameters, validated here.
#[derive(Debug, Default, Clone)]
pub struct ListQuery {
    pub user_id: Option<String>,
    pub interaction_type: Option<String>,
    pub conversation_id: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// Which interaction a later outcome belongs to.
#[derive(Debug, Clone)]
pub enum OutcomeTarget {
    Interaction(String),
    Conversation(String),
    UserPartner { user_id: String, partner_id: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkedKind {
    Outcome,
    Feedback,
}

/// What became of a record enqueued without waiting.
#[derive(Debug)]
pub enum DetachedRecord {
    Queued(Uuid),
    /// The write queue was full.
    Dropped,
    /// `features.data_collection` is off.
    Disabled,
    /// A bug: Flywheel built a document that does not validate.
    Invalid(ValidationErrors),
}

/// One API request, for `api_call` tracking.
#[derive(Debug, Clone)]
pub struct ApiCall {
    pub principal: Principal,
    pub method: String,
    pub route: String,
    pub status: u16,
    pub latency_ms: f64,
    pub request_id: String,
    /// Query parameters as sent; sensitive ones are redacted before storing.
    pub query: Map<String, Value>,
    pub client: ClientContext,
}

pub struct IngestService {
    store: Arc<dyn InteractionStore>,
    writer: GroupCommitWriter,
    settings: IngestSettings,
}

impl std::fmt::Debug for IngestService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestService")
            .field("settings", &self.settings)
            .finish()
    }
}

const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 1_000;

impl IngestService {
    pub fn new(
        store: Arc<dyn InteractionStore>,
        writer: GroupCommitWriter,
        settings: IngestSettings,
    ) -> IngestService {
        IngestService {
            store,
            writer,
            settings,
        }
    }

    pub fn writer(&self) -> &GroupCommitWriter {
        &self.writer
    }

    /// Validates, enriches and stores a submission; acknowledges only once committed.
    pub async fn ingest(
        &self,
        actor: &Principal,
        submission: Submission,
        client: &ClientContext,
    ) -> Result<IngestReport, ServiceError> {
        require_writer(actor)?;
        if !self.settings.data_collection {
            return Err(ServiceError::Disabled(
                "data collection is switched off (features.data_collection = false)".to_owned(),
            ));
        }
        let (batch, values) = match submission {
            Submission::One(value) => (false, vec![value]),
            Submission::Batch(values) => (true, values),
        };
        if values.len() > self.settings.max_batch_items {
            return Err(ServiceError::TooLarge(format!(
                "a batch may hold at most {} interactions (ingest.max_batch_items); this one has {}; split it",
                self.settings.max_batch_items,
                values.len()
            )));
        }
        if batch && values.is_empty() {
            return Err(ValidationErrors::single("body", "the batch is empty").into());
        }
        let received_at = now_millis();
        let mut outcomes: Vec<Option<ItemOutcome>> = vec![None; values.len()];
        let mut accepted: Vec<(usize, Interaction)> = Vec::with_capacity(values.len());
        let mut rejected: Vec<RejectedInteraction> = Vec::new();
        let mut first_index_of: HashMap<Uuid, usize> = HashMap::new();
        for (index, value) in values.into_iter().enumerate() {
            let (errors, value) = match self.prepare(actor, value, received_at, client) {
                Ok(interaction) => match first_index_of.get(&interaction.interaction_id) {
                    None => {
                        first_index_of.insert(interaction.interaction_id, index);
                        accepted.push((index, interaction));
                        continue;
                    }
                    Some(first) => (
                        vec![FieldError::new(
                            "interaction_id",
                            format!("appears twice in this batch (first at index {first})"),
                        )],
                        Value::Object(interaction.document),
                    ),
                },
                Err((errors, value)) => (errors.errors().to_vec(), value),
            };
            rejected.push(self.quarantine_entry(
                actor,
                batch.then_some(index),
                &value,
                &errors,
                received_at,
            ));
            outcomes[index] = Some(ItemOutcome::Rejected { errors });
        }
        if !rejected.is_empty() {
            self.store.insert_rejected(&rejected).await?;
        }
        let (indexes, items): (Vec<usize>, Vec<StoredInteraction>) = accepted
            .into_iter()
            .map(|(index, interaction)| (index, stored(interaction)))
            .unzip();
        let ids: Vec<Uuid> = items
            .iter()
            .map(|item| item.interaction.interaction_id)
            .collect();
        let inserted = self.writer.write(items).await?;
        for ((index, id), new) in indexes.into_iter().zip(ids).zip(inserted) {
            outcomes[index] = Some(if new {
                ItemOutcome::Created { interaction_id: id }
            } else {
                ItemOutcome::Duplicate { interaction_id: id }
            });
        }
        Ok(IngestReport {
            batch,
            items: outcomes
                .into_iter()
                .map(|outcome| outcome.unwrap_or_else(|| unreachable!("every item got an outcome")))
                .collect(),
        })
    }

    /// Applies who-may-write rules, validates and enriches one item.
    fn prepare(
        &self,
        actor: &Principal,
        mut value: Value,
        received_at: DateTime<Utc>,
        client: &ClientContext,
    ) -> Result<Interaction, (ValidationErrors, Value)> {
        let end_user = matches!(actor.role, Role::Contractor | Role::Partner);
        if end_user {
            // A contractor's or partner's credential writes only about itself.
            if let Value::Object(map) = &mut value {
                map.insert(
                    "user_id".to_owned(),
                    Value::String(actor.subject.to_string()),
                );
                map.insert(
                    "user_type".to_owned(),
                    Value::String(actor.role.to_string()),
                );
            }
        }
        let mut interaction = Interaction::parse_or_return(value, &actor.tenant_id, received_at)?;
        enrich(
            &mut interaction,
            &self.settings.enrich,
            end_user.then_some(client),
        );
        Ok(interaction)
    }

    fn quarantine_entry(
        &self,
        actor: &Principal,
        batch_index: Option<usize>,
        value: &Value,
        errors: &[FieldError],
        received_at: DateTime<Utc>,
    ) -> RejectedInteraction {
        let mut payload = value.to_string();
        truncate_utf8(&mut payload, MAX_QUARANTINE_PAYLOAD);
        RejectedInteraction {
            id: Uuid::now_v7().to_string(),
            tenant_id: actor.tenant_id.clone(),
            received_at,
            principal: actor.subject.to_string(),
            batch_index: batch_index.map(|index| index as i64),
            reason: errors_json(errors),
            payload,
        }
    }

    /// Keeps a body that could not be parsed at all (malformed JSON, invalid UTF-8).
    pub async fn quarantine_body(
        &self,
        actor: &Principal,
        body: &[u8],
        problem: &str,
    ) -> Result<(), ServiceError> {
        let mut payload = String::from_utf8_lossy(body).into_owned();
        truncate_utf8(&mut payload, MAX_QUARANTINE_PAYLOAD);
        let entry = RejectedInteraction {
            id: Uuid::now_v7().to_string(),
            tenant_id: actor.tenant_id.clone(),
            received_at: now_millis(),
            principal: actor.subject.to_string(),
            batch_index: None,
            reason: errors_json(&[FieldError::new("body", problem)]),
            payload,
        };
        self.store.insert_rejected(&[entry]).await?;
        Ok(())
    }

    /// One interaction with later outcomes and feedback merged in.
    pub async fn get(&self, actor: &Principal, id: &str) -> Result<InteractionView, ServiceError> {
        let id = parse_id("interaction_id", id)?;
        let interaction = self
            .store
            .get_interaction(&actor.tenant_id, &id)
            .await?
            .filter(|interaction| may_read(actor, interaction))
            .ok_or_else(|| ServiceError::NotFound(format!("interaction '{id}'")))?;
        let children = self.store.list_children(&actor.tenant_id, &id).await?;
        Ok(merge_view(interaction, &children))
    }

    /// Tenant-scoped, newest first, cursor-paginated. Contractors and partners see their own.
    pub async fn list(
        &self,
        actor: &Principal,
        query: ListQuery,
    ) -> Result<Page<Interaction>, ServiceError> {
        let mut errors = ValidationErrors::new();
        let from = query
            .from
            .as_deref()
            .and_then(|raw| errors.check("from", parse_time(raw)));
        let to = query
            .to
            .as_deref()
            .and_then(|raw| errors.check("to", parse_time(raw)));
        let limit = query.limit.unwrap_or(DEFAULT_PAGE);
        if limit == 0 || limit > MAX_PAGE {
            errors.push("limit", format!("must be between 1 and {MAX_PAGE}"));
        }
        let cursor = query
            .cursor
            .as_deref()
            .and_then(|raw| errors.check("cursor", decode_cursor(raw)));
        errors.into_result()?;
        let mut user_id = query.user_id;
        if matches!(actor.role, Role::Contractor | Role::Partner) {
            user_id = Some(actor.subject.to_string());
        }
        let filter = InteractionFilter {
            user_id,
            interaction_type: query.interaction_type,
            conversation_id: query.conversation_id,
            parent_interaction_id: None,
            from,
            to,
        };
        let mut items = self
            .store
            .list_interactions(&actor.tenant_id, &filter, cursor.as_ref(), limit + 1)
            .await?;
        let next_cursor = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items.last().map(|last| {
                encode_cursor(&InteractionCursor {
                    timestamp_ms: last.timestamp.timestamp_millis(),
                    interaction_id: last.interaction_id.to_string(),
                })
            })
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    /// Records an outcome or feedback as its own interaction linked to its target.
    pub async fn record_linked(
        &self,
        actor: &Principal,
        target: OutcomeTarget,
        kind: LinkedKind,
        body: Value,
        client: &ClientContext,
    ) -> Result<(Uuid, ItemOutcome), ServiceError> {
        require_writer(actor)?;
        if !self.settings.outcome_tracking {
            return Err(ServiceError::Disabled(
                "outcome tracking is switched off (features.outcome_tracking = false)".to_owned(),
            ));
        }
        let Value::Object(mut body) = body else {
            return Err(ValidationErrors::single("body", "must be a JSON object").into());
        };
        let parent = self.resolve_target(actor, &target).await?;
        let (field, default_type) = match kind {
            LinkedKind::Outcome => ("outcomes", default_outcome_type(&body)),
            LinkedKind::Feedback => ("feedback", "feedback"),
        };
        // Accept both `{"deal_closed": true}` and `{"outcomes": {"deal_closed": true}}`.
        let fields = match body.remove(field) {
            Some(inner) => inner,
            None => {
                let mut inner = Map::new();
                for key in body.keys().cloned().collect::<Vec<_>>() {
                    if !matches!(
                        key.as_str(),
                        "timestamp" | "interaction_id" | "interaction_type" | "metadata"
                    ) {
                        if let Some(value) = body.remove(&key) {
                            inner.insert(key, value);
                        }
                    }
                }
                Value::Object(inner)
            }
        };
        let mut document = Map::new();
        for key in ["interaction_id", "timestamp", "metadata"] {
            if let Some(value) = body.remove(key) {
                document.insert(key.to_owned(), value);
            }
        }
        let interaction_type = body
            .remove("interaction_type")
            .unwrap_or_else(|| Value::String(default_type.to_owned()));
        document.insert("interaction_type".to_owned(), interaction_type);
        document.insert("user_id".to_owned(), Value::String(parent.user_id.clone()));
        document.insert(
            "user_type".to_owned(),
            Value::String(parent.user_type.clone()),
        );
        for (key, value) in [
            ("session_id", &parent.session_id),
            ("conversation_id", &parent.conversation_id),
        ] {
            if let Some(value) = value {
                document.insert(key.to_owned(), Value::String(value.clone()));
            }
        }
        document.insert(
            "parent_interaction_id".to_owned(),
            Value::String(parent.interaction_id.to_string()),
        );
        document.insert(field.to_owned(), fields);
        if let (LinkedKind::Outcome, Some(partner)) = (kind, &parent.partner_id) {
            if let Some(Value::Object(outcomes)) = document.get_mut("outcomes") {
                outcomes
                    .entry("partner_id")
                    .or_insert_with(|| Value::String(partner.clone()));
            }
        }
        // Linked records are written as the parent's user; only the parent's tenant and
        // the caller's right to write it matter here.
        let writer = Principal {
            role: Role::Service,
            ..actor.clone()
        };
        let report = self
            .ingest(&writer, Submission::One(Value::Object(document)), client)
            .await?;
        let outcome = report
            .items
            .into_iter()
            .next()
            .unwrap_or_else(|| unreachable!("one item submitted"));
        Ok((parent.interaction_id, outcome))
    }

    async fn resolve_target(
        &self,
        actor: &Principal,
        target: &OutcomeTarget,
    ) -> Result<Interaction, ServiceError> {
        let found = match target {
            OutcomeTarget::Interaction(id) => {
                let id = parse_id("interaction_id", id)?;
                self.store.get_interaction(&actor.tenant_id, &id).await?
            }
            OutcomeTarget::Conversation(conversation_id) => {
                self.store
                    .latest_in_conversation(&actor.tenant_id, conversation_id)
                    .await?
            }
            OutcomeTarget::UserPartner {
                user_id,
                partner_id,
            } => {
                self.store
                    .latest_with_partner(&actor.tenant_id, user_id, partner_id)
                    .await?
            }
        };
        found
            .filter(|interaction| may_read(actor, interaction))
            .ok_or_else(|| ServiceError::NotFound(format!("target interaction ({target:?})")))
    }

    /// The tenant's quarantine, newest first (admins only).
    pub async fn list_rejected(
        &self,
        actor: &Principal,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Page<RejectedInteraction>, ServiceError> {
        if !actor.is_admin() {
            return Err(ServiceError::Forbidden(
                "the quarantine is for admins".to_owned(),
            ));
        }
        let limit = limit.unwrap_or(DEFAULT_PAGE);
        if limit == 0 || limit > MAX_PAGE {
            return Err(ValidationErrors::single(
                "limit",
                format!("must be between 1 and {MAX_PAGE}"),
            )
            .into());
        }
        let mut items = self
            .store
            .list_rejected(&actor.tenant_id, cursor, limit + 1)
            .await?;
        let next_cursor = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items.last().map(|last| last.id.clone())
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    /// Records an interaction produced by Flywheel itself (a gateway call) without waiting for
    /// the database: validated and enriched here, then enqueued. Never blocks; when the write
    /// queue is full the record is dropped and `Dropped` says so (the caller counts it).
    pub fn record_detached(
        &self,
        actor: &Principal,
        document: Value,
        client: &ClientContext,
    ) -> DetachedRecord {
        if !self.settings.data_collection {
            return DetachedRecord::Disabled;
        }
        match Interaction::parse(document, &actor.tenant_id, now_millis()) {
            Ok(mut interaction) => {
                enrich(&mut interaction, &self.settings.enrich, Some(client));
                let id = interaction.interaction_id;
                if self.writer.write_detached(vec![stored(interaction)]) {
                    DetachedRecord::Queued(id)
                } else {
                    DetachedRecord::Dropped
                }
            }
            Err(errors) => DetachedRecord::Invalid(errors),
        }
    }

    /// Records an API request as an `api_call` interaction without waiting for the database.
    pub fn track_api_call(&self, call: ApiCall) {
        if !self.settings.data_collection {
            return;
        }
        let mut query = Value::Object(call.query);
        redact(&mut query, &self.settings.sensitive_fields);
        let mut document = json!({
            "interaction_type": "api_call",
            "user_id": call.principal.subject.to_string(),
            "user_type": call.principal.role.to_string(),
            "api_call": {
                "method": call.method,
                "route": call.route,
                "status": call.status,
                "latency_ms": call.latency_ms,
                "request_id": call.request_id,
                "query": query,
            },
        });
        if let Some(agent) = &call.client.user_agent {
            document["metadata"] = json!({"user_agent": agent});
        }
        let received_at = now_millis();
        match Interaction::parse(document, &call.principal.tenant_id, received_at) {
            Ok(mut interaction) => {
                enrich(&mut interaction, &self.settings.enrich, Some(&call.client));
                if !self.writer.write_detached(vec![stored(interaction)]) {
                    tracing::warn!("api_call tracking dropped a record: the write queue is full");
                }
            }
            Err(errors) => tracing::warn!(errors = %errors, "api_call record did not validate"),
        }
    }
}

/// Serialises the document here, on the request's own task, so that the single writer task
/// only talks to the database.
fn stored(interaction: Interaction) -> StoredInteraction {
    // Serialising a map with string keys and JSON values cannot fail.
    let document_json = serde_json::to_string(&interaction.document)
        .unwrap_or_else(|_| unreachable!("a JSON object always serialises"));
    StoredInteraction {
        interaction,
        document_json,
    }
}

fn require_writer(actor: &Principal) -> Result<(), ServiceError> {
    // Every role may write; contractors and partners only about themselves (enforced in
    // `prepare`). The check exists so that a future read-only role fails closed here.
    match actor.role {
        Role::Admin | Role::Service | Role::Contractor | Role::Partner => Ok(()),
    }
}

fn may_read(actor: &Principal, interaction: &Interaction) -> bool {
    match actor.role {
        Role::Admin | Role::Service => true,
        Role::Contractor | Role::Partner => interaction.user_id == actor.subject.as_str(),
    }
}

fn default_outcome_type(body: &Map<String, Value>) -> &'static str {
    let fields = body
        .get("outcomes")
        .and_then(Value::as_object)
        .unwrap_or(body);
    let flag = |key: &str| fields.get(key).and_then(Value::as_bool).unwrap_or(false);
    if flag("deal_closed") {
        "deal_closed"
    } else if flag("demo_booked") {
        "demo_booking"
    } else if flag("partner_matched") {
        "partner_match"
    } else {
        "outcome"
    }
}

/// Overlays the outcomes and feedback of `children` (oldest first) onto the parent's.
pub fn merge_view(interaction: Interaction, children: &[Interaction]) -> InteractionView {
    let mut document = interaction.document.clone();
    let mut linked = Vec::new();
    for field in ["outcomes", "feedback"] {
        let mut merged = match document.get(field) {
            Some(Value::Object(map)) => map.clone(),
            _ => Map::new(),
        };
        let mut touched = !merged.is_empty();
        for child in children {
            if let Some(Value::Object(values)) = child.document.get(field) {
                for (key, value) in values {
                    if !value.is_null() {
                        merged.insert(key.clone(), value.clone());
                        touched = true;
                    }
                }
            }
        }
        if touched {
            document.insert(field.to_owned(), Value::Object(merged));
        }
    }
    for child in children {
        linked.push(json!({
            "interaction_id": child.interaction_id.to_string(),
            "interaction_type": child.interaction_type,
            "timestamp": rfc3339(child.timestamp),
        }));
    }
    if !linked.is_empty() {
        document.insert("linked".to_owned(), Value::Array(linked));
    }
    InteractionView {
        interaction,
        document,
    }
}

/// Replaces the value of every key named like a secret, at any depth.
pub fn redact(value: &mut Value, extra: &[String]) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map.iter_mut() {
                let lower = key.to_ascii_lowercase();
                let sensitive = ALWAYS_SENSITIVE.iter().any(|name| lower.contains(name))
                    || extra.iter().any(|name| lower == name.to_ascii_lowercase());
                if sensitive {
                    *inner = Value::String("[REDACTED]".to_owned());
                } else {
                    redact(inner, extra);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| redact(item, extra)),
        _ => {}
    }
}

fn errors_json(errors: &[FieldError]) -> String {
    Value::Array(
        errors
            .iter()
            .map(|e| json!({"field": e.field, "problem": e.problem}))
            .collect(),
    )
    .to_string()
}

fn truncate_utf8(text: &mut String, max: usize) {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
}

fn parse_id(field: &str, raw: &str) -> Result<Uuid, ServiceError> {
    Uuid::parse_str(raw).map_err(|_| ValidationErrors::single(field, "must be a UUID").into())
}

fn parse_time(raw: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(raw)
        .map(|time| time.with_timezone(&Utc))
        .map_err(|err| format!("is not RFC 3339 ({err})"))
}

fn encode_cursor(cursor: &InteractionCursor) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!("{}|{}", cursor.timestamp_ms, cursor.interaction_id))
}

fn decode_cursor(raw: &str) -> Result<InteractionCursor, &'static str> {
    const PROBLEM: &str = "is not a cursor returned by this API";
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(raw)
        .map_err(|_| PROBLEM)?;
    let text = String::from_utf8(bytes).map_err(|_| PROBLEM)?;
    let (millis, id) = text.split_once('|').ok_or(PROBLEM)?;
    Ok(InteractionCursor {
        timestamp_ms: millis.parse().map_err(|_| PROBLEM)?,
        interaction_id: id.to_owned(),
    })
}

fn now_millis() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_reaches_every_depth() {
        let mut value = json!({"user": {"password": "p", "profile": [{"api_key": "k", "name": "n"}]}, "Authorization": "Bearer x", "ssn": "1"});
        redact(&mut value, &["ssn".to_owned()]);
        assert_eq!(value["user"]["password"], "[REDACTED]");
        assert_eq!(value["user"]["profile"][0]["api_key"], "[REDACTED]");
        assert_eq!(value["user"]["profile"][0]["name"], "n");
        assert_eq!(value["Authorization"], "[REDACTED]");
        assert_eq!(value["ssn"], "[REDACTED]");
    }

    #[test]
    fn cursors_round_trip() {
        let cursor = InteractionCursor {
            timestamp_ms: 42,
            interaction_id: "abc".to_owned(),
        };
        assert_eq!(decode_cursor(&encode_cursor(&cursor)).unwrap(), cursor);
        assert!(decode_cursor("!!").is_err());
    }

    #[test]
    fn outcome_types_follow_the_furthest_step() {
        assert_eq!(
            default_outcome_type(json!({"deal_closed": true}).as_object().unwrap()),
            "deal_closed"
        );
        assert_eq!(
            default_outcome_type(
                json!({"outcomes": {"demo_booked": true}})
                    .as_object()
                    .unwrap()
            ),
            "demo_booking"
        );
        assert_eq!(
            default_outcome_type(json!({"satisfaction_score": 3}).as_object().unwrap()),
            "outcome"
        );
    }
}
