//! The programs' conflict counts, polled: other hosts' claims on what this node announces.

use herald_kube::report::Chain;
use tracing::warn;

use super::{Announcer, Frames, Responder};
use crate::{clock, conflict::Conflict};

impl<D: Responder, F: Frames> Announcer<D, F> {
    /// Other hosts' claims on what this node announces: when the programs counted new ones,
    /// the episodes that start, each logged once as a warning. Cheap when there are none: one
    /// map read.
    pub fn poll_conflicts(&mut self) -> Vec<Conflict> {
        let total = match self.datapath.conflicts_total() {
            Ok(total) if total == self.conflicts_read => return Vec::new(),
            Ok(total) => total,
            Err(e) => {
                warn!(error = %Chain(&e), "reading the conflict count");
                return Vec::new();
            }
        };
        let entries = match self.datapath.entries() {
            Ok(entries) => entries,
            Err(e) => {
                warn!(error = %Chain(&e), "reading the responder map");
                return Vec::new();
            }
        };
        self.conflicts_read = total;
        let started = self.conflicts.observe(clock::monotonic_ns(), &entries);
        let names = self.names.read().map(|n| n.clone()).unwrap_or_default();
        for c in &started {
            warn!(
                address = %c.addr,
                interface = names.get(&c.ifindex).map_or("?", |i| i.name.as_str()),
                vlan = c.vlan,
                claimed_by = crate::frame::format_mac(c.mac),
                "address conflict: another host claims an address this node announces \
                 (a MetalLB speaker still running? the address configured on a host?)"
            );
        }
        started
    }
}
