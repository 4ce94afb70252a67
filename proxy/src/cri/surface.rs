//! Which RPCs the CRI socket serves: an allowlist.
//!
//! Input: a request's `:path`. Output: a [`Route`]. The CRI socket serves
//! what the kubelet and crictl need, and nothing else:
//! - the whole `runtime.v1.RuntimeService` (containers, sandboxes, exec,
//!   stats): forwarded opaquely, but for `CreateContainer` and
//!   `RunPodSandbox`, whose images must be admitted first;
//! - the `runtime.v1.ImageService` calls that only read or remove
//!   ([`IMAGE_READS`]: `ListImages`, `ImageStatus`, `ImageFsInfo`,
//!   `RemoveImage`, and `StreamImages` for clients that ask for it):
//!   forwarded opaquely, `ImageStatus` checked when enforcing;
//! - `runtime.v1.ImageService/PullImage`: through the gate;
//! - `grpc.health.v1.Health`: answered by pullgate.
//!
//! Everything else is refused with `Unimplemented`: `runtime.v1alpha2`
//! (whose `PullImage` containerd 1.6 still serves), containerd's own
//! services (content, images, leases, … — what `ctr images pull` uses to
//! write an image without any CRI call), and ImageService methods pullgate
//! does not know (a future one might bring an image in). A path the gate
//! does not see is a way around it; forwarding only what is listed here
//! keeps the way closed when containerd grows a new one.
//!
//! Limits: each refused method is logged at warn once; at most
//! [`MAX_REMEMBERED_METHODS`] names are remembered (a client can send
//! endless distinct paths), after which refusals are logged at debug. A name
//! is cut to [`MAX_METHOD_CHARS`] in logs and messages.

use std::collections::HashSet;
use std::sync::Mutex;

use http::Uri;

use super::create_container::CREATE_CONTAINER_PATH;
use super::health;
use super::run_pod_sandbox::RUN_POD_SANDBOX_PATH;
use super::{image_status, pull_image};

/// Prefix of the RuntimeService's methods, all forwarded.
const RUNTIME_SERVICE: &str = "/runtime.v1.RuntimeService/";

/// The v1 ImageService calls that only read or remove, forwarded as they are.
pub(crate) const IMAGE_READS: [&str; 5] = [
    "/runtime.v1.ImageService/ListImages",
    image_status::IMAGE_STATUS_PATH,
    "/runtime.v1.ImageService/ImageFsInfo",
    "/runtime.v1.ImageService/RemoveImage",
    "/runtime.v1.ImageService/StreamImages",
];

/// Longest RuntimeService method name accepted (the longest today is 27).
const MAX_RUNTIME_METHOD: usize = 64;

/// Distinct refused method names remembered for the warn-once log.
pub(crate) const MAX_REMEMBERED_METHODS: usize = 64;

/// A method name is cut to this many characters in logs and messages.
pub(crate) const MAX_METHOD_CHARS: usize = 128;

/// What the CRI socket does with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// `PullImage`: the gate decides.
    Pull,
    /// `ImageStatus`: forwarded; checked when `enforce_image_status` is on.
    ImageStatus,
    /// `CreateContainer`: its images must be admitted first.
    CreateContainer,
    /// `RunPodSandbox`: the sandbox image must be admitted (or pulled through the gate) first.
    RunPodSandbox,
    /// gRPC health, answered here.
    Health,
    /// Forwarded to containerd as opaque frames.
    Forward,
    /// Not served: `Unimplemented`.
    Refuse,
}

/// The route for a request to `uri`. A query string is never part of a gRPC
/// path, so a path carrying one is refused rather than forwarded.
pub(crate) fn route(uri: &Uri) -> Route {
    if uri.query().is_some() {
        return Route::Refuse;
    }
    route_path(uri.path())
}

/// The route for a request to the bare path `path` (no query).
pub(crate) fn route_path(path: &str) -> Route {
    match path {
        pull_image::PULL_IMAGE_PATH => Route::Pull,
        image_status::IMAGE_STATUS_PATH => Route::ImageStatus,
        CREATE_CONTAINER_PATH => Route::CreateContainer,
        RUN_POD_SANDBOX_PATH => Route::RunPodSandbox,
        health::CHECK_PATH | health::WATCH_PATH => Route::Health,
        p if IMAGE_READS.contains(&p) => Route::Forward,
        p => match p.strip_prefix(RUNTIME_SERVICE) {
            // A bare method name: containerd's gRPC server splits the path at
            // its last '/', so nothing else may follow the service name.
            Some(method)
                if !method.is_empty()
                    && method.len() <= MAX_RUNTIME_METHOD
                    && method
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_') =>
            {
                Route::Forward
            }
            _ => Route::Refuse,
        },
    }
}

/// `path` cut to [`MAX_METHOD_CHARS`] characters, for logs and messages.
pub(crate) fn shown(path: &str) -> String {
    path.chars().take(MAX_METHOD_CHARS).collect()
}

/// The refused method names already logged at warn.
#[derive(Debug, Default)]
pub(crate) struct Refusals {
    seen: Mutex<HashSet<String>>,
}

