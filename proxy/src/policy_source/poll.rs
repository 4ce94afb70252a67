//! The poll of `[trust] source`: one check at start, then one every
//! `[trust] source_poll_seconds`, jittered by ±20% per wait so a fleet
//! started together does not ask the registry in step.
//!
//! Input: a `PolicySource`, the interval, the root cancellation token.
//! Output: checks until shutdown.

use std::hash::BuildHasher as _;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::PolicySource;

/// Checks `source` now and then every `interval` (jittered) until `shutdown`.
///
/// # Cancel safety
/// Cancel safe: see `PolicySource::check`.
pub async fn run(mut source: PolicySource, interval: Duration, shutdown: CancellationToken) {
    let seed = std::collections::hash_map::RandomState::new();
    for n in 0u64.. {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = source.check() => {}
        }
        let wait = jittered(interval, seed.hash_one(n) % 1000);
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// `interval` times `0.8 + 0.4 * permille / 1000` (`permille` in 0..1000):
/// from 80% to 120% of it.
pub(crate) fn jittered(interval: Duration, permille: u64) -> Duration {
    let permille = u32::try_from(permille.min(999)).unwrap_or(999);
    interval * (800 + permille * 400 / 1000) / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_stays_within_twenty_percent_of_the_interval() {
        let i = Duration::from_secs(300);
        assert_eq!(jittered(i, 0), Duration::from_secs(240));
        assert_eq!(jittered(i, 500), Duration::from_secs(300));
        assert!(jittered(i, 999) < Duration::from_secs(360));
        assert!(jittered(i, 999) > Duration::from_secs(359));
        assert_eq!(jittered(i, u64::MAX), jittered(i, 999));
        assert_eq!(
            jittered(Duration::from_secs(1), 0),
            Duration::from_millis(800)
        );
    }
}
