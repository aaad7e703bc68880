//! A fake LLM provider on 127.0.0.1:0 that speaks the OpenAI and
//! Anthropic wire protocols, for the gateway's integration tests, its SDK
//! tests and its benchmark.
//!
//! - `POST /v1/chat/completions`: OpenAI Chat Completions, a
//!   `chat.completion` object, or with `stream: true` server-sent
//!   `chat.completion.chunk`s ending in `data: [DONE]`; the usage chunk
//!   (`choices: []`) comes only when the request sets
//!   `stream_options.include_usage`, as OpenAI does.
//! - `POST /v1/embeddings`: an OpenAI embeddings `list`, floats or
//!   base64 (`encoding_format`, which the Node SDK sets by default).
//! - `POST /v1/messages`: Anthropic Messages, a `message` object, or with
//!   `stream: true` its event stream (`message_start`,
//!   `content_block_start`, `ping`, `content_block_delta`,
//!   `content_block_stop`, `message_delta`, `message_stop`).
//! - `GET /v1/models`: an OpenAI model list.
//!
//! What each call does is scripted with [`FakeLlm::push`] (errors, slow
//! starts, slow or cut streams, usage or none); every request is recorded.
//! The OpenAI paths want `Authorization: Bearer <anything>`, the Anthropic
//! one `x-api-key: <anything>` or a bearer token (the Anthropic Node SDK
//! 1.x sends its API key so): any key is accepted, a missing one is a 401
//! in the API's own error shape.
//!
//! This file depends only on crates of the root package (axum, tokio,
//! serde_json, futures-util, http) and on nothing else in the harness, so
//! a benchmark can include it with `#[path]`.

// Included by the test harness and by the benchmark, each of which uses
// only part of it.
#![allow(dead_code)]

