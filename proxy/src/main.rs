//! The `pullgate` binary: parse the CLI, load the config, build the runtime, run, exit.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
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
    match try_main(cli) {
        Ok(code) => code,
        Err(e) => {
            #[allow(clippy::print_stderr)] // main is where errors are printed
            {
                eprintln!("pullgate: {e:#}");
            }
            ExitCode::FAILURE
        }
    }
}

fn try_main(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve { config } => {
            let config = load_config(config.as_deref())?;
            let gate = Arc::new(pullgate::gate::Gate::load(&config)?);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("building the tokio runtime")?;
            runtime.block_on(async {
                let shutdown = tokio_util::sync::CancellationToken::new();
                let signals = shutdown.clone();
                let watcher = tokio::spawn(async move {
                    pullgate::shutdown_signal().await;
                    signals.cancel();
                });
                let result = pullgate::cri::serve(&config, gate, shutdown).await;
                watcher.abort();
                result
            })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn load_config(path: Option<&std::path::Path>) -> anyhow::Result<Config> {
    match path {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            Config::from_toml(&text).with_context(|| format!("in {}", p.display()))
        }
        None => Ok(Config::default()),
    }
}
