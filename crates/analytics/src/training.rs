//! Training data: one JSON line per conversation in OpenAI's chat fine-tuning format,
//! `training-data/labeled/tenant_id=<t>/<dataset>.jsonl` for conversations with feedback or a
//! business outcome and `training-data/unlabeled/…` for the others, each with a manifest
//! (`<dataset>.manifest.json`, see `datasets.rs`).
//!
//! A line: `{"messages": [{"role", "content"}, …], "metadata": {"conversation_id",
//! "started_at", "ended_at", "messages_sha256", "label_source", "label"}}`; unlabeled lines
//! have no `label_source` and `label`.
//!
//! Messages: the `ai_conversation.messages` of the conversation's interactions, in time order
//! (`timestamp`, then `interaction_id`; in a record, the record's order). As in the
//! `conversations` table, a product's own records (e.g. `ai_concierge` with the question and
//! `ai_concierge_response` with the answer) are preferred; the gateway's `ai_completion`
//! records are used only for conversations whose own records hold no assistant message.
//! A gateway record holds the whole prompt plus the answer, so each one contributes only the
//! messages after the last message already taken (found in its prompt by role and content),
//! or all of them when that message is not there (a fresh context). `ai_embedding` records
//! are never used. Then `tool` messages (and unknown roles), and messages without text (an
//! assistant turn that only called tools) are dropped, and so is everything after the last
//! assistant message (a question without an answer teaches nothing). A line needs one user
//! and one assistant message; other conversations are counted in the manifest under
//! `skipped` with the reason.
//!
//! Labels come from the `conversations` table: `feedback` (`helpful`, `accuracy` — the
//! average rating, `would_recommend`, `count`) when it has feedback, `outcome`
//! (`partner_matched`, `partner_id`, `demo_booked`, `deal_closed`, `deal_value`,
//! `satisfaction_score`) when it has an outcome; `label_source` says which of the two, or
//! `feedback+outcome`.
//!
//! Filters ([`TrainingFilters`]): `from`/`to` select conversations by start (both files);
//! `min_rating` keeps labeled conversations whose average accuracy rating is at least the
//! value (unrated ones are left out too), and `outcome` those whose outcome field is true.
//! The manifest counts what each filter left out.
//!
//! Deduplication: by the SHA-256 of the scrubbed messages, normalised (roles, and contents
//! trimmed, lower-cased, white space collapsed); the earliest conversation is kept. Each file
//! is deduplicated on its own, so a label is never lost to an unlabeled twin.
//!
//! Scrubbing (see `scrub.rs`): message contents, the conversation id and the label values;
//! the counts go to the manifest.
//!
//! Memory: the matching documents of the tenant are held in memory (bounded by
//! `DeriveOptions::max_rows`); narrow with `from` for larger tenants.

use std::collections::{BTreeMap, HashMap, HashSet};

use arrow_array::{Array, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::DataType;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::datasets::{
    cast_column, check_row_limit, check_slug, millis_column, run_blocking, utc_millis,
    with_stable_sources, DatasetKind, DatasetManifest, DatasetSource, DatasetTimeRange,
    DeriveOptions, ScrubSummary, TrainingReport, MANIFEST_VERSION,
};
use crate::scrub::{ScrubCounts, Scrubber};
use crate::{Analytics, AnalyticsError, QueryResult, ScalarValue};

/// An outcome a labeled export may require.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeFilter {
    PartnerMatched,
    DemoBooked,
    DealClosed,
}

impl OutcomeFilter {
    pub fn parse(text: &str) -> Option<OutcomeFilter> {
        match text {
            "partner_matched" => Some(OutcomeFilter::PartnerMatched),
            "demo_booked" => Some(OutcomeFilter::DemoBooked),
            "deal_closed" => Some(OutcomeFilter::DealClosed),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeFilter::PartnerMatched => "partner_matched",
            OutcomeFilter::DemoBooked => "demo_booked",
            OutcomeFilter::DealClosed => "deal_closed",
        }
    }
}

