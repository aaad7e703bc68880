//! The metering benchmark (`cargo bench --bench metering`; see
//! `benches/README.md`).
//!
//! It runs the release `tollgate` binary as a separate process with its
//! own data folder (so its own embedded PostgreSQL), seeds one
//! organization on an unlimited plan through the CLI and GraphQL, and
//! measures `recordUsage` of that one hot organization next to the same
//! per-call transaction run by `pgbench` on the same database, then
//! `recordUsageBatch` of 1,000 inputs. Each workload prints one Markdown
//! row: requests/s, p50, p99, the reference measured in the same run, and
//! the ratio.

// The SQL reference through pgbench: only this benchmark uses it.
#[path = "support/pgbench.rs"]
mod pgbench;
// Shared with the other benchmarks, each of which uses a part of it.
#[allow(dead_code)]
mod support;

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitCode},
    time::Duration,
};

use anyhow::{Context, Result, anyhow, bail};
use axum::body::Bytes;
use clap::Parser;
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{Value, json};

use pgbench::Database;
use support::{
    load::{self, Shape, Stats, Target},
    report::{self, Row},
    seed::{self, Graphql},
    server::{Server, ServerOptions},
};

/// The workloads, in the order they run.
const WORKLOADS: &[(&str, &str)] = &[
    (
        "pgbench",
        "one recordUsage's transaction (lock, windows, event insert, counter upsert, rollup upsert) through pgbench, c=32: the reference",
    ),
    ("record", "recordUsage, one organization, one key, c=32"),
    ("batch", "recordUsageBatch of 1,000 inputs, 4 concurrent: events/s"),
];

/// Callers of recordUsage (and pgbench clients), as in the issue.
const RECORD_CONCURRENCY: usize = 32;
/// Concurrent batches.
const BATCH_CONCURRENCY: usize = 4;
/// Inputs per batch (the contract's maximum).
const BATCH_INPUTS: usize = 1_000;
/// The targets.
const RECORD_TARGET_RATIO: f64 = 3.0;
const BATCH_TARGET_EVENTS: f64 = 50_000.0;

