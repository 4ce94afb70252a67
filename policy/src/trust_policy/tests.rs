use std::collections::BTreeSet;

use super::*;
use crate::identity::{DnError, IdentityError};
use crate::level::OverrideError;

const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/vectors/notation-e2e/trustpolicies"
);

fn repo(s: &str) -> Repository {
    s.parse().unwrap()
}

fn stmt(name: &str, problem: impl Into<StatementError>) -> Error {
    Error::statement(name, problem)
}

/// Expected outcome of `from_json` for each upstream file (notation-e2e SOURCE.md).
fn expected_vectors() -> Vec<(&'static str, Result<(), Error>)> {
    let ok = Ok(());
    vec![
        ("any_registry_scope_trust_policy.json", ok.clone()),
        ("audit_trustpolicy.json", ok.clone()),
        // A blob policy (no registryScopes): not an OCI policy.
        (
            "blob_trust_policy.json",
            Err(stmt("wabbit-networks-policy", ScopeError::NoScopes)),
        ),
        (
            "empty_registry_scope_trustpolicy.json",
            Err(stmt("e2e", ScopeError::NoScopes)),
        ),
        (
            "empty_trusted_identity_trustpolicy.json",
            Err(stmt("e2e", IdentityError::Empty)),
        ),
        ("generate_test_trustpolicy.json", ok.clone()),
        // Checked separately below: the JSON itself is broken.
        ("invalid_format_trustpolicy.json", ok.clone()),
        // Valid; no statement applies to the repositories upstream verifies.
        ("invalid_registry_scope_trustpolicy.json", ok.clone()),
        // Valid; the store is missing (check_trust_stores).
        ("invalid_trust_store_trustpolicy.json", ok.clone()),
        // Valid; "C=USB" matches no signer.
        ("invalid_trusted_identity_trustpolicy.json", ok.clone()),
        (
            "malformed_registry_scope_trustpolicy.json",
            Err(stmt(
                "e2e",
                ScopeError::Invalid {
                    scope: r"localhost:5000\test-repo".into(),
                    reason: crate::reference::ReferenceError::InvalidTag(r"5000\test-repo".into()),
                },
            )),
        ),
        (
            "malformed_trust_store_trustpolicy.json",
            Err(stmt(
                "e2e",
                TrustStoreError::InvalidName {
                    value: "ca:".into(),
                    name: "".into(),
                },
            )),
        ),
        (
            "malformed_trusted_identity_trustpolicy.json",
            Err(stmt(
                "e2e",
                IdentityError::MissingSeparator {
                    identity: "x509.subject CN=e2e,O=Notary,L=Seattle,ST=WA,C=US".into(),
                },
            )),
        ),
        (
            "missing_country_trusted_identity_trustpolicy.json",
            Err(stmt(
                "e2e",
                IdentityError::MissingMandatory {
                    identity: "x509.subject: CN=e2e,O=Notary,L=Seattle,ST=WA".into(),
                    attribute: "C",
                },
            )),
        ),
        (
            "missing_organization_trusted_identity_trustpolicy.json",
            Err(stmt(
                "e2e",
                IdentityError::MissingMandatory {
                    identity: "x509.subject: CN=e2e,L=Seattle,ST=WA,C=US".into(),
                    attribute: "O",
                },
            )),
        ),
        (
            "missing_state_trusted_identity_trustpolicy.json",
            Err(stmt(
                "e2e",
                IdentityError::MissingMandatory {
                    identity: "x509.subject: CN=e2e,O=Notary,L=Seattle,C=US".into(),
                    attribute: "ST",
                },
            )),
        ),
        (
            "multi_statements_with_multi_wildcard_registry_scope_trustpolicy.json",
            Err(DocumentError::ScopeInMultipleStatements {
                scope: RegistryScope::Global,
                first: "e2e".into(),
                second: "e2e2".into(),
            }
            .into()),
        ),
        (
            "multi_statements_with_the_same_name_trustpolicy.json",
            Err(DocumentError::DuplicateStatementName { name: "e2e".into() }.into()),
        ),
        (
            "multi_statements_with_the_same_registry_scope_trustpolicy.json",
            Err(DocumentError::ScopeInMultipleStatements {
                scope: RegistryScope::Repository(repo("localhost:5000/test-repo8")),
                first: "e2e".into(),
                second: "e2e2".into(),
            }
            .into()),
        ),
        (
            "multi_statements_with_wildcard_registry_scope_trustpolicy.json",
            ok.clone(),
        ),
        ("multiple_registry_scope_trustpolicy.json", ok.clone()),
        ("multiple_trust_store_trustpolicy.json", ok.clone()),
        ("multiple_trusted_identity_trustpolicy.json", ok.clone()),
        (
            "overlapped_registry_scope_trustpolicy.json",
            Err(stmt(
                "e2e",
                ScopeError::Repeated {
                    scope: RegistryScope::Repository(repo("localhost:5000/test-repo6")),
                },
            )),
        ),
        // notation accepts a store listed twice.
        ("overlapped_trust_store_trustpolicy.json", ok.clone()),
        (
            "overlapped_trusted_identity_trustpolicy.json",
            Err(stmt(
                "e2e",
                IdentityError::Overlapping {
                    first: "x509.subject: CN=e2e,O=Notary,ST=WA,C=US".into(),
                    second: "x509.subject: CN=e2e,O=Notary,L=Seattle,ST=WA,C=US".into(),
                },
            )),
        ),
        ("override_audit_trustpolicy.json", ok.clone()),
        (
            "override_integrity_for_permissive_trustpolicy.json",
            Err(stmt(
                "e2e",
                VerificationError::Override(OverrideError::Integrity),
            )),
        ),
        ("override_permissive_trustpolicy.json", ok.clone()),
        ("override_strict_trustpolicy.json", ok.clone()),
        ("permissive_trustpolicy.json", ok.clone()),
        ("quickstart_trustpolicy.json", ok.clone()),
        ("registry_scope_trustpolicy.json", ok.clone()),
        ("skip_trustpolicy.json", ok.clone()),
        ("timestamp_after_cert_expiry_trustpolicy.json", ok.clone()),
        ("timestamp_trustpolicy.json", ok.clone()),
        ("trustpolicy.json", ok.clone()),
        (
            "unset_trust_store_trustpolicy.json",
            Err(stmt("e2e", StatementError::MissingStoresOrIdentities)),
        ),
        (
            "unset_trusted_identity_trustpolicy.json",
            Err(stmt("e2e", StatementError::MissingStoresOrIdentities)),
        ),
        ("valid_trusted_identity_trustpolicy.json", ok.clone()),
        (
            "wildcard_plus_other_registry_scope_trustpolicy.json",
            Err(stmt("e2e", ScopeError::GlobalWithOthers)),
        ),
        (
            "wildcard_plus_other_trusted_identity_trustpolicy.json",
            Err(stmt("e2e", IdentityError::WildcardWithOthers)),
        ),
        (
            "wildcard_trust_store_trustpolicy.json",
            Err(stmt(
                "e2e",
                TrustStoreError::Malformed { value: "*".into() },
            )),
        ),
    ]
}

