//! The Notary Project trust policy (`trustpolicy.json`, version 1.0), validated into types.
//!
//! Input: the bytes of the file (the caller reads it). Output: a
//! [`TrustPolicyDocument`] that has passed every rule of the spec's
//! "Trust Policy" section and notation's validation, or the first rule it
//! breaks as an [`Error`] naming the statement and the value. Whether the
//! named trust stores exist is the one check that needs the file system;
//! the caller answers it through [`TrustPolicyDocument::check_trust_stores`].
//!
//! Then, per image: [`TrustPolicyDocument::statement_for`] picks the
//! statement (exact registry scope, else the global `*`), and the
//! [`Statement`] says what each validation does, which trust stores and
//! identities are trusted, and when timestamps are verified.
//!
//! Stricter than notation, on purpose (each refusal names the value):
//! unknown JSON keys are refused, not ignored; identity types other than
//! `x509.subject` and AWS Signer signing-profile ARNs are refused (pullgate
//! runs no plugins; it implements the AWS Signer plugin's identity check
//! itself, [`Statement::trusts_signing_profile`]); trust store names
//! `.` and `..` are refused (they would escape the store directory);
//! scopes must parse as [`Repository`] (so `local/x` OCI-layout scopes are
//! refused, and `docker.io/nginx` means `docker.io/library/nginx`).
//!
//! Scopes are canonicalised at load, as image references are
//! ([`crate::reference`], "Canonical form"): `Docker.IO:443/nginx` is the
//! scope `docker.io/library/nginx`. Refusing non-canonical scopes would
//! also be safe, but canonicalising keeps notation's own files loading and
//! makes two spellings of one repository in two statements the spec's
//! "only one applicable trust policy" conflict, which is refused. Scopes
//! are kept in [`Repository::scope_form`] (loopback aliases written
//! `localhost`), so `localhost:5000/app` and `127.0.0.1:5000/app` are one
//! scope, and an image matches a scope under any loopback alias.
//!
//! Spec: <https://github.com/notaryproject/specifications/blob/main/specs/trust-store-trust-policy.md>

/// notation 2's name for the OCI trust policy (`~/.config/notation/trustpolicy.oci.json`).
pub const OCI_TRUST_POLICY: &str = "trustpolicy.oci.json";

/// notation 1's name for the trust policy.
pub const TRUST_POLICY: &str = "trustpolicy.json";

/// notation 2's blob trust policy, which signs files, not images.
pub const BLOB_TRUST_POLICY: &str = "trustpolicy.blob.json";

mod error;
mod raw;
#[cfg(test)]
mod tests;
mod weaker;

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

pub use error::{
    DocumentError, Error, ScopeError, StatementError, TrustStoreError, VerificationError,
};
pub use weaker::{WeakerGlobal, Weakness};

use crate::identity::{
    parse_trusted_identities, DistinguishedName, SigningProfileArn, TrustedIdentity, WILDCARD,
};
use crate::level::{
    Enforcement, Level, TimestampRevocation, Validation, VerificationLevel, VerifyTimestamp,
};
use crate::reference::Repository;

/// The only trust policy version this crate reads.
pub const SUPPORTED_VERSION: &str = "1.0";

/// A validated trust policy document. Construct it with [`TrustPolicyDocument::from_json`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustPolicyDocument {
    statements: Vec<Statement>,
}

/// One validated trust policy statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    name: String,
    scopes: Vec<RegistryScope>,
    verification: VerificationLevel,
    verify_timestamp: VerifyTimestamp,
    timestamp_revocation: TimestampRevocation,
    trust_stores: Vec<TrustStoreRef>,
    trusted_identities: Vec<TrustedIdentity>,
}

/// Why a statement does not trust an AWS Signer signature's signing profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SigningProfileRefusal {
    /// The statement's identity is `*`, which AWS Signer signatures do not accept.
    #[error("the trust policy statement's trusted identity is \"*\", which AWS Signer signatures do not accept (the signing certificate is AWS Signer's, shared by every AWS customer); list the signing-profile ARNs to trust")]
    Wildcard,
    /// The statement lists only `x509.subject` identities.
    #[error("the trust policy statement lists no AWS Signer signing-profile ARN (x509.subject identities do not apply to AWS Signer signatures: the signing certificate subject is the same for every AWS customer)")]
    NoSigningProfiles,
    /// No listed signing-profile ARN matches.
    #[error("its signing profile is not among the trust policy statement's trusted signing-profile ARNs")]
    NotListed,
}

