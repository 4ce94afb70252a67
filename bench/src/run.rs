//! The measurement itself: every mode, side by side, in one run.
//!
//! Within one added round-trip time, one *round* pulls once in every mode,
//! starting from a different mode each round, so background load on a
//! shared machine falls on all modes alike. The first round at each RTT
//! warms connections and is not recorded. Everything that is not the pull
//! itself (pushing images, `RemoveImage`, scraping metrics, reading request
//! counts) happens outside the timed region.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use pullgate_tests::cri;
use pullgate_tests::oci_registry::sha256_digest;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tonic::transport::Channel;
use tonic::Code;

use crate::bed::{
    Bed, ImageSpec, PerPull, Proxy, ProxySettings, Pushed, Requests, Signing, COSIGN_BUNDLE_REPO,
    COSIGN_KEY_REPO, LARGE_LAYERS,
};
use crate::metrics::{self, PhaseTotals};
use crate::progress;
use crate::relay::{Kind, RelayChild};
use crate::stats::{self, Summary};

/// What to run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Options {
    pub(crate) profile: &'static str,
    /// Recorded rounds at the first RTT.
    pub(crate) iterations: usize,
    /// Recorded rounds at every other RTT.
    pub(crate) rtt_iterations: usize,
    pub(crate) rtts_ms: Vec<u64>,
    pub(crate) sigs: Vec<u32>,
    pub(crate) herd: Vec<usize>,
    pub(crate) herd_rounds: usize,
    pub(crate) herd_rtt_ms: u64,
    /// Cached verdicts to populate before reading RSS.
    pub(crate) verdicts: usize,
    /// Runs of `pullgate verify` per signature count.
    pub(crate) verify_iterations: usize,
    pub(crate) pullgate_bin: PathBuf,
    /// Whether the cosign cold modes run (a binary without cosign refuses
    /// the requirements file their scopes are in).
    pub(crate) cosign: bool,
    /// Only these pull modes (by name); `None` = all.
    pub(crate) modes: Option<Vec<String>>,
    /// Parts not run: `rss`, `pulls`, `herd`, `verify`.
    pub(crate) skip: Vec<String>,
    /// `[prefetch] enabled` in the main pullgate's config.
    pub(crate) prefetch: bool,
    /// `[server] frame_relay` in the main pullgate's config.
    pub(crate) frame_relay: bool,
}

impl Options {
    fn runs(&self, part: &str) -> bool {
        !self.skip.iter().any(|s| s == part)
    }
}

/// How a pull ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Pulled,
    Denied,
    Error,
}

#[derive(Debug)]
struct PullResult {
    ms: f64,
    outcome: Outcome,
    image_id: Option<String>,
    error: Option<String>,
}

async fn pull(ch: &Channel, image: &str) -> PullResult {
    let start = Instant::now();
    let r = cri::pull(ch, image).await;
    let ms = start.elapsed().as_secs_f64() * 1e3;
    match r {
        Ok(id) => PullResult {
            ms,
            outcome: Outcome::Pulled,
            image_id: Some(id),
            error: None,
        },
        Err(s) if s.code() == Code::PermissionDenied => PullResult {
            ms,
            outcome: Outcome::Denied,
            image_id: None,
            error: None,
        },
        Err(s) => PullResult {
            ms,
            outcome: Outcome::Error,
            image_id: None,
            error: Some(format!("{:?}: {}", s.code(), s.message())),
        },
    }
}

/// A sandbox id containerd does not know: `CreateContainer` in it answers
/// `NotFound` once the image is admitted, so only the call's path is timed.
const NO_SANDBOX: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One timed CRI `CreateContainer` of image `id` in [`NO_SANDBOX`]: containerd's
/// `NotFound` is the expected answer (counted as pulled), a denial as denied.
async fn create(ch: &Channel, id: &str) -> PullResult {
    let start = Instant::now();
    let r = cri::create_container(ch, NO_SANDBOX, id, &[], "default").await;
    let ms = start.elapsed().as_secs_f64() * 1e3;
    let (outcome, error) = match r {
        Err(s) if s.code() == Code::NotFound => (Outcome::Pulled, None),
        Err(s) if s.code() == Code::PermissionDenied => (Outcome::Denied, None),
        Err(s) => (
            Outcome::Error,
            Some(format!("{:?}: {}", s.code(), s.message())),
        ),
        Ok(_) => (
            Outcome::Error,
            Some("CreateContainer in a sandbox that does not exist succeeded".to_owned()),
        ),
    };
    PullResult {
        ms,
        outcome,
        image_id: None,
        error,
    }
}

/// Removes what a pull left in containerd, straight through containerd's
/// CRI (not timed): the image id, then any of `names` still known.
async fn remove(ctrd: &Channel, id: Option<&str>, names: &[&str]) {
    if let Some(id) = id {
        let _ = cri::remove_image(ctrd, id).await;
    }
    for n in names {
        if let Ok(Some(img)) = cri::image_status(ctrd, n).await {
            let _ = cri::remove_image(ctrd, &img.id).await;
        }
    }
}

/// Samples and counters of one mode at one RTT.
#[derive(Debug, Default)]
struct Acc {
    samples: Vec<f64>,
    pulled: usize,
    denied: usize,
    errors: usize,
    first_error: Option<String>,
    requests: Requests,
    phases: Option<PhaseTotals>,
}

impl Acc {
    fn record(&mut self, r: &PullResult, req: &Requests, phases: Option<PhaseTotals>) {
        self.samples.push(r.ms);
        match r.outcome {
            Outcome::Pulled => self.pulled += 1,
            Outcome::Denied => self.denied += 1,
            Outcome::Error => {
                self.errors += 1;
                if self.first_error.is_none() {
                    self.first_error.clone_from(&r.error);
                }
            }
        }
        self.requests.add(req);
        if let Some(p) = phases {
            metrics::accumulate(self.phases.get_or_insert_with(PhaseTotals::new), &p);
        }
    }
}

