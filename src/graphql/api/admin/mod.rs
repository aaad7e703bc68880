//! The staff queries and mutations, and the audit log as GraphQL: the
//! users and organizations connections, system statistics, and audit
//! entries for staff and for an organization's OWNER/ADMIN.

use async_graphql::{Context, ID, Object, SimpleObject};
use uuid::Uuid;

use crate::graphql::api::enums as gql;
use crate::{
    accounts::model::{Role, UserRow},
    admin::{
        search::{self, AuditFilter, AuditRow, OrganizationFilter, Search, UserFilter},
        stats,
        users::{self as staff_actions, Actor},
    },
    error::{ApiResult, AppError},
    graphql::{
        access,
        api::{accounts::query::User, billing::query::Plan, orgs::query::Organization},
        context::ContextExt,
        pagination::{Page, PageInfo, PageRequest, SortOrder},
        scalars::{BigInt, Timestamp},
    },
    orgs::{access::Access, model::OrganizationRow},
};

/// The caller's account when they are platform staff (ADMIN or SUPPORT);
/// FORBIDDEN for anyone else signed in, UNAUTHENTICATED when anonymous.
pub async fn require_staff(ctx: &Context<'_>) -> ApiResult<UserRow> {
    let user_id = ctx.principal()?.require_user()?;
    let caller = ctx.loaders()?.users.load_one(user_id).await?;
    Ok(caller
        .filter(|user| !user.is_deleted() && user.role.is_staff())
        .ok_or_else(AppError::forbidden)?)
}

/// Like [`require_staff`], for ADMIN only.
pub async fn require_admin(ctx: &Context<'_>) -> ApiResult<UserRow> {
    let caller = require_staff(ctx).await?;
    if caller.role != Role::Admin {
        return Err(AppError::forbidden().into());
    }
    Ok(caller)
}

/// The acting staff member and their address, for the audit log.
fn actor(ctx: &Context<'_>, caller: &UserRow) -> ApiResult<Actor> {
    Ok(Actor {
        user_id: caller.id,
        ip: Some(ctx.request_meta()?.client_ip.to_string()),
    })
}

/// A user id argument: anything that is not one of ours names nobody.
fn parse_user_id(id: &ID) -> ApiResult<Uuid> {
    Ok(Uuid::parse_str(id).map_err(|_| AppError::not_found("user"))?)
}

/// An id used as a filter: malformed is BAD_USER_INPUT naming it.
fn filter_id(id: Option<&ID>, field: &'static str) -> ApiResult<Option<Uuid>> {
    Ok(id
        .map(|id| Uuid::parse_str(id).map_err(|_| AppError::bad_input(field, "not an id")))
        .transpose()?)
}

/// Longest `action` filter: every action is a short dotted verb.
const MAX_ACTION_CHARS: usize = 64;

