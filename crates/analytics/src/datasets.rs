//! Derived datasets written to the lake, each with a manifest that makes it reproducible
//! (see `docs/datasets.md`).
//!
//! Layout: everything is per tenant and Hive-partitioned by tenant, so Athena, Trino, Spark
//! and DuckDB read a dataset directory as one table with a `tenant_id` partition column:
//! - `processed/conversations/tenant_id=<t>/conversations.parquet` — the `conversations` table;
//! - `processed/outcomes/tenant_id=<t>/outcomes.parquet` — the `outcomes_latest` table;
//! - `processed/feedback/tenant_id=<t>/feedback.parquet` — the interactions that carry any
//!   `feedback_*` field;
//! - `training-data/{labeled,unlabeled}/tenant_id=<t>/<dataset>.jsonl` — see `training.rs`.
//!
//! The data files leave out the `tenant_id` column: the partition path carries it, and Spark
//! refuses a column that is both in the files and in the partition path. Text columns are
//! written as plain `Utf8` (not DataFusion's `Utf8View`) so that older readers cope.
//!
//! Manifests: `_manifest.json` beside a Parquet file (a leading `_` makes Hive, Athena and
//! Spark skip it as data), `<dataset>.manifest.json` beside a training file. A manifest holds
//! the dataset's name and kind, tenant, row count, size and SHA-256 of the data file, the time
//! range of its rows, the filters, when it was made, the raw files the engine could read (path
//! and size) and the SQL it ran. The data file is written first and the manifest last, each
//! with one atomic put: a reader trusts the manifest, and can check the data file against its
//! size and hash.
//!
//! Sources: the engine reads whatever `Lake::current_raw_files` selects when a query is
//! planned. The list is taken before and after the queries; when the archiver or compaction
//! changed it in between, the queries run again (up to three times), and a manifest whose
//! list still changed says `"consistent": false`.
//!
//! Memory: each dataset is one query whose answer is held in memory, encoded, then written
//! (the engine's memory limit does not cover that). `DeriveOptions::max_rows` (default five
//! million) bounds every query; more rows fail with `RowLimit` and nothing is written.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use datafusion::arrow::compute::cast;
use flywheel_lake::{Lake, LakeError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::scrub::{ScrubCounts, ScrubRules};
use crate::training::TrainingFilters;
use crate::{output, Analytics, AnalyticsError, QueryResult};

/// Version of the manifest format written by this code.
pub const MANIFEST_VERSION: u32 = 1;

/// The dataset name used when the caller gives none.
pub const DEFAULT_DATASET_NAME: &str = "latest";

/// How many times the queries run when the raw files change under them.
const SOURCE_ATTEMPTS: usize = 3;

/// The kinds of derived dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DatasetKind {
    Conversations,
    Outcomes,
    Feedback,
    TrainingLabeled,
    TrainingUnlabeled,
}

