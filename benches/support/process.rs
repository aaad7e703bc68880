//! Child processes the benchmark starts (the server, LiteLLM) and must not
//! leave behind: each runs in its own process group, dies with the
//! benchmark (`PR_SET_PDEATHSIG`) and is stopped with a signal it handles
//! before being killed.

use std::{
    fs::File,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use nix::{
    sys::signal::{Signal, kill, killpg},
    unistd::Pid,
};

/// A running child process, stopped when dropped.
pub struct Guarded {
    /// What it is, for messages.
    pub name: String,
    child: Child,
    log: PathBuf,
    /// The signal that asks it to stop cleanly.
    stop_signal: Signal,
    /// How long it may take to stop before it is killed.
    grace: Duration,
}

/// Sends the output of `command` to `log`, puts it in its own process
/// group (so a Ctrl-C reaches the benchmark only, which then stops it in
/// order) and has the kernel send it SIGTERM should the benchmark die.
fn prepare(command: &mut Command, log: &Path) -> Result<()> {
    let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let err = out.try_clone().context("duplicating the log file")?;
    command
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .process_group(0);
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork
    // and exec.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    Ok(())
}

/// The last `lines` lines of a log file.
pub fn log_tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Runs `command` to its end within `limit`, its output in `log`.
pub fn run_to_end(name: &str, mut command: Command, log: &Path, limit: Duration) -> Result<()> {
    prepare(&mut command, log)?;
    let mut child = command.spawn().with_context(|| format!("starting {name}"))?;
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait()? {
            if status.success() {
                return Ok(());
            }
            bail!("{name} failed ({status}); its output:\n{}", log_tail(log, 20));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "{name} did not finish within {limit:?}; its output:\n{}",
                log_tail(log, 20)
            );
        }
        thread::sleep(Duration::from_millis(50));
    }
}

impl Guarded {
    /// Starts `command`, its output in `log`.
    pub fn spawn(name: &str, mut command: Command, log: PathBuf, stop_signal: Signal, grace: Duration) -> Result<Self> {
        prepare(&mut command, &log)?;
        let child = command.spawn().with_context(|| format!("starting {name}"))?;
        Ok(Self {
            name: name.to_owned(),
            child,
            log,
            stop_signal,
            grace,
        })
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status, if it has already stopped.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The end of its output, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }

    /// Polls `ready` every `every` until it answers true. An error with the
    /// end of its log when the process stops first or `limit` passes.
    pub async fn wait_until_ready<F, Fut>(&mut self, limit: Duration, every: Duration, mut ready: F) -> Result<()>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.exited() {
                bail!(
                    "{} stopped at start ({status}); its log:\n{}",
                    self.name,
                    self.log_tail(30)
                );
            }
            if ready().await {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} was not ready within {limit:?}; its log:\n{}",
                    self.name,
                    self.log_tail(30)
                );
            }
            tokio::time::sleep(every).await;
        }
    }

    /// Asks it to stop, waits up to the grace time, then kills its whole
    /// process group.
    pub fn stop(&mut self) {
        if self.exited().is_some() {
            return;
        }
        let pid = Pid::from_raw(self.child.id() as i32);
        let _ = kill(pid, self.stop_signal);
        let deadline = Instant::now() + self.grace;
        while Instant::now() < deadline {
            if self.exited().is_some() {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
        eprintln!("{} did not stop within {:?}; killing it", self.name, self.grace);
        let _ = killpg(pid, Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Stops a process this benchmark did not start directly but owns (the
/// embedded PostgreSQL, which `pg_ctl` detaches from the server): `signal`
/// first, then SIGKILL after `grace`.
pub fn stop_pid(pid: u32, signal: Signal, grace: Duration) {
    let target = Pid::from_raw(pid as i32);
    let _ = kill(target, signal);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if !super::procfs::alive(pid) {
            return;
        }
        thread::sleep(Duration::from_millis(50));
    }
    let _ = kill(target, Signal::SIGKILL);
}
