//! What staff do to accounts: change platform roles, suspend and
//! unsuspend, delete.
//!
//! Every action runs in one transaction that first takes a lock shared by
//! all of them, then re-reads the acting staff member: two admins demoting
//! each other at once, or an admin acting while being suspended, are
//! decided one after the other against what the first one did, so the
//! platform never ends up without an active ADMIN through these tools.
//! Entries are audited with no organization: they concern the platform.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::accounts::profile::{self, Tombstoned};
use tollgate_auth::{
    AppState, role_events as events, sessions, users as model,
    users::{Role, UserRow},
};
use tollgate_core::error::{AppError, AppResult};
use tollgate_db::schema::users;
use tollgate_platform::{
    announcements::{self, Recorded},
    audit::{self, AuditEntry},
};

/// The longest suspension reason kept.
pub const MAX_REASON_CHARS: usize = 500;

/// Who is acting, and from where (for the audit log).
#[derive(Debug, Clone)]
pub struct Actor {
    /// The staff member's user id.
    pub user_id: Uuid,
    /// Their client address.
    pub ip: Option<String>,
}

/// `setUserRole` (ADMIN): refuses to demote the last active ADMIN.
pub async fn set_role(app: &AppState, actor: &Actor, user_id: Uuid, role: Role) -> AppResult<UserRow> {
    let now = app.now();
    let mut conn = app.db().await?;
    let (updated, announced) = conn
        .transaction::<_, AppError, _>(async |conn| {
            begin(conn, app, actor, Role::Admin).await?;
            let target = lock_target(conn, user_id).await?;
            if target.role == role {
                return Ok((target, Recorded::default()));
            }
            if target.role == Role::Admin && tollgate_auth::users::other_active_admins(conn, target.id).await? == 0 {
                return Err(AppError::conflict("the last ADMIN cannot be demoted"));
            }
            let updated = diesel::update(users::table.find(target.id))
                .set((users::role.eq(role), users::updated_at.eq(now)))
                .returning(UserRow::as_returning())
                .get_result(conn)
                .await?;
            let entry = AuditEntry::new("user.role_changed", Some(actor.user_id), actor.ip.clone())
                .target("user", target.id)
                .metadata(serde_json::json!({ "from": target.role.as_str(), "to": role.as_str() }));
            audit::record(conn, entry, now).await?;
            let changed = events::RoleChanged { user_id: target.id };
            let announced = announcements::record(conn, vec![changed.announcement()]).await?;
            Ok((updated, announced))
        })
        .await?;
    drop(conn);
    app.announcements().committed(announced);
    Ok(updated)
}

/// `suspendUser` (ADMIN or SUPPORT; only an ADMIN suspends an ADMIN;
/// nobody themself): marks the account suspended, ends every session of
/// it and announces that, so its access tokens and API keys stop working
/// at once on every instance. Suspending again keeps the first time and
/// replaces the reason.
pub async fn suspend(app: &AppState, actor: &Actor, user_id: Uuid, reason: Option<&str>) -> AppResult<UserRow> {
    let reason = clean_reason(reason)?;
    let now = app.now();
    let mut conn = app.db().await?;
    let (user, announced) = conn
        .transaction::<_, AppError, _>(async |conn| {
            let acting = begin(conn, app, actor, Role::Support).await?;
            refuse_self(actor, user_id, "suspend")?;
            let target = lock_target(conn, user_id).await?;
            if target.role == Role::Admin && acting.role != Role::Admin {
                return Err(AppError::forbidden());
            }
            let user = diesel::update(users::table.find(target.id))
                .set((
                    users::suspended_at.eq(target.suspended_at.unwrap_or(now)),
                    users::suspension_reason.eq(reason.as_deref()),
                    users::updated_at.eq(now),
                ))
                .returning(UserRow::as_returning())
                .get_result(conn)
                .await?;
            let ended = sessions::revoke_all_of_user(conn, target.id, None, "user.suspended", now).await?;
            let entry = AuditEntry::new("user.suspended", Some(actor.user_id), actor.ip.clone())
                .target("user", target.id)
                .metadata(serde_json::json!({ "reason": reason, "sessionsEnded": ended.len() }));
            audit::record(conn, entry, now).await?;
            let announced = sessions::announce_account_closed(conn, target.id, &ended).await?;
            Ok((user, announced))
        })
        .await?;
    drop(conn);
    app.announcements().committed(announced);
    Ok(user)
}

