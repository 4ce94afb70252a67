//! containerd 2.x's `bindir` image verifier caller, for a containerd that has none.
//!
//! containerd 2.x is not installable on these machines (Debian bookworm
//! ships 1.6, which has no image verifier plugin), so the tests call the
//! verifiers as containerd's `pkg/imageverifier/bindir/bindir.go` does,
//! written from reading it:
//!
//! - every entry of `bin_dir`, in name order (`os.ReadDir` sorts), the first
//!   `max_verifiers` when that is not negative; a missing or empty `bin_dir`
//!   allows every pull;
//! - each runs as `<bin_dir>/<entry> -name <reference> -digest <digest>
//!   -stdin-media-type application/vnd.oci.descriptor.v1+json`, in its own
//!   process group, with containerd's environment (here: only what the test
//!   passes, so no credentials from the test's environment leak in);
//! - the descriptor is written to stdin as `json.Encoder` writes it (the
//!   JSON object and a newline), then stdin is closed;
//! - stdout is read up to 32 KiB (`outputLimitBytes = 1 << 15`), trimmed,
//!   and "(stdout truncated)" is appended when more was there; stderr is read
//!   up to 32 KiB (containerd logs it at debug level); the rest of both is
//!   read and discarded;
//! - `per_verifier_timeout` bounds all of it: when it passes, the process
//!   group is killed with SIGKILL, and the call is an error (no judgement:
//!   the pull fails), as is a verifier killed by a signal;
//! - the judgement: exit 0 is OK; the first other exit code rejects, with
//!   `verifier <entry> rejected image (exit code <n>): <stdout>`; the reasons
//!   of the verifiers that allowed are joined as `<entry> => <stdout>`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};

/// `ocispec.MediaTypeDescriptor`, the only stdin media type containerd sends.
pub const STDIN_MEDIA_TYPE: &str = "application/vnd.oci.descriptor.v1+json";

/// How much of stdout and of stderr containerd reads.
pub const OUTPUT_LIMIT_BYTES: usize = 1 << 15;

/// The plugin's configuration (`[plugins."io.containerd.image-verifier.v1.bindir"]`).
#[derive(Debug, Clone)]
pub struct Bindir {
    /// `bin_dir`.
    pub bin_dir: PathBuf,
    /// `max_verifiers` (negative: no limit).
    pub max_verifiers: i64,
    /// `per_verifier_timeout`.
    pub per_verifier_timeout: Duration,
    /// containerd's environment, as the verifiers get it.
    pub env: Vec<(String, String)>,
}

/// containerd's `imageverifier.Judgement`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judgement {
    /// Whether the pull may go ahead.
    pub ok: bool,
    /// Why, as containerd logs and returns it.
    pub reason: String,
}

/// What one verifier did.
#[derive(Debug, Clone)]
pub struct VerifierRun {
    /// Its exit code.
    pub exit_code: i32,
    /// Its stdout, trimmed and capped as containerd reads it.
    pub reason: String,
    /// Its stderr, capped as containerd reads it.
    pub stderr: String,
}

impl Bindir {
    /// A plugin over `bin_dir` with containerd's defaults (`max_verifiers = 10`,
    /// `per_verifier_timeout = 10s`) and `env` as containerd's environment.
    pub fn new(bin_dir: &Path, env: Vec<(String, String)>) -> Self {
        Self {
            bin_dir: bin_dir.to_owned(),
            max_verifiers: 10,
            per_verifier_timeout: Duration::from_secs(10),
            env,
        }
    }

