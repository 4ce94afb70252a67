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
//! Needs root (containerd) and `containerd` on the PATH (or `$CONTAINERD_BIN`).

mod bed;
mod machine;
mod metrics;
mod plot;
mod report;
mod run;
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
    #[arg(long)]
    pullgate_bin: Option<PathBuf>,
    /// Only these pull modes, comma-separated names as in the table (default: all).
    /// A focused run, e.g. `--modes direct-present,direct-present-digest,hot-tag-present,hot-digest-present`.
    #[arg(long, value_delimiter = ',')]
    modes: Option<Vec<String>>,
    /// Parts to leave out, comma-separated: `rss`, `pulls` (the rounds of pull modes), `herd`, `verify`.
    #[arg(long, value_delimiter = ',')]
    skip: Option<Vec<String>>,
    /// Where results go (default `bench/results/` for a full run, `bench/results/quick/` for
    /// --quick, `bench/results/focus/` for a run with --modes or --skip).
    #[arg(long)]
    out: Option<PathBuf>,
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
        profile: if q { "quick" } else { "full" },
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
        modes: cli.modes.clone(),
        skip: cli.skip.clone().unwrap_or_default(),
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

fn try_main(cli: &Cli) -> anyhow::Result<()> {
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
    let written = report::write_all(&out, &rep, &table)?;
    #[allow(clippy::print_stdout)] // main.rs is where the bench prints
    {
        println!("{table}");
        println!("written: {}", written.join(", "));
    }
    progress("done");
    Ok(())
}
