//! The User type and the account queries.

use async_graphql::{
    Context, ContextSelectionSet, ID, Object, ScalarType, SimpleObject, Value, parser::types::Field,
    resolver_utils::enum_value,
};

use crate::{
    access,
    api::{
        accounts::oauth::Identity,
        enums as gql,
        orgs::query::{Membership, SeenBy},
    },
    context::ContextExt,
    error::ApiResult,
    plain::PlainObject,
    scalars::Timestamp,
};
use tollgate_auth::{
    sessions::{self, IssuedTokens, SessionRow},
    users::{Role, UserRow, UserSummary},
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

/// The fields of [`User`] that are the row's own columns, shown to anyone
/// who may see the user: what a list of members answers without the
/// executor ([`crate::plain`]). Each must give what the field of the same
/// name above gives; the test below holds them to it.
impl PlainObject for UserSummary {
    const TYPE_NAME: &'static str = "User";

    fn field(&self, _ctx: &ContextSelectionSet<'_>, field: &Field) -> Option<Value> {
        Some(match field.name.node.as_str() {
            "id" => Value::String(self.id.to_string()),
            "email" => Value::String(self.email.clone()),
            "name" => Value::String(self.name.clone()),
            "avatarUrl" => self.avatar_url.clone().map_or(Value::Null, Value::String),
            "role" => enum_value(gql::Role::from(self.role)),
            "emailVerified" => Value::Boolean(self.email_verified_at.is_some()),
            "suspended" => Value::Boolean(self.suspended_at.is_some()),
            "createdAt" => Timestamp(self.created_at).to_value(),
            "lastLoginAt" => self.last_login_at.map_or(Value::Null, |at| Timestamp(at).to_value()),
            _ => return None,
        })
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

#[cfg(test)]
pub(crate) mod tests {
    use std::marker::PhantomData;

    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::plain::testing::{PlainOnly, assert_same_answers};

    /// A user row with every column set (`full`) or every optional one
    /// empty.
    pub(crate) fn user_row(full: bool) -> UserRow {
        let at = |day| Utc.with_ymd_and_hms(2026, 3, day, 12, 30, 15).unwrap();
        UserRow {
            id: uuid::Uuid::from_u128(0x5eed),
            email: "ada@example.com".into(),
            name: "Ada \"Countess\" Lovelace".into(),
            password_hash: Some("$argon2id$hash".into()),
            avatar_url: full.then(|| "https://example.com/ada.png".into()),
            role: if full { Role::Support } else { Role::User },
            email_verified_at: full.then(|| at(2)),
            suspended_at: full.then(|| at(3)),
            suspension_reason: full.then(|| "testing".into()),
            preferences: serde_json::json!({ "theme": "dark" }),
            last_login_at: full.then(|| at(4)),
            deleted_at: None,
            created_at: at(1),
            updated_at: at(5),
            mfa_enabled_at: None,
        }
    }

    struct Query;

    #[Object]
    impl Query {
        async fn user(&self, full: bool) -> User {
            User::new(user_row(full))
        }

        async fn plain_user(&self, full: bool) -> PlainOnly<UserSummary, User> {
            PlainOnly(user_row(full).into(), PhantomData)
        }
    }

    /// Every field a member list answers plainly gives what User's
    /// resolver of the same name gives, in every shape of selection.
    #[tokio::test]
    async fn a_users_plain_fields_answer_what_its_resolvers_answer() {
        let fields = [
            "name",
            "id",
            "email",
            "avatarUrl",
            "role",
            "emailVerified",
            "suspended",
            "createdAt",
            "lastLoginAt",
        ];
        for full in [true, false] {
            let (executor, plain) = (format!("user(full: {full})"), format!("plainUser(full: {full})"));
            assert_same_answers(Query, "User", &fields, &executor, &plain).await;
        }
    }
}
