//! Changing who is in an organization and with which role: `updateMember`,
//! `removeMember`, `leaveOrganization` and `transferOwnership`.
//!
//! Roles: OWNER > ADMIN > MEMBER > VIEWER, one OWNER per organization (a
//! partial unique index holds it). Nobody becomes OWNER except through a
//! transfer, and nobody but the OWNER touches the OWNER's membership. An
//! ADMIN manages every other member, other ADMINs included: the issue
//! protects only the OWNER, and the OWNER can always take an ADMIN's role
//! away.

use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde_json::json;
use uuid::Uuid;

use crate::orgs::{
    model::{MembershipRow, OrganizationRow},
    service::{audit_ip, find_membership, lock_as_member, refuse_personal},
};
use tollgate_auth::{
    AppState,
    membership_events::{MemberRoleChanged, MembershipEnded},
    roles::OrgRole,
};
use tollgate_core::error::{AppError, AppResult};
use tollgate_core::request::RequestMeta;
use tollgate_db::schema::{memberships, users};
use tollgate_platform::{
    announcements::{self, Recorded},
    audit::{self, AuditEntry},
};

/// What `updateMember` asked to change; `None` keeps a value.
#[derive(Debug, Default, Clone, Copy)]
pub struct MemberUpdate {
    /// New role (never OWNER).
    pub role: Option<OrgRole>,
    /// `Some(None)` clears the budget; `Some(Some(n))` sets it.
    pub token_limit: Option<Option<i64>>,
}

impl MemberUpdate {
    /// Checks what needs no database: OWNER only through a transfer, and
    /// budgets are never negative.
    fn validate(self) -> AppResult<Self> {
        if self.role == Some(OrgRole::Owner) {
            return Err(AppError::bad_input(
                "role",
                "nobody becomes OWNER through updateMember: use transferOwnership",
            ));
        }
        if let Some(Some(limit)) = self.token_limit
            && limit < 0
        {
            return Err(AppError::bad_input("tokenLimit", "the token limit cannot be negative"));
        }
        Ok(self)
    }
}

/// The membership of `user_id`, or NOT_FOUND.
async fn target(
    conn: &mut diesel_async::AsyncPgConnection,
    organization_id: Uuid,
    user_id: Uuid,
) -> AppResult<MembershipRow> {
    find_membership(conn, organization_id, user_id)
        .await?
        .ok_or_else(|| AppError::not_found("member"))
}

/// `updateMember`: a member's role and monthly token budget (ADMIN and
/// above). Only the OWNER may change the OWNER's membership, and then only
/// its budget: the OWNER's role changes through a transfer. A role change
/// is announced (the member's keys may do no more than the new role).
#[tracing::instrument(skip_all)]
pub async fn update(
    app: &AppState,
    actor: Uuid,
    organization_id: Uuid,
    user_id: Uuid,
    update: MemberUpdate,
    meta: &RequestMeta,
) -> AppResult<MembershipRow> {
    let update = update.validate()?;
    let now = app.now();
    let ip = audit_ip(meta);
    let mut conn = app.db().await?;
    let (updated, announced) = conn
        .transaction::<_, AppError, _>(async |conn| {
            let (_, me) = lock_as_member(conn, organization_id, actor, "Mutation.updateMember").await?;
            let current = target(conn, organization_id, user_id).await?;
            if current.role == OrgRole::Owner {
                if me.role != OrgRole::Owner {
                    return Err(AppError::forbidden());
                }
                if update.role.is_some_and(|role| role != OrgRole::Owner) {
                    return Err(AppError::bad_input(
                        "role",
                        "the owner's role changes only through transferOwnership",
                    ));
                }
            }
            let role = update.role.unwrap_or(current.role);
            let token_limit = update.token_limit.unwrap_or(current.token_limit);
            if role == current.role && token_limit == current.token_limit {
                return Ok((current, Recorded::default()));
            }
            let updated = diesel::update(memberships::table.find((organization_id, user_id)))
                .set((
                    memberships::role.eq(role),
                    memberships::token_limit.eq(token_limit),
                    memberships::updated_at.eq(now),
                ))
                .returning(MembershipRow::as_returning())
                .get_result(conn)
                .await?;
            // A role change is the contract's member.role_changed (with the
            // budget alongside); a budget change alone gets a verb of its own,
            // added to the contract's list, so no membership change goes
            // unrecorded.
            let action = if role != current.role {
                "member.role_changed"
            } else {
                "member.budget_changed"
            };
            let entry = AuditEntry::new(action, Some(actor), ip.clone())
                .target("user", user_id)
                .in_organization(organization_id)
                .metadata(json!({
                    "from": current.role.as_str(),
                    "to": role.as_str(),
                    "tokenLimitFrom": current.token_limit,
                    "tokenLimit": token_limit,
                }));
            audit::record(conn, entry, now).await?;
            let announced = if role == current.role {
                Recorded::default()
            } else {
                let changed = MemberRoleChanged {
                    organization_id,
                    user_id,
                };
                announcements::record(conn, vec![changed.announcement()]).await?
            };
            Ok((updated, announced))
        })
        .await?;
    drop(conn);
    app.announcements().committed(announced);
    Ok(updated)
}

