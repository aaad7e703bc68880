//! The second step of a sign-in: once the first factor (a password, or an
//! identity provider) was right for an account with TOTP, the sign-in gets
//! MFA_REQUIRED with an `mfaToken` instead of a session, and `verifyMfa`
//! trades the token and a code for the session the first step would have
//! given.
//!
//! The token is 256 random bits, stored only as SHA-256, bound to the user
//! and to the sign-in that got it (how its first factor was given, for the
//! session's audit entry), and good for [`LIFETIME`]. Only a `verifyMfa`
//! that succeeds spends it: a wrong code leaves it, so a typo costs one
//! attempt, not the sign-in. Wrong codes count against the same lockout as
//! wrong passwords (the account's email), reserved atomically before the
//! code is checked, so parallel guesses cannot check more codes than the
//! threshold allows; and a sign-in that needs a second factor does not
//! clear that count when its password is right, only `verifyMfa` does.
//!
//! Error codes of `verifyMfa`: RATE_LIMITED (per client address);
//! UNAUTHENTICATED for an unknown, expired or spent token, or when the
//! account is gone or TOTP was turned off meanwhile (sign in again);
//! ACCOUNT_SUSPENDED; ACCOUNT_LOCKED with retryAfter; BAD_USER_INPUT
//! (`code`) for a wrong, replayed or used code.

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::{
    code, enrollment, store,
    verify::{self, Proof, Refusal},
    wrong_code,
};
use crate::accounts::{
    lockout::{self, Attempt},
    throttle::{self, AuthAction},
};
use tollgate_auth::{
    AppState,
    email_tokens::{hash_secret, random_secret},
    sessions::{self, IssuedTokens},
    users as model,
    users::UserRow,
};
use tollgate_core::error::{AppError, AppResult, ErrorCode, MfaToken};
use tollgate_core::request::RequestMeta;
use tollgate_db::schema::mfa_challenges;
use tollgate_db::text_enum;
use tollgate_platform::audit::{self, AuditEntry};

/// How long an mfaToken works.
pub const LIFETIME: Duration = Duration::minutes(5);

text_enum! {
    /// How the first factor of a sign-in was given.
    pub enum Method {
        /// Email and password (`login`).
        Password => "password",
        /// An identity provider (`completeOAuthLogin`).
        Provider => "provider",
    }
}

/// The first factor a sign-in passed: what verifyMfa's session and audit
/// entry say about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FirstFactor {
    /// Email and password.
    Password,
    /// An identity provider, by its key (`github`, `google`, an OIDC name).
    Provider(String),
}

impl FirstFactor {
    fn parts(&self) -> (Method, Option<&str>) {
        match self {
            Self::Password => (Method::Password, None),
            Self::Provider(key) => (Method::Provider, Some(key)),
        }
    }

    /// The `user.login` audit metadata of a sign-in through this factor.
    pub fn login_metadata(&self, mfa: bool) -> serde_json::Value {
        let (method, provider) = self.parts();
        let mut metadata = serde_json::json!({ "method": method.as_str() });
        if let Some(provider) = provider {
            metadata["provider"] = provider.into();
        }
        if mfa {
            metadata["mfa"] = true.into();
        }
        metadata
    }
}

/// A row of `mfa_challenges`.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = mfa_challenges, check_for_backend(diesel::pg::Pg))]
struct ChallengeRow {
    id: Uuid,
    user_id: Uuid,
    method: Method,
    provider: Option<String>,
}

impl ChallengeRow {
    fn first_factor(&self) -> FirstFactor {
        match (self.method, &self.provider) {
            (Method::Provider, Some(key)) => FirstFactor::Provider(key.clone()),
            _ => FirstFactor::Password,
        }
    }
}

/// Starts the second step for `user_id`, whose first factor was right;
/// returns the error the sign-in answers with (MFA_REQUIRED and the
/// token). For `login` and `completeOAuthLogin`, after every other check
/// of theirs (suspension included) passed.
pub async fn require_second_factor(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    first: &FirstFactor,
    now: DateTime<Utc>,
) -> AppResult<AppError> {
    // The user's spent-by-time challenges go here rather than in a job.
    diesel::delete(
        mfa_challenges::table
            .filter(mfa_challenges::user_id.eq(user_id))
            .filter(mfa_challenges::expires_at.le(now)),
    )
    .execute(conn)
    .await?;
    let (token, hash) = random_secret();
    let (method, provider) = first.parts();
    diesel::insert_into(mfa_challenges::table)
        .values((
            mfa_challenges::id.eq(Uuid::now_v7()),
            mfa_challenges::token_hash.eq(hash),
            mfa_challenges::user_id.eq(user_id),
            mfa_challenges::method.eq(method),
            mfa_challenges::provider.eq(provider),
            mfa_challenges::created_at.eq(now),
            mfa_challenges::expires_at.eq(now + LIFETIME),
        ))
        .execute(conn)
        .await?;
    Ok(AppError::mfa_required(MfaToken::new(token)))
}

