//! Checkpoint images: `CreateContainer` of one restores a container onto
//! the base image its `config.dump` names (containerd 2.1–2.3; removed
//! upstream after), which containerd looks up, and pulls itself when it
//! lacks it — around the gate. So that base image is found here, for the
//! `CreateContainer` door to admit (or pull through the gate) like the
//! container's own image.
//!
//! Input: what containerd holds under the container's image
//! ([`PresentImage`]). containerd takes an image for a checkpoint when the
//! manifest (or index) its record targets carries the annotation
//! [`CHECKPOINT_ANNOTATION`]; every record of the image is checked (the id's
//! record too), since which one containerd reads is its own choice. For a
//! checkpoint manifest, its layers are read from containerd's content
//! store, top layer first, for `config.dump` (see `config_dump`). Output:
//! the base image each checkpoint manifest names, or a [`Unreadable`].
//!
//! Cache: the answer per manifest digest (plain, or the base it names) is
//! kept (`quick_cache`, at most [`MAX_KNOWN`] digests): a manifest names its layers by
//! digest, so what it says never changes.
//!
//! Limits: a manifest is read up to [`MAX_MANIFEST_BYTES`], at most
//! [`MAX_LAYERS`] layers; the layers of one checkpoint up to `[server]
//! checkpoint_read_bytes` (compressed and uncompressed, each); all under
//! the request's deadline.

use std::io::Read;
use std::sync::Arc;

use bytes::Bytes;
use pullgate_policy::Digest;
use pullgate_proto::containerd::services::content::v1 as content;
use quick_cache::sync::Cache;
use serde_json::Value;
use tokio::sync::mpsc;
use tonic::transport::Channel;

use super::config_dump::{base_of, go_fold_eq, scan_layer, Budget, CheckpointBase, InLayer};
use super::image_records::PresentImage;
use super::refusal::CheckpointError;
use crate::deadline::Deadline;

/// The annotation containerd (checkpointctl) marks a checkpoint image with.
pub(crate) const CHECKPOINT_ANNOTATION: &str = "org.criu.checkpoint.container.name";

/// Largest manifest read.
pub(crate) const MAX_MANIFEST_BYTES: usize = 4 << 20;

/// Most layers of a checkpoint manifest read.
pub(crate) const MAX_LAYERS: usize = 128;

/// Most manifest digests whose answer is kept.
pub(crate) const MAX_KNOWN: usize = 1024;

/// Layer chunks in flight between containerd's stream and the tar reader.
const CHUNKS_IN_FLIGHT: usize = 4;

/// A checkpoint manifest and the base image it restores onto.
#[derive(Debug, Clone)]
pub(crate) struct Restore {
    /// The checkpoint image, as its record names it.
    pub(crate) checkpoint: String,
    pub(crate) base: Arc<CheckpointBase>,
}

/// An image pullgate could not classify, or a checkpoint whose base it
/// could not find.
#[derive(Debug)]
pub(crate) struct Unreadable {
    /// The image, as its record names it.
    pub(crate) image: String,
    /// Whether the image was known to be a checkpoint.
    pub(crate) checkpoint: bool,
    pub(crate) error: CheckpointError,
}

/// What a manifest is, once read.
#[derive(Debug, Clone)]
enum Known {
    Plain,
    Checkpoint(Arc<CheckpointBase>),
}

/// Reads checkpoint images out of containerd's content store.
#[derive(Debug, Clone)]
pub(crate) struct Checkpoints {
    content: content::content_client::ContentClient<Channel>,
    namespace: String,
    /// `[server] checkpoint_read_bytes`.
    read_limit: u64,
    known: Arc<Cache<Digest, Known>>,
}

impl Checkpoints {
    /// Reads over `channel` (containerd's socket), in `namespace`, at most
    /// `read_limit` bytes of one checkpoint's layers.
    pub(crate) fn new(channel: Channel, namespace: String, read_limit: u64) -> Self {
        Self {
            content: content::content_client::ContentClient::new(channel),
            namespace,
            read_limit,
            known: Arc::new(Cache::new(MAX_KNOWN)),
        }
    }

