//! recordUsage throughput at 8, 16, 32 and 64 concurrent callers, without
//! and with Redis, on the default set-up (`cargo run`: the embedded
//! PostgreSQL, a pool of 16).
//!
//! ```text
//! cargo run --example record_usage_load            # debug build
//! cargo run --release --example record_usage_load  # the figures that matter
//! ```
//!
//! The server runs in this process on 127.0.0.1:0, so load generator and
//! server share the machine's cores, as they would on one small host.
//! Redis comes from `REDIS_URL` (default `redis://127.0.0.1:6379/`), with a
//! key prefix of this run's own. `BENCH_SECS` sets how long each level
//! runs (default 5). After each mode the organization's counters are
//! compared with the receipts the callers got: they must be equal.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use diesel::sql_types::{BigInt, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tollgate::{App, Config};
use uuid::Uuid;

/// Concurrency levels measured, in one run.
const LEVELS: [usize; 4] = [8, 16, 32, 64];
/// A request that takes longer than this counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

const RECORD: &str = "mutation ($input: RecordUsageInput!) { recordUsage(input: $input) { duplicate event { id } } }";

#[derive(diesel::QueryableByName)]
struct Requests {
    #[diesel(sql_type = BigInt)]
    requests: i64,
}

/// What one level came to.
#[derive(Default)]
struct Outcome {
    ok: u64,
    errors: BTreeMap<String, u64>,
    elapsed: Duration,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let data_dir = tempfile::tempdir()?;
    let seconds: u64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let redis_url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".to_owned());
    let window = Duration::from_secs(seconds);
    println!(
        "recordUsage throughput, {} build, {seconds} s per level, embedded PostgreSQL",
        if cfg!(debug_assertions) { "debug" } else { "release" }
    );
    for redis in [None, Some(redis_url.as_str())] {
        let label = if redis.is_some() { "with Redis" } else { "without Redis" };
        let app = start(data_dir.path(), redis).await?;
        let caller = Caller::new(&app, label).await?;
        let mut receipts = 0;
        for level in LEVELS {
            let outcome = caller.run(level, window).await;
            receipts += outcome.ok;
            let rate = outcome.ok as f64 / outcome.elapsed.as_secs_f64();
            println!(
                "{label:>14} {level:>3} concurrent: {rate:>8.1} recordUsage/s ({} ok, errors {:?}, {:.1} s)",
                outcome.ok,
                outcome.errors,
                outcome.elapsed.as_secs_f64()
            );
        }
        let counted = caller.counted(&app).await?;
        println!(
            "{label:>14} counters: {counted} requests counted, {receipts} receipts (equal: {})",
            counted == receipts as i64
        );
        app.stop().await;
    }
    Ok(())
}

/// The app and where it listens.
struct Running {
    state: tollgate::AppState,
    addr: std::net::SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    served: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.served.await;
    }
}

async fn start(data_dir: &std::path::Path, redis: Option<&str>) -> anyhow::Result<Running> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let mut vars = std::collections::HashMap::from([
        ("DATA_DIR".to_owned(), data_dir.display().to_string()),
        ("PORT".to_owned(), addr.port().to_string()),
        (
            "JWT_SECRET".to_owned(),
            "bench-secret-bench-secret-bench-secret".to_owned(),
        ),
        ("AUTH_RATE_LIMIT_PER_MINUTE".to_owned(), "100000".to_owned()),
    ]);
    if let Some(url) = redis {
        vars.insert("REDIS_URL".to_owned(), url.to_owned());
        vars.insert("REDIS_KEY_PREFIX".to_owned(), format!("bench-{}:", std::process::id()));
    }
    let app: App = tollgate::build_app(Config::from_vars(&vars)?).await?;
    let state = app.state.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(app.serve_until(listener, async move {
        let _ = stopped.await;
    }));
    Ok(Running {
        state,
        addr,
        stop,
        served,
    })
}

/// An organization with an API key, and a client that reports with it.
struct Caller {
    client: reqwest::Client,
    url: String,
    key: Arc<str>,
    organization: Uuid,
}