impl DatasetKind {
    pub const ALL: [DatasetKind; 5] = [
        DatasetKind::Conversations,
        DatasetKind::Outcomes,
        DatasetKind::Feedback,
        DatasetKind::TrainingLabeled,
        DatasetKind::TrainingUnlabeled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DatasetKind::Conversations => "conversations",
            DatasetKind::Outcomes => "outcomes",
            DatasetKind::Feedback => "feedback",
            DatasetKind::TrainingLabeled => "training_labeled",
            DatasetKind::TrainingUnlabeled => "training_unlabeled",
        }
    }

    /// The dataset's directory in the lake (above the tenant partitions).
    pub fn prefix(self) -> &'static str {
        match self {
            DatasetKind::Conversations => "processed/conversations",
            DatasetKind::Outcomes => "processed/outcomes",
            DatasetKind::Feedback => "processed/feedback",
            DatasetKind::TrainingLabeled => "training-data/labeled",
            DatasetKind::TrainingUnlabeled => "training-data/unlabeled",
        }
    }

    /// `parquet` or `jsonl`.
    pub fn format(self) -> &'static str {
        match self {
            DatasetKind::Conversations | DatasetKind::Outcomes | DatasetKind::Feedback => "parquet",
            DatasetKind::TrainingLabeled | DatasetKind::TrainingUnlabeled => "jsonl",
        }
    }

    fn is_training(self) -> bool {
        matches!(
            self,
            DatasetKind::TrainingLabeled | DatasetKind::TrainingUnlabeled
        )
    }

    /// The tenant's partition directory.
    pub fn tenant_dir(self, tenant: &str) -> String {
        format!("{}/tenant_id={tenant}", self.prefix())
    }

    /// The data file of `dataset` (the name of a processed dataset is its kind's).
    pub fn data_path(self, tenant: &str, dataset: &str) -> String {
        format!("{}/{dataset}.{}", self.tenant_dir(tenant), self.format())
    }

    /// The manifest of `dataset`.
    pub fn manifest_path(self, tenant: &str, dataset: &str) -> String {
        if self.is_training() {
            format!("{}/{dataset}.manifest.json", self.tenant_dir(tenant))
        } else {
            format!("{}/_manifest.json", self.tenant_dir(tenant))
        }
    }
}

/// A dataset's manifest, as written next to its data file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetManifest {
    pub manifest_version: u32,
    /// `conversations`, `outcomes`, `feedback`, or a training dataset's name.
    pub dataset: String,
    pub kind: DatasetKind,
    pub tenant_id: String,
    /// The data file, relative to the lake root.
    pub path: String,
    pub manifest_path: String,
    /// `parquet` or `jsonl`.
    pub format: String,
    /// Rows (Parquet) or lines (JSONL) in the data file.
    pub row_count: u64,
    /// Size of the data file in bytes.
    pub bytes: u64,
    /// SHA-256 of the data file, lower-case hex.
    pub sha256: String,
    /// Earliest and latest time of the rows (`None` when there are none).
    pub time_range: Option<DatasetTimeRange>,
    /// The filters a training export applied (`None` for processed datasets: whole tables).
    pub filters: Option<TrainingFilters>,
    pub created_at: DateTime<Utc>,
    pub source: DatasetSource,
    /// What a training export kept, skipped and scrubbed (`None` for processed datasets).
    pub training: Option<TrainingReport>,
}

/// The time range of a dataset's rows. Which times: `started_at`/`ended_at` for
/// conversations, `first_outcome_at`/`last_outcome_at` for outcomes, `timestamp` for
/// feedback, and the conversations' `started_at` for training files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetTimeRange {
    pub min: DateTime<Utc>,
    pub max: DateTime<Utc>,
}

/// Where a dataset came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetSource {
    /// The raw files the engine could read (every tenant's rows; the engine kept this one's).
    pub raw_files: Vec<SourceFile>,
    /// Whether the list of raw files was the same before and after the queries.
    pub consistent: bool,
    /// The statements run, in order.
    pub sql: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceFile {
    pub path: String,
    pub size: u64,
}

/// What a training export did with the tenant's conversations for one file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainingReport {
    /// Conversations of this kind (labeled or not) that started inside `from`/`to`.
    pub conversations: u64,
    /// Conversations left out by `min_rating` or `outcome` (by filter name).
    pub filtered: std::collections::BTreeMap<String, u64>,
    /// Conversations that could not make a training example (by reason, e.g.
    /// `no_assistant_message`).
    pub skipped: std::collections::BTreeMap<String, u64>,
    /// Conversations whose scrubbed, normalised messages repeat an earlier one's.
    pub duplicates_dropped: u64,
    /// The scrub rules applied (terms and patterns are counted, never written here).
    pub scrub: ScrubSummary,
    /// Replacements made in the written lines.
    pub scrubbed: ScrubCounts,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScrubSummary {
    pub emails: bool,
    pub phones: bool,
    pub fields: Vec<String>,
    pub terms: usize,
    pub patterns: usize,
}

