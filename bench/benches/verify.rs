//! Criterion micro-benchmarks of Notary Project verification: what one
//! signature costs at pull time, on the verifier alone (no registry, no
//! gRPC).
//!
//! - `verify/jws_es256`, `verify/jws_ps256`, `verify/cose_es256`: full
//!   verification (envelope parsing, protected header rules, the signature,
//!   the certificate chain with its certificate signatures, trust anchor,
//!   validity, expiry) of one envelope signed by a leaf under a P-256 root.
//! - `parse/jws`, `parse/cose`: envelope parsing alone (structure, header
//!   rules, certificate decoding; no signature checked).
//! - `chain/p256_leaf_root`, `chain/rsa2048_leaf_p256_root`: chain
//!   validation alone.
//!
//! - `cosign/key_p256`: a cosign simple-signing layer signed with a minted
//!   P-256 key (signature, payload type and digest, docker-reference).
//! - `cosign/keyless_rekor_set`: the containers/image Fulcio + Rekor layer
//!   (`tests/vectors/containers-image`): Fulcio chain and SCT at the
//!   integrated time, Rekor SET, signature, payload; public-good root.
//! - `bundle/v03_rekor2_tsa`: sigstore-conformance `rekor2-happy-path`
//!   (bundle v0.3, Rekor v2 inclusion proof and checkpoint, RFC 3161 TSA).
//! - `bundle/v03_managed_key`: sigstore-conformance
//!   `managed-key-and-trusted-root` (key-signed bundle, Rekor v1).
//!
//! Keys, certificates and envelopes are minted once, outside the measured
//! loops, by `pullgate-testkit` (the tests' PKI and signer; the RSA key is
//! its fixed test-only RSA-2048 key). Since the recorded runs below, the
//! fixtures are the testkit's: a few bytes more than the ones measured (a
//! locality in the subjects, a payload annotation, a signing agent); not
//! re-measured. Run with
//! `cargo bench -p pullgate-bench --bench verify`; record medians with the
//! machine, the commit and the command (bench/ measures, never asserts).
//!
//! ## Recorded
//!
//! Commit f4fa4f5, `cargo bench -p pullgate-bench --bench verify`, on the
//! shared development machine (2 cores, AMD EPYC, load average ~2 from other
//! builds), criterion medians:
//!
//! | benchmark | median |
//! |---|---|
//! | verify/jws_es256 | 893 µs |
//! | verify/jws_ps256 (RSA-2048 leaf, P-256 root) | 774 µs |
//! | verify/cose_es256 | 889 µs |
//! | parse/jws | 27.1 µs |
//! | parse/cose | 26.6 µs |
//! | chain/p256_leaf_root | 581 µs |
//! | chain/rsa2048_leaf_p256_root | 566 µs |
//!
//! cosign rows: measured on the tree of the commit that adds them (branch
//! `cosign-verify`, on aa15931), `cargo bench -p pullgate-bench --bench verify
//! -- 'cosign|bundle'`, same machine, other helpers compiling:
//!
//! | benchmark | median |
//! |---|---|
//! | cosign/key_p256 | 594 µs |
//! | cosign/keyless_rekor_set | 7.73 ms |
//! | bundle/v03_rekor2_tsa | 8.82 ms |
//! | bundle/v03_managed_key | 1.80 ms |
//!
//! A keyless verification (Fulcio chain through webpki, SCT, Rekor SET,
//! log-entry consistency, signature) costs about ten key-based ones; not
//! profiled yet.
//!
//! Chain validation is about two thirds of a verification: it checks two
//! certificate signatures with P-256 (the leaf's, and the root's own), and
//! the RustCrypto P-256 verifier costs ~0.25 ms each here. PS256's envelope
//! signature (RSA-2048 public operation) is cheaper than ES256's.

use std::hint::black_box;

use anyhow::Context as _;
use std::time::{Duration, SystemTime};

use criterion::{criterion_group, criterion_main, Criterion};
use pullgate::verify::measure::{self, Format};
use pullgate_testkit::cosign::{CosignKey, SIGNATURE_ANNOTATION};
use pullgate_testkit::{
    ca_params, cose_envelope, cose_header, envelope, header, issue, leaf_params, payload,
    self_signed, sha256_digest, Issued, Key,
};

/// A P-256 root and a leaf under it (P-256 or the fixed RSA-2048 test key).
struct Pki {
    root: Issued,
    leaf: Issued,
}

impl Pki {
    fn chain(&self) -> Vec<Vec<u8>> {
        vec![self.leaf.der(), self.root.der()]
    }
}

fn pki(rsa_leaf: bool) -> anyhow::Result<Pki> {
    let root = self_signed(ca_params("Bench Root", Some(1)), Key::p256()?)?;
    let key = if rsa_leaf {
        Key::rsa2048()?
    } else {
        Key::p256()?
    };
    let leaf = issue(leaf_params("bench signer"), key, &root)?;
    Ok(Pki { root, leaf })
}

