//! The speaker's counters, kept in one place for the status report (and for export later).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Debug, Default)]
pub struct Metrics {
    /// Addresses this speaker started or stopped announcing because the election moved them.
    pub ownership_changes: AtomicU64,
    pub gratuitous_sent: AtomicU64,
    /// Members this speaker sees alive, itself included.
    pub members_alive: AtomicU64,
    /// Membership datagrams dropped: bad HMAC or framing, too old or new, replayed, or
    /// authentic but not a valid membership message.
    pub rejected_unauthenticated: AtomicU64,
    pub rejected_stale: AtomicU64,
    pub rejected_replayed: AtomicU64,
    pub rejected_malformed: AtomicU64,
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    pub fn set(gauge: &AtomicU64, value: u64) {
        gauge.store(value, Relaxed);
    }

    /// Name and value of every counter, for reports.
    pub fn snapshot(&self) -> [(&'static str, u64); 7] {
        [
            ("ownership_changes", self.ownership_changes.load(Relaxed)),
            ("gratuitous_sent", self.gratuitous_sent.load(Relaxed)),
            ("members_alive", self.members_alive.load(Relaxed)),
            ("rejected_unauthenticated", self.rejected_unauthenticated.load(Relaxed)),
            ("rejected_stale", self.rejected_stale.load(Relaxed)),
            ("rejected_replayed", self.rejected_replayed.load(Relaxed)),
            ("rejected_malformed", self.rejected_malformed.load(Relaxed)),
        ]
    }
}
