//! The one error type of every layer, with the contract's codes.
//!
//! `AppError` deliberately does not implement `Display`: async-graphql has a
//! blanket `From<T: Display>` that would turn any error's text into a client
//! message. The schema layer maps it to GraphQL errors (`ApiError`), logging
//! internal causes and showing a fixed message instead.

use std::{borrow::Cow, sync::Arc};

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
    /// The first factor was right and a second one is needed:
    /// `extensions.mfaToken` for verifyMfa.
    MfaRequired,
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
            Self::MfaRequired => "MFA_REQUIRED",
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
    /// MFA_REQUIRED: the sign-in's first factor was right; the client
    /// finishes it with verifyMfa and this token (`extensions.mfaToken`).
    MfaRequired(MfaToken),
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

    /// The sign-in needs its second factor: verifyMfa with `token`.
    pub fn mfa_required(token: MfaToken) -> Self {
        Self::MfaRequired(token)
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
            Self::MfaRequired(_) => ErrorCode::MfaRequired,
            Self::Unavailable(_) => ErrorCode::ServiceUnavailable,
            Self::Internal(_) => ErrorCode::Internal,
        }
    }

    /// The message a client is shown: the refusal's own text, or a
    /// fixed one for outages and internal failures (whose causes go to the
    /// log, never to the client).
    pub fn client_message(&self) -> Cow<'static, str> {
        match self {
            Self::Client { message, .. } => message.clone(),
            Self::AtIndex { error, .. } => error.client_message(),
            Self::MfaRequired(_) => Cow::Borrowed(MFA_REQUIRED_MESSAGE),
            Self::Unavailable(_) => Cow::Borrowed(UNAVAILABLE_MESSAGE),
            Self::Internal(_) => Cow::Borrowed(INTERNAL_MESSAGE),
        }
    }
}

/// What a client reads when a dependency is down.
pub const UNAVAILABLE_MESSAGE: &str = "service temporarily unavailable, retry later";
/// What a client reads for a bug or unexpected failure.
pub const INTERNAL_MESSAGE: &str = "internal error";
/// What a client reads when a sign-in needs its second factor.
pub const MFA_REQUIRED_MESSAGE: &str =
    "enter a code from your authenticator app (or a recovery code) to finish signing in";

/// The secret that lets verifyMfa finish one sign-in. It is a credential,
/// so `Debug` (and with it every log of an error) never shows it.
#[derive(Clone)]
pub struct MfaToken(Arc<str>);

impl MfaToken {
    /// Wraps a freshly minted token.
    pub fn new(token: impl Into<Arc<str>>) -> Self {
        Self(token.into())
    }

    /// The token itself, for the one place that hands it to the client.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for MfaToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MfaToken(..)")
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

impl From<tokio::task::JoinError> for AppError {
    fn from(err: tokio::task::JoinError) -> Self {
        Self::internal(err)
    }
}

/// The `extensions.field` of a client error; panics on anything else.
/// For unit tests of validation (any layer's).
pub fn field_of<T: std::fmt::Debug>(result: AppResult<T>) -> Option<String> {
    match result {
        Err(AppError::Client { field, .. }) => field.map(|f| f.into_owned()),
        other => panic!("expected a client error, got {other:?}"),
    }
}
