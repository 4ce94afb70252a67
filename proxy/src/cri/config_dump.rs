//! `config.dump` in a checkpoint image's layers: the file that names the
//! base image containerd (2.1–2.3) restores a checkpoint onto.
//!
//! Input: one layer blob as a byte stream (gzip or plain tar; zstd is
//! refused), top layer first, and a byte [`Budget`] shared by every layer of
//! the image. Output: what that layer does to `/config.dump` ([`InLayer`]),
//! then the base image read from the file ([`CheckpointBase`]).
//!
//! containerd mounts the image's layers and reads `config.dump` at the root
//! of the result, so: a layer's *last* entry for that path is the one that
//! counts (unpacking replaces earlier ones), which is why a layer is read to
//! its end, never stopped at the first `config.dump`; an upper layer's
//! whiteout (`.wh.config.dump`, or an opaque root) hides lower layers; the
//! file must be a regular file. The JSON is read as Go's `encoding/json`
//! reads it into checkpointctl's `ContainerConfig`: field names match
//! case-insensitively, so a name spelled two ways is refused rather than
//! guessed at.
//!
//! Limits: every layer's compressed and uncompressed bytes count against the
//! one [`Budget`] (what is not read within it is refused: fail closed);
//! `config.dump` itself is read up to [`MAX_CONFIG_DUMP_BYTES`]. Malformed
//! input is a [`LayerError`] or [`ConfigDumpError`], never a panic.

use std::cell::Cell;
use std::io::{BufRead as _, BufReader, Read};
use std::rc::Rc;

use pullgate_policy::ImageRef;

/// The file checkpointctl and containerd name the container's configuration.
pub(crate) const CONFIG_DUMP: &str = "config.dump";

/// An OCI layer's whiteout of `config.dump`: the file is deleted below.
pub(crate) const CONFIG_DUMP_WHITEOUT: &str = ".wh.config.dump";

/// An OCI layer's opaque whiteout at the root: everything below is hidden.
pub(crate) const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";

/// Largest `config.dump` read (containerd writes a few hundred bytes).
pub(crate) const MAX_CONFIG_DUMP_BYTES: u64 = 1 << 20;

/// What one layer does to `/config.dump`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum InLayer {
    /// The layer's last entry for it: a regular file with these bytes.
    Found(Vec<u8>),
    /// The layer hides it in the layers below (whiteout, opaque root).
    Hidden,
    /// The layer does not touch it.
    Absent,
}

/// Bytes still allowed to be read across the layers of one image.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    /// The limit, for messages.
    pub(crate) limit: u64,
    /// Compressed bytes left.
    raw: u64,
    /// Uncompressed (tar) bytes left.
    plain: u64,
}

impl Budget {
    /// `limit` bytes, compressed and uncompressed each.
    pub(crate) fn new(limit: u64) -> Self {
        Self {
            limit,
            raw: limit,
            plain: limit,
        }
    }
}

/// Why a layer could not be read for `config.dump`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LayerError {
    /// The layers are larger than the budget before their end.
    #[error("its layers are larger than the {limit} bytes pullgate reads to find config.dump ([server] checkpoint_read_bytes)")]
    OverBudget { limit: u64 },
    /// A compression pullgate does not read.
    #[error("a layer is {0}-compressed, which pullgate does not read")]
    Compression(&'static str),
    /// The tar stream is malformed or ends early.
    #[error("a layer is not a readable tar stream ({0})")]
    Tar(std::io::Error),
    /// `config.dump` is over [`MAX_CONFIG_DUMP_BYTES`].
    #[error("its config.dump is larger than {MAX_CONFIG_DUMP_BYTES} bytes")]
    ConfigDumpTooLarge,
    /// `config.dump` is not a regular file (a link, a directory, a device).
    #[error("its config.dump is not a regular file")]
    NotRegular,
}

