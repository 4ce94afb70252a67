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
//! loops. The RSA key is the proxy's fixed test-only key. Run with
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

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ciborium::Value;
use criterion::{criterion_group, criterion_main, Criterion};
use p256::pkcs8::DecodePrivateKey as _;
use pullgate::verify::measure::{self, Format};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use sha2::{Digest as _, Sha256};
use signature::Signer as _;

const RSA_2048_TEST_KEY: &str =
    include_str!("../../proxy/src/verify/testdata/rsa2048-test-only.pk8.pem");
const PAYLOAD_CONTENT_TYPE: &str = "application/vnd.cncf.notary.payload.v1+json";

enum Signer {
    P256(p256::ecdsa::SigningKey),
    Rsa(Box<rsa::RsaPrivateKey>),
}

impl Signer {
    fn sign(&self, msg: &[u8]) -> anyhow::Result<Vec<u8>> {
        Ok(match self {
            Signer::P256(k) => {
                let sig: p256::ecdsa::Signature = k.sign(msg);
                sig.to_bytes().to_vec()
            }
            Signer::Rsa(k) => {
                let hashed = Sha256::digest(msg);
                let pss = rsa::Pss::new_with_salt::<Sha256>(32);
                k.sign_with_rng(&mut rand_core_os(), pss, &hashed)?
            }
        })
    }
}

/// A deterministic RNG is enough for PSS salts in a benchmark.
fn rand_core_os() -> impl rsa::rand_core::CryptoRngCore {
    struct Counter(u64);
    impl rsa::rand_core::RngCore for Counter {
        fn next_u32(&mut self) -> u32 {
            self.next_u64() as u32
        }
        fn next_u64(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            self.0
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            for b in dest {
                *b = self.next_u64().to_be_bytes()[0];
            }
        }
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rsa::rand_core::Error> {
            self.fill_bytes(dest);
            Ok(())
        }
    }
    impl rsa::rand_core::CryptoRng for Counter {}
    Counter(7)
}

fn params(cn: &str, ca: bool) -> anyhow::Result<CertificateParams> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.distinguished_name.push(DnType::CountryName, "US");
    p.distinguished_name.push(DnType::StateOrProvinceName, "WA");
    p.distinguished_name
        .push(DnType::OrganizationName, "Notary");
    p.distinguished_name.push(DnType::CommonName, cn);
    if ca {
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    } else {
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
    }
    p.not_before = rcgen::date_time_ymd(2020, 1, 1);
    p.not_after = rcgen::date_time_ymd(2040, 1, 1);
    Ok(p)
}

struct Pki {
    chain: Vec<Vec<u8>>,
    signer: Signer,
    root_der: Vec<u8>,
}

fn pki(rsa_leaf: bool) -> anyhow::Result<Pki> {
    let root_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let root = params("Bench Root", true)?.self_signed(&root_key)?;
    let (leaf_key, signer) = if rsa_leaf {
        let kp = KeyPair::from_pkcs8_pem_and_sign_algo(RSA_2048_TEST_KEY, &rcgen::PKCS_RSA_SHA256)?;
        let sk = <rsa::RsaPrivateKey as rsa::pkcs8::DecodePrivateKey>::from_pkcs8_pem(
            RSA_2048_TEST_KEY,
        )?;
        (kp, Signer::Rsa(Box::new(sk)))
    } else {
        let kp = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let sk = p256::ecdsa::SigningKey::from_pkcs8_der(kp.serialized_der())?;
        (kp, Signer::P256(sk))
    };
    let leaf = params("bench signer", false)?.signed_by(&leaf_key, &root, &root_key)?;
    Ok(Pki {
        chain: vec![leaf.der().to_vec(), root.der().to_vec()],
        signer,
        root_der: root.der().to_vec(),
    })
}

fn payload() -> anyhow::Result<Vec<u8>> {
    Ok(serde_json::to_vec(&serde_json::json!({
        "targetArtifact": {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": "sha256:73c803930ea3ba1e54bc25c2bdc53edd0284c62ed651fe7b00369da519a3c333",
            "size": 16724
        }
    }))?)
}

