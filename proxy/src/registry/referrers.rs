//! Signature discovery: the referrers API with `Link` pagination, and the
//! referrers tag schema when the registry has no referrers API.
//!
//! Input: a repository, the subject digest and the artifact types wanted.
//! Output: descriptors of the manifests that refer to the subject with one of
//! those artifact types, or with none (an index entry without
//! `artifactType`, which the caller identifies by its manifest). Limits: each page (or tag-schema index) is read up to
//! `limits.referrers_index_bytes`; at most `limits.max_referrers_pages`
//! pages are followed, and none once `limits.max_signatures` descriptors of
//! the wanted types and of the best rank are held (at most that many are
//! returned, the best ranked first, from the referrers API and the tag
//! schema alike: the caller ranks them, so a flood of junk listed first
//! does not push a promising signature past the cap). Timeouts: each page is one request under
//! `min(deadline, request_timeout)`; the deadline bounds the whole walk.
//!
//! Also cosign's `sha256-<hex>.sig` tag ([`RegistryClient::cosign_signatures`]):
//! not a referrers list but a manifest whose layers are the signatures,
//! read up to `limits.manifest_bytes`.

use http::{HeaderMap, Method, Uri};
use percent_encoding::utf8_percent_encode;
use pullgate_policy::{Digest, Repository};

use super::auth::QUERY;
use super::client::{Capability, Fetched, RegistryClient, Request};
use super::credentials::Credentials;
use super::error::{Context, Error, Kind, Op};
use super::manifest::{
    media_type_essence, parse_manifest, parse_referrers_index, Descriptor, Manifest,
};
use super::media_type;
use super::transport::resolve_reference;
use crate::deadline::Deadline;

/// Longest `Link` header value parsed; longer ones are ignored (no next page).
const MAX_LINK_HEADER: usize = 8 << 10;

/// The referrers found for a subject (a slice of [`Descriptor`]s, best
/// ranked first, listing order within a rank), how many of the wanted types
/// were listed in the pages read, and whether `max_referrers_pages` cut the
/// list short.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Referrers {
    descriptors: Vec<Descriptor>,
    /// Descriptors of the wanted types in the pages read, before
    /// `max_signatures` cut them down to [`Referrers`]'s own.
    pub(crate) listed: usize,
    /// How many pages were read when the page limit stopped the walk while
    /// the registry linked to more; `None` when the list was read to its end
    /// (or `max_signatures` were held first).
    pub(crate) cut_at_pages: Option<usize>,
}

impl std::ops::Deref for Referrers {
    type Target = [Descriptor];

    fn deref(&self) -> &[Descriptor] {
        &self.descriptors
    }
}

impl RegistryClient {
    /// Lists the referrers of `subject` whose artifact type is one of
    /// `artifact_types`, and those that carry no artifact type at all.
    ///
    /// With exactly one type wanted, the registry is asked to filter by it
    /// (the spec's filter takes one value); with several, the whole list is
    /// read. Registries that ignore the filter (no `OCI-Filters-Applied:
    /// artifactType`) are filtered here; the filter is applied here in every
    /// case, which costs nothing and does not trust the registry's.
    ///
    /// An entry without `artifactType` is kept, for the caller to identify
    /// by the manifest it names: the referrers tag schema is an index the
    /// pushing client writes, and some clients leave the field out there
    /// (the manifest's own `artifactType`, or its config's media type, is
    /// digest-checked when it is fetched; the index entry is not). Beyond
    /// `max_referrers_pages`, further pages are not read (a warning is
    /// logged); what was found is returned. Once `max_signatures` are found,
    /// no further page is read and only those are returned.
    ///
    /// # Errors
    /// `TooLarge` for a page over the cap, `Malformed` for a referrers
    /// response that is not an image index, `BadHeader` for a `Link` to
    /// another host; every transport, status, auth and deadline error.
    /// A 404 is not an error (see below).
    ///
    /// # Cancel safety
    /// Cancel safe.
    #[cfg(test)]
    pub(crate) async fn referrers(
        &self,
        repo: &Repository,
        subject: &Digest,
        artifact_types: &[&str],
        creds: &Credentials,
        deadline: Deadline,
    ) -> Result<Referrers, Error> {
        self.referrers_ranked(repo, subject, artifact_types, &|_| 0, creds, deadline)
            .await
    }

