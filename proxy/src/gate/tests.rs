use std::time::{Instant, UNIX_EPOCH};

use pullgate_policy::config::Limits;

use super::decision::{DenyReason, Signers};
use super::policy_state::without_anchors;
use super::*;

fn one_signer() -> Signers {
    Arc::from(vec!["CN=pullgate-e2e,O=Notary,ST=WA,C=US".to_owned()])
}

/// A policy with one statement, `*` strict, and no requirements file.
fn one_statement_policy() -> PolicyState {
    let document = pullgate_policy::TrustPolicyDocument::from_json(
        br#"{"version": "1.0", "trustPolicies": [{"name": "all", "registryScopes": ["*"],
            "signatureVerification": {"level": "strict"},
            "trustStores": ["ca:e2e"], "trustedIdentities": ["*"]}]}"#,
    )
    .unwrap();
    PolicyState::for_tests(
        document,
        pullgate_policy::requirements::Requirements::default(),
        PolicyGeneration(1),
    )
}

/// The key a pull of `digest` in `repository` is cached under, when its pulls are verified.
fn verified_key(policy: &PolicyState, repository: &Repository, digest: &Digest) -> Key {
    let plan = policy.plan_for(repository, None);
    let Route::Verify { statement } = plan.route else {
        panic!("{repository} is not verified")
    };
    policy.key(statement, plan.scope, repository, digest)
}

/// The key of the `i`th synthetic digest in `r.example/app`.
fn key_of(policy: &PolicyState, i: u64) -> Key {
    let digest: Digest = format!("sha256:{i:064x}").parse().unwrap();
    let repository: Repository = "r.example/app".parse().unwrap();
    verified_key(policy, &repository, &digest)
}

/// An allow verdict as a typical pull leaves it in the cache: one signer
/// (the list shared with every other verdict by that signer).
fn typical_allow(signers: &Signers) -> Verdict {
    let until = UNIX_EPOCH + Duration::from_secs(2_000_000_000);
    Verdict::allowed(Arc::clone(signers), until)
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Measurement, not a test: cache-hit lookups per second and resident
/// memory per cached verdict. Run with
/// `cargo test -p pullgate --release --lib gate::tests::cache_hit_figures -- --ignored --nocapture`.
#[test]
#[ignore = "measurement: prints figures, asserts nothing"]
#[allow(clippy::print_stdout)] // reason: the figures are the output
fn cache_hit_figures() {
    const ENTRIES: u64 = 100_000;
    const LOOKUPS: u64 = 1_000_000;
    let cache: VerdictCache<Key, Verdict, Signatures, GateError> = VerdictCache::new(ENTRIES * 2);
    let signers = one_signer();
    let policy = one_statement_policy();
    let keys: Vec<Key> = (0..ENTRIES).map(|i| key_of(&policy, i)).collect();
    let before = rss_bytes();
    for i in 0..ENTRIES {
        cache.insert(
            key_of(&policy, i),
            typical_allow(&signers),
            Duration::from_secs(3600),
        );
    }
    let count = cache.entry_count();
    let after = rss_bytes();
    let started = Instant::now();
    let mut hits = 0u64;
    for i in 0..LOOKUPS {
        // A multiplicative stride spreads lookups over the whole key set.
        let k = &keys[usize::try_from(i.wrapping_mul(2_654_435_761) % ENTRIES).unwrap()];
        if cache
            .get(k)
            .is_some_and(|v| matches!(v, Verdict::Allowed { .. }))
        {
            hits += 1;
        }
    }
    let took = started.elapsed();
    println!(
        "verdict cache: {count} entries, {:.0} bytes RSS per entry; {hits} hits in {took:?} = {:.0} lookups/s (one thread)",
        after.saturating_sub(before) as f64 / ENTRIES as f64,
        LOOKUPS as f64 / took.as_secs_f64()
    );
}

/// A gate over a trust policy with a `prod` (two repositories) and a `dev` statement (empty
/// trust store `ca:e2e`, no network needed), in `dir`.
fn two_statement_gate(dir: &Path) -> Gate {
    std::fs::create_dir_all(dir.join("truststore/x509/ca/e2e")).unwrap();
    std::fs::write(
        dir.join("trustpolicy.json"),
        r#"{"version": "1.0", "trustPolicies": [
            {"name": "prod", "registryScopes": ["reg.example/prod/app", "reg.example/prod/web"],
             "signatureVerification": {"level": "strict"},
             "trustStores": ["ca:e2e"], "trustedIdentities": ["*"]},
            {"name": "dev", "registryScopes": ["reg.example/dev/app"],
             "signatureVerification": {"level": "strict"},
             "trustStores": ["ca:e2e"], "trustedIdentities": ["*"]}
        ]}"#,
    )
    .unwrap();
    let mut config = Config::default();
    config.trust.policy = dir.join("trustpolicy.json");
    config.trust.store = dir.join("truststore");
    Gate::load(&config).unwrap()
}

