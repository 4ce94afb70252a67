//! `pullgate policy check FILE`: validate a policy file and explain it.
//!
//! Input: a file path, or a loaded gate and an image. Output: text (or JSON)
//! for a person or a CI job, and an exit status. `main.rs` prints; this
//! module builds what is printed.
//!
//! `policy check` recognises three kinds of file: a Notary
//! `trustpolicy.json` (JSON), a requirements file (TOML with `[[scope]]` or
//! `[[break_glass]]`), or a pullgate config (any other TOML; the trust
//! policy and requirements it names are checked too). It explains what each
//! statement does: registry scopes, level and what each validation does
//! under it, trust stores, trusted identities, and whether AWS Signer
//! signatures can pass it (only by signing-profile ARN; `*` and
//! `x509.subject` identities do not admit them, and it says why); for
//! requirements, signers, identities, fail mode and enforcement mode, and
//! for a scope that lists cosign, its keys, trusted root, keyless signers,
//! signed-identity rule and the checks each kind of cosign signature must
//! pass. The cosign key files and trusted roots are read and parsed as the
//! gate would read them: one that cannot be used fails the check, naming it.
//! Scopes are printed in their canonical spelling (lower-case host, Docker
//! Hub as `docker.io`, no `:443`, the port as its number, loopback aliases
//! as `localhost`), the one they are matched in. Warnings: a global `*`
//! statement of level `skip`; a `*` statement or requirements scope (or the
//! built-in default) weaker than a specific one, which a DNS alias of the
//! registry would fall to; a keyless `subject_regex` not anchored `^…$`.

use std::fmt::Write as _;
use std::path::Path;

use pullgate_policy::config::Config;
use pullgate_policy::identity::ProfileArnKind;
use pullgate_policy::requirements::{
    CosignRequirement, Requirements, ScopeRequirement, SignatureKind, SignedIdentity,
};
use pullgate_policy::{
    Level, SigningProfileRefusal, Statement, StoreType, TrustPolicyDocument, TrustedIdentity,
    Validation,
};

use crate::verify::cosign::trust::CosignTrust;

/// Why `policy check` refused a file.
#[derive(Debug, thiserror::Error)]
///
/// Each message already ends with its cause, so no variant has a
/// [`std::error::Error::source`]: a printer that walks the chain would
/// otherwise print the cause twice.
pub enum CheckError {
    /// The file cannot be read.
    #[error("cannot read {path}: {cause}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        cause: std::io::Error,
    },
    /// The trust policy is invalid.
    #[error("{path}: {cause}")]
    TrustPolicy {
        /// The file.
        path: String,
        /// Why.
        cause: pullgate_policy::trust_policy::Error,
    },
    /// The requirements are invalid.
    #[error("{path}: {cause}")]
    Requirements {
        /// The file.
        path: String,
        /// Why.
        cause: pullgate_policy::requirements::Error,
    },
    /// A `[scope.cosign]` key file or trusted root cannot be used.
    #[error("{path}: requirements scope {scope:?}: {cause}")]
    Cosign {
        /// The requirements file.
        path: String,
        /// The scope.
        scope: String,
        /// Why, naming the key or trusted root file.
        cause: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The pullgate config is invalid.
    #[error("{path}: {cause}")]
    Config {
        /// The file.
        path: String,
        /// Why.
        cause: pullgate_policy::config::ConfigError,
    },
}

fn read(path: &Path) -> Result<String, CheckError> {
    std::fs::read_to_string(path).map_err(|cause| CheckError::Read {
        path: path.display().to_string(),
        cause,
    })
}

