//! `/metrics` in the Prometheus text format (version 0.0.4): HTTP requests
//! and GraphQL operations with latency histograms, the database pools,
//! open websockets, the usage this instance recorded, and the LLM
//! gateway's calls.
//!
//! Written by hand over atomics and short-held locks rather than with a
//! metrics crate: the set is small and fixed, and each app (tests run many
//! in one process) keeps its own numbers.

mod gateway;
mod histogram;
mod text;

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicI64, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    extract::{MatchedPath, Request, State},
    http::{HeaderValue, header},
    middleware::Next,
    response::{IntoResponse, Response},
};

use tollgate_db::DbPool;

use histogram::Histogram;
use text::Exposition;

/// Distinct operation names kept apart; beyond this, names are counted
/// under `other` so that clients cannot grow the series without bound.
const MAX_OPERATION_NAMES: usize = 200;
/// Longest operation name kept apart: a GraphQL name may run to the body
/// limit, and 200 of those would hold hundreds of megabytes. Longer ones
/// are counted under `other` too.
const MAX_OPERATION_NAME_LEN: usize = 100;

/// One application's counters, cheap to clone.
#[derive(Clone, Default)]
pub struct Metrics {
    inner: Arc<Registry>,
}

#[derive(Default)]
struct Registry {
    http: Mutex<HashMap<HttpKey, Series>>,
    operations: Mutex<HashMap<OperationKey, Series>>,
    websockets_open: AtomicI64,
    websockets_total: AtomicU64,
    usage_events: AtomicU64,
    usage_tokens: AtomicU64,
    gateway: Mutex<gateway::GatewaySeries>,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct HttpKey {
    method: String,
    route: String,
}

/// Which operation: its type (`query`, `mutation`, `subscription`,
/// `unknown` when the document did not parse) and its name (`anonymous`
/// without one).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct OperationKey {
    kind: &'static str,
    name: String,
}

/// Counts by outcome plus a latency histogram.
#[derive(Default)]
struct Series {
    outcomes: HashMap<String, u64>,
    latency: Histogram,
}

impl Series {
    fn observe(&mut self, outcome: &str, elapsed: Option<Duration>) {
        *self.outcomes.entry(outcome.to_owned()).or_default() += 1;
        if let Some(elapsed) = elapsed {
            self.latency.observe(elapsed);
        }
    }
}

impl Metrics {
    fn record_http(&self, key: HttpKey, status: u16, elapsed: Duration) {
        let mut http = lock(&self.inner.http);
        http.entry(key).or_default().observe(&status.to_string(), Some(elapsed));
    }

    /// Counts a GraphQL operation; `elapsed` is left out for subscriptions,
    /// whose length says nothing about the server's speed.
    pub fn record_operation(&self, kind: &'static str, name: &str, outcome: &str, elapsed: Option<Duration>) {
        let mut operations = lock(&self.inner.operations);
        let mut key = OperationKey {
            kind,
            name: name.to_owned(),
        };
        let too_many = !operations.contains_key(&key) && operations.len() >= MAX_OPERATION_NAMES;
        if too_many || key.name.len() > MAX_OPERATION_NAME_LEN {
            key.name = "other".to_owned();
        }
        operations.entry(key).or_default().observe(outcome, elapsed);
    }

    /// Counts usage events this instance wrote (repeats of a requestId
    /// excluded) and their tokens.
    pub fn usage_recorded(&self, events: u64, tokens: u64) {
        self.inner.usage_events.fetch_add(events, Ordering::Relaxed);
        self.inner.usage_tokens.fetch_add(tokens, Ordering::Relaxed);
    }

    /// Counts a websocket as open until the returned guard is dropped.
    pub fn websocket_opened(&self) -> OpenWebsocket {
        self.inner.websockets_open.fetch_add(1, Ordering::Relaxed);
        self.inner.websockets_total.fetch_add(1, Ordering::Relaxed);
        OpenWebsocket { metrics: self.clone() }
    }
}

/// Holds one place in the open-websockets gauge.
pub struct OpenWebsocket {
    metrics: Metrics,
}

