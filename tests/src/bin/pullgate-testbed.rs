//! `pullgate-testbed`: the harness as a CLI, for the README quick start and
//! for scripts.
//!
//! - `registry`: run a docker-registry on a free loopback port until Ctrl-C;
//! - `containerd --registry HOST:PORT`: run a containerd that can pull from it;
//! - `demo --registry HOST:PORT --dir DIR`: push `demo/signed:v1` (signed,
//!   Notary Project JWS) and `demo/unsigned:v1`, and write a trust store and
//!   trust policy for them under `DIR`;
//! - `pull --socket SOCK IMAGE`: CRI `PullImage`; prints `allowed: <image_ref>`
//!   (exit 0), `denied: <message>` (exit 1, `PermissionDenied`) or
//!   `error: <code>: <message>` (exit 2);
//! - `status --socket SOCK IMAGE`: CRI `ImageStatus`;
//! - `hold --socket SOCK --count N`: N connections that send nothing, kept
//!   until standard input closes (a hostile local process, for tests).

// This binary's output is its interface (scripts read it).
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use pullgate_testkit::notation::trust_policy_json;
use pullgate_testkit::{KeyType, TestPki};
use pullgate_tests::containerd::Containerd;
use pullgate_tests::cri;
use pullgate_tests::docker_registry::DockerRegistry;
use pullgate_tests::image::push_random_image;
use pullgate_tests::signer::{attach_signature, ReferrersMode};

/// Trust store name the demo writes (`ca:demo`).
const DEMO_STORE: &str = "demo";

