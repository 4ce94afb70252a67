//! Which registry is which, and whose credentials go where, through the
//! real pullgate binary in front of a real containerd (issues 10.4, 10.5
//! and 13):
//!
//! - the kubelet's credentials reach the image's own host, never a mirror
//!   on another host (`127.0.0.2` beside `127.0.0.1`), and a registry token
//!   is not sent to a registry that did not ask for one;
//! - a host spelled another way (`LOCALHOST:<port>`, a zero-padded port,
//!   another loopback alias) gets the statement of its canonical spelling,
//!   not the global `skip` one;
//! - `[registry] auth_file` serves pulls the kubelet sent no credentials
//!   with, from `auths` and from a credential helper, through the proxy and
//!   through `pullgate verify`, and a failing helper is a clear refusal.

use std::ffi::OsString;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::Result;
use base64::Engine as _;
use pullgate_proto::runtime::v1::AuthConfig;
use pullgate_tests::cri;
use pullgate_tests::oci_registry::{AuthMode, OciRegistry};
use pullgate_tests::pullgate::{binary_path, Pullgate, PullgateConfig};
use pullgate_tests::testbed::{OciTestbed, STORE};
use serde_json::json;
use tonic::Code;

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

fn token_mode(basic: Option<(&str, &str)>) -> AuthMode {
    AuthMode::Token {
        basic: basic.map(|(u, p)| (u.to_owned(), p.to_owned())),
        refresh_token: None,
        expires_in: 300,
    }
}

