//! Organization access for resolvers: the rules of
//! [`tollgate_services::orgs::access`], with the caller's memberships and platform role
//! read through the per-request loaders (one query for the caller's
//! memberships, whatever the number of organizations asked about).

use async_graphql::Context;
use uuid::Uuid;

use crate::context::ContextExt;
use tollgate_auth::users::{Role, StaffStanding};
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
    Ok(access::member_access(
        organization_id,
        &memberships,
        staff_standing(ctx).await?,
    ))
}

/// What the signed-in caller is as platform staff (see
/// [`tollgate_auth::users::UserRow::staff_standing`], the one rule for
/// staff powers); NotStaff for anonymous callers and API keys.
pub async fn staff_standing(ctx: &Context<'_>) -> AppResult<StaffStanding> {
    let Some(user_id) = ctx.principal()?.user_id() else {
        return Ok(StaffStanding::NotStaff);
    };
    let caller = ctx.loaders()?.users.load_one(user_id).await?;
    let config = ctx.app()?.config();
    Ok(caller.map_or(StaffStanding::NotStaff, |user| user.staff_standing(config)))
}

/// The platform role whose powers the caller holds now; None for anyone
/// who is not staff, or whose powers wait for TOTP.
pub async fn staff_role(ctx: &Context<'_>) -> AppResult<Option<Role>> {
    Ok(staff_standing(ctx).await?.role())
}

/// The caller's access to `organization_id`, refused unless `field`'s rule
/// allows it.
pub async fn authorize(ctx: &Context<'_>, organization_id: Uuid, field: &str) -> AppResult<Access> {
    let access = access_to(ctx, organization_id).await?;
    access.require(field)?;
    Ok(access)
}
