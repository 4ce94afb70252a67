//! CRI v1 and containerd native-API clients over a unix socket, and the few
//! calls the tests make with them.
//!
//! The same helpers work on containerd's socket and on pullgate's, which is
//! the point: a test can compare the two answers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use hyper_util::rt::TokioIo;
use pullgate_proto::containerd::services::images::v1::{
    images_client::ImagesClient, CreateImageRequest, GetImageRequest, Image as ContainerdImage,
    UpdateImageRequest,
};
use pullgate_proto::runtime::v1::{
    image_service_client::ImageServiceClient, runtime_service_client::RuntimeServiceClient,
    AuthConfig, ContainerConfig, ContainerMetadata, CreateContainerRequest, Image, ImageSpec,
    ImageStatusRequest, ListImagesRequest, Mount, PodSandboxConfig, PodSandboxMetadata,
    PullImageRequest, RemoveImageRequest, RunPodSandboxRequest, VersionRequest, VersionResponse,
};
use tokio::net::UnixStream;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Code, Request, Status};

/// The containerd namespace the CRI plugin keeps its images in.
pub const K8S_NAMESPACE: &str = "k8s.io";

/// gRPC metadata key selecting a containerd namespace.
pub const NAMESPACE_HEADER: &str = "containerd-namespace";

/// CRI API version the kubelet sends in `Version`.
pub const CRI_API_VERSION: &str = "v1";

/// A gRPC channel to the unix socket at `socket`.
///
/// The `:authority` is `localhost`, as kubelet and crictl send from 1.31 on.
/// The connection is made now, so a missing socket is an error here.
///
/// # Errors
/// The socket does not accept a connection.
pub async fn connect(socket: &Path) -> Result<Channel> {
    let path: PathBuf = socket.to_owned();
    Endpoint::try_from("http://localhost")?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await
        .with_context(|| format!("connecting to {}", socket.display()))
}

/// CRI `RuntimeService/Version`.
///
/// # Errors
/// The call's status.
pub async fn version(channel: &Channel) -> Result<VersionResponse, Status> {
    let resp = RuntimeServiceClient::new(channel.clone())
        .version(VersionRequest {
            version: CRI_API_VERSION.to_owned(),
        })
        .await?;
    Ok(resp.into_inner())
}

fn spec(image: &str) -> Option<ImageSpec> {
    Some(ImageSpec {
        image: image.to_owned(),
        ..ImageSpec::default()
    })
}

/// CRI `PullImage(image)` without credentials; returns the `image_ref`
/// containerd answered (the image id, `sha256:<config digest>`).
///
/// # Errors
/// The call's status (`PermissionDenied` when pullgate denies).
pub async fn pull(channel: &Channel, image: &str) -> Result<String, Status> {
    pull_with_auth(channel, image, None).await
}

/// CRI `PullImage(image, auth)`.
///
/// # Errors
/// The call's status.
pub async fn pull_with_auth(
    channel: &Channel,
    image: &str,
    auth: Option<AuthConfig>,
) -> Result<String, Status> {
    let resp = ImageServiceClient::new(channel.clone())
        .pull_image(PullImageRequest {
            image: spec(image),
            auth,
            sandbox_config: None,
        })
        .await?;
    Ok(resp.into_inner().image_ref)
}

/// CRI `ImageStatus(image)`: `None` when the runtime does not know the image.
///
/// # Errors
/// The call's status.
pub async fn image_status(channel: &Channel, image: &str) -> Result<Option<Image>, Status> {
    let resp = ImageServiceClient::new(channel.clone())
        .image_status(ImageStatusRequest {
            image: spec(image),
            verbose: false,
        })
        .await?;
    Ok(resp.into_inner().image)
}

/// CRI `ListImages` (no filter).
///
/// # Errors
/// The call's status.
pub async fn list_images(channel: &Channel) -> Result<Vec<Image>, Status> {
    let resp = ImageServiceClient::new(channel.clone())
        .list_images(ListImagesRequest { filter: None })
        .await?;
    Ok(resp.into_inner().images)
}

/// CRI `RemoveImage(image)`.
///
/// # Errors
/// The call's status.
pub async fn remove_image(channel: &Channel, image: &str) -> Result<(), Status> {
    ImageServiceClient::new(channel.clone())
        .remove_image(RemoveImageRequest { image: spec(image) })
        .await?;
    Ok(())
}

