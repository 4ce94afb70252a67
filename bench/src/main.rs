//! pullgate-bench: what signature verification costs at pull time (issue 5).
//!
//! Starts a real containerd and the in-process OCI 1.1 registry exactly as
//! the end-to-end tests do (the `pullgate-tests` harness), puts the built
//! `pullgate` binary in front of containerd, and measures, side by side in
//! one run, CRI `PullImage` straight to containerd and through pullgate:
//! cold (new digest, no verdict), hot (cached verdict), herds of concurrent
//! pulls, `pullgate verify`, and the proxy's memory with many cached
//! verdicts; the registry's added latency is swept to show how the cold path
//! scales with network distance. See `bench/README.md` for what each mode
//! means.
//!
//! It measures and never asserts: every figure is printed and written with
//! the machine, the commit and the command that produced it.
//!
//! Three more runs, as subcommands: `soak` (many pulls from many clients with
//! the metrics port flooded: errors, p99, peak memory), `hostile`
//! (pullgate's peak memory while concurrent pulls discover signatures at a
//! registry sending endless 4 MiB referrers pages) and `chaos` (signed,
//! unsigned and revoked pulls while the registry fails, containerd restarts
//! and pullgate is reloaded and killed: unverified images in containerd).
//!
//! Needs root (containerd) and `containerd` on the PATH (or `$CONTAINERD_BIN`).

mod bed;
mod chaos;
mod hostile;
mod machine;
mod metrics;
mod plot;
mod proc;
mod relay;
mod report;
mod results_dir;
mod run;
mod soak;
mod stats;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::OnceLock;
use std::time::Instant;

use anyhow::Context as _;
use clap::Parser;