/// Validates `path` and explains it.
///
/// Blocking (reads files).
///
/// # Errors
/// [`CheckError`] naming the file and the first problem.
pub fn policy_check(path: &Path) -> Result<String, CheckError> {
    let text = read(path)?;
    let looks_json =
        path.extension().is_some_and(|e| e == "json") || text.trim_start().starts_with('{');
    if looks_json {
        return explain_trust_policy(path, &text);
    }
    let is_requirements = text
        .parse::<toml::Table>()
        .map(|t| t.contains_key("scope") || t.contains_key("break_glass"))
        .unwrap_or(false);
    if is_requirements {
        return explain_requirements(path, &text);
    }
    let config = Config::from_toml(&text).map_err(|cause| CheckError::Config {
        path: path.display().to_string(),
        cause,
    })?;
    let mut out = format!("{}: valid pullgate configuration\n", path.display());
    let _ = writeln!(
        out,
        "  socket {} → containerd {}; enforce_image_status = {}",
        config.server.socket.display(),
        config.server.upstream.display(),
        config.server.enforce_image_status
    );
    let _ = writeln!(
        out,
        "  cache: allow {} s, deny {} s, at most {} verdicts; metrics: {}; audit: {}",
        config.cache.allow_ttl_secs,
        config.cache.deny_ttl_secs,
        config.cache.max_entries,
        if config.metrics.listen.is_empty() {
            "off"
        } else {
            &config.metrics.listen
        },
        config
            .audit
            .path
            .as_ref()
            .map_or_else(|| "off".to_owned(), |p| p.display().to_string()),
    );
    // With `[trust] source`, the files in force are the last good bundle's.
    if let Some(source) = &config.trust.source {
        let _ = writeln!(
            out,
            "  trust: follows {source} (polled every {} s)",
            config.trust.source_poll_seconds
        );
    }
    let Some(trust) = crate::policy_bundle::store::effective_trust(&config) else {
        out.push_str("  no verified bundle of the source on disk: every pull is denied until one is fetched\n");
        return Ok(out);
    };
    out.push('\n');
    let policy = crate::gate::trust_policy_file(&trust);
    out.push_str(&explain_trust_policy(&policy, &read(&policy)?)?);
    if let Some(r) = trust
        .requirements
        .as_deref()
        .filter(|p| !p.as_os_str().is_empty())
    {
        out.push('\n');
        out.push_str(&explain_requirements(r, &read(r)?)?);
    }
    Ok(out)
}

fn explain_trust_policy(path: &Path, text: &str) -> Result<String, CheckError> {
    let doc = TrustPolicyDocument::from_json(text.as_bytes()).map_err(|cause| {
        CheckError::TrustPolicy {
            path: path.display().to_string(),
            cause,
        }
    })?;
    let mut out = format!(
        "{}: valid Notary Project trust policy, {} statement(s)\n",
        path.display(),
        doc.statements().len()
    );
    for s in doc.statements() {
        let scopes: Vec<String> = s
            .registry_scopes()
            .iter()
            .map(ToString::to_string)
            .collect();
        let _ = writeln!(out, "\nstatement {:?}", s.name());
        let _ = writeln!(out, "  registry scopes: {}", scopes.join(", "));
        let _ = writeln!(out, "  verification level: {}", s.level());
        if s.is_global() && s.level() == Level::Skip {
            let _ = writeln!(
                out,
                "  WARNING: the global scope \"*\" has level skip: every repository without \
                 a statement of its own is pulled unverified"
            );
        }
        for v in Validation::ALL {
            let _ = writeln!(out, "    {:<20} {}", v.as_str(), s.enforcement(v));
        }
        if s.trust_stores().is_empty() {
            let _ = writeln!(out, "  no verification: images are forwarded unchecked");
            continue;
        }
        let stores: Vec<String> = s.trust_stores().iter().map(ToString::to_string).collect();
        let _ = writeln!(out, "  trust stores: {}", stores.join(", "));
        let _ = writeln!(out, "  trusted identities:");
        for id in s.trusted_identities() {
            match id {
                TrustedIdentity::SigningProfile(arn) => {
                    let what = match arn.kind() {
                        ProfileArnKind::Profile => "AWS Signer signing profile, any version",
                        ProfileArnKind::ProfileVersion => {
                            "AWS Signer signing profile version, this version only"
                        }
                    };
                    let _ = writeln!(out, "    {id}  ({what})");
                }
                _ => {
                    let _ = writeln!(out, "    {id}");
                }
            }
        }
        explain_aws_signer(&mut out, s);
        let _ = writeln!(out, "  verify timestamp: {}", s.verify_timestamp());
    }
    for w in doc.weaker_global() {
        let _ = writeln!(out, "\nWARNING: {w}");
    }
    Ok(out)
}

