//! `pullgate preflight --config NEW`: what a new configuration would change
//! on this node, before it is put in force.
//!
//! Input: the configuration in force (resolved as every command resolves
//! it, [`crate::config_file`], or `--current-config`) and the NEW one. Each
//! is loaded into a gate of its own, in this process ([`Gate::load`]); the
//! running daemon is not touched. What the node holds is read from
//! containerd's CRI on the current configuration's `[server] upstream`
//! (`cri::inventory`): every image in its CRI namespace, with its records (each
//! name pinned at the digest its image record really targets, as the runtime
//! doors judge them), and every container, with its pod (the kubelet's
//! labels, else its sandbox's metadata).
//!
//! Output: one [`Row`] per image and pod namespace using it (an image no
//! container uses gets one row without a namespace): image, digest, pods,
//! the verdict under the configuration in force and under NEW, each decided
//! as the runtime doors decide (the namespace picks the requirements scope;
//! the first record allowed admits the image, else the first record's
//! verdict stands; an image with no name pullgate can verify is refused).
//! Text lists the rows whose verdict changes (`--all`: every row) and a
//! summary; JSON lists every row.
//!
//! Exit status ([`Report::exit_status`]): 1 when an image a running
//! container uses would be denied under NEW, else 2 when no decision could
//! be made for one, else 0.
//!
//! Limits: verdicts are made one after another, each under its
//! configuration's `[server] decision_budget_ms`, through each gate's cache
//! (an image used in several namespaces of one scope is verified once);
//! listing what containerd holds runs under [`INVENTORY_BUDGET`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pullgate_policy::config::Config;
use pullgate_policy::ImageRef;
use serde::Serialize;

use crate::audit::{self, DecisionRecord};
use crate::config_file::{self, ConfigSource};
use crate::cri::inventory::{Inventory, InventoryError, NodeContainer, NodeImage};
use crate::deadline::Deadline;
use crate::gate::{Gate, LoadError};

/// How long listing containerd's images, their records and its containers may take.
pub const INVENTORY_BUDGET: Duration = Duration::from_secs(120);

/// Why preflight could not run.
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    /// A configuration file cannot be read or is invalid.
    #[error(transparent)]
    Config(#[from] config_file::LoadError),
    /// A configuration's trust files do not load.
    #[error("the {which} configuration's trust files")]
    Policy {
        /// `current` or `new`.
        which: &'static str,
        /// Why.
        #[source]
        source: Box<LoadError>,
    },
    /// containerd could not say what it holds.
    #[error(transparent)]
    Containerd(#[from] InventoryError),
}

/// A verdict as preflight reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Verified and allowed.
    Allow,
    /// Would be denied; allowed because the scope's mode is `audit`.
    AuditAllow,
    /// Would be denied; allowed because the scope's mode is `warn`.
    WarnAllow,
    /// The statement's level is `skip`.
    Skip,
    /// A break-glass digest.
    BreakGlass,
    /// The registry could not be reached and the scope fails open.
    FailOpen,
    /// A standing allow (not made by preflight's fresh gates; kept for completeness).
    Standing,
    /// Denied.
    Deny,
    /// No decision could be made: refused (fails closed).
    Undecided,
    /// containerd holds the image under no name pullgate can verify (or
    /// not at all): the runtime doors refuse it.
    NoName,
}

impl Verdict {
    fn of(v: audit::Verdict) -> Self {
        match v {
            audit::Verdict::Allow => Self::Allow,
            audit::Verdict::AuditAllow => Self::AuditAllow,
            audit::Verdict::WarnAllow => Self::WarnAllow,
            audit::Verdict::Skip => Self::Skip,
            audit::Verdict::BreakGlass => Self::BreakGlass,
            audit::Verdict::FailOpen => Self::FailOpen,
            audit::Verdict::Standing => Self::Standing,
            audit::Verdict::Deny => Self::Deny,
            audit::Verdict::Error => Self::Undecided,
        }
    }

    /// Whether the runtime doors would refuse the image.
    fn refuses(self) -> bool {
        match self {
            Self::Allow
            | Self::AuditAllow
            | Self::WarnAllow
            | Self::Skip
            | Self::BreakGlass
            | Self::FailOpen
            | Self::Standing => false,
            Self::Deny | Self::Undecided | Self::NoName => true,
        }
    }

