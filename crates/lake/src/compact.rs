//! Compaction of the raw dataset, and the rule that makes it atomic for readers.
//!
//! The archiver writes one file per batch and day, `part-<batch>.parquet`. Compaction merges
//! consecutive batch files of one partition into `part-<first>-<last>.parquet`, then deletes
//! the inputs. Readers apply the *coverage rule*: a file whose batch range lies inside another
//! file's range in the same partition is ignored. So before the merged file exists, readers
//! see the inputs; from the moment it exists, they see it alone — never a partition twice or
//! half, even if the process dies before deleting the inputs (the next compaction deletes them).

use std::collections::BTreeMap;

use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::errors::ParquetError;

use crate::raw::{writer_properties, RAW_DATASET};
use crate::{Lake, LakeError, LakeFile};

/// What a compaction did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CompactReport {
    pub partitions: usize,
    pub files_in: usize,
    pub files_out: usize,
    pub rows: usize,
    /// Inputs already covered by a merged file and deleted now (left by an interrupted run).
    pub leftovers_deleted: usize,
}

/// The batch range a file name covers: `part-7.parquet` → (7, 7), `part-3-9.parquet` → (3, 9).
pub fn batch_range(path: &str) -> Option<(i64, i64)> {
    let name = path.rsplit('/').next()?;
    let stem = name.strip_prefix("part-")?.strip_suffix(".parquet")?;
    match stem.split_once('-') {
        Some((first, last)) => Some((first.parse().ok()?, last.parse().ok()?)),
        None => {
            let batch = stem.parse().ok()?;
            Some((batch, batch))
        }
    }
}

/// A file with the batch range its name covers.
type RangedFile = (LakeFile, (i64, i64));

fn partition_of(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(dir, _)| dir)
}

/// Splits files into those readers should see and those covered by a merged file.
pub fn apply_coverage(files: Vec<LakeFile>) -> (Vec<LakeFile>, Vec<LakeFile>) {
    let mut by_partition: BTreeMap<String, Vec<RangedFile>> = BTreeMap::new();
    let mut current = Vec::new();
    let mut covered = Vec::new();
    for file in files {
        match batch_range(&file.path) {
            Some(range) => by_partition
                .entry(partition_of(&file.path).to_owned())
                .or_default()
                .push((file, range)),
            // Files not written by the archiver are left alone and shown as they are.
            None => current.push(file),
        }
    }
    for (_, files) in by_partition {
        for (idx, (file, (first, last))) in files.iter().enumerate() {
            let is_covered = files
                .iter()
                .enumerate()
                .any(|(other_idx, (_, (o_first, o_last)))| {
                    other_idx != idx
                        && *o_first <= *first
                        && *last <= *o_last
                        && (o_first, o_last) != (first, last)
                });
            if is_covered {
                covered.push(file.clone());
            } else {
                current.push(file.clone());
            }
        }
    }
    current.sort_by(|a, b| a.path.cmp(&b.path));
    covered.sort_by(|a, b| a.path.cmp(&b.path));
    (current, covered)
}

impl Lake {
    /// The raw dataset's files that readers should use (see the coverage rule).
    pub async fn current_raw_files(&self) -> Result<Vec<LakeFile>, LakeError> {
        let files = self
            .list(RAW_DATASET)
            .await?
            .into_iter()
            .filter(|file| file.path.ends_with(".parquet"))
            .collect();
        Ok(apply_coverage(files).0)
    }

