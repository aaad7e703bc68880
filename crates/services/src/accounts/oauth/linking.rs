//! Who a provider's person is here, decided so that a provider cannot be
//! used to take an account:
//!
//! - A known identity (provider and subject) signs its user in.
//! - A linking flow (a signed-in user called `startOAuthLogin`) links the
//!   identity to that user; an identity linked elsewhere is refused.
//! - Otherwise only an address the provider verified may match an
//!   account. A verified account is linked. An unverified one may have
//!   been signed up by someone who does not own the address (squatted):
//!   the provider proves who does, so the account is taken over as a
//!   password reset would, and more: every session ended, every key it
//!   created revoked, its password removed, its TOTP turned off, the
//!   address verified, all audited.
//! - An unverified (or missing) provider address never links, and never
//!   creates an account under an address that has one. A new address gets
//!   a new account without a password (verified when the provider says so).

use chrono::{DateTime, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use uuid::Uuid;

use super::{flow::FlowRow, identities, providers::ProviderIdentity};
use crate::{
    accounts::{
        mfa::{challenge, recovery_codes, store},
        registration,
    },
    keys,
};
use tollgate_auth::{
    AppState,
    email_tokens::{self, TokenPurpose},
    sessions, users as model,
    users::{NewUser, Role, UserRow},
};
use tollgate_core::error::{AppError, AppResult};
use tollgate_platform::{
    announcements::{self, Recorded},
    audit::{self, AuditEntry},
    mail,
    mail::templates,
};

/// Why a flow ends without a sign-in; each is an `?error=` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The provider did not verify the address, and an account uses it.
    EmailNotVerified,
    /// The provider gave no usable address to make an account with.
    EmailMissing,
    /// Sign-ups are by invitation only.
    RegistrationClosed,
    /// This provider account is linked to another user.
    IdentityInUse,
    /// The user has another account of this provider linked already.
    ProviderAlreadyLinked,
    /// The account that started the linking is gone.
    AccountGone,
}

impl Refusal {
    /// The `error` query value.
    pub fn code(self) -> &'static str {
        match self {
            Self::EmailNotVerified => "email_not_verified",
            Self::EmailMissing => "email_missing",
            Self::RegistrationClosed => "registration_closed",
            Self::IdentityInUse => "identity_in_use",
            Self::ProviderAlreadyLinked => "provider_already_linked",
            Self::AccountGone => "account_unavailable",
        }
    }

    /// The `error_description` query value, for people.
    pub fn description(self) -> &'static str {
        match self {
            Self::EmailNotVerified => {
                "an account uses this email, and the provider has not verified it: sign in with your password, then link the provider"
            }
            Self::EmailMissing => "the provider did not share an email address",
            Self::RegistrationClosed => "sign-up is by invitation only",
            Self::IdentityInUse => "this provider account is linked to another user",
            Self::ProviderAlreadyLinked => "another account of this provider is linked already: unlink it first",
            Self::AccountGone => "the account is no longer available",
        }
    }
}

/// What the transaction decided.
type Outcome = Result<Uuid, Refusal>;

/// Finds, links or creates the account of `who` for `flow`; the user to
/// sign in, or why not. Audits and announces what it changed.
pub async fn resolve(app: &AppState, flow: &FlowRow, who: &ProviderIdentity, ip: Option<String>) -> AppResult<Outcome> {
    let now = app.now();
    let mut conn = app.db().await?;
    let (outcome, announced, mailed) = conn
        .transaction::<_, AppError, _>(async |conn| {
            let mut changes = Changes::default();
            let outcome = decide(app, conn, flow, who, ip, now, &mut changes).await?;
            Ok((outcome, changes.announced, changes.mailed))
        })
        .await?;
    drop(conn);
    if mailed {
        mail::wake();
    }
    app.announcements().committed(announced);
    Ok(outcome)
}

/// What a resolution leaves to do after its commit.
#[derive(Default)]
struct Changes {
    announced: Recorded,
    mailed: bool,
}

async fn decide(
    app: &AppState,
    conn: &mut AsyncPgConnection,
    flow: &FlowRow,
    who: &ProviderIdentity,
    ip: Option<String>,
    now: DateTime<Utc>,
    changes: &mut Changes,
) -> AppResult<Outcome> {
    let provider = flow.provider.as_str();
    if let Some(known) = identities::find(conn, provider, &who.subject).await? {
        if flow.link_user_id.is_some_and(|linking| linking != known.user_id) {
            return Ok(Err(Refusal::IdentityInUse));
        }
        identities::touch(conn, known.id, who.email.as_deref(), now).await?;
        return Ok(Ok(known.user_id));
    }
    if let Some(user_id) = flow.link_user_id {
        let Some(user) = model::lock_live(conn, user_id).await? else {
            return Ok(Err(Refusal::AccountGone));
        };
        return link(conn, &user, provider, who, "linked by the user", ip, now).await;
    }
    let existing = match &who.email {
        Some(email) => model::find_live_by_email(conn, email).await?,
        None => None,
    };
    match (existing, who.verified_email()) {
        (Some(user), Some(_)) if user.email_verified_at.is_some() => {
            let user = model::lock_live(conn, user.id)
                .await?
                .ok_or_else(AppError::unauthenticated)?;
            link(conn, &user, provider, who, "verified email", ip, now).await
        }
        (Some(user), Some(_)) => {
            let user = model::lock_live(conn, user.id)
                .await?
                .ok_or_else(AppError::unauthenticated)?;
            take_over(conn, &user, provider, ip.clone(), now, changes).await?;
            link(conn, &user, provider, who, "unverified account taken over", ip, now).await
        }
        (Some(_), None) => Ok(Err(Refusal::EmailNotVerified)),
        (None, _) => create(app, conn, provider, who, ip, now, changes).await,
    }
}

