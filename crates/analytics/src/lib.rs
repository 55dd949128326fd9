//! SQL over Flywheel's lake with DataFusion: the `raw` dataset as the tenant-confined table
//! `interactions`, the derived tables `outcomes_latest` and `conversations`, the plan's
//! reports, derived datasets and training data.
//!
//! Architecture invariant: a query sees only its tenant's rows, whatever its text (see
//! `engine.rs`); the engine runs on its own threads with time, row and memory limits.
//! Boundary: knows the lake and SQL, not the operational store, HTTP or roles.

pub mod datasets;
pub mod ddl;
mod engine;
mod error;
mod json;
pub mod output;
pub mod reports;
pub mod scrub;
mod table;
pub mod training;
pub mod views;

pub use datafusion::common::ScalarValue;
pub use datasets::{
    DatasetKind, DatasetManifest, DatasetSource, DatasetTimeRange, DeriveOptions, SourceFile,
    TrainingReport,
};
pub use engine::{Analytics, AnalyticsSettings, QueryResult};
pub use error::AnalyticsError;
pub use reports::Window;
pub use scrub::{ScrubCounts, ScrubRules, Scrubber};
pub use training::{OutcomeFilter, TrainingFilters};
