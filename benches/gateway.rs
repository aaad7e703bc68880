//! The repository's benchmark (`cargo bench --bench gateway`; see
//! `benches/README.md`).
//!
//! It runs the release `tollgate` binary as a separate process with its
//! own data folder (so its own embedded PostgreSQL), seeds it through the
//! CLI and GraphQL only, starts a fake LLM upstream in this process on its
//! own runtime, and drives each workload with a load generator on another
//! runtime for a bounded time. Each workload prints one Markdown row:
//! requests/s, p50, p99, the reference measured in the same run, and the
//! ratio.
//!
//! To add a workload: a line in [`WORKLOADS`] and an arm in
//! [`Bench::run_workload`]; what it needs from the server (seeded data,
//! a probe of its CPU and memory) is in `support/`.

#[path = "../tests/it/harness/llm_fake.rs"]
mod llm_fake;
mod support;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::{Result, anyhow, bail};
use axum::body::Bytes;
use clap::Parser;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::json;

use llm_fake::{Behaviour, FakeLlm};
use support::{
    cli::{self, CommonArgs, Workloads},
    litellm::{self, LiteLlm},
    load::{self, Stats, Target, bearer},
    procfs::{self, Sample},
    report::{self, Machine, Row, Skipped, first_line},
    seed::{self, Graphql},
    server::{self, Server},
};

/// The workloads, in the order they run: a reference comes before what is
/// compared with it, and `streams-1000` last (it queues slow answers in the
/// fake upstream).
const WORKLOADS: Workloads = &[
    (
        "direct",
        "chat completions straight to the fake upstream, c=100: the reference",
    ),
    (
        "gateway",
        "the same through the gateway, c=100 over 20 organizations' keys; server and PostgreSQL CPU per call",
    ),
    ("hot-org", "the same, c=100 on one organization's key"),
    (
        "direct-stream",
        "streamed chat completions straight to the fake, c=100, read to the end",
    ),
    ("gateway-stream", "the same through the gateway, c=100 over 20 keys"),
    ("anthropic-direct", "Anthropic messages straight to the fake, c=100"),
    (
        "anthropic",
        "the same through the gateway's /v1/messages, c=100 over 20 keys",
    ),
    (
        "litellm",
        "LiteLLM's proxy (no database) on the same fake at c=32, then the gateway at c=32 (needs --litellm or litellm on PATH)",
    ),
    (
        "streams-1000",
        "1,000 concurrent streams held open through the gateway (~5 s each): the server's peak RSS",
    ),
];

/// Callers in flight for the c=100 workloads.
const CONCURRENCY: usize = 100;
/// Callers in flight against LiteLLM, as in the measurement.
const PEER_CONCURRENCY: usize = 32;
/// The fake's key, which it accepts as any other.
const UPSTREAM_KEY: &str = "sk-fake-benchmark-key";
/// Content deltas per stream in `streams-1000`.
const SLOW_STREAM_CHUNKS: usize = 5;
/// The memory target for 1,000 streams, in MB.
const STREAMS_TARGET_MB: f64 = 300.0;

/// The LLM gateway's benchmark: run by `cargo bench --bench gateway -- [OPTIONS] [WORKLOAD...]`.
#[derive(Parser, Debug)]
#[command(name = "gateway")]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// Run the server with this Redis (default: none).
    #[arg(long)]
    redis: Option<String>,
    /// The `litellm` executable for the `litellm` workload (default: the
    /// one on PATH, if any).
    #[arg(long)]
    litellm: Option<PathBuf>,
    /// Organizations (each with one key) the load spreads over.
    #[arg(long, default_value_t = 20)]
    organizations: usize,
    /// Streams held open at once in `streams-1000`.
    #[arg(long, default_value_t = 1000)]
    streams: usize,
    /// How long each of those streams lasts, in seconds.
    #[arg(long, default_value_t = 5)]
    stream_secs: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(done) = cli::before_start(&args.common, "gateway", WORKLOADS) {
        return done;
    }
    cli::exit_code(main_with(args))
}

/// Starts the fake upstream on its runtime, then runs the benchmark on the
/// load generator's.
fn main_with(args: Args) -> Result<usize> {
    let open_files = procfs::raise_open_files_limit();
    let fake_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("fake-llm")
        .enable_all()
        .build()?;
    let fake = Arc::new(fake_runtime.block_on(FakeLlm::start()));
    // Millions of calls must neither grow memory nor contend on its lock.
    fake.set_recording(false);
    let outcome = cli::on_load_runtime(run(args, fake.clone(), open_files));
    drop(fake);
    fake_runtime.shutdown_timeout(Duration::from_secs(2));
    outcome
}