use std::{
    collections::VecDeque,
    io,
    net::SocketAddr,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::{
    Json, Router,
    body::{Body, Bytes},
    extract::{DefaultBodyLimit, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use futures_util::stream;
use serde_json::{Map, Value, json};
use tokio::{net::TcpListener, task::JoinHandle};

/// A running fake provider; it stops serving when dropped.
pub struct FakeLlm {
    /// Where it listens.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

/// One request the fake received.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// The path, e.g. `/v1/chat/completions`.
    pub path: String,
    /// Every header, as sent.
    pub headers: http::HeaderMap,
    /// The JSON body; `Null` when there was none or it was not JSON.
    pub body: serde_json::Value,
}

impl Recorded {
    /// The value of header `name`, when present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }
}

/// How the fake answers one request. `Behaviour::default()` is a normal,
/// immediate answer with usage; change fields with struct update syntax:
/// `Behaviour { status: 503, ..Behaviour::default() }`.
#[derive(Clone, Debug)]
pub struct Behaviour {
    /// The HTTP status (default 200); any other than 2xx answers with the
    /// API's error body (OpenAI `{"error": {...}}`, Anthropic
    /// `{"type": "error", "error": {...}}`) instead of a completion.
    pub status: u16,
    /// How long to wait before sending the status and headers: a slow
    /// start (default none).
    pub delay_before_headers: Duration,
    /// The generated text (default "Hello from the fake.").
    pub text: String,
    /// Streams: how many content deltas the text is split into (default
    /// 4; some may be empty when the text is shorter; 0 sends none).
    pub chunks: usize,
    /// Streams: the pause before each content delta (default none).
    pub chunk_interval: Duration,
    /// The token counts to report (default `Some(FakeUsage::default())`).
    /// `None`: the answer carries no usage at all, as some providers do:
    /// no `usage` in JSON, no usage chunk in OpenAI streams, no `usage` in
    /// Anthropic's `message_start` and `message_delta`.
    pub usage: Option<FakeUsage>,
    /// Streams: after this many content deltas, close the connection
    /// abruptly (the chunked body never ends properly, no `[DONE]` nor
    /// `message_stop`). Default `None`: the stream ends normally.
    pub cut_after_chunks: Option<usize>,
    /// OpenAI streams asked for usage: report it on the last content chunk
    /// (with `finish_reason: "stop"` and non-empty `choices`), as some
    /// OpenAI-compatible services do, instead of in a separate
    /// `choices: []` chunk. Default false.
    pub usage_chunk_has_choices: bool,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            status: 200,
            delay_before_headers: Duration::ZERO,
            text: "Hello from the fake.".to_owned(),
            chunks: 4,
            chunk_interval: Duration::ZERO,
            usage: Some(FakeUsage::default()),
            cut_after_chunks: None,
            usage_chunk_has_choices: false,
        }
    }
}

/// Token counts as the fake reports them, in OpenAI's terms; Anthropic's
/// are derived: `input_tokens = prompt - cached - cache_creation`,
/// `cache_read_input_tokens = cached`, `cache_creation_input_tokens =
/// cache_creation`, `output_tokens = completion`.
#[derive(Clone, Copy, Debug)]
pub struct FakeUsage {
    /// All prompt tokens, cached ones included (default 12).
    pub prompt: i64,
    /// Prompt tokens read from the cache (default 0).
    pub cached: i64,
    /// Generated tokens (default 5).
    pub completion: i64,
    /// Prompt tokens written to the cache; Anthropic only (default 0).
    pub cache_creation: i64,
}

impl Default for FakeUsage {
    fn default() -> Self {
        Self {
            prompt: 12,
            cached: 0,
            completion: 5,
            cache_creation: 0,
        }
    }
}

impl FakeUsage {
    /// Anthropic's `input_tokens`: the prompt tokens neither read from nor
    /// written to the cache.
    fn uncached_input(&self) -> i64 {
        (self.prompt - self.cached - self.cache_creation).max(0)
    }
}

/// The models `GET /v1/models` lists.
const MODELS: [&str; 4] = ["gpt-4o-mini", "gpt-4o", "text-embedding-3-small", "claude-sonnet-4-5"];
/// How many numbers each fake embedding has.
const EMBEDDING_DIMENSIONS: usize = 8;

/// What the handlers share with the [`FakeLlm`] handle.
struct Shared {
    queue: Mutex<VecDeque<Behaviour>>,
    requests: Mutex<Vec<Recorded>>,
    recording: AtomicBool,
    in_flight: AtomicUsize,
    cancelled: AtomicUsize,
    next_id: AtomicU64,
}

impl Shared {
    fn next_behaviour(&self) -> Behaviour {
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front()
            .unwrap_or_default()
    }

    fn record(&self, path: &str, headers: &HeaderMap, body: &Option<Value>) {
        if !self.recording.load(Ordering::Relaxed) {
            return;
        }
        let recorded = Recorded {
            path: path.to_owned(),
            headers: headers.clone(),
            body: body.clone().unwrap_or(Value::Null),
        };
        self.requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(recorded);
    }

    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }
}

