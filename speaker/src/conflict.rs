//! Other hosts claiming an address this node announces: the XDP program counts every ARP reply
//! or gratuitous ARP that gives an announced address a MAC that is neither this node's nor
//! another Herald speaker's (a MetalLB speaker left running during a migration, a host with the
//! address configured by hand). This turns those counts into episodes: the first claim after a
//! quiet spell, or a claim by a new MAC, starts one and is told once (a warning, an Event);
//! the claims that follow are counted, not told again.

use std::{collections::BTreeMap, net::IpAddr, time::Duration};

use crate::pinned::Entry;

/// How often the programs' conflict count is read: one map read, the entries only when it grew.
pub const POLL: Duration = Duration::from_millis(250);

/// A quiet spell this long ends an episode.
pub const EPISODE_GAP: Duration = Duration::from_secs(60);

/// The start of an episode, to tell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    pub addr: IpAddr,
    pub ifindex: u32,
    pub vlan: u16,
    /// The MAC the other host gave the address.
    pub mac: [u8; 6],
}

/// The open episode of one entry.
#[derive(Clone, Copy, Debug)]
struct Episode {
    /// When its last claim was seen (`CLOCK_MONOTONIC` ns).
    last_ns: u64,
    mac: [u8; 6],
}

/// Episodes by entry (address, interface, VLAN).
#[derive(Debug, Default)]
pub struct Watch {
    episodes: BTreeMap<(IpAddr, u32, u16), Episode>,
    /// Counters as last seen, episode or not.
    counts: BTreeMap<(IpAddr, u32, u16), u64>,
}

impl Watch {
    /// Takes in the map's `entries` as read at `now_ns`; returns the episodes that start.
    pub fn observe(&mut self, now_ns: u64, entries: &[Entry]) -> Vec<Conflict> {
        let mut started = Vec::new();
        let mut counts = BTreeMap::new();
        for e in entries {
            let key = (e.addr, e.ifindex, e.vlan);
            counts.insert(key, e.conflicts);
            // A new entry's counter started at 0 (the speaker makes its maps afresh).
            let before = self.counts.get(&key).copied().unwrap_or(0);
            if e.conflicts <= before {
                // Nothing new (or the entry was made again, its counter from 0).
                if e.conflicts < before {
                    self.episodes.remove(&key);
                }
                continue;
            }
            let open = self.episodes.get(&key).filter(|ep| {
                ep.mac == e.conflict_mac
                    && e.conflict_ns.saturating_sub(ep.last_ns) < EPISODE_GAP.as_nanos() as u64
            });
            if open.is_none() {
                started.push(Conflict {
                    addr: e.addr,
                    ifindex: e.ifindex,
                    vlan: e.vlan,
                    mac: e.conflict_mac,
                });
            }
            self.episodes.insert(key, Episode { last_ns: e.conflict_ns, mac: e.conflict_mac });
        }
        // Episodes of entries that are gone, or quiet for long enough, are over.
        self.episodes.retain(|key, ep| {
            counts.contains_key(key) && now_ns.saturating_sub(ep.last_ns) < EPISODE_GAP.as_nanos() as u64
        });
        self.counts = counts;
        started
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;
    const FOREIGN: [u8; 6] = [0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff];
    const OTHER: [u8; 6] = [0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0x01];

    fn entry(conflicts: u64, at_s: u64, mac: [u8; 6]) -> Entry {
        Entry {
            addr: [192, 0, 2, 10].into(),
            ifindex: 2,
            vlan: 0,
            mac: [2, 0, 0, 0, 0, 1],
            replies: 0,
            conflicts,
            conflict_ns: at_s * S,
            conflict_mac: mac,
        }
    }

    #[test]
    fn one_telling_per_episode() {
        let mut w = Watch::default();
        assert!(w.observe(S, &[entry(0, 0, [0; 6])]).is_empty(), "no claims");
        let told = w.observe(2 * S, &[entry(1, 2, FOREIGN)]);
        assert_eq!(told, [Conflict { addr: [192, 0, 2, 10].into(), ifindex: 2, vlan: 0, mac: FOREIGN }]);
        assert!(w.observe(3 * S, &[entry(5, 3, FOREIGN)]).is_empty(), "the same episode");
        assert!(w.observe(40 * S, &[entry(6, 40, FOREIGN)]).is_empty(), "a gap shorter than the episode gap");
        assert_eq!(w.observe(41 * S, &[entry(7, 41, OTHER)]).len(), 1, "another MAC: a new episode");
        assert!(w.observe(90 * S, &[entry(7, 41, OTHER)]).is_empty(), "quiet");
        assert_eq!(
            w.observe(120 * S, &[entry(8, 120, OTHER)]).len(),
            1,
            "after a quiet minute: a new episode"
        );
    }

    #[test]
    fn entries_that_come_and_go() {
        let mut w = Watch::default();
        // An entry first seen with claims: they came after it was made, so they are news.
        assert_eq!(w.observe(S, &[entry(3, 0, FOREIGN)]).len(), 1);
        assert!(w.observe(2 * S, &[entry(4, 2, FOREIGN)]).is_empty());
        // Withdrawn, announced again: the counter starts over and the first claim is news.
        assert!(w.observe(3 * S, &[]).is_empty());
        assert!(w.observe(4 * S, &[entry(0, 0, [0; 6])]).is_empty());
        assert_eq!(w.observe(5 * S, &[entry(1, 5, FOREIGN)]).len(), 1);
    }
}
