//! Kubernetes mode: the addresses come from LoadBalancer Services' status (the controller gives
//! them out), the candidates from Nodes, endpoints and L2Advertisements, the live speakers from
//! membership between the nodes. Every speaker decides alone, from the same data, who announces
//! what; each announces its own share and says so in the API ([`l2status`]).

pub mod decide;
mod l2status;
mod presence;
mod quorum;
mod share;
mod strip;
mod watches;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use anyhow::Context as _;
use herald_kube::pace::Pace;
use k8s_openapi::api::core::v1::Node;
use kube::{Api, Client};
use tokio::{
    sync::{mpsc, watch},
    time::{Instant, Interval},
};
use tracing::{error, info, warn};

pub use self::{
    decide::{Assignment, Decider, Snapshot, assign},
    share::{Share, own_share},
    watches::snapshot_of,
};
use self::{
    l2status::{Notice, Report},
    presence::Presence,
    quorum::Standing,
    watches::Watches,
};
use crate::{
    announcement::{self, Announcement},
    cluster::Alive,
    config::{Cluster, Gratuitous, Key, Timers},
    conflict::Conflict,
    exclusions::Exclusions,
    host::{self, Host},
    metrics::Metrics,
    netlink::HostEvents,
    runtime::{self, Changed, Desired, Runtime},
};

/// The cluster as the speakers' decisions see it, read once with their own watches, and the
/// nodes whose speakers renewed their Lease lately: for `kubectl herald`, which explains the
/// decisions with the speakers' own code. Pools, advertisements and Leases are read from
/// `namespace`; Services of `class` (as the controller's).
pub async fn read_once(
    client: &Client,
    namespace: &str,
    class: Option<String>,
) -> anyhow::Result<(Snapshot, BTreeSet<String>)> {
    let (changed, _unheard) = mpsc::channel(1);
    let watches = Watches::start(client, namespace, class, &changed).await?;
    watches.ready().await?;
    let leases = presence::leases(client, namespace).await.context("listing the speakers' Leases")?;
    let live = presence::renewed_lately(&leases, k8s_openapi::jiff::Timestamp::now());
    Ok((watches.snapshot(), live))
}

pub struct Options {
    /// This node's name (the Node object's).
    pub node: String,
    /// Where IPAddressPools and L2Advertisements are read and ServiceL2Statuses written.
    pub namespace: String,
    /// The loadBalancerClass the controller handles; `None`: Services without one.
    pub class: Option<String>,
    /// The membership key, from the Secret mounted as a file.
    pub key_file: PathBuf,
    /// MetalLB's interface exclusions (`metallb-excludel2`'s `excludel2.yaml`, mounted), if any.
    pub exclude_file: PathBuf,
    pub membership_port: u16,
    pub runtime: runtime::Options,
}

/// A change that comes alone is handled at once; changes that come in a burst, in one pass per
/// this interval ([`Pace`]).
const DEBOUNCE: Duration = Duration::from_millis(50);
/// How often the host's interfaces are checked for changes (a pass follows if they changed), and
/// at most how often the interfaces the responder stands by on are worked out again.
const RESYNC: Duration = Duration::from_secs(10);
/// Host changes that come together (a bond failover, an interface re-created) are read once.
const SETTLE: Duration = Duration::from_millis(50);

/// Runs until SIGTERM or SIGINT (see [`Runtime::run`]), with every other Node's speaker as a
/// member.
pub async fn run(client: Client, opts: Options) -> anyhow::Result<()> {
    let key = read_key(&opts.key_file)?;
    let me: Node = Api::all(client.clone())
        .get(&opts.node)
        .await
        .with_context(|| format!("reading Node {:?} (NODE_NAME): is it this node's name?", opts.node))?;
    let my_ip = watches::internal_ip(&me)
        .with_context(|| format!("Node {:?} has no InternalIP to run membership on", opts.node))?;
    let runtime = Runtime::start(opts.runtime).await?;
    let source = ClusterObjects::start(
        &client,
        opts.node,
        &opts.namespace,
        opts.class,
        opts.membership_port,
        runtime.metrics(),
        opts.exclude_file,
    )
    .await?;
    let cluster = Cluster {
        bind: SocketAddr::new(my_ip, opts.membership_port),
        peers: source.peers(),
        key,
        quorum: false,
        timers: Timers::default(),
    };
    runtime.run(source, Some(cluster)).await
}