    /// `VerifyImage(ctx, name, desc)`: every verifier of `bin_dir` on one pull.
    ///
    /// # Errors
    /// As containerd: a verifier could not be started, ran past the
    /// timeout, or was killed by a signal (the pull fails without a judgement).
    pub async fn verify_image(&self, name: &str, desc: &serde_json::Value) -> Result<Judgement> {
        let mut entries = match std::fs::read_dir(&self.bin_dir) {
            Ok(rd) => rd
                .map(|e| e.map(|e| e.file_name()))
                .collect::<std::io::Result<Vec<_>>>()?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Judgement {
                    ok: true,
                    reason: format!(
                        "image verifier directory {} does not exist",
                        self.bin_dir.display()
                    ),
                })
            }
            Err(e) => return Err(e).context("failed to list directory contents"),
        };
        if entries.is_empty() {
            return Ok(Judgement {
                ok: true,
                reason: format!(
                    "no image verifier binaries found in {}",
                    self.bin_dir.display()
                ),
            });
        }
        entries.sort();
        let mut reasons = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            if self.max_verifiers >= 0 && i as i64 + 1 > self.max_verifiers {
                break;
            }
            let bin = entry.to_string_lossy().into_owned();
            let run = self
                .run_verifier(&bin, name, desc)
                .await
                .with_context(|| format!("failed to call verifier {bin}"))?;
            if run.exit_code != 0 {
                return Ok(Judgement {
                    ok: false,
                    reason: format!(
                        "verifier {bin} rejected image (exit code {}): {}",
                        run.exit_code, run.reason
                    ),
                });
            }
            reasons.push(format!("{bin} => {}", run.reason));
        }
        Ok(Judgement {
            ok: true,
            reason: reasons.join(", "),
        })
    }

    /// `runVerifier`: one verifier on one pull.
    ///
    /// # Errors
    /// It cannot be started, it ran past `per_verifier_timeout` (its
    /// process group is killed), or it ended by a signal.
    pub async fn run_verifier(
        &self,
        bin: &str,
        name: &str,
        desc: &serde_json::Value,
    ) -> Result<VerifierRun> {
        let mut child = tokio::process::Command::new(self.bin_dir.join(bin))
            .args(["-name", name])
            .args(["-digest", desc["digest"].as_str().unwrap_or_default()])
            .args(["-stdin-media-type", STDIN_MEDIA_TYPE])
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            // `Setpgid: true`: killing the group leaves the caller alone.
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting process")?;
        let pid = child.id().context("no pid")?;
        let (Some(mut stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            bail!("pipes missing");
        };
        // json.NewEncoder(stdinWrite).Encode(desc): the object and a newline,
        // written asynchronously; a broken pipe is only logged by containerd.
        let mut encoded = serde_json::to_vec(desc)?;
        encoded.push(b'\n');
        let writer = tokio::spawn(async move {
            let _ = stdin.write_all(&encoded).await;
            drop(stdin);
        });
        let work = async {
            let stderr_task = tokio::spawn(read_capped(stderr));
            let (stdout, truncated) = read_capped(stdout).await;
            let mut reason = String::from_utf8_lossy(&stdout).trim().to_owned();
            if truncated {
                reason.push_str("(stdout truncated)");
            }
            let (stderr, _) = stderr_task.await.unwrap_or_default();
            let status = child.wait().await;
            (
                reason,
                String::from_utf8_lossy(&stderr).into_owned(),
                status,
            )
        };
        let outcome = tokio::time::timeout(self.per_verifier_timeout, work).await;
        writer.abort();
        let (reason, stderr, status) = match outcome {
            Ok(done) => done,
            Err(_) => {
                // cmd.Cancel: unix.Kill(-cmd.Process.Pid, unix.SIGKILL)
                kill_group(pid);
                let _ = child.wait().await;
                bail!(
                    "waiting on command to exit: signal: killed (past per_verifier_timeout {:?})",
                    self.per_verifier_timeout
                );
            }
        };
        let status = status.context("waiting on command to exit")?;
        match status.code() {
            Some(exit_code) => Ok(VerifierRun {
                exit_code,
                reason,
                stderr,
            }),
            None => bail!("waiting on command to exit: {status}"),
        }
    }
}

/// Reads up to [`OUTPUT_LIMIT_BYTES`], peeks whether more follows, then
/// reads the rest and discards it (so the writer never sees a broken pipe).
async fn read_capped<R: AsyncRead + Unpin>(mut r: R) -> (Vec<u8>, bool) {
    let mut buf = Vec::new();
    let _ = (&mut r)
        .take(OUTPUT_LIMIT_BYTES as u64)
        .read_to_end(&mut buf)
        .await;
    let mut peek = [0u8; 1];
    let truncated =
        buf.len() == OUTPUT_LIMIT_BYTES && matches!(r.read(&mut peek).await, Ok(n) if n > 0);
    let _ = tokio::io::copy(&mut r, &mut tokio::io::sink()).await;
    (buf, truncated)
}