/// `unsuspendUser` (ADMIN): the person may sign in again (their ended
/// sessions stay ended). An account that is not suspended is left as it is.
pub async fn unsuspend(app: &AppState, actor: &Actor, user_id: Uuid) -> AppResult<UserRow> {
    let now = app.now();
    let mut conn = app.db().await?;
    conn.transaction::<_, AppError, _>(async |conn| {
        begin(conn, app, actor, Role::Admin).await?;
        let target = lock_target(conn, user_id).await?;
        if target.suspended_at.is_none() {
            return Ok(target);
        }
        let user = diesel::update(users::table.find(target.id))
            .set((
                users::suspended_at.eq(None::<DateTime<Utc>>),
                users::suspension_reason.eq(None::<String>),
                users::updated_at.eq(now),
            ))
            .returning(UserRow::as_returning())
            .get_result(conn)
            .await?;
        let entry = AuditEntry::new("user.unsuspended", Some(actor.user_id), actor.ip.clone())
            .target("user", target.id)
            .metadata(serde_json::json!({ "suspendedAt": target.suspended_at }));
        audit::record(conn, entry, now).await?;
        Ok(user)
    })
    .await
}

/// `deleteUser` (ADMIN): the same deletion as `deleteAccount`
/// ([`profile::tombstone`]), CONFLICT while the person owns an
/// organization with other members. Not for oneself (that is
/// `deleteAccount`, which asks for the password), and never the last
/// active ADMIN.
pub async fn delete(app: &AppState, actor: &Actor, user_id: Uuid) -> AppResult<()> {
    let now = app.now();
    let mut conn = app.db().await?;
    let announced = conn
        .transaction::<_, AppError, _>(async |conn| {
            begin(conn, app, actor, Role::Admin).await?;
            refuse_self(actor, user_id, "delete")?;
            let target = lock_target(conn, user_id).await?;
            if target.role == Role::Admin && tollgate_auth::users::other_active_admins(conn, target.id).await? == 0 {
                return Err(AppError::conflict("the last ADMIN cannot be deleted"));
            }
            match profile::tombstone(app, conn, target.id, actor.user_id, actor.ip.clone(), now).await? {
                Tombstoned::Done(announced) => Ok(announced),
                Tombstoned::OwnsSharedOrganization => Err(AppError::conflict(
                    "the user owns an organization with other members: transfer it or remove them first",
                )),
            }
        })
        .await?;
    drop(conn);
    app.announcements().committed(announced);
    Ok(())
}

/// Serializes staff actions, then re-reads the actor: they must still be
/// live, unsuspended, and hold staff powers of at least `min` (FORBIDDEN,
/// saying to enroll TOTP when that is what they lack).
async fn begin(conn: &mut AsyncPgConnection, app: &AppState, actor: &Actor, min: Role) -> AppResult<UserRow> {
    diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
        .bind::<diesel::sql_types::BigInt, _>(tollgate_auth::users::STAFF_ACTIONS_LOCK)
        .execute(conn)
        .await?;
    let acting = users::table
        .find(actor.user_id)
        .filter(users::deleted_at.is_null())
        .filter(users::suspended_at.is_null())
        .select(UserRow::as_select())
        .first(conn)
        .await
        .optional()?;
    let acting = acting.ok_or_else(AppError::forbidden)?;
    acting.staff_standing(app.config()).require(min)?;
    Ok(acting)
}

/// The live account acted on, locked; NOT_FOUND when there is none.
async fn lock_target(conn: &mut AsyncPgConnection, user_id: Uuid) -> AppResult<UserRow> {
    model::lock_live(conn, user_id)
        .await?
        .ok_or_else(|| AppError::not_found("user"))
}

/// Staff act on others; on themselves they use the account's own tools.
fn refuse_self(actor: &Actor, user_id: Uuid, verb: &str) -> AppResult<()> {
    if actor.user_id == user_id {
        return Err(AppError::bad_input(
            "userId",
            format!("you cannot {verb} yourself here"),
        ));
    }
    Ok(())
}

/// Trims a suspension reason; empty means none.
fn clean_reason(reason: Option<&str>) -> AppResult<Option<String>> {
    let Some(reason) = reason.map(str::trim).filter(|r| !r.is_empty()) else {
        return Ok(None);
    };
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(AppError::bad_input(
            "reason",
            format!("the reason must be at most {MAX_REASON_CHARS} characters"),
        ));
    }
    Ok(Some(reason.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_trimmed_and_bounded() {
        assert_eq!(clean_reason(Some("  spam  ")).unwrap().as_deref(), Some("spam"));
        assert_eq!(clean_reason(Some("   ")).unwrap(), None);
        assert_eq!(clean_reason(None).unwrap(), None);
        assert!(clean_reason(Some(&"x".repeat(MAX_REASON_CHARS + 1))).is_err());
    }
}