/// Measure what pullgate's signature verification costs at pull time.
#[derive(Debug, Parser)]
#[command(about)]
struct Cli {
    /// Another run instead of the latency measurement.
    #[command(subcommand)]
    command: Option<Command>,
    /// Short run (under two minutes on 2 cores): fewer rounds, RTT 0 and 5 ms,
    /// herds up to 100, 20k cached verdicts (100k extrapolated, and labelled so).
    #[arg(long)]
    quick: bool,
    /// Recorded rounds at the first RTT (default 100; quick 10).
    #[arg(long)]
    iterations: Option<usize>,
    /// Recorded rounds at every other RTT (default 15; quick 5).
    #[arg(long)]
    rtt_iterations: Option<usize>,
    /// Added registry latency per request, in ms, comma-separated (default 0,5,50; quick 0,5).
    #[arg(long, value_delimiter = ',')]
    rtt_ms: Option<Vec<u64>>,
    /// Signature counts of the cold images (default 0,1,5,20).
    #[arg(long, value_delimiter = ',')]
    sigs: Option<Vec<u32>>,
    /// Herd sizes (default 1,10,100).
    #[arg(long, value_delimiter = ',')]
    herd: Option<Vec<usize>>,
    /// Herds of each size (default 3; quick 1).
    #[arg(long)]
    herd_rounds: Option<usize>,
    /// Added registry latency during herds, in ms (default 5).
    #[arg(long, default_value_t = 5)]
    herd_rtt_ms: u64,
    /// Cached verdicts to populate before reading the proxy's RSS (default 100000; quick 20000).
    #[arg(long)]
    verdicts: Option<usize>,
    /// Runs of `pullgate verify` per signature count (default 15; quick 5).
    #[arg(long)]
    verify_iterations: Option<usize>,
    /// The pullgate binary (default `$PULLGATE_BIN`, else `<target dir>/release/pullgate`).
    #[arg(long, global = true)]
    pullgate_bin: Option<PathBuf>,
    /// Only these pull modes, comma-separated names as in the table (default: all).
    /// A focused run, e.g. `--modes direct-present,direct-present-digest,hot-tag-present,hot-digest-present`.
    #[arg(long, value_delimiter = ',')]
    modes: Option<Vec<String>>,
    /// Parts to leave out, comma-separated: `rss`, `pulls` (the rounds of pull modes), `herd`, `verify`.
    #[arg(long, value_delimiter = ',')]
    skip: Option<Vec<String>>,
    /// Leave out the cosign cold modes (for a pullgate binary without cosign,
    /// which refuses the requirements file naming their scopes).
    #[arg(long)]
    no_cosign: bool,
    /// Run the main pullgate without `[prefetch] enabled` (cold pulls then
    /// fetch nothing before the verdict; also for a binary without `[prefetch]`).
    /// The 100 MiB modes `direct-fresh-large` and `cold-large` run only when
    /// named in --modes (one pair of new images a round: keep --iterations small).
    #[arg(long)]
    no_prefetch: bool,
    /// Run the main pullgate (and the one of `soak`, `hostile`, `chaos`)
    /// with `[server] frame_relay = false`: every call through an HTTP/2
    /// server and client, instead of the default frame relay.
    #[arg(long)]
    no_frame_relay: bool,
    /// Where results go (default `bench/results/` for a full run,
    /// `bench/results/quick/` for --quick, `bench/results/focus/` for a run
    /// with --modes or --skip; for `soak`, `hostile` and `chaos`, a file,
    /// default `bench/results/<subcommand>.txt`).
    #[arg(long, global = true)]
    out: Option<PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Many pulls from many clients at once, the metrics port under a
    /// connection flood: errors, latency percentiles, peak memory.
    Soak {
        /// Pulls in all.
        #[arg(long, default_value_t = 1000)]
        pulls: usize,
        /// Concurrent clients, each on its own connection.
        #[arg(long, default_value_t = 64)]
        clients: usize,
        /// Images pulled (every other one signed).
        #[arg(long, default_value_t = 20)]
        images: usize,
        /// Concurrent tasks flooding the metrics port.
        #[arg(long, default_value_t = 256)]
        flood: usize,
    },
    /// Pulls of signed, unsigned and revoked images from many clients while
    /// the registry fails, containerd restarts and pullgate is reloaded and
    /// killed: unverified images in containerd at the end, errors, memory.
    Chaos {
        /// How long the chaos lasts.
        #[arg(long, default_value_t = 10.0)]
        minutes: f64,
        /// Concurrent clients, each on its own connection.
        #[arg(long, default_value_t = 32)]
        clients: usize,
        /// Images of each kind (signed, unsigned, revoked).
        #[arg(long, default_value_t = 6)]
        images: usize,
        /// Seed of the fault schedule and the clients' picks (default: random).
        #[arg(long)]
        seed: Option<u64>,
        /// Self-check: pull one unsigned image straight through containerd
        /// before the end's check, which must then count it.
        #[arg(long)]
        plant_unverified: bool,
    },
    /// Peak memory while concurrent pulls discover signatures at a
    /// registry that sends endless referrers pages.
    Hostile {
        /// Pulls at once (distinct images).
        #[arg(long, default_value_t = 4)]
        pulls: usize,
        /// Rounds of those pulls (new images each round).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Bytes of each referrers page (at most the 4 MiB `referrers_index_bytes` cap).
        #[arg(long, default_value_t = 4 << 20)]
        page_bytes: usize,
        /// Writes `[registry] max_concurrent_discoveries = N` (leave out for binaries without the key).
        #[arg(long)]
        discoveries: Option<usize>,
        /// Attack the signature fetches (32 padded signatures per image, each
        /// envelope longer than its cap) instead of the referrers listing.
        #[arg(long)]
        signatures: bool,
        /// Bytes of padding in each of those signature manifests (default
        /// just under the 256 KiB `signature_manifest_bytes` cap; a binary
        /// from before that cap read up to 4 MiB).
        #[arg(long, default_value_t = hostile::MANIFEST_PAD)]
        manifest_pad: usize,
    },
    /// The bare HTTP/2 relay the `hop-*` modes pull through (started by
    /// the bench itself).
    #[command(hide = true)]
    H2Relay {
        /// The socket to serve.
        #[arg(long)]
        listen: PathBuf,
        /// containerd's socket.
        #[arg(long)]
        upstream: PathBuf,
    },
    /// The byte relay the `relay-*` modes pull through (started by the
    /// bench itself): a copy between two unix sockets, nothing decoded.
    #[command(hide = true)]
    ByteRelay {
        /// The socket to serve.
        #[arg(long)]
        listen: PathBuf,
        /// containerd's socket.
        #[arg(long)]
        upstream: PathBuf,
    },
}

fn default_pullgate_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("PULLGATE_BIN") {
        return PathBuf::from(bin);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .or_else(|| option_env!("CARGO_TARGET_DIR").map(PathBuf::from))
        .unwrap_or_else(|| machine::workspace_root().join("target"));
    target.join("release").join("pullgate")
}

fn options(cli: &Cli) -> run::Options {
    let q = cli.quick;
    run::Options {
        profile: match (q, cli.modes.is_some() || cli.skip.is_some()) {
            (true, _) => "quick",
            (false, true) => "focused",
            (false, false) => "full",
        },
        iterations: cli.iterations.unwrap_or(if q { 10 } else { 100 }),
        rtt_iterations: cli.rtt_iterations.unwrap_or(if q { 5 } else { 15 }),
        rtts_ms: cli
            .rtt_ms
            .clone()
            .unwrap_or_else(|| if q { vec![0, 5] } else { vec![0, 5, 50] }),
        sigs: cli.sigs.clone().unwrap_or_else(|| vec![0, 1, 5, 20]),
        herd: cli.herd.clone().unwrap_or_else(|| vec![1, 10, 100]),
        herd_rounds: cli.herd_rounds.unwrap_or(if q { 1 } else { 3 }),
        herd_rtt_ms: cli.herd_rtt_ms,
        verdicts: cli.verdicts.unwrap_or(if q { 20_000 } else { 100_000 }),
        verify_iterations: cli.verify_iterations.unwrap_or(if q { 5 } else { 20 }),
        pullgate_bin: cli
            .pullgate_bin
            .clone()
            .unwrap_or_else(default_pullgate_bin),
        cosign: !cli.no_cosign,
        modes: cli.modes.clone(),
        skip: cli.skip.clone().unwrap_or_default(),
        prefetch: !cli.no_prefetch,
        frame_relay: !cli.no_frame_relay,
    }
}

