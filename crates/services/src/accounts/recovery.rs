//! Proving an email address, and getting back into (or securing) an
//! account: verification, password reset and password change.
//!
//! Each change, its audit entry, its email and the announcement of the
//! sessions it ended are one transaction.

use diesel_async::{AsyncConnection, AsyncPgConnection};
use secrecy::SecretString;
use uuid::Uuid;

use crate::{
    accounts::{
        lockout, login, password_policy,
        throttle::{self, AuthAction},
    },
    keys,
};
use tollgate_auth::{
    AppState,
    email::normalize_email,
    email_tokens::{self, TokenPurpose},
    sessions, users as model,
    users::UserRow,
};
use tollgate_core::error::{AppError, AppResult};
use tollgate_core::request::RequestMeta;
use tollgate_platform::mail::templates;
use tollgate_platform::{
    announcements::{self, Recorded},
    audit::{self, AuditEntry},
    mail,
};

fn bad_token() -> AppError {
    AppError::bad_input("token", "this link is invalid, expired or already used")
}

/// `verifyEmail`: spends a verification token; returns the verified user.
pub async fn verify_email(app: &AppState, token: &str, meta: &RequestMeta) -> AppResult<UserRow> {
    let now = app.now();
    let mut conn = app.db().await?;
    let ip = Some(meta.client_ip.to_string());
    conn.transaction::<_, AppError, _>(async |conn| {
        let (user_id, email) = email_tokens::consume(conn, token, TokenPurpose::VerifyEmail, now)
            .await?
            .ok_or_else(bad_token)?;
        let user = model::find_live(conn, user_id).await?.ok_or_else(bad_token)?;
        // A token proves the address it was sent to, not a later one.
        if user.email != email {
            return Err(bad_token());
        }
        let user = model::mark_verified(conn, &user, now).await?;
        audit::record(
            conn,
            AuditEntry::new("email.verified", Some(user.id), ip).target("user", user.id),
            now,
        )
        .await?;
        Ok(user)
    })
    .await
}

/// `resendVerificationEmail`: true when an email was queued, false when
/// the address is already verified.
pub async fn resend_verification(app: &AppState, user_id: Uuid) -> AppResult<bool> {
    let now = app.now();
    let mut conn = app.db().await?;
    let user = model::find_live(&mut conn, user_id)
        .await?
        .ok_or_else(AppError::unauthenticated)?;
    if user.email_verified_at.is_some() {
        return Ok(false);
    }
    // The caller owns this address, so saying it is throttled reveals
    // nothing: one resend a minute (retryAfter stays within 60 s), and the
    // hourly cap on emails to an address still applies, silently.
    app.rate_limiter()
        .check(
            &format!("resend:{}", user.id),
            1,
            std::time::Duration::from_secs(60),
            now,
        )
        .await?;
    if !throttle::email_allowed(app, &user.email).await? {
        return Ok(true);
    }
    conn.transaction::<_, AppError, _>(async |conn| {
        let token = email_tokens::create(conn, user.id, &user.email, TokenPurpose::VerifyEmail, now).await?;
        mail::enqueue(
            conn,
            &templates::verify_email(app.config(), &user.email, &user.name, &token),
            now,
        )
        .await?;
        Ok(())
    })
    .await?;
    mail::wake();
    Ok(true)
}

/// `requestPasswordReset`: emails a reset link when the address has an
/// account; the answer is the same either way, and so is the time it
/// takes: the lookup and the email happen after the answer.
pub async fn request_reset(app: &AppState, email: &str, meta: &RequestMeta) -> AppResult<bool> {
    throttle::per_client(app, AuthAction::PasswordReset, meta).await?;
    let email = normalize_email(email, "email")?;
    let app = app.clone();
    app.tasks().clone().spawn(tollgate_db::hold::scoped(async move {
        if let Err(e) = send_reset_link(&app, &email).await {
            tracing::error!(error = ?e, "could not queue a password reset email");
        }
    }));
    Ok(true)
}

async fn send_reset_link(app: &AppState, email: &str) -> AppResult<()> {
    let now = app.now();
    // Counted for every address, known or not, so the limiter sees the same
    // traffic either way.
    let allowed = throttle::email_allowed(app, email).await?;
    let mut conn = app.db().await?;
    let Some(user) = model::find_live_by_email(&mut conn, email).await? else {
        return Ok(());
    };
    if !allowed {
        return Ok(());
    }
    conn.transaction::<_, AppError, _>(async |conn| {
        let token = email_tokens::create(conn, user.id, email, TokenPurpose::ResetPassword, now).await?;
        mail::enqueue(
            conn,
            &templates::reset_password(app.config(), email, &user.name, &token),
            now,
        )
        .await?;
        Ok(())
    })
    .await?;
    mail::wake();
    Ok(())
}