fn jws(pki: &Pki, alg: &str) -> Vec<u8> {
    envelope(&header(alg), &payload(), &pki.leaf.key, &pki.chain())
}

fn cose(pki: &Pki, alg: i64) -> Vec<u8> {
    cose_envelope(&cose_header(alg), &payload(), &pki.leaf.key, &pki.chain())
}

fn now() -> SystemTime {
    // 2030-06-01T00:00:00Z: inside the minted validity.
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_906_502_400)
}

struct Fixtures {
    ec_root: Vec<measure::Certificate>,
    rsa_root: Vec<measure::Certificate>,
    jws_es256: Vec<u8>,
    jws_ps256: Vec<u8>,
    cose_es256: Vec<u8>,
}

fn fixtures() -> anyhow::Result<Fixtures> {
    let ec = pki(false)?;
    let rsa = pki(true)?;
    let f = Fixtures {
        ec_root: measure::parse_certificates(&ec.root.der()).context("root")?,
        rsa_root: measure::parse_certificates(&rsa.root.der()).context("root")?,
        jws_es256: jws(&ec, "ES256"),
        jws_ps256: jws(&rsa, "PS256"),
        cose_es256: cose(&ec, -7),
    };
    // Every envelope verifies before it is measured.
    for (format, env, root) in [
        (Format::Jws, &f.jws_es256, &f.ec_root),
        (Format::Jws, &f.jws_ps256, &f.rsa_root),
        (Format::Cose, &f.cose_es256, &f.ec_root),
    ] {
        anyhow::ensure!(
            measure::verify(format, env, root, now()),
            "{format:?} fixture does not verify"
        );
    }
    Ok(f)
}

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/vectors");

fn vector(rel: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(format!("{VECTORS}/{rel}")).with_context(|| rel.to_owned())
}

type Annotations = std::collections::BTreeMap<String, String>;

struct CosignFixtures {
    key_trust: measure::CosignTrust,
    key_payload: Vec<u8>,
    key_annotations: Annotations,
    pgi: measure::CosignTrust,
    fulcio_payload: Vec<u8>,
    fulcio_annotations: Annotations,
    fulcio_digest: String,
    rekor2: measure::CosignTrust,
    rekor2_bundle: Vec<u8>,
    managed: measure::CosignTrust,
    managed_bundle: Vec<u8>,
}

const COSIGN_REPO: &str = "registry.example/app";
const FULCIO_REPO: &str = "192.168.64.2:5000/test-repo-2100826901021538654/alpine";
const CONFORMANCE: &str = "sigstore-conformance/bundle-verify";

fn cosign_fixtures() -> anyhow::Result<CosignFixtures> {
    let key = CosignKey::generate()?;
    let key_pem = key.public_key_pem().as_bytes().to_vec();
    let digest = sha256_digest(b"manifest");
    let layer = key.sign_image(COSIGN_REPO, &digest);
    let key_payload = layer.payload;
    let mut key_annotations = Annotations::new();
    key_annotations.insert(SIGNATURE_ANNOTATION.to_owned(), layer.signature);
    let mut fulcio_annotations = Annotations::new();
    for (name, file) in [
        ("dev.cosignproject.cosign/signature", "rekor-sig"),
        ("dev.sigstore.cosign/certificate", "fulcio-cert"),
        ("dev.sigstore.cosign/chain", "fulcio-chain"),
        ("dev.sigstore.cosign/bundle", "rekor-set"),
    ] {
        fulcio_annotations.insert(
            name.to_owned(),
            String::from_utf8(vector(&format!("containers-image/{file}"))?)?,
        );
    }
    let fulcio_payload = vector("containers-image/rekor-payload")?;
    let v: serde_json::Value = serde_json::from_slice(&fulcio_payload)?;
    let fulcio_digest = v["critical"]["image"]["docker-manifest-digest"]
        .as_str()
        .context("digest")?
        .to_owned();
    let f = CosignFixtures {
        key_trust: measure::cosign_trust(&[("release.pub", &key_pem)], None).context("key")?,
        key_payload,
        key_annotations,
        pgi: measure::cosign_trust(&[], Some(&vector("cosign/trusted_root_pgi.json")?))
            .context("pgi root")?,
        fulcio_payload,
        fulcio_annotations,
        fulcio_digest,
        rekor2: measure::cosign_trust(
            &[],
            Some(&vector(&format!(
                "{CONFORMANCE}/rekor2-happy-path/trusted_root.json"
            ))?),
        )
        .context("rekor2 root")?,
        rekor2_bundle: vector(&format!(
            "{CONFORMANCE}/rekor2-happy-path/bundle.sigstore.json"
        ))?,
        managed: measure::cosign_trust(
            &[(
                "key.pub",
                &vector(&format!(
                    "{CONFORMANCE}/managed-key-and-trusted-root/key.pub"
                ))?,
            )],
            Some(&vector(&format!(
                "{CONFORMANCE}/managed-key-and-trusted-root/trusted_root.json"
            ))?),
        )
        .context("managed root")?,
        managed_bundle: vector(&format!(
            "{CONFORMANCE}/managed-key-and-trusted-root/bundle.sigstore.json"
        ))?,
    };
    anyhow::ensure!(
        measure::cosign_simple_signing(
            &f.key_trust,
            &f.key_payload,
            &f.key_annotations,
            COSIGN_REPO,
            &digest,
            now()
        ),
        "key fixture does not verify"
    );
    anyhow::ensure!(
        measure::cosign_simple_signing(
            &f.pgi,
            &f.fulcio_payload,
            &f.fulcio_annotations,
            FULCIO_REPO,
            &f.fulcio_digest,
            now()
        ),
        "keyless fixture does not verify"
    );
    let a = vector(&format!("{CONFORMANCE}/a.txt"))?;
    anyhow::ensure!(
        measure::cosign_bundle(&f.rekor2, &f.rekor2_bundle, &a, now()),
        "rekor2 bundle does not verify"
    );
    anyhow::ensure!(
        measure::cosign_bundle(&f.managed, &f.managed_bundle, &a, now()),
        "managed-key bundle does not verify"
    );
    Ok(f)
}