impl ScrubSummary {
    pub fn of(rules: &ScrubRules) -> ScrubSummary {
        ScrubSummary {
            emails: rules.emails,
            phones: rules.phones,
            fields: rules.fields.clone(),
            terms: rules.terms.len(),
            patterns: rules.patterns.len(),
        }
    }
}

/// How `derive_datasets` runs.
#[derive(Debug, Clone)]
pub struct DeriveOptions {
    /// The training files' name (a slug); `latest` by default, so each run replaces the last.
    pub dataset: String,
    pub filters: TrainingFilters,
    pub scrub: ScrubRules,
    /// Most rows any one query may return; more fail the derivation with `RowLimit`.
    pub max_rows: usize,
    /// Time limit of each query.
    pub timeout: Duration,
}

impl Default for DeriveOptions {
    fn default() -> DeriveOptions {
        DeriveOptions {
            dataset: DEFAULT_DATASET_NAME.to_owned(),
            filters: TrainingFilters::default(),
            scrub: ScrubRules::default(),
            max_rows: 5_000_000,
            timeout: Duration::from_secs(600),
        }
    }
}

impl DeriveOptions {
    /// The dataset name, the filters and the scrub rules are valid.
    pub fn check(&self) -> Result<(), AnalyticsError> {
        check_slug("dataset name", &self.dataset)?;
        self.filters.check()?;
        crate::scrub::Scrubber::new(&self.scrub)?;
        Ok(())
    }
}

/// A processed dataset: its kind, its query, and the columns of its time range.
struct Processed {
    kind: DatasetKind,
    sql: String,
    min_column: &'static str,
    max_column: &'static str,
}

fn processed_datasets() -> [Processed; 3] {
    let feedback_fields = [
        "feedback_helpful",
        "feedback_accuracy",
        "feedback_would_recommend",
        "feedback_comments",
    ];
    let any_feedback = feedback_fields
        .map(|field| format!("{field} IS NOT NULL"))
        .join(" OR ");
    [
        Processed {
            kind: DatasetKind::Conversations,
            sql: "SELECT * EXCLUDE (tenant_id) FROM conversations \
                  ORDER BY started_at, conversation_id"
                .to_owned(),
            min_column: "started_at",
            max_column: "ended_at",
        },
        Processed {
            kind: DatasetKind::Outcomes,
            sql: "SELECT * EXCLUDE (tenant_id) FROM outcomes_latest \
                  ORDER BY first_outcome_at, interaction_id"
                .to_owned(),
            min_column: "first_outcome_at",
            max_column: "last_outcome_at",
        },
        Processed {
            kind: DatasetKind::Feedback,
            sql: format!(
                "SELECT interaction_id, parent_interaction_id, conversation_id, session_id, \
                   user_id, user_type, interaction_type, \"timestamp\", {fields} \
                 FROM interactions WHERE {any_feedback} \
                 ORDER BY \"timestamp\", interaction_id",
                fields = feedback_fields.join(", ")
            ),
            min_column: "timestamp",
            max_column: "timestamp",
        },
    ]
}

impl Analytics {
    /// Writes the tenant's processed datasets and training files (see the module docs and
    /// `training.rs`) and returns their manifests, processed datasets first.
    pub async fn derive_datasets(
        &self,
        tenant: &str,
        options: &DeriveOptions,
    ) -> Result<Vec<DatasetManifest>, AnalyticsError> {
        // Every option is checked before anything is written.
        check_slug("tenant id", tenant)?;
        options.check()?;
        let mut manifests = self.derive_processed(tenant, options).await?;
        manifests.extend(self.export_training(tenant, options).await?);
        Ok(manifests)
    }

