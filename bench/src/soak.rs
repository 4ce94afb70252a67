//! `pullgate-bench soak`: many pulls from many clients at once, with the
//! metrics port under a connection flood — does pullgate keep serving?
//!
//! `--pulls` (default 1,000) CRI `PullImage` calls by tag, spread over
//! `--clients` (default 64) concurrent clients, each on its own connection,
//! across `--images` (default 20) images, every other one signed by the
//! trusted signer (the rest unsigned). Verdicts live 2 s (allow) and 1 s
//! (deny), so verification runs again and again during the soak rather
//! than once per image. Meanwhile `--flood` (default 256) tasks hammer the
//! metrics port: a third open a connection and drop it, a third send half a
//! request and hold the connection for 2 s, a third scrape `/metrics` whole.
//!
//! Outcomes: a signed image pulled and an unsigned one denied are expected;
//! anything else (a signed image denied, an unsigned one pulled, any other
//! status) is an error. Reported: errors (the goal is 0), latency
//! percentiles, pullgate's peak memory (sampled `VmRSS`, and `VmHWM`), what
//! the flood got. Then, as a baseline for the allowed pulls' latency, the
//! same number of pulls of the signed images go straight to containerd
//! (same clients, no flood): what containerd alone takes under that
//! concurrency. Measures and never asserts.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use pullgate_tests::cri;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tonic::Code;

use crate::bed::{Bed, ImageSpec, ProxySettings, Signing};
use crate::machine::Machine;
use crate::metrics;
use crate::proc::{peak_rss_kib, rss_kib, RssSampler};
use crate::progress;
use crate::stats::{self, Summary};

/// What to run.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) pulls: usize,
    pub(crate) clients: usize,
    pub(crate) images: usize,
    pub(crate) flood: usize,
    /// `[server] frame_relay` in pullgate's config.
    pub(crate) frame_relay: bool,
    pub(crate) pullgate_bin: PathBuf,
}

/// What the metrics flood got.
#[derive(Debug, Default)]
struct Flood {
    connected: AtomicU64,
    connect_failed: AtomicU64,
    scrapes_ok: AtomicU64,
    scrapes_failed: AtomicU64,
}

/// How long a connect or a whole scrape of the flood may take.
const FLOOD_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a half-sent request holds its connection.
const SLOWLORIS_HOLD: Duration = Duration::from_secs(2);

async fn flood_one(kind: usize, addr: SocketAddr, flood: &Flood) {
    let stream = match tokio::time::timeout(FLOOD_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        _ => {
            flood.connect_failed.fetch_add(1, Ordering::Relaxed);
            // Out of ports or refused: do not spin.
            tokio::time::sleep(Duration::from_millis(10)).await;
            return;
        }
    };
    flood.connected.fetch_add(1, Ordering::Relaxed);
    let mut stream = stream;
    match kind % 3 {
        0 => drop(stream),
        1 => {
            let _ = stream
                .write_all(b"GET /metrics HTTP/1.1\r\nHost: pullgate\r\n")
                .await;
            tokio::time::sleep(SLOWLORIS_HOLD).await;
        }
        _ => {
            let scrape = async {
                stream
                    .write_all(
                        b"GET /metrics HTTP/1.1\r\nHost: pullgate\r\nConnection: close\r\n\r\n",
                    )
                    .await?;
                let mut body = Vec::new();
                stream.read_to_end(&mut body).await?;
                std::io::Result::Ok(body.starts_with(b"HTTP/1.1 200"))
            };
            match tokio::time::timeout(FLOOD_TIMEOUT, scrape).await {
                Ok(Ok(true)) => flood.scrapes_ok.fetch_add(1, Ordering::Relaxed),
                _ => flood.scrapes_failed.fetch_add(1, Ordering::Relaxed),
            };
        }
    }
}

/// The baseline's latencies and failures.
struct Direct {
    summary: Summary,
    errors: usize,
}