impl Caller {
    async fn new(app: &Running, label: &str) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build()?;
        let url = format!("http://{}/graphql", app.addr);
        let email = format!("bench-{}@{}.example", std::process::id(), label.replace(' ', "-"));
        let registered = post(
            &client,
            &url,
            None,
            "mutation ($input: RegisterInput!) { register(input: $input) { accessToken user { id } } }",
            json!({ "input": { "email": email, "password": "correct horse battery staple", "name": "Bench" } }),
        )
        .await?;
        let token = registered["register"]["accessToken"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let user: Uuid = registered["register"]["user"]["id"]
            .as_str()
            .unwrap_or_default()
            .parse()?;
        // Keys need a verified address; the bench has no inbox.
        diesel::sql_query("UPDATE users SET email_verified_at = now() WHERE id = $1")
            .bind::<SqlUuid, _>(user)
            .execute(&mut connection(app).await?)
            .await?;
        let created = post(
            &client,
            &url,
            Some(&token),
            "mutation { createOrganization(input: { name: \"Bench\" }) { id } }",
            json!({}),
        )
        .await?;
        let organization = created["createOrganization"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let key = post(
            &client,
            &url,
            Some(&token),
            "mutation ($input: CreateApiKeyInput!) { createApiKey(input: $input) { secret } }",
            json!({ "input": { "organizationId": organization, "name": "bench", "scopes": ["USAGE_WRITE"] } }),
        )
        .await?;
        Ok(Self {
            client,
            url,
            key: Arc::from(key["createApiKey"]["secret"].as_str().unwrap_or_default()),
            organization: organization.parse()?,
        })
    }

    /// `level` callers, each reporting one call after another until
    /// `window` is over; waits for the last answers.
    async fn run(&self, level: usize, window: Duration) -> Outcome {
        let started = Instant::now();
        let deadline = started + window;
        let workers = (0..level).map(|_| {
            let (client, url, key) = (self.client.clone(), self.url.clone(), self.key.clone());
            tokio::spawn(async move {
                let mut outcome = Outcome::default();
                while Instant::now() < deadline {
                    let input = json!({ "input": { "model": "gpt-4o", "promptTokens": 100, "completionTokens": 20 } });
                    match post(&client, &url, Some(&key), RECORD, input).await {
                        Ok(data) if data["recordUsage"]["event"]["id"].is_string() => outcome.ok += 1,
                        Ok(other) => *outcome.errors.entry(format!("unexpected {other}")).or_default() += 1,
                        Err(e) => *outcome.errors.entry(short(&e.to_string())).or_default() += 1,
                    }
                }
                outcome
            })
        });
        let mut total = Outcome::default();
        for worker in futures_util::future::join_all(workers).await {
            let Ok(outcome) = worker else { continue };
            total.ok += outcome.ok;
            for (error, count) in outcome.errors {
                *total.errors.entry(error).or_default() += count;
            }
        }
        total.elapsed = started.elapsed();
        total
    }

    /// Requests the organization's counter holds (every window).
    async fn counted(&self, app: &Running) -> anyhow::Result<i64> {
        let row: Requests = diesel::sql_query(
            "SELECT COALESCE(SUM(requests), 0)::bigint AS requests FROM usage_counters
             WHERE organization_id = $1 AND subject_kind = 'ORGANIZATION'",
        )
        .bind::<SqlUuid, _>(self.organization)
        .get_result(&mut connection(app).await?)
        .await?;
        Ok(row.requests)
    }
}

async fn connection(app: &Running) -> anyhow::Result<tollgate::db::DbConn> {
    app.state.db().await.map_err(|e| anyhow::anyhow!("{e:?}"))
}

/// The error code (or transport failure) in a few words.
fn short(error: &str) -> String {
    error.chars().take(60).collect()
}

/// Posts one operation; the `data`, or the first error's code.
async fn post(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    query: &str,
    variables: Value,
) -> anyhow::Result<Value> {
    let mut request = client
        .post(url)
        .json(&json!({ "query": query, "variables": variables }));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let body: Value = request.send().await?.json().await?;
    if let Some(code) = body["errors"][0]["extensions"]["code"].as_str() {
        anyhow::bail!("{code}");
    }
    Ok(body["data"].clone())
}
