//! Membership between speakers: SWIM failure detection (the `foca` crate) over UDP, every
//! datagram authenticated with the shared key ([`auth`]). A task owns the socket and the protocol
//! state, and publishes the names of the live members (this one included) on a watch channel.

pub mod auth;
mod identity;

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    num::{NonZeroU8, NonZeroU32, NonZeroUsize},
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use foca::{AccumulatingRuntime, Foca, OwnedNotification, PeriodicParams, PostcardCodec, Timer};
use rand::rngs::StdRng;
use tokio::{
    net::UdpSocket,
    sync::{mpsc, oneshot, watch},
    task::JoinHandle,
};
use tracing::{debug, info, warn};

use self::auth::{Opener, Reject, Sealer};
pub use self::identity::Member;
use crate::{config::Cluster, metrics::Metrics};

/// Live member names, this speaker's own included.
pub type Alive = BTreeSet<String>;

/// The MACs of every other speaker seen since the start (the set only grows).
pub type PeerMacs = BTreeSet<[u8; 6]>;

/// How often configured peers that are not members yet are sent an announce.
const ANNOUNCE_EVERY: Duration = Duration::from_millis(500);

/// A running membership.
pub struct Membership {
    pub alive: watch::Receiver<Alive>,
    pub peer_macs: watch::Receiver<PeerMacs>,
    /// Members the configuration names, this one included.
    pub configured: usize,
    peers: watch::Sender<Vec<SocketAddr>>,
    leave: mpsc::Sender<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Membership {
    /// Binds the socket and starts the protocol, announcing this speaker, whose node has `macs`,
    /// to its peers.
    pub async fn start(
        node: &str,
        macs: Vec<[u8; 6]>,
        cluster: &Cluster,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Self> {
        let socket = UdpSocket::bind(cluster.bind).await?;
        let mut rng: StdRng = rand::make_rng();
        let boot = rand::RngExt::random::<u64>(&mut rng);
        let me = Member { name: node.to_owned(), addr: cluster.bind, generation: unix_ms(), macs };
        let foca = Foca::new(me.clone(), foca_config(cluster), rng, PostcardCodec);
        let (alive_tx, alive) = watch::channel(BTreeSet::from([node.to_owned()]));
        let (peer_macs_tx, peer_macs) = watch::channel(PeerMacs::new());
        let (leave, leave_rx) = mpsc::channel(1);
        let (peers, peers_rx) = watch::channel(cluster.peers.clone());
        let task = Task {
            foca,
            socket,
            sealer: Sealer::new(&cluster.key, boot),
            opener: Opener::new(&cluster.key),
            peers: peers_rx,
            me,
            alive_tx,
            peer_macs_tx,
            metrics,
        };
        let task = tokio::spawn(task.run(leave_rx));
        info!(bind = %cluster.bind, peers = cluster.peers.len(), "membership started");
        Ok(Self { alive, peer_macs, configured: cluster.configured_members(), peers, leave, task })
    }

    /// Replaces the peers this speaker announces itself to (in Kubernetes mode they follow the
    /// Nodes). Members already known stay members until the protocol finds them down.
    pub fn set_peers(&self, peers: Vec<SocketAddr>) {
        self.peers.send_if_modified(|current| {
            let differs = *current != peers;
            *current = peers;
            differs
        });
    }

    /// The next view of the live members. While joining (until `join_deadline`), waits for a
    /// view with every configured member in it, or for the deadline.
    pub async fn next_view(&mut self, join_deadline: Option<tokio::time::Instant>) -> Alive {
        if let Some(deadline) = join_deadline {
            let everyone = self.configured;
            let joined =
                tokio::time::timeout_at(deadline, self.alive.wait_for(|alive| alive.len() >= everyone))
                    .await
                    .is_ok();
            if !joined {
                let seen = self.alive.borrow().len();
                info!(seen, configured = everyone, "not every member answered; going with those that did");
            }
        } else if self.alive.changed().await.is_err() {
            return std::future::pending().await;
        }
        let alive = self.alive.borrow_and_update().clone();
        info!(members = ?alive, "membership");
        alive
    }

    /// Tells the others this speaker is leaving, so they take over at once, and stops.
    pub async fn leave(self) {
        let (done, wait) = oneshot::channel();
        if self.leave.send(done).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_millis(500), wait).await;
        }
        self.task.abort();
    }
}

/// foca's LAN settings with Herald's timers: sub-second detection on a quiet LAN.
fn foca_config(cluster: &Cluster) -> foca::Config {
    protocol_config(cluster.configured_members(), cluster.timers)
}

/// The protocol's settings for a cluster of `members` with timers `t` (also what the membership
/// simulation, `cargo xtask bench membership`, runs).
pub fn protocol_config(members: usize, t: crate::config::Timers) -> foca::Config {
    let size = NonZeroU32::new(members as u32).unwrap_or(NonZeroU32::MIN);
    foca::Config {
        probe_period: t.probe_period,
        probe_rtt: t.probe_rtt,
        suspect_to_down_after: t.suspect,
        // Spread news (a member down) faster than the LAN default of 200 ms.
        periodic_gossip: Some(PeriodicParams {
            frequency: t.probe_period / 2,
            num_members: NonZeroUsize::new(3).expect("3 > 0"),
        }),
        max_transmissions: max_transmissions(members),
        ..foca::Config::new_lan(size)
    }
}

