//! An in-process OCI distribution 1.1 registry with fault injection, for
//! tests and the benchmark.
//!
//! A hyper 1 HTTP/1.1 server on `127.0.0.1:0`, in memory, stopped when the
//! [`OciRegistry`] is dropped. It serves enough of the distribution spec for
//! containerd 1.6 to pull from it and for pullgate to discover signatures:
//!
//! - `GET /v2/`
//! - `HEAD|GET /v2/<name>/blobs/<digest>`
//! - `POST /v2/<name>/blobs/uploads/` (monolithic with `?digest=`, or a
//!   session continued with `PATCH` and closed with `PUT <location>?digest=`)
//! - `PUT|GET|HEAD /v2/<name>/manifests/<tag-or-digest>` (`Docker-Content-Digest`,
//!   `Content-Type` = the stored media type, `OCI-Subject` on a PUT with a subject)
//! - `GET /v2/<name>/referrers/<digest>?artifactType=…`: an image index of the
//!   manifests whose `subject` is that digest, `OCI-Filters-Applied:
//!   artifactType` when filtered, paginated with `Link: <…>; rel="next"` when
//!   a page size is set.
//! - `GET|POST /token` in token mode.
//!
//! Knobs: added latency, request [`Counts`] by [`RequestKind`], the number
//! of sequential waves of requests ([`OciRegistry::waves`]), failing the
//! next N requests of a kind, going down (connections closed as soon as they
//! are accepted), oversized or wrong bodies for a digest, hanging a kind of
//! request forever, disabling the referrers API (404) or its filter,
//! bearer-token or basic authentication (with the token realm movable, or
//! a challenge that no token answers), synthetic referrers (thousands of
//! index entries without manifests behind them), and a record of the
//! `Authorization` header of every request ([`Seen`]).
//!
//! [`Fault`]s, set per [`FaultTarget`] (a kind of request, or the manifest or
//! blob of one digest) until cleared: an error status with extra headers
//! (`Retry-After`), slow headers, a connection reset mid-body (TCP RST), a
//! body trickled a byte at a time, a `Content-Length` longer than the body,
//! a truncated body, a replaced body, a redirect to itself, referrers pages
//! without end ([`referrers_page`] makes one). [`GarbageListener`]
//! answers a TLS ClientHello with bytes that are not TLS.
//! [`OciRegistry::start_on`] binds another loopback address, so two
//! registries are two hosts (`127.0.0.1:<p>` and `127.0.0.2:<q>`).
//!
//! Blobs are shared by all repositories; manifests and tags are per repository.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::future::Future as _;
use std::net::SocketAddr;
use std::os::fd::{AsFd as _, OwnedFd};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Empty, Full, Limited};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// OCI image index media type (referrers responses, tag-schema indexes).
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image manifest media type.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI artifact manifest media type (image-spec 1.1.0-rc).
pub const OCI_ARTIFACT_MANIFEST: &str = "application/vnd.oci.artifact.manifest.v1+json";
/// The `service` of token challenges.
pub const TOKEN_SERVICE: &str = "oci-registry-test";

/// Largest request body accepted (uploads, manifest PUTs).
const MAX_REQUEST_BODY: usize = 256 << 20;

/// The kinds of request counted, failed or hung.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestKind {
    /// `GET /v2/`.
    Ping,
    /// `HEAD /v2/<name>/manifests/<ref>`: tag resolution.
    ResolveHead,
    /// `GET /v2/<name>/manifests/<ref>`.
    ManifestGet,
    /// `PUT /v2/<name>/manifests/<ref>`.
    ManifestPut,
    /// `HEAD /v2/<name>/blobs/<digest>`.
    BlobHead,
    /// `GET /v2/<name>/blobs/<digest>`.
    BlobGet,
    /// `POST|PATCH|PUT /v2/<name>/blobs/uploads/…`.
    Upload,
    /// `GET /v2/<name>/referrers/<digest>`.
    Referrers,
    /// `GET|POST /token`.
    Token,
    /// Anything else.
    Other,
}

/// Requests received, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// `GET /v2/`.
    pub ping: u64,
    /// `HEAD` of a manifest.
    pub resolve_head: u64,
    /// `GET` of a manifest.
    pub manifest_get: u64,
    /// `PUT` of a manifest.
    pub manifest_put: u64,
    /// `HEAD` of a blob.
    pub blob_head: u64,
    /// `GET` of a blob.
    pub blob_get: u64,
    /// Upload requests.
    pub uploads: u64,
    /// Referrers API requests.
    pub referrers: u64,
    /// Token endpoint requests.
    pub token: u64,
    /// Anything else.
    pub other: u64,
}

impl Counts {
    /// The count of one kind.
    pub fn get(&self, kind: RequestKind) -> u64 {
        match kind {
            RequestKind::Ping => self.ping,
            RequestKind::ResolveHead => self.resolve_head,
            RequestKind::ManifestGet => self.manifest_get,
            RequestKind::ManifestPut => self.manifest_put,
            RequestKind::BlobHead => self.blob_head,
            RequestKind::BlobGet => self.blob_get,
            RequestKind::Upload => self.uploads,
            RequestKind::Referrers => self.referrers,
            RequestKind::Token => self.token,
            RequestKind::Other => self.other,
        }
    }

    /// All requests.
    pub fn total(&self) -> u64 {
        self.ping
            + self.resolve_head
            + self.manifest_get
            + self.manifest_put
            + self.blob_head
            + self.blob_get
            + self.uploads
            + self.referrers
            + self.token
            + self.other
    }

    fn bump(&mut self, kind: RequestKind) {
        let c = match kind {
            RequestKind::Ping => &mut self.ping,
            RequestKind::ResolveHead => &mut self.resolve_head,
            RequestKind::ManifestGet => &mut self.manifest_get,
            RequestKind::ManifestPut => &mut self.manifest_put,
            RequestKind::BlobHead => &mut self.blob_head,
            RequestKind::BlobGet => &mut self.blob_get,
            RequestKind::Upload => &mut self.uploads,
            RequestKind::Referrers => &mut self.referrers,
            RequestKind::Token => &mut self.token,
            RequestKind::Other => &mut self.other,
        };
        *c += 1;
    }
}

/// Authentication the registry demands.
#[derive(Clone, PartialEq, Eq)]
pub enum AuthMode {
    /// None.
    Open,
    /// `401` with `WWW-Authenticate: Basic`, until these credentials are sent.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: String,
    },
    /// `401` with `WWW-Authenticate: Bearer realm=".../token"`; `/token`
    /// issues tokens, demanding basic credentials when `basic` is set and
    /// exchanging `refresh_token` in a `POST` when set.
    Token {
        /// Credentials `/token` requires, if any.
        basic: Option<(String, String)>,
        /// Refresh token accepted by `POST /token`, if any.
        refresh_token: Option<String>,
        /// `expires_in` of issued tokens, in seconds.
        expires_in: u64,
    },
    /// `401` with `WWW-Authenticate: Bearer realm=".../token"` to every
    /// request, whatever it carries; `/token` issues tokens to anyone, and
    /// none of them is ever accepted (a 401 loop).
    EndlessChallenge,
}

impl fmt::Debug for AuthMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Open => f.write_str("Open"),
            Self::Basic { .. } => f.write_str("Basic"),
            Self::Token { .. } => f.write_str("Token"),
            Self::EndlessChallenge => f.write_str("EndlessChallenge"),
        }
    }
}

/// What to serve instead of the stored content of a digest.
#[derive(Debug, Clone)]
enum BodyFault {
    /// These bytes, with or without a `Content-Length`.
    Replace { bytes: Bytes, declare_length: bool },
}

/// What a [`Fault`] applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FaultTarget {
    /// Every request of this kind.
    Kind(RequestKind),
    /// `GET`/`HEAD` of the manifest or blob with this digest (by digest, in
    /// any repository), and the `/storage/` URL a blob redirect points at.
    Digest(String),
}

