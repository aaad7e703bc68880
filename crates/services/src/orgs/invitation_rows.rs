//! Invitation rows and their queries. An invitation is pending until it is
//! accepted, revoked or past `expires_at`.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use tollgate_auth::roles::OrgRole;
use tollgate_db::schema::invitations;

/// How long an invitation link stays valid.
pub const INVITATION_LIFETIME: chrono::Duration = chrono::Duration::days(7);

/// A row of `invitations`.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = invitations, check_for_backend(diesel::pg::Pg))]
pub struct InvitationRow {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub email: String,
    pub role: OrgRole,
    pub token_hash: Vec<u8>,
    pub invited_by: Uuid,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub accepted_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl InvitationRow {
    /// Neither accepted, revoked nor expired.
    pub fn is_pending(&self, now: DateTime<Utc>) -> bool {
        self.accepted_at.is_none() && self.revoked_at.is_none() && now < self.expires_at
    }
}

/// The pending invitations of these organizations, newest first.
pub async fn pending_of_organizations(
    conn: &mut AsyncPgConnection,
    organization_ids: &[Uuid],
    now: DateTime<Utc>,
) -> QueryResult<Vec<InvitationRow>> {
    invitations::table
        .filter(invitations::organization_id.eq_any(organization_ids))
        .filter(invitations::accepted_at.is_null())
        .filter(invitations::revoked_at.is_null())
        .filter(invitations::expires_at.gt(now))
        .select(InvitationRow::as_select())
        .order((invitations::created_at.desc(), invitations::id.desc()))
        .load(conn)
        .await
}
