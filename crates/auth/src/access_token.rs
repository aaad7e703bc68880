//! Short-lived access tokens: HS256 JWTs naming the user and the session.
//!
//! Expiry is checked against the application's clock rather than by the
//! JWT library, so tests can move time.

use std::{path::Path, time::Duration};

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use tollgate_core::error::{AppError, AppResult};

/// The audience every access token is minted for.
pub const AUDIENCE: &str = "tollgate";
/// The issuer of every access token. Fixed (not PUBLIC_URL) so that every
/// instance of a deployment accepts every other instance's tokens.
pub const ISSUER: &str = "tollgate";

/// Claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessClaims {
    /// The user's id.
    pub sub: Uuid,
    /// The session's id; a revoked session refuses its tokens.
    pub sid: Uuid,
    /// Issued at (seconds since the epoch).
    pub iat: i64,
    /// Expires at (seconds since the epoch).
    pub exp: i64,
    /// Always [`ISSUER`].
    pub iss: String,
    /// Always [`AUDIENCE`].
    pub aud: String,
}

/// Mints and checks access tokens.
#[derive(Clone)]
pub struct AccessTokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    ttl: Duration,
}

impl std::fmt::Debug for AccessTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessTokens")
            .field("issuer", &self.issuer)
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl AccessTokens {
    /// Keys from the secret's UTF-8 bytes.
    pub fn new(secret: &SecretString, issuer: impl Into<String>, ttl: Duration) -> Self {
        let issuer = issuer.into();
        let key = secret.expose_secret().as_bytes();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[issuer.as_str()]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iat", "sub", "iss", "aud"]);
        // Expiry is compared with the application clock in `verify`.
        validation.validate_exp = false;
        Self {
            encoding: EncodingKey::from_secret(key),
            decoding: DecodingKey::from_secret(key),
            validation,
            issuer,
            ttl,
        }
    }

    /// Seconds an access token lives.
    pub fn ttl_secs(&self) -> i64 {
        i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX)
    }

    /// A signed token for `user_id` in `session_id`, issued at `now`.
    pub fn issue(&self, user_id: Uuid, session_id: Uuid, now: DateTime<Utc>) -> AppResult<String> {
        let claims = AccessClaims {
            sub: user_id,
            sid: session_id,
            iat: now.timestamp(),
            exp: now.timestamp().saturating_add(self.ttl_secs()),
            iss: self.issuer.clone(),
            aud: AUDIENCE.to_owned(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| AppError::internal(anyhow::anyhow!("signing an access token: {e}")))
    }

    /// The claims of a genuine, unexpired token; UNAUTHENTICATED otherwise.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> AppResult<AccessClaims> {
        let data = jsonwebtoken::decode::<AccessClaims>(token, &self.decoding, &self.validation)
            .map_err(|_| AppError::unauthenticated())?;
        if data.claims.exp <= now.timestamp() {
            return Err(AppError::unauthenticated());
        }
        Ok(data.claims)
    }
}

/// The development signing key: random, created once per data folder and
/// kept there (mode 0600) so tokens survive restarts.
pub fn load_or_create_dev_secret(data_dir: &Path) -> anyhow::Result<SecretString> {
    let secret = tollgate_platform::secrets::load_or_create_private_file(
        &data_dir.join("jwt_secret"),
        |existing| existing.len() >= 32,
        || {
            let mut bytes = [0u8; 32];
            rand::rng().fill_bytes(&mut bytes);
            hex::encode(bytes)
        },
    )?;
    Ok(SecretString::from(secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> AccessTokens {
        AccessTokens::new(
            &SecretString::from("k".repeat(32)),
            "http://test",
            Duration::from_secs(900),
        )
    }

    #[test]
    fn a_token_verifies_until_it_expires() {
        let t = tokens();
        let now = Utc::now();
        let (user, session) = (Uuid::new_v4(), Uuid::new_v4());
        let token = t.issue(user, session, now).unwrap();
        let claims = t.verify(&token, now).unwrap();
        assert_eq!((claims.sub, claims.sid, claims.exp - claims.iat), (user, session, 900));
        assert!(t.verify(&token, now + chrono::Duration::seconds(901)).is_err());
    }

    #[test]
    fn tokens_from_another_key_or_issuer_are_refused() {
        let now = Utc::now();
        let other_key = AccessTokens::new(
            &SecretString::from("z".repeat(32)),
            "http://test",
            Duration::from_secs(900),
        );
        let other_issuer = AccessTokens::new(
            &SecretString::from("k".repeat(32)),
            "http://evil",
            Duration::from_secs(900),
        );
        for foreign in [other_key, other_issuer] {
            let token = foreign.issue(Uuid::new_v4(), Uuid::new_v4(), now).unwrap();
            assert!(tokens().verify(&token, now).is_err());
        }
        assert!(tokens().verify("not.a.jwt", now).is_err());
    }

    #[test]
    fn the_dev_secret_is_kept_per_data_folder() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create_dev_secret(dir.path()).unwrap();
        let b = load_or_create_dev_secret(dir.path()).unwrap();
        assert_eq!(a.expose_secret(), b.expose_secret());
        assert_eq!(a.expose_secret().len(), 64);
    }
}
