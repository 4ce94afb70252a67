//! Bytes fetched ahead: at most `max_bytes_per_pull` by one pull and
//! `max_bytes_total` held by all pulls at once (until their leases end).
//!
//! A blob is reserved whole, by its descriptor's size, before any byte of
//! it is fetched; a blob that does not fit is left to containerd.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Bytes all prefetches hold at once.
#[derive(Debug)]
pub(crate) struct TotalBudget {
    limit: u64,
    held: AtomicU64,
}

/// Bytes taken from a [`TotalBudget`], given back when dropped.
#[derive(Debug)]
pub(crate) struct Held {
    total: Arc<TotalBudget>,
    bytes: u64,
}

impl TotalBudget {
    pub(crate) fn new(limit: u64) -> Arc<Self> {
        Arc::new(Self {
            limit,
            held: AtomicU64::new(0),
        })
    }

    /// Bytes held now.
    #[cfg(test)]
    pub(crate) fn held(&self) -> u64 {
        self.held.load(Ordering::Acquire)
    }

    /// Takes `bytes` if they fit under the limit with what is held.
    pub(crate) fn take(self: &Arc<Self>, bytes: u64) -> Option<Held> {
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(bytes).filter(|&n| n <= self.limit)
            })
            .ok()?;
        Some(Held {
            total: Arc::clone(self),
            bytes,
        })
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.total.held.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// One pull's share: its own limit, and what it holds of the total.
#[derive(Debug)]
pub(crate) struct PullBudget {
    limit: u64,
    used: u64,
    total: Arc<TotalBudget>,
    held: Vec<Held>,
}

impl PullBudget {
    pub(crate) fn new(limit: u64, total: Arc<TotalBudget>) -> Self {
        Self {
            limit,
            used: 0,
            total,
            held: Vec::new(),
        }
    }

    /// Reserves `bytes` for one blob if they fit in this pull's limit and in
    /// the total; `false` leaves both unchanged.
    pub(crate) fn reserve(&mut self, bytes: u64) -> bool {
        let Some(used) = self.used.checked_add(bytes).filter(|&n| n <= self.limit) else {
            return false;
        };
        let Some(held) = self.total.take(bytes) else {
            return false;
        };
        self.used = used;
        self.held.push(held);
        true
    }

    /// Gives back a reservation whose blob was not written (already present, or failed).
    pub(crate) fn unreserve(&mut self, bytes: u64) {
        if let Some(i) = self.held.iter().rposition(|h| h.bytes == bytes) {
            self.held.swap_remove(i);
            self.used = self.used.saturating_sub(bytes);
        }
    }

    /// Bytes reserved by this pull.
    #[cfg(test)]
    pub(crate) fn used(&self) -> u64 {
        self.used
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pull_stops_at_its_own_limit() {
        let total = TotalBudget::new(1000);
        let mut pull = PullBudget::new(100, Arc::clone(&total));
        assert!(pull.reserve(60));
        assert!(!pull.reserve(41), "60 + 41 passes 100");
        assert!(pull.reserve(40), "a smaller blob still fits");
        assert_eq!(pull.used(), 100);
        assert_eq!(total.held(), 100);
        assert!(!pull.reserve(1));
    }

    #[test]
    fn pulls_share_the_total_until_dropped() {
        let total = TotalBudget::new(150);
        let mut a = PullBudget::new(100, Arc::clone(&total));
        let mut b = PullBudget::new(100, Arc::clone(&total));
        assert!(a.reserve(100));
        assert!(!b.reserve(60), "100 + 60 passes the total");
        assert!(b.reserve(50));
        assert_eq!(total.held(), 150);
        drop(a);
        assert_eq!(total.held(), 50, "a pull's bytes come back when it ends");
        assert!(b.reserve(50));
    }

    #[test]
    fn unreserve_gives_back_to_both() {
        let total = TotalBudget::new(100);
        let mut pull = PullBudget::new(100, Arc::clone(&total));
        assert!(pull.reserve(70));
        pull.unreserve(70);
        assert_eq!((pull.used(), total.held()), (0, 0));
        assert!(pull.reserve(100));
        pull.unreserve(5); // never reserved: nothing changes
        assert_eq!((pull.used(), total.held()), (100, 100));
    }

    #[test]
    fn overflowing_sizes_are_refused() {
        let total = TotalBudget::new(u64::MAX);
        let mut pull = PullBudget::new(u64::MAX, Arc::clone(&total));
        assert!(pull.reserve(u64::MAX - 1));
        assert!(!pull.reserve(2));
        assert_eq!(total.held(), u64::MAX - 1);
    }
}
