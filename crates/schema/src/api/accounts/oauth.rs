//! Sign-in with identity providers in GraphQL: `startOAuthLogin`,
//! `completeOAuthLogin`, `unlinkIdentity`, and the Identity type. The
//! rules are in [`tollgate_services::accounts::oauth`].

use async_graphql::{Context, Object, SimpleObject};

use crate::{
    api::accounts::query::{AuthPayload, User},
    context::ContextExt,
    error::ApiResult,
    scalars::Timestamp,
};
use tollgate_auth::principal::Principal;
use tollgate_core::error::AppError;
use tollgate_services::accounts::oauth::{complete, flow, identities, identities::IdentityRow};

/// A linked account at an identity provider (see the Object below).
pub struct Identity(pub IdentityRow);

/// An account at an identity provider (GitHub, Google, an OpenID Connect issuer) linked to a user.
#[Object]
impl Identity {
    /// The provider's key, as in clientConfig.authProviders: github, google, or a configured OIDC name.
    async fn provider(&self) -> &str {
        &self.0.provider
    }

    /// The email the provider reported, if any.
    async fn email(&self) -> Option<&str> {
        self.0.email.as_deref()
    }

    /// When it was linked.
    async fn created_at(&self) -> Timestamp {
        self.0.created_at.into()
    }

    /// The last sign-in through it.
    async fn last_used_at(&self) -> Option<Timestamp> {
        self.0.last_used_at.map(Timestamp)
    }
}

/// Where to send the browser to sign in with a provider.
#[derive(SimpleObject)]
#[graphql(name = "OAuthStart")]
pub struct OAuthStart {
    /// Where to send the browser.
    pub authorization_url: String,
}

/// The identity-provider mutations.
#[derive(Default)]
pub struct OAuthMutation;

#[Object]
impl OAuthMutation {
    /// Sign in (or sign up) with an identity provider: send the browser to authorizationUrl. The provider returns to the server, which redirects to redirectUri (on an allowed origin) with ?code= for completeOAuthLogin, or ?error=. With a user's token, links the provider to that user instead.
    #[graphql(name = "startOAuthLogin")]
    async fn start_oauth_login(
        &self,
        ctx: &Context<'_>,
        provider: String,
        redirect_uri: String,
    ) -> ApiResult<OAuthStart> {
        let link_user = match ctx.principal()? {
            Principal::Anonymous => None,
            Principal::User { user_id, .. } => Some(*user_id),
            // A key acts for an organization, never as a person.
            Principal::ApiKey(_) => return Err(AppError::forbidden().into()),
        };
        let url = flow::start(ctx.app()?, &provider, &redirect_uri, link_user, ctx.request_meta()?).await?;
        Ok(OAuthStart { authorization_url: url })
    }

    /// Trades the one-time code from the redirect (single use, 60 s) for a session; MFA_REQUIRED when the user has TOTP.
    #[graphql(name = "completeOAuthLogin")]
    async fn complete_oauth_login(&self, ctx: &Context<'_>, code: String) -> ApiResult<AuthPayload> {
        let (user, tokens) = complete::complete(ctx.app()?, &code, ctx.request_meta()?).await?;
        Ok(AuthPayload::new(user, tokens))
    }

    /// Refused (CONFLICT) when it is the user's last way to sign in.
    async fn unlink_identity(&self, ctx: &Context<'_>, provider: String) -> ApiResult<User> {
        let user_id = ctx.principal()?.require_user()?;
        let user = identities::unlink(ctx.app()?, user_id, &provider, ctx.request_meta()?).await?;
        Ok(User::new(user))
    }
}