/// Everything a workload needs.
struct Bench {
    args: Args,
    server: Server,
    fake: Arc<FakeLlm>,
    /// One `LLM` key per organization.
    keys: Vec<String>,
    /// `Err`: why the gateway's workloads are skipped.
    gateway: Result<(), String>,
    /// Stats of the workloads run so far, for references.
    measured: HashMap<&'static str, Stats>,
}

async fn run(args: Args, fake: Arc<FakeLlm>, open_files: u64) -> Result<usize> {
    let selected = cli::select(WORKLOADS, &args.common.filters)?;
    let (binary, server) = cli::start_server(&args.common, args.redis.clone()).await?;
    eprintln!("seeding {} organizations through GraphQL", args.organizations);
    let mut api = Graphql::new(&server.base)?;
    api.login_as_admin().await?;
    let run_id = format!("{:x}", std::process::id());
    let seeded = seed::organizations(&api, args.organizations.max(1), &run_id).await?;
    let mut bench = Bench {
        args,
        server,
        fake,
        keys: seeded.keys,
        gateway: Ok(()),
        measured: HashMap::new(),
    };
    bench.gateway = bench.prepare_gateway(&api).await;
    if let Err(why) = &bench.gateway {
        eprintln!("the gateway's workloads will be skipped: {why}");
    }

    println!("{}", preamble(&bench.args, &binary, open_files));
    println!("{}", report::header());
    Ok(cli::run_each(&selected, async |name| bench.run_workload(name).await).await)
}

/// The lines before the table: the machine and the command.
fn preamble(args: &Args, binary: &Path, open_files: u64) -> String {
    let machine = Machine::now();
    let database = if args.common.database_url.is_some() {
        "DATABASE_URL"
    } else {
        "embedded"
    };
    let redis = if args.redis.is_some() { "yes" } else { "none" };
    format!(
        "machine: {} CPUs (nproc), {}, {}; load average before the run {}; open files limit {open_files}\n\
         server: {} ({}), PostgreSQL {database}, Redis {redis}\n\
         command: {}\n\
         each row: {} s warm-up, then {} s measured; a latency is a whole call (streams: to their last byte)\n",
        machine.cpus,
        machine.model,
        machine.memory,
        machine.load,
        server::version(binary),
        binary.display(),
        cli::command_line("gateway"),
        args.common.warmup,
        args.common.secs,
    )
}

/// A header set with one header.
fn header(name: &'static str, value: &str) -> Result<HeaderMap> {
    let mut headers = HeaderMap::new();
    headers.insert(HeaderName::from_static(name), HeaderValue::from_str(value)?);
    Ok(headers)
}

fn anthropic_auth(key: &str) -> Result<HeaderMap> {
    let mut headers = header("x-api-key", key)?;
    headers.insert("anthropic-version", HeaderValue::from_static("2023-06-01"));
    Ok(headers)
}

/// A small chat completion, as an editor sends it.
fn openai_body(stream: bool) -> Bytes {
    let mut body = json!({
        "model": seed::OPENAI_MODEL,
        "messages": [
            { "role": "system", "content": "You are a terse assistant." },
            { "role": "user", "content": "Say hello in five words." }
        ]
    });
    if stream {
        body["stream"] = json!(true);
    }
    Bytes::from(body.to_string())
}

fn anthropic_body() -> Bytes {
    Bytes::from(
        json!({
            "model": seed::ANTHROPIC_MODEL,
            "max_tokens": 64,
            "messages": [{ "role": "user", "content": "Say hello in five words." }]
        })
        .to_string(),
    )
}

/// What a probe reads before and after a measured window.
#[derive(Clone, Copy, Debug)]
struct Usage {
    /// The measured process (with its children, for LiteLLM).
    main: Sample,
    /// The embedded PostgreSQL (postmaster and backends), when there is one.
    postgres: Option<Sample>,
}

/// Which processes a probe reads.
#[derive(Clone, Copy, Debug)]
enum Probe {
    /// The tollgate server and its embedded PostgreSQL.
    Server { pid: u32, postmaster: Option<u32> },
    /// A process and its children (LiteLLM and its workers).
    Tree(u32),
}

