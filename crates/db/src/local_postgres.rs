//! The embedded PostgreSQL used when no `DATABASE_URL` is set.
//!
//! It runs the machine's own server binaries in a data folder, listens only
//! on a Unix socket inside that folder (mode 0700, so only its owner and
//! root can connect, which is why `trust` authentication is safe), and is
//! reused when it is already running. The test harness uses the same code
//! with durability turned off.

use std::{
    ffi::OsStr,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Output,
};

use diesel::{QueryableByName, sql_types::Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use tokio::process::Command;

/// The superuser that `initdb` creates.
const SUPERUSER: &str = "postgres";
/// Unix socket paths are limited to 107 bytes on Linux.
const MAX_SOCKET_PATH: usize = 107;
const SOCKET_NAME: &str = ".s.PGSQL.5432";

/// Why the embedded PostgreSQL could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LocalPostgresError {
    /// No server binaries on this machine.
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl) were not found on PATH or in /usr/lib/postgresql/*/bin; \
         install PostgreSQL (Debian/Ubuntu: apt-get install postgresql) or set DATABASE_URL"
    )]
    BinariesNotFound,
    /// The data folder's socket path would be too long for a Unix socket.
    #[error("the socket path {0} is longer than 107 bytes; set DATA_DIR to a shorter path")]
    SocketPathTooLong(PathBuf),
    /// The folder exists but holds something else.
    #[error("{0} exists and is not empty, but is not a PostgreSQL data folder")]
    NotADataDir(PathBuf),
    /// Running as root and no unprivileged user to run the server as.
    #[error(
        "running as root, and there is no 'postgres' user to run PostgreSQL as; create one or run as an ordinary user"
    )]
    NoUnprivilegedUser,
    /// A PostgreSQL tool failed.
    #[error("{tool} failed: {output}")]
    Tool {
        /// The program that failed.
        tool: String,
        /// What it printed.
        output: String,
    },
    /// File system trouble.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Could not talk to the server once it was up.
    #[error("could not prepare the database: {0}")]
    Database(String),
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> LocalPostgresError {
    let context = context.into();
    move |source| LocalPostgresError::Io { context, source }
}

/// How the server is run.
#[derive(Debug, Clone, Copy)]
pub struct LocalPostgresOptions {
    /// `false` turns off fsync and synchronous commit: fast, and fine for
    /// throwaway test clusters, never for data anyone keeps.
    pub durable: bool,
    /// `max_connections` of the server.
    pub max_connections: u32,
}

impl Default for LocalPostgresOptions {
    fn default() -> Self {
        Self {
            durable: true,
            max_connections: 100,
        }
    }
}

/// The unprivileged account the server runs as when we are root.
#[derive(Debug, Clone, Copy)]
struct RunAs {
    uid: u32,
    gid: u32,
}

/// A PostgreSQL server living in a data folder.
#[derive(Debug)]
pub struct LocalPostgres {
    data_dir: PathBuf,
    bin_dir: PathBuf,
    run_as: Option<RunAs>,
    started_here: bool,
}

impl LocalPostgres {
    /// Initialises the cluster on first use, then starts it unless it is
    /// already running. `data_dir` must be absolute.
    pub async fn ensure_running(data_dir: &Path, options: LocalPostgresOptions) -> Result<Self, LocalPostgresError> {
        let socket = data_dir.join(SOCKET_NAME);
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(LocalPostgresError::SocketPathTooLong(socket));
        }
        let mut server = Self {
            data_dir: data_dir.to_path_buf(),
            bin_dir: find_bin_dir().ok_or(LocalPostgresError::BinariesNotFound)?,
            run_as: unprivileged_user()?,
            started_here: false,
        };
        if !data_dir.join("PG_VERSION").exists() {
            server.init().await?;
        }
        if server.is_running().await? {
            tracing::info!(data_dir = %data_dir.display(), "reusing the running embedded PostgreSQL");
            return Ok(server);
        }
        match server.start(options).await {
            Ok(()) => {
                server.started_here = true;
                tracing::info!(data_dir = %data_dir.display(), "started the embedded PostgreSQL");
            }
            // Another process sharing the data folder won the race to start it.
            Err(_) if server.wait_until_running().await? => {
                tracing::info!(data_dir = %data_dir.display(), "reusing the embedded PostgreSQL another process started");
            }
            Err(LocalPostgresError::Tool { tool, output }) => {
                let log = server.log_tail();
                return Err(LocalPostgresError::Tool {
                    tool,
                    output: format!("{output}\nserver log:\n{log}"),
                });
            }
            Err(e) => return Err(e),
        }
        Ok(server)
    }

    /// Folder holding the server's Unix socket.
    pub fn socket_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Whether this process started the server (and so should stop it).
    pub fn started_here(&self) -> bool {
        self.started_here
    }

    /// A connection URL for `database` over the Unix socket.
    pub fn url(&self, database: &str) -> String {
        socket_url(&self.data_dir, database)
    }

    /// Creates `database` unless it exists. The name must be a plain
    /// identifier (letters, digits, underscores).
    pub async fn ensure_database(&self, database: &str) -> Result<(), LocalPostgresError> {
        create_database_if_missing(&self.url("postgres"), database, None)
            .await
            .map_err(LocalPostgresError::Database)
    }

    /// The postmaster's process id, read from its pid file.
    pub fn postmaster_pid(&self) -> Option<u32> {
        let pid_file = std::fs::read_to_string(self.data_dir.join("postmaster.pid")).ok()?;
        pid_file.lines().next()?.trim().parse().ok()
    }

    /// Stops the server if this process started it.
    pub async fn stop_if_started_here(&self) -> Result<(), LocalPostgresError> {
        if !self.started_here {
            return Ok(());
        }
        let data_dir = self.data_dir.to_string_lossy().into_owned();
        self.run("pg_ctl", ["stop", "-D", data_dir.as_str(), "-m", "fast", "-w"])
            .await?;
        tracing::info!("stopped the embedded PostgreSQL");
        Ok(())
    }

    /// Polls for a server another process is starting (up to 30 s).
    async fn wait_until_running(&self) -> Result<bool, LocalPostgresError> {
        for _ in 0..150 {
            if self.is_running().await? {
                return Ok(true);
            }
            if self.postmaster_pid().is_none() {
                return Ok(false);
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        Ok(false)
    }

    /// The last lines of the server's log, for start-up failures.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.data_dir.join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }

    async fn init(&self) -> Result<(), LocalPostgresError> {
        let dir = &self.data_dir;
        if dir.exists()
            && std::fs::read_dir(dir)
                .map_err(io("reading the data folder"))?
                .next()
                .is_some()
        {
            return Err(LocalPostgresError::NotADataDir(dir.clone()));
        }
        std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(io("setting the data folder's permissions"))?;
        if let Some(user) = self.run_as {
            std::os::unix::fs::chown(dir, Some(user.uid), Some(user.gid))
                .map_err(io("handing the data folder to the postgres user"))?;
        }
        tracing::info!(data_dir = %dir.display(), "initialising the embedded PostgreSQL (first run)");
        let dir = dir.to_string_lossy().into_owned();
        self.run(
            "initdb",
            [
                "-D",
                dir.as_str(),
                "-U",
                SUPERUSER,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-instructions",
            ],
        )
        .await?;
        Ok(())
    }

    async fn is_running(&self) -> Result<bool, LocalPostgresError> {
        let data_dir = self.data_dir.to_string_lossy().into_owned();
        let output = self
            .command("pg_ctl")
            .args(["status", "-D", data_dir.as_str()])
            .output()
            .await;
        let output = output.map_err(io("running pg_ctl status"))?;
        // pg_ctl status: 0 running, 3 not running, 4 no accessible data folder.
        Ok(output.status.success() && self.data_dir.join(SOCKET_NAME).exists())
    }

    async fn start(&self, options: LocalPostgresOptions) -> Result<(), LocalPostgresError> {
        let mut server_options = format!(
            "-k {} -c listen_addresses='' -c max_connections={}",
            shell_quote(&self.data_dir.to_string_lossy()),
            options.max_connections
        );
        if !options.durable {
            server_options.push_str(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off");
        }
        let data_dir = self.data_dir.to_string_lossy().into_owned();
        let log_file = self.data_dir.join("server.log").to_string_lossy().into_owned();
        self.run(
            "pg_ctl",
            [
                "start",
                "-D",
                data_dir.as_str(),
                "-l",
                log_file.as_str(),
                "-w",
                "-t",
                "60",
                "-o",
                server_options.as_str(),
            ],
        )
        .await?;
        Ok(())
    }

    fn command(&self, tool: &str) -> Command {
        let mut command = Command::new(self.bin_dir.join(tool));
        // The unprivileged user may not be able to enter our working folder.
        command.current_dir(&self.data_dir).kill_on_drop(false);
        if let Some(user) = self.run_as {
            command.uid(user.uid).gid(user.gid);
            command.current_dir("/");
        }
        command.env("LC_ALL", "C");
        command
    }

    async fn run<I, S>(&self, tool: &str, args: I) -> Result<Output, LocalPostgresError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let output = self
            .command(tool)
            .args(args)
            .output()
            .await
            .map_err(io(format!("running {tool}")))?;
        if !output.status.success() {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            return Err(LocalPostgresError::Tool {
                tool: tool.to_owned(),
                output: text.trim().to_owned(),
            });
        }
        Ok(output)
    }
}

/// The URL of `database` on a server listening in `socket_dir`, as the
/// superuser `initdb` created.
pub fn socket_url(socket_dir: &Path, database: &str) -> String {
    let host = utf8_percent_encode(&socket_dir.to_string_lossy(), NON_ALPHANUMERIC).to_string();
    format!("postgres://{SUPERUSER}@{host}/{database}")
}

/// Creates `database` on the server behind `admin_url` unless it exists,
/// optionally as a copy of `template`. Names must be plain identifiers.
pub async fn create_database_if_missing(admin_url: &str, database: &str, template: Option<&str>) -> Result<(), String> {
    #[derive(QueryableByName)]
    struct Name {
        #[diesel(sql_type = Text)]
        #[allow(dead_code)]
        datname: String,
    }
    // The lookup binds the name; create_database checks it before use.
    let mut conn = AsyncPgConnection::establish(admin_url)
        .await
        .map_err(|e| e.to_string())?;
    let existing: Vec<Name> = diesel::sql_query("SELECT datname FROM pg_database WHERE datname = $1")
        .bind::<Text, _>(database)
        .load(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    if !existing.is_empty() {
        return Ok(());
    }
    create_database(admin_url, database, template).await
}

/// Creates `database` (failing if it exists), optionally as a copy of
/// `template`. Names must be plain identifiers.
pub async fn create_database(admin_url: &str, database: &str, template: Option<&str>) -> Result<(), String> {
    for name in std::iter::once(database).chain(template) {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("{name:?} is not a plain database name"));
        }
    }
    let mut conn = AsyncPgConnection::establish(admin_url)
        .await
        .map_err(|e| e.to_string())?;
    let statement = match template {
        Some(template) => format!("CREATE DATABASE \"{database}\" TEMPLATE \"{template}\""),
        None => format!("CREATE DATABASE \"{database}\""),
    };
    diesel::sql_query(statement)
        .execute(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// Finds the folder with `initdb` and `pg_ctl`: PATH first, then the newest
/// `/usr/lib/postgresql/*/bin`. Symlinks are resolved so `pg_ctl` finds the
/// `postgres` binary beside it.
pub fn find_bin_dir() -> Option<PathBuf> {
    let from_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())
        .find_map(|dir| {
            std::fs::canonicalize(dir.join("pg_ctl"))
                .ok()?
                .parent()
                .map(Path::to_path_buf)
        });
    from_path.or_else(newest_debian_bin_dir)
}

fn newest_debian_bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("pg_ctl").is_file()).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// initdb and pg_ctl refuse to run as root, so root runs them as the
/// `postgres` user that PostgreSQL packages create. (Not `nobody`: other
/// daemons run as it, and the socket trusts its owner.)
fn unprivileged_user() -> Result<Option<RunAs>, LocalPostgresError> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    match nix::unistd::User::from_name("postgres") {
        Ok(Some(user)) => Ok(Some(RunAs {
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
        })),
        _ => Err(LocalPostgresError::NoUnprivilegedUser),
    }
}

/// pg_ctl hands `-o` to `/bin/sh`, so paths inside it are single-quoted.
fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_point_at_the_socket_folder() {
        let server = LocalPostgres {
            data_dir: PathBuf::from("/tmp/my data/postgres"),
            bin_dir: PathBuf::new(),
            run_as: None,
            started_here: false,
        };
        assert_eq!(
            server.url("tollgate"),
            "postgres://postgres@%2Ftmp%2Fmy%20data%2Fpostgres/tollgate"
        );
    }

    #[test]
    fn shell_quoting_survives_quotes() {
        assert_eq!(shell_quote("/a/it's"), r"'/a/it'\''s'");
    }
}
