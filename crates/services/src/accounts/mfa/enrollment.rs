//! Turning TOTP on and off for a signed-in person: `enrollTotp`,
//! `confirmTotp`, `disableTotp` and `regenerateRecoveryCodes`.
//!
//! Error codes: UNAUTHENTICATED when the account is gone; CONFLICT for
//! enrolling or confirming while TOTP is on, confirming with nothing
//! enrolled, or regenerating codes while it is off; BAD_USER_INPUT
//! (`code`) for a wrong, replayed or used code; ACCOUNT_LOCKED once wrong
//! codes for disableTotp and regenerateRecoveryCodes reach the lockout
//! threshold (they count with the wrong passwords of changePassword and
//! deleteAccount, against the account: a stolen access token must not
//! become a way to guess codes).

use diesel_async::{AsyncConnection, AsyncPgConnection};
use secrecy::SecretString;
use uuid::Uuid;

use super::{
    challenge, code,
    code::SecondFactor,
    qr, recovery_codes, store, totp,
    verify::{self, Proof, Refusal},
    wrong_code,
};
use crate::accounts::lockout::{self, Attempt};
use tollgate_auth::{AppState, users as model};
use tollgate_core::error::{AppError, AppResult};
use tollgate_core::request::RequestMeta;
use tollgate_platform::audit::{self, AuditEntry};

/// What `enrollTotp` hands the person, once: the secret three ways.
pub struct Enrollment {
    /// Base32, for typing into an authenticator app.
    pub secret: SecretString,
    /// `otpauth://totp/...` for authenticator apps.
    pub otpauth_uri: String,
    /// The URI as an SVG QR code.
    pub qr_code_svg: String,
}

fn already_on() -> AppError {
    AppError::conflict("two-factor authentication is already on; turn it off first to use another authenticator")
}

/// `enrollTotp`: a fresh secret waiting for [`confirm`], replacing any
/// earlier one; nothing else changes.
pub async fn enroll(app: &AppState, user_id: Uuid) -> AppResult<Enrollment> {
    let now = app.now();
    let mut conn = app.db().await?;
    let user = model::find_live(&mut conn, user_id)
        .await?
        .ok_or_else(AppError::unauthenticated)?;
    if user.mfa_enabled() {
        return Err(already_on());
    }
    let secret = totp::new_secret();
    let encrypted = app.secrets().encrypt(secrecy::ExposeSecret::expose_secret(&secret))?;
    if !store::set_pending(&mut conn, user_id, &encrypted, now).await? {
        // Turned on by another request meanwhile.
        return Err(already_on());
    }
    let otpauth_uri = totp::otpauth_uri(&secret, &user.email)?;
    let qr_code_svg = qr::svg(&otpauth_uri)?;
    Ok(Enrollment {
        secret,
        otpauth_uri,
        qr_code_svg,
    })
}

/// `confirmTotp`: turns TOTP on when `code` is a current code of the
/// pending secret; returns the recovery codes, shown only now.
pub async fn confirm(app: &AppState, user_id: Uuid, code: &str, meta: &RequestMeta) -> AppResult<Vec<String>> {
    let code = code::parse_totp(code)?;
    let now = app.now();
    let ip = Some(meta.client_ip.to_string());
    let mut conn = app.db().await?;
    conn.transaction::<_, AppError, _>(async |conn| {
        let state = store::lock(conn, user_id)
            .await?
            .ok_or_else(AppError::unauthenticated)?;
        if state.mfa_enabled_at.is_some() {
            return Err(already_on());
        }
        let Some(pending) = state.totp_pending_secret.as_deref() else {
            return Err(AppError::conflict("nothing to confirm: call enrollTotp first"));
        };
        let secret = app.secrets().decrypt(pending)?;
        let step = totp::matching_step(&secret, &code, now)?.ok_or_else(wrong_code)?;
        // The confirming code's step counts as used: it cannot sign in too.
        store::enable(conn, user_id, step, now).await?;
        let codes = recovery_codes::replace(conn, app.secrets(), user_id, now).await?;
        audit::record(
            conn,
            AuditEntry::new("mfa.enabled", Some(user_id), ip).target("user", user_id),
            now,
        )
        .await?;
        Ok(codes)
    })
    .await
}