impl Probe {
    fn read(self) -> Usage {
        match self {
            Probe::Server { pid, postmaster } => Usage {
                main: Sample {
                    cpu_ticks: procfs::cpu_ticks(pid).unwrap_or(0),
                    rss_kib: procfs::status_kib(pid, "VmRSS").unwrap_or(0),
                },
                postgres: postmaster.map(procfs::tree_sample),
            },
            Probe::Tree(pid) => Usage {
                main: procfs::tree_sample(pid),
                postgres: None,
            },
        }
    }
}

/// CPU per call between two readings, and memory at the end.
fn usage_notes(label: &str, before: &Usage, after: &Usage, calls: usize) -> String {
    let per_call = |before: &Sample, after: &Sample| {
        let seconds = after.cpu_ticks.saturating_sub(before.cpu_ticks) as f64 / procfs::ticks_per_second();
        report::ms(Duration::from_secs_f64(seconds / calls.max(1) as f64))
    };
    let mut notes = format!("{label} CPU {}/call", per_call(&before.main, &after.main));
    if let (Some(before), Some(after)) = (&before.postgres, &after.postgres) {
        notes.push_str(&format!(", PostgreSQL {}/call", per_call(before, after)));
    }
    notes.push_str(&format!("; {label} RSS {}", report::megabytes(after.main.rss_kib)));
    notes
}

impl Bench {
    fn server_probe(&self) -> Result<Probe> {
        Ok(Probe::Server {
            pid: self.server.pid()?,
            postmaster: self.server.postmaster(),
        })
    }

    /// Routes the catalog models to the fake, then makes one call through
    /// the gateway; `Err` says why the gateway cannot be measured.
    async fn prepare_gateway(&self, api: &Graphql) -> Result<(), String> {
        seed::gateway_routes(api, &self.fake.openai_base(), &self.fake.anthropic_base())
            .await
            .map_err(|e| format!("seeding providers and routes: {e:#}"))?;
        let target = self.gateway_openai(false, 1).map_err(|e| e.to_string())?;
        let client = load::client().map_err(|e| e.to_string())?;
        load::call(&client, &target, &target.auth[0])
            .await
            .map_err(|e| format!("a first call through the gateway failed: {e}"))
    }

    fn gateway_ready(&self) -> Result<()> {
        self.gateway.clone().map_err(|why| Skipped(why).into())
    }

    fn direct_openai(&self, stream: bool) -> Result<Target> {
        Ok(Target {
            url: format!("{}/chat/completions", self.fake.openai_base()),
            body: openai_body(stream),
            auth: vec![bearer(UPSTREAM_KEY)?],
            end_marker: stream.then_some(b"[DONE]".as_slice()),
        })
    }

    /// Chat completions through the gateway with the first `keys` keys.
    fn gateway_openai(&self, stream: bool, keys: usize) -> Result<Target> {
        Ok(Target {
            url: format!("{}/v1/chat/completions", self.server.base),
            body: openai_body(stream),
            auth: self
                .keys
                .iter()
                .take(keys)
                .map(|key| bearer(key))
                .collect::<Result<_>>()?,
            end_marker: stream.then_some(b"[DONE]".as_slice()),
        })
    }

    /// What a simple workload sends, and how many callers.
    fn target(&self, name: &str) -> Result<(Target, usize)> {
        let all = self.keys.len();
        let target = match name {
            "direct" => self.direct_openai(false)?,
            "direct-stream" => self.direct_openai(true)?,
            "anthropic-direct" => Target {
                url: format!("{}/v1/messages", self.fake.anthropic_base()),
                body: anthropic_body(),
                auth: vec![anthropic_auth(UPSTREAM_KEY)?],
                end_marker: None,
            },
            "gateway" => self.gateway_openai(false, all)?,
            "hot-org" => self.gateway_openai(false, 1)?,
            "gateway-stream" => self.gateway_openai(true, all)?,
            "anthropic" => Target {
                url: format!("{}/v1/messages", self.server.base),
                body: anthropic_body(),
                auth: self.keys.iter().map(|key| anthropic_auth(key)).collect::<Result<_>>()?,
                end_marker: None,
            },
            other => bail!("no target named {other}"),
        };
        Ok((target, CONCURRENCY))
    }

