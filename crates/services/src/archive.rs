//! The archiver ships durable interactions to the lake, exactly once; `verify` compares the
//! store with the lake; `expire` applies the retention of operational copies.
//!
//! Exactly once, even across `kill -9`: rows are first *claimed* into a numbered batch in one
//! transaction (a row never changes batch), then the batch's files are written under names
//! derived from the batch number, then the batch is marked complete. A crash before completion
//! leaves the batch pending; the next run writes the same rows to the same names again,
//! replacing the objects rather than adding to them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{Datelike, TimeZone, Utc};
use flywheel_lake::Lake;
use flywheel_store::InteractionStore;
use tokio::sync::watch;

use crate::ServiceError;

/// Environment variable that makes the archiver abort the process right after uploading a
/// batch and before recording it: used by the crash test to prove re-uploads do not duplicate.
pub const CRASH_AFTER_UPLOAD_ENV: &str = "FLYWHEEL_TEST_CRASH_AFTER_LAKE_UPLOAD";

#[derive(Debug, Clone)]
pub struct ArchiveSettings {
    pub flush_max_rows: u32,
    pub flush_max_age: Duration,
    pub flush_interval: Duration,
    pub retention_days: u32,
    /// Zero disables the periodic derivation of `processed/outcomes/`.
    pub derive_interval: Duration,
    /// Zero disables periodic compaction.
    pub compact_interval: Duration,
    pub compact_target_bytes: u64,
}

/// What one archiving pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ArchiveReport {
    pub batches: usize,
    pub rows: usize,
    pub files: Vec<String>,
}

#[derive(Clone)]
pub struct Archiver {
    store: Arc<dyn InteractionStore>,
    lake: Lake,
    settings: ArchiveSettings,
}

impl std::fmt::Debug for Archiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Archiver")
            .field("lake", &self.lake.url())
            .field("settings", &self.settings)
            .finish()
    }
}

impl Archiver {
    pub fn new(
        store: Arc<dyn InteractionStore>,
        lake: Lake,
        settings: ArchiveSettings,
    ) -> Archiver {
        Archiver {
            store,
            lake,
            settings,
        }
    }

    pub fn lake(&self) -> &Lake {
        &self.lake
    }

    /// Runs until `stop` turns true, then archives what is left (bounded by `final_flush`).
    pub async fn run(self, mut stop: watch::Receiver<bool>, final_flush: Duration) {
        let mut last_expiry = std::time::Instant::now();
        let mut last_derive = std::time::Instant::now();
        let mut last_compact = std::time::Instant::now();
        let mut archived_since_derive = false;
        loop {
            tokio::select! {
                () = tokio::time::sleep(self.settings.flush_interval) => {}
                _ = stop.wait_for(|stopped| *stopped) => break,
            }
            match self.archive(false).await {
                Ok(report) => archived_since_derive |= report.rows > 0,
                Err(err) => {
                    tracing::warn!(error = %err, "archiving to the lake failed; will retry")
                }
            }
            let due = |last: std::time::Instant, every: Duration| {
                !every.is_zero() && last.elapsed() >= every
            };
            if archived_since_derive && due(last_derive, self.settings.derive_interval) {
                last_derive = std::time::Instant::now();
                match self.lake.derive_outcomes().await {
                    Ok(report) => {
                        archived_since_derive = false;
                        tracing::info!(
                            outcomes = report.outcomes_written,
                            "derived processed/outcomes"
                        );
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "deriving processed/outcomes failed; will retry")
                    }
                }
            }
            if due(last_compact, self.settings.compact_interval) {
                last_compact = std::time::Instant::now();
                match self.compact(|_| {}).await {
                    Ok(report) if report.files_in > 0 => tracing::info!(
                        files_in = report.files_in,
                        files_out = report.files_out,
                        "compacted the lake"
                    ),
                    Ok(_) => {}
                    Err(err) => {
                        tracing::warn!(error = %err, "compacting the lake failed; will retry")
                    }
                }
            }
            if self.settings.retention_days > 0 && last_expiry.elapsed() > Duration::from_secs(3600)
            {
                last_expiry = std::time::Instant::now();
                if let Err(err) = self.expire().await {
                    tracing::warn!(error = %err, "expiring operational copies failed");
                }
            }
        }
        match tokio::time::timeout(final_flush, self.archive(true)).await {
            Ok(Ok(report)) if report.rows > 0 => {
                tracing::info!(
                    rows = report.rows,
                    "archived the remaining interactions before stopping"
                )
            }
            Ok(Ok(_)) => {}
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "final archive failed; the next start will ship the rest")
            }
            Err(_) => tracing::warn!(
                "final archive did not finish in time; the next start will ship the rest"
            ),
        }
    }

    /// One pass: finishes pending batches, then claims new ones while the thresholds say so
    /// (or until nothing is left when `force`).
    pub async fn archive(&self, force: bool) -> Result<ArchiveReport, ServiceError> {
        let mut report = ArchiveReport::default();
        for batch in self.store.pending_archive_batches().await? {
            self.ship(batch, &mut report).await?;
        }
        loop {
            let (waiting, oldest) = self.store.unarchived_stats().await?;
            if waiting == 0 {
                break;
            }
            let old_enough = oldest.is_some_and(|oldest| {
                Utc::now() - oldest
                    >= chrono::Duration::from_std(self.settings.flush_max_age).unwrap_or_default()
            });
            if !force && waiting < i64::from(self.settings.flush_max_rows) && !old_enough {
                break;
            }
            let Some(batch) = self
                .store
                .claim_archive_batch(self.settings.flush_max_rows, Utc::now())
                .await?
            else {
                break;
            };
            self.ship(batch, &mut report).await?;
        }
        Ok(report)
    }

    async fn ship(&self, batch: i64, report: &mut ArchiveReport) -> Result<(), ServiceError> {
        let rows = self.store.archive_batch_rows(batch).await?;
        let n_rows = rows.len();
        let files = self
            .lake
            .write_raw_batch(batch, rows)
            .await
            .map_err(|err| ServiceError::Unavailable(format!("lake: {err}")))?;
        if std::env::var_os(CRASH_AFTER_UPLOAD_ENV).is_some() {
            tracing::error!(
                batch,
                "{CRASH_AFTER_UPLOAD_ENV} is set: aborting after the upload"
            );
            std::process::abort();
        }
        self.store
            .complete_archive_batch(batch, &files, Utc::now())
            .await?;
        tracing::debug!(
            batch,
            rows = n_rows,
            files = files.len(),
            "archived a batch"
        );
        report.batches += 1;
        report.rows += n_rows;
        report.files.extend(files);
        Ok(())
    }

    /// Merges small raw files of completed batches (see `flywheel_lake` on why readers never
    /// see a partition twice or half).
    pub async fn compact(
        &self,
        progress: impl FnMut(&str),
    ) -> Result<flywheel_lake::CompactReport, ServiceError> {
        let horizon = self.store.completed_batch_horizon().await?;
        self.lake
            .compact_raw(horizon, self.settings.compact_target_bytes, progress)
            .await
            .map_err(|err| ServiceError::Unavailable(format!("lake: {err}")))
    }

    /// Rewrites `processed/outcomes/` from the raw dataset.
    pub async fn derive(&self) -> Result<flywheel_lake::DeriveReport, ServiceError> {
        self.lake
            .derive_outcomes()
            .await
            .map_err(|err| ServiceError::Unavailable(format!("lake: {err}")))
    }

    /// Deletes operational copies older than the retention once they are in the lake.
    pub async fn expire(&self) -> Result<u64, ServiceError> {
        if self.settings.retention_days == 0 {
            return Ok(0);
        }
        let cutoff = Utc::now() - chrono::Duration::days(i64::from(self.settings.retention_days));
        Ok(self.store.expire_archived(cutoff).await?)
    }
}

