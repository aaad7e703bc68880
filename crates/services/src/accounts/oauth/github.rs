//! GitHub: plain OAuth 2 (scope `user:email`) with PKCE, then the person
//! from its REST API: `/user` for the id and name, `/user/emails` for the
//! primary address and whether GitHub verified it.

use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet, EndpointSet,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse, TokenUrl, basic::BasicClient,
};
use secrecy::ExposeSecret;
use serde::Deserialize;

use super::providers::{ExchangeError, FlowSecrets, ProviderIdentity, http_client};
use tollgate_core::config::oauth::GithubProvider;
use tollgate_core::error::{AppError, AppResult};

/// The scope that lets `/user/emails` answer.
const SCOPE: &str = "user:email";

/// A client with the authorization and token endpoints set.
type GithubClient = BasicClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

/// The client with every endpoint set, or an error naming the bad URL.
fn client(provider: &GithubProvider, callback: &str) -> Result<GithubClient, oauth2::url::ParseError> {
    let base = provider.auth_base.as_str().trim_end_matches('/');
    Ok(BasicClient::new(ClientId::new(provider.credentials.client_id.clone()))
        .set_client_secret(ClientSecret::new(
            provider.credentials.client_secret.expose_secret().to_owned(),
        ))
        .set_auth_uri(AuthUrl::new(format!("{base}/login/oauth/authorize"))?)
        .set_token_uri(TokenUrl::new(format!("{base}/login/oauth/access_token"))?)
        .set_redirect_uri(RedirectUrl::new(callback.to_owned())?)
        // GitHub documents the client credentials as form fields.
        .set_auth_type(AuthType::RequestBody))
}

/// Where to send the browser.
pub fn authorization_url(
    provider: &GithubProvider,
    callback: &str,
    secrets: &FlowSecrets,
    challenge: PkceCodeChallenge,
) -> AppResult<String> {
    let client = client(provider, callback).map_err(AppError::internal)?;
    let state = secrets.state.clone();
    let (url, _) = client
        .authorize_url(move || CsrfToken::new(state))
        .add_scope(Scope::new(SCOPE.to_owned()))
        .set_pkce_challenge(challenge)
        .url();
    Ok(url.into())
}

#[derive(Deserialize)]
struct GithubUser {
    id: u64,
    login: String,
    name: Option<String>,
}

#[derive(Deserialize)]
struct GithubEmail {
    email: String,
    primary: bool,
    verified: bool,
}

/// Trades the code for an access token and reads who the person is; the
/// token is dropped afterwards.
pub async fn exchange(
    provider: &GithubProvider,
    callback: &str,
    code: &str,
    secrets: &FlowSecrets,
) -> Result<ProviderIdentity, ExchangeError> {
    let client = client(provider, callback).map_err(|_| ExchangeError::new("bad GitHub URLs"))?;
    let http = http_client().map_err(|_| ExchangeError::new("no HTTP client"))?;
    let token = client
        .exchange_code(AuthorizationCode::new(code.to_owned()))
        .set_pkce_verifier(PkceCodeVerifier::new(secrets.pkce_verifier.clone()))
        .request_async(&http)
        .await
        .map_err(ExchangeError::from_token_request)?;
    let access = token.access_token().secret();
    let api = provider.api_base.as_str().trim_end_matches('/');
    let user: GithubUser = get_json(&http, &format!("{api}/user"), access).await?;
    let emails: Vec<GithubEmail> = get_json(&http, &format!("{api}/user/emails"), access).await?;
    // Only the primary address counts, and only if GitHub verified it.
    let primary = emails.iter().find(|e| e.primary);
    let name = user
        .name
        .as_deref()
        .filter(|n| !n.trim().is_empty())
        .unwrap_or(&user.login);
    Ok(ProviderIdentity::new(
        user.id.to_string(),
        primary.map(|e| e.email.as_str()),
        primary.is_some_and(|e| e.verified),
        Some(name),
    ))
}

async fn get_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
    access_token: &str,
) -> Result<T, ExchangeError> {
    let response = http
        .get(url)
        .bearer_auth(access_token)
        .header(reqwest::header::ACCEPT, "application/vnd.github+json")
        .send()
        .await
        .map_err(|_| ExchangeError::new("GitHub API unreachable"))?;
    if !response.status().is_success() {
        return Err(ExchangeError::new(format!("GitHub API answered {}", response.status())));
    }
    response
        .json()
        .await
        .map_err(|_| ExchangeError::new("GitHub API answer not understood"))
}
