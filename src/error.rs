//! The one error type of the request path and its mapping to the contract's
//! `extensions.code`.
//!
//! `AppError` deliberately does not implement `Display`: async-graphql has a
//! blanket `From<T: Display>` that would turn any error's text into a client
//! message. Without `Display`, `?` in a resolver goes through our own
//! conversion below, where internal causes are logged and replaced by a
//! fixed message.

use std::{borrow::Cow, sync::Arc};

use async_graphql::ErrorExtensions;

/// The contract's error codes (top of `schema.graphql`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// No or invalid credentials.
    Unauthenticated,
    /// Authenticated, but not allowed.
    Forbidden,
    /// Invalid argument; `extensions.field` names it.
    BadUserInput,
    /// No such object visible to the caller.
    NotFound,
    /// Unique value taken or state conflict.
    Conflict,
    /// Too many requests; `extensions.retryAfter`.
    RateLimited,
    /// Too many failed logins; `extensions.retryAfter`.
    AccountLocked,
    /// Suspended by staff.
    AccountSuspended,
    /// A budget is spent.
    QuotaExceeded,
    /// Database or Redis down.
    ServiceUnavailable,
    /// Depth, complexity or alias limits.
    QueryTooComplex,
    /// Device login: not yet approved.
    AuthorizationPending,
    /// Device login: polled too fast.
    SlowDown,
    /// Device login: expired or used code.
    ExpiredToken,
    /// Device login: refused by the user.
    AccessDenied,
    /// Automatic persisted queries: the hash is not known (yet); the
    /// client sends the document with it.
    PersistedQueryNotFound,
    /// The document does not parse.
    GraphqlParseFailed,
    /// The document does not fit the schema.
    GraphqlValidationFailed,
    /// Anything else.
    Internal,
}

impl ErrorCode {
    /// The wire name used in `extensions.code`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unauthenticated => "UNAUTHENTICATED",
            Self::Forbidden => "FORBIDDEN",
            Self::BadUserInput => "BAD_USER_INPUT",
            Self::NotFound => "NOT_FOUND",
            Self::Conflict => "CONFLICT",
            Self::RateLimited => "RATE_LIMITED",
            Self::AccountLocked => "ACCOUNT_LOCKED",
            Self::AccountSuspended => "ACCOUNT_SUSPENDED",
            Self::QuotaExceeded => "QUOTA_EXCEEDED",
            Self::ServiceUnavailable => "SERVICE_UNAVAILABLE",
            Self::QueryTooComplex => "QUERY_TOO_COMPLEX",
            Self::AuthorizationPending => "AUTHORIZATION_PENDING",
            Self::SlowDown => "SLOW_DOWN",
            Self::ExpiredToken => "EXPIRED_TOKEN",
            Self::AccessDenied => "ACCESS_DENIED",
            Self::PersistedQueryNotFound => "PERSISTED_QUERY_NOT_FOUND",
            Self::GraphqlParseFailed => "GRAPHQL_PARSE_FAILED",
            Self::GraphqlValidationFailed => "GRAPHQL_VALIDATION_FAILED",
            Self::Internal => "INTERNAL",
        }
    }
}

/// Result of services and resolvers.
pub type AppResult<T> = Result<T, AppError>;

/// Every failure a request can meet. Cheap to clone (async-graphql clones
/// errors, and a batch loader shares one failure among many fields).
#[derive(Debug, Clone)]
pub enum AppError {
    /// A client-facing refusal with a code and a message written for users.
    Client {
        /// The contract code.
        code: ErrorCode,
        /// Message shown to the client.
        message: Cow<'static, str>,
        /// `extensions.field` for BAD_USER_INPUT.
        field: Option<Cow<'static, str>>,
        /// `extensions.retryAfter` in seconds.
        retry_after: Option<u64>,
    },
    /// The database or Redis could not be reached; the cause goes to the log.
    Unavailable(Arc<anyhow::Error>),
    /// A bug or unexpected failure; the cause goes to the log only.
    Internal(Arc<anyhow::Error>),
    /// An error about one input of a list argument (recordUsageBatch):
    /// the inner error, with `extensions.index` (0-based) naming the input.
    AtIndex {
        /// Which input.
        index: usize,
        /// What is wrong with it.
        error: Box<AppError>,
    },
}

impl AppError {
    /// A client error with a fixed message.
    pub fn client(code: ErrorCode, message: impl Into<Cow<'static, str>>) -> Self {
        Self::Client {
            code,
            message: message.into(),
            field: None,
            retry_after: None,
        }
    }

    /// No or invalid credentials.
    pub fn unauthenticated() -> Self {
        Self::client(ErrorCode::Unauthenticated, "authentication required")
    }

    /// Signed in, but not allowed.
    pub fn forbidden() -> Self {
        Self::client(ErrorCode::Forbidden, "not allowed")
    }

    /// Nothing visible to the caller under that id.
    pub fn not_found(what: &'static str) -> Self {
        Self::client(ErrorCode::NotFound, format!("{what} not found"))
    }

    /// A unique value is taken or the state does not allow the change.
    pub fn conflict(message: impl Into<Cow<'static, str>>) -> Self {
        Self::client(ErrorCode::Conflict, message)
    }

    /// An invalid argument, naming the input field or argument.
    pub fn bad_input(field: impl Into<Cow<'static, str>>, message: impl Into<Cow<'static, str>>) -> Self {
        Self::Client {
            code: ErrorCode::BadUserInput,
            message: message.into(),
            field: Some(field.into()),
            retry_after: None,
        }
    }

    /// Too many attempts; try again after `retry_after` seconds.
    pub fn rate_limited(retry_after: u64) -> Self {
        Self::Client {
            code: ErrorCode::RateLimited,
            message: "too many requests, try again later".into(),
            field: None,
            retry_after: Some(retry_after.max(1)),
        }
    }