/// Deletes a membership; NOT_FOUND when there is none.
/// Ends a membership and revokes the keys the member created in the
/// organization (a key is bound to its creator's membership: were it only
/// refused while the membership is missing, rejoining later would bring it
/// back). Returns the revoked keys.
async fn delete_membership(
    conn: &mut diesel_async::AsyncPgConnection,
    organization_id: Uuid,
    user_id: Uuid,
    now: chrono::DateTime<chrono::Utc>,
) -> AppResult<Vec<Uuid>> {
    let deleted = diesel::delete(memberships::table.find((organization_id, user_id)))
        .execute(conn)
        .await?;
    if deleted == 0 {
        return Err(AppError::not_found("member"));
    }
    Ok(tollgate_auth::keys::model::revoke_all_of_member(conn, organization_id, user_id, now).await?)
}

/// `removeMember` (ADMIN and above): anyone but the OWNER. Their keys
/// there and open subscriptions stop at once.
#[tracing::instrument(skip_all)]
pub async fn remove(
    app: &AppState,
    actor: Uuid,
    organization_id: Uuid,
    user_id: Uuid,
    meta: &RequestMeta,
) -> AppResult<()> {
    let now = app.now();
    let ip = audit_ip(meta);
    let mut conn = app.db().await?;
    let announced = conn
        .transaction::<_, AppError, _>(async |conn| {
            lock_as_member(conn, organization_id, actor, "Mutation.removeMember").await?;
            let current = target(conn, organization_id, user_id).await?;
            if current.role == OrgRole::Owner {
                return Err(AppError::client(
                    tollgate_core::error::ErrorCode::Forbidden,
                    "the owner cannot be removed; the owner can transfer ownership first",
                ));
            }
            let ending = Ending {
                action: "member.removed",
                actor,
                organization_id,
                user_id,
                role: current.role,
            };
            end_membership(conn, ending, ip.clone(), now).await
        })
        .await?;
    drop(conn);
    app.announcements().committed(announced);
    Ok(())
}

/// `leaveOrganization`: any member but the OWNER, never a personal
/// organization.
#[tracing::instrument(skip_all)]
pub async fn leave(app: &AppState, actor: Uuid, organization_id: Uuid, meta: &RequestMeta) -> AppResult<()> {
    let now = app.now();
    let ip = audit_ip(meta);
    let mut conn = app.db().await?;
    let announced = conn
        .transaction::<_, AppError, _>(async |conn| {
            let (organization, me) = lock_as_member(conn, organization_id, actor, "Mutation.leaveOrganization").await?;
            refuse_personal(&organization, "left")?;
            if me.role == OrgRole::Owner {
                return Err(AppError::conflict(
                    "the owner cannot leave: transfer ownership to another member first",
                ));
            }
            let ending = Ending {
                action: "member.left",
                actor,
                organization_id,
                user_id: actor,
                role: me.role,
            };
            end_membership(conn, ending, ip.clone(), now).await
        })
        .await?;
    drop(conn);
    app.announcements().committed(announced);
    Ok(())
}

/// A membership about to end, and who ends it.
struct Ending {
    /// `member.removed` or `member.left`.
    action: &'static str,
    actor: Uuid,
    organization_id: Uuid,
    user_id: Uuid,
    /// The role the member had.
    role: OrgRole,
}