impl FakeLlm {
    /// Starts on 127.0.0.1:0.
    pub async fn start() -> Self {
        let shared = Arc::new(Shared {
            queue: Mutex::new(VecDeque::new()),
            requests: Mutex::new(Vec::new()),
            recording: AtomicBool::new(true),
            in_flight: AtomicUsize::new(0),
            cancelled: AtomicUsize::new(0),
            next_id: AtomicU64::new(0),
        });
        let router = Router::new()
            .route(
                "/v1/chat/completions",
                post(|state, headers, body| answer(Endpoint::Chat, state, headers, body)),
            )
            .route(
                "/v1/embeddings",
                post(|state, headers, body| answer(Endpoint::Embeddings, state, headers, body)),
            )
            .route(
                "/v1/messages",
                post(|state, headers, body| answer(Endpoint::Messages, state, headers, body)),
            )
            .route(
                "/v1/models",
                get(|state, headers| answer(Endpoint::Models, state, headers, Bytes::new())),
            )
            // The gateway takes bodies up to 20 MiB (images); so does the
            // provider behind it.
            .layer(DefaultBodyLimit::disable())
            .with_state(shared.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding the fake LLM");
        let addr = listener.local_addr().expect("the fake LLM's address");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self { addr, shared, server }
    }

    /// OpenAI-style base URL, version included: http://addr/v1
    pub fn openai_base(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Anthropic-style base URL, without the version: http://addr
    pub fn anthropic_base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Queue behaviours for the next requests (FIFO); when the queue is
    /// empty, `Behaviour::default()` (a normal answer). Completions,
    /// messages and embeddings take one each; the model list and requests
    /// refused for a missing key or a body that is not JSON take none.
    pub fn push(&self, b: Behaviour) {
        self.shared
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_back(b);
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// How many requests are in flight right now (streams count until they
    /// end or are dropped).
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::SeqCst)
    }

    /// How many streams were dropped by the client before they ended (the
    /// gateway stopped the upstream call). Streams the fake cut itself
    /// (`cut_after_chunks`) do not count.
    pub fn streams_cancelled(&self) -> usize {
        self.shared.cancelled.load(Ordering::SeqCst)
    }

    /// Whether to keep every request for [`FakeLlm::requests`] (on at
    /// start). A benchmark turns it off, so that millions of requests
    /// neither grow memory nor contend on the record's lock.
    pub fn set_recording(&self, on: bool) {
        self.shared.recording.store(on, Ordering::Relaxed);
    }
}

impl Drop for FakeLlm {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Counts a request in flight for as long as it lives.
struct InFlight(Arc<Shared>);

impl InFlight {
    fn enter(shared: &Arc<Shared>) -> Self {
        shared.in_flight.fetch_add(1, Ordering::SeqCst);
        Self(shared.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Which API a path belongs to: it decides the credential header and the
/// error shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Api {
    OpenAi,
    Anthropic,
}

impl Api {
    /// Whether the request carries a credential this API takes (any value
    /// will do): OpenAI a bearer token; Anthropic `x-api-key`, or a bearer
    /// token, which is how its Node SDK (1.x) sends the API key.
    fn authorized(self, headers: &HeaderMap) -> bool {
        let value = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let bearer = value("authorization")
            .and_then(|auth| auth.strip_prefix("Bearer "))
            .is_some_and(|key| !key.trim().is_empty());
        match self {
            Api::OpenAi => bearer,
            Api::Anthropic => bearer || value("x-api-key").is_some_and(|key| !key.is_empty()),
        }
    }

    /// The header each provider names its request id in.
    fn request_id_header(self) -> &'static str {
        match self {
            Api::OpenAi => "x-request-id",
            Api::Anthropic => "request-id",
        }
    }

    /// The API's error body for `status`, with that status.
    fn error(self, status: u16, message: &str) -> Response {
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = match self {
            Api::OpenAi => {
                let (kind, code) = openai_error_kind(status);
                json!({ "error": { "message": message, "type": kind, "param": null, "code": code } })
            }
            Api::Anthropic => {
                json!({ "type": "error", "error": { "type": anthropic_error_kind(status), "message": message } })
            }
        };
        (code, Json(body)).into_response()
    }
}

/// OpenAI's `error.type` and `error.code` for a status.
fn openai_error_kind(status: u16) -> (&'static str, Option<&'static str>) {
    match status {
        401 => ("invalid_request_error", Some("invalid_api_key")),
        403 => ("invalid_request_error", Some("unsupported_country_region_territory")),
        404 => ("invalid_request_error", Some("model_not_found")),
        429 => ("requests", Some("rate_limit_exceeded")),
        500..=599 => ("server_error", None),
        _ => ("invalid_request_error", None),
    }
}

/// Anthropic's `error.type` for a status.
fn anthropic_error_kind(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        500..=599 => "api_error",
        _ => "invalid_request_error",
    }
}

/// The routes the fake serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Endpoint {
    Chat,
    Embeddings,
    Messages,
    Models,
}

impl Endpoint {
    fn api(self) -> Api {
        match self {
            Endpoint::Messages => Api::Anthropic,
            _ => Api::OpenAi,
        }
    }