static START: OnceLock<Instant> = OnceLock::new();

/// A progress line on stderr (the table goes to stdout).
pub(crate) fn progress(msg: &str) {
    let t = START.get_or_init(Instant::now).elapsed().as_secs_f64();
    #[allow(clippy::print_stderr)] // main.rs is where the bench prints
    {
        eprintln!("[bench {t:7.1}s] {msg}");
    }
}

fn main() -> ExitCode {
    START.get_or_init(Instant::now);
    let cli = Cli::parse();
    match try_main(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            #[allow(clippy::print_stderr)] // main.rs is where errors are printed
            {
                eprintln!("pullgate-bench: {e:#}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Runs `soak`, `hostile` or `chaos`: prints the report and writes it to `out`.
fn try_other(cli: &Cli, command: &Command) -> anyhow::Result<()> {
    let bin = options(cli).pullgate_bin;
    if !bin.exists() {
        anyhow::bail!(
            "pullgate binary not found at {} (build it: `cargo build --release -p pullgate`, or pass --pullgate-bin)",
            bin.display()
        );
    }
    let machine = machine::describe(&bin);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    let results = machine::workspace_root().join("bench").join("results");
    let (report, default_out) = match *command {
        Command::Soak {
            pulls,
            clients,
            images,
            flood,
        } => {
            let opts = soak::Options {
                pulls,
                clients,
                images,
                flood,
                frame_relay: !cli.no_frame_relay,
                pullgate_bin: bin,
            };
            (runtime.block_on(soak::run(&opts, &machine))?, "soak.txt")
        }
        Command::Chaos {
            minutes,
            clients,
            images,
            seed,
            plant_unverified,
        } => {
            let opts = chaos::Options {
                minutes,
                clients,
                images,
                seed,
                plant_unverified,
                frame_relay: !cli.no_frame_relay,
                pullgate_bin: bin,
            };
            (runtime.block_on(chaos::run(&opts, &machine))?, "chaos.txt")
        }
        Command::Hostile {
            pulls,
            rounds,
            page_bytes,
            discoveries,
            signatures,
            manifest_pad,
        } => {
            let opts = hostile::Options {
                pulls,
                rounds,
                page_bytes,
                discoveries,
                signatures,
                manifest_pad,
                frame_relay: !cli.no_frame_relay,
                pullgate_bin: bin,
            };
            (
                runtime.block_on(hostile::run(&opts, &machine))?,
                "hostile.txt",
            )
        }
        Command::H2Relay { .. } | Command::ByteRelay { .. } => {
            anyhow::bail!("a relay serves; it writes no report")
        }
    };
    let out = cli.out.clone().unwrap_or_else(|| results.join(default_out));
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out, &report).with_context(|| format!("writing {}", out.display()))?;
    #[allow(clippy::print_stdout)] // main.rs is where the bench prints
    {
        println!("{report}");
        println!("written: {}", out.display());
    }
    progress("done");
    Ok(())
}

fn try_main(cli: &Cli) -> anyhow::Result<()> {
    match &cli.command {
        Some(Command::H2Relay { listen, upstream }) => return relay::h2::serve(listen, upstream),
        Some(Command::ByteRelay { listen, upstream }) => {
            return relay::bytes::serve(listen, upstream)
        }
        Some(command) => return try_other(cli, command),
        None => {}
    }
    let opts = options(cli);
    if !opts.pullgate_bin.exists() {
        anyhow::bail!(
            "pullgate binary not found at {} (build it: `cargo build --release -p pullgate`, or pass --pullgate-bin)",
            opts.pullgate_bin.display()
        );
    }
    let machine = machine::describe(&opts.pullgate_bin);
    let out = cli.out.clone().unwrap_or_else(|| {
        let results = machine::workspace_root().join("bench").join("results");
        if cli.quick {
            results.join("quick")
        } else if cli.modes.is_some() || cli.skip.is_some() {
            results.join("focus")
        } else {
            results
        }
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    let measured = runtime.block_on(run::run(&opts))?;
    let rep = report::analyse(&machine, &opts, &measured);
    let table = report::table(&rep);
    let written = results_dir::write_all(&out, &rep, &table)?;
    #[allow(clippy::print_stdout)] // main.rs is where the bench prints
    {
        println!("{table}");
        println!("written: {}", written.join(", "));
    }
    progress("done");
    Ok(())
}
