//! The staff queries and mutations, and the audit log as GraphQL: the
//! users and organizations connections, system statistics, and audit
//! entries for staff and for an organization's OWNER/ADMIN.

pub mod audit;
pub mod directory;
pub mod mutation;
pub mod query;
pub mod statistics;

use async_graphql::{Context, ID};
use uuid::Uuid;

use crate::{context::ContextExt, error::ApiResult};
use tollgate_auth::users::{Role, UserRow};
use tollgate_core::error::AppError;
use tollgate_services::admin::users::Actor;

/// The caller's account when they are platform staff (ADMIN or SUPPORT)
/// with their powers in force; FORBIDDEN for anyone else signed in (saying
/// to enroll TOTP for staff who must first), UNAUTHENTICATED when
/// anonymous.
pub async fn require_staff(ctx: &Context<'_>) -> ApiResult<UserRow> {
    require_platform_role(ctx, Role::Support).await
}

/// Like [`require_staff`], for ADMIN only.
pub async fn require_admin(ctx: &Context<'_>) -> ApiResult<UserRow> {
    require_platform_role(ctx, Role::Admin).await
}

async fn require_platform_role(ctx: &Context<'_>, min: Role) -> ApiResult<UserRow> {
    let user_id = ctx.principal()?.require_user()?;
    let caller = ctx.loaders()?.users.load_one(user_id).await?;
    let caller = caller.ok_or_else(AppError::forbidden)?;
    caller.staff_standing(ctx.app()?.config()).require(min)?;
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

pub use audit::{AuditEntry, organization_audit_log};
pub use mutation::AdminMutation;
pub use query::AdminQuery;
