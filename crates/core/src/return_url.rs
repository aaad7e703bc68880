//! Where the server may send a browser back to (Stripe's checkout and
//! portal, an identity provider's sign-in): only the app's own origins,
//! so none of them can be turned into an open redirect.

use url::Url;

use crate::{
    config::{Config, CorsOrigins},
    error::{AppError, AppResult},
};

/// The longest return URL passed on to Stripe; browsers and proxies choke
/// on more.
const MAX_URL_LEN: usize = 2048;

/// Accepts `raw` when it is an http(s) URL on APP_URL's or PUBLIC_URL's
/// origin, or on an origin listed in CORS_ORIGINS (a wildcard never counts,
/// in development too); BAD_USER_INPUT naming `field` otherwise. Returns
/// it unchanged: Stripe fills placeholders such as `{CHECKOUT_SESSION_ID}`
/// that re-serializing could escape.
pub fn allowed_return_url<'a>(config: &Config, field: &'static str, raw: &'a str) -> AppResult<&'a str> {
    let refused = || AppError::bad_input(field, "must be an http(s) URL on one of the app's own origins");
    if raw.len() > MAX_URL_LEN {
        return Err(AppError::bad_input(
            field,
            format!("must be at most {MAX_URL_LEN} characters"),
        ));
    }
    let url = Url::parse(raw.trim()).map_err(|_| refused())?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(refused());
    }
    let origin = url.origin().ascii_serialization();
    if allowed_origins(config).contains(&origin) {
        Ok(raw.trim())
    } else {
        Err(refused())
    }
}

fn allowed_origins(config: &Config) -> Vec<String> {
    let mut origins = vec![
        config.app_url.origin().ascii_serialization(),
        config.public_url.origin().ascii_serialization(),
    ];
    if let CorsOrigins::List(listed) = &config.cors_origins {
        origins.extend(listed.iter().cloned());
    }
    origins
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Config {
        let vars: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_vars(&vars).unwrap()
    }

    fn allowed(config: &Config, raw: &str) -> bool {
        allowed_return_url(config, "successUrl", raw).is_ok()
    }

    #[test]
    fn own_origins_pass_and_everything_else_is_refused() {
        let c = config(&[
            ("APP_URL", "https://app.example.com/"),
            ("PUBLIC_URL", "https://api.example.com"),
            ("CORS_ORIGINS", "https://admin.example.com, http://localhost:3000"),
        ]);
        assert!(allowed(
            &c,
            "https://app.example.com/billing?session={CHECKOUT_SESSION_ID}"
        ));
        assert!(allowed(&c, "https://api.example.com/done"));
        assert!(allowed(&c, "https://admin.example.com/x"));
        assert!(allowed(&c, "http://localhost:3000/"));
        for refused in [
            "https://evil.example.com/",
            "http://app.example.com/",
            "https://app.example.com.evil.com/",
            "https://app.example.com@evil.com/",
            "https://app.example.com:8443/",
            "javascript:alert(1)",
            "//evil.com/",
            "/relative",
            "ftp://app.example.com/",
        ] {
            assert!(!allowed(&c, refused), "{refused}");
        }
        let error = allowed_return_url(&c, "cancelUrl", "https://evil.com").unwrap_err();
        assert_eq!(error.code().as_str(), "BAD_USER_INPUT");
    }

    #[test]
    fn a_return_url_longer_than_browsers_take_is_refused() {
        let c = config(&[("APP_URL", "https://app.example.com")]);
        let base = "https://app.example.com/";
        assert!(allowed(&c, &format!("{base}{}", "a".repeat(MAX_URL_LEN - base.len()))));
        assert!(!allowed(&c, &format!("{base}{}", "a".repeat(MAX_URL_LEN))));
    }

    #[test]
    fn a_wildcard_cors_setting_allows_nothing_extra() {
        let c = config(&[("APP_URL", "https://app.example.com"), ("CORS_ORIGINS", "*")]);
        assert!(allowed(&c, "https://app.example.com/ok"));
        assert!(!allowed(&c, "https://elsewhere.example.com/"));
    }
}
