//! The other speakers' MACs, as the programs need them: a gratuitous ARP from one (a takeover)
//! is no conflict. Every member's, and for a while those of members gone (one declared down and
//! back, or whose takeover's ARP is still in flight); then forgotten, so that the set follows
//! the membership instead of growing with every node that ever ran.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use super::PeerMacs;

/// How long a gone member's MACs stay peers.
const REMEMBERED: Duration = Duration::from_secs(600);

#[derive(Debug, Default)]
pub struct Recent {
    seen: BTreeMap<[u8; 6], Instant>,
}

impl Recent {
    /// The peers, given the members' MACs at `now`.
    pub fn update(&mut self, members: impl IntoIterator<Item = [u8; 6]>, now: Instant) -> PeerMacs {
        for mac in members {
            self.seen.insert(mac, now);
        }
        self.seen.retain(|_, at| now.saturating_duration_since(*at) < REMEMBERED);
        self.seen.keys().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gone_members_are_peers_for_a_while_then_forgotten() {
        let (a, b) = ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
        let mut recent = Recent::default();
        let t0 = Instant::now();
        assert_eq!(recent.update([a, b], t0), PeerMacs::from([a, b]));
        let soon = t0 + Duration::from_secs(5);
        assert_eq!(recent.update([a], soon), PeerMacs::from([a, b]), "b just left: still a peer");
        let later = t0 + REMEMBERED + Duration::from_secs(1);
        assert_eq!(recent.update([a], later), PeerMacs::from([a]), "b gone long ago: forgotten");
    }
}
