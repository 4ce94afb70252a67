//! Spec strings of the OCI image and distribution specs and of Docker's
//! registry API v2, in one place (STYLE §3: never literals at the call site).

/// OCI image manifest (image-spec `manifest.md`).
pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index (image-spec `image-index.md`); also the referrers response.
pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// The OCI artifact manifest of image-spec 1.1.0-rc1 to rc2, still written by
/// older notation and ORAS releases (carries `blobs` instead of `layers`).
pub(crate) const OCI_ARTIFACT_MANIFEST: &str = "application/vnd.oci.artifact.manifest.v1+json";
/// Docker image manifest, schema 2.
pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list (multi-arch).
pub(crate) const DOCKER_MANIFEST_LIST: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";

/// `Accept` of a tag resolution or manifest fetch: every manifest kind pullgate reads.
pub(crate) const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.oci.artifact.manifest.v1+json";

/// Header carrying the canonical digest of a manifest or blob (distribution-spec).
pub(crate) const HEADER_CONTENT_DIGEST: &str = "docker-content-digest";
/// Header a registry sets when it applied the referrers filter (distribution-spec 1.1).
pub(crate) const HEADER_FILTERS_APPLIED: &str = "oci-filters-applied";
/// The only referrers filter the spec defines.
pub(crate) const FILTER_ARTIFACT_TYPE: &str = "artifactType";
/// Query parameter of the referrers filter.
pub(crate) const QUERY_ARTIFACT_TYPE: &str = "artifactType";

/// Challenge scheme of the token flow (distribution `docs/spec/auth/token.md`).
pub(crate) const AUTH_SCHEME_BEARER: &str = "bearer";
/// Challenge scheme of HTTP basic authentication (RFC 7617).
pub(crate) const AUTH_SCHEME_BASIC: &str = "basic";