/// The pause before every timed pull, after the metrics scrape (if any).
const SETTLE: Duration = Duration::from_millis(5);

/// One result row.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Row {
    pub(crate) group: &'static str,
    pub(crate) mode: String,
    pub(crate) reference: &'static str,
    pub(crate) rtt_ms: u64,
    pub(crate) sigs: Option<u32>,
    pub(crate) herd_n: Option<usize>,
    pub(crate) summary: Summary,
    pub(crate) pulled: usize,
    pub(crate) denied: usize,
    pub(crate) errors: usize,
    pub(crate) first_error: Option<String>,
    pub(crate) baseline: Option<String>,
    /// p50 of this row over p50 of its baseline, same RTT (and same herd size).
    pub(crate) ratio_p50: Option<f64>,
    pub(crate) ratio_p99: Option<f64>,
    /// Median over rounds of (this pull − the baseline's pull in the same
    /// round), ms: less sensitive to load drifting during the run.
    pub(crate) paired_diff_p50_ms: Option<f64>,
    /// Registry requests per pull (per herd, for herd rows).
    pub(crate) requests: PerPull,
    /// Mean milliseconds per phase from pullgate's metrics; `None` = n/a.
    pub(crate) phases_ms: Option<BTreeMap<String, f64>>,
    pub(crate) samples_ms: Vec<f64>,
}

/// What a timed call does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// CRI `PullImage`.
    Pull,
    /// CRI `CreateContainer` (the runtime door).
    Create,
}

/// The modes of a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// CRI straight to containerd; same image each time, removed between pulls.
    Direct,
    /// CRI straight to containerd; the image stays present.
    DirectPresent,
    /// CRI straight to containerd; a new image every pull.
    DirectFresh,
    /// Through pullgate, verdict cached, by tag; image removed between pulls.
    HotTag,
    /// As [`Mode::HotTag`], by digest.
    HotDigest,
    /// CRI straight to containerd, by digest; the image stays present.
    DirectPresentDigest,
    /// As [`Mode::DirectPresentDigest`], through the bare HTTP/2 relay
    /// (`relay/h2.rs`): what a hop that decodes frames costs without pullgate.
    HopPresentDigest,
    /// As [`Mode::DirectPresent`], through the byte relay (`relay/bytes.rs`):
    /// the floor, a process hop with nothing decoded.
    RelayPresent,
    /// As [`Mode::DirectPresentDigest`], through the byte relay.
    RelayPresentDigest,
    /// Through pullgate, verdict cached, by tag; the image stays present.
    HotTagPresent,
    /// Through pullgate, verdict cached, by digest; the image stays present.
    HotDigestPresent,
    /// Through pullgate, cached denial of an unsigned image, by tag.
    HotDeny,
    /// Through pullgate, a new image (new digest, no verdict) with this many signatures.
    Cold(u32),
    /// As [`Mode::Cold`], but the image was pulled straight into containerd
    /// first (untimed), so the forwarded pull is cheap and the verification
    /// stands out from containerd's own variance.
    ColdPresent(u32),
    /// CRI `CreateContainer` straight to containerd, of the present signed
    /// image by id, in a sandbox that does not exist (containerd: `NotFound`).
    DirectCreate,
    /// As [`Mode::DirectCreate`], through pullgate: the image admitted from
    /// the cached verdict (and the cached id → records lookup).
    HotCreate,
    /// As [`Mode::DirectCreate`], through the byte relay.
    RelayCreate,
    /// Through pullgate, a new image signed once with a cosign key at its
    /// `sha256-<hex>.sig` tag, under a cosign-only scope.
    ColdCosignKey,
    /// Through pullgate, a new image with one key-signed, logged Sigstore
    /// bundle attached through the referrers API, under a cosign-only scope.
    ColdCosignBundle,
    /// As [`Mode::DirectFresh`], of a new 100 MiB image ([`LARGE_LAYERS`]).
    DirectFreshLarge,
    /// As [`Mode::Cold`] with one signature, of a new 100 MiB image: the
    /// prefetch (`[prefetch] enabled`) overlaps the fetch with verification.
    ColdLarge,
}

impl Mode {
    fn name(self) -> String {
        match self {
            Self::Direct => "direct".into(),
            Self::DirectPresent => "direct-present".into(),
            Self::DirectFresh => "direct-fresh".into(),
            Self::HotTag => "hot-tag".into(),
            Self::HotDigest => "hot-digest".into(),
            Self::DirectPresentDigest => "direct-present-digest".into(),
            Self::HopPresentDigest => "hop-present-digest".into(),
            Self::RelayPresent => "relay-present".into(),
            Self::RelayPresentDigest => "relay-present-digest".into(),
            Self::HotTagPresent => "hot-tag-present".into(),
            Self::HotDigestPresent => "hot-digest-present".into(),
            Self::HotDeny => "hot-deny".into(),
            Self::Cold(n) => format!("cold-{n}sig"),
            Self::ColdPresent(n) => format!("cold-present-{n}sig"),
            Self::DirectCreate => "direct-create".into(),
            Self::HotCreate => "hot-create".into(),
            Self::RelayCreate => "relay-create".into(),
            Self::ColdCosignKey => "cold-cosign-key".into(),
            Self::ColdCosignBundle => "cold-cosign-bundle".into(),
            Self::DirectFreshLarge => "direct-fresh-large".into(),
            Self::ColdLarge => "cold-large".into(),
        }
    }