    /// The restores `present` would make: one per checkpoint manifest among
    /// its records' targets; none for an image that is not a checkpoint.
    ///
    /// # Errors
    /// [`Unreadable`]: a manifest or a checkpoint's layers could not be
    /// read, or name no usable base image.
    ///
    /// # Cancel safety
    /// Cancel safe: nothing is written but the cache.
    pub(crate) async fn restores(
        &self,
        present: &PresentImage,
        deadline: Deadline,
    ) -> Result<Vec<Restore>, Unreadable> {
        let mut targets: Vec<(String, &Digest)> = present
            .records
            .iter()
            .map(|p| (p.to_string(), p.digest()))
            .collect();
        if let Some(d) = &present.id_target {
            targets.push((present.id.clone(), d));
        }
        let mut seen: Vec<&Digest> = Vec::new();
        let mut restores = Vec::new();
        for (name, digest) in targets {
            if seen.contains(&digest) {
                continue;
            }
            seen.push(digest);
            match self.kind_of(digest, deadline).await {
                Ok(Known::Plain) => {}
                Ok(Known::Checkpoint(base)) => restores.push(Restore {
                    checkpoint: name,
                    base,
                }),
                Err((checkpoint, error)) => {
                    return Err(Unreadable {
                        image: name,
                        checkpoint,
                        error,
                    })
                }
            }
        }
        Ok(restores)
    }

    /// What `manifest` is; the error says whether it was known to be a checkpoint.
    async fn kind_of(
        &self,
        manifest: &Digest,
        deadline: Deadline,
    ) -> Result<Known, (bool, CheckpointError)> {
        if let Some(k) = self.cached(manifest) {
            return Ok(k);
        }
        let bytes = self
            .read_whole(manifest, deadline)
            .await
            .map_err(|e| (false, e))?;
        let kind = match checkpoint_layers(manifest, &bytes).map_err(|e| (false, e))? {
            None => Known::Plain,
            Some(layers) => Known::Checkpoint(Arc::new(
                self.base_in(&layers, deadline)
                    .await
                    .map_err(|e| (true, e))?,
            )),
        };
        self.remember(manifest, kind.clone());
        Ok(kind)
    }

    /// The base image `config.dump` names, read from `layers` top first.
    async fn base_in(
        &self,
        layers: &[Digest],
        deadline: Deadline,
    ) -> Result<CheckpointBase, CheckpointError> {
        let mut budget = Budget::new(self.read_limit);
        for layer in layers.iter().rev() {
            let (found, left) = self.scan(layer, budget, deadline).await?;
            budget = left;
            match found {
                InLayer::Found(bytes) => return Ok(base_of(&bytes)?),
                InLayer::Hidden => break,
                InLayer::Absent => {}
            }
        }
        Err(CheckpointError::NoConfigDump)
    }

    /// Streams `layer` from containerd into the tar reader (a blocking task).
    async fn scan(
        &self,
        layer: &Digest,
        budget: Budget,
        deadline: Deadline,
    ) -> Result<(InLayer, Budget), CheckpointError> {
        let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
        let reader = tokio::task::spawn_blocking(move || {
            let mut budget = budget;
            let found = scan_layer(Chunks::new(rx), &mut budget);
            (found, budget)
        });
        let (streamed, scanned) = tokio::join!(self.stream(layer, tx, deadline), reader);
        streamed?;
        let (found, budget) = scanned.map_err(CheckpointError::Reader)?;
        Ok((found?, budget))
    }

    /// Sends blob `digest` into `tx` in containerd's chunks, then
    /// [`Chunk::End`]; stops early, without error, when the reader is done.
    async fn stream(
        &self,
        digest: &Digest,
        tx: mpsc::Sender<Chunk>,
        deadline: Deadline,
    ) -> Result<(), CheckpointError> {
        let streamed = async {
            let mut stream = self.open(digest).await?;
            while let Some(msg) = stream.message().await.map_err(content_error(digest))? {
                if tx.send(Chunk::Data(Bytes::from(msg.data))).await.is_err() {
                    return Ok(());
                }
            }
            let _ = tx.send(Chunk::End).await;
            Ok(())
        };
        deadline
            .run(streamed)
            .await
            .map_err(|_| CheckpointError::Deadline)?
    }

