//! The speaker's counters, kept in one place for the status report and for /metrics, where they
//! are `herald_*` (docs/metrics.md lists them beside MetalLB's).

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
};

use anyhow::Context as _;

use prometheus_client::{
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

use responder::Responder;
pub use responder::{InterfaceNames, Labelled};

mod responder;

#[derive(Debug)]
pub struct Metrics {
    /// Addresses this speaker started or stopped announcing because the election moved them.
    pub ownership_changes: Counter,
    /// Owners this speaker, their heir, found failed from missed heartbeats and unanswered
    /// probes, before SWIM declared them down.
    pub owners_failed: Counter,
    /// Times this node silenced itself: its run loop, or its membership, stalled past its bound
    /// (see [`crate::fence`]).
    pub fences: Counter,
    /// Gratuitous ARP and unsolicited NA sent, both protocols (see [`Metrics::gratuitous_sent`]).
    pub gratuitous_sent: Counter,
    /// The same, by protocol.
    gratuitous: Family<Protocol, Counter>,
    /// This node's name, for the `node` label of `herald_announced` (set once the source is
    /// known).
    pub node: Arc<OnceLock<String>>,
    /// Members this speaker sees alive, itself included.
    pub members_alive: Gauge,
    /// Speakers the API server says are running, this one included (Kubernetes mode).
    pub speakers_running: Gauge,
    /// 1 while this node withdrew everything: it hears too few of the running speakers.
    pub isolated: Gauge,
    /// Addresses this node should announce but could not put in the map (an interface refused
    /// the responder, or the map the entry); tried again every second.
    pub not_announced: Gauge,
    /// Membership datagrams dropped: bad HMAC or framing, too old or new, replayed, or
    /// authentic but not a valid membership message.
    pub rejected_unauthenticated: Counter,
    pub rejected_stale: Counter,
    pub rejected_replayed: Counter,
    pub rejected_malformed: Counter,
    /// Datagrams past a budget, unchecked: from addresses that are neither peers nor members, or
    /// claiming a boot unknown from their address.
    pub rejected_throttled: Counter,
    /// From the membership change that made this node an address's owner to the first
    /// gratuitous ARP for it.
    pub takeover_seconds: Histogram,
    /// Writes to the API server (statuses, Events) that failed, and will be retried.
    pub kube_write_errors: Counter,
    /// The `rejected_*` counters above, by reason (each shares its counter's value).
    rejected: Family<Reason, Counter>,
}

type Reason = [(&'static str, &'static str); 1];
type Protocol = [(&'static str, &'static str); 1];

impl Default for Metrics {
    fn default() -> Self {
        let rejected = Family::<Reason, Counter>::default();
        let reason = |r| rejected.get_or_create_owned(&[("reason", r)]);
        Self {
            ownership_changes: Counter::default(),
            owners_failed: Counter::default(),
            fences: Counter::default(),
            gratuitous_sent: Counter::default(),
            gratuitous: Family::default(),
            node: Arc::default(),
            members_alive: Gauge::default(),
            not_announced: Gauge::default(),
            speakers_running: Gauge::default(),
            isolated: Gauge::default(),
            rejected_unauthenticated: reason("unauthenticated"),
            rejected_stale: reason("stale"),
            rejected_replayed: reason("replayed"),
            rejected_malformed: reason("malformed"),
            rejected_throttled: reason("throttled"),
            takeover_seconds: Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]),
            kube_write_errors: Counter::default(),
            rejected,
        }
    }
}

impl Metrics {
    /// Counts a gratuitous ARP (IPv4) or unsolicited Neighbor Advertisement (IPv6) sent for `addr`.
    pub fn gratuitous_sent(&self, addr: IpAddr) {
        self.gratuitous_sent.inc();
        self.gratuitous.get_or_create(&[("protocol", responder::protocol(addr))]).inc();
    }