    async fn run_workload(&mut self, name: &'static str) -> Result<()> {
        match name {
            "direct" | "direct-stream" | "anthropic-direct" => self.reference(name).await.map(drop),
            "gateway" | "hot-org" => self.through_gateway(name, "direct").await,
            "gateway-stream" => self.through_gateway(name, "direct-stream").await,
            "anthropic" => self.through_gateway(name, "anthropic-direct").await,
            "litellm" => self.litellm().await,
            "streams-1000" => self.streams().await,
            other => bail!("no workload named {other}"),
        }
    }

    /// Runs `target` with a probe reading CPU and memory over the measured
    /// window.
    async fn measure(
        &self,
        target: &Target,
        concurrency: usize,
        probe: Option<Probe>,
    ) -> Result<(Stats, Option<(Usage, Usage)>)> {
        let shape = self.args.common.shape(concurrency);
        let readings = probe.map(|probe| {
            tokio::spawn(async move {
                tokio::time::sleep(shape.warmup).await;
                let before = probe.read();
                tokio::time::sleep(shape.window).await;
                (before, probe.read())
            })
        });
        let stats = load::run(target, shape).await?;
        let readings = match readings {
            Some(task) => Some(task.await?),
            None => None,
        };
        if stats.ok == 0 {
            bail!(
                "no call succeeded ({} failed): {}",
                stats.errors,
                stats
                    .first_error
                    .as_deref()
                    .unwrap_or("no call completed in the window")
            );
        }
        Ok((stats, readings))
    }

    /// A reference workload (the upstream called directly), measured once
    /// per run and printed when measured.
    async fn reference(&mut self, name: &'static str) -> Result<Stats> {
        if let Some(stats) = self.measured.get(name) {
            return Ok(stats.clone());
        }
        let (target, concurrency) = self.target(name)?;
        let (stats, _) = self.measure(&target, concurrency, None).await?;
        Row {
            workload: name.to_owned(),
            concurrency,
            stats: Some(stats.clone()),
            reference: "(reference)".to_owned(),
            notes: error_note(&stats),
            ..Row::default()
        }
        .emit();
        self.measured.insert(name, stats.clone());
        Ok(stats)
    }

    /// A gateway workload next to its reference: the latency it adds.
    async fn through_gateway(&mut self, name: &'static str, reference: &'static str) -> Result<()> {
        self.gateway_ready()?;
        let direct = self.reference(reference).await?;
        let (target, concurrency) = self.target(name)?;
        let (stats, readings) = self.measure(&target, concurrency, Some(self.server_probe()?)).await?;
        let mut notes = readings
            .map(|(before, after)| usage_notes("server", &before, &after, stats.ok))
            .unwrap_or_default();
        notes.push_str(&error_note(&stats));
        Row {
            workload: name.to_owned(),
            concurrency,
            stats: Some(stats.clone()),
            reference: report::summary(reference, &direct),
            ratio: report::added(&stats, &direct),
            notes,
        }
        .emit();
        self.measured.insert(name, stats);
        Ok(())
    }

