//! Applies a desired set of announcements to the datapath: attaches the program where it is
//! needed, fills and trims the responder map, and sends gratuitous ARP for what is new.
//! A change is applied whole or not at all.

use std::{collections::BTreeSet, sync::Arc, time::Instant};

use speaker_common::ArpKey;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::{
    config::Gratuitous,
    datapath::{AttachMode, Datapath, DatapathError},
    frame::Arp,
    garp,
    metrics::{InterfaceNames, Metrics},
    plan::{self, Announcement},
};

pub struct Announcer {
    pub datapath: Datapath,
    mode: AttachMode,
    sender: Arc<garp::Sender>,
    current: BTreeSet<Announcement>,
    bursts: std::collections::HashMap<ArpKey, JoinHandle<()>>,
    metrics: Arc<Metrics>,
    /// Names of the interfaces announced on, for metric labels.
    pub names: InterfaceNames,
}

impl Announcer {
    pub fn new(datapath: Datapath, mode: AttachMode, sender: garp::Sender, metrics: Arc<Metrics>) -> Self {
        Self {
            datapath,
            mode,
            sender: Arc::new(sender),
            current: BTreeSet::new(),
            bursts: Default::default(),
            metrics,
            names: Default::default(),
        }
    }

    pub fn current(&self) -> &BTreeSet<Announcement> {
        &self.current
    }

    /// Moves the datapath from the current announcements to `desired`; returns how many entries
    /// were announced or withdrawn. On error nothing has changed: interfaces attached and
    /// entries inserted on the way are undone. `takeover`: when the membership change that
    /// asked for this was seen (the first gratuitous ARP of each new entry is timed from it).
    pub fn apply(
        &mut self,
        desired: BTreeSet<Announcement>,
        gratuitous: Gratuitous,
        takeover: Option<Instant>,
    ) -> Result<usize, DatapathError> {
        let diff = plan::diff(&self.current, &desired);
        let wanted = plan::interfaces(&desired);

        let mut attached = Vec::new();
        let mut inserted = Vec::new();
        let result = (|| {
            for (ifindex, ifname) in &wanted {
                if !self.datapath.is_attached(*ifindex) {
                    self.datapath.attach(*ifindex, ifname, self.mode)?;
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

        let announced: BTreeSet<ArpKey> = diff.announce.iter().map(Announcement::key).collect();
        for a in &diff.withdraw {
            let key = a.key();
            if let Some(burst) = self.bursts.remove(&key) {
                burst.abort();
            }
            // An entry re-announced with a new MAC was overwritten above, not withdrawn.
            if !announced.contains(&key)
                && let Err(e) = self.datapath.remove(&key)
            {
                warn!(address = %a.addr, interface = a.ifname, error = %e, "could not withdraw");
            }
            info!(address = %a.addr, interface = a.ifname, vlan = a.vlan, "withdrawn");
        }
        for a in &diff.announce {
            info!(address = %a.addr, interface = a.ifname, vlan = a.vlan, "announcing");
            self.start_burst(a, gratuitous, takeover);
        }
        let still_wanted: BTreeSet<u32> = wanted.iter().map(|(i, _)| *i).collect();
        for (ifindex, ifname) in plan::interfaces(&self.current) {
            if !still_wanted.contains(&ifindex) {
                match self.datapath.detach(ifindex) {
                    Ok(()) => info!(interface = ifname, "XDP program detached"),
                    Err(e) => warn!(interface = ifname, error = %e, "could not detach"),
                }
            }
        }
        if let Ok(mut names) = self.names.write() {
            *names = wanted.iter().cloned().collect();
        }
        self.current = desired;
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
            match self.sender.send(a.ifindex, &Arp::gratuitous(a.mac, a.addr, a.vlan).to_bytes()) {
                Ok(()) => {
                    self.metrics.gratuitous_sent.inc();
                }
                Err(e) => {
                    warn!(address = %a.addr, interface = a.ifname, error = %e, "gratuitous ARP not sent")
                }
            }
        }
    }

    /// Keeps the program answering for `grace`, beating on `heartbeat`: after this speaker left
    /// the membership, so that clients see no gap while the others take over.
    pub async fn keep_answering(
        &mut self,
        heartbeat: &mut tokio::time::Interval,
        grace: std::time::Duration,
    ) {
        let deadline = tokio::time::Instant::now() + grace;
        while tokio::time::Instant::now() < deadline {
            tokio::select! {
                _ = heartbeat.tick() => drop(self.datapath.beat()),
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    /// Withdraws every announcement and detaches everywhere.
    pub fn withdraw_all(&mut self) {
        for (_, burst) in self.bursts.drain() {
            burst.abort();
        }
        if let Err(e) = self.apply(BTreeSet::new(), Gratuitous::default(), None) {
            warn!(error = %e, "could not withdraw everything");
        }
    }

    fn start_burst(&mut self, a: &Announcement, gratuitous: Gratuitous, takeover: Option<Instant>) {
        if gratuitous.count == 0 {
            return;
        }
        let frame = Arp::gratuitous(a.mac, a.addr, a.vlan).to_bytes();
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
                        warn!(address = %addr, interface = ifname, error = %e, "gratuitous ARP not sent")
                    }
                }
            }
        });
        if let Some(old) = self.bursts.insert(a.key(), burst) {
            old.abort();
        }
    }
}