/// The cluster's objects, as a source of what to announce: the watches' caches in; the
/// decisions, and the report for the status writer, out.
struct ClusterObjects {
    node: String,
    membership_port: u16,
    watches: Watches,
    /// Signalled on every watch update.
    updates: mpsc::Receiver<()>,
    /// When the updates seen are handled, and when the last were ([`DEBOUNCE`]).
    debounce_until: Option<Instant>,
    pace: Pace,
    resync: Interval,
    /// Shared with the writer, not copied: a report has a line per Service.
    reports: watch::Sender<Arc<Report>>,
    notices: mpsc::Sender<Notice>,
    /// The gains the datapath refused, as last told (each is told once per reason).
    not_announced: BTreeMap<IpAddr, String>,
    /// The speakers the API server says are running, and those of them the last pass expected.
    presence: Presence,
    running: BTreeSet<String>,
    /// Why this node withdrew everything, while it does (see [`quorum`]).
    isolated: Option<String>,
    /// Membership datagrams refused as stale, as of the last pass.
    stale_seen: u64,
    metrics: Arc<Metrics>,
    /// The host's interfaces as the last pass saw them, and the kernel's news of changes.
    host: Option<Host>,
    host_events: Option<HostEvents>,
    /// When the interfaces the responder stands by on were last worked out, and what they were.
    standby_at: Option<Instant>,
    standing: BTreeSet<(u32, String)>,
    exclusions: Exclusions,
    exclude_file: PathBuf,
    /// What a pass keeps for the next (the election orders); paced, so that no pass outlasts
    /// the fence's bound.
    decider: Decider,
}

impl ClusterObjects {
    /// Starts the watches and the status writer; returns once the caches are filled.
    async fn start(
        client: &Client,
        node: String,
        namespace: &str,
        class: Option<String>,
        membership_port: u16,
        metrics: Arc<Metrics>,
        exclude_file: PathBuf,
    ) -> anyhow::Result<Self> {
        // A bad file stops the start, naming what is wrong; later, the last good one stays.
        let exclusions = Exclusions::read(&exclude_file).map_err(anyhow::Error::msg)?;
        let (updated, updates) = mpsc::channel(1);
        let watches = Watches::start(client, namespace, class, &updated).await?;
        watches.ready().await.context("filling the caches")?;
        let presence = Presence::start(client, namespace, &node, &updated);
        let (reports, report_rx) = watch::channel(Arc::new(Report::default()));
        let (notices, notices_rx) = mpsc::channel(64);
        let writer = l2status::Writer::new(client.clone(), namespace, &node, metrics.clone());
        tokio::spawn(writer.run(report_rx, notices_rx));
        let mut resync = tokio::time::interval(RESYNC);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Ok(Self {
            node,
            membership_port,
            watches,
            updates,
            debounce_until: None,
            resync,
            reports,
            notices,
            not_announced: BTreeMap::new(),
            presence,
            running: BTreeSet::new(),
            isolated: None,
            stale_seen: 0,
            metrics,
            host: None,
            host_events: HostEvents::open()
                .inspect_err(
                    |e| warn!(error = %e, "no netlink news of host changes; reading the host every 10 s"),
                )
                .ok(),
            standby_at: None,
            standing: BTreeSet::new(),
            exclusions,
            exclude_file,
            decider: Decider::paced(),
            pace: Pace::new(DEBOUNCE),
        })
    }

    /// The host's interfaces, with MetalLB's exclusions as last read.
    fn discover(&self) -> std::io::Result<Host> {
        host::discover(&self.exclusions)
    }

    /// Reads MetalLB's exclusions again (a mounted ConfigMap follows its edits); a file that
    /// cannot be read or parsed leaves the last ones in force.
    fn reread_exclusions(&mut self) {
        match Exclusions::read(&self.exclude_file) {
            Ok(now) if now != self.exclusions => {
                info!(exclusions = ?now, "interface exclusions changed");
                self.exclusions = now;
            }
            Ok(_) => {}
            Err(e) => warn!(error = e, "interface exclusions not read; the last ones stay"),
        }
    }

