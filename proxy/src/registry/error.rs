//! The registry client's one error type: opaque, classified with `is_*`
//! methods (as hyper's `Error`), carrying where and what was being fetched so
//! the gate can write "registry 127.0.0.1:5000 unreachable while resolving
//! tag v1: connection refused".

use std::fmt;

use http::StatusCode;
use pullgate_policy::Digest;

/// Error from the registry client.
///
/// Classify with [`Error::is_timeout`], [`Error::is_deadline_exceeded`],
/// [`Error::is_not_found`], [`Error::is_server_error`] and friends; `Display` gives a sentence for people.
///
/// Behind one pointer, as hyper's is, so an `Err` stays small; an `Arc` so
/// the one result of a shared verification can reach every waiter.
#[derive(Clone)]
pub(crate) struct Error {
    inner: std::sync::Arc<Inner>,
}

struct Inner {
    kind: Kind,
    ctx: Context,
}

/// What went wrong.
#[derive(Debug)]
pub(super) enum Kind {
    /// No connection (refused, reset, DNS, TLS handshake).
    Unreachable(Box<dyn std::error::Error + Send + Sync>),
    /// The connection broke while the body was being read.
    Body(hyper::Error),
    /// One request took longer than `request_timeout` (the pull's deadline had not passed).
    Timeout,
    /// The pull's deadline passed.
    DeadlineExceeded,
    /// 404 for the thing fetched.
    NotFound,
    /// 401 or 403 after authenticating as well as the credentials allow.
    Unauthorized { status: StatusCode },
    /// Any other status the request does not expect.
    Status { status: StatusCode },
    /// A body longer than the cap, refused before buffering past it.
    TooLarge { limit: u64 },
    /// Content whose digest is not the one asked for.
    DigestMismatch { expected: Digest, got: Digest },
    /// A blob shorter than its descriptor's size.
    SizeMismatch { expected: u64, got: u64 },
    /// A JSON body that does not parse or violates the spec.
    Malformed { what: &'static str, detail: String },
    /// A header that is missing or not understood.
    BadHeader { name: &'static str },
    /// A manifest of a media type pullgate does not read.
    UnsupportedMediaType { media_type: String },
    /// Bad registry configuration (hosts.toml, CA file, TLS setup).
    Config { detail: String },
    /// The credentials for the host could not be read (auth file, helper):
    /// a local configuration failure, not a registry outage, so never one
    /// that `fail_open` may wave through (it is neither `is_unreachable` nor
    /// `is_timeout`).
    Credentials(super::credentials::CredentialsError),
    /// A bug.
    Internal(&'static str),
}

/// Where the error happened.
#[derive(Debug, Clone, Default)]
pub(super) struct Context {
    /// Registry host (`host:port`).
    pub(super) host: String,
    /// Repository path inside the registry, when there is one.
    pub(super) repo: Option<String>,
    /// What was being fetched.
    pub(super) op: Op,
}

/// What the client was doing.
#[derive(Debug, Clone, Default)]
pub(super) enum Op {
    #[default]
    Configuring,
    ResolvingTag(String),
    ListingReferrers(Digest),
    ReadingReferrersTag(String),
    ReadingSignatureTag(String),
    FetchingManifest(Digest),
    FetchingBlob(Digest),
    FetchingToken,
    PushingBlob(Digest),
    PushingManifest(String),
}

impl Error {
    pub(super) fn new(kind: Kind, ctx: &Context) -> Self {
        Self {
            inner: std::sync::Arc::new(Inner {
                kind,
                ctx: ctx.clone(),
            }),
        }
    }

    /// The error for an answer whose `status` the request did not expect:
    /// not found, the credentials refused (401, 403), or any other status.
    pub(super) fn for_status(status: StatusCode, ctx: &Context) -> Self {
        let kind = match status {
            StatusCode::NOT_FOUND => Kind::NotFound,
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Kind::Unauthorized { status },
            _ => Kind::Status { status },
        };
        Self::new(kind, ctx)
    }

    /// What went wrong (for the tests; callers use `is_*`).
    #[cfg(test)]
    pub(super) fn kind(&self) -> &Kind {
        &self.inner.kind
    }

    pub(super) fn config(detail: impl Into<String>) -> Self {
        Self::new(
            Kind::Config {
                detail: detail.into(),
            },
            &Context::default(),
        )
    }

    /// A request timed out, or the pull's deadline passed.
    pub(crate) fn is_timeout(&self) -> bool {
        matches!(self.inner.kind, Kind::Timeout | Kind::DeadlineExceeded)
    }

    /// The pull's deadline passed (the gate maps this to `DeadlineExceeded`).
    pub(crate) fn is_deadline_exceeded(&self) -> bool {
        matches!(self.inner.kind, Kind::DeadlineExceeded)
    }

    /// The registry answered 404 for what was fetched.
    pub(crate) fn is_not_found(&self) -> bool {
        matches!(self.inner.kind, Kind::NotFound)
    }

    /// The registry could not be reached or the connection broke.
    pub(crate) fn is_unreachable(&self) -> bool {
        matches!(self.inner.kind, Kind::Unreachable(_) | Kind::Body(_))
    }

    /// The registry answered with a server error (5xx): it is failing, not
    /// answering about the content.
    pub(crate) fn is_server_error(&self) -> bool {
        matches!(self.inner.kind, Kind::Status { status } if status.is_server_error())
    }

    /// The registry is out of service rather than answering: it could not
    /// be reached or the connection broke, it answered 5xx, or one request
    /// timed out (`request_timeout`). The pull's own deadline passing is not
    /// an outage (that is the client's limit), nor is any answer about the
    /// content (404, 401, 403, a body over its cap, not matching its digest,
    /// malformed), nor a configuration error. Only an outage may leave a
    /// decision open, and only an outage may fail open.
    pub(crate) fn is_outage(&self) -> bool {
        self.is_unreachable() || self.is_server_error() || matches!(self.inner.kind, Kind::Timeout)
    }

    /// The registry answered 429 Too Many Requests: it asks to be left
    /// alone for a while. Not an outage (it answered, so `fail_open` does
    /// not apply) and not an answer about the content (so not a reason to
    /// deny what it was asked for): the decision stays open and fails closed.
    pub(crate) fn is_rate_limited(&self) -> bool {
        matches!(self.inner.kind, Kind::Status { status } if status == StatusCode::TOO_MANY_REQUESTS)
    }

    /// The registry refused the credentials (401/403).
    pub(crate) fn is_unauthorized(&self) -> bool {
        matches!(self.inner.kind, Kind::Unauthorized { .. })
    }

    /// A body was larger than its cap.
    #[cfg(test)]
    pub(crate) fn is_too_large(&self) -> bool {
        matches!(self.inner.kind, Kind::TooLarge { .. })
    }

    /// Content did not match its digest or size: the registry served something else.
    #[cfg(test)]
    pub(crate) fn is_digest_mismatch(&self) -> bool {
        matches!(
            self.inner.kind,
            Kind::DigestMismatch { .. } | Kind::SizeMismatch { .. }
        )
    }

    /// The registry sent a body or header that does not follow the spec.
    #[cfg(test)]
    pub(crate) fn is_malformed(&self) -> bool {
        matches!(
            self.inner.kind,
            Kind::Malformed { .. } | Kind::BadHeader { .. } | Kind::UnsupportedMediaType { .. }
        )
    }

    /// The HTTP status, when the error is an unexpected status.
    #[cfg(test)]
    pub(crate) fn status(&self) -> Option<StatusCode> {
        match self.inner.kind {
            Kind::Status { status } | Kind::Unauthorized { status } => Some(status),
            Kind::NotFound => Some(StatusCode::NOT_FOUND),
            _ => None,
        }
    }

    /// Re-labels an error from a shared helper with the caller's operation.
    pub(super) fn during(mut self, op: Op) -> Self {
        // Errors are re-labelled right after they are made, before anyone shares them.
        if let Some(inner) = std::sync::Arc::get_mut(&mut self.inner) {
            inner.ctx.op = op;
        }
        self
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Configuring => f.write_str("reading registry configuration"),
            Self::ResolvingTag(t) => write!(f, "resolving tag {t}"),
            Self::ListingReferrers(d) => write!(f, "listing referrers of {d}"),
            Self::ReadingReferrersTag(t) => write!(f, "reading referrers tag {t}"),
            Self::ReadingSignatureTag(t) => write!(f, "reading cosign signature tag {t}"),
            Self::FetchingManifest(d) => write!(f, "fetching manifest {d}"),
            Self::FetchingBlob(d) => write!(f, "fetching blob {d}"),
            Self::FetchingToken => f.write_str("fetching a token"),
            Self::PushingBlob(d) => write!(f, "pushing blob {d}"),
            Self::PushingManifest(t) => write!(f, "pushing manifest {t}"),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Context { host, repo, op } = &self.inner.ctx;
        if let Kind::Config { detail } = &self.inner.kind {
            return write!(f, "invalid registry configuration: {detail}");
        }
        if let Kind::Internal(what) = &self.inner.kind {
            return write!(
                f,
                "internal error in the registry client while {op}: {what}"
            );
        }
        if let Kind::Credentials(e) = &self.inner.kind {
            return write!(f, "no credentials for registry {host} while {op}: {e}");
        }
        write!(f, "registry {host} ")?;
        match &self.inner.kind {
            Kind::Unreachable(_) => f.write_str("unreachable")?,
            Kind::Body(_) => f.write_str("dropped the connection")?,
            Kind::Timeout => f.write_str("timed out")?,
            Kind::DeadlineExceeded => f.write_str("too slow for the pull's deadline")?,
            Kind::NotFound => f.write_str("has no such content")?,
            Kind::Unauthorized { status } => write!(f, "refused the credentials ({status})")?,
            Kind::Status { status } => write!(f, "answered {status}")?,
            Kind::TooLarge { limit } => write!(f, "sent more than the {limit}-byte limit")?,
            Kind::DigestMismatch { .. } | Kind::SizeMismatch { .. } => {
                f.write_str("served content that does not match its digest")?
            }
            Kind::Malformed { .. } | Kind::BadHeader { .. } => {
                f.write_str("sent a malformed response")?
            }
            Kind::UnsupportedMediaType { .. } => f.write_str("sent an unsupported manifest")?,
            Kind::Config { .. } | Kind::Internal(_) | Kind::Credentials(_) => {}
        }
        write!(f, " while {op}")?;
        if let Some(repo) = repo {
            write!(f, " in {repo}")?;
        }
        match &self.inner.kind {
            Kind::Unreachable(e) => write!(f, ": {}", root_cause(e.as_ref())),
            // hyper says "error reading a body from connection"; the cause
            // (a reset, an early end) is what a person needs.
            Kind::Body(e) => write!(f, ": {}", root_cause(e)),
            Kind::DigestMismatch { expected, got } => write!(f, ": expected {expected}, got {got}"),
            Kind::SizeMismatch { expected, got } => {
                write!(f, ": expected {expected} bytes, got {got}")
            }
            Kind::Malformed { what, detail } => write!(f, ": {what}: {detail}"),
            Kind::BadHeader { name } => write!(f, ": header {name}"),
            Kind::UnsupportedMediaType { media_type } => write!(f, ": media type {media_type:?}"),
            _ => Ok(()),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("registry::Error")
            .field("kind", &self.inner.kind)
            .field("ctx", &self.inner.ctx)
            .finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.inner.kind {
            Kind::Unreachable(e) => Some(e.as_ref()),
            Kind::Body(e) => Some(e),
            _ => None,
        }
    }
}

/// The innermost cause: hyper-util wraps "connection refused" in two layers of
/// "client error (Connect)", and hyper a reset mid-body in "error reading a
/// body from connection", which tell an operator nothing.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    // Bounded: error chains are short, but a cyclic `source` must not hang us.
    for _ in 0..16 {
        match cur.source() {
            Some(next) => cur = next,
            None => break,
        }
    }
    // io::ErrorKind reads "connection refused"; the io::Error itself adds
    // "(os error 111)", which is noise in a pod event.
    match cur.downcast_ref::<std::io::Error>() {
        Some(io) if io.kind() != std::io::ErrorKind::Other => io.kind().to_string(),
        _ => cur.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(kind: Kind) -> Error {
        Error::new(kind, &Context::default())
    }

    fn status(code: u16) -> Error {
        err(Kind::Status {
            status: StatusCode::from_u16(code).unwrap(),
        })
    }

    #[test]
    fn only_an_outage_is_an_outage() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let outages = [
            err(Kind::Unreachable(Box::new(refused))),
            err(Kind::Timeout),
            status(500),
            status(502),
            status(503),
            status(504),
        ];
        for e in &outages {
            assert!(e.is_outage(), "{e:?}");
        }
        assert!(status(503).is_server_error());
        let digest: Digest = format!("sha256:{}", "a".repeat(64)).parse().unwrap();
        let answers = [
            err(Kind::NotFound),
            err(Kind::Unauthorized {
                status: StatusCode::UNAUTHORIZED,
            }),
            err(Kind::Unauthorized {
                status: StatusCode::FORBIDDEN,
            }),
            status(400),
            status(429),
            status(308),
            err(Kind::DeadlineExceeded),
            err(Kind::TooLarge { limit: 1 }),
            err(Kind::DigestMismatch {
                expected: digest.clone(),
                got: digest,
            }),
            err(Kind::SizeMismatch {
                expected: 2,
                got: 1,
            }),
            err(Kind::Malformed {
                what: "manifest",
                detail: String::new(),
            }),
            err(Kind::BadHeader { name: "Link" }),
            err(Kind::UnsupportedMediaType {
                media_type: String::new(),
            }),
            Error::config("bad"),
            err(Kind::Internal("bug")),
        ];
        for e in &answers {
            assert!(!e.is_outage(), "{e:?}");
            assert!(!e.is_server_error(), "{e:?}");
        }
        assert!(status(429).is_rate_limited());
        for e in outages
            .iter()
            .chain(&answers)
            .filter(|e| e.status() != Some(StatusCode::TOO_MANY_REQUESTS))
        {
            assert!(!e.is_rate_limited(), "{e:?}");
        }
    }
}
