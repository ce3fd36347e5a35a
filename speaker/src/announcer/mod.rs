//! Applies a desired set of announcements to the datapath: attaches the responder where it is
//! needed, fills and trims the responder maps, and sends gratuitous ARP (unsolicited Neighbor
//! Advertisements for IPv6) for what is new.
//! A change is applied whole or not at all; an entry whose removal failed is kept, and its
//! removal tried again ([`Announcer::settle`]), never reported as withdrawn.
//!
//! The datapath and the frame sender are traits ([`Responder`], [`Frames`]), so that these
//! rules are tested with in-memory fakes, without root.

mod conflicts;
mod ports;

use std::{collections::BTreeSet, sync::Arc, time::Instant};

use herald_kube::report::Chain;
use tokio::task::JoinHandle;
use tracing::{info, warn};

pub use self::ports::{Frames, Responder};
use crate::{
    announcement::{self, Announcement, Key},
    cluster::PeerMacs,
    config::Gratuitous,
    conflict,
    datapath::{Datapath, DatapathError},
    frame, garp, handback,
    metrics::{InterfaceNames, Metrics},
};

pub struct Announcer<D = Datapath, F = garp::Sender> {
    datapath: D,
    sender: Arc<F>,
    current: BTreeSet<Announcement>,
    /// Entries withdrawn from `current` whose removal from the map failed: still answering, to
    /// be removed by [`Announcer::settle`].
    stale: BTreeSet<Announcement>,
    bursts: std::collections::HashMap<Key, JoinHandle<()>>,
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
            sender: Arc::new(sender),
            current: BTreeSet::new(),
            stale: BTreeSet::new(),
            bursts: Default::default(),
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
    pub fn add_peers(&mut self, macs: PeerMacs) -> Result<(), DatapathError> {
        self.datapath.add_peers(macs.into_iter().collect())
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
        let in_use: BTreeSet<u32> = announcement::interfaces(&self.current)
            .union(&announcement::interfaces(&self.stale))
            .map(|(i, _)| *i)
            .collect();
        for (ifindex, ifname) in self.standby.difference(&interfaces) {
            if !in_use.contains(ifindex) && self.datapath.is_attached(*ifindex) {
                match self.datapath.detach(*ifindex) {
                    Ok(()) => info!(interface = ifname, "responder detached"),
                    Err(e) => warn!(interface = ifname, error = %Chain(&e), "could not detach"),
                }
            }
        }
        self.standby = interfaces;
        self.update_names();
    }

