//! The sigstore-conformance `bundle-verify` vectors, one table row per
//! directory (`tests/vectors/sigstore-conformance/SOURCE.md`): a name
//! ending in `_fail` must be rejected, every other must verify. Rows say
//! which check rejects; the table must list every directory.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use pullgate_policy::requirements::KeylessIdentity;

use super::bundle::verify_blob_bundle;
use super::trust::{CosignKey, CosignTrust, SigstoreRoot};
use super::{CosignCheck, CosignSigner, Report};
use CosignCheck::{Certificate, Payload, Signature, TransparencyLog};
use Outcome::{Failed, KeyRefused, RootRefused, Verified, WrongIdentity};

pub(super) fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors")
}

/// 2026-09-01T00:00:00Z: after every vector was made.
pub(super) fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_788_220_800)
}

const DEFAULT_IDENTITY: &str = "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/.github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main";
const DEFAULT_ISSUER: &str = "https://token.actions.githubusercontent.com";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    Verified,
    /// The trusted root is refused when loaded.
    RootRefused,
    /// The key file is refused when loaded.
    KeyRefused,
    /// Verification fails at this check.
    Failed(CosignCheck),
    /// Every check passes but the signer is not the expected identity.
    WrongIdentity,
}

/// Runs one directory the way the upstream harness does.
pub(super) fn run_case(dir: &Path) -> (Outcome, Option<Report>) {
    let root_path = if dir.join("trusted_root.json").exists() {
        dir.join("trusted_root.json")
    } else {
        PathBuf::new()
    };
    // No trusted_root.json: the harness uses the client's production root;
    // sigstore-rust's is the snapshot embedded in the pinned crate.
    let root_bytes = if root_path.as_os_str().is_empty() {
        sigstore_verify::trust_root::SIGSTORE_PRODUCTION_TRUSTED_ROOT
            .as_bytes()
            .to_vec()
    } else {
        std::fs::read(&root_path).unwrap()
    };
    let Ok(root) = SigstoreRoot::from_json("trusted_root.json", &root_bytes) else {
        return (RootRefused, None);
    };
    let mut trust = CosignTrust {
        keys: Vec::new(),
        root: Some(std::sync::Arc::new(root)),
    };
    let key_path = dir.join("key.pub");
    let keyed = key_path.exists();
    if keyed {
        match CosignKey::from_pem("key.pub", &std::fs::read(&key_path).unwrap()) {
            Ok(key) => trust.keys.push(key),
            Err(_) => return (KeyRefused, None),
        }
    }
    let artifact = std::fs::read(dir.join("artifact"))
        .or_else(|_| std::fs::read(dir.parent().unwrap().join("a.txt")))
        .unwrap();
    let bundle = std::fs::read(dir.join("bundle.sigstore.json")).unwrap();
    let report = verify_blob_bundle(&bundle, &artifact, &trust, now());
    if let Some((check, _)) = report.first_failure() {
        return (Failed(check), Some(report));
    }
    let needed: &[CosignCheck] = if keyed {
        &[Signature, TransparencyLog]
    } else {
        &[Signature, Certificate, TransparencyLog]
    };
    for check in needed {
        assert_eq!(
            report.check(*check).map(|r| r.is_ok()),
            Some(true),
            "{dir:?}: {check} not run"
        );
    }
    let identity =
        std::fs::read_to_string(dir.join("identity")).unwrap_or(DEFAULT_IDENTITY.to_owned());
    let issuer = std::fs::read_to_string(dir.join("issuer")).unwrap_or(DEFAULT_ISSUER.to_owned());
    let trusted = KeylessIdentity::new(
        issuer.trim(),
        &format!("^{}$", regex_escape(identity.trim())),
    )
    .unwrap();
    let outcome = match &report.signer {
        Some(CosignSigner::Key { name }) if keyed && name == "key.pub" => Verified,
        Some(CosignSigner::Keyless { issuer, subject })
            if !keyed && trusted.matches(issuer, subject) =>
        {
            Verified
        }
        _ => WrongIdentity,
    };
    (outcome, Some(report))
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let special = "\\.+*?()|[]{}^$#&-~".contains(c);
            special
                .then_some('\\')
                .into_iter()
                .chain(std::iter::once(c))
        })
        .collect()
}

