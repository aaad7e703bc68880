//! The staff lists: users, organizations and audit entries, filtered and
//! read a keyset page at a time. Each list has one function that applies
//! its filters, used both for the page and for `totalCount`, so the two
//! never disagree.

use chrono::{DateTime, Utc};
use diesel::{pg::Pg, prelude::*};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::Value;
use uuid::Uuid;

use crate::orgs::model::OrganizationRow;
use tollgate_auth::users::{Role, UserRow};
use tollgate_core::error::{AppError, AppResult};
use tollgate_db::{
    pagination::{Cursor, PageRequest, after_cursor, contains_pattern, ordered},
    schema::{audit_log, organizations, users},
};

/// The longest search text accepted.
pub const MAX_SEARCH_LEN: usize = 200;

/// A checked search text, ready for ILIKE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Search(String);

impl Search {
    /// Trims `text`; empty means no search. Longer than
    /// [`MAX_SEARCH_LEN`] is BAD_USER_INPUT on `search`.
    pub fn new(text: Option<&str>) -> AppResult<Option<Self>> {
        let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
            return Ok(None);
        };
        if text.chars().count() > MAX_SEARCH_LEN {
            return Err(AppError::bad_input(
                "search",
                format!("search must be at most {MAX_SEARCH_LEN} characters"),
            ));
        }
        Ok(Some(Self(contains_pattern(text))))
    }

    /// The ILIKE pattern.
    fn pattern(&self) -> &str {
        &self.0
    }
}

/// Which users `users` lists. Deleted accounts (tombstones) never appear:
/// they are no one's account any more, only history's.
#[derive(Debug, Clone, Default)]
pub struct UserFilter {
    /// Matches email or name, case-insensitively.
    pub search: Option<Search>,
    /// Only this platform role.
    pub role: Option<Role>,
    /// Only suspended (true) or only active (false) accounts.
    pub suspended: Option<bool>,
}

fn users_matching(filter: &UserFilter) -> users::BoxedQuery<'_, Pg> {
    let mut query = users::table.filter(users::deleted_at.is_null()).into_boxed();
    if let Some(search) = &filter.search {
        query = query.filter(
            users::email
                .ilike(search.pattern())
                .or(users::name.ilike(search.pattern())),
        );
    }
    if let Some(role) = filter.role {
        query = query.filter(users::role.eq(role));
    }
    match filter.suspended {
        Some(true) => query.filter(users::suspended_at.is_not_null()),
        Some(false) => query.filter(users::suspended_at.is_null()),
        None => query,
    }
}

/// One page of users (plus one row to tell whether more follow).
pub async fn list_users(
    conn: &mut AsyncPgConnection,
    filter: &UserFilter,
    page: &PageRequest,
) -> QueryResult<Vec<UserRow>> {
    let mut query = users_matching(filter);
    if let Some(cursor) = page.after {
        query = query.filter(after_cursor(users::created_at, users::id, cursor, page.order));
    }
    ordered(query, users::created_at, users::id, page.order)
        .limit(page.fetch_limit())
        .select(UserRow::as_select())
        .load(conn)
        .await
}

/// How many users the filter matches.
pub async fn count_users(conn: &mut AsyncPgConnection, filter: &UserFilter) -> QueryResult<i64> {
    users_matching(filter).count().get_result(conn).await
}

/// The position of a user row in its list.
pub fn user_cursor(row: &UserRow) -> Cursor {
    Cursor::new(row.created_at, row.id)
}

/// Which organizations `organizations` lists.
#[derive(Debug, Clone, Default)]
pub struct OrganizationFilter {
    /// Matches name or slug, case-insensitively.
    pub search: Option<Search>,
}

fn organizations_matching(filter: &OrganizationFilter) -> organizations::BoxedQuery<'_, Pg> {
    let mut query = organizations::table.into_boxed();
    if let Some(search) = &filter.search {
        query = query.filter(
            organizations::name
                .ilike(search.pattern())
                .or(organizations::slug.ilike(search.pattern())),
        );
    }
    query
}

/// One page of organizations (plus one row).
pub async fn list_organizations(
    conn: &mut AsyncPgConnection,
    filter: &OrganizationFilter,
    page: &PageRequest,
) -> QueryResult<Vec<OrganizationRow>> {
    let mut query = organizations_matching(filter);
    if let Some(cursor) = page.after {
        query = query.filter(after_cursor(
            organizations::created_at,
            organizations::id,
            cursor,
            page.order,
        ));
    }
    ordered(query, organizations::created_at, organizations::id, page.order)
        .limit(page.fetch_limit())
        .select(OrganizationRow::as_select())
        .load(conn)
        .await
}

/// How many organizations the filter matches.
pub async fn count_organizations(conn: &mut AsyncPgConnection, filter: &OrganizationFilter) -> QueryResult<i64> {
    organizations_matching(filter).count().get_result(conn).await
}

/// The position of an organization row in its list.
pub fn organization_cursor(row: &OrganizationRow) -> Cursor {
    Cursor::new(row.created_at, row.id)
}

/// A row of `audit_log`.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = audit_log, check_for_backend(diesel::pg::Pg))]
pub struct AuditRow {
    pub id: Uuid,
    pub organization_id: Option<Uuid>,
    pub actor_id: Option<Uuid>,
    pub action: String,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub ip: Option<String>,
    pub metadata: Value,
    pub created_at: DateTime<Utc>,
}

/// Which audit entries a log shows.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only this organization's entries.
    pub organization_id: Option<Uuid>,
    /// Only entries by this person.
    pub actor_id: Option<Uuid>,
    /// Only this action (exact, e.g. `user.login`).
    pub action: Option<String>,
}

fn entries_matching(filter: &AuditFilter) -> audit_log::BoxedQuery<'_, Pg> {
    let mut query = audit_log::table.into_boxed();
    if let Some(organization_id) = filter.organization_id {
        query = query.filter(audit_log::organization_id.eq(organization_id));
    }
    if let Some(actor_id) = filter.actor_id {
        query = query.filter(audit_log::actor_id.eq(actor_id));
    }
    if let Some(action) = &filter.action {
        query = query.filter(audit_log::action.eq(action));
    }
    query
}

/// One page of audit entries (plus one row).
pub async fn list_entries(
    conn: &mut AsyncPgConnection,
    filter: &AuditFilter,
    page: &PageRequest,
) -> QueryResult<Vec<AuditRow>> {
    let mut query = entries_matching(filter);
    if let Some(cursor) = page.after {
        query = query.filter(after_cursor(audit_log::created_at, audit_log::id, cursor, page.order));
    }
    ordered(query, audit_log::created_at, audit_log::id, page.order)
        .limit(page.fetch_limit())
        .select(AuditRow::as_select())
        .load(conn)
        .await
}

/// How many audit entries the filter matches.
pub async fn count_entries(conn: &mut AsyncPgConnection, filter: &AuditFilter) -> QueryResult<i64> {
    entries_matching(filter).count().get_result(conn).await
}

/// The position of an audit entry in its log.
pub fn entry_cursor(row: &AuditRow) -> Cursor {
    Cursor::new(row.created_at, row.id)
}
