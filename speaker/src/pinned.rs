//! Read-only access to the maps a running speaker pinned: for `herald-speaker status`, and to
//! tell a live speaker's pins from a dead one's.

use std::{
    net::{IpAddr, Ipv4Addr},
    path::Path,
};

use aya::maps::{Array, HashMap, Map, MapData, MapError};
use speaker_common::{
    ARP_MAP, AddressEntry, ArpKey, ELSEWHERE_MAP, HEARTBEAT_MAP, Heartbeat, NDP_MAP, NdpKey,
};

/// One entry of the responder maps (ARP's or Neighbor Discovery's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub addr: IpAddr,
    pub ifindex: u32,
    pub vlan: u16,
    pub mac: [u8; 6],
    pub replies: u64,
    /// Claims on the address by another MAC (see [`AddressEntry::conflicts`]).
    pub conflicts: u64,
    /// When the last claim was seen (`CLOCK_MONOTONIC` ns; 0 = never), and the MAC it gave.
    pub conflict_ns: u64,
    pub conflict_mac: [u8; 6],
}

impl Entry {
    fn new(addr: IpAddr, ifindex: u32, vlan: u16, value: &AddressEntry) -> Self {
        Self {
            addr,
            ifindex,
            vlan,
            mac: value.mac,
            replies: value.replies,
            conflicts: value.conflicts,
            conflict_ns: value.conflict_ns,
            conflict_mac: value.conflict_mac,
        }
    }
}

/// The entries of both responder maps, in address order (IPv4 first).
pub fn entries_of<A, N>(
    arp: &HashMap<A, ArpKey, AddressEntry>,
    ndp: &HashMap<N, NdpKey, AddressEntry>,
) -> Result<Vec<Entry>, MapError>
where
    A: std::borrow::Borrow<MapData>,
    N: std::borrow::Borrow<MapData>,
{
    let arp = arp.iter().map(|kv| kv.map(|(k, v)| Entry::new(k.addr.into(), k.ifindex, k.vlan, &v)));
    let ndp = ndp.iter().map(|kv| kv.map(|(k, v)| Entry::new(k.addr.into(), k.ifindex, k.vlan, &v)));
    let mut out = arp.chain(ndp).collect::<Result<Vec<_>, _>>()?;
    out.sort_by_key(|e| (e.addr, e.ifindex, e.vlan));
    Ok(out)
}

/// Whether the speaker that wrote `beat` still runs (in this PID namespace). A zombie, killed
/// but not yet reaped by its parent, has closed its descriptors: it counts as gone.
pub fn speaker_alive(beat: &Heartbeat) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", beat.pid)) else {
        return false;
    };
    beat.pid != 0 && !matches!(process_state(&stat), Some('Z' | 'X'))
}

/// The state letter of a `/proc/PID/stat` line: the field after the parenthesised name (which
/// may itself contain spaces and parentheses).
fn process_state(stat: &str) -> Option<char> {
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

pub fn heartbeat(dir: &Path) -> Result<Heartbeat, MapError> {
    let map = Map::Array(MapData::from_pin(dir.join(HEARTBEAT_MAP))?);
    Array::<_, Heartbeat>::try_from(map)?.get(&0, 0)
}

pub fn entries(dir: &Path) -> Result<Vec<Entry>, MapError> {
    let arp = Map::HashMap(MapData::from_pin(dir.join(ARP_MAP))?);
    let ndp = Map::HashMap(MapData::from_pin(dir.join(NDP_MAP))?);
    entries_of(
        &HashMap::<_, ArpKey, AddressEntry>::try_from(arp)?,
        &HashMap::<_, NdpKey, AddressEntry>::try_from(ndp)?,
    )
}

/// The addresses another node announces, whose ARP requests the programs drop here, with how
/// many they dropped.
pub fn elsewhere(dir: &Path) -> Result<Vec<(Ipv4Addr, u64)>, MapError> {
    let map = Map::HashMap(MapData::from_pin(dir.join(ELSEWHERE_MAP))?);
    crate::datapath::elsewhere::counts(&HashMap::<_, u32, u64>::try_from(map)?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn process_state() {
        assert_eq!(super::process_state("42 (herald-speaker) S 1 42 42 0"), Some('S'));
        assert_eq!(super::process_state("42 (a) b) (c) Z 1 42"), Some('Z'));
        assert_eq!(super::process_state("garbage"), None);
    }
}
