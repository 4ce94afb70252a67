//! Registry credentials from a Docker `config.json` / containers `auth.json`
//! (`[registry] auth_file`), for pulls that came without a CRI `AuthConfig`
//! and for `pullgate verify`.
//!
//! Input: a canonical registry host (`docker.io`, `registry.example:5000`)
//! and the pull's [`Deadline`]. Output: the [`Secret`] the file holds for
//! that host, or `None`. The secret is only ever used for requests to that
//! host (and to the token realm its challenge names).
//!
//! Format (docker/cli `cli/config/configfile`, containers/image
//! `docs/containers-auth.json.5.md`), looked up in docker's order:
//! 1. `credHelpers: {"<host>": "<name>"}` runs `docker-credential-<name> get`;
//! 2. else `credsStore: "<name>"` runs that helper for every host;
//! 3. else (or when the helper has no credentials for the host)
//!    `auths: {"<host>": {"auth": base64("user:pass")}}`, or
//!    `"identitytoken"` (an OAuth refresh token) / `"registrytoken"`.
//!
//! Keys are matched as docker's `ConvertToHostname` does (a scheme and a
//! path are dropped: `https://index.docker.io/v1/` is `index.docker.io`) and
//! then canonicalised as image references are
//! ([`pullgate_policy::reference::canonical_host`]), so every Docker Hub
//! spelling finds the Docker Hub entry.
//!
//! Credential helper protocol (docker/docker-credential-helpers
//! `client/client.go`): the server URL on stdin, `{"ServerURL", "Username",
//! "Secret"}` JSON on stdout; a `Username` of `<token>` means `Secret` is an
//! identity token; a failure whose output is "credentials not found in
//! native keychain" means "none", not an error. Docker Hub is asked for as
//! `https://index.docker.io/v1/`, other registries by host, as docker does.
//!
//! Limits: the file is read up to [`MAX_AUTH_FILE`] bytes; a helper runs
//! without a shell, with `kill_on_drop`, for at most [`HELPER_TIMEOUT`] (and
//! never past the pull's deadline), and at most [`MAX_HELPER_OUTPUT`] bytes
//! of its stdout are read (stderr is discarded). Results (found or not) are
//! cached per host for [`CACHE_TTL`], so one pull's many requests run a
//! helper once; at most [`MAX_CACHED_HOSTS`] hosts are cached.
//!
//! Hand-written: the `docker_credential` crate reads the same format but
//! runs helpers with blocking `std::process`, no timeout and unbounded
//! output, which a proxy serving the kubelet cannot afford.
//!
//! Secrets never reach a log or an error: [`Secret`]'s `Debug` redacts, and
//! every [`CredentialsError`] names the file, host or helper, never content.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use pullgate_policy::reference::canonical_host;
use serde::Deserialize;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::time::Instant;

use super::credentials::{CredentialsError, Secret};
use crate::deadline::Deadline;

/// Largest auth file read.
pub(super) const MAX_AUTH_FILE: u64 = 1 << 20;
/// Longest a credential helper may run (the pull's deadline may be shorter).
pub(super) const HELPER_TIMEOUT: Duration = Duration::from_secs(10);
/// Most bytes of a helper's stdout read.
pub(super) const MAX_HELPER_OUTPUT: u64 = 64 << 10;
/// How long a lookup's result is reused.
pub(super) const CACHE_TTL: Duration = Duration::from_secs(60);
/// Hosts whose lookup is cached; beyond this the cache is emptied.
pub(super) const MAX_CACHED_HOSTS: usize = 1024;
/// Docker Hub's key in config.json and what its helpers are asked for
/// (docker/cli `registry.IndexServer`).
const DOCKER_HUB_SERVER_URL: &str = "https://index.docker.io/v1/";
/// The canonical host of Docker Hub.
const DOCKER_HUB: &str = "docker.io";
/// A helper's `Username` saying that `Secret` is an identity token.
const TOKEN_USERNAME: &str = "<token>";
/// What helpers print when they hold nothing for the server
/// (docker-credential-helpers `credentials.errCredentialsNotFoundMessage`).
const NOT_FOUND_MESSAGE: &str = "credentials not found in native keychain";