    /// Merges consecutive batch files of each partition into files of about `target_bytes`,
    /// considering only batches up to `max_batch` (those the store recorded as complete).
    pub async fn compact_raw(
        &self,
        max_batch: i64,
        target_bytes: u64,
        mut progress: impl FnMut(&str),
    ) -> Result<CompactReport, LakeError> {
        let files: Vec<LakeFile> = self
            .list(RAW_DATASET)
            .await?
            .into_iter()
            .filter(|file| file.path.ends_with(".parquet"))
            .collect();
        let (current, covered) = apply_coverage(files);
        let mut report = CompactReport::default();
        for file in covered {
            self.delete(&file.path).await?;
            report.leftovers_deleted += 1;
        }
        let mut by_partition: BTreeMap<String, Vec<RangedFile>> = BTreeMap::new();
        for file in current {
            if let Some(range) = batch_range(&file.path).filter(|(_, last)| *last <= max_batch) {
                by_partition
                    .entry(partition_of(&file.path).to_owned())
                    .or_default()
                    .push((file, range));
            }
        }
        for (partition, mut files) in by_partition {
            files.sort_by_key(|(_, (first, _))| *first);
            let mut groups: Vec<Vec<RangedFile>> = Vec::new();
            let mut group = Vec::new();
            let mut group_bytes = 0u64;
            for entry in files {
                group_bytes += entry.0.size;
                group.push(entry);
                if group_bytes >= target_bytes {
                    groups.push(std::mem::take(&mut group));
                    group_bytes = 0;
                }
            }
            groups.push(group);
            let mut touched = false;
            for group in groups.into_iter().filter(|group| group.len() >= 2) {
                progress(&partition);
                let first = group.first().map_or(0, |(_, (first, _))| *first);
                let last = group.last().map_or(0, |(_, (_, last))| *last);
                let mut inputs = Vec::with_capacity(group.len());
                for (file, _) in &group {
                    inputs.push(self.get(&file.path).await?);
                }
                let output = format!("{partition}/part-{first:016}-{last:016}.parquet");
                let label = output.clone();
                let (bytes, rows) = crate::background::run(move || merge(&inputs))
                    .await
                    .map_err(|err| LakeError::Location {
                        url: String::new(),
                        problem: format!("compaction task failed: {err}"),
                    })?
                    .map_err(|source| LakeError::Parquet {
                        path: label,
                        source,
                    })?;
                // The merged file appears in one put; from then on it covers the inputs.
                self.put(&output, bytes).await?;
                for (file, _) in &group {
                    self.delete(&file.path).await?;
                }
                report.files_in += group.len();
                report.files_out += 1;
                report.rows += rows;
                touched = true;
            }
            if touched {
                report.partitions += 1;
            }
        }
        Ok(report)
    }
}

fn merge(inputs: &[Bytes]) -> Result<(Bytes, usize), ParquetError> {
    let mut rows = 0;
    let mut writer: Option<ArrowWriter<Vec<u8>>> = None;
    for input in inputs {
        let reader = ParquetRecordBatchReaderBuilder::try_new(input.clone())?.build()?;
        for batch in reader {
            let batch = batch?;
            rows += batch.num_rows();
            if writer.is_none() {
                writer = Some(ArrowWriter::try_new(
                    Vec::new(),
                    batch.schema(),
                    Some(writer_properties()?),
                )?);
            }
            if let Some(writer) = writer.as_mut() {
                writer.write(&batch)?;
            }
        }
    }
    let buffer = match writer {
        // `into_inner` writes the footer and hands the buffer back.
        Some(writer) => writer.into_inner()?,
        None => Vec::new(),
    };
    Ok((Bytes::from(buffer), rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str) -> LakeFile {
        LakeFile {
            path: path.to_owned(),
            size: 1,
        }
    }

    #[test]
    fn names_carry_batch_ranges() {
        assert_eq!(
            batch_range("raw/year=2026/month=01/day=02/part-0000000000000007.parquet"),
            Some((7, 7))
        );
        assert_eq!(
            batch_range("raw/x/part-0000000000000003-0000000000000009.parquet"),
            Some((3, 9))
        );
        assert_eq!(batch_range("raw/x/other.parquet"), None);
    }

    #[test]
    fn merged_files_hide_their_inputs() {
        let (current, covered) = apply_coverage(vec![
            file("raw/d=1/part-1.parquet"),
            file("raw/d=1/part-2.parquet"),
            file("raw/d=1/part-1-2.parquet"),
            file("raw/d=1/part-3.parquet"),
            file("raw/d=2/part-2.parquet"),
        ]);
        let current: Vec<&str> = current.iter().map(|f| f.path.as_str()).collect();
        let covered: Vec<&str> = covered.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            current,
            vec![
                "raw/d=1/part-1-2.parquet",
                "raw/d=1/part-3.parquet",
                "raw/d=2/part-2.parquet"
            ]
        );
        assert_eq!(
            covered,
            vec!["raw/d=1/part-1.parquet", "raw/d=1/part-2.parquet"]
        );
    }
}
