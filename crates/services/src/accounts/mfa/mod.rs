//! Two-factor authentication: TOTP (RFC 6238) with recovery codes, and
//! the second step of a sign-in that needs it.
//!
//! - [`enrollment`]: `enrollTotp`, `confirmTotp`, `disableTotp` and
//!   `regenerateRecoveryCodes` for a signed-in person.
//! - [`challenge`]: the `mfaToken` a sign-in gets instead of a session once
//!   its first factor was right (MFA_REQUIRED), and `verifyMfa`, which
//!   trades it and a code for the session.
//! - [`totp`] computes and checks codes against the application's clock
//!   (SHA-1, 6 digits, 30-second steps, one step of drift either way);
//!   [`qr`] draws the otpauth URI as SVG; [`recovery_codes`] makes, hashes
//!   and spends recovery codes; [`code`] reads what a person typed;
//!   [`store`] holds the TOTP columns of `users`; [`verify`] checks and
//!   spends a code.
//!
//! Secrets are stored only encrypted (`app.secrets()`), recovery codes
//! only as keyed hashes, mfaTokens only as SHA-256. A TOTP code is accepted
//! once: the step it matched is remembered, and no code of that step or an
//! earlier one is accepted again. Wrong codes count towards the same
//! lockout as wrong passwords, reserved before the code is checked.

pub mod challenge;
pub mod code;
pub mod enrollment;
pub mod qr;
pub mod recovery_codes;
pub mod store;
pub mod totp;
pub mod verify;

use tollgate_core::error::AppError;

/// The one answer to a wrong (or replayed, or used) code.
pub fn wrong_code() -> AppError {
    AppError::bad_input("code", "the code is not correct")
}
