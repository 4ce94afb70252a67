//! Prefetch (`[prefetch] enabled`): a cold pull's content is written into
//! containerd's content store under a lease while its signatures are
//! verified. Allowed, containerd finds the blobs and fetches none of them
//! again; denied, the lease is gone and so is the content; a blob over
//! `max_bytes_per_pull` is left to containerd; a layer in flight at the
//! allow is resumed by containerd where pullgate stopped writing it.

use std::time::Duration;

use pullgate_tests::child::free_port;
use pullgate_tests::cri;
use pullgate_tests::image::{build_layered_image, push_layered_image, LayeredImage, PushedImage};
use pullgate_tests::oci_registry::{Fault, FaultTarget, RequestKind};
use pullgate_tests::pullgate::{metric, Pullgate};
use pullgate_tests::testbed::OciTestbed;

/// How long discovery's referrers answer is held back, so the prefetch runs ahead of the verdict.
const DISCOVERY_DELAY: Duration = Duration::from_millis(1500);

/// The label pullgate's prefetch leases carry.
const LEASE_LABEL: &str = "pullgate.io/prefetch";

async fn start(bed: &OciTestbed, prefetch: &str) -> anyhow::Result<(Pullgate, u16)> {
    let port = free_port().await?;
    let mut config = bed.pullgate_config();
    config.extra = format!(
        "[prefetch]\nenabled = true\n{prefetch}\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n"
    );
    Ok((bed.start_pullgate_with(&config).await?, port))
}

async fn push(
    bed: &OciTestbed,
    repo: &str,
    sizes: &[usize],
) -> anyhow::Result<(LayeredImage, PushedImage)> {
    let image = build_layered_image(sizes)?;
    let pushed = push_layered_image(&bed.host(), repo, "v1", &image).await?;
    Ok((image, pushed))
}

/// A pushed image (signed when `signed`), discovery held back `delay` so
/// the prefetch runs ahead of the verdict, and pullgate with `[prefetch]`
/// and `extra` in front of containerd.
struct Cold {
    bed: OciTestbed,
    image: LayeredImage,
    pushed: PushedImage,
    pullgate: Pullgate,
    port: u16,
    ch: tonic::transport::Channel,
    tag_ref: String,
}

impl Cold {
    async fn start(
        repo: &str,
        sizes: &[usize],
        signed: bool,
        delay: Duration,
        extra: &str,
    ) -> anyhow::Result<Self> {
        let bed = OciTestbed::start().await?;
        let (image, pushed) = push(&bed, repo, sizes).await?;
        if signed {
            bed.sign(repo, &pushed, &bed.pki).await?;
        }
        bed.registry.set_fault(
            FaultTarget::Kind(RequestKind::Referrers),
            Fault::DelayHeaders(delay),
        );
        let (pullgate, port) = start(&bed, extra).await?;
        let ch = cri::connect(pullgate.socket()).await?;
        let tag_ref = bed.image_ref(repo, "v1");
        Ok(Self {
            bed,
            image,
            pushed,
            pullgate,
            port,
            ch,
            tag_ref,
        })
    }

    /// Pulls the tag through pullgate, which must allow it; returns the image id.
    async fn pull_allowed(&self) -> anyhow::Result<String> {
        let image_ref = cri::pull(&self.ch, &self.tag_ref)
            .await
            .map_err(|s| anyhow::anyhow!("pull refused: {s:?}\n{}", self.pullgate.log_tail()))?;
        let status = cri::image_status(&self.ch, &self.tag_ref).await?;
        anyhow::ensure!(
            status.map(|s| s.id).as_ref() == Some(&image_ref),
            "{} does not name the pulled image",
            self.tag_ref
        );
        Ok(image_ref)
    }
}

/// `GET`s of blob `digest` the registry answered.
fn blob_gets(bed: &OciTestbed, digest: &str) -> usize {
    let suffix = format!("/blobs/{digest}");
    bed.registry
        .seen()
        .iter()
        .filter(|s| s.kind == RequestKind::BlobGet && s.path.ends_with(&suffix))
        .count()
}

