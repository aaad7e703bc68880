//! The `tollgate` binary: serve (default), migrate, export-schema,
//! create-admin.

use std::{
    cell::Cell,
    net::SocketAddr,
    path::PathBuf,
    process::ExitCode,
    time::{Duration, Instant},
};

use clap::{Parser, Subcommand};
use secrecy::{ExposeSecret, SecretString};
use tollgate::{
    Config, accounts::service::create_or_promote_admin, app::open_database, db::migrations, graphql::export_sdl,
    platform::telemetry,
};

/// mimalloc rather than glibc's malloc. A nested read allocates and frees a
/// value, a future and a name for each of its thousands of fields, from
/// both runtime threads at once; under glibc that was a third of the CPU of
/// an admin's organization list, much of it contention between the
/// threads' arenas. mimalloc's per-thread heaps take it without locks.
///
/// Those heaps give memory back only when their own thread collects them:
/// a page whose blocks were freed (often by the other worker, as tasks move
/// between threads) stays with the heap that owns it until that thread
/// allocates in the same size class again, and freed pages go back to the
/// system only on a later collection, after mimalloc's purge delay. A
/// worker that goes idle after a burst (ten thousand websockets closing)
/// would keep all of it. So each runtime worker collects its heap when it
/// goes idle ([`collect_idle_worker_heap`]), and the runtime has a tick to
/// wake it for the delayed purge ([`ALLOCATOR_TICK`]); with both, memory
/// returns near its baseline a few seconds after load (the reads
/// benchmark's `live` workload measures it: "after they left").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// GraphQL server for user management and LLM token metering.
#[derive(Parser)]
#[command(name = "tollgate", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run migrations, then serve HTTP and websockets until SIGTERM/SIGINT.
    Serve,
    /// Apply pending migrations and exit.
    Migrate,
    /// Print the GraphQL SDL (or write it to a file).
    ExportSchema {
        /// Write the SDL here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Create a user with the ADMIN role and a verified email, or promote
    /// an existing one (setting this password).
    CreateAdmin {
        /// The admin's email address.
        #[arg(long)]
        email: String,
        /// The admin's password (8 to 128 characters).
        #[arg(long, env = "ADMIN_PASSWORD", hide_env_values = true)]
        password: String,
        /// Display name (default: the part of the email before '@').
        #[arg(long)]
        name: Option<String>,
    },
}

/// How often at most a runtime worker collects its mimalloc heap when it
/// parks: a collection walks all the heap's pages, too much for every park
/// under load (workers park between bursts of work), unmeasurable once a
/// second (a profile of the dashboard read shows no time in it).
const COLLECT_INTERVAL: Duration = Duration::from_secs(1);
/// How often an otherwise idle runtime wakes, so that its workers park
/// again and collect: mimalloc hands freed pages back to the system only
/// when a collection comes after its purge delay (1 s), and a worker that
/// went idle just after a collection would otherwise keep what was freed
/// since (measured: 20 of the 70 MB 2,000 websockets took). The timer
/// wakes the worker that waits on the driver; the tick's yield wakes a
/// sleeping one (a task put back on a worker's queue notifies a parked
/// worker to come and steal it).
const ALLOCATOR_TICK: Duration = Duration::from_secs(1);

/// Runs as each runtime worker is about to park (it found no work):
/// collects the worker's mimalloc heap if it has not for
/// [`COLLECT_INTERVAL`]. Only the owning thread can collect its heap.
fn collect_idle_worker_heap() {
    thread_local! {
        static LAST_COLLECT: Cell<Option<Instant>> = const { Cell::new(None) };
    }
    let now = Instant::now();
    LAST_COLLECT.with(|last| {
        if last.get().is_some_and(|at| now.duration_since(at) < COLLECT_INTERVAL) {
            return;
        }
        last.set(Some(now));
        // SAFETY: mi_collect only frees this thread's pages that hold no
        // live block, and purges freed memory; it takes no pointer.
        unsafe { libmimalloc_sys::mi_collect(false) };
    });
}

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_park(collect_idle_worker_heap)
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("tollgate: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let tick = tokio::spawn(async {
            let mut tick = tokio::time::interval(ALLOCATOR_TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                tokio::task::yield_now().await;
            }
        });
        let code = run().await;
        tick.abort();
        code
    })
}

async fn run() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve);
    if let Command::ExportSchema { out } = &command {
        return export_schema(out.as_deref());
    }
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("tollgate: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(config.log_format);
    let result = match command {
        Command::Serve => serve(config).await,
        Command::Migrate => migrate(config).await,
        Command::CreateAdmin { email, password, name } => {
            create_admin(config, &email, SecretString::from(password), name).await
        }
        Command::ExportSchema { .. } => unreachable!("handled above"),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("tollgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn export_schema(out: Option<&std::path::Path>) -> ExitCode {
    let sdl = export_sdl();
    match out {
        None => {
            print!("{sdl}");
            ExitCode::SUCCESS
        }
        Some(path) => match std::fs::write(path, sdl) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tollgate: writing {}: {e}", path.display());
                ExitCode::FAILURE
            }
        },
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let address = SocketAddr::new(config.host, config.port);
    let app = tollgate::build_app(config.clone()).await?;
    let listener = match tokio::net::TcpListener::bind(address).await {
        Ok(listener) => listener,
        Err(e) => {
            app.close().await;
            return Err(anyhow::anyhow!("listening on {address}: {e}"));
        }
    };
    tracing::info!(
        address = %listener.local_addr()?,
        graphql = %config.public_endpoint("graphql"),
        "serving"
    );
    app.serve(listener).await
}

async fn migrate(config: Config) -> anyhow::Result<()> {
    let database = open_database(&config).await?;
    let result = migrations::run_pending(database.url.expose_secret()).await;
    database.stop().await;
    let applied = result?;
    if applied.is_empty() {
        println!("the database is up to date");
    } else {
        for version in applied {
            println!("applied {version}");
        }
    }
    Ok(())
}

async fn create_admin(config: Config, email: &str, password: SecretString, name: Option<String>) -> anyhow::Result<()> {
    let app = tollgate::build_app(config).await?;
    let result = create_or_promote_admin(&app.state, email, password, name).await;
    app.close().await;
    match result {
        Ok((user, true)) => println!("created admin {} ({})", user.email, user.id),
        Ok((user, false)) => println!("promoted {} ({}) to admin", user.email, user.id),
        Err(e) => anyhow::bail!("{}", e.client_message()),
    }
    Ok(())
}