    /// Writes `processed/{conversations,outcomes,feedback}/tenant_id=<tenant>/` (only
    /// `max_rows` and `timeout` of the options apply).
    pub async fn derive_processed(
        &self,
        tenant: &str,
        options: &DeriveOptions,
    ) -> Result<Vec<DatasetManifest>, AnalyticsError> {
        check_slug("tenant id", tenant)?;
        let mut manifests = Vec::new();
        for dataset in processed_datasets() {
            let what = dataset.kind.as_str();
            let sql = dataset.sql.as_str();
            let (result, source) = with_stable_sources(self.lake(), || async move {
                let result = self
                    .query_with(tenant, sql, Vec::new(), options.max_rows, options.timeout)
                    .await?;
                check_row_limit(&result, what, options.max_rows)?;
                Ok(result)
            })
            .await?;
            let row_count = result.rows as u64;
            let (min_column, max_column) = (dataset.min_column, dataset.max_column);
            let (bytes, time_range) = run_blocking(move || {
                let time_range = time_range(&result.batches, min_column, max_column)?;
                let (schema, batches) = plain_strings(&result.schema, &result.batches)?;
                Ok((output::parquet_of(&schema, &batches)?, time_range))
            })
            .await?;
            let manifest = self
                .write_dataset(
                    DatasetManifest {
                        manifest_version: MANIFEST_VERSION,
                        dataset: what.to_owned(),
                        kind: dataset.kind,
                        tenant_id: tenant.to_owned(),
                        path: dataset.kind.data_path(tenant, what),
                        manifest_path: dataset.kind.manifest_path(tenant, what),
                        format: dataset.kind.format().to_owned(),
                        row_count,
                        bytes: 0,
                        sha256: String::new(),
                        time_range,
                        filters: None,
                        created_at: Utc::now(),
                        source: DatasetSource {
                            raw_files: source.files,
                            consistent: source.consistent,
                            sql: vec![dataset.sql.clone()],
                        },
                        training: None,
                    },
                    bytes,
                )
                .await?;
            manifests.push(manifest);
        }
        Ok(manifests)
    }

    /// The manifests of the tenant's datasets, in kind then name order. A manifest that
    /// cannot be parsed is skipped with a warning (the lake may hold files from newer
    /// versions); one that names another tenant is ignored.
    pub async fn list_datasets(
        &self,
        tenant: &str,
    ) -> Result<Vec<DatasetManifest>, AnalyticsError> {
        check_slug("tenant id", tenant)?;
        let mut manifests = Vec::new();
        for kind in DatasetKind::ALL {
            let files = self
                .lake()
                .list(&kind.tenant_dir(tenant))
                .await
                .map_err(lake_error)?;
            for file in files {
                let is_manifest = if kind.is_training() {
                    file.path.ends_with(".manifest.json")
                } else {
                    file.path.ends_with("/_manifest.json")
                };
                if !is_manifest {
                    continue;
                }
                let bytes = self.lake().get(&file.path).await.map_err(lake_error)?;
                match serde_json::from_slice::<DatasetManifest>(&bytes) {
                    Ok(manifest) if manifest.tenant_id == tenant && manifest.kind == kind => {
                        manifests.push(manifest);
                    }
                    Ok(_) => {
                        tracing::warn!(path = %file.path, "manifest names another tenant or kind; ignored");
                    }
                    Err(err) => {
                        tracing::warn!(path = %file.path, error = %err, "unreadable dataset manifest; skipped");
                    }
                }
            }
        }
        manifests.sort_by(|a, b| (a.kind, &a.dataset).cmp(&(b.kind, &b.dataset)));
        Ok(manifests)
    }