/// The value of the sample `name` (with its labels, if any) on pullgate's `/metrics`.
async fn prefetch_leases(containerd: &tonic::transport::Channel) -> anyhow::Result<Vec<String>> {
    Ok(cri::containerd_leases(containerd)
        .await?
        .into_iter()
        .filter(|(_, labels)| labels.contains_key(LEASE_LABEL))
        .map(|(id, _)| id)
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn an_allowed_cold_pull_fetches_each_blob_once() {
    let repo = "app/prefetch-allowed";
    let cold = Cold::start(repo, &[256 << 10, 128 << 10], true, DISCOVERY_DELAY, "")
        .await
        .unwrap();
    let (bed, image) = (&cold.bed, &cold.image);

    let image_ref = cold.pull_allowed().await.unwrap();
    let listed = cri::list_images(&cold.ch).await.unwrap();
    assert!(listed.iter().any(|i| i.id == image_ref), "{listed:?}");

    // pullgate fetched them ahead; containerd found them and fetched none again.
    for digest in image.layer_digests().iter().chain([&image.config_digest()]) {
        assert_eq!(blob_gets(bed, digest), 1, "GETs of {digest}");
    }
    let layer_bytes: usize = image.layers.iter().map(Vec::len).sum();
    let prefetched = metric(cold.port, "pullgate_prefetched_bytes_total")
        .await
        .unwrap();
    assert!(
        prefetched >= layer_bytes as f64,
        "prefetched {prefetched} of {layer_bytes}"
    );
    assert_eq!(
        metric(cold.port, "pullgate_prefetches_total{outcome=\"allowed\"}")
            .await
            .unwrap(),
        1.0
    );
    let direct = cri::connect(bed.containerd.socket()).await.unwrap();
    assert_eq!(
        prefetch_leases(&direct).await.unwrap(),
        Vec::<String>::new()
    );
    // The image record holds the content now the lease is gone.
    for digest in image.layer_digests() {
        assert!(cri::containerd_has_content(&direct, &digest).await.unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn a_denied_pull_leaves_no_prefetched_content_behind() {
    let repo = "app/prefetch-denied";
    let cold = Cold::start(repo, &[256 << 10, 128 << 10], false, DISCOVERY_DELAY, "")
        .await
        .unwrap();
    let (bed, image) = (&cold.bed, &cold.image);

    let denied = cri::pull(&cold.ch, &cold.tag_ref).await.unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied:?}");

    // The content was fetched and written ahead of the verdict...
    for digest in image.layer_digests() {
        assert_eq!(blob_gets(bed, &digest), 1, "GETs of {digest}");
    }
    let layer_bytes: usize = image.layers.iter().map(Vec::len).sum();
    let prefetched = metric(cold.port, "pullgate_prefetched_bytes_total")
        .await
        .unwrap();
    assert!(
        prefetched >= layer_bytes as f64,
        "prefetched {prefetched} of {layer_bytes}\n{}",
        cold.pullgate.log_tail()
    );
    assert_eq!(
        metric(
            cold.port,
            "pullgate_prefetches_total{outcome=\"discarded\"}"
        )
        .await
        .unwrap(),
        1.0
    );
    // ...and is gone with its lease once the denial is answered.
    let direct = cri::connect(bed.containerd.socket()).await.unwrap();
    assert_eq!(
        prefetch_leases(&direct).await.unwrap(),
        Vec::<String>::new()
    );
    let blobs = image
        .layer_digests()
        .into_iter()
        .chain([image.config_digest(), cold.pushed.digest.clone()]);
    for digest in blobs {
        assert!(
            !cri::containerd_has_content(&direct, &digest).await.unwrap(),
            "{digest} still in containerd's content store"
        );
    }
    let images = cri::list_images(&direct).await.unwrap();
    assert!(
        !images
            .iter()
            .any(|i| i.repo_digests.iter().any(|d| d.contains(repo))),
        "{images:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn a_layer_over_the_per_pull_budget_is_left_to_containerd() {
    let cap = 64 << 10;
    let cold = Cold::start(
        "app/prefetch-capped",
        &[256 << 10],
        true,
        DISCOVERY_DELAY,
        &format!("max_bytes_per_pull = {cap}"),
    )
    .await
    .unwrap();
    let (bed, image) = (&cold.bed, &cold.image);
    cold.pull_allowed().await.unwrap();

    // The manifest and config fit and were prefetched; the layer did not and containerd fetched it.
    let prefetched = metric(cold.port, "pullgate_prefetched_bytes_total")
        .await
        .unwrap();
    let small = (image.manifest.len() + image.config.len()) as f64;
    assert_eq!(prefetched, small, "{}", cold.pullgate.log_tail());
    assert_eq!(blob_gets(bed, &image.config_digest()), 1);
    assert_eq!(blob_gets(bed, &image.layer_digests()[0]), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn a_layer_in_flight_at_the_allow_is_resumed_by_containerd_where_pullgate_stopped() {
    let cold = Cold::start(
        "app/prefetch-handover",
        &[8 << 20],
        true,
        Duration::from_millis(800),
        "",
    )
    .await
    .unwrap();
    let (bed, image) = (&cold.bed, &cold.image);
    // 1.6 MiB/s: the layer is far from whole when the verdict lands.
    let layer = image.layer_digests()[0].clone();
    bed.registry.set_fault(
        FaultTarget::Digest(layer.clone()),
        Fault::Throttle {
            chunk: 32 << 10,
            interval: Duration::from_millis(20),
        },
    );
    cold.pull_allowed().await.unwrap();

    // pullgate's GET, then containerd's, resuming where pullgate's write stopped.
    let suffix = format!("/blobs/{layer}");
    let gets: Vec<Option<String>> = bed
        .registry
        .seen()
        .into_iter()
        .filter(|s| s.kind == RequestKind::BlobGet && s.path.ends_with(&suffix))
        .map(|s| s.range)
        .collect();
    assert_eq!(gets.len(), 2, "{gets:?}\n{}", cold.pullgate.log_tail());
    assert_eq!(gets[0], None);
    let start: u64 = gets[1]
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes=")?.strip_suffix('-')?.parse().ok())
        .unwrap_or_else(|| panic!("containerd's GET: {gets:?}"));
    let size = image.layers[0].len() as u64;
    assert!(start > 0 && start < size, "resumed at {start} of {size}");
    // What pullgate wrote is exactly what containerd did not fetch again.
    let prefetched = metric(cold.port, "pullgate_prefetched_bytes_total")
        .await
        .unwrap();
    let documents = (image.manifest.len() + image.config.len()) as u64;
    assert_eq!(prefetched, (documents + start) as f64);
    let direct = cri::connect(bed.containerd.socket()).await.unwrap();
    assert!(cri::containerd_has_content(&direct, &layer).await.unwrap());
    assert_eq!(
        prefetch_leases(&direct).await.unwrap(),
        Vec::<String>::new()
    );
}
