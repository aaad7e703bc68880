//! Organization access for resolvers: the rules of
//! [`tollgate_services::orgs::access`], with the caller's memberships and platform role
//! read through the per-request loaders (one query for the caller's
//! memberships, whatever the number of organizations asked about).

use async_graphql::Context;
use uuid::Uuid;

use crate::context::ContextExt;
use tollgate_core::error::AppResult;
use tollgate_services::orgs::access::{self, Access, Caller};

/// The caller's access to `organization_id`. Anonymous callers are
/// UNAUTHENTICATED.
pub async fn access_to(ctx: &Context<'_>, organization_id: Uuid) -> AppResult<Access> {
    let user_id = match access::caller(ctx.principal()?, organization_id)? {
        Caller::User(user_id) => user_id,
        Caller::Key(access) => return Ok(access),
    };
    let loaders = ctx.loaders()?;
    let memberships = loaders.memberships_by_user.load_one(user_id).await?.unwrap_or_default();
    let platform_role = loaders.users.load_one(user_id).await?.map(|user| user.role);
    Ok(access::member_access(organization_id, &memberships, platform_role))
}

/// The caller's access to `organization_id`, refused unless `field`'s rule
/// allows it.
pub async fn authorize(ctx: &Context<'_>, organization_id: Uuid, field: &str) -> AppResult<Access> {
    let access = access_to(ctx, organization_id).await?;
    access.require(field)?;
    Ok(access)
}
