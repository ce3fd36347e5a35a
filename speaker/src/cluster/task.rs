//! The membership task: owns the socket, SWIM's state (foca) and the liveness protocol, and
//! publishes the live members: those SWIM lists, less those an heir found failed first.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    sync::Arc,
    time::Duration,
};

use foca::{AccumulatingRuntime, Foca, OwnedNotification, PostcardCodec, Timer};
use rand::rngs::StdRng;
use tokio::{
    net::UdpSocket,
    sync::{mpsc, oneshot, watch},
    time::Instant,
};
use tracing::{debug, info, warn};

use super::{
    Alive, Member, PeerMacs,
    auth::{MAX_DATAGRAM, Opener, Reject, Sealer},
    gate::Gate,
    hearing::Hearing,
    liveness::{Liveness, Out, Roles},
    peer_macs, unix_ms,
    wire::Message,
};
use crate::{
    config::Timers,
    election::Succession,
    fence::{FENCE_EVERY, Fence},
    metrics::Metrics,
};

/// How often configured peers that are not members yet are sent an announce.
const ANNOUNCE_EVERY: Duration = Duration::from_millis(500);

pub(super) struct Task {
    pub foca: Foca<Member, PostcardCodec, StdRng, foca::NoCustomBroadcast>,
    pub liveness: Liveness,
    pub socket: UdpSocket,
    pub sealer: Sealer,
    pub opener: Opener,
    /// What reaches the HMAC (see [`Gate`]).
    pub gate: Gate,
    pub peers: watch::Receiver<Vec<SocketAddr>>,
    pub succession: watch::Receiver<Succession>,
    pub me: Member,
    pub alive_tx: watch::Sender<Alive>,
    /// Whether a member heard lately is not in the view yet (see [`Hearing::strangers`]).
    pub strangers_tx: watch::Sender<bool>,
    pub peer_macs_tx: watch::Sender<PeerMacs>,
    pub recent_macs: peer_macs::Recent,
    pub timers: Timers,
    /// The cluster size the protocol's settings are for (they follow it: [`super::resized`]).
    pub sized_for: usize,
    pub metrics: Arc<Metrics>,
    /// Beats to the programs; says whether this member may speak for itself.
    pub fence: Fence,
    /// Fenced at the last check: neither reading nor sending.
    pub mute: bool,
    /// Whom this member heard, and when (see [`Hearing`]); alone as last published.
    pub hearing: Hearing,
    pub alone: bool,
    /// Whom the datagram being handled came from (what SWIM decides on it, it said).
    pub told_by: Option<SocketAddr>,
}