    fn path(self) -> &'static str {
        match self {
            Endpoint::Chat => "/v1/chat/completions",
            Endpoint::Embeddings => "/v1/embeddings",
            Endpoint::Messages => "/v1/messages",
            Endpoint::Models => "/v1/models",
        }
    }
}

/// Records the request, checks its key and body, then answers as the next
/// behaviour says.
async fn answer(endpoint: Endpoint, State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let in_flight = InFlight::enter(&shared);
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    shared.record(endpoint.path(), &headers, &parsed);
    let api = endpoint.api();
    if !api.authorized(&headers) {
        let message = match api {
            Api::OpenAi => "You didn't provide an API key (Authorization: Bearer).",
            Api::Anthropic => "x-api-key header is required",
        };
        return api.error(401, message);
    }
    if endpoint == Endpoint::Models {
        return Json(models()).into_response();
    }
    let Some(request) = parsed.filter(Value::is_object) else {
        return api.error(400, "The body is not a JSON object.");
    };
    let behaviour = shared.next_behaviour();
    if !behaviour.delay_before_headers.is_zero() {
        tokio::time::sleep(behaviour.delay_before_headers).await;
    }
    if !(200..300).contains(&behaviour.status) {
        let message = format!("The fake upstream was told to answer {}.", behaviour.status);
        return api.error(behaviour.status, &message);
    }
    let call = Call::new(&shared, &request, behaviour);
    let mut response = match endpoint {
        Endpoint::Chat if call.streamed => sse(openai_stream(&call), &call.behaviour, in_flight),
        Endpoint::Chat => Json(openai_completion(&call)).into_response(),
        Endpoint::Embeddings => Json(embeddings(&call, &request)).into_response(),
        Endpoint::Messages if call.streamed => sse(anthropic_stream(&call), &call.behaviour, in_flight),
        Endpoint::Messages => Json(anthropic_message(&call)).into_response(),
        Endpoint::Models => Json(models()).into_response(),
    };
    if let Ok(value) = HeaderValue::from_str(&format!("req_fake{}", call.number)) {
        response.headers_mut().insert(api.request_id_header(), value);
    }
    response
}

/// What an answer is made of.
struct Call {
    number: u64,
    created: u64,
    model: String,
    streamed: bool,
    include_usage: bool,
    behaviour: Behaviour,
}

impl Call {
    fn new(shared: &Shared, request: &Value, behaviour: Behaviour) -> Self {
        Self {
            number: shared.next_id(),
            created: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|elapsed| elapsed.as_secs())
                .unwrap_or_default(),
            model: request["model"].as_str().unwrap_or("fake-model").to_owned(),
            streamed: request["stream"].as_bool().unwrap_or(false),
            include_usage: request["stream_options"]["include_usage"].as_bool().unwrap_or(false),
            behaviour,
        }
    }

    fn openai_id(&self) -> String {
        format!("chatcmpl-fake{}", self.number)
    }

    fn anthropic_id(&self) -> String {
        format!("msg_fake{}", self.number)
    }
}

/// OpenAI's usage object, details included.
fn openai_usage(usage: &FakeUsage) -> Value {
    json!({
        "prompt_tokens": usage.prompt,
        "completion_tokens": usage.completion,
        "total_tokens": usage.prompt + usage.completion,
        "prompt_tokens_details": { "cached_tokens": usage.cached, "audio_tokens": 0 },
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0
        }
    })
}

