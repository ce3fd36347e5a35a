//! A BPF hash map kept equal to a set the speaker holds: the addresses announced elsewhere, the
//! other speakers' MACs.

use std::collections::BTreeSet;

use aya::{
    Pod,
    maps::{HashMap, MapData, MapError},
};

pub struct Mirror<T, K, V> {
    map: HashMap<MapData, K, V>,
    current: BTreeSet<T>,
    key: fn(T) -> K,
    /// The value a new key starts with.
    fresh: V,
}

impl<T: Ord + Copy, K: Pod, V: Pod> Mirror<T, K, V> {
    pub fn new(map: HashMap<MapData, K, V>, key: fn(T) -> K, fresh: V) -> Self {
        Self { map, current: BTreeSet::new(), key, fresh }
    }

    /// Makes the map hold exactly `wanted`: the keys that left it go first (room for the new),
    /// then the new ones; those that stay keep their values. On error, what is in the map is
    /// what the next call starts from.
    pub fn set(&mut self, wanted: &BTreeSet<T>) -> Result<(), MapError> {
        for gone in self.current.difference(wanted).copied().collect::<Vec<_>>() {
            match self.map.remove(&(self.key)(gone)) {
                Ok(()) | Err(MapError::KeyNotFound) => drop(self.current.remove(&gone)),
                Err(e) => return Err(e),
            }
        }
        for new in wanted.difference(&self.current).copied().collect::<Vec<_>>() {
            self.map.insert(&(self.key)(new), &self.fresh, 0)?;
            self.current.insert(new);
        }
        Ok(())
    }

    pub fn current(&self) -> &BTreeSet<T> {
        &self.current
    }
}
