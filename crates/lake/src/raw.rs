//! The `raw` dataset: one row per interaction, typed columns for the contract's fields
//! (flattened: `ai_total_tokens`, `outcomes_deal_value`, …) plus the full enriched document
//! as JSON, so nothing is lost and common queries need no JSON parsing.

use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Float64Builder, Int32Builder, Int64Builder, StringBuilder,
    TimestampMillisecondBuilder,
};
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray, TimestampMillisecondArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use bytes::Bytes;
use std::borrow::Cow;

use flywheel_core::interaction::InteractionRecord;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::{Compression, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use serde::Deserialize;
use serde_json::value::RawValue;

pub const RAW_DATASET: &str = "raw";

/// What `flywheel lake verify` needs of each lake row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawIndexEntry {
    pub file: String,
    pub tenant_id: String,
    pub interaction_id: String,
    pub timestamp_ms: i64,
}

fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

/// Typed columns after the identifying ones, in schema order.
const TEXT: DataType = DataType::Utf8;
const COLUMNS: &[(&str, DataType)] = &[
    ("session_id", TEXT),
    ("conversation_id", TEXT),
    ("parent_interaction_id", TEXT),
    ("ai_total_tokens", DataType::Int64),
    ("ai_cost", DataType::Float64),
    ("ai_duration_ms", DataType::Int64),
    ("outcomes_partner_matched", DataType::Boolean),
    ("outcomes_partner_id", TEXT),
    ("outcomes_match_score", DataType::Float64),
    ("outcomes_demo_booked", DataType::Boolean),
    ("outcomes_deal_closed", DataType::Boolean),
    ("outcomes_deal_value", DataType::Float64),
    ("outcomes_satisfaction_score", DataType::Float64),
    ("feedback_helpful", DataType::Boolean),
    ("feedback_accuracy", DataType::Float64),
    ("feedback_would_recommend", DataType::Boolean),
    ("feedback_comments", TEXT),
    ("metadata_app_version", TEXT),
    ("metadata_api_version", TEXT),
    ("metadata_environment", TEXT),
    ("metadata_client_ip", TEXT),
    ("metadata_device_type", TEXT),
    ("metadata_browser", TEXT),
    ("metadata_os", TEXT),
    ("metadata_referrer", TEXT),
    ("metadata_country", TEXT),
    ("metadata_state", TEXT),
    ("metadata_city", TEXT),
    ("ai_message_count", DataType::Int64),
    ("ai_model", TEXT),
    ("experiments", TEXT),
];

/// The schema of the `raw` dataset (partition columns `year`, `month`, `day` are in the path).
pub fn raw_schema() -> SchemaRef {
    let mut fields = vec![
        Field::new("interaction_id", DataType::Utf8, false),
        Field::new("tenant_id", DataType::Utf8, false),
        Field::new("timestamp", timestamp_type(), false),
        Field::new("received_at", timestamp_type(), false),
        Field::new("interaction_type", DataType::Utf8, false),
        Field::new("user_id", DataType::Utf8, false),
        Field::new("user_type", DataType::Utf8, false),
    ];
    for (name, data_type) in COLUMNS {
        fields.push(Field::new(*name, data_type.clone(), true));
    }
    fields.push(Field::new("schema_version", DataType::Int32, false));
    fields.push(Field::new("document", DataType::Utf8, false));
    Arc::new(Schema::new(fields))
}

