//! The reads and live-usage benchmark (`cargo bench --bench reads`; see
//! `benches/README.md`).
//!
//! It runs the release `tollgate` binary as a separate process with its
//! own data folder (so its own embedded PostgreSQL), seeds 100
//! organizations of 10 members each (organizations and keys through
//! GraphQL, the thousand users and their memberships through SQL), then
//! measures, each for a bounded time:
//!
//! - nested reads over HTTP at c=32 (an admin's organization list, a
//!   member's dashboard), each next to one SQL statement that builds the
//!   same JSON, run by `pgbench` at the same concurrency;
//! - live usage: thousands of websocket subscribers of one organization,
//!   one event, how long it takes to reach all of them, and the server's
//!   memory before, during and after.

mod support;

use std::{
    collections::HashSet,
    path::Path,
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, bail};
use axum::body::Bytes;
use clap::Parser;
use futures_util::{StreamExt, TryStreamExt};
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use support::{
    cli::{self, CommonArgs, Workloads},
    live,
    load::{self, Stats, Target},
    postgraphile::{self, PostGraphile},
    procfs,
    report::{self, Machine, Row},
    seed::{self, Graphql, text},
    server::{self, Server},
    sql::Database,
};

/// The workloads, in the order they run.
const WORKLOADS: Workloads = &[
    (
        "postgraphile-organizations",
        "the same organizations read from PostGraphile v5 on the same database, c=32 (optional: needs node and npm)",
    ),
    (
        "organizations",
        "ADMIN organizations(first: 100) with members and their users, c=32, next to one json_agg statement through pgbench",
    ),
    (
        "dashboard",
        "a member's me { memberships { organization { members quota apiKeys } } }, c=32, next to its json_agg statement",
    ),
    (
        "floor",
        "the cheapest read naming its caller, the member's me { name }, c=32, next to the dashboard's statement: what no read here can pass",
    ),
    (
        "live",
        "N websocket subscribers of one organization (many keys), one event: delivery p50/p99 and the server's RSS",
    ),
];

/// Callers in flight, as in the measurement.
const CONCURRENCY: usize = 32;
/// Organizations seeded, and members in each (the admin who created it
/// and nine more).
const ORGANIZATIONS: usize = 100;
const MORE_MEMBERS: usize = 9;
/// Organizations the dashboard's member belongs to (as ADMIN, who sees
/// every key of the organization).
const MEMBER_ORGANIZATIONS: usize = 5;
/// Sockets one key may hold (the server's cap).
const SOCKETS_PER_KEY: usize = 20;
/// The goals.
const READ_GOAL: f64 = 2.5;
const POSTGRAPHILE_GOAL: f64 = 3.0;
const LIVE_MEMORY_GOAL_MB: f64 = 250.0;
const LIVE_P99_GOAL: Duration = Duration::from_millis(250);

const ORGANIZATIONS_QUERY: &str =
    "{ organizations(first: 100) { edges { node { name slug members { role user { name email } } } } } }";
/// [`ORGANIZATIONS_QUERY`] in PostGraphile's schema (its Amber preset's
/// names): the same organizations in the same order, their memberships
/// (in primary key order: the comparison sorts them) with each member's
/// user.
const POSTGRAPHILE_ORGANIZATIONS_QUERY: &str = "{ allOrganizations(first: 100, orderBy: [CREATED_AT_ASC, PRIMARY_KEY_ASC]) { nodes { name slug \
     membershipsByOrganizationId { nodes { role userByUserId { name email } } } } } }";
/// The least a read of the caller's own data asks: what any read here,
/// the dashboard included, costs at the least (HTTP, the session, the
/// GraphQL request's parse, validation and execution, one row).
const FLOOR_QUERY: &str = "{ me { name } }";
const DASHBOARD_QUERY: &str = "{ me { memberships { organization { members { user { name } } quota { tokensUsed } apiKeys { name tokensUsed } } } } }";