    fn baseline(self) -> Option<&'static str> {
        match self {
            Self::Direct
            | Self::DirectPresent
            | Self::DirectPresentDigest
            | Self::DirectFresh
            | Self::DirectFreshLarge
            | Self::DirectCreate => None,
            Self::ColdLarge => Some("direct-fresh-large"),
            Self::HotCreate | Self::RelayCreate => Some("direct-create"),
            Self::HotTag | Self::HotDigest | Self::HotDeny => Some("direct"),
            Self::HotTagPresent | Self::ColdPresent(_) | Self::RelayPresent => {
                Some("direct-present")
            }
            Self::HotDigestPresent | Self::HopPresentDigest | Self::RelayPresentDigest => {
                Some("direct-present-digest")
            }
            Self::Cold(_) | Self::ColdCosignKey | Self::ColdCosignBundle => Some("direct-fresh"),
        }
    }

    fn reference(self) -> &'static str {
        match self {
            Self::HotDigest
            | Self::HotDigestPresent
            | Self::DirectPresentDigest
            | Self::HopPresentDigest
            | Self::RelayPresentDigest => "digest",
            Self::DirectCreate | Self::HotCreate | Self::RelayCreate => "id",
            _ => "tag",
        }
    }

    fn sigs(self) -> Option<u32> {
        match self {
            Self::Cold(n) | Self::ColdPresent(n) => Some(n),
            Self::HotTag
            | Self::HotDigest
            | Self::HotTagPresent
            | Self::HotDigestPresent
            | Self::HotCreate
            | Self::ColdCosignKey
            | Self::ColdLarge
            | Self::ColdCosignBundle => Some(1),
            Self::HotDeny => Some(0),
            _ => None,
        }
    }
}

/// Images that live through the whole run.
#[derive(Debug)]
struct Fixed {
    direct: Pushed,
    present_direct: Pushed,
    hot: Pushed,
    present_hot: Pushed,
    unsigned: Pushed,
}

/// The new images one round needs.
#[derive(Debug)]
struct RoundImages {
    fresh: Pushed,
    cold: Vec<(u32, Pushed)>,
    cold_present: Vec<(u32, Pushed)>,
    /// Key-signed `.sig` and bundle-signed images, when cosign modes run.
    cosign: Option<(Pushed, Pushed)>,
    /// The large images of `direct-fresh-large` and `cold-large`, when they run.
    large: Option<(Pushed, Pushed)>,
}

/// What the run measured.
#[derive(Debug, Serialize)]
pub(crate) struct Measured {
    pub(crate) rows: Vec<Row>,
    pub(crate) herd: Vec<Row>,
    pub(crate) verify_only: Vec<Row>,
    pub(crate) verify_note: String,
    pub(crate) metrics_note: String,
    pub(crate) rss: Rss,
}

/// Proxy memory.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Rss {
    /// VmRSS of a freshly started pullgate, in KiB, before any pull.
    pub(crate) idle_kib: u64,
    /// Of `idle_kib`: (anonymous, file-backed) KiB (`RssAnon`, `RssFile`).
    pub(crate) idle_split_kib: Option<(u64, u64)>,
    /// (cached verdicts, VmRSS KiB) after populating that many.
    pub(crate) checkpoints: Vec<(usize, u64)>,
    /// VmRSS at 100k verdicts: measured, or extrapolated from the last two checkpoints.
    pub(crate) at_100k_kib: Option<u64>,
    pub(crate) at_100k_measured: bool,
    /// Bytes of RSS per cached verdict, between the first and last checkpoint.
    pub(crate) bytes_per_verdict: Option<f64>,
    /// How the verdicts were made.
    pub(crate) method: String,
    /// Cache-miss denials per second while populating.
    pub(crate) fill_rate_per_s: f64,
    pub(crate) fill_errors: usize,
    /// Registry requests per populated verdict.
    pub(crate) fill_requests: PerPull,
    /// VmRSS of the main pullgate after every other mode ran.
    pub(crate) main_after_run_kib: Option<u64>,
}

use crate::proc::rss_kib as vm_rss_kib;

impl Rss {
    /// The memory figures of a run that skipped them.
    fn not_measured() -> Self {
        Self {
            idle_kib: 0,
            idle_split_kib: None,
            checkpoints: Vec::new(),
            at_100k_kib: None,
            at_100k_measured: false,
            bytes_per_verdict: None,
            method: "not measured (--skip rss)".to_owned(),
            fill_rate_per_s: 0.0,
            fill_errors: 0,
            fill_requests: PerPull::default(),
            main_after_run_kib: None,
        }
    }
}

struct Ctx<'a> {
    bed: &'a Bed,
    proxy: &'a Proxy,
    /// A channel through the bare HTTP/2 relay, when a `hop-*` mode runs.
    hop: Option<Channel>,
    /// A channel through the byte relay, when a `relay-*` mode runs.
    relay: Option<Channel>,
    opts: &'a Options,
}

/// Which socket a pull goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    Containerd,
    Hop,
    Relay,
    Pullgate,
}

