//! deleteAccount, and the tombstone it and staff's deleteUser leave behind
//! so history that points at the person still resolves.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use secrecy::SecretString;
use serde_json::Value;
use uuid::Uuid;

use super::pictures::delete_avatars_of;
use crate::accounts::mfa;
use crate::orgs::model as orgs;
use tollgate_auth::{AppState, roles::OrgRole, sessions, users as model, users::UserRow};
use tollgate_core::error::{AppError, AppResult};
use tollgate_core::request::RequestMeta;
use tollgate_db::schema::{
    email_tokens, memberships, oauth_login_codes, organizations, sessions as sessions_table, users,
};
use tollgate_platform::{
    announcements::Recorded,
    audit::{self, AuditEntry},
};

/// The name a deleted account shows wherever history mentions it.
pub const DELETED_USER_NAME: &str = "Deleted user";

/// How a deletion attempt ended inside its transaction.
enum Deletion {
    Done(Recorded),
    Gone,
    WrongPassword,
    OwnsSharedOrganization,
}

/// `deleteAccount`: after the password is checked, turns the caller's
/// account into a tombstone ([`tombstone`]) in one transaction. Access
/// tokens stop working at once.
#[tracing::instrument(skip_all)]
pub async fn delete_account(
    app: &AppState,
    user_id: Uuid,
    password: SecretString,
    meta: &RequestMeta,
) -> AppResult<()> {
    let mut conn = app.db().await?;
    let user = users::table
        .find(user_id)
        .filter(users::deleted_at.is_null())
        .select(UserRow::as_select())
        .first(&mut conn)
        .await
        .optional()?
        .ok_or_else(AppError::unauthenticated)?;
    drop(conn);
    if user.password_hash.is_none() {
        return Err(AppError::bad_input(
            "password",
            "this account has no password yet (it signs in through an identity provider): set one first with requestPasswordReset, then delete the account with it",
        ));
    }
    crate::accounts::login::confirm_password(app, &user, password, "password").await?;
    let now = app.now();
    let ip = Some(meta.client_ip.to_string());
    let mut conn = app.db().await?;
    let outcome = conn
        .transaction::<_, AppError, _>(async |conn| {
            let Some(locked) = model::lock_live(conn, user_id).await? else {
                return Ok(Deletion::Gone);
            };
            // The password may have changed while it was being checked.
            if locked.password_hash != user.password_hash {
                return Ok(Deletion::WrongPassword);
            }
            tollgate_auth::users::refuse_last_admin(conn, &locked).await?;
            Ok(match tombstone(app, conn, user_id, user_id, ip.clone(), now).await? {
                Tombstoned::Done(announced) => Deletion::Done(announced),
                Tombstoned::OwnsSharedOrganization => Deletion::OwnsSharedOrganization,
            })
        })
        .await?;
    drop(conn);
    match outcome {
        Deletion::Done(announced) => {
            app.announcements().committed(announced);
            Ok(())
        }
        Deletion::Gone => Err(AppError::unauthenticated()),
        Deletion::WrongPassword => Err(wrong_password()),
        Deletion::OwnsSharedOrganization => Err(AppError::conflict(
            "you own an organization with other members: transfer it or remove them first",
        )),
    }
}

/// What [`tombstone`] came to.
pub enum Tombstoned {
    /// The account is a tombstone now; its sessions and keys ended
    /// (announced: apply on this instance once the transaction commits).
    Done(Recorded),
    /// The person owns an organization with other members; nothing changed.
    OwnsSharedOrganization,
}