/// Which conversations a training export takes (recorded in its manifests).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainingFilters {
    /// Labeled only: the average feedback accuracy (0–10) must be at least this.
    pub min_rating: Option<f64>,
    /// Labeled only: this outcome must be true.
    pub outcome: Option<OutcomeFilter>,
    /// Conversations that started at or after this instant.
    pub from: Option<DateTime<Utc>>,
    /// Conversations that started before this instant.
    pub to: Option<DateTime<Utc>>,
}

impl TrainingFilters {
    pub fn check(&self) -> Result<(), AnalyticsError> {
        if let Some(rating) = self.min_rating {
            if !(0.0..=10.0).contains(&rating) {
                return Err(AnalyticsError::Invalid(format!(
                    "min_rating must be between 0 and 10, not {rating}"
                )));
            }
        }
        if let (Some(from), Some(to)) = (self.from, self.to) {
            if from >= to {
                return Err(AnalyticsError::Invalid(format!(
                    "from ({from}) must be before to ({to})"
                )));
            }
        }
        Ok(())
    }

    /// `column >= $1 AND column < $2` for the bounds that are set (only `from` when
    /// `from_only`), and their parameters.
    fn time_conditions(&self, column: &str, from_only: bool) -> (Vec<String>, Vec<ScalarValue>) {
        let mut conditions = Vec::new();
        let mut params = Vec::new();
        let bounds = [
            (">=", self.from),
            ("<", if from_only { None } else { self.to }),
        ];
        for (op, bound) in bounds {
            if let Some(bound) = bound {
                params.push(ScalarValue::TimestampMillisecond(
                    Some(bound.timestamp_millis()),
                    Some("UTC".into()),
                ));
                conditions.push(format!("{column} {op} ${}", params.len()));
            }
        }
        (conditions, params)
    }
}

/// The columns of `conversations` a label is made of.
const LABELS_SELECT: &str = "SELECT conversation_id, started_at, ended_at, feedback_count, \
    feedback_helpful, feedback_accuracy, feedback_would_recommend, partner_matched, partner_id, \
    demo_booked, deal_closed, deal_value, satisfaction_score FROM conversations";

/// The records that carry messages.
const MESSAGES_SELECT: &str = "SELECT conversation_id, interaction_id, interaction_type, \
    \"timestamp\", document FROM interactions WHERE conversation_id IS NOT NULL \
    AND ai_message_count > 0 AND interaction_type <> 'ai_embedding'";

/// The gateway's call records (see `views.rs`).
const GATEWAY_CHAT: &str = "ai_completion";

impl Analytics {
    /// Writes the tenant's labeled and unlabeled training files named `options.dataset`
    /// (see the module docs) and returns their manifests, labeled first.
    pub async fn export_training(
        &self,
        tenant: &str,
        options: &DeriveOptions,
    ) -> Result<Vec<DatasetManifest>, AnalyticsError> {
        check_slug("tenant id", tenant)?;
        check_slug("dataset name", &options.dataset)?;
        options.filters.check()?;
        let scrubber = Scrubber::new(&options.scrub)?;

        let (label_conditions, label_params) = options.filters.time_conditions("started_at", false);
        let labels_sql = match label_conditions.is_empty() {
            true => LABELS_SELECT.to_owned(),
            false => format!("{LABELS_SELECT} WHERE {}", label_conditions.join(" AND ")),
        };
        // A conversation's messages are never older than its start, so `from` can prune the
        // scan; `to` cannot (a conversation started before it may go on after it).
        let (message_conditions, message_params) =
            options.filters.time_conditions("\"timestamp\"", true);
        let messages_sql = message_conditions
            .iter()
            .fold(MESSAGES_SELECT.to_owned(), |sql, condition| {
                format!("{sql} AND {condition}")
            });

        let (labels_sql_ref, messages_sql_ref) = (labels_sql.as_str(), messages_sql.as_str());
        let (label_params_ref, message_params_ref) = (&label_params, &message_params);
        let ((labels, records), source) = with_stable_sources(self.lake(), || async move {
            let labels = self
                .query_with(
                    tenant,
                    labels_sql_ref,
                    label_params_ref.clone(),
                    options.max_rows,
                    options.timeout,
                )
                .await?;
            check_row_limit(&labels, "conversations", options.max_rows)?;
            let records = self
                .query_with(
                    tenant,
                    messages_sql_ref,
                    message_params_ref.clone(),
                    options.max_rows,
                    options.timeout,
                )
                .await?;
            check_row_limit(&records, "the conversations' messages", options.max_rows)?;
            Ok((labels, records))
        })
        .await?;

        let filters = options.filters.clone();
        let built = run_blocking(move || {
            let labels = read_labels(&labels)?;
            let records = read_records(records)?;
            build(labels, records, &filters, &scrubber)
        })
        .await?;

        let sql = vec![labels_sql, messages_sql];
        let mut manifests = Vec::with_capacity(2);
        for (kind, file) in [
            (DatasetKind::TrainingLabeled, built.labeled),
            (DatasetKind::TrainingUnlabeled, built.unlabeled),
        ] {
            let time_range = match file.started {
                Some((min, max)) => Some(DatasetTimeRange {
                    min: utc_millis(min)?,
                    max: utc_millis(max)?,
                }),
                None => None,
            };
            let mut report = file.report;
            report.scrub = ScrubSummary::of(&options.scrub);
            let manifest = DatasetManifest {
                manifest_version: MANIFEST_VERSION,
                dataset: options.dataset.clone(),
                kind,
                tenant_id: tenant.to_owned(),
                path: kind.data_path(tenant, &options.dataset),
                manifest_path: kind.manifest_path(tenant, &options.dataset),
                format: kind.format().to_owned(),
                row_count: file.rows,
                bytes: 0,
                sha256: String::new(),
                time_range,
                filters: Some(options.filters.clone()),
                created_at: Utc::now(),
                source: DatasetSource {
                    raw_files: source.files.clone(),
                    consistent: source.consistent,
                    sql: sql.clone(),
                },
                training: Some(report),
            };
            manifests.push(self.write_dataset(manifest, file.lines).await?);
        }
        Ok(manifests)
    }
}