/// The same JSON as [`ORGANIZATIONS_QUERY`]'s answer, from one statement.
const ORGANIZATIONS_SQL: &str = "SELECT json_build_object('data', json_build_object('organizations', json_build_object('edges', \
     coalesce(json_agg(json_build_object('node', json_build_object('name', o.name, 'slug', o.slug, 'members', \
       (SELECT coalesce(json_agg(json_build_object('role', m.role, 'user', json_build_object('name', u.name, 'email', u.email)) \
          ORDER BY m.created_at, m.user_id), '[]') \
        FROM memberships m JOIN users u ON u.id = m.user_id WHERE m.organization_id = o.id))) \
     ORDER BY o.created_at, o.id), '[]')))) \
     FROM (SELECT id, name, slug, created_at FROM organizations ORDER BY created_at, id LIMIT 100) o;";

/// The same JSON as [`DASHBOARD_QUERY`]'s answer for the member with
/// email `:email` (tokens from the same counters, in the current calendar
/// month: the bench plan's window).
const DASHBOARD_SQL: &str = "SELECT json_build_object('data', json_build_object('me', json_build_object('memberships', \
     (SELECT coalesce(json_agg(json_build_object('organization', json_build_object( \
        'members', (SELECT json_agg(json_build_object('user', json_build_object('name', u.name)) ORDER BY mm.created_at, mm.user_id) \
                    FROM memberships mm JOIN users u ON u.id = mm.user_id WHERE mm.organization_id = m.organization_id), \
        'quota', json_build_object('tokensUsed', (SELECT coalesce(sum(c.tokens), 0) FROM usage_counters c \
                    WHERE c.organization_id = m.organization_id AND c.subject_kind = 'ORGANIZATION' \
                    AND c.window_start >= date_trunc('month', now()))), \
        'apiKeys', (SELECT coalesce(json_agg(json_build_object('name', k.name, 'tokensUsed', \
                      (SELECT coalesce(sum(c.tokens), 0) FROM usage_counters c WHERE c.organization_id = k.organization_id \
                       AND c.subject_kind = 'API_KEY' AND c.subject_id = k.id AND c.window_start >= date_trunc('month', now()))) \
                    ORDER BY k.created_at, k.id), '[]') FROM api_keys k WHERE k.organization_id = m.organization_id AND k.revoked_at IS NULL) \
      )) ORDER BY m.created_at, m.organization_id), '[]') \
      FROM memberships m JOIN users me ON me.id = m.user_id WHERE me.email = :'email'))));";

/// The reads and live-usage benchmark: `cargo bench --bench reads -- [OPTIONS] [WORKLOAD...]`.
#[derive(Parser, Debug)]
#[command(name = "reads")]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// Live-usage subscribers.
    #[arg(long, default_value_t = 10_000)]
    subscribers: usize,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(done) = cli::before_start(&args.common, "reads", WORKLOADS) {
        return done;
    }
    let open_files = procfs::raise_open_files_limit();
    cli::exit_code(cli::on_load_runtime(run(args, open_files)))
}

/// What the workloads need.
struct Bench {
    args: Args,
    server: Server,
    database: Database,
    api: Graphql,
    /// The admin's and the member's `Authorization` headers.
    admin_auth: HeaderMap,
    member_auth: HeaderMap,
    member_email: String,
    /// Organization ids, oldest first.
    organizations: Vec<String>,
    /// PostGraphile's organizations read, once measured.
    postgraphile: Option<Stats>,
}

async fn run(args: Args, open_files: u64) -> Result<usize> {
    let selected = cli::select(WORKLOADS, &args.common.filters)?;
    let (binary, server) = cli::start_server(&args.common, None).await?;
    let database = Database::of(&server, args.common.database_url.as_deref())?;
    let mut bench = Bench::seed(args, server, database).await?;
    println!("{}", preamble(&bench.args, &binary, open_files));
    println!("{}", report::header());
    Ok(cli::run_each(&selected, async |name| match name {
        "postgraphile-organizations" => bench.postgraphile().await,
        "organizations" => {
            bench
                .read(
                    "organizations",
                    ORGANIZATIONS_QUERY,
                    Answer::SameAs(Statement::Organizations),
                )
                .await
        }
        "dashboard" => {
            bench
                .read("dashboard", DASHBOARD_QUERY, Answer::SameAs(Statement::Dashboard))
                .await
        }
        "floor" => {
            bench
                .read("floor", FLOOR_QUERY, Answer::LessThan(Statement::Dashboard))
                .await
        }
        "live" => bench.live().await,
        other => Err(anyhow!("no workload named {other}")),
    })
    .await)
}

