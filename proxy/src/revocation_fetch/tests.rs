//! The fetcher and cache against a small HTTP server on 127.0.0.1 that
//! serves minted OCSP responses and CRLs and counts requests.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::*;
use crate::verify::mint::AsChain as _;
use crate::verify::revocation::{check_chain, needed};
use pullgate_testkit::revocation::{self, now, Endpoints, Entry, OcspSpec, Pki, Status, DAY, HOUR};

/// What the server answers on one path prefix.
#[derive(Debug, Clone)]
enum Reply {
    Body(Vec<u8>),
    Status(u16),
    Hang,
    Redirect(String),
}

#[derive(Default)]
struct State {
    routes: HashMap<String, Reply>,
    hits: HashMap<String, usize>,
    posts: usize,
}

struct Server {
    base: String,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State::default()));
        let shared = Arc::clone(&state);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let state = Arc::clone(&shared);
                tokio::spawn(async move {
                    let service = service_fn(move |req| answer(Arc::clone(&state), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { base, state, task }
    }

    fn route(&self, prefix: &str, reply: Reply) {
        self.state
            .lock()
            .unwrap()
            .routes
            .insert(prefix.to_owned(), reply);
    }

    fn hits(&self, prefix: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .hits
            .get(prefix)
            .copied()
            .unwrap_or(0)
    }

    fn total_hits(&self) -> usize {
        self.state.lock().unwrap().hits.values().sum()
    }
}

async fn answer(
    state: Arc<Mutex<State>>,
    req: http::Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    let reply = {
        let mut state = state.lock().unwrap();
        if req.method() == Method::POST {
            state.posts += 1;
        }
        let prefix = state
            .routes
            .keys()
            .filter(|p| path.starts_with(p.as_str()))
            .max_by_key(|p| p.len())
            .cloned();
        match prefix {
            Some(p) => {
                *state.hits.entry(p.clone()).or_default() += 1;
                state.routes[&p].clone()
            }
            None => Reply::Status(404),
        }
    };
    let resp = match reply {
        Reply::Body(b) => Response::new(Full::new(Bytes::from(b))),
        Reply::Status(s) => {
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = StatusCode::from_u16(s).unwrap();
            r
        }
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Response::new(Full::new(Bytes::new()))
        }
        Reply::Redirect(to) => {
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = StatusCode::FOUND;
            r.headers_mut()
                .insert(http::header::LOCATION, to.parse().unwrap());
            r
        }
    };
    Ok(resp)
}

const OCSP_INT: &str = "/ocsp/intermediate";
const OCSP_ROOT: &str = "/ocsp/root";
const CRL_INT: &str = "/crl/intermediate.crl";
const CRL_ROOT: &str = "/crl/root.crl";

fn online() -> RevocationCache {
    RevocationCache::new(&RevocationConfig::default()).unwrap()
}

fn deadline() -> Deadline {
    Deadline::after(Duration::from_secs(30))
}

/// Prefetches at `at`, then runs the pure check at `at`.
async fn prefetch_and_check(
    cache: &RevocationCache,
    pki: &Pki,
    at: SystemTime,
) -> Result<(), RevocationFailure> {
    let chain = pki.chain();
    cache
        .prefetch(&needed(&chain), at, deadline())
        .await
        .unwrap();
    check_chain(&chain, cache, None, at)
}

fn serve_good_ocsp(server: &Server, pki: &Pki) {
    server.route(
        OCSP_INT,
        Reply::Body(OcspSpec::good(&pki.leaf, &pki.intermediate).der().unwrap()),
    );
    server.route(
        OCSP_ROOT,
        Reply::Body(OcspSpec::good(&pki.intermediate, &pki.root).der().unwrap()),
    );
}

/// Prefetches at `now()`, then the status of the leaf alone.
async fn leaf_status(cache: &RevocationCache, pki: &Pki) -> RevocationStatus {
    let chain = pki.chain();
    cache
        .prefetch(&needed(&chain), now(), deadline())
        .await
        .unwrap();
    check::status(&chain[0], &chain[1], cache, None, now())
}

fn leaf_unknown(err: RevocationFailure) -> (Option<RevocationError>, Option<RevocationError>) {
    assert_eq!(err.index, 0, "{err}");
    match *err.status {
        RevocationStatus::Unknown { ocsp, crl } => (ocsp, crl),
        other => panic!("{other:?}"),
    }
}

fn unusable(url: String, e: RevocationError) -> RevocationError {
    RevocationError::Unavailable {
        url,
        why: FetchFailure::Unusable(Box::new(e)),
    }
}

#[tokio::test]
async fn good_ocsp_is_fetched_once_and_served_from_memory_after() {
    let server = Server::start().await;
    let pki = Pki::new(&server.base, Endpoints::Both).unwrap();
    serve_good_ocsp(&server, &pki);
    let cache = online();
    let requests = needed(&pki.chain());
    assert!(cache.needs_fetch(&requests, now()));
    assert_eq!(prefetch_and_check(&cache, &pki, now()).await, Ok(()));
    assert_eq!((server.hits(OCSP_INT), server.hits(OCSP_ROOT)), (1, 1));
    assert_eq!(server.hits(CRL_INT) + server.hits(CRL_ROOT), 0);
    assert!(!cache.needs_fetch(&requests, now() + HOUR));
    assert!(cache.needs_fetch(&requests, now() + 2 * DAY));
    assert_eq!(
        check::check_requests(&requests, &cache, None, now() + HOUR),
        Ok(())
    );
    // The hot path: everything is held, nothing is requested.
    let clone = cache.clone();
    assert_eq!(prefetch_and_check(&clone, &pki, now() + HOUR).await, Ok(()));
    assert_eq!(server.total_hits(), 2);
}

#[tokio::test]
async fn responses_are_held_until_next_update_then_fetched_again() {
    let server = Server::start().await;
    let pki = Pki::new(&server.base, Endpoints::OcspOnly).unwrap();
    serve_good_ocsp(&server, &pki);
    let cache = online();
    assert_eq!(prefetch_and_check(&cache, &pki, now()).await, Ok(()));
    assert_eq!(server.hits(OCSP_INT), 1);
    // Still before nextUpdate (now + 1 day): no request.
    assert_eq!(
        prefetch_and_check(&cache, &pki, now() + DAY - HOUR).await,
        Ok(())
    );
    assert_eq!(server.hits(OCSP_INT), 1);
    // Past it: fetched again, and the new response is used.
    let later = now() + 2 * DAY;
    let mut leaf = OcspSpec::good(&pki.leaf, &pki.intermediate);
    leaf.this_update = later - HOUR;
    leaf.next_update = Some(later + DAY);
    let mut int = OcspSpec::good(&pki.intermediate, &pki.root);
    int.this_update = later - HOUR;
    int.next_update = Some(later + DAY);
    server.route(OCSP_INT, Reply::Body(leaf.der().unwrap()));
    server.route(OCSP_ROOT, Reply::Body(int.der().unwrap()));
    assert_eq!(prefetch_and_check(&cache, &pki, later).await, Ok(()));
    assert_eq!((server.hits(OCSP_INT), server.hits(OCSP_ROOT)), (2, 2));
}

#[tokio::test]
async fn revoked_by_ocsp() {
    let server = Server::start().await;
    let pki = Pki::new(&server.base, Endpoints::Both).unwrap();
    serve_good_ocsp(&server, &pki);
    let mut spec = OcspSpec::good(&pki.leaf, &pki.intermediate);
    spec.status = Status::Revoked {
        at: now() - DAY,
        invalidity: None,
    };
    server.route(OCSP_INT, Reply::Body(spec.der().unwrap()));
    let err = prefetch_and_check(&online(), &pki, now())
        .await
        .unwrap_err();
    assert_eq!(err.index, 0);
    assert!(matches!(
        *err.status,
        RevocationStatus::Revoked {
            method: check::Method::Ocsp,
            ..
        }
    ));
    // No CRL was needed: OCSP answered.
    assert_eq!(server.hits(CRL_INT), 0);
}

#[tokio::test]
async fn crl_is_used_when_the_ocsp_responder_fails() {
    let server = Server::start().await;
    let pki = Pki::new(&server.base, Endpoints::Both).unwrap();
    serve_good_ocsp(&server, &pki);
    server.route(OCSP_INT, Reply::Status(500));
    server.route(
        CRL_INT,
        Reply::Body(revocation::current_crl(&pki.intermediate, &[]).unwrap()),
    );
    let cache = online();
    assert_eq!(prefetch_and_check(&cache, &pki, now()).await, Ok(()));
    assert_eq!((server.hits(OCSP_INT), server.hits(CRL_INT)), (1, 1));
    // The CRL is held: no OCSP retry while it is fresh.
    assert_eq!(prefetch_and_check(&cache, &pki, now() + HOUR).await, Ok(()));
    assert_eq!((server.hits(OCSP_INT), server.hits(CRL_INT)), (1, 1));

    // A CRL that lists the leaf.
    let server = Server::start().await;
    let pki = Pki::new(&server.base, Endpoints::Both).unwrap();
    serve_good_ocsp(&server, &pki);
    server.route(OCSP_INT, Reply::Body(b"not an OCSP response".to_vec()));
    server.route(
        CRL_INT,
        Reply::Body(revocation::current_crl(&pki.intermediate, &[Entry::revoked(3)]).unwrap()),
    );
    let err = prefetch_and_check(&online(), &pki, now())
        .await
        .unwrap_err();
    assert!(matches!(
        *err.status,
        RevocationStatus::Revoked {
            method: check::Method::Crl,
            ..
        }
    ));
}

#[tokio::test]
async fn responder_and_crl_errors_make_the_status_unknown_and_say_why() {
    let server = Server::start().await;
    let pki = Pki::new(&server.base, Endpoints::Both).unwrap();
    serve_good_ocsp(&server, &pki);
    server.route(OCSP_INT, Reply::Status(500));
    server.route(CRL_INT, Reply::Status(503));
    let err = prefetch_and_check(&online(), &pki, now())
        .await
        .unwrap_err();
    let text = err.to_string();
    let (ocsp, crl) = leaf_unknown(err);
    assert_eq!(
        ocsp,
        Some(RevocationError::Unavailable {
            url: revocation::ocsp_url(&server.base, "intermediate"),
            why: FetchFailure::Status { status: 500 }
        })
    );
    assert_eq!(
        crl,
        Some(RevocationError::Unavailable {
            url: revocation::crl_url(&server.base, "intermediate"),
            why: FetchFailure::Status { status: 503 }
        })
    );
    assert!(
        text.contains("HTTP 500") && text.contains("HTTP 503"),
        "{text}"
    );
}

#[tokio::test]
async fn unusable_ocsp_responses_are_not_kept() {
    let server = Server::start().await;
    let pki = Pki::new(&server.base, Endpoints::OcspOnly).unwrap();
    serve_good_ocsp(&server, &pki);
    let url = revocation::ocsp_url(&server.base, "intermediate");
    let cases: Vec<(Vec<u8>, RevocationError)> = vec![
        (
            b"garbage".to_vec(),
            RevocationError::Malformed {
                what: "OCSP response",
            },
        ),
        (
            {
                let mut s = OcspSpec::good(&pki.leaf, &pki.intermediate);
                s.this_update = now() - 3 * DAY;
                s.next_update = Some(now() - DAY);
                s.der().unwrap()
            },
            RevocationError::Expired {
                what: "OCSP response",
                next_update: now() - DAY,
                at: now(),
            },
        ),
        (
            {
                let mut s = OcspSpec::good(&pki.leaf, &pki.intermediate);
                s.signer = &pki.root;
                s.der().unwrap()
            },
            RevocationError::UnauthorizedSigner,
        ),
        (
            {
                let mut s = OcspSpec::good(&pki.leaf, &pki.intermediate);
                s.status = Status::Unknown;
                s.der().unwrap()
            },
            RevocationError::CertStatusUnknown,
        ),
    ];
    for (body, expected) in cases {
        server.route(OCSP_INT, Reply::Body(body));
        let cache = online();
        let err = prefetch_and_check(&cache, &pki, now()).await.unwrap_err();
        let (ocsp, crl) = leaf_unknown(err);
        assert_eq!(ocsp, Some(unusable(url.clone(), expected)));
        assert_eq!(crl, None);
        // Nothing was kept: the next prefetch asks again.
        let before = server.hits(OCSP_INT);
        let _ = prefetch_and_check(&cache, &pki, now()).await;
        assert_eq!(server.hits(OCSP_INT), before + 1);
    }
}

#[tokio::test]
async fn unreachable_responder() {
    // A port nothing listens on.
    let base = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let pki = Pki::new(&base, Endpoints::Both).unwrap();
    let RevocationStatus::Unknown { ocsp, crl } = leaf_status(&online(), &pki).await else {
        panic!("not unknown")
    };
    assert_eq!(
        ocsp,
        Some(RevocationError::Unavailable {
            url: revocation::ocsp_url(&base, "intermediate"),
            why: FetchFailure::Transport
        })
    );
    assert!(matches!(
        crl,
        Some(RevocationError::Unavailable {
            why: FetchFailure::Transport,
            ..
        })
    ));
}

#[tokio::test]
async fn a_silent_responder_times_out_and_the_crl_answers() {
    let server = Server::start().await;
    let pki = Pki::new(&server.base, Endpoints::Both).unwrap();
    serve_good_ocsp(&server, &pki);
    server.route(OCSP_INT, Reply::Hang);
    server.route(
        CRL_INT,
        Reply::Body(revocation::current_crl(&pki.intermediate, &[]).unwrap()),
    );
    let cache = RevocationCache::new(&RevocationConfig {
        ocsp_timeout_ms: 100,
        ..RevocationConfig::default()
    })
    .unwrap();
    assert_eq!(prefetch_and_check(&cache, &pki, now()).await, Ok(()));
    assert_eq!(
        cache.fetch_failure(&revocation::ocsp_url(&server.base, "intermediate")),
        Some(FetchFailure::Timeout {
            timeout: Duration::from_millis(100)
        })
    );
}

#[tokio::test]
async fn the_pull_deadline_bounds_the_prefetch() {
    let server = Server::start().await;
    let pki = Pki::new(&server.base, Endpoints::OcspOnly).unwrap();
    server.route(OCSP_INT, Reply::Hang);
    server.route(OCSP_ROOT, Reply::Hang);
    let cache = online();
    let err = cache
        .prefetch(
            &needed(&pki.chain()),
            now(),
            Deadline::after(Duration::from_millis(100)),
        )
        .await
        .unwrap_err();
    assert!(err.is_deadline());
    // The deadline was this pull's, not the responder's fault: not remembered.
    let url = revocation::ocsp_url(&server.base, "intermediate");
    assert_eq!(cache.fetch_failure(&url), None);
}

#[tokio::test]
async fn bodies_over_the_cap_are_refused() {
    let server = Server::start().await;
    let pki = Pki::new(&server.base, Endpoints::Both).unwrap();
    serve_good_ocsp(&server, &pki);
    server.route(
        CRL_INT,
        Reply::Body(revocation::current_crl(&pki.intermediate, &[]).unwrap()),
    );
    server.route(
        CRL_ROOT,
        Reply::Body(revocation::current_crl(&pki.root, &[]).unwrap()),
    );
    let cache = RevocationCache::new(&RevocationConfig {
        max_ocsp_bytes: 64,
        max_crl_bytes: 64,
        ..RevocationConfig::default()
    })
    .unwrap();
    let err = prefetch_and_check(&cache, &pki, now()).await.unwrap_err();
    assert_eq!(err.index, 1);
    assert_eq!(
        cache.fetch_failure(&revocation::ocsp_url(&server.base, "intermediate")),
        Some(FetchFailure::TooLarge { limit: 64 })
    );
    assert_eq!(
        cache.fetch_failure(&revocation::crl_url(&server.base, "intermediate")),
        Some(FetchFailure::TooLarge { limit: 64 })
    );
}

#[tokio::test]
async fn crl_redirects_are_followed_a_few_times() {
    let server = Server::start().await;
    let pki = Pki::new(&server.base, Endpoints::CrlOnly).unwrap();
    server.route(
        CRL_INT,
        Reply::Redirect(format!("{}/mirror/intermediate.crl", server.base)),
    );
    server.route(
        "/mirror/intermediate.crl",
        Reply::Body(revocation::current_crl(&pki.intermediate, &[]).unwrap()),
    );
    // A relative Location.
    server.route(CRL_ROOT, Reply::Redirect("/mirror/root.crl".to_owned()));
    server.route(
        "/mirror/root.crl",
        Reply::Body(revocation::current_crl(&pki.root, &[]).unwrap()),
    );
    assert_eq!(prefetch_and_check(&online(), &pki, now()).await, Ok(()));
    assert_eq!(server.hits("/mirror/intermediate.crl"), 1);
    assert_eq!(server.hits("/mirror/root.crl"), 1);

    // A loop ends.
    server.route(
        CRL_INT,
        Reply::Redirect(format!("{}{CRL_INT}", server.base)),
    );
    let cache = online();
    let _ = prefetch_and_check(&cache, &pki, now()).await;
    assert_eq!(
        cache.fetch_failure(&revocation::crl_url(&server.base, "intermediate")),
        Some(FetchFailure::Redirects)
    );
}

#[tokio::test]
async fn ocsp_post_and_get() {
    let server = Server::start().await;
    let pki = Pki::new(&server.base, Endpoints::OcspOnly).unwrap();
    serve_good_ocsp(&server, &pki);
    let requests = needed(&pki.chain());
    let request = requests[0].ocsp_request.as_ref().unwrap();
    let (method, encoded) = fetch::ocsp_method(request);
    assert_eq!(method, fetch::OcspMethod::Get);
    let client = fetch::client();
    let url = &requests[0].ocsp_urls()[0];
    for method in [fetch::OcspMethod::Get, fetch::OcspMethod::Post] {
        let body = fetch::ocsp_with(
            &client,
            url,
            request,
            method,
            &encoded,
            1 << 16,
            Duration::from_secs(5),
            deadline(),
        )
        .await
        .unwrap();
        assert!(OcspResponse::from_der(&body).is_ok());
    }
    assert_eq!(server.state.lock().unwrap().posts, 1);
    // A long request goes by POST.
    assert_eq!(fetch::ocsp_method(&[0u8; 300]).0, fetch::OcspMethod::Post);
}

#[tokio::test]
async fn only_http_urls_are_fetched() {
    let pki = Pki::new("https://revocation.test", Endpoints::OcspOnly).unwrap();
    let RevocationStatus::Unknown { ocsp, .. } = leaf_status(&online(), &pki).await else {
        panic!("not unknown")
    };
    let url = revocation::ocsp_url("https://revocation.test", "intermediate");
    assert_eq!(
        ocsp,
        Some(unusable(
            url.clone(),
            RevocationError::UnsupportedUrl { url }
        ))
    );
}

fn write_crl_dir(pki: &Pki, leaf_entries: &[Entry]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let int = revocation::current_crl(&pki.intermediate, leaf_entries).unwrap();
    std::fs::write(dir.path().join("intermediate.crl"), int).unwrap();
    let root = revocation::current_crl(&pki.root, &[]).unwrap();
    let pem = der::pem::encode_string("X509 CRL", der::pem::LineEnding::LF, &root).unwrap();
    std::fs::write(dir.path().join("root.pem"), pem).unwrap();
    std::fs::create_dir(dir.path().join("ignored-subdir")).unwrap();
    dir
}

fn offline(dir: &Path) -> RevocationCache {
    RevocationCache::new(&RevocationConfig {
        mode: Mode::Offline,
        crl_dir: Some(dir.to_owned()),
        ..RevocationConfig::default()
    })
    .unwrap()
}

#[tokio::test]
async fn offline_mode_uses_only_the_crl_directory() {
    let server = Server::start().await;
    let pki = Pki::new(&server.base, Endpoints::Both).unwrap();
    serve_good_ocsp(&server, &pki);
    let dir = write_crl_dir(&pki, &[]);
    let cache = offline(dir.path());
    assert!(!cache.needs_fetch(&needed(&pki.chain()), now()));
    assert_eq!(prefetch_and_check(&cache, &pki, now()).await, Ok(()));
    assert_eq!(server.total_hits(), 0);

    let dir = write_crl_dir(&pki, &[Entry::revoked(3)]);
    let cache = offline(dir.path());
    let err = prefetch_and_check(&cache, &pki, now()).await.unwrap_err();
    assert!(matches!(*err.status, RevocationStatus::Revoked { .. }));

    // Past the CRLs' nextUpdate: unknown, until the operator refreshes them.
    let err = prefetch_and_check(&cache, &pki, now() + 30 * DAY)
        .await
        .unwrap_err();
    assert!(matches!(*err.status, RevocationStatus::Revoked { .. }));
    let dir = write_crl_dir(&pki, &[]);
    let cache = offline(dir.path());
    let err = prefetch_and_check(&cache, &pki, now() + 30 * DAY)
        .await
        .unwrap_err();
    let (ocsp, crl) = match *err.status {
        RevocationStatus::Unknown { ocsp, crl } => (ocsp, crl),
        other => panic!("{other:?}"),
    };
    assert!(matches!(
        ocsp,
        Some(RevocationError::Unavailable {
            why: FetchFailure::Offline,
            ..
        })
    ));
    assert!(matches!(crl, Some(RevocationError::Expired { .. })));
    assert_eq!(server.total_hits(), 0);

    // Another CA with the same names: the directory's CRLs do not verify for it.
    let other = Pki::new(&server.base, Endpoints::CrlOnly).unwrap();
    let err = prefetch_and_check(&cache, &other, now()).await.unwrap_err();
    assert!(matches!(
        *err.status,
        RevocationStatus::Unknown {
            crl: Some(RevocationError::BadSignature { .. }),
            ..
        }
    ));
    // A certificate whose issuer has no CRL in the directory at all.
    let empty = tempfile::tempdir().unwrap();
    let err = prefetch_and_check(&offline(empty.path()), &pki, now())
        .await
        .unwrap_err();
    assert!(matches!(
        *err.status,
        RevocationStatus::Unknown {
            crl: Some(RevocationError::Unavailable {
                why: FetchFailure::Offline,
                ..
            }),
            ..
        }
    ));
}

#[tokio::test]
async fn online_mode_uses_a_fresh_preloaded_crl_without_fetching() {
    let server = Server::start().await;
    let pki = Pki::new(&server.base, Endpoints::CrlOnly).unwrap();
    let dir = write_crl_dir(&pki, &[]);
    let cache = RevocationCache::new(&RevocationConfig {
        crl_dir: Some(dir.path().to_owned()),
        ..RevocationConfig::default()
    })
    .unwrap();
    assert_eq!(prefetch_and_check(&cache, &pki, now()).await, Ok(()));
    assert_eq!(server.total_hits(), 0);
}

#[test]
fn crl_directory_errors() {
    assert!(matches!(
        RevocationCache::new(&RevocationConfig {
            mode: Mode::Offline,
            ..RevocationConfig::default()
        }),
        Err(Error::OfflineWithoutCrlDir)
    ));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.crl"), b"not a CRL").unwrap();
    let cfg = RevocationConfig {
        crl_dir: Some(dir.path().to_owned()),
        ..RevocationConfig::default()
    };
    assert!(matches!(
        RevocationCache::new(&cfg),
        Err(Error::BadCrlFile { .. })
    ));
    std::fs::write(dir.path().join("bad.crl"), vec![0u8; 100]).unwrap();
    assert!(matches!(
        RevocationCache::new(&RevocationConfig {
            max_crl_bytes: 10,
            ..cfg.clone()
        }),
        Err(Error::FileTooLarge { limit: 10, .. })
    ));
    assert!(matches!(
        RevocationCache::new(&RevocationConfig {
            crl_dir: Some(dir.path().join("missing")),
            ..RevocationConfig::default()
        }),
        Err(Error::ReadDir { .. })
    ));
}

#[test]
fn config_keys_and_defaults() {
    let cfg: RevocationConfig = toml::from_str("").unwrap();
    assert_eq!(cfg, RevocationConfig::default());
    assert_eq!(cfg.mode, Mode::Online);
    assert_eq!((cfg.ocsp_timeout_ms, cfg.crl_timeout_ms), (2_000, 5_000));
    assert_eq!(
        (cfg.max_ocsp_bytes, cfg.max_crl_bytes),
        (20_480, 33_554_432)
    );
    let cfg: RevocationConfig = toml::from_str(
        "mode = \"offline\"\ncrl_dir = \"/var/lib/pullgate/crls\"\nocsp_timeout_ms = 500\ncrl_timeout_ms = 900\nmax_ocsp_bytes = 1\nmax_crl_bytes = 2\n",
    )
    .unwrap();
    assert_eq!(cfg.mode, Mode::Offline);
    assert_eq!(
        cfg.crl_dir.as_deref(),
        Some(Path::new("/var/lib/pullgate/crls"))
    );
    assert!(toml::from_str::<RevocationConfig>("mode = \"sometimes\"").is_err());
    assert!(toml::from_str::<RevocationConfig>("ocsp_timeout = 1").is_err());
}

#[tokio::test]
async fn concurrent_prefetches_of_one_chain_fetch_once() {
    let server = Server::start().await;
    let pki = Pki::new(&server.base, Endpoints::OcspOnly).unwrap();
    serve_good_ocsp(&server, &pki);
    let cache = online();
    let requests = needed(&pki.chain());
    let (a, b, c) = tokio::join!(
        cache.prefetch(&requests, now(), deadline()),
        cache.prefetch(&requests, now(), deadline()),
        cache.prefetch(&requests, now(), deadline()),
    );
    assert!(a.is_ok() && b.is_ok() && c.is_ok());
    assert_eq!((server.hits(OCSP_INT), server.hits(OCSP_ROOT)), (1, 1));
    assert!(cache.inner.inflight.lock().unwrap().is_empty());
}

#[tokio::test]
async fn check_fetches_then_checks_on_the_blocking_pool() {
    let server = Server::start().await;
    let pki = Pki::new(&server.base, Endpoints::Both).unwrap();
    serve_good_ocsp(&server, &pki);
    let mut revoked = OcspSpec::good(&pki.leaf, &pki.intermediate);
    revoked.status = Status::Revoked {
        at: now() - DAY,
        invalidity: Some(now() - 2 * DAY),
    };
    server.route(OCSP_INT, Reply::Body(revoked.der().unwrap()));
    let cache = online();
    let requests = needed(&pki.chain());
    // Signed (authentically) before the key was compromised: still valid.
    let ok = cache
        .check(requests.clone(), Some(now() - 3 * DAY), now(), deadline())
        .await
        .unwrap();
    assert_eq!(ok, Ok(()));
    assert_eq!(server.total_hits(), 2);
    // No authentic signing time: revoked; answered from memory.
    let err = cache
        .check(requests, None, now(), deadline())
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(*err.status, RevocationStatus::Revoked { .. }));
    assert_eq!(server.total_hits(), 2);
}