    /// The verdict in force, in words.
    fn now_words(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::AuditAllow => "allow (audit mode: would be denied)",
            Self::WarnAllow => "allow (warn mode: would be denied)",
            Self::Skip => "allow (verification level skip)",
            Self::BreakGlass => "allow (break-glass digest)",
            Self::FailOpen => "allow WITHOUT verification (registry error, scope fails open)",
            Self::Standing => "allow (standing allow)",
            Self::Deny => "deny",
            Self::Undecided => "no decision (fails closed)",
            Self::NoName => "deny (no name pullgate can verify)",
        }
    }

    /// The verdict under NEW, in words.
    fn new_words(self) -> &'static str {
        match self {
            Self::Allow => "would allow",
            Self::AuditAllow => "would allow (audit mode: would be denied)",
            Self::WarnAllow => "would allow (warn mode: would be denied)",
            Self::Skip => "would allow (verification level skip)",
            Self::BreakGlass => "would allow (break-glass digest)",
            Self::FailOpen => "would allow WITHOUT verification (registry error, scope fails open)",
            Self::Standing => "would allow (standing allow)",
            Self::Deny => "would deny",
            Self::Undecided => "no decision (would fail closed)",
            Self::NoName => "would deny (no name pullgate can verify)",
        }
    }
}

/// One configuration's verdict on an image for a namespace.
#[derive(Debug, Clone, Serialize)]
pub struct Judgement {
    /// The verdict.
    pub verdict: Verdict,
    /// The record decided (`repository@digest`), when there was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
    /// The requirements scope that applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Why (the denial, the error).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Judgement {
    fn of(record: &DecisionRecord) -> Self {
        Self {
            verdict: Verdict::of(record.verdict),
            record: Some(record.image.clone()),
            scope: record.requirement.clone(),
            reason: record.reason.clone(),
        }
    }

    fn no_name() -> Self {
        Self {
            verdict: Verdict::NoName,
            record: None,
            scope: None,
            reason: None,
        }
    }
}

/// An image, for the pods of one namespace (or for none), under both configurations.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// The image's first name (else its id).
    pub image: String,
    /// containerd's image id.
    pub id: String,
    /// The digest of the record decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The pods' namespace; absent for an image no container uses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The pods using it (`namespace/name`).
    pub pods: Vec<String>,
    /// How many of its containers run now.
    pub running: usize,
    /// The verdict under the configuration in force.
    pub now: Judgement,
    /// The verdict under NEW.
    pub new: Judgement,
    /// Whether the verdict changes.
    pub changes: bool,
}

/// What preflight found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The configuration in force.
    pub current: String,
    /// The NEW configuration.
    pub new: String,
    /// Every row, the changing ones first.
    pub rows: Vec<Row>,
}

impl Report {
    /// 1 when an image a running container uses would be denied under NEW,
    /// else 2 when no decision could be made for one, else 0.
    pub fn exit_status(&self) -> u8 {
        let running = || self.rows.iter().filter(|r| r.running > 0);
        if running().any(|r| matches!(r.new.verdict, Verdict::Deny | Verdict::NoName)) {
            1
        } else if running().any(|r| r.new.verdict == Verdict::Undecided) {
            2
        } else {
            0
        }
    }

    /// The rows whose verdict changes (every row with `all`), then a summary.
    pub fn text(&self, all: bool) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "now: {}\nnew: {}", self.current, self.new);
        for r in self.rows.iter().filter(|r| all || r.changes) {
            let _ = writeln!(out);
            let digest = r.digest.as_deref().unwrap_or("(no digest)");
            let _ = writeln!(out, "{}  {digest}", r.image);
            if r.pods.is_empty() {
                let _ = writeln!(out, "  pods: none");
            } else {
                let _ = writeln!(
                    out,
                    "  pods: {} ({} running container(s))",
                    r.pods.join(", "),
                    r.running
                );
            }
            let line = |j: &Judgement, words: &str| {
                let scope = j
                    .scope
                    .as_deref()
                    .map(|s| format!(" [scope {s}]"))
                    .unwrap_or_default();
                match &j.reason {
                    Some(why) => format!("{words}{scope}: {why}"),
                    None => format!("{words}{scope}"),
                }
            };
            let _ = writeln!(out, "  now:  {}", line(&r.now, r.now.verdict.now_words()));
            let _ = writeln!(out, "  new:  {}", line(&r.new, r.new.verdict.new_words()));
        }
        let changes = self.rows.iter().filter(|r| r.changes).count();
        let images: BTreeSet<&str> = self.rows.iter().map(|r| r.id.as_str()).collect();
        let denied_running = self
            .rows
            .iter()
            .filter(|r| r.running > 0 && r.new.verdict.refuses())
            .map(|r| r.running)
            .sum::<usize>();
        let _ = writeln!(
            out,
            "\n{} image(s), {} row(s), {changes} would change; {denied_running} running container(s) would be refused under the new configuration",
            images.len(),
            self.rows.len()
        );
        out
    }

    /// The report as one JSON document.
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// Both configurations, loaded into gates of their own.
#[derive(Debug)]
pub struct Preflight {
    current: (Config, ConfigSource),
    new: (Config, PathBuf),
    now_gate: Gate,
    new_gate: Gate,
}