/// The lines before the table: the machine and the command.
fn preamble(args: &Args, binary: &Path, open_files: u64) -> String {
    let machine = Machine::now();
    format!(
        "machine: {} CPUs (nproc), {}; load average before the run {}; open files limit {open_files}\n\
         server: {} ({}), PostgreSQL {}\n\
         command: {}\n\
         data: {ORGANIZATIONS} organizations x {} members; the dashboard's member ADMIN in {MEMBER_ORGANIZATIONS} of them (2 keys each)\n\
         reads: {} s warm-up, then {} s measured, c={CONCURRENCY}; references: pgbench -M prepared, same c\n",
        machine.cpus,
        machine.model,
        machine.load,
        server::version(binary),
        binary.display(),
        if args.common.database_url.is_some() {
            "DATABASE_URL"
        } else {
            "embedded"
        },
        cli::command_line("reads"),
        MORE_MEMBERS + 1,
        args.common.warmup,
        args.common.secs,
    )
}

impl Bench {
    /// Organizations and keys through GraphQL as the admin; the members in
    /// bulk through SQL; the dashboard's member by `register`.
    async fn seed(args: Args, server: Server, database: Database) -> Result<Self> {
        let mut api = Graphql::new(&server.base)?;
        api.login_as_admin().await?;
        let run_id = format!("{:x}", std::process::id());
        eprintln!("seeding {ORGANIZATIONS} organizations through GraphQL");
        seed::organizations(&api, ORGANIZATIONS, &run_id).await?;
        let organizations: Vec<String> = database
            .psql(&format!(
                "SELECT id FROM organizations WHERE name LIKE 'Bench {run_id} #%' ORDER BY created_at, id"
            ))?
            .lines()
            .map(str::to_owned)
            .collect();
        if organizations.len() != ORGANIZATIONS {
            bail!(
                "expected {ORGANIZATIONS} seeded organizations, found {}",
                organizations.len()
            );
        }
        eprintln!(
            "seeding {} users and memberships through SQL",
            ORGANIZATIONS * MORE_MEMBERS
        );
        // Ids made from the organization's and the index, so the two
        // statements agree; created_at apart so members have an order.
        database.psql(&format!(
            "BEGIN; \
             INSERT INTO users (id, email, name, created_at, updated_at) \
               SELECT md5(o.id::text || '/' || i)::uuid, format('member%s.%s@bench.example.com', i, o.id), \
                      format('Member %s of %s', i, o.name), now(), now() \
               FROM organizations o, generate_series(1, {MORE_MEMBERS}) i WHERE o.name LIKE 'Bench {run_id} #%'; \
             INSERT INTO memberships (organization_id, user_id, role, created_at, updated_at) \
               SELECT o.id, md5(o.id::text || '/' || i)::uuid, (ARRAY['ADMIN', 'MEMBER', 'MEMBER', 'VIEWER'])[1 + i % 4], \
                      now() + i * interval '1 millisecond', now() \
               FROM organizations o, generate_series(1, {MORE_MEMBERS}) i WHERE o.name LIKE 'Bench {run_id} #%'; \
             COMMIT;"
        ))?;
        let member_email = format!("dashboard-{run_id}@bench.example.com");
        let data = api
            .run(
                "mutation ($input: RegisterInput!) { register(input: $input) { accessToken } }",
                json!({ "input": { "email": member_email, "password": "bench: the member's own long passphrase 9", "name": "Dashboard member" } }),
            )
            .await?;
        let member_token = text(&data["register"]["accessToken"])?;
        let member_organizations = organizations[..MEMBER_ORGANIZATIONS]
            .iter()
            .map(|id| format!("'{id}'"))
            .collect::<Vec<_>>()
            .join(", ");
        database.psql(&format!(
            "INSERT INTO memberships (organization_id, user_id, role, created_at, updated_at) \
             SELECT o.id, u.id, 'ADMIN', now(), now() FROM organizations o, users u \
             WHERE o.id IN ({member_organizations}) AND u.email = '{member_email}';"
        ))?;
        for organization in &organizations[..MEMBER_ORGANIZATIONS] {
            seed::create_key(&api, organization, "dashboard", &["USAGE_READ"]).await?;
        }
        // A second session of the admin's, for the load generator's header.
        let data = api
            .run(
                "mutation ($input: LoginInput!) { login(input: $input) { accessToken } }",
                json!({ "input": { "email": server::ADMIN_EMAIL, "password": server::ADMIN_PASSWORD } }),
            )
            .await?;
        let admin_token = text(&data["login"]["accessToken"])?;
        Ok(Self {
            args,
            admin_auth: load::bearer(&admin_token)?,
            member_auth: load::bearer(&member_token)?,
            member_email,
            server,
            database,
            api,
            organizations,
            postgraphile: None,
        })
    }

