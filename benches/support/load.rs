//! The load generator: a fixed number of callers, each sending its next
//! request as soon as the last one's body has been read to the end, for a
//! bounded time; every latency of the measured window is kept.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use axum::body::Bytes;
use reqwest::{
    Client,
    header::{HeaderMap, HeaderValue},
};
use serde_json::Value;

/// What a workload sends.
#[derive(Clone)]
pub struct Target {
    /// The full URL.
    pub url: String,
    /// The JSON body.
    pub body: Bytes,
    /// One header set per credential; caller `i` uses `auth[i % len]`, so
    /// a workload spreads over several organizations' keys.
    pub auth: Vec<HeaderMap>,
    /// A streamed answer: read to its end, which must hold `end_marker`.
    pub end_marker: Option<&'static [u8]>,
}

/// How long and how hard.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    /// Callers in flight at once.
    pub concurrency: usize,
    /// Load before measuring (connections opened, caches warm).
    pub warmup: Duration,
    /// The measured window.
    pub window: Duration,
}

/// What one run measured.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Calls that started inside the window and succeeded.
    pub ok: usize,
    /// Calls that failed (transport error or not 2xx), window only.
    pub errors: usize,
    /// The first failure, to say why.
    pub first_error: Option<String>,
    /// Sorted latencies of the successful calls, in microseconds.
    pub latencies_us: Vec<u32>,
    /// The measured window.
    pub window: Duration,
}

impl Stats {
    /// Successful calls per second of the window.
    pub fn rps(&self) -> f64 {
        self.ok as f64 / self.window.as_secs_f64().max(f64::EPSILON)
    }

    /// The latency at quantile `q` (0..=1), by nearest rank.
    pub fn quantile(&self, q: f64) -> Duration {
        let n = self.latencies_us.len();
        if n == 0 {
            return Duration::ZERO;
        }
        let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
        Duration::from_micros(u64::from(self.latencies_us[rank - 1]))
    }

    /// The median latency.
    pub fn p50(&self) -> Duration {
        self.quantile(0.50)
    }

    /// The 99th percentile latency.
    pub fn p99(&self) -> Duration {
        self.quantile(0.99)
    }
}

/// A client for one workload: its own connection pool, no proxy (a
/// system proxy must not carry loopback traffic), no idle limit.
pub fn client() -> Result<Client> {
    Ok(Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(usize::MAX)
        .timeout(Duration::from_secs(120))
        .build()?)
}

/// The header set of a bearer token (an API key's secret, a session's
/// access token).
pub fn bearer(token: &str) -> Result<HeaderMap> {
    let mut headers = HeaderMap::new();
    headers.insert("authorization", HeaderValue::from_str(&format!("Bearer {token}"))?);
    Ok(headers)
}

/// One GraphQL call of `target` with its first credential: its answer,
/// which must carry no errors (the load generator sees only the HTTP
/// status, so a workload checks its query once before).
pub async fn graphql_once(target: &Target) -> Result<Value> {
    let mut request = client()?
        .post(&target.url)
        .header("content-type", "application/json")
        .body(target.body.clone());
    if let Some(auth) = target.auth.first() {
        request = request.headers(auth.clone());
    }
    let answer: Value = request.send().await?.json().await.context("reading the first answer")?;
    if answer.get("errors").is_some_and(|errors| !errors.is_null()) {
        bail!("the first call was refused: {}", answer["errors"]);
    }
    Ok(answer)
}

/// What one caller recorded.
#[derive(Default)]
struct CallerRecord {
    latencies_us: Vec<u32>,
    errors: usize,
    first_error: Option<String>,
}

