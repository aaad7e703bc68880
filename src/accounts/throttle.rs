//! Per-client limits on the actions that guess or spam: login, register,
//! password reset, device polling (each its own bucket), and on emails to
//! one address.

use std::time::Duration;

use crate::{app::AppState, error::AppResult, graphql::context::RequestMeta};

/// An auth action with its own rate-limit bucket.
#[derive(Debug, Clone, Copy)]
pub enum AuthAction {
    /// `login`.
    Login,
    /// `register`.
    Register,
    /// `requestPasswordReset` and `resetPassword`.
    PasswordReset,
    /// `pollDeviceLogin` and `startDeviceLogin`.
    DevicePolling,
}

impl AuthAction {
    fn bucket(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::Register => "register",
            Self::PasswordReset => "password_reset",
            Self::DevicePolling => "device",
        }
    }
}

/// Emails one address may be sent per hour (verification, reset).
pub const EMAILS_PER_ADDRESS_PER_HOUR: u32 = 5;

/// Counts an attempt of `action` by this client; RATE_LIMITED beyond
/// AUTH_RATE_LIMIT_PER_MINUTE.
pub async fn per_client(app: &AppState, action: AuthAction, meta: &RequestMeta) -> AppResult<()> {
    let key = format!("auth:{}:{}", action.bucket(), meta.client_ip);
    app.rate_limiter()
        .check(
            &key,
            app.config().auth_rate_limit_per_minute,
            Duration::from_secs(60),
            app.now(),
        )
        .await
}

/// Whether another email may go to `address` now; `false` means skip the
/// email silently (the caller's answer must not reveal the throttling).
pub async fn email_allowed(app: &AppState, address: &str) -> AppResult<bool> {
    let key = format!("email:{address}");
    let decision = app
        .rate_limiter()
        .hit(&key, EMAILS_PER_ADDRESS_PER_HOUR, Duration::from_secs(3600), app.now())
        .await?;
    Ok(matches!(
        decision,
        crate::platform::rate_limit::RateDecision::Allowed { .. }
    ))
}