/// Reads one layer blob to its end and says what it does to `/config.dump`.
///
/// # Errors
/// [`LayerError`]: over the budget, zstd, malformed tar or gzip, a
/// `config.dump` too large or not a regular file.
pub(crate) fn scan_layer(blob: impl Read, budget: &mut Budget) -> Result<InLayer, LayerError> {
    let over = Rc::new(Cell::new(false));
    let raw = Counted {
        inner: blob,
        left: budget.raw,
        over: Rc::clone(&over),
    };
    let mut raw = BufReader::new(raw);
    let magic = match raw.fill_buf() {
        Ok(b) => b.get(..4).map(<[u8]>::to_vec).unwrap_or_else(|| b.to_vec()),
        Err(e) => return Err(layer_error(e, &over, budget.limit)),
    };
    let result = if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return Err(LayerError::Compression("zstd"));
    } else if magic.starts_with(&[0x1f, 0x8b]) {
        let plain = Counted {
            inner: flate2::bufread::MultiGzDecoder::new(raw),
            left: budget.plain,
            over: Rc::clone(&over),
        };
        let (found, plain) = scan_tar(plain);
        budget.plain = plain.left;
        budget.raw = plain.inner.into_inner().into_inner().left;
        found
    } else {
        let plain = Counted {
            inner: raw,
            left: budget.plain,
            over: Rc::clone(&over),
        };
        let (found, plain) = scan_tar(plain);
        budget.plain = plain.left;
        budget.raw = plain.inner.into_inner().left;
        found
    };
    result.map_err(|e| match e {
        Scan::Io(e) => layer_error(e, &over, budget.limit),
        Scan::Layer(e) => e,
    })
}

/// A tar scan's failure before it is told apart from running over the budget.
enum Scan {
    Io(std::io::Error),
    Layer(LayerError),
}

/// Reads the tar stream `plain` to its end; hands the reader back for its count.
fn scan_tar<R: Read>(plain: R) -> (Result<InLayer, Scan>, R) {
    let mut archive = tar::Archive::new(plain);
    let found = scan_entries(&mut archive);
    (found, archive.into_inner())
}

fn scan_entries<R: Read>(archive: &mut tar::Archive<R>) -> Result<InLayer, Scan> {
    let mut last: Option<Result<Vec<u8>, LayerError>> = None;
    let mut hidden = false;
    for entry in archive.entries().map_err(Scan::Io)? {
        let mut entry = entry.map_err(Scan::Io)?;
        let path = entry.path_bytes().into_owned();
        let path = root_path(&path);
        match path.as_slice() {
            [name] if name.as_slice() == CONFIG_DUMP.as_bytes() => {
                last = Some(match entry.header().entry_type() {
                    tar::EntryType::Regular | tar::EntryType::Continuous => {
                        read_config_dump(&mut entry).map_err(Scan::Io)?
                    }
                    _ => Err(LayerError::NotRegular),
                });
            }
            // Something inside a directory of that name.
            [name, _, ..] if name.as_slice() == CONFIG_DUMP.as_bytes() => {
                last = Some(Err(LayerError::NotRegular));
            }
            [name]
                if name.as_slice() == CONFIG_DUMP_WHITEOUT.as_bytes()
                    || name.as_slice() == OPAQUE_WHITEOUT.as_bytes() =>
            {
                hidden = true;
            }
            _ => {}
        }
    }
    match last {
        Some(Ok(bytes)) => Ok(InLayer::Found(bytes)),
        Some(Err(e)) => Err(Scan::Layer(e)),
        None if hidden => Ok(InLayer::Hidden),
        None => Ok(InLayer::Absent),
    }
}

/// The file's bytes, or [`LayerError::ConfigDumpTooLarge`]; the rest of an
/// entry is skipped by the archive.
fn read_config_dump(entry: &mut impl Read) -> std::io::Result<Result<Vec<u8>, LayerError>> {
    let mut bytes = Vec::new();
    entry
        .take(MAX_CONFIG_DUMP_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_CONFIG_DUMP_BYTES {
        return Ok(Err(LayerError::ConfigDumpTooLarge));
    }
    Ok(Ok(bytes))
}

/// A tar entry's path as containerd unpacks it: components below the
/// layer's root, `.` dropped and `..` stopping at the root.
fn root_path(path: &[u8]) -> Vec<Vec<u8>> {
    let mut parts: Vec<Vec<u8>> = Vec::new();
    for part in path.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                parts.pop();
            }
            p => parts.push(p.to_vec()),
        }
    }
    parts
}

/// Tells running over the budget apart from a malformed stream.
fn layer_error(e: std::io::Error, over: &Cell<bool>, limit: u64) -> LayerError {
    if over.get() {
        LayerError::OverBudget { limit }
    } else {
        LayerError::Tar(e)
    }
}

