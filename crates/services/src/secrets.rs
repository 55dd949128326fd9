//! The installation's master key and the sub-keys derived from it.
//!
//! One 32-byte master key (from a file or an environment variable) is the root of every
//! server-side secret: the keyed hash of API keys, the default JWT secret and, later, the
//! envelope encryption of stored provider keys. Sub-keys are HMAC-SHA256(master, label), so
//! each use gets an independent key and the master key itself is never used directly.

use std::io::Write;
use std::path::Path;

use base64::Engine;
use flywheel_config::{SecretRef, SecretRefError};
use hmac::{Hmac, Mac};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretBox};
use sha2::Sha256;

/// The master key. Not `Debug`-printable beyond its presence.
pub struct MasterKey(SecretBox<[u8; 32]>);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(***)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    #[error("cannot read the master key: {0}")]
    Unreadable(#[from] SecretRefError),
    #[error("the master key from {origin} is not 32 bytes of base64 (got {problem}); generate one with `head -c32 /dev/urandom | base64`")]
    Malformed { origin: String, problem: String },
    #[error("cannot create the master key file {path}: {source}")]
    Create {
        path: String,
        source: std::io::Error,
    },
}

impl MasterKey {
    /// Reads the key; when `generate_if_missing` and the reference is a missing file, a new
    /// random key is written there first (mode 0600).
    pub fn load(
        secret: &SecretRef,
        generate_if_missing: bool,
    ) -> Result<MasterKey, MasterKeyError> {
        if let SecretRef::File { file } = secret {
            if generate_if_missing && !file.exists() {
                write_new_key_file(file)?;
            }
        }
        let encoded = secret.resolve()?;
        let origin = format!("{secret:?}");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded.expose_secret().as_bytes())
            .map_err(|err| MasterKeyError::Malformed {
                origin: origin.clone(),
                problem: err.to_string(),
            })?;
        let key: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| MasterKeyError::Malformed {
                origin,
                problem: format!("{} bytes", bytes.len()),
            })?;
        Ok(MasterKey(SecretBox::new(Box::new(key))))
    }

    /// A key for one purpose, independent of the keys for every other `label`.
    pub fn derive(&self, label: &str) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.0.expose_secret())
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(label.as_bytes());
        mac.finalize().into_bytes().into()
    }
}

fn write_new_key_file(path: &Path) -> Result<(), MasterKeyError> {
    let create_error = |source| MasterKeyError::Create {
        path: path.display().to_string(),
        source,
    };
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent).map_err(create_error)?;
        }
    }
    let mut key = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut key);
    let encoded = base64::engine::general_purpose::STANDARD.encode(key);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(mut file) => {
            file.write_all(encoded.as_bytes()).map_err(create_error)?;
            file.sync_all().map_err(create_error)
        }
        // Another process created it first; use theirs.
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(err) => Err(create_error(err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_once_and_derives_stable_distinct_keys() {
        let dir = tempfile::tempdir().unwrap();
        let reference = SecretRef::File {
            file: dir.path().join("sub/master.key"),
        };
        let first = MasterKey::load(&reference, true).unwrap();
        let second = MasterKey::load(&reference, true).unwrap();
        assert_eq!(first.derive("a"), second.derive("a"));
        assert_ne!(first.derive("a"), first.derive("b"));
        assert_eq!(format!("{first:?}"), "MasterKey(***)");
    }

    #[test]
    fn rejects_short_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        std::fs::write(&path, "c2hvcnQ=").unwrap();
        let err = MasterKey::load(&SecretRef::File { file: path }, false).unwrap_err();
        assert!(err.to_string().contains("32 bytes"), "{err}");
    }

    #[test]
    fn missing_configured_file_is_not_generated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent.key");
        let err = MasterKey::load(&SecretRef::File { file: path.clone() }, false).unwrap_err();
        assert!(matches!(err, MasterKeyError::Unreadable(_)));
        assert!(!path.exists());
    }
}