    /// The organizations read from PostGraphile v5 on the same database at
    /// the same concurrency, its data compared with the server's answer;
    /// stopped before the server's turn, so the two never share the CPUs.
    async fn postgraphile(&mut self) -> Result<()> {
        let dir = postgraphile::package_dir();
        let node = postgraphile::install(&dir)?;
        let logs = tempfile::Builder::new()
            .prefix("tollgate-bench-postgraphile-")
            .tempdir()?;
        eprintln!("starting PostGraphile ({})", dir.display());
        let peer = PostGraphile::start(&dir, &node, logs.path(), &self.database.url()).await?;
        let target = Target {
            url: peer.url.clone(),
            body: Bytes::from(json!({ "query": POSTGRAPHILE_ORGANIZATIONS_QUERY }).to_string()),
            auth: vec![HeaderMap::new()],
            end_marker: None,
        };
        let answer = load::graphql_once(&target)
            .await
            .map_err(|e| anyhow!("PostGraphile's answer: {e:#}; its log:\n{}", peer.process.log_tail(20)))?;
        let ours = load::graphql_once(&Target {
            url: format!("{}/graphql", self.server.base),
            body: Bytes::from(json!({ "query": ORGANIZATIONS_QUERY }).to_string()),
            auth: vec![self.admin_auth.clone()],
            end_marker: None,
        })
        .await?;
        let theirs = postgraphile_organizations(&answer);
        let same = if theirs == server_organizations(&ours) {
            let members: usize = theirs.iter().map(|organization| organization.members.len()).sum();
            format!(
                "same data as the server's answer ({} organizations, {members} members)",
                theirs.len()
            )
        } else {
            let head = |value: &Value| value.to_string().chars().take(400).collect::<String>();
            eprintln!(
                "postgraphile-organizations: the data differ\nPostGraphile: {}\nserver:       {}",
                head(&answer),
                head(&ours)
            );
            "DATA DIFFERS from the server's answer".to_owned()
        };
        let stats = load::run(&target, self.args.common.shape(CONCURRENCY)).await?;
        if stats.ok == 0 {
            bail!("no call succeeded: {}", stats.first_error.as_deref().unwrap_or("?"));
        }
        let mut notes = format!("{} KB per answer; {same}", answer.to_string().len() / 1000);
        if stats.errors > 0 {
            notes.push_str(&format!(
                "; {} failed, first: {}",
                stats.errors,
                stats.first_error.as_deref().unwrap_or("?")
            ));
        }
        drop(peer);
        Row {
            workload: "postgraphile-organizations".to_owned(),
            concurrency: CONCURRENCY,
            stats: Some(stats.clone()),
            reference: "(peer: PostGraphile v5, same database)".to_owned(),
            notes,
            ..Row::default()
        }
        .emit();
        self.postgraphile = Some(stats);
        Ok(())
    }

