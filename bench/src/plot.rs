//! Two hand-written SVG plots: latency CDF per mode, and p50 latency vs added RTT.

use std::fmt::Write as _;

use crate::report::Report;
use crate::stats;

const W: f64 = 960.0;
const H: f64 = 520.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 280.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;

/// Distinguishable colours (Okabe–Ito, then a few more).
const COLOURS: [&str; 12] = [
    "#000000", "#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7",
    "#999999", "#882255", "#44AA99", "#332288",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

struct Frame {
    svg: String,
    x0: f64,
    x1: f64,
    y0: f64,
    y1: f64,
    log_x: bool,
}

impl Frame {
    fn new(title: &str, subtitle: &str, x: (f64, f64), y: (f64, f64), log_x: bool) -> Self {
        let mut svg = String::new();
        let _ = writeln!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(svg, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
        let _ = writeln!(
            svg,
            r#"<text x="{LEFT}" y="20" font-size="15" font-weight="bold">{}</text>"#,
            esc(title)
        );
        let _ = writeln!(
            svg,
            r##"<text x="{LEFT}" y="34" font-size="10" fill="#555">{}</text>"##,
            esc(subtitle)
        );
        let (x0, x1) = if log_x { (x.0.log10(), x.1.log10()) } else { x };
        Self {
            svg,
            x0,
            x1: if x1 > x0 { x1 } else { x0 + 1.0 },
            y0: y.0,
            y1: if y.1 > y.0 { y.1 } else { y.0 + 1.0 },
            log_x,
        }
    }

    fn px(&self, x: f64) -> f64 {
        let v = if self.log_x { x.max(1e-9).log10() } else { x };
        LEFT + (v - self.x0) / (self.x1 - self.x0) * (W - LEFT - RIGHT)
    }

    fn py(&self, y: f64) -> f64 {
        H - BOTTOM - (y - self.y0) / (self.y1 - self.y0) * (H - TOP - BOTTOM)
    }

    fn axes(
        &mut self,
        x_label: &str,
        y_label: &str,
        x_ticks: &[f64],
        y_ticks: &[f64],
        y_fmt: fn(f64) -> String,
    ) {
        let (l, r, t, b) = (LEFT, W - RIGHT, TOP, H - BOTTOM);
        let _ = writeln!(
            self.svg,
            r##"<rect x="{l}" y="{t}" width="{}" height="{}" fill="none" stroke="#333"/>"##,
            r - l,
            b - t
        );
        for &x in x_ticks {
            let px = self.px(x);
            let _ = writeln!(
                self.svg,
                r##"<line x1="{px:.1}" y1="{t}" x2="{px:.1}" y2="{b}" stroke="#ddd"/>"##
            );
            let _ = writeln!(
                self.svg,
                r#"<text x="{px:.1}" y="{}" text-anchor="middle">{}</text>"#,
                b + 16.0,
                fmt_num(x)
            );
        }
        for &y in y_ticks {
            let py = self.py(y);
            let _ = writeln!(
                self.svg,
                r##"<line x1="{l}" y1="{py:.1}" x2="{r}" y2="{py:.1}" stroke="#ddd"/>"##
            );
            let _ = writeln!(
                self.svg,
                r#"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
                l - 6.0,
                py + 4.0,
                y_fmt(y)
            );
        }
        let _ = writeln!(
            self.svg,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
            (l + r) / 2.0,
            H - 18.0,
            esc(x_label)
        );
        let _ = writeln!(
            self.svg,
            r#"<text x="18" y="{}" text-anchor="middle" transform="rotate(-90 18 {})">{}</text>"#,
            (t + b) / 2.0,
            (t + b) / 2.0,
            esc(y_label)
        );
    }

    fn series(&mut self, i: usize, label: &str, pts: &[(f64, f64)], step: bool, dots: bool) {
        let c = COLOURS[i % COLOURS.len()];
        // Past the palette, lines repeat colours dashed.
        let dash = if i >= COLOURS.len() {
            r#" stroke-dasharray="6 3""#
        } else {
            ""
        };
        let mut d = String::new();
        let mut prev: Option<(f64, f64)> = None;
        for &(x, y) in pts {
            let (px, py) = (self.px(x), self.py(y));
            match prev {
                None => {
                    let _ = write!(d, "M{px:.1},{py:.1}");
                }
                Some((_, ppy)) if step => {
                    let _ = write!(d, " L{px:.1},{ppy:.1} L{px:.1},{py:.1}");
                }
                Some(_) => {
                    let _ = write!(d, " L{px:.1},{py:.1}");
                }
            }
            prev = Some((px, py));
            if dots {
                let _ = writeln!(
                    self.svg,
                    r#"<circle cx="{px:.1}" cy="{py:.1}" r="3" fill="{c}"/>"#
                );
            }
        }
        let _ = writeln!(
            self.svg,
            r#"<path d="{d}" fill="none" stroke="{c}" stroke-width="1.8"{dash}/>"#
        );
        let ly = TOP + 14.0 + i as f64 * 18.0;
        let lx = W - RIGHT + 12.0;
        let _ = writeln!(
            self.svg,
            r#"<line x1="{lx}" y1="{}" x2="{}" y2="{}" stroke="{c}" stroke-width="3"{dash}/>"#,
            ly - 4.0,
            lx + 18.0,
            ly - 4.0
        );
        let _ = writeln!(
            self.svg,
            r#"<text x="{}" y="{ly}">{}</text>"#,
            lx + 24.0,
            esc(label)
        );
    }

    fn finish(mut self) -> String {
        self.svg.push_str("</svg>\n");
        self.svg
    }
}

fn fmt_num(x: f64) -> String {
    if x >= 10.0 || x == x.trunc() {
        format!("{x:.0}")
    } else if x >= 1.0 {
        format!("{x:.1}")
    } else {
        format!("{x}")
    }
}

fn footer(rep: &Report<'_>) -> String {
    let m = rep.machine;
    format!(
        "commit {} · {} CPUs {} · kernel {} · {}",
        m.git_commit.get(..12).unwrap_or(&m.git_commit),
        m.nproc,
        m.cpu_model,
        m.kernel,
        m.command
    )
}

/// Latency CDF of every pull mode at the first RTT (log x).
pub(crate) fn cdf(rep: &Report<'_>) -> String {
    let rtt = rep.options.rtts_ms.first().copied().unwrap_or(0);
    let rows: Vec<_> = rep
        .measured
        .rows
        .iter()
        .filter(|r| r.rtt_ms == rtt && !r.samples_ms.is_empty())
        .collect();
    let all = rows.iter().flat_map(|r| r.samples_ms.iter().copied());
    let (lo, hi) = all.fold((f64::MAX, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let lo = if lo == f64::MAX { 0.1 } else { lo.max(0.01) };
    let (lo, hi) = (
        10f64.powf(lo.log10().floor()),
        10f64.powf(hi.max(lo * 10.0).log10().ceil()),
    );
    let mut f = Frame::new(
        &format!("pullgate-bench: pull latency CDF, added RTT {rtt} ms"),
        &footer(rep),
        (lo, hi),
        (0.0, 1.0),
        true,
    );
    let mut ticks = Vec::new();
    let mut t = lo;
    while t <= hi * 1.0001 {
        ticks.extend(
            [t, 2.0 * t, 5.0 * t]
                .into_iter()
                .filter(|v| *v <= hi * 1.0001),
        );
        t *= 10.0;
    }
    f.axes(
        "latency of one PullImage (ms, log scale)",
        "fraction of pulls",
        &ticks,
        &[0.0, 0.25, 0.5, 0.75, 0.9, 1.0],
        |y| format!("{y}"),
    );
    for (i, r) in rows.iter().enumerate() {
        let s = stats::sorted(&r.samples_ms);
        let n = s.len() as f64;
        let mut pts = vec![(s[0], 0.0)];
        pts.extend(s.iter().enumerate().map(|(k, v)| (*v, (k + 1) as f64 / n)));
        f.series(
            i,
            &format!("{} (p50 {:.1})", r.mode, r.summary.p50),
            &pts,
            true,
            false,
        );
    }
    f.finish()
}

/// Modes drawn against RTT (the table and JSON have all of them).
const RTT_MODES: [&str; 11] = [
    "direct",
    "direct-present",
    "direct-fresh",
    "hot-tag",
    "hot-tag-present",
    "hot-deny",
    "cold-0sig",
    "cold-1sig",
    "cold-20sig",
    "cold-present-1sig",
    "cold-present-20sig",
];

/// p50 latency vs added RTT for the main modes measured at more than one RTT.
pub(crate) fn rtt(rep: &Report<'_>) -> String {
    let lines: Vec<_> = rep
        .rtt
        .iter()
        .filter(|l| l.p50_by_rtt.len() >= 2 && RTT_MODES.contains(&l.mode.as_str()))
        .collect();
    let x_hi = rep
        .options
        .rtts_ms
        .iter()
        .copied()
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let y_hi = lines
        .iter()
        .flat_map(|l| l.p50_by_rtt.iter().map(|(_, p)| *p))
        .fold(1.0f64, f64::max);
    let y_hi = nice_ceiling(y_hi);
    let mut f = Frame::new(
        "pullgate-bench: p50 pull latency vs added registry round-trip time",
        &footer(rep),
        (0.0, x_hi),
        (0.0, y_hi),
        false,
    );
    let x_ticks: Vec<f64> = rep.options.rtts_ms.iter().map(|t| *t as f64).collect();
    let y_ticks: Vec<f64> = (0..=5).map(|k| y_hi * f64::from(k) / 5.0).collect();
    f.axes(
        "added latency per registry request (ms)",
        "p50 latency of one PullImage (ms)",
        &x_ticks,
        &y_ticks,
        |y| format!("{y:.0}"),
    );
    for (i, l) in lines.iter().enumerate() {
        let pts: Vec<(f64, f64)> = l.p50_by_rtt.iter().map(|(t, p)| (*t as f64, *p)).collect();
        let label = match l.round_trips {
            Some(rt) => format!("{} ({rt:.1} RTT)", l.mode),
            None => l.mode.clone(),
        };
        f.series(i, &label, &pts, false, true);
    }
    f.finish()
}

fn nice_ceiling(v: f64) -> f64 {
    let p = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if v <= m * p {
            return m * p;
        }
    }
    10.0 * p
}
