use super::*;

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
        ScopeProblem::SignatureKind {
            kind: "cosign".to_owned()
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
    assert_eq!(
        r.break_glass(&digest).map(|b| b.reason.as_str()),
        Some("INC-1")
    );
    let other: Digest = format!("sha256:{}", "b".repeat(64)).parse().unwrap();
    assert!(r.break_glass(&other).is_none());
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
