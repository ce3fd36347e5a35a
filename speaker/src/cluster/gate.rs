//! What the membership socket lets through to the HMAC: datagrams from known addresses (the
//! configured peers, or, in Kubernetes mode, the Nodes' addresses, and the members) always;
//! from any other address, [`STRANGERS_PER_SECOND`] a second between them all. A flood from
//! addresses that are not members (any host on the LAN, any pod) thus costs a lookup per
//! datagram, never an HMAC, and cannot crowd a member's datagrams out of the checks. A flood
//! that forges a member's address is checked, at the cost of an HMAC over at most
//! `auth::MAX_DATAGRAM` bytes, and is dropped there.
//!
//! Pure: time comes in.

use std::{collections::HashSet, net::SocketAddr, time::Instant};

/// Datagrams from unknown addresses checked a second, all such addresses together: a member
/// whose address is not known yet (a Node just added) is heard within a second or two.
pub const STRANGERS_PER_SECOND: u32 = 100;

#[derive(Debug)]
pub struct Gate {
    known: HashSet<SocketAddr>,
    /// Checks left for unknown addresses in the current second, and when it began.
    budget: u32,
    since: Option<Instant>,
}

impl Gate {
    pub fn new() -> Self {
        Self { known: HashSet::new(), budget: STRANGERS_PER_SECOND, since: None }
    }

    /// The known addresses from now on.
    pub fn know(&mut self, known: impl IntoIterator<Item = SocketAddr>) {
        self.known = known.into_iter().collect();
    }

    /// Whether a datagram from `from`, arriving at `now`, is to be checked.
    pub fn admits(&mut self, from: SocketAddr, now: Instant) -> bool {
        if self.known.contains(&from) {
            return true;
        }
        if self.since.is_none_or(|since| now.saturating_duration_since(since).as_secs() >= 1) {
            (self.since, self.budget) = (Some(now), STRANGERS_PER_SECOND);
        }
        let admitted = self.budget > 0;
        self.budget = self.budget.saturating_sub(1);
        admitted
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn addr(last: u8, port: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, last], port))
    }

    #[test]
    fn known_addresses_always_pass_and_strangers_share_a_budget() {
        let t0 = Instant::now();
        let mut gate = Gate::new();
        gate.know([addr(2, 7946), addr(3, 7946)]);
        // A flood from many unknown addresses: the budget, then nothing, for that second.
        let passed = (0..10_000u16).filter(|i| gate.admits(addr(9, *i), t0)).count();
        assert_eq!(passed, STRANGERS_PER_SECOND as usize);
        // The members' datagrams are not crowded out.
        assert!((0..1000).all(|_| gate.admits(addr(2, 7946), t0 + Duration::from_millis(500))));
        assert!(!gate.admits(addr(2, 7947), t0), "another port is another address");
        // The next second, a new budget.
        assert!(gate.admits(addr(9, 1), t0 + Duration::from_secs(1)));
        // Known addresses follow the peers and members.
        gate.know([addr(9, 1)]);
        assert!((0..1000).all(|_| gate.admits(addr(9, 1), t0 + Duration::from_millis(1500))));
        let later = t0 + Duration::from_secs(2);
        let passed = (0..1000u16).filter(|i| gate.admits(addr(2, *i), later)).count();
        assert_eq!(passed, STRANGERS_PER_SECOND as usize, "a former member is a stranger");
    }
}