impl Ctx<'_> {
    /// The channel a pull `via` goes over, with the metrics address scraped
    /// around it; `None` for the relay when it does not run.
    fn channel(&self, via: Via) -> Option<(&Channel, Option<SocketAddr>)> {
        match via {
            Via::Containerd => Some((&self.bed.ctrd, None)),
            Via::Hop => self.hop.as_ref().map(|ch| (ch, None)),
            Via::Relay => self.relay.as_ref().map(|ch| (ch, None)),
            Via::Pullgate => Some((&self.proxy.ch, self.proxy.metrics)),
        }
    }

    /// One timed pull over `ch`, with the registry requests and pullgate
    /// phases (scraped from `maddr`) it caused.
    async fn measured(
        &self,
        ch: &Channel,
        maddr: Option<SocketAddr>,
        image: &str,
        op: Op,
    ) -> (PullResult, Requests, Option<PhaseTotals>) {
        let m0 = metrics::scrape(maddr).await;
        // pullgate ends its side of the scrape's connection after the bench
        // has read the answer; a pull started at once shares the 2 cores
        // with that (+0.3 to +0.9 ms on hot pulls by digest in full runs).
        // Every mode waits the same, scraped or not.
        tokio::time::sleep(SETTLE).await;
        let c0 = self.bed.testbed.registry.counts();
        let r = match op {
            Op::Pull => pull(ch, image).await,
            Op::Create => create(ch, image).await,
        };
        let c1 = self.bed.testbed.registry.counts();
        let m1 = metrics::scrape(maddr).await;
        let phases = match (m0, m1) {
            (Some(a), Some(b)) => Some(metrics::delta(&a, &b)),
            _ => None,
        };
        (r, Requests::between(&c0, &c1), phases)
    }

    /// Pulls once in `mode`, records it in `acc`, and cleans up after it.
    async fn one(&self, mode: Mode, fixed: &Fixed, round: &RoundImages, acc: &mut Acc) {
        let ctrd = &self.bed.ctrd;
        if matches!(
            mode,
            Mode::DirectCreate | Mode::HotCreate | Mode::RelayCreate
        ) {
            let via = match mode {
                Mode::HotCreate => Via::Pullgate,
                Mode::RelayCreate => Via::Relay,
                _ => Via::Containerd,
            };
            // The id the kubelet sends (untimed lookup).
            let id = match cri::image_status(ctrd, &fixed.present_hot.by_tag).await {
                Ok(Some(image)) => image.id,
                _ => return,
            };
            let Some((ch, maddr)) = self.channel(via) else {
                return;
            };
            let (r, req, phases) = self.measured(ch, maddr, &id, Op::Create).await;
            acc.record(&r, &req, phases);
            return;
        }
        let (via, image, cleanup): (Via, &str, Option<&Pushed>) = match mode {
            Mode::Direct => (Via::Containerd, &fixed.direct.by_tag, Some(&fixed.direct)),
            Mode::DirectPresent => (Via::Containerd, &fixed.present_direct.by_tag, None),
            Mode::DirectFresh => (Via::Containerd, &round.fresh.by_tag, Some(&round.fresh)),
            Mode::HotTag => (Via::Pullgate, &fixed.hot.by_tag, Some(&fixed.hot)),
            Mode::HotDigest => (Via::Pullgate, &fixed.hot.by_digest, Some(&fixed.hot)),
            Mode::DirectPresentDigest => (Via::Containerd, &fixed.present_direct.by_digest, None),
            Mode::HopPresentDigest => (Via::Hop, &fixed.present_direct.by_digest, None),
            Mode::RelayPresent => (Via::Relay, &fixed.present_direct.by_tag, None),
            Mode::RelayPresentDigest => (Via::Relay, &fixed.present_direct.by_digest, None),
            Mode::HotTagPresent => (Via::Pullgate, &fixed.present_hot.by_tag, None),
            Mode::HotDigestPresent => (Via::Pullgate, &fixed.present_hot.by_digest, None),
            Mode::HotDeny => (Via::Pullgate, &fixed.unsigned.by_tag, None),
            Mode::Cold(n) => {
                let Some((_, p)) = round.cold.iter().find(|(s, _)| *s == n) else {
                    return;
                };
                (Via::Pullgate, &p.by_tag, Some(p))
            }
            Mode::ColdPresent(n) => {
                let Some((_, p)) = round.cold_present.iter().find(|(s, _)| *s == n) else {
                    return;
                };
                (Via::Pullgate, &p.by_tag, Some(p))
            }
            Mode::DirectCreate | Mode::HotCreate | Mode::RelayCreate => return,
            Mode::DirectFreshLarge | Mode::ColdLarge => {
                let Some((direct, cold)) = &round.large else {
                    return;
                };
                if mode == Mode::ColdLarge {
                    (Via::Pullgate, &cold.by_tag, Some(cold))
                } else {
                    (Via::Containerd, &direct.by_tag, Some(direct))
                }
            }
            Mode::ColdCosignKey | Mode::ColdCosignBundle => {
                let Some((key, bundle)) = &round.cosign else {
                    return;
                };
                let p = if mode == Mode::ColdCosignKey {
                    key
                } else {
                    bundle
                };
                (Via::Pullgate, &p.by_tag, Some(p))
            }
        };
        let Some((ch, maddr)) = self.channel(via) else {
            return;
        };
        let (r, req, phases) = self.measured(ch, maddr, image, Op::Pull).await;
        acc.record(&r, &req, phases);
        if let Some(p) = cleanup {
            remove(ctrd, r.image_id.as_deref(), &[&p.by_tag, &p.by_digest]).await;
        }
    }
}

/// What a row is, apart from its measurements.
struct Label {
    group: &'static str,
    mode: String,
    reference: &'static str,
    rtt_ms: u64,
    sigs: Option<u32>,
    herd_n: Option<usize>,
    baseline: Option<&'static str>,
}

fn row(l: Label, acc: Acc, per: usize) -> Row {
    Row {
        group: l.group,
        mode: l.mode,
        reference: l.reference,
        rtt_ms: l.rtt_ms,
        sigs: l.sigs,
        herd_n: l.herd_n,
        summary: stats::summarize(&acc.samples),
        pulled: acc.pulled,
        denied: acc.denied,
        errors: acc.errors,
        first_error: acc.first_error,
        baseline: l.baseline.map(str::to_owned),
        ratio_p50: None,
        ratio_p99: None,
        paired_diff_p50_ms: None,
        requests: acc.requests.per(per),
        phases_ms: acc.phases.as_ref().map(metrics::means_ms),
        samples_ms: acc.samples,
    }
}

/// Fills in each row's ratio to its baseline at the same RTT (and herd size).
pub(crate) fn set_ratios(rows: &mut [Row]) {
    let index = rows.to_vec();
    for r in rows.iter_mut() {
        let Some(b) = &r.baseline else { continue };
        if let Some(base_row) = index
            .iter()
            .find(|x| &x.mode == b && x.rtt_ms == r.rtt_ms && x.herd_n == r.herd_n)
        {
            let (s, base) = (base_row.summary, &base_row.samples_ms);
            // Samples of one RTT are in round order for every mode, so index i
            // of two pull rows is the same round; herd samples are not paired.
            if r.group == "pull" {
                r.paired_diff_p50_ms = stats::paired_median(&r.samples_ms, base);
            }
            if s.p50 > 0.0 {
                r.ratio_p50 = Some(r.summary.p50 / s.p50);
            }
            if s.p99 > 0.0 {
                r.ratio_p99 = Some(r.summary.p99 / s.p99);
            }
        }
    }
}

