//! The one-time code the callback hands the web app, and
//! `completeOAuthLogin`, which trades it for a session (or MFA_REQUIRED).

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::accounts::{
    mfa::challenge::{self, FirstFactor},
    throttle::{self, AuthAction},
};
use tollgate_auth::{
    AppState,
    email_tokens::{hash_secret, random_secret},
    sessions::{self, IssuedTokens},
    users as model,
    users::UserRow,
};
use tollgate_core::error::{AppError, AppResult, ErrorCode};
use tollgate_core::request::RequestMeta;
use tollgate_db::schema::oauth_login_codes;
use tollgate_platform::audit::{self, AuditEntry};

/// How long the web app has to trade the code.
pub const LIFETIME: Duration = Duration::seconds(60);

/// A new one-time code for `user_id`, signed in through `provider`.
pub async fn issue(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    provider: &str,
    now: DateTime<Utc>,
) -> QueryResult<String> {
    diesel::delete(oauth_login_codes::table.filter(oauth_login_codes::expires_at.le(now)))
        .execute(conn)
        .await?;
    let (code, hash) = random_secret();
    diesel::insert_into(oauth_login_codes::table)
        .values((
            oauth_login_codes::code_hash.eq(hash),
            oauth_login_codes::user_id.eq(user_id),
            oauth_login_codes::provider.eq(provider),
            oauth_login_codes::created_at.eq(now),
            oauth_login_codes::expires_at.eq(now + LIFETIME),
        ))
        .execute(conn)
        .await?;
    Ok(code)
}

fn bad_code() -> AppError {
    AppError::bad_input(
        "code",
        "this sign-in code is invalid, expired or already used: sign in again",
    )
}

/// `completeOAuthLogin`: the session of the sign-in that got `code`.
/// BAD_USER_INPUT (`code`) for an unknown, expired or used code;
/// ACCOUNT_SUSPENDED; MFA_REQUIRED with an mfaToken when the user has TOTP.
#[tracing::instrument(skip_all)]
pub async fn complete(app: &AppState, code: &str, meta: &RequestMeta) -> AppResult<(UserRow, IssuedTokens)> {
    throttle::per_client(app, AuthAction::OAuth, meta).await?;
    let now = app.now();
    let mut conn = app.db().await?;
    let spent: Option<(Uuid, String)> = diesel::delete(
        oauth_login_codes::table
            .filter(oauth_login_codes::code_hash.eq(hash_secret(code)))
            .filter(oauth_login_codes::expires_at.gt(now)),
    )
    .returning((oauth_login_codes::user_id, oauth_login_codes::provider))
    .get_result(&mut conn)
    .await
    .optional()?;
    let (user_id, provider) = spent.ok_or_else(bad_code)?;
    let user = model::find_live(&mut conn, user_id).await?.ok_or_else(bad_code)?;
    if user.suspended_at.is_some() {
        return Err(AppError::client(
            ErrorCode::AccountSuspended,
            "this account is suspended",
        ));
    }
    let factor = FirstFactor::Provider(provider);
    if user.mfa_enabled() {
        return Err(challenge::require_second_factor(&mut conn, user.id, &factor, now).await?);
    }
    let ip = Some(meta.client_ip.to_string());
    let (user, session) = conn
        .transaction::<_, diesel::result::Error, _>(async move |conn| {
            let session = sessions::create(conn, app, user.id, meta, None).await?;
            let user = model::record_login(conn, user.id, now).await?;
            let entry = AuditEntry::new("user.login", Some(user.id), ip)
                .target("session", session.id)
                .metadata(factor.login_metadata(false));
            audit::record(conn, entry, now).await?;
            Ok((user, session))
        })
        .await?;
    Ok((user, sessions::tokens_for(app, session)?))
}