/// Links `who` to `user` and audits it.
async fn link(
    conn: &mut AsyncPgConnection,
    user: &UserRow,
    provider: &str,
    who: &ProviderIdentity,
    reason: &'static str,
    ip: Option<String>,
    now: DateTime<Utc>,
) -> AppResult<Outcome> {
    let linked = identities::of_user(conn, user.id).await?;
    if linked.iter().any(|i| i.provider == provider) {
        return Ok(Err(Refusal::ProviderAlreadyLinked));
    }
    identities::insert(conn, user.id, provider, &who.subject, who.email.as_deref(), now).await?;
    let entry = AuditEntry::new("identity.linked", Some(user.id), ip)
        .target("user", user.id)
        .metadata(serde_json::json!({ "provider": provider, "reason": reason }));
    audit::record(conn, entry, now).await?;
    Ok(Ok(user.id))
}

/// Why a takeover revokes keys (audit metadata).
const TAKEOVER_KEYS: &str = "unverified account taken over through an identity provider";

/// Hands an unverified account to whoever the provider says owns its
/// address: what its signer-up could still use ends.
async fn take_over(
    conn: &mut AsyncPgConnection,
    user: &UserRow,
    provider: &str,
    ip: Option<String>,
    now: DateTime<Utc>,
    changes: &mut Changes,
) -> AppResult<()> {
    let revoked = keys::service::revoke_created_by(conn, user.id, TAKEOVER_KEYS, ip.clone(), now).await?;
    let ended = sessions::revoke_all_of_user(conn, user.id, None, "account.taken_over", now).await?;
    model::remove_password(conn, user.id, now).await?;
    model::mark_verified(conn, user, now).await?;
    email_tokens::spend_all(conn, user.id, TokenPurpose::ResetPassword, now).await?;
    email_tokens::spend_all(conn, user.id, TokenPurpose::VerifyEmail, now).await?;
    // A second factor the signer-up enrolled is theirs, not the owner's.
    let had_mfa = user.mfa_enabled();
    store::clear(conn, user.id, now).await?;
    recovery_codes::delete_all(conn, user.id).await?;
    challenge::forget_all(conn, user.id).await?;
    let entry = AuditEntry::new("account.taken_over", Some(user.id), ip)
        .target("user", user.id)
        .metadata(serde_json::json!({
            "provider": provider,
            "sessionsEnded": ended.len(),
            "keysRevoked": revoked.len(),
            "passwordRemoved": user.password_hash.is_some(),
            "mfaDisabled": had_mfa,
        }));
    audit::record(conn, entry, now).await?;
    mail::enqueue(conn, &templates::password_changed(&user.email, &user.name), now).await?;
    changes.mailed = true;
    let sessions_ended = sessions::announce_ended(conn, &ended).await?;
    let keys_ended = announcements::record(conn, tollgate_auth::keys::events::revoked(&revoked)).await?;
    changes.announced = std::mem::take(&mut changes.announced)
        .and(sessions_ended)
        .and(keys_ended);
    Ok(())
}

/// A new account for `who`, without a password.
async fn create(
    app: &AppState,
    conn: &mut AsyncPgConnection,
    provider: &str,
    who: &ProviderIdentity,
    ip: Option<String>,
    now: DateTime<Utc>,
    changes: &mut Changes,
) -> AppResult<Outcome> {
    let Some(email) = who.email.as_deref() else {
        return Ok(Err(Refusal::EmailMissing));
    };
    if !app.config().registration_open {
        return Ok(Err(Refusal::RegistrationClosed));
    }
    let default_name = email.split('@').next().unwrap_or_default();
    let name = who.name.as_deref().unwrap_or(default_name);
    let (user, organization) = registration::create_account(
        conn,
        &NewUser {
            id: Uuid::now_v7(),
            email,
            name,
            password_hash: None,
            role: Role::User,
            email_verified_at: who.email_verified.then_some(now),
            created_at: now,
            updated_at: now,
        },
    )
    .await?;
    let entry = AuditEntry::new("user.registered", Some(user.id), ip.clone())
        .target("user", user.id)
        .metadata(serde_json::json!({ "provider": provider }));
    audit::record(conn, entry, now).await?;
    let entry = AuditEntry::new("org.created", Some(user.id), ip.clone())
        .target("organization", organization.id)
        .in_organization(organization.id)
        .metadata(serde_json::json!({ "personal": true }));
    audit::record(conn, entry, now).await?;
    if !who.email_verified {
        let token = email_tokens::create(conn, user.id, email, TokenPurpose::VerifyEmail, now).await?;
        mail::enqueue(conn, &templates::verify_email(app.config(), email, name, &token), now).await?;
        changes.mailed = true;
    }
    link(conn, &user, provider, who, "new account", ip, now).await
}
