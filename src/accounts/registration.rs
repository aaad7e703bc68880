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
        email::normalize_email,
        email_tokens::{self, TokenPurpose},
        emails,
        model::{self, NewUser, Role, UserRow},
        password_policy,
        sessions::{self, IssuedTokens},
        throttle::{self, AuthAction},
    },
    admin::audit::{self, AuditEntry},
    app::AppState,
    billing::subscription,
    error::{AppError, AppResult},
    graphql::context::RequestMeta,
    orgs::model::{self as orgs, MembershipRow, NewOrganization, OrgRole, OrganizationRow},
    platform::mail,
};

/// The longest display name accepted.
pub const MAX_NAME_LEN: usize = 100;

/// What a person submits to sign up.
pub struct Registration {
    /// Email address (any case, surrounding spaces allowed).
    pub email: String,
    /// Chosen password.
    pub password: SecretString,
    /// Display name.
    pub name: String,
}

/// Validates a display name; BAD_USER_INPUT naming `field`.
pub fn clean_name(raw: &str, field: &'static str) -> AppResult<String> {
    let name = raw.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_LEN || name.chars().any(char::is_control) {
        return Err(AppError::bad_input(
            field,
            format!("the name must be 1 to {MAX_NAME_LEN} printable characters"),
        ));
    }
    Ok(name.to_owned())
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
    orgs::insert_membership(
        conn,
        &MembershipRow {
            organization_id: organization.id,
            user_id: user.id,
            role: OrgRole::Owner,
            token_limit: None,
            created_at: now,
            updated_at: now,
        },
    )
    .await?;
    subscription::insert_free(conn, organization.id, now).await?;
    Ok((user, organization))
}

/// Creates the account and signs it in.
#[tracing::instrument(skip_all)]
pub async fn register(app: &AppState, input: Registration, meta: &RequestMeta) -> AppResult<(UserRow, IssuedTokens)> {
    throttle::per_client(app, AuthAction::Register, meta).await?;
    let email = normalize_email(&input.email, "email")?;
    let name = clean_name(&input.name, "name")?;
    password_policy::check(&input.password, &email, "password")?;
    if !app.config().registration_open {
        return Err(AppError::client(
            crate::error::ErrorCode::Forbidden,
            "registration is by invitation only",
        ));
    }
    let password_hash = app.passwords().hash(input.password).await?;
    let now = app.now();
    let mut conn = app.db().await?;
    let result = conn
        .transaction::<_, DieselError, _>(async |conn| {
            let (email, name, password_hash) = (&email, &name, &password_hash);
            {
                let (user, organization) = create_account(
                    conn,
                    &NewUser {
                        id: Uuid::now_v7(),
                        email,
                        name,
                        password_hash,
                        role: Role::User,
                        email_verified_at: None,
                        created_at: now,
                        updated_at: now,
                    },
                )
                .await?;
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
                    AuditEntry::new("org.created", Some(user.id), ip)
                        .target("organization", organization.id)
                        .in_organization(organization.id)
                        .metadata(serde_json::json!({ "personal": true })),
                    now,
                )
                .await?;
                let token = email_tokens::create(conn, user.id, email, TokenPurpose::VerifyEmail, now).await?;
                mail::enqueue(conn, &emails::verify_email(app.config(), email, name, &token), now).await?;
                Ok((user, session))
            }
        })
        .await;
    let (user, session) = match result {
        Ok(created) => created,
        Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info))
            if info.constraint_name() == Some("users_email_key") =>
        {
            return Err(AppError::Client {
                code: crate::error::ErrorCode::Conflict,
                message: "an account with this email already exists".into(),
                field: Some("email".into()),
                retry_after: None,
            });
        }
        Err(e) => return Err(e.into()),
    };
    mail::wake();
    Ok((user, sessions::tokens_for(app, session)?))
}