/// The metering benchmark: `cargo bench --bench metering -- [OPTIONS] [WORKLOAD...]`.
#[derive(Parser, Debug)]
#[command(name = "metering")]
struct Args {
    /// Workloads to run (default: all; --list shows them).
    filters: Vec<String>,
    /// Measured seconds per workload.
    #[arg(long, default_value_t = 10)]
    secs: u64,
    /// Seconds of load before each measurement.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// The server binary (default: `tollgate` next to this benchmark, built
    /// first with `cargo build --release --bin tollgate`).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Do not run `cargo build` for the default server binary.
    #[arg(long)]
    no_build: bool,
    /// Use this database instead of the server's embedded PostgreSQL.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// List the workloads and exit.
    #[arg(long)]
    list: bool,
    /// Passed by `cargo bench`; without it (`cargo test --benches`) the
    /// benchmark does nothing.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.list {
        for (name, about) in WORKLOADS {
            println!("{name:10} {about}");
        }
        return ExitCode::SUCCESS;
    }
    if !args.bench {
        eprintln!("run it with `cargo bench --bench metering` (see benches/README.md); nothing to do in test mode");
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("load")
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("benchmark failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        tokio::select! {
            outcome = run(args) => outcome,
            signal = interrupted() => Err(anyhow!("stopped by {signal}")),
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(2));
    match outcome {
        Ok(0) => ExitCode::SUCCESS,
        Ok(failures) => {
            eprintln!("{failures} workload(s) failed");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("benchmark failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Completes on SIGINT or SIGTERM, naming it.
async fn interrupted() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}

/// The seeded organization and how to reach it.
struct Hot {
    organization_id: String,
    api_key_id: String,
    user_id: String,
    /// Its USAGE_WRITE key.
    secret: String,
}

/// Everything a workload needs.
struct Bench {
    args: Args,
    server: Server,
    database: Database,
    hot: Hot,
    /// The reference, once measured.
    pgbench: Option<Stats>,
}

async fn run(args: Args) -> Result<usize> {
    let selected = select(&args.filters);
    if selected.is_empty() {
        bail!("no workload matches {:?}; --list shows them", args.filters);
    }
    let binary = server_binary(&args)?;
    eprintln!("starting {} (create-admin, then serve)", binary.display());
    let server = Server::start(&ServerOptions {
        binary: binary.clone(),
        database_url: args.database_url.clone(),
        redis_url: None,
    })
    .await?;
    let database = match (&args.database_url, server.postgres_socket_dir()) {
        (Some(url), _) => Database::Url(url.clone()),
        (None, Some(dir)) => Database::Socket(dir),
        (None, None) => bail!("the server has neither a DATABASE_URL nor an embedded PostgreSQL"),
    };
    eprintln!("seeding one organization through GraphQL");
    let mut api = Graphql::new(&server.base)?;
    api.login_as_admin().await?;
    let run_id = format!("{:x}", std::process::id());
    let hot = seed_hot(&api, &database, &run_id).await?;
    let mut bench = Bench {
        args,
        server,
        database,
        hot,
        pgbench: None,
    };
    println!("{}", preamble(&bench.args, &binary));
    println!("{}", report::header());
    let mut failures = 0;
    for name in selected {
        eprintln!("running {name}");
        let row = match bench.run_workload(name).await {
            Ok(row) => row,
            Err(e) => {
                failures += 1;
                eprintln!("{name} failed: {e:#}");
                Row {
                    workload: name.to_owned(),
                    notes: format!("FAILED: {}", format!("{e:#}").lines().next().unwrap_or_default()),
                    ..Row::default()
                }
            }
        };
        println!("{}", row.line());
    }
    if failures > 0 {
        eprintln!("the server's log ends with:\n{}", bench.server.log_tail(20));
    }
    Ok(failures)
}

/// The organization (on the unlimited plan), its USAGE_WRITE key, and the
/// ids the pgbench script needs.
async fn seed_hot(api: &Graphql, database: &Database, run_id: &str) -> Result<Hot> {
    // The plan (and an organization of the gateway's kind, unused here).
    seed::organizations(api, 1, run_id).await?;
    let data = api
        .run(
            "mutation ($input: CreateOrganizationInput!) { createOrganization(input: $input) { id } }",
            json!({ "input": { "name": format!("Metering {run_id}") } }),
        )
        .await?;
    let organization_id = text(&data["createOrganization"]["id"])?;
    api.run(
        "mutation ($id: ID!, $plan: String!) { setOrganizationPlan(organizationId: $id, planKey: $plan) { __typename } }",
        json!({ "id": organization_id, "plan": seed::PLAN_KEY }),
    )
    .await?;
    let data = api
        .run(
            "mutation ($input: CreateApiKeyInput!) { createApiKey(input: $input) { secret apiKey { id } } }",
            json!({ "input": { "organizationId": organization_id, "name": "metering", "scopes": ["USAGE_WRITE"] } }),
        )
        .await?;
    let secret = text(&data["createApiKey"]["secret"])?;
    let api_key_id = text(&data["createApiKey"]["apiKey"]["id"])?;
    let rows = pgbench::query(
        database,
        &format!("SELECT created_by FROM api_keys WHERE id = '{}'", uuid(&api_key_id)?),
    )?;
    let user_id = rows
        .first()
        .and_then(|row| row.first())
        .cloned()
        .ok_or_else(|| anyhow!("the key's creator was not found"))?;
    Ok(Hot {
        organization_id,
        api_key_id,
        user_id,
        secret,
    })
}

impl Bench {
    fn shape(&self, concurrency: usize) -> Shape {
        Shape {
            concurrency,
            warmup: Duration::from_secs(self.args.warmup),
            window: Duration::from_secs(self.args.secs.max(1)),
        }
    }

    async fn run_workload(&mut self, name: &str) -> Result<Row> {
        match name {
            "record" => self.record().await,
            "pgbench" => self.pgbench(),
            "batch" => self.batch().await,
            other => bail!("no workload {other}"),
        }
    }

    /// recordUsage of the hot organization at c=32.
    async fn record(&mut self) -> Result<Row> {
        let target = self.graphql_target(record_body())?;
        check_once(&target).await?;
        let before = self.events()?;
        let stats = load::run(&target, self.shape(RECORD_CONCURRENCY)).await?;
        let recorded = self.events()? - before;
        let mut row = Row {
            workload: "record".into(),
            concurrency: RECORD_CONCURRENCY,
            notes: format!("{recorded} events recorded (warm-up included)"),
            ..Row::default()
        };
        if let Some(reference) = &self.pgbench {
            row.reference = report::summary("pgbench", reference);
            row.ratio = format!("{} (target {RECORD_TARGET_RATIO}x)", ratio(&stats, reference));
        }
        row.stats = Some(stats);
        Ok(row)
    }

    /// The same transaction through pgbench on the same database.
    fn pgbench(&mut self) -> Result<Row> {
        let work = tempfile::Builder::new().prefix("metering-pgbench-").tempdir()?;
        let script = transaction_script(&self.hot)?;
        let stats = pgbench::run(
            &self.database,
            work.path(),
            &script,
            RECORD_CONCURRENCY,
            Duration::from_secs(self.args.warmup),
            Duration::from_secs(self.args.secs.max(1)),
        )?;
        let mut row = Row {
            workload: "pgbench".into(),
            concurrency: RECORD_CONCURRENCY,
            notes: "one recordUsage's transaction, prepared statements".into(),
            ..Row::default()
        };
        row.reference = "— (it is the reference)".into();
        row.stats = Some(stats.clone());
        self.pgbench = Some(stats);
        Ok(row)
    }

    /// recordUsageBatch of 1,000 inputs, 4 at once.
    async fn batch(&mut self) -> Result<Row> {
        let target = self.graphql_target(batch_body())?;
        check_once(&target).await?;
        let stats = load::run(&target, self.shape(BATCH_CONCURRENCY)).await?;
        let events = stats.rps() * BATCH_INPUTS as f64;
        Ok(Row {
            workload: "batch".into(),
            concurrency: BATCH_CONCURRENCY,
            reference: format!("target {} events/s", report::thousands(BATCH_TARGET_EVENTS)),
            ratio: format!(
                "{} events/s ({:.2}x target)",
                report::thousands(events),
                events / BATCH_TARGET_EVENTS
            ),
            notes: format!("{BATCH_INPUTS} inputs per call"),
            stats: Some(stats),
        })
    }

    fn graphql_target(&self, body: Bytes) -> Result<Target> {
        let mut auth = HeaderMap::new();
        auth.insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {}", self.hot.secret))?,
        );
        Ok(Target {
            url: format!("{}/graphql", self.server.base),
            body,
            auth: vec![auth],
            end_marker: None,
        })
    }

    /// The hot organization's events so far.
    fn events(&self) -> Result<u64> {
        let rows = pgbench::query(
            &self.database,
            &format!(
                "SELECT count(*) FROM usage_events WHERE organization_id = '{}'",
                uuid(&self.hot.organization_id)?
            ),
        )?;
        rows.first()
            .and_then(|row| row.first())
            .and_then(|count| count.parse().ok())
            .ok_or_else(|| anyhow!("counting events gave {rows:?}"))
    }
}

/// One call must record without a GraphQL error (the load generator only
/// sees the HTTP status).
async fn check_once(target: &Target) -> Result<()> {
    let response = load::client()?
        .post(&target.url)
        .headers(target.auth[0].clone())
        .header("content-type", "application/json")
        .body(target.body.clone())
        .send()
        .await?;
    let body: Value = response.json().await.context("reading the first answer")?;
    if body.get("errors").is_some_and(|errors| !errors.is_null()) {
        bail!("the first call was refused: {}", body["errors"]);
    }
    Ok(())
}

fn record_body() -> Bytes {
    Bytes::from(
        json!({
            "query": "mutation ($input: RecordUsageInput!) { recordUsage(input: $input) { duplicate event { id totalTokens } quota { tokensUsed requestsToday } } }",
            "variables": { "input": { "model": seed::OPENAI_MODEL, "promptTokens": 100, "completionTokens": 20 } }
        })
        .to_string(),
    )
}

fn batch_body() -> Bytes {
    let inputs: Vec<Value> = (0..BATCH_INPUTS)
        .map(|i| json!({ "model": seed::OPENAI_MODEL, "promptTokens": 100 + i % 50, "completionTokens": 20 }))
        .collect();
    Bytes::from(
        json!({
            "query": "mutation ($inputs: [RecordUsageInput!]!) { recordUsageBatch(inputs: $inputs) { duplicate event { id } } }",
            "variables": { "inputs": inputs }
        })
        .to_string(),
    )
}

/// One recordUsage's transaction as the server ran it before group
/// commit: the organization's row locked against a reset, its windows
/// read, the event inserted, the four counter rows upserted, the rollup
/// upserted. Window starts are the calendar month's and the UTC day's (the
/// unlimited plan's period).
fn transaction_script(hot: &Hot) -> Result<String> {
    let organization = uuid(&hot.organization_id)?;
    let key = uuid(&hot.api_key_id)?;
    let user = uuid(&hot.user_id)?;
    let month = "(date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')";
    let day = "(date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')";
    Ok(format!(
        "BEGIN;
SELECT id FROM organizations WHERE id = '{organization}' FOR SHARE;
SELECT o.usage_reset_at, s.*, p.* FROM organizations o JOIN subscriptions s ON s.organization_id = o.id JOIN plans p ON p.id = s.plan_id WHERE o.id = '{organization}';
INSERT INTO usage_events (id, organization_id, api_key_id, user_id, model, model_id, prompt_tokens, cached_tokens, completion_tokens, total_tokens, cost_micro_usd, priced, request_id, metadata, occurred_at, created_at, source, estimated, provider) VALUES (gen_random_uuid(), '{organization}', '{key}', '{user}', '{model}', '{model}', 100, 0, 20, 120, 27, true, NULL, NULL, now(), now(), 'REPORTED', false, NULL) ON CONFLICT DO NOTHING RETURNING *;
INSERT INTO usage_counters AS c (organization_id, subject_kind, subject_id, window_start, tokens, requests) VALUES ('{organization}', 'ORGANIZATION', '{organization}', {month}, 120, 1), ('{organization}', 'API_KEY', '{key}', {month}, 120, 1), ('{organization}', 'MEMBER', '{user}', {month}, 120, 1), ('{organization}', 'DAY', '{organization}', {day}, 120, 1) ON CONFLICT (organization_id, subject_kind, subject_id, window_start) DO UPDATE SET tokens = c.tokens + excluded.tokens, requests = c.requests + excluded.requests RETURNING c.tokens, c.requests;
INSERT INTO usage_daily AS d (organization_id, day, model, api_key_id, user_id, prompt_tokens, cached_tokens, completion_tokens, total_tokens, requests, cost_micro_usd) VALUES ('{organization}', (now() AT TIME ZONE 'UTC')::date, '{model}', '{key}', '{user}', 100, 0, 20, 120, 1, 27) ON CONFLICT (organization_id, day, model, api_key_id, user_id) DO UPDATE SET prompt_tokens = d.prompt_tokens + excluded.prompt_tokens, cached_tokens = d.cached_tokens + excluded.cached_tokens, completion_tokens = d.completion_tokens + excluded.completion_tokens, total_tokens = d.total_tokens + excluded.total_tokens, requests = d.requests + excluded.requests, cost_micro_usd = d.cost_micro_usd + excluded.cost_micro_usd;
COMMIT;
",
        model = seed::OPENAI_MODEL,
    ))
}

/// `a`'s requests/s over `b`'s.
fn ratio(a: &Stats, b: &Stats) -> String {
    format!("{:.2}x", a.rps() / b.rps().max(f64::EPSILON))
}

/// A uuid as the server gave it, checked before it goes into SQL text.
fn uuid(id: &str) -> Result<String> {
    let parsed: uuid::Uuid = id.parse().with_context(|| format!("{id} is not a uuid"))?;
    Ok(parsed.to_string())
}

fn text(value: &Value) -> Result<String> {
    value
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("expected a string, got {value}"))
}

/// The workloads the filters name (a part of a name picks it), in order;
fn select(filters: &[String]) -> Vec<&'static str> {
    WORKLOADS
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| filters.is_empty() || filters.iter().any(|filter| name.contains(filter.as_str())))
        .collect()
}

