//! Sign-in with identity providers: GitHub (OAuth 2), Google and any other
//! OpenID Connect issuer (discovery from the issuer URL).

use std::fmt;

use secrecy::SecretString;
use url::Url;

use super::ConfigError;

/// GitHub's site, where people authorize (`/login/oauth/...`).
pub const GITHUB_DEFAULT_AUTH_BASE: &str = "https://github.com";
/// GitHub's REST API (`/user`, `/user/emails`).
pub const GITHUB_DEFAULT_API_BASE: &str = "https://api.github.com";
/// Google's OpenID Connect issuer.
pub const GOOGLE_ISSUER: &str = "https://accounts.google.com";

/// Keys that name other ways to sign in and so cannot name an OIDC provider.
const RESERVED_KEYS: [&str; 4] = ["password", "device", "github", "google"];

/// An OAuth client registered with a provider.
#[derive(Clone)]
pub struct ClientCredentials {
    /// The client id the provider issued.
    pub client_id: String,
    /// Its secret.
    pub client_secret: SecretString,
}

impl fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// Sign-in with GitHub.
#[derive(Debug, Clone)]
pub struct GithubProvider {
    /// `OAUTH_GITHUB_CLIENT_ID` / `OAUTH_GITHUB_CLIENT_SECRET`.
    pub credentials: ClientCredentials,
    /// `OAUTH_GITHUB_AUTH_BASE`.
    pub auth_base: Url,
    /// `OAUTH_GITHUB_API_BASE`.
    pub api_base: Url,
}

/// An OpenID Connect provider, found by discovery from its issuer.
#[derive(Debug, Clone)]
pub struct OidcProvider {
    /// Its key in `clientConfig.authProviders`: `google`, or the lower-cased
    /// name from `OIDC_PROVIDERS`.
    pub key: String,
    /// The issuer URL, exactly as the ID tokens' `iss` says it.
    pub issuer: Url,
    /// The registered client.
    pub credentials: ClientCredentials,
}

/// Every identity provider the environment configures.
#[derive(Debug, Clone, Default)]
pub struct OAuthConfig {
    /// GitHub, when `OAUTH_GITHUB_CLIENT_ID` is set.
    pub github: Option<GithubProvider>,
    /// Google, then each `OIDC_PROVIDERS` entry, in that order.
    pub oidc: Vec<OidcProvider>,
}

impl OAuthConfig {
    /// The keys of the configured providers, in the order clients list them.
    pub fn keys(&self) -> Vec<String> {
        let github = self.github.as_ref().map(|_| "github".to_owned());
        github
            .into_iter()
            .chain(self.oidc.iter().map(|p| p.key.clone()))
            .collect()
    }

    /// The OpenID Connect provider with this key.
    pub fn oidc(&self, key: &str) -> Option<&OidcProvider> {
        self.oidc.iter().find(|p| p.key == key)
    }

    /// Reads the variables through `get` (empty = unset).
    pub(super) fn read(get: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let github = match credentials(get, "OAUTH_GITHUB_CLIENT_ID", "OAUTH_GITHUB_CLIENT_SECRET")? {
            Some(credentials) => Some(GithubProvider {
                credentials,
                auth_base: http_url(get, "OAUTH_GITHUB_AUTH_BASE", GITHUB_DEFAULT_AUTH_BASE)?,
                api_base: http_url(get, "OAUTH_GITHUB_API_BASE", GITHUB_DEFAULT_API_BASE)?,
            }),
            None => None,
        };
        let mut oidc = Vec::new();
        if let Some(credentials) = credentials(get, "OAUTH_GOOGLE_CLIENT_ID", "OAUTH_GOOGLE_CLIENT_SECRET")? {
            oidc.push(OidcProvider {
                key: "google".to_owned(),
                issuer: parse_url("OAUTH_GOOGLE_CLIENT_ID", GOOGLE_ISSUER)?,
                credentials,
            });
        }
        for name in get("OIDC_PROVIDERS").iter().flat_map(|raw| raw.split(',')) {
            let name = name.trim();
            if name.is_empty() {
                continue;
            }
            oidc.push(oidc_provider(get, name, &oidc)?);
        }
        Ok(Self { github, oidc })
    }
}

