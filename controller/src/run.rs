//! The controller's effects: watch Services, pools and namespaces; after each change (and every
//! `RESYNC`, so failed writes are retried) run the pure [`plan`] over the caches and write the
//! result: Service statuses and the pool annotation, Events, pool statuses.

use std::{
    cell::LazyCell,
    collections::{BTreeSet, HashMap},
    sync::Arc,
    time::Duration,
};

use k8s_openapi::{
    api::core::v1::{Namespace, Node, Service},
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
};
use kube::{
    Api, Client, Resource as _, ResourceExt as _,
    api::{Patch, PatchParams},
};
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use herald_kube::{
    cache::watch,
    crd::{IPAddressPool, IPAddressPoolStatus},
    events::{self, Events},
    pace::Pace,
    service::{self, ALLOCATED_FROM_POOL},
    telemetry,
};

use crate::{
    lease::Elector,
    metrics::Metrics,
    plan::{self, Cluster, Plan, Reason},
};

/// How often a pass runs without any change.
const RESYNC: Duration = Duration::from_secs(10);
/// A change that comes alone is handled at once; changes that come in a burst, in one pass per
/// this interval ([`Pace`]).
const DEBOUNCE: Duration = Duration::from_millis(100);

pub struct Options {
    /// The loadBalancerClass to handle; `None`: Services without one.
    pub class: Option<String>,
    /// Where IPAddressPools are read from, and where the leader election's Lease lives.
    pub pool_namespace: String,
    /// This replica's name, for Events and the Lease.
    pub instance: String,
    /// How long a leader's Lease lasts without renewal.
    pub lease: Duration,
    /// Where /metrics, /healthz and /readyz are served.
    pub telemetry: std::net::SocketAddr,
}

/// The Lease the replicas elect their leader on.
pub const LEASE_NAME: &str = "herald-controller";

/// Runs until the watches end (never, in practice).
pub async fn run(client: Client, opts: Options) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::default());
    let listener = tokio::net::TcpListener::bind(opts.telemetry).await?;
    tokio::spawn(telemetry::serve(listener, metrics.clone()));
    let (changed, mut changes) = mpsc::channel::<()>(1);
    let services = watch(Api::<Service>::all(client.clone()), &changed);
    let pools = watch(Api::<IPAddressPool>::namespaced(client.clone(), &opts.pool_namespace), &changed);
    let namespaces = watch(Api::<Namespace>::all(client.clone()), &changed);
    let nodes = watch(Api::<Node>::all(client.clone()), &changed);
    for ready in [
        services.wait_until_ready().await,
        pools.wait_until_ready().await,
        namespaces.wait_until_ready().await,
        nodes.wait_until_ready().await,
    ] {
        ready?;
    }
    info!(pool_namespace = opts.pool_namespace, class = ?opts.class, "caches ready");
    metrics.ready.store(true, std::sync::atomic::Ordering::Relaxed);
    let leader = lead(&client, &opts, changed.clone(), metrics.clone());
    let events = Events::new(client.clone(), "herald-controller", &opts.instance);
    let mut writer = Writer::new(client, events, &opts.pool_namespace);
    let mut last_valid = herald_kube::pools::LastValid::default();
    let mut pace = Pace::new(DEBOUNCE);
    loop {
        let _ = tokio::time::timeout(RESYNC, changes.recv()).await;
        tokio::time::sleep_until(pace.due(std::time::Instant::now()).into()).await;
        while changes.try_recv().is_ok() {}
        pace.pass(std::time::Instant::now());
        // Every replica shows what the Services hold; only a replica that renewed its Lease
        // within the Lease's duration writes.
        metrics.observe_services(&services.state(), opts.class.as_deref());
        if !leader.borrow().is_some_and(|until| tokio::time::Instant::now() < until) {
            continue;
        }
        let cluster = Cluster {
            namespaces: namespaces.state().iter().map(|n| (n.name_any(), n.labels().clone())).collect(),
            node_addresses: nodes.state().iter().map(|n| (n.name_any(), node_addresses(n))).collect(),
            class: opts.class.clone(),
            last_valid: std::mem::take(&mut last_valid),
        };
        let (services, pools) = (services.state(), pools.state());
        let started = std::time::Instant::now();
        let mut plan = plan::plan(&pools, &services, &cluster);
        last_valid = std::mem::take(&mut plan.last_valid);
        let errors = writer.write(&plan, &services, &pools).await;
        metrics.observe(&plan);
        metrics.reconcile_errors.inc_by(errors);
        metrics.reconcile_seconds.observe(started.elapsed().as_secs_f64());
    }
}

