//! The SQL reference: a transaction run by PostgreSQL's own `pgbench`
//! against the server's database, its per-transaction log read back into
//! the same [`Stats`] the load generator gives, so both print alike.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context, Result, anyhow, bail};

use super::load::Stats;

/// How to reach the server's database with libpq's tools.
#[derive(Clone, Debug)]
pub enum Database {
    /// The embedded PostgreSQL: its socket folder, as its superuser, the
    /// server's database.
    Socket(PathBuf),
    /// A `DATABASE_URL`.
    Url(String),
}

impl Database {
    /// The connection arguments of `psql` and `pgbench`.
    fn args(&self) -> Vec<String> {
        match self {
            Self::Socket(dir) => vec![
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
}

/// A PostgreSQL client program: on PATH, or in the newest
/// `/usr/lib/postgresql/*/bin` (Debian keeps the server's tools there).
pub fn tool(name: &str) -> Result<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(name))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    if let Some(found) = on_path.into_iter().find(|candidate| candidate.is_file()) {
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

/// Runs one SQL statement with `psql` and returns its unaligned rows
/// (fields separated by `|`).
pub fn query(database: &Database, sql: &str) -> Result<Vec<Vec<String>>> {
    let output = Command::new(tool("psql")?)
        .args(database.args())
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .context("running psql")?;
    if !output.status.success() {
        bail!("psql failed: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| !line.is_empty())
        .map(|line| line.split('|').map(str::to_owned).collect())
        .collect())
}

/// Runs `script` with `clients` connections for `window` (plus the
/// `warmup` run before it, not measured) and returns every transaction's
/// latency; `work_dir` keeps the script and the logs.
pub fn run(
    database: &Database,
    work_dir: &Path,
    script: &str,
    clients: usize,
    warmup: Duration,
    window: Duration,
) -> Result<Stats> {
    let file = work_dir.join("transaction.sql");
    std::fs::write(&file, script).context("writing the pgbench script")?;
    if !warmup.is_zero() {
        pgbench(database, &file, clients, warmup, None)?;
    }
    let logs = work_dir.join("logs");
    std::fs::create_dir_all(&logs)?;
    let prefix = logs.join("pgbench");
    pgbench(database, &file, clients, window, Some(&prefix))?;
    let mut stats = Stats {
        window,
        ..Stats::default()
    };
    for entry in std::fs::read_dir(&logs)? {
        let text = std::fs::read_to_string(entry?.path())?;
        // client_id transaction_no time_us script_no epoch epoch_us
        for line in text.lines() {
            match line.split_whitespace().nth(2).map(str::parse::<u32>) {
                Some(Ok(latency)) => stats.latencies_us.push(latency),
                _ => stats.errors += 1,
            }
        }
    }
    stats.ok = stats.latencies_us.len();
    stats.latencies_us.sort_unstable();
    Ok(stats)
}

fn pgbench(database: &Database, script: &Path, clients: usize, time: Duration, log: Option<&Path>) -> Result<()> {
    let mut command = Command::new(tool("pgbench")?);
    command
        .args(database.args())
        .args(["-n", "-M", "prepared", "-f"])
        .arg(script)
        .args(["-c", &clients.to_string(), "-j", "2"])
        .args(["-T", &time.as_secs().max(1).to_string()]);
    if let Some(prefix) = log {
        command.arg("-l").arg(format!("--log-prefix={}", prefix.display()));
    }
    let output = command.output().context("running pgbench")?;
    if !output.status.success() {
        bail!(
            "pgbench failed: {}{}",
            String::from_utf8_lossy(&output.stderr).trim(),
            String::from_utf8_lossy(&output.stdout).trim()
        );
    }
    Ok(())
}