impl Drop for OpenWebsocket {
    fn drop(&mut self) {
        self.metrics.inner.websockets_open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Middleware: counts every routed request by method, route pattern and
/// status, with its latency.
pub async fn track_http(State(metrics): State<Metrics>, request: Request, next: Next) -> Response {
    let key = HttpKey {
        method: request.method().as_str().to_owned(),
        // Only routed requests get here (`route_layer`), so the pattern is
        // known; it bounds the series where the raw path would not.
        route: request
            .extensions()
            .get::<MatchedPath>()
            .map_or("unmatched", MatchedPath::as_str)
            .to_owned(),
    };
    let started = Instant::now();
    let response = next.run(request).await;
    metrics.record_http(key, response.status().as_u16(), started.elapsed());
    response
}

/// The `/metrics` answer for a rendered text.
pub fn exposition(text: String) -> Response {
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// What the exposition shows besides the counters kept here: read from
/// the running application when it is rendered.
pub struct Readings<'a> {
    /// The pools by name (`requests`, `jobs`).
    pub pools: [(&'static str, &'a DbPool); 2],
    /// SQL statements run so far through the request pool.
    pub statements: u64,
    /// Seconds since the instance started.
    pub uptime_secs: u64,
}

/// Every metric, in the text format.
pub fn render(metrics: &Metrics, readings: &Readings<'_>) -> String {
    let mut out = Exposition::default();
    render_http(metrics, &mut out);
    render_operations(metrics, &mut out);
    render_pools(readings, &mut out);
    gateway::render(metrics, &mut out);
    render_counters(metrics, readings, &mut out);
    out.finish()
}

fn render_http(metrics: &Metrics, out: &mut Exposition) {
    let http = lock(&metrics.inner.http);
    let mut keys: Vec<&HttpKey> = http.keys().collect();
    keys.sort_by(|a, b| (&a.route, &a.method).cmp(&(&b.route, &b.method)));
    out.family(
        "tollgate_http_requests_total",
        "counter",
        "HTTP requests by method, route and status.",
    );
    for key in &keys {
        let mut statuses: Vec<_> = http[*key].outcomes.iter().collect();
        statuses.sort();
        for (status, count) in statuses {
            out.sample(
                "tollgate_http_requests_total",
                &[("method", &key.method), ("route", &key.route), ("status", status)],
                *count,
            );
        }
    }
    out.family(
        "tollgate_http_request_duration_seconds",
        "histogram",
        "Time to the response head, by method and route (websockets: to the upgrade).",
    );
    for key in &keys {
        http[*key].latency.render(
            out,
            "tollgate_http_request_duration_seconds",
            &[("method", &key.method), ("route", &key.route)],
        );
    }
}

fn render_operations(metrics: &Metrics, out: &mut Exposition) {
    let operations = lock(&metrics.inner.operations);
    let mut keys: Vec<&OperationKey> = operations.keys().collect();
    keys.sort();
    out.family(
        "tollgate_graphql_operations_total",
        "counter",
        "GraphQL operations by type, operation name and outcome (ok, or the first error's code).",
    );
    for key in &keys {
        let mut outcomes: Vec<_> = operations[*key].outcomes.iter().collect();
        outcomes.sort();
        for (outcome, count) in outcomes {
            out.sample(
                "tollgate_graphql_operations_total",
                &[("type", key.kind), ("operation", &key.name), ("outcome", outcome)],
                *count,
            );
        }
    }
    out.family(
        "tollgate_graphql_operation_duration_seconds",
        "histogram",
        "Time to execute a query or mutation, by type and operation name.",
    );
    for key in keys.iter().filter(|key| key.kind != "subscription") {
        operations[*key].latency.render(
            out,
            "tollgate_graphql_operation_duration_seconds",
            &[("type", key.kind), ("operation", &key.name)],
        );
    }
}

fn render_pools(readings: &Readings<'_>, out: &mut Exposition) {
    let pools = readings.pools;
    out.family(
        "tollgate_db_pool_connections",
        "gauge",
        "Database connections by pool and state (in_use, idle).",
    );
    for (pool, handle) in pools {
        let status = handle.status();
        out.sample(
            "tollgate_db_pool_connections",
            &[("pool", pool), ("state", "in_use")],
            status.in_use,
        );
        out.sample(
            "tollgate_db_pool_connections",
            &[("pool", pool), ("state", "idle")],
            status.idle,
        );
    }
    out.family(
        "tollgate_db_pool_max_connections",
        "gauge",
        "The most connections each pool opens.",
    );
    for (pool, handle) in pools {
        out.sample(
            "tollgate_db_pool_max_connections",
            &[("pool", pool)],
            handle.status().max_size,
        );
    }
    out.family(
        "tollgate_db_pool_waiting",
        "gauge",
        "Tasks waiting for a connection right now, by pool (while a pool is full, requests queue here).",
    );
    for (pool, handle) in pools {
        out.sample("tollgate_db_pool_waiting", &[("pool", pool)], handle.status().waiting);
    }
    out.family(
        "tollgate_db_statements_total",
        "counter",
        "SQL statements run on request connections.",
    );
    out.sample("tollgate_db_statements_total", &[], readings.statements);
}

fn render_counters(metrics: &Metrics, readings: &Readings<'_>, out: &mut Exposition) {
    let inner = &metrics.inner;
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    single(
        out,
        ("tollgate_websockets_open", "gauge"),
        "Websocket connections open now.",
        inner.websockets_open.load(Ordering::Relaxed),
    );
    single(
        out,
        ("tollgate_websocket_connections_total", "counter"),
        "Websocket connections accepted.",
        load(&inner.websockets_total),
    );
    single(
        out,
        ("tollgate_usage_events_recorded_total", "counter"),
        "Usage events recorded by this instance (repeated requestIds not counted).",
        load(&inner.usage_events),
    );
    single(
        out,
        ("tollgate_usage_tokens_recorded_total", "counter"),
        "Tokens (prompt plus completion) of the usage events recorded by this instance.",
        load(&inner.usage_tokens),
    );
    single(
        out,
        ("tollgate_uptime_seconds", "gauge"),
        "Seconds since the instance started.",
        readings.uptime_secs,
    );
    out.family("tollgate_build_info", "gauge", "Always 1; the version is a label.");
    out.sample("tollgate_build_info", &[("version", env!("CARGO_PKG_VERSION"))], 1);
}

/// A family of one unlabelled sample.
fn single(out: &mut Exposition, (name, kind): (&str, &str), help: &str, value: impl std::fmt::Display) {
    out.family(name, kind, help);
    out.sample(name, &[], value);
}

/// A poisoned lock only means a panic elsewhere mid-update of a counter;
/// the numbers are still worth serving.
pub fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> OperationKey {
        OperationKey {
            kind: "query",
            name: name.to_owned(),
        }
    }

    #[test]
    fn operation_names_beyond_the_cap_are_counted_as_other() {
        let metrics = Metrics::default();
        for index in 0..MAX_OPERATION_NAMES + 5 {
            metrics.record_operation("query", &format!("Op{index}"), "ok", None);
        }
        metrics.record_operation("query", "Op0", "NOT_FOUND", Some(Duration::from_millis(2)));
        let operations = lock(&metrics.inner.operations);
        assert_eq!(operations.len(), MAX_OPERATION_NAMES + 1);
        assert_eq!(operations[&key("other")].outcomes["ok"], 5);
        assert_eq!(operations[&key("Op0")].outcomes["NOT_FOUND"], 1);
    }

    #[test]
    fn long_operation_names_are_counted_as_other() {
        let metrics = Metrics::default();
        let long = "O".repeat(MAX_OPERATION_NAME_LEN + 1);
        metrics.record_operation("query", &long, "ok", None);
        metrics.record_operation("query", &"O".repeat(MAX_OPERATION_NAME_LEN), "ok", None);
        let operations = lock(&metrics.inner.operations);
        assert_eq!(operations[&key("other")].outcomes["ok"], 1);
        assert!(!operations.contains_key(&key(&long)));
        assert_eq!(operations.len(), 2);
    }

    #[test]
    fn the_open_websockets_gauge_follows_its_guards() {
        let metrics = Metrics::default();
        let first = metrics.websocket_opened();
        let second = metrics.websocket_opened();
        drop(first);
        assert_eq!(metrics.inner.websockets_open.load(Ordering::Relaxed), 1);
        drop(second);
        assert_eq!(metrics.inner.websockets_open.load(Ordering::Relaxed), 0);
        assert_eq!(metrics.inner.websockets_total.load(Ordering::Relaxed), 2);
    }
}
