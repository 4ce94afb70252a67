//! The policy in force: trust policy, requirements, trust store and the
//! cosign trust material of the requirements scopes, loaded as one
//! [`PolicyState`] with its [`PolicyGeneration`] and the fingerprint of the
//! files it came from (what [`Gate::reload`](super::Gate::reload) compares).
//!
//! Which requirements scope and trust policy statement apply to a
//! repository is chosen in one place, [`PolicyState::plan_for`], and given
//! as ids ([`ScopeId`], [`StatementId`]) that only the state that made them
//! gives out: plans, verdict keys and verification jobs carry them, and
//! look the statement or scope up in that state. Persisted verdicts keep
//! names, mapped back to ids on restore ([`PolicyState::key_from_names`]).
//!
//! Which trust policy statement applies ([`Plan`]): a requirements scope
//! whose signature kinds are only "notation" needs a statement (none: the
//! image is denied; level `skip`: it is forwarded unverified). A scope that
//! lists "cosign" needs none: cosign signatures are judged by its
//! `[scope.cosign]` table, and Notary signatures (when it also lists
//! "notation") count only under a statement that verifies them (not `skip`).
//!
//! cosign trust files (the keys and `trusted_root.json` of each
//! `[scope.cosign]`) are read and parsed with the policy, and are part of its
//! fingerprint: a changed key or trusted root starts a new generation, and a
//! file that cannot be used refuses the load (at reload, the old policy stays
//! in force), naming the scope and the file.
//!
//! Blocking: reads files. Called at startup and by the reload poll on the
//! blocking pool, never on a pull's path.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use pullgate_policy::config::TrustConfig;
use pullgate_policy::requirements::{CosignRequirement, Requirements, ScopeRequirement};
use pullgate_policy::{
    Digest, Enforcement, FailMode, Level, Mode, Repository, Statement, StoreType,
    TrustPolicyDocument, Validation,
};

use super::decision::EmptyStore;
use super::key::VerdictKey;

pub(super) mod ids;

use crate::verify::cosign::trust::CosignTrust;
use crate::verify::trust_store::TrustStore;
pub use ids::PolicyGeneration;
use ids::Scope;
pub(crate) use ids::{ScopeId, StatementId};

/// Why the gate could not be built at startup, or a reload was refused.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The trust policy is invalid.
    #[error("trust policy {path}: {source}")]
    Policy {
        /// The file.
        path: String,
        /// Why.
        source: pullgate_policy::trust_policy::Error,
    },
    /// The requirements file is invalid.
    #[error("requirements {path}: {source}")]
    Requirements {
        /// The file.
        path: String,
        /// Why.
        source: pullgate_policy::requirements::Error,
    },
    /// A key file or trusted root of a `[scope.cosign]` table cannot be
    /// read or parsed; the error names the file.
    #[error("requirements scope {scope:?}: {source}")]
    Cosign {
        /// The scope's name.
        scope: String,
        /// Why, naming the file.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The trust store could not be loaded.
    #[error("trust store {path}: {source}")]
    TrustStore {
        /// The directory.
        path: String,
        /// Why.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// More than 65535 trust policy statements or requirements scopes
    /// (they are numbered with `u16`s, to keep verdict keys small).
    #[error("{count} {what}: at most {MAX_ENTRIES} are supported")]
    TooManyEntries {
        /// What there are too many of.
        what: &'static str,
        /// How many there are.
        count: usize,
    },
    /// The registry client could not be built.
    #[error("registry client: {0}")]
    Registry(String),
    /// The revocation configuration is unusable (offline without a CRL directory, a bad CRL file).
    #[error("revocation: {0}")]
    Revocation(String),
}

/// The trust policy, requirements and trust store in force, with their generation.
#[derive(Debug)]
pub(crate) struct PolicyState {
    pub(crate) generation: PolicyGeneration,
    pub(crate) document: TrustPolicyDocument,
    pub(crate) requirements: Requirements,
    pub(crate) store: TrustStore,
    /// The cosign trust material of each requirements scope, by position in
    /// `requirements.scopes()`; `None` for a scope that does not list cosign.
    cosign: Vec<Option<CosignScope>>,
    /// SHA-256 over the content of every file the state was loaded from
    /// (trust policy, requirements, trust store, cosign keys and trusted
    /// roots, `crl_dir`).
    pub(crate) fingerprint: [u8; 32],
}

/// Most statements in a trust policy, and most `[[scope]]` entries, a
/// policy may have: ids are `u16`, so a verdict key stays small.
pub(crate) const MAX_ENTRIES: usize = u16::MAX as usize;

/// A requirements scope's `[scope.cosign]` table with the trust material
/// (keys, trusted root) loaded from the files it names.
#[derive(Debug)]
pub(crate) struct CosignScope {
    pub(crate) requirement: CosignRequirement,
    pub(crate) trust: Arc<CosignTrust>,
}

/// How pulls of one repository are decided: the requirements scope that
/// applies, and which trust policy statement, if any, judges its Notary
/// Project signatures. Made by [`PolicyState::plan_for`] only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Plan {
    pub(crate) scope: ScopeId,
    pub(crate) route: Route,
}

