//! The staff queries.

use async_graphql::{Context, ID, Object};
use uuid::Uuid;

use super::{
    audit::{AuditEntry, audit_action, audit_page},
    filter_id, require_staff,
    statistics::SystemStats,
};
use crate::{
    access,
    api::{
        accounts::query::User,
        connection::Connection,
        enums as gql,
        orgs::query::{MembersInHand, Organization},
    },
    context::ContextExt,
    error::ApiResult,
};
use tollgate_db::pagination::{Page, PageRequest, SortOrder};
use tollgate_services::admin::{
    search::{self, AuditFilter, OrganizationFilter, Search, UserFilter},
    stats,
};

/// The staff queries.
#[derive(Default)]
pub struct AdminQuery;

#[Object]
impl AdminQuery {
    /// The caller themself, or anyone for ADMIN/SUPPORT. Null for anyone else, for deleted accounts and when anonymous.
    async fn user(&self, ctx: &Context<'_>, id: ID) -> ApiResult<Option<User>> {
        let Some(caller) = ctx.principal()?.user_id() else {
            return Ok(None);
        };
        let Ok(id) = Uuid::parse_str(&id) else {
            return Ok(None);
        };
        let loaders = ctx.loaders()?;
        if id != caller && access::staff_role(ctx).await?.is_none() {
            return Ok(None);
        }
        let user = loaders.users.load_one(id).await?;
        Ok(user.filter(|u| !u.is_deleted()).map(User::new))
    }

    /// ADMIN/SUPPORT. Search matches email and name. Oldest first; deleted accounts are not listed.
    async fn users(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        search: Option<String>,
        role: Option<gql::Role>,
        suspended: Option<bool>,
    ) -> ApiResult<Connection<User>> {
        require_staff(ctx).await?;
        let request = PageRequest::new(first, after.as_deref(), SortOrder::Ascending)?;
        let filter = UserFilter {
            search: Search::new(search.as_deref())?,
            role: role.map(Into::into),
            suspended,
        };
        let mut conn = ctx.app()?.db().await?;
        let rows = search::list_users(&mut conn, &filter, &request).await?;
        Ok(Connection::new(request.page(rows, search::user_cursor), filter))
    }

    /// ADMIN/SUPPORT: every organization. Search matches name and slug. Oldest first.
    async fn organizations(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        search: Option<String>,
    ) -> ApiResult<Connection<Organization>> {
        require_staff(ctx).await?;
        let request = PageRequest::new(first, after.as_deref(), SortOrder::Ascending)?;
        let filter = OrganizationFilter {
            search: Search::new(search.as_deref())?,
        };
        let rows = {
            let mut conn = ctx.app()?.db().await?;
            search::list_organizations(&mut conn, &filter, &request).await?
        };
        // Cut to the page first: the row fetched to tell whether a next
        // page exists needs neither its members nor the caller's access.
        let Page { items, info } = request.page(rows, search::organization_cursor);
        let ids: Vec<_> = items.iter().map(|(_, row)| row.id).collect();
        let selection = ctx.look_ahead();
        let members = [
            selection.field("edges").field("node").field("members"),
            selection.field("nodes").field("members"),
        ];
        let page_members = MembersInHand::for_page(ctx, &ids, &members).await?;
        let mut organizations = Vec::with_capacity(items.len());
        for (cursor, row) in items {
            let access = access::access_to(ctx, row.id).await?;
            let organization = Organization::new(row, access).with_page_members(page_members.clone());
            organizations.push((cursor, organization));
        }
        Ok(Connection::new(
            Page {
                items: organizations,
                info,
            },
            filter,
        ))
    }

    /// ADMIN/SUPPORT.
    async fn stats(&self, ctx: &Context<'_>) -> ApiResult<SystemStats> {
        require_staff(ctx).await?;
        let app = ctx.app()?;
        let mut conn = app.db().await?;
        Ok(stats::read(&mut conn, app.now()).await?.into())
    }

    /// ADMIN/SUPPORT: every audit entry, including those with no organization (logins, staff actions). Newest first; `action` matches exactly.
    async fn audit_log(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        organization_id: Option<ID>,
        actor_id: Option<ID>,
        action: Option<String>,
    ) -> ApiResult<Connection<AuditEntry>> {
        require_staff(ctx).await?;
        let filter = AuditFilter {
            organization_id: filter_id(organization_id.as_ref(), "organizationId")?,
            actor_id: filter_id(actor_id.as_ref(), "actorId")?,
            action: audit_action(action)?,
        };
        if let Some(organization_id) = filter.organization_id {
            // The rule table has the last word on organization-scoped reads.
            access::authorize(ctx, organization_id, "Query.auditLog").await?;
        }
        audit_page(ctx, filter, first, after).await
    }
}