/// What the statement does with AWS Signer signatures (verification plugin
/// `com.amazonaws.signer.notation.plugin`, implemented natively).
fn explain_aws_signer(out: &mut String, s: &Statement) {
    let has_arn = s
        .trusted_identities()
        .iter()
        .any(|i| matches!(i, TrustedIdentity::SigningProfile(_)));
    let has_sa_store = s
        .trust_stores()
        .iter()
        .any(|t| t.kind == StoreType::SigningAuthority);
    if !has_arn && !has_sa_store {
        return;
    }
    // Any profile-version ARN: only whether the statement refuses outright matters here.
    let refusal = match s.trusts_signing_profile("") {
        Err(r @ (SigningProfileRefusal::Wildcard | SigningProfileRefusal::NoSigningProfiles)) => {
            Some(r)
        }
        _ => None,
    };
    match refusal {
        Some(why) => {
            let _ = writeln!(out, "  AWS Signer signatures: refused: {why}");
        }
        None if !has_sa_store => {
            let _ = writeln!(
                out,
                "  AWS Signer signatures: refused: the statement names no signingAuthority trust store (put AWS Signer's root in one, e.g. signingAuthority:aws-signer-ts)"
            );
        }
        None => {
            let _ = writeln!(
                out,
                "  AWS Signer signatures: accepted from the signing-profile ARNs above only; revocation through the AWS Signer API ([aws_signer]), as the level's revocation setting says"
            );
            if s.trusted_identities()
                .iter()
                .any(|i| matches!(i, TrustedIdentity::X509Subject(_)))
            {
                let _ = writeln!(
                    out,
                    "  (its x509.subject identities apply to other signatures, never to AWS Signer ones)"
                );
            }
        }
    }
}