/// What a [`Plan`] does with a pull.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// A notation-only scope, and no statement covers the repository: denied.
    NoStatement,
    /// A notation-only scope whose statement has level `skip`: forwarded unverified.
    Skip(StatementId),
    /// Signatures are discovered and verified. Notary Project signatures
    /// count under `statement`; with `None` (a scope that lists cosign, and
    /// no statement that verifies covers the repository, or the scope does
    /// not list notation) they count for nothing.
    Verify { statement: Option<StatementId> },
}

impl PolicyState {
    /// How requests for `repository` from a pod in `namespace` (`None`: the
    /// request names none) are decided: the one place that chooses the
    /// requirements scope and the trust policy statement of a request.
    pub(crate) fn plan_for(&self, repository: &Repository, namespace: Option<&str>) -> Plan {
        // Positions fit a `u16`: the load refuses more than MAX_ENTRIES.
        let scope = ScopeId(
            self.requirements
                .position_for_pod(repository, namespace)
                .and_then(|i| u16::try_from(i).ok())
                .map_or(Scope::BuiltIn, Scope::Entry),
        );
        let statement = self
            .document
            .position_for(repository)
            .and_then(|i| u16::try_from(i).ok())
            .map(StatementId);
        let requirement = self.scope(scope);
        let level = |id: StatementId| self.statement(id).level();
        let route = if requirement.cosign().is_none() {
            match statement {
                None => Route::NoStatement,
                Some(s) if level(s) == Level::Skip => Route::Skip(s),
                Some(s) => Route::Verify { statement: Some(s) },
            }
        } else {
            Route::Verify {
                statement: statement
                    .filter(|s| requirement.needs_notary_statement() && level(*s) != Level::Skip),
            }
        };
        Plan { scope, route }
    }

    /// The statement `id` names.
    ///
    /// # Panics
    /// Never for an id of this state (only it makes them, in range); the
    /// gate holds one state from plan to verdict.
    pub(crate) fn statement(&self, id: StatementId) -> &Statement {
        &self.document.statements()[usize::from(id.0)]
    }

    /// The requirements scope `id` names (panics as [`Self::statement`]).
    pub(crate) fn scope(&self, id: ScopeId) -> &ScopeRequirement {
        match id.0 {
            Scope::Entry(i) => &self.requirements.scopes()[usize::from(i)],
            Scope::BuiltIn => self.requirements.built_in(),
        }
    }

    /// The `[scope.cosign]` table of scope `id` with its trust material;
    /// `None` when the scope does not list cosign.
    pub(crate) fn cosign(&self, id: ScopeId) -> Option<&CosignScope> {
        match id.0 {
            Scope::Entry(i) => self.cosign.get(usize::from(i))?.as_ref(),
            Scope::BuiltIn => None,
        }
    }

    /// The key of a verdict on `digest` in `repository` under `statement`
    /// and `scope`, in this policy's generation.
    pub(crate) fn key(
        &self,
        statement: Option<StatementId>,
        scope: ScopeId,
        repository: &Repository,
        digest: &Digest,
    ) -> VerdictKey {
        let signatures = self.scope(scope).signature_repository();
        VerdictKey::new(
            statement,
            scope,
            repository,
            signatures,
            digest,
            self.generation,
        )
    }

    /// The key of a persisted verdict: the statement (if any) and scope
    /// (`None`: the built-in default) named, when this policy has them and
    /// the scope looks signatures up where the verdict's were found
    /// (`signatures`: its signature repository, `None` next to the image).
    pub(crate) fn key_from_names(
        &self,
        statement: Option<&str>,
        scope: Option<&str>,
        repository: &Repository,
        signatures: Option<&Repository>,
        digest: &Digest,
    ) -> Option<VerdictKey> {
        let statement = match statement {
            None => None,
            Some(name) => Some(StatementId(
                self.document
                    .statements()
                    .iter()
                    .position(|s| s.name() == name)
                    .and_then(|i| u16::try_from(i).ok())?,
            )),
        };
        let scope = ScopeId(match scope {
            None => Scope::BuiltIn,
            Some(name) => Scope::Entry(
                self.requirements
                    .scopes()
                    .iter()
                    .position(|r| r.name() == name)
                    .and_then(|i| u16::try_from(i).ok())?,
            ),
        });
        if self.scope(scope).signature_repository() != signatures {
            return None;
        }
        Some(self.key(statement, scope, repository, digest))
    }