    /// A read over HTTP next to a statement (the one that builds the same
    /// JSON, or for the floor a larger one), each measured alone at the
    /// same concurrency.
    async fn read(&self, name: &str, query: &str, measured: Answer) -> Result<()> {
        let statement = measured.statement();
        let as_admin = statement == Statement::Organizations;
        let (auth, sql) = if as_admin {
            (self.admin_auth.clone(), ORGANIZATIONS_SQL.to_owned())
        } else {
            let email = self.member_email.replace('\'', "''");
            (
                self.member_auth.clone(),
                DASHBOARD_SQL.replace(":'email'", &format!("'{email}'")),
            )
        };
        let target = Target {
            url: format!("{}/graphql", self.server.base),
            body: Bytes::from(json!({ "query": query }).to_string()),
            auth: vec![auth],
            end_marker: None,
        };
        // Once each, to compare the answers and their sizes.
        let answer = load::graphql_once(&target).await?;
        let answer_bytes = answer.to_string().len();
        let reference: Value = serde_json::from_str(&self.database.psql(&sql)?).context("the reference's JSON")?;
        let same = if let Answer::LessThan(_) = measured {
            "not the statement's JSON: a floor"
        } else if same_shape(&answer, &reference) {
            "same JSON"
        } else {
            let head = |value: &Value| value.to_string().chars().take(400).collect::<String>();
            eprintln!(
                "{name}: the answers differ\nGraphQL: {}\nSQL:     {}",
                head(&answer),
                head(&reference)
            );
            "JSON differs"
        };

        let reference_name = format!("sql-{}", statement.workload());
        let reference_stats =
            self.database
                .pgbench(&sql, CONCURRENCY, self.args.common.warmup(), self.args.common.window())?;
        Row {
            workload: reference_name.clone(),
            concurrency: CONCURRENCY,
            stats: Some(reference_stats.clone()),
            reference: "(reference: one json_agg statement, pgbench)".to_owned(),
            notes: format!("{} KB per answer", reference.to_string().len() / 1000),
            ..Row::default()
        }
        .emit();

        let pid = self.server.pid()?;
        let postmaster = self.server.postmaster();
        let before = (procfs::cpu_ticks(pid).unwrap_or(0), postmaster.map(procfs::tree_sample));
        let stats = load::run(&target, self.args.common.shape(CONCURRENCY)).await?;
        let after = (procfs::cpu_ticks(pid).unwrap_or(0), postmaster.map(procfs::tree_sample));
        if stats.ok == 0 {
            bail!("no call succeeded: {}", stats.first_error.as_deref().unwrap_or("?"));
        }
        // The whole run, warm-up included: CPU per call is a ratio.
        let calls = (stats.rps() * (self.args.common.secs + self.args.common.warmup) as f64).max(1.0);
        let per_call = |ticks: u64| {
            report::ms(Duration::from_secs_f64(
                ticks as f64 / procfs::ticks_per_second() / calls,
            ))
        };
        let mut notes = format!(
            "{} KB per answer ({same}); server CPU ~{}/call",
            answer_bytes / 1000,
            per_call(after.0.saturating_sub(before.0))
        );
        if let (Some(before), Some(after)) = (before.1, after.1) {
            notes.push_str(&format!(
                ", PostgreSQL ~{}/call",
                per_call(after.cpu_ticks.saturating_sub(before.cpu_ticks))
            ));
        }
        notes.push_str(&format!(
            "; server RSS {}",
            report::megabytes(procfs::status_kib(pid, "VmRSS").unwrap_or(0))
        ));
        if stats.errors > 0 {
            notes.push_str(&format!(
                "; {} failed, first: {}",
                stats.errors,
                stats.first_error.as_deref().unwrap_or("?")
            ));
        }
        let ratio = stats.rps() / reference_stats.rps().max(f64::EPSILON);
        let mut reference = report::summary(&reference_name, &reference_stats);
        let mut ratio = match measured {
            Answer::SameAs(_) => format!("{ratio:.2}x the statement's req/s (goal {READ_GOAL}x)"),
            Answer::LessThan(statement) => format!(
                "{ratio:.2}x the statement's req/s: the most a read can reach against it (the {} goal is {READ_GOAL}x)",
                statement.workload()
            ),
        };
        if let Some(peer) = self.postgraphile.as_ref().filter(|_| as_admin) {
            reference.push_str(&format!("; {}", report::summary("postgraphile-organizations", peer)));
            ratio.push_str(&format!(
                "; {:.2}x PostGraphile's req/s (goal {POSTGRAPHILE_GOAL}x), p99 {} vs its {}",
                stats.rps() / peer.rps().max(f64::EPSILON),
                report::ms(stats.p99()),
                report::ms(peer.p99())
            ));
        }
        Row {
            workload: name.to_owned(),
            concurrency: CONCURRENCY,
            stats: Some(stats.clone()),
            reference,
            ratio,
            notes,
        }
        .emit();
        Ok(())
    }