/// A misbehaviour in the answers to a [`FaultTarget`], until cleared.
#[derive(Debug, Clone)]
pub enum Fault {
    /// `status` with an error body and these extra headers (e.g. `Retry-After`).
    Status {
        /// The status code.
        status: u16,
        /// Extra response headers.
        headers: Vec<(&'static str, String)>,
    },
    /// No byte of the answer before this long (slow headers).
    DelayHeaders(Duration),
    /// The headers and the first `after` bytes of the body, then a TCP RST
    /// (`SO_LINGER` 0, then close).
    ResetMidBody {
        /// Body bytes sent before the reset.
        after: usize,
    },
    /// The body one byte every `interval`.
    SlowBody {
        /// Pause before each byte.
        interval: Duration,
    },
    /// The body `chunk` bytes every `interval` (a slow link).
    Throttle {
        /// Bytes sent after each pause.
        chunk: usize,
        /// Pause before each chunk.
        interval: Duration,
    },
    /// `Content-Length` declares `extra` more bytes than the body has; the
    /// connection closes after the body.
    LongContentLength {
        /// Bytes declared and never sent.
        extra: u64,
    },
    /// The first half of the body, with a `Content-Length` that matches it.
    Truncate,
    /// These bytes as the body, with this `Content-Type` (else the real one).
    Body {
        /// The body.
        bytes: Bytes,
        /// The `Content-Type`, if it should change.
        content_type: Option<String>,
    },
    /// `307 Temporary Redirect` to the URL asked for.
    RedirectLoop,
    /// For referrers requests: `page` as every page of the answer, each
    /// with a `Link` to a next one, without end (a hostile registry).
    EndlessPages {
        /// The body of every page (an image index).
        page: Bytes,
    },
}

#[derive(Debug, Clone)]
struct StoredManifest {
    media_type: String,
    bytes: Bytes,
    subject: Option<String>,
    artifact_type: Option<String>,
    annotations: Option<Value>,
    seq: u64,
}

#[derive(Debug)]
struct State {
    blobs: HashMap<String, Bytes>,
    /// (repository, digest) → manifest.
    manifests: HashMap<(String, String), StoredManifest>,
    /// (repository, tag) → digest.
    tags: HashMap<(String, String), String>,
    uploads: HashMap<u64, Vec<u8>>,
    next_id: u64,
    counts: Counts,
    latency: Duration,
    fail_next: HashMap<RequestKind, (u32, StatusCode)>,
    hang: HashSet<RequestKind>,
    down: bool,
    referrers_api: bool,
    referrers_filter: bool,
    page_size: Option<usize>,
    faults: HashMap<String, BodyFault>,
    auth: AuthMode,
    issued_tokens: HashSet<String>,
    blob_redirect: bool,
    link_origin: Option<String>,
    in_flight: usize,
    max_in_flight: usize,
    /// The deepest wave among the requests answered so far (see [`OciRegistry::waves`]).
    answered_depth: u64,
    /// The deepest wave of any request received.
    max_depth: u64,
    /// `Authorization` of each request received, oldest first, at most [`MAX_SEEN`].
    seen: VecDeque<Seen>,
    /// Realm of `Bearer` challenges instead of this registry's `/token`.
    token_realm: Option<String>,
    fault_by_target: HashMap<FaultTarget, Fault>,
    /// (repository, subject) → extra referrers index entries, listed first.
    synthetic_referrers: HashMap<(String, String), Vec<Value>>,
}

/// Requests whose `Authorization` is remembered; older ones are dropped.
const MAX_SEEN: usize = 10_000;

/// One request as received: what it asked for and what it authenticated with.
#[derive(Clone, PartialEq, Eq)]
pub struct Seen {
    /// Its kind.
    pub kind: RequestKind,
    /// The path (no query).
    pub path: String,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    /// The `Range` header, if any.
    pub range: Option<String>,
}

impl fmt::Debug for Seen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Test output may name the scheme but not the credential.
        let scheme = self
            .authorization
            .as_deref()
            .map(|a| a.split(' ').next().unwrap_or_default());
        f.debug_struct("Seen")
            .field("kind", &self.kind)
            .field("path", &self.path)
            .field("authorization", &scheme)
            .finish()
    }
}

impl Default for State {
    fn default() -> Self {
        Self {
            blobs: HashMap::new(),
            manifests: HashMap::new(),
            tags: HashMap::new(),
            uploads: HashMap::new(),
            next_id: 1,
            counts: Counts::default(),
            latency: Duration::ZERO,
            fail_next: HashMap::new(),
            hang: HashSet::new(),
            down: false,
            referrers_api: true,
            referrers_filter: true,
            page_size: None,
            faults: HashMap::new(),
            auth: AuthMode::Open,
            issued_tokens: HashSet::new(),
            blob_redirect: false,
            link_origin: None,
            in_flight: 0,
            max_in_flight: 0,
            answered_depth: 0,
            max_depth: 0,
            seen: VecDeque::new(),
            token_realm: None,
            fault_by_target: HashMap::new(),
            synthetic_referrers: HashMap::new(),
        }
    }
}

type Shared = Arc<Mutex<State>>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;
type ResBody = BoxBody<Bytes, BoxError>;

/// The registry. Dropping it stops the server and closes its connections.
pub struct OciRegistry {
    addr: SocketAddr,
    state: Shared,
    task: JoinHandle<()>,
}

impl fmt::Debug for OciRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OciRegistry")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for OciRegistry {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `sha256:<hex>` of `bytes`.
pub use pullgate_testkit::sha256_digest;