    /// LiteLLM's proxy and the gateway, each alone on the machine, at the
    /// concurrency of the measurement.
    async fn litellm(&mut self) -> Result<()> {
        let Some(binary) = litellm::find(self.args.litellm.as_deref()) else {
            return Err(Skipped("no litellm: pass --litellm PATH or put it on PATH (benches/README.md)".into()).into());
        };
        let dir = tempfile::Builder::new().prefix("tollgate-bench-litellm-").tempdir()?;
        eprintln!("starting LiteLLM ({})", binary.display());
        let proxy = LiteLlm::start(&binary, dir.path(), seed::OPENAI_MODEL, &self.fake.openai_base()).await?;
        let target = Target {
            url: format!("{}/v1/chat/completions", proxy.base),
            body: openai_body(false),
            auth: vec![bearer(litellm::MASTER_KEY)?],
            end_marker: None,
        };
        let client = load::client()?;
        load::call(&client, &target, &target.auth[0]).await.map_err(|e| {
            anyhow!(
                "a first call through LiteLLM failed: {e}; its log:\n{}",
                proxy.process.log_tail(20)
            )
        })?;
        let (peer, readings) = self
            .measure(&target, PEER_CONCURRENCY, Some(Probe::Tree(proxy.process.pid())))
            .await?;
        let mut notes = readings
            .map(|(before, after)| usage_notes("LiteLLM", &before, &after, peer.ok))
            .unwrap_or_default();
        notes.push_str(&error_note(&peer));
        Row {
            workload: "litellm".to_owned(),
            concurrency: PEER_CONCURRENCY,
            stats: Some(peer.clone()),
            reference: "(peer)".to_owned(),
            notes,
            ..Row::default()
        }
        .emit();
        // Stopped before the gateway's turn, so it does not take the CPUs.
        drop(proxy);
        if let Err(why) = &self.gateway {
            Row {
                workload: "gateway-c32".to_owned(),
                notes: format!("skipped: {why}"),
                ..Row::default()
            }
            .emit();
            return Ok(());
        }

        let target = self.gateway_openai(false, self.keys.len())?;
        let (stats, readings) = self
            .measure(&target, PEER_CONCURRENCY, Some(self.server_probe()?))
            .await?;
        let mut notes = readings
            .map(|(before, after)| usage_notes("server", &before, &after, stats.ok))
            .unwrap_or_default();
        notes.push_str(&error_note(&stats));
        Row {
            workload: "gateway-c32".to_owned(),
            concurrency: PEER_CONCURRENCY,
            stats: Some(stats.clone()),
            reference: report::summary("litellm", &peer),
            ratio: format!(
                "{:.1}x LiteLLM's req/s; p99 {} vs LiteLLM's p50 {}",
                stats.rps() / peer.rps().max(f64::EPSILON),
                report::ms(stats.p99()),
                report::ms(peer.p50())
            ),
            notes,
        }
        .emit();
        Ok(())
    }

    /// Many streams held open at once through the gateway, slow enough to
    /// overlap: the server's memory while it carries them.
    async fn streams(&mut self) -> Result<()> {
        self.gateway_ready()?;
        let count = self.args.streams.max(1);
        let interval = Duration::from_secs(self.args.stream_secs) / SLOW_STREAM_CHUNKS as u32;
        for _ in 0..count {
            self.fake.push(Behaviour {
                chunks: SLOW_STREAM_CHUNKS,
                chunk_interval: interval,
                ..Behaviour::default()
            });
        }
        let pid = self.server.pid()?;
        let idle_kib = procfs::status_kib(pid, "VmRSS").unwrap_or(0);
        let done = Arc::new(AtomicBool::new(false));
        let sampler = tokio::spawn({
            let (done, fake) = (done.clone(), self.fake.clone());
            async move {
                let (mut peak_kib, mut peak_open) = (0, 0);
                while !done.load(Ordering::Relaxed) {
                    peak_kib = peak_kib.max(procfs::status_kib(pid, "VmRSS").unwrap_or(0));
                    peak_open = peak_open.max(fake.in_flight());
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                (peak_kib, peak_open)
            }
        });
        let target = self.gateway_openai(true, self.keys.len())?;
        let stats = load::once_each(&target, count).await;
        done.store(true, Ordering::Relaxed);
        let (peak_kib, peak_open) = sampler.await?;
        let stats = stats?;
        if stats.ok == 0 {
            bail!("no stream succeeded: {}", stats.first_error.as_deref().unwrap_or("?"));
        }
        let high_water = procfs::status_kib(pid, "VmHWM").unwrap_or(0);
        let per_stream_kib = peak_kib.saturating_sub(idle_kib) as f64 / count as f64;
        let peak_mb = peak_kib as f64 * 1024.0 / 1e6;
        let mut notes = format!(
            "peak RSS {} (before: {}; VmHWM {}), {:.0} KB more per stream; {peak_open} streams open upstream at once",
            report::megabytes(peak_kib),
            report::megabytes(idle_kib),
            report::megabytes(high_water),
            per_stream_kib * 1.024,
        );
        notes.push_str(&error_note(&stats));
        Row {
            workload: format!("streams-{count}"),
            concurrency: count,
            stats: Some(stats),
            reference: format!("target: 1,000 streams in < {STREAMS_TARGET_MB:.0} MB"),
            ratio: format!("{:.2}x the target", peak_mb / STREAMS_TARGET_MB),
            notes,
        }
        .emit();
        Ok(())
    }
}

/// Failed calls, said in the notes.
fn error_note(stats: &Stats) -> String {
    match &stats.first_error {
        Some(first) if stats.errors > 0 => format!("; {} failed, first: {}", stats.errors, first_line(first)),
        _ => String::new(),
    }
}
