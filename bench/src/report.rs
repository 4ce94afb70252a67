//! The printed table, CSV and JSON, and the figures derived from the rows.

use std::fmt::Write as _;

use serde::Serialize;

use crate::machine::Machine;
use crate::metrics::PHASES;
use crate::run::{Measured, Options, Row};
use crate::stats;

/// p50 latency of one mode across RTTs, and its slope.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RttLine {
    pub(crate) mode: String,
    /// (rtt ms, p50 ms).
    pub(crate) p50_by_rtt: Vec<(u64, f64)>,
    /// d(p50)/d(RTT): round trips on the critical path of one pull.
    pub(crate) round_trips: Option<f64>,
}

/// `(cold − hot) / RTT` at one RTT for one signature count: cold-Nsig
/// against hot-tag, and cold-present-Nsig against hot-tag-present.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ColdRoundTrips {
    pub(crate) cold_mode: String,
    pub(crate) hot_mode: &'static str,
    pub(crate) rtt_ms: u64,
    pub(crate) sigs: u32,
    pub(crate) cold_p50_ms: f64,
    pub(crate) hot_tag_p50_ms: f64,
    pub(crate) round_trips: f64,
    /// Registry requests per pull beyond hot-tag's at this RTT (exact, from the registry's counts).
    pub(crate) extra_requests: f64,
}

/// The figures the closing note quotes.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Headline {
    /// hot-tag-present p50 / direct-present p50 at the first RTT: a hot pull
    /// by tag against what it really is, a pull of an image containerd has.
    pub(crate) hot_tag_present_ratio: Option<f64>,
    /// hot-tag-present p50 − direct-present p50 at the first RTT, ms.
    pub(crate) hot_tag_present_added_ms: Option<f64>,
    /// Median of per-round (hot-tag-present − direct-present), ms.
    pub(crate) hot_tag_present_paired_ms: Option<f64>,
    /// hot-digest-present p50 / direct-present-digest p50 at the first RTT.
    pub(crate) hot_digest_present_ratio: Option<f64>,
    /// hot-digest-present p50 − direct-present-digest p50 at the first RTT, ms.
    pub(crate) hot_digest_present_added_ms: Option<f64>,
    /// Median of per-round (hot-digest-present − direct-present-digest), ms.
    pub(crate) hot_digest_present_paired_ms: Option<f64>,
    /// hop-present-digest p50 / direct-present-digest p50: a bare HTTP/2
    /// relay's cost, the floor under any proxy's.
    pub(crate) hop_ratio: Option<f64>,
    /// Median of per-round (hop-present-digest − direct-present-digest), ms.
    pub(crate) hop_paired_ms: Option<f64>,
    /// Median of per-round (hot-digest-present − hop-present-digest), ms:
    /// pullgate's own share of a hot pull by digest, over the bare hop.
    pub(crate) over_hop_paired_ms: Option<f64>,
    /// The floor, a byte relay in front of containerd (nothing decoded), over
    /// a direct call: (by tag, by digest, `CreateContainer`), each as
    /// (relay-* p50 / direct-* p50, median of per-round relay-* − direct-*, ms).
    pub(crate) relay_over_direct: [(Option<f64>, Option<f64>); 3],
    /// pullgate over the floor: median of per-round (hot-tag-present −
    /// relay-present, hot-digest-present − relay-present-digest, hot-create −
    /// relay-create), ms: pullgate's own share, the hop taken out.
    pub(crate) pullgate_over_relay_ms: [Option<f64>; 3],
    /// hot-create p50 / direct-create p50: `CreateContainer` of an image
    /// with a cached verdict, against the same call straight to containerd.
    pub(crate) hot_create_ratio: Option<f64>,
    /// Median of per-round (hot-create − direct-create), ms.
    pub(crate) hot_create_paired_ms: Option<f64>,
    /// hot-tag p50 / direct p50 at the first RTT (image removed between pulls).
    pub(crate) hot_tag_ratio: Option<f64>,
    /// hot-digest p50 / direct p50 at the first RTT.
    pub(crate) hot_digest_ratio: Option<f64>,
    /// p50 of a cached denial by digest with the cache full: pullgate's own decision cost, ms.
    pub(crate) cached_decision_ms: Option<f64>,
    /// cold-1sig p50 / direct-fresh p50 at the first RTT.
    pub(crate) cold_1sig_ratio: Option<f64>,
    /// Median of per-round (cold-1sig − direct-fresh) at the first RTT, ms.
    pub(crate) cold_1sig_paired_ms: Option<f64>,
    /// cold-1sig p50 − direct-fresh p50 at the first RTT, ms.
    pub(crate) cold_1sig_added_ms: Option<f64>,
    /// `(cold-1sig − hot-tag) / RTT` at each RTT > 0.
    pub(crate) cold_round_trips: Vec<(u64, f64)>,
    /// Slope of cold-1sig minus slope of direct-fresh over RTT.
    pub(crate) cold_added_round_trips_by_slope: Option<f64>,
    /// What N signatures cost, one entry per `--sigs` value.
    pub(crate) signatures: Vec<SignatureCost>,
    /// Registry requests of one herd of the largest N through pullgate: (N, referrers, total).
    pub(crate) herd_requests: Option<(usize, f64, f64)>,
    /// The same herd straight to containerd: (N, total).
    pub(crate) herd_direct_requests: Option<(usize, f64)>,
}

