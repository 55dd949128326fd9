//! Envelope encryption of stored secrets with AES-256-GCM.
//!
//! Every record gets a fresh random 256-bit data key that encrypts its plaintext; the data key
//! is in turn encrypted ("wrapped") by a key-encryption key (KEK) from the [`KeyRing`]. Only the
//! wrapped data key is stored, with the id of the KEK that wrapped it, so rotating the KEK
//! re-wraps 32-byte data keys and never touches the ciphertexts.
//!
//! A KEK's id is the first 8 bytes (hex) of SHA-256 over a fixed label and the key: stable,
//! safe to store and print, and different for every key. The caller's additional authenticated
//! data (AAD) binds a ciphertext to its record, so a ciphertext copied into another row fails to
//! open. Data keys and plaintexts live in zeroizing buffers.

use aes_gcm::aead::{Aead, AeadInPlace, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use flywheel_config::{SecretRef, SecretRefError, SecretsConfig};
use rand::RngCore;
use secrecy::zeroize::Zeroizing;
use secrecy::{ExposeSecret, ExposeSecretMut, SecretBox, SecretSlice};
use sha2::{Digest, Sha256};

use crate::secrets::MasterKey;

/// The label [`MasterKey::derive`] uses for the default KEK (no `secrets.encryption_key`).
pub const DERIVED_KEK_LABEL: &str = "provider-key-encryption-v1";

const KEY_ID_LABEL: &[u8] = b"flywheel/envelope/kek-id/v1";
/// AAD of the data-key wrap: separates it from every other use of the KEK.
const WRAP_AAD: &[u8] = b"flywheel/envelope/data-key/v1";
const NONCE_LEN: usize = 12;
const KEY_LEN: usize = 32;

/// A sealed record: what is stored instead of the plaintext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The plaintext encrypted under the data key (with the 16-byte tag appended).
    pub ciphertext: Vec<u8>,
    pub nonce: Vec<u8>,
    /// The data key encrypted under the KEK `key_id`.
    pub wrapped_data_key: Vec<u8>,
    pub wrap_nonce: Vec<u8>,
    pub key_id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error(
        "the record's data key is wrapped under key-encryption key {key_id}, which is not \
         configured (the current key is {current_key_id}); add the key whose id is {key_id} to \
         secrets.retired_encryption_keys (or set it as secrets.encryption_key)"
    )]
    UnknownKey {
        key_id: String,
        current_key_id: String,
    },
    #[error(
        "key-encryption key {key_id} cannot unwrap the record's data key: the configured key \
         is wrong for this record, or the stored wrapped key was altered"
    )]
    WrongKey { key_id: String },
    #[error("the ciphertext failed authentication: it was altered or belongs to another record")]
    Tampered,
    #[error("malformed sealed record: {0}")]
    Malformed(String),
    #[error("encryption failed")]
    Encrypt,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyRingError {
    #[error("cannot read {key}: {source}")]
    Unreadable {
        key: String,
        #[source]
        source: SecretRefError,
    },
    #[error(
        "{key} ({origin}) is not 32 bytes of base64 (got {problem}); generate one with \
         `head -c32 /dev/urandom | base64`"
    )]
    Malformed {
        key: String,
        origin: String,
        problem: String,
    },
}

/// The current KEK, which seals and re-wraps, and retired ones, which only unwrap.
pub struct KeyRing {
    current: KeyEncryptionKey,
    retired: Vec<KeyEncryptionKey>,
}

