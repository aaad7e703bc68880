//! `GET /oauth/callback`: where providers send the browser back.
//!
//! A state the server issued and has not spent names where to send the
//! browser: there it goes, with `?code=` for `completeOAuthLogin`, or with
//! `?error=` (and `error_description`) when the person denied access, the
//! flow expired, the exchange failed or the account rules refused. Any
//! other state (missing, forged, replayed) has no trustworthy target: a
//! 400 page, never a code.

use std::net::SocketAddr;

use axum::{
    extract::{ConnectInfo, Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use url::Url;

use super::{
    complete, flow,
    flow::FlowRow,
    github,
    linking::{self, Refusal},
    oidc,
    providers::{Provider, callback_url},
};
use tollgate_auth::AppState;
use tollgate_platform::client_ip::client_ip;

/// The query a provider returns with (RFC 6749 4.1.2).
#[derive(Debug, Deserialize)]
pub struct CallbackParams {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// Why a known flow ends without a code.
#[derive(Debug, Clone, Copy)]
enum FlowError {
    /// The person (or the provider) refused.
    AccessDenied,
    /// The provider answered with another error, or without a code.
    ProviderError,
    /// More than ten minutes passed.
    Expired,
    /// The code exchange or the ID token check failed.
    ExchangeFailed,
    /// The account rules refused.
    Refused(Refusal),
    /// Something broke here.
    ServerError,
}

impl FlowError {
    fn code(self) -> &'static str {
        match self {
            Self::AccessDenied => "access_denied",
            Self::ProviderError => "provider_error",
            Self::Expired => "expired",
            Self::ExchangeFailed => "exchange_failed",
            Self::Refused(refusal) => refusal.code(),
            Self::ServerError => "server_error",
        }
    }

    fn description(self) -> &'static str {
        match self {
            Self::AccessDenied => "access was denied at the identity provider",
            Self::ProviderError => "the identity provider answered with an error",
            Self::Expired => "the sign-in took longer than 10 minutes: start again",
            Self::ExchangeFailed => "the identity provider's answer could not be verified",
            Self::Refused(refusal) => refusal.description(),
            Self::ServerError => "something went wrong: try again later",
        }
    }
}

/// `GET /oauth/callback`.
pub async fn callback(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(params): Query<CallbackParams>,
) -> Response {
    let Some(state) = params.state.as_deref().filter(|s| !s.is_empty()) else {
        return unknown_flow();
    };
    let taken = match app.db().await {
        Ok(mut conn) => flow::take(&mut conn, state).await,
        Err(error) => {
            tracing::error!(error = ?error, "no database connection for an OAuth callback");
            return server_error_page();
        }
    };
    let flow = match taken {
        Ok(Some(flow)) => flow,
        Ok(None) => return unknown_flow(),
        Err(error) => {
            tracing::error!(error = ?error, "reading an OAuth flow failed");
            return server_error_page();
        }
    };
    let Ok(target) = Url::parse(&flow.redirect_uri) else {
        return unknown_flow();
    };
    let forwarded = headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let ip = client_ip(peer.ip(), forwarded.as_deref(), &app.config().trusted_proxies);
    match finish(&app, &flow, state, &params, ip.to_string()).await {
        Ok(code) => redirect(target, &[("code", &code)]),
        Err(error) => redirect(
            target,
            &[("error", error.code()), ("error_description", error.description())],
        ),
    }
}

/// Exchanges the code and resolves the account; the one-time code.
async fn finish(
    app: &AppState,
    flow: &FlowRow,
    state: &str,
    params: &CallbackParams,
    ip: String,
) -> Result<String, FlowError> {
    if flow.expires_at <= app.now() {
        return Err(FlowError::Expired);
    }
    if let Some(error) = &params.error {
        return Err(match error.as_str() {
            "access_denied" => FlowError::AccessDenied,
            _ => FlowError::ProviderError,
        });
    }
    let code = params
        .code
        .as_deref()
        .filter(|c| !c.is_empty())
        .ok_or(FlowError::ProviderError)?;
    let config = app.config();
    // The provider may have been taken out of the configuration meanwhile.
    let provider = Provider::find(config, &flow.provider).ok_or(FlowError::ProviderError)?;
    let secrets = flow.secrets(app, state).map_err(|error| {
        tracing::error!(error = ?error, "an OAuth flow's verifier does not decrypt");
        FlowError::ServerError
    })?;
    let callback = callback_url(config);
    let exchanged = match provider {
        Provider::Github(github) => github::exchange(github, &callback, code, &secrets).await,
        Provider::Oidc(oidc) => oidc::exchange(oidc, &callback, code, &secrets, app.now()).await,
    };
    let who = exchanged.map_err(|error| {
        tracing::warn!(provider = %flow.provider, reason = %error.0, "identity provider exchange failed");
        FlowError::ExchangeFailed
    })?;
    let user_id = linking::resolve(app, flow, &who, Some(ip))
        .await
        .map_err(|error| {
            tracing::error!(error = ?error, "resolving an identity failed");
            FlowError::ServerError
        })?
        .map_err(FlowError::Refused)?;
    let issued = match app.db().await {
        Ok(mut conn) => complete::issue(&mut conn, user_id, &flow.provider, app.now()).await,
        Err(error) => {
            tracing::error!(error = ?error, "no database connection for an OAuth code");
            return Err(FlowError::ServerError);
        }
    };
    issued.map_err(|error| {
        tracing::error!(error = ?error, "issuing an OAuth code failed");
        FlowError::ServerError
    })
}

/// 303 to `target` with `pairs` added to its query.
fn redirect(mut target: Url, pairs: &[(&str, &str)]) -> Response {
    target.query_pairs_mut().extend_pairs(pairs);
    let Ok(location) = HeaderValue::from_str(target.as_str()) else {
        return server_error_page();
    };
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, location),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
        ],
    )
        .into_response()
}

fn unknown_flow() -> Response {
    plain_page(
        StatusCode::BAD_REQUEST,
        "This sign-in link is not valid: it was used already, or it was not started here. Start the sign-in again from the app.",
    )
}

fn server_error_page() -> Response {
    plain_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong while signing you in. Try again later.",
    )
}

fn plain_page(status: StatusCode, message: &'static str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"robots\" content=\"noindex\">\
         <title>Sign-in failed · Tollgate</title></head><body><main><h1>Sign-in failed</h1><p>{message}</p></main></body></html>\n"
    );
    (
        status,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
            ),
        ],
        html,
    )
        .into_response()
}
