//! The speaker's one run loop, for both modes. It owns the datapath and the announcer, the
//! heartbeat, the state file, membership, telemetry and shutdown; a [`Source`] (the config file
//! and the election, or the cluster's objects and the decisions) says what to announce.

use std::{collections::BTreeSet, future::Future, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context as _;
use herald_kube::report::Chain;
use tokio::{
    signal::unix::{Signal, SignalKind, signal},
    time::{Instant, Interval, MissedTickBehavior},
};
use tracing::{error, info, warn};

use crate::{
    announcement::Announcement,
    announcer::Announcer,
    cluster::{Alive, Membership},
    config::{Cluster, Gratuitous},
    conflict::{self, Conflict},
    datapath::{self, Datapath, Heartbeats},
    election::Succession,
    fence::{Fence, Pulse},
    garp, handback, host, memory,
    metrics::{Endpoint, Metrics},
    sd_notify, state_file,
};

/// How long a speaker with a cluster waits to see every member before it goes with the members
/// it sees (alone, if none answered).
const JOIN_TIMEOUT: Duration = Duration::from_secs(1);
/// How many times per `--dead-man-ms` the run loop ticks (beats, alone).
pub const TICKS_PER_BOUND: u32 = 10;
/// How often the state file (`herald-speaker status`) is rewritten when something in it changed.
/// Apart from the heartbeat: with thousands of addresses, rendering it is not free.
const STATE_EVERY: Duration = Duration::from_secs(1);

/// What this node should announce, as a source sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Desired {
    /// The entries to have in the responder map.
    pub announce: BTreeSet<Announcement>,
    /// Every interface this node may have to announce on (where the responder stands by, so a
    /// takeover is one map insert); `None`: as before.
    pub stand_by: Option<BTreeSet<(u32, String)>>,
    /// Whom this node's membership sends heartbeats to, and whose it watches for.
    pub succession: Succession,
    /// IPv4 addresses another node announces: their ARP requests are dropped here, so that this
    /// node's kernel never answers beside the owner (where a Service proxy bound them locally).
    pub elsewhere: BTreeSet<std::net::Ipv4Addr>,
}

/// A change in what a source says.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changed {
    /// The membership peers, when they changed.
    pub peers: Option<Vec<SocketAddr>>,
}

/// Where the addresses come from: a mode of the speaker.
pub trait Source {
    /// This node's name in the membership and the state file.
    fn node(&self) -> &str;
    /// How gratuitous ARP is sent for new and reannounced addresses.
    fn gratuitous(&self) -> Gratuitous;
    /// Every interface this node may have to announce on, before it knows the live members.
    fn stand_by(&mut self) -> BTreeSet<(u32, String)>;
    /// What this node announces with `alive` the live members (`None`: without a cluster).
    /// `None` keeps what is announced (the source could not tell; it has said why).
    fn desired(&mut self, alive: Option<&Alive>) -> Option<Desired>;
    /// Resolves when what the source says may have changed. Cancel-safe: the run loop drops it
    /// whenever something else happens first.
    fn changed(&mut self) -> impl Future<Output = Changed>;
    /// Another MAC answered for addresses this node announces.
    fn conflicts(&mut self, found: Vec<Conflict>);
    /// The gains the datapath did not take at the last attempt, and why (retried; the speaker's
    /// log and state file say so already). Called after every attempt.
    fn not_announced(&mut self, _failed: &std::collections::BTreeMap<Announcement, String>) {}
}

pub struct Options {
    pub datapath: datapath::Options,
    /// Where /metrics, /healthz and /readyz are served.
    pub telemetry: SocketAddr,
}

/// The parts both modes run on, started before the source so that /healthz answers while the
/// source gets ready.
pub struct Runtime {
    opts: datapath::Options,
    metrics: Arc<Metrics>,
    announcer: Announcer,
    heartbeats: Heartbeats,
    endpoint: Arc<Endpoint>,
    term: Signal,
    int: Signal,
}

