//! What every benchmark's `main` does alike: the options they share, the
//! workload list and filters, the load generator's runtime (stopped on
//! Ctrl-C or SIGTERM), the server binary (built first when it is the
//! default one) and the exit code. Each benchmark keeps only its own
//! workloads and options.

use std::{
    future::Future,
    path::{Path, PathBuf},
    process::{Command, ExitCode},
    time::Duration,
};

use anyhow::{Context, Result, anyhow, bail};

use super::{
    load::Shape,
    report::{self, Row},
    server::{Server, ServerOptions},
};

/// A benchmark's workloads in the order they run: name, what it measures.
pub type Workloads = &'static [(&'static str, &'static str)];

/// The options every benchmark takes (`#[command(flatten)]` into its own).
#[derive(clap::Args, Debug)]
pub struct CommonArgs {
    /// Workloads to run: names or parts of names (default: all; --list
    /// shows them).
    pub filters: Vec<String>,
    /// Measured seconds per workload.
    #[arg(long, default_value_t = 10)]
    pub secs: u64,
    /// Seconds of load before each measurement.
    #[arg(long, default_value_t = 2)]
    pub warmup: u64,
    /// The server binary (default: `tollgate` next to this benchmark, in
    /// target/release, built first with `cargo build --release --bin tollgate`).
    #[arg(long)]
    pub server_bin: Option<PathBuf>,
    /// Do not run `cargo build` for the default server binary.
    #[arg(long)]
    pub no_build: bool,
    /// Use this database instead of the server's embedded PostgreSQL.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// List the workloads and exit.
    #[arg(long)]
    pub list: bool,
    /// Passed by `cargo bench`; without it (`cargo test --benches`) the
    /// benchmark does nothing.
    #[arg(long, hide = true)]
    pub bench: bool,
}

impl CommonArgs {
    /// The warm-up before each measured window.
    pub fn warmup(&self) -> Duration {
        Duration::from_secs(self.warmup)
    }

    /// The measured window (at least a second).
    pub fn window(&self) -> Duration {
        Duration::from_secs(self.secs.max(1))
    }

    /// `concurrency` callers for the warm-up and the window.
    pub fn shape(&self, concurrency: usize) -> Shape {
        Shape {
            concurrency,
            warmup: self.warmup(),
            window: self.window(),
        }
    }
}

/// What `main` does before anything starts: `--list` prints the
/// workloads, and without `--bench` (`cargo test --benches`) there is
/// nothing to do. `None`: go on.
pub fn before_start(args: &CommonArgs, bench: &str, workloads: Workloads) -> Option<ExitCode> {
    if args.list {
        let width = workloads.iter().map(|(name, _)| name.len()).max().unwrap_or(0) + 2;
        for (name, about) in workloads {
            println!("{name:width$}{about}");
        }
        return Some(ExitCode::SUCCESS);
    }
    if !args.bench {
        eprintln!("run it with `cargo bench --bench {bench}` (see benches/README.md); nothing to do in test mode");
        return Some(ExitCode::SUCCESS);
    }
    None
}

/// Runs `benchmark` on the load generator's runtime (two threads) until
/// it ends or a SIGINT or SIGTERM stops it; the server and what else it
/// started are stopped either way, by their guards. Processes are started
/// from the calling (main) thread inside `block_on`: their parent-death
/// signal follows that thread.
pub fn on_load_runtime(benchmark: impl Future<Output = Result<usize>>) -> Result<usize> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("load")
        .enable_all()
        .build()?;
    let outcome = runtime.block_on(async {
        tokio::select! {
            outcome = benchmark => outcome,
            signal = interrupted() => Err(anyhow!("stopped by {signal}")),
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(2));
    outcome
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

/// The exit code of a run that counted `Ok(failures)` failed workloads.
pub fn exit_code(outcome: Result<usize>) -> ExitCode {
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

/// The workloads the filters name, in their order: a filter that is a
/// workload's whole name picks that one, any other every name holding it.
pub fn select(workloads: Workloads, filters: &[String]) -> Result<Vec<&'static str>> {
    let exact = |filter: &String| workloads.iter().any(|(name, _)| name == filter);
    let selected: Vec<&'static str> = workloads
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| {
            filters.is_empty()
                || filters.iter().any(|filter| {
                    if exact(filter) {
                        name == filter
                    } else {
                        name.contains(filter.as_str())
                    }
                })
        })
        .collect();
    if selected.is_empty() {
        bail!("no workload matches {filters:?}; --list shows them");
    }
    Ok(selected)
}

/// Runs each selected workload in turn; a workload prints its own rows,
/// and one that fails or is skipped prints a row saying so. Returns how
/// many failed.
pub async fn run_each(selected: &[&'static str], mut workload: impl AsyncFnMut(&'static str) -> Result<()>) -> usize {
    let mut failures = 0;
    for &name in selected {
        eprintln!("running {name}");
        if let Err(e) = workload(name).await {
            let (row, failed) = unfinished(name, &e);
            if failed {
                failures += 1;
                eprintln!("{name} failed: {e:#}");
            }
            row.emit();
        }
    }
    failures
}

/// The row of a workload that did not finish, and whether that is a
/// failure (a [`report::Skipped`] one is not).
fn unfinished(name: &str, e: &anyhow::Error) -> (Row, bool) {
    let skipped = e.downcast_ref::<report::Skipped>().is_some();
    let note = if skipped { "skipped" } else { "FAILED" };
    let row = Row {
        workload: name.to_owned(),
        notes: format!("{note}: {}", report::first_line(&format!("{e:#}"))),
        ..Row::default()
    };
    (row, !skipped)
}

/// Starts the server the options name (redis: `redis_url`), seeded with
/// nothing but its admin; returns its binary too, for the preamble.
pub async fn start_server(args: &CommonArgs, redis_url: Option<String>) -> Result<(PathBuf, Server)> {
    let binary = server_binary(args)?;
    eprintln!("starting {} (create-admin, then serve)", binary.display());
    let server = Server::start(&ServerOptions {
        binary: binary.clone(),
        database_url: args.database_url.clone(),
        redis_url,
    })
    .await?;
    Ok((binary, server))
}

/// The server binary, built first when it is the default one.
fn server_binary(args: &CommonArgs) -> Result<PathBuf> {
    if let Some(binary) = &args.server_bin {
        return Ok(binary.clone());
    }
    // A benchmark is target/<profile>/deps/<name>-<hash>.
    let exe = std::env::current_exe().context("finding the benchmark's own path")?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| anyhow!("cannot tell the target folder from {}", exe.display()))?;
    if !args.no_build {
        build_server(profile_dir)?;
    }
    Ok(profile_dir.join("tollgate"))
}

/// `cargo build --profile <this benchmark's> --bin tollgate`: `cargo bench`
/// builds the benchmark, not the server's binary.
fn build_server(profile_dir: &Path) -> Result<()> {
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
    Ok(())
}

/// The command that ran this benchmark, for the preamble:
/// `cargo bench --bench NAME -- OPTIONS`.
pub fn command_line(bench: &str) -> String {
    let options: Vec<String> = std::env::args().skip(1).filter(|arg| arg != "--bench").collect();
    if options.is_empty() {
        format!("cargo bench --bench {bench}")
    } else {
        format!("cargo bench --bench {bench} -- {}", options.join(" "))
    }
}
