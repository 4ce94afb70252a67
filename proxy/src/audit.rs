//! The audit log: one JSON line per decision.
//!
//! Input: a [`DecisionRecord`] from the gate for every `PullImage` decision
//! (and every `pullgate verify`). Output: the record as one line of JSON
//! appended to `[audit] path`, written by one task fed through a bounded
//! channel, so a slow disk slows decisions down (backpressure) rather than
//! losing records or growing memory.
//!
//! What a record holds: time, image, digest, trust policy statement,
//! requirements scope, verdict, reason, every signature examined with its
//! signer and result (only when this decision examined them), the accepted
//! signers (from the cache too), whether the verdict came from the cache,
//! duration.
//! Never a secret: registry credentials are not part of any record.

use std::path::{Path, PathBuf};

use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::Instrument;

/// Records queued for the writer before decisions wait.
const AUDIT_QUEUE: usize = 1024;

/// What became of a pull: the kind of the gate's outcome (one variant per
/// kind, made from it in one place, `gate::outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Verified and allowed (pinned to the digest).
    Allow,
    /// Refused.
    Deny,
    /// Would have been denied; allowed because the scope's mode is `audit`.
    AuditAllow,
    /// Would have been denied; allowed because the scope's mode is `warn`.
    WarnAllow,
    /// The registry could not be reached; allowed because the scope fails open.
    FailOpen,
    /// The registry could not be reached, or the deadline passed; refused.
    Error,
    /// The digest is on the break-glass list.
    BreakGlass,
    /// The trust policy statement's level is `skip`.
    Skip,
    /// A runtime door admitted an image whose verdict expired while the
    /// registry could not be reached, on the standing allow of the same key.
    Standing,
}

impl Verdict {
    /// Whether the pull went ahead (an exhaustive list: a new kind must be placed).
    pub fn allows(self) -> bool {
        match self {
            Self::Allow
            | Self::AuditAllow
            | Self::WarnAllow
            | Self::FailOpen
            | Self::BreakGlass
            | Self::Skip
            | Self::Standing => true,
            Self::Deny | Self::Error => false,
        }
    }
}

/// One signature examined for a decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignatureEntry {
    /// The signature manifest's digest.
    pub digest: String,
    /// Its kind: `notation` or `cosign`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// For a cosign signature manifest whose every layer is one signature
    /// (the `sha256-<hex>.sig` tag), the layer (0-based).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer: Option<usize>,
    /// Who signed, when it could be established: a Notary Project signing
    /// certificate's subject, a cosign key's file name (`cosign key
    /// release.pub`), or a keyless cosign signer (`subject (issuer …)`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
    /// Whether it passed the trust policy.
    pub passed: bool,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Verification failures the level logged instead of enforcing
    /// (`permissive`, `audit`), as `validation: why`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub logged_failures: Vec<String>,
}

/// One decision, as written to the audit log and printed by `pullgate verify`.
#[derive(Debug, Clone, Serialize)]
pub struct DecisionRecord {
    /// Milliseconds since the Unix epoch when the decision was made.
    pub ts_unix_ms: u64,
    /// The image as requested, normalised.
    pub image: String,
    /// The manifest digest, when resolved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The trust policy statement that applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statement: Option<String>,
    /// The requirements scope that applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requirement: Option<String>,
    /// What became of the pull.
    pub verdict: Verdict,
    /// Why (the denial text, the registry error, the break-glass reason).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Signatures examined (empty when the verdict came from the cache).
    pub signatures: Vec<SignatureEntry>,
    /// The accepted signers of an allow verdict (from the cache too).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub signers: Vec<String>,
    /// Whether the verdict came from the cache.
    pub cached: bool,
    /// Time the decision took, in milliseconds.
    pub duration_ms: f64,
    /// The door the question came through: `pull`, `create`, `sandbox`,
    /// `verifier`, `cli`.
    #[serde(default)]
    pub door: String,
    /// The pod's namespace, when the request named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The pod's name, when the request named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
}

/// Why the audit log could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot open the audit log {path}: {source}")]
pub struct AuditError {
    path: PathBuf,
    source: std::io::Error,
}

/// The sending side of the audit log.
#[derive(Debug, Clone)]
pub(crate) struct AuditLog {
    tx: mpsc::Sender<DecisionRecord>,
}

impl AuditLog {
    /// Opens (creates, mode 0600) `path` for appending and starts the writer task.
    ///
    /// # Errors
    /// [`AuditError`] when the file cannot be opened.
    pub(crate) async fn open(path: &Path) -> Result<(Self, JoinHandle<()>), AuditError> {
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .await
            .map_err(|source| AuditError {
                path: path.to_owned(),
                source,
            })?;
        let (tx, rx) = mpsc::channel(AUDIT_QUEUE);
        let span = tracing::info_span!("audit_writer", path = %path.display());
        let task = tokio::spawn(write_records(file, rx).instrument(span));
        Ok((Self { tx }, task))
    }

    /// Queues `record`; waits when the queue is full.
    ///
    /// # Cancel safety
    /// Cancel safe: a cancelled call queues nothing.
    pub(crate) async fn record(&self, record: DecisionRecord) {
        if self.tx.send(record).await.is_err() {
            tracing::error!("audit log writer is gone; decision not recorded");
        }
    }
}

async fn write_records(mut file: tokio::fs::File, mut rx: mpsc::Receiver<DecisionRecord>) {
    while let Some(record) = rx.recv().await {
        let mut line = match serde_json::to_vec(&record) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "cannot serialise an audit record");
                continue;
            }
        };
        line.push(b'\n');
        if let Err(e) = file.write_all(&line).await {
            tracing::error!(error = %e, "cannot write the audit log");
            continue;
        }
        // Each record reaches the file before the next is taken: a crash loses at most one.
        if let Err(e) = file.flush().await {
            tracing::error!(error = %e, "cannot flush the audit log");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_are_json_lines_without_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let (log, task) = AuditLog::open(&path).await.unwrap();
        for verdict in [Verdict::Allow, Verdict::Deny] {
            log.record(DecisionRecord {
                ts_unix_ms: 1,
                image: "r.example/app:v1".into(),
                digest: Some(format!("sha256:{}", "a".repeat(64))),
                statement: Some("p".into()),
                requirement: Some("default".into()),
                verdict,
                reason: None,
                signatures: vec![SignatureEntry {
                    digest: format!("sha256:{}", "b".repeat(64)),
                    kind: Some("notation".into()),
                    layer: None,
                    signer: Some("CN=x".into()),
                    passed: true,
                    reason: None,
                    logged_failures: vec!["expiry: the signature expired".into()],
                }],
                signers: vec!["CN=x".into()],
                cached: false,
                duration_ms: 1.5,
                door: "pull".into(),
                namespace: None,
                pod: None,
            })
            .await;
        }
        drop(log);
        task.await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["verdict"], "allow");
        assert_eq!(lines[1]["verdict"], "deny");
        assert_eq!(lines[0]["signatures"][0]["signer"], "CN=x");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
