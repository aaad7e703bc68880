//! The server's database from the outside, with PostgreSQL's own client
//! programs: `psql` for seeding in bulk what the public interfaces would
//! take minutes to create (a thousand users) and for reading back what a
//! workload did, and `pgbench` for the SQL references a workload is
//! compared with, its per-transaction log read back into the same
//! [`Stats`] the load generator gives, so both print alike.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context, Result, anyhow, bail};

use super::{load::Stats, server::Server};

/// How to reach the database the server uses.
#[derive(Clone, Debug)]
pub enum Database {
    /// The server's embedded PostgreSQL: its socket folder (root and the
    /// `postgres` user may connect; trust authentication), database
    /// `tollgate`.
    Embedded(PathBuf),
    /// A `DATABASE_URL`.
    Url(String),
}

impl Database {
    /// The database `server` runs on: `database_url` when it was given
    /// one, else its embedded PostgreSQL.
    pub fn of(server: &Server, database_url: Option<&str>) -> Result<Self> {
        match (database_url, server.postgres_socket_dir()) {
            (Some(url), _) => Ok(Self::Url(url.to_owned())),
            (None, Some(dir)) => Ok(Self::Embedded(dir)),
            (None, None) => bail!("the server has neither a DATABASE_URL nor an embedded PostgreSQL"),
        }
    }

    /// A connection URL for other clients (PostGraphile): the embedded
    /// database's socket folder as the URL's host, percent-encoded.
    pub fn url(&self) -> String {
        match self {
            Self::Embedded(dir) => {
                let host: String = dir
                    .display()
                    .to_string()
                    .bytes()
                    .map(|byte| match byte {
                        b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                            char::from(byte).to_string()
                        }
                        other => format!("%{other:02X}"),
                    })
                    .collect();
                format!("postgres://postgres@{host}/tollgate")
            }
            Self::Url(url) => url.clone(),
        }
    }

    /// libpq's connection options for `psql` and `pgbench`.
    fn connection_args(&self) -> Vec<String> {
        match self {
            Self::Embedded(dir) => vec![
                "-h".into(),
                dir.display().to_string(),
                "-U".into(),
                "postgres".into(),
                "-d".into(),
                "tollgate".into(),
            ],
            Self::Url(url) => vec!["-d".into(), url.clone()],
        }
    }

    /// Runs `sql` (one or more statements, stopping at the first error)
    /// and returns what it printed, unaligned and without headers (fields
    /// separated by `|`, rows by new lines).
    pub fn psql(&self, sql: &str) -> Result<String> {
        let output = Command::new(tool("psql")?)
            .args(self.connection_args())
            .args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .env_remove("PGPASSWORD")
            .output()
            .context("running psql (install PostgreSQL's client: scripts/install-deps.sh)")?;
        if !output.status.success() {
            bail!("psql failed: {}", String::from_utf8_lossy(&output.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// `pgbench` running `script` (one transaction: a statement, or
    /// several between BEGIN and COMMIT) with `clients` connections and
    /// prepared statements for `warmup`, then again for `window`; every
    /// latency of the second run comes from its per-transaction log.
    pub fn pgbench(&self, script: &str, clients: usize, warmup: Duration, window: Duration) -> Result<Stats> {
        let dir = tempfile::Builder::new().prefix("tollgate-bench-pgbench-").tempdir()?;
        let script_path = dir.path().join("transaction.sql");
        std::fs::write(&script_path, script).context("writing the pgbench script")?;
        if !warmup.is_zero() {
            self.run_pgbench(dir.path(), &script_path, clients, warmup, false)?;
        }
        self.run_pgbench(dir.path(), &script_path, clients, window, true)?;
        let mut stats = Stats {
            window,
            ..Stats::default()
        };
        for entry in std::fs::read_dir(dir.path())? {
            let path = entry?.path();
            let is_log = path
                .file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with("pgbench_log"));
            if !is_log {
                continue;
            }
            // "client transaction latency_us script epoch_s epoch_us"
            for line in std::fs::read_to_string(&path)?.lines() {
                let latency = line
                    .split_whitespace()
                    .nth(2)
                    .and_then(|field| field.parse::<u32>().ok());
                match latency {
                    Some(latency) => stats.latencies_us.push(latency),
                    None => stats.errors += 1,
                }
            }
        }
        stats.ok = stats.latencies_us.len();
        stats.latencies_us.sort_unstable();
        if stats.ok == 0 {
            bail!("pgbench logged no transaction");
        }
        Ok(stats)
    }

    fn run_pgbench(&self, dir: &Path, script: &Path, clients: usize, time: Duration, log: bool) -> Result<()> {
        let threads = std::thread::available_parallelism()
            .map_or(2, usize::from)
            .min(clients.max(1));
        let mut command = Command::new(tool("pgbench")?);
        command
            .current_dir(dir)
            .args(self.connection_args())
            .args(["-n", "-M", "prepared", "-f"])
            .arg(script)
            .args(["-c", &clients.to_string(), "-j", &threads.to_string()])
            .args(["-T", &time.as_secs().max(1).to_string()])
            .env_remove("PGPASSWORD");
        if log {
            command.args(["-l", "--log-prefix", "pgbench_log"]);
        }
        let output = command.output().context("running pgbench")?;
        if !output.status.success() {
            bail!(
                "pgbench failed: {}{}",
                String::from_utf8_lossy(&output.stdout).trim(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(())
    }
}

/// A PostgreSQL client program: on PATH, else in the newest
/// `/usr/lib/postgresql/N/bin` (Debian's layout, as
/// `scripts/install-deps.sh` installs it).
fn tool(name: &str) -> Result<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file());
    if let Some(found) = on_path {
        return Ok(found);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, entry.path().join("bin").join(name)))
        })
        .filter(|(_, path)| path.is_file())
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, path)| path)
        .ok_or_else(|| anyhow!("{name} was not found on PATH or in /usr/lib/postgresql/*/bin"))
}
