use bytes::Bytes;
use serde_json::json;

use super::super::layout::{ARTIFACT_TYPE, OCI_MANIFEST, TITLE_ANNOTATION};
use super::*;

const SOURCE: &str = "oci://registry.example/platform/policy:prod";

/// A bundle of `files` (path, content): its manifest, digest, layout and files.
fn bundle(files: &[(&str, &[u8])]) -> (Digest, Vec<u8>, Layout, Vec<(BundleFile, Bytes)>) {
    let layers: Vec<_> = files
        .iter()
        .map(|(path, bytes)| {
            json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": Digest::sha256_of(bytes).to_string(),
                "size": bytes.len(),
                "annotations": { TITLE_ANNOTATION: path },
            })
        })
        .collect();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": ARTIFACT_TYPE,
        "config": {
            "mediaType": "application/vnd.oci.empty.v1+json",
            "digest": Digest::sha256_of(b"{}").to_string(),
            "size": 2
        },
        "layers": layers,
    }))
    .unwrap();
    let layout = Layout::parse(&manifest).unwrap();
    let contents = layout
        .files
        .iter()
        .zip(files)
        .map(|(f, (_, bytes))| (f.clone(), Bytes::copy_from_slice(bytes)))
        .collect();
    (Digest::sha256_of(&manifest), manifest, layout, contents)
}

fn saved(dir: &Path) -> (Store, Digest, TrustConfig) {
    let store = Store::new(dir);
    let (digest, manifest, layout, files) = bundle(&[
        ("trustpolicy.json", b"{\"version\":\"1.0\"}"),
        ("requirements.toml", b"# none\n"),
        ("truststore/x509/ca/acme/root.crt", b"PEM"),
    ]);
    let trust = store.save(&digest, &manifest, &layout, &files).unwrap();
    store.commit(SOURCE, &digest).unwrap();
    (store, digest, trust)
}

#[test]
fn a_saved_bundle_loads_back_with_its_digest_and_trust_files() {
    let dir = tempfile::tempdir().unwrap();
    let (store, digest, trust) = saved(dir.path());
    let loaded = store.load(SOURCE).unwrap().unwrap();
    assert_eq!(loaded.digest, digest);
    assert_eq!(loaded.trust, trust);
    assert_eq!(
        std::fs::read(trust.store.join("x509/ca/acme/root.crt")).unwrap(),
        b"PEM"
    );
    assert!(crate::gate::trust_policy_file(&trust).is_file());
    // A record of another source is not used.
    assert!(store
        .load("oci://registry.example/other:prod")
        .unwrap()
        .is_none());
    // Nothing stored: none.
    assert!(Store::new(&dir.path().join("empty"))
        .load(SOURCE)
        .unwrap()
        .is_none());
}

#[test]
fn a_second_commit_replaces_the_first_and_removes_it() {
    let dir = tempfile::tempdir().unwrap();
    let (store, first, _) = saved(dir.path());
    let (digest, manifest, layout, files) = bundle(&[("trustpolicy.oci.json", b"{}")]);
    store.save(&digest, &manifest, &layout, &files).unwrap();
    // Saved but not committed: the first is still the last good one.
    assert_eq!(store.load(SOURCE).unwrap().unwrap().digest, first);
    store.commit(SOURCE, &digest).unwrap();
    assert_eq!(store.load(SOURCE).unwrap().unwrap().digest, digest);
    assert!(!store.bundle_dir(&first).exists());
}

#[test]
fn a_changed_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _, trust) = saved(dir.path());
    std::fs::write(trust.store.join("x509/ca/acme/root.crt"), b"PEX").unwrap();
    assert!(matches!(
        store.load(SOURCE),
        Err(StoreError::DigestMismatch { .. })
    ));
}

#[test]
fn a_changed_manifest_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (store, digest, _) = saved(dir.path());
    let path = store.bundle_dir(&digest).join(MANIFEST);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.push(b' ');
    std::fs::write(&path, bytes).unwrap();
    assert!(matches!(
        store.load(SOURCE),
        Err(StoreError::DigestMismatch { .. })
    ));
}

#[test]
fn a_file_added_to_the_tree_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _, trust) = saved(dir.path());
    std::fs::write(trust.store.join("x509/ca/acme/planted.crt"), b"PEM").unwrap();
    assert!(matches!(store.load(SOURCE), Err(StoreError::Extra(_))));
}

#[test]
fn a_missing_file_or_a_bad_record_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _, trust) = saved(dir.path());
    std::fs::remove_file(trust.requirements.unwrap()).unwrap();
    assert!(matches!(store.load(SOURCE), Err(StoreError::Io { .. })));
    std::fs::write(store.dir.join(LAST_GOOD), b"{\"source\": 1}").unwrap();
    assert!(matches!(store.load(SOURCE), Err(StoreError::Record(_))));
    std::fs::write(store.dir.join(LAST_GOOD), vec![b' '; 5000]).unwrap();
    assert!(matches!(
        store.load(SOURCE),
        Err(StoreError::TooLarge { .. })
    ));
}

#[test]
fn startup_trust_is_the_last_good_bundle_with_its_digest() {
    let dir = tempfile::tempdir().unwrap();
    let (_, digest, trust) = saved(dir.path());
    let mut config = Config::default();
    config.trust.source = Some(SOURCE.to_owned());
    config.cache.state_dir = Some(dir.path().to_path_buf());
    match startup_trust(&config) {
        StartupTrust::LastGood(stored) => {
            assert_eq!(stored.digest, digest);
            assert_eq!(stored.trust, trust);
        }
        other => panic!("{other:?}"),
    }
    config.cache.state_dir = Some(dir.path().join("empty"));
    assert!(matches!(startup_trust(&config), StartupTrust::NoneYet));
}
