//! The User type and the account queries.

use async_graphql::{Context, ID, Object, SimpleObject};

use crate::{
    access,
    api::{
        accounts::oauth::Identity,
        enums as gql,
        orgs::query::{Membership, SeenBy},
    },
    context::ContextExt,
    error::ApiResult,
    scalars::Timestamp,
};
use tollgate_auth::{
    sessions::{self, IssuedTokens, SessionRow},
    users::{Role, UserRow},
};
use tollgate_core::error::AppError;
use tollgate_services::accounts::oauth::identities;

/// A person with an account.
pub struct User {
    row: UserRow,
    /// Set where the user is the caller even though the request carried no
    /// credentials yet (the payload of register, login and refresh).
    own: bool,
}

impl User {
    /// A user as seen by whoever made the request.
    pub fn new(row: UserRow) -> Self {
        Self { row, own: false }
    }

    /// The caller themself, known from the operation rather than from the
    /// request's credentials.
    pub fn own(row: UserRow) -> Self {
        Self { row, own: true }
    }

    /// The row behind it.
    pub fn row(&self) -> &UserRow {
        &self.row
    }

    /// The id of the person looking, when known.
    fn viewer_id(&self, ctx: &Context<'_>) -> ApiResult<Option<uuid::Uuid>> {
        if self.own {
            return Ok(Some(self.row.id));
        }
        Ok(ctx.principal()?.user_id())
    }

    /// Refuses anyone but the user themself and staff (FORBIDDEN; staff
    /// who must enroll TOTP first are told so).
    async fn require_self_or_staff(&self, ctx: &Context<'_>) -> ApiResult<()> {
        let viewer = self.viewer_id(ctx)?.ok_or_else(AppError::unauthenticated)?;
        if viewer != self.row.id {
            access::staff_standing(ctx).await?.require(Role::Support)?;
        }
        Ok(())
    }
}

#[Object]
impl User {
    /// Stable identifier.
    async fn id(&self) -> ID {
        ID(self.row.id.to_string())
    }

    /// Sign-in address, lowercased.
    async fn email(&self) -> &str {
        &self.row.email
    }

    /// Display name.
    async fn name(&self) -> &str {
        &self.row.name
    }

    /// Picture URL, if any.
    async fn avatar_url(&self) -> Option<&str> {
        self.row.avatar_url.as_deref()
    }

    /// Platform-wide role.
    async fn role(&self) -> gql::Role {
        self.row.role.into()
    }

    /// Whether the person proved they own the email address.
    async fn email_verified(&self) -> bool {
        self.row.email_verified_at.is_some()
    }

    /// Suspended by staff: cannot sign in, credentials refused.
    async fn suspended(&self) -> bool {
        self.row.suspended_at.is_some()
    }

    /// When the account was created.
    async fn created_at(&self) -> Timestamp {
        self.row.created_at.into()
    }

    /// The most recent successful sign-in.
    async fn last_login_at(&self) -> Option<Timestamp> {
        self.row.last_login_at.map(Timestamp)
    }

    /// Free-form client preferences (theme, editor settings).
    async fn preferences(&self) -> &serde_json::Value {
        &self.row.preferences
    }

    /// The user themself and staff see all; anyone else sees only the organizations they share with the user.
    async fn memberships(&self, ctx: &Context<'_>) -> ApiResult<Vec<Membership>> {
        let viewer = self.viewer_id(ctx)?.ok_or_else(AppError::unauthenticated)?;
        let loaders = ctx.loaders()?;
        let theirs = loaders
            .memberships_by_user
            .load_one(self.row.id)
            .await?
            .unwrap_or_default();
        if viewer == self.row.id || access::staff_role(ctx).await?.is_some() {
            let seen_by = if self.own { SeenBy::Member } else { SeenBy::Caller };
            return Ok(theirs.into_iter().map(|m| Membership(m, seen_by)).collect());
        }
        let mine = loaders.memberships_by_user.load_one(viewer).await?.unwrap_or_default();
        Ok(theirs
            .into_iter()
            .filter(|m| mine.iter().any(|own| own.organization_id == m.organization_id))
            .map(|m| Membership(m, SeenBy::Caller))
            .collect())
    }