    /// Every other Node's InternalIP, at the membership port.
    fn peers(&self) -> Vec<SocketAddr> {
        let nodes = self.watches.nodes.state();
        let mut out: Vec<SocketAddr> = nodes
            .iter()
            .filter(|n| n.metadata.name.as_deref() != Some(self.node.as_str()))
            .filter_map(|n| watches::internal_ip(n))
            .map(|ip| SocketAddr::new(ip, self.membership_port))
            .collect();
        out.sort();
        out
    }

    /// Every interface this node would announce on were it the only one alive: where it may
    /// take addresses over.
    fn could(&self, snapshot: &Snapshot, host: &Host) -> BTreeSet<(u32, String)> {
        let me = BTreeSet::from([self.node.clone()]);
        // Alone, each Service has one candidate at most: ranked directly, nothing worth keeping.
        let share = own_share(&mut Decider::default(), snapshot, &me, host, &self.node);
        announcement::interfaces(&share.announce)
    }
}

impl runtime::Source for ClusterObjects {
    fn node(&self) -> &str {
        &self.node
    }

    fn gratuitous(&self) -> Gratuitous {
        Gratuitous::default()
    }

    fn stand_by(&mut self) -> BTreeSet<(u32, String)> {
        match self.discover() {
            Ok(host) => self.could(&self.watches.snapshot(), &host),
            Err(e) => {
                error!(error = %e, "reading the host's interfaces; the responder stands by nowhere yet");
                BTreeSet::new()
            }
        }
    }

    /// Decides from the caches and `alive`, and hands the report to the status writer.
    fn desired(&mut self, alive: Option<&Alive>) -> Option<Desired> {
        let alive = alive?;
        // Losses must not wait on the host: without a fresh reading, the last one decides.
        let host = match (self.discover(), &self.host) {
            (Ok(host), _) => host,
            (Err(e), Some(last)) => {
                error!(error = %e, "reading the host's interfaces; deciding on them as last read");
                last.clone()
            }
            (Err(e), None) => {
                error!(error = %e, "reading the host's interfaces; announcing nothing yet");
                return None;
            }
        };
        let snapshot = self.watches.snapshot();
        // Not before the API server has said who runs: alone in an empty list, any node holds.
        self.running = self.presence.expected(&self.node, std::time::Instant::now())?;
        let standing = Standing::new(&self.node, alive, &self.running);
        self.stand(&standing);
        let share = match &self.isolated {
            None => own_share(&mut self.decider, &snapshot, alive, &host, &self.node),
            // What it would have with everyone running alive: it drops requests for all of it.
            Some(_) => {
                withdrawn(own_share(&mut self.decider, &snapshot, &standing.running, &host, &self.node))
            }
        };
        let Share { announce, report, succession, elsewhere, elsewhere_on } = share;
        // Where it may take addresses over, and where requests for others' arrive.
        let due = self.standby_at.is_none_or(|at| at.elapsed() >= RESYNC)
            || !elsewhere_on.is_subset(&self.standing);
        let stand_by = due.then(|| {
            self.standby_at = Some(Instant::now());
            self.standing = self.could(&snapshot, &host).into_iter().chain(elsewhere_on).collect();
            self.standing.clone()
        });
        self.host = Some(host);
        self.reports.send_if_modified(|current| {
            let differs = **current != report;
            if differs {
                *current = Arc::new(report);
            }
            differs
        });
        Some(Desired { announce, stand_by, succession, elsewhere })
    }