/// The `PodSandboxConfig` the kubelet sends for pod `name` in `namespace`
/// (metadata only; an empty namespace sends none).
pub fn pod(namespace: &str, name: &str) -> Option<PodSandboxConfig> {
    (!namespace.is_empty()).then(|| PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.to_owned(),
            uid: format!("uid-{name}"),
            namespace: namespace.to_owned(),
            attempt: 0,
        }),
    })
}

/// CRI `PullImage` for a pod in `namespace` (as the kubelet sends it, with `sandbox_config`).
///
/// # Errors
/// The call's status.
pub async fn pull_for_pod(
    channel: &Channel,
    image: &str,
    namespace: &str,
) -> Result<String, Status> {
    let resp = ImageServiceClient::new(channel.clone())
        .pull_image(PullImageRequest {
            image: spec(image),
            auth: None,
            sandbox_config: pod(namespace, "pod"),
        })
        .await?;
    Ok(resp.into_inner().image_ref)
}

/// CRI `CreateContainer` of `image` (an image id or reference) with image
/// volumes `volumes`, in sandbox `sandbox_id`, for a pod in `namespace`.
///
/// # Errors
/// The call's status.
pub async fn create_container(
    channel: &Channel,
    sandbox_id: &str,
    image: &str,
    volumes: &[&str],
    namespace: &str,
) -> Result<String, Status> {
    let config = ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: "c".to_owned(),
            attempt: 0,
        }),
        image: spec(image),
        mounts: volumes
            .iter()
            .enumerate()
            .map(|(i, v)| Mount {
                container_path: format!("/volume-{i}"),
                image: spec(v),
                ..Default::default()
            })
            .collect(),
    };
    let resp = RuntimeServiceClient::new(channel.clone())
        .create_container(CreateContainerRequest {
            pod_sandbox_id: sandbox_id.to_owned(),
            config: Some(config),
            sandbox_config: pod(namespace, "pod"),
        })
        .await?;
    Ok(resp.into_inner().container_id)
}

/// CRI `RunPodSandbox` for pod `name` in `namespace` (default runtime handler).
///
/// # Errors
/// The call's status.
pub async fn run_pod_sandbox(
    channel: &Channel,
    namespace: &str,
    name: &str,
) -> Result<String, Status> {
    let resp = RuntimeServiceClient::new(channel.clone())
        .run_pod_sandbox(RunPodSandboxRequest {
            config: pod(namespace, name),
            runtime_handler: String::new(),
        })
        .await?;
    Ok(resp.into_inner().pod_sandbox_id)
}

/// A unary call to any gRPC `path` (e.g. a `runtime.v1alpha2` method, or a
/// method no generated client has), with prost messages.
///
/// # Errors
/// The call's status (`Unavailable` when the channel is not ready).
pub async fn call<Req, Resp>(channel: &Channel, path: &str, req: Req) -> Result<Resp, Status>
where
    Req: prost::Message + Send + Sync + 'static,
    Resp: prost::Message + Default + Send + Sync + 'static,
{
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(format!("channel not ready: {e}")))?;
    let path = http::uri::PathAndQuery::try_from(path.to_owned())
        .map_err(|e| Status::invalid_argument(format!("bad path {path:?}: {e}")))?;
    let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
    grpc.unary(Request::new(req), path, codec)
        .await
        .map(tonic::Response::into_inner)
}

/// Interceptor adding `containerd-namespace: k8s.io` to every call.
pub type NamespaceInterceptor = fn(Request<()>) -> Result<Request<()>, Status>;

/// containerd's native images client, in the `k8s.io` namespace.
pub type K8sImagesClient = ImagesClient<InterceptedService<Channel, NamespaceInterceptor>>;

fn k8s_namespace(mut req: Request<()>) -> Result<Request<()>, Status> {
    req.metadata_mut().insert(
        NAMESPACE_HEADER,
        tonic::metadata::MetadataValue::from_static(K8S_NAMESPACE),
    );
    Ok(req)
}

/// containerd's native images service on `channel`, namespace `k8s.io`.
pub fn images_client(channel: &Channel) -> K8sImagesClient {
    ImagesClient::with_interceptor(channel.clone(), k8s_namespace as NamespaceInterceptor)
}

/// containerd `Images.Get(name)` in `k8s.io`; `None` when not found.
///
/// # Errors
/// Any status other than `NotFound`.
pub async fn containerd_image(
    channel: &Channel,
    name: &str,
) -> Result<Option<ContainerdImage>, Status> {
    match images_client(channel)
        .get(GetImageRequest {
            name: name.to_owned(),
        })
        .await
    {
        Ok(resp) => Ok(resp.into_inner().image),
        Err(s) if s.code() == Code::NotFound => Ok(None),
        Err(s) => Err(s),
    }
}