/// `pulls` CRI pulls of the signed images (every other one of `images`)
/// straight to containerd, over `clients` concurrent clients.
async fn direct_pulls(
    bed: &Bed,
    images: &Arc<Vec<crate::bed::Pushed>>,
    pulls: usize,
    clients: usize,
) -> Result<Direct> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = JoinSet::new();
    for _ in 0..clients {
        let (next, images) = (Arc::clone(&next), Arc::clone(images));
        let socket = bed.testbed.containerd.socket().to_owned();
        tasks.spawn(async move {
            let ch = cri::connect(&socket).await?;
            let mut done = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= pulls {
                    break;
                }
                // The signed ones: even indexes.
                let k = (2 * i) % images.len();
                let t = Instant::now();
                let ok = cri::pull(&ch, &images[k].by_tag).await.is_ok();
                done.push((t.elapsed().as_secs_f64() * 1e3, ok));
            }
            anyhow::Ok(done)
        });
    }
    let mut ms = Vec::new();
    let mut errors = 0;
    while let Some(done) = tasks.join_next().await {
        for (t, ok) in done.context("direct client task")?? {
            ms.push(t);
            errors += usize::from(!ok);
        }
    }
    Ok(Direct {
        summary: stats::summarize(&ms),
        errors,
    })
}

/// One pull and how it ended.
#[derive(Debug)]
struct Pulled {
    signed: bool,
    ms: f64,
    /// `None` when the outcome is the expected one.
    error: Option<String>,
    allowed: bool,
}