fn spec(repo: &str, tag: &str, sigs: u32) -> ImageSpec {
    ImageSpec {
        repo: repo.to_owned(),
        tag: tag.to_owned(),
        sigs,
        signing: Signing::Notary,
        layers: Vec::new(),
    }
}

fn cosign_spec(repo: &str, tag: &str, signing: Signing) -> ImageSpec {
    ImageSpec {
        repo: repo.to_owned(),
        tag: tag.to_owned(),
        sigs: 1,
        signing,
        layers: Vec::new(),
    }
}

/// Starts a relay of `kind` in front of `upstream`, in its own process, and
/// connects a CRI client to it; the temp dir holds its socket.
async fn start_relay(
    kind: Kind,
    upstream: &std::path::Path,
) -> Result<(tempfile::TempDir, RelayChild, Channel)> {
    let dir = tempfile::Builder::new()
        .prefix("pullgate-relay-")
        .tempdir()?;
    let relay = RelayChild::start(kind, &dir.path().join("relay.sock"), upstream).await?;
    progress(&format!("{kind:?} relay pid {:?}", relay.pid()));
    let ch = cri::connect(relay.socket()).await?;
    Ok((dir, relay, ch))
}

/// Runs everything.
///
/// # Errors
/// The bed or pullgate does not start, or images cannot be pushed.
pub(crate) async fn run(opts: &Options) -> Result<Measured> {
    progress("starting registry and containerd");
    let bed = Bed::start(opts.cosign).await?;
    progress(&format!(
        "registry {}, containerd {}",
        bed.host(),
        bed.testbed.containerd.socket().display()
    ));

    // Memory first, in a pullgate of its own, so nothing else is in its cache.
    let (rss, lookup) = if opts.runs("rss") {
        let (rss, lookup) = measure_rss(&bed, opts).await?;
        (rss, Some(lookup))
    } else {
        (Rss::not_measured(), None)
    };

    let settings = ProxySettings {
        prefetch: opts.prefetch,
        frame_relay: opts.frame_relay,
        ..ProxySettings::default()
    };
    let proxy = bed
        .start_proxy_with(&opts.pullgate_bin, "main", &settings)
        .await?;
    progress(&format!(
        "pullgate pid {}; metrics: {}",
        proxy.process.pid(),
        proxy.metrics_note
    ));
    // The relays, each in its own process, when a mode pulls through it.
    let wants = |relay_modes: &[Mode]| {
        opts.runs("pulls")
            && opts.modes.as_ref().is_none_or(|only| {
                only.iter()
                    .any(|m| relay_modes.iter().any(|r| *m == r.name()))
            })
    };
    let hop = if wants(&[Mode::HopPresentDigest]) {
        Some(start_relay(Kind::H2, bed.testbed.containerd.socket()).await?)
    } else {
        None
    };
    let relay = if wants(&[
        Mode::RelayPresent,
        Mode::RelayPresentDigest,
        Mode::RelayCreate,
    ]) {
        Some(start_relay(Kind::Bytes, bed.testbed.containerd.socket()).await?)
    } else {
        None
    };
    let ctx = Ctx {
        bed: &bed,
        proxy: &proxy,
        hop: hop.as_ref().map(|(_, _, ch)| ch.clone()),
        relay: relay.as_ref().map(|(_, _, ch)| ch.clone()),
        opts,
    };

    progress("pushing fixed images");
    let fixed = bed
        .push_all(&[
            spec("bench/direct", "v1", 0),
            spec("bench/present-direct", "v1", 0),
            spec("bench/hot", "v1", 1),
            spec("bench/present-hot", "v1", 1),
            spec("bench/unsigned", "v1", 0),
        ])
        .await?;
    let [direct, present_direct, hot, present_hot, unsigned]: [Pushed; 5] = fixed
        .try_into()
        .map_err(|_| anyhow::anyhow!("fixed images"))?;
    let fixed = Fixed {
        direct,
        present_direct,
        hot,
        present_hot,
        unsigned,
    };

    let mut modes = vec![
        Mode::Direct,
        Mode::DirectPresent,
        Mode::DirectPresentDigest,
        Mode::HopPresentDigest,
        Mode::RelayPresent,
        Mode::RelayPresentDigest,
        Mode::DirectFresh,
        Mode::HotTag,
        Mode::HotDigest,
        Mode::HotTagPresent,
        Mode::HotDigestPresent,
        Mode::DirectCreate,
        Mode::HotCreate,
        Mode::RelayCreate,
        Mode::HotDeny,
    ];
    modes.extend(opts.sigs.iter().map(|&n| Mode::Cold(n)));
    let mut present_sigs: Vec<u32> = opts.sigs.iter().copied().filter(|n| *n > 0).collect();
    modes.extend(present_sigs.iter().map(|&n| Mode::ColdPresent(n)));
    if opts.cosign {
        modes.extend([Mode::ColdCosignKey, Mode::ColdCosignBundle]);
    }
    // 100 MiB images, one pair a round: only when asked for by name.
    let large_modes = [Mode::DirectFreshLarge, Mode::ColdLarge];
    if let Some(only) = &opts.modes {
        modes.extend(large_modes.iter().filter(|m| only.contains(&m.name())));
        modes.retain(|m| only.contains(&m.name()));
        present_sigs.retain(|n| only.contains(&Mode::ColdPresent(*n).name()));
    }
    let sigs: Vec<u32> = opts
        .sigs
        .iter()
        .copied()
        .filter(|n| modes.contains(&Mode::Cold(*n)))
        .collect();
    let cosign = modes.contains(&Mode::ColdCosignKey) || modes.contains(&Mode::ColdCosignBundle);
    let large = large_modes.iter().any(|m| modes.contains(m));

    let mut rows: Vec<Row> = lookup.into_iter().collect();
    let mut verify_only = Vec::new();
    let mut verify_note = String::from("not run");
    let rtts: &[u64] = if opts.runs("pulls") {
        &opts.rtts_ms
    } else {
        &[]
    };
    for (ri, &rtt) in rtts.iter().enumerate() {
        let iterations = if ri == 0 {
            opts.iterations
        } else {
            opts.rtt_iterations
        };
        // Images are pushed with no added latency; the knob is for the pulls.
        bed.testbed.registry.set_latency(Duration::ZERO);
        progress(&format!(
            "rtt {rtt} ms: pushing {} rounds of new images ({} signatures each round)",
            iterations + 1,
            sigs.iter().sum::<u32>() + present_sigs.iter().sum::<u32>()
        ));
        // A focused run without `direct-fresh` pushes no fresh images.
        let fresh = usize::from(modes.contains(&Mode::DirectFresh));
        let mut specs = Vec::new();
        for i in 0..=iterations {
            let tag = format!("r{rtt}-{i}");
            if fresh == 1 {
                specs.push(spec("bench/fresh", &tag, 0));
            }
            for &n in &sigs {
                specs.push(spec(&format!("bench/cold{n}"), &tag, n));
            }
            for &n in &present_sigs {
                specs.push(spec(&format!("bench/cold-present{n}"), &tag, n));
            }
            if cosign {
                specs.push(cosign_spec(COSIGN_KEY_REPO, &tag, Signing::CosignKey));
                specs.push(cosign_spec(COSIGN_BUNDLE_REPO, &tag, Signing::CosignBundle));
            }
            if large {
                for (repo, sigs) in [("bench/fresh-large", 0), ("bench/cold-large", 1)] {
                    let mut s = spec(repo, &tag, sigs);
                    s.layers = LARGE_LAYERS.to_vec();
                    specs.push(s);
                }
            }
        }
        let pushed = bed.push_all(&specs).await?;
        let k = sigs.len();
        let p = present_sigs.len();
        // The cosign images come next to last in a round (key-signed, then
        // bundle-signed), the large ones last (direct, then cold).
        let c_n = if cosign { 2 } else { 0 };
        let per_round = fresh + k + p + c_n + if large { 2 } else { 0 };
        let rounds: Vec<RoundImages> = if per_round == 0 {
            // Only fixed images: each round needs none of its own.
            (0..=iterations)
                .map(|_| RoundImages {
                    fresh: fixed.direct.clone(),
                    cold: Vec::new(),
                    cold_present: Vec::new(),
                    cosign: None,
                    large: None,
                })
                .collect()
        } else {
            pushed
                .chunks(per_round)
                .map(|c| RoundImages {
                    // Without `direct-fresh` the slot is never pulled.
                    fresh: if fresh == 1 {
                        c[0].clone()
                    } else {
                        fixed.direct.clone()
                    },
                    cold: sigs
                        .iter()
                        .copied()
                        .zip(c[fresh..fresh + k].iter().cloned())
                        .collect(),
                    cold_present: present_sigs
                        .iter()
                        .copied()
                        .zip(c[fresh + k..fresh + k + p].iter().cloned())
                        .collect(),
                    cosign: match &c[fresh + k + p..fresh + k + p + c_n] {
                        [key, bundle] => Some((key.clone(), bundle.clone())),
                        _ => None,
                    },
                    large: match &c[fresh + k + p + c_n..] {
                        [direct, cold] => Some((direct.clone(), cold.clone())),
                        _ => None,
                    },
                })
                .collect()
        };

        bed.testbed.registry.set_latency(Duration::from_millis(rtt));
        warm(&ctx, &fixed).await;
        let mut accs: BTreeMap<usize, Acc> = BTreeMap::new();
        let started = Instant::now();
        for (i, round) in rounds.iter().enumerate() {
            // Untimed: put the cold-present images into containerd, around pullgate.
            for (_, p) in &round.cold_present {
                let r = pull(&bed.ctrd, &p.by_tag).await;
                if let Some(e) = r.error {
                    progress(&format!("pre-pull of {} failed: {e}", p.by_tag));
                }
            }
            let mut order = modes.clone();
            order.rotate_left(i % modes.len());
            for &m in &order {
                let idx = modes.iter().position(|x| *x == m).unwrap_or(0);
                if i == 0 {
                    // Warm-up round: same work, not recorded.
                    ctx.one(m, &fixed, round, &mut Acc::default()).await;
                } else {
                    ctx.one(m, &fixed, round, accs.entry(idx).or_default())
                        .await;
                }
            }
        }
        progress(&format!(
            "rtt {rtt} ms: {iterations} rounds of {} modes in {:.1} s",
            modes.len(),
            started.elapsed().as_secs_f64()
        ));
        for (idx, acc) in accs {
            let m = modes[idx];
            let n = acc.samples.len();
            rows.push(row(
                Label {
                    group: "pull",
                    mode: m.name(),
                    reference: m.reference(),
                    rtt_ms: rtt,
                    sigs: m.sigs(),
                    herd_n: None,
                    baseline: m.baseline(),
                },
                acc,
                n,
            ));
        }
        if ri == 0 && opts.runs("verify") {
            let images: Vec<(u32, String)> = rounds
                .first()
                .map(|r| r.cold.iter().map(|(n, p)| (*n, p.by_tag.clone())).collect())
                .unwrap_or_default();
            (verify_only, verify_note) = verify_cli(opts, &proxy, rtt, &images).await;
        }
    }
    set_ratios(&mut rows);

    let mut herd = if opts.runs("herd") {
        run_herd(&ctx).await?
    } else {
        Vec::new()
    };
    set_ratios(&mut herd);
    bed.testbed.registry.set_latency(Duration::ZERO);

    let mut rss = rss;
    rss.main_after_run_kib = vm_rss_kib(proxy.process.pid());
    Ok(Measured {
        rows,
        herd,
        verify_only,
        verify_note,
        metrics_note: proxy.metrics_note.clone(),
        rss,
    })
}

