//! A byte relay: the floor under any userspace proxy on the node.
//!
//! `pullgate-bench byte-relay --listen A --upstream B` accepts on unix
//! socket `A`, opens one connection to `B` per accepted connection, and
//! copies bytes both ways (`tokio::io::copy_bidirectional`) until either
//! side closes: no HTTP/2 frame and no message is decoded. It runs in its
//! own process on a multi-thread tokio runtime, as pullgate does, so it
//! costs the same process hop and the same wake-ups, and nothing else. The
//! bench pulls through it (`relay-present`, `relay-present-digest`,
//! `relay-create`) so that `relay − direct` is the hop's cost and
//! `hot − relay` pullgate's own. Written here because it measures, it does
//! not serve: no limits, no shutdown beyond the process being killed.

use std::path::Path;

use anyhow::{Context as _, Result};
use tokio::net::{UnixListener, UnixStream};

/// Serves `listen` until killed, copying every connection to one of its own on `upstream`.
///
/// # Errors
/// The socket cannot be bound.
pub(crate) fn serve(listen: &Path, upstream: &Path) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    runtime.block_on(async {
        let _ = std::fs::remove_file(listen);
        let listener =
            UnixListener::bind(listen).with_context(|| format!("binding {}", listen.display()))?;
        loop {
            let (mut downstream, _) = listener.accept().await?;
            let upstream = upstream.to_owned();
            tokio::spawn(async move {
                let Ok(mut up) = UnixStream::connect(&upstream).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut downstream, &mut up).await;
            });
        }
    })
}