/// The typed fields of a stored document, read without building a `serde_json::Value`
/// (strings are borrowed from the JSON text where they need no unescaping). Every field
/// here is type-checked at ingestion, so the parse only fails on a corrupt document.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Flat<'a> {
    #[serde(borrow)]
    session_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    conversation_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    parent_interaction_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    ai_conversation: Option<Ai<'a>>,
    #[serde(borrow)]
    outcomes: Option<Outcomes<'a>>,
    #[serde(borrow)]
    feedback: Option<Feedback<'a>>,
    #[serde(borrow)]
    metadata: Option<Metadata<'a>>,
    #[serde(borrow)]
    experiments: Option<&'a RawValue>,
    schema_version: Option<i32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Ai<'a> {
    total_tokens: Option<u64>,
    cost: Option<f64>,
    duration_ms: Option<u64>,
    #[serde(borrow)]
    messages: Option<Vec<Message<'a>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Message<'a> {
    #[serde(borrow)]
    model: Option<Cow<'a, str>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Outcomes<'a> {
    partner_matched: Option<bool>,
    #[serde(borrow)]
    partner_id: Option<Cow<'a, str>>,
    match_score: Option<f64>,
    demo_booked: Option<bool>,
    deal_closed: Option<bool>,
    deal_value: Option<f64>,
    satisfaction_score: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Feedback<'a> {
    helpful: Option<bool>,
    accuracy: Option<f64>,
    would_recommend: Option<bool>,
    #[serde(borrow)]
    comments: Option<Cow<'a, str>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Metadata<'a> {
    #[serde(borrow)]
    app_version: Option<Cow<'a, str>>,
    #[serde(borrow)]
    api_version: Option<Cow<'a, str>>,
    #[serde(borrow)]
    environment: Option<Cow<'a, str>>,
    #[serde(borrow)]
    client_ip: Option<Cow<'a, str>>,
    #[serde(borrow)]
    device_type: Option<Cow<'a, str>>,
    #[serde(borrow)]
    browser: Option<Cow<'a, str>>,
    #[serde(borrow)]
    os: Option<Cow<'a, str>>,
    #[serde(borrow)]
    referrer: Option<Cow<'a, str>>,
    #[serde(borrow)]
    location: Option<Location<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Location<'a> {
    #[serde(borrow)]
    country: Option<Cow<'a, str>>,
    #[serde(borrow)]
    state: Option<Cow<'a, str>>,
    #[serde(borrow)]
    city: Option<Cow<'a, str>>,
}

/// One value per typed column for one row.
enum Cell<'a> {
    Text(Option<&'a str>),
    Int(Option<i64>),
    Float(Option<f64>),
    Bool(Option<bool>),
}

fn cells<'a>(flat: &'a Flat<'a>) -> Vec<Cell<'a>> {
    let ai = flat.ai_conversation.as_ref();
    let outcomes = flat.outcomes.as_ref();
    let feedback = flat.feedback.as_ref();
    let metadata = flat.metadata.as_ref();
    let location = metadata.and_then(|m| m.location.as_ref());
    let text = |value: Option<&'a Cow<'a, str>>| Cell::Text(value.map(|v| v.as_ref()));
    let count = |value: Option<u64>| Cell::Int(value.map(|v| i64::try_from(v).unwrap_or(i64::MAX)));
    let messages = ai.and_then(|a| a.messages.as_ref());
    vec![
        text(flat.session_id.as_ref()),
        text(flat.conversation_id.as_ref()),
        text(flat.parent_interaction_id.as_ref()),
        count(ai.and_then(|a| a.total_tokens)),
        Cell::Float(ai.and_then(|a| a.cost)),
        count(ai.and_then(|a| a.duration_ms)),
        Cell::Bool(outcomes.and_then(|o| o.partner_matched)),
        text(outcomes.and_then(|o| o.partner_id.as_ref())),
        Cell::Float(outcomes.and_then(|o| o.match_score)),
        Cell::Bool(outcomes.and_then(|o| o.demo_booked)),
        Cell::Bool(outcomes.and_then(|o| o.deal_closed)),
        Cell::Float(outcomes.and_then(|o| o.deal_value)),
        Cell::Float(outcomes.and_then(|o| o.satisfaction_score)),
        Cell::Bool(feedback.and_then(|f| f.helpful)),
        Cell::Float(feedback.and_then(|f| f.accuracy)),
        Cell::Bool(feedback.and_then(|f| f.would_recommend)),
        text(feedback.and_then(|f| f.comments.as_ref())),
        text(metadata.and_then(|m| m.app_version.as_ref())),
        text(metadata.and_then(|m| m.api_version.as_ref())),
        text(metadata.and_then(|m| m.environment.as_ref())),
        text(metadata.and_then(|m| m.client_ip.as_ref())),
        text(metadata.and_then(|m| m.device_type.as_ref())),
        text(metadata.and_then(|m| m.browser.as_ref())),
        text(metadata.and_then(|m| m.os.as_ref())),
        text(metadata.and_then(|m| m.referrer.as_ref())),
        text(location.and_then(|l| l.country.as_ref())),
        text(location.and_then(|l| l.state.as_ref())),
        text(location.and_then(|l| l.city.as_ref())),
        Cell::Int(messages.map(|m| m.len() as i64)),
        // The model that answered: the last message naming one.
        text(messages.and_then(|m| m.iter().rev().find_map(|msg| msg.model.as_ref()))),
        Cell::Text(flat.experiments.map(RawValue::get)),
    ]
}

/// Builds a record batch of the raw schema from stored interactions.
pub fn to_record_batch(
    rows: &[&InteractionRecord],
) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let n = rows.len();
    let flats: Vec<Flat<'_>> = rows
        .iter()
        .map(|row| {
            serde_json::from_str(&row.document_json).unwrap_or_else(|err| {
                tracing::warn!(interaction_id = %row.interaction_id, error = %err,
                    "stored document does not match the contract's types; typed columns left empty");
                Flat::default()
            })
        })
        .collect();
    let text = |values: &mut dyn Iterator<Item = &str>| -> ArrayRef {
        let mut builder = StringBuilder::with_capacity(n, n * 16);
        for value in values {
            builder.append_value(value);
        }
        Arc::new(builder.finish())
    };
    let time = |values: &mut dyn Iterator<Item = i64>| -> ArrayRef {
        let mut builder = TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
        for value in values {
            builder.append_value(value);
        }
        Arc::new(builder.finish())
    };
    let mut columns: Vec<ArrayRef> = vec![
        text(&mut rows.iter().map(|r| r.interaction_id.as_str())),
        text(&mut rows.iter().map(|r| r.tenant_id.as_str())),
        time(&mut rows.iter().map(|r| r.timestamp_ms)),
        time(&mut rows.iter().map(|r| r.received_at_ms)),
        text(&mut rows.iter().map(|r| r.interaction_type.as_str())),
        text(&mut rows.iter().map(|r| r.user_id.as_str())),
        text(&mut rows.iter().map(|r| r.user_type.as_str())),
    ];
    let row_cells: Vec<Vec<Cell<'_>>> = flats.iter().map(cells).collect();
    // One builder per column, filled from the matching cell of every row.
    macro_rules! column {
        ($builder:expr, $variant:ident, $idx:expr) => {{
            let mut builder = $builder;
            for cells in &row_cells {
                builder.append_option(match cells[$idx] {
                    Cell::$variant(value) => value,
                    _ => None,
                });
            }
            Arc::new(builder.finish()) as ArrayRef
        }};
    }
    for (idx, (_, data_type)) in COLUMNS.iter().enumerate() {
        let column = match data_type {
            DataType::Int64 => column!(Int64Builder::with_capacity(n), Int, idx),
            DataType::Float64 => column!(Float64Builder::with_capacity(n), Float, idx),
            DataType::Boolean => column!(BooleanBuilder::with_capacity(n), Bool, idx),
            _ => column!(StringBuilder::with_capacity(n, n * 8), Text, idx),
        };
        columns.push(column);
    }
    let mut schema_version = Int32Builder::with_capacity(n);
    for flat in &flats {
        schema_version.append_value(flat.schema_version.unwrap_or(1));
    }
    columns.push(Arc::new(schema_version.finish()));
    columns.push(text(&mut rows.iter().map(|r| r.document_json.as_str())));
    RecordBatch::try_new(raw_schema(), columns)
}

/// How every lake file is written: zstd level 3.
pub(crate) fn writer_properties() -> Result<WriterProperties, ParquetError> {
    // Unique per row: a dictionary never pays off and min/max statistics of whole documents
    // help no query, so both are skipped for these columns (it halves the encoding time).
    let unique = ["document", "interaction_id"].map(ColumnPath::from);
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
        .set_created_by("flywheel".to_owned());
    for column in unique {
        builder = builder.set_column_dictionary_enabled(column.clone(), false);
    }
    builder = builder
        .set_column_statistics_enabled(ColumnPath::from("document"), EnabledStatistics::None);
    Ok(builder.build())
}

pub(crate) fn encode_parquet(rows: &[&InteractionRecord]) -> Result<Bytes, ParquetError> {
    let batch = to_record_batch(rows)?;
    let properties = writer_properties()?;
    let mut buffer = Vec::with_capacity(rows.len() * 512);
    let mut writer = ArrowWriter::try_new(&mut buffer, batch.schema(), Some(properties))?;
    writer.write(&batch)?;
    writer.close()?;
    Ok(Bytes::from(buffer))
}

pub(crate) fn read_index(bytes: Bytes, file: &str) -> Result<Vec<RawIndexEntry>, ParquetError> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes)?;
    let schema = builder.parquet_schema();
    let wanted: Vec<usize> = ["interaction_id", "tenant_id", "timestamp"]
        .iter()
        .filter_map(|name| schema.columns().iter().position(|c| c.name() == *name))
        .collect();
    if wanted.len() != 3 {
        return Err(ParquetError::General(format!(
            "{file} lacks interaction_id, tenant_id or timestamp"
        )));
    }
    let mask = ProjectionMask::leaves(schema, wanted);
    let reader = builder.with_projection(mask).build()?;
    let mut entries = Vec::new();
    for batch in reader {
        let batch = batch?;
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .ok_or_else(|| ParquetError::General(format!("{file}: no column {name}")))
        };
        let ids = column("interaction_id")?;
        let tenants = column("tenant_id")?;
        let times = column("timestamp")?;
        let (Some(ids), Some(tenants), Some(times)) = (
            ids.as_any().downcast_ref::<StringArray>(),
            tenants.as_any().downcast_ref::<StringArray>(),
            times.as_any().downcast_ref::<TimestampMillisecondArray>(),
        ) else {
            return Err(ParquetError::General(format!(
                "{file}: unexpected column types"
            )));
        };
        for idx in 0..batch.num_rows() {
            entries.push(RawIndexEntry {
                file: file.to_owned(),
                tenant_id: tenants.value(idx).to_owned(),
                interaction_id: ids.value(idx).to_owned(),
                timestamp_ms: times.value(idx),
            });
        }
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use flywheel_core::TenantId;
    use serde_json::json;

    use super::*;

    fn sample(day: u32, deal: f64) -> InteractionRecord {
        let received = Utc.with_ymd_and_hms(2026, 11, day, 12, 0, 0).unwrap();
        let interaction = flywheel_core::Interaction::parse(
            json!({
                "interaction_type": "ai_concierge", "user_id": "c1", "user_type": "contractor",
                "timestamp": format!("2026-11-{day:02}T11:00:00Z"),
                "ai_conversation": {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello", "model": "gpt-4o"}], "total_tokens": 42, "cost": 0.01},
                "outcomes": {"deal_closed": true, "deal_value": deal},
                "metadata": {"location": {"country": "US"}},
                "experiments": {"ui_variant": "b"}
            }),
            &TenantId::parse("acme").unwrap(),
            received,
        )
        .unwrap();
        InteractionRecord::from(&interaction)
    }

    #[test]
    fn record_batch_flattens_the_contract() {
        let a = sample(21, 100.0);
        let b = sample(22, 250.5);
        let batch = to_record_batch(&[&a, &b]).unwrap();
        assert_eq!(batch.num_rows(), 2);
        let value = batch
            .column_by_name("outcomes_deal_value")
            .unwrap()
            .as_any()
            .downcast_ref::<arrow_array::Float64Array>()
            .unwrap()
            .value(1);
        assert_eq!(value, 250.5);
        let model = batch.column_by_name("ai_model").unwrap();
        let model = model.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(model.value(0), "gpt-4o");
        let country = batch.column_by_name("metadata_country").unwrap();
        assert_eq!(
            country
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap()
                .value(0),
            "US"
        );
    }

    #[test]
    fn parquet_round_trips_the_index() {
        let a = sample(21, 1.0);
        let bytes = encode_parquet(&[&a]).unwrap();
        let index = read_index(bytes, "f").unwrap();
        assert_eq!(index.len(), 1);
        assert_eq!(index[0].interaction_id, a.interaction_id);
        assert_eq!(index[0].timestamp_ms, a.timestamp_ms);
    }
}