fn pinned(repo: &str, digest: &Digest) -> PinnedRef {
    let image: ImageRef = format!("{repo}@{digest}").parse().unwrap();
    image.pinned(digest.clone())
}

#[test]
fn image_status_shows_an_image_only_under_the_statement_that_allowed_it() {
    let dir = tempfile::tempdir().unwrap();
    let gate = two_statement_gate(dir.path());
    let digest: Digest = format!("sha256:{}", "c".repeat(64)).parse().unwrap();
    let prod = pinned("reg.example/prod/app", &digest);
    let web = pinned("reg.example/prod/web", &digest);
    let dev = pinned("reg.example/dev/app", &digest);
    assert!(!gate.may_show(std::slice::from_ref(&prod)));

    let policy = gate.policy();
    let key = verified_key(&policy, prod.repository(), &digest);
    let allow = typical_allow(&one_signer());
    gate.cache.insert(key, allow, Duration::from_secs(3600));
    assert!(gate.may_show(std::slice::from_ref(&prod)));
    // The same digest in a repository under another statement: not shown.
    assert!(!gate.may_show(std::slice::from_ref(&dev)));
    // Nor in another repository of the same statement: its signatures
    // were never looked at there.
    assert!(!gate.may_show(std::slice::from_ref(&web)));
    assert!(gate.may_show(&[dev.clone(), prod]));

    // Persisted and restored, the allow keeps its statement and repository.
    let (fingerprint, saved) = gate.allow_verdicts();
    assert_eq!(saved.len(), 1);
    assert_eq!(saved[0].statement.as_deref(), Some("prod"));
    assert_eq!(saved[0].requirement, None);
    assert_eq!(saved[0].repository.to_string(), "reg.example/prod/app");
    assert_eq!(saved[0].digest, digest);
    assert_eq!(saved[0].signers, one_signer().to_vec());
    assert_eq!(
        saved[0].until,
        UNIX_EPOCH + Duration::from_secs(2_000_000_000)
    );
    let restarted = two_statement_gate(dir.path());
    assert_eq!(restarted.restore(&fingerprint, saved), 1);
    let prod = pinned("reg.example/prod/app", &digest);
    assert!(restarted.may_show(std::slice::from_ref(&prod)));
    assert!(!restarted.may_show(std::slice::from_ref(&dev)));
    assert!(!restarted.may_show(std::slice::from_ref(&web)));
}

#[test]
fn a_statement_without_trust_anchors_says_which_stores_are_empty() {
    let dir = tempfile::tempdir().unwrap();
    let gate = two_statement_gate(dir.path());
    let policy = gate.policy();
    let repo: Repository = "reg.example/prod/app".parse().unwrap();
    let Route::Verify {
        statement: Some(statement),
    } = policy.plan_for(&repo, None).route
    else {
        panic!("prod verifies")
    };
    assert_eq!(policy.statement(statement).name(), "prod");
    let empty = without_anchors(&policy.store, policy.statement(statement)).unwrap();
    let reason = DenyReason::NoTrustAnchors { stores: empty };
    assert_eq!(
        reason.to_string(),
        "no signature can be trusted: trust store ca:e2e is empty"
    );
}