/// A reader that fails once more than `left` bytes have come through it.
struct Counted<R> {
    inner: R,
    left: u64,
    over: Rc<Cell<bool>>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        match self.left.checked_sub(n as u64) {
            Some(left) => {
                self.left = left;
                Ok(n)
            }
            None => {
                self.over.set(true);
                Err(std::io::Error::other("over the checkpoint read budget"))
            }
        }
    }
}

/// The base image a checkpoint restores onto, as its `config.dump` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CheckpointBase {
    /// `rootfsImageRef`: what containerd looks up, and pulls when it lacks it.
    pub(crate) image: ImageRef,
}

/// Why `config.dump` names no base image pullgate can decide on.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigDumpError {
    /// Not a JSON object.
    #[error("its config.dump is not a JSON object ({0})")]
    Json(String),
    /// `rootfsImageRef` missing, empty, or not a string.
    #[error("its config.dump names no base image (rootfsImageRef)")]
    NoBase,
    /// `rootfsImageRef` spelled more than one way (Go would take one of them).
    #[error("its config.dump names its base image more than once")]
    Ambiguous,
    /// The base image reference does not parse.
    #[error("its base image {image:?} is not an image reference ({source})")]
    Reference {
        image: String,
        source: pullgate_policy::reference::ReferenceError,
    },
    /// The reference carries no digest: containerd would resolve a tag
    /// pullgate did not verify.
    #[error("its base image {0} is not pinned by digest")]
    NotPinned(String),
    /// The reference is not spelled canonically (`host/repository@digest`),
    /// so containerd's own lookup could find something else.
    #[error("its base image {given:?} is not written as containerd writes it ({canonical})")]
    NotCanonical { given: String, canonical: String },
}

/// The base image `config.dump`'s bytes name.
///
/// # Errors
/// [`ConfigDumpError`]: not JSON, no (or an ambiguous) `rootfsImageRef`, or
/// one that is not a canonical `name@digest`.
pub(crate) fn base_of(config_dump: &[u8]) -> Result<CheckpointBase, ConfigDumpError> {
    let value: serde_json::Value =
        serde_json::from_slice(config_dump).map_err(|e| ConfigDumpError::Json(e.to_string()))?;
    let object = value
        .as_object()
        .ok_or_else(|| ConfigDumpError::Json("not an object".to_owned()))?;
    let mut named = object
        .iter()
        .filter(|(k, _)| go_fold_eq(k, "rootfsImageRef"))
        .map(|(_, v)| v);
    let given = match (named.next(), named.next()) {
        (Some(v), None) => v.as_str().filter(|s| !s.is_empty()),
        (Some(_), Some(_)) => return Err(ConfigDumpError::Ambiguous),
        (None, _) => None,
    }
    .ok_or(ConfigDumpError::NoBase)?;
    let image: ImageRef = given.parse().map_err(|source| ConfigDumpError::Reference {
        image: given.chars().take(256).collect(),
        source,
    })?;
    if image.digest().is_none() {
        return Err(ConfigDumpError::NotPinned(image.to_string()));
    }
    let canonical = image.to_string();
    if canonical != given {
        return Err(ConfigDumpError::NotCanonical {
            given: given.chars().take(256).collect(),
            canonical,
        });
    }
    Ok(CheckpointBase { image })
}