    /// Blob `digest` whole, up to [`MAX_MANIFEST_BYTES`].
    async fn read_whole(
        &self,
        digest: &Digest,
        deadline: Deadline,
    ) -> Result<Vec<u8>, CheckpointError> {
        let read = async {
            let mut stream = self.open(digest).await?;
            let mut bytes = Vec::new();
            while let Some(msg) = stream.message().await.map_err(content_error(digest))? {
                if bytes.len() + msg.data.len() > MAX_MANIFEST_BYTES {
                    return Err(CheckpointError::ManifestTooLarge {
                        digest: digest.clone(),
                        limit: MAX_MANIFEST_BYTES,
                    });
                }
                bytes.extend_from_slice(&msg.data);
            }
            Ok(bytes)
        };
        deadline
            .run(read)
            .await
            .map_err(|_| CheckpointError::Deadline)?
    }

    /// containerd's stream of blob `digest`, from its start.
    async fn open(
        &self,
        digest: &Digest,
    ) -> Result<tonic::Streaming<content::ReadContentResponse>, CheckpointError> {
        let stream = self
            .content
            .clone()
            .read(self.request(digest))
            .await
            .map_err(content_error(digest))?;
        Ok(stream.into_inner())
    }

    fn request(&self, digest: &Digest) -> tonic::Request<content::ReadContentRequest> {
        let mut req = tonic::Request::new(content::ReadContentRequest {
            digest: digest.to_string(),
            offset: 0,
            size: 0,
        });
        if let Ok(v) = self.namespace.parse() {
            req.metadata_mut().insert("containerd-namespace", v);
        }
        req
    }

    fn cached(&self, manifest: &Digest) -> Option<Known> {
        self.known.get(manifest)
    }

    fn remember(&self, manifest: &Digest, kind: Known) {
        self.known.insert(manifest.clone(), kind);
    }
}

/// The layers of `manifest` (`bytes`) when it carries
/// [`CHECKPOINT_ANNOTATION`], read as containerd's Go code reads it (field
/// names case-insensitive); `None` for any other manifest or index.
///
/// # Errors
/// [`CheckpointError`]: not a JSON object; a checkpoint that is an index,
/// or whose layers are not a list of descriptors.
fn checkpoint_layers(
    manifest: &Digest,
    bytes: &[u8],
) -> Result<Option<Vec<Digest>>, CheckpointError> {
    let unreadable = |why| CheckpointError::Manifest {
        digest: manifest.clone(),
        why,
    };
    let value: Value = serde_json::from_slice(bytes).map_err(|_| unreadable("not JSON"))?;
    let object = value.as_object().ok_or(unreadable("not a JSON object"))?;
    let fields = |name: &'static str| {
        object
            .iter()
            .filter(move |(k, _)| go_fold_eq(k, name))
            .map(|(_, v)| v)
    };
    // Any spelling carrying the annotation counts: which one Go keeps is its choice.
    let marked = fields("annotations").any(|a| {
        a.as_object()
            .is_some_and(|a| a.contains_key(CHECKPOINT_ANNOTATION))
    });
    if !marked {
        return Ok(None);
    }
    if fields("manifests").next().is_some() {
        return Err(CheckpointError::Index);
    }
    let mut layers = fields("layers");
    let (Some(Value::Array(layers)), None) = (layers.next(), layers.next()) else {
        return Err(unreadable("no single list of layers"));
    };
    if layers.len() > MAX_LAYERS {
        return Err(unreadable("too many layers"));
    }
    layers
        .iter()
        .map(|l| {
            let mut digests = l
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(k, _)| go_fold_eq(k, "digest"))
                .map(|(_, v)| v);
            match (digests.next(), digests.next()) {
                (Some(Value::String(d)), None) => d
                    .parse()
                    .map_err(|_| unreadable("a layer digest does not parse")),
                _ => Err(unreadable("a layer without a single digest")),
            }
        })
        .collect::<Result<Vec<Digest>, _>>()
        .map(Some)
}

/// One message between the content stream and the tar reader.
#[derive(Debug)]
enum Chunk {
    Data(Bytes),
    /// The blob ended; a channel closed without it was cut off.
    End,
}

