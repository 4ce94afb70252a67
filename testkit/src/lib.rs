//! pullgate's one test PKI and signer: keys, certificates, CRLs, Notary
//! Project JWS and COSE envelopes, RFC 3161 timestamp tokens, cosign
//! signatures and Sigstore bundles, as bytes, PEM and DER.
//!
//! Used by the proxy's unit tests (a dev-dependency), the end-to-end harness
//! (`pullgate-tests`, which attaches what is minted here to images in a
//! registry) and the bench. It names no pullgate crate, so the proxy can
//! depend on it without a cycle; what a test needs as one of the proxy's own
//! types it converts there (`proxy/src/verify/mint.rs`).
//!
//! - [`key`]: [`Key`], a private key for rcgen and for envelope signatures
//!   (fresh P-256 / P-384, fixed test-only RSA keys in `keys/`);
//! - [`cert`]: CA, code-signing and timestamping certificate parameters,
//!   and [`Issued`] certificates;
//! - [`jws`] and [`cose`]: Notary Project envelopes, every field in the
//!   test's hands;
//! - [`timestamp`]: RFC 3161 timestamp tokens, optionally wrong in one place;
//! - [`aws_signer`]: a PKI and envelopes shaped like AWS Signer's;
//! - [`notation`]: [`TestPki`], the root-and-leaf signer images are signed
//!   with end to end, its CRL, and notation's trust-store and trust-policy
//!   files;
//! - [`revocation`]: a PKI naming OCSP responders and CRLs, OCSP responses
//!   and CRLs dated around a fixed "now";
//! - [`tls`]: a CA and a server certificate for a test TLS server;
//! - [`cosign`]: cosign keys, simple-signing payloads, a stand-in
//!   transparency log and key-signed Sigstore bundles;
//! - [`descriptor`]: the OCI descriptor a signature names.
//!
//! pullgate itself never signs: all of this exists so that tests can mint
//! signatures whose every field they control.

mod asn1;
pub mod aws_signer;
pub mod cert;
pub mod cose;
pub mod cosign;
pub mod descriptor;
pub mod jws;
pub mod key;
pub mod notation;
pub mod revocation;
pub mod timestamp;
pub mod tls;

pub use aws_signer::{aws_signer_header, aws_signer_pki, AwsSignerPki};
pub use cert::{ca_params, dn, issue, leaf_params, random_serial, self_signed, tsa_params, Issued};
pub use cose::{cbor, cose_envelope, cose_envelope_with, cose_header, cose_remove, cose_set};
pub use descriptor::{sha256_digest, Descriptor};
pub use jws::{envelope, envelope_signed_by, envelope_with_agent, header, payload, TARGET_DIGEST};
pub use key::Key;
pub use notation::{JwsOptions, KeyType, TestPki};
pub use timestamp::{timestamp_token, TokenSpec};