/// A conversation's label columns.
#[derive(Debug, Clone, Default, PartialEq)]
struct Label {
    started_ms: i64,
    ended_ms: i64,
    feedback: Option<FeedbackLabel>,
    outcome: Option<OutcomeLabel>,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct FeedbackLabel {
    count: i64,
    helpful: Option<bool>,
    accuracy: Option<f64>,
    would_recommend: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct OutcomeLabel {
    partner_matched: Option<bool>,
    partner_id: Option<String>,
    demo_booked: Option<bool>,
    deal_closed: Option<bool>,
    deal_value: Option<f64>,
    satisfaction_score: Option<f64>,
}

impl OutcomeLabel {
    fn is_empty(&self) -> bool {
        *self == OutcomeLabel::default()
    }

    fn has(&self, filter: OutcomeFilter) -> bool {
        let value = match filter {
            OutcomeFilter::PartnerMatched => self.partner_matched,
            OutcomeFilter::DemoBooked => self.demo_booked,
            OutcomeFilter::DealClosed => self.deal_closed,
        };
        value == Some(true)
    }
}

impl Label {
    fn is_labeled(&self) -> bool {
        self.feedback.is_some() || self.outcome.is_some()
    }

    fn source(&self) -> &'static str {
        match (&self.feedback, &self.outcome) {
            (Some(_), Some(_)) => "feedback+outcome",
            (Some(_), None) => "feedback",
            _ => "outcome",
        }
    }

    fn json(&self) -> Value {
        json!({
            "feedback": self.feedback.as_ref().map(|f| json!({
                "helpful": f.helpful,
                "accuracy": f.accuracy,
                "would_recommend": f.would_recommend,
                "count": f.count,
            })),
            "outcome": self.outcome.as_ref().map(|o| json!({
                "partner_matched": o.partner_matched,
                "partner_id": o.partner_id,
                "demo_booked": o.demo_booked,
                "deal_closed": o.deal_closed,
                "deal_value": o.deal_value,
                "satisfaction_score": o.satisfaction_score,
            })),
        })
    }
}

/// One interaction that carries messages, its document not yet parsed.
#[derive(Debug, Clone, PartialEq)]
struct Record {
    timestamp_ms: i64,
    interaction_id: String,
    gateway: bool,
    document: String,
}

/// A message as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Message {
    role: String,
    content: String,
}

impl Message {
    fn is(&self, role: &str) -> bool {
        self.role == role
    }
}

