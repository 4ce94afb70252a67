//! The CRI socket: mode 0660, a stale socket replaced, a live one refused.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::process::Command;

use pullgate_tests::pullgate::{binary_path, Pullgate};
use pullgate_tests::{cri, testbed::DockerTestbed};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd"]
async fn socket_mode_stale_and_live_sockets() {
    let bed = DockerTestbed::start().await.unwrap();
    let first = bed.start_pullgate().await.unwrap();
    let socket = first.socket().to_owned();
    let meta = std::fs::metadata(&socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);

    // A second pullgate on a live socket refuses to start and leaves it alone.
    let second = tokio::process::Command::new(binary_path())
        .arg("serve")
        .arg("--config")
        .arg(first.config_path())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(30), second)
        .await
        .expect("a refused start exits instead of hanging")
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("in use"), "{stderr}");
    let ch = cri::connect(&socket).await.unwrap();
    cri::version(&ch).await.unwrap();

    // Killed without cleanup, it leaves a stale socket; the next start replaces it.
    let killed = Command::new("kill")
        .arg("-9")
        .arg(first.pid().to_string())
        .status()
        .unwrap();
    assert!(killed.success());
    for _ in 0..50 {
        if tokio::net::UnixStream::connect(&socket).await.is_err() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(socket.exists(), "the killed process left its socket behind");
    let config = std::fs::read_to_string(first.config_path()).unwrap();
    drop(first);
    let second = Pullgate::start(&config, bed.dir()).await.unwrap();
    let ch = cri::connect(second.socket()).await.unwrap();
    cri::version(&ch).await.unwrap();
}
