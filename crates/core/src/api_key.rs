//! The API key format: `fw_<prefix>_<secret>`.
//!
//! The prefix (12 lower-case alphanumerics) is stored in clear and shown in listings so a
//! key can be recognised and revoked; the secret (40 alphanumerics, about 238 bits) is shown
//! once at creation and only a keyed hash of the whole key is stored.

use std::fmt;

pub const KEY_SCHEME: &str = "fw";
pub const PREFIX_LEN: usize = 12;
pub const SECRET_LEN: usize = 40;

/// The public, stored part of an API key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ApiKeyPrefix(String);

impl ApiKeyPrefix {
    pub fn parse(raw: &str) -> Result<ApiKeyPrefix, ApiKeyFormatError> {
        if raw.len() == PREFIX_LEN
            && raw
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        {
            Ok(ApiKeyPrefix(raw.to_owned()))
        } else {
            Err(ApiKeyFormatError)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ApiKeyPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "an API key looks like fw_<12 lower-case letters or digits>_<40 letters or digits>; create one with `flywheel keys create`"
)]
pub struct ApiKeyFormatError;

/// A key presented by a caller, split into its parts. Deliberately not `Display`:
/// the whole key is a secret and must never be formatted into logs or errors.
#[derive(Clone, PartialEq, Eq)]
pub struct PresentedApiKey {
    prefix: ApiKeyPrefix,
    full: String,
}

impl fmt::Debug for PresentedApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PresentedApiKey({}_…)", self.prefix)
    }
}

impl PresentedApiKey {
    pub fn parse(raw: &str) -> Result<PresentedApiKey, ApiKeyFormatError> {
        let mut parts = raw.splitn(3, '_');
        let (Some(scheme), Some(prefix), Some(secret)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(ApiKeyFormatError);
        };
        if scheme != KEY_SCHEME
            || secret.len() != SECRET_LEN
            || !secret.chars().all(|c| c.is_ascii_alphanumeric())
        {
            return Err(ApiKeyFormatError);
        }
        Ok(PresentedApiKey {
            prefix: ApiKeyPrefix::parse(prefix)?,
            full: raw.to_owned(),
        })
    }

    /// Builds a key from freshly generated parts.
    pub fn from_parts(
        prefix: ApiKeyPrefix,
        secret: &str,
    ) -> Result<PresentedApiKey, ApiKeyFormatError> {
        PresentedApiKey::parse(&format!("{KEY_SCHEME}_{prefix}_{secret}"))
    }

    pub fn prefix(&self) -> &ApiKeyPrefix {
        &self.prefix
    }

    /// The whole key, for hashing or for showing once at creation.
    pub fn expose(&self) -> &str {
        &self.full
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "abcdefghijABCDEFGHIJ0123456789abcdefghij";

    #[test]
    fn parses_well_formed_keys() {
        let key = PresentedApiKey::parse(&format!("fw_abcdef123456_{SECRET}")).unwrap();
        assert_eq!(key.prefix().as_str(), "abcdef123456");
        assert!(!format!("{key:?}").contains(SECRET));
    }

    #[test]
    fn rejects_malformed_keys() {
        for raw in [
            "",
            "fw_abc_def",
            &format!("xx_abcdef123456_{SECRET}"),
            &format!("fw_ABCDEF123456_{SECRET}"),
            "fw_abcdef123456_short",
            &format!("fw_abcdef123456_{SECRET}!"),
        ] {
            assert!(
                PresentedApiKey::parse(raw).is_err(),
                "{raw} should be rejected"
            );
        }
    }
}
