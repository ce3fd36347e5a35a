//! Applies a desired set of announcements to the datapath: attaches the responder where it is
//! needed, fills and trims the responder maps, and sends gratuitous ARP (unsolicited Neighbor
//! Advertisements for IPv6) for what is new.
//!
//! Losses never wait for gains: what this node no longer announces leaves the map first, and
//! each gain stands alone. An interface that will not take the responder, or an entry the map
//! refuses, leaves that gain out (reported, and tried again every [`RETRY_EVERY`]), never the
//! rest. An entry whose removal failed is kept as stale and its removal tried again
//! ([`Announcer::settle`]), never reported as withdrawn.
//!
//! The datapath and the frame sender are traits ([`Responder`], [`Frames`]), so that these
//! rules are tested with in-memory fakes, without root.

mod bursts;
mod conflicts;
mod ports;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::{Duration, Instant},
};

use herald_kube::report::Chain;
use tracing::{info, warn};

use self::bursts::Bursts;
pub use self::ports::{Frames, Responder};
use crate::{
    announcement::{self, Announcement, Key},
    cluster::PeerMacs,
    config::Gratuitous,
    conflict,
    datapath::{Datapath, DatapathError},
    garp, handback,
    metrics::{InterfaceNames, Labelled, Metrics},
};

/// How often gains that failed are tried again.
pub const RETRY_EVERY: Duration = Duration::from_secs(1);

pub struct Announcer<D = Datapath, F = garp::Sender> {
    datapath: D,
    bursts: Bursts<F>,
    /// What the map holds and answers for, as far as this node is concerned.
    current: BTreeSet<Announcement>,
    /// Entries withdrawn from `current` whose removal from the map failed: still answering, to
    /// be removed by [`Announcer::settle`].
    stale: BTreeSet<Announcement>,
    /// What was last asked for, and how: what a retry applies again.
    wanted: BTreeSet<Announcement>,
    gratuitous: Gratuitous,
    /// Gains left out, and why; tried again from [`Announcer::tidy`] at `retry_at`.
    failed: BTreeMap<Announcement, String>,
    retry_at: Option<Instant>,
    /// When rx VLAN offloads are next checked (see [`Responder::hold_offloads`]).
    offloads_at: Instant,
    metrics: Arc<Metrics>,
    /// Names of the interfaces announced on, for metric labels.
    names: InterfaceNames,
    /// Conflict episodes, and the programs' conflict total as last read.
    conflicts: conflict::Watch,
    conflicts_read: u64,
    /// Until when gains wait (a member joined: see [`handback`]), and when the join was seen.
    held: Option<(tokio::time::Instant, Instant)>,
    /// Interfaces the responder stays on while nothing there is announced (see
    /// [`Announcer::stand_by`]).
    standby: BTreeSet<(u32, String)>,
    /// Counts the changes to what is announced (see [`Announcer::generation`]).
    generation: u64,
}

impl<D: Responder, F: Frames> Announcer<D, F> {
    pub fn new(datapath: D, sender: F, metrics: Arc<Metrics>) -> Self {
        Self {
            datapath,
            bursts: Bursts::new(sender, metrics.clone()),
            current: BTreeSet::new(),
            stale: BTreeSet::new(),
            wanted: BTreeSet::new(),
            gratuitous: Gratuitous::default(),
            failed: BTreeMap::new(),
            retry_at: None,
            offloads_at: Instant::now(),
            metrics,
            names: Default::default(),
            conflicts: conflict::Watch::default(),
            conflicts_read: 0,
            held: None,
            standby: BTreeSet::new(),
            generation: 0,
        }
    }

    /// The other speakers' MACs: gratuitous ARP from them is no conflict.
    pub fn set_peers(&mut self, macs: &PeerMacs) -> Result<(), DatapathError> {
        self.datapath.set_peers(macs)
    }

    /// Names of the interfaces announced on, for metric labels.
    pub fn names(&self) -> InterfaceNames {
        self.names.clone()
    }

    /// Keeps the responder on `interfaces` while nothing there is announced: where this node may
    /// have to take an address over, so that taking it is one map insert, not a program load
    /// (tens of milliseconds for the driver-bound program). Best effort: an interface that cannot
    /// take it now gets it when an address needs it. Interfaces that leave the set lose it once
    /// nothing on them is announced.
    pub fn stand_by(&mut self, interfaces: BTreeSet<(u32, String)>) {
        for (ifindex, ifname) in interfaces.difference(&self.standby) {
            if !self.datapath.is_attached(*ifindex) {
                match self.datapath.attach(*ifindex, ifname) {
                    Ok(hook) => info!(interface = ifname, %hook, "responder standing by"),
                    Err(e) => warn!(interface = ifname, error = %Chain(&e), "responder not standing by"),
                }
            }
        }
        let leaving: Vec<(u32, String)> = self.standby.difference(&interfaces).cloned().collect();
        self.standby = interfaces;
        self.detach_unused(leaving);
        self.update_names();
    }