/// `disableTotp`: turns TOTP off with a current code or a recovery code;
/// false when it was not on (nothing changed).
pub async fn disable(app: &AppState, user_id: Uuid, code: &str, meta: &RequestMeta) -> AppResult<bool> {
    let key = reserve_attempt(app, user_id).await?;
    let factor = code::parse(code);
    let now = app.now();
    let ip = Some(meta.client_ip.to_string());
    let mut conn = app.db().await?;
    let outcome = conn
        .transaction::<_, Refusal, _>(async |conn| {
            let state = store::lock(conn, user_id)
                .await?
                .ok_or_else(AppError::unauthenticated)?;
            if state.mfa_enabled_at.is_none() {
                return Ok(false);
            }
            let factor = factor.as_ref().ok_or(Refusal::WrongCode)?;
            let proof = verify::check_and_spend(conn, app.secrets(), user_id, &state, factor, now)
                .await?
                .ok_or(Refusal::WrongCode)?;
            if proof == Proof::RecoveryCode {
                record_recovery_code_use(conn, user_id, ip.clone(), now).await?;
            }
            store::clear(conn, user_id, now).await?;
            recovery_codes::delete_all(conn, user_id).await?;
            challenge::forget_all(conn, user_id).await?;
            audit::record(
                conn,
                AuditEntry::new("mfa.disabled", Some(user_id), ip)
                    .target("user", user_id)
                    .metadata(serde_json::json!({ "with": proof_name(proof) })),
                now,
            )
            .await?;
            Ok(true)
        })
        .await;
    drop(conn);
    finish(app, &key, outcome).await
}

/// `regenerateRecoveryCodes`: a fresh set, the old codes stop working;
/// needs a current code from the authenticator app.
pub async fn regenerate_recovery_codes(
    app: &AppState,
    user_id: Uuid,
    code: &str,
    meta: &RequestMeta,
) -> AppResult<Vec<String>> {
    let code = code::parse_totp(code)?;
    let key = reserve_attempt(app, user_id).await?;
    let now = app.now();
    let ip = Some(meta.client_ip.to_string());
    let mut conn = app.db().await?;
    let outcome = conn
        .transaction::<_, Refusal, _>(async |conn| {
            let state = store::lock(conn, user_id)
                .await?
                .ok_or_else(AppError::unauthenticated)?;
            if state.mfa_enabled_at.is_none() {
                return Err(AppError::conflict("two-factor authentication is off: there are no recovery codes").into());
            }
            let factor = SecondFactor::Totp(code);
            verify::check_and_spend(conn, app.secrets(), user_id, &state, &factor, now)
                .await?
                .ok_or(Refusal::WrongCode)?;
            let codes = recovery_codes::replace(conn, app.secrets(), user_id, now).await?;
            audit::record(
                conn,
                AuditEntry::new("mfa.recovery_codes_regenerated", Some(user_id), ip).target("user", user_id),
                now,
            )
            .await?;
            Ok(codes)
        })
        .await;
    drop(conn);
    finish(app, &key, outcome).await
}

/// Records that a recovery code was spent (in the caller's transaction).
pub(super) async fn record_recovery_code_use(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    ip: Option<String>,
    now: chrono::DateTime<chrono::Utc>,
) -> diesel::QueryResult<()> {
    let entry = AuditEntry::new("mfa.recovery_code_used", Some(user_id), ip).target("user", user_id);
    audit::record(conn, entry, now).await
}

/// How audit metadata names a proof.
pub(super) fn proof_name(proof: Proof) -> &'static str {
    match proof {
        Proof::Totp => "totp",
        Proof::RecoveryCode => "recovery_code",
    }
}

/// Reserves one guess against the account's lockout (the key
/// changePassword and deleteAccount count wrong passwords under), before
/// the code is checked; returns the key.
async fn reserve_attempt(app: &AppState, user_id: Uuid) -> AppResult<String> {
    let key = format!("user:{user_id}");
    let config = app.config();
    let mut conn = app.db().await?;
    if let Attempt::Locked { retry_after_secs } = lockout::take_attempt(
        &mut conn,
        &key,
        app.now(),
        config.lockout_threshold,
        config.lockout_window,
    )
    .await?
    {
        return Err(AppError::account_locked(retry_after_secs));
    }
    Ok(key)
}

/// A transaction's outcome for the client: a right code clears the
/// attempts counted under `key`, a wrong one keeps them.
async fn finish<T>(app: &AppState, key: &str, outcome: Result<T, Refusal>) -> AppResult<T> {
    match outcome {
        Ok(value) => {
            lockout::clear(&mut *app.db().await?, key).await?;
            Ok(value)
        }
        Err(Refusal::WrongCode) => Err(wrong_code()),
        Err(Refusal::Error(error)) => Err(error),
    }
}