/// The part of a stored document this module reads.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Document {
    ai_conversation: Option<DocumentConversation>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct DocumentConversation {
    messages: Vec<DocumentMessage>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct DocumentMessage {
    role: Option<String>,
    content: Option<Value>,
}

fn column<T: Array + Clone + 'static>(
    batch: &RecordBatch,
    name: &str,
    data_type: &DataType,
) -> Result<T, AnalyticsError> {
    let missing = || AnalyticsError::Engine(format!("the derivation query lacks column {name}"));
    let array = batch.column_by_name(name).ok_or_else(missing)?;
    let cast = cast_column(array, data_type)?;
    cast.as_any()
        .downcast_ref::<T>()
        .cloned()
        .ok_or_else(missing)
}

fn millis(batch: &RecordBatch, name: &str) -> Result<Int64Array, AnalyticsError> {
    millis_column(batch, name)?
        .ok_or_else(|| AnalyticsError::Engine(format!("the derivation query lacks column {name}")))
}

fn opt_bool(array: &BooleanArray, idx: usize) -> Option<bool> {
    array.is_valid(idx).then(|| array.value(idx))
}

fn opt_f64(array: &Float64Array, idx: usize) -> Option<f64> {
    array.is_valid(idx).then(|| array.value(idx))
}

fn opt_i64(array: &Int64Array, idx: usize) -> Option<i64> {
    array.is_valid(idx).then(|| array.value(idx))
}

fn read_labels(result: &QueryResult) -> Result<HashMap<String, Label>, AnalyticsError> {
    let mut labels = HashMap::with_capacity(result.rows);
    for batch in &result.batches {
        let ids: StringArray = column(batch, "conversation_id", &DataType::Utf8)?;
        let started = millis(batch, "started_at")?;
        let ended = millis(batch, "ended_at")?;
        let count: Int64Array = column(batch, "feedback_count", &DataType::Int64)?;
        let helpful: BooleanArray = column(batch, "feedback_helpful", &DataType::Boolean)?;
        let accuracy: Float64Array = column(batch, "feedback_accuracy", &DataType::Float64)?;
        let recommend: BooleanArray =
            column(batch, "feedback_would_recommend", &DataType::Boolean)?;
        let matched: BooleanArray = column(batch, "partner_matched", &DataType::Boolean)?;
        let partner: StringArray = column(batch, "partner_id", &DataType::Utf8)?;
        let demo: BooleanArray = column(batch, "demo_booked", &DataType::Boolean)?;
        let deal: BooleanArray = column(batch, "deal_closed", &DataType::Boolean)?;
        let value: Float64Array = column(batch, "deal_value", &DataType::Float64)?;
        let satisfaction: Float64Array = column(batch, "satisfaction_score", &DataType::Float64)?;
        for idx in 0..batch.num_rows() {
            if !ids.is_valid(idx) {
                continue;
            }
            let n_feedback = opt_i64(&count, idx).unwrap_or(0);
            let feedback = (n_feedback > 0).then(|| FeedbackLabel {
                count: n_feedback,
                helpful: opt_bool(&helpful, idx),
                accuracy: opt_f64(&accuracy, idx),
                would_recommend: opt_bool(&recommend, idx),
            });
            let outcome = OutcomeLabel {
                partner_matched: opt_bool(&matched, idx),
                partner_id: partner.is_valid(idx).then(|| partner.value(idx).to_owned()),
                demo_booked: opt_bool(&demo, idx),
                deal_closed: opt_bool(&deal, idx),
                deal_value: opt_f64(&value, idx),
                satisfaction_score: opt_f64(&satisfaction, idx),
            };
            labels.insert(
                ids.value(idx).to_owned(),
                Label {
                    started_ms: opt_i64(&started, idx).unwrap_or(0),
                    ended_ms: opt_i64(&ended, idx).unwrap_or(0),
                    feedback,
                    outcome: (!outcome.is_empty()).then_some(outcome),
                },
            );
        }
    }
    Ok(labels)
}