    /// Interface names and hooks for the metrics' labels: those announced on and those
    /// standing by.
    fn update_names(&self) {
        let used =
            announcement::interfaces(&self.current).into_iter().chain(announcement::interfaces(&self.stale));
        let labelled: BTreeMap<u32, Labelled> = used
            .chain(self.standby.iter().cloned())
            .map(|(index, name)| {
                (index, Labelled { name, hook: self.datapath.hook(index).map(|p| p.hook.label()) })
            })
            .collect();
        if let Ok(mut names) = self.names.write() {
            *names = labelled;
        }
    }

    /// For `hold` from now, [`Announcer::apply`] lets go of what it loses and takes nothing new:
    /// a member joined (`seen`), and what this node gains, another live one still answers for.
    pub fn hold_gains(&mut self, hold: std::time::Duration, seen: Instant) {
        self.held = Some((tokio::time::Instant::now() + hold, seen));
    }

    /// When the current hold ends, if there is one.
    pub fn hold_deadline(&self) -> Option<tokio::time::Instant> {
        self.held.map(|(until, _)| until)
    }

    /// Ends the hold; returns when its join was seen (what the takeover is timed from).
    pub fn end_hold(&mut self) -> Option<Instant> {
        self.held.take().map(|(_, seen)| seen)
    }

    /// Drops, in the programs, ARP requests for exactly `addresses` while this speaker is
    /// alive: another node announces them (see `speaker_common::ELSEWHERE_MAP`).
    pub fn set_elsewhere(&mut self, addresses: &BTreeSet<std::net::Ipv4Addr>) -> Result<(), DatapathError> {
        self.datapath.set_elsewhere(addresses)
    }

    /// What the map holds and answers for.
    pub fn current(&self) -> &BTreeSet<Announcement> {
        &self.current
    }

    /// Gains left out at the last attempt, and why (tried again every [`RETRY_EVERY`]).
    pub fn failed(&self) -> &BTreeMap<Announcement, String> {
        &self.failed
    }

    /// The interfaces announced on, with the hook the responder runs at on each.
    pub fn interfaces(&self) -> Vec<crate::state_file::InterfaceLine> {
        announcement::interfaces(&self.current)
            .into_iter()
            .map(|(index, name)| (index, name, self.datapath.hook(index)))
            .collect()
    }

    /// Housekeeping, at every heartbeat: retries the removals and the gains that failed, forgets
    /// the bursts that are over, and every [`RETRY_EVERY`] holds rx VLAN offloads off where the
    /// responder needs them off. Returns whether gains were tried again.
    pub fn tidy(&mut self) -> bool {
        if !self.stale.is_empty() {
            self.settle();
        }
        self.bursts.forget_finished();
        let now = Instant::now();
        if self.offloads_at <= now {
            self.datapath.hold_offloads();
            self.offloads_at = now + RETRY_EVERY;
        }
        let due = self.retry_at.is_some_and(|at| at <= now);
        if due {
            self.apply(self.wanted.clone(), self.gratuitous, None);
        }
        due
    }

    /// Changes whenever what is announced changes: while it stays the same, so does the state
    /// file (apart from its counters), whose interfaces and hooks are those of the entries.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Entries still in the map that should not be: their removal failed.
    pub fn stale(&self) -> &BTreeSet<Announcement> {
        &self.stale
    }

    /// Tries again to remove the entries whose removal failed, and detaches the responder from
    /// interfaces that no longer carry any entry; `true` when none is left.
    pub fn settle(&mut self) -> bool {
        let stale = std::mem::take(&mut self.stale);
        for a in &stale {
            // Announced again since: it is wanted after all.
            if !self.current.contains(a) {
                self.withdraw(a);
            }
        }
        self.detach_unused(announcement::interfaces(&stale));
        self.stale.is_empty()
    }

    /// Removes one entry from the map: `true` when it is gone; kept as stale when not.
    fn withdraw(&mut self, a: &Announcement) -> bool {
        match self.datapath.remove(&a.key()) {
            Ok(()) => {
                info!(address = %a.addr, interface = a.ifname, vlan = a.vlan, "withdrawn");
                true
            }
            Err(e) => {
                warn!(
                    address = %a.addr, interface = a.ifname, vlan = a.vlan, error = %Chain(&e),
                    "could not withdraw: still answering, trying again"
                );
                self.stale.insert(a.clone());
                false
            }
        }
    }

