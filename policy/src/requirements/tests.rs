use super::*;
use crate::requirements::cosign::{
    CosignCheck, CosignFormat, CosignProblem, CosignSigner, SignedIdentity,
};

const CI: &str = "x509.subject: C=US, ST=WA, O=Acme, OU=CI";
const SCAN: &str = "x509.subject: C=US, ST=WA, O=Acme, OU=Scanner";

fn dn(s: &str) -> DistinguishedName {
    s.parse().unwrap()
}

fn scope_toml(body: &str) -> String {
    format!("[[scope]]\nname = \"prod\"\nregistry_scopes = [\"registry.example/app\"]\n{body}")
}

fn problem(text: &str) -> ScopeProblem {
    match Requirements::from_toml(text).unwrap_err() {
        Error::Scope { scope, problem } => {
            assert_eq!(scope, "prod", "the error names the entry");
            problem
        }
        other => panic!("not a scope error: {other:?}"),
    }
}

#[test]
fn empty_file_gives_the_default_everywhere() {
    let r = Requirements::from_toml("").unwrap();
    let repo: Repository = "docker.io/library/nginx".parse().unwrap();
    let req = r.for_repository(&repo);
    assert_eq!(req, &ScopeRequirement::default());
    assert_eq!(req.min_signers(), 1);
    assert_eq!(req.on_registry_error(), FailMode::Closed);
    assert_eq!(req.mode(), Mode::Enforce);
    assert!(!req.needs_every_signature());
}

#[test]
fn selection_is_exact_then_global_then_default() {
    let r = Requirements::from_toml(
        "[[scope]]\nname = \"app\"\nregistry_scopes = [\"registry.example/app\"]\nmode = \"audit\"\n\
         [[scope]]\nname = \"rest\"\nregistry_scopes = [\"*\"]\non_registry_error = \"fail_open\"\n",
    )
    .unwrap();
    let app: Repository = "registry.example/app".parse().unwrap();
    let other: Repository = "registry.example/other".parse().unwrap();
    assert_eq!(r.for_repository(&app).name(), "app");
    assert_eq!(r.for_repository(&app).mode(), Mode::Audit);
    assert_eq!(r.for_repository(&other).name(), "rest");
    assert_eq!(r.for_repository(&other).on_registry_error(), FailMode::Open);
    let only_app = Requirements::from_toml(&scope_toml("")).unwrap();
    assert_eq!(only_app.for_repository(&other).name(), "default");
}

#[test]
fn scopes_and_images_meet_in_their_canonical_spelling() {
    // A scope written with another spelling names the canonical repository.
    let r = Requirements::from_toml(
        "[[scope]]\nname = \"hub\"\nregistry_scopes = [\"Index.Docker.IO:443/nginx\"]\n\
         [[scope]]\nname = \"rest\"\nregistry_scopes = [\"*\"]\nmode = \"audit\"\n",
    )
    .unwrap();
    for image in [
        "nginx",
        "docker.io/library/nginx:1.25",
        "Docker.IO/nginx",
        "registry-1.docker.io:443/library/nginx",
    ] {
        let image: crate::reference::ImageRef = image.parse().unwrap();
        assert_eq!(
            r.for_repository(image.repository()).name(),
            "hub",
            "{image}"
        );
    }
    // Two spellings of one repository in two scopes: refused.
    let twice = Requirements::from_toml(
        "[[scope]]\nname = \"a\"\nregistry_scopes = [\"docker.io/library/nginx\"]\n\
         [[scope]]\nname = \"b\"\nregistry_scopes = [\"DOCKER.IO/nginx\"]\n",
    );
    assert!(twice.is_err());
}