#[tokio::test]
async fn crls_dropped_into_the_directory_are_used_after_a_reload() {
    let pki = Pki::new("http://revocation.test", Endpoints::CrlOnly).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache = offline(dir.path());
    assert!(prefetch_and_check(&cache, &pki, now()).await.is_err());
    let filled = write_crl_dir(&pki, &[]);
    for name in ["intermediate.crl", "root.pem"] {
        std::fs::copy(filled.path().join(name), dir.path().join(name)).unwrap();
    }
    assert_eq!(cache.reload_crl_dir().unwrap(), 2);
    assert_eq!(prefetch_and_check(&cache, &pki, now()).await, Ok(()));
    // A bad file: the reload fails and the CRLs held before stay.
    std::fs::write(dir.path().join("broken.crl"), b"junk").unwrap();
    assert!(matches!(
        cache.reload_crl_dir(),
        Err(Error::BadCrlFile { .. })
    ));
    assert_eq!(prefetch_and_check(&cache, &pki, now()).await, Ok(()));
}

#[tokio::test]
async fn an_allow_lives_no_longer_than_the_ocsp_responses_it_read() {
    let server = Server::start().await;
    let pki = Pki::new(&server.base, Endpoints::OcspOnly).unwrap();
    let mut leaf = OcspSpec::good(&pki.leaf, &pki.intermediate);
    leaf.next_update = Some(now() + 5 * HOUR);
    let mut int = OcspSpec::good(&pki.intermediate, &pki.root);
    int.next_update = Some(now() + 3 * HOUR);
    server.route(OCSP_INT, Reply::Body(leaf.der().unwrap()));
    server.route(OCSP_ROOT, Reply::Body(int.der().unwrap()));
    let cache = online();
    let requests = needed(&pki.chain());
    // Nothing held yet: no bound from data that was not read.
    assert_eq!(cache.valid_until(&requests, now()), None);
    assert_eq!(prefetch_and_check(&cache, &pki, now()).await, Ok(()));
    // The earliest nextUpdate of the two responses read.
    assert_eq!(cache.valid_until(&requests, now()), Some(now() + 3 * HOUR));
    // A response past its nextUpdate cannot have vouched: no bound from it.
    assert_eq!(
        cache.valid_until(&requests, now() + 4 * HOUR),
        Some(now() + 5 * HOUR)
    );
    assert_eq!(cache.valid_until(&requests, now() + 6 * HOUR), None);
}

