//! Kubernetes mode: the addresses come from LoadBalancer Services' status (the controller gives
//! them out), the candidates from Nodes, endpoints and L2Advertisements, the live speakers from
//! membership between the nodes. Every speaker decides alone, from the same data, who announces
//! what; each announces its own share and says so in the API ([`status`]).

mod decide;
mod interfaces;
mod status;
mod watches;

use std::{
    collections::BTreeSet,
    net::{SocketAddr, SocketAddrV4},
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use herald_kube::report::Chain;
use k8s_openapi::api::core::v1::Node;
use kube::{Api, Client};
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::{mpsc, watch},
};
use tracing::{error, info, warn};

pub use self::{
    decide::{Assignment, Interfaces, Snapshot, assign},
    watches::snapshot_of,
};
use self::{status::Report, watches::Watches};
use crate::{
    announcer::Announcer,
    cluster::{Alive, Membership},
    config::{Cluster, Gratuitous, Timers, cluster::MIN_KEY},
    conflict,
    datapath::{self, Datapath},
    garp, handback, host,
    metrics::{Endpoint, Metrics},
    plan::Announcement,
    state,
};

pub struct Options {
    /// This node's name (the Node object's).
    pub node: String,
    /// Where IPAddressPools and L2Advertisements are read and ServiceL2Statuses written.
    pub namespace: String,
    /// The loadBalancerClass the controller handles; `None`: Services without one.
    pub class: Option<String>,
    /// The membership key, from the Secret mounted as a file.
    pub key_file: PathBuf,
    pub membership_port: u16,
    /// Where /metrics, /healthz and /readyz are served.
    pub telemetry: SocketAddr,
    pub datapath: datapath::Options,
}

/// Changes that arrive together are handled in one pass.
const DEBOUNCE: Duration = Duration::from_millis(50);
/// How often the host's interfaces are checked for changes (a pass follows if they changed).
const RESYNC: Duration = Duration::from_secs(10);
/// How often the state file (`herald-speaker status`) is rewritten.
const STATE_EVERY: Duration = Duration::from_secs(1);
/// How long to wait for every node's speaker before going with those that answered.
const JOIN_TIMEOUT: Duration = Duration::from_secs(1);