fn jws(pki: &Pki, alg: &str) -> anyhow::Result<Vec<u8>> {
    let header = serde_json::json!({
        "alg": alg,
        "cty": PAYLOAD_CONTENT_TYPE,
        "crit": ["io.cncf.notary.signingScheme"],
        "io.cncf.notary.signingScheme": "notary.x509",
        "io.cncf.notary.signingTime": "2021-01-01T00:00:00Z",
    });
    let protected = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header)?);
    let payload = URL_SAFE_NO_PAD.encode(payload()?);
    let signature = URL_SAFE_NO_PAD.encode(
        pki.signer
            .sign(format!("{protected}.{payload}").as_bytes())?,
    );
    Ok(serde_json::to_vec(&serde_json::json!({
        "payload": payload,
        "protected": protected,
        "header": {"x5c": pki.chain.iter().map(|c| STANDARD.encode(c)).collect::<Vec<_>>()},
        "signature": signature,
    }))?)
}

fn cbor(v: &Value) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    ciborium::ser::into_writer(v, &mut out)?;
    Ok(out)
}

fn cose(pki: &Pki, alg: i64) -> anyhow::Result<Vec<u8>> {
    let protected = cbor(&Value::Map(vec![
        (Value::from(1), Value::from(alg)),
        (
            Value::from(2),
            Value::Array(vec![Value::from("io.cncf.notary.signingScheme")]),
        ),
        (Value::from(3), Value::from(PAYLOAD_CONTENT_TYPE)),
        (
            Value::from("io.cncf.notary.signingScheme"),
            Value::from("notary.x509"),
        ),
        (
            Value::from("io.cncf.notary.signingTime"),
            Value::Tag(1, Box::new(Value::from(1_609_459_200_i64))),
        ),
    ]))?;
    let payload = payload()?;
    let tbs = cbor(&Value::Array(vec![
        Value::from("Signature1"),
        Value::Bytes(protected.clone()),
        Value::Bytes(Vec::new()),
        Value::Bytes(payload.clone()),
    ]))?;
    let signature = pki.signer.sign(&tbs)?;
    cbor(&Value::Tag(
        18,
        Box::new(Value::Array(vec![
            Value::Bytes(protected),
            Value::Map(vec![(
                Value::from(33),
                Value::Array(pki.chain.iter().map(|c| Value::Bytes(c.clone())).collect()),
            )]),
            Value::Bytes(payload),
            Value::Bytes(signature),
        ])),
    ))
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
        ec_root: measure::parse_certificates(&ec.root_der).context("root")?,
        rsa_root: measure::parse_certificates(&rsa.root_der).context("root")?,
        jws_es256: jws(&ec, "ES256")?,
        jws_ps256: jws(&rsa, "PS256")?,
        cose_es256: cose(&ec, -7)?,
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

fn pem_public_key(der: &[u8]) -> Vec<u8> {
    let b64 = STANDARD.encode(der);
    let mut out = String::from("-----BEGIN PUBLIC KEY-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END PUBLIC KEY-----\n");
    out.into_bytes()
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
    use p256::pkcs8::EncodePublicKey as _;
    let sk = p256::ecdsa::SigningKey::from_bytes(&[7u8; 32].into())?;
    let spki = sk.verifying_key().to_public_key_der()?;
    let key_pem = pem_public_key(spki.as_bytes());
    let digest = format!("sha256:{}", hex_lower(&Sha256::digest(b"manifest")));
    let key_payload = serde_json::to_vec(&serde_json::json!({
        "critical": {
            "identity": {"docker-reference": COSIGN_REPO},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature",
        },
        "optional": null,
    }))?;
    let sig: p256::ecdsa::Signature = sk.sign(&key_payload);
    let mut key_annotations = Annotations::new();
    key_annotations.insert(
        "dev.cosignproject.cosign/signature".to_owned(),
        STANDARD.encode(sig.to_der().as_bytes()),
    );
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

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn cosign_benches(c: &mut Criterion) {
    let f = match cosign_fixtures() {
        Ok(f) => f,
        Err(e) => panic!("cosign benchmark fixtures: {e:#}"),
    };
    let digest = format!("sha256:{}", hex_lower(&Sha256::digest(b"manifest")));
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
