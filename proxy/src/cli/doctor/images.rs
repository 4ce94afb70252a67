//! The images containerd holds: which have no allow verdict under the
//! policy in force, and whether the sandbox image has one.
//!
//! Doctor is its own process: it cannot ask the daemon's cache. It loads
//! the policy as `serve` does, restores the verdicts the daemon persisted
//! (`[cache] state_dir`, read without creating anything) into that gate, and
//! asks the gate's cache-only check (`Gate::may_show`, which never reaches
//! the network) about each image's records (each name pinned at the digest
//! its image record really targets, `cri::inventory`). Verdicts the daemon
//! made since its last save (every 30 s when new ones were made, and at
//! shutdown) are not seen, and the checks say so.
//!
//! The sandbox image (`[server] sandbox_image`, else containerd's CRI
//! configuration) is checked the same way; when no saved verdict allows it
//! and doctor may use the network (no `--offline`), it is decided now, as
//! `RunPodSandbox` would decide it for a pod naming no namespace.
//!
//! Limits: at most [`MAX_IMAGES`] images are looked at; listing runs under
//! [`LIST_BUDGET`], the sandbox decision under `[server] decision_budget_ms`.

use std::time::Duration;

use pullgate_policy::config::Config;
use pullgate_policy::ImageRef;

use super::Check;
use crate::cri::inventory::{Inventory, NodeImage};
use crate::deadline::Deadline;
use crate::gate::Gate;
use crate::persist::Store;

/// Most images looked at.
pub(crate) const MAX_IMAGES: usize = 4096;
/// How long listing containerd's images and their records may take.
pub(crate) const LIST_BUDGET: Duration = Duration::from_secs(60);

const WITHOUT_VERDICT: &str = "images.without_verdict";
const SANDBOX: &str = "images.sandbox";

/// Where the verdicts doctor judges by came from, for the checks' text.
struct Seen(String);

/// The image checks. Blocking but for containerd's calls and the sandbox
/// decision, which run on `rt`.
pub(crate) fn checks(
    config: &Config,
    verbose: bool,
    offline: bool,
    rt: &tokio::runtime::Runtime,
) -> Vec<Check> {
    // A policy that does not load is the `pullgate.policy` check's failure.
    let Ok(gate) = Gate::load(config) else {
        return Vec::new();
    };
    let seen = restore(config, &gate);
    // The channel's connection task needs the runtime.
    let _entered = rt.enter();
    let inventory =
        match Inventory::new(&config.server.upstream, &config.server.containerd_namespace) {
            Ok(i) => i,
            Err(e) => return vec![unlisted(&e.to_string())],
        };
    let deadline = Deadline::after(LIST_BUDGET);
    let listed = rt.block_on(async {
        let images = inventory.images(MAX_IMAGES, deadline).await?;
        let sandbox = inventory
            .sandbox_image(config.server.sandbox_image.as_deref(), deadline)
            .await?;
        Ok::<_, crate::cri::inventory::InventoryError>((images, sandbox))
    });
    let (images, sandbox) = match listed {
        Ok(l) => l,
        Err(e) => return vec![unlisted(&crate::cli::error_chain(&e))],
    };
    let mut checks = vec![without_verdict(&gate, &images, &seen, verbose)];
    checks.push(sandbox_check(
        &gate, config, &images, sandbox, &seen, offline, rt,
    ));
    checks
}

/// Restores the daemon's persisted verdicts into `gate`; says where they came from.
fn restore(config: &Config, gate: &Gate) -> Seen {
    let Some(dir) = &config.cache.state_dir else {
        return Seen("[cache] state_dir is unset, so no verdict of the daemon is seen: every image that needs verification counts".to_owned());
    };
    let loaded = Store::open_existing(dir).and_then(|store| match store {
        Some(store) => store.load(),
        None => Ok(None),
    });
    match loaded {
        Ok(Some((fingerprint, verdicts))) => {
            let n = gate.restore(&fingerprint, verdicts);
            Seen(format!(
                "judged by the {n} allow verdict(s) the daemon last saved in {} under this policy; verdicts made since its last save are not seen",
                dir.display()
            ))
        }
        Ok(None) => Seen(format!(
            "the daemon has saved no verdicts in {} yet; verdicts made since its last save are not seen",
            dir.display()
        )),
        Err(e) => Seen(format!(
            "the daemon's saved verdicts cannot be read ({e}), so none is seen"
        )),
    }
}

