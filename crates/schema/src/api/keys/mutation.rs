//! Creating and revoking API keys.

use async_graphql::{Context, ID, InputObject, Object};
use uuid::Uuid;

use super::query::{ApiKey, CreatedApiKey};
use crate::{
    access::{access_to, authorize},
    api::enums as gql,
    context::ContextExt,
    error::ApiResult,
    scalars::{BigInt, Timestamp},
};
use tollgate_auth::{keys::model, roles::OrgRole};
use tollgate_core::error::AppError;
use tollgate_services::keys::service::{self, KeyRequest};

/// A new API key.
#[derive(InputObject)]
pub struct CreateApiKeyInput {
    /// The organization the key acts for; the caller must be MEMBER or above there.
    pub organization_id: ID,
    /// Display name, 1 to 100 characters.
    pub name: String,
    /// What the key may do; at least one.
    #[graphql(default_with = "vec![gql::ApiKeyScope::UsageWrite]")]
    pub scopes: Vec<gql::ApiKeyScope>,
    /// Model names it may be authorized for (matched after resolving aliases); null = every enabled model.
    pub allowed_models: Option<Vec<String>>,
    /// Client addresses or CIDR ranges (IPv4 or IPv6) allowed to use it; null = any.
    pub allowed_ips: Option<Vec<String>>,
    /// Monthly token budget of this key; null = only the organization's.
    pub token_limit: Option<BigInt>,
    /// When it stops working by itself; must be in the future. null = never.
    pub expires_at: Option<Timestamp>,
}

/// Creating and revoking API keys.
#[derive(Default)]
pub struct KeysMutation;

#[Object]
impl KeysMutation {
    /// Creates a key for an organization (MEMBER and above, within the plan's maxApiKeys). FORBIDDEN until the caller has verified their email. The secret is in the answer only.
    async fn create_api_key(&self, ctx: &Context<'_>, input: CreateApiKeyInput) -> ApiResult<CreatedApiKey> {
        let actor = ctx.principal()?.require_user()?;
        let organization_id =
            Uuid::parse_str(input.organization_id.as_str()).map_err(|_| AppError::not_found("organization"))?;
        authorize(ctx, organization_id, "Mutation.createApiKey").await?;
        let app = ctx.app()?;
        let draft = service::validate(
            KeyRequest {
                name: input.name,
                scopes: input.scopes.into_iter().map(Into::into).collect(),
                allowed_models: input.allowed_models,
                allowed_ips: input.allowed_ips,
                token_limit: input.token_limit.map(|limit| limit.0),
                expires_at: input.expires_at.map(|at| at.0),
            },
            app.now(),
        )?;
        let (key, secret) = service::create(app, actor, organization_id, draft, ctx.request_meta()?).await?;
        Ok(CreatedApiKey { key, secret })
    }

    /// Revokes a key at once, on every instance. OWNER/ADMIN revoke any key of the organization, others their own; a key revoked already comes back unchanged.
    async fn revoke_api_key(&self, ctx: &Context<'_>, id: ID) -> ApiResult<ApiKey> {
        let actor = ctx.principal()?.require_user()?;
        let key_id = Uuid::parse_str(id.as_str()).map_err(|_| AppError::not_found("API key"))?;
        let app = ctx.app()?;
        let key = model::find(&mut *app.db().await?, key_id)
            .await?
            .ok_or_else(|| AppError::not_found("API key"))?;
        let access = access_to(ctx, key.organization_id).await?;
        if !service::may_revoke(&key, actor, access.role) {
            // Staff and ADMINs see every key, so for them it exists;
            // anyone else cannot tell another member's key from none.
            let visible = access.staff.is_some() || access.has_role(OrgRole::Admin);
            return Err(if visible {
                AppError::forbidden()
            } else {
                AppError::not_found("API key")
            }
            .into());
        }
        let row = service::revoke(app, actor, key_id, ctx.request_meta()?).await?;
        Ok(ApiKey(row))
    }
}
