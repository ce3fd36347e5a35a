//! The addresses another node announces, whose ARP requests the programs drop here (see
//! `speaker_common::ELSEWHERE_MAP`): kept equal to what the speaker says, with the drop counts.

use std::{collections::BTreeSet, net::Ipv4Addr};

use aya::maps::{HashMap, MapData, MapError};

/// An address as the map keys it: its four bytes in wire order, read as a `u32`.
pub fn key(addr: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(addr.octets())
}

pub struct Elsewhere {
    map: HashMap<MapData, u32, u64>,
    current: BTreeSet<Ipv4Addr>,
}

impl Elsewhere {
    pub fn new(map: HashMap<MapData, u32, u64>) -> Self {
        Self { map, current: BTreeSet::new() }
    }

    /// Makes the map hold exactly `wanted`: the addresses that left it go first, then the new
    /// ones (counting from 0); those that stay keep their counts. On error, what is in the map
    /// is what the next call starts from.
    pub fn set(&mut self, wanted: &BTreeSet<Ipv4Addr>) -> Result<(), MapError> {
        for gone in self.current.difference(wanted).copied().collect::<Vec<_>>() {
            match self.map.remove(&key(gone)) {
                Ok(()) | Err(MapError::KeyNotFound) => drop(self.current.remove(&gone)),
                Err(e) => return Err(e),
            }
        }
        for new in wanted.difference(&self.current).copied().collect::<Vec<_>>() {
            self.map.insert(&key(new), &0, 0)?;
            self.current.insert(new);
        }
        Ok(())
    }

    pub fn current(&self) -> &BTreeSet<Ipv4Addr> {
        &self.current
    }
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