/// How many times each member passes a piece of news on: twice memberlist's (and foca's LAN)
/// 4 log10(n + 1). At theirs, the membership simulation showed a member now and then missing a
/// death until it probed the dead member itself, up to a round of probes later (5 s at 50
/// members); news is rare, so the bytes at rest do not change.
fn max_transmissions(members: usize) -> NonZeroU8 {
    let times = (8.0 * ((members + 1) as f64).log10()).clamp(1.0, 255.0);
    NonZeroU8::new(times as u8).unwrap_or(NonZeroU8::MIN)
}

struct Task {
    foca: Foca<Member, PostcardCodec, StdRng, foca::NoCustomBroadcast>,
    socket: UdpSocket,
    sealer: Sealer,
    opener: Opener,
    peers: watch::Receiver<Vec<SocketAddr>>,
    me: Member,
    alive_tx: watch::Sender<Alive>,
    peer_macs_tx: watch::Sender<PeerMacs>,
    metrics: Arc<Metrics>,
}

impl Task {
    async fn run(mut self, mut leave: mpsc::Receiver<oneshot::Sender<()>>) {
        let (timer_tx, mut timers) = mpsc::unbounded_channel::<Timer<Member>>();
        let mut rt = AccumulatingRuntime::new();
        let mut announce = tokio::time::interval(ANNOUNCE_EVERY);
        let mut buf = vec![0u8; 65_536];
        loop {
            tokio::select! {
                received = self.socket.recv_from(&mut buf) => match received {
                    Ok((len, from)) => self.receive(from, &buf[..len], &mut rt),
                    Err(e) => warn!(error = %e, "membership socket"),
                },
                Some(timer) = timers.recv() => {
                    if let Err(e) = self.foca.handle_timer(timer, &mut rt) {
                        debug!(error = %e, "membership timer");
                    }
                }
                _ = announce.tick() => self.announce_to_strangers(&mut rt),
                Some(done) = leave.recv() => {
                    if let Err(e) = self.foca.leave_cluster(&mut rt) {
                        warn!(error = %e, "leaving the cluster");
                    }
                    self.flush(&mut rt, &timer_tx).await;
                    let _ = done.send(());
                    return;
                }
            }
            self.flush(&mut rt, &timer_tx).await;
        }
    }

    fn receive(&mut self, from: SocketAddr, datagram: &[u8], rt: &mut AccumulatingRuntime<Member>) {
        let m = &self.metrics;
        match self.opener.open(from, unix_ms(), datagram) {
            Ok(payload) => {
                if let Err(e) = self.foca.handle_data(payload, rt) {
                    m.rejected_malformed.inc();
                    debug!(%from, error = %e, "membership message refused");
                }
            }
            Err(reject) => {
                let counter = match reject {
                    Reject::Unauthenticated => &m.rejected_unauthenticated,
                    Reject::Stale => &m.rejected_stale,
                    Reject::Replayed => &m.rejected_replayed,
                };
                counter.inc();
                debug!(%from, ?reject, "membership datagram dropped");
            }
        }
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

    /// Carries out what the protocol asked for: datagrams, timers, and membership changes.
    async fn flush(
        &mut self,
        rt: &mut AccumulatingRuntime<Member>,
        timer_tx: &mpsc::UnboundedSender<Timer<Member>>,
    ) {
        while let Some((to, data)) = rt.to_send() {
            let datagram = self.sealer.seal(unix_ms(), &data);
            if let Err(e) = self.socket.send_to(&datagram, to.addr).await {
                debug!(to = %to.addr, error = %e, "membership send");
            }
        }
        while let Some((after, timer)) = rt.to_schedule() {
            let tx = timer_tx.clone();
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                let _ = tx.send(timer);
            });
        }
        let mut changed = false;
        while let Some(notification) = rt.to_notify() {
            match &notification {
                OwnedNotification::MemberUp(s) => info!(member = s.name, addr = %s.addr, "member up"),
                OwnedNotification::MemberDown(s) => info!(member = s.name, addr = %s.addr, "member down"),
                OwnedNotification::Rejoin(s) => {
                    info!(generation = s.generation, "declared down by the others; rejoined");
                    self.me = s.clone();
                }
                other => debug!(?other, "membership"),
            }
            changed = true;
        }
        if changed {
            let mut alive: Alive = self.foca.iter_members().map(|m| m.id().name.clone()).collect();
            alive.insert(self.me.name.clone());
            self.metrics.members_alive.set(alive.len() as i64);
            let macs: Vec<[u8; 6]> = self.foca.iter_members().flat_map(|m| m.id().macs.clone()).collect();
            self.peer_macs_tx.send_if_modified(|seen| {
                let before = seen.len();
                seen.extend(macs);
                seen.len() > before
            });
            self.alive_tx.send_if_modified(|current| {
                let differs = *current != alive;
                *current = alive;
                differs
            });
        }
    }
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