/// Keeps trying to hold the Lease; publishes until when this replica may act as leader (the
/// last successful hold plus the Lease's duration), and signals `changed` on winning it.
fn lead(
    client: &Client,
    opts: &Options,
    changed: mpsc::Sender<()>,
    metrics: Arc<Metrics>,
) -> watch::Receiver<Option<tokio::time::Instant>> {
    let api = Api::namespaced(client.clone(), &opts.pool_namespace);
    let elector = Elector::new(api, LEASE_NAME, &opts.instance, opts.lease);
    let (tx, rx) = watch::channel(None);
    let lease = opts.lease;
    tokio::spawn(async move {
        let mut was_leader = false;
        loop {
            let start = tokio::time::Instant::now();
            let holds = match elector.try_hold().await {
                Ok(holds) => holds,
                Err(e) => {
                    warn!(error = %e, "lease");
                    false
                }
            };
            if holds {
                // A margin for clock skew and this round's own latency.
                tx.send_replace(Some(start + lease.mul_f32(0.8)));
            }
            if holds != was_leader {
                info!(leader = holds, "leader election");
                metrics.leader.set(i64::from(holds));
                if holds {
                    let _ = changed.try_send(());
                }
                was_leader = holds;
            }
            tokio::time::sleep(elector.period()).await;
        }
    });
    rx
}

/// A pool's status: its counts (valid pools) and its `Ready` condition, whose transition time
/// changes only when its status does.
fn pool_status(pool: &IPAddressPool, plan: &Plan) -> IPAddressPoolStatus {
    let name = pool.name_any();
    let (ready, reason, message) = match plan.invalid_pools.get(&name) {
        Some(why) => ("False", "Invalid", why.clone()),
        None => ("True", "Valid", plan.pool_notes.get(&name).cloned().unwrap_or_else(|| "in use".into())),
    };
    let previous = pool.status.as_ref().and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"));
    let since = match previous {
        Some(c) if c.status == ready => c.last_transition_time.clone(),
        _ => Time(k8s_openapi::jiff::Timestamp::now()),
    };
    let condition = Condition {
        type_: "Ready".into(),
        status: ready.into(),
        reason: reason.into(),
        message,
        last_transition_time: since,
        observed_generation: pool.metadata.generation,
    };
    let counts = plan.pool_status.get(&name).cloned().unwrap_or_default();
    IPAddressPoolStatus { conditions: vec![condition], ..counts }
}

/// A node's own addresses (InternalIP and ExternalIP).
fn node_addresses(node: &Node) -> Vec<std::net::IpAddr> {
    let addresses = node.status.as_ref().and_then(|s| s.addresses.as_ref());
    addresses
        .into_iter()
        .flatten()
        .filter(|a| a.type_.ends_with("IP"))
        .filter_map(|a| a.address.parse().ok())
        .collect()
}

struct Writer {
    client: Client,
    events: Events,
    pool_namespace: String,
    /// The warnings the last pass published or found already told (object, reason, message): a
    /// pass repeats the same warnings, and each is told once, until it stops and comes back.
    told: BTreeSet<(String, String, String)>,
}

impl Writer {
    fn new(client: Client, events: Events, pool_namespace: &str) -> Self {
        Self { client, events, pool_namespace: pool_namespace.to_owned(), told: BTreeSet::new() }
    }

