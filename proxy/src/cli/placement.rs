//! `pullgate policy check FILE --image REF [--namespace NS]`: which trust
//! policy statement and requirements scope an image lands in, and why.
//!
//! Input: a pullgate config (its trust policy and requirements are read),
//! a requirements file (scope only) or a `trustpolicy.json` (statement only),
//! an image reference and the pod's namespace (none: as crictl, containerd's
//! image verifier and `pullgate verify` ask). Output: text for a person. The
//! selection is the gate's own ([`Requirements::for_pod`],
//! [`TrustPolicyDocument::statement_for`]); this module only says why.

use std::fmt::Write as _;
use std::path::Path;

use pullgate_policy::config::Config;
use pullgate_policy::requirements::Requirements;
use pullgate_policy::trust_policy::RegistryScope;
use pullgate_policy::{ImageRef, TrustPolicyDocument};

use super::policy_check::CheckError;

/// Explains where `image` for a pod in `namespace` lands under the policy in `path`.
///
/// Blocking (reads files).
///
/// # Errors
/// [`CheckError`] naming the file that cannot be read or is invalid.
pub fn explain_placement(
    path: &Path,
    image: &ImageRef,
    namespace: Option<&str>,
) -> Result<String, CheckError> {
    let text = read(path)?;
    let looks_json =
        path.extension().is_some_and(|e| e == "json") || text.trim_start().starts_with('{');
    let is_requirements = !looks_json
        && text
            .parse::<toml::Table>()
            .map(|t| t.contains_key("scope") || t.contains_key("break_glass"))
            .unwrap_or(false);
    let (document, requirements) = if looks_json {
        (Some(trust_policy(path, &text)?), None)
    } else if is_requirements {
        (None, Some(requirements(path, &text)?))
    } else {
        let config = Config::from_toml(&text).map_err(|cause| CheckError::Config {
            path: path.display().to_string(),
            cause,
        })?;
        // With `[trust] source`, the last good bundle's files (none: `[trust]`'s,
        // which a source's deny-all policy does not use).
        let trust = crate::policy_bundle::store::effective_trust(&config).unwrap_or(config.trust);
        let policy = &crate::gate::trust_policy_file(&trust);
        let document = trust_policy(policy, &read(policy)?)?;
        let requirements = match trust.requirements.as_deref() {
            Some(p) if !p.as_os_str().is_empty() => requirements(p, &read(p)?)?,
            _ => Requirements::default(),
        };
        (Some(document), Some(requirements))
    };
    let repo = image.repository();
    let mut out = match namespace {
        Some(ns) => format!("image {image} for a pod in namespace {ns:?}:\n"),
        None => format!(
            "image {image}, no pod namespace (crictl, the image verifier, pullgate verify):\n"
        ),
    };
    if let Some(r) = &requirements {
        let placement = r.placement(repo, namespace);
        let scope = r.for_pod(repo, namespace);
        let why = match placement {
            None => {
                let among = match namespace {
                    Some(ns) => {
                        format!("no entry whose namespaces match {ns:?} and no entry listing none")
                    }
                    None => "no entry listing no namespaces".to_owned(),
                };
                format!("{among} has a registry scope matching {repo}: the built-in default (notation, one signer, fail closed, enforce)")
            }
            Some(p) => {
                let registry = format!(
                    "its registry scope {} ({}) is the most specific matching {repo} (exact > longest prefix glob > \"/*\" before \"/**\" > \"*\")",
                    p.pattern,
                    p.pattern.kind()
                );
                match (namespace, p.namespace) {
                    (Some(ns), Some(glob)) => format!(
                        "its namespaces glob {:?} matches {ns:?} (an entry naming the pod's namespace wins over every entry that lists none), and among those {registry}",
                        glob.as_str()
                    ),
                    (Some(ns), None) => format!(
                        "no entry's namespaces match {ns:?} (or none that does covers the repository), so among the entries that list none, {registry}"
                    ),
                    (None, _) => format!(
                        "a request without a namespace matches only entries that list none; {registry}"
                    ),
                }
            }
        };
        let _ = writeln!(
            out,
            "  requirements scope \"{}\" (mode {}, {} signer(s), kinds {:?}): {why}",
            scope.name(),
            scope.mode(),
            scope.min_signers(),
            scope.signature_kinds()
        );
        let _ = writeln!(
            out,
            "  precedence: 1. namespace (a scope naming the pod's namespace before scopes naming none), 2. registry scope (exact, then longest literal prefix glob, \"/*\" before \"/**\", then \"*\"/\"**\")"
        );
    }
    if let Some(doc) = &document {
        match doc.statement_for(repo) {
            Some(s) => {
                let exact = s
                    .registry_scopes()
                    .iter()
                    .any(|x| matches!(x, RegistryScope::Repository(r) if r == repo));
                let _ = writeln!(
                    out,
                    "  trust policy statement \"{}\" (level {}): {}",
                    s.name(),
                    s.level(),
                    if exact {
                        format!("its registryScopes name {repo} exactly")
                    } else {
                        "the global \"*\" statement (no statement names the repository); trust policy statements do not depend on the namespace".to_owned()
                    }
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "  no trust policy statement covers {repo}: a scope that needs Notary Project signatures denies it"
                );
            }
        }
    }
    Ok(out)
}

