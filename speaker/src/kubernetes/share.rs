//! A node's part in the cluster's decisions, over plain data: what it announces (its own
//! assignments, on the interfaces here that carry them), what it reports for the
//! ServiceL2Statuses, whom it succeeds and who succeeds it, and the addresses other nodes
//! announce, whose ARP requests it drops (a Service proxy may have bound them here too).

use std::{
    collections::BTreeSet,
    net::{IpAddr, Ipv4Addr},
};

use super::{
    Snapshot,
    decide::{self, Decider},
    l2status::Report,
};
use crate::{
    announcement::{self, Announcement},
    carriers,
    cluster::Alive,
    election::Succession,
    host::Host,
};

/// A node's part in the cluster's decisions.
pub struct Share {
    /// What it announces.
    pub announce: BTreeSet<Announcement>,
    /// What its status writer reports.
    pub report: Report,
    /// Who takes over from it, and from whom it takes over.
    pub succession: Succession,
    /// The IPv4 addresses other nodes announce, and the interfaces here that would carry them:
    /// requests for them are dropped there (a Service proxy may have bound them locally).
    pub elsewhere: BTreeSet<Ipv4Addr>,
    pub elsewhere_on: BTreeSet<(u32, String)>,
}

/// What `node` announces on `host`, the report for the API, and its succession. Pure but for
/// what `decider` keeps from pass to pass.
pub fn own_share(
    decider: &mut Decider,
    snapshot: &Snapshot,
    alive: &Alive,
    host: &Host,
    node: &str,
) -> Share {
    let assignments = decider.assign(snapshot, alive);
    let mut desired = BTreeSet::new();
    let mut report = Report::default();
    let mut succession = Succession::on_ring(node, alive);
    let (mut elsewhere, mut elsewhere_on) = (BTreeSet::new(), BTreeSet::new());
    for a in &assignments {
        succession.note(node, &a.owner, a.heir.as_deref());
        if let IpAddr::V4(address) = a.address
            && a.owner != node
        {
            elsewhere.insert(address);
            let carriers = carriers::carriers(host, a.address, 0, &a.interfaces).unwrap_or_default();
            elsewhere_on.extend(announcement::interfaces(&carriers));
        }
    }
    for (service, owned) in decide::owned_by(&assignments, node) {
        for a in owned {
            let address = a.address;
            match carriers::carriers(host, address, 0, &a.interfaces) {
                Ok(carriers) => {
                    let names = report.announced.entry(service.to_owned()).or_default();
                    *names = names.iter().cloned().chain(carriers.iter().map(|c| c.ifname.clone())).collect();
                    desired.extend(carriers);
                    report.services.insert(address, service.to_owned());
                }
                Err(refusal) => {
                    drop(report.failed.insert(service.to_owned(), format!("{address}: {refusal}")))
                }
            }
        }
    }
    Share { announce: desired, report, succession, elsewhere, elsewhere_on }
}

#[cfg(test)]
#[path = "share_tests.rs"]
mod tests;
