//! What the kernel says about a process: CPU time and memory, read from
//! `/proc`, so the benchmark measures the server (and its PostgreSQL, and
//! LiteLLM) from the outside, as an operator's tools would.

use std::{fs, path::Path};

/// CPU time and memory of one process.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    /// utime + stime, in clock ticks.
    pub cpu_ticks: u64,
    /// Resident set size now, in KiB.
    pub rss_kib: u64,
}

/// The kernel's clock ticks per second, in which `/proc/<pid>/stat`
/// counts CPU time.
pub fn ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a constant of the C library.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// The fields of `/proc/<pid>/stat` after the command name, which may
/// itself hold spaces and parentheses: field 3 (state) comes first.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    Some(after_name.split_whitespace().map(str::to_owned).collect())
}

/// The parent of `pid`.
fn parent(pid: u32) -> Option<u32> {
    stat_fields(pid)?.get(1)?.parse().ok()
}

/// utime + stime of `pid`, in clock ticks (fields 14 and 15).
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let fields = stat_fields(pid)?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// A `kB` line of `/proc/<pid>/status`, e.g. `VmRSS` or `VmHWM`.
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// Whether the process exists (a zombie counts as gone).
pub fn alive(pid: u32) -> bool {
    stat_fields(pid).is_some_and(|fields| fields.first().is_some_and(|state| state != "Z"))
}

/// `pid` and every process below it, found by scanning `/proc` for parents.
pub fn tree(pid: u32) -> Vec<u32> {
    let all: Vec<(u32, u32)> = fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|child| Some((child, parent(child)?)))
        .collect();
    let mut found = vec![pid];
    let mut at = 0;
    while at < found.len() {
        let parent_pid = found[at];
        found.extend(all.iter().filter(|(_, p)| *p == parent_pid).map(|(child, _)| *child));
        at += 1;
    }
    found
}

/// The CPU time and memory of `pid` and its descendants together.
pub fn tree_sample(pid: u32) -> Sample {
    tree(pid).into_iter().fold(Sample::default(), |sum, member| Sample {
        cpu_ticks: sum.cpu_ticks + cpu_ticks(member).unwrap_or(0),
        rss_kib: sum.rss_kib + status_kib(member, "VmRSS").unwrap_or(0),
    })
}

/// The postmaster of the PostgreSQL cluster in `data_dir`, from its pid
/// file, if it is running.
pub fn postmaster(data_dir: &Path) -> Option<u32> {
    let pid_file = fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    let pid = pid_file.lines().next()?.trim().parse().ok()?;
    alive(pid).then_some(pid)
}

/// Raises this process's open-file limit to its hard limit: a thousand
/// streams take two descriptors each here (the client's and the fake
/// upstream's), and the server, which inherits the limit, as many.
pub fn raise_open_files_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return raised.rlim_cur;
            }
        }
    }
    limit.rlim_cur
}