/// Caches the fixed images' verdicts and warms every connection (not recorded).
async fn warm(ctx: &Ctx<'_>, f: &Fixed) {
    let (ctrd, pg) = (&ctx.bed.ctrd, &ctx.proxy.ch);
    for (ch, p, keep) in [
        (ctrd, &f.direct, false),
        (ctrd, &f.present_direct, true),
        (pg, &f.hot, false),
        (pg, &f.present_hot, true),
        (pg, &f.unsigned, true),
    ] {
        let r = pull(ch, &p.by_tag).await;
        if let Some(e) = &r.error {
            progress(&format!("warm-up pull of {} failed: {e}", p.by_tag));
        }
        if !keep {
            remove(ctrd, r.image_id.as_deref(), &[&p.by_tag, &p.by_digest]).await;
        }
    }
}

/// `pullgate verify` for the images of each signature count, if the binary has it.
async fn verify_cli(
    opts: &Options,
    proxy: &Proxy,
    rtt: u64,
    images: &[(u32, String)],
) -> (Vec<Row>, String) {
    let help = tokio::process::Command::new(&opts.pullgate_bin)
        .args(["verify", "--help"])
        .output()
        .await;
    match help {
        Ok(o) if o.status.success() => {}
        Ok(_) | Err(_) => {
            return (
                Vec::new(),
                "n/a: this pullgate binary has no `verify` subcommand".to_owned(),
            )
        }
    }
    let config = proxy.process.config_path().to_owned();
    let mut rows = Vec::new();
    let mut note = format!(
        "`pullgate verify --config <bench config> IMAGE`, a new process per run (includes process start and trust store load), rtt {rtt} ms"
    );
    for (n, image) in images {
        let mut acc = Acc::default();
        for _ in 0..opts.verify_iterations {
            let start = Instant::now();
            let out = tokio::process::Command::new(&opts.pullgate_bin)
                .arg("verify")
                .arg("--config")
                .arg(&config)
                .arg(image)
                .output()
                .await;
            let ms = start.elapsed().as_secs_f64() * 1e3;
            let (outcome, error) = match &out {
                Ok(o) if o.status.code() == Some(0) => (Outcome::Pulled, None),
                Ok(o) if o.status.code() == Some(1) => (Outcome::Denied, None),
                Ok(o) => (
                    Outcome::Error,
                    Some(format!(
                        "{}: {}",
                        o.status,
                        String::from_utf8_lossy(&o.stderr)
                            .lines()
                            .next()
                            .unwrap_or_default()
                    )),
                ),
                Err(e) => (Outcome::Error, Some(e.to_string())),
            };
            let r = PullResult {
                ms,
                outcome,
                image_id: None,
                error,
            };
            acc.record(&r, &Requests::default(), None);
        }
        if acc.errors == acc.samples.len() {
            note = format!(
                "n/a: `pullgate verify` exists but failed: {}",
                acc.first_error.clone().unwrap_or_default()
            );
            return (Vec::new(), note);
        }
        let mut r = row(
            Label {
                group: "verify-only",
                mode: format!("verify-{n}sig"),
                reference: "tag",
                rtt_ms: rtt,
                sigs: Some(*n),
                herd_n: None,
                baseline: None,
            },
            acc,
            1,
        );
        r.requests = PerPull::default();
        rows.push(r);
    }
    note.push_str("; exit 0 counted as allowed, 1 as denied");
    (rows, note)
}