/// The cost of verifying an image with `sigs` signatures.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SignatureCost {
    /// Signatures on the image (0: the deny path).
    pub(crate) sigs: u32,
    /// cold-present-Nsig p50 − hot-tag-present p50 at the first RTT, ms:
    /// the decision alone, the image already in containerd.
    pub(crate) decision_ms: Option<f64>,
    /// Median of per-round (cold-present-Nsig − direct-present) at the first RTT, ms.
    pub(crate) paired_vs_direct_present_ms: Option<f64>,
    /// cold-Nsig p50 / direct-fresh p50 at the first RTT.
    pub(crate) cold_ratio: Option<f64>,
    /// Registry requests per pull beyond hot-tag's at the first RTT (exact).
    pub(crate) extra_requests: Option<f64>,
    /// Slope over RTT of cold-Nsig minus that of direct-fresh: round trips
    /// the verification adds to a pull of a new image.
    pub(crate) round_trips_by_slope: Option<f64>,
    /// Slope over RTT of cold-present-Nsig minus that of hot-tag-present:
    /// round trips of the decision alone.
    pub(crate) present_round_trips_by_slope: Option<f64>,
}

/// Everything written to `results.json`.
#[derive(Debug, Serialize)]
pub(crate) struct Report<'a> {
    pub(crate) machine: &'a Machine,
    pub(crate) options: &'a Options,
    pub(crate) headline: Headline,
    pub(crate) rtt: Vec<RttLine>,
    pub(crate) cold_round_trips: Vec<ColdRoundTrips>,
    pub(crate) measured: &'a Measured,
}

fn find<'a>(rows: &'a [Row], mode: &str, rtt: u64) -> Option<&'a Row> {
    rows.iter().find(|r| r.mode == mode && r.rtt_ms == rtt)
}

fn requests(rows: &[Row], mode: &str, rtt: u64) -> f64 {
    find(rows, mode, rtt).map_or(0.0, |r| r.requests.total)
}

fn p50(rows: &[Row], mode: &str, rtt: u64) -> Option<f64> {
    find(rows, mode, rtt).map(|r| r.summary.p50)
}

/// Median over rounds of (`a` − `b`) at `rtt`: samples of one RTT are in
/// round order for every pull mode, so index i of both is the same round.
fn paired_between(rows: &[Row], a: &str, b: &str, rtt: u64) -> Option<f64> {
    let (a, b) = (find(rows, a, rtt)?, find(rows, b, rtt)?);
    stats::paired_median(&a.samples_ms, &b.samples_ms)
}

