//! pullgate: enforce container image signatures on the node, at pull time
//! and at run time.
//!
//! A gRPC proxy on a unix socket between a CRI client (the kubelet, crictl)
//! and containerd. It intercepts `PullImage`, resolves the image to a digest,
//! discovers the signatures that reference that digest (Notary Project,
//! cosign `.sig`, Sigstore bundles), verifies them against the trust policy
//! and the requirements scope of the pod's namespace, caches the verdict by
//! everything that decided it, and only then lets containerd pull, pinned to
//! the verified digest. `CreateContainer` and `RunPodSandbox` go through the
//! same gate: nothing runs without an allow verdict for its pod's scope,
//! whatever brought the image to containerd.
//!
//! # Structure
//! One module per stage of the pull path; a stage knows only the stage after it.
//! - [`cri`]: the socket, its allowlist, opaque passthrough, the doors that
//!   decode (`PullImage`, `ImageStatus`, `CreateContainer`, `RunPodSandbox`),
//!   status mapping.
//! - `gate`: scope → resolve → cache → discover → verify → decide, one typed
//!   outcome for every door (pull, create, sandbox, verifier, CLI).
//! - `registry`: OCI distribution client with capped reads and deadlines.
//! - `prefetch`: with `[prefetch] enabled`, a cold pull's content written
//!   into containerd's content store under a lease while the gate verifies;
//!   the lease is deleted before a denial is answered.
//! - [`verify`]: signature verifiers (Notary Project JWS and COSE, RFC 3161
//!   timestamps, AWS Signer; cosign `.sig` and Sigstore bundles), X.509
//!   chains, trust stores, the pure OCSP/CRL checks; no I/O; public only
//!   through [`verify::measure`], for the benchmarks.
//! - `revocation_fetch`: the I/O half of revocation: OCSP responses and CRLs
//!   fetched over HTTP and held until their `nextUpdate`, and AWS Signer's
//!   `GetRevocationStatus` call.
//! - [`cache`]: verdict cache with single flight (public for `bench/`).
//! - [`deadline`]: deadlines as a type.
//! - [`metrics`]: Prometheus metrics and the `/metrics` endpoint.
//! - `listener`: the one accept loop of every listener (CRI socket, image
//!   verifier socket, metrics port): a connection cap, backoff on `accept`
//!   errors, closing idle connections.
//! - [`audit`]: one JSON line per decision.
//! - [`reload`]: policy reload on SIGHUP and on file change.
//! - [`policy_bundle`]: a policy bundle's layout and the last good one on
//!   disk, which the gate starts from.
//! - [`policy_source`]: `[trust] source`, a signed policy bundle in a
//!   registry followed by every node: verified against local bootstrap
//!   trust, fetched, kept as the last good bundle on disk, swapped in as a
//!   new generation; and `pullgate policy push`.
//! - `persist`: allow verdicts kept across restarts, HMAC-protected.
//! - [`service`]: `pullgate serve`, everything wired together (systemd readiness too).
//! - [`cli`]: the one-shot commands (`policy check`, `verify`, `config example`, `doctor`).
//! - [`config_file`]: which configuration file every command reads.
//! - [`image_verifier`]: `pullgate` as containerd 2.x's image verifier
//!   (the `bindir` plugin's contract), and the root-only local socket on
//!   which `pullgate serve` answers it through the same gate.
//!
//! Non-features: pullgate does not sign, does not run as an admission webhook,
//! and never re-encodes a CRI message it forwards (a policy bundle is pushed,
//! not signed: signing it is notation's).

pub mod audit;
pub mod cache;
pub(crate) mod capped_body;
pub mod cli;
pub mod config_file;
pub mod cri;
pub mod deadline;
// Only for the fuzz targets in `proxy/fuzz` (`cargo fuzz` sets `--cfg fuzzing`).
#[cfg(fuzzing)]
pub mod fuzz_bridge;
pub mod gate;
pub mod image_verifier;
pub(crate) mod listener;
pub mod metrics;
pub(crate) mod persist;
pub mod policy_bundle;
pub mod policy_source;
pub(crate) mod prefetch;
pub(crate) mod registry;
pub mod reload;
pub(crate) mod revocation_fetch;
pub mod service;
// Public only for `verify::measure` (the criterion benchmarks in `bench/`);
// everything else inside stays crate-private.
pub mod verify;

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
