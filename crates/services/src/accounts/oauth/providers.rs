//! The configured identity providers, the one HTTP client that talks to
//! them, and what a provider says about a person.

use std::{sync::OnceLock, time::Duration};

use tollgate_auth::email::normalize_email;
use tollgate_core::config::{
    Config,
    oauth::{GithubProvider, OidcProvider},
};
use tollgate_core::error::{AppError, AppResult};

use super::CALLBACK_PATH;

/// A provider named by its key (`github`, `google`, an OIDC name).
#[derive(Debug, Clone, Copy)]
pub enum Provider<'a> {
    /// GitHub, by plain OAuth 2 and its REST API.
    Github(&'a GithubProvider),
    /// An OpenID Connect issuer (Google included).
    Oidc(&'a OidcProvider),
}

impl<'a> Provider<'a> {
    /// The configured provider with this key.
    pub fn find(config: &'a Config, key: &str) -> Option<Self> {
        if key == "github" {
            return config.oauth.github.as_ref().map(Self::Github);
        }
        config.oauth.oidc(key).map(Self::Oidc)
    }

    /// Its key, as stored on identities and listed in authProviders.
    pub fn key(&self) -> &'a str {
        match self {
            Self::Github(_) => "github",
            Self::Oidc(provider) => &provider.key,
        }
    }
}

/// The redirect URI registered with every provider.
pub fn callback_url(config: &Config) -> String {
    config.public_endpoint(CALLBACK_PATH)
}

/// What the server keeps of a flow to finish it at the callback.
pub struct FlowSecrets {
    /// The `state` parameter.
    pub state: String,
    /// The OIDC nonce (unused by GitHub, kept all the same).
    pub nonce: String,
    /// The PKCE code verifier.
    pub pkce_verifier: String,
}

/// Who the provider says the person is.
#[derive(Debug, Clone)]
pub struct ProviderIdentity {
    /// The provider's stable id of the person (`sub`, GitHub's user id).
    pub subject: String,
    /// Their address, normalized, if the provider gave a usable one.
    pub email: Option<String>,
    /// Whether the provider says it verified `email`; false when it does
    /// not say.
    pub email_verified: bool,
    /// Their display name, if any.
    pub name: Option<String>,
}

impl ProviderIdentity {
    /// An identity from raw claims: an address that does not normalize is
    /// treated as none.
    pub fn new(subject: String, email: Option<&str>, email_verified: bool, name: Option<&str>) -> Self {
        let email = email.and_then(|raw| normalize_email(raw, "email").ok());
        let name = name
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(|n| n.chars().take(100).collect());
        Self {
            subject,
            email_verified: email_verified && email.is_some(),
            email,
            name,
        }
    }

    /// The email only when the provider verified it.
    pub fn verified_email(&self) -> Option<&str> {
        self.email.as_deref().filter(|_| self.email_verified)
    }
}

/// Why talking to a provider failed. Carries a short description for the
/// log, never a token or a response body.
#[derive(Debug)]
pub struct ExchangeError(pub String);

impl ExchangeError {
    /// An error described by `what`.
    pub fn new(what: impl Into<String>) -> Self {
        Self(what.into())
    }

    /// A failed code exchange at the token endpoint, said the same way for
    /// GitHub and OpenID Connect (both go through `oauth2`).
    pub fn from_token_request<E, K>(error: oauth2::RequestTokenError<E, oauth2::StandardErrorResponse<K>>) -> Self
    where
        E: std::error::Error + 'static,
        K: oauth2::ErrorResponseType + std::fmt::Display + 'static,
    {
        use oauth2::RequestTokenError;
        match error {
            RequestTokenError::ServerResponse(r) => Self::new(format!("token endpoint refused: {}", r.error())),
            RequestTokenError::Request(_) => Self::new("token endpoint unreachable"),
            RequestTokenError::Parse(..) => Self::new("token response not understood"),
            RequestTokenError::Other(_) => Self::new("token request failed"),
        }
    }
}

/// How long one request to a provider may take.
const TIMEOUT: Duration = Duration::from_secs(10);

static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();

/// The client every provider request goes through: no redirects followed
/// (a provider's answer is taken as it is, and a redirect cannot lead the
/// server elsewhere), a timeout, rustls.
pub fn http_client() -> AppResult<reqwest::Client> {
    if let Some(client) = CLIENT.get() {
        return Ok(client.clone());
    }
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(TIMEOUT)
        .user_agent(concat!("tollgate/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(AppError::internal)?;
    Ok(CLIENT.get_or_init(|| client).clone())
}
