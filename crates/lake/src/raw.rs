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
use flywheel_core::Interaction;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::{Compression, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;
use serde_json::Value;

pub const RAW_DATASET: &str = "raw";

/// What `flywheel lake verify` needs of each lake row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawIndexEntry {
    pub file: String,
    pub tenant_id: String,
    pub interaction_id: String,
    pub timestamp_ms: i64,
}

#[derive(Clone, Copy)]
enum Kind {
    Text,
    Int,
    Float,
    Bool,
}

/// Flattened typed columns: (column, JSON path, kind).
const TYPED: &[(&str, &[&str], Kind)] = &[
    ("session_id", &["session_id"], Kind::Text),
    ("conversation_id", &["conversation_id"], Kind::Text),
    (
        "parent_interaction_id",
        &["parent_interaction_id"],
        Kind::Text,
    ),
    (
        "ai_total_tokens",
        &["ai_conversation", "total_tokens"],
        Kind::Int,
    ),
    ("ai_cost", &["ai_conversation", "cost"], Kind::Float),
    (
        "ai_duration_ms",
        &["ai_conversation", "duration_ms"],
        Kind::Int,
    ),
    (
        "outcomes_partner_matched",
        &["outcomes", "partner_matched"],
        Kind::Bool,
    ),
    (
        "outcomes_partner_id",
        &["outcomes", "partner_id"],
        Kind::Text,
    ),
    (
        "outcomes_match_score",
        &["outcomes", "match_score"],
        Kind::Float,
    ),
    (
        "outcomes_demo_booked",
        &["outcomes", "demo_booked"],
        Kind::Bool,
    ),
    (
        "outcomes_deal_closed",
        &["outcomes", "deal_closed"],
        Kind::Bool,
    ),
    (
        "outcomes_deal_value",
        &["outcomes", "deal_value"],
        Kind::Float,
    ),
    (
        "outcomes_satisfaction_score",
        &["outcomes", "satisfaction_score"],
        Kind::Float,
    ),
    ("feedback_helpful", &["feedback", "helpful"], Kind::Bool),
    ("feedback_accuracy", &["feedback", "accuracy"], Kind::Float),
    (
        "feedback_would_recommend",
        &["feedback", "would_recommend"],
        Kind::Bool,
    ),
    ("feedback_comments", &["feedback", "comments"], Kind::Text),
    (
        "metadata_app_version",
        &["metadata", "app_version"],
        Kind::Text,
    ),
    (
        "metadata_api_version",
        &["metadata", "api_version"],
        Kind::Text,
    ),
    (
        "metadata_environment",
        &["metadata", "environment"],
        Kind::Text,
    ),
    ("metadata_client_ip", &["metadata", "client_ip"], Kind::Text),
    (
        "metadata_device_type",
        &["metadata", "device_type"],
        Kind::Text,
    ),
    ("metadata_browser", &["metadata", "browser"], Kind::Text),
    ("metadata_os", &["metadata", "os"], Kind::Text),
    ("metadata_referrer", &["metadata", "referrer"], Kind::Text),
    (
        "metadata_country",
        &["metadata", "location", "country"],
        Kind::Text,
    ),
    (
        "metadata_state",
        &["metadata", "location", "state"],
        Kind::Text,
    ),
    (
        "metadata_city",
        &["metadata", "location", "city"],
        Kind::Text,
    ),
];

fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

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
    for (name, _, kind) in TYPED {
        let data_type = match kind {
            Kind::Text => DataType::Utf8,
            Kind::Int => DataType::Int64,
            Kind::Float => DataType::Float64,
            Kind::Bool => DataType::Boolean,
        };
        fields.push(Field::new(*name, data_type, true));
    }
    fields.extend([
        Field::new("ai_message_count", DataType::Int64, true),
        Field::new("ai_model", DataType::Utf8, true),
        Field::new("experiments", DataType::Utf8, true),
        Field::new("schema_version", DataType::Int32, false),
        Field::new("document", DataType::Utf8, false),
    ]);
    Arc::new(Schema::new(fields))
}

fn lookup<'a>(document: &'a serde_json::Map<String, Value>, path: &[&str]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let mut value = document.get(*first)?;
    for key in rest {
        value = value.get(*key)?;
    }
    (!value.is_null()).then_some(value)
}

