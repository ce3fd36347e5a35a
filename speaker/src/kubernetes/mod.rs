//! Kubernetes mode: the addresses come from LoadBalancer Services' status (the controller gives
//! them out), the candidates from Nodes, endpoints and L2Advertisements, the live speakers from
//! membership between the nodes. Every speaker decides alone, from the same data, who announces
//! what; each announces its own share and says so in the API ([`l2status`]).

mod decide;
mod l2status;
mod share;
mod strip;
mod watches;

use std::{collections::BTreeSet, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context as _;
use k8s_openapi::api::core::v1::Node;
use kube::{Api, Client};
use tokio::{
    sync::{mpsc, watch},
    time::{Instant, Interval},
};
use tracing::{error, info, warn};

pub use self::{
    decide::{Assignment, Snapshot, assign},
    share::{Share, own_share},
    watches::snapshot_of,
};
use self::{l2status::Report, watches::Watches};
use crate::{
    announcement,
    cluster::Alive,
    config::{Cluster, Gratuitous, Timers, cluster::MIN_KEY},
    conflict::Conflict,
    exclusions::Exclusions,
    host::{self, Host},
    metrics::Metrics,
    runtime::{self, Changed, Desired, Runtime},
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
    /// MetalLB's interface exclusions (`metallb-excludel2`'s `excludel2.yaml`, mounted), if any.
    pub exclude_file: PathBuf,
    pub membership_port: u16,
    pub runtime: runtime::Options,
}

/// Changes that arrive together are handled in one pass.
const DEBOUNCE: Duration = Duration::from_millis(50);
/// How often the host's interfaces are checked for changes (a pass follows if they changed), and
/// at most how often the interfaces the responder stands by on are worked out again.
const RESYNC: Duration = Duration::from_secs(10);

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
    /// When the updates seen are handled (they are gathered for [`DEBOUNCE`]).
    debounce_until: Option<Instant>,
    resync: Interval,
    /// Shared with the writer, not copied: a report has a line per Service.
    reports: watch::Sender<Arc<Report>>,
    conflicts: mpsc::Sender<Conflict>,
    /// The host's interfaces as the last pass saw them.
    host: Option<Host>,
    /// When the interfaces the responder stands by on were last worked out, and what they were.
    standby_at: Option<Instant>,
    standing: BTreeSet<(u32, String)>,
    exclusions: Exclusions,
    exclude_file: PathBuf,
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
        let (reports, report_rx) = watch::channel(Arc::new(Report::default()));
        let (conflicts, conflicts_rx) = mpsc::channel(64);
        let writer = l2status::Writer::new(client.clone(), namespace, &node, metrics);
        tokio::spawn(writer.run(report_rx, conflicts_rx));
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
            conflicts,
            host: None,
            standby_at: None,
            standing: BTreeSet::new(),
            exclusions,
            exclude_file,
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
        announcement::interfaces(&own_share(snapshot, &me, host, &self.node).announce)
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
        let host = match self.discover() {
            Ok(host) => host,
            Err(e) => {
                error!(error = %e, "reading the host's interfaces; keeping what is announced");
                return None;
            }
        };
        let snapshot = self.watches.snapshot();
        let Share { announce, report, succession, elsewhere, elsewhere_on } =
            own_share(&snapshot, alive, &host, &self.node);
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

    /// A watch update (after [`DEBOUNCE`], with the Nodes' addresses as the peers), or a change
    /// of the host's interfaces (checked every [`RESYNC`]).
    async fn changed(&mut self) -> Changed {
        loop {
            if let Some(at) = self.debounce_until {
                tokio::time::sleep_until(at).await;
                self.debounce_until = None;
                while self.updates.try_recv().is_ok() {}
                return Changed { peers: Some(self.peers()) };
            }
            tokio::select! {
                Some(()) = self.updates.recv() => self.debounce_until = Some(Instant::now() + DEBOUNCE),
                _ = self.resync.tick() => {
                    self.reread_exclusions();
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
            let _ = self.conflicts.try_send(conflict);
        }
    }
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
