//! The audit log as GraphQL: entries for staff and for an organization's
//! OWNER/ADMIN.

use async_graphql::{Context, ID, Object};
use diesel::QueryResult;
use diesel_async::AsyncPgConnection;
use uuid::Uuid;

use crate::{
    api::{
        accounts::query::User,
        connection::{Connection, ConnectionNode},
        orgs::query::Organization,
    },
    context::ContextExt,
    error::ApiResult,
    scalars::Timestamp,
};
use tollgate_core::error::AppError;
use tollgate_db::pagination::{PageRequest, SortOrder};
use tollgate_services::admin::search::{self, AuditFilter, AuditRow};

/// Longest `action` filter: every action is a short dotted verb.
const MAX_ACTION_CHARS: usize = 64;

/// The `action` filter, trimmed (empty means none); BAD_USER_INPUT when
/// longer than any action is.
pub(super) fn audit_action(action: Option<String>) -> ApiResult<Option<String>> {
    let Some(action) = action.map(|a| a.trim().to_owned()).filter(|a| !a.is_empty()) else {
        return Ok(None);
    };
    if action.chars().count() > MAX_ACTION_CHARS {
        return Err(AppError::bad_input(
            "action",
            format!("action must be at most {MAX_ACTION_CHARS} characters"),
        )
        .into());
    }
    Ok(Some(action))
}

/// Who did what, to what, from where.
pub struct AuditEntry(AuditRow);

#[Object]
impl AuditEntry {
    /// Stable identifier.
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    /// Dotted verb, e.g. user.login, member.invited, api_key.revoked.
    async fn action(&self) -> &str {
        &self.0.action
    }

    /// Who did it; null for anonymous attempts. A deleted account shows
    /// as its tombstone ("Deleted user"), so the entry still says who.
    async fn actor(&self, ctx: &Context<'_>) -> ApiResult<Option<User>> {
        let Some(actor_id) = self.0.actor_id else {
            return Ok(None);
        };
        Ok(ctx.loaders()?.users.load_one(actor_id).await?.map(User::new))
    }

    /// The organization concerned; null for platform events, and for an
    /// organization that is gone or that the caller cannot see.
    async fn organization(&self, ctx: &Context<'_>) -> ApiResult<Option<Organization>> {
        match self.0.organization_id {
            Some(id) => Organization::load(ctx, id).await,
            None => Ok(None),
        }
    }

    /// Kind of the object acted on, e.g. session, user, invitation.
    async fn target_type(&self) -> Option<&str> {
        self.0.target_type.as_deref()
    }

    /// Id of the object acted on.
    async fn target_id(&self) -> Option<&str> {
        self.0.target_id.as_deref()
    }

    /// The client address the action came from.
    async fn ip(&self) -> Option<&str> {
        self.0.ip.as_deref()
    }

    /// Details of the action (never secrets).
    async fn metadata(&self) -> &serde_json::Value {
        &self.0.metadata
    }

    /// When it happened.
    async fn created_at(&self) -> Timestamp {
        self.0.created_at.into()
    }
}

/// Audit entries, newest first, a page at a time (`AuditEntryConnection`).
impl ConnectionNode for AuditEntry {
    type Row = AuditRow;
    type Filter = AuditFilter;

    fn from_row(row: &AuditRow) -> Self {
        AuditEntry(row.clone())
    }

    async fn count(conn: &mut AsyncPgConnection, filter: &AuditFilter) -> QueryResult<i64> {
        search::count_entries(conn, filter).await
    }
}

/// Reads a page of the audit log, newest first.
pub(super) async fn audit_page(
    ctx: &Context<'_>,
    filter: AuditFilter,
    first: Option<i32>,
    after: Option<String>,
) -> ApiResult<Connection<AuditEntry>> {
    let request = PageRequest::new(first, after.as_deref(), SortOrder::Descending)?;
    let mut conn = ctx.app()?.db().await?;
    let rows = search::list_entries(&mut conn, &filter, &request).await?;
    Ok(Connection::new(request.page(rows, search::entry_cursor), filter))
}

/// `Organization.auditLog`: the organization's entries, newest first. The
/// caller's access to the organization is checked by the field.
pub async fn organization_audit_log(
    ctx: &Context<'_>,
    organization_id: Uuid,
    first: Option<i32>,
    after: Option<String>,
) -> ApiResult<Connection<AuditEntry>> {
    let filter = AuditFilter {
        organization_id: Some(organization_id),
        ..AuditFilter::default()
    };
    audit_page(ctx, filter, first, after).await
}
