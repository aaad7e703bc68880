//! Mutations on one's own account and sessions.

use async_graphql::{Context, ID, InputObject, Object};
use secrecy::SecretString;
use uuid::Uuid;

use crate::{
    api::accounts::query::{AuthPayload, User},
    context::ContextExt,
    error::ApiResult,
};
use tollgate_auth::sessions::{self, Ending};
use tollgate_core::error::AppError;
use tollgate_services::accounts::{
    login, recovery,
    registration::{self, Registration},
};

/// Sign-up details.
#[derive(InputObject)]
pub struct RegisterInput {
    /// Email address; trimmed and compared case-insensitively.
    pub email: String,
    /// 8 to 128 characters, not a common password, not the email.
    pub password: String,
    /// Display name.
    pub name: String,
    /// From an invitation email: allows sign-up when registration is closed, and verifies the email.
    pub invitation_token: Option<String>,
}

/// Sign-in details.
#[derive(InputObject)]
pub struct LoginInput {
    /// Email address.
    pub email: String,
    /// Password.
    pub password: String,
}

/// Parses an ID argument; a malformed one matches nothing.
fn parse_id(id: &ID) -> Option<Uuid> {
    Uuid::parse_str(id.as_str()).ok()
}

/// Account and session mutations.
#[derive(Default)]
pub struct AccountsMutation;

#[Object]
impl AccountsMutation {
    /// Creates an account (with its personal organization) and signs it in.
    async fn register(&self, ctx: &Context<'_>, input: RegisterInput) -> ApiResult<AuthPayload> {
        let app = ctx.app()?;
        let registration = Registration {
            email: input.email,
            password: SecretString::from(input.password),
            name: input.name,
            invitation_token: input.invitation_token,
        };
        let (user, tokens) = registration::register(app, registration, ctx.request_meta()?).await?;
        Ok(AuthPayload::new(user, tokens))
    }

    /// Signs in with email and password.
    async fn login(&self, ctx: &Context<'_>, input: LoginInput) -> ApiResult<AuthPayload> {
        let app = ctx.app()?;
        let (user, tokens) = login::login(
            app,
            &input.email,
            SecretString::from(input.password),
            ctx.request_meta()?,
        )
        .await?;
        Ok(AuthPayload::new(user, tokens))
    }

    /// Rotates: the old refresh token stops working. Reusing a rotated token revokes the whole session.
    async fn refresh_session(&self, ctx: &Context<'_>, refresh_token: String) -> ApiResult<AuthPayload> {
        let app = ctx.app()?;
        let tokens = sessions::refresh(app, &refresh_token, ctx.request_meta()?).await?;
        let user = ctx.loaders()?.users.load_one(tokens.session.user_id).await?;
        let user = user
            .filter(|u| !u.is_deleted() && u.suspended_at.is_none())
            .ok_or_else(AppError::unauthenticated)?;
        Ok(AuthPayload::new(user, tokens))
    }

    /// Ends the current session at once: its access token stops working too.
    async fn logout(&self, ctx: &Context<'_>) -> ApiResult<bool> {
        let (user_id, session_id) = ctx.principal()?.require_session()?;
        end_sessions(ctx, user_id, Ending::One(session_id), "user.logout").await?;
        Ok(true)
    }

    /// Ends one of the caller's sessions (a lost laptop).
    async fn revoke_session(&self, ctx: &Context<'_>, id: ID) -> ApiResult<bool> {
        let user_id = ctx.principal()?.require_user()?;
        let session_id = parse_id(&id).ok_or_else(|| AppError::not_found("session"))?;
        // Someone else's session is NOT_FOUND; one's own already-ended one
        // is simply done.
        if !sessions::owned_by(&mut *ctx.app()?.db().await?, session_id, user_id).await? {
            return Err(AppError::not_found("session").into());
        }
        end_sessions(ctx, user_id, Ending::One(session_id), "session.revoked").await?;
        Ok(true)
    }

    /// Ends every session of the caller but the current one; returns how many.
    async fn revoke_other_sessions(&self, ctx: &Context<'_>) -> ApiResult<i32> {
        let (user_id, session_id) = ctx.principal()?.require_session()?;
        let ended = end_sessions(ctx, user_id, Ending::AllBut(session_id), "session.revoked").await?;
        Ok(i32::try_from(ended).unwrap_or(i32::MAX))
    }

    /// Proves the email address with the token from the verification email.
    async fn verify_email(&self, ctx: &Context<'_>, token: String) -> ApiResult<User> {
        let user = recovery::verify_email(ctx.app()?, &token, ctx.request_meta()?).await?;
        Ok(User::new(user))
    }

    /// Sends the verification email again; false when the address is already verified.
    async fn resend_verification_email(&self, ctx: &Context<'_>) -> ApiResult<bool> {
        let user_id = ctx.principal()?.require_user()?;
        Ok(recovery::resend_verification(ctx.app()?, user_id).await?)
    }

    /// Always true, whether or not the email exists.
    async fn request_password_reset(&self, ctx: &Context<'_>, email: String) -> ApiResult<bool> {
        Ok(recovery::request_reset(ctx.app()?, &email, ctx.request_meta()?).await?)
    }

    /// Also ends every session of that user, and when the email was not verified yet (someone else may have signed up with it), revokes every API key the account created.
    async fn reset_password(&self, ctx: &Context<'_>, token: String, new_password: String) -> ApiResult<bool> {
        let meta = ctx.request_meta()?;
        recovery::reset_password(ctx.app()?, &token, SecretString::from(new_password), meta).await?;
        Ok(true)
    }

    /// Needs the current password; ends every other session of the caller.
    async fn change_password(
        &self,
        ctx: &Context<'_>,
        current_password: String,
        new_password: String,
    ) -> ApiResult<bool> {
        let (user_id, session_id) = ctx.principal()?.require_session()?;
        let (current, new_password) = (SecretString::from(current_password), SecretString::from(new_password));
        recovery::change_password(
            ctx.app()?,
            user_id,
            session_id,
            current,
            new_password,
            ctx.request_meta()?,
        )
        .await?;
        Ok(true)
    }
}

/// Ends sessions of the caller (see [`sessions::end`]).
async fn end_sessions(ctx: &Context<'_>, user_id: Uuid, which: Ending, action: &'static str) -> ApiResult<usize> {
    let ip = Some(ctx.request_meta()?.client_ip.to_string());
    Ok(sessions::end(ctx.app()?, user_id, which, action, ip).await?)
}
