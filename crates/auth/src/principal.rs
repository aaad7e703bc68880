//! Who a request acts as, resolved once from its credentials.

use std::{net::IpAddr, sync::Arc};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{AppState, keys::scope::ScopeSet, sessions};
use tollgate_core::error::{AppError, AppResult};

/// An API key as its secret resolved: what every request made with it
/// needs, so the hot path does not go back to the database for the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyIdentity {
    /// The key's id.
    pub key_id: Uuid,
    /// The one organization the key acts for.
    pub organization_id: Uuid,
    /// The member who created it; usage made with the key counts against
    /// their member budget, and the key dies with their membership.
    pub created_by: Uuid,
    /// What it may do now: its scopes, less what its creator's current
    /// role in the organization no longer allows.
    pub scopes: ScopeSet,
    /// Catalog model ids it may be authorized for; None = every enabled model.
    pub allowed_models: Option<Vec<String>>,
    /// Its own monthly token budget; None = only the organization's.
    pub token_limit: Option<i64>,
}

/// The caller of a request or websocket connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// No credentials were presented.
    Anonymous,
    /// A person signed in with an access token.
    User {
        /// The user's id.
        user_id: Uuid,
        /// The session the access token belongs to.
        session_id: Uuid,
    },
    /// A tool authenticated with an API key secret.
    ApiKey(Arc<KeyIdentity>),
}

impl Principal {
    /// The signed-in user's id; UNAUTHENTICATED for anonymous callers and
    /// FORBIDDEN for API keys (a key acts for an organization, never as a
    /// person).
    pub fn require_user(&self) -> AppResult<Uuid> {
        match self {
            Self::User { user_id, .. } => Ok(*user_id),
            Self::Anonymous => Err(AppError::unauthenticated()),
            Self::ApiKey(_) => Err(AppError::forbidden()),
        }
    }

    /// The signed-in user and the session their token belongs to.
    pub fn require_session(&self) -> AppResult<(Uuid, Uuid)> {
        match self {
            Self::User { user_id, session_id } => Ok((*user_id, *session_id)),
            Self::Anonymous => Err(AppError::unauthenticated()),
            Self::ApiKey(_) => Err(AppError::forbidden()),
        }
    }

    /// The user's id, when a user is signed in.
    pub fn user_id(&self) -> Option<Uuid> {
        match self {
            Self::User { user_id, .. } => Some(*user_id),
            Self::Anonymous | Self::ApiKey(_) => None,
        }
    }

    /// The key, when an API key is the caller.
    pub fn api_key(&self) -> Option<&KeyIdentity> {
        match self {
            Self::ApiKey(key) => Some(key),
            _ => None,
        }
    }
}

/// Turns an `Authorization` value into a principal. No value: anonymous.
/// A value that is not a valid credential: UNAUTHENTICATED, never
/// anonymous. An API key secret is checked against `client_ip` (FORBIDDEN
/// from an address the key does not allow).
pub async fn resolve(app: &AppState, authorization: Option<&str>, client_ip: IpAddr) -> AppResult<Principal> {
    Ok(resolve_until(app, authorization, client_ip).await?.0)
}

/// [`resolve`], and when the credentials stop working by themselves: the
/// key's expiry, or the access token's or its session's, whichever is
/// first; None = never (anonymous, or a key without expiry). A websocket
/// connection, which outlives its request, ends then.
pub async fn resolve_until(
    app: &AppState,
    authorization: Option<&str>,
    client_ip: IpAddr,
) -> AppResult<(Principal, Option<DateTime<Utc>>)> {
    let Some(value) = authorization else {
        return Ok((Principal::Anonymous, None));
    };
    let token = bearer_token(value).ok_or_else(AppError::unauthenticated)?;
    if crate::keys::secret::is_key_secret(token) {
        let key = crate::keys::resolve::resolve_key(app, token, client_ip).await?;
        return Ok((Principal::ApiKey(key.identity), key.expires_at));
    }
    let now = app.now();
    let claims = app.access_tokens().verify(token, now)?;
    let session_ends = ensure_session_live(app, claims.sid, claims.sub, now).await?;
    let token_ends = DateTime::from_timestamp(claims.exp, 0).unwrap_or(session_ends);
    let principal = Principal::User {
        user_id: claims.sub,
        session_id: claims.sid,
    };
    Ok((principal, Some(token_ends.min(session_ends))))
}

/// An access token is only as good as its session: ended sessions (and
/// suspended or deleted users) are refused at once. The cache answers the
/// common case without a database round trip. Returns when the session
/// expires.
async fn ensure_session_live(
    app: &AppState,
    session_id: Uuid,
    user_id: Uuid,
    now: DateTime<Utc>,
) -> AppResult<DateTime<Utc>> {
    let cache = app.session_cache();
    if let Some(expires_at) = cache.live_until(session_id, user_id, now) {
        return Ok(expires_at);
    }
    let generation = cache.generation();
    let mut conn = app.db().await?;
    match sessions::check_live(&mut conn, session_id, user_id, now).await? {
        Some(expires_at) => {
            cache.remember(generation, session_id, user_id, expires_at);
            Ok(expires_at)
        }
        None => Err(AppError::unauthenticated()),
    }
}

/// The token of an `Authorization` value: `Bearer <token>` (any case), or
/// a bare token as websocket clients sometimes send it.
pub fn bearer_token(value: &str) -> Option<&str> {
    let value = value.trim();
    let token = match value.split_once(char::is_whitespace) {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        Some(_) => return None,
        None if value.eq_ignore_ascii_case("bearer") => return None,
        None => value,
    };
    (!token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_values_are_read_leniently_but_not_other_schemes() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer   abc "), Some("abc"));
        assert_eq!(bearer_token("abc"), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
    }
}
