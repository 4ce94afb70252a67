//! `pullgate-bench chaos`: pulls of signed, unsigned and revoked images from
//! many clients while everything around pullgate fails — does an unverified
//! image ever reach containerd?
//!
//! For `--minutes` (default 10), `--clients` (default 32) clients, each on
//! its own connection, pull by tag at random among `--images` (default 6)
//! images of each kind: signed by the trusted signer; unsigned; revoked
//! (signed by a signer the trust store and policy trust, whose leaf a CRL
//! in `[revocation] crl_dir` lists, revocation `offline`). Verdicts live
//! 60 s (allow) and 2 s (deny) and are persisted in `[cache] state_dir`.
//! Meanwhile a controller, every 2–6 s (seeded, `--seed`):
//! - injects a registry fault of the fault matrix's kinds for 0.5–4 s:
//!   `fail_next` (5xx, 429, 404), `set_down`, `set_hang`, `set_latency`,
//!   and `set_fault` (status with `Retry-After`, delayed headers, reset
//!   mid-body, truncated body); or sends pullgate `SIGHUP`;
//! - restarts containerd (kill, start on the same root) 3 times;
//! - kills pullgate with `SIGKILL` 4 times and starts it again with the same
//!   config and state dir. Before each restart the verdict file is read (two
//!   lines: a JSON body and a 64-hex MAC; a left-over `.tmp`); before the
//!   third restart the file is truncated to half, as a torn write would
//!   leave it (the real write goes through a temp file and a rename, so a
//!   kill landing inside one is rare). After each restart, what pullgate
//!   logged about the file: restored, or ignored with a reason; and whether
//!   it is still running.
//!
//! At the end, with every fault cleared, the ground truth: containerd's
//! images, listed through its own socket (CRI `ListImages` and the native
//! images API's records in `k8s.io`), each matched by manifest digest to
//! what the run pushed. An unsigned or revoked digest there is an image
//! pullgate let through: "unverified images in containerd". Also reported:
//! pulls answered, outcomes by kind, errors by gRPC code, pullgate's peak
//! memory (sampled `VmRSS` across all its lives, and `VmHWM` of each), and
//! panics in its log. Everything is bounded: the run's time, each pull
//! (`PULL_TIMEOUT`), pulls per client, each fault's duration; loopback only.
//! Measures and never asserts.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use pullgate_tests::cri;
use pullgate_tests::oci_registry::{Fault, FaultTarget, RequestKind};
use pullgate_tests::pullgate::Pullgate;
use tokio::task::JoinSet;

use crate::bed::{Bed, ImageSpec, Signing};
use crate::machine::Machine;
use crate::proc::{peak_rss_kib, rss_kib};
use crate::progress;

/// What to run.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) minutes: f64,
    pub(crate) clients: usize,
    pub(crate) images: usize,
    pub(crate) seed: Option<u64>,
    /// Self-check of the ground truth: before it is taken, one unsigned
    /// image is pulled straight through containerd (bypassing pullgate),
    /// so the count must be at least 1.
    pub(crate) plant_unverified: bool,
    /// `[server] frame_relay` in pullgate's config.
    pub(crate) frame_relay: bool,
    pub(crate) pullgate_bin: PathBuf,
}

/// Longest a single pull may take before the client gives up on it.
const PULL_TIMEOUT: Duration = Duration::from_secs(120);
/// Most pulls one client makes, whatever the duration.
const MAX_PULLS_PER_CLIENT: usize = 100_000;
/// Pause of a client whose connection failed before it tries again.
const RECONNECT_PAUSE: Duration = Duration::from_millis(200);
/// Where in the run (fraction of the duration) containerd is restarted.
const CONTAINERD_RESTARTS: [f64; 3] = [0.3, 0.6, 0.8];
/// Where in the run pullgate is killed and restarted.
const PULLGATE_KILLS: [f64; 4] = [0.2, 0.45, 0.7, 0.9];
/// Which of those kills truncates the verdict file before the restart.
const TORN_KILL: usize = 2;
/// How long after a restart pullgate must still run to count as up.
const SETTLE: Duration = Duration::from_secs(2);
/// Characters kept of an error message sample.
const SAMPLE_CHARS: usize = 400;
/// Attempts to start pullgate again after a kill.
const RESTART_ATTEMPTS: usize = 3;