/// SIGKILL to the process group `pgid`.
fn kill_group(pgid: u32) {
    if let Some(pid) = i32::try_from(pgid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}

/// Whether a process with `pid` is still running (a zombie waiting to be reaped is not).
pub fn process_exists(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // `pid (comm) state …`: the state follows the last ')'.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, Some('Z' | 'X') | None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(dir: &Path, name: &str, body: &str) {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn desc() -> serde_json::Value {
        serde_json::json!({
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": format!("sha256:{}", "a".repeat(64)),
            "size": 527,
        })
    }

    fn env() -> Vec<(String, String)> {
        vec![("PATH".into(), "/usr/bin:/bin".into())]
    }

    #[tokio::test]
    async fn verifiers_get_containerd_s_arguments_stdin_and_environment() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("seen");
        std::fs::create_dir(dir.path().join("bin")).unwrap();
        script(
            &dir.path().join("bin"),
            "a",
            &format!(
                "printf '%s\\n' \"$@\" > {o}.args; cat > {o}.stdin; env > {o}.env; echo '  fine  '",
                o = out.display()
            ),
        );
        let bindir = Bindir::new(&dir.path().join("bin"), env());
        std::env::set_var("PULLGATE_TEST_SECRET", "x");
        let j = bindir
            .verify_image("r.example/app:v1", &desc())
            .await
            .unwrap();
        assert_eq!(
            j,
            Judgement {
                ok: true,
                reason: "a => fine".into()
            }
        );
        let args = std::fs::read_to_string(format!("{}.args", out.display())).unwrap();
        assert_eq!(
            args,
            format!(
                "-name\nr.example/app:v1\n-digest\nsha256:{}\n-stdin-media-type\n{STDIN_MEDIA_TYPE}\n",
                "a".repeat(64)
            )
        );
        let stdin = std::fs::read(format!("{}.stdin", out.display())).unwrap();
        let mut want = serde_json::to_vec(&desc()).unwrap();
        want.push(b'\n');
        assert_eq!(stdin, want);
        let env = std::fs::read_to_string(format!("{}.env", out.display())).unwrap();
        assert!(!env.contains("PULLGATE_TEST_SECRET"), "{env}");
    }

    #[tokio::test]
    async fn the_first_rejection_wins_and_stdout_is_capped() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        script(&bin, "1-ok", "echo one");
        script(
            &bin,
            "2-no",
            "head -c 100000 /dev/zero | tr '\\0' x; exit 3",
        );
        script(&bin, "3-never", "touch never; exit 0");
        let j = Bindir::new(&bin, env())
            .verify_image("n", &desc())
            .await
            .unwrap();
        assert!(!j.ok);
        let want_prefix = "verifier 2-no rejected image (exit code 3): ";
        assert!(j.reason.starts_with(want_prefix), "{}", &j.reason[..80]);
        assert_eq!(
            j.reason.len(),
            want_prefix.len() + OUTPUT_LIMIT_BYTES + "(stdout truncated)".len()
        );
        assert!(j.reason.ends_with("x(stdout truncated)"));
    }

    #[tokio::test]
    async fn past_the_timeout_the_whole_process_group_is_killed_and_the_call_fails() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let pidfile = dir.path().join("child.pid");
        // A grandchild holding stdout open, as a verifier's helper might.
        script(
            &bin,
            "slow",
            &format!("sleep 60 & echo $! > {}; wait", pidfile.display()),
        );
        let mut bindir = Bindir::new(&bin, env());
        bindir.per_verifier_timeout = Duration::from_millis(500);
        let err = bindir.verify_image("n", &desc()).await.unwrap_err();
        assert!(format!("{err:#}").contains("signal: killed"), "{err:#}");
        let child: u32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        for _ in 0..50 {
            if !process_exists(child) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the verifier's child {child} outlived the timeout");
    }

    #[tokio::test]
    async fn no_directory_or_an_empty_one_allows() {
        let dir = tempfile::tempdir().unwrap();
        let j = Bindir::new(&dir.path().join("none"), env())
            .verify_image("n", &desc())
            .await
            .unwrap();
        assert!(j.ok && j.reason.contains("does not exist"));
        let j = Bindir::new(dir.path(), env())
            .verify_image("n", &desc())
            .await
            .unwrap();
        assert!(j.ok && j.reason.contains("no image verifier binaries"));
    }
}