struct KeyEncryptionKey {
    id: String,
    key: SecretBox<[u8; KEY_LEN]>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("current", &self.current.id)
            .field(
                "retired",
                &self.retired.iter().map(|k| &k.id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl KeyRing {
    /// A ring of the given keys. Retired keys equal to the current one are dropped.
    pub fn new(
        current: [u8; KEY_LEN],
        retired: impl IntoIterator<Item = [u8; KEY_LEN]>,
    ) -> KeyRing {
        let current = KeyEncryptionKey::new(current);
        let mut ring = KeyRing {
            current,
            retired: Vec::new(),
        };
        for key in retired {
            ring.add_retired(KeyEncryptionKey::new(key));
        }
        ring
    }

    /// The ring configured in `secrets`: `encryption_key` (or, when absent, a key derived from
    /// the master key) as the current KEK, and `retired_encryption_keys`. The master-derived
    /// key is always accepted for unwrapping, so an installation that started without
    /// `encryption_key` can move to one with a single rotation.
    pub fn from_config(
        secrets: &SecretsConfig,
        master_key: &MasterKey,
    ) -> Result<KeyRing, KeyRingError> {
        let derived = KeyEncryptionKey::new(master_key.derive(DERIVED_KEK_LABEL));
        let mut ring = match &secrets.encryption_key {
            Some(reference) => {
                let mut ring = KeyRing {
                    current: KeyEncryptionKey::load("secrets.encryption_key", reference)?,
                    retired: Vec::new(),
                };
                ring.add_retired(derived);
                ring
            }
            None => KeyRing {
                current: derived,
                retired: Vec::new(),
            },
        };
        for (idx, reference) in secrets.retired_encryption_keys.iter().enumerate() {
            let key = format!("secrets.retired_encryption_keys[{idx}]");
            ring.add_retired(KeyEncryptionKey::load(&key, reference)?);
        }
        Ok(ring)
    }

    /// The id of the KEK that seals new records.
    pub fn current_key_id(&self) -> &str {
        &self.current.id
    }

    /// Encrypts `plaintext` under a fresh data key bound to `aad`, and wraps the data key
    /// under the current KEK.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Sealed, EnvelopeError> {
        let data_key: SecretBox<[u8; KEY_LEN]> =
            SecretBox::init_with_mut(|key: &mut [u8; KEY_LEN]| rand::rngs::OsRng.fill_bytes(key));
        let nonce = random_nonce();
        // `encrypt` copies the plaintext into a buffer with room for the tag and encrypts it
        // there, so no plaintext copy is left behind.
        let ciphertext = cipher(data_key.expose_secret())
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| EnvelopeError::Encrypt)?;
        let (wrapped_data_key, wrap_nonce) = self.current.wrap(&data_key)?;
        Ok(Sealed {
            ciphertext,
            nonce: nonce.to_vec(),
            wrapped_data_key,
            wrap_nonce,
            key_id: self.current.id.clone(),
        })
    }

    /// Decrypts a sealed record; `aad` must be the one it was sealed with.
    pub fn open(&self, sealed: &Sealed, aad: &[u8]) -> Result<SecretSlice<u8>, EnvelopeError> {
        let data_key = self.unwrap_data_key(sealed)?;
        let nonce = nonce_from(&sealed.nonce, "nonce")?;
        let mut buffer = Zeroizing::new(sealed.ciphertext.clone());
        cipher(data_key.expose_secret())
            .decrypt_in_place(nonce, aad, &mut *buffer)
            .map_err(|_| EnvelopeError::Tampered)?;
        // An exact-size copy, so turning it into a boxed slice does not reallocate and leave
        // an unzeroized plaintext behind; `buffer` is zeroized when dropped.
        Ok(SecretSlice::from(buffer.to_vec()))
    }

    /// The record with its data key wrapped under the current KEK, or `None` when it already
    /// is. The ciphertext is untouched.
    pub fn rewrap(&self, sealed: &Sealed) -> Result<Option<Sealed>, EnvelopeError> {
        if sealed.key_id == self.current.id {
            return Ok(None);
        }
        let data_key = self.unwrap_data_key(sealed)?;
        let (wrapped_data_key, wrap_nonce) = self.current.wrap(&data_key)?;
        Ok(Some(Sealed {
            ciphertext: sealed.ciphertext.clone(),
            nonce: sealed.nonce.clone(),
            wrapped_data_key,
            wrap_nonce,
            key_id: self.current.id.clone(),
        }))
    }

    fn add_retired(&mut self, key: KeyEncryptionKey) {
        let known = std::iter::once(&self.current)
            .chain(&self.retired)
            .any(|existing| existing.id == key.id);
        if !known {
            self.retired.push(key);
        }
    }

    fn unwrap_data_key(&self, sealed: &Sealed) -> Result<SecretBox<[u8; KEY_LEN]>, EnvelopeError> {
        let kek = std::iter::once(&self.current)
            .chain(&self.retired)
            .find(|kek| kek.id == sealed.key_id)
            .ok_or_else(|| EnvelopeError::UnknownKey {
                key_id: sealed.key_id.clone(),
                current_key_id: self.current.id.clone(),
            })?;
        kek.unwrap(sealed)
    }
}

impl KeyEncryptionKey {
    fn new(key: [u8; KEY_LEN]) -> KeyEncryptionKey {
        let key = SecretBox::new(Box::new(key));
        let digest = Sha256::new()
            .chain_update(KEY_ID_LABEL)
            .chain_update(key.expose_secret())
            .finalize();
        KeyEncryptionKey {
            id: hex::encode(&digest[..8]),
            key,
        }
    }