    /// The statement's name (`None` when no statement judged) and the
    /// scope's name (`None` for the built-in default) of `key`, as
    /// persisted; `None` when the key is not of this policy's generation.
    pub(crate) fn names(&self, key: &VerdictKey) -> Option<(Option<&str>, Option<&str>)> {
        if key.generation != self.generation {
            return None;
        }
        let statement = key.statement.map(|id| self.statement(id).name());
        let scope = match key.scope.0 {
            Scope::Entry(_) => Some(self.scope(key.scope).name()),
            Scope::BuiltIn => None,
        };
        Some((statement, scope))
    }
}

#[cfg(test)]
impl PolicyState {
    /// A state over `document` and `requirements` (no cosign tables), with
    /// an empty trust store.
    pub(crate) fn for_tests(
        document: TrustPolicyDocument,
        requirements: Requirements,
        generation: PolicyGeneration,
    ) -> Self {
        Self {
            generation,
            document,
            cosign: requirements.scopes().iter().map(|_| None).collect(),
            requirements,
            store: TrustStore::default(),
            fingerprint: [0; 32],
        }
    }
}

/// The name of the empty trust store [`PolicyState::deny_all`] refers to:
/// denials under it say so.
pub(crate) const NO_BUNDLE_STORE: &str = "no-policy-bundle-yet";

impl PolicyState {
    /// The policy in force while `[trust] source` has no good bundle (none
    /// on disk, the registry unreachable): one strict statement over `*`
    /// whose only trust store ([`NO_BUNDLE_STORE`]) does not exist, so every
    /// verified pull is denied, saying why. Fail closed.
    ///
    /// # Errors
    /// Never in practice (the document is a constant); typed all the same.
    pub(super) fn deny_all(generation: PolicyGeneration) -> Result<Self, LoadError> {
        let json = format!(
            r#"{{"version":"1.0","trustPolicies":[{{"name":"no-policy-bundle-yet","registryScopes":["*"],"signatureVerification":{{"level":"strict"}},"trustStores":["ca:{NO_BUNDLE_STORE}"],"trustedIdentities":["x509.subject: CN=no policy bundle yet, O=pullgate, ST=none, C=ZZ"]}}]}}"#
        );
        let document = TrustPolicyDocument::from_json(json.as_bytes()).map_err(|source| {
            LoadError::Policy {
                path: "(built-in deny-all policy)".to_owned(),
                source,
            }
        })?;
        let requirements = Requirements::default();
        let cosign = requirements.scopes().iter().map(|_| None).collect();
        Ok(Self {
            generation,
            document,
            requirements,
            store: TrustStore::default(),
            cosign,
            fingerprint: [0; 32],
        })
    }
}

/// Logs, at startup and at each reload, every setting that weakens enforcement.
pub(super) fn log_dangerous(state: &PolicyState) {
    for s in state.document.statements() {
        if s.level() == Level::Skip {
            let scopes: Vec<String> = s
                .registry_scopes()
                .iter()
                .map(ToString::to_string)
                .collect();
            tracing::warn!(statement = s.name(), scopes = %scopes.join(", "),
                "trust policy statement has level skip: images in its scopes are not verified");
        }
    }
    let requirements = &state.requirements;
    for r in requirements.scopes() {
        if r.on_registry_error() == FailMode::Open {
            tracing::warn!(
                scope = r.name(),
                "requirements scope is fail_open: a registry outage lets images through unverified"
            );
        }
        if r.mode() != Mode::Enforce {
            tracing::warn!(scope = r.name(), mode = %r.mode(), "requirements scope does not enforce: denials are only recorded");
        }
    }
    for b in requirements.break_glass_entries() {
        tracing::warn!(digest = %b.digest, reason = b.reason, "break-glass digest configured: allowed without verification");
    }
}