fn unlisted(why: &str) -> Check {
    Check::warn(
        WITHOUT_VERDICT,
        format!("cannot list the images containerd holds: {why}"),
        "start containerd, or set [server] upstream to its socket",
    )
}

/// The images without an allow verdict under the policy in force.
fn without_verdict(gate: &Gate, images: &[NodeImage], seen: &Seen, verbose: bool) -> Check {
    let without: Vec<&NodeImage> = images
        .iter()
        .filter(|i| !gate.may_show(&i.records))
        .collect();
    if without.is_empty() {
        return Check::ok(
            WITHOUT_VERDICT,
            format!(
                "every one of the {} image(s) in containerd's CRI namespace has an allow verdict or needs none ({})",
                images.len(),
                seen.0
            ),
        );
    }
    let mut check = Check::warn(
        WITHOUT_VERDICT,
        format!(
            "{} of {} image(s) in containerd's CRI namespace have no allow verdict under the policy in force ({}): a container from one of them is verified when created, and refused if denied",
            without.len(),
            images.len(),
            seen.0
        ),
        "`pullgate doctor --verbose` lists them; `pullgate verify IMAGE` explains one; sign them, or remove the ones no pod needs (`crictl rmi`)",
    );
    if verbose {
        check.items = without.iter().map(|i| shown(i)).collect();
    }
    check
}

/// An image as listed: its first name and id.
fn shown(image: &NodeImage) -> String {
    match image.names.first() {
        Some(name) => format!("{name} ({})", image.id),
        None => image.id.clone(),
    }
}

/// Whether the sandbox image has an allow verdict.
#[allow(clippy::too_many_arguments)] // one call site; each is a different input
fn sandbox_check(
    gate: &Gate,
    config: &Config,
    images: &[NodeImage],
    sandbox: Option<String>,
    seen: &Seen,
    offline: bool,
    rt: &tokio::runtime::Runtime,
) -> Check {
    let Some(name) = sandbox else {
        return Check::warn(
            SANDBOX,
            "containerd's CRI configuration names no sandbox image pullgate can read: every RunPodSandbox is refused",
            "set [server] sandbox_image to the pause image containerd runs",
        );
    };
    let Ok(wanted) = name.parse::<ImageRef>() else {
        return Check::fail(
            SANDBOX,
            format!("the sandbox image {name:?} is not an image reference"),
            "set [server] sandbox_image (or containerd's sandbox_image) to a valid reference",
        );
    };
    let held = images.iter().find(|i| {
        i.names
            .iter()
            .any(|n| n.parse::<ImageRef>().is_ok_and(|r| r == wanted))
    });
    if let Some(image) = held {
        if gate.may_show(&image.records) {
            return Check::ok(
                SANDBOX,
                format!(
                    "the sandbox image {wanted} has an allow verdict ({})",
                    seen.0
                ),
            );
        }
    }
    let fix = format!(
        "`pullgate verify {wanted}` explains the verdict; sign the sandbox image, or give its repository a statement that allows it: every pod start on this node runs it"
    );
    if offline {
        return Check::warn(
            SANDBOX,
            format!(
                "no saved verdict allows the sandbox image {wanted} ({}); --offline: not decided now",
                seen.0
            ),
            fix,
        );
    }
    // Decided now: its records when containerd holds it, else the reference.
    let asked: Vec<ImageRef> = match held {
        Some(image) => image
            .records
            .iter()
            .filter_map(|p| p.to_string().parse().ok())
            .collect(),
        None => vec![wanted.clone()],
    };
    let budget = config.server.decision_budget();
    let mut first = None;
    for image in asked {
        let record = rt.block_on(gate.decide_for_namespace(&image, None, budget));
        if record.verdict.allows() {
            return Check::ok(
                SANDBOX,
                format!(
                    "the sandbox image {wanted} is allowed (decided now: {})",
                    record.image
                ),
            );
        }
        first.get_or_insert(record);
    }
    let why = first
        .and_then(|r| r.reason)
        .unwrap_or_else(|| "containerd holds it under no name pullgate can verify".to_owned());
    Check::fail(
        SANDBOX,
        format!("the sandbox image {wanted} would be refused: {why}"),
        fix,
    )
}
