//! containerd's side of the contract: the arguments it passes and the descriptor it writes to stdin.
//!
//! Input: the process's arguments (after the program name) and its stdin.
//! Output: an [`Invocation`] (the reference, the digest, the stdin media
//! type) and, from stdin, a checked `StdinDescriptor`; then the
//! [`ImageRef`] to decide, `-name`'s repository and tag at `-digest`.
//! Limits: stdin is read up to [`MAX_STDIN_BYTES`]; more denies.
//!
//! containerd's `pkg/imageverifier/bindir/bindir.go` (2.x) runs each
//! verifier as
//!
//! ```text
//! args := []string{
//!     "-name", imageName,
//!     "-digest", desc.Digest.String(),
//!     "-stdin-media-type", ocispec.MediaTypeDescriptor,
//! }
//! ```
//!
//! and writes `json.NewEncoder(stdinWrite).Encode(desc)` (one JSON object and
//! a newline) to stdin, then closes it. `imageName` is the reference as the
//! client gave it and `desc` is what the resolver returned for it: digest,
//! media type (an index for a multi-arch image) and size.
//!
//! The arguments are parsed as Go's `flag` package parses them, because
//! that is what containerd's docs assume a verifier does: `-name v`,
//! `--name v`, `-name=v` and `--name=v` are one flag; a flag's value is the
//! next argument whatever it looks like; the last of a repeated flag wins;
//! `--` ends the flags. Hand-written: clap (the CLI's parser) does not
//! accept single-dash long flags, and no crate of the field parses Go's
//! flag syntax. Anything containerd does not send (an unknown flag, a
//! positional argument, a missing flag, another stdin media type) is an
//! error, and an error denies: the verifier fails closed.

use std::ffi::OsString;
use std::fmt;
use std::sync::Arc;

use pullgate_policy::reference::ReferenceError;
use pullgate_policy::{Digest, ImageRef};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt as _};

use crate::registry::media_type;

/// The one stdin media type containerd sends (and pullgate reads):
/// `ocispec.MediaTypeDescriptor`.
pub(crate) const STDIN_MEDIA_TYPE: &str = "application/vnd.oci.descriptor.v1+json";

/// Largest stdin pullgate reads. containerd's descriptor is three fields,
/// about 200 bytes; an image-spec descriptor may also carry annotations,
/// URLs, a platform and embedded `data`, which fit easily.
pub const MAX_STDIN_BYTES: usize = 64 << 10;

/// The flags containerd passes.
const FLAG_NAME: &str = "name";
const FLAG_DIGEST: &str = "digest";
const FLAG_STDIN_MEDIA_TYPE: &str = "stdin-media-type";

/// What containerd asked: `-name`, `-digest`, `-stdin-media-type`, as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// `-name`: the reference being pulled, as the client wrote it.
    pub name: String,
    /// `-digest`: what containerd resolved it to, and will fetch.
    pub digest: String,
    /// `-stdin-media-type`.
    pub stdin_media_type: String,
}

