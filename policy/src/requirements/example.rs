//! The commented reference requirements file (`pullgate config example --requirements`).
//!
//! One row per key, next to the raw structs the parser reads: the value the
//! example sets, the default when the key is left out, and what it does. The
//! tests parse the printed file with [`Requirements::from_toml`] and check
//! that the keys listed here are exactly the keys the raw structs accept.

use std::fmt::Write as _;

#[cfg(test)]
use super::Requirements;

/// One documented key: `(key, example value, default when left out, what it does)`.
type Key = (&'static str, &'static str, &'static str, &'static str);

/// `(table header, what it is, keys)`, in the order printed.
const TABLES: &[(&str, &str, &[Key])] = &[
    (
        "[[scope]]",
        "What an image in these repositories needs beyond one good signature. Repeat per scope.",
        &[
            ("name", r#""production""#, "#<index>", "named in denials and the audit log"),
            ("registry_scopes", r#"["registry.example/app", "registry.example/api"]"#, "required", r#"exact repositories, prefix globs ("registry.example/team/*": one segment below, "registry.example/team/**": any depth) or "*"/"**" (every repository); the most specific match wins: exact, then longest prefix, then "*""#),
            ("signature_kinds", r#"["notation", "cosign"]"#, r#"["notation"]"#, "kinds that count; with both, either may satisfy"),
            ("min_signers", "1", "1", "distinct trusted signers required, counted across kinds"),
            ("identities", r#"["x509.subject: C=US, ST=WA, O=Acme, OU=CI"]"#, "[]", "Notary Project signers that must each have signed (approval workflows)"),
            ("on_registry_error", r#""fail_closed""#, r#""fail_closed""#, r#"or "fail_open": pull unverified when the registry cannot be reached (dangerous, logged at startup)"#),
            ("mode", r#""enforce""#, r#""enforce""#, r#"or "audit" / "warn": allow, and record the would-be denial"#),
            ("signature_repository", r#""registry.example/signatures/app""#, "the image's repository", r#"look up the signatures (cosign .sig tags, referrers: bundles and Notary Project signatures) of the image's digest in this repository instead of the image's, as COSIGN_REPOSITORY does; credentials as for any repository of its host"#),
            ("namespaces", "[]", "[]", r#"pod namespaces (globs, e.g. ["team-a", "kube-*"]) this scope is limited to; for their pods it wins over every scope that lists none; requests without a namespace never match it"#),
        ],
    ),
    (
        "[scope.cosign]",
        "cosign signers of the scope above; required when signature_kinds lists \"cosign\".",
        &[
            ("keys", r#"["/etc/pullgate/cosign/release.pub"]"#, "[]", "public keys (PEM) whose .sig signatures count; the signer is named by the file name"),
            ("trusted_root", r#""/etc/pullgate/sigstore/trusted_root.json""#, "none", "Sigstore trusted root, read from the file and never fetched; needed for keyless signers and bundles"),
            ("signed_identity", r#""match_repository""#, r#""match_repository""#, r#"or "any": whether a .sig payload's docker-reference must name the repository pulled"#),
        ],
    ),
    (
        "[[scope.cosign.identities]]",
        "A trusted keyless signer (needs trusted_root). Repeat per signer.",
        &[
            ("issuer", r#""https://token.actions.githubusercontent.com""#, "required", "the OIDC issuer, exactly"),
            ("subject_regex", r#""^https://github\\.com/acme/app/""#, "required", "the certificate's subject must match this regex"),
        ],
    ),
    (
        "[[scope.attestations]]",
        "A signed in-toto attestation an image of the scope above must carry: from a signer of its [scope.cosign], or signed with notation under the trust policy statement when signature_kinds lists \"notation\". Repeat per predicate type.",
        &[
            ("predicate_type", r#""https://slsa.dev/provenance/v1""#, "required", "the in-toto predicate type, exactly; found as a Sigstore bundle referrer or in the .att tag (cosign), or as an application/vnd.in-toto+json referrer (notation), whose statement names the image digest"),
            ("conditions", r#"['predicate.buildDefinition.externalParameters.workflow.repository == "https://github.com/acme/app"']"#, "[]", "CEL expressions that must all be true of one such attestation; variables predicate, predicateType, subject and now (a timestamp, e.g. now - timestamp(predicate.scanner.result.timestamp) < duration(\"168h\")); compiled at load"),
        ],
    ),
    (
        "[[break_glass]]",
        "A digest allowed whatever the policy says (in its registry_scopes that a trust policy statement covers). Repeat per digest.",
        &[
            ("digest", r#""sha256:0000000000000000000000000000000000000000000000000000000000000000""#, "required", "the image digest"),
            ("reason", r#""INC-4711: hotfix while the signer is down""#, "required", "why, logged with every pull it allows"),
            ("registry_scopes", r#"["registry.example/app"]"#, r#"["*"]"#, "the repositories the digest is allowed in; name the incident's repository"),
        ],
    ),
];

/// A complete commented requirements file: every key, what it does and
/// its default when left out. It parses as written.
pub fn example() -> String {
    let mut out = String::from(
        "# requirements.toml ([trust] requirements in pullgate.toml): every key, with what it\n\
         # does and its default when left out. Without this file every repository needs one\n\
         # trusted Notary Project signature, fails closed and is enforced. For a pod, scopes\n\
         # listing its namespace are tried first; then the most specific registry scope wins:\n\
         # an exact repository, else the longest prefix glob, else \"*\", else the built-in default.\n",
    );
    for (header, about, keys) in TABLES {
        let _ = write!(out, "\n# {about}\n{header}\n");
        for (key, value, default, doc) in *keys {
            let _ = writeln!(out, "# {doc} (default: {default})");
            let _ = writeln!(out, "{key} = {value}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::super::attestation::RawAttestation;
    use super::super::cosign::{RawCosign, RawIdentity};
    use super::super::{RawBreakGlass, RawFile, RawScope};
    use super::*;
    use crate::serde_fields::field_names;

    #[test]
    fn the_example_parses() {
        let text = example();
        let r = Requirements::from_toml(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(r.scopes().len(), 1);
        assert!(r.scopes()[0].cosign().is_some());
        assert_eq!(r.break_glass_entries().len(), 1);
        assert_eq!(r.scopes()[0].attestations().len(), 1);
    }

    /// Fails when a key is added to (or removed from) a raw struct without its row.
    #[test]
    fn every_key_the_parser_reads_is_documented() {
        let documented = |header: &str| -> BTreeSet<&str> {
            TABLES
                .iter()
                .filter(|(h, _, _)| *h == header)
                .flat_map(|(_, _, keys)| keys.iter().map(|k| k.0))
                .collect()
        };
        let set = |v: Vec<&'static str>| v.into_iter().collect::<BTreeSet<_>>();
        assert_eq!(
            set(field_names::<RawFile>()),
            set(vec!["scope", "break_glass"])
        );
        let mut scope = documented("[[scope]]");
        scope.insert("cosign");
        scope.insert("attestations");
        assert_eq!(scope, set(field_names::<RawScope>()));
        let mut cosign = documented("[scope.cosign]");
        cosign.insert("identities");
        assert_eq!(cosign, set(field_names::<RawCosign>()));
        assert_eq!(
            documented("[[scope.cosign.identities]]"),
            set(field_names::<RawIdentity>())
        );
        assert_eq!(
            documented("[[scope.attestations]]"),
            set(field_names::<RawAttestation>())
        );
        assert_eq!(
            documented("[[break_glass]]"),
            set(field_names::<RawBreakGlass>())
        );
    }
}
