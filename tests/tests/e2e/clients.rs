//! Every CRI client in the field, through pullgate: gRPC C-core (Python
//! grpcio) with its default percent-encoded `:authority`, with the raw socket
//! path (what kubelet and crictl before 1.31 send) and with `localhost`; and
//! a hand-framed HTTP/2 client sending the raw path, as grpc-go < 1.31 CRI
//! clients do. Pulls, denials and passthrough behave the same for each.

use std::path::Path;
use std::process::Command;

use prost::Message;
use pullgate_proto::runtime::v1::{
    ImageSpec, PullImageRequest, PullImageResponse, VersionRequest, VersionResponse,
};
use pullgate_tests::raw_h2;
use pullgate_tests::testbed::DockerTestbed;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/clients/grpc_call.py");

#[derive(Debug, serde::Deserialize)]
struct PyOutcome {
    code: String,
    details: String,
    response_hex: String,
}

fn python_call(socket: &Path, mode: &str, method: &str, request: &[u8]) -> PyOutcome {
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