/// Why the arguments are not containerd's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgsError {
    /// An argument is not valid UTF-8.
    #[error("argument {index} is not UTF-8")]
    NotUtf8 {
        /// Its position (0 = the first after the program name).
        index: usize,
    },
    /// `-` followed by nothing usable (`---x`, `-=x`).
    #[error("bad flag syntax: {0}")]
    BadSyntax(String),
    /// A flag containerd does not send.
    #[error("flag provided but not defined: -{0}")]
    Unknown(String),
    /// A flag without a value.
    #[error("flag needs an argument: -{0}")]
    NoValue(&'static str),
    /// A flag containerd always sends is missing.
    #[error("missing -{0}")]
    Missing(&'static str),
    /// An argument after the flags.
    #[error("unexpected argument {0:?}")]
    Positional(String),
}

impl Invocation {
    /// Whether `args` (without the program name) are an image verifier
    /// call: the first is a Go-style flag that containerd passes
    /// (`-name`, `-digest`, `-stdin-media-type`, with one or two dashes,
    /// with or without `=value`). Anything else is for the subcommand CLI.
    pub fn is_verifier_call(args: &[OsString]) -> bool {
        let Some(first) = args.first().and_then(|a| a.to_str()) else {
            return false;
        };
        let name = match first.strip_prefix("--").or_else(|| first.strip_prefix('-')) {
            Some(n) => n.split_once('=').map_or(n, |(n, _)| n),
            None => return false,
        };
        [FLAG_NAME, FLAG_DIGEST, FLAG_STDIN_MEDIA_TYPE].contains(&name)
    }

    /// Parses `args` (without the program name) as Go's `flag` package
    /// would, with the three flags containerd passes defined.
    ///
    /// # Errors
    /// [`ArgsError`] for anything containerd would not send.
    pub fn parse(args: &[OsString]) -> Result<Self, ArgsError> {
        let mut strings = Vec::with_capacity(args.len());
        for (index, a) in args.iter().enumerate() {
            strings.push(a.to_str().ok_or(ArgsError::NotUtf8 { index })?);
        }
        let (mut name, mut digest, mut media_type) = (None, None, None);
        let mut rest = strings.as_slice();
        // Go's flag.FlagSet.parseOne, one flag per turn.
        while let Some((&arg, tail)) = rest.split_first() {
            if arg.len() < 2 || !arg.starts_with('-') {
                break; // the first non-flag argument ends the flags
            }
            rest = tail;
            if arg == "--" {
                break; // "--" ends the flags and is consumed
            }
            let body = arg.strip_prefix("--").unwrap_or(&arg[1..]);
            if body.is_empty() || body.starts_with('-') || body.starts_with('=') {
                return Err(ArgsError::BadSyntax(truncate(arg)));
            }
            let (flag, inline) = match body.split_once('=') {
                Some((f, v)) => (f, Some(v)),
                None => (body, None),
            };
            let (slot, flag): (&mut Option<String>, &'static str) = match flag {
                FLAG_NAME => (&mut name, FLAG_NAME),
                FLAG_DIGEST => (&mut digest, FLAG_DIGEST),
                FLAG_STDIN_MEDIA_TYPE => (&mut media_type, FLAG_STDIN_MEDIA_TYPE),
                other => return Err(ArgsError::Unknown(truncate(other))),
            };
            let value = match inline {
                Some(v) => v,
                // "It must have a value, which might be the next argument."
                None => match rest.split_first() {
                    Some((&v, tail)) => {
                        rest = tail;
                        v
                    }
                    None => return Err(ArgsError::NoValue(flag)),
                },
            };
            *slot = Some(value.to_owned());
        }
        if let Some(&extra) = rest.first() {
            return Err(ArgsError::Positional(truncate(extra)));
        }
        Ok(Self {
            name: name.ok_or(ArgsError::Missing(FLAG_NAME))?,
            digest: digest.ok_or(ArgsError::Missing(FLAG_DIGEST))?,
            stdin_media_type: media_type.ok_or(ArgsError::Missing(FLAG_STDIN_MEDIA_TYPE))?,
        })
    }
}

/// At most 256 characters of something a caller sent, for an error message.
fn truncate(s: &str) -> String {
    s.chars().take(256).collect()
}

/// Why a call cannot be decided as asked: it denies.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ContractError {
    /// `-name` is not an image reference.
    #[error("-name {name:?} is not an image reference: {source}")]
    Name {
        /// As given (truncated).
        name: String,
        /// Why.
        source: ReferenceError,
    },
    /// `-digest` is not a digest.
    #[error("-digest {0:?} is not a digest")]
    Digest(String),
    /// `-name` carries a digest other than `-digest`.
    #[error("-name carries digest {named}, but containerd resolved {resolved}")]
    NameDigestMismatch {
        /// The digest in `-name`.
        named: Digest,
        /// `-digest`.
        resolved: Digest,
    },
    /// `-stdin-media-type` is not the OCI descriptor.
    #[error("-stdin-media-type {0:?} is not {STDIN_MEDIA_TYPE}")]
    StdinMediaType(String),
    /// Reading stdin failed.
    #[error("cannot read the descriptor on stdin: {0}")]
    StdinRead(Arc<std::io::Error>),
    /// Stdin is over [`MAX_STDIN_BYTES`].
    #[error("the descriptor on stdin is over {MAX_STDIN_BYTES} bytes")]
    StdinTooLarge,
    /// Stdin is not an OCI descriptor.
    #[error("the descriptor on stdin is not an OCI descriptor: {0}")]
    StdinMalformed(Arc<serde_json::Error>),
    /// The descriptor names another digest than `-digest`.
    #[error("the descriptor on stdin names {described}, not -digest {resolved}")]
    DescriptorDigestMismatch {
        /// The descriptor's `digest`.
        described: String,
        /// `-digest`.
        resolved: Digest,
    },
    /// The descriptor's media type is not an image manifest or index.
    #[error("the descriptor on stdin has media type {0:?}, not an image manifest or index")]
    DescriptorMediaType(String),
}

