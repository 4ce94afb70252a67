//! The `pullgate` binary: parse the CLI, load the config, build the runtime, run, exit.
//!
//! Run with containerd's image verifier arguments (`-name … -digest …
//! -stdin-media-type …`) instead of a subcommand, it is containerd's image
//! verifier (see `pullgate::image_verifier`).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use pullgate::cli::Output;
use pullgate_policy::config::Config;

/// Enforce container image signatures on the node, at pull time.
#[derive(Debug, Parser)]
#[command(
    version,
    about,
    after_help = "Run as `pullgate -name <reference> -digest <digest> -stdin-media-type \
                  application/vnd.oci.descriptor.v1+json` (containerd 2.x's image verifier \
                  call, the OCI descriptor on stdin), pullgate decides that pull: one line on \
                  stdout, exit 0 allowed, 1 denied. Config: $PULLGATE_CONFIG, else \
                  /etc/pullgate/pullgate.toml."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the CRI socket in front of containerd.
    Serve {
        /// TOML configuration; every key has a default.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Work with policy files.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Decide one image as a pull would, without pulling: exit 0 allowed, 1 denied, 2 error.
    Verify {
        /// The image reference (`host/repo:tag` or `host/repo@sha256:…`).
        image: String,
        /// TOML configuration; every key has a default.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        output: Format,
    },
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Validate and explain a trustpolicy.json, a requirements file or a pullgate config.
    Check {
        /// The file.
        file: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if pullgate::image_verifier::Invocation::is_verifier_call(&args) {
        return image_verifier_main(&args);
    }
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PULLGATE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // `verify` reports "could not decide" as 2; every other failure is 1.
    let failure = match cli.command {
        Command::Verify { .. } => ExitCode::from(2),
        _ => ExitCode::FAILURE,
    };
    match try_main(cli) {
        Ok(code) => code,
        Err(e) => {
            #[allow(clippy::print_stderr)] // main is where errors are printed
            {
                eprintln!("pullgate: {e:#}");
            }
            failure
        }
    }
}

#[allow(clippy::print_stdout)] // main is where results are printed
fn try_main(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve { config } => {
            let config = load_config(config.as_deref())?;
            let gate = Arc::new(pullgate::gate::Gate::load(&config)?);
            runtime()?.block_on(pullgate::service::run(config, gate))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Policy {
            command: PolicyCommand::Check { file },
        } => {
            print!("{}", pullgate::cli::policy_check(&file)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify {
            image,
            config,
            output,
        } => {
            let config = load_config(config.as_deref())?;
            let image = image
                .parse()
                .with_context(|| format!("invalid image reference {image:?}"))?;
            let gate = pullgate::gate::Gate::load(&config)?;
            let budget = Duration::from_millis(config.server.decision_budget_ms);
            let output = match output {
                Format::Text => Output::Text,
                Format::Json => Output::Json,
            };
            let (text, status) =
                runtime()?.block_on(pullgate::cli::verify(&gate, &image, budget, output));
            println!("{text}");
            Ok(ExitCode::from(status))
        }
    }
}

/// containerd's image verifier call: one line on stdout, exit 0 (allowed) or 1 (denied).
#[allow(clippy::print_stdout)] // main is where results are printed
fn image_verifier_main(args: &[OsString]) -> ExitCode {
    use pullgate::image_verifier::{self as verifier, BoundedStderr, Invocation, Judgement};
    let started = Instant::now();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PULLGATE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(BoundedStderr::new(verifier::MAX_STDERR_BYTES))
        .with_ansi(false)
        .init();
    let judgement = match Invocation::parse(args) {
        Err(e) => Judgement::bad_call(&format_args!("invalid arguments: {e}")),
        Ok(call) => match verifier_config().and_then(|c| Ok((c, runtime()?))) {
            Err(e) => Judgement::refused(&call.name, &call.digest, &format_args!("{e:#}")),
            Ok((config, rt)) => {
                rt.block_on(verifier::run(&call, tokio::io::stdin(), &config, started))
            }
        },
    };
    println!("{}", judgement.line());
    ExitCode::from(judgement.exit_code())
}

/// `$PULLGATE_CONFIG`, else `/etc/pullgate/pullgate.toml` when it exists, else the defaults.
fn verifier_config() -> anyhow::Result<Config> {
    use pullgate::image_verifier::{CONFIG_ENV, DEFAULT_CONFIG};
    match std::env::var_os(CONFIG_ENV) {
        Some(p) => load_config(Some(Path::new(&p))),
        None if Path::new(DEFAULT_CONFIG).exists() => load_config(Some(Path::new(DEFAULT_CONFIG))),
        None => Ok(Config::default()),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")
}

fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
    match path {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            Config::from_toml(&text).with_context(|| format!("in {}", p.display()))
        }
        None => Ok(Config::default()),
    }
}