/// The `[cache]` and `[revocation]` tables of the run.
fn extra_config(state: &Path, crl_dir: &Path) -> String {
    format!(
        "[cache]\nallow_ttl_secs = 60\ndeny_ttl_secs = 2\nmax_entries = 10000\nstate_dir = {:?}\n\
         [revocation]\nmode = \"offline\"\ncrl_dir = {:?}\n",
        state.display().to_string(),
        crl_dir.display().to_string()
    )
}

/// A small xorshift generator: the run is reproducible from its seed.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    /// Uniform in `0..n` (`n` > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    /// Uniform in `lo..hi` milliseconds.
    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi.saturating_sub(lo).max(1)))
    }
}

/// What an image is, for the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Signed,
    Unsigned,
    Revoked,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::Signed => "signed",
            Self::Unsigned => "unsigned",
            Self::Revoked => "revoked",
        }
    }
}

/// A pushed image.
#[derive(Debug, Clone)]
struct Target {
    kind: Kind,
    by_tag: String,
    by_digest: String,
    digest: String,
}

/// How one pull ended.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Pulled,
    Status(String),
    TimedOut,
}

/// What the clients did.
#[derive(Debug, Default)]
struct Tally {
    /// (image kind, outcome) → pulls.
    outcomes: BTreeMap<(Kind, Outcome), u64>,
    /// (image kind, gRPC code) → the first message seen, shortened.
    samples: BTreeMap<(Kind, String), String>,
    connect_failures: u64,
}

async fn client(socket: PathBuf, targets: Arc<Vec<Target>>, end: Instant, mut rng: Rng) -> Tally {
    let mut tally = Tally::default();
    let mut ch = None;
    let mut pulls = 0;
    while Instant::now() < end && pulls < MAX_PULLS_PER_CLIENT {
        let channel = match ch.take() {
            Some(c) => c,
            None => match cri::connect(&socket).await {
                Ok(c) => c,
                Err(_) => {
                    tally.connect_failures += 1;
                    tokio::time::sleep(RECONNECT_PAUSE).await;
                    continue;
                }
            },
        };
        let t = &targets[rng.below(targets.len() as u64) as usize];
        pulls += 1;
        let outcome = match tokio::time::timeout(PULL_TIMEOUT, cri::pull(&channel, &t.by_tag)).await
        {
            Ok(Ok(_)) => Outcome::Pulled,
            Ok(Err(s)) => {
                let code = format!("{:?}", s.code());
                tally
                    .samples
                    .entry((t.kind, code.clone()))
                    .or_insert_with(|| s.message().chars().take(SAMPLE_CHARS).collect());
                Outcome::Status(code)
            }
            Err(_) => Outcome::TimedOut,
        };
        let keep = !matches!(&outcome, Outcome::Status(c) if c == "Unavailable");
        *tally.outcomes.entry((t.kind, outcome)).or_default() += 1;
        if keep {
            ch = Some(channel);
        } else {
            // pullgate may have been killed: a new connection next time.
            tokio::time::sleep(RECONNECT_PAUSE).await;
        }
    }
    tally
}

/// The verdict file as a kill left it.
fn inspect_state(state: &Path) -> String {
    let path = state.join("verdicts.json");
    let tmp = if state.join("verdicts.json.tmp").exists() {
        "; a verdicts.json.tmp left over"
    } else {
        ""
    };
    let Ok(text) = std::fs::read_to_string(&path) else {
        return format!("no verdict file yet{tmp}");
    };
    let lines: Vec<&str> = text.lines().collect();
    let well_formed = lines.len() == 2
        && serde_json::from_str::<serde_json::Value>(lines[0]).is_ok()
        && lines[1].len() == 64
        && lines[1].bytes().all(|b| b.is_ascii_hexdigit());
    let verdicts = lines
        .first()
        .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .and_then(|v| v.get("verdicts").and_then(|a| a.as_array().map(Vec::len)));
    match (well_formed, verdicts) {
        (true, Some(n)) => format!("well-formed ({} bytes, {n} verdicts){tmp}", text.len()),
        (true, None) => format!("well-formed ({} bytes){tmp}", text.len()),
        (false, _) => format!("MALFORMED ({} bytes){tmp}", text.len()),
    }
}

