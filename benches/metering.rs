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

mod support;

use std::{path::Path, process::ExitCode};

use anyhow::{Context, Result, anyhow, bail};
use axum::body::Bytes;
use clap::Parser;
use serde_json::{Value, json};

use support::{
    cli::{self, CommonArgs, Workloads},
    load::{self, Stats, Target},
    report::{self, Machine, Row},
    seed::{self, Graphql},
    server::Server,
    sql::Database,
};

/// The workloads, in the order they run.
const WORKLOADS: Workloads = &[
    (
        "pgbench",
        "one recordUsage's transaction (lock, windows, event insert, counter upsert, rollup upsert) through pgbench, c=32: the reference",
    ),
    ("record", "recordUsage, one organization, one key, c=32"),
    ("batch", "recordUsageBatch of 1,000 inputs, 4 concurrent: events/s"),
    (
        "authorize",
        "authorizeUsage with the same key, c=64, after the statements it runs through pgbench at c=64 (pgbench-authorize)",
    ),
];

/// Callers of recordUsage (and pgbench clients), as in the issue.
const RECORD_CONCURRENCY: usize = 32;
/// Concurrent batches.
const BATCH_CONCURRENCY: usize = 4;
/// Inputs per batch (the contract's maximum).
const BATCH_INPUTS: usize = 1_000;
/// The issue's targets.
const RECORD_TARGET_RATIO: f64 = 3.0;
const BATCH_TARGET_EVENTS: f64 = 50_000.0;
/// Callers of authorizeUsage (and pgbench clients), as in the issue.
const AUTHORIZE_CONCURRENCY: usize = 64;

/// The metering benchmark: `cargo bench --bench metering -- [OPTIONS] [WORKLOAD...]`.
#[derive(Parser, Debug)]
#[command(name = "metering")]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(done) = cli::before_start(&args.common, "metering", WORKLOADS) {
        return done;
    }
    cli::exit_code(cli::on_load_runtime(run(args)))
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
    let selected = cli::select(WORKLOADS, &args.common.filters)?;
    let (binary, server) = cli::start_server(&args.common, None).await?;
    let database = Database::of(&server, args.common.database_url.as_deref())?;
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
    let failures = cli::run_each(&selected, async |name| {
        bench.run_workload(name).await?.emit();
        Ok(())
    })
    .await;
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
    let organization = seed::organization(api, &format!("Metering {run_id}"), &["USAGE_WRITE"]).await?;
    let user_id = database.psql(&format!(
        "SELECT created_by FROM api_keys WHERE id = '{}'",
        uuid(&organization.key.id)?
    ))?;
    if user_id.is_empty() {
        return Err(anyhow!("the key's creator was not found"));
    }
    Ok(Hot {
        organization_id: organization.id,
        api_key_id: organization.key.id,
        user_id,
        secret: organization.key.secret,
    })
}

impl Bench {
    async fn run_workload(&mut self, name: &str) -> Result<Row> {
        match name {
            "record" => self.record().await,
            "pgbench" => self.pgbench(),
            "batch" => self.batch().await,
            "authorize" => self.authorize().await,
            other => Err(anyhow!("no workload {other}")),
        }
    }

