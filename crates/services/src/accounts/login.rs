//! `login`: email and password to a session, behind a per-client rate
//! limit and a per-email lockout, without revealing whether an account
//! exists (same message, same time). With TOTP on, the right password
//! gets MFA_REQUIRED instead, and `verifyMfa` gives the session
//! ([`super::mfa::challenge`]).

use diesel_async::AsyncConnection;
use secrecy::SecretString;

use crate::accounts::{
    lockout::{self, Attempt},
    mfa::challenge::{self, FirstFactor},
    throttle::{self, AuthAction},
};
use tollgate_auth::{
    AppState,
    email::normalize_email,
    sessions::{self, IssuedTokens},
    users as model,
    users::UserRow,
};
use tollgate_core::error::{AppError, AppResult, ErrorCode};
use tollgate_core::request::RequestMeta;
use tollgate_platform::audit::{self, AuditEntry};

/// The one answer to a wrong email or password.
fn invalid_credentials() -> AppError {
    AppError::client(ErrorCode::Unauthenticated, "invalid email or password")
}

/// Signs a person in; `client_name` names the session (device login).
#[tracing::instrument(skip_all)]
pub async fn login(
    app: &AppState,
    email: &str,
    password: SecretString,
    meta: &RequestMeta,
) -> AppResult<(UserRow, IssuedTokens)> {
    throttle::per_client(app, AuthAction::Login, meta).await?;
    let email = normalize_email(email, "email")?;
    let now = app.now();
    let config = app.config();
    let mut conn = app.db().await?;
    let attempt =
        lockout::take_attempt(&mut conn, &email, now, config.lockout_threshold, config.lockout_window).await?;
    if let Attempt::Locked { retry_after_secs } = attempt {
        return Err(AppError::account_locked(retry_after_secs));
    }
    let user = model::find_live_by_email(&mut conn, &email).await?;
    // The hash is slow: give the connection back while it runs.
    drop(conn);
    let stored = user.as_ref().and_then(|u| u.password_hash.clone());
    let matches = app.passwords().verify_stored(password, stored).await?;
    let mut conn = app.db().await?;
    let ip = Some(meta.client_ip.to_string());
    let user = match user {
        Some(user) if matches => user,
        user => {
            let entry = AuditEntry::new("user.login_failed", user.as_ref().map(|u| u.id), ip)
                .metadata(serde_json::json!({ "email": email }));
            audit::record(&mut conn, entry, now).await?;
            return Err(invalid_credentials());
        }
    };
    if user.suspended_at.is_some() {
        return Err(AppError::client(
            ErrorCode::AccountSuspended,
            "this account is suspended",
        ));
    }
    if user.mfa_enabled() {
        // The attempt stays counted: only verifyMfa's success clears it,
        // so a known password does not reset the budget for code guesses.
        let required = challenge::require_second_factor(&mut conn, user.id, &FirstFactor::Password, now).await?;
        return Err(required);
    }
    lockout::clear(&mut conn, &email).await?;
    let (user, session) = conn
        .transaction::<_, diesel::result::Error, _>(async move |conn| {
            let session = sessions::create(conn, app, user.id, meta, None).await?;
            let user = model::record_login(conn, user.id, now).await?;
            let entry = AuditEntry::new("user.login", Some(user.id), ip)
                .target("session", session.id)
                .metadata(FirstFactor::Password.login_metadata(false));
            audit::record(conn, entry, now).await?;
            Ok((user, session))
        })
        .await?;
    Ok((user, sessions::tokens_for(app, session)?))
}

/// Re-checks a signed-in person's password before a sensitive change
/// (`changePassword`, `deleteAccount`). A stolen access token must not
/// become a way to guess the password, so wrong answers count against a
/// lockout of the account itself. A wrong password is BAD_USER_INPUT
/// naming `field`.
pub async fn confirm_password(
    app: &AppState,
    user: &UserRow,
    password: SecretString,
    field: &'static str,
) -> AppResult<()> {
    let key = format!("user:{}", user.id);
    let config = app.config();
    let now = app.now();
    let mut conn = app.db().await?;
    if let Attempt::Locked { retry_after_secs } =
        lockout::take_attempt(&mut conn, &key, now, config.lockout_threshold, config.lockout_window).await?
    {
        return Err(AppError::account_locked(retry_after_secs));
    }
    // The hash is slow: give the connection back while it runs.
    drop(conn);
    let matches = app
        .passwords()
        .verify_stored(password, user.password_hash.clone())
        .await?;
    if !matches {
        return Err(AppError::bad_input(field, "the password is not correct"));
    }
    lockout::clear(&mut *app.db().await?, &key).await?;
    Ok(())
}