fn oidc_provider(
    get: &dyn Fn(&str) -> Option<String>,
    name: &str,
    known: &[OidcProvider],
) -> Result<OidcProvider, ConfigError> {
    let key = name.to_ascii_lowercase();
    let valid = key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !valid || key.len() > 32 {
        return Err(ConfigError::new(
            "OIDC_PROVIDERS",
            format!("{name:?}: a name is up to 32 letters, digits or underscores"),
        ));
    }
    if RESERVED_KEYS.contains(&key.as_str()) || known.iter().any(|p| p.key == key) {
        return Err(ConfigError::new(
            "OIDC_PROVIDERS",
            format!("{name:?} is taken (listed twice, or a built-in way to sign in)"),
        ));
    }
    let upper = key.to_ascii_uppercase();
    // The variable names are built at run time; ConfigError wants a
    // 'static name, and a bad value stops the server at start anyway.
    let leak = |suffix: &str| -> &'static str { Box::leak(format!("OIDC_{upper}_{suffix}").into_boxed_str()) };
    let (issuer_var, id_var, secret_var) = (leak("ISSUER"), leak("CLIENT_ID"), leak("CLIENT_SECRET"));
    let issuer = get(issuer_var).ok_or_else(|| ConfigError::new(issuer_var, "is required for this provider"))?;
    let issuer = parse_url(issuer_var, &issuer)?;
    let credentials = credentials(get, id_var, secret_var)?
        .ok_or_else(|| ConfigError::new(id_var, "is required for this provider"))?;
    Ok(OidcProvider {
        key,
        issuer,
        credentials,
    })
}

fn credentials(
    get: &dyn Fn(&str) -> Option<String>,
    id_var: &'static str,
    secret_var: &'static str,
) -> Result<Option<ClientCredentials>, ConfigError> {
    match (get(id_var), get(secret_var)) {
        (None, None) => Ok(None),
        (Some(client_id), Some(secret)) => Ok(Some(ClientCredentials {
            client_id: client_id.trim().to_owned(),
            client_secret: SecretString::from(secret.trim().to_owned()),
        })),
        (Some(_), None) => Err(ConfigError::new(secret_var, "is required with the client id")),
        (None, Some(_)) => Err(ConfigError::new(id_var, "is required with the client secret")),
    }
}

fn http_url(get: &dyn Fn(&str) -> Option<String>, var: &'static str, default: &str) -> Result<Url, ConfigError> {
    parse_url(var, get(var).as_deref().unwrap_or(default))
}

fn parse_url(var: &'static str, raw: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(raw.trim()).map_err(|e| ConfigError::new(var, format!("{raw:?}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(ConfigError::new(var, "must be an http(s) URL"));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn read(pairs: &[(&str, &str)]) -> Result<OAuthConfig, ConfigError> {
        let vars: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        OAuthConfig::read(&|name| vars.get(name).cloned())
    }

    #[test]
    fn providers_are_listed_github_google_then_oidc_names_lower_cased() {
        let config = read(&[
            ("OAUTH_GITHUB_CLIENT_ID", "gh"),
            ("OAUTH_GITHUB_CLIENT_SECRET", "s"),
            ("OAUTH_GOOGLE_CLIENT_ID", "g"),
            ("OAUTH_GOOGLE_CLIENT_SECRET", "s"),
            ("OIDC_PROVIDERS", "Okta, keycloak"),
            ("OIDC_OKTA_ISSUER", "https://example.okta.com"),
            ("OIDC_OKTA_CLIENT_ID", "o"),
            ("OIDC_OKTA_CLIENT_SECRET", "s"),
            ("OIDC_KEYCLOAK_ISSUER", "https://sso.example.com/realms/x"),
            ("OIDC_KEYCLOAK_CLIENT_ID", "k"),
            ("OIDC_KEYCLOAK_CLIENT_SECRET", "s"),
        ])
        .unwrap();
        assert_eq!(config.keys(), ["github", "google", "okta", "keycloak"]);
        assert_eq!(config.github.unwrap().api_base.as_str(), "https://api.github.com/");
        assert_eq!(config.oidc[0].issuer.as_str(), "https://accounts.google.com/");
    }

    #[test]
    fn incomplete_or_clashing_providers_stop_the_server() {
        let err = read(&[("OAUTH_GITHUB_CLIENT_ID", "gh")]).unwrap_err();
        assert_eq!(err.variable, "OAUTH_GITHUB_CLIENT_SECRET");
        let err = read(&[("OIDC_PROVIDERS", "okta")]).unwrap_err();
        assert_eq!(err.variable, "OIDC_OKTA_ISSUER");
        let err = read(&[("OIDC_PROVIDERS", "github")]).unwrap_err();
        assert_eq!(err.variable, "OIDC_PROVIDERS");
        let err = read(&[("OIDC_PROVIDERS", "bad-name")]).unwrap_err();
        assert_eq!(err.variable, "OIDC_PROVIDERS");
        let err = read(&[
            ("OIDC_PROVIDERS", "okta"),
            ("OIDC_OKTA_ISSUER", "ftp://x"),
            ("OIDC_OKTA_CLIENT_ID", "o"),
            ("OIDC_OKTA_CLIENT_SECRET", "s"),
        ])
        .unwrap_err();
        assert_eq!(err.variable, "OIDC_OKTA_ISSUER");
        assert!(read(&[]).unwrap().keys().is_empty());
    }
}
