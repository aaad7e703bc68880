//! POST /v1/chat/completions, /v1/embeddings and /v1/messages: one
//! pipeline. The caller's key, the body, the model and its routes, the
//! reservation; then the routes in order, and the answer passed on as the
//! provider sent it (streamed chunk by chunk), the call settled at the end.

use std::time::Duration;

use axum::{
    Extension,
    body::Body,
    extract::{Request, State},
    http::{HeaderName, HeaderValue, StatusCode, header},
    response::Response,
};
use bytes::Bytes;
use chrono::{DateTime, TimeDelta, Utc};
use futures_util::StreamExt;
use tokio::time::Instant;
use tollgate_auth::{AppState, KeyIdentity};
use tollgate_core::error::ErrorCode;
use tollgate_services::usage::{
    authorize::UsageDenial,
    pricing::Tokens,
    record::Reporter,
    reservations::{self, Ask, OutputLimit, Reservation, Reserved},
    windows,
};
use uuid::Uuid;

use crate::{
    caller,
    error::{GatewayError, denial_code},
    hold::Hold,
    relay::{Relay, Report},
    state::Gateway,
    target::{self, Target},
    upstream::{self, Answered, Outbound, passed_on},
    wire::{self, Api, CallRequest, StreamMeter},
};

/// The largest request body (images travel inline, base64).
pub const MAX_BODY_BYTES: usize = 20 * 1024 * 1024;
/// The header naming a call: the PROXY event's requestId.
pub const REQUEST_ID_HEADER: &str = "x-tollgate-request-id";
/// How long past a call's own deadline its reservation is left before the
/// expiry job may settle it as abandoned.
const EXPIRY_MARGIN: Duration = Duration::from_secs(60);

/// POST /v1/chat/completions.
pub async fn chat(State(app): State<AppState>, Extension(gateway): Extension<Gateway>, request: Request) -> Response {
    serve(Api::Chat, &app, &gateway, request).await
}

/// POST /v1/embeddings.
pub async fn embeddings(
    State(app): State<AppState>,
    Extension(gateway): Extension<Gateway>,
    request: Request,
) -> Response {
    serve(Api::Embeddings, &app, &gateway, request).await
}

/// POST /v1/messages.
pub async fn messages(
    State(app): State<AppState>,
    Extension(gateway): Extension<Gateway>,
    request: Request,
) -> Response {
    serve(Api::Messages, &app, &gateway, request).await
}

/// The metrics' labels, learnt along the way.
#[derive(Default)]
struct Labels {
    model: Option<String>,
    provider: Option<String>,
}

impl Labels {
    fn count(&self, app: &AppState, outcome: &'static str) {
        app.metrics().gateway_request(
            self.provider.as_deref().unwrap_or("none"),
            self.model.as_deref().unwrap_or("unknown"),
            outcome,
        );
    }
}

async fn serve(api: Api, app: &AppState, gateway: &Gateway, request: Request) -> Response {
    let request_id = Uuid::now_v7().to_string();
    let mut labels = Labels::default();
    let response = match proxy(api, app, gateway, request, &request_id, &mut labels).await {
        Ok(response) => response,
        Err(error) => {
            labels.count(app, error.outcome);
            error.into_response(api)
        }
    };
    with_request_id(response, &request_id)
}

/// Adds `x-tollgate-request-id`.
pub fn with_request_id(mut response: Response, request_id: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(request_id) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(REQUEST_ID_HEADER), value);
    }
    response
}

async fn proxy(
    api: Api,
    app: &AppState,
    gateway: &Gateway,
    request: Request,
    request_id: &str,
    labels: &mut Labels,
) -> Result<Response, GatewayError> {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let key = caller::authenticate(app, &parts).await?;
    let call = {
        let body = read_body(body).await?;
        CallRequest::parse(api, &body).map_err(|e| GatewayError::invalid(e.0))?
    };
    let reporter = Reporter {
        organization_id: key.organization_id,
        api_key_id: Some(key.key_id),
        user_id: key.created_by,
    };
    // One statement: the organization's plan and windows, and the
    // catalog's version, which tells whether this instance's copy of the
    // catalog and routes is still current.
    let context = reservations::context(app, reporter).await?;
    let target = target::resolve(app, &key, api, &call.model, context.catalog_version).await?;
    labels.model = Some(target.model_id.clone());
    let reservation = reserve(app, &context, &key, reporter, &call, &target, request_id).await?;
    let mut hold = Hold::new(
        app.clone(),
        reporter,
        reservation,
        call.model.clone(),
        request_id.to_owned(),
    );
    let out = Outbound {
        app,
        gateway,
        call: &call,
        caller_headers: &parts.headers,
        send_limit: reservation.send_limit,
        deadline: started + app.config().gateway.timeout,
    };
    let answered = match upstream::call(&out, &target.upstreams, &mut hold).await {
        Ok(answered) => answered,
        Err(failed) => {
            // Nothing reached the caller and no provider answered: the
            // reservation goes back unrecorded.
            let _ = hold.release().await;
            labels.count(app, failed.outcome());
            return Ok(failed.into_response(api, app.now()));
        }
    };
    labels.provider = Some(answered.upstream.provider_key.clone());
    let report = Report {
        metrics: app.metrics().clone(),
        provider: answered.upstream.provider_key.clone(),
        model: target.model_id,
        started,
    };
    if !answered.response.status().is_success() {
        return Ok(provider_error(api, answered, hold, &report, out.deadline).await);
    }
    if call.stream {
        Ok(relay(answered, &call, hold, report))
    } else {
        Ok(whole(answered, &call, hold, &report).await)
    }
}

