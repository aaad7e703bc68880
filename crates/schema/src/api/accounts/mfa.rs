//! Two-factor authentication in GraphQL: `enrollTotp`, `confirmTotp`,
//! `disableTotp`, `regenerateRecoveryCodes` and `verifyMfa`. Error codes
//! are listed in [`tollgate_services::accounts::mfa::enrollment`] and
//! [`tollgate_services::accounts::mfa::challenge`].

use async_graphql::{Context, Object, SimpleObject};
use secrecy::ExposeSecret;

use crate::{api::accounts::query::AuthPayload, context::ContextExt, error::ApiResult};
use tollgate_services::accounts::mfa::{challenge, enrollment};

/// A TOTP secret waiting for its first code (confirmTotp).
#[derive(SimpleObject)]
pub struct TotpEnrollment {
    /// Base32, for manual entry.
    pub secret: String,
    /// otpauth://totp/... for authenticator apps.
    pub otpauth_uri: String,
    /// The otpauthUri as an SVG QR code.
    pub qr_code_svg: String,
}

impl From<enrollment::Enrollment> for TotpEnrollment {
    fn from(enrollment: enrollment::Enrollment) -> Self {
        Self {
            secret: enrollment.secret.expose_secret().to_owned(),
            otpauth_uri: enrollment.otpauth_uri,
            qr_code_svg: enrollment.qr_code_svg,
        }
    }
}

/// The TOTP mutations.
#[derive(Default)]
pub struct MfaMutation;

#[Object]
impl MfaMutation {
    /// Starts TOTP for the caller; nothing changes until confirmTotp.
    async fn enroll_totp(&self, ctx: &Context<'_>) -> ApiResult<TotpEnrollment> {
        let user_id = ctx.principal()?.require_user()?;
        Ok(enrollment::enroll(ctx.app()?, user_id).await?.into())
    }

    /// Turns TOTP on with a current code; returns 10 single-use recovery codes, shown only now.
    async fn confirm_totp(&self, ctx: &Context<'_>, code: String) -> ApiResult<Vec<String>> {
        let user_id = ctx.principal()?.require_user()?;
        Ok(enrollment::confirm(ctx.app()?, user_id, &code, ctx.request_meta()?).await?)
    }

    /// A current TOTP code or a recovery code.
    async fn disable_totp(&self, ctx: &Context<'_>, code: String) -> ApiResult<bool> {
        let user_id = ctx.principal()?.require_user()?;
        Ok(enrollment::disable(ctx.app()?, user_id, &code, ctx.request_meta()?).await?)
    }

    /// Replaces the recovery codes; needs a current TOTP code.
    async fn regenerate_recovery_codes(&self, ctx: &Context<'_>, code: String) -> ApiResult<Vec<String>> {
        let user_id = ctx.principal()?.require_user()?;
        let meta = ctx.request_meta()?;
        Ok(enrollment::regenerate_recovery_codes(ctx.app()?, user_id, &code, meta).await?)
    }

    /// Second step of login or completeOAuthLogin: the mfaToken from MFA_REQUIRED and a TOTP or recovery code. Wrong codes count towards the lockout.
    async fn verify_mfa(&self, ctx: &Context<'_>, mfa_token: String, code: String) -> ApiResult<AuthPayload> {
        let (user, tokens) = challenge::verify_mfa(ctx.app()?, &mfa_token, &code, ctx.request_meta()?).await?;
        Ok(AuthPayload::new(user, tokens))
    }
}