/// Runs the soak; returns the report text.
///
/// # Errors
/// The world does not start, or a push fails.
pub(crate) async fn run(opts: &Options, machine: &Machine) -> Result<String> {
    let bed = Bed::start(false).await?;
    let specs: Vec<ImageSpec> = (0..opts.images)
        .map(|i| ImageSpec {
            repo: format!("soak/app{i}"),
            tag: "v1".to_owned(),
            sigs: u32::from(i % 2 == 0),
            signing: Signing::Notary,
            layers: Vec::new(),
        })
        .collect();
    progress(&format!("soak: pushing {} images", specs.len()));
    let images = Arc::new(bed.push_all(&specs).await?);
    let settings = ProxySettings {
        cache: Some(
            "[cache]\nallow_ttl_secs = 2\ndeny_ttl_secs = 1\nmax_entries = 10000\n".to_owned(),
        ),
        registry: String::new(),
        prefetch: false,
        frame_relay: opts.frame_relay,
    };
    let proxy = bed
        .start_proxy_with(&opts.pullgate_bin, "soak", &settings)
        .await?;
    let pid = proxy.process.pid();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = rss_kib(pid).unwrap_or(0);
    let requests_before = bed.testbed.registry.counts();

    // The flood.
    let stop = Arc::new(AtomicBool::new(false));
    let flood = Arc::new(Flood::default());
    let mut flooders = JoinSet::new();
    if let Some(addr) = proxy.metrics {
        for k in 0..opts.flood {
            let (stop, flood) = (Arc::clone(&stop), Arc::clone(&flood));
            flooders.spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    flood_one(k, addr, &flood).await;
                }
            });
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The pulls.
    progress(&format!(
        "soak: {} pulls over {} clients, metrics flood of {} connections",
        opts.pulls, opts.clients, opts.flood
    ));
    let sampler = RssSampler::start(pid, Duration::from_millis(50));
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut clients = JoinSet::new();
    for _ in 0..opts.clients {
        let (next, images) = (Arc::clone(&next), Arc::clone(&images));
        let socket = proxy.process.socket().to_owned();
        let pulls = opts.pulls;
        clients.spawn(async move {
            let ch = cri::connect(&socket).await?;
            let mut done = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= pulls {
                    break;
                }
                let k = i % images.len();
                let signed = k % 2 == 0;
                let t = Instant::now();
                let r = cri::pull(&ch, &images[k].by_tag).await;
                let ms = t.elapsed().as_secs_f64() * 1e3;
                let (allowed, error) = match (&r, signed) {
                    (Ok(_), true) => (true, None),
                    (Ok(_), false) => (true, Some("unsigned image pulled".to_owned())),
                    (Err(s), false) if s.code() == Code::PermissionDenied => (false, None),
                    (Err(s), _) => (false, Some(format!("{:?}: {}", s.code(), s.message()))),
                };
                done.push(Pulled {
                    signed,
                    ms,
                    error,
                    allowed,
                });
            }
            anyhow::Ok(done)
        });
    }
    let mut results = Vec::new();
    while let Some(done) = clients.join_next().await {
        results.extend(done.context("client task")??);
    }
    let wall = started.elapsed();
    let sampled_peak = sampler.stop().await;
    stop.store(true, Ordering::Relaxed);
    while flooders.join_next().await.is_some() {}
    let hwm = peak_rss_kib(pid).unwrap_or(0);
    let after_flood = match proxy.metrics {
        Some(addr) => match metrics::scrape_text(addr).await {
            Ok(_) => "answers".to_owned(),
            Err(e) => format!("does not answer: {e:#}"),
        },
        None => "n/a (no [metrics])".to_owned(),
    };
    let requests = bed.testbed.registry.counts();

    // Baseline: the signed images' pulls straight to containerd.
    let signed_pulls = results.iter().filter(|p| p.signed).count();
    progress(&format!(
        "soak: baseline, {signed_pulls} pulls of the signed images straight to containerd"
    ));
    let direct = direct_pulls(&bed, &images, signed_pulls, opts.clients).await?;

    // The report.
    let errors: Vec<&Pulled> = results.iter().filter(|p| p.error.is_some()).collect();
    let mut by_error: BTreeMap<&str, usize> = BTreeMap::new();
    for p in &errors {
        *by_error
            .entry(p.error.as_deref().unwrap_or_default())
            .or_default() += 1;
    }
    let ms = |f: &dyn Fn(&Pulled) -> bool| -> Summary {
        let v: Vec<f64> = results.iter().filter(|p| f(p)).map(|p| p.ms).collect();
        stats::summarize(&v)
    };
    let all = ms(&|_| true);
    let signed = ms(&|p| p.signed);
    let unsigned = ms(&|p| !p.signed);
    let mut out = String::new();
    let _ = writeln!(out, "{}", machine.header("soak"));
    let _ = writeln!(
        out,
        "{} pulls by tag over {} clients, {} images ({} signed, {} unsigned), [cache] allow_ttl_secs = 2, deny_ttl_secs = 1; metrics port flooded by {} tasks\nwall time: {:.1} s ({:.0} pulls/s)\n",
        results.len(),
        opts.clients,
        opts.images,
        opts.images.div_ceil(2),
        opts.images / 2,
        opts.flood,
        wall.as_secs_f64(),
        results.len() as f64 / wall.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "outcomes: {} signed pulled, {} unsigned denied (expected); errors: {}",
        results
            .iter()
            .filter(|p| p.signed && p.error.is_none())
            .count(),
        results
            .iter()
            .filter(|p| !p.signed && !p.allowed && p.error.is_none())
            .count(),
        errors.len()
    );
    for (e, n) in &by_error {
        let _ = writeln!(out, "  {n} × {e}");
    }
    let _ = writeln!(
        out,
        "\nlatency ms        n      p50      p90      p99      max"
    );
    for (label, s) in [("all", &all), ("signed", &signed), ("unsigned", &unsigned)] {
        let _ = writeln!(
            out,
            "{label:10} {:7} {:8.1} {:8.1} {:8.1} {:8.1}",
            s.n, s.p50, s.p90, s.p99, s.max
        );
    }
    let _ = writeln!(
        out,
        "{:10} {:7} {:8.1} {:8.1} {:8.1} {:8.1}   (baseline: the signed images straight to containerd, same clients, no flood; {} errors)",
        "direct", direct.summary.n, direct.summary.p50, direct.summary.p90, direct.summary.p99, direct.summary.max, direct.errors
    );
    let _ = writeln!(
        out,
        "\npullgate memory: idle VmRSS {idle} KiB; peak sampled VmRSS {sampled_peak} KiB; VmHWM {hwm} KiB ({:.0} MiB)",
        hwm as f64 / 1024.0
    );
    let _ = writeln!(
        out,
        "metrics flood: {} connections, {} failed to connect, {} scrapes answered, {} scrapes failed or timed out ({} s each); /metrics after the flood: {after_flood}",
        flood.connected.load(Ordering::Relaxed),
        flood.connect_failed.load(Ordering::Relaxed),
        flood.scrapes_ok.load(Ordering::Relaxed),
        flood.scrapes_failed.load(Ordering::Relaxed),
        FLOOD_TIMEOUT.as_secs(),
    );
    let _ = writeln!(
        out,
        "registry requests during the soak: {} (referrers {}, manifest GET {}, blob GET {}, tag HEAD {})",
        requests.total() - requests_before.total(),
        requests.referrers - requests_before.referrers,
        requests.manifest_get - requests_before.manifest_get,
        requests.blob_get - requests_before.blob_get,
        requests.resolve_head - requests_before.resolve_head,
    );
    Ok(out)
}
