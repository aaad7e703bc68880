//! Calling a model's routes in order. Connection errors, a slow start,
//! 429s and 5xx move on to the next route (nothing has reached the caller
//! yet); providers whose breaker is open are skipped. The provider's
//! credentials replace the caller's, which are never forwarded.

use std::time::Duration;

use axum::{
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use tokio::time::Instant;
use tollgate_auth::AppState;
use tollgate_services::providers::{ProviderKind, Upstream};

use crate::{
    breaker::Admission,
    error::GatewayError,
    hold::Hold,
    state::Gateway,
    wire::{Api, CallRequest},
};

/// The Anthropic API version sent when the caller sends none.
const DEFAULT_ANTHROPIC_VERSION: &str = "2023-06-01";
/// The most of a provider's error body the gateway reads and passes on.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// One call on its way out.
pub struct Outbound<'a> {
    /// The app (clock, metrics, configuration).
    pub app: &'a AppState,
    /// The client and breakers.
    pub gateway: &'a Gateway,
    /// The caller's request.
    pub call: &'a CallRequest,
    /// The caller's headers (for `anthropic-version` and `anthropic-beta`).
    pub caller_headers: &'a HeaderMap,
    /// The output limit to send, when the gateway chose one.
    pub send_limit: Option<i64>,
    /// When the whole call, stream included, must be over.
    pub deadline: Instant,
}

/// A provider that answered with a response worth passing on: a success,
/// or an error another route would not cure (a 400, say).
pub struct Answered {
    /// Where it went.
    pub upstream: Upstream,
    /// The response, its body unread.
    pub response: reqwest::Response,
}

/// Why no route answered.
pub enum Failed {
    /// The last provider tried answered 429 or 5xx: passed on as it sent it.
    Status {
        /// Its status.
        status: StatusCode,
        /// Its content type.
        content_type: Option<HeaderValue>,
        /// Its body (at most [`MAX_ERROR_BODY`] bytes, provider keys removed).
        body: Bytes,
    },
    /// The last provider tried could not be reached.
    Unreachable,
    /// The last provider tried did not start answering in time.
    TimedOut,
    /// Every provider was skipped by its breaker, the first until then.
    AllSkipped {
        /// When the first of them is tried again.
        until: DateTime<Utc>,
    },
}

impl Failed {
    /// What the caller gets.
    pub fn into_response(self, api: Api, now: DateTime<Utc>) -> Response {
        match self {
            Self::Status {
                status,
                content_type,
                body,
            } => passed_on(status, content_type, body),
            Self::Unreachable => GatewayError::unreachable().into_response(api),
            Self::TimedOut => GatewayError::timed_out().into_response(api),
            Self::AllSkipped { until } => {
                let seconds = (until - now).num_seconds().max(1).unsigned_abs();
                GatewayError::all_skipped(seconds).into_response(api)
            }
        }
    }

    /// The outcome word of the request metric.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::TimedOut => "timeout",
            _ => "failed",
        }
    }
}

/// A provider's error response, passed on as it was sent.
pub fn passed_on(status: StatusCode, content_type: Option<HeaderValue>, body: Bytes) -> Response {
    let mut response = (status, body).into_response();
    if let Some(content_type) = content_type {
        response.headers_mut().insert(header::CONTENT_TYPE, content_type);
    }
    response
}

/// Whether a provider's status sends the call to the next route.
fn worth_another_route(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// Tries `upstreams` in order until one answers with something to pass on.
pub async fn call(out: &Outbound<'_>, upstreams: &[Upstream], hold: &mut Hold) -> Result<Answered, Failed> {
    let client = match out.gateway.client(&out.app.config().gateway) {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = ?e, "gateway: no HTTP client");
            return Err(Failed::Unreachable);
        }
    };
    let breakers = out.gateway.breakers();
    let metrics = out.app.metrics();
    let mut failed: Option<Failed> = None;
    let mut skipped_until: Option<DateTime<Utc>> = None;
    for (index, upstream) in upstreams.iter().enumerate() {
        let provider = upstream.provider_key.as_str();
        if let Admission::Skipped { until } = breakers.admit(provider, out.app.now()) {
            skipped_until = Some(skipped_until.map_or(until, |first| first.min(until)));
            continue;
        }
        hold.sent_to(provider);
        let sent = Instant::now();
        let attempt = send(client, out, upstream).await;
        let failure = match attempt {
            Ok(response) => {
                metrics.gateway_upstream_latency(provider, sent.elapsed());
                let status = response.status();
                if !worth_another_route(status) {
                    breakers.succeeded(provider);
                    return Ok(Answered {
                        upstream: upstream.clone(),
                        response,
                    });
                }
                Failed::Status {
                    status,
                    content_type: response.headers().get(header::CONTENT_TYPE).cloned(),
                    body: error_body(response, upstream, out.deadline).await,
                }
            }
            Err(failure) => failure,
        };
        breakers.failed(provider, out.app.now());
        if index + 1 < upstreams.len() {
            metrics.gateway_fallback(provider);
        }
        failed = Some(failure);
    }
    Err(failed
        .or(skipped_until.map(|until| Failed::AllSkipped { until }))
        .unwrap_or(Failed::Unreachable))
}