/// Per-day comparison of the store and the lake.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DayComparison {
    /// Rows in the store whose batch is complete (they must be in the lake).
    pub store_archived: u64,
    /// Rows in the store not yet in the lake (waiting for the archiver).
    pub store_pending: u64,
    pub lake_rows: u64,
}

#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    /// `YYYY-MM-DD` → counts.
    pub days: BTreeMap<String, DayComparison>,
    /// Archived in the store but absent from the lake.
    pub missing_in_lake: Vec<String>,
    /// In the lake more than once.
    pub duplicated_in_lake: Vec<String>,
    /// In the lake but not in the store (expired operational copies are expected here).
    pub only_in_lake: Vec<String>,
    pub lake_files: usize,
}

impl VerifyReport {
    pub fn is_consistent(&self) -> bool {
        self.missing_in_lake.is_empty() && self.duplicated_in_lake.is_empty()
    }
}

/// Compares counts and ids per day between the store and the lake. `progress` is called with
/// the number of store rows read so far.
pub async fn verify(
    store: &dyn InteractionStore,
    lake: &Lake,
    mut progress: impl FnMut(u64),
) -> Result<VerifyReport, ServiceError> {
    let mut report = VerifyReport::default();
    let lake_rows = lake
        .read_raw_index()
        .await
        .map_err(|err| ServiceError::Unavailable(format!("lake: {err}")))?;
    report.lake_files = lake_rows
        .iter()
        .map(|row| row.file.as_str())
        .collect::<std::collections::HashSet<_>>()
        .len();
    let mut in_lake: HashMap<(String, String), u32> = HashMap::with_capacity(lake_rows.len());
    for row in &lake_rows {
        *in_lake
            .entry((row.tenant_id.clone(), row.interaction_id.clone()))
            .or_default() += 1;
        report
            .days
            .entry(day_of(row.timestamp_ms))
            .or_default()
            .lake_rows += 1;
    }
    for ((tenant, id), count) in &in_lake {
        if *count > 1 {
            report.duplicated_in_lake.push(format!("{tenant}/{id}"));
        }
    }
    let mut after = 0;
    let mut read = 0u64;
    loop {
        let page = store.archive_index(after, 10_000).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for row in page {
            read += 1;
            let day = report.days.entry(day_of(row.timestamp_ms)).or_default();
            let key = (row.tenant_id, row.interaction_id);
            if row.archived {
                day.store_archived += 1;
                if in_lake.remove(&key).is_none() {
                    report.missing_in_lake.push(format!("{}/{}", key.0, key.1));
                }
            } else {
                day.store_pending += 1;
                in_lake.remove(&key);
            }
        }
        progress(read);
    }
    report.only_in_lake = in_lake
        .into_keys()
        .map(|(tenant, id)| format!("{tenant}/{id}"))
        .collect();
    report.duplicated_in_lake.sort();
    report.only_in_lake.sort();
    Ok(report)
}

fn day_of(timestamp_ms: i64) -> String {
    match Utc.timestamp_millis_opt(timestamp_ms).single() {
        Some(time) => format!("{:04}-{:02}-{:02}", time.year(), time.month(), time.day()),
        None => "invalid".to_owned(),
    }
}