/// Gives the image record `from` (e.g. `host/repo@sha256:…`) a second name
/// `to` (e.g. `host/repo:tag`) through containerd's native images API in
/// `k8s.io`, copying target and labels; an existing `to` is updated.
///
/// After a CRI pull by digest, this makes CRI `ImageStatus(to)` find the image.
///
/// # Errors
/// `NotFound` when `from` does not exist; other statuses as returned.
pub async fn containerd_tag(channel: &Channel, from: &str, to: &str) -> Result<(), Status> {
    let source = containerd_image(channel, from)
        .await?
        .ok_or_else(|| Status::not_found(format!("image {from} not found")))?;
    let image = ContainerdImage {
        name: to.to_owned(),
        labels: source.labels.clone(),
        target: source.target.clone(),
        created_at: None,
        updated_at: None,
    };
    let mut client = images_client(channel);
    match client
        .create(CreateImageRequest {
            image: Some(image.clone()),
        })
        .await
    {
        Ok(_) => Ok(()),
        Err(s) if s.code() == Code::AlreadyExists => {
            client
                .update(UpdateImageRequest {
                    image: Some(image),
                    update_mask: None,
                })
                .await?;
            Ok(())
        }
        Err(s) => Err(s),
    }
}

/// containerd `Images.List` request (upstream field numbers; the trimmed
/// proto pullgate compiles has no `List`).
#[derive(Clone, PartialEq, prost::Message)]
struct ListContainerdImagesRequest {
    /// Filters; none lists every record.
    #[prost(string, repeated, tag = "1")]
    filters: Vec<String>,
}

/// containerd `Images.List` response.
#[derive(Clone, PartialEq, prost::Message)]
struct ListContainerdImagesResponse {
    #[prost(message, repeated, tag = "1")]
    images: Vec<ContainerdImage>,
}

/// Every image record of containerd's native images API in `k8s.io`
/// (`Images.List`, no filter): what the node holds, whatever CRI says.
///
/// # Errors
/// The call's status.
pub async fn containerd_images(channel: &Channel) -> Result<Vec<ContainerdImage>, Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(format!("channel not ready: {e}")))?;
    let path = http::uri::PathAndQuery::from_static("/containerd.services.images.v1.Images/List");
    let codec =
        tonic_prost::ProstCodec::<ListContainerdImagesRequest, ListContainerdImagesResponse>::default();
    let req = k8s_namespace(Request::new(()))?.map(|()| ListContainerdImagesRequest::default());
    grpc.unary(req, path, codec)
        .await
        .map(|r| r.into_inner().images)
}

/// Labels of a containerd image record (empty if none).
pub fn labels(image: &ContainerdImage) -> HashMap<String, String> {
    image.labels.clone()
}

fn in_k8s_namespace<T>(message: T) -> Request<T> {
    let mut req = Request::new(message);
    req.metadata_mut().insert(
        NAMESPACE_HEADER,
        tonic::metadata::MetadataValue::from_static(K8S_NAMESPACE),
    );
    req
}

/// Whether containerd's content store (namespace `k8s.io`) has the blob
/// `digest` (content `Info`).
///
/// # Errors
/// Any status other than `NotFound`.
pub async fn containerd_has_content(channel: &Channel, digest: &str) -> Result<bool, Status> {
    use pullgate_proto::containerd::services::content::v1 as content;
    let mut client = content::content_client::ContentClient::new(channel.clone());
    match client
        .info(in_k8s_namespace(content::InfoRequest {
            digest: digest.to_owned(),
        }))
        .await
    {
        Ok(_) => Ok(true),
        Err(s) if s.code() == Code::NotFound => Ok(false),
        Err(s) => Err(s),
    }
}

/// The ids and labels of containerd's leases in `k8s.io`.
///
/// # Errors
/// containerd's status.
pub async fn containerd_leases(
    channel: &Channel,
) -> Result<Vec<(String, HashMap<String, String>)>, Status> {
    use pullgate_proto::containerd::services::leases::v1 as leases;
    let mut client = leases::leases_client::LeasesClient::new(channel.clone());
    let listed = client
        .list(in_k8s_namespace(leases::ListRequest { filters: vec![] }))
        .await?
        .into_inner();
    Ok(listed
        .leases
        .into_iter()
        .map(|l| (l.id, l.labels))
        .collect())
}