    /// Puts the data file, then the manifest completed with the file's size and hash.
    pub(crate) async fn write_dataset(
        &self,
        mut manifest: DatasetManifest,
        data: Vec<u8>,
    ) -> Result<DatasetManifest, AnalyticsError> {
        manifest.bytes = data.len() as u64;
        manifest.sha256 = sha256_hex(&data);
        self.lake()
            .put(&manifest.path, Bytes::from(data))
            .await
            .map_err(lake_error)?;
        let text = serde_json::to_vec_pretty(&manifest)
            .map_err(|err| AnalyticsError::Engine(format!("cannot encode the manifest: {err}")))?;
        self.lake()
            .put(&manifest.manifest_path, Bytes::from(text))
            .await
            .map_err(lake_error)?;
        tracing::info!(
            tenant = %manifest.tenant_id,
            dataset = %manifest.dataset,
            kind = manifest.kind.as_str(),
            rows = manifest.row_count,
            bytes = manifest.bytes,
            "dataset written"
        );
        Ok(manifest)
    }
}

/// The raw files read, and whether they stayed the same.
pub(crate) struct Sources {
    pub(crate) files: Vec<SourceFile>,
    pub(crate) consistent: bool,
}

/// Runs `read` between two listings of the raw files, again while the listings differ (at
/// most `SOURCE_ATTEMPTS` times).
pub(crate) async fn with_stable_sources<T, F, Fut>(
    lake: &Lake,
    mut read: F,
) -> Result<(T, Sources), AnalyticsError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, AnalyticsError>>,
{
    let mut attempt = 1;
    loop {
        let before = raw_sources(lake).await?;
        let value = read().await?;
        let after = raw_sources(lake).await?;
        let consistent = before == after;
        if consistent || attempt >= SOURCE_ATTEMPTS {
            if !consistent {
                tracing::warn!(
                    attempts = attempt,
                    "raw files kept changing during a derivation"
                );
            }
            return Ok((
                value,
                Sources {
                    files: after,
                    consistent,
                },
            ));
        }
        attempt += 1;
    }
}

async fn raw_sources(lake: &Lake) -> Result<Vec<SourceFile>, AnalyticsError> {
    Ok(lake
        .current_raw_files()
        .await
        .map_err(lake_error)?
        .into_iter()
        .map(|file| SourceFile {
            path: file.path,
            size: file.size,
        })
        .collect())
}

pub(crate) fn lake_error(err: LakeError) -> AnalyticsError {
    AnalyticsError::Lake(err.to_string())
}

/// A query's answer must be whole: a derivation never writes a cut dataset.
pub(crate) fn check_row_limit(
    result: &QueryResult,
    what: &str,
    limit: usize,
) -> Result<(), AnalyticsError> {
    if result.truncated {
        return Err(AnalyticsError::RowLimit {
            what: what.to_owned(),
            limit,
        });
    }
    Ok(())
}

/// Runs CPU work (encoding, parsing, scrubbing) off the async workers.
pub(crate) async fn run_blocking<T, F>(work: F) -> Result<T, AnalyticsError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, AnalyticsError> + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| AnalyticsError::Engine(format!("a derivation task failed: {err}")))?
}

/// Checks a tenant id or dataset name: 2–63 characters of `[a-z0-9-]`, starting with a
/// letter or digit (the rule of `flywheel_core::TenantId`). Both become path segments.
pub fn check_slug(what: &str, value: &str) -> Result<(), AnalyticsError> {
    let mut chars = value.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if (2..=63).contains(&value.len()) && first_ok && rest_ok {
        Ok(())
    } else {
        Err(AnalyticsError::Invalid(format!(
            "{what} '{value}' must be 2 to 63 characters of lower-case letters, digits and '-', \
             starting with a letter or digit"
        )))
    }
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// `array` cast to `data_type`.
pub(crate) fn cast_column(
    array: &ArrayRef,
    data_type: &DataType,
) -> Result<ArrayRef, AnalyticsError> {
    cast(array, data_type)
        .map_err(|err| AnalyticsError::Engine(format!("cannot read a column: {err}")))
}

/// A timestamp column as Unix milliseconds.
pub(crate) fn millis_column(
    batch: &RecordBatch,
    name: &str,
) -> Result<Option<Int64Array>, AnalyticsError> {
    let Some(column) = batch.column_by_name(name) else {
        return Ok(None);
    };
    let as_ms = cast_column(
        column,
        &DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
    )?;
    let as_int = cast_column(&as_ms, &DataType::Int64)?;
    Ok(as_int.as_any().downcast_ref::<Int64Array>().cloned())
}

pub(crate) fn utc_millis(ms: i64) -> Result<DateTime<Utc>, AnalyticsError> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| AnalyticsError::Engine(format!("timestamp {ms} ms is out of range")))
}

