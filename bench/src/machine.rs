//! What a recorded result names: the machine, the commit and the command.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

/// Where and from what a run was made.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Machine {
    /// CPUs available to this process (`nproc`).
    pub(crate) nproc: usize,
    /// `model name` from `/proc/cpuinfo`.
    pub(crate) cpu_model: String,
    /// `MemTotal` from `/proc/meminfo`, in MiB.
    pub(crate) mem_total_mib: u64,
    /// `/proc/sys/kernel/osrelease`.
    pub(crate) kernel: String,
    /// `std::env::consts::ARCH`.
    pub(crate) arch: &'static str,
    /// `/proc/loadavg` when the run started (the machine is shared; load skews results).
    pub(crate) loadavg_at_start: String,
    /// `containerd --version`.
    pub(crate) containerd: String,
    /// `git rev-parse HEAD` of the workspace, `-dirty` when code (outside `bench/results/`) differs.
    pub(crate) git_commit: String,
    /// The command line, as run.
    pub(crate) command: String,
    /// The `pullgate` binary measured.
    pub(crate) pullgate_binary: String,
    /// When the run started (UTC, RFC 3339).
    pub(crate) started_at: String,
}

impl Machine {
    /// The first lines of a recorded result of `run` (e.g. `soak`): commit,
    /// machine, command and binary.
    pub(crate) fn header(&self, run: &str) -> String {
        format!(
            "pullgate-bench {run} — commit {}\nmachine: {} CPUs, {}, {} MiB, kernel {}; load at start {}\ncommand: {}\nbinary: {}\n",
            self.git_commit,
            self.nproc,
            self.cpu_model,
            self.mem_total_mib,
            self.kernel,
            self.loadavg_at_start,
            self.command,
            self.pullgate_binary,
        )
    }
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn output(cmd: &str, args: &[&str], dir: Option<&Path>) -> String {
    let mut c = Command::new(cmd);
    c.args(args);
    if let Some(d) = dir {
        c.current_dir(d);
    }
    match c.output() {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        Ok(o) => format!("unknown ({cmd}: {})", o.status),
        Err(e) => format!("unknown ({cmd}: {e})"),
    }
}

/// The workspace root (the parent of this crate), without `..` when it exists.
pub(crate) fn workspace_root() -> PathBuf {
    let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    std::fs::canonicalize(root).unwrap_or_else(|_| root.to_owned())
}

fn git_commit() -> String {
    let root = workspace_root();
    let root = root.as_path();
    let head = output("git", &["rev-parse", "HEAD"], Some(root));
    let status = output(
        "git",
        &[
            "status",
            "--porcelain",
            "--",
            ".",
            ":(exclude)bench/results",
        ],
        Some(root),
    );
    if status.is_empty() {
        head
    } else {
        format!("{head}-dirty")
    }
}

/// Reads the machine description now.
pub(crate) fn describe(pullgate_binary: &Path) -> Machine {
    let cpuinfo = read("/proc/cpuinfo");
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned());
    let mem_total_mib = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib / 1024);
    let argv: Vec<String> = std::env::args().collect();
    let program = argv
        .first()
        .map(|a| {
            Path::new(a)
                .file_name()
                .map_or_else(|| a.clone(), |f| f.to_string_lossy().into_owned())
        })
        .unwrap_or_default();
    let command = std::iter::once(program)
        .chain(argv.iter().skip(1).cloned())
        .collect::<Vec<_>>()
        .join(" ");
    // The clock is read once, to stamp the result with when it was measured.
    #[allow(clippy::disallowed_methods)]
    let now = std::time::SystemTime::now();
    Machine {
        nproc: std::thread::available_parallelism().map_or(0, usize::from),
        cpu_model,
        mem_total_mib,
        kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
        arch: std::env::consts::ARCH,
        loadavg_at_start: read("/proc/loadavg").trim().to_owned(),
        containerd: output("containerd", &["--version"], None),
        git_commit: git_commit(),
        command,
        pullgate_binary: pullgate_binary.display().to_string(),
        started_at: rfc3339(now),
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` of a system time (civil-from-days, proleptic Gregorian).
fn rfc3339(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn formats_utc() {
        let t = UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        assert_eq!(rfc3339(t), "2026-11-18T11:06:40Z");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
    }
}
