//! End-to-end harness for pullgate: real processes on temp sockets, a push
//! client for test images, and the attaching of test signatures (minted by
//! `pullgate_testkit`, the one test PKI and signer) to them.
//!
//! What lives here:
//! - [`containerd`]: a containerd 1.6 with its own root, state and sockets in a
//!   temp dir, CRI plugin on, `native` snapshotter, `hosts.toml` for plain-HTTP
//!   loopback registries;
//! - [`docker_registry`]: the distribution's `docker-registry` 2.8 on a free
//!   loopback port (no referrers API, so signatures live in the tag schema);
//! - [`image`]: a plain-HTTP OCI distribution push client that builds tiny
//!   unique images;
//! - [`signer`]: attaching a Notary Project signature to an image, through
//!   the referrers API or the referrers tag schema;
//! - [`oci_registry`]: an in-process OCI 1.1 registry (referrers API,
//!   pagination, token auth) with request counting and fault injection;
//! - [`cosign`]: attaching cosign signatures (`sha256-<hex>.sig`) and
//!   Sigstore bundles (referrers) to an image;
//! - [`pullgate`]: a launcher for the `pullgate` binary;
//! - [`cri`]: CRI and containerd gRPC clients over a unix socket;
//! - [`aws_api`]: a loopback stand-in for the AWS Signer `GetRevocationStatus`
//!   API (checking SigV4 signatures itself), STS web identity and IMDSv2;
//! - [`crl_server`]: a plain-HTTP server on a loopback port serving one CRL
//!   and counting the requests for it;
//! - [`raw_h2`]: one gRPC call with any `:authority` bytes, as gRPC C-core
//!   and older kubelets send them (which tonic cannot);
//! - [`bindir`]: containerd 2.x's `bindir` image verifier caller (argv,
//!   descriptor on stdin, environment, stdout cap, timeout killing the
//!   process group), for the containerd 1.6 here that has none;
//! - [`testbed`]: registry, containerd, PKI, trust store and trust policy in
//!   one value, the usual start of an end-to-end test and of the bench;
//! - [`child`] and [`distribution`]: process and plain-HTTP plumbing.
//!
//! What it deliberately does not do: it never links the proxy crate (the
//! tests drive the built binary, as the kubelet would), and signing is
//! test-only code (pullgate itself never signs).
//!
//! Every process is started under a temp dir and killed and reaped on drop;
//! nothing listens on a fixed path or port.

pub mod aws_api;
pub mod bindir;
pub mod child;
pub mod containerd;
pub mod cosign;
pub mod cri;
pub mod crl_server;
pub mod distribution;
pub mod docker_registry;
pub mod image;
pub mod intoto;
pub mod oci_registry;
pub mod pullgate;
pub mod raw_h2;
pub mod signer;
pub mod testbed;
