//! Secrets at rest: provider API keys and TOTP seeds are stored only
//! encrypted, with AES-256-GCM under the instance's secrets key. Values
//! that are only ever compared (recovery codes) are kept as an HMAC-SHA256
//! under a key derived from the same one, so a copy of the database alone
//! cannot test guesses against them.
//!
//! A stored secret is the 12-byte random nonce followed by the ciphertext
//! and its tag. The key comes from `SECRETS_KEY`; in development without it,
//! from `JWT_SECRET` through HKDF-SHA256 (so instances sharing a JWT secret
//! share it), else from a random key kept in the data folder. In production
//! without `SECRETS_KEY` nothing can be stored encrypted, and start-up
//! refuses a database that already holds such secrets.

use std::path::Path;

use aes_gcm::{
    Aes256Gcm, KeyInit, Nonce,
    aead::{Aead, AeadCore, OsRng},
};
use anyhow::Context;
use base64::Engine;
use hmac::{Hmac, KeyInit as _, Mac};
use secrecy::{ExposeSecret, SecretString};
use tollgate_core::{
    AppError, AppResult, Config,
    config::gateway::{SECRETS_KEY_BYTES, decode_secrets_key},
};

/// Bytes of the random nonce in front of each stored secret.
const NONCE_BYTES: usize = 12;
/// The file that keeps the development key in the data folder.
const DEV_KEY_FILE: &str = "secrets_key";

/// Encrypts and decrypts secrets at rest.
#[derive(Clone)]
pub struct Secrets {
    cipher: Option<Aes256Gcm>,
    /// HMAC key for [`Secrets::keyed_hash`], derived from the secrets key.
    mac_key: Option<[u8; SECRETS_KEY_BYTES]>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("configured", &self.cipher.is_some())
            .finish()
    }
}

impl Secrets {
    /// The instance's secrets, keyed as the module documentation says.
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        if let Some(key) = config.gateway.secrets_key_bytes() {
            return Ok(Self::with_key(key));
        }
        if !config.is_development() {
            return Ok(Self {
                cipher: None,
                mac_key: None,
            });
        }
        let key = match &config.jwt_secret {
            Some(jwt_secret) => derive_from(jwt_secret)?,
            None => load_or_create_dev_key(&config.data_dir)?,
        };
        Ok(Self::with_key(&key))
    }

    /// Secrets under this key.
    pub fn with_key(key: &[u8; SECRETS_KEY_BYTES]) -> Self {
        let mut mac_key = [0u8; SECRETS_KEY_BYTES];
        hkdf::Hkdf::<sha2::Sha256>::new(Some(b"tollgate"), key)
            .expand(b"keyed-hash", &mut mac_key)
            .unwrap_or_else(|_| unreachable!("32 bytes is a valid HKDF-SHA256 output length"));
        Self {
            cipher: Some(Aes256Gcm::new(key.into())),
            mac_key: Some(mac_key),
        }
    }

    /// Whether secrets can be stored (false only in production without
    /// `SECRETS_KEY`).
    pub fn is_configured(&self) -> bool {
        self.cipher.is_some()
    }

    /// `plaintext` encrypted for storage.
    pub fn encrypt(&self, plaintext: &str) -> AppResult<Vec<u8>> {
        let cipher = self.cipher()?;
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let sealed = cipher
            .encrypt(&nonce, plaintext.as_bytes())
            .map_err(|_| AppError::internal(anyhow::anyhow!("encrypting a secret failed")))?;
        let mut stored = Vec::with_capacity(NONCE_BYTES + sealed.len());
        stored.extend_from_slice(&nonce);
        stored.extend_from_slice(&sealed);
        Ok(stored)
    }

    /// A stored secret decrypted. A secret stored under another key (the
    /// key changed) is an internal error that names no secret.
    pub fn decrypt(&self, stored: &[u8]) -> AppResult<SecretString> {
        let cipher = self.cipher()?;
        if stored.len() <= NONCE_BYTES {
            return Err(AppError::internal(anyhow::anyhow!("a stored secret is truncated")));
        }
        let (nonce, sealed) = stored.split_at(NONCE_BYTES);
        let nonce: [u8; NONCE_BYTES] = nonce
            .try_into()
            .map_err(|_| AppError::internal(anyhow::anyhow!("a stored secret is truncated")))?;
        let plain = cipher
            .decrypt(&Nonce::from(nonce), sealed)
            .map_err(|_| AppError::internal(anyhow::anyhow!("a stored secret does not decrypt under SECRETS_KEY")))?;
        let text = String::from_utf8(plain)
            .map_err(|_| AppError::internal(anyhow::anyhow!("a stored secret is not UTF-8")))?;
        Ok(SecretString::from(text))
    }

    /// HMAC-SHA256 of `parts` under the secrets key, for values that are
    /// only compared, never read back. `purpose` separates uses, so one
    /// kind of value never matches another's hash.
    pub fn keyed_hash(&self, purpose: &str, parts: &[&[u8]]) -> AppResult<[u8; 32]> {
        let key = self.mac_key.as_ref().ok_or_else(not_configured)?;
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(purpose.as_bytes());
        for part in parts {
            // Length-prefixed, so no two lists of parts hash alike.
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        Ok(mac.finalize().into_bytes().into())
    }

    fn cipher(&self) -> AppResult<&Aes256Gcm> {
        self.cipher.as_ref().ok_or_else(not_configured)
    }
}