impl Preflight {
    /// Loads the configuration in force (`current`, else resolved as every
    /// command resolves it) and `new`, and a gate for each. Blocking.
    ///
    /// # Errors
    /// [`PreflightError`] naming the file at fault.
    pub fn load(new: &Path, current: Option<&Path>) -> Result<Self, PreflightError> {
        let (current_config, source) = config_file::load(current)?;
        let new_config = config_file::read(&ConfigSource::Flag(new.to_owned()))?;
        let now_gate = Gate::load(&current_config).map_err(|e| PreflightError::Policy {
            which: "current",
            source: Box::new(e),
        })?;
        let new_gate = Gate::load(&new_config).map_err(|e| PreflightError::Policy {
            which: "new",
            source: Box::new(e),
        })?;
        Ok(Self {
            current: (current_config, source),
            new: (new_config, new.to_owned()),
            now_gate,
            new_gate,
        })
    }

    /// Reads what containerd holds and decides every image under both configurations.
    ///
    /// # Errors
    /// [`PreflightError::Containerd`] when containerd cannot say what it holds.
    pub async fn run(&self) -> Result<Report, PreflightError> {
        let server = &self.current.0.server;
        let inventory = Inventory::new(&server.upstream, &server.containerd_namespace)?;
        let deadline = Deadline::after(INVENTORY_BUDGET);
        let images = inventory.images(usize::MAX, deadline).await?;
        let containers = inventory.containers(deadline).await?;
        let mut rows = Vec::new();
        for (image, users) in group(images, &containers) {
            let name = image.names.first().cloned().unwrap_or(image.id.clone());
            for (namespace, pods) in users {
                let now = judge(
                    &self.now_gate,
                    self.current.0.server.decision_budget(),
                    &image,
                    namespace.as_deref(),
                )
                .await;
                let new = judge(
                    &self.new_gate,
                    self.new.0.server.decision_budget(),
                    &image,
                    namespace.as_deref(),
                )
                .await;
                let digest = new
                    .record
                    .as_deref()
                    .or(now.record.as_deref())
                    .and_then(|r| r.split_once('@'))
                    .map(|(_, d)| d.to_owned());
                rows.push(Row {
                    image: name.clone(),
                    id: image.id.clone(),
                    digest,
                    namespace,
                    running: pods.running,
                    pods: pods.names.into_iter().collect(),
                    changes: now.verdict != new.verdict,
                    now,
                    new,
                });
            }
        }
        rows.sort_by(|a, b| {
            (!a.changes, &a.image, &a.namespace).cmp(&(!b.changes, &b.image, &b.namespace))
        });
        Ok(Report {
            current: self.current.1.to_string(),
            new: self.new.1.display().to_string(),
            rows,
        })
    }
}

/// The pods of one namespace that use an image.
#[derive(Debug, Default)]
struct Users {
    names: BTreeSet<String>,
    running: usize,
}

