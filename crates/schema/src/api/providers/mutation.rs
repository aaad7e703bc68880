//! The ADMIN mutations of providers: upsertProvider and deleteProvider.

use async_graphql::{Context, Object};

use super::{inputs::ProviderInput, query::Provider};
use crate::{api::admin::require_admin, context::ContextExt, error::ApiResult};
use tollgate_auth::users::UserRow;
use tollgate_core::error::AppError;
use tollgate_services::providers::service::{self, Actor};

/// The ADMIN mutations of providers.
#[derive(Default)]
pub struct ProvidersMutation;

#[Object]
impl ProvidersMutation {
    /// ADMIN: create or update an upstream provider (the same key updates it).
    async fn upsert_provider(&self, ctx: &Context<'_>, input: ProviderInput) -> ApiResult<Provider> {
        let caller = require_admin(ctx).await?;
        let row = service::upsert(ctx.app()?, &actor(ctx, &caller)?, input.into()).await?;
        Ok(Provider(row))
    }

    /// ADMIN: removes the provider and every route to it.
    async fn delete_provider(&self, ctx: &Context<'_>, key: String) -> ApiResult<bool> {
        let caller = require_admin(ctx).await?;
        if !service::delete(ctx.app()?, &actor(ctx, &caller)?, key.trim()).await? {
            return Err(AppError::not_found("provider").into());
        }
        Ok(true)
    }
}

/// The acting ADMIN and their address, for the audit log.
fn actor(ctx: &Context<'_>, caller: &UserRow) -> ApiResult<Actor> {
    Ok(Actor {
        user_id: Some(caller.id),
        ip: Some(ctx.request_meta()?.client_ip.to_string()),
    })
}