/// Whether Go's `encoding/json` would match JSON key `key` to a field named
/// `field` (ASCII `field`): equal under Unicode simple case folding, whose
/// only non-ASCII members that fold to ASCII letters are `ſ` (s) and the
/// Kelvin sign (k).
pub(crate) fn go_fold_eq(key: &str, field: &str) -> bool {
    let folded = key.chars().map(|c| match c {
        '\u{17f}' => 's',
        '\u{212a}' => 'k',
        c => c.to_ascii_lowercase(),
    });
    folded.eq(field.chars().map(|c| c.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    const BASE: &str =
        "registry.example/app/base@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    /// A tar stream with these entries, names written as given (`..` included).
    fn tar_of(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, kind, data) in entries {
            let mut h = tar::Header::new_ustar();
            h.as_ustar_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
            h.set_entry_type(*kind);
            h.set_mode(0o644);
            let data: &[u8] = if *kind == tar::EntryType::Symlink {
                h.set_link_name("/etc/passwd").unwrap();
                &[]
            } else {
                data
            };
            h.set_size(data.len() as u64);
            h.set_cksum();
            out.extend_from_slice(h.as_bytes());
            out.extend_from_slice(data);
            out.resize(out.len().div_ceil(512) * 512, 0);
        }
        out.resize(out.len() + 1024, 0);
        out
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(data).unwrap();
        gz.finish().unwrap()
    }

    fn dump(base: &str) -> Vec<u8> {
        format!(r#"{{"id":"c1","name":"web","rootfsImageRef":"{base}","rootfsImageName":"registry.example/app/base:1"}}"#).into_bytes()
    }

    fn scan(blob: &[u8], limit: u64) -> Result<InLayer, LayerError> {
        scan_layer(blob, &mut Budget::new(limit))
    }

    const REG: tar::EntryType = tar::EntryType::Regular;

    #[test]
    fn config_dump_is_found_behind_filler_in_plain_and_gzip_tar() {
        let filler = vec![7u8; 64 << 10];
        let layer = tar_of(&[
            ("checkpoint/pages-1.img", REG, &filler),
            ("./config.dump", REG, &dump(BASE)),
            ("spec.dump", REG, b"{}"),
        ]);
        for blob in [layer.clone(), gzip(&layer)] {
            let InLayer::Found(bytes) = scan(&blob, 1 << 20).unwrap() else {
                panic!("config.dump not found")
            };
            assert_eq!(base_of(&bytes).unwrap().image.to_string(), BASE);
        }
    }

    #[test]
    fn the_last_config_dump_of_a_layer_is_the_one_read() {
        let other = BASE.replace("aaaa", "bbbb");
        let layer = tar_of(&[
            ("config.dump", REG, &dump(BASE)),
            ("checkpoint/x", REG, b"x"),
            ("config.dump", REG, &dump(&other)),
        ]);
        let InLayer::Found(bytes) = scan(&layer, 1 << 20).unwrap() else {
            panic!("config.dump not found")
        };
        assert_eq!(base_of(&bytes).unwrap().image.to_string(), other);
        // A link last: not a regular file, whatever came before.
        let layer = tar_of(&[
            ("config.dump", REG, &dump(BASE)),
            ("config.dump", tar::EntryType::Symlink, b""),
        ]);
        assert!(matches!(scan(&layer, 1 << 20), Err(LayerError::NotRegular)));
        let layer = tar_of(&[("config.dump/inner", REG, b"x")]);
        assert!(matches!(scan(&layer, 1 << 20), Err(LayerError::NotRegular)));
    }

    #[test]
    fn whiteouts_hide_and_other_paths_are_not_config_dump() {
        let layer = tar_of(&[(".wh.config.dump", REG, b"")]);
        assert_eq!(scan(&layer, 1 << 20).unwrap(), InLayer::Hidden);
        let layer = tar_of(&[("./.wh..wh..opq", REG, b"")]);
        assert_eq!(scan(&layer, 1 << 20).unwrap(), InLayer::Hidden);
        let layer = tar_of(&[
            ("sub/config.dump", REG, &dump(BASE)),
            ("config.dumpx", REG, &dump(BASE)),
        ]);
        assert_eq!(scan(&layer, 1 << 20).unwrap(), InLayer::Absent);
        // `..` stops at the root, as unpacking does.
        let layer = tar_of(&[("a/../../config.dump", REG, &dump(BASE))]);
        assert!(matches!(scan(&layer, 1 << 20), Ok(InLayer::Found(_))));
    }

    #[test]
    fn a_layer_over_the_budget_is_refused_even_after_config_dump() {
        let filler = vec![1u8; 256 << 10];
        let behind = tar_of(&[
            ("checkpoint/pages-1.img", REG, &filler),
            ("config.dump", REG, &dump(BASE)),
        ]);
        let ahead = tar_of(&[
            ("config.dump", REG, &dump(BASE)),
            ("checkpoint/pages-1.img", REG, &filler),
        ]);
        for layer in [&behind, &ahead] {
            for blob in [layer.clone(), gzip(layer)] {
                assert!(
                    matches!(scan(&blob, 64 << 10), Err(LayerError::OverBudget { limit }) if limit == 64 << 10)
                );
            }
        }
        // The budget is shared: two layers that fit alone do not fit together.
        let mut budget = Budget::new(400 << 10);
        assert!(scan_layer(behind.as_slice(), &mut budget).is_ok());
        assert!(matches!(
            scan_layer(behind.as_slice(), &mut budget),
            Err(LayerError::OverBudget { .. })
        ));
    }

    #[test]
    fn malformed_truncated_and_zstd_layers_are_typed_errors() {
        let layer = tar_of(&[
            ("checkpoint/pages-1.img", REG, &[3u8; 4096]),
            ("config.dump", REG, &dump(BASE)),
        ]);
        for cut in [100, 600, 3000, 4700] {
            assert!(
                matches!(scan(&layer[..cut], 1 << 20), Err(LayerError::Tar(_))),
                "cut at {cut}"
            );
        }
        let gz = gzip(&layer);
        assert!(matches!(
            scan(&gz[..gz.len() / 2], 1 << 20),
            Err(LayerError::Tar(_))
        ));
        let mut bad = gzip(&layer);
        let n = bad.len();
        bad[n / 2] ^= 0xff;
        bad[n / 2 + 1] ^= 0xff;
        assert!(matches!(scan(&bad, 1 << 20), Err(LayerError::Tar(_))));
        assert!(matches!(
            scan(&[0x28, 0xb5, 0x2f, 0xfd, 0, 0], 1 << 20),
            Err(LayerError::Compression("zstd"))
        ));
        assert_eq!(scan(&[], 1 << 20).unwrap(), InLayer::Absent);
        let mut header = layer.clone();
        header[148..156].copy_from_slice(b"zzzzzzzz"); // checksum field
        assert!(matches!(scan(&header, 1 << 20), Err(LayerError::Tar(_))));
    }

    #[test]
    fn an_oversize_config_dump_is_refused() {
        let big = vec![b' '; (MAX_CONFIG_DUMP_BYTES + 1) as usize];
        let layer = tar_of(&[("config.dump", REG, &big)]);
        assert!(matches!(
            scan(&layer, 4 << 20),
            Err(LayerError::ConfigDumpTooLarge)
        ));
    }

    #[test]
    fn the_base_is_a_canonical_pinned_reference_named_once() {
        assert_eq!(base_of(&dump(BASE)).unwrap().image.to_string(), BASE);
        assert!(matches!(base_of(b"[]"), Err(ConfigDumpError::Json(_))));
        assert!(matches!(base_of(b"{"), Err(ConfigDumpError::Json(_))));
        assert!(matches!(base_of(b"{}"), Err(ConfigDumpError::NoBase)));
        assert!(matches!(
            base_of(br#"{"rootfsImageRef":7}"#),
            Err(ConfigDumpError::NoBase)
        ));
        assert!(matches!(
            base_of(&dump("registry.example/app/base:1")),
            Err(ConfigDumpError::NotPinned(_))
        ));
        let short = BASE
            .replacen("registry.example/", "", 1)
            .replace("app/base", "base");
        assert!(matches!(
            base_of(&dump(&short)),
            Err(ConfigDumpError::NotCanonical { .. })
        ));
        assert!(matches!(
            base_of(&dump("Not A Ref")),
            Err(ConfigDumpError::Reference { .. })
        ));
        // Go matches field names case-insensitively: two spellings are refused.
        let twice = format!(
            r#"{{"rootfsImageRef":"{BASE}","ROOTFSIMAGEREF":"x/y@sha256:{}"}}"#,
            "b".repeat(64)
        );
        assert!(matches!(
            base_of(twice.as_bytes()),
            Err(ConfigDumpError::Ambiguous)
        ));
        let folded = format!(r#"{{"rootfſImageRef":"{BASE}"}}"#);
        assert_eq!(base_of(folded.as_bytes()).unwrap().image.to_string(), BASE);
    }

    proptest::proptest! {
        #[test]
        fn scanning_never_panics(b in proptest::collection::vec(proptest::num::u8::ANY, 0..2048)) {
            let _ = scan(&b, 1 << 20);
            let _ = base_of(&b);
        }
    }
}