/// Every `bundle-verify` directory and what pullgate makes of it. A `_fail`
/// directory must not be `Verified`; every other must be. Where a `_fail`
/// case's first error is not the one its name describes, the row says so:
/// `sigstore-verify` validates structure (inclusion proof and checkpoint
/// shape) before it looks at certificates.
const CASES: &[(&str, Outcome)] = &[
    ("bundle-empty-certificate-chain_fail", Failed(Signature)),
    ("bundle-from-wrong-instance_fail", Failed(TransparencyLog)),
    ("bundle-invalid-base64-signature_fail", Failed(Signature)),
    ("bundle-malformed-json_fail", Failed(Signature)),
    ("bundle-negative-log-index_fail", Failed(Signature)),
    ("bundle-unknown-version_fail", Failed(Signature)),
    ("bundle-with-root-cert_fail", Failed(Signature)),
    ("bundle-with-sct-with-extensions", Verified),
    ("checkpoint-bad-keyhint_fail", Failed(TransparencyLog)),
    ("checkpoint-wrong-roothash_fail", Failed(Signature)),
    ("dsse-invalid-sig_fail", Failed(Signature)),
    ("dsse-mismatch-envelope_fail", Failed(TransparencyLog)),
    ("dsse-mismatch-sig_fail", Failed(TransparencyLog)),
    ("happy-path-intoto-in-dsse-v3", Verified),
    ("happy-path-v0.1", Verified),
    ("happy-path-v0.2", Verified),
    ("happy-path-v0.3", Verified),
    ("happy-path-v0.3-new-mediaType", Verified),
    (
        "inclusion-proof-corrupted-hash_fail",
        Failed(TransparencyLog),
    ),
    ("incorrect-public-key_fail", Failed(TransparencyLog)),
    ("integrated-time-in-future_fail", Failed(Certificate)),
    ("intoto-expired-certificate_fail", Failed(Certificate)),
    ("intoto-log-entry-mismatch_fail", Failed(TransparencyLog)),
    ("intoto-missing-inclusion-proof_fail", Failed(Signature)),
    (
        "intoto-set-outside-signing-cert-validity_fail",
        Failed(Certificate),
    ),
    (
        "intoto-tsa-timestamp-outside-cert-validity_fail",
        Failed(Certificate),
    ),
    ("intoto-with-custom-trust-root", Verified),
    ("invalid-checkpoint-signature_fail", Failed(TransparencyLog)),
    ("invalid-ct-key_fail", Failed(Certificate)),
    ("invalid-inclusion-proof_fail", Failed(Signature)),
    ("managed-key-and-trusted-root", Verified),
    ("managed-key-happy-path", Verified),
    ("managed-key-no-key_fail", Failed(Signature)),
    ("managed-key-wrong-key_fail", KeyRefused),
    ("message-digest-mismatch_fail", Failed(Payload)),
    ("rekor2-checkpoint-cosigned", Verified),
    (
        "rekor2-checkpoint-missing-log-signature_fail",
        Failed(Signature),
    ),
    ("rekor2-checkpoint-missing-origin_fail", Failed(Signature)),
    (
        "rekor2-checkpoint-missing-root-hash_fail",
        Failed(Signature),
    ),
    ("rekor2-checkpoint-missing-size_fail", Failed(Signature)),
    ("rekor2-checkpoint-multiple-cosigs", Verified),
    (
        "rekor2-checkpoint-no-matching-signature_fail",
        Failed(TransparencyLog),
    ),
    ("rekor2-checkpoint-origin-not-first", Verified),
    ("rekor2-checkpoint-two-sigs-cosigned", Verified),
    ("rekor2-checkpoint-two-sigs-from-origin", Verified),
    ("rekor2-dsse-happy-path", Verified),
    ("rekor2-dsse-invalid-sig_fail", Failed(Signature)),
    ("rekor2-dsse-mismatch-envelope_fail", Failed(Payload)),
    ("rekor2-dsse-mismatch-sig_fail", Failed(TransparencyLog)),
    ("rekor2-happy-path", Verified),
    ("rekor2-no-inclusion-proof_fail", Failed(Signature)),
    ("rekor2-no-timestamp_fail", Failed(TransparencyLog)),
    (
        "rekor2-timestamp-outside-trust-root-tsa-validity_fail",
        Failed(TransparencyLog),
    ),
    (
        "rekor2-timestamp-outside-tsa-cert-validity_fail",
        Failed(TransparencyLog),
    ),
    (
        "rekor2-timestamp-payload-mismatch_fail",
        Failed(TransparencyLog),
    ),
    (
        "rekor2-timestamp-untrusted-tsa-with-embedded-cert_fail",
        Failed(TransparencyLog),
    ),
    (
        "rekor2-timestamp-untrusted-tsa-without-embedded-cert_fail",
        Failed(TransparencyLog),
    ),
    ("rekor2-timestamp-with-embedded-cert", Verified),
    ("rekor2-timestamp-with-expired-cert-chain", Verified),
    (
        "rekor2-timestamp-with-incorrect-time_fail",
        Failed(Signature),
    ),
    ("rekor2-timestamp-without-embedded-cert", Verified),
    ("set-invalid-signature_fail", Failed(TransparencyLog)),
    ("signature-mismatch_fail", Failed(Signature)),
    ("trust-root-tlog-missing-validity-start_fail", RootRefused),
    ("trust-root-tlog-validity-end-inclusive", Verified),
    ("trust-root-tsa-validity-end-inclusive", Verified),
    ("wrong-hashedrekord-artifact_fail", Failed(Payload)),
    (
        "wrong-hashedrekord-cert-and-sig_fail",
        Failed(TransparencyLog),
    ),
    ("wrong-hashedrekord-entry_fail", Failed(Payload)),
    ("wrong-material_fail", Failed(Payload)),
];

#[test]
fn every_bundle_verify_vector_gets_its_verdict() {
    let base = vectors().join("sigstore-conformance/bundle-verify");
    let mut dirs: Vec<String> = std::fs::read_dir(&base)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    let listed: Vec<String> = CASES.iter().map(|(n, _)| (*n).to_owned()).collect();
    assert_eq!(dirs, listed, "the table lists every directory, in order");
    for (name, want) in CASES {
        assert_eq!(
            name.ends_with("_fail"),
            *want != Verified,
            "{name}: the upstream rule (_fail must fail, others pass)"
        );
        let (got, report) = run_case(&base.join(name));
        assert_eq!(got, *want, "{name}: {:?}", report.map(|r| r.to_string()));
    }
}