    /// Moves the datapath from the current announcements towards `desired`; returns how many
    /// entries were announced or withdrawn. Losses first, each gain on its own (see the module's
    /// notes): what could not be gained is in [`Announcer::failed`]. `takeover`: when the
    /// membership change that asked for this was seen (the first gratuitous ARP of each new
    /// entry is timed from it).
    pub fn apply(
        &mut self,
        desired: BTreeSet<Announcement>,
        gratuitous: Gratuitous,
        takeover: Option<Instant>,
    ) -> usize {
        self.wanted = desired.clone();
        self.gratuitous = gratuitous;
        let desired = match self.held {
            Some((until, _)) if tokio::time::Instant::now() < until => {
                handback::holding(&self.current, desired)
            }
            _ => desired,
        };
        let diff = announcement::diff(&self.current, &desired);
        let gaining: BTreeSet<Key> = diff.announce.iter().map(Announcement::key).collect();
        let before = announcement::interfaces(&self.current);
        // Entries whose MAC changes: replaced in place when the new one is in.
        let mut replaced: BTreeMap<Key, Announcement> = BTreeMap::new();

        // Losses, first and alone. An entry re-announced with a new MAC is overwritten below,
        // never absent.
        let mut changed = 0;
        for a in &diff.withdraw {
            self.bursts.stop(&a.key());
            if gaining.contains(&a.key()) {
                replaced.insert(a.key(), a.clone());
            } else {
                self.current.remove(a);
                self.withdraw(a);
                changed += 1;
            }
        }

        // Gains, each on its own.
        let mut failed = BTreeMap::new();
        let mut refused = BTreeMap::new();
        for (ifindex, ifname) in announcement::interfaces(&diff.announce) {
            if !self.datapath.is_attached(ifindex)
                && let Err(e) = self.datapath.attach(ifindex, &ifname)
            {
                refused.insert(ifindex, Chain(&e).to_string());
            }
        }
        for a in &diff.announce {
            let result = match refused.get(&a.ifindex) {
                Some(why) => Err(why.clone()),
                None => self.datapath.insert(&a.key(), a.mac).map_err(|e| Chain(&e).to_string()),
            };
            match result {
                Ok(()) => {
                    if let Some(old) = replaced.get(&a.key()) {
                        self.current.remove(old);
                    }
                    self.current.insert(a.clone());
                    info!(address = %a.addr, interface = a.ifname, vlan = a.vlan, "announcing");
                    self.bursts.start(a, gratuitous, takeover);
                    changed += 1;
                }
                Err(why) => {
                    if self.failed.get(a) != Some(&why) {
                        warn!(address = %a.addr, interface = a.ifname, vlan = a.vlan, error = why, "not announced; trying again");
                    }
                    failed.insert(a.clone(), why);
                }
            }
        }
        // A stale entry announced again was overwritten: it answers as it should.
        if !self.stale.is_empty() {
            let held: BTreeSet<Key> = self.current.iter().map(Announcement::key).collect();
            self.stale.retain(|s| !held.contains(&s.key()));
        }
        // The responder leaves interfaces nothing holds it on any more, and those where every
        // gain failed.
        self.detach_unused(before.into_iter().chain(announcement::interfaces(&diff.announce)));

        if changed > 0 || failed != self.failed {
            self.generation += 1;
        }
        self.retry_at = (!failed.is_empty()).then(|| Instant::now() + RETRY_EVERY);
        self.metrics.not_announced.set(failed.len() as i64);
        self.failed = failed;
        self.update_names();
        changed
    }

    /// Detaches the responder from those of `interfaces` that carry no current or stale entry
    /// and do not stand by.
    fn detach_unused(&mut self, interfaces: impl IntoIterator<Item = (u32, String)>) {
        let in_use: BTreeSet<u32> = self
            .current
            .iter()
            .chain(&self.stale)
            .map(|a| a.ifindex)
            .chain(self.standby.iter().map(|(i, _)| *i))
            .collect();
        let unused: BTreeMap<u32, String> = interfaces
            .into_iter()
            .filter(|(i, _)| !in_use.contains(i) && self.datapath.is_attached(*i))
            .collect();
        for (ifindex, ifname) in unused {
            match self.datapath.detach(ifindex) {
                Ok(()) => info!(interface = ifname, "responder detached"),
                Err(e) => warn!(interface = ifname, error = %Chain(&e), "could not detach"),
            }
        }
    }

    /// A gratuitous burst for every current announcement: after a membership change, so that
    /// caches follow even where this node never stopped announcing in its own view (it was cut
    /// off, and the others had taken over).
    /// Addresses whose burst is still going (just announced) are left to it.
    pub fn reannounce(&mut self, gratuitous: Gratuitous) {
        for a in &self.current {
            if !self.bursts.is_running(&a.key()) {
                self.bursts.start(a, gratuitous, None);
            }
        }
    }

    /// One gratuitous ARP for every current announcement (the periodic refresh).
    pub fn refresh(&self) {
        self.bursts.refresh(&self.current);
    }

    /// Withdraws every announcement; the responder stays where it stands by. The program
    /// answers nothing more from here.
    pub fn silence(&mut self) {
        self.bursts.stop_all();
        self.apply(BTreeSet::new(), Gratuitous::default(), None);
    }

    /// The speaker is stopping: withdraws every announcement, and leaves the responder where it
    /// runs. What becomes of it is the datapath's when it drops (detached, or kept attached
    /// and idle for the next speaker: `--on-exit`).
    pub fn leave(&mut self) {
        let running: Vec<(u32, String)> = announcement::interfaces(&self.current)
            .into_iter()
            .chain(announcement::interfaces(&self.stale))
            .filter(|(ifindex, _)| self.datapath.is_attached(*ifindex))
            .collect();
        self.standby.extend(running);
        self.silence();
    }
}

#[cfg(test)]
mod tests;
