//! Gratuitous ARP (unsolicited Neighbor Advertisements for IPv6): a burst per address this node
//! starts announcing, each a task of its own, stopped the moment the address is lost; and the
//! periodic refresh.

use std::{collections::HashMap, sync::Arc, time::Instant};

use herald_kube::report::Chain;
use tokio::task::JoinHandle;
use tracing::warn;

use super::Frames;
use crate::{
    announcement::{Announcement, Key},
    config::Gratuitous,
    frame,
    metrics::Metrics,
};

pub(super) struct Bursts<F> {
    pub(super) sender: Arc<F>,
    running: HashMap<Key, JoinHandle<()>>,
    metrics: Arc<Metrics>,
}

impl<F: Frames> Bursts<F> {
    pub fn new(sender: F, metrics: Arc<Metrics>) -> Self {
        Self { sender: Arc::new(sender), running: HashMap::new(), metrics }
    }

    /// Starts `a`'s burst (replacing any still running). `takeover`: when the membership change
    /// that made this node the owner was seen; the first frame is timed from it.
    pub fn start(&mut self, a: &Announcement, gratuitous: Gratuitous, takeover: Option<Instant>) {
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
                        metrics.gratuitous_sent(addr);
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
        if let Some(old) = self.running.insert(a.key(), burst) {
            old.abort();
        }
    }

    /// Stops `key`'s burst: the address is lost, or announced anew.
    pub fn stop(&mut self, key: &Key) {
        if let Some(burst) = self.running.remove(key) {
            burst.abort();
        }
    }

    pub fn stop_all(&mut self) {
        for (_, burst) in self.running.drain() {
            burst.abort();
        }
    }

    pub fn is_running(&self, key: &Key) -> bool {
        self.running.get(key).is_some_and(|burst| !burst.is_finished())
    }

    /// Forgets the bursts that are over (each keeps its task's memory until then).
    pub fn forget_finished(&mut self) {
        self.running.retain(|_, burst| !burst.is_finished());
    }

    /// One frame for each of `announced` (the periodic refresh).
    pub fn refresh<'a>(&self, announced: impl IntoIterator<Item = &'a Announcement>) {
        for a in announced {
            match self.sender.send(a.ifindex, &frame::gratuitous(a.mac, a.addr, a.vlan)) {
                Ok(()) => self.metrics.gratuitous_sent(a.addr),
                Err(e) => {
                    warn!(address = %a.addr, interface = a.ifname, error = %Chain(&e), "gratuitous ARP or unsolicited NA not sent")
                }
            }
        }
    }
}