/// What pullgate logged about its verdict file since `offset`.
fn restore_line(log: &Path, offset: u64) -> String {
    let text = std::fs::read(log).unwrap_or_default();
    let start = usize::try_from(offset).unwrap_or(0).min(text.len());
    let text = String::from_utf8_lossy(&text[start..]);
    for needle in [
        "persisted allow verdicts restored",
        "persisted verdicts ignored",
        "verdicts will not be persisted",
    ] {
        if let Some(line) = text.lines().find(|l| l.contains(needle)) {
            // The log line (message and fields) without its timestamp and level.
            let from = line.find(needle).unwrap_or(0);
            return line[from..].chars().take(SAMPLE_CHARS).collect();
        }
    }
    "nothing logged about the verdict file (no file to restore)".to_owned()
}

fn send_signal(pid: u32, signal: &str) -> bool {
    std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .is_ok_and(|s| s.success())
}

/// One registry fault, applied now and cleared after `hold`.
fn inject_fault(bed: &Bed, rng: &mut Rng) -> (String, Duration) {
    const KINDS: [RequestKind; 5] = [
        RequestKind::ResolveHead,
        RequestKind::ManifestGet,
        RequestKind::Referrers,
        RequestKind::BlobGet,
        RequestKind::Ping,
    ];
    let kind = KINDS[rng.below(KINDS.len() as u64) as usize];
    let hold = rng.millis(500, 4000);
    let r = &bed.testbed.registry;
    let name = match rng.below(8) {
        0 | 1 => {
            let statuses = [500, 502, 503, 429, 404];
            let status = statuses[rng.below(statuses.len() as u64) as usize];
            let n = 1 + rng.below(20) as u32;
            r.fail_next(kind, n, status);
            format!("fail_next {status}")
        }
        2 => {
            r.set_down(true);
            "set_down".to_owned()
        }
        3 => {
            r.set_hang(kind, true);
            "set_hang".to_owned()
        }
        4 => {
            r.set_latency(rng.millis(50, 500));
            "set_latency".to_owned()
        }
        5 => {
            r.set_fault(
                FaultTarget::Kind(kind),
                Fault::Status {
                    status: 503,
                    headers: vec![("Retry-After", "1".to_owned())],
                },
            );
            "set_fault 503 Retry-After".to_owned()
        }
        6 => {
            r.set_fault(
                FaultTarget::Kind(kind),
                Fault::DelayHeaders(rng.millis(500, 3000)),
            );
            "set_fault delayed headers".to_owned()
        }
        _ => {
            let fault = if rng.below(2) == 0 {
                Fault::ResetMidBody { after: 16 }
            } else {
                Fault::Truncate
            };
            let name = if matches!(fault, Fault::Truncate) {
                "set_fault truncated body"
            } else {
                "set_fault reset mid-body"
            };
            r.set_fault(FaultTarget::Kind(kind), fault);
            name.to_owned()
        }
    };
    (name, hold)
}

fn clear_faults(bed: &Bed) {
    let r = &bed.testbed.registry;
    r.set_down(false);
    r.set_latency(Duration::ZERO);
    r.clear_faults();
    for k in [
        RequestKind::Ping,
        RequestKind::ResolveHead,
        RequestKind::ManifestGet,
        RequestKind::BlobHead,
        RequestKind::BlobGet,
        RequestKind::Referrers,
        RequestKind::Token,
        RequestKind::Other,
    ] {
        r.set_hang(k, false);
        r.fail_next(k, 0, 500);
    }
}

/// pullgate across its lives.
struct Gatekeeper {
    bin: PathBuf,
    toml: String,
    dir: PathBuf,
    state: PathBuf,
    proxy: Option<Pullgate>,
    /// The running pullgate's pid, for the memory sampler.
    pid: Arc<AtomicU32>,
    hwm_kib: Vec<u64>,
    kills: Vec<String>,
}