/// The smallest `min_column` and the largest `max_column` over the batches.
fn time_range(
    batches: &[RecordBatch],
    min_column: &str,
    max_column: &str,
) -> Result<Option<DatasetTimeRange>, AnalyticsError> {
    let mut min: Option<i64> = None;
    let mut max: Option<i64> = None;
    for batch in batches {
        if let Some(values) = millis_column(batch, min_column)? {
            if let Some(low) = datafusion::arrow::compute::min(&values) {
                min = Some(min.map_or(low, |m| m.min(low)));
            }
        }
        if let Some(values) = millis_column(batch, max_column)? {
            if let Some(high) = datafusion::arrow::compute::max(&values) {
                max = Some(max.map_or(high, |m| m.max(high)));
            }
        }
    }
    match (min, max) {
        (Some(min), Some(max)) => Ok(Some(DatasetTimeRange {
            min: utc_millis(min)?,
            max: utc_millis(max)?,
        })),
        _ => Ok(None),
    }
}

/// The batches with view types (`Utf8View`, `BinaryView`) cast to their plain forms.
fn plain_strings(
    schema: &SchemaRef,
    batches: &[RecordBatch],
) -> Result<(SchemaRef, Vec<RecordBatch>), AnalyticsError> {
    let plain = |data_type: &DataType| match data_type {
        DataType::Utf8View => DataType::Utf8,
        DataType::BinaryView => DataType::Binary,
        other => other.clone(),
    };
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|field| {
            field
                .as_ref()
                .clone()
                .with_data_type(plain(field.data_type()))
        })
        .collect();
    let plain_schema = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
    let mut out = Vec::with_capacity(batches.len());
    for batch in batches {
        let columns = batch
            .columns()
            .iter()
            .zip(plain_schema.fields())
            .map(|(column, field)| {
                if column.data_type() == field.data_type() {
                    Ok(Arc::clone(column))
                } else {
                    cast_column(column, field.data_type())
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        out.push(
            RecordBatch::try_new(Arc::clone(&plain_schema), columns)
                .map_err(|err| AnalyticsError::Engine(format!("cannot rebuild a batch: {err}")))?,
        );
    }
    Ok((plain_schema, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_checked() {
        for good in ["acme", "a1", "my-tenant-2", "latest"] {
            assert!(check_slug("tenant id", good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "a",
            "Acme",
            "-acme",
            "ac/me",
            "..",
            "a_b",
            "ac me",
            "tenant_id=x",
        ] {
            assert!(
                matches!(
                    check_slug("tenant id", bad),
                    Err(AnalyticsError::Invalid(_))
                ),
                "{bad}"
            );
        }
        assert!(check_slug("x", &"a".repeat(64)).is_err());
    }

    #[test]
    fn paths_are_hive_partitioned_by_tenant() {
        assert_eq!(
            DatasetKind::Conversations.data_path("acme", "conversations"),
            "processed/conversations/tenant_id=acme/conversations.parquet"
        );
        assert_eq!(
            DatasetKind::Feedback.manifest_path("acme", "feedback"),
            "processed/feedback/tenant_id=acme/_manifest.json"
        );
        assert_eq!(
            DatasetKind::TrainingUnlabeled.data_path("acme", "latest"),
            "training-data/unlabeled/tenant_id=acme/latest.jsonl"
        );
        assert_eq!(
            DatasetKind::TrainingLabeled.manifest_path("acme", "v2"),
            "training-data/labeled/tenant_id=acme/v2.manifest.json"
        );
    }

    #[test]
    fn sha256_is_hex() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
