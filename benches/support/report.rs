//! The benchmark's output: one Markdown table row per workload, on
//! standard output as each finishes (progress goes to standard error), so
//! a run pastes into `benches/README.md` as it is.

use std::{fmt, time::Duration};

use super::load::Stats;

/// One line of the table.
#[derive(Clone, Debug, Default)]
pub struct Row {
    /// The workload's name.
    pub workload: String,
    /// Callers in flight at once.
    pub concurrency: usize,
    /// Requests/s, p50, p99; `None` for a row that is not a throughput
    /// (memory) or did not run.
    pub stats: Option<Stats>,
    /// What it is compared with, as measured in the same run.
    pub reference: String,
    /// The comparison.
    pub ratio: String,
    /// Anything else: CPU per call, memory, why it was skipped.
    pub notes: String,
}

/// The table's head.
pub fn header() -> String {
    "| workload | c | req/s | p50 | p99 | errors | reference (same run) | ratio | notes |\n\
     |---|--:|--:|--:|--:|--:|---|---|---|"
        .to_owned()
}

impl Row {
    /// The Markdown line.
    pub fn line(&self) -> String {
        let (rps, p50, p99, errors) = match &self.stats {
            Some(stats) => (
                thousands(stats.rps()),
                ms(stats.p50()),
                ms(stats.p99()),
                stats.errors.to_string(),
            ),
            None => ("".into(), "".into(), "".into(), "".into()),
        };
        let concurrency = if self.concurrency == 0 {
            String::new()
        } else {
            self.concurrency.to_string()
        };
        format!(
            "| {} | {concurrency} | {rps} | {p50} | {p99} | {errors} | {} | {} | {} |",
            self.workload,
            self.reference,
            self.ratio,
            self.notes.replace('|', "/")
        )
    }

    /// Prints the line as soon as the row is measured.
    pub fn emit(&self) {
        println!("{}", self.line());
    }
}

/// Why a workload did not run, when that is not a failure (a peer is not
/// installed, the server has no gateway): its row says "skipped".
#[derive(Debug)]
pub struct Skipped(pub String);

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Skipped {}

/// The first line of a message, for a table cell.
pub fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text)
}

/// The machine, as the lines before a table describe it: other work on it
/// skews every row, so it says how busy it was too.
pub struct Machine {
    /// `nproc`.
    pub cpus: usize,
    /// The CPU's model name.
    pub model: String,
    /// Total memory, e.g. "23.5 GiB".
    pub memory: String,
    /// The load averages over 1, 5 and 15 minutes, e.g. "2.61 3.02 3.90".
    pub load: String,
}

impl Machine {
    /// Reads it from `/proc` now.
    pub fn now() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let model = cpuinfo
            .lines()
            .find_map(|line| line.strip_prefix("model name")?.split_once(':').map(|(_, v)| v.trim()))
            .unwrap_or("unknown CPU")
            .to_owned();
        let memory = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|info| {
                let line = info.lines().find(|line| line.starts_with("MemTotal:"))?;
                line.split_whitespace().nth(1)?.parse::<u64>().ok()
            })
            .map_or_else(
                || "unknown".to_owned(),
                |kib| format!("{:.1} GiB", kib as f64 / 1048576.0),
            );
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        Self {
            cpus: std::thread::available_parallelism().map_or(0, usize::from),
            model,
            memory,
            load: load.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
        }
    }
}

/// `stats` in a few words, as a reference: "25,000 req/s, p50 3.1 ms, p99 9.0 ms".
pub fn summary(name: &str, stats: &Stats) -> String {
    format!(
        "{name}: {} req/s, p50 {}, p99 {}",
        thousands(stats.rps()),
        ms(stats.p50()),
        ms(stats.p99())
    )
}

/// The cost of going through the gateway (`through`) instead of calling
/// the upstream (`direct`): the share of the throughput kept and the
/// latency added at p50 and p99.
pub fn added(through: &Stats, direct: &Stats) -> String {
    format!(
        "{:.2}x req/s; added p50 {}, p99 {}",
        through.rps() / direct.rps().max(f64::EPSILON),
        signed_ms(through.p50(), direct.p50()),
        signed_ms(through.p99(), direct.p99())
    )
}

/// A duration in milliseconds with a precision that suits it.
pub fn ms(duration: Duration) -> String {
    let ms = duration.as_secs_f64() * 1000.0;
    if ms < 1.0 {
        format!("{ms:.3} ms")
    } else if ms < 10.0 {
        format!("{ms:.2} ms")
    } else if ms < 100.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

/// `a - b` in milliseconds, with its sign.
pub fn signed_ms(a: Duration, b: Duration) -> String {
    if a >= b {
        format!("+{}", ms(a - b))
    } else {
        format!("-{}", ms(b - a))
    }
}

/// A whole number with thousands separators: 25,000.
pub fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// KiB as MB (10^6 bytes), as the issue states its memory targets.
pub fn megabytes(kib: u64) -> String {
    format!("{:.0} MB", kib as f64 * 1024.0 / 1e6)
}