/// Runs until SIGTERM or SIGINT; then withdraws, detaches, and leaves the membership (the
/// others take over at once).
pub async fn run(client: Client, opts: Options) -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let key = read_key(&opts.key_file)?;
    let me: Node = Api::all(client.clone())
        .get(&opts.node)
        .await
        .with_context(|| format!("reading Node {:?} (NODE_NAME): is it this node's name?", opts.node))?;
    let my_ip = watches::internal_ip(&me)
        .with_context(|| format!("Node {:?} has no IPv4 InternalIP to run membership on", opts.node))?;

    let metrics = Arc::new(Metrics::default());
    let mut datapath = Datapath::load(&opts.datapath)?;
    if let Some(logs) = datapath.take_logs() {
        tokio::spawn(datapath::forward_logs(logs));
    }
    let sender = garp::Sender::new().context("opening a packet socket for gratuitous ARP")?;
    let mut announcer = Announcer::new(datapath, sender, metrics.clone());
    announcer.datapath.beat()?;
    let registry = metrics.registry(opts.datapath.pin_dir.clone(), announcer.names.clone());
    let endpoint = Endpoint::serve(opts.telemetry, registry).await?;

    let (changed_tx, mut changed) = mpsc::channel(1);
    let watches = Watches::start(&client, &opts.namespace, &changed_tx).await?;
    watches.ready().await.context("filling the caches")?;
    let cluster = Cluster {
        bind: SocketAddrV4::new(my_ip, opts.membership_port).into(),
        peers: peers(&watches, &opts),
        key,
        quorum: false,
        timers: Timers::default(),
    };
    let own_macs = host::discover().context("reading the host's interfaces")?.own_macs();
    let mut membership = Membership::start(&opts.node, own_macs, &cluster, metrics.clone())
        .await
        .with_context(|| format!("starting membership on {}", cluster.bind))?;
    let (reports, report_rx) = watch::channel(Report::default());
    let (conflicts_tx, conflicts_rx) = mpsc::channel(64);
    let writer = status::Writer::new(client.clone(), &opts.namespace, &opts.node, metrics.clone());
    tokio::spawn(writer.run(report_rx, conflicts_rx));
    info!(node = opts.node, membership = %cluster.bind, pin_dir = %opts.datapath.pin_dir.display(), "speaker ready");

    let gratuitous = Gratuitous::default();
    let state_path = state::path(&opts.datapath.state_dir, &opts.datapath.pin_dir);
    let mut speaker = Here {
        opts: &opts,
        watches: &watches,
        announcer: &mut announcer,
        reports: &reports,
        host: None,
        standby_at: None,
    };
    // `None` until the speaker has joined: it announces nothing before.
    let mut joined: Option<Alive> = None;
    let join_deadline = tokio::time::Instant::now() + JOIN_TIMEOUT;
    let mut heartbeat = tokio::time::interval(opts.datapath.dead_man / 4);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut resync = tokio::time::interval(RESYNC);
    let mut state_every = tokio::time::interval(STATE_EVERY);
    let mut conflicts = tokio::time::interval(conflict::POLL);
    let mut peer_macs = membership.peer_macs.clone();
    loop {
        let hold = speaker.announcer.hold_deadline();
        tokio::select! {
            _ = conflicts.tick() => for conflict in speaker.announcer.poll_conflicts() {
                // The writer tells the Service; a full queue means it is telling plenty already.
                let _ = conflicts_tx.try_send(conflict);
            },
            Ok(()) = peer_macs.changed() => {
                let macs = peer_macs.borrow_and_update().clone();
                if let Err(e) = speaker.announcer.datapath.add_peers(macs) {
                    error!(error = %e, "the other speakers' MACs not written");
                }
            }
            _ = heartbeat.tick() => {
                if let Err(e) = speaker.announcer.datapath.beat() {
                    error!(error = %e, "heartbeat not written");
                }
                if !speaker.announcer.stale().is_empty() {
                    speaker.announcer.settle();
                }
            }
            // Apart from the heartbeat: with thousands of addresses, rendering it is not free.
            _ = state_every.tick() => {
                let report = state::render(
                    &opts.node,
                    &speaker.announcer.interfaces(),
                    joined.as_ref(),
                    speaker.announcer.current(),
                    &metrics,
                );
                if let Err(e) = state::write(&state_path, &report) {
                    warn!(path = %state_path.display(), error = %e, "state file not written");
                }
            }
            alive = membership.next_view(joined.is_none().then_some(join_deadline)) => {
                if handback::is_join(joined.as_ref(), &alive) {
                    speaker.announcer.hold_gains(handback::hold(&cluster.timers), Instant::now());
                }
                // Joining is not a takeover; later views are.
                let takeover = joined.is_some().then(Instant::now);
                let changed = speaker.pass(&alive, takeover);
                if takeover.is_some() {
                    metrics.ownership_changes.inc_by(changed as u64);
                }
                speaker.announcer.reannounce(gratuitous);
                joined = Some(alive);
                endpoint.set_ready(true);
            }
            Some(()) = changed.recv() => {
                tokio::time::sleep(DEBOUNCE).await;
                while changed.try_recv().is_ok() {}
                membership.set_peers(peers(&watches, &opts));
                if let Some(alive) = &joined {
                    speaker.pass(alive, None);
                }
            }
            _ = crate::standalone::until(hold), if hold.is_some() => {
                let seen = speaker.announcer.end_hold();
                if let Some(alive) = &joined {
                    let changed = speaker.pass(alive, seen);
                    metrics.ownership_changes.inc_by(changed as u64);
                    speaker.announcer.reannounce(gratuitous);
                }
            }
            _ = resync.tick() => if let Some(alive) = &joined {
                speaker.resync(alive);
            },
            _ = term.recv() => { info!("SIGTERM: leaving and withdrawing"); break }
            _ = int.recv() => { info!("SIGINT: leaving and withdrawing"); break }
        }
    }
    // Silent first, then gone: the others take over when they hear this one leave, and never
    // answer beside it.
    endpoint.set_ready(false);
    announcer.silence();
    membership.leave().await;
    announcer.withdraw_all();
    let _ = std::fs::remove_file(&state_path);
    Ok(())
}

/// One node's view: what it reads, what it drives.
struct Here<'a> {
    opts: &'a Options,
    watches: &'a Watches,
    announcer: &'a mut Announcer,
    reports: &'a watch::Sender<Report>,
    /// The host's interfaces as the last pass saw them.
    host: Option<host::Host>,
    /// When the interfaces the responder stands by on were last worked out.
    standby_at: Option<Instant>,
}