/// One entry of `registryScopes`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RegistryScope {
    /// `*`: every repository without a statement of its own.
    Global,
    /// A fully qualified repository.
    Repository(Repository),
}

impl fmt::Display for RegistryScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Global => f.write_str(WILDCARD),
            Self::Repository(r) => write!(f, "{r}"),
        }
    }
}

/// The type of a named trust store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StoreType {
    /// `ca`: roots for signatures under the `notary.x509` signing scheme.
    Ca,
    /// `signingAuthority`: roots for the `notary.x509.signingAuthority` scheme.
    SigningAuthority,
    /// `tsa`: roots of timestamping authorities.
    Tsa,
}

impl StoreType {
    /// The spelling in `trustpolicy.json` and in the trust store directory layout.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ca => "ca",
            Self::SigningAuthority => "signingAuthority",
            Self::Tsa => "tsa",
        }
    }
}

impl FromStr for StoreType {
    type Err = crate::level::UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ca" => Ok(Self::Ca),
            "signingAuthority" => Ok(Self::SigningAuthority),
            "tsa" => Ok(Self::Tsa),
            _ => Err(crate::level::UnknownValue {
                what: "trust store type",
                value: s.to_owned(),
            }),
        }
    }
}

impl fmt::Display for StoreType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A named trust store, `<type>:<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrustStoreRef {
    /// The store's type.
    pub kind: StoreType,
    /// The store's name (`[a-zA-Z0-9_.-]+`, not `.` or `..`).
    pub name: String,
}

impl fmt::Display for TrustStoreRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.name)
    }
}

impl FromStr for TrustStoreRef {
    type Err = TrustStoreError;

    /// Parses `ca:acme-rockets`.
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        // "Each named trust store uses the format `{trust-store-type}:{named-store}`.
        //  Currently supported values for `trust-store-type` are `ca`,
        //  `signingAuthority` and `tsa`."
        // https://github.com/notaryproject/specifications/blob/main/specs/trust-store-trust-policy.md#trust-policy-properties
        let Some((kind, name)) = value.split_once(':') else {
            return Err(TrustStoreError::Malformed {
                value: value.to_owned(),
            });
        };
        let kind: StoreType = kind.parse().map_err(|_| TrustStoreError::UnsupportedType {
            value: value.to_owned(),
            kind: kind.to_owned(),
        })?;
        // notation-go (internal/file.IsValidFileName) accepts names matching
        // `^[a-zA-Z0-9_.-]+$`; "." and ".." match that too but name no store.
        let valid = !name.is_empty()
            && name != "."
            && name != ".."
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !valid {
            return Err(TrustStoreError::InvalidName {
                value: value.to_owned(),
                name: name.to_owned(),
            });
        }
        Ok(Self {
            kind,
            name: name.to_owned(),
        })
    }
}

impl TrustPolicyDocument {
    /// Parses and validates `trustpolicy.json`, except whether the trust stores exist.
    ///
    /// # Errors
    ///
    /// [`Error::Malformed`] for bad JSON, otherwise the first rule broken, in
    /// document order, naming the statement and the value.
    pub fn from_json(bytes: &[u8]) -> Result<Self, Error> {
        let doc: raw::Document = serde_json::from_slice(bytes).map_err(|e| {
            let position = format!(" at line {} column {}", e.line(), e.column());
            let detail = e.to_string();
            Error::Malformed {
                line: e.line(),
                column: e.column(),
                detail: detail.strip_suffix(&position).unwrap_or(&detail).to_owned(),
            }
        })?;
        if let Some(field) = doc.unknown.keys().next() {
            return Err(DocumentError::UnknownField {
                field: field.clone(),
            }
            .into());
        }
        // "`version`(*string*): This REQUIRED property is the version of the
        //  trust policy. The supported value is `1.0`."
        // https://github.com/notaryproject/specifications/blob/main/specs/trust-store-trust-policy.md#trust-policy-properties
        match doc.version.as_deref() {
            None | Some("") => return Err(DocumentError::MissingVersion.into()),
            Some(SUPPORTED_VERSION) => {}
            Some(other) => {
                return Err(DocumentError::UnsupportedVersion {
                    found: other.to_owned(),
                }
                .into())
            }
        }
        let raw_statements = doc.trust_policies.unwrap_or_default();
        if raw_statements.is_empty() {
            return Err(DocumentError::NoStatements.into());
        }
        let mut statements: Vec<Statement> = Vec::with_capacity(raw_statements.len());
        let mut scope_owner: HashMap<RegistryScope, usize> = HashMap::new();
        for (index, raw) in raw_statements.into_iter().enumerate() {
            let statement = Statement::from_raw(index, raw, &statements)?;
            // "There can only be one trust policy that uses a global scope."
            // "For a given artifact there MUST be only one applicable trust
            //  policy, except for trust policy with global scope."
            // https://github.com/notaryproject/specifications/blob/main/specs/trust-store-trust-policy.md#registry-scopes-constraints
            for scope in &statement.scopes {
                if let Some(&owner) = scope_owner.get(scope) {
                    let first = statements
                        .get(owner)
                        .map(|s| s.name.clone())
                        .unwrap_or_default();
                    return Err(DocumentError::ScopeInMultipleStatements {
                        scope: scope.clone(),
                        first,
                        second: statement.name.clone(),
                    }
                    .into());
                }
            }
            for scope in &statement.scopes {
                scope_owner.insert(scope.clone(), statements.len());
            }
            statements.push(statement);
        }
        Ok(Self { statements })
    }

    /// Checks that every trust store a statement names exists, as `exists(kind, name)` says.
    ///
    /// # Errors
    ///
    /// The first missing store, as [`TrustStoreError::NotFound`] inside [`Error::Statement`].
    pub fn check_trust_stores(
        &self,
        exists: impl Fn(StoreType, &str) -> bool,
    ) -> Result<(), Error> {
        for statement in &self.statements {
            for store in &statement.trust_stores {
                if !exists(store.kind, &store.name) {
                    return Err(Error::statement(
                        &statement.name,
                        TrustStoreError::NotFound {
                            store: store.clone(),
                        },
                    ));
                }
            }
        }
        Ok(())
    }

    /// The statement that applies to `repo`: an exact scope, else the global one; `None` if neither.
    pub fn statement_for(&self, repo: &Repository) -> Option<&Statement> {
        self.position_for(repo).and_then(|i| self.statements.get(i))
    }

    /// The position in [`Self::statements`] of the statement that applies
    /// to `repo` (as [`Self::statement_for`] chooses it); `None` if none does.
    pub fn position_for(&self, repo: &Repository) -> Option<usize> {
        // "1. *Exact match*: If there exists a trust policy whose scope
        //  contains the artifact's repository URI then the aforementioned
        //  policy MUST be used for signature evaluation. […]
        //  1. *Global*: If there exists a trust policy with global scope then
        //  use that policy for signature evaluation. Otherwise, fail the
        //  signature verification."
        // https://github.com/notaryproject/specifications/blob/main/specs/trust-store-trust-policy.md#selecting-a-trust-policy-based-on-artifact-uri
        let exact = self.statements.iter().position(|s| {
            s.scopes
                .iter()
                .any(|scope| matches!(scope, RegistryScope::Repository(r) if repo.is_in_scope(r)))
        });
        exact.or_else(|| self.statements.iter().position(Statement::is_global))
    }

    /// All statements, in document order.
    pub fn statements(&self) -> &[Statement] {
        &self.statements
    }
}

impl Statement {
    fn from_raw(index: usize, raw: raw::Statement, earlier: &[Statement]) -> Result<Self, Error> {
        let name = match raw.name {
            Some(n) if !n.is_empty() => n,
            _ => return Err(DocumentError::MissingStatementName { index }.into()),
        };
        // "`name`(*string*): This REQUIRED property represents the name of the trust policy."
        // https://github.com/notaryproject/specifications/blob/main/specs/trust-store-trust-policy.md#trust-policy-properties
        // Uniqueness is notation-go's rule (verifier/trustpolicy/oci.go, Validate).
        if earlier.iter().any(|s| s.name == name) {
            return Err(DocumentError::DuplicateStatementName { name }.into());
        }
        let fail = |problem: StatementError| Error::statement(&name, problem);

        let sv = raw.signature_verification;
        let unknown = raw.unknown.keys().cloned().chain(sv.iter().flat_map(|sv| {
            sv.unknown
                .keys()
                .map(|k| format!("signatureVerification.{k}"))
        }));
        if let Some(field) = unknown.into_iter().next() {
            return Err(fail(StatementError::UnknownField { field }));
        }

        let scopes =
            parse_scopes(raw.registry_scopes.unwrap_or_default()).map_err(|e| fail(e.into()))?;

        let Some(sv) = sv else {
            return Err(fail(VerificationError::MissingLevel.into()));
        };
        let level = match sv.level.as_deref() {
            None | Some("") => return Err(fail(VerificationError::MissingLevel.into())),
            Some(l) => l.parse::<Level>().map_err(|_| {
                fail(
                    VerificationError::UnknownLevel {
                        value: l.to_owned(),
                    }
                    .into(),
                )
            })?,
        };
        let overrides = sv.overrides.unwrap_or_default().0;
        let verification = VerificationLevel::with_overrides(
            level,
            overrides.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )
        .map_err(|e| fail(VerificationError::from(e).into()))?;
        let verify_timestamp = match sv.verify_timestamp.as_deref() {
            // notation-go treats an empty or absent `verifyTimestamp` as "always".
            None | Some("") => VerifyTimestamp::Always,
            Some(v) => v.parse().map_err(|_| {
                fail(
                    VerificationError::UnknownVerifyTimestamp {
                        value: v.to_owned(),
                    }
                    .into(),
                )
            })?,
        };
        let timestamp_revocation = match sv.skip_timestamp_revocation_check {
            Some(true) => TimestampRevocation::Skip,
            _ => TimestampRevocation::Check,
        };

        let raw_stores = raw.trust_stores.unwrap_or_default();
        let raw_identities = raw.trusted_identities.unwrap_or_default();
        // notation-go (validateCore): "skip" takes no trust stores or identities,
        // every other level needs both. The spec also says "`skip` cannot be used
        // with a global scope (`*`)", but notation accepts that (upstream e2e
        // `skip_trustpolicy.json`), so it is accepted here; see `Statement::is_global`.
        let (trust_stores, trusted_identities) = if level == Level::Skip {
            if !raw_stores.is_empty() || !raw_identities.is_empty() {
                return Err(fail(StatementError::SkipWithStoresOrIdentities));
            }
            (Vec::new(), Vec::new())
        } else {
            // "`trustStores`(*array of string*): This REQUIRED property […]
            //  `trustedIdentities`(*array of strings*): This REQUIRED property"
            // https://github.com/notaryproject/specifications/blob/main/specs/trust-store-trust-policy.md#trust-policy-properties
            if raw_stores.is_empty() || raw_identities.is_empty() {
                return Err(fail(StatementError::MissingStoresOrIdentities));
            }
            let mut stores: Vec<TrustStoreRef> = Vec::with_capacity(raw_stores.len());
            for value in &raw_stores {
                let store: TrustStoreRef =
                    value.parse().map_err(|e: TrustStoreError| fail(e.into()))?;
                // notation accepts a store listed twice; it means the same store.
                if !stores.contains(&store) {
                    stores.push(store);
                }
            }
            let identities =
                parse_trusted_identities(&raw_identities).map_err(|e| fail(e.into()))?;
            (stores, identities)
        };

        Ok(Self {
            name,
            scopes,
            verification,
            verify_timestamp,
            timestamp_revocation,
            trust_stores,
            trusted_identities,
        })
    }

    /// The statement's `name`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The predefined level (`override` entries are applied by [`Statement::enforcement`]).
    pub fn level(&self) -> Level {
        self.verification.level()
    }

    /// What a failure of `v` does under this statement: the level's table, then `override`.
    pub fn enforcement(&self, v: Validation) -> Enforcement {
        self.verification.enforcement(v)
    }

    /// The named trust stores, in document order (each once). Empty for level `skip`.
    pub fn trust_stores(&self) -> &[TrustStoreRef] {
        &self.trust_stores
    }

    /// The trusted identities. Empty for level `skip`.
    pub fn trusted_identities(&self) -> &[TrustedIdentity] {
        &self.trusted_identities
    }

    /// Whether a signer with this certificate subject is a trusted identity.
    pub fn trusts_identity(&self, signer_subject: &DistinguishedName) -> bool {
        self.trusted_identities
            .iter()
            .any(|id| id.matches(signer_subject))
    }

    /// Whether an AWS Signer signature whose signed
    /// `com.amazonaws.signer.signingProfileVersion` is `profile_version` is
    /// from a trusted identity: the first signing-profile ARN of the
    /// statement that matches it ([`SigningProfileArn::matches`]).
    ///
    /// As the AWS Signer plugin decides (`internal/verifier/verifier.go`):
    /// a statement with the wildcard identity is refused outright ("The
    /// AWSSigner plugin does not support wildcard identity in the trust
    /// policy"), and only signing-profile ARNs are considered: an
    /// `x509.subject` identity never admits such a signature, since the
    /// leaf subject is AWS Signer's, the same for every AWS customer.
    ///
    /// # Errors
    /// [`SigningProfileRefusal`] saying why.
    pub fn trusts_signing_profile(
        &self,
        profile_version: &str,
    ) -> Result<&SigningProfileArn, SigningProfileRefusal> {
        if self.trusted_identities.contains(&TrustedIdentity::Any) {
            return Err(SigningProfileRefusal::Wildcard);
        }
        let mut any_arn = false;
        for id in &self.trusted_identities {
            if let TrustedIdentity::SigningProfile(arn) = id {
                any_arn = true;
                if arn.matches(profile_version) {
                    return Ok(arn);
                }
            }
        }
        Err(if any_arn {
            SigningProfileRefusal::NotListed
        } else {
            SigningProfileRefusal::NoSigningProfiles
        })
    }

    /// When the timestamp countersignature is verified.
    pub fn verify_timestamp(&self) -> VerifyTimestamp {
        self.verify_timestamp
    }

    /// Whether the timestamp's certificate chain is checked for revocation.
    pub fn timestamp_revocation(&self) -> TimestampRevocation {
        self.timestamp_revocation
    }

    /// The registry scopes, in document order.
    pub fn registry_scopes(&self) -> &[RegistryScope] {
        &self.scopes
    }

    /// Whether this is the statement for `*` (every repository without its own statement).
    pub fn is_global(&self) -> bool {
        self.scopes.contains(&RegistryScope::Global)
    }
}

fn parse_scopes(values: Vec<String>) -> Result<Vec<RegistryScope>, ScopeError> {
    // "Each trust policy MUST contain scope property and the scope collection
    //  MUST contain at least one value. The scope MUST contain one of the
    //  following: List of one or more fully qualified repository URIs. The
    //  repository URI MUST NOT contain the asterisk character `*`. A single
    //  value with one asterisk character `*`."
    // https://github.com/notaryproject/specifications/blob/main/specs/trust-store-trust-policy.md#registry-scopes-constraints
    if values.is_empty() {
        return Err(ScopeError::NoScopes);
    }
    if values.len() > 1 && values.iter().any(|v| v == WILDCARD) {
        return Err(ScopeError::GlobalWithOthers);
    }
    let mut scopes = Vec::with_capacity(values.len());
    for value in values {
        let scope = if value == WILDCARD {
            RegistryScope::Global
        } else {
            match value.parse::<Repository>() {
                Ok(r) => RegistryScope::Repository(r.scope_form()),
                Err(reason) => {
                    return Err(ScopeError::Invalid {
                        scope: value,
                        reason,
                    })
                }
            }
        };
        if scopes.contains(&scope) {
            return Err(ScopeError::Repeated { scope });
        }
        scopes.push(scope);
    }
    Ok(scopes)
}
