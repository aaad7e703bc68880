//! What a new password must be: 8 to 128 characters, not one of the most
//! common passwords, not the account's email.

use std::{collections::HashSet, sync::LazyLock};

use secrecy::{ExposeSecret, SecretString};

use tollgate_core::error::{AppError, AppResult};

/// The shortest password accepted.
pub const MIN_PASSWORD_LEN: usize = 8;
/// The longest password accepted (argon2 would take more; nobody types more).
pub const MAX_PASSWORD_LEN: usize = 128;

static COMMON: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    include_str!("common_passwords.txt")
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .collect()
});

/// Checks `password` for an account with `email` (normalized); errors are
/// BAD_USER_INPUT naming `field`.
pub fn check(password: &SecretString, email: &str, field: &'static str) -> AppResult<()> {
    let password = password.expose_secret();
    let length = password.chars().count();
    if !(MIN_PASSWORD_LEN..=MAX_PASSWORD_LEN).contains(&length) {
        return Err(AppError::bad_input(
            field,
            format!("the password must be {MIN_PASSWORD_LEN} to {MAX_PASSWORD_LEN} characters"),
        ));
    }
    let lowered = password.trim().to_lowercase();
    if COMMON.contains(lowered.as_str()) {
        return Err(AppError::bad_input(
            field,
            "this password is too common; choose another",
        ));
    }
    if lowered == email || lowered == email.split('@').next().unwrap_or_default() {
        return Err(AppError::bad_input(
            field,
            "the password must not be your email address",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(result: AppResult<()>) -> Option<String> {
        match result {
            Err(AppError::Client { field, .. }) => field.map(|f| f.into_owned()),
            _ => None,
        }
    }

    #[test]
    fn weak_passwords_are_refused_naming_the_field() {
        for weak in [
            "short",
            "Password",
            "iloveyou",
            "12345678",
            "ada@example.com",
            "ADA@EXAMPLE.COM",
        ] {
            assert_eq!(
                field_of(check(&weak.into(), "ada@example.com", "password")).as_deref(),
                Some("password"),
                "{weak}"
            );
        }
        assert!(check(&"x".repeat(129).into(), "ada@example.com", "password").is_err());
        assert!(check(&"correct horse battery staple".into(), "ada@example.com", "password").is_ok());
        assert!(COMMON.len() > 2000);
    }
}
