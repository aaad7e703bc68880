//! TOTP codes (RFC 6238) as authenticator apps compute them: HMAC-SHA-1,
//! 6 digits, 30-second steps. Time is always the application's clock,
//! handed in, never the system's.

use chrono::{DateTime, Utc};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use totp_rs::{Algorithm, Builder, Secret, Totp};

use tollgate_core::error::{AppError, AppResult};

/// The issuer authenticator apps show next to the account.
pub const ISSUER: &str = "Tollgate";
/// Seconds in a time step.
pub const STEP_SECS: u64 = 30;
/// Digits in a code.
pub const DIGITS: u8 = 6;
/// Steps of clock drift accepted either way.
pub const DRIFT_STEPS: u16 = 1;
/// Bytes of a secret: 160 bits, as RFC 4226 recommends.
pub const SECRET_BYTES: usize = 20;

/// A fresh random secret in base32 (RFC 4648, no padding), the form
/// authenticator apps take by hand and in otpauth URIs.
pub fn new_secret() -> SecretString {
    let mut bytes = vec![0u8; SECRET_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    SecretString::from(Secret::from(bytes).to_base32())
}

/// The generator for a base32 secret; `account` labels it in otpauth URIs
/// (empty when only codes are needed).
fn generator(secret: &SecretString, account: &str) -> AppResult<Totp> {
    let bytes = Secret::try_from_base32(secret.expose_secret())
        .map_err(|_| AppError::internal(anyhow::anyhow!("a stored TOTP secret is not base32")))?;
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(DIGITS)
        .with_skew(DRIFT_STEPS)
        .with_step_duration(STEP_SECS)
        .with_secret(bytes)
        .with_issuer(Some(ISSUER))
        .with_account_name(account)
        .build()
        .map_err(|e| AppError::internal(anyhow::anyhow!("building a TOTP generator: {e:?}")))
}

/// `otpauth://totp/Tollgate:<email>?secret=...&issuer=Tollgate`, for
/// authenticator apps (as text or as a QR code).
pub fn otpauth_uri(secret: &SecretString, email: &str) -> AppResult<String> {
    generator(secret, email)?
        .to_url()
        .map_err(|e| AppError::internal(anyhow::anyhow!("writing the otpauth URI: {e:?}")))
}

/// The time step `code` matches at `now`, looking one step back and one
/// ahead for clocks that drift; None when it matches none of them. The
/// caller makes sure a step is accepted only once.
pub fn matching_step(secret: &SecretString, code: &str, now: DateTime<Utc>) -> AppResult<Option<i64>> {
    let Ok(seconds) = u64::try_from(now.timestamp()) else {
        return Ok(None);
    };
    let step = generator(secret, "")?.check(code, seconds);
    Ok(step.and_then(|step| i64::try_from(step).ok()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    /// RFC 6238 appendix B's SHA-1 key, "12345678901234567890", in base32.
    const RFC_SECRET: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

    /// The code of the step that `at` falls in, as an authenticator app
    /// computes it.
    fn code_at(secret: &SecretString, at: DateTime<Utc>) -> AppResult<String> {
        let seconds = u64::try_from(at.timestamp()).unwrap();
        Ok(generator(secret, "")?.generate(seconds).to_string())
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).unwrap()
    }

    #[test]
    fn codes_follow_rfc_6238_test_vectors() {
        let secret = SecretString::from(RFC_SECRET);
        // The appendix's 8-digit values, less their first two digits.
        assert_eq!(code_at(&secret, at(59)).unwrap(), "287082");
        assert_eq!(code_at(&secret, at(1_111_111_109)).unwrap(), "081804");
        assert_eq!(code_at(&secret, at(1_234_567_890)).unwrap(), "005924");
    }

    #[test]
    fn one_step_of_drift_is_accepted_and_two_are_not() {
        let secret = new_secret();
        let now = at(1_800_000_015);
        let step = 1_800_000_015 / 30;
        for (shift, expected) in [
            (-60, None),
            (-30, Some(step - 1)),
            (0, Some(step)),
            (30, Some(step + 1)),
            (60, None),
        ] {
            let code = code_at(&secret, now + TimeDelta::seconds(shift)).unwrap();
            assert_eq!(matching_step(&secret, &code, now).unwrap(), expected, "shift {shift}");
        }
        assert_eq!(matching_step(&secret, "12345", now).unwrap(), None);
        assert_eq!(matching_step(&secret, "abcdef", now).unwrap(), None);
    }

    #[test]
    fn secrets_are_160_bits_of_base32_and_uris_name_the_issuer() {
        let secret = new_secret();
        assert_eq!(secret.expose_secret().len(), 32);
        assert_ne!(secret.expose_secret(), new_secret().expose_secret());
        let uri = otpauth_uri(&secret, "ada@example.com").unwrap();
        assert!(uri.starts_with("otpauth://totp/Tollgate:ada%40example.com?"), "{uri}");
        assert!(uri.contains(&format!("secret={}", secret.expose_secret())), "{uri}");
        assert!(uri.contains("issuer=Tollgate"), "{uri}");
    }
}
