//! Node-driven tests: real client libraries run by Node against a real
//! server. Their npm packages are ONE locked package, `tests/node` (one
//! `npm ci`, through `scripts/install-deps.sh --examples`), and they run
//! one at a time: each starts a Node process that takes a core while it
//! loads, and CI has two.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use serde_json::Value;
use tokio::{
    io::AsyncReadExt,
    process::Command,
    sync::{Mutex, MutexGuard},
};

static TURN: Mutex<()> = Mutex::const_new(());

/// The right to run Node now; held for the whole test.
pub struct NodeTurn {
    _turn: MutexGuard<'static, ()>,
}

/// Waits until no other Node-driven test runs, then makes sure Node and
/// the packages of `dir` (relative to the repository) are installed.
pub async fn turn(dir: &str) -> NodeTurn {
    let turn = TURN.lock().await;
    install(dir).await;
    NodeTurn { _turn: turn }
}

/// The repository root.
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

async fn install(dir: &str) {
    if installed(&root().join(dir)) && which("node").is_some() {
        return;
    }
    let status = Command::new(root().join("scripts/install-deps.sh"))
        .arg("--examples")
        .status()
        .await
        .expect("running scripts/install-deps.sh --examples");
    assert!(status.success(), "scripts/install-deps.sh --examples failed");
}

/// Whether `dir`'s packages are installed as its lock says now (npm keeps
/// its own copy of the lock it installed in node_modules).
fn installed(dir: &Path) -> bool {
    let modified = |path: PathBuf| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    match (
        modified(dir.join("package-lock.json")),
        modified(dir.join("node_modules/.package-lock.json")),
    ) {
        (Some(lock), Some(installed)) => installed >= lock,
        _ => false,
    }
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|path| path.is_file())
    })
}

/// What a script printed, and how it ended.
pub struct NodeRun {
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// Whether it exited with 0.
    pub success: bool,
}

impl NodeRun {
    /// The JSON object the script printed on its last `REPORT ` line;
    /// panics with everything it printed when there is none.
    pub fn report(&self) -> Value {
        self.stdout
            .lines()
            .rev()
            .find_map(|line| line.strip_prefix("REPORT "))
            .and_then(|json| serde_json::from_str(json).ok())
            .unwrap_or_else(|| panic!("no report from the script:\n{}\n{}", self.stdout, self.stderr))
    }
}

/// Runs `node <script>` in `tests/node` with `env`, for at most `limit`.
pub async fn run_script(_turn: &NodeTurn, script: &str, env: &[(&str, String)], limit: Duration) -> NodeRun {
    let mut command = Command::new("node");
    command
        // The libraries' development builds, as a bundler serves them to
        // a developer: Apollo Client warns (a missing field, say) only there.
        .arg("--conditions=development")
        .arg(script)
        .current_dir(root().join("tests/node"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("running node");
    let mut stdout = child.stdout.take().expect("the script's stdout");
    let mut stderr = child.stderr.take().expect("the script's stderr");
    let out = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text).await;
        text
    });
    let err = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });
    let status = tokio::time::timeout(limit, child.wait()).await;
    if status.is_err() {
        let _ = child.kill().await;
    }
    let stdout = out.await.unwrap_or_default();
    let stderr = err.await.unwrap_or_default();
    let status = status.unwrap_or_else(|_| panic!("{script} did not finish in {limit:?}:\n{stdout}\n{stderr}"));
    NodeRun {
        stdout,
        stderr,
        success: status.is_ok_and(|status| status.success()),
    }
}