/// Sends the call to one provider and waits for its response head, at
/// most the first-byte timeout.
async fn send(client: &reqwest::Client, out: &Outbound<'_>, upstream: &Upstream) -> Result<reqwest::Response, Failed> {
    let remaining = out.deadline.saturating_duration_since(Instant::now());
    if remaining.is_zero() {
        return Err(Failed::TimedOut);
    }
    let body = out
        .call
        .upstream_body(upstream.kind, &upstream.upstream_model, out.send_limit);
    let request = client
        .post(out.call.api.upstream_url(&upstream.base_url))
        // The whole call, body included: the stream too ends by then.
        .timeout(remaining)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body);
    let request = with_credentials(request, upstream, out.caller_headers)?;
    let first_byte = out.app.config().gateway.first_byte_timeout.min(remaining);
    match tokio::time::timeout(first_byte, request.send()).await {
        Err(_) => Err(Failed::TimedOut),
        Ok(Err(e)) if e.is_timeout() => Err(Failed::TimedOut),
        Ok(Err(e)) => {
            tracing::warn!(error = %e.without_url(), provider = %upstream.provider_key, "gateway: a provider could not be reached");
            Err(Failed::Unreachable)
        }
        Ok(Ok(response)) => Ok(response),
    }
}

/// The provider's own credentials (and, for Anthropic, the API version and
/// beta flags the caller asked for).
fn with_credentials(
    request: reqwest::RequestBuilder,
    upstream: &Upstream,
    caller: &HeaderMap,
) -> Result<reqwest::RequestBuilder, Failed> {
    let secret = match &upstream.api_key {
        Some(key) => {
            let mut value = HeaderValue::from_str(key.expose_secret()).map_err(|_| {
                tracing::error!(provider = %upstream.provider_key, "gateway: the provider's API key is not a valid header value");
                Failed::Unreachable
            })?;
            value.set_sensitive(true);
            Some(value)
        }
        None => None,
    };
    Ok(match upstream.kind {
        ProviderKind::OpenAi | ProviderKind::OpenAiCompatible => match secret {
            Some(secret) => {
                let mut bearer = HeaderValue::from_bytes(&[b"Bearer ", secret.as_bytes()].concat())
                    .map_err(|_| Failed::Unreachable)?;
                bearer.set_sensitive(true);
                request.header(header::AUTHORIZATION, bearer)
            }
            None => request,
        },
        ProviderKind::Anthropic => {
            let version = caller
                .get("anthropic-version")
                .cloned()
                .unwrap_or(HeaderValue::from_static(DEFAULT_ANTHROPIC_VERSION));
            let mut request = request.header("anthropic-version", version);
            if let Some(secret) = secret {
                request = request.header("x-api-key", secret);
            }
            for beta in caller.get_all("anthropic-beta") {
                request = request.header("anthropic-beta", beta.clone());
            }
            request
        }
    })
}

/// A provider's error body, read up to [`MAX_ERROR_BODY`] bytes before the
/// deadline, with the provider's key removed should it quote it back.
pub async fn error_body(mut response: reqwest::Response, upstream: &Upstream, deadline: Instant) -> Bytes {
    let mut body = BytesMut::new();
    let read = async {
        while body.len() < MAX_ERROR_BODY {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                _ => break,
            }
        }
    };
    let remaining = deadline.saturating_duration_since(Instant::now());
    let _ = tokio::time::timeout(remaining.min(Duration::from_secs(30)), read).await;
    body.truncate(MAX_ERROR_BODY);
    scrub(body.freeze(), upstream)
}

/// Keys shorter than this are not looked for (they would match by chance).
const SHORTEST_SCRUBBED_KEY: usize = 8;

fn scrub(body: Bytes, upstream: &Upstream) -> Bytes {
    let Some(key) = upstream.api_key.as_ref().map(ExposeSecret::expose_secret) else {
        return body;
    };
    if key.len() < SHORTEST_SCRUBBED_KEY {
        return body;
    }
    let text = String::from_utf8_lossy(&body);
    if !text.contains(key) {
        return body;
    }
    Bytes::from(text.replace(key, "[redacted]"))
}
