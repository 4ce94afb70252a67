//! Errors of trust policy validation: one top enum, one sub-enum per family.
//!
//! Every message names the statement and the offending value, in the Notary
//! Project's terms, so an operator can find the line in `trustpolicy.json`.

use super::{RegistryScope, TrustStoreRef};
use crate::identity::IdentityError;
use crate::level::OverrideError;
use crate::reference::ReferenceError;

/// Why a trust policy document is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Not JSON, or a field has the wrong JSON type.
    #[error("trust policy is not valid JSON (line {line}, column {column}): {detail}")]
    Malformed {
        /// 1-based line of the problem (0 when unknown).
        line: usize,
        /// 1-based column of the problem (0 when unknown).
        column: usize,
        /// The JSON parser's description.
        detail: String,
    },
    /// A rule about the document as a whole.
    #[error(transparent)]
    Document(#[from] DocumentError),
    /// A rule about one statement.
    #[error("trust policy statement {statement:?} {problem}")]
    Statement {
        /// The statement's `name`.
        statement: String,
        /// What is wrong with it.
        problem: StatementError,
    },
}

impl Error {
    pub(super) fn statement(name: &str, problem: impl Into<StatementError>) -> Self {
        Self::Statement {
            statement: name.to_owned(),
            problem: problem.into(),
        }
    }
}

/// Rules about the document as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DocumentError {
    /// A top-level key that version 1.0 does not define.
    #[error("trust policy document has unknown field {field:?}")]
    UnknownField {
        /// The key.
        field: String,
    },
    /// No `version`.
    #[error("trust policy document is missing \"version\", it must be \"1.0\"")]
    MissingVersion,
    /// A `version` other than `1.0`.
    #[error("trust policy document uses unsupported version {found:?}, the supported version is \"1.0\"")]
    UnsupportedVersion {
        /// The version as written.
        found: String,
    },
    /// `trustPolicies` is missing or empty.
    #[error("trust policy document has zero trust policy statements")]
    NoStatements,
    /// A statement without a `name`.
    #[error("trust policy statement number {} is missing a name, every statement requires a name", .index + 1)]
    MissingStatementName {
        /// 0-based position in `trustPolicies`.
        index: usize,
    },
    /// Two statements share a `name`.
    #[error("multiple trust policy statements use the same name {name:?}, statement names must be unique")]
    DuplicateStatementName {
        /// The shared name.
        name: String,
    },
    /// Two statements share a registry scope (including the global `*`).
    #[error("registry scope \"{scope}\" is present in trust policy statements {first:?} and {second:?}, a registry scope can only be associated with one statement")]
    ScopeInMultipleStatements {
        /// The shared scope.
        scope: RegistryScope,
        /// The earlier statement.
        first: String,
        /// The later statement.
        second: String,
    },
}

/// Rules about one statement; shown after `trust policy statement "<name>" `.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StatementError {
    /// A key that version 1.0 does not define (`signatureVerification.<key>` for nested ones).
    #[error("has unknown field {field:?}")]
    UnknownField {
        /// The key, with its parent for nested ones.
        field: String,
    },
    /// `registryScopes`.
    #[error(transparent)]
    Scope(#[from] ScopeError),
    /// `signatureVerification`.
    #[error(transparent)]
    Verification(#[from] VerificationError),
    /// Level other than `skip` without trust stores or without trusted identities.
    #[error("is either missing trust stores or trusted identities, both must be specified")]
    MissingStoresOrIdentities,
    /// Level `skip` with trust stores or trusted identities.
    #[error("is set to skip signature verification but configured with trust stores and/or trusted identities, remove them if signature verification needs to be skipped")]
    SkipWithStoresOrIdentities,
    /// `trustStores`.
    #[error(transparent)]
    TrustStore(#[from] TrustStoreError),
    /// `trustedIdentities`.
    #[error(transparent)]
    Identity(#[from] IdentityError),
}

/// Rules about `registryScopes`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScopeError {
    /// Missing or empty.
    #[error("has zero registry scopes, it must specify registry scopes with at least one value")]
    NoScopes,
    /// `*` next to other scopes.
    #[error("uses wildcard registry scope '*', a wildcard scope cannot be used in conjunction with other scope values")]
    GlobalWithOthers,
    /// Not a fully qualified repository.
    #[error("has registry scope {scope:?}, which is not a fully qualified repository without tag or digest (e.g. \"registry.example.com/team/app\"): {reason}")]
    Invalid {
        /// The scope as written.
        scope: String,
        /// Why it does not parse.
        reason: ReferenceError,
    },
    /// The same scope twice in this statement.
    #[error("lists registry scope \"{scope}\" more than once")]
    Repeated {
        /// The repeated scope.
        scope: RegistryScope,
    },
}

/// Rules about `signatureVerification`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerificationError {
    /// No `signatureVerification.level`.
    #[error("has no signature verification level, set \"signatureVerification\": {{\"level\": \"strict\"}} (or permissive, audit, skip)")]
    MissingLevel,
    /// A level that is not strict/permissive/audit/skip.
    #[error("has unsupported signature verification level {value:?}, supported values are \"strict\", \"permissive\", \"audit\" and \"skip\"")]
    UnknownLevel {
        /// The level as written.
        value: String,
    },
    /// An `override` entry the spec does not allow.
    #[error(transparent)]
    Override(#[from] OverrideError),
    /// A `verifyTimestamp` that is not always/afterCertExpiry.
    #[error("has unsupported verifyTimestamp {value:?}, supported values are \"always\" and \"afterCertExpiry\"")]
    UnknownVerifyTimestamp {
        /// The value as written.
        value: String,
    },
}

/// Rules about `trustStores`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrustStoreError {
    /// No `:` between type and name (this includes `*`).
    #[error("has malformed trust store value {value:?}, the required format is <type>:<name>, e.g. \"ca:acme-rockets\"")]
    Malformed {
        /// The value as written.
        value: String,
    },
    /// A type other than ca/signingAuthority/tsa.
    #[error("uses an unsupported trust store type {kind:?} in trust store value {value:?}, supported types are \"ca\", \"signingAuthority\" and \"tsa\"")]
    UnsupportedType {
        /// The value as written.
        value: String,
        /// The part before the first `:`.
        kind: String,
    },
    /// A name outside `[a-zA-Z0-9_.-]+`, or `.`/`..`.
    #[error("uses an unsupported trust store name {name:?} in trust store value {value:?}, a name must match [a-zA-Z0-9_.-]+ and must not be \".\" or \"..\"")]
    InvalidName {
        /// The value as written.
        value: String,
        /// The part after the first `:`.
        name: String,
    },
    /// The named store is not present (see `TrustPolicyDocument::check_trust_stores`).
    #[error("refers to a trust store that does not exist: the trust store {:?} of type \"{}\" does not exist", .store.name, .store.kind)]
    NotFound {
        /// The missing store.
        store: TrustStoreRef,
    },
}