/// Ends the membership, revokes the member's keys there, audits it and
/// announces both (the keys and open subscriptions stop on every
/// instance), in the caller's transaction.
async fn end_membership(
    conn: &mut diesel_async::AsyncPgConnection,
    ending: Ending,
    ip: Option<String>,
    now: chrono::DateTime<chrono::Utc>,
) -> AppResult<Recorded> {
    let revoked = delete_membership(conn, ending.organization_id, ending.user_id, now).await?;
    let entry = AuditEntry::new(ending.action, Some(ending.actor), ip)
        .target("user", ending.user_id)
        .in_organization(ending.organization_id)
        .metadata(json!({ "role": ending.role.as_str(), "revokedApiKeys": revoked.len() }));
    audit::record(conn, entry, now).await?;
    let ended = MembershipEnded {
        organization_id: ending.organization_id,
        user_id: ending.user_id,
    };
    let mut list = tollgate_auth::keys::events::revoked(&revoked);
    list.push(ended.announcement());
    Ok(announcements::record(conn, list).await?)
}

/// `transferOwnership` (OWNER only, never a personal organization): the
/// new owner must already be a member; the old owner becomes ADMIN. The old
/// owner is demoted first, so the one-OWNER index holds at every step.
/// Transferring to oneself changes nothing. Both role changes are
/// announced.
#[tracing::instrument(skip_all)]
pub async fn transfer(
    app: &AppState,
    actor: Uuid,
    organization_id: Uuid,
    new_owner: Uuid,
    meta: &RequestMeta,
) -> AppResult<OrganizationRow> {
    let now = app.now();
    let ip = audit_ip(meta);
    let mut conn = app.db().await?;
    let (organization, announced) = conn
        .transaction::<_, AppError, _>(async |conn| {
            let (organization, _) = lock_as_member(conn, organization_id, actor, "Mutation.transferOwnership").await?;
            refuse_personal(&organization, "transferred")?;
            if new_owner == actor {
                return Ok((organization, Recorded::default()));
            }
            let not_a_member = || AppError::bad_input("userId", "the new owner must be a member of the organization");
            // Shares the successor's row against their deleting the account
            // meanwhile: a deletion checks what its user owns only once it holds
            // that row, so it either sees this transfer or this one sees it.
            users::table
                .find(new_owner)
                .filter(users::deleted_at.is_null())
                .select(users::id)
                .for_share()
                .first::<Uuid>(conn)
                .await
                .optional()?
                .ok_or_else(not_a_member)?;
            let successor = find_membership(conn, organization_id, new_owner)
                .await?
                .ok_or_else(not_a_member)?;
            for (user_id, role) in [(actor, OrgRole::Admin), (new_owner, OrgRole::Owner)] {
                diesel::update(memberships::table.find((organization_id, user_id)))
                    .set((memberships::role.eq(role), memberships::updated_at.eq(now)))
                    .execute(conn)
                    .await?;
            }
            let entry = AuditEntry::new("org.owner_transferred", Some(actor), ip.clone())
                .target("user", new_owner)
                .in_organization(organization_id)
                .metadata(json!({
                    "from": actor,
                    "to": new_owner,
                    "previousRole": successor.role.as_str(),
                }));
            audit::record(conn, entry, now).await?;
            let changed = [actor, new_owner].map(|user_id| {
                MemberRoleChanged {
                    organization_id,
                    user_id,
                }
                .announcement()
            });
            let announced = announcements::record(conn, changed.to_vec()).await?;
            Ok((organization, announced))
        })
        .await?;
    drop(conn);
    app.announcements().committed(announced);
    Ok(organization)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(update: MemberUpdate) -> Option<String> {
        tollgate_core::error::field_of(update.validate())
    }

    #[test]
    fn nobody_is_made_owner_and_budgets_are_not_negative() {
        let owner = MemberUpdate {
            role: Some(OrgRole::Owner),
            token_limit: None,
        };
        assert_eq!(field_of(owner).as_deref(), Some("role"));
        let negative = MemberUpdate {
            role: None,
            token_limit: Some(Some(-1)),
        };
        assert_eq!(field_of(negative).as_deref(), Some("tokenLimit"));
        let fine = MemberUpdate {
            role: Some(OrgRole::Viewer),
            token_limit: Some(Some(0)),
        };
        assert!(fine.validate().is_ok());
        let clear = MemberUpdate {
            role: None,
            token_limit: Some(None),
        };
        assert!(clear.validate().is_ok());
    }
}