/// The server binary, built first when it is the default one.
fn server_binary(args: &Args) -> Result<PathBuf> {
    if let Some(binary) = &args.server_bin {
        return Ok(binary.clone());
    }
    // This benchmark is target/<profile>/deps/metering-<hash>.
    let exe = std::env::current_exe().context("finding the benchmark's own path")?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| anyhow!("cannot tell the target folder from {}", exe.display()))?;
    if !args.no_build {
        let profile = match profile_dir.file_name().and_then(|name| name.to_str()) {
            Some("debug") => "dev",
            Some(name) => name,
            None => "release",
        };
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        eprintln!("building the server: cargo build --profile {profile} --bin tollgate");
        let status = Command::new(cargo)
            .args(["build", "--profile", profile, "--bin", "tollgate"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .context("running cargo build")?;
        if !status.success() {
            bail!("cargo build --profile {profile} --bin tollgate failed ({status})");
        }
    }
    Ok(profile_dir.join("tollgate"))
}

/// The lines before the table: the machine, the load on it, the command.
fn preamble(args: &Args, binary: &Path) -> String {
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    let options: Vec<String> = std::env::args().skip(1).filter(|arg| arg != "--bench").collect();
    let database = if args.database_url.is_some() {
        "DATABASE_URL"
    } else {
        "embedded"
    };
    format!(
        "machine: {cpus} CPUs (nproc); load average before the run {}\n\
         server: {}, PostgreSQL {database}\n\
         command: cargo bench --bench metering{}{}\n\
         each row: {} s warm-up, then {} s measured\n",
        load.join(" "),
        binary.display(),
        if options.is_empty() { "" } else { " -- " },
        options.join(" "),
        args.warmup,
        args.secs,
    )
}