/// A `chat.completion` object.
fn openai_completion(call: &Call) -> Value {
    let mut completion = json!({
        "id": call.openai_id(),
        "object": "chat.completion",
        "created": call.created,
        "model": call.model,
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": call.behaviour.text, "refusal": null, "annotations": [] },
            "logprobs": null,
            "finish_reason": "stop"
        }],
        "service_tier": "default",
        "system_fingerprint": "fp_fake"
    });
    if let Some(usage) = &call.behaviour.usage {
        completion["usage"] = openai_usage(usage);
    }
    completion
}

/// Where a frame sits in its stream: before the content, content, after.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    Head,
    Content,
    Tail,
}

/// One step of a stream: a frame to send, or the abrupt end.
enum Step {
    /// Bytes to send; content frames are the ones paced by
    /// `chunk_interval` and counted by `cut_after_chunks`.
    Frame { bytes: Bytes, part: Part },
    /// Close the connection without ending the body.
    Cut,
}

/// With `cut_after_chunks`, the head, the first `after` content frames and
/// a cut (no tail: no `[DONE]`, no `message_stop`); without, all of it.
fn cut(steps: Vec<Step>, after: Option<usize>) -> Vec<Step> {
    let Some(after) = after else { return steps };
    let mut content = 0;
    let mut kept: Vec<Step> = steps
        .into_iter()
        .filter(|step| match step {
            Step::Frame { part: Part::Head, .. } => true,
            Step::Frame {
                part: Part::Content, ..
            } => {
                content += 1;
                content <= after
            }
            _ => false,
        })
        .collect();
    kept.push(Step::Cut);
    kept
}

/// `text` in `parts` pieces of nearly equal length in characters.
fn split(text: &str, parts: usize) -> Vec<&str> {
    let bounds: Vec<usize> = text.char_indices().map(|(at, _)| at).chain([text.len()]).collect();
    let chars = bounds.len() - 1;
    (0..parts)
        .map(|part| &text[bounds[part * chars / parts]..bounds[(part + 1) * chars / parts]])
        .collect()
}

/// One OpenAI server-sent event.
fn data(value: &Value) -> Bytes {
    Bytes::from(format!("data: {value}\n\n"))
}

/// The steps of an OpenAI stream: the role chunk, the content chunks, the
/// finish chunk, the usage chunk when asked for, and `[DONE]`.
fn openai_stream(call: &Call) -> Vec<Step> {
    let behaviour = &call.behaviour;
    let usage = behaviour.usage.filter(|_| call.include_usage);
    let usage_on_choices = usage.is_some() && behaviour.usage_chunk_has_choices;
    let id = call.openai_id();
    let frame = |part: Part, choices: Value, counts: Option<&FakeUsage>| {
        let mut chunk = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": call.created,
            "model": call.model,
            "service_tier": "default",
            "system_fingerprint": "fp_fake",
            "choices": choices,
        });
        // With include_usage, OpenAI puts `usage: null` on every chunk but
        // the one with the counts.
        if usage.is_some() {
            chunk["usage"] = counts.map(openai_usage).unwrap_or(Value::Null);
        }
        Step::Frame {
            bytes: data(&chunk),
            part,
        }
    };
    let choice = |delta: Value, finish: Option<&str>| json!([{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish }]);
    let role = json!({ "role": "assistant", "content": "", "refusal": null });
    let mut steps = vec![frame(Part::Head, choice(role, None), None)];
    let pieces = split(&behaviour.text, behaviour.chunks);
    let last = pieces.len().checked_sub(1);
    for (index, piece) in pieces.iter().enumerate() {
        let delta = json!({ "content": piece });
        steps.push(match &usage {
            // The last content chunk ends the choice and carries the counts.
            Some(counts) if usage_on_choices && Some(index) == last => {
                frame(Part::Content, choice(delta, Some("stop")), Some(counts))
            }
            _ => frame(Part::Content, choice(delta, None), None),
        });
    }
    if !usage_on_choices || last.is_none() {
        let counts = usage.as_ref().filter(|_| usage_on_choices);
        steps.push(frame(Part::Tail, choice(json!({}), Some("stop")), counts));
    }
    if let Some(counts) = usage.as_ref().filter(|_| !usage_on_choices) {
        steps.push(frame(Part::Tail, json!([]), Some(counts)));
    }
    steps.push(Step::Frame {
        bytes: Bytes::from_static(b"data: [DONE]\n\n"),
        part: Part::Tail,
    });
    cut(steps, behaviour.cut_after_chunks)
}