/// The image-spec descriptor containerd writes (`descriptor.md`): the fields pullgate checks.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StdinDescriptor {
    /// "This REQUIRED property contains the media type of the referenced content."
    pub(crate) media_type: String,
    /// "This REQUIRED property is the digest of the targeted content."
    pub(crate) digest: String,
    /// "This REQUIRED property specifies the size, in bytes, of the raw content."
    pub(crate) size: u64,
}

/// The media types a pull can resolve to: an image manifest, or an index
/// of them (multi-arch), in OCI or Docker schema 2 spelling.
const PULLABLE: [&str; 4] = [
    media_type::OCI_INDEX,
    media_type::OCI_MANIFEST,
    media_type::DOCKER_MANIFEST_LIST,
    media_type::DOCKER_MANIFEST,
];

/// Reads stdin to its end, capped at [`MAX_STDIN_BYTES`].
///
/// # Errors
/// [`ContractError::StdinTooLarge`] past the cap (read no further), or the read error.
///
/// # Cancel safety
/// Not cancel safe: bytes read before a cancel are lost (the caller gives up on the call).
pub(crate) async fn read_stdin<R: AsyncRead + Unpin>(reader: R) -> Result<Vec<u8>, ContractError> {
    let mut buf = Vec::new();
    let cap = u64::try_from(MAX_STDIN_BYTES).unwrap_or(u64::MAX);
    reader
        .take(cap + 1)
        .read_to_end(&mut buf)
        .await
        .map_err(|e| ContractError::StdinRead(Arc::new(e)))?;
    if buf.len() > MAX_STDIN_BYTES {
        return Err(ContractError::StdinTooLarge);
    }
    Ok(buf)
}

/// A call whose arguments and descriptor agree: the image to decide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Checked {
    /// `-name`'s repository and tag at `-digest`: `repo[:tag]@digest`.
    pub(crate) image: ImageRef,
    /// `-digest`.
    pub(crate) digest: Digest,
    /// The descriptor's media type (an index for a multi-arch image).
    pub(crate) media_type: String,
}

/// Checks a call: `-name` parses, `-digest` is a digest that `-name` does
/// not contradict, the stdin media type is the descriptor's, and the
/// descriptor on stdin describes `-digest` as an image manifest or index.
///
/// The image decided is `-name`'s repository at `-digest`, never `-name`'s
/// tag: containerd fetches the digest it resolved, so that digest is what
/// is verified, and no tag is resolved again (it may have moved since).
///
/// # Errors
/// [`ContractError`]; the call is denied.
pub(crate) fn check(
    name: &str,
    digest: &str,
    stdin_media_type: &str,
    stdin: &[u8],
) -> Result<Checked, ContractError> {
    let named: ImageRef = name.parse().map_err(|source| ContractError::Name {
        name: truncate(name),
        source,
    })?;
    let resolved: Digest = digest
        .parse()
        .map_err(|_| ContractError::Digest(truncate(digest)))?;
    if let Some(d) = named.digest() {
        if *d != resolved {
            return Err(ContractError::NameDigestMismatch {
                named: d.clone(),
                resolved,
            });
        }
    }
    if stdin_media_type != STDIN_MEDIA_TYPE {
        return Err(ContractError::StdinMediaType(truncate(stdin_media_type)));
    }
    let desc: StdinDescriptor =
        serde_json::from_slice(stdin).map_err(|e| ContractError::StdinMalformed(Arc::new(e)))?;
    // image-spec descriptor.md: digest "MUST" follow the digest grammar; compare
    // parsed digests so only one spelling of one value is accepted.
    if desc.digest.parse::<Digest>().ok().as_ref() != Some(&resolved) {
        return Err(ContractError::DescriptorDigestMismatch {
            described: truncate(&desc.digest),
            resolved,
        });
    }
    if !PULLABLE.contains(&desc.media_type.as_str()) {
        return Err(ContractError::DescriptorMediaType(truncate(
            &desc.media_type,
        )));
    }
    let pinned = match named.tag() {
        Some(tag) => format!("{}:{tag}@{resolved}", named.repository()),
        None => format!("{}@{resolved}", named.repository()),
    };
    let image = pinned.parse().map_err(|source| ContractError::Name {
        name: truncate(name),
        source,
    })?;
    Ok(Checked {
        image,
        digest: resolved,
        media_type: desc.media_type,
    })
}