/// Runs `target` at `shape.concurrency` for the warm-up and the window.
pub async fn run(target: &Target, shape: Shape) -> Result<Stats> {
    if target.auth.is_empty() {
        bail!("a target needs at least one credential");
    }
    let client = client()?;
    let target = Arc::new(target.clone());
    let start = Instant::now();
    let measure_from = start + shape.warmup;
    let end = measure_from + shape.window;
    let callers: Vec<_> = (0..shape.concurrency)
        .map(|caller| {
            let (client, target) = (client.clone(), target.clone());
            tokio::spawn(async move { caller_loop(&client, &target, caller, measure_from, end).await })
        })
        .collect();
    let mut stats = Stats {
        window: shape.window,
        ..Stats::default()
    };
    for caller in callers {
        let record = caller.await?;
        stats.latencies_us.extend(record.latencies_us);
        stats.errors += record.errors;
        if stats.first_error.is_none() {
            stats.first_error = record.first_error;
        }
    }
    stats.ok = stats.latencies_us.len();
    stats.latencies_us.sort_unstable();
    Ok(stats)
}

async fn caller_loop(
    client: &Client,
    target: &Target,
    caller: usize,
    measure_from: Instant,
    end: Instant,
) -> CallerRecord {
    let mut record = CallerRecord::default();
    let auth = &target.auth[caller % target.auth.len()];
    loop {
        let sent = Instant::now();
        if sent >= end {
            return record;
        }
        let outcome = call(client, target, auth).await;
        if sent < measure_from {
            continue;
        }
        match outcome {
            Ok(()) => record.latencies_us.push(micros(sent.elapsed())),
            Err(e) => {
                record.errors += 1;
                record.first_error.get_or_insert(e);
                // A refusing server answers at once: do not spin on it.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

fn micros(elapsed: Duration) -> u32 {
    u32::try_from(elapsed.as_micros()).unwrap_or(u32::MAX)
}

/// One call, its body read to the end; `Err` says what went wrong.
pub async fn call(client: &Client, target: &Target, auth: &HeaderMap) -> Result<(), String> {
    let response = client
        .post(&target.url)
        .headers(auth.clone())
        .header("content-type", "application/json")
        .body(target.body.clone())
        .send()
        .await
        .map_err(|e| format!("{e:#}"))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        return Err(format!("HTTP {status}: {}", body.chars().take(300).collect::<String>()));
    }
    match target.end_marker {
        None => response.bytes().await.map(drop).map_err(|e| format!("{e:#}")),
        Some(marker) => read_stream(response, marker).await,
    }
}

/// Reads a server-sent event stream chunk by chunk, as an SDK does, and
/// checks that it ended properly.
async fn read_stream(mut response: reqwest::Response, marker: &[u8]) -> Result<(), String> {
    // The last bytes seen, enough to find the marker across chunk edges.
    let mut tail: Vec<u8> = Vec::with_capacity(256);
    while let Some(chunk) = response.chunk().await.map_err(|e| format!("stream: {e:#}"))? {
        tail.extend_from_slice(&chunk);
        if tail.len() > 256 {
            tail.drain(..tail.len() - 256);
        }
    }
    if tail.windows(marker.len()).any(|window| window == marker) {
        Ok(())
    } else {
        Err(format!("the stream ended without {}", String::from_utf8_lossy(marker)))
    }
}

/// Every caller sends exactly one request, all at once, and holds it to
/// its end: the latencies of those calls.
pub async fn once_each(target: &Target, callers: usize) -> Result<Stats> {
    let client = client()?;
    let target = Arc::new(target.clone());
    let start = Instant::now();
    let calls: Vec<_> = (0..callers)
        .map(|caller| {
            let (client, target) = (client.clone(), target.clone());
            tokio::spawn(async move {
                let auth = &target.auth[caller % target.auth.len()];
                let sent = Instant::now();
                call(&client, &target, auth).await.map(|()| micros(sent.elapsed()))
            })
        })
        .collect();
    let mut stats = Stats::default();
    for call in calls {
        match call.await? {
            Ok(latency) => stats.latencies_us.push(latency),
            Err(e) => {
                stats.errors += 1;
                stats.first_error.get_or_insert(e);
            }
        }
    }
    stats.window = start.elapsed();
    stats.ok = stats.latencies_us.len();
    stats.latencies_us.sort_unstable();
    Ok(stats)
}
