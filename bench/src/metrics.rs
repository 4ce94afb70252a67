//! pullgate's own per-phase latency, scraped from its Prometheus `/metrics`.
//!
//! The histogram is `pullgate_phase_duration_seconds{phase="resolve|discover|fetch|verify|forward|tag"}`
//! (`pullgate_phase_seconds`, the name first planned, is read too); only its
//! `_sum` and `_count` series are read, and the mean per phase of a
//! set of pulls is (Δsum / Δcount) between a scrape before and one after.
//! A binary without `[metrics]` gives no address, and every figure is "n/a".

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Names of the per-phase histogram: as merged, and as first planned.
pub(crate) const PHASE_METRICS: [&str; 2] =
    ["pullgate_phase_duration_seconds", "pullgate_phase_seconds"];

/// Phases in pipeline order, for tables.
pub(crate) const PHASES: [&str; 6] = ["resolve", "discover", "fetch", "verify", "forward", "tag"];

/// Longest a scrape may take.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest `/metrics` body read.
const MAX_BODY: u64 = 8 << 20;

/// Sum (seconds) and count per phase.
pub(crate) type PhaseTotals = BTreeMap<String, (f64, u64)>;

/// `GET /metrics` over HTTP/1.0 (the connection closes when the body ends).
///
/// # Errors
/// Connection, timeout, or a status other than 200.
pub(crate) async fn scrape_text(addr: SocketAddr) -> Result<String> {
    let fetch = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await?;
        let mut buf = Vec::new();
        s.take(MAX_BODY).read_to_end(&mut buf).await?;
        anyhow::Ok(buf)
    };
    let buf = tokio::time::timeout(SCRAPE_TIMEOUT, fetch)
        .await
        .context("scraping /metrics timed out")??;
    let text = String::from_utf8_lossy(&buf);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("no HTTP header end in the /metrics answer");
    };
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        bail!("/metrics answered {status:?}");
    }
    Ok(body.to_owned())
}

/// The phase totals in a Prometheus (or OpenMetrics) text exposition.
pub(crate) fn parse_phases(text: &str) -> PhaseTotals {
    let mut out = PhaseTotals::new();
    for line in text.lines() {
        let Some((name, series)) = line.split_once('{') else {
            continue;
        };
        let is_sum = match PHASE_METRICS.iter().find_map(|m| name.strip_prefix(m)) {
            Some("_sum") => true,
            Some("_count") => false,
            _ => continue,
        };
        let Some((labels, value)) = series.rsplit_once('}') else {
            continue;
        };
        let Some(phase) = labels
            .split_once("phase=\"")
            .and_then(|(_, r)| r.split_once('"'))
            .map(|(p, _)| p.to_owned())
        else {
            continue;
        };
        // A sample line may carry a timestamp after the value.
        let Some(v) = value
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        else {
            continue;
        };
        let e = out.entry(phase).or_insert((0.0, 0));
        if is_sum {
            e.0 += v;
        } else {
            e.1 += v as u64;
        }
    }
    out
}

/// The phase totals now, `None` when there is no metrics address or the scrape fails.
pub(crate) async fn scrape(addr: Option<SocketAddr>) -> Option<PhaseTotals> {
    let text = scrape_text(addr?).await.ok()?;
    Some(parse_phases(&text))
}

/// `after − before`, per phase.
pub(crate) fn delta(before: &PhaseTotals, after: &PhaseTotals) -> PhaseTotals {
    after
        .iter()
        .map(|(k, (s, c))| {
            let (s0, c0) = before.get(k).copied().unwrap_or((0.0, 0));
            (k.clone(), (s - s0, c.saturating_sub(c0)))
        })
        .collect()
}

/// Adds `d` into `acc`.
pub(crate) fn accumulate(acc: &mut PhaseTotals, d: &PhaseTotals) {
    for (k, (s, c)) in d {
        let e = acc.entry(k.clone()).or_insert((0.0, 0));
        e.0 += s;
        e.1 += c;
    }
}

/// Mean milliseconds per phase occurrence.
pub(crate) fn means_ms(t: &PhaseTotals) -> BTreeMap<String, f64> {
    t.iter()
        .filter(|(_, (_, c))| *c > 0)
        .map(|(k, (s, c))| (k.clone(), s * 1000.0 / *c as f64))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_merged_histogram_name() {
        let text = "# TYPE pullgate_phase_duration_seconds histogram\n\
            pullgate_phase_duration_seconds_sum{phase=\"fetch\"} 0.003\n\
            pullgate_phase_duration_seconds_count{phase=\"fetch\"} 3\n\
            pullgate_phase_duration_seconds_bucket{le=\"0.0001\",phase=\"fetch\"} 0\n\
            # EOF\n";
        assert_eq!(parse_phases(text)["fetch"], (0.003, 3));
    }

    #[test]
    fn reads_sum_and_count_per_phase() {
        let text = "# HELP pullgate_phase_seconds x\n\
            pullgate_phase_seconds_bucket{phase=\"verify\",le=\"0.001\"} 1\n\
            pullgate_phase_seconds_sum{phase=\"verify\"} 0.5\n\
            pullgate_phase_seconds_count{phase=\"verify\"} 4\n\
            pullgate_phase_seconds_sum{outcome=\"allow\",phase=\"resolve\"} 0.25 1700000000\n\
            pullgate_phase_seconds_count{outcome=\"allow\",phase=\"resolve\"} 2\n\
            pullgate_phase_seconds_count{outcome=\"deny\",phase=\"resolve\"} 3\n";
        let p = parse_phases(text);
        assert_eq!(p["verify"], (0.5, 4));
        assert_eq!(p["resolve"], (0.25, 5));
        let m = means_ms(&delta(&PhaseTotals::new(), &p));
        assert!((m["verify"] - 125.0).abs() < 1e-9);
    }
}
