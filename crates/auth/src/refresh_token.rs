//! Refresh tokens that need nothing stored: a session id, the session's
//! generation, and an HMAC of both (Supabase's second algorithm). The
//! session row keeps only the generation, so a database leak yields no
//! usable token, and a forged or altered token fails the HMAC.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use uuid::Uuid;

type HmacSha256 = Hmac<Sha256>;

/// Every refresh token starts with this, so leaks are easy to spot.
const PREFIX: &str = "tgr_";
/// id (16) + generation (8) + tag (32).
const RAW_LEN: usize = 16 + 8 + 32;

/// Mints and checks refresh tokens.
#[derive(Clone)]
pub struct RefreshTokens {
    key: [u8; 32],
}

impl std::fmt::Debug for RefreshTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RefreshTokens")
    }
}

impl RefreshTokens {
    /// A key derived from the server secret, separate from the one that
    /// signs access tokens.
    pub fn new(secret: &SecretString) -> Self {
        let mut mac = HmacSha256::new_from_slice(secret.expose_secret().as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(b"tollgate refresh token key v1");
        Self {
            key: mac.finalize().into_bytes().into(),
        }
    }

    fn mac(&self, session_id: Uuid, generation: i64) -> HmacSha256 {
        let mut mac =
            HmacSha256::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(session_id.as_bytes());
        mac.update(&generation.to_be_bytes());
        mac
    }

    /// The token for a session's generation.
    pub fn issue(&self, session_id: Uuid, generation: i64) -> String {
        let mut raw = Vec::with_capacity(RAW_LEN);
        raw.extend_from_slice(session_id.as_bytes());
        raw.extend_from_slice(&generation.to_be_bytes());
        raw.extend_from_slice(&self.mac(session_id, generation).finalize().into_bytes());
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(raw))
    }

    /// The session and generation of a genuine token; `None` for anything
    /// else (checked in constant time).
    pub fn parse(&self, token: &str) -> Option<(Uuid, i64)> {
        let raw = URL_SAFE_NO_PAD.decode(token.trim().strip_prefix(PREFIX)?).ok()?;
        if raw.len() != RAW_LEN {
            return None;
        }
        let session_id = Uuid::from_slice(&raw[..16]).ok()?;
        let generation = i64::from_be_bytes(raw[16..24].try_into().ok()?);
        self.mac(session_id, generation).verify_slice(&raw[24..]).ok()?;
        Some((session_id, generation))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_resist_tampering() {
        let tokens = RefreshTokens::new(&SecretString::from("s".repeat(32)));
        let session = Uuid::new_v4();
        let token = tokens.issue(session, 7);
        assert_eq!(tokens.parse(&token), Some((session, 7)));

        let other_key = RefreshTokens::new(&SecretString::from("t".repeat(32)));
        assert_eq!(other_key.parse(&token), None);

        let mut raw = URL_SAFE_NO_PAD.decode(&token[PREFIX.len()..]).unwrap();
        raw[23] ^= 1; // claim another generation
        assert_eq!(tokens.parse(&format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(raw))), None);
        assert_eq!(tokens.parse("tgr_garbage"), None);
    }
}
