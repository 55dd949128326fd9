//! Opening the lake's object store and reading and writing its files.

use std::sync::Arc;

use bytes::Bytes;
use chrono::Datelike;
use flywheel_core::interaction::InteractionRecord;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::raw::{self, RawIndexEntry, RAW_DATASET};

/// S3 connection settings; absent credentials fall back to the standard AWS environment.
#[derive(Clone, Default)]
pub struct S3Settings {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub allow_http: bool,
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id.as_ref().map(|_| "***"))
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "***"),
            )
            .field("allow_http", &self.allow_http)
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct LakeSettings {
    /// A local directory or `s3://bucket/prefix`.
    pub url: String,
    pub s3: S3Settings,
}

#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("lake location '{url}' is not usable: {problem}")]
    Location { url: String, problem: String },
    #[error("lake storage error: {0}")]
    Storage(#[from] object_store::Error),
    #[error("parquet error in {path}: {source}")]
    Parquet {
        path: String,
        source: parquet::errors::ParquetError,
    },
    #[error("arrow error: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
}

/// A file in the lake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LakeFile {
    /// Path relative to the lake root, e.g. `raw/year=2026/month=11/day=22/part-….parquet`.
    pub path: String,
    pub size: u64,
}

/// A handle to the lake. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Lake {
    store: Arc<dyn ObjectStore>,
    root: Path,
    url: String,
}

impl Lake {
    pub fn open(settings: &LakeSettings) -> Result<Lake, LakeError> {
        let url = settings.url.clone();
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(LakeError::Location {
                    url,
                    problem: "no bucket name; write s3://bucket/prefix".to_owned(),
                });
            }
            let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
            if let Some(endpoint) = &settings.s3.endpoint {
                builder = builder
                    .with_endpoint(endpoint)
                    .with_virtual_hosted_style_request(false);
            }
            if let Some(region) = &settings.s3.region {
                builder = builder.with_region(region);
            }
            if let Some(key) = &settings.s3.access_key_id {
                builder = builder.with_access_key_id(key);
            }
            if let Some(secret) = &settings.s3.secret_access_key {
                builder = builder.with_secret_access_key(secret);
            }
            if settings.s3.allow_http {
                builder = builder.with_allow_http(true);
            }
            let store = builder.build().map_err(|err| LakeError::Location {
                url: url.clone(),
                problem: err.to_string(),
            })?;
            Ok(Lake {
                store: Arc::new(store),
                root: Path::from(prefix.trim_matches('/')),
                url,
            })
        } else if url.contains("://") && !url.starts_with("file://") {
            Err(LakeError::Location {
                url,
                problem: "use a local directory or s3://bucket/prefix".to_owned(),
            })
        } else {
            let dir = url.strip_prefix("file://").unwrap_or(&url);
            std::fs::create_dir_all(dir).map_err(|err| LakeError::Location {
                url: url.clone(),
                problem: format!("cannot create the directory: {err}"),
            })?;
            let store =
                LocalFileSystem::new_with_prefix(dir).map_err(|err| LakeError::Location {
                    url: url.clone(),
                    problem: err.to_string(),
                })?;
            Ok(Lake {
                store: Arc::new(store),
                root: Path::from(""),
                url,
            })
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The object store under the lake, for engines that read the files themselves (the SQL
    /// engine). Paths in it are [`Lake::object_path`]s.
    pub fn object_store(&self) -> Arc<dyn ObjectStore> {
        Arc::clone(&self.store)
    }

    /// The object-store path of a lake-relative path.
    pub fn object_path(&self, relative: &str) -> Path {
        self.full_path(relative)
    }

    fn full_path(&self, relative: &str) -> Path {
        if self.root.as_ref().is_empty() {
            Path::from(relative)
        } else {
            Path::from(format!("{}/{relative}", self.root.as_ref()))
        }
    }

    fn relative(&self, full: &Path) -> String {
        let full = full.as_ref();
        let root = self.root.as_ref();
        if root.is_empty() {
            full.to_owned()
        } else {
            full.strip_prefix(root)
                .map(|rest| rest.trim_start_matches('/').to_owned())
                .unwrap_or_else(|| full.to_owned())
        }
    }

    /// Writes one archive batch as one Parquet file per day partition and returns the paths.
    /// Idempotent: the same batch always produces the same paths and contents.
    pub async fn write_raw_batch(
        &self,
        batch_id: i64,
        rows: Vec<InteractionRecord>,
    ) -> Result<Vec<String>, LakeError> {
        // Encoding is CPU work (JSON field extraction, zstd): keep it off the async workers.
        let encoded = crate::background::run(move || encode_days(batch_id, &rows))
            .await
            .map_err(|err| LakeError::Location {
                url: String::new(),
                problem: format!("encoding task failed: {err}"),
            })??;
        let mut written = Vec::with_capacity(encoded.len());
        for (relative, bytes) in encoded {
            self.put(&relative, bytes).await?;
            written.push(relative);
        }
        Ok(written)
    }

    pub async fn put(&self, relative: &str, bytes: Bytes) -> Result<(), LakeError> {
        self.store
            .put(&self.full_path(relative), PutPayload::from_bytes(bytes))
            .await?;
        Ok(())
    }

    pub async fn get(&self, relative: &str) -> Result<Bytes, LakeError> {
        Ok(self
            .store
            .get(&self.full_path(relative))
            .await?
            .bytes()
            .await?)
    }

    pub async fn delete(&self, relative: &str) -> Result<(), LakeError> {
        self.store.delete(&self.full_path(relative)).await?;
        Ok(())
    }

    /// Every file under `prefix` (e.g. `raw`), sorted by path.
    pub async fn list(&self, prefix: &str) -> Result<Vec<LakeFile>, LakeError> {
        let prefix = self.full_path(prefix);
        let mut files: Vec<LakeFile> = self
            .store
            .list(Some(&prefix))
            .map_ok(|meta| LakeFile {
                path: self.relative(&meta.location),
                size: meta.size,
            })
            .try_collect()
            .await?;
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(files)
    }

    /// (tenant, id, timestamp) of every row in the raw dataset's Parquet files.
    pub async fn read_raw_index(&self) -> Result<Vec<RawIndexEntry>, LakeError> {
        let mut entries = Vec::new();
        for file in self.current_raw_files().await? {
            let bytes = self.get(&file.path).await?;
            let rows = raw::read_index(bytes, &file.path).map_err(|source| LakeError::Parquet {
                path: file.path.clone(),
                source,
            })?;
            entries.extend(rows);
        }
        Ok(entries)
    }
}

/// One Parquet file per UTC day of `timestamp`, named after the batch.
fn encode_days(
    batch_id: i64,
    rows: &[InteractionRecord],
) -> Result<Vec<(String, Bytes)>, LakeError> {
    let mut by_day: std::collections::BTreeMap<(i32, u32, u32), Vec<&InteractionRecord>> =
        std::collections::BTreeMap::new();
    for row in rows {
        let day = chrono::DateTime::from_timestamp_millis(row.timestamp_ms).unwrap_or_default();
        by_day
            .entry((day.year(), day.month(), day.day()))
            .or_default()
            .push(row);
    }
    by_day
        .into_iter()
        .map(|((year, month, day), day_rows)| {
            let relative = format!(
                "{RAW_DATASET}/year={year:04}/month={month:02}/day={day:02}/part-{batch_id:016}.parquet"
            );
            let bytes = raw::encode_parquet(&day_rows).map_err(|source| LakeError::Parquet {
                path: relative.clone(),
                source,
            })?;
            Ok((relative, bytes))
        })
        .collect()
}