fn lock(state: &Shared) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl OciRegistry {
    /// Starts the registry on `127.0.0.1:0`.
    ///
    /// # Panics
    /// When no loopback port can be bound (the test cannot run then).
    pub async fn start() -> Self {
        Self::start_on(std::net::Ipv4Addr::LOCALHOST).await
    }

    /// Starts the registry on `<ip>:0`, another loopback address (e.g.
    /// `127.0.0.2`) standing for another registry host.
    ///
    /// # Panics
    /// When `ip` is not loopback (tests target loopback only), or no port
    /// can be bound on it.
    pub async fn start_on(ip: std::net::Ipv4Addr) -> Self {
        assert!(ip.is_loopback(), "test registries listen on loopback only");
        #[allow(clippy::expect_used)]
        // reason: test harness; without a loopback port no test can run
        let listener = TcpListener::bind((ip, 0))
            .await
            .expect("bind a loopback port for the test registry");
        #[allow(clippy::expect_used)] // reason: as above, a bound socket has an address
        let addr = listener
            .local_addr()
            .expect("local address of the test registry");
        let state: Shared = Arc::default();
        let task = tokio::spawn(serve(listener, addr, state.clone()));
        Self { addr, state, task }
    }

    /// The address served.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `127.0.0.1:<port>`, the registry host of image references.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    fn st(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    // ---- content -------------------------------------------------------

    /// Stores a blob; returns its digest.
    pub fn put_blob(&self, _name: &str, bytes: impl Into<Bytes>) -> String {
        let bytes = bytes.into();
        let d = sha256_digest(&bytes);
        self.st().blobs.insert(d.clone(), bytes);
        d
    }

    /// Deletes a blob from storage, as a publisher deleting it would: every
    /// repository's `GET`/`HEAD` of it answers 404 afterwards.
    pub fn remove_blob(&self, digest: &str) {
        self.st().blobs.remove(digest);
    }

    /// Stores a manifest under `reference` (a tag, or its own digest) with
    /// `media_type`; returns its digest.
    pub fn put_manifest(
        &self,
        name: &str,
        reference: &str,
        media_type: &str,
        bytes: impl Into<Bytes>,
    ) -> String {
        store_manifest(&mut self.st(), name, reference, media_type, bytes.into())
    }

    /// Points `tag` at `digest` (moving it if it exists).
    pub fn tag(&self, name: &str, tag: &str, digest: &str) {
        self.st()
            .tags
            .insert((name.to_owned(), tag.to_owned()), digest.to_owned());
    }

    /// The digest `tag` points at.
    pub fn tag_digest(&self, name: &str, tag: &str) -> Option<String> {
        self.st()
            .tags
            .get(&(name.to_owned(), tag.to_owned()))
            .cloned()
    }

    /// Writes the referrers tag-schema index (`sha256-<hex>`) of `subject`
    /// from the manifests stored so far, as a client pushing to a registry
    /// without the referrers API would; returns the index digest.
    pub fn put_referrers_tag_index(&self, name: &str, subject: &str) -> String {
        let mut st = self.st();
        let index = referrers_index(&st, name, subject, None);
        let bytes = Bytes::from(index.to_string());
        let tag = subject.replacen(':', "-", 1);
        store_manifest(&mut st, name, &tag, OCI_INDEX, bytes)
    }

    // ---- knobs ---------------------------------------------------------

    /// Requests received so far.
    pub fn counts(&self) -> Counts {
        self.st().counts
    }

    /// Zeroes the counts (and the in-flight high-water mark and the waves).
    pub fn reset_counts(&self) {
        let mut st = self.st();
        st.counts = Counts::default();
        st.max_in_flight = st.in_flight;
        st.answered_depth = 0;
        st.max_depth = 0;
    }

    /// Sequential waves of requests since the last [`OciRegistry::reset_counts`]:
    /// a request received after another was answered is one wave deeper
    /// than it (its depth is one more than the deepest request answered
    /// before it arrived); requests sent together share a wave. With an
    /// added latency ([`OciRegistry::set_latency`]) well above the client's
    /// own time between requests, this counts the round trips a client
    /// waited for one after another, whatever the wall-clock time.
    pub fn waves(&self) -> u64 {
        self.st().max_depth
    }

    /// Most requests that were being answered at the same time.
    pub fn max_in_flight(&self) -> usize {
        self.st().max_in_flight
    }

    /// Added before every answer (simulated round-trip time).
    pub fn set_latency(&self, latency: Duration) {
        self.st().latency = latency;
    }

    /// The next `n` requests of `kind` get `status` (and an error body).
    pub fn fail_next(&self, kind: RequestKind, n: u32, status: u16) {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        self.st().fail_next.insert(kind, (n, status));
    }

    /// Requests of `kind` are never answered (until set back).
    pub fn set_hang(&self, kind: RequestKind, hang: bool) {
        let mut st = self.st();
        if hang {
            st.hang.insert(kind);
        } else {
            st.hang.remove(&kind);
        }
    }

    /// Down: new connections are closed as soon as they are accepted, and
    /// requests on open ones close their connection.
    pub fn set_down(&self, down: bool) {
        self.st().down = down;
    }

    /// With the referrers API off, `/referrers/` answers 404 (as
    /// docker-registry 2.8 does), so clients use the tag schema.
    pub fn set_referrers_api(&self, enabled: bool) {
        self.st().referrers_api = enabled;
    }

    /// With the filter off, `artifactType` is ignored and no
    /// `OCI-Filters-Applied` header is sent.
    pub fn set_referrers_filter(&self, enabled: bool) {
        self.st().referrers_filter = enabled;
    }

    /// Referrers per page; `None` for one page.
    pub fn set_referrers_page_size(&self, size: Option<usize>) {
        self.st().page_size = size.filter(|n| *n > 0);
    }

    /// `GET` of `digest` (manifest or blob) answers `total_len` bytes instead
    /// of the content, with a `Content-Length` only if `declare_length`.
    pub fn serve_oversized(&self, digest: &str, total_len: usize, declare_length: bool) {
        let bytes = Bytes::from(vec![b'x'; total_len]);
        self.st().faults.insert(
            digest.to_owned(),
            BodyFault::Replace {
                bytes,
                declare_length,
            },
        );
    }

    /// `GET` of `digest` answers `bytes` instead of the content.
    pub fn serve_wrong_body(&self, digest: &str, bytes: impl Into<Bytes>) {
        self.st().faults.insert(
            digest.to_owned(),
            BodyFault::Replace {
                bytes: bytes.into(),
                declare_length: true,
            },
        );
    }

    /// Serves `digest` faithfully again.
    pub fn clear_fault(&self, digest: &str) {
        self.st().faults.remove(digest);
    }

    /// Sets the authentication demanded.
    pub fn set_auth(&self, mode: AuthMode) {
        self.st().auth = mode;
    }

    /// Blob GETs answer `307` to `/storage/<digest>`, served without
    /// authentication, as registries backed by object storage do.
    pub fn set_blob_redirect(&self, redirect: bool) {
        self.st().blob_redirect = redirect;
    }

    /// Referrers `Link` targets become absolute URLs on `origin`
    /// (`http://host:port`); `None` for absolute paths.
    pub fn set_referrers_link_origin(&self, origin: Option<String>) {
        self.st().link_origin = origin;
    }

    /// Every request received so far (at most the last 10 000), with the
    /// `Authorization` it carried.
    pub fn seen(&self) -> Vec<Seen> {
        self.st().seen.iter().cloned().collect()
    }

    /// The `Authorization` headers received, in order (requests without one are left out).
    pub fn authorizations(&self) -> Vec<String> {
        self.st()
            .seen
            .iter()
            .filter_map(|s| s.authorization.clone())
            .collect()
    }

    /// Makes `Bearer` challenges name `realm` (e.g. a dead address, or
    /// another registry's `/token`) instead of this registry's `/token`;
    /// `None` restores it.
    pub fn set_token_realm(&self, realm: Option<String>) {
        self.st().token_realm = realm;
    }

    /// Issues a token as `/token` would, for a client that is handed one
    /// (a CRI `registry_token`).
    pub fn issue_token(&self) -> String {
        let mut st = self.st();
        let t = format!("token-{}", st.next_id);
        st.next_id += 1;
        st.issued_tokens.insert(t.clone());
        t
    }

    /// Forgets every issued token, so clients must fetch new ones.
    pub fn revoke_tokens(&self) {
        self.st().issued_tokens.clear();
    }

    /// Answers requests for `target` with `fault` until [`Self::clear_faults`]
    /// (replacing a fault set before for the same target).
    pub fn set_fault(&self, target: FaultTarget, fault: Fault) {
        self.st().fault_by_target.insert(target, fault);
    }

    /// Removes every [`Fault`].
    pub fn clear_faults(&self) {
        self.st().fault_by_target.clear();
    }

    /// Lists `entries` more referrers of `subject` in `name`, before the
    /// real ones: descriptors of `artifact_type` whose digests name no
    /// manifest (a `GET` of one answers 404). Returns their digests.
    pub fn add_synthetic_referrers(
        &self,
        name: &str,
        subject: &str,
        entries: usize,
        artifact_type: &str,
    ) -> Vec<String> {
        let mut digests = Vec::with_capacity(entries);
        let list: Vec<Value> = (0..entries)
            .map(|i| {
                let d = sha256_digest(format!("synthetic referrer {subject} {i}").as_bytes());
                digests.push(d.clone());
                json!({
                    "mediaType": OCI_MANIFEST,
                    "digest": d,
                    "size": 512,
                    "artifactType": artifact_type,
                })
            })
            .collect();
        self.st()
            .synthetic_referrers
            .entry((name.to_owned(), subject.to_owned()))
            .or_default()
            .extend(list);
        digests
    }
}

