//! The ApiKey, CreatedApiKey and ApiKeyInfo types and `apiKeyInfo`.

use async_graphql::{Context, ID, Object};

use crate::{
    access::authorize,
    api::{accounts::query::User, enums as gql, orgs::query::Organization},
    context::ContextExt,
    error::ApiResult,
    scalars::{BigInt, Timestamp},
};
use tollgate_auth::Principal;
use tollgate_auth::{
    keys::model::{self, ApiKeyRow},
    roles::OrgRole,
};
use tollgate_core::error::AppError;
use tollgate_services::orgs::access::Access;

/// A credential LLM tools report usage with, acting for one organization.
pub struct ApiKey(pub ApiKeyRow);

impl ApiKey {
    /// The row behind it.
    pub fn row(&self) -> &ApiKeyRow {
        &self.0
    }
}

#[Object]
impl ApiKey {
    /// Stable identifier (for revokeApiKey).
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    /// Display name.
    async fn name(&self) -> &str {
        &self.0.name
    }

    /// The first characters of the secret, enough to recognise it.
    async fn prefix(&self) -> &str {
        &self.0.prefix
    }

    /// What the key may do.
    async fn scopes(&self) -> Vec<gql::ApiKeyScope> {
        self.0.scope_list().into_iter().map(Into::into).collect()
    }

    /// null = every enabled model.
    async fn allowed_models(&self) -> Option<Vec<String>> {
        self.0.allowed_model_list()
    }

    /// Client addresses or CIDR ranges allowed to use the key; null = any.
    async fn allowed_ips(&self) -> Option<Vec<String>> {
        self.0.allowed_ip_list()
    }

    /// Monthly token budget of this key; null = only the organization's.
    async fn token_limit(&self) -> Option<BigInt> {
        self.0.token_limit.map(BigInt)
    }

    /// Tokens reported with this key in the current quota period.
    async fn tokens_used(&self, ctx: &Context<'_>) -> ApiResult<BigInt> {
        crate::api::usage::query::api_key_tokens_used(ctx, self.0.organization_id, self.0.id).await
    }

    /// The organization the key acts for.
    async fn organization(&self, ctx: &Context<'_>) -> ApiResult<Organization> {
        Organization::require(ctx, self.0.organization_id).await
    }

    /// The member who created it; the key stops working when they leave.
    async fn created_by(&self, ctx: &Context<'_>) -> ApiResult<User> {
        // A person is organization data: a key reads it only with ORG_READ,
        // as it would through Organization.members.
        if ctx.principal()?.api_key().is_some() {
            authorize(ctx, self.0.organization_id, "Organization.members").await?;
        }
        let user = ctx.loaders()?.users.load_one(self.0.created_by).await?;
        Ok(user.map(User::new).ok_or_else(|| AppError::not_found("user"))?)
    }

    /// When it was created.
    async fn created_at(&self) -> Timestamp {
        self.0.created_at.into()
    }

    /// Last authenticated use, to the minute.
    async fn last_used_at(&self) -> Option<Timestamp> {
        self.0.last_used_at.map(Timestamp)
    }

    /// When it stops working by itself; null = never.
    async fn expires_at(&self) -> Option<Timestamp> {
        self.0.expires_at.map(Timestamp)
    }

    /// When it was revoked, if it was.
    async fn revoked_at(&self) -> Option<Timestamp> {
        self.0.revoked_at.map(Timestamp)
    }
}

/// A key just created, with its secret.
pub struct CreatedApiKey {
    pub(super) key: ApiKeyRow,
    pub(super) secret: String,
}

#[Object]
impl CreatedApiKey {
    /// The new key.
    async fn api_key(&self) -> ApiKey {
        ApiKey(self.key.clone())
    }

    /// The full secret. Shown once; only its hash is stored.
    async fn secret(&self) -> &str {
        &self.secret
    }
}

/// What an API key sees about itself (the 'verify key' call of editor extensions).
pub struct ApiKeyInfo {
    key: ApiKeyRow,
}

impl ApiKeyInfo {
    /// The calling key's row.
    pub fn row(&self) -> &ApiKeyRow {
        &self.key
    }
}

#[Object]
impl ApiKeyInfo {
    /// The calling key.
    async fn api_key(&self) -> ApiKey {
        ApiKey(self.key.clone())
    }

    /// The organization it acts for.
    async fn organization(&self, ctx: &Context<'_>) -> ApiResult<Organization> {
        Organization::require(ctx, self.key.organization_id).await
    }

    /// The organization's quota now (any scope may read it).
    async fn quota(&self, ctx: &Context<'_>) -> ApiResult<crate::api::usage::quota::Quota> {
        crate::api::usage::query::organization_quota(ctx, self.key.organization_id).await
    }
}

/// The keys of an organization the caller may see: OWNER/ADMIN (and staff,
/// who read everything) see all; other members the keys they created; a
/// key itself. For `Organization.apiKeys`, through the per-request loader
/// so a list of organizations costs one query.
pub async fn keys_of_organization(ctx: &Context<'_>, access: Access) -> ApiResult<Vec<ApiKey>> {
    access.require("Organization.apiKeys")?;
    let keys = ctx
        .loaders()?
        .api_keys_by_organization
        .load_one(access.organization_id)
        .await?
        .unwrap_or_default();
    let principal = ctx.principal()?;
    let sees_all = access.staff.is_some() || access.has_role(OrgRole::Admin);
    Ok(keys
        .into_iter()
        .filter(|key| sees_all || is_own(principal, key))
        .map(ApiKey)
        .collect())
}

/// Whether `key` is the caller's: created by them, or the calling key.
fn is_own(principal: &Principal, key: &ApiKeyRow) -> bool {
    principal.user_id() == Some(key.created_by) || principal.api_key().is_some_and(|k| k.key_id == key.id)
}

/// Queries about API keys.
#[derive(Default)]
pub struct KeysQuery;

#[Object]
impl KeysQuery {
    /// Only when authenticated by an API key.
    async fn api_key_info(&self, ctx: &Context<'_>) -> ApiResult<ApiKeyInfo> {
        let Some(identity) = ctx.principal()?.api_key() else {
            return Err(AppError::client(
                tollgate_core::error::ErrorCode::Forbidden,
                "apiKeyInfo answers only requests authenticated by an API key",
            )
            .into());
        };
        let mut conn = ctx.app()?.db().await?;
        // Gone since it was resolved (its organization was deleted).
        let key = model::find(&mut conn, identity.key_id)
            .await?
            .ok_or_else(AppError::unauthenticated)?;
        Ok(ApiKeyInfo { key })
    }
}
