//! The `tollgate` binary: serve (default), migrate, export-schema,
//! create-admin.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

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
/// threads' arenas. mimalloc's per-thread heaps take it without locks, and
/// it hands freed pages back to the system, so memory returns near its
/// baseline after load (benches/README.md has the figures).
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

#[tokio::main]
async fn main() -> ExitCode {
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
