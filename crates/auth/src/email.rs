//! Email addresses as the server stores and compares them.

use tollgate_core::error::{AppError, AppResult};

/// The longest address SMTP allows.
const MAX_EMAIL_LEN: usize = 254;

/// Trims and lowercases an address after a sanity check of its shape, so
/// comparison is case-insensitive and uniqueness is a plain index.
/// `field` names the input field for the error.
pub fn normalize_email(raw: &str, field: &'static str) -> AppResult<String> {
    let email = raw.trim().to_lowercase();
    let invalid = || AppError::bad_input(field, "not a valid email address");
    if email.is_empty() || email.len() > MAX_EMAIL_LEN || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid());
    }
    let (local, domain) = email.split_once('@').ok_or_else(invalid)?;
    if local.is_empty() || domain.is_empty() || domain.contains('@') || domain.starts_with('.') || domain.ends_with('.')
    {
        return Err(invalid());
    }
    Ok(email)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_and_lowercased() {
        assert_eq!(
            normalize_email("  Ada@Example.COM ", "email").unwrap(),
            "ada@example.com"
        );
    }

    #[test]
    fn malformed_emails_are_refused_naming_the_field() {
        for bad in [
            "",
            "ada",
            "@example.com",
            "ada@",
            "a b@example.com",
            "a@b@c",
            "ada@.com",
        ] {
            match normalize_email(bad, "email") {
                Err(AppError::Client { field: Some(field), .. }) => assert_eq!(field, "email"),
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
    }
}
