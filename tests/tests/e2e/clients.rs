//! Every CRI client in the field, through pullgate: gRPC C-core (Python
//! grpcio) with its default percent-encoded `:authority`, with the raw socket
//! path (what kubelet and crictl before 1.31 send) and with `localhost`; and
//! a hand-framed HTTP/2 client sending the raw path, as grpc-go < 1.31 CRI
//! clients do; and grpc-go itself (the kubelet's and crictl's gRPC), many
//! calls at once on one connection, call by call and over the frame relay.
//! Pulls, denials and passthrough behave the same for each.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use prost::Message;
use pullgate_proto::runtime::v1::{
    ImageSpec, ImageStatusRequest, ImageStatusResponse, ListImagesRequest, ListImagesResponse,
    PullImageRequest, PullImageResponse, VersionRequest, VersionResponse,
};
use pullgate_tests::child::free_port;
use pullgate_tests::cri;
use pullgate_tests::pullgate::metric;
use pullgate_tests::raw_h2;
use pullgate_tests::testbed::DockerTestbed;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/clients/grpc_call.py");

/// One call's outcome as the client scripts print it (`grpc_call.py`, `grpc_go_call`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
struct Outcome {
    code: String,
    details: String,
    response_hex: String,
}

fn python_call(socket: &Path, mode: &str, method: &str, request: &[u8]) -> Outcome {
    let out = Command::new("python3")
        .arg(SCRIPT)
        .arg(socket)
        .arg(mode)
        .arg(method)
        .arg(hex::encode(request))
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3: {e}"));
    assert!(
        out.status.success(),
        "grpc_call.py failed (is grpcio installed? `pip install grpcio`): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("grpc_call.py printed no JSON object: {e}"))
}

fn pull_request(image: &str) -> Vec<u8> {
    PullImageRequest {
        image: Some(ImageSpec {
            image: image.to_owned(),
            ..Default::default()
        }),
        auth: None,
        sandbox_config: None,
    }
    .encode_to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd and python3 grpcio"]
async fn grpc_c_core_clients_with_every_authority_form_behave_alike() {
    let bed = DockerTestbed::start().await.unwrap();
    let pullgate = bed.start_pullgate().await.unwrap();
    let socket = pullgate.socket().to_owned();
    let version = VersionRequest {
        version: "v1".into(),
    }
    .encode_to_vec();

    for mode in ["default", "path", "localhost"] {
        // Passthrough: RuntimeService.Version.
        let v = python_call(
            &socket,
            mode,
            "/runtime.v1.RuntimeService/Version",
            &version,
        );
        assert_eq!(v.code, "OK", "{mode}: {v:?}\n{}", pullgate.log_tail());
        let v = VersionResponse::decode(&hex::decode(&v.response_hex).unwrap()[..]).unwrap();
        assert_eq!(v.runtime_name, "containerd", "{mode}");

        // A signed image is pulled.
        let repo = format!("clients/{mode}-signed");
        bed.push_signed(&repo, "v1").await.unwrap();
        let image = bed.image_ref(&repo, "v1");
        let p = python_call(
            &socket,
            mode,
            "/runtime.v1.ImageService/PullImage",
            &pull_request(&image),
        );
        assert_eq!(p.code, "OK", "{mode}: {p:?}\n{}", pullgate.log_tail());
        let r = PullImageResponse::decode(&hex::decode(&p.response_hex).unwrap()[..]).unwrap();
        assert!(r.image_ref.starts_with("sha256:"), "{mode}: {r:?}");

        // An unsigned one is denied with the same sentence.
        let repo = format!("clients/{mode}-unsigned");
        let unsigned = bed.push_unsigned(&repo, "v1").await.unwrap();
        let image = bed.image_ref(&repo, "v1");
        let d = python_call(
            &socket,
            mode,
            "/runtime.v1.ImageService/PullImage",
            &pull_request(&image),
        );
        assert_eq!(d.code, "PERMISSION_DENIED", "{mode}: {d:?}");
        assert!(
            d.details
                .starts_with(&format!("image {image} ({})", unsigned.digest)),
            "{mode}: {}",
            d.details
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn raw_socket_path_authority_is_served_like_localhost() {
    let bed = DockerTestbed::start().await.unwrap();
    let pullgate = bed.start_pullgate().await.unwrap();
    let socket = pullgate.socket().to_owned();
    let path = socket.display().to_string();
    let encoded = path.replace('/', "%2F");
    let version = VersionRequest::default().encode_to_vec();
    bed.push_signed("clients/raw", "v1").await.unwrap();
    let pull = pull_request(&bed.image_ref("clients/raw", "v1"));

    for authority in [path.as_bytes(), encoded.as_bytes(), b"localhost".as_slice()] {
        let shown = String::from_utf8_lossy(authority);
        let v = raw_h2::unary(
            &socket,
            authority,
            "/runtime.v1.RuntimeService/Version",
            &version,
        )
        .await
        .unwrap();
        assert!(v.answered(), "{shown}: {v:?}\n{}", pullgate.log_tail());
        let v = VersionResponse::decode(&v.message[..]).unwrap();
        assert_eq!(v.runtime_name, "containerd");
        let p = raw_h2::unary(
            &socket,
            authority,
            "/runtime.v1.ImageService/PullImage",
            &pull,
        )
        .await
        .unwrap();
        assert!(p.answered(), "{shown}: {p:?}\n{}", pullgate.log_tail());
        let r = PullImageResponse::decode(&p.message[..]).unwrap();
        assert!(r.image_ref.starts_with("sha256:"), "{shown}: {r:?}");
    }
}

const GRPC_GO_CALL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/clients/grpc_go_call/main.go");

/// The grpc-go client (`tests/clients/grpc_go_call`), built once per run
/// against Debian's `golang-google-grpc-dev` (GOPATH mode, nothing fetched).
fn grpc_go_call() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let bin = dir.join("grpc_go_call");
        let out = Command::new("go")
            .args(["build", "-o"])
            .arg(&bin)
            .arg(GRPC_GO_CALL)
            .env("GO111MODULE", "off")
            .env("GOPATH", "/usr/share/gocode")
            .env("GOCACHE", dir.join("gocache"))
            .output()
            .unwrap_or_else(|e| panic!("cannot run go (apt install golang-go): {e}"));
        assert!(
            out.status.success(),
            "building grpc_go_call failed (apt install golang-go golang-google-grpc-dev): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        bin
    })
}

/// Runs `batches` through one grpc-go connection to `socket`: the calls of
/// a batch at once, batches in turn. One outcome per call, in order.
fn go_calls(socket: &Path, mode: &str, batches: &[Vec<(&str, Vec<u8>)>]) -> Vec<Outcome> {
    use std::io::Write;
    let mut input = String::new();
    for (i, batch) in batches.iter().enumerate() {
        if i > 0 {
            input.push_str("---\n");
        }
        for (method, request) in batch {
            input.push_str(&format!("{method} {}\n", hex::encode(request)));
        }
    }
    let mut child = Command::new(grpc_go_call())
        .arg(socket)
        .arg(mode)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run grpc_go_call: {e}"));
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .unwrap_or_else(|e| panic!("writing grpc_go_call's calls: {e}"));
    }
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("waiting for grpc_go_call: {e}"));
    assert!(
        out.status.success(),
        "grpc_go_call failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let outcomes: Vec<Outcome> = serde_json::Deserializer::from_slice(&out.stdout)
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("grpc_go_call printed no JSON objects: {e}"));
    assert_eq!(outcomes.len(), batches.iter().map(Vec::len).sum::<usize>());
    outcomes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd and go with golang-google-grpc-dev"]
async fn grpc_go_clients_behave_alike_call_by_call_and_over_the_frame_relay() {
    const PULL: &str = "/runtime.v1.ImageService/PullImage";
    const STATUS: &str = "/runtime.v1.ImageService/ImageStatus";
    const LIST: &str = "/runtime.v1.ImageService/ListImages";
    const VERSION: &str = "/runtime.v1.RuntimeService/Version";
    let bed = DockerTestbed::start().await.unwrap();
    let signed = bed.push_signed("clients/go-signed", "v1").await.unwrap();
    let signed_ref = bed.image_ref("clients/go-signed", "v1");
    let pinned = signed.pinned_ref(&bed.host(), "clients/go-signed");
    let unsigned = bed
        .push_unsigned("clients/go-unsigned", "v1")
        .await
        .unwrap();
    let unsigned_ref = bed.image_ref("clients/go-unsigned", "v1");
    let denial = format!("image {unsigned_ref} ({})", unsigned.digest);
    let version = VersionRequest {
        version: "v1".into(),
    }
    .encode_to_vec();
    let status = ImageStatusRequest {
        image: Some(ImageSpec {
            image: signed_ref.clone(),
            ..Default::default()
        }),
        verbose: false,
    }
    .encode_to_vec();
    let list = ListImagesRequest::default().encode_to_vec();

    // As the kubelet does: one connection, calls at once, each with its own
    // deadline (so its grpc-timeout field churns the HPACK dynamic table).
    let mixed: Vec<(&str, Vec<u8>)> = (0..60)
        .map(|i| match i % 6 {
            0 => (PULL, pull_request(&signed_ref)),
            1 => (PULL, pull_request(&pinned)),
            2 => (VERSION, version.clone()),
            3 => (STATUS, status.clone()),
            4 => (LIST, list.clone()),
            _ => (PULL, pull_request(&unsigned_ref)),
        })
        .collect();
    let mut batches = vec![
        vec![(VERSION, version.clone())],
        vec![(PULL, pull_request(&signed_ref))],
        vec![(PULL, pull_request(&unsigned_ref))],
        mixed,
    ];
    batches.extend((0..40).map(|i| {
        vec![if i % 2 == 0 {
            (PULL, pull_request(&pinned))
        } else {
            (STATUS, status.clone())
        }]
    }));

    let mut seen = Vec::new();
    for relay in [false, true] {
        let port = free_port().await.unwrap();
        let mut config = bed.pullgate_config();
        config.frame_relay = relay;
        config.extra = format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n");
        let pullgate = bed.start_pullgate_with(&config).await.unwrap();
        for mode in ["path", "localhost"] {
            let outcomes = go_calls(pullgate.socket(), mode, &batches);
            for ((method, request), o) in batches.iter().flatten().zip(&outcomes) {
                let context = format!("relay {relay}, {mode}, {method}: {o:?}");
                if *method == PULL && *request == pull_request(&unsigned_ref) {
                    assert_eq!(o.code, "PermissionDenied", "{context}");
                    assert!(o.details.starts_with(&denial), "{context}");
                    continue;
                }
                assert_eq!(o.code, "OK", "{context}\n{}", pullgate.log_tail());
                let body = hex::decode(&o.response_hex).unwrap();
                match *method {
                    PULL => {
                        let r = PullImageResponse::decode(&body[..]).unwrap();
                        assert!(r.image_ref.starts_with("sha256:"), "{context}");
                    }
                    STATUS => {
                        let r = ImageStatusResponse::decode(&body[..]).unwrap();
                        let image = r.image.unwrap_or_default();
                        assert!(image.repo_tags.contains(&signed_ref), "{context}");
                    }
                    LIST => {
                        let r = ListImagesResponse::decode(&body[..]).unwrap();
                        assert!(
                            r.images.iter().any(|i| i.repo_tags.contains(&signed_ref)),
                            "{context}"
                        );
                    }
                    _ => {
                        let r = VersionResponse::decode(&body[..]).unwrap();
                        assert_eq!(r.runtime_name, "containerd", "{context}");
                    }
                }
            }
            seen.push(
                outcomes
                    .into_iter()
                    .map(|o| (o.code, o.details))
                    .collect::<Vec<_>>(),
            );
        }
        // Each grpc-go connection was served the way the config says.
        let relayed = metric(
            port,
            "pullgate_cri_connections_total{served=\"frame_relay\"}",
        )
        .await
        .unwrap();
        let by_calls = metric(port, "pullgate_cri_connections_total{served=\"calls\"}")
            .await
            .unwrap();
        if relay {
            assert!(
                relayed >= 2.0 && by_calls == 0.0,
                "{relayed} relayed, {by_calls} call by call"
            );
        } else {
            assert!(
                relayed == 0.0 && by_calls >= 2.0,
                "{relayed} relayed, {by_calls} call by call"
            );
        }
    }
    assert!(seen.windows(2).all(|w| w[0] == w[1]), "{seen:?}");

    let direct = cri::connect(bed.containerd.socket()).await.unwrap();
    assert!(cri::image_status(&direct, &unsigned_ref)
        .await
        .unwrap()
        .is_none());
}

/// A reply far past HTTP/2's initial 64 KiB windows (grpc-go grows its
/// windows as it reads, with BDP PINGs and SETTINGS) arrives whole over the
/// frame relay, alone and beside other calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd and go with golang-google-grpc-dev"]
async fn grpc_go_reads_a_list_past_its_windows_over_the_frame_relay() {
    const LIST: &str = "/runtime.v1.ImageService/ListImages";
    const VERSION: &str = "/runtime.v1.RuntimeService/Version";
    const TAGS: usize = 1200;
    let bed = DockerTestbed::start().await.unwrap();
    bed.push_signed("clients/go-big", "v1").await.unwrap();
    let image = bed.image_ref("clients/go-big", "v1");
    let direct = cri::connect(bed.containerd.socket()).await.unwrap();
    cri::pull(&direct, &image).await.unwrap();
    // One image under many long names: one ListImages entry of ~300 KiB.
    let long = "x".repeat(200);
    let mut tagging = tokio::task::JoinSet::new();
    for chunk in (0..TAGS).collect::<Vec<_>>().chunks(TAGS / 8) {
        let (direct, image, names) = (
            direct.clone(),
            image.clone(),
            chunk
                .iter()
                .map(|i| format!("{}/clients/go-big-{long}:{i}", bed.host()))
                .collect::<Vec<_>>(),
        );
        tagging.spawn(async move {
            for name in names {
                cri::containerd_tag(&direct, &image, &name).await?;
            }
            Ok::<_, tonic::Status>(())
        });
    }
    while let Some(done) = tagging.join_next().await {
        done.unwrap().unwrap();
    }
    let tags_of = |images: &[pullgate_proto::runtime::v1::Image]| -> Vec<String> {
        let mut tags: Vec<String> = images
            .iter()
            .flat_map(|i| i.repo_tags.iter().cloned())
            .filter(|t| t.contains("clients/go-big"))
            .collect();
        tags.sort();
        tags
    };
    // containerd's CRI image store learns of the records from events, a moment later.
    let mut want = Vec::new();
    for _ in 0..600 {
        want = tags_of(&cri::list_images(&direct).await.unwrap());
        if want.len() == TAGS + 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(want.len(), TAGS + 1);

    let mut config = bed.pullgate_config();
    config.frame_relay = true;
    let pullgate = bed.start_pullgate_with(&config).await.unwrap();
    let list = ListImagesRequest::default().encode_to_vec();
    let version = VersionRequest::default().encode_to_vec();
    let mut batches: Vec<Vec<(&str, Vec<u8>)>> = vec![vec![(LIST, list.clone())]; 3];
    batches.push(
        (0..8)
            .map(|i| {
                if i % 2 == 0 {
                    (LIST, list.clone())
                } else {
                    (VERSION, version.clone())
                }
            })
            .collect(),
    );
    let outcomes = go_calls(pullgate.socket(), "localhost", &batches);
    for ((method, _), o) in batches.iter().flatten().zip(&outcomes) {
        assert_eq!(o.code, "OK", "{method}: {o:?}\n{}", pullgate.log_tail());
        if *method == LIST {
            let body = hex::decode(&o.response_hex).unwrap();
            assert!(body.len() > 256 * 1024, "{} bytes", body.len());
            let got = ListImagesResponse::decode(&body[..]).unwrap();
            assert_eq!(tags_of(&got.images), want);
        }
    }
}
