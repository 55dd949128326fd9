//! `[analytics]`: SQL over the lake (limits of the engine) and `[training]`: how training data
//! is exported from it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnalyticsConfig {
    /// Serve `POST /v1/analytics/sql` and the reports.
    pub enabled: bool,
    /// A query still running after this long is cancelled.
    #[serde(with = "crate::humantime_serde_compat")]
    pub query_timeout: Duration,
    /// Most rows a JSON answer carries (more: the answer is cut and says `truncated`).
    pub max_rows: usize,
    /// Most rows of a CSV or Parquet download and of `flywheel query --output`.
    pub max_download_rows: usize,
    /// Memory all running queries may use together, in MiB (joins, sorts, aggregations).
    pub memory_limit_mib: usize,
    /// Threads of the query engine (0: one per core).
    pub threads: usize,
    /// How often `serve` rewrites the derived datasets and training files of every tenant
    /// with new data (0s: never; `flywheel lake derive` any time).
    #[serde(with = "crate::humantime_serde_compat")]
    pub derive_interval: Duration,
}

impl Default for AnalyticsConfig {
    fn default() -> AnalyticsConfig {
        AnalyticsConfig {
            enabled: true,
            query_timeout: Duration::from_secs(30),
            max_rows: 10_000,
            max_download_rows: 1_000_000,
            memory_limit_mib: 1024,
            threads: 0,
            derive_interval: Duration::from_secs(3600),
        }
    }
}

/// What goes into `training-data/` (see docs/datasets.md).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainingConfig {
    /// JSON keys whose string values are replaced by `[REDACTED]` wherever they appear.
    pub scrub_fields: Vec<String>,
    /// Literal terms (names, account numbers) replaced by `[REDACTED]`, case-insensitively.
    pub scrub_terms: Vec<String>,
    /// Regular expressions whose matches in message text are replaced by `[REDACTED]`
    /// (e-mail addresses and phone numbers are always scrubbed).
    pub scrub_patterns: Vec<String>,
    /// Labeled conversations need at least this feedback accuracy (0–10) when they have one.
    pub min_rating: Option<f64>,
}