/// Deletes an account, the rules `deleteAccount` and staff's `deleteUser`
/// share, inside the caller's transaction, which has locked the live user
/// row. Unless the person owns an organization with other members: ends
/// every session, deletes their pictures, pending email tokens and the
/// organizations they own alone (their personal one included), removes
/// their other memberships, and turns the user row into a tombstone (no
/// email, name, password, picture or preferences), which frees the email
/// for a new sign-up. `actor_id` (the person, or staff) is audited as the
/// one who did it.
pub async fn tombstone(
    app: &AppState,
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    actor_id: Uuid,
    ip: Option<String>,
    now: DateTime<Utc>,
) -> AppResult<Tombstoned> {
    let owned = lock_owned_organizations(conn, user_id).await?;
    if orgs::owned_with_other_members(conn, user_id).await? > 0 {
        return Ok(Tombstoned::OwnsSharedOrganization);
    }
    let mut kept = Vec::new();
    for (organization_id, personal) in owned {
        // A paid subscription ends now, before the row that names it goes;
        // when Stripe cannot be told, nothing is deleted.
        crate::plans::deletion::cancel_for_deleted_organization(app, conn, organization_id).await?;
        if crate::orgs::service::delete_organization(conn, organization_id).await? {
            let entry = AuditEntry::new("org.deleted", Some(actor_id), ip.clone())
                .target("organization", organization_id)
                .in_organization(organization_id)
                .metadata(serde_json::json!({ "personal": personal, "reason": "account deleted" }));
            audit::record(conn, entry, now).await?;
        } else {
            if personal {
                // It was named after the person.
                diesel::update(organizations::table.find(organization_id))
                    .set((
                        organizations::name.eq(DELETED_USER_NAME),
                        organizations::updated_at.eq(now),
                    ))
                    .execute(conn)
                    .await?;
            }
            kept.push(organization_id);
        }
    }
    // Memberships of kept organizations stay, so they keep their one
    // OWNER; every other membership goes.
    diesel::delete(
        memberships::table
            .filter(memberships::user_id.eq(user_id))
            .filter(memberships::organization_id.ne_all(&kept)),
    )
    .execute(conn)
    .await?;
    let ended = sessions::revoke_all_of_user(conn, user_id, None, "user.deleted", now).await?;
    // Where and with what the person signed in is theirs too; the
    // session rows stay for the history that points at them.
    diesel::update(sessions_table::table.filter(sessions_table::user_id.eq(user_id)))
        .set((
            sessions_table::ip.eq(None::<String>),
            sessions_table::user_agent.eq(None::<String>),
        ))
        .execute(conn)
        .await?;
    delete_avatars_of(conn, user_id, None).await?;
    // An unused verification or reset link must not act on a tombstone.
    diesel::delete(email_tokens::table.filter(email_tokens::user_id.eq(user_id)))
        .execute(conn)
        .await?;
    // Nor a second factor: secrets, recovery codes, sign-ins waiting.
    mfa::store::clear(conn, user_id, now).await?;
    mfa::recovery_codes::delete_all(conn, user_id).await?;
    mfa::challenge::forget_all(conn, user_id).await?;
    // The provider accounts may sign up afresh; their pending sign-ins end.
    crate::accounts::oauth::identities::delete_of_user(conn, user_id).await?;
    diesel::delete(oauth_login_codes::table.filter(oauth_login_codes::user_id.eq(user_id)))
        .execute(conn)
        .await?;
    diesel::update(users::table.find(user_id))
        .set((
            users::deleted_at.eq(now),
            users::email.eq(format!("deleted-{user_id}@deleted.invalid")),
            users::name.eq(DELETED_USER_NAME),
            users::password_hash.eq(None::<String>),
            users::avatar_url.eq(None::<String>),
            users::preferences.eq(Value::Object(Default::default())),
            users::updated_at.eq(now),
        ))
        .execute(conn)
        .await?;
    let entry = AuditEntry::new("user.deleted", Some(actor_id), ip)
        .target("user", user_id)
        .metadata(serde_json::json!({ "keptOrganizations": kept }));
    audit::record(conn, entry, now).await?;
    let announced = sessions::announce_account_closed(conn, user_id, &ended).await?;
    Ok(Tombstoned::Done(announced))
}

fn wrong_password() -> AppError {
    AppError::bad_input("password", "the password is not correct")
}

/// The organizations the user owns or that are theirs personally, as
/// `(id, personal)`, locked: a membership being added meanwhile waits on
/// the lock (its foreign key check), so nobody joins between the check
/// for other members and the deletion.
async fn lock_owned_organizations(conn: &mut AsyncPgConnection, user_id: Uuid) -> QueryResult<Vec<(Uuid, bool)>> {
    let owned = memberships::table
        .filter(memberships::user_id.eq(user_id))
        .filter(memberships::role.eq(OrgRole::Owner))
        .select(memberships::organization_id);
    let rows: Vec<(Uuid, Option<Uuid>)> = organizations::table
        .filter(
            organizations::id
                .eq_any(owned)
                .or(organizations::personal_user_id.eq(user_id)),
        )
        .select((organizations::id, organizations::personal_user_id))
        .order(organizations::id)
        .for_update()
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(id, personal)| (id, personal == Some(user_id)))
        .collect())
}
