//! Checking a second factor, and spending it: the time step of a TOTP code
//! (so the code is not accepted again), or a recovery code.

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use uuid::Uuid;

use super::{code::SecondFactor, recovery_codes, store, store::TotpState, totp};
use tollgate_core::error::{AppError, AppResult};
use tollgate_platform::secrets::Secrets;

/// What proved the second factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    /// A code from the authenticator app.
    Totp,
    /// A recovery code, now spent.
    RecoveryCode,
}

/// Checks `factor` against the TOTP of `user_id` (whose state is `state`)
/// and spends it; None when it is wrong, replayed or already used. Call it
/// in the transaction whose outcome the factor decides.
pub async fn check_and_spend(
    conn: &mut AsyncPgConnection,
    secrets: &Secrets,
    user_id: Uuid,
    state: &TotpState,
    factor: &SecondFactor,
    now: DateTime<Utc>,
) -> AppResult<Option<Proof>> {
    let Some(encrypted) = state.totp_secret.as_deref() else {
        return Ok(None);
    };
    match factor {
        SecondFactor::Totp(code) => {
            let secret = secrets.decrypt(encrypted)?;
            let Some(step) = totp::matching_step(&secret, code, now)? else {
                return Ok(None);
            };
            // Atomic: of two requests with codes of one step, one wins.
            let accepted = store::accept_step(conn, user_id, step).await?;
            Ok(accepted.then_some(Proof::Totp))
        }
        SecondFactor::Recovery(code) => {
            let spent = recovery_codes::spend(conn, secrets, user_id, code, now).await?;
            Ok(spent.then_some(Proof::RecoveryCode))
        }
    }
}

/// A wrong factor in a transaction that must roll back, or any other
/// failure: lets the caller tell them apart once the transaction is over.
#[derive(Debug)]
pub enum Refusal {
    /// The code was wrong: nothing the transaction did is kept.
    WrongCode,
    /// Anything else.
    Error(AppError),
}

impl From<AppError> for Refusal {
    fn from(error: AppError) -> Self {
        Self::Error(error)
    }
}

impl From<diesel::result::Error> for Refusal {
    fn from(error: diesel::result::Error) -> Self {
        Self::Error(error.into())
    }
}
