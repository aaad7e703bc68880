//! OpenID Connect (Google and any issuer): discovery from the issuer URL,
//! the authorization code flow with PKCE and a nonce, and the ID token
//! checked by `openidconnect` against the issuer's JWKS (signature, `iss`,
//! `aud`, `exp`, `nonce`). Scopes `openid email profile`; an email counts
//! as verified only when `email_verified` is true in the ID token (or, when
//! the ID token carries no email, in the userinfo answer).
//!
//! Discovery (and so the JWKS) is fetched for every flow: a provider that
//! rotates its keys is followed at once, and sign-ins are rare enough that
//! the extra request does not matter.

use chrono::{DateTime, Utc};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet, EndpointSet, IssuerUrl,
    Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
    core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata, CoreUserInfoClaims},
};
use secrecy::ExposeSecret;

use super::providers::{ExchangeError, FlowSecrets, ProviderIdentity, http_client};
use tollgate_core::config::oauth::OidcProvider;
use tollgate_core::error::{AppError, AppResult};

type DiscoveredClient =
    CoreClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointMaybeSet, EndpointMaybeSet>;

/// The provider's client, from its discovery document.
async fn discover(provider: &OidcProvider, callback: &str) -> Result<DiscoveredClient, ExchangeError> {
    let http = http_client().map_err(|_| ExchangeError::new("no HTTP client"))?;
    let issuer = IssuerUrl::new(provider.issuer.as_str().trim_end_matches('/').to_owned())
        .map_err(|_| ExchangeError::new("bad issuer URL"))?;
    let metadata = match CoreProviderMetadata::discover_async(issuer.clone(), &http).await {
        Ok(metadata) => metadata,
        // Issuers differ on the trailing slash; the ID tokens' `iss` must
        // match whichever the discovery document says.
        Err(_) => {
            let slashed = IssuerUrl::new(provider.issuer.as_str().to_owned())
                .map_err(|_| ExchangeError::new("bad issuer URL"))?;
            CoreProviderMetadata::discover_async(slashed, &http)
                .await
                .map_err(|e| ExchangeError::new(format!("discovery failed: {e}")))?
        }
    };
    let redirect = RedirectUrl::new(callback.to_owned()).map_err(|_| ExchangeError::new("bad callback URL"))?;
    Ok(CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(provider.credentials.client_id.clone()),
        Some(ClientSecret::new(
            provider.credentials.client_secret.expose_secret().to_owned(),
        )),
    )
    .set_redirect_uri(redirect))
}

/// Where to send the browser (after discovery).
pub async fn authorization_url(
    provider: &OidcProvider,
    callback: &str,
    secrets: &FlowSecrets,
    challenge: PkceCodeChallenge,
) -> AppResult<String> {
    let client = discover(provider, callback)
        .await
        .map_err(|e| AppError::unavailable(anyhow::anyhow!("identity provider {}: {}", provider.key, e.0)))?;
    let (state, nonce) = (secrets.state.clone(), secrets.nonce.clone());
    let (url, _, _) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            move || CsrfToken::new(state),
            move || Nonce::new(nonce),
        )
        .add_scope(Scope::new("email".to_owned()))
        .add_scope(Scope::new("profile".to_owned()))
        .set_pkce_challenge(challenge)
        .url();
    Ok(url.into())
}

/// Trades the code for tokens, checks the ID token and reads who the
/// person is; the tokens are dropped afterwards.
pub async fn exchange(
    provider: &OidcProvider,
    callback: &str,
    code: &str,
    secrets: &FlowSecrets,
    now: DateTime<Utc>,
) -> Result<ProviderIdentity, ExchangeError> {
    let client = discover(provider, callback).await?;
    let http = http_client().map_err(|_| ExchangeError::new("no HTTP client"))?;
    let tokens = client
        .exchange_code(AuthorizationCode::new(code.to_owned()))
        .map_err(|_| ExchangeError::new("the provider has no token endpoint"))?
        .set_pkce_verifier(PkceCodeVerifier::new(secrets.pkce_verifier.clone()))
        .request_async(&http)
        .await
        .map_err(ExchangeError::from_token_request)?;
    let id_token = tokens
        .id_token()
        .ok_or_else(|| ExchangeError::new("no ID token in the token response"))?;
    let claims = id_token
        .claims(
            // `exp` and `iat` by the application's clock.
            &client.id_token_verifier().set_time_fn(move || now),
            &Nonce::new(secrets.nonce.clone()),
        )
        .map_err(|e| ExchangeError::new(format!("ID token refused: {e}")))?;
    let subject = claims.subject().as_str().to_owned();
    let name = claims.name().and_then(|n| n.get(None)).map(|n| n.as_str().to_owned());
    if let Some(email) = claims.email() {
        return Ok(ProviderIdentity::new(
            subject,
            Some(email.as_str()),
            claims.email_verified() == Some(true),
            name.as_deref(),
        ));
    }
    // Some providers leave the email out of the ID token: ask userinfo,
    // for the same subject only.
    let Ok(request) = client.user_info(tokens.access_token().clone(), Some(claims.subject().clone())) else {
        return Ok(ProviderIdentity::new(subject, None, false, name.as_deref()));
    };
    let info: CoreUserInfoClaims = request
        .request_async(&http)
        .await
        .map_err(|_| ExchangeError::new("userinfo request failed"))?;
    Ok(ProviderIdentity::new(
        subject,
        info.email().map(|e| e.as_str()),
        info.email_verified() == Some(true),
        name.as_deref(),
    ))
}