    /// The user themself and ADMIN/SUPPORT; null with FORBIDDEN for anyone else.
    async fn sessions(&self, ctx: &Context<'_>) -> ApiResult<Option<Vec<Session>>> {
        let principal = ctx.principal()?;
        let viewer = principal.require_user()?;
        if viewer != self.row.id {
            access::staff_standing(ctx).await?.require(Role::Support)?;
        }
        let app = ctx.app()?;
        let mut conn = app.db().await?;
        let current = principal.require_session().ok().map(|(_, session)| session);
        let rows = sessions::live_of_user(&mut conn, self.row.id, app.now()).await?;
        Ok(Some(
            rows.into_iter()
                .map(|row| Session {
                    current: Some(row.id) == current,
                    row,
                })
                .collect(),
        ))
    }

    /// True when sign-in needs a second factor (TOTP). The user themself and ADMIN/SUPPORT; null with FORBIDDEN for others.
    async fn mfa_enabled(&self, ctx: &Context<'_>) -> ApiResult<Option<bool>> {
        self.require_self_or_staff(ctx).await?;
        Ok(Some(self.row.mfa_enabled()))
    }

    /// Accounts at identity providers this user signs in with. The user themself and ADMIN/SUPPORT; null with FORBIDDEN for others.
    async fn identities(&self, ctx: &Context<'_>) -> ApiResult<Option<Vec<Identity>>> {
        self.require_self_or_staff(ctx).await?;
        let mut conn = ctx.app()?.db().await?;
        let rows = identities::of_user(&mut conn, self.row.id).await?;
        Ok(Some(rows.into_iter().map(Identity).collect()))
    }

    /// False for accounts created through an identity provider until a password is set (by the reset flow). The user themself and ADMIN/SUPPORT; null with FORBIDDEN for others.
    async fn has_password(&self, ctx: &Context<'_>) -> ApiResult<Option<bool>> {
        self.require_self_or_staff(ctx).await?;
        Ok(Some(self.row.password_hash.is_some()))
    }
}

/// One signed-in device or browser.
pub struct Session {
    row: SessionRow,
    current: bool,
}

#[Object]
impl Session {
    /// Stable identifier (for revokeSession).
    async fn id(&self) -> ID {
        ID(self.row.id.to_string())
    }

    /// When the person signed in.
    async fn created_at(&self) -> Timestamp {
        self.row.created_at.into()
    }

    /// When the session last refreshed its tokens.
    async fn last_used_at(&self) -> Timestamp {
        self.row.last_used_at.into()
    }

    /// When it ends unless refreshed (or revoked first).
    async fn expires_at(&self) -> Timestamp {
        self.row.expires_at.into()
    }

    /// The browser or client that signed in.
    async fn user_agent(&self) -> Option<&str> {
        self.row.user_agent.as_deref()
    }

    /// The address it last refreshed from.
    async fn ip(&self) -> Option<&str> {
        self.row.ip.as_deref()
    }

    /// The client that asked for it through device login (e.g. "VS Code").
    async fn client_name(&self) -> Option<&str> {
        self.row.client_name.as_deref()
    }

    /// True for the session whose token made this request.
    async fn current(&self) -> bool {
        self.current
    }
}

/// Tokens for a new or refreshed session.
#[derive(SimpleObject)]
pub struct AuthPayload {
    /// JWT for `Authorization: Bearer`.
    pub access_token: String,
    /// Single-use token for refreshSession.
    pub refresh_token: String,
    /// Always Bearer.
    pub token_type: &'static str,
    /// Seconds until accessToken expires.
    pub expires_in: i32,
    /// The signed-in user.
    pub user: User,
}

impl AuthPayload {
    /// Wraps issued tokens for `user`.
    pub fn new(user: UserRow, tokens: IssuedTokens) -> Self {
        Self {
            access_token: tokens.access_token,
            refresh_token: tokens.refresh_token,
            token_type: "Bearer",
            expires_in: i32::try_from(tokens.expires_in).unwrap_or(i32::MAX),
            user: User::own(user),
        }
    }
}

/// Queries about accounts.
#[derive(Default)]
pub struct AccountsQuery;

#[Object]
impl AccountsQuery {
    /// The caller; null when anonymous.
    async fn me(&self, ctx: &Context<'_>) -> ApiResult<Option<User>> {
        let Some(user_id) = ctx.principal()?.user_id() else {
            return Ok(None);
        };
        let user = ctx.loaders()?.users.load_one(user_id).await?;
        match user {
            Some(user) if !user.is_deleted() => Ok(Some(User::new(user))),
            // A token outliving its account is a bad credential, not anonymity.
            _ => Err(tollgate_core::error::AppError::unauthenticated().into()),
        }
    }
}