/// What a lookup failed with: the pull's deadline, or the credentials.
#[derive(Debug)]
pub(super) enum LookupError {
    DeadlineExceeded,
    Credentials(CredentialsError),
}

impl From<CredentialsError> for LookupError {
    fn from(e: CredentialsError) -> Self {
        Self::Credentials(e)
    }
}

/// `[registry] auth_file`, with its lookups cached per host.
pub(crate) struct AuthFile {
    path: PathBuf,
    cache: Mutex<HashMap<String, (Instant, Option<Secret>)>>,
}

impl std::fmt::Debug for AuthFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthFile")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct RawFile {
    #[serde(default)]
    auths: BTreeMap<String, RawAuth>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(Deserialize)]
struct RawAuth {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
    #[serde(default)]
    registrytoken: Option<String>,
}

#[derive(Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// Where the credentials for a host are, per the file.
#[derive(Debug, PartialEq, Eq)]
enum Source {
    Helper(String),
    Inline(Option<Secret>),
}

impl AuthFile {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self {
            path,
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Option<Secret>)>> {
        // Short synchronous sections that cannot leave the map half-written.
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The secret for `host` (canonical), reading the file and running a
    /// helper as needed, under `deadline`.
    ///
    /// # Errors
    /// [`LookupError::DeadlineExceeded`] when the pull's deadline passes;
    /// otherwise a [`CredentialsError`] naming the file or helper.
    ///
    /// # Cancel safety
    /// Cancel safe: a helper still running is killed when dropped.
    pub(super) async fn lookup(
        &self,
        host: &str,
        deadline: Deadline,
    ) -> Result<Option<Secret>, LookupError> {
        if let Some((at, secret)) = self.lock().get(host) {
            if at.elapsed() < CACHE_TTL {
                return Ok(secret.clone());
            }
        }
        let work = async {
            let text = read_file(&self.path).await?;
            let file: RawFile =
                serde_json::from_slice(&text).map_err(|e| CredentialsError::Malformed {
                    path: self.path.clone(),
                    line: e.line(),
                    column: e.column(),
                })?;
            let secret = match source_for(&file, host, &self.path)? {
                Source::Inline(s) => s,
                Source::Helper(helper) => match run_helper(&helper, host).await? {
                    Some(s) => Some(s),
                    // The helper has nothing for this host: what `auths` has.
                    None => inline_for(&file, host, &self.path)?,
                },
            };
            Ok::<_, CredentialsError>(secret)
        };
        let secret = deadline
            .run(work)
            .await
            .map_err(|_| LookupError::DeadlineExceeded)??;
        let mut cache = self.lock();
        if cache.len() >= MAX_CACHED_HOSTS {
            cache.clear();
        }
        cache.insert(host.to_owned(), (Instant::now(), secret.clone()));
        Ok(secret)
    }
}

async fn read_file(path: &Path) -> Result<Vec<u8>, CredentialsError> {
    let unreadable = |e: std::io::Error| CredentialsError::Unreadable {
        path: path.to_owned(),
        reason: e.kind(),
    };
    // tokio::fs runs these on the blocking pool.
    let len = tokio::fs::metadata(path).await.map_err(unreadable)?.len();
    if len > MAX_AUTH_FILE {
        return Err(CredentialsError::TooLarge {
            path: path.to_owned(),
            limit: MAX_AUTH_FILE,
        });
    }
    let file = tokio::fs::File::open(path).await.map_err(unreadable)?;
    let mut buf = Vec::new();
    // The file may grow between the two calls: still read no more than the cap.
    file.take(MAX_AUTH_FILE + 1)
        .read_to_end(&mut buf)
        .await
        .map_err(unreadable)?;
    if buf.len() as u64 > MAX_AUTH_FILE {
        return Err(CredentialsError::TooLarge {
            path: path.to_owned(),
            limit: MAX_AUTH_FILE,
        });
    }
    Ok(buf)
}

/// A config key as a canonical host: docker's `ConvertToHostname` (drop the
/// scheme and everything from the first `/`), then the reference rules.
fn key_host(key: &str) -> Option<String> {
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = rest.split('/').next().unwrap_or(rest);
    canonical_host(host)
}

/// The entry of `map` for `host`: a key spelled exactly as `host` wins, then
/// the first key (in sorted order) that canonicalises to it.
fn entry_for<'a, V>(map: &'a BTreeMap<String, V>, host: &str) -> Option<&'a V> {
    map.get(host).or_else(|| {
        map.iter()
            .find(|(k, _)| key_host(k).as_deref() == Some(host))
            .map(|(_, v)| v)
    })
}