/// Whether and how a refusal is logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Log {
    /// First time for this name: warn.
    First,
    /// The set just became full: warn that further names are not logged.
    Full,
    /// Already logged, or the set is full: debug only.
    Quiet,
}

impl Refusals {
    /// Records a refusal of `method` (already cut by [`shown`]).
    pub(crate) fn record(&self, method: &str) -> Log {
        // A poisoned lock only means another thread panicked mid-insert;
        // the set is still a set.
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.contains(method) {
            return Log::Quiet;
        }
        match seen.len() {
            n if n < MAX_REMEMBERED_METHODS => {
                seen.insert(method.to_owned());
                if n + 1 == MAX_REMEMBERED_METHODS {
                    Log::Full
                } else {
                    Log::First
                }
            }
            _ => Log::Quiet,
        }
    }

    /// Logs the refusal of `method` as [`Self::record`] says.
    pub(crate) fn log(&self, method: &str) {
        match self.record(method) {
            Log::First => tracing::warn!(method,
                "refused: pullgate does not serve this method on the CRI socket (logged once per method)"),
            Log::Full => {
                tracing::warn!(method,
                    "refused: pullgate does not serve this method on the CRI socket (logged once per method)");
                tracing::warn!(
                    limit = MAX_REMEMBERED_METHODS,
                    "refused methods: {MAX_REMEMBERED_METHODS} distinct names logged; further ones only at debug"
                );
            }
            Log::Quiet => tracing::debug!(method, "refused: not served on the CRI socket"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(path: &str) -> Route {
        route(&path.parse::<Uri>().unwrap())
    }

    #[test]
    fn the_kubelet_and_crictl_calls_are_served() {
        assert_eq!(r("/runtime.v1.ImageService/PullImage"), Route::Pull);
        assert_eq!(
            r("/runtime.v1.ImageService/ImageStatus"),
            Route::ImageStatus
        );
        assert_eq!(r("/grpc.health.v1.Health/Check"), Route::Health);
        assert_eq!(
            r("/runtime.v1.RuntimeService/CreateContainer"),
            Route::CreateContainer
        );
        assert_eq!(
            r("/runtime.v1.RuntimeService/RunPodSandbox"),
            Route::RunPodSandbox
        );
        for p in [
            "/runtime.v1.ImageService/ListImages",
            "/runtime.v1.ImageService/ImageFsInfo",
            "/runtime.v1.ImageService/RemoveImage",
            "/runtime.v1.ImageService/StreamImages",
            "/runtime.v1.RuntimeService/Version",
            "/runtime.v1.RuntimeService/StartContainer",
            "/runtime.v1.RuntimeService/ExecSync",
            "/runtime.v1.RuntimeService/ListMetricDescriptors",
        ] {
            assert_eq!(r(p), Route::Forward, "{p}");
        }
    }

    #[test]
    fn everything_else_is_refused() {
        for p in [
            "/runtime.v1alpha2.ImageService/PullImage",
            "/runtime.v1alpha2.RuntimeService/Version",
            "/containerd.services.images.v1.Images/Create",
            "/containerd.services.content.v1.Content/Write",
            "/containerd.services.leases.v1.Leases/Create",
            "/containerd.services.version.v1.Version/Version",
            "/runtime.v1.ImageService/PullImageV2",
            "/runtime.v1.ImageService/",
            "/runtime.v1.RuntimeService/",
            "/runtime.v1.RuntimeService/../containerd.services.images.v1.Images/Create",
            "/runtime.v1.RuntimeService/Version/x",
            "/runtime.v1.RuntimeService/Version?x=1",
            "/runtime.v1.ImageService/ListImages?x=1",
            "/runtime.v1.imageservice/PullImage",
            "/",
            "*",
        ] {
            assert_eq!(r(p), Route::Refuse, "{p}");
        }
        let long = format!("/runtime.v1.RuntimeService/{}", "A".repeat(65));
        assert_eq!(r(&long), Route::Refuse);
    }

    #[test]
    fn each_method_is_logged_once_and_the_set_is_capped() {
        let refusals = Refusals::default();
        assert_eq!(refusals.record("/a/b"), Log::First);
        assert_eq!(refusals.record("/a/b"), Log::Quiet);
        for i in 1..MAX_REMEMBERED_METHODS - 1 {
            assert_eq!(refusals.record(&format!("/m/{i}")), Log::First);
        }
        assert_eq!(refusals.record("/last"), Log::Full);
        for i in 0..1000 {
            assert_eq!(refusals.record(&format!("/more/{i}")), Log::Quiet);
        }
        assert_eq!(refusals.seen.lock().unwrap().len(), MAX_REMEMBERED_METHODS);
    }

    #[test]
    fn shown_names_are_cut() {
        assert_eq!(shown(&"x".repeat(1000)).len(), MAX_METHOD_CHARS);
        assert_eq!(shown("/a/b"), "/a/b");
    }

    proptest::proptest! {
        #[test]
        fn routing_never_panics(s in "/[ -~]{0,80}") {
            if let Ok(uri) = s.parse::<Uri>() {
                let _ = route(&uri);
            }
        }
    }
}