fn cosign_benches(c: &mut Criterion) {
    let f = match cosign_fixtures() {
        Ok(f) => f,
        Err(e) => panic!("cosign benchmark fixtures: {e:#}"),
    };
    let digest = sha256_digest(b"manifest");
    let a = vector(&format!("{CONFORMANCE}/a.txt")).unwrap_or_default();
    let mut g = c.benchmark_group("cosign");
    g.bench_function("key_p256", |b| {
        b.iter(|| {
            measure::cosign_simple_signing(
                black_box(&f.key_trust),
                black_box(&f.key_payload),
                &f.key_annotations,
                COSIGN_REPO,
                &digest,
                now(),
            )
        })
    });
    g.bench_function("keyless_rekor_set", |b| {
        b.iter(|| {
            measure::cosign_simple_signing(
                black_box(&f.pgi),
                black_box(&f.fulcio_payload),
                &f.fulcio_annotations,
                FULCIO_REPO,
                &f.fulcio_digest,
                now(),
            )
        })
    });
    g.finish();
    let mut g = c.benchmark_group("bundle");
    g.bench_function("v03_rekor2_tsa", |b| {
        b.iter(|| {
            measure::cosign_bundle(black_box(&f.rekor2), black_box(&f.rekor2_bundle), &a, now())
        })
    });
    g.bench_function("v03_managed_key", |b| {
        b.iter(|| {
            measure::cosign_bundle(
                black_box(&f.managed),
                black_box(&f.managed_bundle),
                &a,
                now(),
            )
        })
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    let Fixtures {
        ec_root,
        rsa_root,
        jws_es256,
        jws_ps256,
        cose_es256,
    } = match fixtures() {
        Ok(f) => f,
        Err(e) => panic!("benchmark fixtures: {e:#}"),
    };

    let mut g = c.benchmark_group("verify");
    g.bench_function("jws_es256", |b| {
        b.iter(|| measure::verify(Format::Jws, black_box(&jws_es256), &ec_root, now()))
    });
    g.bench_function("jws_ps256", |b| {
        b.iter(|| measure::verify(Format::Jws, black_box(&jws_ps256), &rsa_root, now()))
    });
    g.bench_function("cose_es256", |b| {
        b.iter(|| measure::verify(Format::Cose, black_box(&cose_es256), &ec_root, now()))
    });
    g.finish();

    let mut g = c.benchmark_group("parse");
    g.bench_function("jws", |b| {
        b.iter(|| measure::parse_envelope(Format::Jws, black_box(&jws_es256)))
    });
    g.bench_function("cose", |b| {
        b.iter(|| measure::parse_envelope(Format::Cose, black_box(&cose_es256)))
    });
    g.finish();

    let (Some(ec_chain), Some(rsa_chain)) = (
        measure::parse_envelope(Format::Jws, &jws_es256),
        measure::parse_envelope(Format::Jws, &jws_ps256),
    ) else {
        panic!("benchmark fixtures: chains do not parse");
    };
    let mut g = c.benchmark_group("chain");
    g.bench_function("p256_leaf_root", |b| {
        b.iter(|| measure::validate_chain(black_box(&ec_chain), &ec_root, now()))
    });
    g.bench_function("rsa2048_leaf_p256_root", |b| {
        b.iter(|| measure::validate_chain(black_box(&rsa_chain), &rsa_root, now()))
    });
    g.finish();
}

criterion_group!(verify_benches, benches, cosign_benches);
criterion_main!(verify_benches);