fn source_for(file: &RawFile, host: &str, path: &Path) -> Result<Source, CredentialsError> {
    if let Some(helper) = entry_for(&file.cred_helpers, host) {
        return Ok(Source::Helper(helper.clone()));
    }
    if let Some(store) = file.creds_store.as_ref().filter(|s| !s.is_empty()) {
        return Ok(Source::Helper(store.clone()));
    }
    inline_for(file, host, path).map(Source::Inline)
}

fn inline_for(file: &RawFile, host: &str, path: &Path) -> Result<Option<Secret>, CredentialsError> {
    let Some(entry) = entry_for(&file.auths, host) else {
        return Ok(None);
    };
    let present = |v: &Option<String>| v.as_ref().filter(|s| !s.is_empty()).cloned();
    if let Some(t) = present(&entry.registrytoken) {
        return Ok(Some(Secret::RegistryToken(t)));
    }
    if let Some(t) = present(&entry.identitytoken) {
        return Ok(Some(Secret::IdentityToken(t)));
    }
    if let Some(auth) = present(&entry.auth) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok());
        return match decoded.as_deref().and_then(|s| s.split_once(':')) {
            Some((u, p)) => Ok(Some(Secret::Basic {
                username: u.to_owned(),
                // containerd trims NULs the same way (ParseAuth).
                password: p.trim_end_matches('\0').to_owned(),
            })),
            None => Err(CredentialsError::BadAuthEntry {
                path: path.to_owned(),
                host: host.to_owned(),
            }),
        };
    }
    match (present(&entry.username), present(&entry.password)) {
        (None, None) => Ok(None),
        (u, p) => Ok(Some(Secret::Basic {
            username: u.unwrap_or_default(),
            password: p.unwrap_or_default(),
        })),
    }
}

/// Helper names are file-name suffixes: no path separators, no shell.
fn valid_helper_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !name.starts_with('.')
}

/// Runs `docker-credential-<helper> get` for `host`: `Ok(None)` when the
/// helper holds nothing for it.
async fn run_helper(helper: &str, host: &str) -> Result<Option<Secret>, CredentialsError> {
    if !valid_helper_name(helper) {
        return Err(CredentialsError::BadHelperName {
            name: helper.chars().take(64).collect(),
        });
    }
    // No shell: the program is looked up on PATH and given one argument.
    let program = format!("docker-credential-{helper}");
    run_program(std::ffi::OsStr::new(&program), helper, host, HELPER_TIMEOUT).await
}

