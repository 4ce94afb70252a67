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
    after_help = "Configuration: --config FILE, else $PULLGATE_CONFIG, else \
                  /etc/pullgate/pullgate.toml when it exists, else the built-in defaults \
                  (`pullgate config example` prints every key). Logging: $PULLGATE_LOG \
                  (tracing filter, e.g. `debug` or `pullgate=debug`; default info) to stderr. \
                  `pullgate serve` reloads the trust policy, trust store and requirements on \
                  SIGHUP (and when they change). Run as `pullgate -name <reference> -digest \
                  <digest> -stdin-media-type application/vnd.oci.descriptor.v1+json` \
                  (containerd 2.x's image verifier call, the OCI descriptor on stdin), \
                  pullgate decides that pull: one line on stdout, exit 0 allowed, 1 denied."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the CRI socket in front of containerd.
    #[command(
        after_help = "SIGHUP reloads the trust policy, trust store and requirements file \
                      (they are also polled, [trust] reload_interval_ms); a reload that fails \
                      keeps the previous policy. SIGTERM drains and stops. $PULLGATE_LOG sets \
                      the log filter."
    )]
    Serve {
        /// TOML configuration (else $PULLGATE_CONFIG, else /etc/pullgate/pullgate.toml).
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
        /// TOML configuration (else $PULLGATE_CONFIG, else /etc/pullgate/pullgate.toml).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        output: Format,
    },
    /// What a new configuration would change on this node, without touching the daemon:
    /// every image containerd holds and every container, decided under the configuration in
    /// force and under NEW. Exit 1 when an image a running container uses would be denied,
    /// 2 when no decision could be made for one.
    Preflight {
        /// The NEW configuration (TOML) to evaluate.
        #[arg(long)]
        config: PathBuf,
        /// The configuration in force (else $PULLGATE_CONFIG, else /etc/pullgate/pullgate.toml).
        #[arg(long)]
        current_config: Option<PathBuf>,
        /// List every image, not only those whose verdict changes (text output).
        #[arg(long)]
        all: bool,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        output: Format,
    },
    /// Reference files: every key, its default and what it does.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Check that this node enforces: kubelet wiring, containerd, pullgate's own state.
    /// Exit 1 when a check fails.
    Doctor {
        /// TOML configuration (else $PULLGATE_CONFIG, else /etc/pullgate/pullgate.toml).
        #[arg(long)]
        config: Option<PathBuf>,
        /// The kubelet's configuration file, when the running kubelet's `--config` names none.
        #[arg(long, default_value = pullgate::cli::doctor::KUBELET_CONFIG)]
        kubelet_config: PathBuf,
        /// containerd's configuration file (absent is fine).
        #[arg(long, default_value = pullgate::cli::doctor::CONTAINERD_CONFIG)]
        containerd_config: PathBuf,
        /// Skip the checks that reach the network (registry reachability, deciding the sandbox image).
        #[arg(long)]
        offline: bool,
        /// List the images a check counts (those without an allow verdict).
        #[arg(long)]
        verbose: bool,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        output: Format,
    },
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Validate and explain a trustpolicy.json, a requirements file or a pullgate config.
    Check {
        /// The file; without it, the pullgate configuration every command would use.
        file: Option<PathBuf>,
        /// Say which trust policy statement and requirements scope this image lands in, and why.
        #[arg(long)]
        image: Option<String>,
        /// The pod's namespace for `--image` (without it: a request that names none).
        #[arg(long, requires = "image")]
        namespace: Option<String>,
    },
    /// Push a policy bundle directory (trustpolicy.json, requirements.toml,
    /// truststore/) for `[trust] source` to follow; sign the printed digest
    /// with `notation sign`.
    Push {
        /// The bundle directory.
        dir: PathBuf,
        /// Where: oci://REGISTRY/REPO:TAG.
        target: String,
        /// The pullgate configuration whose [registry] settings (plain_http,
        /// hosts_dir, auth_file) reach the registry.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print a complete commented pullgate.toml with every default.
    Example {
        /// Print a commented requirements file instead.
        #[arg(long)]
        requirements: bool,
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
        Command::Verify { .. } | Command::Preflight { .. } => ExitCode::from(2),
        _ => ExitCode::FAILURE,
    };
    match try_main(cli) {
        Ok(code) => code,
        Err(e) => {
            #[allow(clippy::print_stderr)] // main is where errors are printed
            {
                let cause: &(dyn std::error::Error + 'static) = e.as_ref();
                eprintln!("pullgate: {}", pullgate::cli::error_chain(cause));
            }
            failure
        }
    }
}

#[allow(clippy::print_stdout)] // main is where results are printed
fn try_main(cli: Cli) -> anyhow::Result<ExitCode> {
    use pullgate::config_file;
    match cli.command {
        Command::Serve { config } => {
            let (config, _) = config_file::load(config.as_deref())?;
            let gate = Arc::new(pullgate::gate::Gate::load(&config)?);
            runtime()?.block_on(pullgate::service::run(config, gate))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Policy {
            command:
                PolicyCommand::Check {
                    file,
                    image,
                    namespace,
                },
        } => {
            let file = match file {
                Some(f) => f,
                None => {
                    let source = config_file::source(None);
                    let Some(path) = source.path().map(Path::to_path_buf) else {
                        anyhow::bail!(
                            "no configuration file to check: name one, set ${}, or create {}",
                            config_file::CONFIG_ENV,
                            config_file::SYSTEM_CONFIG
                        );
                    };
                    tracing::info!(config = %source, "configuration");
                    path
                }
            };
            print!("{}", pullgate::cli::policy_check(&file)?);
            if let Some(image) = image {
                let image = image
                    .parse()
                    .with_context(|| format!("invalid image reference {image:?}"))?;
                print!(
                    "{}",
                    pullgate::cli::explain_placement(&file, &image, namespace.as_deref())?
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Policy {
            command:
                PolicyCommand::Push {
                    dir,
                    target,
                    config,
                },
        } => {
            let (config, _) = config_file::load(config.as_deref())?;
            let files = pullgate::policy_source::publish::read_dir(&dir)?;
            let digest = runtime()?.block_on(pullgate::policy_source::publish::push(
                &config, files, &target,
            ))?;
            let pinned = target
                .strip_prefix("oci://")
                .and_then(|t| t.rsplit_once(':'))
                .map_or_else(|| target.clone(), |(name, _)| name.to_owned());
            println!("{digest}");
            tracing::info!("pushed {target}; sign it: notation sign {pinned}@{digest}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify {
            image,
            config,
            output,
        } => {
            let (config, _) = config_file::load(config.as_deref())?;
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
        Command::Preflight {
            config,
            current_config,
            all,
            output,
        } => {
            use pullgate::cli::preflight::Preflight;
            let preflight = Preflight::load(&config, current_config.as_deref())?;
            let report = runtime()?.block_on(preflight.run())?;
            match output {
                Format::Text => print!("{}", report.text(all)),
                Format::Json => println!("{}", report.json()),
            }
            Ok(ExitCode::from(report.exit_status()))
        }
        Command::Config {
            command: ConfigCommand::Example { requirements },
        } => {
            if requirements {
                print!("{}", pullgate_policy::requirements::example());
            } else {
                print!("{}", pullgate_policy::config::example());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Doctor {
            config,
            kubelet_config,
            containerd_config,
            offline,
            verbose,
            output,
        } => {
            use pullgate::cli::doctor;
            let options = doctor::Options {
                config,
                kubelet_config,
                containerd_config,
                offline,
                verbose,
                proc_root: PathBuf::from("/proc"),
            };
            let report = doctor::run(&options, &runtime()?);
            match output {
                Format::Text => print!("{}", report.text()),
                Format::Json => println!("{}", report.json()),
            }
            Ok(ExitCode::from(report.exit_status()))
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

/// The configuration every command uses (no `--config` in this call).
fn verifier_config() -> anyhow::Result<Config> {
    Ok(pullgate::config_file::load(None)?.0)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")
}
