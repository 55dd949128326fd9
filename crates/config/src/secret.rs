//! References to secrets (an environment variable or a file) and their redaction.

use std::fmt;
use std::path::PathBuf;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// Where a secret lives. The configuration holds only this reference, which is safe to print.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum SecretRef {
    Env { env: String },
    File { file: PathBuf },
}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env { env } => write!(f, "SecretRef(env:{env})"),
            SecretRef::File { file } => write!(f, "SecretRef(file:{})", file.display()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretRefError {
    #[error("environment variable {name} is not set (or is not valid UTF-8); set it to the secret's value")]
    EnvMissing { name: String },
    #[error("cannot read secret file {path}: {source}; create it or point the configuration at another file")]
    FileUnreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("secret from {origin} is empty")]
    Empty { origin: String },
}

impl SecretRef {
    /// Reads the secret. Surrounding whitespace (such as a trailing newline in a file) is trimmed.
    pub fn resolve(&self) -> Result<SecretString, SecretRefError> {
        let (raw, origin) = match self {
            SecretRef::Env { env } => (
                std::env::var(env).map_err(|_| SecretRefError::EnvMissing { name: env.clone() })?,
                format!("environment variable {env}"),
            ),
            SecretRef::File { file } => (
                std::fs::read_to_string(file).map_err(|source| SecretRefError::FileUnreadable {
                    path: file.clone(),
                    source,
                })?,
                format!("file {}", file.display()),
            ),
        };
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(SecretRefError::Empty { origin });
        }
        Ok(SecretString::from(trimmed.to_owned()))
    }
}

/// Replaces the password of a `scheme://user:password@host/…` URL with `***`.
pub fn redact_url_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &authority[..at];
    match userinfo.find(':') {
        Some(colon) => format!(
            "{}{}:***{}",
            &url[..scheme_end + 3],
            &userinfo[..colon],
            &rest[at..]
        ),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_only() {
        assert_eq!(
            redact_url_password("postgres://app:s3cret@db:5432/fw"),
            "postgres://app:***@db:5432/fw"
        );
        assert_eq!(
            redact_url_password("postgres://app@db/fw"),
            "postgres://app@db/fw"
        );
        assert_eq!(
            redact_url_password("sqlite://./data/x.db"),
            "sqlite://./data/x.db"
        );
        assert_eq!(
            redact_url_password("postgres://a:p@ss@h/d?x=1"),
            "postgres://a:***@h/d?x=1"
        );
    }

    #[test]
    fn resolves_files_and_env() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "hunter2\n").unwrap();
        let secret = SecretRef::File { file: path }.resolve().unwrap();
        assert_eq!(secrecy::ExposeSecret::expose_secret(&secret), "hunter2");
        let missing = SecretRef::Env {
            env: "FLYWHEEL_SURELY_UNSET_VARIABLE".to_owned(),
        }
        .resolve();
        assert!(matches!(missing, Err(SecretRefError::EnvMissing { .. })));
    }
}