/// Builds a record batch of the raw schema from interactions.
pub fn to_record_batch(rows: &[&Interaction]) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let n = rows.len();
    let text = |values: Vec<Option<String>>| -> ArrayRef {
        let mut builder = StringBuilder::with_capacity(n, n * 16);
        for value in values {
            builder.append_option(value);
        }
        Arc::new(builder.finish())
    };
    let time = |values: Vec<i64>| -> ArrayRef {
        let mut builder = TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
        for value in values {
            builder.append_value(value);
        }
        Arc::new(builder.finish())
    };
    let mut columns: Vec<ArrayRef> = vec![
        text(
            rows.iter()
                .map(|r| Some(r.interaction_id.to_string()))
                .collect(),
        ),
        text(rows.iter().map(|r| Some(r.tenant_id.to_string())).collect()),
        time(
            rows.iter()
                .map(|r| r.timestamp.timestamp_millis())
                .collect(),
        ),
        time(
            rows.iter()
                .map(|r| r.received_at.timestamp_millis())
                .collect(),
        ),
        text(
            rows.iter()
                .map(|r| Some(r.interaction_type.clone()))
                .collect(),
        ),
        text(rows.iter().map(|r| Some(r.user_id.clone())).collect()),
        text(rows.iter().map(|r| Some(r.user_type.clone())).collect()),
    ];
    for (_, path, kind) in TYPED {
        let values = rows.iter().map(|r| lookup(&r.document, path));
        let column: ArrayRef = match kind {
            Kind::Text => {
                let mut builder = StringBuilder::with_capacity(n, n * 8);
                for value in values {
                    builder.append_option(value.and_then(Value::as_str));
                }
                Arc::new(builder.finish())
            }
            Kind::Int => {
                let mut builder = Int64Builder::with_capacity(n);
                for value in values {
                    builder.append_option(value.and_then(Value::as_i64));
                }
                Arc::new(builder.finish())
            }
            Kind::Float => {
                let mut builder = Float64Builder::with_capacity(n);
                for value in values {
                    builder.append_option(value.and_then(Value::as_f64));
                }
                Arc::new(builder.finish())
            }
            Kind::Bool => {
                let mut builder = BooleanBuilder::with_capacity(n);
                for value in values {
                    builder.append_option(value.and_then(Value::as_bool));
                }
                Arc::new(builder.finish())
            }
        };
        columns.push(column);
    }
    let mut message_count = Int64Builder::with_capacity(n);
    let mut model = StringBuilder::with_capacity(n, n * 8);
    let mut experiments = StringBuilder::with_capacity(n, n * 16);
    let mut schema_version = Int32Builder::with_capacity(n);
    let mut document = StringBuilder::with_capacity(n, n * 1024);
    for row in rows {
        let messages =
            lookup(&row.document, &["ai_conversation", "messages"]).and_then(Value::as_array);
        message_count.append_option(messages.map(|m| m.len() as i64));
        // The model that answered: the last message naming one.
        model.append_option(messages.and_then(|m| {
            m.iter()
                .rev()
                .find_map(|msg| msg.get("model").and_then(Value::as_str))
        }));
        experiments.append_option(lookup(&row.document, &["experiments"]).map(Value::to_string));
        schema_version.append_value(
            row.document
                .get("schema_version")
                .and_then(Value::as_i64)
                .and_then(|v| i32::try_from(v).ok())
                .unwrap_or(1),
        );
        document.append_value(Value::Object(row.document.clone()).to_string());
    }
    columns.push(Arc::new(message_count.finish()));
    columns.push(Arc::new(model.finish()));
    columns.push(Arc::new(experiments.finish()));
    columns.push(Arc::new(schema_version.finish()));
    columns.push(Arc::new(document.finish()));
    RecordBatch::try_new(raw_schema(), columns)
}

pub(crate) fn encode_parquet(rows: &[&Interaction]) -> Result<Bytes, ParquetError> {
    let batch = to_record_batch(rows)?;
    let properties = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
        .set_created_by("flywheel".to_owned())
        .build();
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

    fn sample(day: u32, deal: f64) -> Interaction {
        let received = Utc.with_ymd_and_hms(2026, 11, day, 12, 0, 0).unwrap();
        Interaction::parse(
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
        .unwrap()
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
        assert_eq!(index[0].interaction_id, a.interaction_id.to_string());
        assert_eq!(index[0].timestamp_ms, a.timestamp.timestamp_millis());
    }
}
