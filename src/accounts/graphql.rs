//! The User type and the account queries.

use async_graphql::{Context, ID, Object};

use crate::{
    accounts::model::{Role, UserRow},
    error::AppResult,
    graphql::{context::ContextExt, scalars::Timestamp},
};

/// A person with an account.
pub struct User(pub UserRow);

#[Object]
impl User {
    /// Stable identifier.
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    /// Sign-in address, lowercased.
    async fn email(&self) -> &str {
        &self.0.email
    }

    /// Display name.
    async fn name(&self) -> &str {
        &self.0.name
    }

    /// Picture URL, if any.
    async fn avatar_url(&self) -> Option<&str> {
        self.0.avatar_url.as_deref()
    }

    /// Platform-wide role.
    async fn role(&self) -> Role {
        self.0.role
    }

    /// Whether the person proved they own the email address.
    async fn email_verified(&self) -> bool {
        self.0.email_verified_at.is_some()
    }

    /// Suspended by staff: cannot sign in, credentials refused.
    async fn suspended(&self) -> bool {
        self.0.suspended_at.is_some()
    }

    /// When the account was created.
    async fn created_at(&self) -> Timestamp {
        self.0.created_at.into()
    }

    /// The most recent successful sign-in.
    async fn last_login_at(&self) -> Option<Timestamp> {
        self.0.last_login_at.map(Timestamp)
    }

    /// Free-form client preferences (theme, editor settings).
    async fn preferences(&self) -> &serde_json::Value {
        &self.0.preferences
    }
}

/// Queries about accounts.
#[derive(Default)]
pub struct AccountsQuery;

#[Object]
impl AccountsQuery {
    /// The caller; null when anonymous.
    async fn me(&self, ctx: &Context<'_>) -> AppResult<Option<User>> {
        let Some(user_id) = ctx.principal()?.user_id() else {
            return Ok(None);
        };
        let user = ctx.loaders()?.users.load_one(user_id).await?;
        match user {
            Some(user) if !user.is_deleted() => Ok(Some(User(user))),
            // A token outliving its account is a bad credential, not anonymity.
            _ => Err(crate::error::AppError::unauthenticated()),
        }
    }
}