    /// Too many wrong passwords for this email; try after `retry_after` seconds.
    pub fn account_locked(retry_after: u64) -> Self {
        Self::Client {
            code: ErrorCode::AccountLocked,
            message: "too many failed sign-ins; try again later".into(),
            field: None,
            retry_after: Some(retry_after.max(1)),
        }
    }

    /// Wraps an unexpected failure.
    pub fn internal(cause: impl Into<anyhow::Error>) -> Self {
        Self::Internal(Arc::new(cause.into()))
    }

    /// Wraps a failure to reach the database or Redis.
    pub fn unavailable(cause: impl Into<anyhow::Error>) -> Self {
        Self::Unavailable(Arc::new(cause.into()))
    }

    /// The same error, naming input `index` of a list argument.
    pub fn at_index(self, index: usize) -> Self {
        Self::AtIndex {
            index,
            error: Box::new(self),
        }
    }

    /// The contract code this error reaches the client with.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Client { code, .. } => *code,
            Self::AtIndex { error, .. } => error.code(),
            Self::Unavailable(_) => ErrorCode::ServiceUnavailable,
            Self::Internal(_) => ErrorCode::Internal,
        }
    }

    /// The client-facing GraphQL error. Internal causes are logged here,
    /// once, and never sent.
    pub fn into_graphql(self) -> async_graphql::Error {
        let code = self.code();
        match self {
            Self::Client {
                message,
                field,
                retry_after,
                ..
            } => async_graphql::Error::new(message).extend_with(|_, ext| {
                ext.set("code", code.as_str());
                if let Some(field) = field {
                    ext.set("field", field.as_ref());
                }
                if let Some(secs) = retry_after {
                    ext.set("retryAfter", secs);
                }
            }),
            Self::Unavailable(cause) => {
                tracing::error!(error = ?cause, "dependency unavailable");
                coded("service temporarily unavailable, retry later", code)
            }
            Self::Internal(cause) => {
                tracing::error!(error = ?cause, "internal error");
                coded("internal error", code)
            }
            Self::AtIndex { index, error } => error.into_graphql().extend_with(|_, ext| ext.set("index", index)),
        }
    }
}

fn coded(message: &'static str, code: ErrorCode) -> async_graphql::Error {
    async_graphql::Error::new(message).extend_with(|_, ext| ext.set("code", code.as_str()))
}

impl From<AppError> for async_graphql::Error {
    fn from(err: AppError) -> Self {
        err.into_graphql()
    }
}

impl From<diesel::result::Error> for AppError {
    fn from(err: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind, Error};
        let outage = match &err {
            Error::DatabaseError(DatabaseErrorKind::ClosedConnection, _) | Error::BrokenTransactionManager => true,
            // What diesel-async reports when the server went away mid-request.
            Error::DatabaseError(DatabaseErrorKind::UnableToSendCommand, _) => true,
            Error::DatabaseError(DatabaseErrorKind::Unknown, info) => {
                let message = info.message();
                [
                    "terminating connection",
                    "shutting down",
                    "starting up",
                    "connection closed",
                    "recovery mode",
                ]
                .iter()
                .any(|sign| message.contains(sign))
            }
            _ => false,
        };
        if outage {
            Self::unavailable(err)
        } else {
            Self::internal(err)
        }
    }
}

impl From<diesel_async::pooled_connection::deadpool::PoolError> for AppError {
    fn from(err: diesel_async::pooled_connection::deadpool::PoolError) -> Self {
        Self::unavailable(err)
    }
}

impl From<redis::RedisError> for AppError {
    fn from(err: redis::RedisError) -> Self {
        Self::unavailable(err)
    }
}

impl From<async_graphql::Error> for AppError {
    /// Only framework plumbing (missing context data) produces these, so
    /// they are internal.
    fn from(err: async_graphql::Error) -> Self {
        Self::internal(anyhow::anyhow!("graphql: {}", err.message))
    }
}

impl From<tokio::task::JoinError> for AppError {
    fn from(err: tokio::task::JoinError) -> Self {
        Self::internal(err)
    }
}

/// The `extensions.field` of a client error; panics on anything else.
/// For unit tests of validation.
#[cfg(test)]
pub fn field_of<T: std::fmt::Debug>(result: AppResult<T>) -> Option<String> {
    match result {
        Err(AppError::Client { field, .. }) => field.map(|f| f.into_owned()),
        other => panic!("expected a client error, got {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(err: &async_graphql::Error, key: &str) -> Option<String> {
        err.extensions.as_ref()?.get(key).map(|v| v.to_string())
    }

    #[test]
    fn internal_causes_never_reach_the_client() {
        let err: async_graphql::Error = AppError::internal(anyhow::anyhow!("relation \"users\" does not exist")).into();
        assert_eq!(err.message, "internal error");
        assert_eq!(ext(&err, "code").as_deref(), Some("\"INTERNAL\""));
    }

    #[test]
    fn bad_input_names_the_field_and_rate_limits_carry_retry_after() {
        let err: async_graphql::Error = AppError::bad_input("email", "not an email").into();
        assert_eq!(ext(&err, "field").as_deref(), Some("\"email\""));
        let err: async_graphql::Error = AppError::bad_input("model", "too long").at_index(3).into();
        assert_eq!(ext(&err, "index").as_deref(), Some("3"));
        assert_eq!(ext(&err, "field").as_deref(), Some("\"model\""));
        let err: async_graphql::Error = AppError::rate_limited(12).into();
        assert_eq!(ext(&err, "retryAfter").as_deref(), Some("12"));
        assert_eq!(ext(&err, "code").as_deref(), Some("\"RATE_LIMITED\""));
    }
}
