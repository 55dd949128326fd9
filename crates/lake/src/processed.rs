//! Derived datasets under `processed/`. For now: `processed/outcomes/`, the latest outcome
//! per interaction, merging the outcomes recorded later as linked interactions.
//!
//! Merge rule (the same one `GET /v1/interactions/{id}` applies): start from the interaction's
//! own `outcomes`, then overlay each linked interaction's non-null outcome fields in
//! `timestamp` order; the last value of each field wins.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Float64Builder, Int64Builder, StringBuilder, TimestampMillisecondBuilder,
};
use arrow_array::{
    Array, ArrayRef, BooleanArray, Float64Array, RecordBatch, StringArray,
    TimestampMillisecondArray,
};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::errors::ParquetError;

use crate::raw::writer_properties;
use crate::{Lake, LakeError};

pub const OUTCOMES_PATH: &str = "processed/outcomes/outcomes.parquet";

#[derive(Debug, Default, Clone, PartialEq)]
struct Outcome {
    partner_matched: Option<bool>,
    partner_id: Option<String>,
    match_score: Option<f64>,
    demo_booked: Option<bool>,
    deal_closed: Option<bool>,
    deal_value: Option<f64>,
    satisfaction_score: Option<f64>,
}

impl Outcome {
    fn is_empty(&self) -> bool {
        *self == Outcome::default()
    }

    fn overlay(&mut self, later: &Outcome) {
        macro_rules! take {
            ($($field:ident),*) => {$(
                if later.$field.is_some() {
                    self.$field = later.$field.clone();
                }
            )*};
        }
        take!(
            partner_matched,
            partner_id,
            match_score,
            demo_booked,
            deal_closed,
            deal_value,
            satisfaction_score
        );
    }
}

struct Row {
    tenant_id: String,
    interaction_id: String,
    parent: Option<String>,
    timestamp_ms: i64,
    outcome: Outcome,
}

const COLUMNS: [&str; 11] = [
    "tenant_id",
    "interaction_id",
    "parent_interaction_id",
    "timestamp",
    "outcomes_partner_matched",
    "outcomes_partner_id",
    "outcomes_match_score",
    "outcomes_demo_booked",
    "outcomes_deal_closed",
    "outcomes_deal_value",
    "outcomes_satisfaction_score",
];

/// What `derive_outcomes` wrote.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DeriveReport {
    pub rows_read: usize,
    pub outcomes_written: usize,
    pub path: String,
}

impl Lake {
    /// Rewrites `processed/outcomes/outcomes.parquet` from the raw dataset (one put: readers
    /// see the old file or the new one).
    pub async fn derive_outcomes(&self) -> Result<DeriveReport, LakeError> {
        let mut inputs = Vec::new();
        for file in self.current_raw_files().await? {
            inputs.push((file.path.clone(), self.get(&file.path).await?));
        }
        let (bytes, report) = crate::background::run(move || compute(&inputs))
            .await
            .map_err(|err| LakeError::Location {
                url: String::new(),
                problem: format!("derive task failed: {err}"),
            })??;
        self.put(OUTCOMES_PATH, bytes).await?;
        Ok(report)
    }
}

fn parquet_error(path: &str) -> impl Fn(ParquetError) -> LakeError + '_ {
    move |source| LakeError::Parquet {
        path: path.to_owned(),
        source,
    }
}