    /// [`referrers`](Self::referrers), keeping the `max_signatures`
    /// descriptors `rank` puts first (0 is best; listing order within a
    /// rank): further pages are read until that many of rank 0 are held.
    ///
    /// # Errors
    /// As [`referrers`](Self::referrers).
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub(crate) async fn referrers_ranked(
        &self,
        repo: &Repository,
        subject: &Digest,
        artifact_types: &[&str],
        rank: &(dyn Fn(&Descriptor) -> u8 + Sync),
        creds: &Credentials,
        deadline: Deadline,
    ) -> Result<Referrers, Error> {
        let op = Op::ListingReferrers(subject.clone());
        let path = match artifact_types {
            [one] => format!(
                "referrers/{subject}?{}={}",
                media_type::QUERY_ARTIFACT_TYPE,
                utf8_percent_encode(one, QUERY)
            ),
            _ => format!("referrers/{subject}"),
        };
        let first = Request {
            method: Method::GET,
            path,
            accept: Some(media_type::OCI_INDEX),
            limit: self.limits().referrers_index_bytes,
            capability: Capability::Pull,
            sink: None,
        };
        let mut fetched = match self
            .fetch(repo, first.clone(), creds, deadline, op.clone())
            .await
        {
            Ok(f) => f,
            // distribution-spec v1.1.0, "Listing Referrers"
            // (https://github.com/opencontainers/distribution-spec/blob/v1.1.0/spec.md#listing-referrers):
            // "If the referrers API returns a 404, the client MUST fallback
            // to pulling the referrers tag schema."
            Err(e) if e.is_not_found() => {
                return self
                    .referrers_tag_schema(repo, subject, artifact_types, rank, creds, deadline)
                    .await
            }
            Err(e) => return Err(e),
        };
        let max = self.limits().max_signatures;
        let mut held = Held::new(max);
        let mut pages = 1;
        let mut cut_at_pages = None;
        loop {
            let filtered_by_registry = filters_applied(&fetched.headers);
            let page = parse_referrers_index(&fetched.body, artifact_types)
                .map_err(|e| self.error(e.into_kind("referrers response"), repo, op.clone()))?;
            tracing::trace!(count = page.len(), filtered_by_registry, "referrers page");
            held.add(page, rank);
            // Only `max_signatures` are ever examined: once that many of
            // the best rank are held, no later entry could displace one,
            // and no further page is read.
            if held.full_of_best() {
                tracing::debug!(%repo, %subject, pages, max, "referrers: max_signatures held, later pages not read");
                break;
            }
            // Same section: "A `Link` header MUST be included in the
            // response when the descriptor list cannot be returned in a
            // single manifest. [...] The `Link` header MUST be set according
            // to RFC5988 with the Relation Type `rel="next"`."
            let Some(next) = fetched
                .headers
                .get_all(http::header::LINK)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(next_link)
            else {
                break;
            };
            if pages >= self.limits().max_referrers_pages {
                tracing::warn!(%repo, %subject, pages, "referrers: page limit reached, later pages not read");
                cut_at_pages = Some(pages);
                break;
            }
            let ep = fetched.endpoint.clone();
            let ctx = Context {
                host: ep.authority.to_string(),
                repo: Some(repo.path().to_owned()),
                op: op.clone(),
            };
            let base: Uri = format!("{}{}", ep.origin(), ep.base_path)
                .parse()
                .map_err(|_| Error::new(Kind::Internal("endpoint URI does not parse"), &ctx))?;
            let uri = resolve_reference(&base, &next)
                .ok_or_else(|| Error::new(Kind::BadHeader { name: "Link" }, &ctx))?;
            // Our token goes only to the registry that issued the first page.
            if uri.authority() != Some(&ep.authority) || uri.scheme() != Some(&ep.scheme) {
                return Err(Error::new(Kind::BadHeader { name: "Link" }, &ctx));
            }
            fetched = self
                .fetch_uri(repo, &ep, uri, &first, creds, deadline, &ctx)
                .await?;
            pages += 1;
        }
        Ok(held.into_referrers(cut_at_pages))
    }

