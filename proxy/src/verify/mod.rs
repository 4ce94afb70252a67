//! Signature verifiers: bytes and trust anchors in, a report of every check out.
//!
//! Input: a signature envelope exactly as fetched (bytes plus its media type),
//! the trust anchors the policy selected, and the time to verify at (`now`,
//! read by the gate, never here). Output: a report naming the signed target,
//! the signer, and the result of each [`Validation`] that was run. Deciding
//! what a failed check means (enforce, log, skip) belongs to `policy`; the
//! gate compares the signed target with the resolved digest.
//!
//! Submodules:
//! - `notary`: Notary Project signatures (JWS and COSE_Sign1 envelopes, RFC
//!   3161 timestamp countersignatures, AWS Signer); every failed check is a
//!   `notary::NotaryError`.
//! - `cosign`: cosign simple-signing layers and Sigstore bundles (keys,
//!   keyless Fulcio certificates, Rekor and TSA proofs), on `sigstore-verify`.
//! - `intoto`: the in-toto statement of a DSSE envelope (attestations:
//!   payload type, predicate type, subject digest).
//! - `x509`: certificate parsing, public keys, certificate signatures (the
//!   Notary Project's chain rules are `notary::chain`).
//! - `revocation`: the pure OCSP and CRL checks of a chain, over data the
//!   caller fetched (`crate::revocation_fetch` does the I/O).
//! - `trust_store`: the notation trust-store directory, loaded once at startup.
//! - [`measure`]: the only public items, thin wrappers for `bench/`.
//!
//! Limits: an envelope over `notary::MAX_ENVELOPE_BYTES` or with more than
//! `notary::MAX_CHAIN_CERTIFICATES` certificates is refused before any
//! cryptography. Verifiers are synchronous, CPU-bound and do no I/O; the gate
//! runs them on `spawn_blocking`. They never panic on any input.

pub(crate) mod cosign;
pub(crate) mod intoto;
pub mod measure;
pub(crate) mod notary;
pub(crate) mod revocation;
pub(crate) mod rfc3339;
pub(crate) mod trust_store;
pub(crate) mod x509;

#[cfg(test)]
pub(crate) mod mint;

// The validations and trust store kinds are the policy crate's: one
// vocabulary from the trust policy file to the verifier's report.
pub(crate) use pullgate_policy::{StoreType, Validation, VerifyTimestamp};