/// Forgets every sign-in of `user_id` waiting for a second factor (TOTP
/// turned off, account deleted).
pub async fn forget_all(conn: &mut AsyncPgConnection, user_id: Uuid) -> QueryResult<usize> {
    diesel::delete(mfa_challenges::table.filter(mfa_challenges::user_id.eq(user_id)))
        .execute(conn)
        .await
}

fn sign_in_again() -> AppError {
    AppError::client(
        ErrorCode::Unauthenticated,
        "this sign-in has expired or is finished; sign in again",
    )
}

/// The live challenge of `token`, if any.
async fn find(conn: &mut AsyncPgConnection, token: &str, now: DateTime<Utc>) -> QueryResult<Option<ChallengeRow>> {
    mfa_challenges::table
        .filter(mfa_challenges::token_hash.eq(hash_secret(token)))
        .filter(mfa_challenges::expires_at.gt(now))
        .select(ChallengeRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// `verifyMfa`: the session of the sign-in that got `token`, when `code`
/// is a current TOTP code or an unused recovery code of its user.
#[tracing::instrument(skip_all)]
pub async fn verify_mfa(
    app: &AppState,
    token: &str,
    code: &str,
    meta: &RequestMeta,
) -> AppResult<(UserRow, IssuedTokens)> {
    throttle::per_client(app, AuthAction::SecondFactor, meta).await?;
    let now = app.now();
    let config = app.config();
    let mut conn = app.db().await?;
    let challenge = find(&mut conn, token, now).await?.ok_or_else(sign_in_again)?;
    let user = model::find_live(&mut conn, challenge.user_id)
        .await?
        .filter(UserRow::mfa_enabled)
        .ok_or_else(sign_in_again)?;
    if user.suspended_at.is_some() {
        return Err(AppError::client(
            ErrorCode::AccountSuspended,
            "this account is suspended",
        ));
    }
    // Counted with the account's wrong passwords, before the code is
    // checked: a lock holds however many guesses arrive at once.
    let attempt = lockout::take_attempt(
        &mut conn,
        &user.email,
        now,
        config.lockout_threshold,
        config.lockout_window,
    )
    .await?;
    if let Attempt::Locked { retry_after_secs } = attempt {
        return Err(AppError::account_locked(retry_after_secs));
    }
    let factor = code::parse(code);
    let ip = Some(meta.client_ip.to_string());
    let outcome = conn
        .transaction::<_, Refusal, _>(async |conn| {
            // The lock makes a token's parallel uses take turns: after the
            // first success, the others find it gone.
            let locked: Option<Uuid> = mfa_challenges::table
                .find(challenge.id)
                .select(mfa_challenges::id)
                .for_update()
                .first(conn)
                .await
                .optional()?;
            if locked.is_none() {
                return Err(sign_in_again().into());
            }
            let state = store::read(conn, user.id).await?.ok_or_else(sign_in_again)?;
            let factor = factor.as_ref().ok_or(Refusal::WrongCode)?;
            let proof = verify::check_and_spend(conn, app.secrets(), user.id, &state, factor, now)
                .await?
                .ok_or(Refusal::WrongCode)?;
            diesel::delete(mfa_challenges::table.find(challenge.id))
                .execute(conn)
                .await?;
            Ok(start_session(conn, app, &user, &challenge, proof, meta, now).await?)
        })
        .await;
    match outcome {
        Ok((user, session)) => {
            lockout::clear(&mut conn, &user.email).await?;
            Ok((user, sessions::tokens_for(app, session)?))
        }
        Err(Refusal::WrongCode) => {
            let entry = AuditEntry::new("user.login_failed", Some(user.id), ip)
                .metadata(challenge.first_factor().login_metadata(true));
            audit::record(&mut conn, entry, now).await?;
            Err(wrong_code())
        }
        Err(Refusal::Error(error)) => Err(error),
    }
}

/// The session of a sign-in whose second factor was right, with its audit
/// entries (in the caller's transaction).
async fn start_session(
    conn: &mut AsyncPgConnection,
    app: &AppState,
    user: &UserRow,
    challenge: &ChallengeRow,
    proof: Proof,
    meta: &RequestMeta,
    now: DateTime<Utc>,
) -> AppResult<(UserRow, sessions::SessionRow)> {
    let ip = Some(meta.client_ip.to_string());
    if proof == Proof::RecoveryCode {
        enrollment::record_recovery_code_use(conn, user.id, ip.clone(), now).await?;
    }
    let session = sessions::create(conn, app, user.id, meta, None).await?;
    let user = model::record_login(conn, user.id, now).await?;
    let mut metadata = challenge.first_factor().login_metadata(true);
    metadata["secondFactor"] = enrollment::proof_name(proof).into();
    let entry = AuditEntry::new("user.login", Some(user.id), ip)
        .target("session", session.id)
        .metadata(metadata);
    audit::record(conn, entry, now).await?;
    Ok((user, session))
}