fn explain_requirements(path: &Path, text: &str) -> Result<String, CheckError> {
    let r = Requirements::from_toml(text).map_err(|cause| CheckError::Requirements {
        path: path.display().to_string(),
        cause,
    })?;
    let mut out = format!(
        "{}: valid requirements, {} scope(s), {} break-glass digest(s)\n",
        path.display(),
        r.scopes().len(),
        r.break_glass_entries().len()
    );
    for s in r.scopes() {
        let scopes: Vec<String> = s
            .registry_scopes()
            .iter()
            .map(ToString::to_string)
            .collect();
        let kinds: Vec<String> = s
            .signature_kinds()
            .iter()
            .map(ToString::to_string)
            .collect();
        let _ = writeln!(out, "\nscope {:?}", s.name());
        let _ = writeln!(out, "  registry scopes: {}", scopes.join(", "));
        if !s.namespaces().is_empty() {
            let namespaces: Vec<&str> = s.namespaces().iter().map(|p| p.as_str()).collect();
            let _ = writeln!(
                out,
                "  pod namespaces: {} (chosen before every scope that lists none, for these pods only)",
                namespaces.join(", ")
            );
        }
        let _ = writeln!(out, "  signature kinds: {}", kinds.join(", "));
        if let Some(r) = s.signature_repository() {
            let _ = writeln!(
                out,
                "  signatures looked up in: {r} (not next to the image; for the image's digest, as COSIGN_REPOSITORY; credentials as for any repository of {})",
                r.domain()
            );
        }
        explain_statement_need(&mut out, s);
        let _ = writeln!(
            out,
            "  distinct trusted signers required: {}",
            s.min_signers()
        );
        if s.cosign().is_some() && s.min_signers() > 1 {
            let _ = writeln!(
                out,
                "    (counted across kinds: a Notary Project signer by certificate subject, a cosign key by its file name, a keyless cosign signer by issuer and subject)"
            );
        }
        for id in s.identities() {
            let _ = writeln!(out, "  must have signed: {id}");
        }
        if !s.identities().is_empty() && s.cosign().is_some() {
            let _ = writeln!(
                out,
                "    (named identities are Notary Project signers: no cosign signature meets them)"
            );
        }
        if let Some(c) = s.cosign() {
            let trust =
                CosignTrust::load(c.keys(), c.trusted_root()).map_err(|e| CheckError::Cosign {
                    path: path.display().to_string(),
                    scope: s.name().to_owned(),
                    cause: Box::new(e),
                })?;
            explain_cosign(&mut out, c, &trust);
        }
        for a in s.attestations() {
            let signers = match (s.cosign().is_some(), s.needs_notary_statement()) {
                (true, true) => "a [scope.cosign] signer (cosign attest: bundle referrer or .att tag), or signed with notation under the trust policy statement (an application/vnd.in-toto+json referrer)",
                (true, false) => "a [scope.cosign] signer (cosign attest: bundle referrer or .att tag)",
                _ => "signed with notation under the trust policy statement (an application/vnd.in-toto+json referrer of the image)",
            };
            let _ = writeln!(
                out,
                "  attestation required: {} (its in-toto statement naming the image digest, from {signers})",
                a.predicate_type()
            );
            for c in a.conditions() {
                let _ = writeln!(out, "    condition (CEL): {c}");
            }
            if a.uses_now() {
                let _ = writeln!(
                    out,
                    "    (a condition reads now: an allow lasts no longer than it holds)"
                );
            }
        }
        let _ = writeln!(out, "  registry unreachable: {}", s.on_registry_error());
        let _ = writeln!(out, "  mode: {}", s.mode());
    }
    for b in r.break_glass_entries() {
        let scopes: Vec<String> = b.registry_scopes.iter().map(ToString::to_string).collect();
        let _ = writeln!(
            out,
            "\nbreak-glass {} ({}) in {}",
            b.digest,
            b.reason,
            scopes.join(", ")
        );
    }
    for w in r.warnings() {
        let _ = writeln!(out, "\nWARNING: {w}");
    }
    Ok(out)
}

/// Whether a scope needs a Notary Project trust policy statement, and what one does there.
fn explain_statement_need(out: &mut String, s: &ScopeRequirement) {
    let notation = s.signature_kinds().contains(&SignatureKind::Notation);
    let line = match (notation, s.cosign().is_some()) {
        (true, false) => "a trust policy statement must cover these repositories (none: denied; level skip: not verified)",
        (true, true) => "no trust policy statement needed; Notary Project signatures count only under one that verifies (not level skip), cosign signatures under [scope.cosign]; either kind may satisfy",
        _ => "no trust policy statement needed (and none applies): cosign signatures are judged by [scope.cosign]",
    };
    let _ = writeln!(out, "  trust policy: {line}");
}