pub(crate) fn analyse<'a>(
    machine: &'a Machine,
    options: &'a Options,
    m: &'a Measured,
) -> Report<'a> {
    let rtts = &options.rtts_ms;
    let mut modes: Vec<String> = Vec::new();
    for r in &m.rows {
        if !modes.contains(&r.mode) {
            modes.push(r.mode.clone());
        }
    }
    let rtt: Vec<RttLine> = modes
        .iter()
        .map(|mode| {
            let pts: Vec<(u64, f64)> = rtts
                .iter()
                .filter_map(|&t| p50(&m.rows, mode, t).map(|p| (t, p)))
                .collect();
            let xy: Vec<(f64, f64)> = pts.iter().map(|(t, p)| (*t as f64, *p)).collect();
            RttLine {
                mode: mode.clone(),
                p50_by_rtt: pts,
                round_trips: stats::slope(&xy),
            }
        })
        .collect();
    let mut cold_round_trips = Vec::new();
    for (cold_prefix, hot_mode) in [("cold", "hot-tag"), ("cold-present", "hot-tag-present")] {
        for &t in rtts.iter().filter(|t| **t > 0) {
            let Some(hot) = p50(&m.rows, hot_mode, t) else {
                continue;
            };
            for &n in &options.sigs {
                let cold_mode = format!("{cold_prefix}-{n}sig");
                if let Some(cold) = p50(&m.rows, &cold_mode, t) {
                    cold_round_trips.push(ColdRoundTrips {
                        rtt_ms: t,
                        sigs: n,
                        cold_p50_ms: cold,
                        hot_tag_p50_ms: hot,
                        round_trips: (cold - hot) / t as f64,
                        extra_requests: requests(&m.rows, &cold_mode, t)
                            - requests(&m.rows, hot_mode, t),
                        cold_mode,
                        hot_mode,
                    });
                }
            }
        }
    }
    let first = rtts.first().copied().unwrap_or(0);
    let ratio = |a: &str, b: &str| match (p50(&m.rows, a, first), p50(&m.rows, b, first)) {
        (Some(x), Some(y)) if y > 0.0 => Some(x / y),
        _ => None,
    };
    let diff = |a: &str, b: &str| Some(p50(&m.rows, a, first)? - p50(&m.rows, b, first)?);
    let slope_of = |mode: &str| {
        rtt.iter()
            .find(|l| l.mode == mode)
            .and_then(|l| l.round_trips)
    };
    let largest = m.herd.iter().filter_map(|r| r.herd_n).max();
    let herd_row = |mode: &str| {
        m.herd
            .iter()
            .find(|r| r.mode == mode && r.herd_n == largest)
    };
    let paired = |mode: &str| find(&m.rows, mode, first).and_then(|r| r.paired_diff_p50_ms);
    let slope_diff = |a: &str, b: &str| Some(slope_of(a)? - slope_of(b)?);
    let signatures = options
        .sigs
        .iter()
        .map(|&n| {
            let cold = format!("cold-{n}sig");
            let present = format!("cold-present-{n}sig");
            SignatureCost {
                sigs: n,
                decision_ms: diff(&present, "hot-tag-present"),
                paired_vs_direct_present_ms: paired(&present),
                cold_ratio: ratio(&cold, "direct-fresh"),
                extra_requests: find(&m.rows, &cold, first)
                    .map(|_| requests(&m.rows, &cold, first) - requests(&m.rows, "hot-tag", first)),
                round_trips_by_slope: slope_diff(&cold, "direct-fresh"),
                present_round_trips_by_slope: slope_diff(&present, "hot-tag-present"),
            }
        })
        .collect();
    let headline = Headline {
        hot_tag_present_ratio: ratio("hot-tag-present", "direct-present"),
        hot_tag_present_added_ms: diff("hot-tag-present", "direct-present"),
        hot_tag_present_paired_ms: paired("hot-tag-present"),
        hot_digest_present_ratio: ratio("hot-digest-present", "direct-present-digest"),
        hot_digest_present_added_ms: diff("hot-digest-present", "direct-present-digest"),
        hot_digest_present_paired_ms: paired("hot-digest-present"),
        hop_ratio: ratio("hop-present-digest", "direct-present-digest"),
        hop_paired_ms: paired("hop-present-digest"),
        over_hop_paired_ms: paired_between(
            &m.rows,
            "hot-digest-present",
            "hop-present-digest",
            first,
        ),
        relay_over_direct: [
            (
                ratio("relay-present", "direct-present"),
                paired("relay-present"),
            ),
            (
                ratio("relay-present-digest", "direct-present-digest"),
                paired("relay-present-digest"),
            ),
            (
                ratio("relay-create", "direct-create"),
                paired("relay-create"),
            ),
        ],
        pullgate_over_relay_ms: [
            paired_between(&m.rows, "hot-tag-present", "relay-present", first),
            paired_between(&m.rows, "hot-digest-present", "relay-present-digest", first),
            paired_between(&m.rows, "hot-create", "relay-create", first),
        ],
        hot_create_ratio: ratio("hot-create", "direct-create"),
        hot_create_paired_ms: paired("hot-create"),
        hot_tag_ratio: ratio("hot-tag", "direct"),
        hot_digest_ratio: ratio("hot-digest", "direct"),
        cached_decision_ms: m
            .rows
            .iter()
            .find(|r| r.group == "cache")
            .map(|r| r.summary.p50),
        cold_1sig_ratio: ratio("cold-1sig", "direct-fresh"),
        cold_1sig_paired_ms: paired("cold-1sig"),
        cold_1sig_added_ms: diff("cold-1sig", "direct-fresh"),
        cold_round_trips: cold_round_trips
            .iter()
            .filter(|c| c.cold_mode == "cold-1sig")
            .map(|c| (c.rtt_ms, c.round_trips))
            .collect(),
        cold_added_round_trips_by_slope: slope_diff("cold-1sig", "direct-fresh"),
        signatures,
        herd_requests: herd_row("herd-pullgate")
            .and_then(|r| Some((r.herd_n?, r.requests.referrers, r.requests.total))),
        herd_direct_requests: herd_row("herd-direct")
            .and_then(|r| Some((r.herd_n?, r.requests.total))),
    };
    Report {
        machine,
        options,
        headline,
        rtt,
        cold_round_trips,
        measured: m,
    }
}