/// Rewrites containerd's (and pullgate's) `hosts.toml` for `host`: `mirror`
/// first, then `host` itself.
fn write_hosts_with_mirror(hosts_dir: &Path, host: &str, mirror: &str) -> Result<()> {
    std::fs::write(
        hosts_dir.join(host).join("hosts.toml"),
        format!(
            "server = \"http://{host}\"\n\n\
             [host.\"http://{mirror}\"]\n  capabilities = [\"pull\", \"resolve\"]\n\n\
             [host.\"http://{host}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
        ),
    )?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn the_kubelets_credentials_reach_the_images_host_and_no_mirror() {
    let bed = OciTestbed::start().await.unwrap();
    let image = bed.image_ref("app/private", "v1");
    bed.push_signed("app/private", "v1").await.unwrap();
    bed.registry.set_auth(token_mode(Some(("alice", "s3cret"))));
    // Another host (127.0.0.2), listed first; it hands tokens to anyone and
    // has no images, so every pull falls through to the image's own host.
    let mirror = OciRegistry::start_on(Ipv4Addr::new(127, 0, 0, 2)).await;
    mirror.set_auth(token_mode(None));
    // (An empty referrers list from the mirror would be taken as the answer.)
    mirror.set_referrers_api(false);
    write_hosts_with_mirror(bed.containerd.hosts_dir(), &bed.host(), &mirror.host()).unwrap();
    let pullgate = bed.start_pullgate().await.unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();
    // server_address names the image's host, so containerd too sends the
    // credentials there only (its ParseAuth); what the mirror sees is
    // pullgate's doing.
    let auth = AuthConfig {
        username: "alice".into(),
        password: "s3cret".into(),
        server_address: format!("http://{}", bed.host()),
        ..Default::default()
    };
    cri::pull_with_auth(&ch, &image, Some(auth)).await.unwrap();

    let password = basic("alice", "s3cret");
    let to_mirror = mirror.seen();
    assert!(
        to_mirror.iter().any(|s| s.path.contains("/app/private/")),
        "pullgate asked the mirror first: {to_mirror:?}"
    );
    assert!(
        to_mirror
            .iter()
            .all(|s| s.authorization.as_deref() != Some(password.as_str())),
        "the mirror got alice's password: {to_mirror:?}"
    );
    assert!(bed.registry.authorizations().contains(&password));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn a_registry_token_is_not_sent_to_a_registry_that_did_not_ask() {
    let bed = OciTestbed::start().await.unwrap();
    let image = bed.image_ref("app/open", "v1");
    bed.push_signed("app/open", "v1").await.unwrap();
    let pullgate = bed.start_pullgate().await.unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();
    let auth = AuthConfig {
        registry_token: "kubelet-token".into(),
        server_address: bed.host(),
        ..Default::default()
    };
    bed.registry.reset_counts();
    cri::pull_with_auth(&ch, &image, Some(auth)).await.unwrap();
    // containerd 1.6 ignores registry_token; pullgate must not send it unasked.
    let sent = bed.registry.authorizations();
    assert!(
        !sent.iter().any(|a| a.contains("kubelet-token")),
        "{:?}",
        bed.registry.seen()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn another_spelling_of_a_host_gets_the_canonical_statement() {
    let bed = OciTestbed::start().await.unwrap();
    let port = bed.registry.addr().port();
    let canonical = format!("localhost:{port}");
    bed.containerd.add_registry(&canonical).await.unwrap();
    let signed = bed.push_signed("app/spelled", "v1").await.unwrap();
    bed.push_unsigned("app/spelled", "unsigned").await.unwrap();
    // Strict for the repository, skip for everything else: a spelling that
    // missed the strict statement would be pulled unverified.
    let policy = json!({
        "version": "1.0",
        "trustPolicies": [
            {
                "name": "spelled-strict",
                "registryScopes": [format!("{canonical}/app/spelled")],
                "signatureVerification": {"level": "strict"},
                "trustStores": [format!("ca:{STORE}")],
                "trustedIdentities": [bed.pki.trusted_identity()],
            },
            {
                "name": "everything-else",
                "registryScopes": ["*"],
                "signatureVerification": {"level": "skip"},
            }
        ]
    });
    std::fs::write(
        bed.trust_policy_path(),
        serde_json::to_vec_pretty(&policy).unwrap(),
    )
    .unwrap();
    let mut config = bed.pullgate_config();
    config.plain_http.push(canonical.clone());
    let pullgate = bed.start_pullgate_with(&config).await.unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();

    for spelling in [
        canonical.clone(),
        format!("LOCALHOST:{port}"),
        format!("LocalHost:{port}"),
    ] {
        let denied = cri::pull(&ch, &format!("{spelling}/app/spelled:unsigned"))
            .await
            .unwrap_err();
        assert_eq!(
            denied.code(),
            Code::PermissionDenied,
            "{spelling}: {denied:?}"
        );
        assert!(
            denied
                .message()
                .contains(&format!("image {canonical}/app/spelled:unsigned"))
                && denied.message().contains("\"spelled-strict\""),
            "{spelling}: {}",
            denied.message()
        );
    }
    // The signed image under another spelling: verified, and containerd
    // pulls the canonical name pinned to the verified digest.
    cri::pull(&ch, &format!("LocalHost:{port}/app/spelled:v1"))
        .await
        .unwrap();
    let pinned = format!("{canonical}/app/spelled@{}", signed.digest);
    assert!(
        cri::image_status(&ch, &pinned).await.unwrap().is_some(),
        "{pinned} not in containerd"
    );
}

/// Issue 23, item 1: with `prod` strict on `127.0.0.1:PORT/prod/app` and
/// `*` at level skip, an unsigned `prod/app` was pulled unverified as
/// `127.0.0.1:0PORT/prod/app:evil` and as `localhost:PORT/prod/app:evil`
/// (both judged by `*`; containerd dials both).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn a_zero_padded_port_or_a_loopback_alias_gets_the_specific_statement() {
    let bed = OciTestbed::start().await.unwrap();
    let port = bed.registry.addr().port();
    let host = bed.host();
    assert_eq!(host, format!("127.0.0.1:{port}"));
    let alias = format!("localhost:{port}");
    // containerd reaches the alias over plain HTTP too; pullgate is told
    // only about 127.0.0.1 (a loopback `plain_http` entry covers its aliases).
    bed.containerd.add_registry(&alias).await.unwrap();
    let signed = bed.push_signed("prod/app", "v1").await.unwrap();
    bed.push_unsigned("prod/app", "evil").await.unwrap();
    let policy = json!({
        "version": "1.0",
        "trustPolicies": [
            {
                "name": "prod",
                "registryScopes": [format!("{host}/prod/app")],
                "signatureVerification": {"level": "strict"},
                "trustStores": [format!("ca:{STORE}")],
                "trustedIdentities": [bed.pki.trusted_identity()],
            },
            {
                "name": "everything-else",
                "registryScopes": ["*"],
                "signatureVerification": {"level": "skip"},
            }
        ]
    });
    std::fs::write(
        bed.trust_policy_path(),
        serde_json::to_vec_pretty(&policy).unwrap(),
    )
    .unwrap();
    let pullgate = bed.start_pullgate().await.unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();

    for spelling in [
        alias.clone(),
        format!("127.0.0.1:0{port}"),
        format!("LOCALHOST:00{port}"),
    ] {
        let denied = cri::pull(&ch, &format!("{spelling}/prod/app:evil"))
            .await
            .unwrap_err();
        assert_eq!(
            denied.code(),
            Code::PermissionDenied,
            "{spelling}: {denied:?}"
        );
        assert!(
            denied.message().contains("\"prod\""),
            "{spelling}: {}",
            denied.message()
        );
    }
    // A port that is no port is refused, not guessed at.
    let refused = cri::pull(
        &ch,
        &format!("127.0.0.1:{}/prod/app:evil", u32::from(port) + 65536),
    )
    .await
    .unwrap_err();
    assert_ne!(refused.code(), Code::Ok);
    // The signed image under the alias: verified against 127.0.0.1's
    // statement, fetched from the alias over plain HTTP, and containerd
    // pulls the alias pinned to the verified digest.
    cri::pull(&ch, &format!("{alias}/prod/app:v1"))
        .await
        .unwrap();
    let pinned = format!("{alias}/prod/app@{}", signed.digest);
    assert!(
        cri::image_status(&ch, &pinned).await.unwrap().is_some(),
        "{pinned} not in containerd"
    );
}

/// Issue 23, item 2: pullgate read only `<hosts_dir>/<host:port>/hosts.toml`,
/// once at start; containerd also looks in `<host>_<port>_/` (and, from
/// 1.7, `_default/`) at every pull. Here the mirror of an unreachable host
/// is written as `<host>_<port>_/hosts.toml` after pullgate started: both
/// must ask that mirror, so the signed image is pulled through it and the
/// unsigned one is denied (on main: `Unavailable`, the host unreachable).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn a_mirror_in_containerds_other_directory_names_is_followed_after_a_reload() {
    let bed = OciTestbed::start().await.unwrap();
    let signed = bed.push_signed("app/mirrored", "v1").await.unwrap();
    bed.push_unsigned("app/mirrored", "evil").await.unwrap();
    // A host where nothing listens, on another loopback address.
    let port = pullgate_tests::child::free_port().await.unwrap();
    let gone = format!("127.0.0.2:{port}");
    let config = bed.pullgate_config().to_toml().replacen(
        "[trust]\n",
        "[trust]\nreload_interval_ms = 200\n",
        1,
    );
    let pullgate = Pullgate::start(&config, bed.dir()).await.unwrap();
    let dir = bed
        .containerd
        .hosts_dir()
        .join(format!("127.0.0.2_{port}_"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("hosts.toml"),
        format!(
            "server = \"http://{gone}\"\n\n[host.\"http://{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
            bed.host()
        ),
    )
    .unwrap();
    let waited = std::time::Instant::now();
    while !std::fs::read_to_string(pullgate.log_path())
        .unwrap_or_default()
        .contains("hosts.toml files reloaded")
        && waited.elapsed() < std::time::Duration::from_secs(20)
    {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let ch = cri::connect(pullgate.socket()).await.unwrap();
    cri::pull(&ch, &format!("{gone}/app/mirrored:v1"))
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", pullgate.log_tail()));
    let pinned = format!("{gone}/app/mirrored@{}", signed.digest);
    assert!(
        cri::image_status(&ch, &pinned).await.unwrap().is_some(),
        "{pinned} not in containerd"
    );
    let denied = cri::pull(&ch, &format!("{gone}/app/mirrored:evil"))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
}

/// Writes `docker-credential-<name>` (a shell script) into `<dir>/bin`.
fn helper(dir: &Path, name: &str, body: &str) -> Result<PathBuf> {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin)?;
    let path = bin.join(format!("docker-credential-{name}"));
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n"))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    Ok(bin)
}

/// `PATH` with `bin` in front.
fn path_with(bin: &Path) -> OsString {
    let mut p = OsString::from(bin);
    if let Some(old) = std::env::var_os("PATH") {
        p.push(":");
        p.push(old);
    }
    p
}

/// `pullgate verify <image> --config <file>` with `PATH` = `path`.
fn verify(
    config: &PullgateConfig,
    dir: &Path,
    image: &str,
    path: &OsString,
) -> Result<std::process::Output> {
    let file = dir.join("verify.toml");
    std::fs::write(&file, config.to_toml())?;
    Ok(std::process::Command::new(binary_path())
        .arg("verify")
        .arg(image)
        .arg("--config")
        .arg(&file)
        .env("PATH", path)
        .output()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn an_auth_json_serves_a_basic_auth_registry() {
    let bed = OciTestbed::start_with_login(Some(("bob", "pw")))
        .await
        .unwrap();
    let image = bed.image_ref("app/basic", "v1");
    bed.push_signed("app/basic", "v1").await.unwrap();
    bed.registry.set_auth(AuthMode::Basic {
        username: "bob".into(),
        password: "pw".into(),
    });
    let auth_file = bed.dir().join("auth.json");
    std::fs::write(
        &auth_file,
        json!({"auths": {bed.host(): {"auth": "Ym9iOnB3"}}}).to_string(),
    )
    .unwrap();
    let mut config = bed.pullgate_config();
    config.auth_file = Some(auth_file.clone());
    let path = std::env::var_os("PATH").unwrap_or_default();

    let out = verify(&config, bed.dir(), &image, &path).unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    let pullgate = bed.start_pullgate_with(&config).await.unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();
    // No AuthConfig: the kubelet has none for this registry.
    cri::pull(&ch, &image).await.unwrap();

    // The file's password never reaches pullgate's log or audit output.
    let log = std::fs::read_to_string(pullgate.log_path()).unwrap();
    assert!(!log.contains("Ym9iOnB3") && !log.contains(":pw"), "{log}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("Ym9iOnB3"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn a_credential_helper_serves_a_token_registry_and_its_failure_is_clear() {
    let bed = OciTestbed::start_with_login(Some(("carol", "pw2")))
        .await
        .unwrap();
    let image = bed.image_ref("app/helped", "v1");
    bed.push_signed("app/helped", "v1").await.unwrap();
    bed.registry.set_auth(token_mode(Some(("carol", "pw2"))));
    // Answers only for the host it is asked about, as a real helper does.
    let bin = helper(
        bed.dir(),
        "pgtest",
        &format!(
            r#"read -r url
[ "$1" = get ] || exit 3
if [ "$url" = "{host}" ]; then printf '{{"ServerURL":"%s","Username":"carol","Secret":"pw2"}}' "$url"
else echo "credentials not found in native keychain"; exit 1; fi"#,
            host = bed.host()
        ),
    )
    .unwrap();
    helper(bed.dir(), "pgfail", "echo 'helper-secret-output'; exit 7").unwrap();
    let path = path_with(&bin);

    let helped = bed.dir().join("config.json");
    std::fs::write(
        &helped,
        json!({"credHelpers": {bed.host(): "pgtest"}, "auths": {}}).to_string(),
    )
    .unwrap();
    let mut config = bed.pullgate_config();
    config.auth_file = Some(helped);
    let out = verify(&config, bed.dir(), &image, &path).unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    config.env = vec![("PATH".to_owned(), path.to_string_lossy().into_owned())];
    let pullgate = Pullgate::start_with(&config, bed.dir()).await.unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();
    cri::pull(&ch, &image).await.unwrap();
    assert!(bed.registry.counts().token >= 1);
    drop(pullgate);

    // A helper that fails: refused, naming the helper, leaking nothing.
    let failing_dir = bed.dir().join("failing");
    std::fs::create_dir_all(&failing_dir).unwrap();
    let failing = failing_dir.join("config.json");
    std::fs::write(&failing, json!({"credsStore": "pgfail"}).to_string()).unwrap();
    let mut config = PullgateConfig {
        socket: failing_dir.join("pullgate.sock"),
        ..bed.pullgate_config()
    };
    config.auth_file = Some(failing);
    let out = verify(&config, &failing_dir, &image, &path).unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("docker-credential-pgfail"), "{text}");
    assert!(!text.contains("helper-secret-output"), "{text}");

    config.env = vec![("PATH".to_owned(), path.to_string_lossy().into_owned())];
    let pullgate = Pullgate::start_with(&config, &failing_dir).await.unwrap();
    let ch = cri::connect(pullgate.socket()).await.unwrap();
    let refused = cri::pull(&ch, &image).await.unwrap_err();
    assert_ne!(refused.code(), Code::Ok);
    assert!(
        refused.message().contains("docker-credential-pgfail"),
        "{refused:?}"
    );
    assert!(!refused.message().contains("helper-secret-output"));
}