/// A `[scope.cosign]` table: its signers, trust material and the checks each signature must pass.
fn explain_cosign(out: &mut String, c: &CosignRequirement, trust: &CosignTrust) {
    let _ = writeln!(out, "  cosign:");
    for (path, key) in c.keys().iter().zip(&trust.keys) {
        let _ = writeln!(
            out,
            "    key signer \"{}\": {} key from {}",
            key.name(),
            key.kind(),
            path.display()
        );
    }
    match (c.trusted_root(), &trust.root) {
        (Some(path), Some(root)) => {
            let [cas, tlogs, ctlogs, tsas] = root.counts();
            let _ = writeln!(
                out,
                "    trusted root {}: {cas} certificate authorit(ies), {tlogs} transparency log(s), {ctlogs} CT log(s), {tsas} timestamp authorit(ies); read from the file, never fetched",
                path.display()
            );
        }
        _ => {
            let _ = writeln!(
                out,
                "    no trusted root: key-signed .sig signatures only (Sigstore bundles and keyless signatures need one)"
            );
        }
    }
    for id in c.identities() {
        let _ = writeln!(out, "    keyless signer: {id}");
    }
    let _ = writeln!(
        out,
        "    signed identity: {}",
        match c.signed_identity() {
            SignedIdentity::MatchRepository =>
                "match_repository (a .sig payload's docker-reference must name the repository pulled; a Sigstore bundle counts only when its in-toto statement's subject name does, and cosign v3 writes none: its bundles are refused here)",
            SignedIdentity::Any =>
                "any (neither a .sig payload's docker-reference nor a Sigstore bundle's subject name is checked: the signer's key or identity alone says which repositories it may sign)",
        }
    );
    let log = if c.trusted_root().is_some() {
        "signature, transparency-log entry (verified offline against the trusted root), payload naming the digest"
    } else {
        "signature, payload naming the digest"
    };
    let _ = writeln!(out, "    a key signature must pass: {log}");
    if c.trusted_root().is_some() {
        let _ = writeln!(
            out,
            "    a keyless signature must pass: signature, certificate chain to a CA of the trusted root at the proven signing time and its SCT, transparency-log entry or timestamp, payload naming the digest, and match a keyless signer above"
        );
    }
    let _ = writeln!(
        out,
        "    found at: the sha256-<hex>.sig tag and the referrers (Sigstore bundles, cosign signature artifacts)"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirements_are_explained_and_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("requirements.toml");
        std::fs::write(
            &path,
            "[[scope]]\nname = \"prod\"\nregistry_scopes = [\"r.example/app\"]\n\
             identities = [\"x509.subject: C=US, ST=WA, O=Acme, OU=CI\", \"x509.subject: C=US, ST=WA, O=Acme, OU=QA\"]\n\
             on_registry_error = \"fail_open\"\nmode = \"warn\"\n",
        )
        .unwrap();
        let text = policy_check(&path).unwrap();
        for needle in [
            "valid requirements, 1 scope(s)",
            "scope \"prod\"",
            "distinct trusted signers required: 2",
            "must have signed: x509.subject:",
            "registry unreachable: fail_open",
            "mode: warn",
        ] {
            assert!(text.contains(needle), "{needle:?} missing:\n{text}");
        }
        std::fs::write(&path, "[[scope]]\nname = \"prod\"\nregistry_scopes = []\n").unwrap();
        let err = policy_check(&path).unwrap_err().to_string();
        assert!(err.contains("requirements.toml"), "{err}");
        assert!(err.contains("\"prod\" has no registry_scopes"), "{err}");
    }

    #[test]
    fn cosign_scopes_are_explained_and_their_files_checked() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("release.pub");
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../tests/vectors/containers-image/cosign.pub"),
            &key,
        )
        .unwrap();
        let root = dir.path().join("trusted_root.json");
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../tests/vectors/cosign/trusted_root_pgi.json"),
            &root,
        )
        .unwrap();
        let path = dir.path().join("requirements.toml");
        let write = |kinds: &str, extra: &str| {
            std::fs::write(
                &path,
                format!(
                    "[[scope]]\nname = \"release\"\nregistry_scopes = [\"r.example/app\"]\nsignature_kinds = {kinds}\n{extra}\
                     [scope.cosign]\nkeys = [{:?}]\ntrusted_root = {:?}\n\
                     [[scope.cosign.identities]]\nissuer = \"https://token.actions.githubusercontent.com\"\nsubject_regex = \"^https://github\\\\.com/acme/\"\n",
                    key.display().to_string(),
                    root.display().to_string()
                ),
            )
            .unwrap();
        };
        write("[\"cosign\"]", "");
        let text = policy_check(&path).unwrap();
        for needle in [
            "signature kinds: cosign",
            "no trust policy statement needed (and none applies)",
            "key signer \"release.pub\": ECDSA P-256 key from",
            "1 transparency log(s)",
            "never fetched",
            "keyless signer: issuer \"https://token.actions.githubusercontent.com\" subject ~ /^https://github\\.com/acme//",
            "signed identity: match_repository",
            "cosign v3 writes none: its bundles are refused here",
            "a key signature must pass: signature, transparency-log entry",
            "sha256-<hex>.sig tag and the referrers",
        ] {
            assert!(text.contains(needle), "{needle:?} missing:\n{text}");
        }
        write(
            "[\"notation\", \"cosign\"]",
            "min_signers = 2\nidentities = [\"x509.subject: C=US, ST=WA, L=Seattle, O=Acme, CN=ci\"]\n",
        );
        let text = policy_check(&path).unwrap();
        for needle in [
            "either kind may satisfy",
            "counted across kinds",
            "named identities are Notary Project signers",
        ] {
            assert!(text.contains(needle), "{needle:?} missing:\n{text}");
        }
        // A key file that is not a key: the check fails, naming it.
        std::fs::write(&key, "not a key").unwrap();
        let err = policy_check(&path).unwrap_err().to_string();
        assert!(err.contains("requirements scope \"release\""), "{err}");
        assert!(err.contains(&key.display().to_string()), "{err}");
    }

    #[test]
    fn a_skipped_global_scope_is_warned_about_and_scopes_print_canonically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trustpolicy.json");
        let doc = r#"{"version":"1.0","trustPolicies":[
            {"name":"hub","registryScopes":["Index.Docker.IO:443/nginx"],"signatureVerification":{"level":"strict"},"trustStores":["ca:n"],"trustedIdentities":["*"]},
            {"name":"rest","registryScopes":["*"],"signatureVerification":{"level":"skip"}}
        ]}"#;
        std::fs::write(&path, doc).unwrap();
        let text = policy_check(&path).unwrap();
        assert!(
            text.contains("registry scopes: docker.io/library/nginx\n"),
            "{text}"
        );
        assert_eq!(text.matches("WARNING").count(), 2, "{text}");
        let warning = text.lines().find(|l| l.contains("WARNING")).unwrap();
        assert!(warning.contains("\"*\" has level skip"), "{warning}");
        // Issue 23, item 1: `*` is weaker than "hub", and an alias pullgate
        // cannot fold would fall to it.
        let weaker = text
            .lines()
            .find(|l| l.contains("is weaker than statement \"hub\""))
            .unwrap_or_else(|| panic!("{text}"));
        assert!(weaker.contains("integrity: skip, not enforce"), "{weaker}");
        assert!(weaker.contains("DNS alias"), "{weaker}");
        // A skipped exact scope is a choice, not a warning; a strict `*` is fine.
        let doc = r#"{"version":"1.0","trustPolicies":[
            {"name":"one","registryScopes":["r.example/unsigned"],"signatureVerification":{"level":"skip"}},
            {"name":"rest","registryScopes":["*"],"signatureVerification":{"level":"strict"},"trustStores":["ca:n"],"trustedIdentities":["*"]}
        ]}"#;
        std::fs::write(&path, doc).unwrap();
        assert!(!policy_check(&path).unwrap().contains("WARNING"));
    }

    /// Issue 23, items 1 and 7: a weaker `*` requirements scope and an
    /// unanchored keyless pattern are warned about.
    #[test]
    fn requirements_warnings_are_printed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("requirements.toml");
        std::fs::write(
            &path,
            "[[scope]]\nname = \"prod\"\nregistry_scopes = [\"localhost:05000/prod/app\"]\nmin_signers = 2\nsignature_repository = \"r.example/sigs\"\n\
             [[scope]]\nname = \"rest\"\nregistry_scopes = [\"*\"]\non_registry_error = \"fail_open\"\n\
             [[break_glass]]\ndigest = \"sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"\nreason = \"INC-1\"\nregistry_scopes = [\"127.0.0.1:5000/prod/app\"]\n",
        )
        .unwrap();
        let text = policy_check(&path).unwrap();
        for needle in [
            "registry scopes: localhost:5000/prod/app\n",
            "signatures looked up in: r.example/sigs (not next to the image",
            "the global scope \"*\" (scope \"rest\") is weaker than scope \"prod\" (min_signers 1, not 2, fail_open)",
            "(INC-1) in localhost:5000/prod/app",
        ] {
            assert!(text.contains(needle), "{needle:?} missing:\n{text}");
        }
    }

    #[test]
    fn attestation_requirements_are_printed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("requirements.toml");
        let key = dir.path().join("ci.pub");
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../tests/vectors/containers-image/cosign.pub"),
            &key,
        )
        .unwrap();
        std::fs::write(
            &path,
            format!(
                "[[scope]]\nname = \"prod\"\nregistry_scopes = [\"r.example/app\"]\nsignature_kinds = [\"cosign\"]\n\
                 [scope.cosign]\nkeys = [{key:?}]\nsigned_identity = \"any\"\n\
                 [[scope.attestations]]\npredicate_type = \"https://slsa.dev/provenance/v1\"\n\
                 conditions = ['predicate.buildDefinition.externalParameters.workflow.repository == \"https://github.com/acme/app\"', 'now - timestamp(predicate.runDetails.metadata.startedOn) < duration(\"24h\")']\n"
            ),
        )
        .unwrap();
        let text = policy_check(&path).unwrap();
        for needle in [
            "attestation required: https://slsa.dev/provenance/v1 (",
            "    condition (CEL): predicate.buildDefinition.externalParameters.workflow.repository == \"https://github.com/acme/app\"\n",
            "(a condition reads now: an allow lasts no longer than it holds)",
        ] {
            assert!(text.contains(needle), "{needle:?} missing:\n{text}");
        }
        // A condition that does not compile refuses the file.
        std::fs::write(
            &path,
            "[[scope]]\nname = \"prod\"\nregistry_scopes = [\"r.example/app\"]\nsignature_kinds = [\"cosign\"]\n\
             [scope.cosign]\nkeys = [\"/k.pub\"]\n[[scope.attestations]]\npredicate_type = \"p\"\nconditions = ['predicate.x ==']\n",
        )
        .unwrap();
        let err = policy_check(&path).unwrap_err().to_string();
        assert!(err.contains("which is not valid CEL"), "{err}");
    }

    #[test]
    fn aws_signer_identities_are_explained() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trustpolicy.json");
        let policy = |ids: &str| {
            format!(
                r#"{{"version":"1.0","trustPolicies":[{{"name":"aws","registryScopes":["r.example/app"],"signatureVerification":{{"level":"strict"}},"trustStores":["signingAuthority:aws-signer-ts"],"trustedIdentities":{ids}}}]}}"#
            )
        };
        let check = |ids: &str| {
            std::fs::write(&path, policy(ids)).unwrap();
            policy_check(&path).unwrap()
        };
        let text = check(
            r#"["arn:aws:signer:us-west-2:123456789012:/signing-profiles/release", "x509.subject: C=US, ST=WA, O=Acme"]"#,
        );
        for needle in [
            "arn:aws:signer:us-west-2:123456789012:/signing-profiles/release  (AWS Signer signing profile, any version)",
            "AWS Signer signatures: accepted from the signing-profile ARNs above only",
            "x509.subject identities apply to other signatures, never to AWS Signer ones",
        ] {
            assert!(text.contains(needle), "{needle:?} missing:\n{text}");
        }
        let text = check(r#"["*"]"#);
        assert!(
            text.contains("AWS Signer signatures: refused: the trust policy statement's trusted identity is \"*\""),
            "{text}"
        );
        let text = check(r#"["x509.subject: C=US, ST=WA, O=AWS, CN=AWS Signer"]"#);
        assert!(
            text.contains("AWS Signer signatures: refused: the trust policy statement lists no AWS Signer signing-profile ARN"),
            "{text}"
        );
        std::fs::write(
            &path,
            policy(r#"["arn:aws:signer:us-west-2:1:/signing-jobs/x"]"#),
        )
        .unwrap();
        let err = policy_check(&path).unwrap_err().to_string();
        assert!(
            err.contains("not an AWS Signer signing-profile ARN"),
            "{err}"
        );
    }
}
