//! The results directory of a run: the table, the CSV and JSON of every
//! row, and the plots, written together.

use std::path::Path;

use anyhow::{Context as _, Result};

use crate::plot;
use crate::report::{self, Report};

/// Writes `results.csv`, `results.json`, `summary.txt` and the plots into `dir`.
///
/// # Errors
/// A file cannot be written.
pub(crate) fn write_all(dir: &Path, rep: &Report<'_>, table: &str) -> Result<Vec<String>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let files = [
        ("results.csv", report::csv(rep)),
        ("results.json", serde_json::to_string_pretty(rep)? + "\n"),
        ("summary.txt", table.to_owned()),
        ("latency-cdf.svg", plot::cdf(rep)),
        ("cold-vs-rtt.svg", plot::rtt(rep)),
    ];
    let mut written = Vec::new();
    for (name, body) in files {
        let path = dir.join(name);
        std::fs::write(&path, body).with_context(|| format!("writing {}", path.display()))?;
        written.push(path.display().to_string());
    }
    Ok(written)
}
