//! `pullgate doctor`: is this node enforcing?
//!
//! Input: the configuration every command uses ([`crate::config_file`]),
//! the kubelet's configuration file and command line (`/proc/<pid>/cmdline`),
//! containerd's socket and configuration file, and pullgate's own trust files
//! and state directory. Output: a [`Report`], one [`Check`] per line (ok,
//! warn or fail, and the fix), as text or JSON; exit status 1 when any check
//! fails.
//!
//! - `kubelet`: the kubelet's image service (and runtime service) endpoint
//!   names pullgate's socket, from its file and its flags (flags win).
//! - `containerd`: its socket is root-only; its configuration has no
//!   local-pull fallback around the image verifier, and the verifier plugin's
//!   `bin_dir` holds pullgate.
//! - `state`: the configuration and policy load as `serve` loads them, no
//!   named trust store a statement uses is empty, the state directory is
//!   safe, the registries the scopes name answer (skipped with `--offline`;
//!   a TCP connect per host, `state::CONNECT_TIMEOUT` each).
//!
//! - `images`: the images in containerd's CRI namespace without an allow
//!   verdict under the policy in force (a count; the list with `--verbose`),
//!   and whether the sandbox image has one, judged by the verdicts the
//!   daemon persisted and the gate's cache-only check (verdicts made since
//!   the daemon's last save are not seen); the sandbox image without a saved
//!   verdict is decided now unless `--offline`.
//!
//! Everything but the registry connects, containerd's CRI calls and the
//! sandbox decision is blocking file I/O, done before the runtime is used.

mod containerd;
mod images;
mod kubelet;
mod state;

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;

use crate::config_file;

/// The kubelet configuration file read when its command line names none.
pub const KUBELET_CONFIG: &str = "/var/lib/kubelet/config.yaml";

/// containerd's configuration file.
pub const CONTAINERD_CONFIG: &str = "/etc/containerd/config.toml";

/// What `pullgate doctor` looks at.
#[derive(Debug, Clone)]
pub struct Options {
    /// `--config`, else the usual resolution.
    pub config: Option<PathBuf>,
    /// The kubelet's configuration file, when its command line names none.
    pub kubelet_config: PathBuf,
    /// containerd's configuration file (absent is fine).
    pub containerd_config: PathBuf,
    /// Skip the checks that reach the network.
    pub offline: bool,
    /// List the images a check counts.
    pub verbose: bool,
    /// Where processes are listed (`/proc`).
    pub proc_root: PathBuf,
}

/// A check's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// As it should be.
    Ok,
    /// Works, but something is not covered or may bite later.
    Warn,
    /// The node does not enforce as configured, or pullgate cannot start.
    Fail,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Warn => "warn",
            Self::Fail => "fail",
        }
    }
}

/// One check: what was looked at, the result, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Short stable name (`kubelet.image_service`).
    pub name: &'static str,
    /// The result.
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// How to fix it, for a warn or a fail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// What a check counted, when asked for (`--verbose`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<String>,
}

impl Check {
    pub(crate) fn ok(name: &'static str, detail: impl Into<String>) -> Self {
        Self {
            name,
            status: Status::Ok,
            detail: detail.into(),
            fix: None,
            items: Vec::new(),
        }
    }

    pub(crate) fn warn(
        name: &'static str,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            name,
            status: Status::Warn,
            detail: detail.into(),
            fix: Some(fix.into()),
            items: Vec::new(),
        }
    }

    pub(crate) fn fail(
        name: &'static str,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            name,
            status: Status::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
            items: Vec::new(),
        }
    }
}

/// Every check, in the order run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// The checks.
    pub checks: Vec<Check>,
}

impl Report {
    /// 1 when any check failed, else 0.
    pub fn exit_status(&self) -> u8 {
        u8::from(self.checks.iter().any(|c| c.status == Status::Fail))
    }

    /// One line per check (`ok`/`warn`/`fail`, name, what was found), the
    /// fix indented below a warn or fail, and a summary line.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for c in &self.checks {
            let _ = writeln!(out, "{:<4}  {}: {}", c.status.as_str(), c.name, c.detail);
            for item in &c.items {
                let _ = writeln!(out, "      - {item}");
            }
            if let Some(fix) = &c.fix {
                let _ = writeln!(out, "      fix: {fix}");
            }
        }
        let count = |s| self.checks.iter().filter(|c| c.status == s).count();
        let _ = writeln!(
            out,
            "{} ok, {} warn, {} fail",
            count(Status::Ok),
            count(Status::Warn),
            count(Status::Fail)
        );
        out
    }

    /// The report as one JSON document (`{"checks": [...]}`).
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// Runs every check. Blocking (reads files); the registry connects run on `rt`.
pub fn run(options: &Options, rt: &tokio::runtime::Runtime) -> Report {
    let mut report = Report::default();
    let (config, source) = match config_file::load(options.config.as_deref()) {
        Ok(loaded) => loaded,
        Err(e) => {
            report.checks.push(Check::fail(
                "pullgate.config",
                crate::cli::error_chain(&e),
                "fix the file (`pullgate policy check FILE` explains it; `pullgate config example` lists every key)",
            ));
            return report;
        }
    };
    report
        .checks
        .push(Check::ok("pullgate.config", format!("using {source}")));
    report.checks.extend(kubelet::checks(
        &config.server.socket,
        &options.kubelet_config,
        &options.proc_root,
    ));
    report.checks.extend(containerd::checks(
        &config.server.upstream,
        &options.containerd_config,
    ));
    report
        .checks
        .extend(state::checks(&config, options.offline, rt));
    report.checks.extend(images::checks(
        &config,
        options.verbose,
        options.offline,
        rt,
    ));
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_fail_fails_the_report_and_fixes_are_printed() {
        let mut report = Report {
            checks: vec![Check::ok("a", "fine"), Check::warn("b", "meh", "do b")],
        };
        assert_eq!(report.exit_status(), 0);
        report.checks.push(Check::fail("c", "broken", "do c"));
        assert_eq!(report.exit_status(), 1);
        let text = report.text();
        assert!(text.contains("ok    a: fine\n"), "{text}");
        assert!(
            text.contains("fail  c: broken\n      fix: do c\n"),
            "{text}"
        );
        assert!(text.ends_with("1 ok, 1 warn, 1 fail\n"), "{text}");
        let json: serde_json::Value = serde_json::from_str(&report.json()).unwrap();
        assert_eq!(json["checks"][2]["status"], "fail");
        assert!(json["checks"][0].get("fix").is_none());
    }
}