#[tokio::test]
async fn an_allow_lives_no_longer_than_the_crls_it_read() {
    let server = Server::start().await;
    let pki = Pki::new(&server.base, Endpoints::CrlOnly).unwrap();
    let dir = write_crl_dir(&pki, &[]);
    let cache = offline(dir.path());
    let requests = needed(&pki.chain());
    assert_eq!(prefetch_and_check(&cache, &pki, now()).await, Ok(()));
    let until = cache.valid_until(&requests, now()).unwrap();
    let crl = RevocationData::crl(&cache, &requests[0].crl_urls()[0], &requests[0].issuer).unwrap();
    assert!(until > now());
    assert!(until <= crl.next_update().unwrap());
}

/// A CRL of most of the cache's bytes is kept (the cache is one shard:
/// `quick_cache` splits the capacity among shards and drops an entry larger
/// than its shard's share), and the cache holds no more than
/// `MAX_CRL_CACHE_BYTES` of CRLs.
#[test]
fn the_crl_cache_keeps_a_large_crl_within_its_byte_bound() {
    let cache = crl_cache::<()>();
    let large = u32::try_from(MAX_CRL_CACHE_BYTES * 3 / 4).unwrap();
    cache.insert("http://crl.example/large.crl".to_owned(), (large, ()));
    assert!(cache.get("http://crl.example/large.crl").is_some());
    let largest = u32::try_from(RevocationConfig::default().max_crl_bytes).unwrap();
    for i in 0..20 {
        let url = format!("http://crl.example/{i}.crl");
        cache.insert(url.clone(), (largest, ()));
        assert!(cache.get(url.as_str()).is_some(), "CRL {i} kept");
        assert!(cache.weight() <= MAX_CRL_CACHE_BYTES);
    }
    assert!(cache.len() < 20);
}
