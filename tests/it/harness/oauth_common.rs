//! What the identity-provider fakes share: PKCE and random tokens.

use base64::Engine;
use rand::Rng;
use sha2::{Digest, Sha256};

/// Whether `verifier` hashes (S256, RFC 7636) to `challenge`.
pub fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    let digest = Sha256::digest(verifier.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest) == challenge
}

/// A random URL-safe token.
pub fn random_token() -> String {
    let bytes: [u8; 24] = rand::rng().random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
