//! The benchmark's output: one Markdown table row per workload, on
//! standard output as each finishes (progress goes to standard error), so
//! a run pastes into `benches/README.md` as it is.

use std::time::Duration;

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