    /// Writes `plan`; what fails is logged, counted (the return value), and done again by a
    /// later pass.
    async fn write(&mut self, plan: &Plan, services: &[Arc<Service>], pools: &[Arc<IPAddressPool>]) -> u64 {
        let mut errors = 0;
        let mut told = BTreeSet::new();
        // Built when a pass has something to write, not on every resync.
        let by_key: LazyCell<HashMap<String, &Arc<Service>>, _> =
            LazyCell::new(|| services.iter().map(|s| (service::key(s), s)).collect());
        let find = |key: &str| by_key.get(key).copied();
        for (key, assignment) in &plan.assignments {
            let Some(svc) = find(key) else { continue };
            let api: Api<Service> =
                Api::namespaced(self.client.clone(), &svc.namespace().unwrap_or_default());
            let ingress: Vec<_> =
                assignment.iter().flat_map(|a| &a.ips).map(|ip| json!({ "ip": ip.to_string() })).collect();
            let pool = assignment.as_ref().map(|a| a.pool.clone());
            let status = Patch::Merge(json!({ "status": { "loadBalancer": { "ingress": ingress } } }));
            let annotation =
                Patch::Merge(json!({ "metadata": { "annotations": { ALLOCATED_FROM_POOL: pool } } }));
            let params = PatchParams::default();
            if let Err(e) = api.patch_status(&svc.name_any(), &params, &status).await {
                warn!(service = key, error = %e, "status not written");
                errors += 1;
                continue;
            }
            if let Err(e) = api.patch(&svc.name_any(), &params, &annotation).await {
                warn!(service = key, error = %e, "annotation not written; the next pass writes it");
                errors += 1;
            }
        }
        // Addresses right, annotation not: written again (or removed).
        for (key, pool) in &plan.annotations {
            let Some(svc) = find(key) else { continue };
            let api: Api<Service> =
                Api::namespaced(self.client.clone(), &svc.namespace().unwrap_or_default());
            let annotation =
                Patch::Merge(json!({ "metadata": { "annotations": { ALLOCATED_FROM_POOL: pool } } }));
            if let Err(e) = api.patch(&svc.name_any(), &PatchParams::default(), &annotation).await {
                warn!(service = key, error = %e, "annotation not written; the next pass writes it");
                errors += 1;
            }
        }
        for event in &plan.events {
            let Some(svc) = find(&event.service) else { continue };
            let (type_, action) = match event.reason {
                Reason::IPAllocated => (events::Type::Normal, "Allocate"),
                Reason::ClearAssignment => (events::Type::Normal, "Release"),
                Reason::AllocationFailed | Reason::AddressStranded => (events::Type::Warning, "Allocate"),
            };
            let reason = format!("{:?}", event.reason);
            if type_ == events::Type::Warning
                && !self.once(&mut told, &event.service, &reason, &event.message)
            {
                continue;
            }
            let published = self
                .events
                .publish(&svc.object_ref(&()), type_, &reason, action, event.message.clone())
                .await;
            if let Err(e) = published {
                // Told again by the next pass.
                told.remove(&(event.service.clone(), reason, event.message.clone()));
                warn!(service = event.service, error = %e, "event not written");
                errors += 1;
            }
        }
        let api: Api<IPAddressPool> = Api::namespaced(self.client.clone(), &self.pool_namespace);
        for pool in pools {
            let name = pool.name_any();
            if let Some(reason) = plan.invalid_pools.get(&name)
                && self.once(&mut told, &format!("pool {name}"), "InvalidPool", reason)
            {
                let published = self
                    .events
                    .publish(
                        &pool.object_ref(&()),
                        events::Type::Warning,
                        "InvalidPool",
                        "Validate",
                        reason.clone(),
                    )
                    .await;
                if let Err(e) = published {
                    told.remove(&(format!("pool {name}"), "InvalidPool".to_owned(), reason.clone()));
                    warn!(pool = name, error = %e, "event not written");
                    errors += 1;
                }
            }
            let status = pool_status(pool, plan);
            if pool.status.as_ref() != Some(&status)
                && let Err(e) = api
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(json!({ "status": status })))
                    .await
            {
                warn!(pool = name, error = %e, "pool status not written");
                errors += 1;
            }
        }
        self.told = told;
        errors
    }

    /// Whether a warning is new (not told by the last pass); notes it in `told` either way.
    fn once(
        &self,
        told: &mut BTreeSet<(String, String, String)>,
        object: &str,
        reason: &str,
        message: &str,
    ) -> bool {
        let key = (object.to_owned(), reason.to_owned(), message.to_owned());
        let new = !self.told.contains(&key);
        told.insert(key);
        new
    }
}

#[cfg(test)]
#[path = "run_tests.rs"]
mod tests;