/// The records grouped by conversation (the query result is consumed batch by batch).
fn read_records(result: QueryResult) -> Result<HashMap<String, Vec<Record>>, AnalyticsError> {
    let mut records: HashMap<String, Vec<Record>> = HashMap::new();
    for batch in result.batches {
        let conversations: StringArray = column(&batch, "conversation_id", &DataType::Utf8)?;
        let ids: StringArray = column(&batch, "interaction_id", &DataType::Utf8)?;
        let types: StringArray = column(&batch, "interaction_type", &DataType::Utf8)?;
        let times = millis(&batch, "timestamp")?;
        let documents: StringArray = column(&batch, "document", &DataType::Utf8)?;
        for idx in 0..batch.num_rows() {
            if !conversations.is_valid(idx) {
                continue;
            }
            records
                .entry(conversations.value(idx).to_owned())
                .or_default()
                .push(Record {
                    timestamp_ms: times.value(idx),
                    interaction_id: ids.value(idx).to_owned(),
                    gateway: types.value(idx) == GATEWAY_CHAT,
                    document: documents.value(idx).to_owned(),
                });
        }
    }
    Ok(records)
}

/// One training file being built.
#[derive(Debug, Default)]
struct FileOut {
    lines: Vec<u8>,
    rows: u64,
    /// Earliest and latest start of the conversations written.
    started: Option<(i64, i64)>,
    report: TrainingReport,
    seen: HashSet<String>,
}

impl FileOut {
    fn count(map: &mut BTreeMap<String, u64>, key: &str) {
        *map.entry(key.to_owned()).or_default() += 1;
    }
}

#[derive(Debug, Default)]
struct Built {
    labeled: FileOut,
    unlabeled: FileOut,
}

/// Both files from the labels and records, conversations in start order.
fn build(
    labels: HashMap<String, Label>,
    mut records: HashMap<String, Vec<Record>>,
    filters: &TrainingFilters,
    scrubber: &Scrubber,
) -> Result<Built, AnalyticsError> {
    let mut conversations: Vec<(String, Label)> = labels.into_iter().collect();
    conversations.sort_by(|a, b| (a.1.started_ms, &a.0).cmp(&(b.1.started_ms, &b.0)));
    let mut built = Built::default();
    for (conversation_id, label) in conversations {
        let labeled = label.is_labeled();
        let out = if labeled {
            &mut built.labeled
        } else {
            &mut built.unlabeled
        };
        out.report.conversations += 1;
        if labeled {
            if let Some(min) = filters.min_rating {
                let rating = label.feedback.as_ref().and_then(|f| f.accuracy);
                if !rating.is_some_and(|rating| rating >= min) {
                    FileOut::count(&mut out.report.filtered, "min_rating");
                    continue;
                }
            }
            if let Some(outcome) = filters.outcome {
                if !label.outcome.as_ref().is_some_and(|o| o.has(outcome)) {
                    FileOut::count(&mut out.report.filtered, "outcome");
                    continue;
                }
            }
        }
        let conversation_records = records.remove(&conversation_id).unwrap_or_default();
        let (messages, unreadable) = assemble(conversation_records);
        if unreadable > 0 {
            tracing::warn!(conversation = %conversation_id, records = unreadable, "unreadable interaction documents in a training export");
            *out.report
                .skipped
                .entry("unreadable_record".to_owned())
                .or_default() += unreadable;
        }
        let messages = match clean(messages) {
            Ok(messages) => messages,
            Err(reason) => {
                FileOut::count(&mut out.report.skipped, reason);
                continue;
            }
        };
        let mut counts = ScrubCounts::default();
        let messages: Vec<Message> = messages
            .into_iter()
            .map(|message| Message {
                content: scrubber.content(&message.content, &mut counts),
                role: message.role,
            })
            .collect();
        let hash = messages_hash(&messages);
        if !out.seen.insert(hash.clone()) {
            out.report.duplicates_dropped += 1;
            continue;
        }
        let mut metadata = Map::new();
        metadata.insert("conversation_id".into(), json!(conversation_id));
        if labeled {
            metadata.insert("label".into(), label.json());
        }
        let mut metadata = Value::Object(metadata);
        scrubber.json(&mut metadata, &mut counts);
        if let Value::Object(map) = &mut metadata {
            map.insert("started_at".into(), json!(rfc3339(label.started_ms)?));
            map.insert("ended_at".into(), json!(rfc3339(label.ended_ms)?));
            map.insert("messages_sha256".into(), json!(hash));
            if labeled {
                map.insert("label_source".into(), json!(label.source()));
            }
        }
        let line = json!({
            "messages": messages
                .iter()
                .map(|m| json!({"role": m.role, "content": m.content}))
                .collect::<Vec<_>>(),
            "metadata": metadata,
        });
        serde_json::to_writer(&mut out.lines, &line).map_err(|err| {
            AnalyticsError::Engine(format!("cannot encode a training line: {err}"))
        })?;
        out.lines.push(b'\n');
        out.rows += 1;
        out.report.scrubbed.add(counts);
        out.started = Some(match out.started {
            None => (label.started_ms, label.started_ms),
            Some((min, max)) => (min.min(label.started_ms), max.max(label.started_ms)),
        });
    }
    Ok(built)
}

