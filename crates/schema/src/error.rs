//! How the one error type reaches GraphQL clients.
//!
//! [`AppError`] lives in the foundation crate, which knows nothing of
//! GraphQL, so its conversion to `async_graphql::Error` cannot be written
//! here as a `From` impl (both types are foreign to this crate). Resolvers
//! return [`ApiResult`] instead: `?` turns any [`AppError`] (and the
//! driver errors it wraps) into an [`ApiError`], and async-graphql turns
//! that into the client-facing error, with internal causes logged once and
//! never sent.

use async_graphql::ErrorExtensions;

use tollgate_core::error::{AppError, ErrorCode};

/// Result of resolvers.
pub type ApiResult<T> = Result<T, ApiError>;

/// An [`AppError`] on its way to a GraphQL client.
#[derive(Debug, Clone)]
pub struct ApiError(pub AppError);

impl From<AppError> for ApiError {
    fn from(err: AppError) -> Self {
        Self(err)
    }
}

impl From<diesel::result::Error> for ApiError {
    fn from(err: diesel::result::Error) -> Self {
        Self(err.into())
    }
}

impl From<diesel_async::pooled_connection::deadpool::PoolError> for ApiError {
    fn from(err: diesel_async::pooled_connection::deadpool::PoolError) -> Self {
        Self(err.into())
    }
}

impl From<redis::RedisError> for ApiError {
    fn from(err: redis::RedisError) -> Self {
        Self(err.into())
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(err: tokio::task::JoinError) -> Self {
        Self(err.into())
    }
}

impl From<async_graphql::Error> for ApiError {
    /// Only framework plumbing (missing context data) produces these, so
    /// they are internal.
    fn from(err: async_graphql::Error) -> Self {
        Self(AppError::internal(anyhow::anyhow!("graphql: {}", err.message)))
    }
}

impl From<ApiError> for AppError {
    /// Code that still takes the GraphQL context inside a service hands
    /// the error back unchanged.
    fn from(err: ApiError) -> Self {
        err.0
    }
}

impl From<ApiError> for async_graphql::Error {
    fn from(err: ApiError) -> Self {
        to_graphql(err.0)
    }
}

/// The client-facing GraphQL error. Internal causes are logged here, once,
/// and never sent.
pub fn to_graphql(err: AppError) -> async_graphql::Error {
    let code = err.code();
    let message = err.client_message();
    match err {
        AppError::Client { field, retry_after, .. } => async_graphql::Error::new(message).extend_with(|_, ext| {
            ext.set("code", code.as_str());
            if let Some(field) = field {
                ext.set("field", field.as_ref());
            }
            if let Some(secs) = retry_after {
                ext.set("retryAfter", secs);
            }
        }),
        AppError::Unavailable(cause) => {
            tracing::error!(error = ?cause, "dependency unavailable");
            coded(message, code)
        }
        AppError::Internal(cause) => {
            tracing::error!(error = ?cause, "internal error");
            coded(message, code)
        }
        AppError::AtIndex { index, error } => to_graphql(*error).extend_with(|_, ext| ext.set("index", index)),
        AppError::MfaRequired(token) => coded(message, code).extend_with(|_, ext| ext.set("mfaToken", token.expose())),
    }
}

fn coded(message: std::borrow::Cow<'static, str>, code: ErrorCode) -> async_graphql::Error {
    async_graphql::Error::new(message).extend_with(|_, ext| ext.set("code", code.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(err: &async_graphql::Error, key: &str) -> Option<String> {
        err.extensions.as_ref()?.get(key).map(|v| v.to_string())
    }

    #[test]
    fn internal_causes_never_reach_the_client() {
        let err = to_graphql(AppError::internal(anyhow::anyhow!("relation \"users\" does not exist")));
        assert_eq!(err.message, "internal error");
        assert_eq!(ext(&err, "code").as_deref(), Some("\"INTERNAL\""));
    }

    #[test]
    fn bad_input_names_the_field_and_rate_limits_carry_retry_after() {
        let err = to_graphql(AppError::bad_input("email", "not an email"));
        assert_eq!(ext(&err, "field").as_deref(), Some("\"email\""));
        let err = to_graphql(AppError::bad_input("model", "too long").at_index(3));
        assert_eq!(ext(&err, "index").as_deref(), Some("3"));
        assert_eq!(ext(&err, "field").as_deref(), Some("\"model\""));
        let err = to_graphql(AppError::rate_limited(12));
        assert_eq!(ext(&err, "retryAfter").as_deref(), Some("12"));
        assert_eq!(ext(&err, "code").as_deref(), Some("\"RATE_LIMITED\""));
    }

    #[test]
    fn mfa_required_carries_its_token_in_extensions_only() {
        let token = tollgate_core::error::MfaToken::new("mfa-token-123");
        assert!(!format!("{token:?}").contains("123"), "the token must not reach logs");
        let err = to_graphql(AppError::mfa_required(token));
        assert_eq!(ext(&err, "code").as_deref(), Some("\"MFA_REQUIRED\""));
        assert_eq!(ext(&err, "mfaToken").as_deref(), Some("\"mfa-token-123\""));
        assert!(!err.message.contains("123"));
    }
}
