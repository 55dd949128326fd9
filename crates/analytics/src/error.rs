//! What can go wrong with a query, split by whose fault it is.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum AnalyticsError {
    /// The SQL is wrong or not allowed (the engine's message says why).
    #[error("{0}")]
    Query(String),
    /// The query needed more memory than `analytics.memory_limit`.
    #[error("the query needs more memory than the engine may use ({0}); aggregate more, select fewer columns or narrow the time range")]
    TooLarge(String),
    /// The query ran longer than `analytics.query_timeout`.
    #[error("the query ran longer than {}s and was cancelled; narrow the time range or raise analytics.query_timeout", .0.as_secs_f64())]
    Timeout(Duration),
    /// The lake could not be read.
    #[error("cannot read the lake: {0}")]
    Lake(String),
    /// A derivation's options are not valid (tenant or dataset name, filter, scrub pattern).
    #[error("{0}")]
    Invalid(String),
    /// A derivation would read more rows than its limit; nothing was written.
    #[error("{what} has more than {limit} rows; raise the derivation's row limit or narrow its date range")]
    RowLimit { what: String, limit: usize },
    /// A fault of the engine itself.
    #[error("query engine: {0}")]
    Engine(String),
}
