//! The Provider and ModelRoute types, Query.providers, and the route
//! fields of Model (callable, routes), batched over a list of models.

use async_graphql::{Context, Object};

use crate::{
    api::{admin::require_staff, enums as gql},
    context::ContextExt,
    error::ApiResult,
    scalars::Timestamp,
};
use tollgate_core::error::AppError;
use tollgate_services::{
    providers::{
        model::{self as providers, ProviderRow},
        routes::{self, RouteTo},
    },
    usage::llm_models::ModelRow,
};

/// An upstream LLM service the gateway calls with the platform's own credentials. ADMIN/SUPPORT read; ADMIN writes.
pub struct Provider(pub ProviderRow);

/// An upstream LLM service the gateway calls with the platform's own credentials. ADMIN/SUPPORT read; ADMIN writes.
#[Object]
impl Provider {
    /// Stable key, e.g. openai, anthropic, openrouter: 2 to 40 of a-z, 0-9, '-'.
    async fn key(&self) -> &str {
        &self.0.key
    }

    /// Human-readable name.
    async fn name(&self) -> &str {
        &self.0.name
    }

    /// Which API it speaks.
    async fn kind(&self) -> gql::ProviderKind {
        self.0.kind.into()
    }

    /// Base URL of its API, e.g. https://api.openai.com/v1 or https://api.anthropic.com.
    async fn base_url(&self) -> &str {
        &self.0.base_url
    }

    /// The last 4 characters of its API key; the key itself is stored encrypted and never returned.
    async fn api_key_hint(&self) -> Option<&str> {
        self.0.api_key_hint.as_deref()
    }

    /// Disabled providers are skipped by the gateway.
    async fn enabled(&self) -> bool {
        self.0.enabled
    }

    /// When it was created.
    async fn created_at(&self) -> Timestamp {
        self.0.created_at.into()
    }

    /// When it last changed.
    async fn updated_at(&self) -> Timestamp {
        self.0.updated_at.into()
    }
}

/// One place a model can be called: a provider and the model's name there.
pub struct ModelRoute(pub RouteTo);

/// One place a model can be called: a provider and the model's name there.
#[Object]
impl ModelRoute {
    /// The provider that serves it.
    async fn provider(&self) -> Provider {
        Provider(self.0.provider.clone())
    }

    /// The model name the provider expects, e.g. gpt-4o-2024-08-06 or anthropic/claude-sonnet-4.
    async fn upstream_model(&self) -> &str {
        &self.0.route.upstream_model
    }
}

/// Model.callable: enabled, with a route to an enabled provider; the
/// routes of every model of the answer come in one statement.
pub async fn model_callable(ctx: &Context<'_>, model: &ModelRow) -> ApiResult<bool> {
    if !model.enabled {
        return Ok(false);
    }
    let routes = ctx.loaders()?.model_routes.load_one(model.id.clone()).await?;
    Ok(routes::callable(model.enabled, &routes.unwrap_or_default()))
}

/// Model.routes: staff only (FORBIDDEN, and so null, for anyone else,
/// anonymous callers and API keys included: the catalog is public).
pub async fn model_routes(ctx: &Context<'_>, model: &ModelRow) -> ApiResult<Option<Vec<ModelRoute>>> {
    if !is_staff(ctx).await? {
        return Err(AppError::forbidden().into());
    }
    let routes = ctx.loaders()?.model_routes.load_one(model.id.clone()).await?;
    Ok(Some(routes.unwrap_or_default().into_iter().map(ModelRoute).collect()))
}

/// Whether the caller is a signed-in ADMIN or SUPPORT.
async fn is_staff(ctx: &Context<'_>) -> ApiResult<bool> {
    let Ok(user_id) = ctx.principal()?.require_user() else {
        return Ok(false);
    };
    let user = ctx.loaders()?.users.load_one(user_id).await?;
    Ok(user.is_some_and(|user| !user.is_deleted() && user.role.is_staff()))
}

/// The staff query of providers.
#[derive(Default)]
pub struct ProvidersQuery;

#[Object]
impl ProvidersQuery {
    /// ADMIN/SUPPORT.
    async fn providers(&self, ctx: &Context<'_>) -> ApiResult<Vec<Provider>> {
        require_staff(ctx).await?;
        let mut conn = ctx.app()?.db().await?;
        Ok(providers::list(&mut conn).await?.into_iter().map(Provider).collect())
    }
}