/// Anthropic's usage object.
fn anthropic_usage(usage: &FakeUsage, output_tokens: i64) -> Value {
    json!({
        "input_tokens": usage.uncached_input(),
        "cache_creation_input_tokens": usage.cache_creation,
        "cache_read_input_tokens": usage.cached,
        "output_tokens": output_tokens
    })
}

/// A Messages API `message`, with `content` and usage as given.
fn anthropic_envelope(call: &Call, content: Value, stop_reason: Option<&str>, usage: Option<Value>) -> Value {
    let mut message = json!({
        "id": call.anthropic_id(),
        "type": "message",
        "role": "assistant",
        "model": call.model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": null,
    });
    if let Some(usage) = usage {
        message["usage"] = usage;
    }
    message
}

/// A non-streamed Anthropic answer.
fn anthropic_message(call: &Call) -> Value {
    let behaviour = &call.behaviour;
    let usage = behaviour.usage.map(|usage| anthropic_usage(&usage, usage.completion));
    anthropic_envelope(
        call,
        json!([{ "type": "text", "text": behaviour.text }]),
        Some("end_turn"),
        usage,
    )
}

/// One Anthropic server-sent event: its name, and its data.
fn event(name: &str, value: &Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {value}\n\n"))
}

/// The steps of an Anthropic stream. `message_start` reports the input and
/// one output token, `message_delta` the cumulative output, as the API does.
fn anthropic_stream(call: &Call) -> Vec<Step> {
    let behaviour = &call.behaviour;
    let frame = |part: Part, name: &str, value: Value| Step::Frame {
        bytes: event(name, &value),
        part,
    };
    let start_usage = behaviour
        .usage
        .map(|usage| anthropic_usage(&usage, usage.completion.min(1)));
    let message = anthropic_envelope(call, json!([]), None, start_usage);
    let block = json!({ "type": "text", "text": "" });
    let mut steps = vec![
        frame(
            Part::Head,
            "message_start",
            json!({ "type": "message_start", "message": message }),
        ),
        frame(
            Part::Head,
            "content_block_start",
            json!({ "type": "content_block_start", "index": 0, "content_block": block }),
        ),
        frame(Part::Head, "ping", json!({ "type": "ping" })),
    ];
    for piece in split(&behaviour.text, behaviour.chunks) {
        let delta = json!({ "type": "text_delta", "text": piece });
        steps.push(frame(
            Part::Content,
            "content_block_delta",
            json!({ "type": "content_block_delta", "index": 0, "delta": delta }),
        ));
    }
    steps.push(frame(
        Part::Tail,
        "content_block_stop",
        json!({ "type": "content_block_stop", "index": 0 }),
    ));
    let mut message_delta =
        json!({ "type": "message_delta", "delta": { "stop_reason": "end_turn", "stop_sequence": null } });
    if let Some(usage) = behaviour.usage {
        message_delta["usage"] = json!({ "output_tokens": usage.completion });
    }
    steps.push(frame(Part::Tail, "message_delta", message_delta));
    steps.push(frame(Part::Tail, "message_stop", json!({ "type": "message_stop" })));
    cut(steps, behaviour.cut_after_chunks)
}

/// Notes, when dropped, whether its stream was abandoned by the client.
struct StreamGuard {
    shared: Arc<Shared>,
    finished: bool,
    _in_flight: InFlight,
}

