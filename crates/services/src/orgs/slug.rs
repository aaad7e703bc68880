//! Organization slugs: the URL-friendly unique names (`acme`, `acme-labs`).
//!
//! A slug is 3 to 40 of a-z, 0-9 and '-', neither starting nor ending with
//! '-' (the database's CHECK says the same). Some slugs are reserved: the
//! paths a web app hosting organizations at `/<slug>` needs for itself, and
//! everything starting with `personal-`, which only personal organizations
//! carry (so a slug alone tells a personal organization from a team).

use rand::Rng;

use tollgate_core::error::{AppError, AppResult};

/// The shortest slug.
pub const MIN_LEN: usize = 3;
/// The longest slug.
pub const MAX_LEN: usize = 40;
/// The prefix only personal organizations' slugs carry.
pub const PERSONAL_PREFIX: &str = "personal-";
/// Length of the random tail added to a derived slug that is taken.
const SUFFIX_LEN: usize = 6;

/// Slugs nobody may choose: the web app's own top-level paths and names
/// that would confuse people or impersonate the service.
const RESERVED: &[&str] = &[
    "about",
    "accept-invitation",
    "account",
    "accounts",
    "admin",
    "administrator",
    "api",
    "app",
    "apps",
    "assets",
    "auth",
    "avatars",
    "billing",
    "blog",
    "dashboard",
    "device",
    "docs",
    "graphql",
    "health",
    "help",
    "login",
    "logout",
    "me",
    "metrics",
    "new",
    "null",
    "org",
    "organization",
    "organizations",
    "orgs",
    "personal",
    "playground",
    "pricing",
    "privacy",
    "ready",
    "register",
    "reset-password",
    "root",
    "security",
    "settings",
    "signin",
    "signup",
    "staff",
    "static",
    "status",
    "support",
    "system",
    "team",
    "teams",
    "terms",
    "tollgate",
    "undefined",
    "user",
    "users",
    "verify-email",
    "webhooks",
    "www",
];

/// Whether `slug` has the slug shape (length and characters).
pub fn well_formed(slug: &str) -> bool {
    let bytes = slug.as_bytes();
    (MIN_LEN..=MAX_LEN).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && !slug.starts_with('-')
        && !slug.ends_with('-')
}

/// Whether nobody may choose `slug` for a team organization.
pub fn is_reserved(slug: &str) -> bool {
    slug.starts_with(PERSONAL_PREFIX) || RESERVED.contains(&slug)
}

/// Validates a slug someone typed: trimmed and lowercased, then checked
/// for shape and reservation (BAD_USER_INPUT naming `field`).
pub fn clean(raw: &str, field: &'static str) -> AppResult<String> {
    let slug = raw.trim().to_ascii_lowercase();
    if !well_formed(&slug) {
        return Err(AppError::bad_input(
            field,
            format!("the slug must be {MIN_LEN} to {MAX_LEN} of a-z, 0-9 and '-', not starting or ending with '-'"),
        ));
    }
    if is_reserved(&slug) {
        return Err(AppError::bad_input(field, format!("the slug \"{slug}\" is reserved")));
    }
    Ok(slug)
}

/// A slug made from an organization's name: lowercased, every run of other
/// characters turned into one '-', cut to leave room for a suffix. `None`
/// when the name gives nothing usable (too short, reserved), in which case
/// a suffixed slug must be used.
pub fn derive(name: &str) -> Option<String> {
    let base = base_of(name);
    (well_formed(&base) && !is_reserved(&base)).then_some(base)
}

/// `derive`'s slug, or `org`, with a random `-xxxxxx` tail: for names
/// whose plain slug is taken, reserved or too short.
pub fn derive_with_suffix(name: &str) -> String {
    let mut base = base_of(name);
    if base.is_empty() {
        base.push_str("org");
    }
    // "Personal Projects" must not end up looking like a personal slug.
    if format!("{base}-").starts_with(PERSONAL_PREFIX) {
        base = format!("org-{base}");
        base.truncate(MAX_LEN - SUFFIX_LEN - 1);
        base = base.trim_end_matches('-').to_owned();
    }
    let suffix: String = {
        const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";
        let mut rng = rand::rng();
        (0..SUFFIX_LEN)
            .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
            .collect()
    };
    format!("{base}-{suffix}")
}

/// The name reduced to slug characters, at most `MAX_LEN - SUFFIX_LEN - 1`
/// long so a suffix always fits.
fn base_of(name: &str) -> String {
    let mut slug = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            slug.push(c);
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
    }
    slug.truncate(MAX_LEN - SUFFIX_LEN - 1);
    slug.trim_end_matches('-').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_core::error::field_of;

    #[test]
    fn typed_slugs_are_lowercased_and_checked() {
        assert_eq!(clean("  Acme-Labs ", "slug").unwrap(), "acme-labs");
        assert_eq!(clean("a1b", "slug").unwrap(), "a1b");
        assert_eq!(clean(&"a".repeat(40), "slug").unwrap().len(), 40);
        for bad in ["ab", "-acme", "acme-", "ac me", "acmé", "acme_labs", &"a".repeat(41)] {
            assert_eq!(field_of(clean(bad, "slug")).as_deref(), Some("slug"), "{bad}");
        }
        for reserved in ["admin", "API", "graphql", "personal", "personal-1234abcd"] {
            assert_eq!(field_of(clean(reserved, "slug")).as_deref(), Some("slug"), "{reserved}");
        }
    }

    #[test]
    fn names_become_slugs_and_short_or_reserved_ones_need_a_suffix() {
        assert_eq!(derive("Acme Labs, Inc.").as_deref(), Some("acme-labs-inc"));
        assert_eq!(derive("  --Zürich  Team--").as_deref(), Some("z-rich-team"));
        assert_eq!(derive("AB"), None);
        assert_eq!(derive("Admin"), None);
        assert_eq!(derive("東京"), None);
        let long = derive(&"word ".repeat(20)).unwrap();
        assert!(long.len() < MAX_LEN - SUFFIX_LEN && !long.ends_with('-'));
    }

    #[test]
    fn suffixed_slugs_are_valid_and_differ() {
        for name in [
            "Acme",
            "AB",
            "Admin",
            "東京",
            "",
            "Personal",
            "Personal Projects",
            &"long name ".repeat(10),
        ] {
            let slug = derive_with_suffix(name);
            assert!(clean(&slug, "slug").is_ok(), "{name:?} gave {slug:?}");
        }
        assert_ne!(derive_with_suffix("Acme"), derive_with_suffix("Acme"));
        assert!(derive_with_suffix("東京").starts_with("org-"));
    }
}
