//! The addresses another node announces, whose ARP requests the programs drop here (see
//! `speaker_common::ELSEWHERE_MAP`): kept equal to what the speaker says, with the drop counts.

use std::net::Ipv4Addr;

use aya::maps::{HashMap, MapData, MapError};

use super::mirror::Mirror;

/// An address as the map keys it: its four bytes in wire order, read as a `u32`.
pub fn key(addr: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(addr.octets())
}

/// The map, kept equal to what the speaker says; the addresses that stay keep their counts.
pub type Elsewhere = Mirror<Ipv4Addr, u32, u64>;

pub fn mirror(map: HashMap<MapData, u32, u64>) -> Elsewhere {
    Mirror::new(map, key, 0)
}

/// Each address of an elsewhere map and the requests dropped for it, in address order.
pub fn counts<M: std::borrow::Borrow<MapData>>(
    map: &HashMap<M, u32, u64>,
) -> Result<Vec<(Ipv4Addr, u64)>, MapError> {
    let mut out = map
        .iter()
        .map(|kv| kv.map(|(k, dropped)| (Ipv4Addr::from(k.to_ne_bytes()), dropped)))
        .collect::<Result<Vec<_>, _>>()?;
    out.sort();
    Ok(out)
}