    /// A watch update (paced by [`DEBOUNCE`], with the Nodes' addresses as the peers), or a change
    /// of the host's interfaces or of the speakers running (checked every [`RESYNC`]).
    async fn changed(&mut self) -> Changed {
        if self.decider.pending() {
            // The last pass left new Services for the next: the loop's other work comes first.
            tokio::time::sleep(Duration::from_millis(10)).await;
            return Changed::default();
        }
        loop {
            if let Some(at) = self.debounce_until {
                tokio::time::sleep_until(at).await;
                self.debounce_until = None;
                while self.updates.try_recv().is_ok() {}
                self.pace.pass(std::time::Instant::now());
                return Changed { peers: Some(self.peers()) };
            }
            tokio::select! {
                Some(()) = self.updates.recv() => {
                    self.debounce_until = Some(self.pace.due(std::time::Instant::now()).into());
                }
                news = HostEvents::next(&mut self.host_events) => {
                    if let Err(e) = news {
                        warn!(error = %e, "netlink news of host changes lost; reading the host every 10 s");
                        self.host_events = None;
                    }
                    tokio::time::sleep(SETTLE).await;
                    if let Ok(host) = self.discover()
                        && self.host.as_ref() != Some(&host)
                    {
                        return Changed::default();
                    }
                }
                _ = self.resync.tick() => {
                    self.reread_exclusions();
                    if self.presence.expected(&self.node, std::time::Instant::now()).is_some_and(|now| now != self.running) {
                        return Changed::default();
                    }
                    match self.discover() {
                        Ok(host) if self.host.as_ref() != Some(&host) => return Changed::default(),
                        Ok(_) => {}
                        Err(e) => error!(error = %e, "reading the host's interfaces"),
                    }
                }
            }
        }
    }

    /// The writer tells the Services; a full queue means it is telling plenty already.
    fn conflicts(&mut self, found: Vec<Conflict>) {
        for conflict in found {
            let _ = self.notices.try_send(Notice::Conflict(conflict));
        }
    }

    /// Each address's Service is told once per reason (and again should it fail anew).
    fn not_announced(&mut self, failed: &BTreeMap<Announcement, String>) {
        let now: BTreeMap<IpAddr, String> =
            failed.iter().map(|(a, why)| (a.addr, format!("{}: {why}", a.ifname))).collect();
        for (addr, why) in &now {
            if self.not_announced.get(addr) != Some(why) {
                let _ = self.notices.try_send(Notice::NotAnnounced(*addr, why.clone()));
            }
        }
        self.not_announced = now;
    }
}

impl ClusterObjects {
    /// Follows this node's standing: withdraws when it hears too few of the running speakers,
    /// and says so (log, metric, an Event on its Node), and comes back when it hears them.
    fn stand(&mut self, standing: &Standing) {
        let stale = self.metrics.rejected_stale.get();
        let clock_off = stale > std::mem::replace(&mut self.stale_seen, stale);
        let why = (!standing.holds()).then(|| {
            let missing: Vec<&str> = standing.missing().map(String::as_str).collect();
            let mut why = format!(
                "hears {} of the {} speakers running (itself included), not a majority: not {}",
                standing.heard.len(),
                standing.running.len(),
                missing.join(", ")
            );
            if clock_off {
                why.push_str("; their membership datagrams are refused as stale: this node's clock is more than 30 s off theirs (is NTP running?)");
            } else {
                why.push_str("; is UDP to and from the membership port blocked (a host firewall)?");
            }
            why
        });
        self.metrics.speakers_running.set(standing.running.len() as i64);
        self.metrics.isolated.set(i64::from(why.is_some()));
        if why.is_some() != self.isolated.is_some() {
            match &why {
                Some(why) => error!(why, "isolated: withdrawing every address until the others are heard"),
                None => info!("the others are heard again: announcing"),
            }
            let _ = self.notices.try_send(Notice::Isolated(why.clone()));
        }
        self.isolated = why;
    }
}

/// A share withdrawn: nothing announced, nobody to warn or watch, and every IPv4 address it
/// would have announced dropped with the others' (a Service proxy may have bound them here).
fn withdrawn(share: Share) -> Share {
    let mut elsewhere = share.elsewhere;
    elsewhere.extend(share.announce.iter().filter_map(|a| match a.addr {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(_) => None,
    }));
    let report = Report { services: share.report.services, ..Default::default() };
    Share {
        announce: BTreeSet::new(),
        report,
        succession: Default::default(),
        elsewhere,
        elsewhere_on: share.elsewhere_on,
    }
}

/// The membership key, from the Secret's file (see [`Key::from_bytes`]).
fn read_key(path: &std::path::Path) -> anyhow::Result<Key> {
    let raw =
        std::fs::read(path).with_context(|| format!("reading the membership key {}", path.display()))?;
    Key::from_bytes(&raw).map_err(|e| anyhow::anyhow!("membership key {}: {e}", path.display()))
}