impl Task {
    pub async fn run(mut self, mut leave: mpsc::Receiver<oneshot::Sender<()>>) {
        let (timer_tx, mut timers) = mpsc::unbounded_channel::<Timer<Member>>();
        let mut rt = AccumulatingRuntime::new();
        let mut announce = tokio::time::interval(ANNOUNCE_EVERY);
        // One byte more than the longest datagram accepted: a longer one shows, and is refused.
        let mut buf = vec![0u8; MAX_DATAGRAM + 1];
        self.know();
        let mut fence = tokio::time::interval(FENCE_EVERY);
        fence.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // Fenced, this member is to the others as if frozen: it reads nothing, sends
            // nothing, and its timers wait. Its run loop ends the fence.
            let vouching = self.fence.check();
            if vouching && self.mute {
                info!("the run loop caught up: speaking for this node again");
                self.liveness.resume(std::time::Instant::now());
            }
            self.mute = !vouching;
            let wake = self.liveness.next_wake().map(Instant::from_std).filter(|_| vouching);
            tokio::select! {
                _ = fence.tick() => {
                    self.fence.beat();
                    // Becoming alone, or the others' words confirming a death kept back.
                    let alone = self.hearing.alone(std::time::Instant::now());
                    let liveness = &self.liveness;
                    if alone != self.alone || self.hearing.settle(|addr| liveness.vouches(addr)) {
                        self.publish();
                    }
                    self.tell_strangers();
                }
                received = self.socket.recv_from(&mut buf), if vouching => match received {
                    Ok((len, from)) => self.receive(from, &buf[..len], &mut rt).await,
                    Err(e) => warn!(error = %e, "membership socket"),
                },
                Some(timer) = timers.recv(), if vouching => {
                    if let Err(e) = self.foca.handle_timer(timer, &mut rt) {
                        debug!(error = %e, "membership timer");
                    }
                }
                _ = sleep_until(wake), if wake.is_some() => {
                    let members = self.member_addrs();
                    let (out, changed) = self.liveness.poll(std::time::Instant::now(), &members);
                    self.send_all(out).await;
                    if changed {
                        self.metrics.owners_failed.inc_by(self.liveness.take_owners_failed());
                        info!(failed = ?self.liveness.failed(), "a member missed its heartbeats and the probes: out of the view, its heirs told");
                        self.publish();
                    }
                }
                Ok(()) = self.succession.changed(), if vouching => self.follow(),
                _ = announce.tick(), if vouching => self.announce_to_strangers(&mut rt),
                Ok(()) = self.peers.changed() => self.know(),
                done = leave.recv() => {
                    let heirs = self.liveness.leaving();
                    self.send_all(heirs).await;
                    if let Err(e) = self.foca.leave_cluster(&mut rt) {
                        warn!(error = %e, "leaving the cluster");
                    }
                    self.flush(&mut rt, &timer_tx).await;
                    if let Some(done) = done {
                        let _ = done.send(());
                    }
                    return;
                }
            }
            self.flush(&mut rt, &timer_tx).await;
        }
    }

    async fn receive(&mut self, from: SocketAddr, datagram: &[u8], rt: &mut AccumulatingRuntime<Member>) {
        let m = &self.metrics;
        if !self.gate.admits(from, std::time::Instant::now()) {
            m.rejected_throttled.inc();
            return;
        }
        let payload = match self.opener.open(from, unix_ms(), datagram) {
            Ok(payload) => payload,
            Err(reject) => {
                let counter = match reject {
                    Reject::Unauthenticated => &m.rejected_unauthenticated,
                    Reject::Stale => &m.rejected_stale,
                    Reject::Replayed => &m.rejected_replayed,
                    Reject::Throttled => &m.rejected_throttled,
                };
                counter.inc();
                debug!(%from, ?reject, "membership datagram dropped");
                return;
            }
        };
        let now = std::time::Instant::now();
        if !self.is_member(from) {
            self.hearing.stranger(from, now);
        }
        self.told_by = Some(from);
        let back = self.liveness.heard(from, now);
        let was_alone = self.hearing.heard(from, now);
        match Message::decode(payload) {
            Some(Message::Membership(data)) => {
                if let Err(e) = self.foca.handle_data(data, &mut *rt) {
                    m.rejected_malformed.inc();
                    debug!(%from, error = %e, "membership message refused");
                }
            }
            Some(message) => {
                let (out, changed) = self.liveness.receive(from, message, now);
                if changed {
                    self.metrics.owners_failed.inc_by(self.liveness.take_owners_failed());
                    info!(%from, failed = ?self.liveness.failed(), "a member failed, by its watcher's word or its own (leaving)");
                    self.publish();
                }
                self.send_all(out).await;
            }
            None => {
                m.rejected_malformed.inc();
                debug!(%from, "membership datagram of no known kind");
            }
        }
        if was_alone {
            // Back from being alone: the others learn of it now, not at the next announce.
            self.announce_to_strangers(rt);
        }
        if back || was_alone {
            info!(%from, "a member found failed, or this one alone, heard from again");
            self.publish();
        }
        self.tell_strangers();
    }

    /// Whether `addr` is a member's: SWIM's, or kept in the view.
    fn is_member(&self, addr: SocketAddr) -> bool {
        self.foca.iter_members().any(|m| m.id().addr == addr) || self.hearing.kept().any(|(_, a)| *a == addr)
    }

    /// Tells the gate whose datagrams to check always: the peers' and the members'; sizes the
    /// protocol's settings for the larger of the two.
    fn know(&mut self) {
        let peers = self.peers.borrow_and_update().clone();
        let size = peers.len().max(self.foca.num_members()) + 1;
        self.gate.know(peers.into_iter().chain(self.member_addrs()));
        if let Some(config) = super::resized(self.sized_for, size, self.timers) {
            match self.foca.set_config(config) {
                Ok(()) => {
                    info!(members = size, was = self.sized_for, "membership settings sized for the cluster");
                    self.sized_for = size;
                }
                Err(e) => warn!(error = %e, members = size, "membership settings not resized"),
            }
        }
    }

    /// Says whether a stranger was heard lately: hand-backs wait for it to be admitted.
    fn tell_strangers(&mut self) {
        let foca = &self.foca;
        let swim = |addr: &SocketAddr| foca.iter_members().any(|m| m.id().addr == *addr);
        let heard = self.hearing.strangers(swim, std::time::Instant::now());
        self.strangers_tx.send_if_modified(|current| std::mem::replace(current, heard) != heard);
    }

    /// Announces this speaker to configured peers that are not (or no longer) members: at start,
    /// and after a partition heals.
    fn announce_to_strangers(&mut self, rt: &mut AccumulatingRuntime<Member>) {
        let known: BTreeSet<_> = self.foca.iter_members().map(|m| m.id().addr).collect();
        let peers = self.peers.borrow().clone();
        for peer in peers.iter().filter(|p| !known.contains(p)) {
            if let Err(e) = self.foca.announce(Member::at(*peer), &mut *rt) {
                debug!(%peer, error = %e, "announce");
            }
        }
    }

    /// Beats to the watchers, watches the members and inherits from the owners the ring and the
    /// election name, at their addresses.
    fn follow(&mut self) {
        let succession = self.succession.borrow_and_update().clone();
        let addrs: BTreeMap<&str, SocketAddr> =
            self.foca.iter_members().map(|m| (m.id().name.as_str(), m.id().addr)).collect();
        let at = |names: &BTreeSet<String>| -> BTreeSet<SocketAddr> {
            names.iter().filter_map(|name| addrs.get(name.as_str()).copied()).collect()
        };
        let roles = Roles {
            beat_to: at(&succession.watchers),
            heirs: at(&succession.heirs),
            watch: succession
                .watched
                .iter()
                .filter_map(|(name, heirs)| Some((*addrs.get(name.as_str())?, at(heirs))))
                .collect(),
            inherit: at(&succession.owners),
        };
        self.liveness.follow(roles, std::time::Instant::now());
    }

    /// The members' addresses: SWIM's, and those kept in the view (helpers to ask, too: an heir
    /// SWIM has left with no one to ask would take over on silence alone).
    fn member_addrs(&self) -> Vec<SocketAddr> {
        let kept = self.hearing.kept().map(|(_, addr)| *addr);
        self.foca.iter_members().map(|m| m.id().addr).chain(kept).collect()
    }

    async fn send_all(&mut self, out: Vec<Out<'_>>) {
        for (to, message) in out {
            self.send(to, &message.encode()).await;
        }
    }

    async fn send(&mut self, to: SocketAddr, payload: &[u8]) {
        let datagram = self.sealer.seal(to, unix_ms(), payload);
        if let Err(e) = self.socket.send_to(&datagram, to).await {
            debug!(%to, error = %e, "membership send");
        }
    }

    /// Carries out what the protocol asked for: datagrams, timers, and membership changes.
    async fn flush(
        &mut self,
        rt: &mut AccumulatingRuntime<Member>,
        timer_tx: &mpsc::UnboundedSender<Timer<Member>>,
    ) {
        self.send_queued(rt).await;
        while let Some((after, timer)) = rt.to_schedule() {
            let tx = timer_tx.clone();
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                let _ = tx.send(timer);
            });
        }
        let (mut changed, mut rejoined) = (false, false);
        let told_by = self.told_by.take();
        while let Some(notification) = rt.to_notify() {
            match &notification {
                OwnedNotification::MemberUp(s) => {
                    self.hearing.up(&s.name);
                    // Admitted anew: it renewed its identity, so it runs and someone heard it.
                    // An heir that found it failed lets go now, not when it hears it itself:
                    // after a link flap the path between the two may wait a second on ARP
                    // while the member, back, takes its addresses back.
                    self.liveness.admitted(s.addr, std::time::Instant::now());
                    info!(member = s.name, addr = %s.addr, "member up");
                }
                OwnedNotification::MemberDown(s) => {
                    // Watched or inherited from, with a helper left to ask: the probes decide.
                    let helpers = self.member_addrs().iter().any(|addr| *addr != s.addr);
                    let now = std::time::Instant::now();
                    let vouched = helpers && self.liveness.doubt(s.addr, now);
                    if self.hearing.down(&s.name, s.addr, told_by, vouched, now) {
                        info!(member = s.name, addr = %s.addr, "member down");
                    } else if vouched {
                        warn!(member = s.name, addr = %s.addr, "member down by SWIM, kept: this member watches or inherits from it, and probes it through the others");
                    } else {
                        warn!(member = s.name, addr = %s.addr, told_by = ?told_by, "member down, unconfirmed (another's word, or nobody heard lately): kept until this member's own hearing confirms it");
                    }
                }
                OwnedNotification::Rejoin(s) => {
                    info!(generation = s.generation, "declared down by the others; rejoined");
                    self.me = s.clone();
                    rejoined = true;
                }
                other => debug!(?other, "membership"),
            }
            changed = true;
        }
        if changed {
            self.know();
            let members = self.member_addrs();
            self.liveness.retain_failed(&members);
            // The same names may sit at new addresses.
            self.follow();
            let macs: Vec<[u8; 6]> = self.foca.iter_members().flat_map(|m| m.id().macs.clone()).collect();
            let peers = self.recent_macs.update(macs, std::time::Instant::now());
            self.peer_macs_tx.send_if_modified(|current| {
                let differs = *current != peers;
                *current = peers;
                differs
            });
            self.publish();
        }
        if rejoined {
            // Those that declared this member down know it under its new identity only once
            // told: now, not at the next announce. After a partition both sides rejoin at once,
            // and would otherwise each wait for the other's next announce.
            self.announce_to_strangers(rt);
            self.send_queued(rt).await;
        }
    }

    async fn send_queued(&mut self, rt: &mut AccumulatingRuntime<Member>) {
        while let Some((to, data)) = rt.to_send() {
            self.send(to.addr, &Message::Membership(&data).encode()).await;
        }
    }

    /// Publishes the live members: SWIM's and those it declared down unconfirmed, less those
    /// found failed; only this one while it hears nobody.
    fn publish(&mut self) {
        let failed = self.liveness.failed();
        self.alone = self.hearing.alone(std::time::Instant::now());
        let mut alive: Alive = self
            .foca
            .iter_members()
            .map(|m| (&m.id().name, &m.id().addr))
            .chain(self.hearing.kept())
            .filter(|(_, addr)| !failed.contains(addr) && !self.alone)
            .map(|(name, _)| name.clone())
            .collect();
        alive.insert(self.me.name.clone());
        self.metrics.members_alive.set(alive.len() as i64);
        self.alive_tx.send_if_modified(|current| {
            let differs = *current != alive;
            *current = alive;
            differs
        });
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
