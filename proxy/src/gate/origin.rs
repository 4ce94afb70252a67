//! Where a question to the gate comes from: the door it came through and,
//! when the request names one, the pod it is for.
//!
//! The pod's namespace chooses the requirements scope
//! ([`pullgate_policy::Requirements::for_pod`]), so it is part of what
//! decides a verdict; the door and the pod's name are recorded (audit record,
//! log line, the `door` label of `pullgate_decisions_total`), never decide.

use std::fmt;

/// The door a question came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Door {
    /// CRI `PullImage`.
    Pull,
    /// CRI `CreateContainer`: the container's image and its image volumes.
    Create,
    /// CRI `RunPodSandbox`: the sandbox (pause) image.
    Sandbox,
    /// containerd 2.x's image verifier call.
    Verifier,
    /// `pullgate verify`.
    Cli,
}

impl Door {
    /// The label of metrics and audit records.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Pull => "pull",
            Self::Create => "create",
            Self::Sandbox => "sandbox",
            Self::Verifier => "verifier",
            Self::Cli => "cli",
        }
    }
}

impl fmt::Display for Door {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Longest pod namespace or name kept (a namespace is a DNS label of at
/// most 63 characters, a pod name a DNS subdomain of at most 253).
const MAX_POD_FIELD: usize = 253;

/// The pod a request is for, as the kubelet names it in `PodSandboxMetadata`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pod {
    namespace: String,
    name: String,
}

impl Pod {
    /// The pod `name` in `namespace`; `None` when the request names no
    /// namespace (crictl may send empty metadata). Both are cut to
    /// [`MAX_POD_FIELD`] characters: a longer namespace is no valid one and
    /// matches no namespace glob.
    pub(crate) fn new(namespace: &str, name: &str) -> Option<Self> {
        if namespace.is_empty() {
            return None;
        }
        Some(Self {
            namespace: namespace.chars().take(MAX_POD_FIELD).collect(),
            name: name.chars().take(MAX_POD_FIELD).collect(),
        })
    }

    /// The pod's namespace.
    pub(crate) fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The pod's name (may be empty).
    pub(crate) fn name(&self) -> &str {
        &self.name
    }
}

/// The door and pod of one question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Origin {
    pub(crate) door: Door,
    pub(crate) pod: Option<Pod>,
}

impl Origin {
    /// A question through `door` that names no pod.
    pub(crate) fn door(door: Door) -> Self {
        Self { door, pod: None }
    }

    /// The pod's namespace, when the request names one.
    pub(crate) fn namespace(&self) -> Option<&str> {
        self.pod.as_ref().map(Pod::namespace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_needs_a_namespace_and_long_fields_are_cut() {
        assert_eq!(Pod::new("", "web"), None);
        let pod = Pod::new("team-a", "web-1").unwrap();
        assert_eq!((pod.namespace(), pod.name()), ("team-a", "web-1"));
        let long = Pod::new(&"n".repeat(1000), &"p".repeat(1000)).unwrap();
        assert_eq!(long.namespace().len(), MAX_POD_FIELD);
        assert_eq!(long.name().len(), MAX_POD_FIELD);
        assert_eq!(Origin::door(Door::Cli).namespace(), None);
    }
}