    /// Interface names for the metrics' labels: those announced on and those standing by.
    fn update_names(&self) {
        let used =
            announcement::interfaces(&self.current).into_iter().chain(announcement::interfaces(&self.stale));
        if let Ok(mut names) = self.names.write() {
            *names = used.chain(self.standby.iter().cloned()).collect();
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

    pub fn current(&self) -> &BTreeSet<Announcement> {
        &self.current
    }

    /// The interfaces announced on, with the hook the responder runs at on each.
    pub fn interfaces(&self) -> Vec<crate::state_file::InterfaceLine> {
        announcement::interfaces(&self.current)
            .into_iter()
            .map(|(index, name)| (index, name, self.datapath.hook(index)))
            .collect()
    }

    /// Housekeeping, at every heartbeat: retries the removals that failed, and forgets the bursts
    /// that are over (each keeps its task's memory until then).
    pub fn tidy(&mut self) {
        if !self.stale.is_empty() {
            self.settle();
        }
        self.bursts.retain(|_, burst| !burst.is_finished());
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
        let in_use: BTreeSet<u32> = self.current.iter().chain(&self.stale).map(|a| a.ifindex).collect();
        for (ifindex, ifname) in announcement::interfaces(&stale) {
            if !in_use.contains(&ifindex) {
                match self.datapath.detach(ifindex) {
                    Ok(()) => info!(interface = ifname, "responder detached"),
                    Err(e) => warn!(interface = ifname, error = %Chain(&e), "could not detach"),
                }
            }
        }
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

    /// Moves the datapath from the current announcements to `desired`; returns how many entries
    /// were announced or withdrawn. On error nothing has changed: interfaces attached and
    /// entries inserted on the way are undone. `takeover`: when the membership change that
    /// asked for this was seen (the first gratuitous ARP of each new entry is timed from it).
    /// An entry whose removal fails stays in the map and is kept as stale (see
    /// [`Announcer::settle`]); its interface stays attached.
    pub fn apply(
        &mut self,
        desired: BTreeSet<Announcement>,
        gratuitous: Gratuitous,
        takeover: Option<Instant>,
    ) -> Result<usize, DatapathError> {
        let desired = match self.held {
            Some((until, _)) if tokio::time::Instant::now() < until => {
                handback::holding(&self.current, desired)
            }
            _ => desired,
        };
        let diff = announcement::diff(&self.current, &desired);
        let wanted = announcement::interfaces(&desired);

        let mut attached = Vec::new();
        let mut inserted = Vec::new();
        let result = (|| {
            for (ifindex, ifname) in &wanted {
                if !self.datapath.is_attached(*ifindex) {
                    self.datapath.attach(*ifindex, ifname)?;
                    attached.push(*ifindex);
                }
            }
            for a in &diff.announce {
                self.datapath.insert(&a.key(), a.mac)?;
                inserted.push(a.key());
            }
            Ok(())
        })();
        if let Err(e) = result {
            for key in &inserted {
                // A key that was there before (its MAC changed) goes back to its old entry.
                match self.current.iter().find(|c| c.key() == *key) {
                    Some(old) => drop(self.datapath.insert(key, old.mac)),
                    None => drop(self.datapath.remove(key)),
                }
            }
            for ifindex in attached {
                drop(self.datapath.detach(ifindex));
            }
            return Err(e);
        }

        let announced: BTreeSet<Key> = diff.announce.iter().map(Announcement::key).collect();
        for a in &diff.withdraw {
            let key = a.key();
            if let Some(burst) = self.bursts.remove(&key) {
                burst.abort();
            }
            // An entry re-announced with a new MAC was overwritten above, not withdrawn.
            if !announced.contains(&key) {
                self.withdraw(a);
            }
        }
        self.stale.retain(|a| !desired.iter().any(|d| d.key() == a.key()));
        for a in &diff.announce {
            info!(address = %a.addr, interface = a.ifname, vlan = a.vlan, "announcing");
            self.start_burst(a, gratuitous, takeover);
        }
        // Interfaces that carry neither a wanted nor a stale entry, and do not stand by: the
        // responder leaves them.
        let still_wanted: BTreeSet<u32> = wanted
            .iter()
            .chain(&announcement::interfaces(&self.stale))
            .chain(&self.standby)
            .map(|(i, _)| *i)
            .collect();
        for (ifindex, ifname) in announcement::interfaces(&self.current) {
            if !still_wanted.contains(&ifindex) {
                match self.datapath.detach(ifindex) {
                    Ok(()) => info!(interface = ifname, "responder detached"),
                    Err(e) => warn!(interface = ifname, error = %Chain(&e), "could not detach"),
                }
            }
        }
        if !diff.announce.is_empty() || !diff.withdraw.is_empty() {
            self.generation += 1;
        }
        self.current = desired;
        self.update_names();
        Ok(diff.announce.len() + diff.withdraw.len())
    }

    /// A gratuitous burst for every current announcement: after a membership change, so that
    /// caches follow even where this node never stopped announcing in its own view (it was cut
    /// off, and the others had taken over).
    /// Addresses whose burst is still going (just announced) are left to it.
    pub fn reannounce(&mut self, gratuitous: Gratuitous) {
        for a in self.current.clone() {
            if !self.bursts.get(&a.key()).is_some_and(|burst| !burst.is_finished()) {
                self.start_burst(&a, gratuitous, None);
            }
        }
    }

    /// One gratuitous ARP for every current announcement (the periodic refresh).
    pub fn refresh(&self) {
        for a in &self.current {
            match self.sender.send(a.ifindex, &frame::gratuitous(a.mac, a.addr, a.vlan)) {
                Ok(()) => {
                    self.metrics.gratuitous_sent.inc();
                }
                Err(e) => {
                    warn!(address = %a.addr, interface = a.ifname, error = %Chain(&e), "gratuitous ARP or unsolicited NA not sent")
                }
            }
        }
    }

    /// Withdraws every announcement; the responder stays where it stands by. The program
    /// answers nothing more from here.
    pub fn silence(&mut self) {
        for (_, burst) in self.bursts.drain() {
            burst.abort();
        }
        if let Err(e) = self.apply(BTreeSet::new(), Gratuitous::default(), None) {
            warn!(error = %Chain(&e), "could not withdraw everything");
        }
    }

    /// Withdraws every announcement and detaches everywhere.
    pub fn withdraw_all(&mut self) {
        self.silence();
        self.stand_by(BTreeSet::new());
    }

    fn start_burst(&mut self, a: &Announcement, gratuitous: Gratuitous, takeover: Option<Instant>) {
        if gratuitous.count == 0 {
            return;
        }
        let frame = frame::gratuitous(a.mac, a.addr, a.vlan);
        let (sender, ifindex, addr, ifname) = (self.sender.clone(), a.ifindex, a.addr, a.ifname.clone());
        let metrics = self.metrics.clone();
        let burst = tokio::spawn(async move {
            let mut tick = tokio::time::interval(gratuitous.interval);
            let mut takeover = takeover;
            for _ in 0..gratuitous.count {
                tick.tick().await;
                match sender.send(ifindex, &frame) {
                    Ok(()) => {
                        metrics.gratuitous_sent.inc();
                        if let Some(since) = takeover.take() {
                            metrics.takeover_seconds.observe(since.elapsed().as_secs_f64());
                        }
                    }
                    Err(e) => {
                        warn!(address = %addr, interface = ifname, error = %Chain(&e), "gratuitous ARP or unsolicited NA not sent")
                    }
                }
            }
        });
        if let Some(old) = self.bursts.insert(a.key(), burst) {
            old.abort();
        }
    }
}

#[cfg(test)]
mod tests;
