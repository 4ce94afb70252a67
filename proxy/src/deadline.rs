//! Deadlines as a type: every network await in a pull runs under one.
//!
//! `cri` builds a [`Deadline`] from the request's `grpc-timeout` and the
//! configured decision budget, whichever is shorter, and passes it down.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// A point in time after which the work for one request is abandoned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline(Instant);

/// The deadline passed before the work finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("deadline exceeded")]
pub struct DeadlineExceeded;

impl Deadline {
    /// `budget` from now.
    pub fn after(budget: Duration) -> Self {
        Self(Instant::now() + budget)
    }

    /// The earlier of this deadline and `budget` from now.
    pub(crate) fn at_most(self, budget: Duration) -> Self {
        Self(self.0.min(Instant::now() + budget))
    }

    /// Time left until the deadline (zero once it passed).
    pub(crate) fn remaining(&self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }

    /// Whether the deadline has passed.
    pub(crate) fn is_past(&self) -> bool {
        Instant::now() >= self.0
    }

    /// Runs `fut` until it finishes or the deadline passes.
    ///
    /// # Errors
    /// [`DeadlineExceeded`] when the deadline passes first; `fut` is dropped.
    ///
    /// # Cancel safety
    /// As cancel safe as `fut`.
    pub(crate) async fn run<F: Future>(self, fut: F) -> Result<F::Output, DeadlineExceeded> {
        tokio::time::timeout_at(self.0, fut)
            .await
            .map_err(|_| DeadlineExceeded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn passes_and_fires() {
        let d = Deadline::after(Duration::from_secs(1));
        assert!(!d.is_past());
        assert_eq!(d.run(async { 7 }).await, Ok(7));
        let slow = d.run(tokio::time::sleep(Duration::from_secs(5))).await;
        assert_eq!(slow, Err(DeadlineExceeded));
        assert!(d.is_past());
        assert!(d.at_most(Duration::from_secs(9)).is_past());
    }
}
