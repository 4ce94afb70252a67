//! pullgate's configuration and trust policy.
//!
//! Pure: no I/O, no async, no clock. Callers read files and pass bytes in;
//! callers read the clock and pass `now` in.
//!
//! - [`reference`](mod@reference): image references and digests, parsed once.
//! - [`trust_policy`]: the Notary Project `trustpolicy.json` (version 1.0),
//!   validated at load into a typed document: registry scopes, trust stores,
//!   trusted identities, verification levels and overrides.
//!   [`identity`] parses and matches X.509 distinguished names, [`level`]
//!   holds the verification level table, and [`decision`] turns one
//!   signature's check results into a verdict under a statement.
//! - [`requirements`]: per registry scope, what an image needs beyond one
//!   good signature (signers, named identities, fail mode, enforce/audit/warn,
//!   break-glass digests, the `[scope.cosign]` keys, trusted root and keyless
//!   identities), validated at load.
//! - [`config`]: pullgate's own TOML configuration, every key defaulted;
//!   [`config::example`] and [`requirements::example`] print the commented
//!   reference files (`pullgate config example`).
//!
//! Non-features: this crate does not verify signatures and does not fetch
//! anything. It maps check results to a decision.
#![deny(missing_docs)]

pub mod config;
pub mod decision;
pub mod identity;
pub mod level;
pub mod reference;
pub mod requirements;
#[cfg(test)]
mod serde_fields;
pub mod trust_policy;

pub use decision::{evaluate_signature, Check, SignatureVerdict};
pub use identity::{DistinguishedName, SigningProfileArn, TrustedIdentity};
pub use level::{Enforcement, Level, Validation, VerifyTimestamp};
pub use reference::{Digest, ImageRef, PinnedRef, Repository};
pub use requirements::{AcceptedSigner, FailMode, Mode, Requirements, ScopeRequirement};
pub use trust_policy::{
    SigningProfileRefusal, Statement, StoreType, TrustPolicyDocument, TrustStoreRef,
};