/// N concurrent pulls of one new image, straight to containerd and through pullgate.
async fn run_herd(ctx: &Ctx<'_>) -> Result<Vec<Row>> {
    let opts = ctx.opts;
    let bed = ctx.bed;
    bed.testbed.registry.set_latency(Duration::ZERO);
    let mut specs = Vec::new();
    for r in 0..opts.herd_rounds {
        for &n in &opts.herd {
            specs.push(spec("bench/herd-direct", &format!("{r}-{n}"), 0));
            specs.push(spec("bench/herd", &format!("{r}-{n}"), 1));
        }
    }
    progress(&format!("herd: pushing {} images", specs.len()));
    let pushed = bed.push_all(&specs).await?;
    bed.testbed
        .registry
        .set_latency(Duration::from_millis(opts.herd_rtt_ms));
    let mut accs: BTreeMap<(usize, bool), Acc> = BTreeMap::new();
    let mut images = pushed.chunks(2);
    for _ in 0..opts.herd_rounds {
        for &n in &opts.herd {
            let Some([direct, gated]) = images.next() else {
                continue;
            };
            for (via_proxy, p) in [(false, direct), (true, gated)] {
                let ch = if via_proxy {
                    ctx.proxy.ch.clone()
                } else {
                    bed.ctrd.clone()
                };
                let maddr = if via_proxy { ctx.proxy.metrics } else { None };
                let m0 = metrics::scrape(maddr).await;
                let c0 = bed.testbed.registry.counts();
                let mut tasks = JoinSet::new();
                for _ in 0..n {
                    let (ch, image) = (ch.clone(), p.by_tag.clone());
                    tasks.spawn(async move { pull(&ch, &image).await });
                }
                let mut results = Vec::with_capacity(n);
                while let Some(r) = tasks.join_next().await {
                    results.push(r.context("herd pull task")?);
                }
                let c1 = bed.testbed.registry.counts();
                let m1 = metrics::scrape(maddr).await;
                let req = Requests::between(&c0, &c1);
                let phases = match (m0, m1) {
                    (Some(a), Some(b)) => Some(metrics::delta(&a, &b)),
                    _ => None,
                };
                let acc = accs.entry((n, via_proxy)).or_default();
                for (k, r) in results.iter().enumerate() {
                    // Requests and phases belong to the herd, recorded once.
                    let (req, ph) = if k == 0 {
                        (req, phases.clone())
                    } else {
                        (Requests::default(), None)
                    };
                    acc.record(r, &req, ph);
                }
                let id = results.iter().find_map(|r| r.image_id.clone());
                remove(&bed.ctrd, id.as_deref(), &[&p.by_tag, &p.by_digest]).await;
            }
            progress(&format!("herd of {n} done"));
        }
    }
    let rounds = opts.herd_rounds;
    Ok(accs
        .into_iter()
        .map(|((n, via_proxy), acc)| {
            let (mode, baseline) = if via_proxy {
                ("herd-pullgate", Some("herd-direct"))
            } else {
                ("herd-direct", None)
            };
            row(
                Label {
                    group: "herd",
                    mode: mode.to_owned(),
                    reference: "tag",
                    rtt_ms: opts.herd_rtt_ms,
                    sigs: Some(u32::from(via_proxy)),
                    herd_n: Some(n),
                    baseline,
                },
                acc,
                rounds,
            )
        })
        .collect())
}

