//! Membership between speakers: SWIM failure detection (the `foca` crate) and, for fast
//! takeovers, heartbeats around a ring of watchers that tell the heirs ([`liveness`]), over
//! UDP, every datagram authenticated with the shared key ([`auth`]). A task on a thread of its
//! own (so that no long pass of the speaker delays a heartbeat or an ack) owns the socket and
//! the protocol state, and publishes the names of the live members (this one included) on a
//! watch channel. It also beats to the programs, and speaks for this node only while its run
//! loop keeps up ([`crate::fence`]): to the programs and to the other members, a node is alive
//! or not as one.

pub mod auth;
mod gate;
pub mod hearing;
mod identity;
pub mod liveness;
mod peer_macs;
mod task;
pub mod wire;

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    num::{NonZeroU8, NonZeroU32, NonZeroUsize},
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use foca::{Foca, PeriodicParams, PostcardCodec};
use rand::rngs::StdRng;
use tokio::{
    net::UdpSocket,
    sync::{mpsc, oneshot, watch},
};
use tracing::{error, info, warn};

pub use self::identity::Member;
use self::{
    auth::{Opener, Sealer},
    liveness::Liveness,
    task::Task,
};
use crate::{config::Cluster, election::Succession, fence::Fence, metrics::Metrics};

/// Live member names, this speaker's own included.
pub type Alive = BTreeSet<String>;

/// The other speakers' MACs: the members', and for a while those gone ([`peer_macs`]).
pub type PeerMacs = BTreeSet<[u8; 6]>;

/// A running membership.
pub struct Membership {
    pub alive: watch::Receiver<Alive>,
    pub peer_macs: watch::Receiver<PeerMacs>,
    strangers: watch::Receiver<bool>,
    /// Members the configuration names, this one included.
    pub configured: usize,
    peers: watch::Sender<Vec<SocketAddr>>,
    succession: watch::Sender<Succession>,
    leave: mpsc::Sender<oneshot::Sender<()>>,
}

impl Membership {
    /// Binds the socket and starts the protocol, announcing this speaker, whose node has `macs`,
    /// to its peers; `fence` beats to the programs while the run loop keeps up.
    pub fn start(
        node: &str,
        macs: Vec<[u8; 6]>,
        cluster: &Cluster,
        fence: Fence,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Self> {
        let socket = std::net::UdpSocket::bind(cluster.bind)?;
        socket.set_nonblocking(true)?;
        size_receive_buffer(&socket);
        let mut rng: StdRng = rand::make_rng();
        let boot = rand::RngExt::random::<u64>(&mut rng);
        let me = Member { name: node.to_owned(), addr: cluster.bind, generation: unix_ms(), macs };
        let liveness = Liveness::new(cluster.bind, rand::RngExt::random::<u64>(&mut rng));
        let foca = Foca::new(me.clone(), foca_config(cluster), rng, PostcardCodec);
        let (alive_tx, alive) = watch::channel(BTreeSet::from([node.to_owned()]));
        let (peer_macs_tx, peer_macs) = watch::channel(PeerMacs::new());
        let (strangers_tx, strangers) = watch::channel(false);
        let (leave, leave_rx) = mpsc::channel(1);
        let (peers, peers_rx) = watch::channel(cluster.peers.clone());
        let (succession, succession_rx) = watch::channel(Succession::default());
        let key = cluster.key.bytes();
        let (sealer, opener) = (Sealer::new(key, cluster.bind, boot), Opener::new(key, cluster.bind));
        let (timers, configured) = (cluster.timers, cluster.configured_members());
        let run = move || -> std::io::Result<()> {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async move {
                let task = Task {
                    foca,
                    liveness,
                    socket: UdpSocket::from_std(socket)?,
                    sealer,
                    opener,
                    gate: gate::Gate::new(),
                    peers: peers_rx,
                    succession: succession_rx,
                    me,
                    alive_tx,
                    strangers_tx,
                    peer_macs_tx,
                    metrics,
                    fence,
                    mute: false,
                    recent_macs: peer_macs::Recent::default(),
                    timers,
                    sized_for: configured,
                    hearing: hearing::Hearing::new(&timers),
                    alone: true,
                    told_by: None,
                };
                task.run(leave_rx).await;
                Ok(())
            })
        };
        std::thread::Builder::new().name("membership".into()).spawn(move || {
            if let Err(e) = run() {
                error!(error = %e, "membership stopped");
            }
        })?;
        info!(bind = %cluster.bind, peers = cluster.peers.len(), "membership started");
        Ok(Self {
            alive,
            peer_macs,
            strangers,
            configured: cluster.configured_members(),
            peers,
            succession,
            leave,
        })
    }