impl Here<'_> {
    /// A pass if the host's interfaces changed since the last one (the watches and membership
    /// trigger passes for everything else).
    fn resync(&mut self, alive: &Alive) {
        match host::discover() {
            Ok(host) if self.host.as_ref() == Some(&host) => {}
            Ok(host) => drop(self.pass_on(host, alive, None)),
            Err(e) => error!(error = %e, "reading the host's interfaces; keeping what is announced"),
        }
    }

    /// Decides from the caches and `alive`, applies this node's share to the datapath and hands
    /// the report to the status writer. Returns how many entries changed.
    fn pass(&mut self, alive: &Alive, takeover: Option<Instant>) -> usize {
        match host::discover() {
            Ok(host) => self.pass_on(host, alive, takeover),
            Err(e) => {
                error!(error = %e, "reading the host's interfaces; keeping what is announced");
                0
            }
        }
    }

    /// [`Here::pass`] with the host's interfaces already read.
    fn pass_on(&mut self, host: host::Host, alive: &Alive, takeover: Option<Instant>) -> usize {
        let snapshot = self.watches.snapshot(self.opts.class.as_deref());
        let (desired, report) = here(&snapshot, alive, &host, &self.opts.node);
        if self.standby_at.is_none_or(|at| at.elapsed() >= RESYNC) {
            // Every interface this node would announce on were it the only one alive: where it
            // may take addresses over.
            let me = BTreeSet::from([self.opts.node.clone()]);
            let (could, _) = here(&snapshot, &me, &host, &self.opts.node);
            self.announcer.stand_by(crate::plan::interfaces(&could));
            self.standby_at = Some(Instant::now());
        }
        self.host = Some(host);
        let changed = match self.announcer.apply(desired, Gratuitous::default(), takeover) {
            Ok(changed) => changed,
            Err(e) => {
                error!(error = %Chain(&e), "could not apply the election; keeping what is announced");
                0
            }
        };
        self.reports.send_if_modified(|current| {
            let differs = *current != report;
            *current = report;
            differs
        });
        changed
    }
}

/// What `node` announces on `host`, and the report for the API. Pure.
pub fn here(
    snapshot: &Snapshot,
    alive: &Alive,
    host: &host::Host,
    node: &str,
) -> (BTreeSet<Announcement>, Report) {
    let assignments = decide::assign(snapshot, alive);
    let mut desired = BTreeSet::new();
    let mut report = Report::default();
    for (service, owned) in decide::owned_by(&assignments, node) {
        for a in owned {
            // NDP comes with the IPv6 datapath; until then IPv6 addresses are not announced.
            let std::net::IpAddr::V4(address) = a.address else { continue };
            match interfaces::carriers(host, address, &a.interfaces) {
                Ok(carriers) => {
                    let names = report.announced.entry(service.to_owned()).or_default();
                    names.extend(carriers.iter().map(|c| c.ifname.clone()));
                    desired.extend(carriers);
                    report.services.insert(address, service.to_owned());
                }
                Err(reason) => drop(report.failed.insert(service.to_owned(), reason)),
            }
        }
    }
    (desired, report)
}

/// Every other Node's InternalIP, at the membership port.
fn peers(watches: &Watches, opts: &Options) -> Vec<SocketAddr> {
    let nodes = watches.nodes.state();
    let mut out: Vec<SocketAddr> = nodes
        .iter()
        .filter(|n| n.metadata.name.as_deref() != Some(opts.node.as_str()))
        .filter_map(|n| watches::internal_ip(n))
        .map(|ip| SocketAddrV4::new(ip, opts.membership_port).into())
        .collect();
    out.sort();
    out
}

/// The membership key: the file's text, trimmed; at least [`MIN_KEY`] bytes.
fn read_key(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    let text =
        std::fs::read(path).with_context(|| format!("reading the membership key {}", path.display()))?;
    let key = String::from_utf8_lossy(&text).trim().as_bytes().to_vec();
    anyhow::ensure!(
        key.len() >= MIN_KEY,
        "membership key {}: {} bytes; at least {MIN_KEY} are needed",
        path.display(),
        key.len()
    );
    Ok(key)
}
