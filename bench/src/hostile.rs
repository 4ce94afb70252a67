//! `pullgate-bench hostile`: pullgate's memory while concurrent pulls
//! discover signatures at a hostile registry (issue 11: "4 pulls peaked at
//! 377 MB").
//!
//! The in-process registry answers every referrers request with a page of
//! `--page-bytes` (default 4 MiB, the `referrers_index_bytes` cap) of
//! referrers of another artifact type, each page linking to a next one
//! without end, so every discovery reads `max_referrers_pages` (16) full
//! pages and finds no signature. Each round pulls `--pulls` (default 4)
//! distinct images at once through pullgate; `VmRSS` is sampled every 10 ms,
//! and `VmHWM` (the kernel's peak) is read at the end. `--discoveries N`
//! writes `[registry] max_concurrent_discoveries = N` (a binary from before
//! that key refuses it, so leave it out there).
//!
//! With `--signatures`, the registry attacks the signature fetches instead:
//! every image lists [`SIGNATURES`] Notary Project referrers, each manifest
//! padded (`--manifest-pad`, by default to just under the 256 KiB
//! `signature_manifest_bytes` cap; 4 MiB attacks a binary from before it) and
//! naming a 1 MiB envelope that the registry serves as 1 MiB + 64 KiB
//! without a length, so every fetch reads up to its cap and all are in flight at once.
//!
//! Measures and never asserts.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use pullgate_tests::cri;
use pullgate_tests::oci_registry::{
    referrers_page, sha256_digest, Fault, FaultTarget, OciRegistry, RequestKind,
};
use serde_json::json;
use tokio::task::JoinSet;
use tonic::Code;

use crate::bed::{Bed, ImageSpec, ProxySettings, Signing};
use crate::machine::Machine;
use crate::proc::{peak_rss_kib, rss_kib, RssSampler};
use crate::progress;
use crate::stats;

/// What to run.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) pulls: usize,
    pub(crate) rounds: usize,
    pub(crate) page_bytes: usize,
    pub(crate) discoveries: Option<usize>,
    /// Attack the signature fetches rather than the referrers listing.
    pub(crate) signatures: bool,
    /// Bytes of padding in each signature manifest with `--signatures`.
    pub(crate) manifest_pad: usize,
    /// `[server] frame_relay` in pullgate's config.
    pub(crate) frame_relay: bool,
    pub(crate) pullgate_bin: PathBuf,
}

/// Referrers listed per image with `--signatures`: the default `max_signatures`.
const SIGNATURES: usize = 32;

/// Bytes of padding in each signature manifest by default: the manifest
/// stays just under the 256 KiB `signature_manifest_bytes` cap.
pub(crate) const MANIFEST_PAD: usize = 255 << 10;

/// Bytes served for each 1 MiB envelope, without a length: past the
/// 1 MiB `signature_blob_bytes` cap, so every fetch reads up to it.
const ENVELOPE_SERVED: usize = (1 << 20) + (64 << 10);

/// OCI image manifest media type.
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// Lists [`SIGNATURES`] padded Notary Project referrers of `subject` in
/// `repo`, each naming a 1 MiB envelope served past that, without a length.
/// Each manifest carries `pad` bytes of padding.
fn plant_signatures(registry: &OciRegistry, repo: &str, subject: &str, pad: usize) {
    let empty = registry.put_blob(repo, b"{}".to_vec());
    for k in 0..SIGNATURES {
        let envelope = registry.put_blob(repo, format!("envelope {subject} {k}").into_bytes());
        registry.serve_oversized(&envelope, ENVELOPE_SERVED, false);
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": "application/vnd.cncf.notary.signature",
            // The padding sits in the config descriptor: top-level
            // annotations are copied into the referrers listing.
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2,
                       "annotations": {"pad": "x".repeat(pad)}},
            "layers": [{"mediaType": "application/jose+json", "digest": envelope, "size": 1 << 20}],
            "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": 1},
        })
        .to_string();
        let digest = sha256_digest(manifest.as_bytes());
        registry.put_manifest(repo, &digest, OCI_MANIFEST, manifest);
    }
}

