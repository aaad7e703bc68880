//! Recovery codes: ten single-use codes for when the authenticator is
//! lost, shown once and stored only as keyed hashes.
//!
//! A code is 10 characters of a 32-letter alphabet (50 bits), displayed as
//! `XXXXX-XXXXX`. A slow password hash is not needed for that much
//! randomness: an HMAC under a key derived from SECRETS_KEY (and bound to
//! the user) means a copy of the database alone cannot test guesses.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rand::Rng;
use uuid::Uuid;

use tollgate_core::error::AppResult;
use tollgate_db::schema::recovery_codes;
use tollgate_platform::secrets::Secrets;

/// Codes in a set.
pub const COUNT: usize = 10;
/// Characters in a code.
pub const LEN: usize = 10;
/// Upper-case letters and digits without the look-alikes 0/O and 1/I:
/// 32 symbols, 5 bits each.
pub const ALPHABET: &[u8; 32] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
/// What separates the keyed hashes of recovery codes from other uses.
const HASH_PURPOSE: &str = "tollgate recovery code v1";

/// A code as typed, upper case without separators, if it can be one.
pub fn normalize(compact: &str) -> Option<String> {
    let upper = compact.to_ascii_uppercase();
    (upper.len() == LEN && upper.bytes().all(|b| ALPHABET.contains(&b))).then_some(upper)
}

/// A fresh code, displayed with a dash in the middle.
fn random_code() -> String {
    let mut rng = rand::rng();
    let chars: String = (0..LEN)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect();
    format!("{}-{}", &chars[..LEN / 2], &chars[LEN / 2..])
}

/// The stored form of a normalized code of `user_id`.
fn hash(secrets: &Secrets, user_id: Uuid, normalized: &str) -> AppResult<Vec<u8>> {
    Ok(secrets
        .keyed_hash(HASH_PURPOSE, &[user_id.as_bytes(), normalized.as_bytes()])?
        .to_vec())
}

/// Replaces every code of `user_id` with a fresh set; returns the codes to
/// show, once.
pub async fn replace(
    conn: &mut AsyncPgConnection,
    secrets: &Secrets,
    user_id: Uuid,
    now: DateTime<Utc>,
) -> AppResult<Vec<String>> {
    delete_all(conn, user_id).await?;
    let mut codes = Vec::with_capacity(COUNT);
    let mut hashes: Vec<Vec<u8>> = Vec::with_capacity(COUNT);
    while codes.len() < COUNT {
        let code = random_code();
        let normalized: String = code.chars().filter(|c| *c != '-').collect();
        let hashed = hash(secrets, user_id, &normalized)?;
        // A repeat within one set (about 1 in 2^44) would merge two codes.
        if hashes.contains(&hashed) {
            continue;
        }
        hashes.push(hashed);
        codes.push(code);
    }
    let rows: Vec<_> = hashes
        .into_iter()
        .map(|hashed| {
            (
                recovery_codes::user_id.eq(user_id),
                recovery_codes::code_hash.eq(hashed),
                recovery_codes::created_at.eq(now),
            )
        })
        .collect();
    diesel::insert_into(recovery_codes::table)
        .values(rows)
        .execute(conn)
        .await?;
    Ok(codes)
}

/// Spends the code if `user_id` has it unused: true exactly once per code,
/// however many requests race for it.
pub async fn spend(
    conn: &mut AsyncPgConnection,
    secrets: &Secrets,
    user_id: Uuid,
    normalized: &str,
    now: DateTime<Utc>,
) -> AppResult<bool> {
    let hashed = hash(secrets, user_id, normalized)?;
    let spent = diesel::update(
        recovery_codes::table
            .filter(recovery_codes::user_id.eq(user_id))
            .filter(recovery_codes::code_hash.eq(hashed))
            .filter(recovery_codes::used_at.is_null()),
    )
    .set(recovery_codes::used_at.eq(now))
    .execute(conn)
    .await?;
    Ok(spent == 1)
}

/// Forgets every code of `user_id` (TOTP turned off, account deleted).
pub async fn delete_all(conn: &mut AsyncPgConnection, user_id: Uuid) -> QueryResult<usize> {
    diesel::delete(recovery_codes::table.filter(recovery_codes::user_id.eq(user_id)))
        .execute(conn)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_carry_fifty_bits_and_read_back_however_typed() {
        let code = random_code();
        assert_eq!(code.len(), LEN + 1);
        assert_eq!(code.as_bytes()[LEN / 2], b'-');
        // 32 symbols are 5 bits each.
        assert!(LEN * 5 >= 50 && ALPHABET.len() == 32);
        let compact: String = code.chars().filter(|c| *c != '-').collect();
        assert_eq!(normalize(&compact.to_lowercase()).as_deref(), Some(compact.as_str()));
        assert_eq!(normalize("ABCDEFGHJ"), None);
        assert_eq!(normalize("ABCDEFGHJO"), None);
    }

    #[test]
    fn hashes_are_bound_to_the_user() {
        let secrets = Secrets::with_key(&[7u8; 32]);
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        assert_ne!(
            hash(&secrets, a, "ABCDEFGHJK").unwrap(),
            hash(&secrets, b, "ABCDEFGHJK").unwrap()
        );
    }
}
