//! The GraphQL face of device login: `startDeviceLogin`,
//! `approveDeviceLogin`, `denyDeviceLogin`, `pollDeviceLogin`, and the
//! `deviceLogin` query the `/device` page uses to show who is asking.
//! Error codes are listed in [`tollgate_services::accounts::device`].

use async_graphql::{Context, Object, SimpleObject};

use crate::{api::accounts::query::AuthPayload, context::ContextExt, error::ApiResult, scalars::Timestamp};
use tollgate_services::accounts::device::{self, Decision, DeviceLoginRow, StartedDeviceLogin};

/// RFC 8628-style sign-in for editors and CLIs.
#[derive(SimpleObject)]
pub struct DeviceLogin {
    /// Secret the device polls pollDeviceLogin with; never show it to the person.
    pub device_code: String,
    /// What the person types on the verification page, like BCDF-GHJK (case and dash do not matter).
    pub user_code: String,
    /// The page where the person signs in and types userCode.
    pub verification_uri: String,
    /// verificationUri with the code filled in (`?code=`), for a link or QR code.
    pub verification_uri_complete: String,
    /// Seconds until deviceCode and userCode expire.
    pub expires_in: i32,
    /// Seconds the client waits between polls.
    pub interval: i32,
}

impl From<StartedDeviceLogin> for DeviceLogin {
    fn from(started: StartedDeviceLogin) -> Self {
        Self {
            device_code: started.device_code,
            user_code: started.user_code,
            verification_uri: started.verification_uri,
            verification_uri_complete: started.verification_uri_complete,
            expires_in: i32::try_from(started.expires_in).unwrap_or(i32::MAX),
            interval: started.interval,
        }
    }
}

/// A sign-in request waiting for a person, as the person sees it before
/// approving or denying.
#[derive(SimpleObject)]
pub struct PendingDeviceLogin {
    /// The code, as displayed (BCDF-GHJK).
    pub user_code: String,
    /// What the requesting client calls itself, if it said.
    pub client_name: Option<String>,
    /// The address the request came from.
    pub client_ip: Option<String>,
    /// The requesting client's User-Agent.
    pub user_agent: Option<String>,
    /// When the client asked.
    pub created_at: Timestamp,
    /// When the request lapses unless answered.
    pub expires_at: Timestamp,
}

impl From<DeviceLoginRow> for PendingDeviceLogin {
    fn from(row: DeviceLoginRow) -> Self {
        Self {
            user_code: device::display_user_code(&row.user_code),
            client_name: row.client_name,
            client_ip: row.client_ip,
            user_agent: row.user_agent,
            created_at: row.created_at.into(),
            expires_at: row.expires_at.into(),
        }
    }
}

/// Device login mutations.
#[derive(Default)]
pub struct DeviceMutation;

#[Object]
impl DeviceMutation {
    /// Starts a device sign-in; anyone may call it. clientName (at most 100 characters) names the session the device gets and is shown to the person approving. Counts against the client's device rate limit.
    async fn start_device_login(&self, ctx: &Context<'_>, client_name: Option<String>) -> ApiResult<DeviceLogin> {
        let app = ctx.app()?;
        let started = device::start(app, client_name.as_deref(), ctx.request_meta()?).await?;
        Ok(started.into())
    }

    /// Called by a signed-in user who typed the userCode on the web. NOT_FOUND unless a request waits under that code (unexpired, not yet answered).
    async fn approve_device_login(&self, ctx: &Context<'_>, user_code: String) -> ApiResult<bool> {
        decide(ctx, &user_code, Decision::Approve).await
    }

    /// The signed-in user refuses the request; the device then gets ACCESS_DENIED.
    async fn deny_device_login(&self, ctx: &Context<'_>, user_code: String) -> ApiResult<bool> {
        decide(ctx, &user_code, Decision::Deny).await
    }

    /// Polled by the device; errors AUTHORIZATION_PENDING, SLOW_DOWN, EXPIRED_TOKEN, ACCESS_DENIED until approved. The tokens come exactly once; a used or unknown deviceCode gets EXPIRED_TOKEN.
    async fn poll_device_login(&self, ctx: &Context<'_>, device_code: String) -> ApiResult<AuthPayload> {
        let app = ctx.app()?;
        let (user, tokens) = device::poll(app, &device_code, ctx.request_meta()?).await?;
        Ok(AuthPayload::new(user, tokens))
    }
}

/// Records a signed-in person's answer.
async fn decide(ctx: &Context<'_>, user_code: &str, decision: Decision) -> ApiResult<bool> {
    let user_id = ctx.principal()?.require_user()?;
    let app = ctx.app()?;
    device::decide(app, user_id, user_code, decision, ctx.request_meta()?).await?;
    Ok(true)
}

/// Device login queries.
#[derive(Default)]
pub struct DeviceQuery;

#[Object]
impl DeviceQuery {
    /// Signed-in users: the request waiting under userCode (unexpired, not yet answered), to check the client's name and address before approving; null when none waits.
    async fn device_login(&self, ctx: &Context<'_>, user_code: String) -> ApiResult<Option<PendingDeviceLogin>> {
        let user_id = ctx.principal()?.require_user()?;
        let app = ctx.app()?;
        let pending = device::find_pending(app, user_id, &user_code, ctx.request_meta()?).await?;
        Ok(pending.map(Into::into))
    }
}
