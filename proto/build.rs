//! Compiles `proto/` with protox (pure Rust), so no system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/runtime/v1/api.proto",
        "proto/containerd/images.proto",
        "proto/containerd/content.proto",
        "proto/containerd/leases.proto",
        "proto/pullgate/verifier/v1/verifier.proto",
    ];
    for f in files
        .iter()
        .chain(["proto/containerd/descriptor.proto"].iter())
    {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // A blob written into containerd's content store goes out as the
        // chunk read from the registry, not a copy of it.
        .bytes(".containerd.services.content.v1.WriteContentRequest.data")
        .compile_fds(fds)?;
    Ok(())
}