impl StreamGuard {
    /// The stream reached its end (or the fake cut it): not a cancellation.
    fn finish(&mut self) {
        self.finished = true;
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if !self.finished {
            self.shared.cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Where a stream is: the steps left, and its guard.
struct StreamState {
    steps: std::vec::IntoIter<Step>,
    interval: Duration,
    guard: StreamGuard,
}

/// A `text/event-stream` response that sends `steps` one by one, pausing
/// `chunk_interval` before each content frame.
fn sse(steps: Vec<Step>, behaviour: &Behaviour, in_flight: InFlight) -> Response {
    let shared = in_flight.0.clone();
    let state = StreamState {
        steps: steps.into_iter(),
        interval: behaviour.chunk_interval,
        guard: StreamGuard {
            shared,
            finished: false,
            _in_flight: in_flight,
        },
    };
    let body = stream::unfold(state, |mut state| async move {
        match state.steps.next() {
            None => {
                state.guard.finish();
                None
            }
            Some(Step::Frame { bytes, part }) => {
                if part == Part::Content && !state.interval.is_zero() {
                    tokio::time::sleep(state.interval).await;
                }
                Some((Ok(bytes), state))
            }
            Some(Step::Cut) => {
                // Let hyper flush what was sent (headers included) first:
                // a provider that dies mid-stream has started answering.
                tokio::task::yield_now().await;
                // An error ends the body without its last chunk: hyper
                // closes the connection, as a provider that dies would.
                state.guard.finish();
                let error = io::Error::new(io::ErrorKind::ConnectionAborted, "the fake cut the stream");
                Some((Err(error), state))
            }
        }
    });
    let mut response = Body::from_stream(body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// An embeddings `list`: one embedding per input, as floats or, when the
/// request asks (as the Node SDK does by default), base64 of little-endian
/// float32s.
fn embeddings(call: &Call, request: &Value) -> Value {
    let inputs = match &request["input"] {
        // A list of strings or of token lists is one input each; a list
        // of numbers is one tokenized input.
        Value::Array(items) if items.first().is_some_and(|first| first.is_string() || first.is_array()) => items.len(),
        _ => 1,
    };
    let base64 = request["encoding_format"].as_str() == Some("base64");
    let data: Vec<Value> = (0..inputs)
        .map(|index| {
            let numbers: Vec<f32> = (0..EMBEDDING_DIMENSIONS)
                .map(|at| (index * EMBEDDING_DIMENSIONS + at + 1) as f32 / 100.0)
                .collect();
            let embedding = if base64 {
                let bytes: Vec<u8> = numbers.iter().flat_map(|n| n.to_le_bytes()).collect();
                Value::String(base64_encode(&bytes))
            } else {
                json!(numbers)
            };
            json!({ "object": "embedding", "index": index, "embedding": embedding })
        })
        .collect();
    let mut list = Map::new();
    list.insert("object".to_owned(), json!("list"));
    list.insert("data".to_owned(), Value::Array(data));
    list.insert("model".to_owned(), json!(call.model));
    if let Some(usage) = call.behaviour.usage {
        list.insert(
            "usage".to_owned(),
            json!({ "prompt_tokens": usage.prompt, "total_tokens": usage.prompt }),
        );
    }
    Value::Object(list)
}

/// Standard base64 with padding (the root package has no base64 crate).
fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let n = group
            .iter()
            .enumerate()
            .fold(0u32, |n, (at, byte)| n | u32::from(*byte) << (16 - 8 * at));
        for at in 0..4 {
            if at <= group.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * at)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// OpenAI's model list.
fn models() -> Value {
    let data: Vec<Value> = MODELS
        .iter()
        .map(|id| json!({ "id": id, "object": "model", "created": 1_700_000_000, "owned_by": "fake" }))
        .collect();
    json!({ "object": "list", "data": data })
}