/// The blocking side of a layer stream: a [`Read`] over [`Chunk`]s.
struct Chunks {
    rx: mpsc::Receiver<Chunk>,
    current: Bytes,
    ended: bool,
}

impl Chunks {
    fn new(rx: mpsc::Receiver<Chunk>) -> Self {
        Self {
            rx,
            current: Bytes::new(),
            ended: false,
        }
    }
}

impl Read for Chunks {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            if self.ended {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(Chunk::Data(b)) => self.current = b,
                Some(Chunk::End) => self.ended = true,
                None => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the layer stream was cut off",
                    ))
                }
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// What a failed read of blob `digest` from containerd's content store is.
fn content_error(digest: &Digest) -> impl Fn(tonic::Status) -> CheckpointError + '_ {
    move |source| CheckpointError::Content {
        digest: digest.clone(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(c: char) -> Digest {
        format!("sha256:{}", c.to_string().repeat(64))
            .parse()
            .unwrap()
    }

    fn manifest(annotations: &str, layers: &str) -> Vec<u8> {
        format!(
            r#"{{"schemaVersion":2,"config":{{"digest":"{}"}},"layers":[{layers}]{annotations}}}"#,
            digest('c')
        )
        .into_bytes()
    }

    fn layer(c: char) -> String {
        format!(
            r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":1}}"#,
            digest(c)
        )
    }

    #[test]
    fn only_a_manifest_carrying_the_annotation_is_a_checkpoint() {
        let m = digest('e');
        let two = format!("{},{}", layer('1'), layer('2'));
        assert_eq!(checkpoint_layers(&m, &manifest("", &two)).unwrap(), None);
        let other = r#","annotations":{"org.opencontainers.image.title":"x"}"#;
        assert_eq!(checkpoint_layers(&m, &manifest(other, &two)).unwrap(), None);
        let marked = format!(r#","annotations":{{"{CHECKPOINT_ANNOTATION}":"web"}}"#);
        assert_eq!(
            checkpoint_layers(&m, &manifest(&marked, &two)).unwrap(),
            Some(vec![digest('1'), digest('2')])
        );
        // Go matches `Annotations` to the field too.
        let shouted = format!(r#","ANNOTATIONS":{{"{CHECKPOINT_ANNOTATION}":"web"}}"#);
        assert!(checkpoint_layers(&m, &manifest(&shouted, &two))
            .unwrap()
            .is_some());
        // Marked, but no usable layers, or an index: refused, not guessed at.
        assert!(matches!(
            checkpoint_layers(&m, format!(r#"{{"manifests":[]{marked}}}"#).as_bytes()),
            Err(CheckpointError::Index)
        ));
        assert!(matches!(
            checkpoint_layers(
                &m,
                format!(r#"{{"layers":[{{"size":1}}]{marked}}}"#).as_bytes()
            ),
            Err(CheckpointError::Manifest { .. })
        ));
        assert!(matches!(
            checkpoint_layers(
                &m,
                format!(r#"{{"layers":[],"Layers":[]{marked}}}"#).as_bytes()
            ),
            Err(CheckpointError::Manifest { .. })
        ));
        assert!(matches!(
            checkpoint_layers(&m, b"[1]"),
            Err(CheckpointError::Manifest { .. })
        ));
        assert!(matches!(
            checkpoint_layers(&m, b"\xff"),
            Err(CheckpointError::Manifest { .. })
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn chunks_read_across_messages_and_a_cut_off_stream_is_an_error() {
        let (tx, rx) = mpsc::channel(4);
        let reader = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            Chunks::new(rx).read_to_end(&mut out).map(|_| out)
        });
        tx.send(Chunk::Data(Bytes::from_static(b"con")))
            .await
            .unwrap();
        tx.send(Chunk::Data(Bytes::from_static(b"fig")))
            .await
            .unwrap();
        tx.send(Chunk::End).await.unwrap();
        assert_eq!(reader.await.unwrap().unwrap(), b"config");

        let (tx, rx) = mpsc::channel(4);
        let reader = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            Chunks::new(rx).read_to_end(&mut out)
        });
        tx.send(Chunk::Data(Bytes::from_static(b"con")))
            .await
            .unwrap();
        drop(tx);
        assert!(reader.await.unwrap().is_err());
    }
}