/// Runs `<program> get` as the helper named `helper`, for `host`.
async fn run_program(
    program: &std::ffi::OsStr,
    helper: &str,
    host: &str,
    timeout: Duration,
) -> Result<Option<Secret>, CredentialsError> {
    let server_url = if host == DOCKER_HUB {
        DOCKER_HUB_SERVER_URL
    } else {
        host
    };
    let not_started = |e: std::io::Error| CredentialsError::HelperNotStarted {
        helper: helper.to_owned(),
        reason: e.kind(),
    };
    let mut child = tokio::process::Command::new(program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(not_started)?;
    let run = async {
        if let Some(mut stdin) = child.stdin.take() {
            // A helper that exits without reading stdin is judged by its exit status.
            let _ = stdin.write_all(server_url.as_bytes()).await;
            drop(stdin);
        }
        let mut out = Vec::new();
        if let Some(stdout) = child.stdout.take() {
            stdout
                .take(MAX_HELPER_OUTPUT + 1)
                .read_to_end(&mut out)
                .await
                .map_err(not_started)?;
        }
        if out.len() as u64 > MAX_HELPER_OUTPUT {
            return Err(CredentialsError::HelperOutputTooLarge {
                helper: helper.to_owned(),
                limit: MAX_HELPER_OUTPUT,
            });
        }
        let status = child.wait().await.map_err(not_started)?;
        Ok((status, out))
    };
    let (status, out) = match tokio::time::timeout(timeout, run).await {
        Ok(r) => r?,
        Err(_) => {
            // `kill_on_drop`: the child is killed as `run` is dropped here.
            return Err(CredentialsError::HelperTimedOut {
                helper: helper.to_owned(),
                timeout,
            });
        }
    };
    if !status.success() {
        if String::from_utf8_lossy(&out).trim() == NOT_FOUND_MESSAGE {
            return Ok(None);
        }
        return Err(CredentialsError::HelperFailed {
            helper: helper.to_owned(),
            host: host.to_owned(),
            status,
        });
    }
    let answer: HelperAnswer =
        serde_json::from_slice(&out).map_err(|_| CredentialsError::HelperMalformed {
            helper: helper.to_owned(),
        })?;
    if answer.secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(if answer.username == TOKEN_USERNAME {
        Secret::IdentityToken(answer.secret)
    } else {
        Secret::Basic {
            username: answer.username,
            password: answer.secret,
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> RawFile {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn keys_match_every_spelling_of_their_host() {
        let file = parse(
            r#"{"auths":{
                "https://index.docker.io/v1/":{"auth":"dTpwOnE="},
                "Registry.Example:443":{"identitytoken":"it"},
                "http://127.0.0.1:5000/some/path":{"username":"a","password":"b"},
                "empty.example":{}
            },"HttpHeaders":{"X":"y"}}"#,
        );
        let p = Path::new("/c.json");
        assert_eq!(
            source_for(&file, "docker.io", p).unwrap(),
            Source::Inline(Some(Secret::Basic {
                username: "u".into(),
                password: "p:q".into()
            }))
        );
        assert_eq!(
            source_for(&file, "registry.example", p).unwrap(),
            Source::Inline(Some(Secret::IdentityToken("it".into())))
        );
        assert_eq!(
            source_for(&file, "127.0.0.1:5000", p).unwrap(),
            Source::Inline(Some(Secret::Basic {
                username: "a".into(),
                password: "b".into()
            }))
        );
        assert_eq!(
            source_for(&file, "empty.example", p).unwrap(),
            Source::Inline(None)
        );
        // Another port is another host.
        assert_eq!(
            source_for(&file, "127.0.0.1:5001", p).unwrap(),
            Source::Inline(None)
        );
    }

    #[test]
    fn helpers_come_first_and_bad_entries_are_named() {
        let file = parse(
            r#"{"auths":{"r.example":{"auth":"!!!"}},
                "credHelpers":{"Docker.IO":"hub","r.example":"ecr-login"},
                "credsStore":"desktop"}"#,
        );
        let p = Path::new("/c.json");
        assert_eq!(
            source_for(&file, "docker.io", p).unwrap(),
            Source::Helper("hub".into())
        );
        assert_eq!(
            source_for(&file, "other.example", p).unwrap(),
            Source::Helper("desktop".into())
        );
        let err = inline_for(&file, "r.example", p).unwrap_err().to_string();
        assert!(
            err.contains("r.example") && err.contains("/c.json"),
            "{err}"
        );
        assert!(!err.contains("!!!"), "{err}");
        for bad in ["", "../x", "a/b", ".hidden", "a b", "x;rm"] {
            assert!(!valid_helper_name(bad), "{bad:?}");
        }
        assert!(valid_helper_name("ecr-login"));
    }

    /// Writes an executable shell script (the test's helper; pullgate runs
    /// it directly, without a shell of its own).
    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt as _;
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    async fn run(path: &Path, host: &str) -> Result<Option<Secret>, CredentialsError> {
        run_program(path.as_os_str(), "test", host, Duration::from_secs(10)).await
    }

    #[tokio::test]
    async fn helpers_are_asked_by_server_url_and_answers_read() {
        let dir = tempfile::tempdir().unwrap();
        // Answers with what it was asked, so the test sees the server URL.
        let echo = script(
            dir.path(),
            "echo",
            r#"read -r url; [ "$1" = get ] || exit 3; printf '{"ServerURL":"%s","Username":"%s","Secret":"s3cret"}' "$url" "$url""#,
        );
        assert_eq!(
            run(&echo, "docker.io").await.unwrap(),
            Some(Secret::Basic {
                username: "https://index.docker.io/v1/".into(),
                password: "s3cret".into()
            })
        );
        assert_eq!(
            run(&echo, "127.0.0.1:5000").await.unwrap(),
            Some(Secret::Basic {
                username: "127.0.0.1:5000".into(),
                password: "s3cret".into()
            })
        );
        let token = script(
            dir.path(),
            "token",
            r#"printf '{"Username":"<token>","Secret":"refresh"}'"#,
        );
        assert_eq!(
            run(&token, "r.example").await.unwrap(),
            Some(Secret::IdentityToken("refresh".into()))
        );
        let none = script(
            dir.path(),
            "none",
            "echo 'credentials not found in native keychain'; exit 1",
        );
        assert_eq!(run(&none, "r.example").await.unwrap(), None);
    }

    #[tokio::test]
    async fn helper_failures_are_clear_and_leak_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let fails = script(dir.path(), "fails", "echo 'leaked-secret'; exit 2");
        let err = run(&fails, "r.example").await.unwrap_err();
        assert!(
            matches!(err, CredentialsError::HelperFailed { .. }),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains("docker-credential-test") && text.contains("r.example"),
            "{text}"
        );
        assert!(!text.contains("leaked-secret"), "{text}");

        let garbage = script(dir.path(), "garbage", "echo 'leaked-secret'");
        let err = run(&garbage, "r.example").await.unwrap_err();
        assert!(
            matches!(err, CredentialsError::HelperMalformed { .. }),
            "{err:?}"
        );
        assert!(!err.to_string().contains("leaked-secret"));

        let flood = script(dir.path(), "flood", "yes x | head -c 200000");
        let err = run(&flood, "r.example").await.unwrap_err();
        assert!(
            matches!(err, CredentialsError::HelperOutputTooLarge { .. }),
            "{err:?}"
        );

        let hangs = script(dir.path(), "hangs", "exec sleep 30");
        let err = run_program(
            hangs.as_os_str(),
            "test",
            "r.example",
            Duration::from_millis(200),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(err, CredentialsError::HelperTimedOut { .. }),
            "{err:?}"
        );

        let err = run(&dir.path().join("missing"), "r.example")
            .await
            .unwrap_err();
        assert!(
            matches!(err, CredentialsError::HelperNotStarted { .. }),
            "{err:?}"
        );
        let err = run_helper("../../bin/sh", "r.example").await.unwrap_err();
        assert!(
            matches!(err, CredentialsError::BadHelperName { .. }),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn the_file_is_read_capped_and_looked_up_per_host() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.json");
        std::fs::write(
            &path,
            r#"{"auths":{"r.example":{"auth":"dTpw"},"other.example":{"auth":"eDp5"}}}"#,
        )
        .unwrap();
        let file = AuthFile::new(path.clone());
        let deadline = Deadline::after(Duration::from_secs(10));
        assert_eq!(
            file.lookup("r.example", deadline).await.unwrap(),
            Some(Secret::Basic {
                username: "u".into(),
                password: "p".into()
            })
        );
        assert_eq!(file.lookup("third.example", deadline).await.unwrap(), None);
        std::fs::write(&path, vec![b' '; (MAX_AUTH_FILE + 1) as usize]).unwrap();
        let file = AuthFile::new(path);
        assert!(matches!(
            file.lookup("r.example", deadline).await,
            Err(LookupError::Credentials(CredentialsError::TooLarge { .. }))
        ));
        let missing = AuthFile::new(dir.path().join("missing.json"));
        assert!(matches!(
            missing.lookup("r.example", deadline).await,
            Err(LookupError::Credentials(
                CredentialsError::Unreadable { .. }
            ))
        ));
    }

    #[test]
    fn malformed_file_errors_keep_only_the_position() {
        let e = serde_json::from_str::<RawFile>(r#"{"auths":{"r":{"auth":12345678}}}"#)
            .err()
            .unwrap();
        let err = CredentialsError::Malformed {
            path: "/c.json".into(),
            line: e.line(),
            column: e.column(),
        }
        .to_string();
        assert!(!err.contains("12345678"), "{err}");
    }
}
