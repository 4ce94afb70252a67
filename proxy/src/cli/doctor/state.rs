//! pullgate's own state: the policy loads, no trust store is empty, the
//! global scope is verified, the state directory is safe, the registries the
//! scopes name answer.

use std::collections::BTreeSet;
use std::time::Duration;

use pullgate_policy::config::{Config, TrustConfig};
use pullgate_policy::trust_policy::RegistryScope;
use pullgate_policy::{Level, Requirements, TrustPolicyDocument};

use super::Check;
use crate::verify::trust_store::TrustStore;

/// How long one registry host may take to accept a TCP connection.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Most registry hosts tried.
const MAX_HOSTS: usize = 64;

/// The checks of pullgate's own state. Blocking but for the registry
/// connects, which run on `rt` (skipped when `offline`).
pub(crate) fn checks(config: &Config, offline: bool, rt: &tokio::runtime::Runtime) -> Vec<Check> {
    let mut checks = Vec::new();
    // With `[trust] source`, the files in force are the last good bundle's.
    let Some(trust) = crate::policy_bundle::store::effective_trust(config) else {
        checks.push(Check::fail(
            "pullgate.policy",
            format!(
                "[trust] source {}: no verified bundle on disk, so every pull is denied until one is fetched",
                config.trust.source.as_deref().unwrap_or_default()
            ),
            "make the registry reachable and the bundle signed as [trust.source_verification] requires; `pullgate serve` logs why each bundle was refused",
        ));
        checks.push(state_dir(config));
        return checks;
    };
    match crate::gate::Gate::load(config) {
        Ok(_) => checks.push(Check::ok(
            "pullgate.policy",
            format!(
                "trust policy {}, trust store {}, requirements {} load",
                trust.policy.display(),
                trust.store.display(),
                trust
                    .requirements
                    .as_deref()
                    .map_or_else(|| "(built-in)".to_owned(), |p| p.display().to_string())
            ),
        )),
        Err(e) => checks.push(Check::fail(
            "pullgate.policy",
            crate::cli::error_chain(&e),
            "fix the file named (`pullgate policy check FILE` explains it); `pullgate serve` will not start until then",
        )),
    }
    let document = std::fs::read(crate::gate::trust_policy_file(&trust))
        .ok()
        .and_then(|bytes| TrustPolicyDocument::from_json(&bytes).ok());
    if let Some(document) = &document {
        checks.push(trust_stores(&trust, document));
        checks.push(global_scope(document));
    }
    checks.push(state_dir(config));
    if offline {
        return checks;
    }
    let requirements = trust
        .requirements
        .as_deref()
        .filter(|p| !p.as_os_str().is_empty())
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|text| Requirements::from_toml(&text).ok());
    let hosts = registry_hosts(document.as_ref(), requirements.as_ref());
    if !hosts.is_empty() {
        checks.push(rt.block_on(reachable(config, hosts)));
    }
    checks
}

/// No named trust store a statement uses is empty or missing.
fn trust_stores(trust: &TrustConfig, document: &TrustPolicyDocument) -> Check {
    const NAME: &str = "pullgate.trust_stores";
    let store = match TrustStore::load(&trust.store) {
        Ok(s) => s,
        Err(e) => {
            return Check::fail(
                NAME,
                format!("{}: {e}", trust.store.display()),
                "lay the trust store out as notation's: <store>/x509/{ca,signingAuthority,tsa}/<name>/<certificate files>",
            )
        }
    };
    let mut empty = Vec::new();
    let mut named = 0;
    for s in document.statements() {
        for r in s.trust_stores() {
            named += 1;
            if store.get(r.kind, &r.name).is_none_or(<[_]>::is_empty) {
                empty.push(format!("{r} (statement {:?})", s.name()));
            }
        }
    }
    if empty.is_empty() {
        return Check::ok(
            NAME,
            format!("{named} named trust store(s) used, none empty"),
        );
    }
    Check::fail(
        NAME,
        format!(
            "empty or missing: {}: every image in those statements' scopes is denied",
            empty.join(", ")
        ),
        format!(
            "put the signers' root certificates in {}/x509/<type>/<name>/ (notation's layout), or remove the store from the statement",
            trust.store.display()
        ),
    )
}

/// A global `*` statement of level `skip` lets every repository without a
/// statement of its own through unverified.
fn global_scope(document: &TrustPolicyDocument) -> Check {
    const NAME: &str = "pullgate.global_scope";
    match document.statements().iter().find(|s| s.is_global()) {
        Some(s) if s.level() == Level::Skip => Check::warn(
            NAME,
            format!(
                "statement {:?} gives the global scope \"*\" level skip: every repository without a statement of its own is pulled unverified",
                s.name()
            ),
            "give \"*\" a verifying level (strict, permissive or audit) and list the repositories that may be unsigned in a statement of their own",
        ),
        Some(s) => Check::ok(
            NAME,
            format!("statement {:?} verifies every other repository (level {})", s.name(), s.level()),
        ),
        None => Check::ok(
            NAME,
            "no global \"*\" statement: repositories no statement names are denied",
        ),
    }
}

/// The state directory passes `serve`'s ownership checks.
fn state_dir(config: &Config) -> Check {
    const NAME: &str = "pullgate.state_dir";
    let Some(dir) = &config.cache.state_dir else {
        return Check::ok(NAME, "[cache] state_dir unset: verdicts are not persisted");
    };
    match crate::persist::check_dir(dir) {
        Ok(true) => Check::ok(NAME, format!("{} is safe", dir.display())),
        Ok(false) => Check::ok(
            NAME,
            format!("{} does not exist yet: `serve` creates it 0700", dir.display()),
        ),
        Err(e) => Check::fail(
            NAME,
            e.to_string(),
            format!(
                "chown root:root {0} && chmod 0700 {0} (files in it 0600); the unit's StateDirectory= makes it so",
                dir.display()
            ),
        ),
    }
}

