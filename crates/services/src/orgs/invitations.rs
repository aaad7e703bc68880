//! Invitations: `inviteMember`, `revokeInvitation`, `acceptInvitation`,
//! and signing up with an invitation.
//!
//! The emailed link carries a random token (256 bits); only its SHA-256 is
//! stored. A token works once, for 7 days, for the address it was sent to.
//! Holding it proves that address: accepting (or signing up) with it
//! verifies the email of the account that uses it.
//!
//! Inviting an address that already has a pending invitation sends a new
//! one and revokes the old (a lost email, or a different role): the old
//! link stops working, and the plan's seat count does not change.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::json;
use uuid::Uuid;

use crate::{
    orgs::{
        invitation_rows::{INVITATION_LIFETIME, InvitationRow},
        model as orgs,
        model::MembershipRow,
        service::{audit_ip, find_membership, lock_as_member, refuse_personal},
    },
    plans::subscription::plan_in_effect,
};
use tollgate_auth::{
    AppState,
    email::normalize_email,
    email_tokens::{hash_secret, random_secret},
    roles::OrgRole,
    users,
    users::UserRow,
};
use tollgate_core::error::{AppError, AppResult};
use tollgate_core::request::RequestMeta;
use tollgate_db::schema::{invitations, memberships, users as users_table};
use tollgate_platform::mail::templates;
use tollgate_platform::{
    audit::{self, AuditEntry},
    mail,
};

/// Invitations one address may be sent per hour, from all organizations
/// together: enough to re-send a few times, too few to spam someone.
pub const INVITATIONS_PER_ADDRESS_PER_HOUR: u32 = 5;
/// Invitations one person may send per hour, to all addresses together.
pub const INVITATIONS_PER_INVITER_PER_HOUR: u32 = 50;

/// BAD_USER_INPUT for a token that is unknown, used, revoked or expired,
/// naming `field` (`token` for acceptInvitation, `invitationToken` for
/// register).
fn bad_token(field: &'static str) -> AppError {
    AppError::bad_input(field, "this invitation is invalid, expired or already used")
}

