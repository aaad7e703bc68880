//! API key secrets: `tg_live_` and 32 random base62 characters (about 190
//! bits). Only the SHA-256 of a secret is stored: a fast hash is enough
//! because the secret is random, not a password someone chose, and it lets
//! a request find its key with one indexed lookup.

use rand::{Rng, distr::Alphanumeric};
use sha2::{Digest, Sha256};

/// What every secret starts with; also how a bearer token is told apart
/// from an access token.
pub const SECRET_PREFIX: &str = "tg_live_";
/// Random characters after the prefix.
const RANDOM_CHARS: usize = 32;
/// Characters of the secret kept in the clear to recognise it by.
pub const DISPLAY_PREFIX_CHARS: usize = 12;

/// A freshly minted secret, what is stored of it, and what is shown.
pub struct NewSecret {
    /// The full secret: shown once, never stored.
    pub secret: String,
    /// SHA-256 of the secret.
    pub hash: Vec<u8>,
    /// The first [`DISPLAY_PREFIX_CHARS`] characters.
    pub prefix: String,
}

/// Mints a secret from the thread-local CSPRNG. `Alphanumeric` draws
/// uniformly from the 62 base62 characters (rejection sampling, no bias).
pub fn generate() -> NewSecret {
    let random: String = rand::rng()
        .sample_iter(&Alphanumeric)
        .take(RANDOM_CHARS)
        .map(char::from)
        .collect();
    let secret = format!("{SECRET_PREFIX}{random}");
    NewSecret {
        hash: hash(&secret),
        prefix: secret[..DISPLAY_PREFIX_CHARS].to_owned(),
        secret,
    }
}

/// The stored form of a secret.
pub fn hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// Whether a bearer token claims to be an API key secret (rather than an
/// access token).
pub fn is_key_secret(token: &str) -> bool {
    token.starts_with(SECRET_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_prefixed_base62_and_distinct() {
        let a = generate();
        let b = generate();
        assert_eq!(a.secret.len(), SECRET_PREFIX.len() + RANDOM_CHARS);
        assert!(is_key_secret(&a.secret));
        assert!(
            a.secret[SECRET_PREFIX.len()..]
                .chars()
                .all(|c| c.is_ascii_alphanumeric())
        );
        assert_eq!(a.prefix, a.secret[..12]);
        assert_eq!(a.hash, hash(&a.secret));
        assert_eq!(a.hash.len(), 32);
        assert_ne!(a.secret, b.secret);
    }
}