/// Each image with the namespaces using it (one `None` entry for an image
/// no container uses); a container whose image containerd no longer lists
/// gets an image of its own, without records.
fn group(
    images: Vec<NodeImage>,
    containers: &[NodeContainer],
) -> Vec<(NodeImage, BTreeMap<Option<String>, Users>)> {
    let mut out: Vec<(NodeImage, BTreeMap<Option<String>, Users>)> =
        images.into_iter().map(|i| (i, BTreeMap::new())).collect();
    for c in containers {
        let at = out
            .iter()
            .position(|(i, _)| i.id == c.image_ref || i.names.contains(&c.image_ref));
        let at = match at {
            Some(at) => at,
            None => {
                out.push((
                    NodeImage {
                        id: c.image_ref.clone(),
                        names: Vec::new(),
                        records: Vec::new(),
                    },
                    BTreeMap::new(),
                ));
                out.len() - 1
            }
        };
        let users = out[at]
            .1
            .entry(c.pod.as_ref().map(|p| p.namespace.clone()))
            .or_default();
        if let Some(p) = &c.pod {
            users.names.insert(format!("{}/{}", p.namespace, p.name));
        }
        users.running += usize::from(c.running);
    }
    for (_, users) in &mut out {
        if users.is_empty() {
            users.insert(None, Users::default());
        }
    }
    out
}

/// `gate`'s verdict on `image` for a pod in `namespace`, as the runtime
/// doors make it: the first record allowed admits the image; otherwise the
/// first record's verdict stands; an image without records is refused.
async fn judge(
    gate: &Gate,
    budget: Duration,
    image: &NodeImage,
    namespace: Option<&str>,
) -> Judgement {
    let mut first: Option<Judgement> = None;
    for pinned in &image.records {
        let Ok(as_pull) = pinned.to_string().parse::<ImageRef>() else {
            continue;
        };
        let record = gate.decide_for_namespace(&as_pull, namespace, budget).await;
        let judged = Judgement::of(&record);
        if !judged.verdict.refuses() {
            return judged;
        }
        first.get_or_insert(judged);
    }
    first.unwrap_or_else(Judgement::no_name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cri::inventory::PodName;

    fn image(id: &str, name: &str) -> NodeImage {
        NodeImage {
            id: id.into(),
            names: vec![name.into()],
            records: Vec::new(),
        }
    }

    fn container(image_ref: &str, ns: &str, pod: &str, running: bool) -> NodeContainer {
        NodeContainer {
            image_ref: image_ref.into(),
            running,
            pod: Some(PodName {
                namespace: ns.into(),
                name: pod.into(),
            }),
        }
    }

    #[test]
    fn images_are_grouped_by_the_namespaces_using_them() {
        let grouped = group(
            vec![image("sha256:a", "r/a:1"), image("sha256:b", "r/b:1")],
            &[
                container("sha256:a", "dev", "web-1", true),
                container("r/a:1", "dev", "web-2", false),
                container("sha256:a", "prod", "web-3", true),
                container("sha256:gone", "prod", "old", true),
            ],
        );
        assert_eq!(grouped.len(), 3);
        let a = &grouped[0].1;
        assert_eq!(a.len(), 2);
        let dev = &a[&Some("dev".to_owned())];
        assert_eq!(dev.running, 1);
        assert_eq!(dev.names.len(), 2);
        // An image no container uses: one row without a namespace.
        assert!(grouped[1].1.contains_key(&None));
        // A container whose image is gone: an image of its own, without records.
        assert_eq!(grouped[2].0.id, "sha256:gone");
        assert!(grouped[2].0.records.is_empty());
    }

    fn row(running: usize, new: Verdict) -> Row {
        let j = |verdict| Judgement {
            verdict,
            record: None,
            scope: None,
            reason: None,
        };
        Row {
            image: "r/a:1".into(),
            id: "sha256:a".into(),
            digest: None,
            namespace: None,
            pods: Vec::new(),
            running,
            now: j(Verdict::AuditAllow),
            new: j(new),
            changes: true,
        }
    }

    #[test]
    fn only_running_containers_set_the_exit_status() {
        let report = |rows| Report {
            current: "a".into(),
            new: "b".into(),
            rows,
        };
        assert_eq!(report(vec![row(0, Verdict::Deny)]).exit_status(), 0);
        assert_eq!(report(vec![row(1, Verdict::Allow)]).exit_status(), 0);
        assert_eq!(report(vec![row(1, Verdict::Undecided)]).exit_status(), 2);
        assert_eq!(
            report(vec![row(1, Verdict::Undecided), row(2, Verdict::NoName)]).exit_status(),
            1
        );
        let text = report(vec![row(0, Verdict::Deny)]).text(false);
        assert!(text.contains("  new:  would deny\n"), "{text}");
        assert!(
            text.contains("0 running container(s) would be refused"),
            "{text}"
        );
    }
}
