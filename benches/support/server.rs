//! The tollgate server under test: the release binary run as a separate
//! process, as an operator runs it, with its own data folder (and so its
//! own embedded PostgreSQL unless a `DATABASE_URL` is given) on a free
//! port.

use std::{
    net::TcpListener,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context, Result, anyhow};
use nix::sys::signal::Signal;

use super::{
    process::{self, Guarded},
    procfs,
};

/// The admin the benchmark creates and signs in as.
pub const ADMIN_EMAIL: &str = "bench-admin@example.com";
/// Its password (the server refuses common ones).
pub const ADMIN_PASSWORD: &str = "bench: a long and unusual passphrase 7";
/// How long start-up may take: the first run initialises a PostgreSQL
/// cluster and applies every migration.
const START_LIMIT: Duration = Duration::from_secs(180);
/// The server drains for up to 10 s, then stops its PostgreSQL.
const STOP_GRACE: Duration = Duration::from_secs(40);

/// How to run the server.
pub struct ServerOptions {
    /// The `tollgate` binary.
    pub binary: PathBuf,
    /// An existing database instead of the embedded one.
    pub database_url: Option<String>,
    /// Redis, for the figures with it.
    pub redis_url: Option<String>,
}

/// A running server; stopped (and its embedded PostgreSQL with it) when
/// dropped.
pub struct Server {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// Its own data folder (deleted when dropped).
    data_dir: tempfile::TempDir,
    /// Whether it runs the embedded PostgreSQL, which this guard then
    /// makes sure is stopped.
    embedded_postgres: bool,
    // Stopped in `drop`, before the fields (the folder) go.
    process: Option<Guarded>,
}

impl Server {
    /// Creates the admin with the CLI, then starts serving and waits until
    /// `/ready` answers.
    pub async fn start(options: &ServerOptions) -> Result<Self> {
        // Absolute: the server runs in its data folder.
        let binary = std::fs::canonicalize(&options.binary).with_context(|| {
            format!(
                "{} does not exist; build it with `cargo build --release` or pass --server-bin",
                options.binary.display()
            )
        })?;
        let data_dir = tempfile::Builder::new()
            .prefix("tollgate-bench-")
            .tempdir()
            .context("creating the data folder")?;
        // When run as root, the embedded PostgreSQL runs as the `postgres`
        // user, which must be able to reach its folder inside this one.
        std::fs::set_permissions(data_dir.path(), std::fs::Permissions::from_mode(0o711))
            .context("opening the data folder to PostgreSQL's user")?;
        let port = free_port()?;
        let mut server = Self {
            base: format!("http://127.0.0.1:{port}"),
            embedded_postgres: options.database_url.is_none(),
            data_dir,
            process: None,
        };
        let create_admin = server.command(
            &binary,
            options,
            port,
            &["create-admin", "--email", ADMIN_EMAIL, "--password", ADMIN_PASSWORD],
        );
        let log = server.data_dir.path().join("create-admin.log");
        process::run_to_end("tollgate create-admin", create_admin, &log, START_LIMIT)?;
        let serve = server.command(&binary, options, port, &["serve"]);
        let log = server.data_dir.path().join("server.log");
        server.process = Some(Guarded::spawn(
            "the tollgate server",
            serve,
            log,
            Signal::SIGTERM,
            STOP_GRACE,
        )?);
        server.wait_until_ready().await?;
        Ok(server)
    }

    /// The command line of `tollgate <args>` with a clean environment: only
    /// what this benchmark sets, so the operator's settings (a `.env`, an
    /// `OPENAI_API_KEY`) do not leak into the run.
    fn command(&self, binary: &Path, options: &ServerOptions, port: u16, args: &[&str]) -> Command {
        let mut command = Command::new(binary);
        command.args(args).env_clear().current_dir(self.data_dir.path());
        for kept in ["PATH", "HOME", "LANG", "TMPDIR"] {
            if let Some(value) = std::env::var_os(kept) {
                command.env(kept, value);
            }
        }
        command
            .env("DATA_DIR", self.data_dir.path())
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("RUST_LOG", "warn")
            .env("LOG_FORMAT", "json")
            // Seeding signs in once; an hour covers any run.
            .env("ACCESS_TOKEN_TTL_SECS", "3600");
        if let Some(url) = &options.database_url {
            command.env("DATABASE_URL", url);
        }
        if let Some(url) = &options.redis_url {
            command.env("REDIS_URL", url);
        }
        command
    }

    async fn wait_until_ready(&mut self) -> Result<()> {
        let client = reqwest::Client::builder().no_proxy().build()?;
        let url = format!("{}/ready", self.base);
        let ready = || async {
            let answer = client.get(&url).timeout(Duration::from_secs(2)).send().await;
            answer.is_ok_and(|response| response.status().is_success())
        };
        let process = self
            .process
            .as_mut()
            .ok_or_else(|| anyhow!("the server was not started"))?;
        process
            .wait_until_ready(START_LIMIT, Duration::from_millis(200), ready)
            .await
    }

    /// The server's process id.
    pub fn pid(&self) -> Result<u32> {
        self.process
            .as_ref()
            .map(Guarded::pid)
            .ok_or_else(|| anyhow!("the server is not running"))
    }

    /// The embedded PostgreSQL's postmaster, when the server runs one.
    pub fn postmaster(&self) -> Option<u32> {
        if !self.embedded_postgres {
            return None;
        }
        procfs::postmaster(&self.postgres_dir())
    }

    /// The embedded PostgreSQL's folder (its Unix socket is there), when
    /// the server runs one.
    pub fn postgres_socket_dir(&self) -> Option<PathBuf> {
        self.embedded_postgres.then(|| self.postgres_dir())
    }

    fn postgres_dir(&self) -> PathBuf {
        self.data_dir.path().join("postgres")
    }

    /// The end of the server's log.
    pub fn log_tail(&self, lines: usize) -> String {
        process::log_tail(&self.data_dir.path().join("server.log"), lines)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGTERM: the server drains and stops the PostgreSQL it started.
        if let Some(mut process) = self.process.take() {
            process.stop();
        }
        // A server killed before it could (or a create-admin that timed
        // out) leaves it running: stop it here, fast shutdown first.
        if self.embedded_postgres
            && let Some(pid) = procfs::postmaster(&self.postgres_dir())
        {
            eprintln!("stopping the embedded PostgreSQL left running (pid {pid})");
            process::stop_pid(pid, Signal::SIGINT, Duration::from_secs(20));
        }
    }
}

/// What `binary --version` says, e.g. "tollgate 0.1.0" (empty when it
/// cannot say).
pub fn version(binary: &Path) -> String {
    Command::new(binary)
        .arg("--version")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// A port nobody listens on now (the server binds it a moment later).
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}
