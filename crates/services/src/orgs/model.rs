//! Organization and membership rows and their queries.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use tollgate_auth::{roles::OrgRole, users::UserSummary};
use tollgate_db::schema::{memberships, organizations, users};

/// A row of `organizations`.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = organizations, check_for_backend(diesel::pg::Pg))]
pub struct OrganizationRow {
    pub id: Uuid,
    pub name: String,
    pub slug: String,
    pub personal_user_id: Option<Uuid>,
    pub settings: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// An organization about to be inserted.
#[derive(Debug, Insertable)]
#[diesel(table_name = organizations)]
pub struct NewOrganization<'a> {
    pub id: Uuid,
    pub name: &'a str,
    pub slug: &'a str,
    pub personal_user_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A row of `memberships`.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = memberships, check_for_backend(diesel::pg::Pg))]
pub struct MembershipRow {
    pub organization_id: Uuid,
    pub user_id: Uuid,
    pub role: OrgRole,
    pub token_limit: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Inserts an organization.
pub async fn insert(conn: &mut AsyncPgConnection, organization: &NewOrganization<'_>) -> QueryResult<OrganizationRow> {
    diesel::insert_into(organizations::table)
        .values(organization)
        .returning(OrganizationRow::as_returning())
        .get_result(conn)
        .await
}

/// Inserts a membership.
pub async fn insert_membership(conn: &mut AsyncPgConnection, membership: &MembershipRow) -> QueryResult<()> {
    diesel::insert_into(memberships::table)
        .values(membership)
        .execute(conn)
        .await?;
    Ok(())
}

/// Gives a new organization its OWNER and its free-plan subscription:
/// what every organization has from its first moment.
pub async fn settle_new(
    conn: &mut AsyncPgConnection,
    organization_id: Uuid,
    owner: Uuid,
    now: DateTime<Utc>,
) -> QueryResult<()> {
    let membership = MembershipRow {
        organization_id,
        user_id: owner,
        role: OrgRole::Owner,
        token_limit: None,
        created_at: now,
        updated_at: now,
    };
    insert_membership(conn, &membership).await?;
    crate::plans::subscription::insert_free(conn, organization_id, now).await
}

/// Organizations by id.
pub async fn find_by_ids(conn: &mut AsyncPgConnection, ids: &[Uuid]) -> QueryResult<Vec<OrganizationRow>> {
    organizations::table
        .filter(organizations::id.eq_any(ids))
        .select(OrganizationRow::as_select())
        .load(conn)
        .await
}

/// The organization with this slug.
pub async fn find_by_slug(conn: &mut AsyncPgConnection, slug: &str) -> QueryResult<Option<OrganizationRow>> {
    organizations::table
        .filter(organizations::slug.eq(slug))
        .select(OrganizationRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// The memberships of these organizations, oldest first (the order members
/// are listed in).
pub async fn memberships_of_organizations(
    conn: &mut AsyncPgConnection,
    organization_ids: &[Uuid],
) -> QueryResult<Vec<MembershipRow>> {
    memberships::table
        .filter(memberships::organization_id.eq_any(organization_ids))
        .select(MembershipRow::as_select())
        .order((memberships::created_at, memberships::user_id))
        .load(conn)
        .await
}

/// The memberships of these organizations with their users' summaries,
/// oldest first: one statement. Reading the users apart sent PostgreSQL a
/// list of every member's id, and the plan it keeps for a prepared
/// statement does not hash such a list: on the benchmark's 1,000 users, a
/// sequential scan comparing each row with all 1,000 ids.
pub async fn members_of_organizations(
    conn: &mut AsyncPgConnection,
    organization_ids: &[Uuid],
) -> QueryResult<Vec<(MembershipRow, UserSummary)>> {
    memberships::table
        .inner_join(users::table)
        .filter(memberships::organization_id.eq_any(organization_ids))
        .select((MembershipRow::as_select(), UserSummary::as_select()))
        .order((memberships::created_at, memberships::user_id))
        .load(conn)
        .await
}

/// The memberships of these users, oldest first.
pub async fn memberships_of_users(conn: &mut AsyncPgConnection, user_ids: &[Uuid]) -> QueryResult<Vec<MembershipRow>> {
    memberships::table
        .filter(memberships::user_id.eq_any(user_ids))
        .select(MembershipRow::as_select())
        .order((memberships::created_at, memberships::organization_id))
        .load(conn)
        .await
}

/// How many other members share the organizations this user owns (a
/// person cannot leave those behind ownerless).
pub async fn owned_with_other_members(conn: &mut AsyncPgConnection, user_id: Uuid) -> QueryResult<i64> {
    let (owner, other) = diesel::alias!(memberships as owner, memberships as other);
    owner
        .inner_join(
            other.on(other
                .field(memberships::organization_id)
                .eq(owner.field(memberships::organization_id))
                .and(other.field(memberships::user_id).ne(owner.field(memberships::user_id)))),
        )
        .filter(owner.field(memberships::user_id).eq(user_id))
        .filter(owner.field(memberships::role).eq(OrgRole::Owner))
        .select(diesel::dsl::count(owner.field(memberships::organization_id)))
        .get_result(conn)
        .await
}

/// The slug of a personal organization: from the random tail of the
/// user's (v7) id, so it reveals neither the email nor when the account was
/// made (the head of a v7 id is its creation time).
pub fn personal_slug(user_id: Uuid) -> String {
    format!("personal-{}", &user_id.simple().to_string()[20..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn personal_slugs_differ_within_one_millisecond_and_fit_the_slug_rule() {
        let ts = uuid::Timestamp::from_unix(uuid::NoContext, 1_800_000_000, 0);
        let (a, b) = (personal_slug(Uuid::new_v7(ts)), personal_slug(Uuid::new_v7(ts)));
        assert_ne!(a, b);
        assert!(
            a.len() <= 40
                && a.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        );
    }
}