    /// Tells the membership who watches this node (it beats to them), whom it watches (and whom
    /// to tell when one fails), whose addresses it takes over, and who takes over its own.
    pub fn set_succession(&self, succession: Succession) {
        self.succession.send_if_modified(|current| {
            let differs = *current != succession;
            *current = succession;
            differs
        });
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

    /// Whether a member heard lately is not in the view yet, or one known before this member
    /// was cut off is not back: after a partition heals, the members take each other in anew,
    /// each at its own pace, and one not yet taken in may still answer for what this one gains.
    pub fn hears_strangers(&self) -> bool {
        *self.strangers.borrow()
    }

    /// Tells the others this speaker is leaving, so they take over at once, and stops.
    pub async fn leave(self) {
        let (done, wait) = oneshot::channel();
        if self.leave.send(done).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_millis(500), wait).await;
        }
    }
}

/// Room for bursts (a flood beside the members' datagrams, a thread not scheduled for a while):
/// [`RECEIVE_BUFFER`], past the system's `rmem_max` with CAP_NET_ADMIN; the default otherwise.
fn size_receive_buffer(socket: &std::net::UdpSocket) {
    use nix::sys::socket::{setsockopt, sockopt};
    let forced = setsockopt(socket, sockopt::RcvBufForce, &RECEIVE_BUFFER);
    if let Err(e) = forced.or_else(|_| setsockopt(socket, sockopt::RcvBuf, &RECEIVE_BUFFER)) {
        warn!(error = %e, "membership socket: keeping the default receive buffer");
    }
}

/// The membership socket's receive buffer: about ten thousand of the protocol's datagrams.
const RECEIVE_BUFFER: usize = 4 << 20;

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
        // What the receivers accept (see `auth::MAX_DATAGRAM`), the kind byte aside.
        max_packet_size: NonZeroUsize::new(auth::MAX_PAYLOAD - 1).expect("> 0"),
        ..foca::Config::new_lan(size)
    }
}

/// The settings for `members` when they differ from those for `sized_for`: the cluster grew or
/// shrank enough to change how often news is passed on (the only setting that follows the size;
/// foca takes it at run time).
pub fn resized(sized_for: usize, members: usize, t: crate::config::Timers) -> Option<foca::Config> {
    (max_transmissions(members) != max_transmissions(sized_for)).then(|| protocol_config(members, t))
}

/// How many times each member passes a piece of news on: twice memberlist's (and foca's LAN)
/// 4 log10(n + 1). At theirs, the membership simulation showed a member now and then missing a
/// death until it probed the dead member itself, up to a round of probes later (5 s at 50
/// members); news is rare, so the bytes at rest do not change.
fn max_transmissions(members: usize) -> NonZeroU8 {
    let times = (8.0 * ((members + 1) as f64).log10()).clamp(1.0, 255.0);
    NonZeroU8::new(times as u8).unwrap_or(NonZeroU8::MIN)
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use foca::{Foca, PostcardCodec};
    use rand::{SeedableRng as _, rngs::StdRng};

    use super::*;
    use crate::config::Timers;

    /// A cluster that grows from 3 to 300 nodes gets 300 nodes' settings, which foca takes while
    /// running; sizes that change nothing change nothing.
    #[test]
    fn settings_follow_the_cluster_size() {
        let t = Timers::default();
        assert!(resized(3, 3, t).is_none());
        let grown = resized(3, 300, t).expect("300 nodes pass news on more often than 3");
        assert!(grown.max_transmissions > protocol_config(3, t).max_transmissions);
        let me = Member {
            name: "node-a".into(),
            addr: "[2001:db8::1]:7946".parse().unwrap(),
            generation: 1,
            macs: Vec::new(),
        };
        let mut foca = Foca::new(me, protocol_config(3, t), StdRng::seed_from_u64(1), PostcardCodec);
        foca.set_config(grown).expect("foca takes the grown settings at run time");
    }
}