impl Gatekeeper {
    /// SIGKILL, look at the state dir, (`torn`: truncate the verdict file),
    /// start again, and say what happened.
    async fn kill_and_restart(&mut self, torn: bool) -> Result<()> {
        let mut note = String::new();
        let mut offset = 0;
        if let Some(p) = self.proxy.take() {
            self.hwm_kib.push(peak_rss_kib(p.pid()).unwrap_or(0));
            offset = p.log_bytes().unwrap_or(0);
            self.pid.store(0, Ordering::Relaxed);
            // Drop sends SIGKILL and reaps.
            drop(p);
        }
        let _ = write!(
            note,
            "verdict file after the kill: {}",
            inspect_state(&self.state)
        );
        if torn {
            let path = self.state.join("verdicts.json");
            match std::fs::read(&path) {
                Ok(bytes) => {
                    std::fs::write(&path, &bytes[..bytes.len() / 2])?;
                    let _ = write!(
                        note,
                        "; truncated to {} of {} bytes (a torn write)",
                        bytes.len() / 2,
                        bytes.len()
                    );
                }
                Err(_) => note.push_str("; nothing to truncate"),
            }
        }
        let mut last_error = None;
        for _ in 0..RESTART_ATTEMPTS {
            match Pullgate::start_binary(&self.bin, &self.toml, &self.dir).await {
                Ok(p) => {
                    self.pid.store(p.pid(), Ordering::Relaxed);
                    self.proxy = Some(p);
                    break;
                }
                Err(e) => {
                    last_error = Some(format!("{e:#}"));
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        let log = self.dir.join("pullgate.log");
        match self.proxy.as_mut() {
            Some(p) => {
                tokio::time::sleep(SETTLE).await;
                let running = if p.is_running() { "running" } else { "EXITED" };
                let _ = write!(
                    note,
                    "; restarted: {}; {running} {} s later",
                    restore_line(&log, offset),
                    SETTLE.as_secs()
                );
            }
            None => {
                let _ = write!(
                    note,
                    "; DID NOT RESTART: {}",
                    last_error.unwrap_or_default().lines().next().unwrap_or("")
                );
            }
        }
        self.kills.push(note);
        Ok(())
    }
}

/// containerd's images, checked against what was pushed.
#[derive(Debug, Default)]
struct Truth {
    cri_images: usize,
    records: usize,
    /// Kind → distinct digests present (either view).
    present: BTreeMap<Kind, usize>,
    /// Unsigned or revoked digests present, with where they were seen.
    unverified: Vec<String>,
    /// Images no pushed digest accounts for.
    unknown: Vec<String>,
}

async fn ground_truth(bed: &Bed, targets: &[Target]) -> Result<Truth> {
    let by_digest: HashMap<&str, &Target> =
        targets.iter().map(|t| (t.digest.as_str(), t)).collect();
    let ch = cri::connect(bed.testbed.containerd.socket()).await?;
    let images = cri::list_images(&ch).await.context("CRI ListImages")?;
    let records = cri::containerd_images(&ch)
        .await
        .context("containerd Images.List")?;
    let mut truth = Truth {
        cri_images: images.len(),
        records: records.len(),
        ..Truth::default()
    };
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for image in &images {
        let digests: Vec<&str> = image
            .repo_digests
            .iter()
            .filter_map(|d| d.split_once('@').map(|(_, d)| d))
            .collect();
        if digests.is_empty() {
            truth
                .unknown
                .push(format!("CRI image {} (no repo digest)", image.id));
        }
        for d in digests {
            seen.entry(d.to_owned())
                .or_default()
                .push(format!("CRI {}", image.repo_tags.join(",")));
        }
    }
    for r in &records {
        if let Some(t) = &r.target {
            seen.entry(t.digest.clone())
                .or_default()
                .push(format!("record {}", r.name));
        }
    }
    // Each pushed unsigned or revoked image asked for by digest too.
    for t in targets.iter().filter(|t| t.kind != Kind::Signed) {
        if cri::image_status(&ch, &t.by_digest).await?.is_some() {
            seen.entry(t.digest.clone())
                .or_default()
                .push("CRI ImageStatus".to_owned());
        }
    }
    for (digest, wheres) in &seen {
        match by_digest.get(digest.as_str()) {
            Some(t) => {
                *truth.present.entry(t.kind).or_default() += 1;
                if t.kind != Kind::Signed {
                    truth.unverified.push(format!(
                        "{} {} ({})",
                        t.kind.name(),
                        t.by_digest,
                        wheres.join("; ")
                    ));
                }
            }
            None => truth
                .unknown
                .push(format!("{digest} ({})", wheres.join("; "))),
        }
    }
    Ok(truth)
}

/// Runs the chaos soak; returns the report text.
///
/// # Errors
/// The world does not start, a push fails, or containerd cannot be listed at the end.
#[allow(clippy::too_many_lines)] // one run, read top to bottom
pub(crate) async fn run(opts: &Options, machine: &Machine) -> Result<String> {
    // Without --seed, one from the std hasher's random keys (the bench reads no clock).
    let seed = opts.seed.unwrap_or_else(|| {
        use std::hash::{BuildHasher as _, Hasher as _};
        std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish()
    });
    let mut rng = Rng::new(seed);
    let mut bed = Bed::start_with_revoked().await?;
    let mut specs = Vec::new();
    for (kind, repo) in [
        (Kind::Signed, "chaos/signed"),
        (Kind::Unsigned, "chaos/unsigned"),
        (Kind::Revoked, "chaos/revoked"),
    ] {
        for i in 0..opts.images {
            specs.push((
                kind,
                ImageSpec {
                    repo: format!("{repo}{i}"),
                    tag: "v1".to_owned(),
                    sigs: u32::from(kind != Kind::Unsigned),
                    signing: if kind == Kind::Revoked {
                        Signing::Revoked
                    } else {
                        Signing::Notary
                    },
                    layers: Vec::new(),
                },
            ));
        }
    }
    progress(&format!("chaos: pushing {} images", specs.len()));
    let just_specs: Vec<ImageSpec> = specs.iter().map(|(_, s)| s.clone()).collect();
    let pushed = bed.push_all(&just_specs).await?;
    let targets: Vec<Target> = specs
        .iter()
        .zip(pushed)
        .map(|((kind, _), p)| Target {
            kind: *kind,
            digest: p
                .by_digest
                .split_once('@')
                .map(|(_, d)| d.to_owned())
                .unwrap_or_default(),
            by_tag: p.by_tag,
            by_digest: p.by_digest,
        })
        .collect();
    let targets = Arc::new(targets);

    let dir = bed.dir().join("chaos");
    let state = bed.dir().join("state");
    std::fs::create_dir_all(&dir)?;
    let toml = bed.config_toml(
        &dir,
        &extra_config(&state, &bed.crl_dir()),
        opts.frame_relay,
    );
    let first = Pullgate::start_binary(&opts.pullgate_bin, &toml, &dir).await?;
    let socket = first.socket().to_owned();
    let pid = Arc::new(AtomicU32::new(first.pid()));
    let mut gate = Gatekeeper {
        bin: opts.pullgate_bin.clone(),
        toml,
        dir: dir.clone(),
        state: state.clone(),
        proxy: Some(first),
        pid: Arc::clone(&pid),
        hwm_kib: Vec::new(),
        kills: Vec::new(),
    };

    // Memory, across pullgate's lives.
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (stop, pid) = (Arc::clone(&stop), Arc::clone(&pid));
        tokio::spawn(async move {
            let mut max = 0;
            while !stop.load(Ordering::Relaxed) {
                let p = pid.load(Ordering::Relaxed);
                if p != 0 {
                    max = max.max(rss_kib(p).unwrap_or(0));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            max
        })
    };

    let duration = Duration::from_secs_f64((opts.minutes * 60.0).max(1.0));
    progress(&format!(
        "chaos: {:.1} min, {} clients, {} images of each kind, seed {seed}",
        opts.minutes, opts.clients, opts.images
    ));
    let started = Instant::now();
    let end = started + duration;
    let mut clients = JoinSet::new();
    for i in 0..opts.clients {
        clients.spawn(client(
            socket.clone(),
            Arc::clone(&targets),
            end,
            Rng::new(seed ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
        ));
    }

    // The controller.
    let mut faults: BTreeMap<String, u64> = BTreeMap::new();
    let mut hups = (0u64, 0u64);
    let mut containerd_restarts = Vec::new();
    let (mut next_restart, mut next_kill) = (0, 0);
    while Instant::now() < end {
        let at = started.elapsed().as_secs_f64() / duration.as_secs_f64();
        if next_kill < PULLGATE_KILLS.len() && at >= PULLGATE_KILLS[next_kill] {
            progress(&format!("chaos: SIGKILL pullgate ({})", next_kill + 1));
            gate.kill_and_restart(next_kill == TORN_KILL).await?;
            next_kill += 1;
            continue;
        }
        if next_restart < CONTAINERD_RESTARTS.len() && at >= CONTAINERD_RESTARTS[next_restart] {
            progress(&format!(
                "chaos: restarting containerd ({})",
                next_restart + 1
            ));
            let t = Instant::now();
            let r = bed.testbed.containerd.restart().await;
            containerd_restarts.push(match r {
                Ok(()) => format!("up again in {:.1} s", t.elapsed().as_secs_f64()),
                Err(e) => format!("FAILED: {e:#}"),
            });
            next_restart += 1;
            continue;
        }
        if rng.below(4) == 0 {
            hups.0 += 1;
            let p = pid.load(Ordering::Relaxed);
            if p == 0 || !send_signal(p, "HUP") {
                hups.1 += 1;
            }
            tokio::time::sleep(
                rng.millis(2000, 6000)
                    .min(end.saturating_duration_since(Instant::now())),
            )
            .await;
        } else {
            let (name, hold) = inject_fault(&bed, &mut rng);
            *faults.entry(name).or_default() += 1;
            tokio::time::sleep(hold.min(end.saturating_duration_since(Instant::now()))).await;
            clear_faults(&bed);
            tokio::time::sleep(
                rng.millis(500, 3000)
                    .min(end.saturating_duration_since(Instant::now())),
            )
            .await;
        }
    }
    clear_faults(&bed);
    progress("chaos: time is up; waiting for the clients' last pulls");
    let mut tally = Tally::default();
    while let Some(t) = clients.join_next().await {
        let t = t.context("client task")?;
        for (k, v) in t.outcomes {
            *tally.outcomes.entry(k).or_default() += v;
        }
        tally.connect_failures += t.connect_failures;
        for (k, v) in t.samples {
            tally.samples.entry(k).or_insert(v);
        }
    }
    let wall = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let sampled_peak = sampler.await.unwrap_or(0);
    let mut final_state = String::new();
    let mut panics = 0;
    if let Some(p) = gate.proxy.as_mut() {
        gate.hwm_kib.push(peak_rss_kib(p.pid()).unwrap_or(0));
        final_state = if p.is_running() {
            "running".to_owned()
        } else {
            "EXITED".to_owned()
        };
        let log = std::fs::read_to_string(p.log_path()).unwrap_or_default();
        panics = log.matches("panicked").count();
    }
    let mut planted = String::new();
    if opts.plant_unverified {
        if let Some(t) = targets.iter().find(|t| t.kind == Kind::Unsigned) {
            let ch = cri::connect(bed.testbed.containerd.socket()).await?;
            cri::pull(&ch, &t.by_tag)
                .await
                .context("planting an unsigned image straight through containerd")?;
            planted = format!(
                "self-check (--plant-unverified): {} pulled straight through containerd, bypassing pullgate\n",
                t.by_tag
            );
        }
    }
    progress("chaos: checking containerd's images against the registry's ground truth");
    let truth = ground_truth(&bed, &targets).await?;

    // The report.
    let mut out = String::new();
    let _ = writeln!(out, "{}", machine.header("chaos"));
    let _ = writeln!(
        out,
        "{:.1} min (wall {:.0} s), {} clients, {} images of each kind (signed by the trusted signer; unsigned; revoked: signed by a trusted-identity leaf that the CRL in [revocation] crl_dir lists, mode offline), seed {seed}\n\
         [cache] allow_ttl_secs = 60, deny_ttl_secs = 2, state_dir set; pulls by tag, each bounded at {} s\n",
        opts.minutes,
        wall.as_secs_f64(),
        opts.clients,
        opts.images,
        PULL_TIMEOUT.as_secs(),
    );
    let unverified = truth.unverified.len();
    out.push_str(&planted);
    let _ = writeln!(out, "=====================================================");
    let _ = writeln!(out, "  unverified images in containerd: {unverified}");
    let _ = writeln!(out, "=====================================================");
    let _ = writeln!(
        out,
        "containerd at the end: {} CRI images, {} image records (k8s.io); distinct pushed digests present: {}; not from this run: {}",
        truth.cri_images,
        truth.records,
        truth
            .present
            .iter()
            .map(|(k, n)| format!("{} {n}", k.name()))
            .collect::<Vec<_>>()
            .join(", "),
        truth.unknown.len()
    );
    for u in &truth.unverified {
        let _ = writeln!(out, "  UNVERIFIED: {u}");
    }
    for u in &truth.unknown {
        let _ = writeln!(out, "  not from this run: {u}");
    }
    let total: u64 = tally.outcomes.values().sum();
    let timed_out: u64 = tally
        .outcomes
        .iter()
        .filter(|((_, o), _)| *o == Outcome::TimedOut)
        .map(|(_, n)| n)
        .sum();
    let _ = writeln!(
        out,
        "\npulls: {total}; ended with an image or a gRPC status {} ({:.1}/s; Unavailable includes pullgate being down), timed out {timed_out}; connection attempts refused (pullgate down): {}",
        total - timed_out,
        (total - timed_out) as f64 / wall.as_secs_f64(),
        tally.connect_failures
    );
    let _ = writeln!(out, "outcomes by image kind (gRPC code):");
    for ((kind, outcome), n) in &tally.outcomes {
        let o = match outcome {
            Outcome::Pulled => "pulled (OK)".to_owned(),
            Outcome::Status(c) => c.clone(),
            Outcome::TimedOut => "timed out".to_owned(),
        };
        let mark = match (kind, outcome) {
            (Kind::Unsigned | Kind::Revoked, Outcome::Pulled) => "   <-- UNVERIFIED ALLOWED",
            _ => "",
        };
        let _ = writeln!(out, "  {:9} {o:24} {n:7}{mark}", kind.name());
    }
    let mut by_code: BTreeMap<String, u64> = BTreeMap::new();
    for ((kind, outcome), n) in &tally.outcomes {
        let expected = matches!((kind, outcome), (Kind::Signed, Outcome::Pulled))
            || matches!((kind, outcome), (Kind::Unsigned | Kind::Revoked, Outcome::Status(c)) if c == "PermissionDenied");
        if !expected {
            let o = match outcome {
                Outcome::Pulled => "OK (unverified allowed)".to_owned(),
                Outcome::Status(c) => c.clone(),
                Outcome::TimedOut => "timed out".to_owned(),
            };
            *by_code.entry(o).or_default() += n;
        }
    }
    let _ = writeln!(
        out,
        "errors by kind (anything but a signed image pulled or an unsigned/revoked one denied): {}",
        by_code
            .iter()
            .map(|(c, n)| format!("{c} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(out, "a message of each (kind, code) other than OK:");
    for ((kind, code), m) in &tally.samples {
        let _ = writeln!(out, "  {:9} {code}: {m}", kind.name());
    }
    let _ = writeln!(
        out,
        "\nregistry faults injected ({} in all, each cleared after 0.5–4 s): {}",
        faults.values().sum::<u64>(),
        faults
            .iter()
            .map(|(f, n)| format!("{f} ×{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        out,
        "SIGHUP reloads: {} sent ({} could not be sent: pullgate down)",
        hups.0, hups.1
    );
    let _ = writeln!(out, "containerd restarts: {}", containerd_restarts.len());
    for (i, r) in containerd_restarts.iter().enumerate() {
        let _ = writeln!(out, "  {}: {r}", i + 1);
    }
    let _ = writeln!(
        out,
        "pullgate SIGKILL + restart (same config, same state_dir): {}",
        gate.kills.len()
    );
    for (i, k) in gate.kills.iter().enumerate() {
        let _ = writeln!(out, "  {}: {k}", i + 1);
    }
    let _ = writeln!(
        out,
        "at the end: pullgate {final_state}; verdict file {}; \"panicked\" in its log: {panics}",
        inspect_state(&state)
    );
    let hwm = gate.hwm_kib.iter().copied().max().unwrap_or(0);
    let _ = writeln!(
        out,
        "\npullgate memory: peak sampled VmRSS {sampled_peak} KiB across its {} lives; VmHWM per life {:?} KiB (max {:.0} MiB)",
        gate.hwm_kib.len(),
        gate.hwm_kib,
        hwm as f64 / 1024.0
    );
    drop(gate);
    Ok(out)
}