    fn load(config_key: &str, reference: &SecretRef) -> Result<KeyEncryptionKey, KeyRingError> {
        let encoded = reference
            .resolve()
            .map_err(|source| KeyRingError::Unreadable {
                key: config_key.to_owned(),
                source,
            })?;
        let malformed = |problem: String| KeyRingError::Malformed {
            key: config_key.to_owned(),
            origin: format!("{reference:?}"),
            problem,
        };
        let bytes = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(encoded.expose_secret().as_bytes())
                .map_err(|err| malformed(err.to_string()))?,
        );
        if bytes.len() != KEY_LEN {
            return Err(malformed(format!("{} bytes", bytes.len())));
        }
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        key.copy_from_slice(&bytes);
        Ok(KeyEncryptionKey::new(*key))
    }

    fn wrap(
        &self,
        data_key: &SecretBox<[u8; KEY_LEN]>,
    ) -> Result<(Vec<u8>, Vec<u8>), EnvelopeError> {
        let nonce = random_nonce();
        let wrapped = cipher(self.key.expose_secret())
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: data_key.expose_secret(),
                    aad: WRAP_AAD,
                },
            )
            .map_err(|_| EnvelopeError::Encrypt)?;
        Ok((wrapped, nonce.to_vec()))
    }

    fn unwrap(&self, sealed: &Sealed) -> Result<SecretBox<[u8; KEY_LEN]>, EnvelopeError> {
        let nonce = nonce_from(&sealed.wrap_nonce, "wrap_nonce")?;
        let mut buffer = Zeroizing::new(sealed.wrapped_data_key.clone());
        cipher(self.key.expose_secret())
            .decrypt_in_place(nonce, WRAP_AAD, &mut *buffer)
            .map_err(|_| EnvelopeError::WrongKey {
                key_id: self.id.clone(),
            })?;
        if buffer.len() != KEY_LEN {
            return Err(EnvelopeError::Malformed(format!(
                "the data key is {} bytes, not {KEY_LEN}",
                buffer.len()
            )));
        }
        let mut data_key = SecretBox::new(Box::new([0u8; KEY_LEN]));
        data_key.expose_secret_mut().copy_from_slice(&buffer);
        Ok(data_key)
    }
}

fn cipher(key: &[u8; KEY_LEN]) -> Aes256Gcm {
    Aes256Gcm::new(key.into())
}

fn random_nonce() -> [u8; NONCE_LEN] {
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    nonce
}

