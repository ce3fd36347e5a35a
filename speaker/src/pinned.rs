//! Read-only access to the maps a running speaker pinned: for `herald-speaker status`, and to
//! tell a live speaker's pins from a dead one's.

use std::{net::Ipv4Addr, path::Path};

use aya::maps::{Array, HashMap, Map, MapData, MapError};
use speaker_common::{ARP_MAP, ArpEntry, ArpKey, HEARTBEAT_MAP, Heartbeat};

/// One entry of the responder map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub addr: Ipv4Addr,
    pub ifindex: u32,
    pub vlan: u16,
    pub mac: [u8; 6],
    pub replies: u64,
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
    let map = Map::HashMap(MapData::from_pin(dir.join(ARP_MAP))?);
    let map = HashMap::<_, ArpKey, ArpEntry>::try_from(map)?;
    let mut out = map
        .iter()
        .map(|kv| {
            kv.map(|(k, v)| Entry {
                addr: k.addr.into(),
                ifindex: k.ifindex,
                vlan: k.vlan,
                mac: v.mac,
                replies: v.replies,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    out.sort_by_key(|e| (e.addr, e.ifindex, e.vlan));
    Ok(out)
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
