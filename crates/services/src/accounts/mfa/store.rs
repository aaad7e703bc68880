//! The TOTP columns of `users`: the secret (encrypted), the last step a
//! code was accepted for, and the enrollment waiting for confirmTotp.
//! `UserRow` leaves them out, so no ordinary read of a user carries them.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use tollgate_db::schema::users;

/// A user's TOTP state.
#[derive(Clone, Queryable, Selectable)]
#[diesel(table_name = users, check_for_backend(diesel::pg::Pg))]
pub struct TotpState {
    /// When TOTP was turned on; None while it is off.
    pub mfa_enabled_at: Option<DateTime<Utc>>,
    /// The secret in use, encrypted (set exactly while TOTP is on).
    pub totp_secret: Option<Vec<u8>>,
    /// The last time step a code was accepted for.
    pub totp_last_step: Option<i64>,
    /// The secret waiting for confirmTotp, encrypted.
    pub totp_pending_secret: Option<Vec<u8>>,
}

impl std::fmt::Debug for TotpState {
    // Even encrypted, secrets stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TotpState")
            .field("mfa_enabled_at", &self.mfa_enabled_at)
            .field("totp_last_step", &self.totp_last_step)
            .field("pending", &self.totp_pending_secret.is_some())
            .finish_non_exhaustive()
    }
}

/// The TOTP state of the live user `user_id`, locked for the rest of the
/// transaction so that enrolling, confirming and disabling take turns.
pub async fn lock(conn: &mut AsyncPgConnection, user_id: Uuid) -> QueryResult<Option<TotpState>> {
    users::table
        .find(user_id)
        .filter(users::deleted_at.is_null())
        .select(TotpState::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// The TOTP state of the live user `user_id`, unlocked.
pub async fn read(conn: &mut AsyncPgConnection, user_id: Uuid) -> QueryResult<Option<TotpState>> {
    users::table
        .find(user_id)
        .filter(users::deleted_at.is_null())
        .select(TotpState::as_select())
        .first(conn)
        .await
        .optional()
}

/// Keeps `encrypted` as the enrollment waiting for confirmTotp, replacing
/// any earlier one; only while TOTP is off. Returns whether it was kept.
pub async fn set_pending(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    encrypted: &[u8],
    now: DateTime<Utc>,
) -> QueryResult<bool> {
    let updated = diesel::update(
        users::table
            .find(user_id)
            .filter(users::deleted_at.is_null())
            .filter(users::mfa_enabled_at.is_null()),
    )
    .set((users::totp_pending_secret.eq(encrypted), users::totp_pending_at.eq(now)))
    .execute(conn)
    .await?;
    Ok(updated == 1)
}

/// Turns TOTP on with the pending secret, remembering `step` (the one its
/// confirming code matched) as used.
pub async fn enable(conn: &mut AsyncPgConnection, user_id: Uuid, step: i64, now: DateTime<Utc>) -> QueryResult<()> {
    diesel::update(users::table.find(user_id))
        .set((
            users::totp_secret.eq(users::totp_pending_secret),
            users::totp_last_step.eq(step),
            users::mfa_enabled_at.eq(now),
            users::totp_pending_secret.eq(None::<Vec<u8>>),
            users::totp_pending_at.eq(None::<DateTime<Utc>>),
            users::updated_at.eq(now),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Turns TOTP off and forgets every secret, pending ones included.
pub async fn clear(conn: &mut AsyncPgConnection, user_id: Uuid, now: DateTime<Utc>) -> QueryResult<()> {
    diesel::update(users::table.find(user_id))
        .set((
            users::mfa_enabled_at.eq(None::<DateTime<Utc>>),
            users::totp_secret.eq(None::<Vec<u8>>),
            users::totp_last_step.eq(None::<i64>),
            users::totp_pending_secret.eq(None::<Vec<u8>>),
            users::totp_pending_at.eq(None::<DateTime<Utc>>),
            users::updated_at.eq(now),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Marks `step` used, if TOTP is on and no code of that step or a later
/// one was accepted yet: true for exactly one of any number of requests
/// racing with codes of one step.
pub async fn accept_step(conn: &mut AsyncPgConnection, user_id: Uuid, step: i64) -> QueryResult<bool> {
    let updated = diesel::update(
        users::table
            .find(user_id)
            .filter(users::mfa_enabled_at.is_not_null())
            .filter(users::totp_last_step.is_null().or(users::totp_last_step.lt(step))),
    )
    .set(users::totp_last_step.eq(step))
    .execute(conn)
    .await?;
    Ok(updated == 1)
}

/// Start-up: without a secrets key (production without `SECRETS_KEY`) a
/// stored TOTP secret could not be checked, and its user could never sign
/// in again: refuse to start instead.
pub async fn check_readable(app: &tollgate_platform::Platform) -> anyhow::Result<()> {
    if app.secrets().is_configured() {
        return Ok(());
    }
    let mut conn = app
        .db()
        .await
        .map_err(|e| anyhow::anyhow!("reading TOTP secrets: {}", e.client_message()))?;
    let stored: i64 = users::table
        .filter(
            users::totp_secret
                .is_not_null()
                .or(users::totp_pending_secret.is_not_null()),
        )
        .count()
        .get_result(&mut conn)
        .await?;
    if stored > 0 {
        anyhow::bail!(
            "SECRETS_KEY is required: {stored} users' TOTP secrets are stored encrypted and cannot be read without it \
             (set SECRETS_KEY to the key they were stored with)"
        );
    }
    Ok(())
}