    /// recordUsage of the hot organization at c=32.
    async fn record(&mut self) -> Result<Row> {
        let target = self.graphql_target(record_body())?;
        load::graphql_once(&target).await?;
        let before = self.events()?;
        let stats = load::run(&target, self.args.common.shape(RECORD_CONCURRENCY)).await?;
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
        let script = transaction_script(&self.hot)?;
        let stats = self.database.pgbench(
            &script,
            RECORD_CONCURRENCY,
            self.args.common.warmup(),
            self.args.common.window(),
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
        load::graphql_once(&target).await?;
        let stats = load::run(&target, self.args.common.shape(BATCH_CONCURRENCY)).await?;
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

    /// authorizeUsage with the hot organization's key at c=64, after its
    /// reference: the statements the server runs for one call, through
    /// pgbench at the same concurrency (printed as a row of its own).
    async fn authorize(&mut self) -> Result<Row> {
        let target = self.graphql_target(authorize_body())?;
        let answer = load::graphql_once(&target).await?;
        if answer["data"]["authorizeUsage"]["allowed"] != json!(true) {
            bail!("authorizeUsage did not allow the call: {}", answer["data"]);
        }
        let reference = self.database.pgbench(
            &authorize_script(&self.hot)?,
            AUTHORIZE_CONCURRENCY,
            self.args.common.warmup(),
            self.args.common.window(),
        )?;
        Row {
            workload: "pgbench-authorize".into(),
            concurrency: AUTHORIZE_CONCURRENCY,
            stats: Some(reference.clone()),
            reference: "— (it is the reference)".into(),
            notes: AUTHORIZE_REFERENCE_NOTE.into(),
            ..Row::default()
        }
        .emit();
        let stats = load::run(&target, self.args.common.shape(AUTHORIZE_CONCURRENCY)).await?;
        Ok(Row {
            workload: "authorize".into(),
            concurrency: AUTHORIZE_CONCURRENCY,
            reference: report::summary("pgbench-authorize", &reference),
            ratio: format!("{} the statements' req/s", ratio(&stats, &reference)),
            notes: "allowed, with record's USAGE_WRITE key (resolved from the server's key cache)".into(),
            stats: Some(stats),
        })
    }

    fn graphql_target(&self, body: Bytes) -> Result<Target> {
        Ok(Target {
            url: format!("{}/graphql", self.server.base),
            body,
            auth: vec![load::bearer(&self.hot.secret)?],
            end_marker: None,
        })
    }

    /// The hot organization's events so far.
    fn events(&self) -> Result<u64> {
        let count = self.database.psql(&format!(
            "SELECT count(*) FROM usage_events WHERE organization_id = '{}'",
            uuid(&self.hot.organization_id)?
        ))?;
        count.parse().with_context(|| format!("counting events gave {count:?}"))
    }
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

fn authorize_body() -> Bytes {
    Bytes::from(
        json!({
            "query": "query ($model: String!) { authorizeUsage(model: $model) { allowed reason quota { tokensUsed tokenLimit remaining exceeded requestsToday } } }",
            "variables": { "model": seed::OPENAI_MODEL }
        })
        .to_string(),
    )
}

/// What `pgbench-authorize` runs, in its row.
const AUTHORIZE_REFERENCE_NOTE: &str = "one authorizeUsage's 2 statements (its context: subscription, plan, reset time, member's budget and catalog version in one; the counters), prepared, no transaction";

/// The statements the server runs for one authorizeUsage of the hot key
/// (`reservations::context` and `counters::sum`; the first with `*` for
/// diesel's column lists), parameters written in: its context (the subscription, its plan, the organization's reset
/// time, the member's token budget and the catalog's version, in one
/// statement; the catalog itself is the server's copy of that version),
/// then the organization's, day's, member's and key's counters in one
/// statement, each on its own outside a transaction. The key itself
/// costs no statement: the server caches resolved keys (30 s at most,
/// announced changes drop them), so its lookup by secret hash runs once
/// per 30 s, not per call; with a key, the access check reads nothing
/// either. Window starts are the calendar month's and the UTC day's (the
/// unlimited plan's period).
fn authorize_script(hot: &Hot) -> Result<String> {
    let organization = uuid(&hot.organization_id)?;
    let key = uuid(&hot.api_key_id)?;
    let user = uuid(&hot.user_id)?;
    let month = "date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'";
    let day = "date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'";
    Ok(format!(
        r#"SELECT s.*, p.*, o.usage_reset_at, m.token_limit, (SELECT version FROM catalog_version) FROM subscriptions s JOIN plans p ON p.id = s.plan_id JOIN organizations o ON o.id = s.organization_id LEFT JOIN memberships m ON m.organization_id = s.organization_id AND m.user_id = '{user}' WHERE s.organization_id = '{organization}' LIMIT 1;
SELECT s.n, COALESCE(sum(c.tokens), 0)::int8 AS tokens, COALESCE(sum(c.requests), 0)::int8 AS requests FROM unnest(ARRAY['{organization}', '{organization}', '{organization}', '{organization}']::uuid[], ARRAY['ORGANIZATION', 'DAY', 'MEMBER', 'API_KEY']::text[], ARRAY['{organization}', '{organization}', '{user}', '{key}']::uuid[], ARRAY[{month}, {day}, {month}, {month}]::timestamptz[]) WITH ORDINALITY AS s(organization_id, kind, subject, since, n) LEFT JOIN usage_counters c ON c.organization_id = s.organization_id AND c.subject_kind = s.kind AND c.subject_id = s.subject AND c.window_start >= s.since GROUP BY s.n;
"#
    ))
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

/// The lines before the table: the machine, the load on it, the command.
fn preamble(args: &Args, binary: &Path) -> String {
    let machine = Machine::now();
    let database = if args.common.database_url.is_some() {
        "DATABASE_URL"
    } else {
        "embedded"
    };
    format!(
        "machine: {} CPUs (nproc); load average before the run {}\n\
         server: {}, PostgreSQL {database}\n\
         command: {}\n\
         each row: {} s warm-up, then {} s measured\n",
        machine.cpus,
        machine.load,
        binary.display(),
        cli::command_line("metering"),
        args.common.warmup,
        args.common.secs,
    )
}