    /// The referrers tag schema: the image index tagged `<alg>-<hex>`.
    async fn referrers_tag_schema(
        &self,
        repo: &Repository,
        subject: &Digest,
        artifact_types: &[&str],
        rank: &(dyn Fn(&Descriptor) -> u8 + Sync),
        creds: &Credentials,
        deadline: Deadline,
    ) -> Result<Referrers, Error> {
        let tag = subject.referrers_tag();
        let limit = self.limits().referrers_index_bytes;
        let op = Op::ReadingReferrersTag(tag.clone());
        let fetch = self.fetch_tag(
            repo,
            &tag,
            media_type::OCI_INDEX,
            limit,
            creds,
            deadline,
            op,
        );
        let Some(fetched) = fetch.await? else {
            return Ok(Referrers::default());
        };
        // Same section: "If the response to the referrers API is a 404, and
        // the tag schema does not return a valid image index, the client
        // SHOULD assume there are no referrers to the manifest."
        let wanted = match parse_referrers_index(&fetched.body, artifact_types) {
            Ok(wanted) => wanted,
            Err(e) => {
                tracing::warn!(%repo, %tag, error = %e, "referrers tag is not an image index; assuming no referrers");
                return Ok(Referrers::default());
            }
        };
        let mut held = Held::new(self.limits().max_signatures);
        held.add(wanted, rank);
        Ok(held.into_referrers(None))
    }
}

/// The best ranked descriptors seen so far, at most `max`, listing order
/// within a rank; and how many were seen.
struct Held {
    max: usize,
    listed: usize,
    ranked: Vec<(u8, Descriptor)>,
}

impl Held {
    fn new(max: usize) -> Self {
        Self {
            max,
            listed: 0,
            ranked: Vec::new(),
        }
    }

    /// Adds one page's descriptors, keeping the best `max` (a stable sort:
    /// listing order within a rank).
    fn add(&mut self, page: Vec<Descriptor>, rank: &(dyn Fn(&Descriptor) -> u8 + Sync)) {
        self.listed = self.listed.saturating_add(page.len());
        self.ranked.extend(page.into_iter().map(|d| (rank(&d), d)));
        self.ranked.sort_by_key(|(r, _)| *r);
        self.ranked.truncate(self.max);
    }

    /// Whether `max` descriptors of rank 0 are held.
    fn full_of_best(&self) -> bool {
        self.ranked.len() >= self.max && self.ranked.iter().all(|(r, _)| *r == 0)
    }

    fn into_referrers(self, cut_at_pages: Option<usize>) -> Referrers {
        Referrers {
            descriptors: self.ranked.into_iter().map(|(_, d)| d).collect(),
            listed: self.listed,
            cut_at_pages,
        }
    }
}