fn read(path: &Path) -> Result<String, CheckError> {
    std::fs::read_to_string(path).map_err(|cause| CheckError::Read {
        path: path.display().to_string(),
        cause,
    })
}

fn trust_policy(path: &Path, text: &str) -> Result<TrustPolicyDocument, CheckError> {
    TrustPolicyDocument::from_json(text.as_bytes()).map_err(|cause| CheckError::TrustPolicy {
        path: path.display().to_string(),
        cause,
    })
}

fn requirements(path: &Path, text: &str) -> Result<Requirements, CheckError> {
    Requirements::from_toml(text).map_err(|cause| CheckError::Requirements {
        path: path.display().to_string(),
        cause,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQUIREMENTS: &str = r#"
        [[scope]]
        name = "teams"
        registry_scopes = ["*"]
        namespaces = ["team-*"]
        min_signers = 2

        [[scope]]
        name = "app"
        registry_scopes = ["registry.example/app"]
        mode = "audit"
    "#;

    #[test]
    fn it_names_the_scope_and_why() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("requirements.toml");
        std::fs::write(&path, REQUIREMENTS).unwrap();
        let image: ImageRef = "registry.example/app:v1".parse().unwrap();

        let out = explain_placement(&path, &image, Some("team-a")).unwrap();
        assert!(out.contains("requirements scope \"teams\""), "{out}");
        assert!(out.contains("glob \"team-*\" matches \"team-a\""), "{out}");
        let out = explain_placement(&path, &image, Some("web")).unwrap();
        assert!(out.contains("requirements scope \"app\""), "{out}");
        assert!(out.contains("no entry's namespaces match \"web\""), "{out}");
        let out = explain_placement(&path, &image, None).unwrap();
        assert!(out.contains("requirements scope \"app\""), "{out}");
        let other: ImageRef = "registry.example/other:v1".parse().unwrap();
        let out = explain_placement(&path, &other, None).unwrap();
        assert!(out.contains("built-in default"), "{out}");
    }

    #[test]
    fn it_names_the_glob_that_won() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("requirements.toml");
        std::fs::write(
            &path,
            r#"
            [[scope]]
            name = "all"
            registry_scopes = ["*"]

            [[scope]]
            name = "team"
            registry_scopes = ["registry.example/team/**"]
            "#,
        )
        .unwrap();
        let image: ImageRef = "registry.example/team/a/b:v1".parse().unwrap();
        let out = explain_placement(&path, &image, Some("web")).unwrap();
        assert!(out.contains("requirements scope \"team\""), "{out}");
        assert!(
            out.contains("registry scope registry.example/team/** (prefix glob (any depth))"),
            "{out}"
        );
        assert!(out.contains("precedence: 1. namespace"), "{out}");
        let other: ImageRef = "registry.example/other:v1".parse().unwrap();
        let out = explain_placement(&path, &other, None).unwrap();
        assert!(out.contains("requirements scope \"all\""), "{out}");
        assert!(out.contains("(every repository)"), "{out}");
    }
}