    /// Name and value of every counter, for the status report.
    pub fn snapshot(&self) -> [(&'static str, u64); 12] {
        [
            ("ownership_changes", self.ownership_changes.get()),
            ("owners_failed", self.owners_failed.get()),
            ("fences", self.fences.get()),
            ("gratuitous_sent", self.gratuitous_sent.get()),
            ("members_alive", self.members_alive.get().max(0) as u64),
            ("speakers_running", self.speakers_running.get().max(0) as u64),
            ("isolated", self.isolated.get().max(0) as u64),
            ("rejected_unauthenticated", self.rejected_unauthenticated.get()),
            ("rejected_stale", self.rejected_stale.get()),
            ("rejected_replayed", self.rejected_replayed.get()),
            ("rejected_malformed", self.rejected_malformed.get()),
            ("rejected_throttled", self.rejected_throttled.get()),
        ]
    }

    /// A registry of every metric under `herald_`, with the responder map's per-entry counters
    /// read from the pins under `pin_dir` at each scrape. `names` maps interface indexes to
    /// names (the announcer keeps it current).
    pub fn registry(self: &Arc<Self>, pin_dir: PathBuf, names: InterfaceNames) -> Registry {
        let mut r = Registry::with_prefix("herald");
        r.register("membership_rejected", "Membership datagrams dropped, by reason", self.rejected.clone());
        r.register(
            "members_alive",
            "Speakers this one sees alive, itself included",
            self.members_alive.clone(),
        );
        r.register(
            "speakers_running",
            "Speakers the API server says are running, this one included (Kubernetes mode)",
            self.speakers_running.clone(),
        );
        r.register(
            "isolated",
            "1 while this node withdrew every address because it hears too few of the running speakers",
            self.isolated.clone(),
        );
        r.register(
            "addresses_not_announced",
            "Addresses this node should announce but could not put in the responder map (retried every second)",
            self.not_announced.clone(),
        );
        r.register(
            "ownership_changes",
            "Addresses this node started or stopped announcing because the election moved them",
            self.ownership_changes.clone(),
        );
        r.register(
            "owners_failed",
            "Owners this node, their heir, found failed before SWIM did: by its own probes, or by their watcher's word",
            self.owners_failed.clone(),
        );
        r.register(
            "fences",
            "Times this node silenced itself because its run loop or its membership stalled past their bounds",
            self.fences.clone(),
        );
        r.register(
            "gratuitous_arp_sent",
            "Deprecated, removed in 0.3: herald_gratuitous_sent_total{protocol}. Gratuitous ARP and \
             unsolicited Neighbor Advertisements sent",
            self.gratuitous_sent.clone(),
        );
        r.register(
            "takeover_seconds",
            "From the membership change that made this node an owner to its first gratuitous ARP",
            self.takeover_seconds.clone(),
        );
        r.register(
            "kube_write_errors",
            "Status and Event writes to the API server that failed (retried)",
            self.kube_write_errors.clone(),
        );
        r.register(
            "gratuitous_sent",
            "Gratuitous ARP and unsolicited Neighbor Advertisements sent, by protocol",
            self.gratuitous.clone(),
        );
        r.register_collector(Box::new(Responder::new(pin_dir, names, self.node.clone())));
        r
    }
}

/// A speaker's /metrics, /healthz and /readyz: ready once it has joined the membership (at
/// once, without one).
pub struct Endpoint {
    registry: Registry,
    ready: AtomicBool,
}

impl Endpoint {
    /// Serves `registry` on `addr` (in a task of its own) until the process ends.
    pub async fn serve(addr: SocketAddr, registry: Registry) -> anyhow::Result<Arc<Self>> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the telemetry address {addr} (--telemetry)"))?;
        let endpoint = Arc::new(Self { registry, ready: AtomicBool::new(false) });
        tokio::spawn(herald_kube::telemetry::serve(listener, endpoint.clone()));
        Ok(endpoint)
    }

    /// Sets readiness; returns what it was.
    pub fn set_ready(&self, ready: bool) -> bool {
        self.ready.swap(ready, Ordering::Relaxed)
    }
}

impl herald_kube::telemetry::Scrape for Endpoint {
    fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String");
        out
    }

    fn ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}
