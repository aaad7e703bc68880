//! The staff mutations on accounts.

use async_graphql::{Context, ID, Object};

use super::{actor, parse_user_id, require_admin, require_staff};
use crate::{
    api::{accounts::query::User, enums as gql},
    context::ContextExt,
    error::ApiResult,
};
use tollgate_services::admin::users as staff_actions;

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