/// The stores of `statement` that would verify a signature (types `ca` and
/// `signingAuthority`), when every one of them is empty or missing and the
/// level enforces authenticity: no signature can pass, and the denial says
/// why. `None` when one of them holds a certificate (or the level only logs
/// authenticity failures).
pub(super) fn without_anchors(
    store: &TrustStore,
    statement: &Statement,
) -> Option<Vec<EmptyStore>> {
    if statement.enforcement(Validation::Authenticity) != Enforcement::Enforce {
        return None;
    }
    let mut empty = Vec::new();
    for r in statement.trust_stores() {
        if r.kind == StoreType::Tsa {
            continue;
        }
        match store.get(r.kind, &r.name) {
            Some(certs) if !certs.is_empty() => return None,
            found => empty.push(EmptyStore {
                store: r.clone(),
                missing: found.is_none(),
            }),
        }
    }
    (!empty.is_empty()).then_some(empty)
}

/// Logs every named store a statement uses that is empty or missing: its
/// certificates are distrusted, and a statement left without any denies.
fn log_empty_stores(state: &PolicyState) {
    for s in state.document.statements() {
        for r in s.trust_stores() {
            let found = state.store.get(r.kind, &r.name);
            if found.is_some_and(|c| !c.is_empty()) {
                continue;
            }
            let problem = if found.is_none() {
                "does not exist"
            } else {
                "is empty"
            };
            tracing::warn!(statement = s.name(), store = %r,
                "named trust store {problem}: nothing it held is trusted");
        }
        if let Some(stores) = without_anchors(&state.store, s) {
            tracing::warn!(statement = s.name(), stores = stores.len(),
                "trust policy statement has no trust anchors left: every image in its scopes is denied");
        }
    }
}

pub(crate) use pullgate_policy::trust_policy::{BLOB_TRUST_POLICY, OCI_TRUST_POLICY, TRUST_POLICY};

/// The trust policy file `[trust] policy` names: the file itself, or, for a
/// directory (notation's configuration directory copied as it is), its
/// `trustpolicy.oci.json` when present, else its `trustpolicy.json`, as
/// notation 2 chooses. A blob policy there is not for images: it is
/// ignored (and logged at each load).
///
/// Blocking (looks at the file system).
pub(crate) fn trust_policy_file(trust: &TrustConfig) -> PathBuf {
    let named = &trust.policy;
    if !named.is_dir() {
        return named.clone();
    }
    let oci = named.join(OCI_TRUST_POLICY);
    if oci.is_file() {
        oci
    } else {
        named.join(TRUST_POLICY)
    }
}

/// Loads trust policy, requirements and trust store as one [`PolicyState`],
/// fingerprinted with the content of `crl_dir`.
pub(super) fn load_policy(
    trust: &TrustConfig,
    crl_dir: Option<&Path>,
    generation: PolicyGeneration,
) -> Result<PolicyState, LoadError> {
    let fingerprint = fingerprint(trust, crl_dir)?;
    let policy_path = &trust_policy_file(trust);
    if trust.policy.join(BLOB_TRUST_POLICY).is_file() {
        tracing::info!(dir = %trust.policy.display(),
            "{BLOB_TRUST_POLICY} is a policy for blobs, not images: ignored");
    }
    let store_path = &trust.store;
    let bytes = read(policy_path)?;
    let document = TrustPolicyDocument::from_json(&bytes).map_err(|source| LoadError::Policy {
        path: policy_path.display().to_string(),
        source,
    })?;
    let requirements = match requirements_path(trust) {
        None => Requirements::default(),
        Some(path) => {
            let bytes = read(path)?;
            let text = String::from_utf8_lossy(&bytes);
            let requirements =
                Requirements::from_toml(&text).map_err(|source| LoadError::Requirements {
                    path: path.display().to_string(),
                    source,
                })?;
            requirements
        }
    };
    let store = TrustStore::load(store_path).map_err(|e| LoadError::TrustStore {
        path: store_path.display().to_string(),
        source: Box::new(e),
    })?;
    for (what, count) in [
        ("trust policy statements", document.statements().len()),
        ("requirements scopes", requirements.scopes().len()),
    ] {
        if count > MAX_ENTRIES {
            return Err(LoadError::TooManyEntries { what, count });
        }
    }
    let cosign = load_cosign(&requirements)?;
    // A named store the policy uses that is empty or missing is not an
    // error: refusing it would keep the old certificates trusted on reload
    // (an operator empties a store to distrust its CA) and leave the node
    // without pullgate at startup. It is logged, and a statement left with no
    // trust anchors denies every image in its scopes, saying why.
    let state = PolicyState {
        generation,
        document,
        requirements,
        store,
        cosign,
        fingerprint,
    };
    log_empty_stores(&state);
    Ok(state)
}

