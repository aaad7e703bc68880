//! PostGraphile v5, the peer of the nested reads: the Node package in
//! `benches/postgraphile` (installed there with `npm ci` when its
//! `node_modules` is missing), run with the Node 22 that package brings,
//! against the server's own database.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;
use serde_json::{Value, json};

use super::{process::Guarded, report::Skipped, server::free_port};

/// Introspecting the schema and compiling the first plan take a while.
const START_LIMIT: Duration = Duration::from_secs(120);

/// A running PostGraphile, stopped when dropped.
pub struct PostGraphile {
    /// `http://127.0.0.1:PORT/graphql`
    pub url: String,
    /// The Node process.
    pub process: Guarded,
}

/// The package's folder.
pub fn package_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("benches")
        .join("postgraphile")
}

/// The package's Node, after `npm ci` when it is not installed yet;
/// [`Skipped`] when npm cannot run here.
pub fn install(dir: &Path) -> Result<PathBuf> {
    let node = dir.join("node_modules").join(".bin").join("node");
    let cli = cli(dir);
    if node.is_file() && cli.is_file() {
        return Ok(node);
    }
    let npm_works = Command::new("npm")
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success());
    if !npm_works {
        return Err(
            Skipped("no node and npm on PATH to install benches/postgraphile (benches/README.md)".into()).into(),
        );
    }
    eprintln!("installing PostGraphile: npm ci in {}", dir.display());
    let output = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .output()
        .context("running npm ci")?;
    if !output.status.success() {
        bail!(
            "npm ci failed: {}",
            String::from_utf8_lossy(&output.stderr)
                .lines()
                .rev()
                .take(10)
                .collect::<Vec<_>>()
                .join(" / ")
        );
    }
    if !node.is_file() || !cli.is_file() {
        bail!("npm ci installed neither {} nor {}", node.display(), cli.display());
    }
    Ok(node)
}

/// PostGraphile's command line program.
fn cli(dir: &Path) -> PathBuf {
    dir.join("node_modules/postgraphile/dist/cli-run.js")
}

impl PostGraphile {
    /// Starts PostGraphile with the package's configuration on
    /// `database_url`, its log in `log_dir`, and waits until it answers.
    pub async fn start(dir: &Path, node: &Path, log_dir: &Path, database_url: &str) -> Result<Self> {
        let port = free_port()?;
        let mut command = Command::new(node);
        command
            .arg(cli(dir))
            .current_dir(dir)
            .env("DATABASE_URL", database_url)
            .env("PORT", port.to_string())
            .env("GRAPHILE_ENV", "production")
            .env("NODE_ENV", "production");
        let process = Guarded::spawn(
            "PostGraphile",
            command,
            log_dir.join("postgraphile.log"),
            Signal::SIGTERM,
            Duration::from_secs(10),
        )?;
        let mut postgraphile = Self {
            url: format!("http://127.0.0.1:{port}/graphql"),
            process,
        };
        postgraphile.wait_until_ready().await?;
        Ok(postgraphile)
    }

    async fn wait_until_ready(&mut self) -> Result<()> {
        let client = reqwest::Client::builder().no_proxy().build()?;
        let url = &self.url;
        let ready = || async {
            let answer = client
                .post(url)
                .json(&json!({ "query": "{ __typename }" }))
                .timeout(Duration::from_secs(5))
                .send()
                .await;
            match answer {
                Ok(response) => response
                    .json::<Value>()
                    .await
                    .is_ok_and(|body| body["data"]["__typename"] == "Query"),
                Err(_) => false,
            }
        };
        self.process
            .wait_until_ready(START_LIMIT, Duration::from_millis(300), ready)
            .await
    }
}