/// The `action` filter, trimmed (empty means none); BAD_USER_INPUT when
/// longer than any action is.
fn audit_action(action: Option<String>) -> ApiResult<Option<String>> {
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

/// Accounts, a page at a time.
pub struct UserConnection {
    page: Page<UserRow>,
    filter: UserFilter,
}

#[Object]
impl UserConnection {
    /// The users of this page, each with its cursor.
    async fn edges(&self) -> Vec<UserEdge> {
        self.page
            .items
            .iter()
            .map(|(cursor, row)| UserEdge {
                cursor: cursor.clone(),
                row: row.clone(),
            })
            .collect()
    }

    /// The users of this page.
    async fn nodes(&self) -> Vec<User> {
        self.page.items.iter().map(|(_, row)| User::new(row.clone())).collect()
    }

    /// Where this page sits in the list.
    async fn page_info(&self) -> &PageInfo {
        &self.page.info
    }

    /// How many users match the filters, across all pages.
    async fn total_count(&self, ctx: &Context<'_>) -> ApiResult<BigInt> {
        let mut conn = ctx.app()?.db().await?;
        Ok(BigInt(search::count_users(&mut conn, &self.filter).await?))
    }
}

/// One user in a list.
pub struct UserEdge {
    cursor: String,
    row: UserRow,
}

#[Object]
impl UserEdge {
    /// Pass as `after` to continue after this user.
    async fn cursor(&self) -> &str {
        &self.cursor
    }

    /// The user.
    async fn node(&self) -> User {
        User::new(self.row.clone())
    }
}

/// Organizations, a page at a time.
pub struct OrganizationConnection {
    page: Page<(OrganizationRow, Access)>,
    filter: OrganizationFilter,
}

#[Object]
impl OrganizationConnection {
    /// The organizations of this page, each with its cursor.
    async fn edges(&self) -> Vec<OrganizationEdge> {
        self.page
            .items
            .iter()
            .map(|(cursor, (row, access))| OrganizationEdge {
                cursor: cursor.clone(),
                node: Organization::new(row.clone(), *access),
            })
            .collect()
    }

    /// The organizations of this page.
    async fn nodes(&self) -> Vec<Organization> {
        self.page
            .items
            .iter()
            .map(|(_, (row, access))| Organization::new(row.clone(), *access))
            .collect()
    }

    /// Where this page sits in the list.
    async fn page_info(&self) -> &PageInfo {
        &self.page.info
    }

    /// How many organizations match the filters, across all pages.
    async fn total_count(&self, ctx: &Context<'_>) -> ApiResult<BigInt> {
        let mut conn = ctx.app()?.db().await?;
        Ok(BigInt(search::count_organizations(&mut conn, &self.filter).await?))
    }
}

/// One organization in a list.
#[derive(SimpleObject)]
pub struct OrganizationEdge {
    /// Pass as `after` to continue after this organization.
    cursor: String,
    /// The organization.
    node: Organization,
}

/// Who did what, to what, from where.
pub struct AuditRecord(AuditRow);

#[Object(name = "AuditEntry")]
impl AuditRecord {
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

/// Audit entries, newest first, a page at a time.
pub struct AuditEntryConnection {
    page: Page<AuditRow>,
    filter: AuditFilter,
}

#[Object]
impl AuditEntryConnection {
    /// The entries of this page, each with its cursor.
    async fn edges(&self) -> Vec<AuditEntryEdge> {
        self.page
            .items
            .iter()
            .map(|(cursor, row)| AuditEntryEdge {
                cursor: cursor.clone(),
                row: row.clone(),
            })
            .collect()
    }

    /// The entries of this page.
    async fn nodes(&self) -> Vec<AuditRecord> {
        self.page
            .items
            .iter()
            .map(|(_, row)| AuditRecord(row.clone()))
            .collect()
    }

    /// Where this page sits in the log.
    async fn page_info(&self) -> &PageInfo {
        &self.page.info
    }

    /// How many entries match the filters, across all pages.
    async fn total_count(&self, ctx: &Context<'_>) -> ApiResult<BigInt> {
        let mut conn = ctx.app()?.db().await?;
        Ok(BigInt(search::count_entries(&mut conn, &self.filter).await?))
    }
}

/// One audit entry in a log.
pub struct AuditEntryEdge {
    cursor: String,
    row: AuditRow,
}

#[Object]
impl AuditEntryEdge {
    /// Pass as `after` to continue after this entry.
    async fn cursor(&self) -> &str {
        &self.cursor
    }

    /// The entry.
    async fn node(&self) -> AuditRecord {
        AuditRecord(self.row.clone())
    }
}

/// Reads a page of the audit log, newest first.
async fn audit_page(
    ctx: &Context<'_>,
    filter: AuditFilter,
    first: Option<i32>,
    after: Option<String>,
) -> ApiResult<AuditEntryConnection> {
    let request = PageRequest::new(first, after.as_deref(), SortOrder::Descending)?;
    let mut conn = ctx.app()?.db().await?;
    let rows = search::list_entries(&mut conn, &filter, &request).await?;
    Ok(AuditEntryConnection {
        page: request.page(rows, search::entry_cursor),
        filter,
    })
}

/// `Organization.auditLog`: the organization's entries, newest first. The
/// caller's access to the organization is checked by the field.
pub async fn organization_audit_log(
    ctx: &Context<'_>,
    organization_id: Uuid,
    first: Option<i32>,
    after: Option<String>,
) -> ApiResult<AuditEntryConnection> {
    let filter = AuditFilter {
        organization_id: Some(organization_id),
        ..AuditFilter::default()
    };
    audit_page(ctx, filter, first, after).await
}

/// How many organizations are on one plan.
#[derive(SimpleObject)]
pub struct PlanCount {
    /// The plan.
    plan: Plan,
    /// Organizations whose subscription is on it.
    organizations: BigInt,
}

/// The platform's headline numbers.
#[derive(SimpleObject)]
pub struct SystemStats {
    /// Accounts, not counting deleted ones.
    users: BigInt,
    /// Accounts that signed in within the last 30 days.
    #[graphql(name = "activeUsersLast30Days")]
    active_users_last_30_days: BigInt,
    /// Organizations, personal ones included.
    organizations: BigInt,
    /// API keys that work now.
    active_api_keys: BigInt,
    /// Tokens counted this UTC calendar month.
    tokens_this_month: BigInt,
    /// Every plan with how many organizations are on it.
    organizations_by_plan: Vec<PlanCount>,
}

impl From<stats::Stats> for SystemStats {
    fn from(stats: stats::Stats) -> Self {
        Self {
            users: BigInt(stats.users),
            active_users_last_30_days: BigInt(stats.active_users),
            organizations: BigInt(stats.organizations),
            active_api_keys: BigInt(stats.active_api_keys),
            tokens_this_month: BigInt(stats.tokens_this_month),
            organizations_by_plan: stats
                .organizations_by_plan
                .into_iter()
                .map(|(plan, count)| PlanCount {
                    plan: Plan(plan),
                    organizations: BigInt(count),
                })
                .collect(),
        }
    }
}

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
        if id != caller {
            let staff = loaders.users.load_one(caller).await?.is_some_and(|u| u.role.is_staff());
            if !staff {
                return Ok(None);
            }
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
    ) -> ApiResult<UserConnection> {
        require_staff(ctx).await?;
        let request = PageRequest::new(first, after.as_deref(), SortOrder::Ascending)?;
        let filter = UserFilter {
            search: Search::new(search.as_deref())?,
            role: role.map(Into::into),
            suspended,
        };
        let mut conn = ctx.app()?.db().await?;
        let rows = search::list_users(&mut conn, &filter, &request).await?;
        Ok(UserConnection {
            page: request.page(rows, search::user_cursor),
            filter,
        })
    }

    /// ADMIN/SUPPORT: every organization. Search matches name and slug. Oldest first.
    async fn organizations(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        search: Option<String>,
    ) -> ApiResult<OrganizationConnection> {
        require_staff(ctx).await?;
        let request = PageRequest::new(first, after.as_deref(), SortOrder::Ascending)?;
        let filter = OrganizationFilter {
            search: Search::new(search.as_deref())?,
        };
        let rows = {
            let mut conn = ctx.app()?.db().await?;
            search::list_organizations(&mut conn, &filter, &request).await?
        };
        let mut page = Vec::with_capacity(rows.len());
        for row in rows {
            let access = access::access_to(ctx, row.id).await?;
            page.push((row, access));
        }
        Ok(OrganizationConnection {
            page: request.page(page, |(row, _)| search::organization_cursor(row)),
            filter,
        })
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
    ) -> ApiResult<AuditEntryConnection> {
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

/// The staff mutations on accounts.
#[derive(Default)]
pub struct AdminMutation;

#[Object]
impl AdminMutation {
    /// ADMIN. The last active ADMIN cannot be demoted (CONFLICT).
    async fn set_user_role(&self, ctx: &Context<'_>, user_id: ID, role: gql::Role) -> ApiResult<User> {
        let caller = require_admin(ctx).await?;
        let user =
            staff_actions::set_role(ctx.app()?, &actor(ctx, &caller)?, parse_user_id(&user_id)?, role.into()).await?;
        Ok(User::new(user))
    }

    /// ADMIN/SUPPORT. Also ends the user's sessions; their logins get ACCOUNT_SUSPENDED. Only an ADMIN suspends an ADMIN; nobody suspends themself.
    async fn suspend_user(&self, ctx: &Context<'_>, user_id: ID, reason: Option<String>) -> ApiResult<User> {
        let caller = require_staff(ctx).await?;
        let user = staff_actions::suspend(
            ctx.app()?,
            &actor(ctx, &caller)?,
            parse_user_id(&user_id)?,
            reason.as_deref(),
        )
        .await?;
        Ok(User::new(user))
    }

    /// ADMIN. The user may sign in again.
    async fn unsuspend_user(&self, ctx: &Context<'_>, user_id: ID) -> ApiResult<User> {
        let caller = require_admin(ctx).await?;
        let user = staff_actions::unsuspend(ctx.app()?, &actor(ctx, &caller)?, parse_user_id(&user_id)?).await?;
        Ok(User::new(user))
    }

    /// ADMIN. Deletes an account as deleteAccount does (CONFLICT while it owns an organization with other members); not one's own, and never the last active ADMIN.
    async fn delete_user(&self, ctx: &Context<'_>, user_id: ID) -> ApiResult<bool> {
        let caller = require_admin(ctx).await?;
        staff_actions::delete(ctx.app()?, &actor(ctx, &caller)?, parse_user_id(&user_id)?).await?;
        Ok(true)
    }
}
