//! `clientConfig`: what a client needs to find the service.

use async_graphql::{ComplexObject, Context, Object, SimpleObject};

use crate::{context::ContextExt, error::ApiResult};
use tollgate_services::providers::model as providers;

/// What a client (editor extension, web app) needs to find the service.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct ClientConfig {
    /// Where to POST queries and mutations.
    pub graphql_url: String,
    /// Where to open graphql-ws (or legacy graphql-ws) websockets.
    pub subscriptions_url: String,
    /// The built-in GraphiQL.
    pub playground_url: String,
    /// Server version.
    pub version: String,
    /// Whether anyone may sign up (false: invitation only).
    pub registration_open: bool,
    /// Whether paid plans can be bought through Stripe.
    pub billing_enabled: bool,
    /// Ways to sign in that this server offers.
    pub auth_providers: Vec<String>,
}

#[ComplexObject]
impl ClientConfig {
    /// The gateway's base URL for OpenAI SDKs (PUBLIC_URL + /v1); Anthropic SDKs take PUBLIC_URL itself. null while no provider is enabled.
    async fn llm_base_url(&self, ctx: &Context<'_>) -> ApiResult<Option<String>> {
        let app = ctx.app()?;
        let mut conn = app.db().await?;
        if !providers::any_enabled(&mut conn).await? {
            return Ok(None);
        }
        Ok(Some(app.config().public_endpoint("v1")))
    }
}

/// Queries about the service itself.
#[derive(Default)]
pub struct PlatformQuery;

#[Object]
impl PlatformQuery {
    /// What a client needs to find the service.
    async fn client_config(&self, ctx: &Context<'_>) -> ApiResult<ClientConfig> {
        let config = ctx.app()?.config();
        let graphql_url = config.public_endpoint("graphql");
        let subscriptions_url = match graphql_url.strip_prefix("https://") {
            Some(rest) => format!("wss://{rest}"),
            None => graphql_url.replacen("http://", "ws://", 1),
        };
        Ok(ClientConfig {
            graphql_url,
            subscriptions_url,
            playground_url: config.public_endpoint("playground"),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            registration_open: config.registration_open,
            billing_enabled: config.stripe_secret_key.is_some(),
            // Email and password (`login`) and device login for editors and CLIs
            // (`startDeviceLogin`) are always on; then each configured
            // identity provider (`startOAuthLogin`).
            auth_providers: ["password".to_owned(), "device".to_owned()]
                .into_iter()
                .chain(config.oauth.keys())
                .collect(),
        })
    }
}