fn load(file: &str) -> Result<TrustPolicyDocument, Error> {
    let bytes = std::fs::read(format!("{VECTORS}/{file}")).unwrap();
    TrustPolicyDocument::from_json(&bytes)
}

#[test]
fn upstream_policies_validate_as_notation_says() {
    let expected = expected_vectors();
    let on_disk: BTreeSet<String> = std::fs::read_dir(VECTORS)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".json"))
        .collect();
    let listed: BTreeSet<String> = expected.iter().map(|(f, _)| (*f).to_owned()).collect();
    assert_eq!(
        on_disk, listed,
        "every vector file has exactly one expectation"
    );
    assert_eq!(on_disk.len(), 43);

    for (file, want) in expected {
        let got = load(file);
        if file == "invalid_format_trustpolicy.json" {
            assert!(
                matches!(got, Err(Error::Malformed { line: 7, .. })),
                "{file}: {got:?}"
            );
            continue;
        }
        assert_eq!(
            got.as_ref().map(|_| ()).map_err(Clone::clone),
            want,
            "{file}"
        );
        if let Err(e) = got {
            // Operator-facing text names the statement or the document.
            let text = e.to_string();
            assert!(
                text.starts_with("trust policy")
                    || text.starts_with("multiple trust policy")
                    || text.starts_with("registry scope"),
                "{text}"
            );
        }
    }
}

