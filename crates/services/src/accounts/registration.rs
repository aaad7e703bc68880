//! `register`: a new account with its personal organization, OWNER
//! membership, free subscription, first session and verification email,
//! all in one transaction.

use diesel::QueryResult;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use secrecy::SecretString;
use uuid::Uuid;

use crate::{
    accounts::{
        password_policy,
        throttle::{self, AuthAction},
    },
    orgs::{
        invitations, model as orgs,
        model::{NewOrganization, OrganizationRow},
    },
};
use tollgate_auth::{
    AppState,
    email::normalize_email,
    email_tokens::{self, TokenPurpose},
    sessions::{self, IssuedTokens},
    users as model,
    users::{NewUser, Role, UserRow},
};
use tollgate_core::request::RequestMeta;
use tollgate_core::{
    error::{AppError, AppResult},
    validate::clean_name,
};
use tollgate_platform::mail::templates;
use tollgate_platform::{
    audit::{self, AuditEntry},
    mail,
};

/// The field a bad invitation token is reported on.
const INVITATION_FIELD: &str = "invitationToken";

/// CONFLICT naming the email field when the address has an account; any
/// other database error as it is.
fn email_taken(error: DieselError) -> AppError {
    match error {
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info)
            if info.constraint_name() == Some("users_email_key") =>
        {
            AppError::Client {
                code: tollgate_core::error::ErrorCode::Conflict,
                message: "an account with this email already exists".into(),
                field: Some("email".into()),
                retry_after: None,
            }
        }
        other => other.into(),
    }
}

/// What a person submits to sign up.
pub struct Registration {
    /// Email address (any case, surrounding spaces allowed).
    pub email: String,
    /// Chosen password.
    pub password: SecretString,
    /// Display name.
    pub name: String,
    /// The token of an invitation email: lets the person sign up when
    /// registration is closed, verifies the email, and makes them a member
    /// of the inviting organization right away.
    pub invitation_token: Option<String>,
}

/// Inserts a user with what every user has: a personal organization they
/// own, on the free plan. Runs inside the caller's transaction.
pub async fn create_account(
    conn: &mut AsyncPgConnection,
    user: &NewUser<'_>,
) -> QueryResult<(UserRow, OrganizationRow)> {
    let now = user.created_at;
    let user = model::insert(conn, user).await?;
    let organization = orgs::insert(
        conn,
        &NewOrganization {
            id: Uuid::now_v7(),
            name: &user.name,
            slug: &orgs::personal_slug(user.id),
            personal_user_id: Some(user.id),
            created_at: now,
            updated_at: now,
        },
    )
    .await?;
    orgs::settle_new(conn, organization.id, user.id, now).await?;
    Ok((user, organization))
}

/// Creates the account and signs it in. With an invitation token (the only
/// way in when registration is closed) the email counts as verified, since
/// the token was sent to it, and the account joins the inviting
/// organization in the same transaction.
#[tracing::instrument(skip_all)]
pub async fn register(app: &AppState, input: Registration, meta: &RequestMeta) -> AppResult<(UserRow, IssuedTokens)> {
    throttle::per_client(app, AuthAction::Register, meta).await?;
    let email = normalize_email(&input.email, "email")?;
    let name = clean_name(&input.name, "name")?;
    password_policy::check(&input.password, &email, "password")?;
    let token = input.invitation_token.as_deref().filter(|t| !t.trim().is_empty());
    if !app.config().registration_open && token.is_none() {
        return Err(AppError::client(
            tollgate_core::error::ErrorCode::Forbidden,
            "registration is by invitation only: sign up from the link in your invitation email",
        ));
    }
    // Checked before the slow password hash; spent in the transaction.
    let invitation = match token {
        Some(token) => {
            let mut conn = app.db().await?;
            Some(invitations::pending_for(&mut conn, token, &email, app.now(), INVITATION_FIELD).await?)
        }
        None => None,
    };
    let password_hash = app.passwords().hash(input.password).await?;
    let now = app.now();
    let mut conn = app.db().await?;
    let (user, session) = conn
        .transaction::<_, AppError, _>(async |conn| {
            let (email, name, password_hash) = (&email, &name, &password_hash);
            {
                let (user, organization) = create_account(
                    conn,
                    &NewUser {
                        id: Uuid::now_v7(),
                        email,
                        name,
                        password_hash: Some(password_hash),
                        role: Role::User,
                        email_verified_at: invitation.as_ref().map(|_| now),
                        created_at: now,
                        updated_at: now,
                    },
                )
                .await
                .map_err(email_taken)?;
                let session = sessions::create(conn, app, user.id, meta, None).await?;
                let ip = Some(meta.client_ip.to_string());
                audit::record(
                    conn,
                    AuditEntry::new("user.registered", Some(user.id), ip.clone()).target("user", user.id),
                    now,
                )
                .await?;
                audit::record(
                    conn,
                    AuditEntry::new("org.created", Some(user.id), ip.clone())
                        .target("organization", organization.id)
                        .in_organization(organization.id)
                        .metadata(serde_json::json!({ "personal": true })),
                    now,
                )
                .await?;
                match &invitation {
                    Some(invitation) => {
                        invitations::join(conn, invitation, user.id, ip.clone(), now, INVITATION_FIELD).await?;
                        let entry = AuditEntry::new("email.verified", Some(user.id), ip)
                            .target("user", user.id)
                            .metadata(serde_json::json!({ "via": "invitation" }));
                        audit::record(conn, entry, now).await?;
                    }
                    None => {
                        let token = email_tokens::create(conn, user.id, email, TokenPurpose::VerifyEmail, now).await?;
                        mail::enqueue(conn, &templates::verify_email(app.config(), email, name, &token), now).await?;
                    }
                }
                Ok((user, session))
            }
        })
        .await?;
    mail::wake();
    Ok((user, sessions::tokens_for(app, session)?))
}
