//! Single-use tokens sent by email (verification, password reset): random,
//! at least 128 bits, stored only as SHA-256, expiring.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rand::RngCore;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use tollgate_db::schema::email_tokens;
use tollgate_db::text_enum;

text_enum! {
    /// What an emailed token lets its holder do.
    pub enum TokenPurpose {
        /// Prove ownership of the address.
        VerifyEmail => "VERIFY_EMAIL",
        /// Set a new password.
        ResetPassword => "RESET_PASSWORD",
    }
}

impl TokenPurpose {
    /// How long a token stays valid.
    pub fn lifetime(self) -> Duration {
        match self {
            Self::VerifyEmail => Duration::hours(24),
            Self::ResetPassword => Duration::hours(1),
        }
    }
}

/// A fresh random secret (256 bits, URL-safe) and its stored hash.
pub fn random_secret() -> (String, Vec<u8>) {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let secret = URL_SAFE_NO_PAD.encode(bytes);
    let hash = hash_secret(&secret);
    (secret, hash)
}

/// SHA-256 of a secret, as stored.
pub fn hash_secret(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.trim().as_bytes()).to_vec()
}

/// Creates a token for `user_id` and returns the secret to email.
pub async fn create(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    email: &str,
    purpose: TokenPurpose,
    now: DateTime<Utc>,
) -> QueryResult<String> {
    let (secret, hash) = random_secret();
    diesel::insert_into(email_tokens::table)
        .values((
            email_tokens::token_hash.eq(hash),
            email_tokens::user_id.eq(user_id),
            email_tokens::purpose.eq(purpose),
            email_tokens::email.eq(email),
            email_tokens::created_at.eq(now),
            email_tokens::expires_at.eq(now + purpose.lifetime()),
        ))
        .execute(conn)
        .await?;
    Ok(secret)
}

/// Uses up a token: returns its user and email when it was valid, unused
/// and unexpired (atomically, so it works once).
pub async fn consume(
    conn: &mut AsyncPgConnection,
    secret: &str,
    purpose: TokenPurpose,
    now: DateTime<Utc>,
) -> QueryResult<Option<(Uuid, String)>> {
    diesel::update(
        email_tokens::table
            .filter(email_tokens::token_hash.eq(hash_secret(secret)))
            .filter(email_tokens::purpose.eq(purpose))
            .filter(email_tokens::used_at.is_null())
            .filter(email_tokens::expires_at.gt(now)),
    )
    .set(email_tokens::used_at.eq(now))
    .returning((email_tokens::user_id, email_tokens::email))
    .get_result(conn)
    .await
    .optional()
}

/// The user and email of a valid token, without using it up (to check a
/// new password against the account before the token is spent).
pub async fn peek(
    conn: &mut AsyncPgConnection,
    secret: &str,
    purpose: TokenPurpose,
    now: DateTime<Utc>,
) -> QueryResult<Option<(Uuid, String)>> {
    email_tokens::table
        .filter(email_tokens::token_hash.eq(hash_secret(secret)))
        .filter(email_tokens::purpose.eq(purpose))
        .filter(email_tokens::used_at.is_null())
        .filter(email_tokens::expires_at.gt(now))
        .select((email_tokens::user_id, email_tokens::email))
        .first(conn)
        .await
        .optional()
}

/// Uses up every outstanding token of `purpose` for a user.
pub async fn spend_all(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    purpose: TokenPurpose,
    now: DateTime<Utc>,
) -> QueryResult<usize> {
    diesel::update(
        email_tokens::table
            .filter(email_tokens::user_id.eq(user_id))
            .filter(email_tokens::purpose.eq(purpose))
            .filter(email_tokens::used_at.is_null()),
    )
    .set(email_tokens::used_at.eq(now))
    .execute(conn)
    .await
}