/// The registry hosts the trust policy's and requirements' scopes name (`*` names none).
pub(crate) fn registry_hosts(
    document: Option<&TrustPolicyDocument>,
    requirements: Option<&Requirements>,
) -> BTreeSet<String> {
    let from_policy = document
        .into_iter()
        .flat_map(|d| d.statements())
        .flat_map(|s| s.registry_scopes());
    let from_requirements = requirements
        .into_iter()
        .flat_map(|r| r.scopes())
        .flat_map(|s| s.registry_scopes());
    from_policy
        .filter_map(|scope| match scope {
            RegistryScope::Repository(repo) => Some(repo.domain().to_owned()),
            RegistryScope::Global => None,
        })
        .chain(from_requirements.filter_map(|p| p.domain().map(str::to_owned)))
        .take(MAX_HOSTS)
        .collect()
}

/// `host[:port]` → the address to connect to: 443 unless a port is given,
/// Docker Hub's API host for `docker.io`.
fn address(host: &str) -> String {
    if host == "docker.io" {
        return "registry-1.docker.io:443".to_owned();
    }
    let has_port = host
        .rsplit_once(':')
        .is_some_and(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if has_port {
        host.to_owned()
    } else {
        format!("{host}:443")
    }
}

/// Opens a TCP connection to each host, [`CONNECT_TIMEOUT`] each, all at once.
async fn reachable(config: &Config, hosts: BTreeSet<String>) -> Check {
    const NAME: &str = "registries.reachable";
    let mut tries = tokio::task::JoinSet::new();
    for host in hosts {
        tries.spawn(async move {
            let addr = address(&host);
            let result =
                tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(&addr)).await;
            let problem = match result {
                Ok(Ok(_)) => None,
                Ok(Err(e)) => Some(format!("{addr}: {e}")),
                Err(_) => Some(format!(
                    "{addr}: no answer in {} s",
                    CONNECT_TIMEOUT.as_secs()
                )),
            };
            (host, problem)
        });
    }
    let mut ok = Vec::new();
    let mut down = Vec::new();
    while let Some(joined) = tries.join_next().await {
        match joined {
            Ok((host, None)) => ok.push(host),
            Ok((_, Some(problem))) => down.push(problem),
            Err(e) => down.push(format!("connect task failed: {e}")),
        }
    }
    ok.sort();
    down.sort();
    if down.is_empty() {
        return Check::ok(NAME, format!("reachable: {}", ok.join(", ")));
    }
    let mirrors = if config.registry.hosts_dir.is_some() {
        " (a host reached only through a hosts_dir mirror shows here too)"
    } else {
        ""
    };
    Check::warn(
        NAME,
        format!("unreachable: {}{mirrors}: pulls from these fail closed (or open where a scope says fail_open)", down.join("; ")),
        "check the node's network, proxy and DNS for these registries, or set [registry] hosts_dir to containerd's certs.d for mirrors; --offline skips this check",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_come_from_every_scope_and_ports_default_to_443() {
        let doc = TrustPolicyDocument::from_json(
            br#"{"version":"1.0","trustPolicies":[
            {"name":"a","registryScopes":["r.example/app","127.0.0.1:5000/x"],"signatureVerification":{"level":"strict"},"trustStores":["ca:n"],"trustedIdentities":["*"]},
            {"name":"b","registryScopes":["*"],"signatureVerification":{"level":"skip"}}]}"#,
        )
        .unwrap();
        let req = Requirements::from_toml(
            "[[scope]]\nname = \"hub\"\nregistry_scopes = [\"docker.io/library/nginx\"]\n",
        )
        .unwrap();
        let hosts = registry_hosts(Some(&doc), Some(&req));
        assert_eq!(
            hosts.iter().map(String::as_str).collect::<Vec<_>>(),
            // Loopback aliases are one registry, spelled `localhost`.
            ["docker.io", "localhost:5000", "r.example"]
        );
        assert_eq!(address("r.example"), "r.example:443");
        assert_eq!(address("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(address("docker.io"), "registry-1.docker.io:443");
    }

    #[test]
    fn a_skipped_global_scope_warns() {
        use super::super::Status;
        let doc = |level: &str| {
            let stores = if level == "skip" {
                ""
            } else {
                r#","trustStores":["ca:n"],"trustedIdentities":["*"]"#
            };
            TrustPolicyDocument::from_json(
                format!(
                    r#"{{"version":"1.0","trustPolicies":[{{"name":"rest","registryScopes":["*"],"signatureVerification":{{"level":"{level}"}}{stores}}}]}}"#
                )
                .as_bytes(),
            )
            .unwrap()
        };
        assert_eq!(global_scope(&doc("skip")).status, Status::Warn);
        assert_eq!(global_scope(&doc("strict")).status, Status::Ok);
    }

    #[test]
    fn unreachable_hosts_warn_and_reachable_ones_pass() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let up = listener.local_addr().unwrap().to_string();
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let down = closed.local_addr().unwrap().to_string();
        drop(closed);
        let config = Config::default();
        let check = rt.block_on(reachable(&config, [up.clone()].into()));
        assert_eq!(check.status, super::super::Status::Ok, "{check:?}");
        let check = rt.block_on(reachable(&config, [up, down.clone()].into()));
        assert_eq!(check.status, super::super::Status::Warn, "{check:?}");
        assert!(check.detail.contains(&down), "{check:?}");
    }
}
