//! OCI distribution client: the `resolve` and `discover` stages of a pull.
//!
//! Input: an image reference or repository + digest, the pull's
//! [`Credentials`] and its [`Deadline`](crate::deadline::Deadline).
//! Output: typed values — [`Resolved`] (tag → digest), referrer
//! [`Descriptor`]s, parsed and digest-checked [`Manifest`]s, and blob bytes —
//! for the gate, which hands signatures to `verify`. This module never names
//! `crate::verify`.
//!
//! Limits (from `[registry.limits]`): manifests `manifest_bytes` (4 MiB),
//! signature manifests `signature_manifest_bytes` (256 KiB), referrers pages `referrers_index_bytes` (4 MiB) and at most
//! `max_referrers_pages` (16) of them, token responses `token_bytes`
//! (64 KiB), blobs the caller's cap and their descriptor's size. Every body
//! goes through one capped reader (`blob.rs`), which refuses before
//! buffering past the cap.
//!
//! Timeouts: every request runs under `min(deadline, request_timeout)`
//! (10 s by default). A passed pull deadline is its own error kind
//! ([`Error::is_deadline_exceeded`]), distinct from a slow request
//! ([`Error::is_timeout`]).
//!
//! Credentials go only to the registry host they belong to: the kubelet's
//! `AuthConfig` to the host its `server_address` names (else the image's
//! own registry), `[registry] auth_file` entries to their host; mirrors on
//! other hosts get none, and nothing is sent before a host's challenge asks.
//!
//! Layout, from the top (a file imports only files below it):
//! - the stages, each an `impl RegistryClient` block over `client.rs`'s
//!   `fetch`: `resolve.rs` (tags and manifests), `referrers.rs` (referrers
//!   API, tag-schema fallback, cosign `.sig` tag, `Link`), `blob.rs` (blobs),
//!   `push.rs` (blobs and a manifest, for `pullgate policy push`);
//! - `client.rs`: [`RegistryClient`], one request to the first endpoint able
//!   to serve it, with auth retries, redirects, per-host semaphores and the
//!   request timeout;
//! - `auth.rs`: challenges, the token cache and the token flow;
//! - `transport.rs`: endpoints from `hosts.toml` and one HTTP client per TLS
//!   setting, sending one request;
//! - leaves: `credentials.rs` (secrets and the host they belong to, and why
//!   reading them failed), `auth_file.rs` (Docker `config.json` and
//!   credential helpers), `hosts.rs` (containerd `hosts.toml`), `manifest.rs`
//!   (JSON → types), `body.rs` (capped reads, digest checks),
//!   `media_type.rs` (spec strings), `error.rs`.

mod auth;
mod auth_file;
mod blob;
mod body;
mod client;
mod credentials;
mod error;
// The parsers the fuzz targets drive, through `crate::fuzz_bridge`.
#[cfg(fuzzing)]
pub(crate) mod fuzzing;
mod hosts;
mod manifest;
pub(crate) mod media_type;
mod push;
mod referrers;
mod resolve;
mod transport;

pub(crate) use client::RegistryClient;
pub(crate) use credentials::{Credentials, CriAuth};
pub(crate) use error::Error;
pub(crate) use manifest::{Descriptor, Manifest};

#[cfg(test)]
mod tests;
