//! The entries of the responder map, as both modes want them, and what must change to get from
//! those in the map to those wanted.

use std::{collections::BTreeSet, net::IpAddr};

use speaker_common::{ArpKey, NdpKey};

/// One entry of the responder maps: answer for `addr` on `ifindex` (VLAN `vlan`) with `mac`, by
/// ARP for an IPv4 address, by Neighbor Discovery for an IPv6 one.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Announcement {
    pub addr: IpAddr,
    pub ifindex: u32,
    pub vlan: u16,
    pub mac: [u8; 6],
    pub ifname: String,
}

impl Announcement {
    pub fn key(&self) -> Key {
        match self.addr {
            IpAddr::V4(a) => Key::Arp(ArpKey::new(a.octets(), self.ifindex, self.vlan)),
            IpAddr::V6(a) => Key::Ndp(NdpKey::new(a.octets(), self.ifindex, self.vlan)),
        }
    }
}

/// An announcement's key in the responder maps: ARP's or Neighbor Discovery's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    Arp(ArpKey),
    Ndp(NdpKey),
}

/// What to change to get from `current` to `desired`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Diff {
    pub withdraw: Vec<Announcement>,
    pub announce: Vec<Announcement>,
}

/// Entries to withdraw and to announce; entries in both sets are left alone (their counters
/// and their place in the map are kept).
pub fn diff(current: &BTreeSet<Announcement>, desired: &BTreeSet<Announcement>) -> Diff {
    Diff {
        withdraw: current.difference(desired).cloned().collect(),
        announce: desired.difference(current).cloned().collect(),
    }
}

/// The interfaces (index, name) that carry at least one announcement.
pub fn interfaces<'a>(announcements: impl IntoIterator<Item = &'a Announcement>) -> BTreeSet<(u32, String)> {
    announcements.into_iter().map(|a| (a.ifindex, a.ifname.clone())).collect()
}

#[cfg(test)]
#[path = "announcement_tests.rs"]
mod tests;