/// A policy directory for a cosign requirements scope: a `*` trust policy
/// statement of level `skip`, an empty trust store, and the config naming
/// them with `requirements.toml`; with the paths of `requirements.toml` and of
/// the scope's key `release.pub` (neither written), and the containers-image
/// vectors. The directory lives as long as the returned guard.
fn cosign_scope_fixture() -> (tempfile::TempDir, Config, PathBuf, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("trustpolicy.json");
    std::fs::write(
        &policy,
        r#"{"version":"1.0","trustPolicies":[{"name":"all","registryScopes":["*"],"signatureVerification":{"level":"skip"},"trustStores":[],"trustedIdentities":[]}]}"#,
    )
    .unwrap();
    let store = dir.path().join("truststore");
    std::fs::create_dir_all(store.join("x509")).unwrap();
    let requirements = dir.path().join("requirements.toml");
    let key = dir.path().join("release.pub");
    let vectors = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors/containers-image");
    let config = Config {
        trust: TrustConfig {
            policy,
            store,
            requirements: Some(requirements.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    (dir, config, requirements, key, vectors)
}

/// A cosign scope's key files are loaded with the policy: a file that
/// cannot be read or parsed refuses the load naming it (at reload, the old
/// policy stays), and a changed key is a new generation. The scope needs no
/// trust policy statement: under a `*` statement of level `skip`, its
/// images are still verified, keyed without a statement.
#[test]
fn cosign_trust_files_load_with_the_policy_and_reload_with_it() {
    let (_dir, config, requirements, key, vectors) = cosign_scope_fixture();
    std::fs::write(
        &requirements,
        format!(
            "[[scope]]\nname = \"release\"\nregistry_scopes = [\"r.example/app\"]\nsignature_kinds = [\"cosign\"]\n[scope.cosign]\nkeys = [{:?}]\n",
            key.display().to_string()
        ),
    )
    .unwrap();

    // The key file is missing: refused, naming it.
    let err = Gate::load(&config).unwrap_err();
    assert!(matches!(err, LoadError::Read { .. }), "{err:?}");
    assert!(err.to_string().contains("release.pub"), "{err}");
    // Not a key: refused, naming the scope and the file.
    std::fs::write(&key, "not a key\n").unwrap();
    let err = Gate::load(&config).unwrap_err();
    assert!(
        matches!(&err, LoadError::Cosign { scope, .. } if scope == "release"),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&key.display().to_string()),
        "{err}"
    );

    std::fs::copy(vectors.join("cosign.pub"), &key).unwrap();
    let gate = Gate::load(&config).unwrap();
    let state = gate.policy();
    let repo: Repository = "r.example/app".parse().unwrap();
    let plan = state.plan_for(&repo, None);
    assert_eq!(plan.route, Route::Verify { statement: None });
    assert_eq!(state.cosign(plan.scope).unwrap().trust.keys.len(), 1);
    let digest: Digest = format!("sha256:{}", "a".repeat(64)).parse().unwrap();
    assert_eq!(verified_key(&state, &repo, &digest).statement, None);
    // Another repository falls to the built-in default under `*` skip.
    let other: Repository = "r.example/other".parse().unwrap();
    let plan = state.plan_for(&other, None);
    assert!(matches!(plan.route, Route::Skip(_)));
    assert!(state.cosign(plan.scope).is_none());
    assert_eq!(gate.reload().unwrap(), None);

    // Another key: a new generation.
    std::fs::copy(vectors.join("cosign2.pub"), &key).unwrap();
    assert_eq!(gate.reload().unwrap(), Some(PolicyGeneration(2)));
    // An unusable key: refused, the generation in force stays.
    std::fs::write(
        &key,
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
    )
    .unwrap();
    assert!(matches!(gate.reload(), Err(LoadError::Cosign { .. })));
    assert_eq!(gate.generation(), PolicyGeneration(2));
    assert_eq!(
        gate.policy()
            .cosign(gate.policy().plan_for(&repo, None).scope)
            .unwrap()
            .trust
            .keys
            .len(),
        1
    );
}

/// A scope's `[[scope.attestations]]` are part of what decides its
/// verdicts: a changed condition is a new policy generation (so no verdict
/// key of the old one is served), and a condition that does not compile
/// refuses the reload, the generation in force staying.
#[test]
fn attestation_conditions_are_part_of_the_policy_generation() {
    let (_dir, config, requirements, key, vectors) = cosign_scope_fixture();
    std::fs::copy(vectors.join("cosign.pub"), &key).unwrap();
    let write = |condition: &str| {
        std::fs::write(
            &requirements,
            format!(
                "[[scope]]\nname = \"release\"\nregistry_scopes = [\"r.example/app\"]\nsignature_kinds = [\"cosign\"]\n[scope.cosign]\nkeys = [{:?}]\n\
                 [[scope.attestations]]\npredicate_type = \"https://slsa.dev/provenance/v1\"\nconditions = ['{condition}']\n",
                key.display().to_string()
            ),
        )
        .unwrap();
    };
    write(r#"predicate.builder.id == "https://ci.example/a""#);
    let gate = Gate::load(&config).unwrap();
    let repo: Repository = "r.example/app".parse().unwrap();
    let digest: Digest = format!("sha256:{}", "a".repeat(64)).parse().unwrap();
    let before = verified_key(&gate.policy(), &repo, &digest);
    assert_eq!(gate.reload().unwrap(), None);
    write(r#"predicate.builder.id == "https://ci.example/b""#);
    assert_eq!(gate.reload().unwrap(), Some(PolicyGeneration(2)));
    assert_ne!(verified_key(&gate.policy(), &repo, &digest), before);
    write("predicate.builder.id ==");
    let err = gate.reload().unwrap_err();
    assert!(matches!(err, LoadError::Requirements { .. }), "{err:?}");
    assert!(err.to_string().contains("not valid CEL"), "{err}");
    assert_eq!(gate.generation(), PolicyGeneration(2));
}

/// An allow without a digest (level `skip`) is forwarded under the
/// canonical reference the gate judged (`LOCALHOST:1` is `localhost:1`),
/// never the client's spelling; a registry outage under `fail_open` before
/// the tag resolved is no allow at all: nothing is forwarded unpinned.
#[tokio::test]
async fn an_allow_without_a_digest_names_the_canonical_reference() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::create_dir_all(dir.join("truststore/x509/ca/e2e")).unwrap();
    std::fs::write(
        dir.join("trustpolicy.json"),
        r#"{"version": "1.0", "trustPolicies": [
            {"name": "skipped", "registryScopes": ["localhost:1/skipped"],
             "signatureVerification": {"level": "skip"}},
            {"name": "rest", "registryScopes": ["*"],
             "signatureVerification": {"level": "strict"},
             "trustStores": ["ca:e2e"], "trustedIdentities": ["*"]}
        ]}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("requirements.toml"),
        "[[scope]]\nname = \"open\"\nregistry_scopes = [\"localhost:1/open\"]\non_registry_error = \"fail_open\"\n",
    )
    .unwrap();
    let mut config = Config::default();
    config.trust.policy = dir.join("trustpolicy.json");
    config.trust.store = dir.join("truststore");
    config.trust.requirements = Some(dir.join("requirements.toml"));
    // Nothing listens on port 1: connection refused, an outage.
    config.registry.plain_http = vec!["localhost:1".to_owned()];
    let gate = Gate::load(&config).unwrap();
    for (asked, forwarded) in [
        ("LOCALHOST:1/skipped:v1", Some("localhost:1/skipped:v1")),
        ("LocalHost:1/open:v1", None),
    ] {
        let req = PullRequest {
            image: asked.parse().unwrap(),
            credentials: Credentials::NotGiven,
            deadline: Deadline::after(Duration::from_secs(10)),
            origin: Origin::door(Door::Pull),
        };
        match (gate.decide(req).await, forwarded) {
            (Ok(Decision::Allow(allow)), Some(forwarded)) => {
                assert!(allow.pinned().is_none(), "{asked}");
                assert_eq!(allow.image_to_pull(), forwarded);
            }
            (Err(GateError::Registry(e)), None) => assert!(e.is_outage(), "{asked}: {e}"),
            (other, _) => panic!("{asked}: {other:?}"),
        }
    }
}

/// The config of a gate over `reg` (plain HTTP) whose trust policy
/// verifies every image (statement for `*`, strict) against trust store
/// `ca:e2e` under `dir`.
fn config_over(dir: &Path, reg: &pullgate_tests::oci_registry::OciRegistry) -> Config {
    pullgate_testkit::notation::write_trust_policy(
        &dir.join("trustpolicy.json"),
        "*",
        "e2e",
        &["*"],
    )
    .unwrap();
    let mut config = Config::default();
    config.trust.policy = dir.join("trustpolicy.json");
    config.trust.store = dir.join("truststore");
    config.registry.plain_http = vec![reg.host()];
    config
}

/// A gate over [`config_over`] with a non-empty trust store (so discovery
/// runs) and at most `discoveries` discoveries at once.
fn gate_for(
    dir: &Path,
    reg: &pullgate_tests::oci_registry::OciRegistry,
    discoveries: usize,
) -> Gate {
    let store = dir.join("truststore/x509/ca/e2e");
    std::fs::create_dir_all(&store).unwrap();
    std::fs::write(
        store.join("root.crt"),
        include_bytes!("../verify/testdata/p521-self-signed.crt"),
    )
    .unwrap();
    let mut config = config_over(dir, reg);
    config.registry.max_concurrent_discoveries = discoveries;
    Gate::load(&config).unwrap()
}

fn by_digest(
    reg: &pullgate_tests::oci_registry::OciRegistry,
    i: u64,
    budget: Duration,
) -> PullRequest {
    PullRequest {
        image: format!("{}/app@sha256:{i:064x}", reg.host())
            .parse()
            .unwrap(),
        credentials: Credentials::Anonymous,
        deadline: Deadline::after(budget),
        origin: Origin::door(Door::Pull),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discoveries_across_pulls_are_bounded() {
    let reg = pullgate_tests::oci_registry::OciRegistry::start().await;
    // Each discovery is one referrers request (an empty list: no
    // signature), held open long enough for the others to pile up.
    reg.set_latency(Duration::from_millis(300));
    let dir = tempfile::tempdir().unwrap();
    let gate = Arc::new(gate_for(dir.path(), &reg, 2));
    let mut pulls = tokio::task::JoinSet::new();
    for i in 0..6 {
        let gate = Arc::clone(&gate);
        let req = by_digest(&reg, i, Duration::from_secs(30));
        pulls.spawn(async move { gate.decide(req).await });
    }
    while let Some(done) = pulls.join_next().await {
        let decision = done.unwrap().unwrap();
        assert!(
            matches!(&decision, Decision::Deny(d) if matches!(d.reason, DenyReason::NoSignature { .. })),
            "{decision:?}"
        );
    }
    assert_eq!(reg.counts().referrers, 6);
    assert_eq!(
        reg.max_in_flight(),
        2,
        "six pulls, two discoveries at a time"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_a_discovery_turn_ends_at_the_pulls_deadline() {
    let reg = pullgate_tests::oci_registry::OciRegistry::start().await;
    reg.set_hang(pullgate_tests::oci_registry::RequestKind::Referrers, true);
    let dir = tempfile::tempdir().unwrap();
    let gate = Arc::new(gate_for(dir.path(), &reg, 1));
    // The one turn goes to a discovery that hangs.
    let holder = {
        let gate = Arc::clone(&gate);
        let req = by_digest(&reg, 1, Duration::from_secs(30));
        tokio::spawn(async move { gate.decide(req).await })
    };
    while reg.counts().referrers == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = Instant::now();
    let err = gate
        .decide(by_digest(&reg, 2, Duration::from_millis(500)))
        .await
        .unwrap_err();
    assert!(err.is_deadline(), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered within the deadline (plus slack)"
    );
    assert_eq!(
        reg.counts().referrers,
        1,
        "the second discovery never started"
    );
    holder.abort();
}

/// A gate over [`config_over`] trusting `pki`'s root, under `limits`.
fn gate_trusting(
    dir: &Path,
    reg: &pullgate_tests::oci_registry::OciRegistry,
    pki: &pullgate_testkit::TestPki,
    limits: Limits,
) -> Gate {
    pki.write_trust_store(&dir.join("truststore"), "e2e")
        .unwrap();
    let mut config = config_over(dir, reg);
    config.registry.limits = limits;
    Gate::load(&config).unwrap()
}

/// Pushes an image to `reg` and attaches one JWS signature per signer, in
/// order (the referrers API lists them in push order).
async fn signed_by(
    reg: &pullgate_tests::oci_registry::OciRegistry,
    signers: &[&pullgate_testkit::TestPki],
) -> PullRequest {
    let host = reg.host();
    let image = pullgate_tests::image::push_random_image(&host, "app", "v1")
        .await
        .unwrap();
    pullgate_tests::signer::attach_signatures_by(&host, "app", &image, signers)
        .await
        .unwrap();
    PullRequest {
        image: format!("{host}/app@{}", image.digest).parse().unwrap(),
        credentials: Credentials::Anonymous,
        deadline: Deadline::after(Duration::from_secs(60)),
        origin: Origin::door(Door::Pull),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_signatures_with_the_trusted_one_last_cost_three_round_trips() {
    use pullgate_testkit::TestPki;
    let reg = pullgate_tests::oci_registry::OciRegistry::start().await;
    let trusted = TestPki::new("pullgate-e2e").unwrap();
    let stranger = TestPki::new("stranger").unwrap();
    let max = Limits::default().max_signatures;
    let mut signers = vec![&stranger; max - 1];
    signers.push(&trusted);
    let req = signed_by(&reg, &signers).await;
    let dir = tempfile::tempdir().unwrap();
    let gate = gate_trusting(dir.path(), &reg, &trusted, Default::default());
    // A latency far above pullgate's own time between requests, so the
    // registry's count of waves is the round trips waited one after another.
    reg.set_latency(Duration::from_millis(100));
    reg.reset_counts();
    let decision = gate.decide(req).await.unwrap();
    assert!(matches!(decision, Decision::Allow(_)), "{decision:?}");
    assert_eq!(
        reg.waves(),
        3,
        "referrers, then every signature manifest at once, then their envelopes"
    );
    let counts = reg.counts();
    assert_eq!((counts.referrers, counts.manifest_get), (1, max as u64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signature_manifest_over_its_cap_is_refused_naming_the_cap() {
    use pullgate_testkit::TestPki;
    let reg = pullgate_tests::oci_registry::OciRegistry::start().await;
    let trusted = TestPki::new("pullgate-e2e").unwrap();
    let req = signed_by(&reg, &[&trusted]).await;
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        signature_manifest_bytes: 256,
        ..Default::default()
    };
    let gate = gate_trusting(dir.path(), &reg, &trusted, limits);
    let decision = gate.decide(req).await.unwrap();
    let Decision::Deny(denial) = &decision else {
        panic!("a signature manifest over its cap must not allow: {decision:?}");
    };
    let why = denial.to_string();
    assert!(why.contains("256-byte limit"), "{why}");
}

/// Measurement, not a test: what deciding a hot pull by digest costs in
/// process (cached allow: scope, key, lookup, log line, metrics, record).
/// Run with `cargo test -p pullgate --release --lib gate::tests::hot_decision_figures -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement: prints figures, asserts nothing"]
#[allow(clippy::print_stdout)] // reason: the figures are the output
async fn hot_decision_figures() {
    const PULLS: u32 = 100_000;
    let dir = tempfile::tempdir().unwrap();
    let gate = two_statement_gate(dir.path());
    let digest: Digest = format!("sha256:{}", "c".repeat(64)).parse().unwrap();
    let prod = pinned("reg.example/prod/app", &digest);
    let key = verified_key(&gate.policy(), prod.repository(), &digest);
    let allow = typical_allow(&one_signer());
    gate.cache.insert(key, allow, Duration::from_secs(3600));
    let image: ImageRef = format!("reg.example/prod/app@{digest}").parse().unwrap();
    let started = Instant::now();
    for _ in 0..PULLS {
        let decision = gate
            .decide(PullRequest {
                image: image.clone(),
                credentials: Credentials::Anonymous,
                deadline: Deadline::after(Duration::from_secs(60)),
                origin: Origin::door(Door::Pull),
            })
            .await
            .unwrap();
        assert!(matches!(decision, Decision::Allow(_)));
    }
    let took = started.elapsed();
    println!(
        "hot decision by digest: {:.2} µs each ({PULLS} in {took:?}, one task)",
        took.as_secs_f64() * 1e6 / f64::from(PULLS)
    );
}

/// `[trust] policy` naming notation's directory picks `trustpolicy.oci.json`
/// (notation 2) before `trustpolicy.json`, as notation does; a blob policy
/// beside them is ignored; a file path is used as it is, whatever its name.
#[test]
fn a_policy_directory_picks_notation_2s_oci_policy_first() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::create_dir_all(dir.join("truststore/x509/ca/e2e")).unwrap();
    let policy = |name: &str| {
        format!(
            r#"{{"version": "1.0", "trustPolicies": [
                {{"name": "{name}", "registryScopes": ["*"],
                 "signatureVerification": {{"level": "strict"}},
                 "trustStores": ["ca:e2e"], "trustedIdentities": ["*"]}}]}}"#
        )
    };
    let notation = dir.join("notation");
    std::fs::create_dir_all(&notation).unwrap();
    std::fs::write(notation.join("trustpolicy.json"), policy("v1")).unwrap();
    std::fs::write(
        notation.join("trustpolicy.blob.json"),
        "not an image policy",
    )
    .unwrap();
    let mut config = Config::default();
    config.trust.policy = notation.clone();
    config.trust.store = dir.join("truststore");
    let name = |config: &Config| {
        let gate = Gate::load(config).unwrap();
        let repo: Repository = "reg.example/app".parse().unwrap();
        let state = gate.policy();
        let Route::Verify {
            statement: Some(id),
        } = state.plan_for(&repo, None).route
        else {
            panic!("no statement");
        };
        state.statement(id).name().to_owned()
    };
    // Only notation 1's file: it is read.
    assert_eq!(name(&config), "v1");
    // notation 2's file beside it wins.
    std::fs::write(notation.join("trustpolicy.oci.json"), policy("oci")).unwrap();
    assert_eq!(name(&config), "oci");
    // A file path is read as named.
    config.trust.policy = notation.join("trustpolicy.json");
    assert_eq!(name(&config), "v1");
}

/// A policy source with no good bundle yet: every repository is verified
/// under a statement left without trust anchors, so every pull is denied.
#[test]
fn the_deny_all_policy_of_a_source_without_a_bundle_has_no_anchors() {
    let state = PolicyState::deny_all(PolicyGeneration(1)).unwrap();
    for repo in [
        "r.example/app",
        "docker.io/library/nginx",
        "localhost:5000/x",
    ] {
        let repository: Repository = repo.parse().unwrap();
        let Route::Verify {
            statement: Some(id),
        } = state.plan_for(&repository, None).route
        else {
            panic!("{repo} is not verified under a statement");
        };
        let empty = without_anchors(&state.store, state.statement(id)).unwrap();
        assert_eq!(empty.len(), 1, "{repo}");
        assert!(empty[0].missing);
    }
}

/// A source's bundle swapped in is the next generation, and a reload then
/// re-reads the bundle's files, not the `[trust]` files of the config.
#[test]
fn an_applied_source_bundle_is_a_new_generation_that_reloads_read() {
    let dir = tempfile::tempdir().unwrap();
    let gate = two_statement_gate(dir.path());
    let bundle = dir.path().join("bundle");
    std::fs::create_dir_all(bundle.join("truststore/x509/ca/e2e")).unwrap();
    std::fs::write(
        bundle.join("trustpolicy.json"),
        br#"{"version": "1.0", "trustPolicies": [{"name": "from-bundle", "registryScopes": ["*"],
            "signatureVerification": {"level": "strict"},
            "trustStores": ["ca:e2e"], "trustedIdentities": ["*"]}]}"#,
    )
    .unwrap();
    let trust = TrustConfig {
        policy: bundle.clone(),
        store: bundle.join("truststore"),
        requirements: None,
        ..TrustConfig::default()
    };
    let before = gate.generation();
    let next = gate.apply_source(trust).unwrap();
    assert_eq!(next.0, before.0 + 1);
    assert_eq!(gate.policy().document.statements()[0].name(), "from-bundle");
    // The config's own files change: not what the gate follows now.
    std::fs::write(dir.path().join("trustpolicy.json"), b"not json").unwrap();
    assert!(matches!(gate.reload(), Ok(None)));
    // An invalid bundle is refused and the one in force stays.
    let bad = TrustConfig {
        policy: dir.path().join("trustpolicy.json"),
        ..TrustConfig::default()
    };
    assert!(gate.apply_source(bad).is_err());
    assert_eq!(gate.generation(), next);
}

/// A refreshed allow counts as a new one, so `persist` saves it with its
/// new lifetime rather than only at shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refreshed_allow_counts_as_a_new_allow_for_persistence() {
    use pullgate_testkit::TestPki;
    let reg = pullgate_tests::oci_registry::OciRegistry::start().await;
    let trusted = TestPki::new("pullgate-e2e").unwrap();
    let req = signed_by(&reg, &[&trusted]).await;
    let dir = tempfile::tempdir().unwrap();
    trusted
        .write_trust_store(&dir.path().join("truststore"), "e2e")
        .unwrap();
    let mut config = config_over(dir.path(), &reg);
    config.cache.allow_ttl_secs = 2;
    config.cache.refresh_ahead_percent = 90;
    let gate = Gate::load(&config).unwrap();
    let again = |r: &PullRequest| PullRequest {
        image: r.image.clone(),
        credentials: Credentials::Anonymous,
        deadline: Deadline::after(Duration::from_secs(60)),
        origin: Origin::door(Door::Pull),
    };
    assert!(matches!(
        gate.decide(again(&req)).await,
        Ok(Decision::Allow(_))
    ));
    assert_eq!(gate.new_allows(), 1);
    // Past the refresh point (at most 1.8 s left of 2 s): this hit starts a refresh.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert!(matches!(
        gate.decide(again(&req)).await,
        Ok(Decision::Allow(_))
    ));
    let mut counted = gate.new_allows();
    for _ in 0..100 {
        if counted == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        counted = gate.new_allows();
    }
    assert_eq!(counted, 2, "the refresh's allow was not counted");
}