fn nonce_from<'a>(
    bytes: &'a [u8],
    what: &str,
) -> Result<&'a aes_gcm::aead::Nonce<Aes256Gcm>, EnvelopeError> {
    if bytes.len() != NONCE_LEN {
        return Err(EnvelopeError::Malformed(format!(
            "{what} is {} bytes, not {NONCE_LEN}",
            bytes.len()
        )));
    }
    Ok(Nonce::from_slice(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    const AAD: &[u8] = b"tenant=acme;record=1";

    fn ring(current: u8, retired: &[u8]) -> KeyRing {
        KeyRing::new([current; 32], retired.iter().map(|byte| [*byte; 32]))
    }

    #[test]
    fn seals_and_opens_with_fresh_data_keys() {
        let ring = ring(1, &[]);
        let plaintext = b"sk-live-0123456789abcdef";
        let first = ring.seal(plaintext, AAD).unwrap();
        let second = ring.seal(plaintext, AAD).unwrap();
        assert_eq!(first.key_id, ring.current_key_id());
        assert_eq!(first.key_id.len(), 16, "8 bytes in hex");
        assert_ne!(first.ciphertext, second.ciphertext);
        assert_ne!(first.wrapped_data_key, second.wrapped_data_key);
        assert!(!first
            .ciphertext
            .windows(plaintext.len())
            .any(|window| window == plaintext));
        let opened = ring.open(&first, AAD).unwrap();
        assert_eq!(opened.expose_secret(), plaintext);
    }

    #[test]
    fn another_records_aad_fails() {
        let ring = ring(1, &[]);
        let sealed = ring.seal(b"secret-key", AAD).unwrap();
        let err = ring.open(&sealed, b"tenant=acme;record=2").unwrap_err();
        assert!(matches!(err, EnvelopeError::Tampered), "{err}");
    }

    #[test]
    fn rewrap_moves_the_data_key_and_keeps_the_ciphertext() {
        let old = ring(1, &[]);
        let sealed = old.seal(b"secret-key", AAD).unwrap();
        let new = ring(2, &[1]);
        let rewrapped = new.rewrap(&sealed).unwrap().expect("under a retired key");
        assert_eq!(rewrapped.key_id, new.current_key_id());
        assert_ne!(rewrapped.key_id, sealed.key_id);
        assert_eq!(rewrapped.ciphertext, sealed.ciphertext);
        assert_eq!(rewrapped.nonce, sealed.nonce);
        assert!(new.rewrap(&rewrapped).unwrap().is_none());
        let only_new = ring(2, &[]);
        let opened = only_new.open(&rewrapped, AAD).unwrap();
        assert_eq!(opened.expose_secret(), b"secret-key");
    }

    #[test]
    fn unknown_key_names_the_key_id_and_the_setting() {
        let sealed = ring(1, &[]).seal(b"secret-key", AAD).unwrap();
        let err = ring(3, &[]).open(&sealed, AAD).unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, EnvelopeError::UnknownKey { .. }), "{message}");
        assert!(message.contains(&sealed.key_id), "{message}");
        assert!(
            message.contains("secrets.retired_encryption_keys"),
            "{message}"
        );
    }

    #[test]
    fn a_ring_key_that_fails_authentication_is_called_wrong() {
        let ring = ring(1, &[]);
        let mut sealed = ring.seal(b"secret-key", AAD).unwrap();
        sealed.wrapped_data_key[0] ^= 1;
        let err = ring.open(&sealed, AAD).unwrap_err();
        assert!(matches!(err, EnvelopeError::WrongKey { .. }), "{err}");
        assert!(err.to_string().contains("wrong"), "{err}");
    }

    #[test]
    fn malformed_nonces_are_errors_not_panics() {
        let ring = ring(1, &[]);
        let mut sealed = ring.seal(b"secret-key", AAD).unwrap();
        sealed.nonce.pop();
        let err = ring.open(&sealed, AAD).unwrap_err();
        assert!(matches!(err, EnvelopeError::Malformed(_)), "{err}");
    }

    #[test]
    fn debug_shows_key_ids_only() {
        let ring = ring(7, &[8]);
        let shown = format!("{ring:?}");
        assert!(shown.contains(ring.current_key_id()), "{shown}");
        assert!(!shown.contains("7, 7"), "{shown}");
    }

    #[test]
    fn configuration_builds_the_ring_and_shows_only_references() {
        let dir = tempfile::tempdir().unwrap();
        let master_key = MasterKey::load(
            &SecretRef::File {
                file: dir.path().join("master.key"),
            },
            true,
        )
        .unwrap();
        let engine = base64::engine::general_purpose::STANDARD;
        let new_value = engine.encode([2u8; 32]);
        let old_value = engine.encode([1u8; 32]);
        std::fs::write(dir.path().join("new.key"), format!("{new_value}\n")).unwrap();
        std::fs::write(dir.path().join("old.key"), &old_value).unwrap();

        // Default: a key derived from the master key.
        let default_ring = KeyRing::from_config(&SecretsConfig::default(), &master_key).unwrap();
        let derived = KeyRing::new(master_key.derive(DERIVED_KEK_LABEL), []);
        assert_eq!(default_ring.current_key_id(), derived.current_key_id());
        let under_default = default_ring.seal(b"secret-key", AAD).unwrap();

        let mut config = flywheel_config::Config::default();
        config.secrets.encryption_key = Some(SecretRef::File {
            file: dir.path().join("new.key"),
        });
        config.secrets.retired_encryption_keys = vec![SecretRef::File {
            file: dir.path().join("old.key"),
        }];
        let configured = KeyRing::from_config(&config.secrets, &master_key).unwrap();
        assert_eq!(configured.current_key_id(), ring(2, &[]).current_key_id());
        let under_old = ring(1, &[]).seal(b"old-key", AAD).unwrap();
        assert_eq!(
            configured.open(&under_old, AAD).unwrap().expose_secret(),
            b"old-key"
        );
        // The master-derived key still unwraps, so leaving the default takes one rotation.
        assert!(configured.rewrap(&under_default).unwrap().is_some());

        let shown = config.to_redacted_toml().unwrap();
        assert!(
            shown.contains("new.key") && shown.contains("old.key"),
            "{shown}"
        );
        assert!(
            !shown.contains(&new_value) && !shown.contains(&old_value),
            "{shown}"
        );

        std::fs::write(dir.path().join("new.key"), "c2hvcnQ=").unwrap();
        let err = KeyRing::from_config(&config.secrets, &master_key).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("secrets.encryption_key"), "{message}");
        assert!(message.contains("32 bytes"), "{message}");
    }
}
