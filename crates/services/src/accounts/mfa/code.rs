//! What a person typed as a second factor: a TOTP code or a recovery code,
//! told apart by their shape (six digits; ten letters and digits of the
//! recovery alphabet). Spaces and dashes are ignored, case too.

use super::{recovery_codes, totp};
use tollgate_core::error::{AppError, AppResult};

/// A second factor, normalized.
#[derive(PartialEq, Eq)]
pub enum SecondFactor {
    /// Six digits from an authenticator app.
    Totp(String),
    /// A recovery code, upper case without its dash.
    Recovery(String),
}

impl std::fmt::Debug for SecondFactor {
    // Codes are credentials: never in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Totp(_) => f.write_str("Totp(..)"),
            Self::Recovery(_) => f.write_str("Recovery(..)"),
        }
    }
}

/// Reads `input`; None when it has the shape of neither kind of code.
pub fn parse(input: &str) -> Option<SecondFactor> {
    let compact: String = input
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    if compact.len() == usize::from(totp::DIGITS) && compact.bytes().all(|b| b.is_ascii_digit()) {
        return Some(SecondFactor::Totp(compact));
    }
    recovery_codes::normalize(&compact).map(SecondFactor::Recovery)
}

/// Reads `input` where only an authenticator app's code will do
/// (confirmTotp, regenerateRecoveryCodes): BAD_USER_INPUT otherwise.
pub fn parse_totp(input: &str) -> AppResult<String> {
    match parse(input) {
        Some(SecondFactor::Totp(code)) => Ok(code),
        Some(SecondFactor::Recovery(_)) => Err(AppError::bad_input(
            "code",
            "enter the 6-digit code from your authenticator app; a recovery code does not work here",
        )),
        None => Err(super::wrong_code()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_told_apart_by_shape() {
        assert_eq!(parse(" 123 456 "), Some(SecondFactor::Totp("123456".into())));
        assert_eq!(parse("abcde-fghjk"), Some(SecondFactor::Recovery("ABCDEFGHJK".into())));
        assert_eq!(parse("12345"), None);
        assert_eq!(parse("1234567"), None);
        // 0, 1, I and O are not in the recovery alphabet.
        assert_eq!(parse("ABCDE-FGHJ0"), None);
        assert_eq!(parse(""), None);
        assert!(parse_totp("ABCDE-FGHJK").is_err());
        assert_eq!(parse_totp("000111").unwrap(), "000111");
    }
}