/// An invitation by id.
pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<InvitationRow>> {
    invitations::table
        .find(id)
        .select(InvitationRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// The invitation a token belongs to, whatever its state.
async fn find_by_token(conn: &mut AsyncPgConnection, token: &str) -> QueryResult<Option<InvitationRow>> {
    invitations::table
        .filter(invitations::token_hash.eq(hash_secret(token)))
        .select(InvitationRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// Whether a live account with this (normalized) email is a member.
async fn is_member_email(conn: &mut AsyncPgConnection, organization_id: Uuid, email: &str) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        memberships::table
            .inner_join(users_table::table)
            .filter(memberships::organization_id.eq(organization_id))
            .filter(users_table::email.eq(email))
            .filter(users_table::deleted_at.is_null()),
    ))
    .get_result(conn)
    .await
}

/// Revokes the open invitations of `email` (pending, or expired but never
/// closed: the one-open-invitation index counts those too); returns how
/// many of them were still pending.
async fn revoke_open(
    conn: &mut AsyncPgConnection,
    organization_id: Uuid,
    email: &str,
    now: DateTime<Utc>,
) -> QueryResult<usize> {
    let expiries: Vec<DateTime<Utc>> = diesel::update(
        invitations::table
            .filter(invitations::organization_id.eq(organization_id))
            .filter(invitations::email.eq(email))
            .filter(invitations::accepted_at.is_null())
            .filter(invitations::revoked_at.is_null()),
    )
    .set(invitations::revoked_at.eq(now))
    .returning(invitations::expires_at)
    .get_results(conn)
    .await?;
    Ok(expiries.into_iter().filter(|expires_at| now < *expires_at).count())
}

/// Members plus pending invitations: the seats `maxMembers` counts.
async fn seats_taken(conn: &mut AsyncPgConnection, organization_id: Uuid, now: DateTime<Utc>) -> QueryResult<i64> {
    let members: i64 = memberships::table
        .filter(memberships::organization_id.eq(organization_id))
        .count()
        .get_result(conn)
        .await?;
    let pending: i64 = invitations::table
        .filter(invitations::organization_id.eq(organization_id))
        .filter(invitations::accepted_at.is_null())
        .filter(invitations::revoked_at.is_null())
        .filter(invitations::expires_at.gt(now))
        .count()
        .get_result(conn)
        .await?;
    Ok(members + pending)
}

/// CONFLICT when one more seat would exceed the plan's `maxMembers`.
async fn check_seat_available(
    conn: &mut AsyncPgConnection,
    organization_id: Uuid,
    now: DateTime<Utc>,
) -> AppResult<()> {
    let (_, plan) = plan_in_effect(conn, organization_id, now).await?;
    let Some(max) = plan.max_members else {
        return Ok(());
    };
    if seats_taken(conn, organization_id, now).await? >= i64::from(max) {
        return Err(AppError::conflict(format!(
            "the {} plan allows at most {max} members, pending invitations included: \
             revoke an invitation, remove a member or upgrade the plan",
            plan.name
        )));
    }
    Ok(())
}

/// Counts one invitation email against the address's and the inviter's
/// hourly limits (RATE_LIMITED beyond them). The inviter is told: they
/// know the address they typed, so the answer reveals nothing new.
async fn count_invitation_email(app: &AppState, inviter: Uuid, email: &str) -> AppResult<()> {
    let limiter = app.rate_limiter();
    let hour = Duration::from_secs(3600);
    let now = app.now();
    limiter
        .check(
            &format!("invite:by:{inviter}"),
            INVITATIONS_PER_INVITER_PER_HOUR,
            hour,
            now,
        )
        .await?;
    limiter
        .check(
            &format!("invite:to:{email}"),
            INVITATIONS_PER_ADDRESS_PER_HOUR,
            hour,
            now,
        )
        .await
}

/// `inviteMember` (ADMIN and above; never into a personal organization):
/// emails `email` a link to join with `role`, through the outbox in the
/// same transaction.
#[tracing::instrument(skip_all)]
pub async fn invite(
    app: &AppState,
    inviter: Uuid,
    organization_id: Uuid,
    email: &str,
    role: OrgRole,
    meta: &RequestMeta,
) -> AppResult<InvitationRow> {
    let email = normalize_email(email, "email")?;
    if role == OrgRole::Owner {
        return Err(AppError::bad_input(
            "role",
            "nobody is invited as OWNER: invite them, then transfer ownership",
        ));
    }
    let now = app.now();
    let ip = audit_ip(meta);
    let mut conn = app.db().await?;
    let invitation = conn
        .transaction::<_, AppError, _>(async |conn| {
            let (organization, _) = lock_as_member(conn, organization_id, inviter, "Mutation.inviteMember").await?;
            refuse_personal(&organization, "joined by invitation")?;
            if is_member_email(conn, organization_id, &email).await? {
                return Err(AppError::conflict("this person is already a member"));
            }
            let replaced = revoke_open(conn, organization_id, &email, now).await?;
            check_seat_available(conn, organization_id, now).await?;
            let inviter_row = users::find_live(conn, inviter)
                .await?
                .ok_or_else(AppError::unauthenticated)?;
            // Counted only once everything else allows the invitation, so
            // refused attempts do not use up the address's allowance.
            count_invitation_email(app, inviter, &email).await?;
            let (token, token_hash) = random_secret();
            let invitation: InvitationRow = diesel::insert_into(invitations::table)
                .values((
                    invitations::id.eq(Uuid::now_v7()),
                    invitations::organization_id.eq(organization_id),
                    invitations::email.eq(&email),
                    invitations::role.eq(role),
                    invitations::token_hash.eq(token_hash),
                    invitations::invited_by.eq(inviter),
                    invitations::created_at.eq(now),
                    invitations::expires_at.eq(now + INVITATION_LIFETIME),
                ))
                .returning(InvitationRow::as_returning())
                .get_result(conn)
                .await?;
            let message = templates::invitation(app.config(), &email, &organization.name, &inviter_row.name, &token);
            mail::enqueue(conn, &message, now).await?;
            let entry = AuditEntry::new("member.invited", Some(inviter), ip.clone())
                .target("invitation", invitation.id)
                .in_organization(organization_id)
                .metadata(json!({ "email": email, "role": role.as_str(), "resent": replaced > 0 }));
            audit::record(conn, entry, now).await?;
            Ok(invitation)
        })
        .await?;
    mail::wake();
    Ok(invitation)
}

/// `revokeInvitation` (ADMIN and above of its organization, which the
/// resolver checked): the link stops working. Revoking a revoked or
/// expired invitation is done already; an accepted one is CONFLICT (the
/// person is a member: remove them instead).
#[tracing::instrument(skip_all)]
pub async fn revoke(app: &AppState, actor: Uuid, invitation: &InvitationRow, meta: &RequestMeta) -> AppResult<()> {
    let now = app.now();
    let ip = audit_ip(meta);
    let mut conn = app.db().await?;
    conn.transaction::<_, AppError, _>(async |conn| {
        lock_as_member(conn, invitation.organization_id, actor, "Mutation.revokeInvitation").await?;
        let revoked = diesel::update(
            invitations::table
                .find(invitation.id)
                .filter(invitations::accepted_at.is_null())
                .filter(invitations::revoked_at.is_null()),
        )
        .set(invitations::revoked_at.eq(now))
        .execute(conn)
        .await?;
        if revoked == 0 {
            let current = find(conn, invitation.id)
                .await?
                .ok_or_else(|| AppError::not_found("invitation"))?;
            if current.accepted_at.is_some() {
                return Err(AppError::conflict(
                    "this invitation was accepted: remove the member instead",
                ));
            }
            return Ok(());
        }
        let entry = AuditEntry::new("invitation.revoked", Some(actor), ip.clone())
            .target("invitation", invitation.id)
            .in_organization(invitation.organization_id)
            .metadata(json!({ "email": invitation.email, "role": invitation.role.as_str() }));
        audit::record(conn, entry, now).await?;
        Ok(())
    })
    .await
}

/// The pending invitation `token` names, when it was sent to `email`;
/// BAD_USER_INPUT naming `field` otherwise (registration: the person
/// signing up holds the token, so telling them it is not for this address
/// reveals nothing).
pub async fn pending_for(
    conn: &mut AsyncPgConnection,
    token: &str,
    email: &str,
    now: DateTime<Utc>,
    field: &'static str,
) -> AppResult<InvitationRow> {
    let invitation = find_by_token(conn, token)
        .await?
        .filter(|invitation| invitation.is_pending(now))
        .ok_or_else(|| bad_token(field))?;
    if invitation.email != email {
        return Err(AppError::bad_input(
            field,
            "this invitation was sent to another address",
        ));
    }
    Ok(invitation)
}

/// Spends `invitation` for `user`: the organization is locked, the
/// invitation marked accepted (only if still pending, so it works once),
/// the membership created with the invited role, and `member.joined`
/// recorded, inside the caller's transaction. BAD_USER_INPUT naming
/// `field` when the invitation stopped being pending meanwhile; CONFLICT
/// when the user is a member already.
pub async fn join(
    conn: &mut AsyncPgConnection,
    invitation: &InvitationRow,
    user_id: Uuid,
    ip: Option<String>,
    now: DateTime<Utc>,
    field: &'static str,
) -> AppResult<MembershipRow> {
    // The lock orders this after any removal or plan change in flight,
    // and a vanished organization means a dead invitation.
    let locked: Option<Uuid> = tollgate_db::schema::organizations::table
        .find(invitation.organization_id)
        .select(tollgate_db::schema::organizations::id)
        .for_update()
        .first(conn)
        .await
        .optional()?;
    if locked.is_none() {
        return Err(bad_token(field));
    }
    if find_membership(conn, invitation.organization_id, user_id)
        .await?
        .is_some()
    {
        return Err(AppError::conflict("you are already a member of this organization"));
    }
    let accepted = diesel::update(
        invitations::table
            .find(invitation.id)
            .filter(invitations::accepted_at.is_null())
            .filter(invitations::revoked_at.is_null())
            .filter(invitations::expires_at.gt(now)),
    )
    .set(invitations::accepted_at.eq(now))
    .execute(conn)
    .await?;
    if accepted == 0 {
        return Err(bad_token(field));
    }
    let membership = MembershipRow {
        organization_id: invitation.organization_id,
        user_id,
        role: invitation.role,
        token_limit: None,
        created_at: now,
        updated_at: now,
    };
    orgs::insert_membership(conn, &membership).await?;
    let entry = AuditEntry::new("member.joined", Some(user_id), ip)
        .target("user", user_id)
        .in_organization(invitation.organization_id)
        .metadata(json!({
            "invitationId": invitation.id,
            "invitedBy": invitation.invited_by,
            "role": invitation.role.as_str(),
        }));
    audit::record(conn, entry, now).await?;
    Ok(membership)
}

/// Marks the email verified because an invitation token sent to it was
/// used, with its audit entry. Nothing happens when it already was.
pub async fn verify_by_invitation(
    conn: &mut AsyncPgConnection,
    user: &UserRow,
    ip: Option<String>,
    now: DateTime<Utc>,
) -> QueryResult<()> {
    if user.email_verified_at.is_some() {
        return Ok(());
    }
    users::mark_verified(conn, user, now).await?;
    let entry = AuditEntry::new("email.verified", Some(user.id), ip)
        .target("user", user.id)
        .metadata(json!({ "via": "invitation" }));
    audit::record(conn, entry, now).await
}

/// `acceptInvitation`: the signed-in user joins with the invited role. The
/// token must have been sent to their email (anyone else's invitation is
/// NOT_FOUND, whatever its state); using it verifies that email.
#[tracing::instrument(skip_all)]
pub async fn accept(app: &AppState, user_id: Uuid, token: &str, meta: &RequestMeta) -> AppResult<MembershipRow> {
    let now = app.now();
    let ip = audit_ip(meta);
    let mut conn = app.db().await?;
    conn.transaction::<_, AppError, _>(async |conn| {
        let user = users::find_live(conn, user_id)
            .await?
            .ok_or_else(AppError::unauthenticated)?;
        let invitation = find_by_token(conn, token).await?.ok_or_else(|| bad_token("token"))?;
        if invitation.email != user.email {
            return Err(AppError::not_found("invitation"));
        }
        if !invitation.is_pending(now) {
            return Err(bad_token("token"));
        }
        let membership = join(conn, &invitation, user_id, ip.clone(), now, "token").await?;
        verify_by_invitation(conn, &user, ip.clone(), now).await?;
        Ok(membership)
    })
    .await
}