/// Reads and parses the key files and trusted roots of every
/// `[scope.cosign]` table, in scope order.
fn load_cosign(requirements: &Requirements) -> Result<Vec<Option<CosignScope>>, LoadError> {
    requirements
        .scopes()
        .iter()
        .map(|scope| {
            let Some(c) = scope.cosign() else {
                return Ok(None);
            };
            let trust =
                CosignTrust::load(c.keys(), c.trusted_root()).map_err(|e| LoadError::Cosign {
                    scope: scope.name().to_owned(),
                    source: Box::new(e),
                })?;
            tracing::info!(scope = scope.name(), keys = trust.keys.len(),
                trusted_root = ?c.trusted_root(), "cosign trust material loaded");
            Ok(Some(CosignScope {
                requirement: c.clone(),
                trust: Arc::new(trust),
            }))
        })
        .collect()
}

/// The cosign key files and trusted roots the requirements file at `path`
/// names, sorted and without repeats; none when it cannot be read or
/// parsed (loading it reports that).
fn cosign_files(path: &Path) -> Vec<PathBuf> {
    let Ok(bytes) = std::fs::read(path) else {
        return Vec::new();
    };
    let Ok(requirements) = Requirements::from_toml(&String::from_utf8_lossy(&bytes)) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = requirements
        .scopes()
        .iter()
        .filter_map(ScopeRequirement::cosign)
        .flat_map(|c| {
            c.keys()
                .iter()
                .cloned()
                .chain(c.trusted_root().map(Path::to_path_buf))
        })
        .collect();
    files.sort();
    files.dedup();
    files
}

/// `[trust] requirements`, when set to a non-empty path.
fn requirements_path(trust: &TrustConfig) -> Option<&Path> {
    trust
        .requirements
        .as_deref()
        .filter(|p| !p.as_os_str().is_empty())
}

fn read(path: &Path) -> Result<Vec<u8>, LoadError> {
    std::fs::read(path).map_err(|source| LoadError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// SHA-256 over the content of the trust policy, the requirements file,
/// every file under the trust store, the cosign key files and trusted roots
/// the requirements name, and every file of `crl_dir` (each sorted by path),
/// so any change — not just an mtime — is seen, and nothing else is. Persisted verdicts carry it: a verdict made before a CRL was
/// dropped into `crl_dir` is not restored after it.
///
/// Blocking. Reads every CRL file of `crl_dir` each time (the reload poll
/// calls this every `reload_interval_ms`): hashing runs at a few hundred
/// MB/s, so a directory of large CRLs costs that much CPU per poll.
///
/// # Errors
/// A file or directory cannot be read.
pub(crate) fn fingerprint(
    trust: &TrustConfig,
    crl_dir: Option<&Path>,
) -> Result<[u8; 32], LoadError> {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    let mut add = |label: &[u8], path: &Path| -> Result<(), LoadError> {
        let bytes = read(path)?;
        h.update(label);
        h.update(path.as_os_str().as_encoded_bytes());
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(&bytes);
        Ok(())
    };
    add(b"policy", &trust_policy_file(trust))?;
    if let Some(p) = requirements_path(trust) {
        add(b"requirements", p)?;
        // A key or trusted root that changes changes the verdicts made
        // with it: it must start a new generation like a trust store file.
        for f in cosign_files(p) {
            add(b"cosign", &f)?;
        }
    }
    let mut files = Vec::new();
    collect_files(&trust.store, &mut files, 0)?;
    files.sort();
    for f in &files {
        add(b"store", f)?;
    }
    if let Some(dir) = crl_dir {
        let mut crls = Vec::new();
        // Only the directory's own files are read as CRLs (see `revocation_fetch`).
        collect_files(dir, &mut crls, MAX_STORE_DEPTH)?;
        crls.sort();
        for f in &crls {
            add(b"crl", f)?;
        }
    }
    Ok(h.finalize().into())
}

/// Trust store directories are shallow (`x509/<type>/<name>/<file>`); deeper is refused.
const MAX_STORE_DEPTH: usize = 6;

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>, depth: usize) -> Result<(), LoadError> {
    let io = |source| LoadError::Read {
        path: dir.display().to_string(),
        source,
    };
    if depth > MAX_STORE_DEPTH {
        return Ok(());
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        // A missing store is TrustStore::load's to report.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io)?;
        let path = entry.path();
        let meta = std::fs::metadata(&path).map_err(io)?;
        if meta.is_dir() {
            collect_files(&path, out, depth + 1)?;
        } else if meta.is_file() {
            out.push(path);
        }
    }
    Ok(())
}
