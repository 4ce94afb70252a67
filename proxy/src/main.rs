//! The `pullgate` binary: parse the CLI, load the config, build the runtime, run, exit.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use pullgate::cli::Output;
use pullgate_policy::config::Config;

/// Enforce container image signatures on the node, at pull time.
#[derive(Debug, Parser)]
#[command(version, about)]
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
            let record = runtime()?.block_on(gate.inspect(&image, budget));
            let output = match output {
                Format::Text => Output::Text,
                Format::Json => Output::Json,
            };
            println!("{}", pullgate::cli::render(&record, output));
            Ok(ExitCode::from(pullgate::cli::exit_status(&record)))
        }
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