/// `resetPassword`: sets a new password with a reset token and ends every
/// session of the account (whoever knew the old password is out).
pub async fn reset_password(
    app: &AppState,
    token: &str,
    new_password: SecretString,
    meta: &RequestMeta,
) -> AppResult<()> {
    throttle::per_client(app, AuthAction::PasswordReset, meta).await?;
    let now = app.now();
    let mut conn = app.db().await?;
    let (_, email) = email_tokens::peek(&mut conn, token, TokenPurpose::ResetPassword, now)
        .await?
        .ok_or_else(bad_token)?;
    password_policy::check(&new_password, &email, "newPassword")?;
    drop(conn);
    let password_hash = app.passwords().hash(new_password).await?;
    let mut conn = app.db().await?;
    let ip = Some(meta.client_ip.to_string());
    let announced = conn
        .transaction::<_, AppError, _>(async |conn| {
            let (user_id, email) = email_tokens::consume(conn, token, TokenPurpose::ResetPassword, now)
                .await?
                .ok_or_else(bad_token)?;
            let user = model::find_live(conn, user_id)
                .await?
                .filter(|u| u.email == email)
                .ok_or_else(bad_token)?;
            // Until now, whoever signed up with this address may not have
            // owned it: the owner taking the account over ends what that
            // person could still use, keys as well as sessions.
            let revoked_keys = match user.email_verified_at {
                Some(_) => Vec::new(),
                None => keys::service::revoke_created_by(conn, user.id, SQUATTED_KEYS, ip.clone(), now).await?,
            };
            // The reset link proved the address, so it is verified too.
            let user = model::mark_verified(conn, &user, now).await?;
            let announced = replace_password(conn, app, &user, &password_hash, None, "password.reset", ip).await?;
            lockout::clear(conn, &email).await?;
            let keys_ended = announcements::record(conn, tollgate_auth::keys::events::revoked(&revoked_keys)).await?;
            Ok(announced.and(keys_ended))
        })
        .await?;
    drop(conn);
    mail::wake();
    app.announcements().committed(announced);
    Ok(())
}

/// Why a password reset revokes keys (audit metadata).
const SQUATTED_KEYS: &str = "password reset of an unverified account";

/// `changePassword`: needs the current password; ends every other session.
pub async fn change_password(
    app: &AppState,
    user_id: Uuid,
    session_id: Uuid,
    current: SecretString,
    new_password: SecretString,
    meta: &RequestMeta,
) -> AppResult<()> {
    let mut conn = app.db().await?;
    let user = model::find_live(&mut conn, user_id)
        .await?
        .ok_or_else(AppError::unauthenticated)?;
    drop(conn);
    login::confirm_password(app, &user, current, "currentPassword").await?;
    password_policy::check(&new_password, &user.email, "newPassword")?;
    let password_hash = app.passwords().hash(new_password).await?;
    let ip = Some(meta.client_ip.to_string());
    let mut conn = app.db().await?;
    let announced = conn
        .transaction::<_, AppError, _>(async |conn| {
            replace_password(
                conn,
                app,
                &user,
                &password_hash,
                Some(session_id),
                "password.changed",
                ip,
            )
            .await
        })
        .await?;
    drop(conn);
    mail::wake();
    app.announcements().committed(announced);
    Ok(())
}

/// Stores the new hash, ends sessions (all but `keep`), audits, sends the
/// notice and announces the sessions ended.
async fn replace_password(
    conn: &mut AsyncPgConnection,
    app: &AppState,
    user: &UserRow,
    password_hash: &str,
    keep: Option<Uuid>,
    action: &'static str,
    ip: Option<String>,
) -> AppResult<Recorded> {
    let now = app.now();
    model::set_password(conn, user.id, password_hash, now).await?;
    // Reset links sent before this change must not undo it.
    email_tokens::spend_all(conn, user.id, TokenPurpose::ResetPassword, now).await?;
    let ended = sessions::revoke_all_of_user(conn, user.id, keep, action, now).await?;
    let entry = AuditEntry::new(action, Some(user.id), ip)
        .target("user", user.id)
        .metadata(serde_json::json!({ "sessionsEnded": ended.len() }));
    audit::record(conn, entry, now).await?;
    mail::enqueue(conn, &templates::password_changed(&user.email, &user.name), now).await?;
    Ok(sessions::announce_ended(conn, &ended).await?)
}