#[test]
fn identities_set_the_signer_count_and_all_must_sign() {
    let r = Requirements::from_toml(&scope_toml(&format!("identities = [{CI:?}, {SCAN:?}]\n")))
        .unwrap();
    let req = &r.scopes()[0];
    assert_eq!(req.min_signers(), 2);
    assert!(req.needs_every_signature());
    let ci = dn("C=US, ST=WA, O=Acme, OU=CI, CN=builder");
    let scanner = dn("C=US, ST=WA, O=Acme, OU=Scanner, CN=trivy");
    let stranger = dn("C=US, ST=WA, O=Other, CN=x");
    let cases: &[(&[DistinguishedName], Result<(), Unmet>)] = &[
        (&[ci.clone(), scanner.clone()], Ok(())),
        (&[scanner.clone(), ci.clone(), stranger.clone()], Ok(())),
        (
            std::slice::from_ref(&ci),
            Err(Unmet::MissingIdentity {
                identity: "x509.subject:C=US,ST=WA,O=Acme,OU=Scanner".to_owned(),
            }),
        ),
        (
            &[],
            Err(Unmet::MissingIdentity {
                identity: "x509.subject:C=US,ST=WA,O=Acme,OU=CI".to_owned(),
            }),
        ),
    ];
    for (signers, want) in cases {
        let got = req.evaluate(signers);
        // Compare the variant and the identity, whatever the DN's canonical spelling.
        match (&got, want) {
            (Ok(()), Ok(())) => {}
            (
                Err(Unmet::MissingIdentity { identity: g }),
                Err(Unmet::MissingIdentity { identity: w }),
            ) => {
                assert_eq!(g.replace(' ', ""), w.replace(' ', ""), "{signers:?}");
            }
            _ => panic!("{signers:?}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn min_signers_counts_distinct_signers() {
    let r = Requirements::from_toml(&scope_toml("min_signers = 2\n")).unwrap();
    let req = &r.scopes()[0];
    let a = dn("C=US, ST=WA, O=Acme, CN=a");
    let b = dn("C=US, ST=WA, O=Acme, CN=b");
    assert_eq!(req.evaluate(&[a.clone(), b]), Ok(()));
    assert_eq!(
        req.evaluate(&[a.clone(), a]),
        Err(Unmet::TooFewSigners { have: 1, need: 2 })
    );
}

#[test]
fn invalid_entries_are_refused_with_their_name() {
    assert_eq!(
        problem(&scope_toml("min_signers = 0\n")),
        ScopeProblem::ZeroSigners
    );
    assert_eq!(
        problem(&scope_toml(&format!(
            "min_signers = 1\nidentities = [{CI:?}, {SCAN:?}]\n"
        ))),
        ScopeProblem::FewerSignersThanIdentities {
            min_signers: 1,
            identities: 2
        }
    );
    assert_eq!(
        problem(&scope_toml("identities = [\"*\"]\n")),
        ScopeProblem::WildcardIdentity
    );
    assert!(matches!(
        problem(&scope_toml("identities = [\"x509.subject: CN=nobody\"]\n")),
        ScopeProblem::Identity(IdentityError::MissingMandatory { .. })
    ));
    assert!(matches!(
        problem(&scope_toml(&format!(
            "identities = [{CI:?}, \"x509.subject: C=US, ST=WA, O=Acme\"]\n"
        ))),
        ScopeProblem::Identity(IdentityError::Overlapping { .. })
    ));
    assert_eq!(
        problem(&scope_toml("signature_kinds = [\"cosign\"]\n")),
        ScopeProblem::Cosign(CosignProblem::Missing)
    );
    assert_eq!(
        problem(&scope_toml("signature_kinds = [\"gpg\"]\n")),
        ScopeProblem::SignatureKind {
            kind: "gpg".to_owned()
        }
    );
    assert_eq!(
        problem(&scope_toml("signature_kinds = []\n")),
        ScopeProblem::NoSignatureKinds
    );
    assert!(matches!(
        problem(&scope_toml("mode = \"enforcing\"\n")),
        ScopeProblem::UnknownValue { key: "mode", .. }
    ));
    assert!(matches!(
        problem(&scope_toml("on_registry_error = \"open\"\n")),
        ScopeProblem::UnknownValue {
            key: "on_registry_error",
            ..
        }
    ));
    assert!(matches!(
        problem("[[scope]]\nname = \"prod\"\nregistry_scopes = [\"not a repo\"]\n"),
        ScopeProblem::InvalidRegistryScope { .. }
    ));
    assert_eq!(
        problem("[[scope]]\nname = \"prod\"\n"),
        ScopeProblem::NoRegistryScopes
    );
    assert!(matches!(
        Requirements::from_toml(
            "[[scope]]\nname = \"prod\"\nregistry_scopes = [\"*\"]\ntypo = 1\n"
        ),
        Err(Error::Malformed(_))
    ));
    assert!(matches!(
        Requirements::from_toml(
            "[[scope]]\nname = \"a\"\nregistry_scopes = [\"*\"]\n[[scope]]\nname = \"b\"\nregistry_scopes = [\"*\"]\n"
        ),
        Err(Error::ScopeInMultipleEntries { .. })
    ));
    assert!(matches!(
        Requirements::from_toml(
            "[[scope]]\nname = \"a\"\nregistry_scopes = [\"r.example/x\"]\n[[scope]]\nname = \"a\"\nregistry_scopes = [\"r.example/y\"]\n"
        ),
        Err(Error::Scope { problem: ScopeProblem::Name, .. })
    ));
}

#[test]
fn break_glass_entries_need_a_digest_and_a_reason() {
    let d = format!("sha256:{}", "a".repeat(64));
    let r = Requirements::from_toml(&format!(
        "[[break_glass]]\ndigest = {d:?}\nreason = \"INC-1\"\n"
    ))
    .unwrap();
    let digest: Digest = d.parse().unwrap();
    let any_repo: Repository = "registry.example/app".parse().unwrap();
    assert_eq!(
        r.break_glass(&any_repo, &digest).map(|b| b.reason.as_str()),
        Some("INC-1")
    );
    let other: Digest = format!("sha256:{}", "b".repeat(64)).parse().unwrap();
    assert!(r.break_glass(&any_repo, &other).is_none());
    assert!(matches!(
        Requirements::from_toml(&format!("[[break_glass]]\ndigest = {d:?}\n")),
        Err(Error::BreakGlass {
            index: 0,
            problem: BreakGlassProblem::NoReason
        })
    ));
    assert!(matches!(
        Requirements::from_toml("[[break_glass]]\ndigest = \"sha256:xyz\"\nreason = \"r\"\n"),
        Err(Error::BreakGlass {
            index: 0,
            problem: BreakGlassProblem::Digest { .. }
        })
    ));
}

const COSIGN_SCOPE: &str = r#"
[[scope]]
name = "release"
registry_scopes = ["registry.example/app"]
signature_kinds = ["cosign"]
min_signers = 1
[scope.cosign]
keys = ["/etc/pullgate/cosign/release.pub"]
trusted_root = "/etc/pullgate/sigstore/trusted_root.json"
signed_identity = "match_repository"
[[scope.cosign.identities]]
issuer = "https://token.actions.githubusercontent.com"
subject_regex = "^https://github\\.com/acme/app/\\.github/workflows/release\\.yml@refs/tags/"
"#;

const GH: &str = "https://token.actions.githubusercontent.com";
const RELEASE_WF: &str =
    "https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1.2.3";

fn cosign_req(text: &str) -> ScopeRequirement {
    Requirements::from_toml(text).unwrap().scopes()[0].clone()
}

fn cosign_problem(body: &str) -> CosignProblem {
    let text = format!(
        "[[scope]]\nname = \"prod\"\nregistry_scopes = [\"registry.example/app\"]\nsignature_kinds = [\"cosign\"]\n{body}"
    );
    match problem(&text) {
        ScopeProblem::Cosign(p) => p,
        other => panic!("not a cosign problem: {other:?}"),
    }
}

#[test]
fn cosign_table_parses_into_typed_values() {
    let req = cosign_req(COSIGN_SCOPE);
    assert_eq!(req.signature_kinds(), &[SignatureKind::Cosign]);
    assert!(
        !req.needs_notary_statement(),
        "a cosign-only scope needs no Notary statement"
    );
    let cosign = req.cosign().unwrap();
    assert_eq!(
        cosign.keys(),
        &[std::path::PathBuf::from("/etc/pullgate/cosign/release.pub")]
    );
    assert_eq!(
        cosign.trusted_root(),
        Some(std::path::Path::new(
            "/etc/pullgate/sigstore/trusted_root.json"
        ))
    );
    assert_eq!(cosign.signed_identity(), SignedIdentity::MatchRepository);
    assert_eq!(cosign.identities().len(), 1);
    assert_eq!(cosign.identities()[0].issuer(), GH);
    assert!(cosign.identities()[0].matches(GH, RELEASE_WF));
    assert!(!cosign.identities()[0].matches(
        GH,
        "https://github.com/acme/app/.github/workflows/ci.yml@refs/heads/main"
    ));
    assert!(!cosign.identities()[0].matches("https://accounts.google.com", RELEASE_WF));

    let both = cosign_req(&COSIGN_SCOPE.replace("[\"cosign\"]", "[\"notation\", \"cosign\"]"));
    assert!(both.needs_notary_statement());
    let any = cosign_req(&COSIGN_SCOPE.replace("\"match_repository\"", "\"any\""));
    assert_eq!(any.cosign().unwrap().signed_identity(), SignedIdentity::Any);
    let keys_only = cosign_req(
        "[[scope]]\nname = \"k\"\nregistry_scopes = [\"registry.example/app\"]\nsignature_kinds = [\"cosign\"]\n[scope.cosign]\nkeys = [\"/k/a.pub\"]\n",
    );
    let c = keys_only.cosign().unwrap();
    assert_eq!(
        c.signed_identity(),
        SignedIdentity::MatchRepository,
        "the default"
    );
    assert_eq!(c.trusted_root(), None);
}

#[test]
fn cosign_table_problems() {
    let cases: &[(&str, CosignProblem)] = &[
        ("", CosignProblem::Missing),
        ("[scope.cosign]\n", CosignProblem::NoSigners),
        (
            "[scope.cosign]\n[[scope.cosign.identities]]\nissuer = \"https://i\"\nsubject_regex = \".*\"\n",
            CosignProblem::IdentitiesWithoutTrustedRoot,
        ),
        (
            "[scope.cosign]\nkeys = [\"release.pub\"]\n",
            CosignProblem::Path { path: "release.pub".into() },
        ),
        (
            "[scope.cosign]\nkeys = [\"/a/k.pub\"]\ntrusted_root = \"root.json\"\n",
            CosignProblem::Path { path: "root.json".into() },
        ),
        (
            "[scope.cosign]\nkeys = [\"/a/k.pub\", \"/b/k.pub\"]\n",
            CosignProblem::DuplicateKeyName { name: "k.pub".to_owned() },
        ),
        (
            "[scope.cosign]\nkeys = [\"/a/k.pub\"]\nsigned_identity = \"exact\"\n",
            CosignProblem::SignedIdentity { value: "exact".to_owned() },
        ),
        (
            "[scope.cosign]\ntrusted_root = \"/r.json\"\n[[scope.cosign.identities]]\nissuer = \" \"\nsubject_regex = \".*\"\n",
            CosignProblem::EmptyIssuer,
        ),
    ];
    for (body, want) in cases {
        assert_eq!(&cosign_problem(body), want, "{body}");
    }
    assert!(matches!(
        cosign_problem("[scope.cosign]\ntrusted_root = \"/r.json\"\n[[scope.cosign.identities]]\nissuer = \"https://i\"\nsubject_regex = \"(unclosed\"\n"),
        CosignProblem::SubjectRegex { .. }
    ));
    // A cosign table on a scope that does not use cosign is dead config.
    assert_eq!(
        problem(&scope_toml("[scope.cosign]\nkeys = [\"/a/k.pub\"]\n")),
        ScopeProblem::Cosign(CosignProblem::NotAKind)
    );
    // Unknown keys are refused.
    assert!(matches!(
        Requirements::from_toml(&format!("{COSIGN_SCOPE}rekor_url = \"https://rekor\"\n")),
        Err(Error::Malformed(_))
    ));
}

#[test]
fn cosign_evaluation_table() {
    use CosignCheck::*;
    let req = cosign_req(COSIGN_SCOPE);
    let cosign = req.cosign().unwrap();
    let any = cosign_req(&COSIGN_SCOPE.replace("\"match_repository\"", "\"any\""));
    let any = any.cosign().unwrap();
    let key = CosignSigner::Key {
        name: "release.pub".to_owned(),
    };
    let keyless = CosignSigner::Keyless {
        issuer: GH.to_owned(),
        subject: RELEASE_WF.to_owned(),
    };
    let other_key = CosignSigner::Key {
        name: "other.pub".to_owned(),
    };
    let evil_subject = "https://github.com/evil/app/.github/workflows/release.yml@refs/tags/v1";
    let evil = CosignSigner::Keyless {
        issuer: GH.to_owned(),
        subject: evil_subject.to_owned(),
    };
    let all = |checks: &[CosignCheck]| checks.iter().map(|c| (*c, true)).collect::<Vec<_>>();
    let without = |checks: &[CosignCheck], failed: CosignCheck| {
        checks
            .iter()
            .map(|c| (*c, *c != failed))
            .collect::<Vec<_>>()
    };
    let simple_key = [Signature, TransparencyLog, Payload, SignedIdentity];
    let simple_keyless = [
        Signature,
        Certificate,
        TransparencyLog,
        Payload,
        SignedIdentity,
    ];
    let bundle_keyless = [
        Signature,
        Certificate,
        TransparencyLog,
        Payload,
        SignedIdentity,
    ];
    type Case<'a> = (
        &'a CosignRequirement,
        CosignFormat,
        &'a CosignSigner,
        Vec<(CosignCheck, bool)>,
        Result<(), CosignRejection>,
    );
    let cases: Vec<Case<'_>> = vec![
        (
            cosign,
            CosignFormat::SimpleSigning,
            &key,
            all(&simple_key),
            Ok(()),
        ),
        (
            cosign,
            CosignFormat::SimpleSigning,
            &keyless,
            all(&simple_keyless),
            Ok(()),
        ),
        (
            cosign,
            CosignFormat::Bundle,
            &keyless,
            all(&bundle_keyless),
            Ok(()),
        ),
        // A trusted root is configured: a key signature needs its log entry.
        (
            cosign,
            CosignFormat::SimpleSigning,
            &key,
            all(&[Signature, Payload, SignedIdentity]),
            Err(CosignRejection::CheckNotRun {
                check: TransparencyLog,
            }),
        ),
        (
            cosign,
            CosignFormat::SimpleSigning,
            &keyless,
            without(&simple_keyless, Certificate),
            Err(CosignRejection::CheckFailed { check: Certificate }),
        ),
        (
            cosign,
            CosignFormat::SimpleSigning,
            &keyless,
            without(&simple_keyless, SignedIdentity),
            Err(CosignRejection::CheckFailed {
                check: SignedIdentity,
            }),
        ),
        (
            any,
            CosignFormat::SimpleSigning,
            &keyless,
            without(&simple_keyless, SignedIdentity),
            Ok(()),
        ),
        // A bundle that names no repository (cosign v3's) counts only under `any`.
        (
            cosign,
            CosignFormat::Bundle,
            &keyless,
            without(&bundle_keyless, SignedIdentity),
            Err(CosignRejection::CheckFailed {
                check: SignedIdentity,
            }),
        ),
        (
            any,
            CosignFormat::Bundle,
            &keyless,
            without(&bundle_keyless, SignedIdentity),
            Ok(()),
        ),
        // Any failed report of a check fails it, even next to a passed one.
        (
            cosign,
            CosignFormat::SimpleSigning,
            &key,
            {
                let mut c = all(&simple_key);
                c.push((Payload, false));
                c
            },
            Err(CosignRejection::CheckFailed { check: Payload }),
        ),
        (
            cosign,
            CosignFormat::SimpleSigning,
            &other_key,
            all(&simple_key),
            Err(CosignRejection::UntrustedKey {
                name: "other.pub".to_owned(),
            }),
        ),
        (
            cosign,
            CosignFormat::SimpleSigning,
            &evil,
            all(&simple_keyless),
            Err(CosignRejection::UntrustedIdentity {
                issuer: GH.to_owned(),
                subject: evil_subject.to_owned(),
            }),
        ),
        (
            cosign,
            CosignFormat::Bundle,
            &keyless,
            vec![],
            Err(CosignRejection::CheckNotRun { check: Signature }),
        ),
    ];
    for (i, (req, format, signer, checks, want)) in cases.into_iter().enumerate() {
        assert_eq!(req.evaluate(format, signer, &checks), want, "case {i}");
    }
}

#[test]
fn signers_are_counted_across_kinds() {
    let req = cosign_req(
        &COSIGN_SCOPE
            .replace("min_signers = 1", "min_signers = 2")
            .replace("[\"cosign\"]", "[\"notation\", \"cosign\"]"),
    );
    let notary = AcceptedSigner::Notary(dn("C=US, ST=WA, O=Acme, OU=CI, CN=builder"));
    let key = AcceptedSigner::Cosign(CosignSigner::Key {
        name: "release.pub".to_owned(),
    });
    let keyless = AcceptedSigner::Cosign(CosignSigner::Keyless {
        issuer: GH.to_owned(),
        subject: RELEASE_WF.to_owned(),
    });
    let cases: &[(&[AcceptedSigner], Result<(), Unmet>)] = &[
        (&[notary.clone(), key.clone()], Ok(())),
        (&[key.clone(), keyless.clone()], Ok(())),
        (
            &[key.clone(), key.clone()],
            Err(Unmet::TooFewSigners { have: 1, need: 2 }),
        ),
        (
            std::slice::from_ref(&keyless),
            Err(Unmet::TooFewSigners { have: 1, need: 2 }),
        ),
    ];
    for (signers, want) in cases {
        assert_eq!(&req.evaluate_signers(signers), want, "{signers:?}");
    }
    // A required x509 identity is met by a Notary signer only.
    let text = COSIGN_SCOPE
        .replace("[\"cosign\"]", "[\"notation\", \"cosign\"]")
        .replace(
            "min_signers = 1",
            &format!("min_signers = 1\nidentities = [{CI:?}]"),
        );
    let req = cosign_req(&text);
    assert!(matches!(
        req.evaluate_signers(&[key, keyless]),
        Err(Unmet::MissingIdentity { .. })
    ));
    assert_eq!(req.evaluate_signers(&[notary]), Ok(()));
}

/// Issue 23, item 8: a break-glass digest applied in every repository.
#[test]
fn break_glass_registry_scopes_limit_where_the_digest_is_allowed() {
    let d = format!("sha256:{}", "a".repeat(64));
    let digest: Digest = d.parse().unwrap();
    let repo = |s: &str| s.parse::<Repository>().unwrap();
    let r = Requirements::from_toml(&format!(
        "[[break_glass]]\ndigest = {d:?}\nreason = \"INC-2\"\nregistry_scopes = [\"registry.example/app\", \"127.0.0.1:5000/prod/app\"]\n"
    ))
    .unwrap();
    assert!(r
        .break_glass(&repo("registry.example/app"), &digest)
        .is_some());
    assert!(r
        .break_glass(&repo("localhost:05000/prod/app"), &digest)
        .is_some());
    assert!(r
        .break_glass(&repo("registry.example/other"), &digest)
        .is_none());
    assert!(r
        .break_glass(&repo("docker.io/library/nginx"), &digest)
        .is_none());
    // Without registry_scopes: every repository, as before.
    let r = Requirements::from_toml(&format!(
        "[[break_glass]]\ndigest = {d:?}\nreason = \"INC-2\"\n"
    ))
    .unwrap();
    assert!(r
        .break_glass(&repo("registry.example/other"), &digest)
        .is_some());
    for (scopes, want) in [
        ("[]", "NoRegistryScopes"),
        ("[\"nginx\"]", "InvalidRegistryScope"),
    ] {
        let err = Requirements::from_toml(&format!(
            "[[break_glass]]\ndigest = {d:?}\nreason = \"r\"\nregistry_scopes = {scopes}\n"
        ))
        .unwrap_err();
        assert!(
            matches!(
                (&err, want),
                (
                    Error::BreakGlass {
                        problem: BreakGlassProblem::NoRegistryScopes,
                        ..
                    },
                    "NoRegistryScopes"
                ) | (
                    Error::BreakGlass {
                        problem: BreakGlassProblem::InvalidRegistryScope { .. },
                        ..
                    },
                    "InvalidRegistryScope"
                )
            ),
            "{err:?}"
        );
    }
}

#[test]
fn loopback_aliases_select_the_specific_scope() {
    let r = Requirements::from_toml(
        "[[scope]]\nname = \"prod\"\nregistry_scopes = [\"localhost:5000/prod/app\"]\nmin_signers = 2\n[[scope]]\nname = \"rest\"\nregistry_scopes = [\"*\"]\n",
    )
    .unwrap();
    for alias in [
        "127.0.0.1:5000/prod/app",
        "127.0.0.1:05000/prod/app",
        "[::1]:5000/prod/app",
    ] {
        let repo: Repository = alias.parse().unwrap();
        assert_eq!(r.for_repository(&repo).name(), "prod", "{alias}");
    }
    assert!(matches!(
        Requirements::from_toml(
            "[[scope]]\nname = \"a\"\nregistry_scopes = [\"localhost:5000/x\"]\n[[scope]]\nname = \"b\"\nregistry_scopes = [\"127.0.0.1:5000/x\"]\n"
        ),
        Err(Error::ScopeInMultipleEntries { .. })
    ));
}

#[test]
fn warnings_name_a_weaker_global_scope_and_unanchored_patterns() {
    let r = Requirements::from_toml(&format!(
        r#"
[[scope]]
name = "prod"
registry_scopes = ["registry.example/app"]
min_signers = 2
identities = [{CI:?}]
[[scope]]
name = "rest"
registry_scopes = ["*"]
on_registry_error = "fail_open"
mode = "warn"
signature_kinds = ["notation", "cosign"]
[scope.cosign]
keys = ["/k.pub"]
trusted_root = "/root.json"
[[scope.cosign.identities]]
issuer = "https://issuer.example"
subject_regex = "^https://github\\.com/acme/"
[[scope.cosign.identities]]
issuer = "https://issuer.example"
subject_regex = "^https://github\\.com/acme/app/\\.github/workflows/release\\.yml@refs/heads/main$"
"#
    ))
    .unwrap();
    let warnings = r.warnings();
    let Some(RequirementsWarning::WeakerGlobal {
        global,
        specific,
        ways,
    }) = warnings.first()
    else {
        panic!("{warnings:?}");
    };
    assert_eq!(
        (global.as_deref(), specific.as_str()),
        (Some("rest"), "prod")
    );
    for want in [
        ScopeWeakness::OtherSignatureKinds(vec![SignatureKind::Cosign]),
        ScopeWeakness::FewerSigners {
            global: 1,
            specific: 2,
        },
        ScopeWeakness::FailOpen,
        ScopeWeakness::NotEnforced(Mode::Warn),
        ScopeWeakness::OtherCosignKeys(vec!["/k.pub".into()]),
        ScopeWeakness::OtherTrustedRoot,
    ] {
        assert!(ways.contains(&want), "{want:?} in {ways:?}");
    }
    assert!(
        matches!(ways.iter().find(|w| matches!(w, ScopeWeakness::MissingIdentities(_))), Some(ScopeWeakness::MissingIdentities(ids)) if ids.len() == 1)
    );
    let unanchored: Vec<&str> = warnings
        .iter()
        .filter_map(|w| match w {
            RequirementsWarning::UnanchoredSubjectRegex { subject_regex, .. } => {
                Some(subject_regex.as_str())
            }
            _ => None,
        })
        .collect();
    assert_eq!(unanchored, ["^https://github\\.com/acme/"]);
    assert_eq!(warnings.len(), 2, "{warnings:?}");

    // The built-in default is the global scope when there is no `*`.
    let r = Requirements::from_toml(&scope_toml("min_signers = 2\n")).unwrap();
    assert!(matches!(
        r.warnings().as_slice(),
        [RequirementsWarning::WeakerGlobal { global: None, .. }]
    ));
    // A `*` as strict as the specific scope: nothing to say.
    let r = Requirements::from_toml(
        "[[scope]]\nname = \"prod\"\nregistry_scopes = [\"registry.example/app\"]\n[[scope]]\nname = \"rest\"\nregistry_scopes = [\"*\"]\n",
    )
    .unwrap();
    assert!(r.warnings().is_empty());
    for (pattern, ok) in [
        ("^a$", true),
        ("\\Aa\\z", true),
        ("^a\\$", false),
        ("^a\\\\$", true),
        ("a$", false),
        ("^a", false),
    ] {
        assert_eq!(warnings::anchored(pattern), ok, "{pattern}");
    }
}

const NAMESPACED: &str = r#"
    [[scope]]
    name = "strict-teams"
    registry_scopes = ["*"]
    namespaces = ["team-a", "kube-*"]
    min_signers = 2

    [[scope]]
    name = "app-everyone"
    registry_scopes = ["registry.example/app"]
    mode = "audit"

    [[scope]]
    name = "rest"
    registry_scopes = ["*"]
    mode = "warn"
"#;

#[test]
fn a_namespace_scope_wins_over_every_scope_without_namespaces() {
    let r = Requirements::from_toml(NAMESPACED).unwrap();
    let app: Repository = "registry.example/app".parse().unwrap();
    let other: Repository = "registry.example/other".parse().unwrap();
    // A pod of a listed namespace: its entry, even against an exact repository rule.
    assert_eq!(r.for_pod(&app, Some("team-a")).name(), "strict-teams");
    assert_eq!(r.for_pod(&app, Some("kube-system")).name(), "strict-teams");
    assert_eq!(
        r.for_pod(&other, Some("kube-public")).name(),
        "strict-teams"
    );
    // Another namespace, or none: the entries that list no namespaces.
    assert_eq!(r.for_pod(&app, Some("team-b")).name(), "app-everyone");
    assert_eq!(r.for_pod(&other, Some("team-b")).name(), "rest");
    assert_eq!(r.for_pod(&app, None).name(), "app-everyone");
    assert_eq!(r.for_repository(&app).name(), "app-everyone");
    // `kube-*` is a glob on the whole name, not a prefix of a longer word.
    assert_eq!(r.for_pod(&other, Some("xkube-system")).name(), "rest");
    assert_eq!(r.for_pod(&other, Some("kube")).name(), "rest");
}

#[test]
fn a_request_without_namespace_never_gets_a_namespace_scope() {
    let r = Requirements::from_toml(
        r#"
        [[scope]]
        name = "only-ns"
        registry_scopes = ["*"]
        namespaces = ["*"]
        min_signers = 3
        "#,
    )
    .unwrap();
    let app: Repository = "registry.example/app".parse().unwrap();
    assert_eq!(r.for_pod(&app, None), &ScopeRequirement::default());
    assert_eq!(r.for_pod(&app, Some("anything")).name(), "only-ns");
}

#[test]
fn namespace_globs_match_whole_names() {
    let p = |s: &str| NamespacePattern::parse(s).unwrap();
    assert!(p("team-a").matches("team-a"));
    assert!(!p("team-a").matches("team-ab"));
    assert!(p("team-*").matches("team-"));
    assert!(p("team-*").matches("team-abc"));
    assert!(p("*-prod").matches("web-prod"));
    assert!(!p("*-prod").matches("web-prod2"));
    assert!(p("a*b*c").matches("aXXbYYc"));
    assert!(!p("a*b*c").matches("aXXbYY"));
    assert!(p("*").matches("x"));
    // Many stars against a long near-miss: linear, no blow-up.
    let many = format!("{}b", "a*".repeat(30));
    assert!(!NamespacePattern::parse(&many[..63.min(many.len())])
        .unwrap()
        .matches(&"a".repeat(63)));
}

#[test]
fn a_bad_namespace_pattern_is_refused_naming_it() {
    for bad in ["", "Team-A", "team_a", "team a", &"x".repeat(64)] {
        let text = scope_toml(&format!("namespaces = [{bad:?}]"));
        assert!(
            matches!(problem(&text), ScopeProblem::Namespace { .. }),
            "{bad:?}"
        );
    }
}

#[test]
fn one_registry_scope_in_two_entries_needs_disjoint_namespaces() {
    let two = |a: &str, b: &str| {
        format!(
            "[[scope]]\nname = \"a\"\nregistry_scopes = [\"*\"]\n{a}\n\
             [[scope]]\nname = \"b\"\nregistry_scopes = [\"*\"]\n{b}\n"
        )
    };
    assert!(Requirements::from_toml(&two("", "namespaces = [\"x\"]")).is_ok());
    assert!(Requirements::from_toml(&two("namespaces = [\"y\"]", "namespaces = [\"x\"]")).is_ok());
    assert!(matches!(
        Requirements::from_toml(&two("", "")),
        Err(Error::ScopeInMultipleEntries { .. })
    ));
    assert!(matches!(
        Requirements::from_toml(&two("namespaces = [\"x\", \"y\"]", "namespaces = [\"y\"]")),
        Err(Error::ScopeInMultipleEntries { .. })
    ));
}

fn repo(s: &str) -> Repository {
    s.parse().unwrap()
}

#[test]
fn prefix_globs_match_one_segment_or_any_depth_below_their_literal() {
    let cases: &[(&str, &str, bool)] = &[
        ("registry.example/team/*", "registry.example/team/app", true),
        (
            "registry.example/team/*",
            "registry.example/team/app/x",
            false,
        ),
        ("registry.example/team/*", "registry.example/team", false),
        (
            "registry.example/team/*",
            "registry.example/teamx/app",
            false,
        ),
        ("registry.example/team/*", "other.example/team/app", false),
        (
            "registry.example/team/**",
            "registry.example/team/app",
            true,
        ),
        (
            "registry.example/team/**",
            "registry.example/team/a/b/c",
            true,
        ),
        ("registry.example/team/**", "registry.example/team", false),
        (
            "registry.example/team/**",
            "registry.example/teams/app",
            false,
        ),
        ("registry.example/*", "registry.example/app", true),
        ("registry.example/*", "registry.example/team/app", false),
        ("registry.example/**", "registry.example/team/app", true),
        (
            "registry.example:443/team/*",
            "registry.example/team/app",
            true,
        ),
        ("REGISTRY.example/team/*", "registry.example/team/app", true),
        ("127.0.0.1:5000/team/*", "localhost:5000/team/app", true),
        ("localhost:5000/team/*", "[::1]:5000/team/app", true),
        ("localhost:5000/team/*", "localhost:5001/team/app", false),
        ("docker.io/*", "docker.io/library/nginx", true),
        ("docker.io/*", "docker.io/bitnami/redis", false),
        ("docker.io/**", "docker.io/bitnami/redis", true),
        ("index.docker.io/bitnami/*", "docker.io/bitnami/redis", true),
        ("**", "registry.example/a/b", true),
    ];
    for (pattern, name, want) in cases {
        let p = RepositoryPattern::parse(pattern).unwrap();
        assert_eq!(p.matches(&repo(name)), *want, "{pattern} vs {name}");
    }
    assert_eq!(
        RepositoryPattern::parse("**").unwrap(),
        RepositoryPattern::Any
    );
    assert_eq!(
        RepositoryPattern::parse("127.0.0.1:5000/team/*")
            .unwrap()
            .to_string(),
        "localhost:5000/team/*"
    );
}

#[test]
fn a_glob_anywhere_but_the_whole_last_segment_is_refused() {
    for bad in [
        "registry.example/*/app",
        "registry.example/te*",
        "registry.example/team/***",
        "*/app",
        "/*",
        "registry.example/team*/**",
    ] {
        let text = format!("[[scope]]\nname = \"prod\"\nregistry_scopes = [\"{bad}\"]\n");
        assert_eq!(
            problem(&text),
            ScopeProblem::RegistryScopeGlob {
                scope: bad.to_owned()
            },
            "{bad}"
        );
    }
    let text = "[[scope]]\nname = \"prod\"\nregistry_scopes = [\"team/*\"]\n";
    assert!(
        matches!(problem(text), ScopeProblem::InvalidRegistryScope { .. }),
        "a glob's literal names its registry"
    );
}

const LAYERED: &str = r#"
[[scope]]
name = "everything"
registry_scopes = ["**"]

[[scope]]
name = "host"
registry_scopes = ["registry.example/**"]

[[scope]]
name = "team-deep"
registry_scopes = ["registry.example/team/**"]

[[scope]]
name = "team"
registry_scopes = ["registry.example/team/*"]

[[scope]]
name = "app"
registry_scopes = ["registry.example/team/app"]

[[scope]]
name = "pods"
registry_scopes = ["*"]
namespaces = ["secure-*"]
"#;

#[test]
fn the_most_specific_registry_scope_wins_whatever_the_file_order() {
    let r = Requirements::from_toml(LAYERED).unwrap();
    let name = |n: &str, ns: Option<&str>| r.for_pod(&repo(n), ns).name().to_owned();
    assert_eq!(name("registry.example/team/app", None), "app");
    assert_eq!(name("registry.example/team/web", None), "team");
    assert_eq!(name("registry.example/team/web/x", None), "team-deep");
    assert_eq!(name("registry.example/other", None), "host");
    assert_eq!(name("elsewhere.example/team/app", None), "everything");
    // The namespace rule first: a scope naming the pod's namespace wins
    // even with `*` over an exact repository of a scope that names none.
    assert_eq!(name("registry.example/team/app", Some("secure-a")), "pods");
    assert_eq!(name("registry.example/team/app", Some("web")), "app");
    let p = r
        .placement(&repo("registry.example/team/web"), Some("web"))
        .unwrap();
    assert_eq!(p.pattern.to_string(), "registry.example/team/*");
    assert_eq!(p.namespace, None);
    let p = r
        .placement(&repo("registry.example/team/web"), Some("secure-b"))
        .unwrap();
    assert_eq!(p.namespace.map(NamespacePattern::as_str), Some("secure-*"));

    // The same entries in reverse order decide the same.
    let mut blocks: Vec<&str> = LAYERED.split("\n\n").collect();
    blocks.reverse();
    let reversed = Requirements::from_toml(&blocks.join("\n\n")).unwrap();
    for n in [
        "registry.example/team/app",
        "registry.example/team/web",
        "registry.example/team/web/x",
        "registry.example/other",
        "elsewhere.example/team/app",
    ] {
        assert_eq!(
            reversed.for_repository(&repo(n)).name(),
            r.for_repository(&repo(n)).name(),
            "{n}"
        );
    }
}

#[test]
fn one_glob_in_two_entries_is_refused_naming_both() {
    let two = |a: &str, b: &str| {
        format!(
            "[[scope]]\nname = \"first\"\nregistry_scopes = [\"{a}\"]\n\
             [[scope]]\nname = \"second\"\nregistry_scopes = [\"{b}\"]\n"
        )
    };
    for (a, b) in [
        ("registry.example/team/*", "registry.example/team/*"),
        ("127.0.0.1:5000/team/**", "localhost:5000/team/**"),
        ("registry.example:443/team/*", "registry.example/team/*"),
        ("*", "**"),
    ] {
        let err = Requirements::from_toml(&two(a, b)).unwrap_err();
        assert!(
            matches!(&err, Error::ScopeInMultipleEntries { first, second, .. }
                if first == "first" && second == "second"),
            "{a} / {b}: {err}"
        );
        let text = err.to_string();
        assert!(
            text.contains("\"first\"") && text.contains("\"second\""),
            "{text}"
        );
    }
    // Different depths or prefixes are not ties: one is more specific.
    assert!(
        Requirements::from_toml(&two("registry.example/team/*", "registry.example/team/**"))
            .is_ok()
    );
    assert!(
        Requirements::from_toml(&two("registry.example/**", "registry.example/team/**")).is_ok()
    );
}

#[test]
fn a_signature_repository_is_one_repository() {
    let r = Requirements::from_toml(&scope_toml(
        "signature_repository = \"Registry.Example:443/signatures/app\"\n",
    ))
    .unwrap();
    assert_eq!(
        r.scopes()[0]
            .signature_repository()
            .map(ToString::to_string),
        Some("registry.example/signatures/app".to_owned())
    );
    assert_eq!(r.built_in().signature_repository(), None);
    let none = Requirements::from_toml(&scope_toml("")).unwrap();
    assert_eq!(none.scopes()[0].signature_repository(), None);
    for bad in [
        "registry.example/sigs/*",
        "signatures/app",
        "registry.example/sigs:v1",
        "registry.example/sigs@sha256:0000000000000000000000000000000000000000000000000000000000000000",
        "",
    ] {
        let text = scope_toml(&format!("signature_repository = \"{bad}\"\n"));
        assert!(
            matches!(
                problem(&text),
                ScopeProblem::InvalidSignatureRepository { ref repository, .. } if repository == bad
            ),
            "{bad}"
        );
    }
}

const COSIGN_KEY: &str =
    "signature_kinds = [\"cosign\"]\n[scope.cosign]\nkeys = [\"/etc/pullgate/ci.pub\"]\n";

#[test]
fn attestations_parse_with_their_conditions() {
    let text = scope_toml(&format!(
        "{COSIGN_KEY}[[scope.attestations]]\npredicate_type = \"https://slsa.dev/provenance/v1\"\n\
         conditions = ['predicate.buildDefinition.externalParameters.workflow.repository == \"https://github.com/acme/app\"']\n\
         [[scope.attestations]]\npredicate_type = \"https://cosign.sigstore.dev/attestation/vuln/v1\"\n"
    ));
    let r = Requirements::from_toml(&text).unwrap();
    let a = r.scopes()[0].attestations();
    assert_eq!(a.len(), 2);
    assert_eq!(a[0].predicate_type(), "https://slsa.dev/provenance/v1");
    assert_eq!(a[0].conditions().len(), 1);
    assert!(a[1].conditions().is_empty());
    // A scope without them requires none.
    let plain = Requirements::from_toml(&scope_toml(COSIGN_KEY)).unwrap();
    assert!(plain.scopes()[0].attestations().is_empty());
}

#[test]
fn bad_attestation_entries_are_refused_at_load() {
    let entry = |body: &str| scope_toml(&format!("{COSIGN_KEY}[[scope.attestations]]\n{body}"));
    // Unknown keys.
    assert!(matches!(
        Requirements::from_toml(&entry("predicate_type = \"p\"\nsigners = [\"x\"]\n")),
        Err(Error::Malformed(_))
    ));
    // Bad CEL, at load.
    assert!(matches!(
        problem(&entry(
            "predicate_type = \"p\"\nconditions = ['predicate.a ==']\n"
        )),
        ScopeProblem::Attestation(p) if matches!(*p, AttestationProblem::Syntax { .. })
    ));
    assert!(matches!(
        problem(&entry(
            "predicate_type = \"p\"\nconditions = ['image.name == \"x\"']\n"
        )),
        ScopeProblem::Attestation(p) if matches!(*p, AttestationProblem::UnknownVariable { .. })
    ));
    // One entry per predicate type.
    assert!(matches!(
        problem(&entry(
            "predicate_type = \"p\"\n[[scope.attestations]]\npredicate_type = \"p\"\n"
        )),
        ScopeProblem::Attestation(p) if matches!(*p, AttestationProblem::DuplicatePredicateType { .. })
    ));
    // A notation-only scope: its attestations are signed with notation.
    let r = Requirements::from_toml(&scope_toml(
        "[[scope.attestations]]\npredicate_type = \"p\"\n",
    ))
    .unwrap();
    assert_eq!(r.scopes()[0].attestations().len(), 1);
}