/// Pulls in flight while populating verdicts.
const FILL_CONCURRENCY: usize = 32;

/// RSS of a fresh pullgate at idle, then while its cache fills with verdicts.
///
/// Each verdict is a pull by digest of a synthetic digest in a repository
/// with no signatures: the digest carries no tag, so there is no resolve;
/// the referrers API answers an empty list; the verdict is a cached denial
/// and containerd is never called. That makes 100k distinct verdicts cost
/// one CRI call and one registry request each.
///
/// Then, with the cache full, times pulls of digests already denied: no
/// registry request and no containerd call, so this is pullgate's own cost of
/// a cached decision (CRI in, cache lookup, `PermissionDenied` out).
async fn measure_rss(bed: &Bed, opts: &Options) -> Result<(Rss, Row)> {
    let proxy = bed.start_proxy(&opts.pullgate_bin, "rss").await?;
    let pid = proxy.process.pid();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_kib = vm_rss_kib(pid).unwrap_or(0);
    let idle_split_kib = crate::proc::rss_split_kib(pid);
    progress(&format!(
        "rss: idle pullgate {idle_kib} KiB; populating {} verdicts",
        opts.verdicts
    ));
    let mut marks: Vec<usize> = [1_000, 10_000, 100_000]
        .into_iter()
        .filter(|m| *m < opts.verdicts)
        .collect();
    marks.push(opts.verdicts);
    let host = bed.host();
    let permits = Arc::new(Semaphore::new(FILL_CONCURRENCY));
    let mut checkpoints = Vec::new();
    let mut done = 0usize;
    let mut errors = 0usize;
    let mut first_error = None;
    let c0 = bed.testbed.registry.counts();
    let started = Instant::now();
    for &mark in &marks {
        let mut tasks = JoinSet::new();
        for i in done..mark {
            let digest = sha256_digest(format!("pullgate-bench synthetic {i}").as_bytes());
            let image = format!("{host}/bench/synthetic@{digest}");
            let ch = proxy.ch.clone();
            let permit = Arc::clone(&permits).acquire_owned().await?;
            tasks.spawn(async move {
                let r = pull(&ch, &image).await;
                drop(permit);
                r
            });
            while let Some(r) = tasks.try_join_next() {
                let r = r.context("fill task")?;
                if r.outcome != Outcome::Denied {
                    errors += 1;
                    first_error = first_error.or(r.error);
                }
            }
        }
        while let Some(r) = tasks.join_next().await {
            let r = r.context("fill task")?;
            if r.outcome != Outcome::Denied {
                errors += 1;
                first_error = first_error.or(r.error);
            }
        }
        done = mark;
        // Let the last answers and their buffers settle before reading memory.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let kib = vm_rss_kib(pid).unwrap_or(0);
        progress(&format!("rss: {mark} verdicts → {kib} KiB"));
        checkpoints.push((mark, kib));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let fill_requests = Requests::between(&c0, &bed.testbed.registry.counts()).per(done);

    let mut acc = Acc::default();
    let lookups = opts.iterations.max(50);
    for k in 0..lookups {
        let i = (k * 7919) % done.max(1);
        let digest = sha256_digest(format!("pullgate-bench synthetic {i}").as_bytes());
        let c = bed.testbed.registry.counts();
        let r = pull(&proxy.ch, &format!("{host}/bench/synthetic@{digest}")).await;
        acc.record(
            &r,
            &Requests::between(&c, &bed.testbed.registry.counts()),
            None,
        );
    }
    let n = acc.samples.len();
    let lookup = row(
        Label {
            group: "cache",
            mode: format!("hot-deny-digest@{done}"),
            reference: "digest",
            rtt_ms: 0,
            sigs: Some(0),
            herd_n: None,
            baseline: None,
        },
        acc,
        n,
    );
    if let Some(e) = &first_error {
        progress(&format!("rss: {errors} fills were not denials; first: {e}"));
    }
    let (at_100k_kib, at_100k_measured) = match checkpoints.iter().find(|(n, _)| *n == 100_000) {
        Some((_, kib)) => (Some(*kib), true),
        None => match checkpoints.as_slice() {
            [.., (n0, k0), (n1, k1)] if n1 > n0 => {
                let per = (*k1 as f64 - *k0 as f64) / (*n1 - *n0) as f64;
                (
                    Some((*k1 as f64 + per * (100_000 - n1) as f64).max(0.0) as u64),
                    false,
                )
            }
            _ => (None, false),
        },
    };
    let bytes_per_verdict = match (checkpoints.first(), checkpoints.last()) {
        (Some((n0, k0)), Some((n1, k1))) if n1 > n0 => {
            Some((*k1 as f64 - *k0 as f64) * 1024.0 / (*n1 - *n0) as f64)
        }
        _ => None,
    };
    let rss = Rss {
        idle_kib,
        idle_split_kib,
        checkpoints,
        at_100k_kib,
        at_100k_measured,
        bytes_per_verdict,
        method: "denials of synthetic unsigned digests pulled by digest (one referrers request each, containerd never called); a cached allow verdict holds its signers instead of the reason (per-signature records are not cached)".to_owned(),
        fill_rate_per_s: done as f64 / elapsed.max(1e-9),
        fill_errors: errors,
        fill_requests,
        main_after_run_kib: None,
    };
    Ok((rss, lookup))
}