#[test]
fn upstream_policies_that_fail_later() {
    // Trust store ca:e2e exists (and tsa:e2e, for the timestamp policies).
    let exists = |kind: StoreType, name: &str| {
        matches!(
            (kind, name),
            (StoreType::Ca, "e2e") | (StoreType::Tsa, "e2e")
        )
    };
    let doc = load("invalid_trust_store_trustpolicy.json").unwrap();
    let err = doc.check_trust_stores(exists).unwrap_err();
    assert_eq!(
        err,
        stmt(
            "e2e",
            TrustStoreError::NotFound {
                store: TrustStoreRef {
                    kind: StoreType::Ca,
                    name: "invalid_store".into()
                }
            }
        )
    );
    assert!(err
        .to_string()
        .contains(r#"the trust store "invalid_store" of type "ca" does not exist"#));
    for ok in [
        "trustpolicy.json",
        "timestamp_trustpolicy.json",
        "skip_trustpolicy.json",
    ] {
        load(ok).unwrap().check_trust_stores(exists).unwrap();
    }

    let doc = load("invalid_registry_scope_trustpolicy.json").unwrap();
    assert!(doc
        .statement_for(&repo("localhost:5000/test-repo"))
        .is_none());
    assert!(doc
        .statement_for(&repo("localhost:5000/invalid-test-repo"))
        .is_some());

    let doc = load("invalid_trusted_identity_trustpolicy.json").unwrap();
    let e2e: DistinguishedName = "CN=e2e,O=Notary,L=Seattle,ST=WA,C=US".parse().unwrap();
    assert!(!doc.statements()[0].trusts_identity(&e2e));
    let doc = load("valid_trusted_identity_trustpolicy.json").unwrap();
    assert!(doc.statements()[0].trusts_identity(&e2e));
    let expired: DistinguishedName = "O=Internet Widgits Pty Ltd,ST=Some-State,C=AU"
        .parse()
        .unwrap();
    assert!(!doc.statements()[0].trusts_identity(&expired));
    let doc = load("multiple_trusted_identity_trustpolicy.json").unwrap();
    assert!(doc.statements()[0].trusts_identity(&expired));
}

#[test]
fn upstream_policies_read_into_the_right_settings() {
    use Enforcement::{Enforce as E, Log as L, Skip as S};
    let cases: &[(&str, Level, [Enforcement; 5], VerifyTimestamp)] = &[
        (
            "trustpolicy.json",
            Level::Strict,
            [E, E, E, E, E],
            VerifyTimestamp::Always,
        ),
        (
            "permissive_trustpolicy.json",
            Level::Permissive,
            [E, E, L, L, L],
            VerifyTimestamp::Always,
        ),
        (
            "audit_trustpolicy.json",
            Level::Audit,
            [E, L, L, L, L],
            VerifyTimestamp::Always,
        ),
        (
            "skip_trustpolicy.json",
            Level::Skip,
            [S, S, S, S, S],
            VerifyTimestamp::Always,
        ),
        (
            "override_strict_trustpolicy.json",
            Level::Strict,
            [E, L, L, L, L],
            VerifyTimestamp::Always,
        ),
        (
            "override_permissive_trustpolicy.json",
            Level::Permissive,
            [E, L, E, E, E],
            VerifyTimestamp::Always,
        ),
        (
            "override_audit_trustpolicy.json",
            Level::Audit,
            [E, E, E, E, E],
            VerifyTimestamp::Always,
        ),
        (
            "timestamp_trustpolicy.json",
            Level::Strict,
            [E, E, E, E, E],
            VerifyTimestamp::Always,
        ),
        (
            "timestamp_after_cert_expiry_trustpolicy.json",
            Level::Strict,
            [E, E, E, E, E],
            VerifyTimestamp::AfterCertExpiry,
        ),
    ];
    for (file, level, table, ts) in cases {
        let doc = load(file).unwrap();
        let s = &doc.statements()[0];
        assert_eq!(s.level(), *level, "{file}");
        for (v, want) in Validation::ALL.into_iter().zip(table) {
            assert_eq!(s.enforcement(v), *want, "{file} {v}");
        }
        assert_eq!(s.verify_timestamp(), *ts, "{file}");
    }
    let doc = load("timestamp_trustpolicy.json").unwrap();
    assert_eq!(
        doc.statements()[0].trust_stores(),
        [
            TrustStoreRef {
                kind: StoreType::Ca,
                name: "e2e".into()
            },
            TrustStoreRef {
                kind: StoreType::Tsa,
                name: "e2e".into()
            },
        ]
    );
    let doc = load("overlapped_trust_store_trustpolicy.json").unwrap();
    assert_eq!(doc.statements()[0].trust_stores().len(), 1);
    let doc = load("skip_trustpolicy.json").unwrap();
    assert!(doc.statements()[0].trust_stores().is_empty());
    assert!(doc.statements()[0].trusted_identities().is_empty());
}

/// One statement with `fields` (JSON members, each with a leading comma) after its name.
fn one(fields: &str) -> String {
    format!(r#"{{"version":"1.0","trustPolicies":[{{"name":"s"{fields}}}]}}"#)
}

const SCOPE: &str = r#","registryScopes":["r.io/a"]"#;
const STRICT: &str = r#","signatureVerification":{"level":"strict"}"#;
const STORES: &str = r#","trustStores":["ca:x"]"#;
const IDS: &str = r#","trustedIdentities":["*"]"#;

fn good(extra: &str) -> String {
    one(&format!("{SCOPE}{STRICT}{STORES}{IDS}{extra}"))
}

#[test]
fn document_rules() {
    let cases: Vec<(String, Error)> = vec![
        (
            r#"{"trustPolicies":[]}"#.into(),
            DocumentError::MissingVersion.into(),
        ),
        (
            r#"{"version":"1.1","trustPolicies":[]}"#.into(),
            DocumentError::UnsupportedVersion {
                found: "1.1".into(),
            }
            .into(),
        ),
        (
            r#"{"version":"1.0","trustPolicies":[]}"#.into(),
            DocumentError::NoStatements.into(),
        ),
        (
            r#"{"version":"1.0"}"#.into(),
            DocumentError::NoStatements.into(),
        ),
        (
            r#"{"version":"1.0","trustPolicy":[]}"#.into(),
            DocumentError::UnknownField {
                field: "trustPolicy".into(),
            }
            .into(),
        ),
        (
            r#"{"version":"1.0","trustPolicies":[{"registryScopes":["*"]}]}"#.into(),
            DocumentError::MissingStatementName { index: 0 }.into(),
        ),
        (
            format!(
                r#"{{"version":"1.0","trustPolicies":[{a},{b}]}}"#,
                a = r#"{"name":"a","registryScopes":["r.io/x","docker.io/nginx"],"signatureVerification":{"level":"skip"}}"#,
                b = r#"{"name":"b","registryScopes":["docker.io/library/nginx"],"signatureVerification":{"level":"skip"}}"#,
            ),
            DocumentError::ScopeInMultipleStatements {
                scope: RegistryScope::Repository(repo("docker.io/library/nginx")),
                first: "a".into(),
                second: "b".into(),
            }
            .into(),
        ),
    ];
    for (json, want) in cases {
        assert_eq!(
            TrustPolicyDocument::from_json(json.as_bytes()).err(),
            Some(want),
            "{json}"
        );
    }
    for bad in [
        "",
        "null",
        "[]",
        r#"{"version":1.0,"trustPolicies":[]}"#,
        r#"{"version":"1.0","trustPolicies":[{"name":"s","registryScopes":"*"}]}"#,
    ] {
        assert!(
            matches!(
                TrustPolicyDocument::from_json(bad.as_bytes()),
                Err(Error::Malformed { .. })
            ),
            "{bad}"
        );
    }
}

#[test]
fn statement_rules() {
    use VerificationError as V;
    let cases: Vec<(String, StatementError)> = vec![
        (
            good(r#","signatureverification":{}"#),
            StatementError::UnknownField {
                field: "signatureverification".into(),
            },
        ),
        (
            one(&format!(
                r#"{SCOPE}{STORES}{IDS},"signatureVerification":{{"level":"strict","verifyTimeStamp":"always"}}"#
            )),
            StatementError::UnknownField {
                field: "signatureVerification.verifyTimeStamp".into(),
            },
        ),
        // registryScopes
        (
            one(&format!("{STRICT}{STORES}{IDS}")),
            ScopeError::NoScopes.into(),
        ),
        (
            one(&format!(r#","registryScopes":[]{STRICT}{STORES}{IDS}"#)),
            ScopeError::NoScopes.into(),
        ),
        (
            one(&format!(
                r#","registryScopes":["r.io/a","*"]{STRICT}{STORES}{IDS}"#
            )),
            ScopeError::GlobalWithOthers.into(),
        ),
        (
            one(&format!(
                r#","registryScopes":["r.io/a","r.io/a"]{STRICT}{STORES}{IDS}"#
            )),
            ScopeError::Repeated {
                scope: RegistryScope::Repository(repo("r.io/a")),
            }
            .into(),
        ),
        // signatureVerification
        (
            one(&format!("{SCOPE}{STORES}{IDS}")),
            V::MissingLevel.into(),
        ),
        (
            one(&format!(
                r#"{SCOPE},"signatureVerification":{{}}{STORES}{IDS}"#
            )),
            V::MissingLevel.into(),
        ),
        (
            one(&format!(
                r#"{SCOPE},"signatureVerification":{{"level":"Strict"}}{STORES}{IDS}"#
            )),
            V::UnknownLevel {
                value: "Strict".into(),
            }
            .into(),
        ),
        (
            one(&format!(
                r#"{SCOPE},"signatureVerification":{{"level":"skip","override":{{"revocation":"log"}}}}"#
            )),
            V::Override(OverrideError::WithSkip).into(),
        ),
        (
            one(&format!(
                r#"{SCOPE},"signatureVerification":{{"level":"strict","override":{{"expiry":"skip"}}}}{STORES}{IDS}"#
            )),
            V::Override(OverrideError::SkipNotAllowed {
                validation: Validation::Expiry,
            })
            .into(),
        ),
        (
            one(&format!(
                r#"{SCOPE},"signatureVerification":{{"level":"strict","override":{{"expiry":"log","expiry":"enforce"}}}}{STORES}{IDS}"#
            )),
            V::Override(OverrideError::Duplicate {
                validation: Validation::Expiry,
            })
            .into(),
        ),
        (
            one(&format!(
                r#"{SCOPE},"signatureVerification":{{"level":"strict","verifyTimestamp":"never"}}{STORES}{IDS}"#
            )),
            V::UnknownVerifyTimestamp {
                value: "never".into(),
            }
            .into(),
        ),
        // skip level vs trust stores / identities
        (
            one(&format!(
                r#"{SCOPE},"signatureVerification":{{"level":"skip"}}{STORES}"#
            )),
            StatementError::SkipWithStoresOrIdentities,
        ),
        (
            one(&format!(
                r#"{SCOPE},"signatureVerification":{{"level":"skip"}}{IDS}"#
            )),
            StatementError::SkipWithStoresOrIdentities,
        ),
        (
            one(&format!("{SCOPE}{STRICT}{STORES}")),
            StatementError::MissingStoresOrIdentities,
        ),
        (
            one(&format!("{SCOPE}{STRICT}{IDS}")),
            StatementError::MissingStoresOrIdentities,
        ),
        (
            one(&format!(r#"{SCOPE}{STRICT},"trustStores":null{IDS}"#)),
            StatementError::MissingStoresOrIdentities,
        ),
        // trustStores
        (
            one(&format!(
                r#"{SCOPE}{STRICT},"trustStores":["x509:e2e"]{IDS}"#
            )),
            TrustStoreError::UnsupportedType {
                value: "x509:e2e".into(),
                kind: "x509".into(),
            }
            .into(),
        ),
        (
            one(&format!(
                r#"{SCOPE}{STRICT},"trustStores":["ca:../etc"]{IDS}"#
            )),
            TrustStoreError::InvalidName {
                value: "ca:../etc".into(),
                name: "../etc".into(),
            }
            .into(),
        ),
        (
            one(&format!(r#"{SCOPE}{STRICT},"trustStores":["tsa:.."]{IDS}"#)),
            TrustStoreError::InvalidName {
                value: "tsa:..".into(),
                name: "..".into(),
            }
            .into(),
        ),
        (
            one(&format!(r#"{SCOPE}{STRICT},"trustStores":["ca:a b"]{IDS}"#)),
            TrustStoreError::InvalidName {
                value: "ca:a b".into(),
                name: "a b".into(),
            }
            .into(),
        ),
        // trustedIdentities
        (
            one(&format!(
                r#"{SCOPE}{STRICT}{STORES},"trustedIdentities":["x509.subject:C=US,ST=WA,O=a+OU=b"]"#
            )),
            IdentityError::InvalidDn {
                identity: "x509.subject:C=US,ST=WA,O=a+OU=b".into(),
                source: DnError::MultiValuedRdn {
                    attribute: crate::identity::AttributeType::new("O").unwrap(),
                },
            }
            .into(),
        ),
        (
            one(&format!(
                r#"{SCOPE}{STRICT}{STORES},"trustedIdentities":["x509.san:foo"]"#
            )),
            IdentityError::UnsupportedType {
                identity: "x509.san:foo".into(),
                prefix: "x509.san".into(),
            }
            .into(),
        ),
    ];
    for (json, want) in cases {
        let got = TrustPolicyDocument::from_json(json.as_bytes()).err();
        assert_eq!(got, Some(stmt("s", want)), "{json}");
    }
}

#[test]
fn accepts_what_notation_accepts() {
    let cases = [
        good(""),
        one(&format!(
            r#"{SCOPE},"signatureVerification":{{"level":"strict","override":{{"revocation":"skip","expiry":"log"}},"verifyTimestamp":"afterCertExpiry","skipTimestampRevocationCheck":true}}{STORES}{IDS}"#
        )),
        one(&format!(
            r#"{SCOPE},"signatureVerification":{{"level":"audit","override":{{}}}}{STORES}{IDS}"#
        )),
        one(&format!(
            r#"{SCOPE}{STRICT},"trustStores":["ca:a","signingAuthority:b_1.2-c","tsa:t"],"trustedIdentities":["x509.subject: C=US, ST=WA, L=Seattle, O=wabbit-networks.io, OU=Security Tools"]"#
        )),
        one(
            r#","registryScopes":["localhost:5000/a/b","127.0.0.1:5000/c","docker.io/library/nginx"],"signatureVerification":{"level":"skip"},"trustStores":[],"trustedIdentities":null"#,
        ),
    ];
    for json in &cases {
        TrustPolicyDocument::from_json(json.as_bytes()).unwrap_or_else(|e| panic!("{json}: {e}"));
    }
    let doc = TrustPolicyDocument::from_json(cases[1].as_bytes()).unwrap();
    let s = &doc.statements()[0];
    assert_eq!(s.verify_timestamp(), VerifyTimestamp::AfterCertExpiry);
    assert_eq!(s.timestamp_revocation(), TimestampRevocation::Skip);
    assert_eq!(s.enforcement(Validation::Revocation), Enforcement::Skip);
}

#[test]
fn scope_matching_prefers_the_exact_statement() {
    let json = r#"{"version":"1.0","trustPolicies":[
        {"name":"global","registryScopes":["*"],"signatureVerification":{"level":"audit"},"trustStores":["ca:g"],"trustedIdentities":["*"]},
        {"name":"nginx","registryScopes":["docker.io/library/nginx","registry.k8s.io/pause"],"signatureVerification":{"level":"strict"},"trustStores":["ca:n"],"trustedIdentities":["*"]},
        {"name":"unsigned","registryScopes":["localhost:5000/unsigned"],"signatureVerification":{"level":"skip"}}
    ]}"#;
    let doc = TrustPolicyDocument::from_json(json.as_bytes()).unwrap();
    let image = |s: &str| {
        s.parse::<crate::reference::ImageRef>()
            .unwrap()
            .repository()
            .clone()
    };
    let cases = [
        ("nginx", Some("nginx")),
        ("docker.io/library/nginx:1.25", Some("nginx")),
        ("registry.k8s.io/pause:3.9", Some("nginx")),
        ("localhost:5000/unsigned:v1", Some("unsigned")),
        ("localhost:5000/unsigned/sub", Some("global")), // scopes are exact, not prefixes
        ("docker.io/library/nginx-extra", Some("global")),
        ("registry.k8s.io/pause/x", Some("global")),
        // Every spelling of a host selects the canonical statement, never
        // the weaker global one.
        ("Docker.IO/library/nginx", Some("nginx")),
        ("docker.io:443/nginx", Some("nginx")),
        ("index.docker.io/nginx:1.25", Some("nginx")),
        ("registry-1.docker.io/library/nginx", Some("nginx")),
        ("REGISTRY.K8S.IO/pause", Some("nginx")),
        ("registry.k8s.io:443/pause:3.9", Some("nginx")),
        ("LOCALHOST:5000/unsigned", Some("unsigned")),
        // Another port is another server.
        ("registry.k8s.io:80/pause", Some("global")),
    ];
    for (img, want) in cases {
        assert_eq!(
            doc.statement_for(&image(img)).map(Statement::name),
            want,
            "{img}"
        );
    }
    assert!(doc.statements()[0].is_global());
    assert_eq!(
        doc.statement_for(&image("nginx")).map(Statement::level),
        Some(Level::Strict)
    );

    // Scopes are canonicalised at load: a non-canonical spelling names the
    // canonical repository, and two spellings of one repository in two
    // statements are the one-statement-per-scope conflict.
    let spelled = r#"{"version":"1.0","trustPolicies":[
        {"name":"hub","registryScopes":["Index.Docker.IO:443/nginx"],"signatureVerification":{"level":"strict"},"trustStores":["ca:n"],"trustedIdentities":["*"]}
    ]}"#;
    let doc = TrustPolicyDocument::from_json(spelled.as_bytes()).unwrap();
    assert_eq!(
        doc.statement_for(&image("nginx")).map(Statement::name),
        Some("hub")
    );
    assert_eq!(
        doc.statements()[0].registry_scopes()[0].to_string(),
        "docker.io/library/nginx"
    );
    let twice = r#"{"version":"1.0","trustPolicies":[
        {"name":"a","registryScopes":["docker.io/library/nginx"],"signatureVerification":{"level":"strict"},"trustStores":["ca:n"],"trustedIdentities":["*"]},
        {"name":"b","registryScopes":["Docker.IO/nginx"],"signatureVerification":{"level":"skip"}}
    ]}"#;
    assert!(matches!(
        TrustPolicyDocument::from_json(twice.as_bytes()),
        Err(Error::Document(
            DocumentError::ScopeInMultipleStatements { .. }
        ))
    ));

    let no_global = TrustPolicyDocument::from_json(good("").as_bytes()).unwrap();
    assert_eq!(
        no_global
            .statement_for(&repo("r.io/a"))
            .map(Statement::name),
        Some("s")
    );
    assert!(no_global.statement_for(&repo("r.io/b")).is_none());
}

#[test]
fn trust_store_refs_parse_and_print() {
    for (text, kind, name) in [
        ("ca:acme-rockets", StoreType::Ca, "acme-rockets"),
        ("signingAuthority:sa", StoreType::SigningAuthority, "sa"),
        (
            "tsa:publicly-trusted-tsa",
            StoreType::Tsa,
            "publicly-trusted-tsa",
        ),
    ] {
        let r: TrustStoreRef = text.parse().unwrap();
        assert_eq!((r.kind, r.name.as_str()), (kind, name));
        assert_eq!(r.to_string(), text);
    }
    assert_eq!(
        "ca:a:b".parse::<TrustStoreRef>(),
        Err(TrustStoreError::InvalidName {
            value: "ca:a:b".into(),
            name: "a:b".into()
        })
    );
    assert_eq!(
        "signingAuthority".parse::<StoreType>(),
        Ok(StoreType::SigningAuthority)
    );
    assert!("CA".parse::<StoreType>().is_err());
}

#[test]
fn messages_name_the_statement_and_value() {
    let cases = [
        (
            one(&format!(r#"{SCOPE}{STRICT},"trustStores":["*"]{IDS}"#)),
            r#"trust policy statement "s" has malformed trust store value "*""#,
        ),
        (
            one(&format!(
                r#"{SCOPE}{STRICT}{STORES},"trustedIdentities":["x509.subject:C=US,O=a"]"#
            )),
            r#"trust policy statement "s" has trusted identity "x509.subject:C=US,O=a" with no mandatory RDN attribute for "ST""#,
        ),
        (
            one(r#","registryScopes":["localhost:5000\\test-repo"]"#),
            r#"trust policy statement "s" has registry scope "localhost:5000\\test-repo", which is not a fully qualified repository"#,
        ),
    ];
    for (json, prefix) in cases {
        let text = TrustPolicyDocument::from_json(json.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(text.starts_with(prefix), "{text}");
    }
}

proptest::proptest! {
    #[test]
    fn from_json_never_panics_on_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
        let _ = TrustPolicyDocument::from_json(&bytes);
    }

    #[test]
    fn from_json_never_panics_on_near_valid_policies(
        scope in "\\*|[a-z.:0-9/\\\\*-]{0,20}",
        level in "strict|permissive|audit|skip|[a-z]{0,6}",
        key in "integrity|authenticity|authenticTimestamp|expiry|revocation|[a-zA-Z]{0,6}",
        action in "enforce|log|skip|[a-z]{0,4}",
        store in "(ca|tsa|signingAuthority|[a-z]{0,3})(:[a-zA-Z0-9_.*-]{0,6})?",
        identity in "\\*|x509\\.subject:? ?\\PC{0,40}",
    ) {
        let json = serde_json::json!({
            "version": "1.0",
            "trustPolicies": [{
                "name": "p",
                "registryScopes": [scope],
                "signatureVerification": {"level": level, "override": {key: action}},
                "trustStores": [store],
                "trustedIdentities": [identity],
            }]
        });
        let _ = TrustPolicyDocument::from_json(json.to_string().as_bytes());
    }
}

#[test]
fn aws_signer_signatures_are_trusted_by_signing_profile_only() {
    const PROFILE: &str = "arn:aws:signer:us-west-2:123456789012:/signing-profiles/release";
    const SIGNED: &str = "arn:aws:signer:us-west-2:123456789012:/signing-profiles/release/Ver1";
    let statement = |ids: &str| {
        let doc = one(&format!(
            r#"{SCOPE}{STRICT},"trustStores":["signingAuthority:aws-signer-ts"],"trustedIdentities":{ids}"#
        ));
        TrustPolicyDocument::from_json(doc.as_bytes())
            .unwrap()
            .statements()[0]
            .clone()
    };
    let by_profile = statement(&format!(r#"["{PROFILE}"]"#));
    assert_eq!(
        by_profile
            .trusts_signing_profile(SIGNED)
            .map(|a| a.as_str()),
        Ok(PROFILE)
    );
    let by_version = statement(&format!(r#"["{SIGNED}"]"#));
    assert!(by_version.trusts_signing_profile(SIGNED).is_ok());
    assert_eq!(
        by_version.trusts_signing_profile(&format!("{PROFILE}/Ver2")),
        Err(SigningProfileRefusal::NotListed)
    );
    assert_eq!(
        statement(r#"["*"]"#).trusts_signing_profile(SIGNED),
        Err(SigningProfileRefusal::Wildcard)
    );
    let subject_only = statement(
        r#"["x509.subject: CN=AWS Signer,OU=AWS Cryptography,O=AWS,L=Seattle,ST=WA,C=US"]"#,
    );
    assert_eq!(
        subject_only.trusts_signing_profile(SIGNED),
        Err(SigningProfileRefusal::NoSigningProfiles)
    );
    // An x509.subject identity next to the ARN is ignored for these signatures.
    let mixed = statement(&format!(
        r#"["x509.subject: C=US,ST=WA,O=Acme","{PROFILE}"]"#
    ));
    assert!(mixed.trusts_signing_profile(SIGNED).is_ok());
    // And an ARN never admits a certificate subject.
    let aws_subject: DistinguishedName =
        "CN=AWS Signer,OU=AWS Cryptography,O=AWS,L=Seattle,ST=WA,C=US"
            .parse()
            .unwrap();
    assert!(!by_profile.trusts_identity(&aws_subject));
}

/// Issue 23, item 1: with `prod` strict on `127.0.0.1:5000/prod/app` and
/// `*` at level skip, `127.0.0.1:05000/prod/app` and
/// `localhost:5000/prod/app` were judged by `*`.
#[test]
fn loopback_aliases_and_zero_padded_ports_select_the_specific_statement() {
    let json = r#"{"version":"1.0","trustPolicies":[
        {"name":"prod","registryScopes":["127.0.0.1:5000/prod/app"],"signatureVerification":{"level":"strict"},"trustStores":["ca:p"],"trustedIdentities":["*"]},
        {"name":"any","registryScopes":["*"],"signatureVerification":{"level":"skip"}}
    ]}"#;
    let doc = TrustPolicyDocument::from_json(json.as_bytes()).unwrap();
    let image = |s: &str| {
        s.parse::<crate::reference::ImageRef>()
            .unwrap()
            .repository()
            .clone()
    };
    for img in [
        "127.0.0.1:5000/prod/app:evil",
        "127.0.0.1:05000/prod/app:evil",
        "localhost:5000/prod/app:evil",
        "localhost:005000/prod/app",
        "[::1]:5000/prod/app",
    ] {
        assert_eq!(
            doc.statement_for(&image(img)).map(Statement::name),
            Some("prod"),
            "{img}"
        );
    }
    assert_eq!(
        doc.statement_for(&image("127.0.0.1:5001/prod/app"))
            .map(Statement::name),
        Some("any")
    );
    // Two loopback spellings of one repository are one scope.
    let twice = r#"{"version":"1.0","trustPolicies":[
        {"name":"a","registryScopes":["localhost:5000/app"],"signatureVerification":{"level":"strict"},"trustStores":["ca:n"],"trustedIdentities":["*"]},
        {"name":"b","registryScopes":["127.0.0.1:05000/app"],"signatureVerification":{"level":"skip"}}
    ]}"#;
    assert!(matches!(
        TrustPolicyDocument::from_json(twice.as_bytes()),
        Err(Error::Document(
            DocumentError::ScopeInMultipleStatements { .. }
        ))
    ));
    let bad_port = r#"{"version":"1.0","trustPolicies":[
        {"name":"a","registryScopes":["localhost:70000/app"],"signatureVerification":{"level":"skip"}}
    ]}"#;
    assert!(matches!(
        TrustPolicyDocument::from_json(bad_port.as_bytes()),
        Err(Error::Statement { .. })
    ));
}

#[test]
fn a_weaker_global_statement_is_reported() {
    let json = r#"{"version":"1.0","trustPolicies":[
        {"name":"prod","registryScopes":["r.io/prod"],"signatureVerification":{"level":"strict"},"trustStores":["ca:p"],"trustedIdentities":["x509.subject: C=US, ST=WA, O=Acme, CN=Release"]},
        {"name":"same","registryScopes":["r.io/same"],"signatureVerification":{"level":"audit"},"trustStores":["ca:g"],"trustedIdentities":["*"]},
        {"name":"any","registryScopes":["*"],"signatureVerification":{"level":"audit"},"trustStores":["ca:g"],"trustedIdentities":["*"]}
    ]}"#;
    let doc = TrustPolicyDocument::from_json(json.as_bytes()).unwrap();
    let warnings = doc.weaker_global();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let w = &warnings[0];
    assert_eq!((w.global.as_str(), w.specific.as_str()), ("any", "prod"));
    assert!(w.ways.contains(&Weakness::Validation {
        validation: Validation::Authenticity,
        global: Enforcement::Log,
        specific: Enforcement::Enforce,
    }));
    assert!(w
        .ways
        .contains(&Weakness::OtherTrustStores(vec!["ca:g".parse().unwrap()])));
    assert!(w
        .ways
        .contains(&Weakness::WiderIdentities(vec![TrustedIdentity::Any])));
    assert!(w.to_string().contains("\"*\""), "{w}");

    // A skip `*` is weaker than any verifying statement; none without `*`.
    let json = r#"{"version":"1.0","trustPolicies":[
        {"name":"prod","registryScopes":["r.io/prod"],"signatureVerification":{"level":"strict"},"trustStores":["ca:p"],"trustedIdentities":["*"]},
        {"name":"any","registryScopes":["*"],"signatureVerification":{"level":"skip"}}
    ]}"#;
    let doc = TrustPolicyDocument::from_json(json.as_bytes()).unwrap();
    assert_eq!(doc.weaker_global().len(), 1);
    assert!(TrustPolicyDocument::from_json(good("").as_bytes())
        .unwrap()
        .weaker_global()
        .is_empty());
}