impl RegistryClient {
    /// GETs the manifest tagged `tag`, capped at `limit`, labelling errors
    /// with `op`; `None` when the tag does not exist.
    #[allow(clippy::too_many_arguments)] // one request's parts, all needed
    async fn fetch_tag(
        &self,
        repo: &Repository,
        tag: &str,
        accept: &'static str,
        limit: u64,
        creds: &Credentials,
        deadline: Deadline,
        op: Op,
    ) -> Result<Option<Fetched>, Error> {
        let req = Request {
            method: Method::GET,
            path: format!("manifests/{tag}"),
            accept: Some(accept),
            limit,
            capability: Capability::Pull,
            sink: None,
        };
        match self.fetch(repo, req, creds, deadline, op).await {
            Ok(f) => Ok(Some(f)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// cosign's signature (or attestation) manifest of a subject, found
/// through its `.sig` (`.att`) tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CosignSignatures {
    /// Digest of the manifest the tag points at (computed from the bytes read).
    pub(crate) digest: Digest,
    /// The manifest; each layer is one signature (simple-signing payload,
    /// signature in the `dev.cosignproject.cosign/signature` annotation).
    pub(crate) manifest: Manifest,
}

impl RegistryClient {
    /// Reads cosign's `<alg>-<hex>.sig` tag of `subject`; `None` when there
    /// is no such tag.
    ///
    /// # Errors
    /// `TooLarge`, `Malformed` / `UnsupportedMediaType`, and every transport,
    /// status, auth and deadline error of a request.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub(crate) async fn cosign_signatures(
        &self,
        repo: &Repository,
        subject: &Digest,
        creds: &Credentials,
        deadline: Deadline,
    ) -> Result<Option<CosignSignatures>, Error> {
        self.cosign_tag(repo, subject.cosign_signature_tag(), creds, deadline)
            .await
    }

    /// Reads cosign v2's `<alg>-<hex>.att` tag of `subject` (attestations:
    /// each layer one DSSE envelope); `None` when there is no such tag.
    ///
    /// # Errors
    /// As [`Self::cosign_signatures`].
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub(crate) async fn cosign_attestations(
        &self,
        repo: &Repository,
        subject: &Digest,
        creds: &Credentials,
        deadline: Deadline,
    ) -> Result<Option<CosignSignatures>, Error> {
        self.cosign_tag(repo, subject.cosign_attestation_tag(), creds, deadline)
            .await
    }

    async fn cosign_tag(
        &self,
        repo: &Repository,
        tag: String,
        creds: &Credentials,
        deadline: Deadline,
    ) -> Result<Option<CosignSignatures>, Error> {
        let limit = self.limits().manifest_bytes;
        let fetch = self.fetch_tag(
            repo,
            &tag,
            media_type::ACCEPT_MANIFESTS,
            limit,
            creds,
            deadline,
            Op::ReadingSignatureTag(tag.clone()),
        );
        let Some(fetched) = fetch.await? else {
            return Ok(None);
        };
        let op = Op::ReadingSignatureTag(tag);
        let content_type = fetched
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(media_type_essence);
        let manifest = parse_manifest(&fetched.body, content_type)
            .map_err(|e| self.error(e.into_kind("cosign signature manifest"), repo, op))?;
        Ok(Some(CosignSignatures {
            digest: Digest::sha256_of(&fetched.body),
            manifest,
        }))
    }
}

/// Whether the registry says it applied the `artifactType` filter.
fn filters_applied(headers: &HeaderMap) -> bool {
    headers
        .get_all(media_type::HEADER_FILTERS_APPLIED)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|f| f.trim() == media_type::FILTER_ARTIFACT_TYPE)
}

/// The target of the `rel="next"` link in one `Link` header value
/// (RFC 8288 §3, <https://www.rfc-editor.org/rfc/rfc8288#section-3>: `Link = #link-value`, `link-value = "<" URI-Reference ">"
/// *( OWS ";" OWS link-param )`; `rel` may hold several space-separated
/// relation types, quoted or not). Never panics; `None` when there is none.
pub(super) fn next_link(header: &str) -> Option<String> {
    if header.len() > MAX_LINK_HEADER {
        return None;
    }
    let mut rest = header;
    loop {
        let open = rest.find('<')?;
        let after = rest.get(open + 1..)?;
        let close = after.find('>')?;
        let target = after.get(..close)?;
        let params_and_more = after.get(close + 1..)?;
        // Params run to the next ',' outside quotes.
        let mut end = params_and_more.len();
        let mut in_quotes = false;
        for (i, c) in params_and_more.char_indices() {
            match c {
                '"' => in_quotes = !in_quotes,
                ',' if !in_quotes => {
                    end = i;
                    break;
                }
                _ => {}
            }
        }
        let params = params_and_more.get(..end)?;
        let is_next = params.split(';').any(|p| {
            let Some((k, v)) = p.split_once('=') else {
                return false;
            };
            k.trim().eq_ignore_ascii_case("rel")
                && v.trim()
                    .trim_matches('"')
                    .split_ascii_whitespace()
                    .any(|r| r.eq_ignore_ascii_case("next"))
        });
        if is_next && !target.trim().is_empty() {
            return Some(target.trim().to_owned());
        }
        rest = params_and_more.get(end..)?;
        if rest.is_empty() {
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_next_among_links() {
        assert_eq!(
            next_link(r#"</v2/a/referrers/sha256:1?n=2&last=x>; rel="next""#).as_deref(),
            Some("/v2/a/referrers/sha256:1?n=2&last=x")
        );
        assert_eq!(
            next_link(r#"<https://r/prev>; rel="prev", <https://r/next>; title="a, b"; rel=next"#)
                .as_deref(),
            Some("https://r/next")
        );
        assert_eq!(
            next_link(r#"<https://r/x>; rel="prev next""#).as_deref(),
            Some("https://r/x")
        );
        assert_eq!(next_link(r#"<https://r/x>; rel="prev""#), None);
        assert_eq!(next_link("garbage"), None);
        assert_eq!(next_link("<>; rel=next"), None);
    }

    proptest::proptest! {
        #[test]
        fn link_parsing_never_panics(s in "\\PC{0,300}") {
            let _ = next_link(&s);
        }

        #[test]
        fn link_shaped_input_never_panics(s in "(<|>|;|,|\"|rel|=|next| |/|é|[a-z]){0,80}") {
            let _ = next_link(&s);
        }
    }
}