impl Runtime {
    /// Loads the datapath (nothing attached yet) and serves telemetry, not ready.
    pub async fn start(opts: Options) -> anyhow::Result<Self> {
        let term = signal(SignalKind::terminate())?;
        let int = signal(SignalKind::interrupt())?;
        let metrics = Arc::new(Metrics::default());
        let mut datapath = Datapath::load(&opts.datapath)?;
        if let Some(logs) = datapath.take_logs() {
            tokio::spawn(datapath::forward_logs(logs));
        }
        let heartbeats = datapath.heartbeats();
        heartbeats.beat(opts.datapath.dead_man)?;
        let sender = garp::Sender::new().context("opening a packet socket for gratuitous ARP")?;
        let announcer = Announcer::new(datapath, sender, metrics.clone());
        let registry = metrics.registry(opts.datapath.pin_dir.clone(), announcer.names());
        let endpoint = Endpoint::serve(opts.telemetry, registry).await?;
        Ok(Self { opts: opts.datapath, metrics, announcer, heartbeats, endpoint, term, int })
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Runs `source` until SIGTERM or SIGINT, with membership in `cluster` if there is one;
    /// then silences this node, leaves the cluster (the others take over when they hear it)
    /// and detaches.
    pub async fn run(mut self, mut source: impl Source, cluster: Option<Cluster>) -> anyhow::Result<()> {
        let node = source.node().to_owned();
        let _ = self.metrics.node.set(node.clone());
        let gratuitous = source.gratuitous();
        // With a cluster, the membership thread beats to the programs while this loop ticks the
        // pulse (see `fence`); alone, this loop beats.
        let pulse = cluster.as_ref().map(|_| Arc::new(Pulse::default()));
        let mut membership = match (&cluster, &pulse) {
            (Some(cluster), Some(pulse)) => {
                let own_macs =
                    host::discover(&Default::default()).context("reading the host's interfaces")?.own_macs();
                let fence = Fence::new(
                    self.heartbeats.clone(),
                    pulse.clone(),
                    self.opts.dead_man,
                    self.metrics.clone(),
                );
                Some(
                    Membership::start(&node, own_macs, cluster, fence, self.metrics.clone())
                        .with_context(|| format!("starting membership on {}", cluster.bind))?,
                )
            }
            _ => None,
        };
        let mut peer_macs = membership.as_ref().map(|m| m.peer_macs.clone());
        let state_path = state_file::path(&self.opts.state_dir, &self.opts.pin_dir);
        let announcer = &mut self.announcer;
        // Ready on every interface an address may need, before any is taken over.
        announcer.stand_by(source.stand_by());
        // `None` until the speaker has joined (or found itself alone): it announces nothing
        // before. Without a cluster there is nothing to join.
        let mut joined: Option<Alive> = None;
        let join_deadline = Instant::now() + JOIN_TIMEOUT;
        if membership.is_none() {
            pass(announcer, &mut source, None, None, gratuitous, None);
            set_ready(&self.endpoint, true);
        }
        info!(node, pin_dir = %self.opts.pin_dir.display(), membership = ?cluster.as_ref().map(|c| c.bind), "speaker ready");

        // Ten times per bound: one late tick never stops the answers, and a stall is seen at
        // nine tenths of the bound at the earliest.
        let mut heartbeat = every(self.opts.dead_man / TICKS_PER_BOUND);
        let mut state_every = every(STATE_EVERY);
        let mut conflicts = every(conflict::POLL);
        // What the state file last said: rendered again only when this changes.
        let mut stated = None;
        // Passes so far, and as of the last time freed memory was given back.
        let (mut passes, mut trimmed) = (0u64, 0u64);
        let mut refresh =
            gratuitous.refresh.map(|every| tokio::time::interval_at(Instant::now() + every, every));
        loop {
            if let (Some(pulse), Some(cluster)) = (&pulse, &cluster)
                && pulse.is_fenced()
            {
                recover(announcer, pulse, cluster);
            }
            let hold = announcer.hold_deadline();
            // What membership says, once joined (or without a cluster).
            let view = joined.as_ref();
            let settled = membership.is_none() || joined.is_some();
            tokio::select! {
                _ = conflicts.tick() => source.conflicts(announcer.poll_conflicts()),
                Some(macs) = changed(&mut peer_macs) => {
                    if let Err(e) = announcer.set_peers(&macs) {
                        error!(error = %Chain(&e), "the other speakers' MACs not written");
                    }
                }
                // Handled at the top of the loop.
                _ = fenced(&pulse) => {}
                _ = heartbeat.tick() => {
                    match &pulse {
                        Some(pulse) => drop(pulse.tick()),
                        None => {
                            if let Err(e) = self.heartbeats.beat(self.opts.dead_man) {
                                error!(error = %Chain(&e), "heartbeat not written");
                            }
                        }
                    }
                    if announcer.tidy() {
                        source.not_announced(announcer.failed());
                    }
                }
                _ = state_every.tick() => {
                    // At most once a second, and only after work: a pass frees what it built.
                    if passes != trimmed {
                        memory::give_back();
                        trimmed = passes;
                    }
                    let now = Some((announcer.generation(), view.cloned(), self.metrics.snapshot()));
                    if now == stated {
                        continue;
                    }
                    stated = now;
                    let report = state_file::render(&node, &announcer.interfaces(), view, announcer.current(), announcer.failed(), &self.metrics);
                    if let Err(e) = state_file::write(&state_path, &report) {
                        warn!(path = %state_path.display(), error = %e, "state file not written");
                    }
                }
                _ = tick(&mut refresh) => announcer.refresh(),
                alive = next_view(&mut membership, joined.is_none().then_some(join_deadline)) => {
                    if let Some(cluster) = &cluster
                        && handback::is_join(view, &alive)
                    {
                        announcer.hold_gains(handback::hold(&cluster.timers), std::time::Instant::now());
                    }
                    // Joining is not a takeover, nor a change of owner; later views are.
                    let takeover = joined.is_some().then(std::time::Instant::now);
                    passes += 1;
                    let changed = pass(announcer, &mut source, Some(&alive), takeover, gratuitous, membership.as_ref());
                    if takeover.is_some() {
                        self.metrics.ownership_changes.inc_by(changed as u64);
                    }
                    announcer.reannounce(gratuitous);
                    joined = Some(alive);
                    set_ready(&self.endpoint, true);
                }
                _ = until(hold), if hold.is_some() => {
                    let seen = announcer.end_hold();
                    if let (Some(cluster), Some(membership), Some(seen)) = (&cluster, &membership, seen)
                        && handback::hold_on(membership.hears_strangers(), seen, std::time::Instant::now())
                    {
                        announcer.hold_gains(handback::hold(&cluster.timers), seen);
                        continue;
                    }
                    if settled {
                        passes += 1;
                        let changed = pass(announcer, &mut source, view, seen.filter(|_| view.is_some()), gratuitous, membership.as_ref());
                        self.metrics.ownership_changes.inc_by(changed as u64);
                        announcer.reannounce(gratuitous);
                    }
                }
                change = source.changed() => {
                    if let (Some(peers), Some(membership)) = (change.peers, &membership) {
                        membership.set_peers(peers);
                    }
                    if settled {
                        passes += 1;
                        pass(announcer, &mut source, view, None, gratuitous, membership.as_ref());
                    } else {
                        announcer.stand_by(source.stand_by());
                    }
                }
                _ = self.term.recv() => { info!("SIGTERM: leaving and withdrawing"); break }
                _ = self.int.recv() => { info!("SIGINT: leaving and withdrawing"); break }
            }
        }
        // Silent first, then gone: the others take over when they hear this one leave, and
        // never answer beside it.
        set_ready(&self.endpoint, false);
        announcer.leave();
        if let Some(membership) = membership {
            membership.leave().await;
        }
        let _ = std::fs::remove_file(&state_path);
        Ok(())
    }
}

/// /readyz, and systemd's unit state when it changes: ready once joined (or at once without a
/// cluster), stopping when leaving.
fn set_ready(endpoint: &Endpoint, ready: bool) {
    if endpoint.set_ready(ready) != ready {
        sd_notify::notify(if ready { sd_notify::READY } else { sd_notify::STOPPING });
    }
}

/// This node was silenced (see [`crate::fence`]) and may have been replaced meanwhile: it
/// withdraws everything, lifts the fence (the others hear it again, and give its addresses
/// back), and takes what it gains only after a hand-back's hold.
fn recover(announcer: &mut Announcer, pulse: &Pulse, cluster: &Cluster) {
    announcer.silence();
    announcer.hold_gains(handback::hold(&cluster.timers), std::time::Instant::now());
    pulse.lift();
    warn!("silenced while the run loop or the membership stalled: announcing again after a hand-back");
}

/// Applies what `source` says this node announces now, and tells `membership` who succeeds
/// whom. Returns how many entries changed.
fn pass(
    announcer: &mut Announcer,
    source: &mut impl Source,
    alive: Option<&Alive>,
    takeover: Option<std::time::Instant>,
    gratuitous: Gratuitous,
    membership: Option<&Membership>,
) -> usize {
    let Some(desired) = source.desired(alive) else { return 0 };
    if let Some(interfaces) = desired.stand_by {
        announcer.stand_by(interfaces);
    }
    if let Some(membership) = membership {
        membership.set_succession(desired.succession);
    }
    // Before the entries: an address this node loses is answered until its entry goes (the
    // programs look there first), then dropped; one it gains is dropped no more an instant
    // before it is answered.
    if let Err(e) = announcer.set_elsewhere(&desired.elsewhere) {
        error!(error = %Chain(&e), "the addresses other nodes announce not all written");
    }
    let changed = announcer.apply(desired.announce, gratuitous, takeover);
    source.not_announced(announcer.failed());
    changed
}

fn every(period: Duration) -> Interval {
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    interval
}

/// Resolves when a fence may have gone up; never, without a cluster.
async fn fenced(pulse: &Option<Arc<Pulse>>) {
    match pulse {
        Some(pulse) => pulse.fenced().await,
        None => std::future::pending().await,
    }
}

/// Resolves at `deadline`; never without one.
async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The next value of an optional watch; never, without one.
async fn changed<T: Clone>(rx: &mut Option<tokio::sync::watch::Receiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => {
            rx.changed().await.ok()?;
            Some(rx.borrow_and_update().clone())
        }
        None => std::future::pending().await,
    }
}

/// The next tick of an optional interval; never, without one.
async fn tick(interval: &mut Option<Interval>) {
    match interval {
        Some(interval) => drop(interval.tick().await),
        None => std::future::pending().await,
    }
}

/// The next view of the live members (see [`Membership::next_view`]); never, without a cluster.
async fn next_view(membership: &mut Option<Membership>, join_deadline: Option<Instant>) -> Alive {
    match membership {
        Some(m) => m.next_view(join_deadline).await,
        None => std::future::pending().await,
    }
}
