//! Per-client limits on the actions that guess or spam: login, register,
//! password reset, device polling, device user codes, second factors,
//! identity-provider sign-ins (each its own bucket), per signed-in user
//! for user codes, and on emails to one address.

use std::time::Duration;

use uuid::Uuid;

use tollgate_auth::AppState;
use tollgate_core::error::AppResult;
use tollgate_core::request::RequestMeta;

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
    /// `deviceLogin`, `approveDeviceLogin` and `denyDeviceLogin`: every use
    /// of a user code, which is short enough to guess (RFC 8628 5.1).
    DeviceUserCode,
    /// `verifyMfa`: second factors of sign-ins.
    SecondFactor,
    /// `startOAuthLogin` and `completeOAuthLogin`: sign-ins through an
    /// identity provider.
    OAuth,
}

impl AuthAction {
    fn bucket(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::Register => "register",
            Self::PasswordReset => "password_reset",
            Self::DevicePolling => "device",
            Self::DeviceUserCode => "device_user_code",
            Self::SecondFactor => "mfa",
            Self::OAuth => "oauth",
        }
    }
}

/// The rate-limit bucket of a client address: IPv6 clients usually hold a
/// whole /64, so they are counted per /64, not per address.
pub fn client_bucket(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => {
            let segments = v6.segments();
            format!(
                "{:x}:{:x}:{:x}:{:x}::/64",
                segments[0], segments[1], segments[2], segments[3]
            )
        }
    }
}

/// Emails one address may be sent per hour (verification, reset).
pub const EMAILS_PER_ADDRESS_PER_HOUR: u32 = 5;

/// Counts an attempt of `action` by this client; RATE_LIMITED beyond
/// AUTH_RATE_LIMIT_PER_MINUTE.
pub async fn per_client(app: &AppState, action: AuthAction, meta: &RequestMeta) -> AppResult<()> {
    per_minute(
        app,
        &format!("auth:{}:{}", action.bucket(), client_bucket(meta.client_ip)),
    )
    .await
}

/// Counts an attempt of `action` by this signed-in user, from whatever
/// address; RATE_LIMITED beyond AUTH_RATE_LIMIT_PER_MINUTE. For guesses a
/// signed-in attacker could spread over many addresses.
pub async fn per_user(app: &AppState, action: AuthAction, user_id: Uuid) -> AppResult<()> {
    per_minute(app, &format!("auth:{}:user:{user_id}", action.bucket())).await
}

async fn per_minute(app: &AppState, key: &str) -> AppResult<()> {
    app.rate_limiter()
        .check(
            key,
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
        tollgate_platform::rate_limit::RateDecision::Allowed { .. }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_share_their_slash_64() {
        let a = client_bucket("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = client_bucket("2001:db8:1:2:bbbb::9".parse().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, client_bucket("2001:db8:1:3::1".parse().unwrap()));
        assert_eq!(client_bucket("192.0.2.7".parse().unwrap()), "192.0.2.7");
    }
}