/// The body, at most [`MAX_BODY_BYTES`].
async fn read_body(body: Body) -> Result<Bytes, GatewayError> {
    axum::body::to_bytes(body, MAX_BODY_BYTES).await.map_err(|e| {
        let too_long =
            std::error::Error::source(&e).is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
        if too_long {
            GatewayError::too_large(MAX_BODY_BYTES)
        } else {
            GatewayError::invalid("the request body could not be read")
        }
    })
}

/// Holds the call's tokens, or refuses it as the contract says.
async fn reserve(
    app: &AppState,
    context: &reservations::Context,
    key: &KeyIdentity,
    reporter: Reporter,
    call: &CallRequest,
    target: &Target,
    request_id: &str,
) -> Result<Reservation, GatewayError> {
    let output = match call.output_limit {
        Some(limit) => OutputLimit::Caller(limit.max(0)),
        None => OutputLimit::Chosen {
            preferred: target.preferred_output,
        },
    };
    let lifetime = app.config().gateway.timeout + EXPIRY_MARGIN;
    let ask = Ask {
        reporter,
        key_token_limit: key.token_limit,
        key: Some(key),
        model: &call.model,
        provider: target.upstreams.first().map(|u| u.provider_key.as_str()),
        request_id,
        prompt_tokens: call.prompt_estimate,
        output,
        expires_at: context.now + TimeDelta::from_std(lifetime).unwrap_or(TimeDelta::hours(1)),
    };
    match reservations::reserve_in(app, context, &ask).await {
        Ok(Reserved::Granted(reservation)) => Ok(reservation),
        Ok(Reserved::Refused { denial, in_flight }) => {
            app.metrics().gateway_reservation_refused(denial_code(denial));
            let retry_after = if in_flight {
                0
            } else {
                seconds_until_renewal(context, denial)
            };
            Err(GatewayError::refused(denial, in_flight, retry_after))
        }
        Err(error) => {
            if error.code() == ErrorCode::RateLimited {
                app.metrics().gateway_reservation_refused("RATE_LIMITED");
            }
            Err(error.into())
        }
    }
}

/// Seconds until a refused budget or daily limit renews: the period's end,
/// or the next 00:00 UTC.
fn seconds_until_renewal(context: &reservations::Context, denial: UsageDenial) -> u64 {
    let now = context.now;
    let renews: DateTime<Utc> = match denial {
        UsageDenial::DailyRequests => windows::utc_midnight(now) + TimeDelta::days(1),
        _ => context.windows.period.end,
    };
    (renews - now).num_seconds().max(1).unsigned_abs()
}

/// A provider's error that another route would not cure (a 400, say): no
/// tokens were spent, so the reservation goes back, and the caller gets the
/// error as the provider sent it. A refusal of the gateway's own
/// credentials is the gateway's fault, not the caller's key's, and says so.
async fn provider_error(api: Api, answered: Answered, hold: Hold, report: &Report, deadline: Instant) -> Response {
    let status = answered.response.status();
    let content_type = answered.response.headers().get(header::CONTENT_TYPE).cloned();
    let body = upstream::error_body(answered.response, &answered.upstream, deadline).await;
    let _ = hold.release().await;
    report
        .metrics
        .gateway_request(&report.provider, &report.model, "upstream_error");
    if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
        tracing::error!(provider = %report.provider, %status, "gateway: a provider refused the gateway's credentials");
        return GatewayError::provider_refused_credentials().into_response(api);
    }
    passed_on(status, content_type, body)
}

/// A whole (non-streamed) answer: read, settled with the provider's usage
/// (or the gateway's estimate), passed on.
async fn whole(answered: Answered, call: &CallRequest, hold: Hold, report: &Report) -> Response {
    let Answered { upstream, response } = answered;
    let status = response.status();
    let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
    let body = match response.bytes().await {
        Ok(body) => body,
        Err(e) => {
            // The provider may have billed the prompt: dropping the hold
            // records it, estimated.
            drop(hold);
            let (error, outcome) = if e.is_timeout() {
                (GatewayError::timed_out(), "timeout")
            } else {
                (GatewayError::unreachable(), "cut")
            };
            report.metrics.gateway_request(&report.provider, &report.model, outcome);
            return error.into_response(call.api);
        }
    };
    report
        .metrics
        .gateway_first_token(&report.provider, report.started.elapsed());
    let (tokens, estimated) = match wire::usage_of_response(call.api, &body) {
        Some(usage) => (
            Tokens {
                prompt: usage.prompt,
                cached: usage.cached,
                completion: usage.completion,
            },
            false,
        ),
        None => (
            Tokens {
                prompt: hold.prompt_estimate(),
                cached: 0,
                completion: wire::estimate_text_tokens(
                    &upstream.upstream_model,
                    &wire::generated_text(call.api, &body),
                ),
            },
            true,
        ),
    };
    // Awaited, so the caller who reads the answer finds the event recorded;
    // in a task of its own, so a caller who hangs up now does not stop it.
    let _ = hold.settle(tokens, estimated).await;
    report.metrics.gateway_request(&report.provider, &report.model, "ok");
    passed_on(status, content_type, body)
}

/// A streamed answer: relayed chunk by chunk, settled when it ends.
fn relay(answered: Answered, call: &CallRequest, hold: Hold, report: Report) -> Response {
    let Answered { upstream, response } = answered;
    let status = response.status();
    let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
    let meter = StreamMeter::new(call.api, &upstream.upstream_model, call.caller_wants_usage);
    let relay = Relay::new(response.bytes_stream().boxed(), meter, hold, report);
    let mut response = Response::new(Body::from_stream(relay));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        content_type.unwrap_or(HeaderValue::from_static("text/event-stream")),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Proxies in front (nginx) must not hold the stream back.
    headers.insert(
        HeaderName::from_static("x-accel-buffering"),
        HeaderValue::from_static("no"),
    );
    response
}