#[derive(Debug, Parser)]
#[command(
    name = "pullgate-testbed",
    about = "Test registries, containerd and signed images for pullgate"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Key {
    /// ECDSA P-256 (ES256).
    Ec,
    /// RSA-3072 (PS256).
    Rsa,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Referrers {
    /// `sha256-<hex>` index tag (registries without the referrers API).
    TagSchema,
    /// Referrers API only.
    Api,
    /// Tag schema only if the registry does not answer `OCI-Subject`.
    Auto,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run docker-registry on `127.0.0.1:<free port>` until Ctrl-C.
    Registry,
    /// Run containerd (CRI, native snapshotter) able to pull from the given registries, until Ctrl-C.
    Containerd {
        /// Plain-HTTP registry host:port (repeatable).
        #[arg(long = "registry", required = true)]
        registries: Vec<String>,
    },
    /// Push demo/signed:v1 (signed) and demo/unsigned:v1; write DIR/truststore and DIR/trustpolicy.json.
    Demo {
        /// Registry host:port (plain HTTP).
        #[arg(long)]
        registry: String,
        /// Where to write truststore/ and trustpolicy.json.
        #[arg(long)]
        dir: PathBuf,
        /// Signing key type.
        #[arg(long, value_enum, default_value_t = Key::Ec)]
        key: Key,
        /// How the signature is made discoverable.
        #[arg(long, value_enum, default_value_t = Referrers::TagSchema)]
        referrers: Referrers,
    },
    /// CRI PullImage through SOCK.
    Pull {
        /// CRI socket (pullgate's or containerd's).
        #[arg(long)]
        socket: PathBuf,
        /// Image reference.
        image: String,
    },
    /// Open COUNT connections to SOCK that send nothing; print `held: COUNT`
    /// and keep them until standard input closes.
    Hold {
        /// The socket.
        #[arg(long)]
        socket: PathBuf,
        /// How many connections.
        #[arg(long)]
        count: usize,
    },
    /// CRI ImageStatus through SOCK.
    Status {
        /// CRI socket.
        #[arg(long)]
        socket: PathBuf,
        /// Image reference.
        image: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: building runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cmd: Cmd) -> Result<ExitCode> {
    match cmd {
        Cmd::Registry => {
            let registry = DockerRegistry::start().await?;
            println!("registry: {}", registry.host());
            println!("dir: {}", registry.dir().display());
            wait_for_ctrl_c().await?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Containerd { registries } => {
            let containerd = Containerd::start(&registries).await?;
            println!("socket: {}", containerd.socket().display());
            println!("hosts_dir: {}", containerd.hosts_dir().display());
            println!("dir: {}", containerd.dir().display());
            wait_for_ctrl_c().await?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Demo {
            registry,
            dir,
            key,
            referrers,
        } => {
            demo(&registry, &dir, key, referrers).await?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Hold { socket, count } => {
            let mut held = Vec::with_capacity(count);
            for _ in 0..count {
                held.push(
                    tokio::net::UnixStream::connect(&socket)
                        .await
                        .with_context(|| format!("connecting to {}", socket.display()))?,
                );
            }
            println!("held: {}", held.len());
            let mut sink = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut tokio::io::stdin(), &mut sink).await?;
            drop(held);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Pull { socket, image } => {
            let channel = cri::connect(&socket).await?;
            match cri::pull(&channel, &image).await {
                Ok(image_ref) => {
                    println!("allowed: {image_ref}");
                    Ok(ExitCode::SUCCESS)
                }
                Err(s) if s.code() == tonic::Code::PermissionDenied => {
                    println!("denied: {}", s.message());
                    Ok(ExitCode::from(1))
                }
                Err(s) => {
                    println!("error: {:?}: {}", s.code(), s.message());
                    Ok(ExitCode::from(2))
                }
            }
        }
        Cmd::Status { socket, image } => {
            let channel = cri::connect(&socket).await?;
            match cri::image_status(&channel, &image).await? {
                Some(img) => {
                    println!("id: {}", img.id);
                    for t in &img.repo_tags {
                        println!("tag: {t}");
                    }
                    for d in &img.repo_digests {
                        println!("digest: {d}");
                    }
                    println!("size: {}", img.size);
                    Ok(ExitCode::SUCCESS)
                }
                None => {
                    println!("not found: {image}");
                    Ok(ExitCode::from(1))
                }
            }
        }
    }
}

async fn demo(registry: &str, dir: &Path, key: Key, referrers: Referrers) -> Result<()> {
    let key_type = match key {
        Key::Ec => KeyType::EcdsaP256,
        Key::Rsa => KeyType::Rsa3072,
    };
    let mode = match referrers {
        Referrers::TagSchema => ReferrersMode::TagSchema,
        Referrers::Api => ReferrersMode::Api,
        Referrers::Auto => ReferrersMode::Auto,
    };
    tokio::fs::create_dir_all(dir)
        .await
        .with_context(|| format!("creating {}", dir.display()))?;

    let pki = TestPki::with_key_type("pullgate-demo", key_type)?;
    let signed = push_random_image(registry, "demo/signed", "v1").await?;
    let envelope = pki.sign_jws(&signed.descriptor());
    let sig = attach_signature(registry, "demo/signed", &signed, &envelope, mode).await?;
    let unsigned = push_random_image(registry, "demo/unsigned", "v1").await?;

    let store = dir.join("truststore");
    let root = pki.write_trust_store(&store, DEMO_STORE)?;
    let identity = pki.trusted_identity();
    let signed_scope = format!("{registry}/demo/signed");
    let unsigned_scope = format!("{registry}/demo/unsigned");
    let policy = trust_policy_json(&[&signed_scope, &unsigned_scope], DEMO_STORE, &[&identity]);
    let policy_path = dir.join("trustpolicy.json");
    tokio::fs::write(&policy_path, serde_json::to_vec_pretty(&policy)?).await?;

    println!("signed: {registry}/demo/signed:v1 {}", signed.digest);
    println!("signature: {registry}/demo/signed@{}", sig.manifest.digest);
    println!("unsigned: {registry}/demo/unsigned:v1 {}", unsigned.digest);
    println!("truststore: {} (root {})", store.display(), root.display());
    println!("trustpolicy: {}", policy_path.display());
    println!("identity: {identity}");
    Ok(())
}

/// Waits for Ctrl-C or SIGTERM, so the child process is reaped on either.
async fn wait_for_ctrl_c() -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C"),
        _ = term.recv() => Ok(()),
    }
}