/// Runs the measurement; returns the report text.
///
/// # Errors
/// The world does not start, or a push fails.
pub(crate) async fn run(opts: &Options, machine: &Machine) -> Result<String> {
    let bed = Bed::start(false).await?;
    let specs: Vec<ImageSpec> = (0..opts.pulls * opts.rounds)
        .map(|i| ImageSpec {
            repo: format!("hostile/app{i}"),
            tag: "v1".to_owned(),
            sigs: 0,
            signing: Signing::Notary,
            layers: Vec::new(),
        })
        .collect();
    progress(&format!("hostile: pushing {} images", specs.len()));
    let pushed = bed.push_all(&specs).await?;
    let attack = if opts.signatures {
        for (spec, p) in specs.iter().zip(&pushed) {
            let subject = p.by_digest.rsplit('@').next().unwrap_or_default();
            plant_signatures(
                &bed.testbed.registry,
                &spec.repo,
                subject,
                opts.manifest_pad,
            );
        }
        format!(
            "every image lists {SIGNATURES} Notary Project signatures, each manifest padded with {} bytes (cap 262144 since signature_manifest_bytes, 4194304 before), each envelope declared 1 MiB and served as {ENVELOPE_SERVED} bytes without a length",
            opts.manifest_pad
        )
    } else {
        let page = referrers_page(opts.page_bytes, "application/spdx+json");
        let page_len = page.len();
        bed.testbed.registry.set_fault(
            FaultTarget::Kind(RequestKind::Referrers),
            Fault::EndlessPages { page },
        );
        format!("every referrers page {page_len} bytes of other artifact types, with a Link to a next page, without end")
    };
    let settings = ProxySettings {
        cache: None,
        registry: opts
            .discoveries
            .map(|n| format!("max_concurrent_discoveries = {n}\n"))
            .unwrap_or_default(),
        prefetch: false,
        frame_relay: opts.frame_relay,
    };
    let proxy = bed
        .start_proxy_with(&opts.pullgate_bin, "hostile", &settings)
        .await?;
    let pid = proxy.process.pid();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = rss_kib(pid).unwrap_or(0);
    let mut out = String::new();
    let _ = writeln!(out, "{}", machine.header("hostile"));
    let _ = writeln!(
        out,
        "registry: {attack}\nconfig: [registry] max_concurrent_discoveries = {}\npulls at once: {}, rounds: {}\nidle VmRSS: {} KiB\n",
        opts.discoveries
            .map_or_else(|| "(not set: binary default)".to_owned(), |n| n.to_string()),
        opts.pulls,
        opts.rounds,
        idle
    );
    let _ = writeln!(
        out,
        "round  peak VmRSS KiB  pulls ms (each)                          outcomes            referrers requests"
    );
    let mut all_ms = Vec::new();
    for round in 0..opts.rounds {
        let before = bed.testbed.registry.counts().referrers;
        let sampler = RssSampler::start(pid, Duration::from_millis(10));
        let mut pulls = JoinSet::new();
        for p in &pushed[round * opts.pulls..(round + 1) * opts.pulls] {
            let ch = proxy.ch.clone();
            let image = p.by_tag.clone();
            pulls.spawn(async move {
                let started = Instant::now();
                let r = cri::pull(&ch, &image).await;
                (started.elapsed().as_secs_f64() * 1e3, r)
            });
        }
        let mut ms = Vec::new();
        let mut outcomes = Vec::new();
        while let Some(done) = pulls.join_next().await {
            let (t, r) = done.context("pull task")?;
            ms.push(t);
            outcomes.push(match r {
                Ok(_) => "allowed".to_owned(),
                Err(s) if s.code() == Code::PermissionDenied => "denied".to_owned(),
                Err(s) => format!("{:?}", s.code()),
            });
        }
        let peak = sampler.stop().await;
        let requests = bed.testbed.registry.counts().referrers - before;
        ms.sort_by(f64::total_cmp);
        all_ms.extend_from_slice(&ms);
        let each: Vec<String> = ms.iter().map(|t| format!("{t:.0}")).collect();
        outcomes.sort();
        outcomes.dedup();
        let _ = writeln!(
            out,
            "{round:5}  {peak:14}  {:40} {:19} {requests}",
            each.join(" "),
            outcomes.join(",")
        );
        progress(&format!(
            "hostile: round {round}: peak VmRSS {peak} KiB, {requests} referrers requests"
        ));
    }
    let hwm = peak_rss_kib(pid).unwrap_or(0);
    let s = stats::summarize(&all_ms);
    let _ = writeln!(
        out,
        "\nVmHWM (peak resident set over the whole run): {hwm} KiB ({:.0} MiB)\npull latency ms: p50 {:.0}, p99 {:.0}, max {:.0}",
        hwm as f64 / 1024.0,
        s.p50,
        s.p99,
        s.max
    );
    Ok(out)
}
