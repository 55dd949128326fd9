//! Flywheel's data lake: open files (Parquet, zstd) in Hive-style partitions on a local
//! directory or an S3-compatible bucket, through `object_store`.
//!
//! Layout (see `shared/DESIGN.md`): `raw/year=YYYY/month=MM/day=DD/part-<batch>.parquet`,
//! partitioned by the interaction's `timestamp` in UTC. File names are a pure function of the
//! archive batch, so writing a batch again replaces the same objects with the same bytes: a
//! crash between upload and bookkeeping can never leave a row in the lake twice.
//!
//! Architecture invariant: this crate knows files and schemas, not the operational store; the
//! archiver in `flywheel-services` decides what to write and when.

mod background;
mod compact;
mod processed;
mod raw;
mod store;

pub use compact::{apply_coverage, batch_range, CompactReport};
pub use processed::{DeriveReport, OUTCOMES_PATH};
pub use raw::{raw_schema, RawIndexEntry, RAW_DATASET};
pub use store::{Lake, LakeError, LakeFile, LakeSettings, S3Settings};