impl fmt::Display for Invocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "-name {} -digest {} -stdin-media-type {}",
            self.name, self.digest, self.stdin_media_type
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn args(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    const D: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const E: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn want() -> Invocation {
        Invocation {
            name: "r.example/app:v1".into(),
            digest: D.into(),
            stdin_media_type: STDIN_MEDIA_TYPE.into(),
        }
    }

    #[test]
    fn containerd_s_arguments_in_every_go_spelling() {
        for a in [
            // exactly what bindir.go passes
            args(&[
                "-name",
                "r.example/app:v1",
                "-digest",
                D,
                "-stdin-media-type",
                STDIN_MEDIA_TYPE,
            ]),
            args(&[
                "--name",
                "r.example/app:v1",
                "--digest",
                D,
                "--stdin-media-type",
                STDIN_MEDIA_TYPE,
            ]),
            args(&[
                "-name=r.example/app:v1",
                &format!("--digest={D}"),
                &format!("-stdin-media-type={STDIN_MEDIA_TYPE}"),
            ]),
            // any order; the last of a repeated flag wins; `--` ends the flags
            args(&[
                "-digest",
                E,
                "-stdin-media-type",
                STDIN_MEDIA_TYPE,
                "-name",
                "r.example/app:v1",
                "-digest",
                D,
                "--",
            ]),
        ] {
            assert!(Invocation::is_verifier_call(&a), "{a:?}");
            assert_eq!(Invocation::parse(&a), Ok(want()), "{a:?}");
        }
    }

    #[test]
    fn anything_containerd_does_not_send_is_an_error() {
        let full = [
            "-name",
            "r.example/app:v1",
            "-digest",
            D,
            "-stdin-media-type",
            STDIN_MEDIA_TYPE,
        ];
        let cases: Vec<(Vec<&str>, ArgsError)> = vec![
            (full[..4].to_vec(), ArgsError::Missing("stdin-media-type")),
            (vec!["-name"], ArgsError::NoValue("name")),
            (
                [&full[..], &["-platform", "x"]].concat(),
                ArgsError::Unknown("platform".into()),
            ),
            (
                [&full[..], &["extra"]].concat(),
                ArgsError::Positional("extra".into()),
            ),
            (
                [&full[..], &["--", "extra"]].concat(),
                ArgsError::Positional("extra".into()),
            ),
            (
                vec!["-name", "x", "---digest", D],
                ArgsError::BadSyntax("---digest".into()),
            ),
            (
                vec!["-name", "x", "-=x"],
                ArgsError::BadSyntax("-=x".into()),
            ),
            (vec!["-name", "x", "-h"], ArgsError::Unknown("h".into())),
        ];
        for (a, err) in cases {
            assert_eq!(Invocation::parse(&args(&a)), Err(err), "{a:?}");
        }
        // A flag's value is the next argument, whatever it looks like (as in Go).
        let a = args(&["-name", "-digest", "-digest", D, "-stdin-media-type", "x"]);
        assert_eq!(Invocation::parse(&a).unwrap().name, "-digest");
    }

    #[test]
    fn subcommands_and_clap_flags_are_not_verifier_calls() {
        for a in [
            args(&[]),
            args(&["serve", "--config", "x"]),
            args(&["verify", "-name", "x"]),
            args(&["--help"]),
            args(&["-V"]),
            args(&["--version"]),
            args(&["-names", "x"]),
        ] {
            assert!(!Invocation::is_verifier_call(&a), "{a:?}");
        }
    }

    fn desc(media_type: &str, digest: &str) -> Vec<u8> {
        // As json.Encoder writes it: one object, then a newline.
        format!("{{\"mediaType\":\"{media_type}\",\"digest\":\"{digest}\",\"size\":527}}\n")
            .into_bytes()
    }

    #[test]
    fn the_image_decided_is_the_name_s_repository_at_the_digest() {
        let c = check(
            "r.example/app:v1",
            D,
            STDIN_MEDIA_TYPE,
            &desc(media_type::OCI_INDEX, D),
        )
        .unwrap();
        assert_eq!(c.image.to_string(), format!("r.example/app:v1@{D}"));
        assert_eq!(c.image.digest(), Some(&D.parse().unwrap()));
        assert_eq!(c.media_type, media_type::OCI_INDEX);
        let c = check(
            &format!("nginx@{D}"),
            D,
            STDIN_MEDIA_TYPE,
            &desc(media_type::DOCKER_MANIFEST, D),
        )
        .unwrap();
        assert_eq!(c.image.to_string(), format!("docker.io/library/nginx@{D}"));
        let c = check(
            &format!("r.example/app:v1@{D}"),
            D,
            STDIN_MEDIA_TYPE,
            &desc(media_type::OCI_MANIFEST, D),
        )
        .unwrap();
        assert_eq!(c.image.to_string(), format!("r.example/app:v1@{D}"));
    }

    #[test]
    fn disagreements_deny() {
        let ok = desc(media_type::OCI_MANIFEST, D);
        assert!(matches!(
            check(&format!("r.example/app@{E}"), D, STDIN_MEDIA_TYPE, &ok),
            Err(ContractError::NameDigestMismatch { .. })
        ));
        assert!(matches!(
            check(
                "r.example/app:v1",
                D,
                STDIN_MEDIA_TYPE,
                &desc(media_type::OCI_MANIFEST, E)
            ),
            Err(ContractError::DescriptorDigestMismatch { .. })
        ));
        assert!(matches!(
            check(
                "r.example/app:v1",
                D,
                STDIN_MEDIA_TYPE,
                &desc(media_type::OCI_ARTIFACT_MANIFEST, D)
            ),
            Err(ContractError::DescriptorMediaType(_))
        ));
        assert!(matches!(
            check("r.example/app:v1", D, "application/json", &ok),
            Err(ContractError::StdinMediaType(_))
        ));
        assert!(matches!(
            check("r.example/app:v1", "sha256:abc", STDIN_MEDIA_TYPE, &ok),
            Err(ContractError::Digest(_))
        ));
        assert!(matches!(
            check("Not A Ref", D, STDIN_MEDIA_TYPE, &ok),
            Err(ContractError::Name { .. })
        ));
        for bad in [
            &b""[..],
            b"null",
            b"[]",
            b"{\"digest\":1}",
            b"{\"mediaType\":\"x\",\"digest\":\"y\",\"size\":-1}",
        ] {
            assert!(
                matches!(
                    check("r.example/app:v1", D, STDIN_MEDIA_TYPE, bad),
                    Err(ContractError::StdinMalformed(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[tokio::test]
    async fn stdin_is_read_up_to_the_cap() {
        let exact = vec![b' '; MAX_STDIN_BYTES];
        assert_eq!(read_stdin(&exact[..]).await.unwrap().len(), MAX_STDIN_BYTES);
        let over = vec![b' '; MAX_STDIN_BYTES + 1];
        assert!(matches!(
            read_stdin(&over[..]).await,
            Err(ContractError::StdinTooLarge)
        ));
    }

    proptest! {
        #[test]
        fn argument_parsing_never_panics(a in proptest::collection::vec("(-{0,3}(name|digest|stdin-media-type|h|x)?=?)?[ -~]{0,12}", 0..8)) {
            let a: Vec<OsString> = a.into_iter().map(OsString::from).collect();
            let _ = Invocation::is_verifier_call(&a);
            let _ = Invocation::parse(&a);
        }

        #[test]
        fn argument_bytes_never_panic(a in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..16), 0..8)) {
            use std::os::unix::ffi::OsStringExt as _;
            let a: Vec<OsString> = a.into_iter().map(OsString::from_vec).collect();
            let _ = Invocation::is_verifier_call(&a);
            let _ = Invocation::parse(&a);
        }

        #[test]
        fn checking_never_panics(name in "[ -~]{0,40}", digest in "[ -~]{0,80}", stdin in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = check(&name, &digest, STDIN_MEDIA_TYPE, &stdin);
        }
    }
}