fn opt(v: Option<f64>, prec: usize) -> String {
    v.map_or_else(|| "n/a".to_owned(), |x| format!("{x:.prec$}"))
}

fn signed(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_owned(), |x| format!("{x:+.2}"))
}

fn signed3(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_owned(), |x| format!("{x:+.3}"))
}

fn sigs(r: &Row) -> String {
    r.sigs.map_or_else(|| "-".to_owned(), |n| n.to_string())
}

/// The table printed to stdout.
pub(crate) fn table(rep: &Report<'_>) -> String {
    let m = rep.measured;
    let mc = rep.machine;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "pullgate-bench ({}) — commit {}\nmachine: {} CPUs, {}, {} MiB, kernel {}, {}; load at start {}\ncommand: {}\nmetrics: {}\nverify-only: {}\n",
        rep.options.profile,
        mc.git_commit,
        mc.nproc,
        mc.cpu_model,
        mc.mem_total_mib,
        mc.kernel,
        mc.containerd,
        mc.loadavg_at_start,
        mc.command,
        m.metrics_note,
        m.verify_note
    );
    let _ = writeln!(
        s,
        "== pulls: latency in ms; ×base = p50 / baseline p50 at the same RTT; Δpair = median over rounds of (pull − baseline pull in the same round); req = registry requests per pull =="
    );
    let _ = writeln!(
        s,
        "{:<22} {:<6} {:>4} {:>4} {:>4} {:>8} {:>8} {:>8} {:>8} {:>6} {:>8} {:<14} {:>5} {:>9}",
        "mode",
        "ref",
        "rtt",
        "sigs",
        "n",
        "p50",
        "p90",
        "p99",
        "max",
        "×base",
        "Δpair",
        "baseline",
        "req",
        "ok/deny/err"
    );
    for r in m.rows.iter().chain(&m.verify_only) {
        let _ = writeln!(
            s,
            "{:<22} {:<6} {:>4} {:>4} {:>4} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>6} {:>8} {:<14} {:>5.1} {:>3}/{}/{}",
            r.mode,
            r.reference,
            r.rtt_ms,
            sigs(r),
            r.summary.n,
            r.summary.p50,
            r.summary.p90,
            r.summary.p99,
            r.summary.max,
            opt(r.ratio_p50, 2),
            opt(r.paired_diff_p50_ms, 2),
            r.baseline.as_deref().unwrap_or("-"),
            r.requests.total,
            r.pulled,
            r.denied,
            r.errors
        );
    }
    for r in m.rows.iter().filter(|r| r.errors > 0) {
        let _ = writeln!(
            s,
            "  ! {} rtt {}: {} errors, first: {}",
            r.mode,
            r.rtt_ms,
            r.errors,
            r.first_error.as_deref().unwrap_or("")
        );
    }

    let _ = writeln!(
        s,
        "\n== p50 (ms) vs added registry RTT; slope = round trips on the critical path =="
    );
    let _ = write!(s, "{:<22}", "mode");
    for t in &rep.options.rtts_ms {
        let _ = write!(s, " {:>9}", format!("rtt {t}"));
    }
    let _ = writeln!(s, " {:>7}", "slope");
    for l in &rep.rtt {
        let _ = write!(s, "{:<22}", l.mode);
        for t in &rep.options.rtts_ms {
            let v = l.p50_by_rtt.iter().find(|(x, _)| x == t).map(|(_, p)| *p);
            let _ = write!(s, " {:>9}", opt(v, 2));
        }
        let _ = writeln!(s, " {:>7}", opt(l.round_trips, 2));
    }
    if !rep.cold_round_trips.is_empty() {
        let _ = writeln!(
            s,
            "\n== cold path round trips: (cold p50 − hot p50) / RTT, and registry requests beyond the hot pull's (exact) =="
        );
        for c in &rep.cold_round_trips {
            let _ = writeln!(
                s,
                "rtt {:>3} ms  {:<20} − {:<16}: {:>8.2} − {:>8.2} = {:>8.2} ms = {:>6.2} round trips; {:>5.1} extra requests",
                c.rtt_ms,
                c.cold_mode,
                c.hot_mode,
                c.cold_p50_ms,
                c.hot_tag_p50_ms,
                c.cold_p50_ms - c.hot_tag_p50_ms,
                c.round_trips,
                c.extra_requests
            );
        }
    }

    let _ = writeln!(
        s,
        "\n== herd: N concurrent pulls of one new image (by tag), rtt {} ms; req = registry requests per herd ==",
        rep.options.herd_rtt_ms
    );
    let _ = writeln!(
        s,
        "{:<14} {:>4} {:>5} {:>8} {:>8} {:>8} {:>6} {:>7} {:>6} {:>6} {:>6} {:>6} {:>9}",
        "path",
        "N",
        "pulls",
        "p50",
        "p99",
        "max",
        "×base",
        "req",
        "HEAD",
        "mGET",
        "bGET",
        "refs",
        "ok/deny/err"
    );
    for r in &m.herd {
        let q = &r.requests;
        let _ = writeln!(
            s,
            "{:<14} {:>4} {:>5} {:>8.2} {:>8.2} {:>8.2} {:>6} {:>7.1} {:>6.1} {:>6.1} {:>6.1} {:>6.1} {:>3}/{}/{}",
            r.mode,
            r.herd_n.unwrap_or(0),
            r.summary.n,
            r.summary.p50,
            r.summary.p99,
            r.summary.max,
            opt(r.ratio_p50, 2),
            q.total,
            q.resolve_head,
            q.manifest_get,
            q.blob_get,
            q.referrers,
            r.pulled,
            r.denied,
            r.errors
        );
    }

    let _ = writeln!(
        s,
        "\n== pullgate phases: mean ms per occurrence, from pullgate_phase_duration_seconds =="
    );
    let with_phases: Vec<&Row> = m
        .rows
        .iter()
        .chain(&m.herd)
        .filter(|r| r.phases_ms.as_ref().is_some_and(|p| !p.is_empty()))
        .collect();
    if with_phases.is_empty() {
        let _ = writeln!(s, "n/a ({})", m.metrics_note);
    } else {
        let _ = write!(s, "{:<22} {:>4} {:>4}", "mode", "rtt", "N");
        for p in PHASES {
            let _ = write!(s, " {p:>9}");
        }
        let _ = writeln!(s);
        for r in with_phases {
            let _ = write!(
                s,
                "{:<22} {:>4} {:>4}",
                r.mode,
                r.rtt_ms,
                r.herd_n.map_or_else(|| "-".to_owned(), |n| n.to_string())
            );
            for p in PHASES {
                let v = r.phases_ms.as_ref().and_then(|m| m.get(p)).copied();
                let _ = write!(s, " {:>9}", opt(v, 3));
            }
            let _ = writeln!(s);
        }
    }

    let rss = &m.rss;
    let _ = writeln!(s, "\n== pullgate RSS ==");
    let _ = write!(s, "idle (fresh process): {} KiB", rss.idle_kib);
    if let Some((anon, file)) = rss.idle_split_kib {
        let _ = write!(
            s,
            " ({anon} KiB anonymous, {file} KiB file-backed: the binary's and libraries' pages, shared with the page cache; fault-around moves this part between runs)"
        );
    }
    let _ = writeln!(s);
    for (n, kib) in &rss.checkpoints {
        let _ = writeln!(s, "after {n:>7} cached verdicts: {kib} KiB");
    }
    let _ = writeln!(
        s,
        "at 100k cached verdicts: {} KiB ({}); {} bytes per verdict; filled at {:.0} verdicts/s, {:.2} registry requests each, {} fill errors",
        rss.at_100k_kib.map_or_else(|| "n/a".to_owned(), |k| k.to_string()),
        if rss.at_100k_measured { "measured" } else { "EXTRAPOLATED linearly from the last two checkpoints" },
        opt(rss.bytes_per_verdict, 0),
        rss.fill_rate_per_s,
        rss.fill_requests.total,
        rss.fill_errors
    );
    let _ = writeln!(s, "verdicts: {}", rss.method);
    if let Some(k) = rss.main_after_run_kib {
        let _ = writeln!(s, "main pullgate after the whole run: {k} KiB");
    }

    let h = &rep.headline;
    let rtt0 = rep.options.rtts_ms.first().copied().unwrap_or(0);
    let _ = writeln!(s, "\n== headline (p50s at rtt {rtt0} ms) ==");
    let _ = writeln!(
        s,
        "hot pull (verdict cached, image present) vs a direct pull of the present image:\n  by tag    ×{} (hot-tag-present vs direct-present: p50 {} ms, paired {} ms)\n  by digest ×{} (hot-digest-present vs direct-present-digest: p50 {} ms, paired {} ms)",
        opt(h.hot_tag_present_ratio, 3),
        signed3(h.hot_tag_present_added_ms),
        signed3(h.hot_tag_present_paired_ms),
        opt(h.hot_digest_present_ratio, 3),
        signed3(h.hot_digest_present_added_ms),
        signed3(h.hot_digest_present_paired_ms),
    );
    let [rt, rd, rc] = h.relay_over_direct;
    let [pt, pd, pc] = h.pullgate_over_relay_ms;
    let _ = writeln!(
        s,
        "the floor, a byte relay in front of containerd (own process, nothing decoded), paired medians:\n  relay over direct:   by tag ×{} {} ms (relay-present − direct-present), by digest ×{} {} ms (relay-present-digest − direct-present-digest), CreateContainer ×{} {} ms (relay-create − direct-create)\n  pullgate over relay: by tag {} ms (hot-tag-present − relay-present), by digest {} ms (hot-digest-present − relay-present-digest), CreateContainer {} ms (hot-create − relay-create)",
        opt(rt.0, 3),
        signed3(rt.1),
        opt(rd.0, 3),
        signed3(rd.1),
        opt(rc.0, 3),
        signed3(rc.1),
        signed3(pt),
        signed3(pd),
        signed3(pc),
    );
    let _ = writeln!(
        s,
        "  a bare HTTP/2 relay by digest ×{} (hop-present-digest vs direct-present-digest: paired {} ms); pullgate over that relay: paired {} ms (hot-digest-present − hop-present-digest)",
        opt(h.hop_ratio, 3),
        signed3(h.hop_paired_ms),
        signed3(h.over_hop_paired_ms),
    );
    let _ = writeln!(
        s,
        "CreateContainer of an image with a cached verdict vs straight to containerd: ×{} (hot-create vs direct-create: paired {} ms)",
        opt(h.hot_create_ratio, 3),
        signed3(h.hot_create_paired_ms),
    );
    let _ = writeln!(
        s,
        "  (image removed between pulls, vs direct: by tag ×{}, by digest ×{}; a cached decision alone, deny by digest with the cache full: {} ms)",
        opt(h.hot_tag_ratio, 3),
        opt(h.hot_digest_ratio, 3),
        opt(h.cached_decision_ms, 3)
    );
    let _ = writeln!(
        s,
        "cold pull, 1 signature, vs a direct pull of a new image (direct-fresh): ×{} (p50 {} ms, paired {} ms); round trips added, by RTT slope: {}; (cold − hot-tag)/RTT: {}",
        opt(h.cold_1sig_ratio, 3),
        signed(h.cold_1sig_added_ms),
        signed(h.cold_1sig_paired_ms),
        opt(h.cold_added_round_trips_by_slope, 2),
        if h.cold_round_trips.is_empty() {
            "n/a (no RTT > 0)".to_owned()
        } else {
            h.cold_round_trips
                .iter()
                .map(|(t, r)| format!("{r:.2} at {t} ms"))
                .collect::<Vec<_>>()
                .join(", ")
        },
    );
    let _ = writeln!(
        s,
        "cost of N signatures: decision = cold-present-Nsig − hot-tag-present (ms); paired = median per round of cold-present-Nsig − direct-present (ms); ×fresh = cold-Nsig / direct-fresh; req = registry requests beyond hot-tag's; round trips by RTT slope: cold-Nsig − direct-fresh, cold-present-Nsig − hot-tag-present"
    );
    let _ = writeln!(
        s,
        "  {:>4} {:>9} {:>9} {:>7} {:>6} {:>10} {:>12}",
        "sigs", "decision", "paired", "×fresh", "req", "rt(cold)", "rt(present)"
    );
    for c in &h.signatures {
        let _ = writeln!(
            s,
            "  {:>4} {:>9} {:>9} {:>7} {:>6} {:>10} {:>12}",
            c.sigs,
            signed(c.decision_ms),
            signed(c.paired_vs_direct_present_ms),
            opt(c.cold_ratio, 2),
            opt(c.extra_requests, 1),
            opt(c.round_trips_by_slope, 2),
            opt(c.present_round_trips_by_slope, 2),
        );
    }
    if let Some((n, refs, total)) = h.herd_requests {
        let _ = writeln!(
            s,
            "herd of {n} through pullgate: {refs:.0} referrers request(s), {total:.0} registry requests in all (straight to containerd: {})",
            h.herd_direct_requests.map_or_else(|| "n/a".to_owned(), |(_, t)| format!("{t:.0}"))
        );
    }
    s
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// One line per row: summary, ratio, requests per pull, phases.
pub(crate) fn csv(rep: &Report<'_>) -> String {
    let mc = rep.machine;
    let mut s = format!(
        "# pullgate-bench; commit {}; {} CPUs {}; {} MiB; kernel {}; command: {}\n",
        mc.git_commit, mc.nproc, mc.cpu_model, mc.mem_total_mib, mc.kernel, mc.command
    );
    s.push_str("group,mode,reference,rtt_ms,sigs,herd_n,n,p50_ms,p90_ms,p99_ms,max_ms,mean_ms,baseline,ratio_p50,ratio_p99,paired_diff_p50_ms,pulled,denied,errors,req_total,req_resolve_head,req_manifest_get,req_blob_head,req_blob_get,req_referrers,req_token,req_other");
    for p in PHASES {
        let _ = write!(s, ",phase_{p}_ms");
    }
    s.push('\n');
    let m = rep.measured;
    for r in m.rows.iter().chain(&m.verify_only).chain(&m.herd) {
        let q = &r.requests;
        let _ = write!(
            s,
            "{},{},{},{},{},{},{},{:.3},{:.3},{:.3},{:.3},{:.3},{},{},{},{},{},{},{},{:.2},{:.2},{:.2},{:.2},{:.2},{:.2},{:.2},{:.2}",
            r.group,
            csv_field(&r.mode),
            r.reference,
            r.rtt_ms,
            r.sigs.map(|n| n.to_string()).unwrap_or_default(),
            r.herd_n.map(|n| n.to_string()).unwrap_or_default(),
            r.summary.n,
            r.summary.p50,
            r.summary.p90,
            r.summary.p99,
            r.summary.max,
            r.summary.mean,
            r.baseline.as_deref().unwrap_or(""),
            r.ratio_p50.map(|x| format!("{x:.4}")).unwrap_or_default(),
            r.ratio_p99.map(|x| format!("{x:.4}")).unwrap_or_default(),
            r.paired_diff_p50_ms.map(|x| format!("{x:.3}")).unwrap_or_default(),
            r.pulled,
            r.denied,
            r.errors,
            q.total,
            q.resolve_head,
            q.manifest_get,
            q.blob_head,
            q.blob_get,
            q.referrers,
            q.token,
            q.other
        );
        for p in PHASES {
            let v = r.phases_ms.as_ref().and_then(|m| m.get(p));
            let _ = write!(
                s,
                ",{}",
                v.map(|x| format!("{x:.4}"))
                    .unwrap_or_else(|| "n/a".to_owned())
            );
        }
        s.push('\n');
    }
    s
}