fn rfc3339(ms: i64) -> Result<String, AnalyticsError> {
    Ok(utc_millis(ms)?.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// A conversation's messages from its records (see the module docs), and how many records
/// could not be parsed.
fn assemble(mut records: Vec<Record>) -> (Vec<Message>, u64) {
    records.sort_by(|a, b| {
        (a.timestamp_ms, &a.interaction_id).cmp(&(b.timestamp_ms, &b.interaction_id))
    });
    let mut unreadable = 0;
    let mut own: Vec<Message> = Vec::new();
    let mut gateway: Vec<Vec<Message>> = Vec::new();
    for record in &records {
        let document: Document = match serde_json::from_str(&record.document) {
            Ok(document) => document,
            Err(_) => {
                unreadable += 1;
                continue;
            }
        };
        let messages: Vec<Message> = document
            .ai_conversation
            .map(|conversation| conversation.messages)
            .unwrap_or_default()
            .into_iter()
            .map(|message| Message {
                role: message.role.unwrap_or_default(),
                content: match message.content {
                    Some(Value::String(text)) => text,
                    _ => String::new(),
                },
            })
            .collect();
        if record.gateway {
            gateway.push(messages);
        } else {
            own.extend(messages);
        }
    }
    let own_answers = own
        .iter()
        .any(|m| m.is("assistant") && !m.content.trim().is_empty());
    let messages = if own_answers || gateway.is_empty() {
        own
    } else {
        align_gateway(gateway)
    };
    (messages, unreadable)
}

/// Joins gateway records, each holding its whole prompt and then the answer.
fn align_gateway(calls: Vec<Vec<Message>>) -> Vec<Message> {
    let mut transcript: Vec<Message> = Vec::new();
    for call in calls {
        let Some(last) = transcript.last() else {
            transcript = call;
            continue;
        };
        // The prompt is everything but a final answer.
        let prompt_len = match call.last() {
            Some(message) if message.is("assistant") => call.len() - 1,
            _ => call.len(),
        };
        let known = call[..prompt_len]
            .iter()
            .rposition(|message| message == last);
        let new_from = known.map_or(0, |idx| idx + 1);
        transcript.extend(call.into_iter().skip(new_from));
    }
    transcript
}

/// Drops tool messages, unknown roles and messages without text, and everything after the
/// last answer; the reason when no training example is left.
fn clean(messages: Vec<Message>) -> Result<Vec<Message>, &'static str> {
    let mut kept: Vec<Message> = messages
        .into_iter()
        .filter(|m| matches!(m.role.as_str(), "user" | "assistant" | "system"))
        .filter(|m| !m.content.trim().is_empty())
        .collect();
    if kept.is_empty() {
        return Err("no_messages");
    }
    let Some(last_answer) = kept.iter().rposition(|m| m.is("assistant")) else {
        return Err("no_assistant_message");
    };
    kept.truncate(last_answer + 1);
    if !kept.iter().any(|m| m.is("user")) {
        return Err("no_user_message");
    }
    Ok(kept)
}

/// SHA-256 of the normalised messages, lower-case hex.
fn messages_hash(messages: &[Message]) -> String {
    let mut hasher = Sha256::new();
    for message in messages {
        let normalised = message
            .content
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase();
        hasher.update(message.role.as_bytes());
        hasher.update([0x1f]);
        hasher.update(normalised.as_bytes());
        hasher.update([0x1e]);
    }
    hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::scrub::ScrubRules;

    use super::*;

    fn message(role: &str, content: &str) -> Message {
        Message {
            role: role.to_owned(),
            content: content.to_owned(),
        }
    }

    fn record(ms: i64, id: &str, gateway: bool, messages: &[(&str, &str)]) -> Record {
        let messages: Vec<Value> = messages
            .iter()
            .map(|(role, content)| json!({"role": role, "content": content}))
            .collect();
        Record {
            timestamp_ms: ms,
            interaction_id: id.to_owned(),
            gateway,
            document: json!({"ai_conversation": {"messages": messages}}).to_string(),
        }
    }

    fn scrubber() -> Scrubber {
        match Scrubber::new(&ScrubRules::default()) {
            Ok(scrubber) => scrubber,
            Err(err) => panic!("{err}"),
        }
    }

    #[test]
    fn gateway_calls_are_joined_without_repeating_the_prompt() {
        let calls = vec![
            vec![
                message("system", "be brief"),
                message("user", "hi"),
                message("assistant", "hello"),
            ],
            // A failed call: the prompt only.
            vec![
                message("system", "be brief"),
                message("user", "hi"),
                message("assistant", "hello"),
                message("user", "price?"),
            ],
            // Its retry.
            vec![
                message("system", "be brief"),
                message("user", "hi"),
                message("assistant", "hello"),
                message("user", "price?"),
                message("assistant", "ten"),
            ],
            // The client trimmed its context.
            vec![
                message("system", "be brief"),
                message("assistant", "ten"),
                message("user", "ok"),
                message("assistant", "ok"),
            ],
        ];
        assert_eq!(
            align_gateway(calls),
            vec![
                message("system", "be brief"),
                message("user", "hi"),
                message("assistant", "hello"),
                message("user", "price?"),
                message("assistant", "ten"),
                message("user", "ok"),
                message("assistant", "ok"),
            ]
        );
    }

    #[test]
    fn own_records_win_over_gateway_records() {
        let records = vec![
            record(2, "b", false, &[("assistant", "own answer")]),
            record(1, "a", false, &[("user", "own question")]),
            record(
                1,
                "g",
                true,
                &[("user", "own question"), ("assistant", "gateway answer")],
            ),
        ];
        let (messages, unreadable) = assemble(records);
        assert_eq!(unreadable, 0);
        assert_eq!(
            messages,
            vec![
                message("user", "own question"),
                message("assistant", "own answer")
            ]
        );
        // Without an own answer the gateway's records are used.
        let records = vec![
            record(1, "a", false, &[("user", "own question")]),
            record(
                1,
                "g",
                true,
                &[("user", "q"), ("assistant", "gateway answer")],
            ),
        ];
        assert_eq!(
            assemble(records).0,
            vec![message("user", "q"), message("assistant", "gateway answer")]
        );
        let mut broken = record(3, "x", false, &[]);
        broken.document = "{not json".to_owned();
        assert_eq!(assemble(vec![broken]).1, 1);
    }

    #[test]
    fn cleaning_drops_tools_empty_messages_and_unanswered_questions() {
        let messages = vec![
            message("system", "s"),
            message("user", "q"),
            message("assistant", ""),
            message("tool", "{\"result\": 1}"),
            message("assistant", "a"),
            message("user", "unanswered"),
        ];
        assert_eq!(
            clean(messages),
            Ok(vec![
                message("system", "s"),
                message("user", "q"),
                message("assistant", "a")
            ])
        );
        assert_eq!(
            clean(vec![message("user", "q")]),
            Err("no_assistant_message")
        );
        assert_eq!(
            clean(vec![message("assistant", "a")]),
            Err("no_user_message")
        );
        assert_eq!(clean(vec![message("tool", "x")]), Err("no_messages"));
    }

    #[test]
    fn the_hash_ignores_case_and_white_space_only() {
        let a = messages_hash(&[
            message("user", "Hello  there\n"),
            message("assistant", "Hi"),
        ]);
        let b = messages_hash(&[message("user", "hello there"), message("assistant", "hi")]);
        let c = messages_hash(&[message("user", "hello there"), message("user", "hi")]);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    fn label(started_ms: i64, accuracy: Option<f64>, deal: Option<bool>) -> Label {
        Label {
            started_ms,
            ended_ms: started_ms + 1,
            feedback: accuracy.map(|accuracy| FeedbackLabel {
                count: 1,
                accuracy: Some(accuracy),
                ..FeedbackLabel::default()
            }),
            outcome: deal.map(|deal| OutcomeLabel {
                deal_closed: Some(deal),
                ..OutcomeLabel::default()
            }),
        }
    }

    fn lines(file: &FileOut) -> Vec<Value> {
        String::from_utf8_lossy(&file.lines)
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or(Value::Null))
            .collect()
    }

    #[test]
    fn build_sorts_filters_and_deduplicates() {
        let dialogue = [("user", "hi, I am jo@x.io"), ("assistant", "hello")];
        let labels = HashMap::from([
            ("c-late".to_owned(), label(30, Some(9.0), None)),
            ("c-early".to_owned(), label(10, Some(9.0), Some(true))),
            ("c-low".to_owned(), label(20, Some(2.0), None)),
            ("c-none".to_owned(), label(5, None, None)),
            ("c-empty".to_owned(), label(6, None, None)),
        ]);
        let records = HashMap::from([
            ("c-late".to_owned(), vec![record(30, "1", false, &dialogue)]),
            (
                "c-early".to_owned(),
                vec![record(10, "2", false, &dialogue)],
            ),
            (
                "c-low".to_owned(),
                vec![record(20, "3", false, &[("user", "q"), ("assistant", "a")])],
            ),
            (
                "c-none".to_owned(),
                vec![record(5, "4", false, &[("user", "q"), ("assistant", "a")])],
            ),
            (
                "c-empty".to_owned(),
                vec![record(6, "5", false, &[("user", "q")])],
            ),
        ]);
        let filters = TrainingFilters {
            min_rating: Some(5.0),
            ..TrainingFilters::default()
        };
        let built = match build(labels, records, &filters, &scrubber()) {
            Ok(built) => built,
            Err(err) => panic!("{err}"),
        };
        let labeled = lines(&built.labeled);
        assert_eq!(labeled.len(), 1, "{labeled:?}");
        assert_eq!(labeled[0]["metadata"]["conversation_id"], json!("c-early"));
        assert_eq!(
            labeled[0]["metadata"]["label_source"],
            json!("feedback+outcome")
        );
        assert_eq!(
            labeled[0]["messages"][0]["content"],
            json!("hi, I am [EMAIL]")
        );
        let report = &built.labeled.report;
        assert_eq!(report.conversations, 3);
        assert_eq!(report.duplicates_dropped, 1);
        assert_eq!(report.filtered.get("min_rating"), Some(&1));
        assert_eq!(report.scrubbed.emails, 1, "counted for written lines only");
        assert_eq!(built.labeled.started, Some((10, 10)));

        let unlabeled = lines(&built.unlabeled);
        assert_eq!(unlabeled.len(), 1);
        assert_eq!(unlabeled[0]["metadata"]["conversation_id"], json!("c-none"));
        assert!(unlabeled[0]["metadata"].get("label").is_none());
        assert_eq!(
            built.unlabeled.report.skipped.get("no_assistant_message"),
            Some(&1)
        );
    }

    #[test]
    fn filters_are_checked() {
        let bad = [
            TrainingFilters {
                min_rating: Some(11.0),
                ..TrainingFilters::default()
            },
            TrainingFilters {
                min_rating: Some(f64::NAN),
                ..TrainingFilters::default()
            },
            TrainingFilters {
                from: DateTime::from_timestamp_millis(10),
                to: DateTime::from_timestamp_millis(10),
                ..TrainingFilters::default()
            },
        ];
        for filters in bad {
            assert!(
                matches!(filters.check(), Err(AnalyticsError::Invalid(_))),
                "{filters:?}"
            );
        }
        assert!(TrainingFilters::default().check().is_ok());
        assert_eq!(
            OutcomeFilter::parse("deal_closed"),
            Some(OutcomeFilter::DealClosed)
        );
        assert_eq!(OutcomeFilter::parse("deal"), None);
    }
}
