//! Who calls: an API key with the LLM scope, from an address it allows.

use std::{net::SocketAddr, sync::Arc};

use axum::{
    extract::ConnectInfo,
    http::{HeaderMap, header, request::Parts},
};
use tollgate_auth::{
    AppState, KeyIdentity,
    keys::{resolve::resolve_key, scope::ApiKeyScope, secret::is_key_secret},
    principal::bearer_token,
};
use tollgate_platform::client_ip::client_ip;

use crate::error::GatewayError;

/// The key of a request, checked: it exists, works, is used from an
/// address it allows, and holds the LLM scope. Access tokens are refused:
/// the gateway meters keys, not sessions.
pub async fn authenticate(app: &AppState, parts: &Parts) -> Result<Arc<KeyIdentity>, GatewayError> {
    let secret = secret_of(&parts.headers)
        .filter(|secret| is_key_secret(secret))
        .ok_or_else(GatewayError::unauthenticated)?;
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| peer.ip())
        .ok_or_else(|| {
            GatewayError::from(tollgate_core::error::AppError::internal(anyhow::anyhow!(
                "no peer address"
            )))
        })?;
    let forwarded_for = forwarded_for(&parts.headers);
    let address = client_ip(peer, forwarded_for.as_deref(), &app.config().trusted_proxies);
    let key = resolve_key(app, secret, address).await?;
    if !key.identity.scopes.contains(ApiKeyScope::Llm) {
        return Err(GatewayError::missing_scope());
    }
    Ok(key.identity)
}

/// The key secret a caller sent: `Authorization: Bearer` (OpenAI SDKs) or
/// `x-api-key` (Anthropic SDKs), whichever holds a key secret; else
/// whichever was sent (to be refused).
fn secret_of(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token);
    let api_key = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty());
    [bearer, api_key]
        .into_iter()
        .flatten()
        .find(|secret| is_key_secret(secret))
        .or(bearer)
        .or(api_key)
}

/// Every X-Forwarded-For line, in order (as the GraphQL layer reads them:
/// proxies may add a line of their own instead of appending).
fn forwarded_for(headers: &HeaderMap) -> Option<String> {
    let lines: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .map(|v| v.to_str().unwrap_or("invalid"))
        .collect();
    (!lines.is_empty()).then(|| lines.join(","))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn a_key_secret_is_found_in_either_header() {
        assert_eq!(
            secret_of(&headers(&[("authorization", "Bearer tg_live_abc")])),
            Some("tg_live_abc")
        );
        assert_eq!(
            secret_of(&headers(&[("x-api-key", "tg_live_abc")])),
            Some("tg_live_abc")
        );
        assert_eq!(
            secret_of(&headers(&[
                ("authorization", "Bearer eyJhbGci"),
                ("x-api-key", "tg_live_k")
            ])),
            Some("tg_live_k")
        );
        assert_eq!(
            secret_of(&headers(&[("authorization", "Bearer eyJhbGci")])),
            Some("eyJhbGci")
        );
        assert_eq!(secret_of(&headers(&[])), None);
    }
}