fn not_configured() -> AppError {
    AppError::internal(anyhow::anyhow!(
        "SECRETS_KEY is required in production to store or read secrets"
    ))
}

/// What an administrator may see of a secret: its last four characters
/// (none of it when it is too short to hide the rest).
pub fn hint(secret: &str) -> Option<String> {
    let chars: Vec<char> = secret.chars().collect();
    if chars.len() < 12 {
        return None;
    }
    Some(chars[chars.len() - 4..].iter().collect())
}

/// The development key derived from `JWT_SECRET` (HKDF-SHA256).
fn derive_from(jwt_secret: &SecretString) -> anyhow::Result<[u8; SECRETS_KEY_BYTES]> {
    let hkdf = hkdf::Hkdf::<sha2::Sha256>::new(Some(b"tollgate"), jwt_secret.expose_secret().as_bytes());
    let mut key = [0u8; SECRETS_KEY_BYTES];
    hkdf.expand(b"secrets-key", &mut key)
        .map_err(|_| anyhow::anyhow!("deriving the secrets key"))?;
    Ok(key)
}

/// The development key kept in the data folder (created once, mode 0600).
fn load_or_create_dev_key(data_dir: &Path) -> anyhow::Result<[u8; SECRETS_KEY_BYTES]> {
    let text = load_or_create_private_file(
        &data_dir.join(DEV_KEY_FILE),
        |existing| decode_secrets_key(existing).is_ok(),
        || {
            let key: [u8; SECRETS_KEY_BYTES] = Aes256Gcm::generate_key(&mut OsRng).into();
            base64::engine::general_purpose::STANDARD.encode(key)
        },
    )?;
    Ok(decode_secrets_key(&text)?)
}

/// A development secret kept in a file of the data folder: the file's
/// text when `usable` accepts it, else a new one from `create`, written
/// readable by the owner only (mode 0600) so it survives restarts.
pub fn load_or_create_private_file(
    path: &Path,
    usable: impl Fn(&str) -> bool,
    create: impl FnOnce() -> String,
) -> anyhow::Result<String> {
    use std::os::unix::fs::OpenOptionsExt;

    if let Ok(existing) = std::fs::read_to_string(path) {
        let existing = existing.trim();
        if usable(existing) {
            return Ok(existing.to_owned());
        }
    }
    if let Some(folder) = path.parent() {
        std::fs::create_dir_all(folder).context("creating the data folder")?;
    }
    let secret = create();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    std::io::Write::write_all(&mut file, secret.as_bytes())?;
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_round_trips_and_is_not_stored_in_the_clear() {
        let secrets = Secrets::with_key(&[3u8; 32]);
        let stored = secrets.encrypt("sk-live-abcdefgh1234").unwrap();
        assert!(!stored.windows(4).any(|w| w == b"1234"), "plaintext leaked");
        assert_eq!(
            secrets.decrypt(&stored).unwrap().expose_secret(),
            "sk-live-abcdefgh1234"
        );
        // A fresh nonce each time.
        assert_ne!(stored, secrets.encrypt("sk-live-abcdefgh1234").unwrap());
        // Another key cannot read it.
        assert!(Secrets::with_key(&[4u8; 32]).decrypt(&stored).is_err());
        assert_eq!(hint("sk-live-abcdefgh1234").as_deref(), Some("1234"));
        assert_eq!(hint("short"), None);
    }

    #[test]
    fn keyed_hashes_depend_on_key_purpose_and_every_part() {
        let secrets = Secrets::with_key(&[3u8; 32]);
        let hash = secrets.keyed_hash("recovery", &[b"user", b"CODE"]).unwrap();
        assert_eq!(hash, secrets.keyed_hash("recovery", &[b"user", b"CODE"]).unwrap());
        assert_ne!(hash, secrets.keyed_hash("other", &[b"user", b"CODE"]).unwrap());
        assert_ne!(hash, secrets.keyed_hash("recovery", &[b"userC", b"ODE"]).unwrap());
        let other_key = Secrets::with_key(&[4u8; 32]);
        assert_ne!(hash, other_key.keyed_hash("recovery", &[b"user", b"CODE"]).unwrap());
    }

    #[test]
    fn without_a_key_nothing_is_stored() {
        let secrets = Secrets {
            cipher: None,
            mac_key: None,
        };
        assert!(!secrets.is_configured());
        assert!(secrets.encrypt("x").is_err());
        assert!(secrets.keyed_hash("p", &[b"x"]).is_err());
    }

    #[test]
    fn the_development_key_survives_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create_dev_key(dir.path()).unwrap();
        let b = load_or_create_dev_key(dir.path()).unwrap();
        assert_eq!(a, b);
        let derived = derive_from(&SecretString::from("j".repeat(32))).unwrap();
        assert_eq!(derived, derive_from(&SecretString::from("j".repeat(32))).unwrap());
        assert_ne!(derived, a);
    }
}