fn compute(inputs: &[(String, Bytes)]) -> Result<(Bytes, DeriveReport), LakeError> {
    let mut rows = Vec::new();
    for (path, bytes) in inputs {
        read_rows(bytes.clone(), &mut rows).map_err(parquet_error(path))?;
    }
    let rows_read = rows.len();
    // Roots first (their own outcomes), then linked records in time order.
    rows.sort_by_key(|row| row.timestamp_ms);
    let mut merged: HashMap<(String, String), (Outcome, i64, i64)> = HashMap::new();
    for row in rows.iter().filter(|row| row.parent.is_none()) {
        if !row.outcome.is_empty() {
            merged.insert(
                (row.tenant_id.clone(), row.interaction_id.clone()),
                (row.outcome.clone(), row.timestamp_ms, 0),
            );
        }
    }
    for row in rows.iter() {
        let Some(parent) = &row.parent else { continue };
        if row.outcome.is_empty() {
            continue;
        }
        let entry = merged
            .entry((row.tenant_id.clone(), parent.clone()))
            .or_insert_with(|| (Outcome::default(), row.timestamp_ms, 0));
        entry.0.overlay(&row.outcome);
        entry.1 = entry.1.max(row.timestamp_ms);
        entry.2 += 1;
    }
    let mut keys: Vec<_> = merged.keys().cloned().collect();
    keys.sort();
    let n = keys.len();
    let mut tenant = StringBuilder::with_capacity(n, n * 8);
    let mut id = StringBuilder::with_capacity(n, n * 36);
    let mut matched = BooleanBuilder::with_capacity(n);
    let mut partner = StringBuilder::with_capacity(n, n * 8);
    let mut score = Float64Builder::with_capacity(n);
    let mut demo = BooleanBuilder::with_capacity(n);
    let mut deal = BooleanBuilder::with_capacity(n);
    let mut value = Float64Builder::with_capacity(n);
    let mut satisfaction = Float64Builder::with_capacity(n);
    let mut events = Int64Builder::with_capacity(n);
    let mut last = TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
    for key in &keys {
        let (outcome, last_at, linked) = &merged[key];
        tenant.append_value(&key.0);
        id.append_value(&key.1);
        matched.append_option(outcome.partner_matched);
        partner.append_option(outcome.partner_id.as_deref());
        score.append_option(outcome.match_score);
        demo.append_option(outcome.demo_booked);
        deal.append_option(outcome.deal_closed);
        value.append_option(outcome.deal_value);
        satisfaction.append_option(outcome.satisfaction_score);
        events.append_value(*linked);
        last.append_value(*last_at);
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("tenant_id", DataType::Utf8, false),
        Field::new("interaction_id", DataType::Utf8, false),
        Field::new("partner_matched", DataType::Boolean, true),
        Field::new("partner_id", DataType::Utf8, true),
        Field::new("match_score", DataType::Float64, true),
        Field::new("demo_booked", DataType::Boolean, true),
        Field::new("deal_closed", DataType::Boolean, true),
        Field::new("deal_value", DataType::Float64, true),
        Field::new("satisfaction_score", DataType::Float64, true),
        Field::new("linked_outcomes", DataType::Int64, false),
        Field::new(
            "last_outcome_at",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(tenant.finish()),
        Arc::new(id.finish()),
        Arc::new(matched.finish()),
        Arc::new(partner.finish()),
        Arc::new(score.finish()),
        Arc::new(demo.finish()),
        Arc::new(deal.finish()),
        Arc::new(value.finish()),
        Arc::new(satisfaction.finish()),
        Arc::new(events.finish()),
        Arc::new(last.finish()),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    let to_lake = parquet_error(OUTCOMES_PATH);
    let mut writer = ArrowWriter::try_new(
        Vec::new(),
        schema,
        Some(writer_properties().map_err(&to_lake)?),
    )
    .map_err(&to_lake)?;
    writer.write(&batch).map_err(&to_lake)?;
    let bytes = writer.into_inner().map_err(&to_lake)?;
    Ok((
        Bytes::from(bytes),
        DeriveReport {
            rows_read,
            outcomes_written: n,
            path: OUTCOMES_PATH.to_owned(),
        },
    ))
}

fn read_rows(bytes: Bytes, out: &mut Vec<Row>) -> Result<(), ParquetError> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes)?;
    let schema = builder.parquet_schema();
    let leaves: Vec<usize> = COLUMNS
        .iter()
        .filter_map(|name| schema.columns().iter().position(|c| c.name() == *name))
        .collect();
    let mask = ProjectionMask::leaves(schema, leaves);
    for batch in builder.with_projection(mask).build()? {
        let batch = batch?;
        let text = |name: &str| {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_any().downcast_ref::<StringArray>().cloned())
        };
        let float = |name: &str| {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_any().downcast_ref::<Float64Array>().cloned())
        };
        let boolean = |name: &str| {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_any().downcast_ref::<BooleanArray>().cloned())
        };
        let (Some(tenants), Some(ids), Some(times)) = (
            text("tenant_id"),
            text("interaction_id"),
            batch.column_by_name("timestamp").and_then(|c| {
                c.as_any()
                    .downcast_ref::<TimestampMillisecondArray>()
                    .cloned()
            }),
        ) else {
            return Err(ParquetError::General(
                "raw file lacks tenant_id, interaction_id or timestamp".to_owned(),
            ));
        };
        let parents = text("parent_interaction_id");
        let partner_ids = text("outcomes_partner_id");
        let (matched, demo, deal) = (
            boolean("outcomes_partner_matched"),
            boolean("outcomes_demo_booked"),
            boolean("outcomes_deal_closed"),
        );
        let (score, value, satisfaction) = (
            float("outcomes_match_score"),
            float("outcomes_deal_value"),
            float("outcomes_satisfaction_score"),
        );
        let opt_text = |array: &Option<StringArray>, idx: usize| {
            array
                .as_ref()
                .filter(|a| a.is_valid(idx))
                .map(|a| a.value(idx).to_owned())
        };
        let opt_bool = |array: &Option<BooleanArray>, idx: usize| {
            array
                .as_ref()
                .filter(|a| a.is_valid(idx))
                .map(|a| a.value(idx))
        };
        let opt_float = |array: &Option<Float64Array>, idx: usize| {
            array
                .as_ref()
                .filter(|a| a.is_valid(idx))
                .map(|a| a.value(idx))
        };
        for idx in 0..batch.num_rows() {
            out.push(Row {
                tenant_id: tenants.value(idx).to_owned(),
                interaction_id: ids.value(idx).to_owned(),
                parent: opt_text(&parents, idx),
                timestamp_ms: times.value(idx),
                outcome: Outcome {
                    partner_matched: opt_bool(&matched, idx),
                    partner_id: opt_text(&partner_ids, idx),
                    match_score: opt_float(&score, idx),
                    demo_booked: opt_bool(&demo, idx),
                    deal_closed: opt_bool(&deal, idx),
                    deal_value: opt_float(&value, idx),
                    satisfaction_score: opt_float(&satisfaction, idx),
                },
            });
        }
    }
    Ok(())
}