/// An image index of referrers of `artifact_type` (digests of no manifest)
/// as close to `bytes` long as fits, never longer: a page a hostile registry
/// might send.
pub fn referrers_page(bytes: usize, artifact_type: &str) -> Bytes {
    // `{"schemaVersion":2,"mediaType":"…index…","manifests":[]}`, with room to spare.
    const WRAPPER: usize = 128;
    let mut manifests = Vec::new();
    let mut len = WRAPPER;
    for i in 0u64.. {
        let entry = json!({
            "mediaType": OCI_MANIFEST,
            "digest": sha256_digest(&i.to_be_bytes()),
            "size": 512,
            "artifactType": artifact_type,
        });
        let entry_len = entry.to_string().len() + 1;
        if len + entry_len > bytes {
            break;
        }
        len += entry_len;
        manifests.push(entry);
    }
    Bytes::from(
        json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}).to_string(),
    )
}

/// A TCP listener on loopback that answers whatever a client sends first (a
/// TLS ClientHello) with bytes that are not TLS, then closes: a registry
/// whose TLS handshake fails. Dropping it stops it.
#[derive(Debug)]
pub struct GarbageListener {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

/// What [`GarbageListener`] answers: an HTTP/1.0 error, as a plain-HTTP
/// server on a port the client believes speaks TLS would send.
const GARBAGE: &[u8] = b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain\r\n\r\nnot TLS\n";

impl GarbageListener {
    /// Starts it on `127.0.0.1:0`.
    ///
    /// # Panics
    /// When no loopback port can be bound (the test cannot run then).
    pub async fn start() -> Self {
        #[allow(clippy::expect_used)]
        // reason: test harness; without a loopback port no test can run
        let listener = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind a loopback port for the garbage listener");
        #[allow(clippy::expect_used)] // reason: as above, a bound socket has an address
        let addr = listener.local_addr().expect("local address");
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                };
                while conns.try_join_next().is_some() {}
                conns.spawn(async move {
                    let mut hello = [0u8; 512];
                    let _ = stream.read(&mut hello).await;
                    let _ = stream.write_all(GARBAGE).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Self { addr, task }
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for GarbageListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn store_manifest(
    st: &mut State,
    name: &str,
    reference: &str,
    media_type: &str,
    bytes: Bytes,
) -> String {
    let digest = sha256_digest(&bytes);
    let parsed: Option<Value> = serde_json::from_slice(&bytes).ok();
    let field = |k: &str| parsed.as_ref().and_then(|v| v.get(k));
    let subject = field("subject")
        .and_then(|s| s.get("digest"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let artifact_type = field("artifactType")
        .and_then(Value::as_str)
        .or_else(|| {
            field("config")
                .and_then(|c| c.get("mediaType"))
                .and_then(Value::as_str)
        })
        .map(str::to_owned);
    let annotations = field("annotations").filter(|a| a.is_object()).cloned();
    st.next_id += 1;
    let seq = st.next_id;
    st.manifests.insert(
        (name.to_owned(), digest.clone()),
        StoredManifest {
            media_type: media_type.to_owned(),
            bytes,
            subject,
            artifact_type,
            annotations,
            seq,
        },
    );
    if !reference.contains(':') {
        st.tags
            .insert((name.to_owned(), reference.to_owned()), digest.clone());
    }
    digest
}

/// The referrers of `subject` in `name` as an image index, optionally filtered.
fn referrers_index(st: &State, name: &str, subject: &str, artifact_type: Option<&str>) -> Value {
    let mut found: Vec<(&(String, String), &StoredManifest)> = st
        .manifests
        .iter()
        .filter(|((repo, _), m)| repo == name && m.subject.as_deref() == Some(subject))
        .filter(|(_, m)| artifact_type.is_none_or(|t| m.artifact_type.as_deref() == Some(t)))
        .collect();
    found.sort_by_key(|(_, m)| m.seq);
    let synthetic = st
        .synthetic_referrers
        .get(&(name.to_owned(), subject.to_owned()))
        .into_iter()
        .flatten()
        .filter(|d| artifact_type.is_none_or(|t| d["artifactType"] == t))
        .cloned();
    let manifests: Vec<Value> = synthetic
        .chain(found.into_iter().map(|((_, digest), m)| {
            let mut d = json!({
                "mediaType": m.media_type,
                "digest": digest,
                "size": m.bytes.len(),
            });
            if let Some(t) = &m.artifact_type {
                d["artifactType"] = json!(t);
            }
            if let Some(a) = &m.annotations {
                d["annotations"] = a.clone();
            }
            d
        }))
        .collect();
    json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests})
}

async fn serve(listener: TcpListener, addr: SocketAddr, state: Shared) {
    // Connections live in the set, so aborting this task closes them all.
    let mut conns = JoinSet::new();
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(_) => {
                // Out of descriptors or similar: do not spin.
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
        };
        while conns.try_join_next().is_some() {}
        if lock(&state).down {
            drop(stream);
            continue;
        }
        let state = state.clone();
        // A second descriptor of the socket, so a fault can make its close a
        // reset (`SO_LINGER` 0) while hyper owns the stream.
        let socket = stream.as_fd().try_clone_to_owned().ok().map(Arc::new);
        conns.spawn(async move {
            let svc = service_fn(move |req| handle(state.clone(), addr, socket.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// Where a request goes.
#[derive(Debug)]
enum Route {
    Ping,
    Token,
    Manifest { name: String, reference: String },
    Blob { name: String, digest: String },
    UploadStart { name: String },
    UploadSession { name: String, id: u64 },
    Referrers { name: String, digest: String },
    Storage { digest: String },
    Unknown,
}

fn route(path: &str) -> Route {
    if path == "/v2/" || path == "/v2" {
        return Route::Ping;
    }
    if path == "/token" {
        return Route::Token;
    }
    if let Some(digest) = path.strip_prefix("/storage/") {
        return Route::Storage {
            digest: digest.to_owned(),
        };
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return Route::Unknown;
    };
    if let Some(i) = rest.rfind("/blobs/uploads") {
        let name = rest[..i].to_owned();
        let tail = rest[i + "/blobs/uploads".len()..].trim_matches('/');
        return if tail.is_empty() {
            Route::UploadStart { name }
        } else {
            match tail.parse() {
                Ok(id) => Route::UploadSession { name, id },
                Err(_) => Route::Unknown,
            }
        };
    }
    for (sep, kind) in [("/manifests/", 0), ("/blobs/", 1), ("/referrers/", 2)] {
        if let Some(i) = rest.rfind(sep) {
            let name = rest[..i].to_owned();
            let arg = rest[i + sep.len()..].to_owned();
            if name.is_empty() || arg.is_empty() {
                return Route::Unknown;
            }
            return match kind {
                0 => Route::Manifest {
                    name,
                    reference: arg,
                },
                1 => Route::Blob { name, digest: arg },
                _ => Route::Referrers { name, digest: arg },
            };
        }
    }
    Route::Unknown
}

fn kind_of(method: &Method, route: &Route) -> RequestKind {
    match (route, method) {
        (Route::Ping, _) => RequestKind::Ping,
        (Route::Token, _) => RequestKind::Token,
        (Route::Manifest { .. }, &Method::HEAD) => RequestKind::ResolveHead,
        (Route::Manifest { .. }, &Method::GET) => RequestKind::ManifestGet,
        (Route::Manifest { .. }, &Method::PUT) => RequestKind::ManifestPut,
        (Route::Blob { .. }, &Method::HEAD) => RequestKind::BlobHead,
        (Route::Blob { .. }, &Method::GET) => RequestKind::BlobGet,
        (Route::UploadStart { .. } | Route::UploadSession { .. }, _) => RequestKind::Upload,
        (Route::Referrers { .. }, &Method::GET) => RequestKind::Referrers,
        _ => RequestKind::Other,
    }
}

/// Decodes `%XX` and `+` of a query component; bad escapes stay as they are.
fn decode_component(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => match (hex_value(b[i + 1]), hex_value(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_value(c: u8) -> Option<u8> {
    char::from(c)
        .to_digit(16)
        .and_then(|v| u8::try_from(v).ok())
}

fn query_params(query: Option<&str>) -> BTreeMap<String, String> {
    query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode_component(k), decode_component(v)),
            None => (decode_component(p), String::new()),
        })
        .collect()
}

fn full(bytes: impl Into<Bytes>) -> ResBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

fn empty() -> ResBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// A body without a declared length (sent chunked).
struct Chunked(VecDeque<Bytes>);

impl hyper::body::Body for Chunked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
    }
}

/// `bytes`, then (after [`BREAK_OFF_PAUSE`], so what was sent reaches the
/// client) an error instead of the end of the body, which makes hyper drop
/// the connection; with `reset`, the socket's close is made a TCP RST.
struct BreakOff {
    bytes: Option<Bytes>,
    pause: Pin<Box<tokio::time::Sleep>>,
    reset: Option<Arc<OwnedFd>>,
}

/// How long [`BreakOff`] waits between its last byte and breaking off: a
/// reset discards what the peer has not read yet, and hyper drops unflushed
/// output when a body fails.
const BREAK_OFF_PAUSE: Duration = Duration::from_millis(200);

impl BreakOff {
    fn new(bytes: Bytes, reset: Option<Arc<OwnedFd>>) -> Self {
        Self {
            bytes: Some(bytes),
            pause: Box::pin(tokio::time::sleep(BREAK_OFF_PAUSE)),
            reset,
        }
    }
}

impl hyper::body::Body for BreakOff {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(b) = self.bytes.take().filter(|b| !b.is_empty()) {
            return Poll::Ready(Some(Ok(Frame::data(b))));
        }
        if self.pause.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        if let Some(fd) = self.reset.take() {
            let _ = rustix::net::sockopt::set_socket_linger(&*fd, Some(Duration::ZERO));
        }
        Poll::Ready(Some(Err("injected fault: connection broken off".into())))
    }
}

/// A body sent one byte every `interval`.
struct Trickle {
    bytes: Bytes,
    chunk: usize,
    interval: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl Trickle {
    fn new(bytes: Bytes, chunk: usize, interval: Duration) -> Self {
        Self {
            bytes,
            chunk,
            interval,
            sleep: Box::pin(tokio::time::sleep(interval)),
        }
    }
}

impl hyper::body::Body for Trickle {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.bytes.is_empty() {
            return Poll::Ready(None);
        }
        if self.sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        let next = tokio::time::Instant::now() + self.interval;
        self.sleep.as_mut().reset(next);
        let n = self.chunk.min(self.bytes.len());
        let chunk = self.bytes.split_to(n);
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }
}

fn chunked(bytes: Bytes) -> ResBody {
    let chunks: VecDeque<Bytes> = bytes.chunks(16 << 10).map(Bytes::copy_from_slice).collect();
    Chunked(chunks).boxed()
}

fn respond(status: StatusCode, body: ResBody) -> Response<ResBody> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r
}

fn error(status: StatusCode, code: &str, message: &str) -> Response<ResBody> {
    let body = json!({"errors": [{"code": code, "message": message}]}).to_string();
    let mut r = respond(status, full(body));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn set(r: &mut Response<ResBody>, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        r.headers_mut().insert(name, v);
    }
}

/// Counts a request as in flight until dropped (whichever way `handle`
/// ends), and its wave: one deeper than the deepest answered before it came.
struct InFlight {
    state: Shared,
    depth: u64,
}

impl InFlight {
    fn enter(state: &Shared) -> Self {
        let mut st = lock(state);
        st.in_flight += 1;
        st.max_in_flight = st.max_in_flight.max(st.in_flight);
        let depth = st.answered_depth + 1;
        st.max_depth = st.max_depth.max(depth);
        Self {
            state: state.clone(),
            depth,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut st = lock(&self.state);
        st.in_flight = st.in_flight.saturating_sub(1);
        st.answered_depth = st.answered_depth.max(self.depth);
    }
}

async fn handle(
    state: Shared,
    addr: SocketAddr,
    socket: Option<Arc<OwnedFd>>,
    req: Request<Incoming>,
) -> Result<Response<ResBody>, std::io::Error> {
    let _in_flight = InFlight::enter(&state);
    let route = route(req.uri().path());
    let kind = kind_of(req.method(), &route);
    let (latency, hang, fail, fault) = {
        let mut st = lock(&state);
        if st.down {
            return Err(std::io::Error::other("registry is down"));
        }
        st.counts.bump(kind);
        if st.seen.len() >= MAX_SEEN {
            st.seen.pop_front();
        }
        let authorization = req
            .headers()
            .get(header::AUTHORIZATION)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let range = req
            .headers()
            .get(header::RANGE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        st.seen.push_back(Seen {
            kind,
            path: req.uri().path().to_owned(),
            authorization,
            range,
        });
        let fail = match st.fail_next.get_mut(&kind) {
            Some((n, status)) if *n > 0 => {
                *n -= 1;
                Some(*status)
            }
            _ => None,
        };
        let fault = fault_for(&st, &route, kind);
        (st.latency, st.hang.contains(&kind), fail, fault)
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if hang {
        std::future::pending::<()>().await;
    }
    if let Some(status) = fail {
        return Ok(error(status, "UNKNOWN", "injected failure"));
    }
    match fault {
        None => answer(state, addr, route, req).await,
        Some(Fault::Status { status, headers }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut r = error(status, "UNKNOWN", "injected failure");
            for (name, value) in headers {
                set(&mut r, name, &value);
            }
            Ok(r)
        }
        Some(Fault::DelayHeaders(delay)) => {
            tokio::time::sleep(delay).await;
            answer(state, addr, route, req).await
        }
        Some(Fault::EndlessPages { page }) => match route {
            Route::Referrers { name, digest } => {
                let n: u64 = query_params(req.uri().query())
                    .get("page")
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(0);
                let mut r = respond(StatusCode::OK, full(page));
                set(&mut r, "content-type", OCI_INDEX);
                let next = format!(
                    "</v2/{name}/referrers/{digest}?page={}>; rel=\"next\"",
                    n + 1
                );
                set(&mut r, "link", &next);
                Ok(r)
            }
            _ => answer(state, addr, route, req).await,
        },
        Some(Fault::RedirectLoop) => {
            let mut r = respond(StatusCode::TEMPORARY_REDIRECT, empty());
            let here = req
                .uri()
                .path_and_query()
                .map_or_else(|| req.uri().path().to_owned(), |p| p.as_str().to_owned());
            set(&mut r, "location", &here);
            Ok(r)
        }
        Some(body_fault) => {
            let resp = answer(state, addr, route, req).await?;
            Ok(break_body(resp, body_fault, socket).await)
        }
    }
}

/// The fault set for this request, if any: by digest first, then by kind.
fn fault_for(st: &State, route: &Route, kind: RequestKind) -> Option<Fault> {
    let digest = match route {
        Route::Manifest { reference, .. } if reference.contains(':') => Some(reference),
        Route::Blob { digest, .. } | Route::Storage { digest } => Some(digest),
        _ => None,
    };
    digest
        .and_then(|d| st.fault_by_target.get(&FaultTarget::Digest(d.clone())))
        .or_else(|| st.fault_by_target.get(&FaultTarget::Kind(kind)))
        .cloned()
}

/// `resp` with its body misbehaving as `fault` says.
async fn break_body(
    resp: Response<ResBody>,
    fault: Fault,
    socket: Option<Arc<OwnedFd>>,
) -> Response<ResBody> {
    let (mut parts, body) = resp.into_parts();
    // Every body this registry makes is in memory: collecting is immediate.
    let bytes = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let length = |parts: &mut http::response::Parts, n: u64| {
        if let Ok(v) = HeaderValue::from_str(&n.to_string()) {
            parts.headers.insert(header::CONTENT_LENGTH, v);
        }
    };
    let body: ResBody = match fault {
        Fault::ResetMidBody { after } => {
            length(&mut parts, bytes.len() as u64);
            let sent = bytes.slice(..after.min(bytes.len()));
            BreakOff::new(sent, socket).boxed()
        }
        Fault::SlowBody { interval } => {
            length(&mut parts, bytes.len() as u64);
            Trickle::new(bytes, 1, interval).boxed()
        }
        Fault::Throttle { chunk, interval } => {
            length(&mut parts, bytes.len() as u64);
            Trickle::new(bytes, chunk.max(1), interval).boxed()
        }
        Fault::LongContentLength { extra } => {
            length(&mut parts, bytes.len() as u64 + extra);
            BreakOff::new(bytes, None).boxed()
        }
        Fault::Truncate => {
            let half = bytes.slice(..bytes.len() / 2);
            length(&mut parts, half.len() as u64);
            full(half)
        }
        Fault::Body {
            bytes,
            content_type,
        } => {
            length(&mut parts, bytes.len() as u64);
            if let Some(v) = content_type.and_then(|t| HeaderValue::from_str(&t).ok()) {
                parts.headers.insert(header::CONTENT_TYPE, v);
            }
            full(bytes)
        }
        Fault::Status { .. }
        | Fault::DelayHeaders(_)
        | Fault::RedirectLoop
        | Fault::EndlessPages { .. } => full(bytes),
    };
    Response::from_parts(parts, body)
}

/// The registry's answer to `req` (authentication included), faults aside.
async fn answer(
    state: Shared,
    addr: SocketAddr,
    route: Route,
    req: Request<Incoming>,
) -> Result<Response<ResBody>, std::io::Error> {
    if !matches!(route, Route::Token | Route::Storage { .. }) {
        if let Some(denied) = check_auth(&state, addr, &req, &route) {
            return Ok(denied);
        }
    }
    let method = req.method().clone();
    let query = query_params(req.uri().query());
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let range = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(range_start);
    let body = match Limited::new(req.into_body(), MAX_REQUEST_BODY)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return Ok(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "SIZE_INVALID",
                "request body too large",
            ))
        }
    };
    let mut st = lock(&state);
    Ok(match route {
        Route::Ping => {
            let mut r = respond(StatusCode::OK, full("{}"));
            set(&mut r, "docker-distribution-api-version", "registry/2.0");
            r
        }
        Route::Token => token(&mut st, &method, authorization.as_deref(), &query, &body),
        Route::Manifest { name, reference } => match method {
            Method::GET | Method::HEAD => {
                get_manifest(&st, &name, &reference, method == Method::HEAD)
            }
            Method::PUT => {
                if reference.contains(':') && sha256_digest(&body) != reference {
                    error(
                        StatusCode::BAD_REQUEST,
                        "DIGEST_INVALID",
                        "manifest digest mismatch",
                    )
                } else {
                    let media_type = if content_type.is_empty() {
                        serde_json::from_slice::<Value>(&body)
                            .ok()
                            .and_then(|v| {
                                v.get("mediaType")
                                    .and_then(Value::as_str)
                                    .map(str::to_owned)
                            })
                            .unwrap_or_else(|| OCI_MANIFEST.to_owned())
                    } else {
                        content_type
                    };
                    let digest = store_manifest(&mut st, &name, &reference, &media_type, body);
                    let subject = st
                        .manifests
                        .get(&(name.clone(), digest.clone()))
                        .and_then(|m| m.subject.clone());
                    let mut r = respond(StatusCode::CREATED, empty());
                    set(
                        &mut r,
                        "location",
                        &format!("/v2/{name}/manifests/{digest}"),
                    );
                    set(&mut r, "docker-content-digest", &digest);
                    if let Some(s) = subject {
                        set(&mut r, "oci-subject", &s);
                    }
                    r
                }
            }
            _ => error(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED", "method"),
        },
        Route::Blob { digest, .. } if st.blob_redirect && method == Method::GET => {
            let mut r = respond(StatusCode::TEMPORARY_REDIRECT, empty());
            set(&mut r, "location", &format!("/storage/{digest}"));
            r
        }
        Route::Storage { digest } if method == Method::GET => get_blob(&st, &digest, false, range),
        Route::Blob { digest, .. } => match method {
            Method::GET | Method::HEAD => get_blob(&st, &digest, method == Method::HEAD, range),
            _ => error(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED", "method"),
        },
        Route::UploadStart { name } if method == Method::POST => match query.get("digest") {
            Some(d) => finish_upload(&mut st, &name, d, body.to_vec()),
            None => {
                let id = st.next_id;
                st.next_id += 1;
                st.uploads.insert(id, body.to_vec());
                upload_accepted(&name, id, body.len())
            }
        },
        Route::UploadSession { name, id } => {
            let Some(mut data) = st.uploads.remove(&id) else {
                return Ok(error(
                    StatusCode::NOT_FOUND,
                    "BLOB_UPLOAD_UNKNOWN",
                    "no such upload",
                ));
            };
            data.extend_from_slice(&body);
            match (method, query.get("digest")) {
                (Method::PUT, Some(d)) => finish_upload(&mut st, &name, d, data),
                (Method::PATCH, _) => {
                    let len = data.len();
                    st.uploads.insert(id, data);
                    upload_accepted(&name, id, len)
                }
                _ => error(
                    StatusCode::BAD_REQUEST,
                    "DIGEST_INVALID",
                    "PUT needs ?digest=",
                ),
            }
        }
        Route::Referrers { name, digest } if method == Method::GET => {
            referrers(&st, &name, &digest, &query)
        }
        _ => error(StatusCode::NOT_FOUND, "UNSUPPORTED", "unknown path"),
    })
}

fn check_auth(
    state: &Shared,
    addr: SocketAddr,
    req: &Request<Incoming>,
    route: &Route,
) -> Option<Response<ResBody>> {
    let st = lock(state);
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    match &st.auth {
        AuthMode::Open => None,
        AuthMode::Basic { username, password } => {
            if given == basic(username, password) {
                return None;
            }
            let mut r = error(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "authentication required",
            );
            set(
                &mut r,
                "www-authenticate",
                r#"Basic realm="oci-registry-test""#,
            );
            Some(r)
        }
        AuthMode::Token { .. } | AuthMode::EndlessChallenge => {
            if st.auth != AuthMode::EndlessChallenge
                && given
                    .strip_prefix("Bearer ")
                    .is_some_and(|t| st.issued_tokens.contains(t))
            {
                return None;
            }
            let name = match route {
                Route::Manifest { name, .. }
                | Route::Blob { name, .. }
                | Route::UploadStart { name }
                | Route::UploadSession { name, .. }
                | Route::Referrers { name, .. } => Some(name.as_str()),
                _ => None,
            };
            let actions = if req.method() == Method::GET || req.method() == Method::HEAD {
                "pull"
            } else {
                "pull,push"
            };
            let realm = st
                .token_realm
                .clone()
                .unwrap_or_else(|| format!("http://{addr}/token"));
            let mut challenge = format!(r#"Bearer realm="{realm}",service="{TOKEN_SERVICE}""#);
            if let Some(n) = name {
                challenge.push_str(&format!(r#",scope="repository:{n}:{actions}""#));
            }
            let mut r = error(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "authentication required",
            );
            set(&mut r, "www-authenticate", &challenge);
            Some(r)
        }
    }
}

fn basic(username: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
    )
}

fn token(
    st: &mut State,
    method: &Method,
    authorization: Option<&str>,
    query: &BTreeMap<String, String>,
    body: &Bytes,
) -> Response<ResBody> {
    let (required, refresh_token, expires_in) = match st.auth.clone() {
        AuthMode::Token {
            basic,
            refresh_token,
            expires_in,
        } => (basic, refresh_token, expires_in),
        // Anyone gets a token; the registry accepts none.
        AuthMode::EndlessChallenge => (None, None, 300),
        AuthMode::Open | AuthMode::Basic { .. } => {
            return error(StatusCode::NOT_FOUND, "UNSUPPORTED", "token auth is off")
        }
    };
    let ok = if *method == Method::POST {
        let form = query_params(std::str::from_utf8(body).ok());
        form.get("grant_type").map(String::as_str) == Some("refresh_token")
            && refresh_token.is_some()
            && form.get("refresh_token") == refresh_token.as_ref()
            && form.get("service").map(String::as_str) == Some(TOKEN_SERVICE)
    } else {
        query.get("service").map(String::as_str) == Some(TOKEN_SERVICE)
            && match &required {
                None => true,
                Some((u, p)) => authorization == Some(basic(u, p).as_str()),
            }
    };
    if !ok {
        return error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "bad credentials");
    }
    let t = format!("token-{}", st.next_id);
    st.next_id += 1;
    st.issued_tokens.insert(t.clone());
    let body = if *method == Method::POST {
        json!({"access_token": t, "expires_in": expires_in})
    } else {
        json!({"token": t, "expires_in": expires_in})
    };
    let mut r = respond(StatusCode::OK, full(body.to_string()));
    set(&mut r, "content-type", "application/json");
    r
}

fn faulty(st: &State, digest: &str, head: bool) -> Option<Response<ResBody>> {
    let BodyFault::Replace {
        bytes,
        declare_length,
    } = st.faults.get(digest)?.clone();
    let len = bytes.len();
    let body = if head {
        empty()
    } else if declare_length {
        full(bytes)
    } else {
        chunked(bytes)
    };
    let mut r = respond(StatusCode::OK, body);
    if head || declare_length {
        set(&mut r, "content-length", &len.to_string());
    }
    set(&mut r, "docker-content-digest", digest);
    Some(r)
}

fn get_manifest(st: &State, name: &str, reference: &str, head: bool) -> Response<ResBody> {
    let digest = if reference.contains(':') {
        reference.to_owned()
    } else {
        match st.tags.get(&(name.to_owned(), reference.to_owned())) {
            Some(d) => d.clone(),
            None => return error(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN", "unknown tag"),
        }
    };
    let Some(m) = st.manifests.get(&(name.to_owned(), digest.clone())) else {
        return error(
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
            "unknown manifest",
        );
    };
    let mut r = if let Some(mut r) = faulty(st, &digest, head) {
        set(&mut r, "content-type", &m.media_type);
        return r;
    } else if head {
        let mut r = respond(StatusCode::OK, empty());
        set(&mut r, "content-length", &m.bytes.len().to_string());
        r
    } else {
        respond(StatusCode::OK, full(m.bytes.clone()))
    };
    set(&mut r, "content-type", &m.media_type);
    set(&mut r, "docker-content-digest", &digest);
    r
}

/// The start of a `Range: bytes=N-` (or `bytes=N-M`, served to the end) header.
fn range_start(value: &str) -> Option<usize> {
    let (start, _) = value.strip_prefix("bytes=")?.split_once('-')?;
    start.parse().ok()
}

/// A blob, or its bytes from `range` on (`206` with `Content-Range`, as
/// distribution answers a resumed fetch).
fn get_blob(st: &State, digest: &str, head: bool, range: Option<usize>) -> Response<ResBody> {
    if let Some(mut r) = faulty(st, digest, head) {
        set(&mut r, "content-type", "application/octet-stream");
        return r;
    }
    let Some(b) = st.blobs.get(digest) else {
        return error(StatusCode::NOT_FOUND, "BLOB_UNKNOWN", "unknown blob");
    };
    let mut r = match range {
        _ if head => {
            let mut r = respond(StatusCode::OK, empty());
            set(&mut r, "content-length", &b.len().to_string());
            r
        }
        Some(start) if start > 0 && start < b.len() => {
            let mut r = respond(StatusCode::PARTIAL_CONTENT, full(b.slice(start..)));
            let range = format!("bytes {start}-{}/{}", b.len() - 1, b.len());
            set(&mut r, "content-range", &range);
            r
        }
        _ => respond(StatusCode::OK, full(b.clone())),
    };
    set(&mut r, "content-type", "application/octet-stream");
    set(&mut r, "docker-content-digest", digest);
    r
}

fn upload_accepted(name: &str, id: u64, len: usize) -> Response<ResBody> {
    let mut r = respond(StatusCode::ACCEPTED, empty());
    set(
        &mut r,
        "location",
        &format!("/v2/{name}/blobs/uploads/{id}"),
    );
    set(&mut r, "docker-upload-uuid", &id.to_string());
    set(&mut r, "range", &format!("0-{}", len.saturating_sub(1)));
    r
}

fn finish_upload(st: &mut State, name: &str, digest: &str, data: Vec<u8>) -> Response<ResBody> {
    if sha256_digest(&data) != digest {
        return error(StatusCode::BAD_REQUEST, "DIGEST_INVALID", "digest mismatch");
    }
    st.blobs.insert(digest.to_owned(), Bytes::from(data));
    let mut r = respond(StatusCode::CREATED, empty());
    set(&mut r, "location", &format!("/v2/{name}/blobs/{digest}"));
    set(&mut r, "docker-content-digest", digest);
    r
}

fn referrers(
    st: &State,
    name: &str,
    digest: &str,
    query: &BTreeMap<String, String>,
) -> Response<ResBody> {
    if !st.referrers_api {
        return error(StatusCode::NOT_FOUND, "UNSUPPORTED", "no referrers API");
    }
    let filter = query
        .get("artifactType")
        .filter(|t| st.referrers_filter && !t.is_empty())
        .map(String::as_str);
    let mut index = referrers_index(st, name, digest, filter);
    let page: usize = query.get("page").and_then(|p| p.parse().ok()).unwrap_or(0);
    let mut next = None;
    if let (Some(size), Some(all)) = (
        st.page_size,
        index.get_mut("manifests").and_then(Value::as_array_mut),
    ) {
        let total = all.len();
        let start = page.saturating_mul(size).min(total);
        let end = start.saturating_add(size).min(total);
        *all = all[start..end].to_vec();
        if end < total {
            let origin = st.link_origin.clone().unwrap_or_default();
            let mut link = format!("{origin}/v2/{name}/referrers/{digest}?page={}", page + 1);
            if let Some(t) = query.get("artifactType") {
                link.push_str(&format!("&artifactType={}", encode_component(t)));
            }
            next = Some(link);
        }
    }
    let mut r = respond(StatusCode::OK, full(index.to_string()));
    set(&mut r, "content-type", OCI_INDEX);
    if filter.is_some() {
        set(&mut r, "oci-filters-applied", "artifactType");
    }
    if let Some(link) = next {
        set(&mut r, "link", &format!("<{link}>; rel=\"next\""));
    }
    r
}

fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_names_with_slashes() {
        assert!(
            matches!(route("/v2/a/b/manifests/v1"), Route::Manifest { ref name, ref reference } if name == "a/b" && reference == "v1")
        );
        assert!(
            matches!(route("/v2/a/blobs/uploads/"), Route::UploadStart { ref name } if name == "a")
        );
        assert!(matches!(
            route("/v2/a/blobs/uploads/7"),
            Route::UploadSession { id: 7, .. }
        ));
        assert!(matches!(
            route("/v2/a/referrers/sha256:ab"),
            Route::Referrers { .. }
        ));
        assert!(matches!(route("/v2/"), Route::Ping));
        assert!(matches!(route("/nope"), Route::Unknown));
    }

    type Client = hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >;

    async fn call(
        c: &Client,
        method: Method,
        url: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> (StatusCode, http::HeaderMap, Bytes) {
        let mut req = Request::builder().method(method).uri(url);
        if let Some(t) = content_type {
            req = req.header(header::CONTENT_TYPE, t);
        }
        let resp = c
            .request(req.body(Full::new(Bytes::copy_from_slice(body))).unwrap())
            .await
            .unwrap();
        let (parts, body) = resp.into_parts();
        (
            parts.status,
            parts.headers,
            body.collect().await.unwrap().to_bytes(),
        )
    }

    #[tokio::test]
    async fn push_and_pull_over_http() {
        let reg = OciRegistry::start().await;
        let c: Client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http();
        let base = format!("http://{}", reg.host());

        // Monolithic upload.
        let config = br#"{"os":"linux"}"#;
        let config_digest = sha256_digest(config);
        let (status, headers, _) = call(
            &c,
            Method::POST,
            &format!("{base}/v2/a/b/blobs/uploads/?digest={config_digest}"),
            None,
            config,
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(headers["docker-content-digest"], config_digest.as_str());

        // Session: POST, PATCH, PUT.
        let layer = b"layer-part-1 layer-part-2";
        let layer_digest = sha256_digest(layer);
        let (status, headers, _) = call(
            &c,
            Method::POST,
            &format!("{base}/v2/a/b/blobs/uploads/"),
            None,
            b"",
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED);
        let location = headers["location"].to_str().unwrap().to_owned();
        let (status, _, _) = call(
            &c,
            Method::PATCH,
            &format!("{base}{location}"),
            None,
            &layer[..13],
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED);
        let (status, _, _) = call(
            &c,
            Method::PUT,
            &format!("{base}{location}?digest={layer_digest}"),
            None,
            &layer[13..],
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);

        let (status, headers, body) = call(
            &c,
            Method::HEAD,
            &format!("{base}/v2/a/b/blobs/{layer_digest}"),
            None,
            b"",
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.is_empty());
        assert_eq!(headers["content-length"], layer.len().to_string().as_str());

        let manifest = json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer.len()}],
        }).to_string();
        let (status, headers, _) = call(
            &c,
            Method::PUT,
            &format!("{base}/v2/a/b/manifests/v1"),
            Some(OCI_MANIFEST),
            manifest.as_bytes(),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
        let image_digest = headers["docker-content-digest"]
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(
            reg.tag_digest("a/b", "v1").as_deref(),
            Some(image_digest.as_str())
        );

        // A signature with a subject, pushed by digest.
        let sig = json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.cncf.notary.signature",
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha256_digest(b"{}"), "size": 2},
            "layers": [],
            "subject": {"mediaType": OCI_MANIFEST, "digest": image_digest, "size": manifest.len()},
        }).to_string();
        let sig_digest = sha256_digest(sig.as_bytes());
        let (status, headers, _) = call(
            &c,
            Method::PUT,
            &format!("{base}/v2/a/b/manifests/{sig_digest}"),
            Some(OCI_MANIFEST),
            sig.as_bytes(),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(headers["oci-subject"], image_digest.as_str());

        let (status, headers, body) = call(
            &c,
            Method::GET,
            &format!("{base}/v2/a/b/manifests/v1"),
            None,
            b"",
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["content-type"], OCI_MANIFEST);
        assert_eq!(headers["docker-content-digest"], image_digest.as_str());
        assert_eq!(body, manifest.as_bytes());

        let url = format!(
            "{base}/v2/a/b/referrers/{image_digest}?artifactType={}",
            encode_component("application/vnd.cncf.notary.signature")
        );
        let (status, headers, body) = call(&c, Method::GET, &url, None, b"").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["oci-filters-applied"], "artifactType");
        let index: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(index["manifests"][0]["digest"], sig_digest.as_str());
        assert_eq!(
            index["manifests"][0]["artifactType"],
            "application/vnd.cncf.notary.signature"
        );

        let counts = reg.counts();
        assert_eq!(
            (counts.uploads, counts.manifest_put, counts.referrers),
            (4, 2, 1)
        );
        assert_eq!((counts.blob_head, counts.manifest_get), (1, 1));
    }

    #[tokio::test]
    async fn token_mode_challenges_and_issues() {
        let reg = OciRegistry::start().await;
        reg.set_auth(AuthMode::Token {
            basic: Some(("u".into(), "p".into())),
            refresh_token: None,
            expires_in: 60,
        });
        let c: Client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http();
        let base = format!("http://{}", reg.host());
        let (status, headers, _) = call(
            &c,
            Method::GET,
            &format!("{base}/v2/x/manifests/v1"),
            None,
            b"",
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let challenge = headers["www-authenticate"].to_str().unwrap();
        assert!(
            challenge.contains(&format!("realm=\"http://{}/token\"", reg.host())),
            "{challenge}"
        );
        assert!(
            challenge.contains("scope=\"repository:x:pull\""),
            "{challenge}"
        );
        let (status, _, _) = call(
            &c,
            Method::GET,
            &format!("{base}/token?service={TOKEN_SERVICE}"),
            None,
            b"",
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }

    /// A one-file image: (config, gzipped layer) bytes.
    fn tiny_image() -> (Vec<u8>, Vec<u8>) {
        let mut tar = tar::Builder::new(Vec::new());
        let data = b"hello from the test registry\n";
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, "hello.txt", &data[..]).unwrap();
        let tar = tar.into_inner().unwrap();
        let diff_id = sha256_digest(&tar);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &tar).unwrap();
        let layer = gz.finish().unwrap();
        let config = json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "config": {},
        })
        .to_string()
        .into_bytes();
        (config, layer)
    }

    /// containerd 1.6's own resolver and fetcher (what its CRI plugin uses)
    /// pull from this registry, through the token flow.
    #[tokio::test]
    #[ignore = "needs containerd"]
    async fn containerd_pulls_from_it() {
        let reg = OciRegistry::start().await;
        let (config, layer) = tiny_image();
        let manifest = json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": reg.put_blob("x", config.clone()), "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": reg.put_blob("x", layer.clone()), "size": layer.len()}],
        })
        .to_string();
        let digest = reg.put_manifest("demo/app", "v1", OCI_MANIFEST, manifest);
        reg.set_auth(AuthMode::Token {
            basic: Some(("u".into(), "p".into())),
            refresh_token: None,
            expires_in: 60,
        });

        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("containerd.sock");
        let config_path = dir.path().join("config.toml");
        std::fs::write(
            &config_path,
            format!(
                "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n[grpc]\n  address = \"{sock}\"\n",
                root = dir.path().join("root").display(),
                state = dir.path().join("state").display(),
                sock = sock.display()
            ),
        )
        .unwrap();
        let mut containerd = tokio::process::Command::new("containerd")
            .arg("--config")
            .arg(&config_path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        for _ in 0..100 {
            if sock.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let image = format!("{}/demo/app:v1", reg.host());
        let out = tokio::process::Command::new("ctr")
            .arg("--address")
            .arg(&sock)
            .args([
                "images",
                "pull",
                "--plain-http",
                "--snapshotter",
                "native",
                "--user",
                "u:p",
            ])
            .arg(&image)
            .output()
            .await
            .unwrap();
        let _ = containerd.kill().await;
        assert!(
            out.status.success(),
            "ctr pull failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let counts = reg.counts();
        assert!(counts.token >= 1 && counts.blob_get >= 2, "{counts:?}");
        assert_eq!(reg.tag_digest("demo/app", "v1"), Some(digest));
    }

    #[test]
    fn query_decoding_round_trips() {
        let t = "application/vnd.cncf.notary.signature";
        assert_eq!(decode_component(&encode_component(t)), t);
        assert_eq!(decode_component("%zz%4"), "%zz%4");
    }
}
