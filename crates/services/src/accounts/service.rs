//! Account rules that outgrow a resolver.

use diesel_async::AsyncConnection;
use secrecy::SecretString;
use uuid::Uuid;

use crate::accounts::{password_policy, registration};
use tollgate_auth::{
    AppState,
    email::normalize_email,
    users as model,
    users::{NewUser, Role, UserRow},
};
use tollgate_core::error::AppResult;

/// `tollgate create-admin`: creates the user (with a personal organization,
/// like every user) as an ADMIN with a verified email, or promotes an existing one (and sets the given password, so the
/// operator can sign in with it). Returns the user and whether it was new.
#[tracing::instrument(skip(app, password))]
pub async fn create_or_promote_admin(
    app: &AppState,
    email: &str,
    password: SecretString,
    name: Option<String>,
) -> AppResult<(UserRow, bool)> {
    let email = normalize_email(email, "email")?;
    password_policy::check(&password, &email, "password")?;
    let password_hash = app.passwords().hash(password).await?;
    let now = app.now();
    let mut conn = app.db().await?;
    if let Some(existing) = model::find_live_by_email(&mut conn, &email).await? {
        let user = model::promote_to_admin(&mut conn, &existing, &password_hash, now).await?;
        return Ok((user, false));
    }
    let default_name = email.split('@').next().unwrap_or_default().to_owned();
    let name = name
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or(default_name);
    let new_user = NewUser {
        id: Uuid::now_v7(),
        email: &email,
        name: &name,
        password_hash: Some(&password_hash),
        role: Role::Admin,
        email_verified_at: Some(now),
        created_at: now,
        updated_at: now,
    };
    let (user, _) = conn
        .transaction::<_, diesel::result::Error, _>(async |conn| registration::create_account(conn, &new_user).await)
        .await?;
    Ok((user, true))
}