    /// Subscribers of one organization with many keys, one event to all.
    async fn live(&mut self) -> Result<()> {
        let count = self.args.subscribers.max(1);
        let organization = self.organizations[0].clone();
        let key_count = count.div_ceil(SOCKETS_PER_KEY);
        eprintln!("creating {key_count} USAGE_READ keys");
        let api = &self.api;
        let keys: Vec<String> = futures_util::stream::iter(0..key_count)
            .map(|index| {
                let organization = organization.clone();
                async move {
                    let key = seed::create_key(api, &organization, &format!("live {index}"), &["USAGE_READ"]).await?;
                    Ok::<_, anyhow::Error>(key.secret)
                }
            })
            .buffer_unordered(8)
            .try_collect()
            .await?;
        let writer = seed::create_key(api, &organization, "live writer", &["USAGE_WRITE"])
            .await?
            .secret;
        let pid = self.server.pid()?;
        let rss = || procfs::status_kib(pid, "VmRSS").unwrap_or(0);
        // Settle, then the baseline.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let baseline = rss();
        eprintln!("opening {count} subscribers");
        let opened_at = Instant::now();
        let ws_url = format!("{}/graphql", self.server.base.replacen("http", "ws", 1));
        let mut subscribers = live::open(&ws_url, &keys, count, &organization).await?;
        let connected = subscribers.connected.load(std::sync::atomic::Ordering::Relaxed);
        eprintln!(
            "{connected} of {count} connected in {:.1} s",
            opened_at.elapsed().as_secs_f64()
        );
        if connected == 0 {
            bail!(
                "no subscriber connected: {}",
                subscribers.first_failure().unwrap_or_default()
            );
        }
        // Subscriptions start when the server has checked their access;
        // events until every connected subscriber has had one.
        let mut ready: HashSet<usize> = HashSet::with_capacity(connected);
        for round in 0..20 {
            let connected = subscribers.connected.load(std::sync::atomic::Ordering::Relaxed);
            self.record_usage(&writer, &format!("warm-{round}")).await?;
            for arrival in subscribers.collect(connected, Duration::from_secs(3)).await {
                ready.insert(arrival.subscriber);
            }
            eprintln!(
                "warm-up event {round}: {} of {connected} subscribers have had one",
                ready.len()
            );
            if ready.len() >= connected {
                break;
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let subscribed_kib = rss();
        let connected = subscribers.connected.load(std::sync::atomic::Ordering::Relaxed);
        let sent = Instant::now();
        self.record_usage(&writer, "measured").await?;
        let arrivals = subscribers.collect(connected, Duration::from_secs(60)).await;
        let mut latencies: Vec<u32> = arrivals
            .iter()
            .map(|arrival| u32::try_from(arrival.at.duration_since(sent).as_micros()).unwrap_or(u32::MAX))
            .collect();
        latencies.sort_unstable();
        let peak_kib = rss().max(subscribed_kib);
        let failures = subscribers.failures.load(std::sync::atomic::Ordering::Relaxed);
        let first_failure = subscribers.first_failure();
        subscribers.close().await;
        // Memory after load: given a few seconds to be handed back.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let after_kib = rss();
        let stats = Stats {
            ok: latencies.len(),
            errors: connected.saturating_sub(latencies.len()) + failures,
            first_error: first_failure.clone(),
            latencies_us: latencies,
            window: sent.elapsed(),
        };
        let per_subscriber = subscribed_kib.saturating_sub(baseline) as f64 * 1.024 / connected as f64;
        let peak_mb = peak_kib as f64 * 1024.0 / 1e6;
        let mut notes = format!(
            "{connected} subscribed over {key_count} keys; {} of them got the event; server RSS {} idle, {} subscribed ({per_subscriber:.1} KB each), {} peak, {} after they left",
            stats.ok,
            report::megabytes(baseline),
            report::megabytes(subscribed_kib),
            report::megabytes(peak_kib),
            report::megabytes(after_kib),
        );
        if let Some(first) = first_failure {
            notes.push_str(&format!("; {failures} subscriber failures, first: {first}"));
        }
        Row {
            workload: format!("live-{count}"),
            concurrency: count,
            // p50 and p99 of delivery after the event was sent; req/s is
            // deliveries per second until the last one.
            stats: Some(stats.clone()),
            reference: format!(
                "goal: 10,000 subscribers < {LIVE_MEMORY_GOAL_MB:.0} MB, p99 < {}",
                report::ms(LIVE_P99_GOAL)
            ),
            ratio: format!(
                "{:.2}x the memory goal, {:.2}x the p99 goal",
                peak_mb / LIVE_MEMORY_GOAL_MB,
                stats.p99().as_secs_f64() / LIVE_P99_GOAL.as_secs_f64()
            ),
            notes,
        }
        .emit();
        Ok(())
    }

    /// One usage event through `recordUsage` with a USAGE_WRITE key.
    async fn record_usage(&self, key: &str, request_id: &str) -> Result<()> {
        let client = load::client()?;
        let answer: Value = client
            .post(format!("{}/graphql", self.server.base))
            .bearer_auth(key)
            .json(&json!({
                "query": "mutation ($input: RecordUsageInput!) { recordUsage(input: $input) { event { id } } }",
                "variables": { "input": { "model": "gpt-4o-mini", "promptTokens": 120, "completionTokens": 30, "requestId": format!("bench-{request_id}") } }
            }))
            .send()
            .await?
            .json()
            .await?;
        if answer.get("errors").is_some() {
            bail!("recordUsage failed: {}", answer["errors"]);
        }
        Ok(())
    }
}

/// An organization as both servers' answers carry it, for comparing them:
/// its members sorted (PostGraphile lists them in primary key order).
#[derive(Debug, PartialEq, Eq)]
struct OrganizationData {
    name: String,
    slug: String,
    /// (role, user's name, user's email)
    members: Vec<(String, String, String)>,
}

fn organization_data(name: &Value, slug: &Value, members: &[Value], role: &str, user: &str) -> OrganizationData {
    let field = |value: &Value| value.as_str().unwrap_or_default().to_owned();
    let mut members: Vec<(String, String, String)> = members
        .iter()
        .map(|member| {
            (
                field(&member[role]),
                field(&member[user]["name"]),
                field(&member[user]["email"]),
            )
        })
        .collect();
    members.sort();
    OrganizationData {
        name: field(name),
        slug: field(slug),
        members,
    }
}

/// The organizations of the server's answer to [`ORGANIZATIONS_QUERY`].
fn server_organizations(answer: &Value) -> Vec<OrganizationData> {
    let edges = answer["data"]["organizations"]["edges"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    edges
        .iter()
        .map(|edge| {
            let node = &edge["node"];
            let members = node["members"].as_array().cloned().unwrap_or_default();
            organization_data(&node["name"], &node["slug"], &members, "role", "user")
        })
        .collect()
}

/// The organizations of PostGraphile's answer to
/// [`POSTGRAPHILE_ORGANIZATIONS_QUERY`].
fn postgraphile_organizations(answer: &Value) -> Vec<OrganizationData> {
    let nodes = answer["data"]["allOrganizations"]["nodes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    nodes
        .iter()
        .map(|node| {
            let members = node["membershipsByOrganizationId"]["nodes"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            organization_data(&node["name"], &node["slug"], &members, "role", "userByUserId")
        })
        .collect()
}

/// What a read's answer is to its statement's.
#[derive(Clone, Copy)]
enum Answer {
    /// The same JSON: the read is measured against the statement.
    SameAs(Statement),
    /// Less (a floor): the statement is the bar no read can pass.
    LessThan(Statement),
}

impl Answer {
    fn statement(self) -> Statement {
        match self {
            Self::SameAs(statement) | Self::LessThan(statement) => statement,
        }
    }
}

/// The reference statements, one per read.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Statement {
    /// [`ORGANIZATIONS_SQL`], as the admin.
    Organizations,
    /// [`DASHBOARD_SQL`], as the dashboard's member.
    Dashboard,
}

impl Statement {
    /// The workload whose JSON it builds.
    fn workload(self) -> &'static str {
        match self {
            Self::Organizations => "organizations",
            Self::Dashboard => "dashboard",
        }
    }
}

/// The same JSON, numbers compared by value (BigInt is a string in
/// GraphQL, and the reference casts them the same way).
fn same_shape(a: &Value, b: &Value) -> bool {
    a == b
}
