//! The programs' heartbeat slot: the dead man's switch. Each beat says how long it holds; past
//! that, the programs answer nothing and pass every frame (the node fails open, to its kernel).
//! Written from whichever thread vouches for the speaker: the run loop of a speaker alone, the
//! membership thread of a cluster member (see [`crate::fence`]).

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use aya::maps::{Array, MapData};
use speaker_common::Heartbeat;

use super::DatapathError;
use crate::clock;

/// A handle on the slot; clones write the same one.
#[derive(Clone)]
pub struct Heartbeats(Arc<Mutex<Slot>>);

struct Slot {
    map: Array<MapData, Heartbeat>,
    /// What was last written: a count changes without renewing the beat.
    last: Heartbeat,
}

impl Heartbeats {
    pub(super) fn new(map: Array<MapData, Heartbeat>) -> Self {
        let last = Heartbeat { pid: std::process::id(), ..Default::default() };
        Self(Arc::new(Mutex::new(Slot { map, last })))
    }

    /// Proves the speaker alive to the programs for `bound` from now.
    pub fn beat(&self, bound: Duration) -> Result<(), DatapathError> {
        self.write(|beat| {
            beat.monotonic_ns = clock::monotonic_ns();
            beat.dead_man_ns = bound.as_nanos() as u64;
        })
    }

    /// Tells the programs the speaker is gone: from now on they answer nothing and pass every
    /// frame (a beat of 0 is "never").
    pub fn stop(&self) -> Result<(), DatapathError> {
        self.write(|beat| beat.monotonic_ns = 0)
    }

    /// Tells the programs how many addresses the drop map holds (they skip its lookup while it
    /// holds none), without renewing the beat.
    pub fn count_elsewhere(&self, entries: usize) -> Result<(), DatapathError> {
        self.write(|beat| beat.elsewhere = entries as u32)
    }

    fn write(&self, change: impl FnOnce(&mut Heartbeat)) -> Result<(), DatapathError> {
        // A writer that panicked left a whole value behind: the slot is still good.
        let mut slot = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut beat = slot.last;
        change(&mut beat);
        slot.map.set(0, &beat, 0)?;
        slot.last = beat;
        Ok(())
    }
}
