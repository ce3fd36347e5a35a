//! The controller's decisions, as one pure pass over what the cluster holds: which pools are
//! valid, which addresses each handled Service has, what changes, which Events say so, and each
//! pool's counts. The reconciler reads the cluster into it and writes its result back.
//!
//! Services that already have addresses go first, so that a pass (after a restart, or after any
//! change) keeps every address that is still valid; new Services then get what is left.

use std::{
    borrow::Borrow,
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use k8s_openapi::api::core::v1::Service as KubeService;

use herald_kube::{
    crd::{IPAddressPool, IPAddressPoolStatus},
    pool::Pool,
    selector::Labels,
    service,
};

use crate::{
    allocator::{Allocator, Assignment},
    request,
};

/// What one pass decided.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Services whose addresses change: `None` clears them.
    pub assignments: BTreeMap<String, Option<Assignment>>,
    /// Services whose addresses stay but whose `metallb.io/ip-allocated-from-pool` annotation
    /// does not name their pool (its write failed, or someone changed it): the pool to write,
    /// `None` to remove it.
    pub annotations: BTreeMap<String, Option<String>>,
    pub events: Vec<Event>,
    /// Pools that are ignored, with the reason (an Event and a condition on each).
    pub invalid_pools: BTreeMap<String, String>,
    pub pool_status: BTreeMap<String, IPAddressPoolStatus>,
}

/// An Event on a Service, with MetalLB's reasons.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub service: String,
    pub reason: Reason,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    IPAllocated,
    AllocationFailed,
    ClearAssignment,
}

/// What a pass reads from the cluster besides pools and Services.
#[derive(Debug, Default)]
pub struct Cluster {
    /// Labels of each namespace, for namespaceSelectors.
    pub namespaces: BTreeMap<String, Labels>,
    /// The nodes' own addresses, by node: a pool must not cover them.
    pub node_addresses: BTreeMap<String, Vec<IpAddr>>,
    /// The controller's loadBalancerClass.
    pub class: Option<String>,
}

/// One pass: `services` are all Services (only handled ones are touched). Pools and Services are
/// taken as they come (plain, or the caches' `Arc`s), never copied.
pub fn plan<P, S>(pools: &[P], services: &[S], cluster: &Cluster) -> Plan
where
    P: Borrow<IPAddressPool>,
    S: Borrow<KubeService>,
{
    let mut out = Plan::default();
    let (namespaces, class) = (&cluster.namespaces, cluster.class.as_deref());
    let valid = valid_pools(pools, &cluster.node_addresses, &mut out.invalid_pools);
    let mut allocator = Allocator::new(valid.clone());

    let mut handled: Vec<&KubeService> =
        services.iter().map(Borrow::borrow).filter(|s| service::handled(s, class)).collect();
    handled.sort_by_key(|s| {
        (service::current(s).is_empty(), s.metadata.namespace.clone(), s.metadata.name.clone())
    });
    for svc in handled {
        let current = service::current(svc);
        let key = service::key(svc);
        let ns_labels =
            namespaces.get(svc.metadata.namespace.as_deref().unwrap_or("")).cloned().unwrap_or_default();
        let result = request::from_kube(svc, &ns_labels)
            .and_then(|req| allocator.allocate(&req, &current).map_err(|e| e.to_string()));
        let annotated = service::allocated_from(svc);
        match result {
            Ok(a) if same(&a.ips, &current) => {
                if annotated != Some(a.pool.as_str()) {
                    out.annotations.insert(key, Some(a.pool));
                }
            }
            Ok(a) => {
                if !current.is_empty() {
                    out.events.push(clear(&key, &current, "no longer valid"));
                }
                let message = format!("Assigned IP {} from pool {}", list(&a.ips), a.pool);
                out.events.push(Event { service: key.clone(), reason: Reason::IPAllocated, message });
                out.assignments.insert(key, Some(a));
            }
            Err(reason) => {
                if !current.is_empty() {
                    out.events.push(clear(&key, &current, &reason));
                    out.assignments.insert(key.clone(), None);
                } else if annotated.is_some() {
                    out.annotations.insert(key.clone(), None);
                }
                out.events.push(Event { service: key, reason: Reason::AllocationFailed, message: reason });
            }
        }
    }

    for pool in &valid {
        let [(v4_used, v4_all), (v6_used, v6_all)] = allocator.counts(&pool.name);
        let n = |x: u128| i64::try_from(x).unwrap_or(i64::MAX);
        out.pool_status.insert(
            pool.name.clone(),
            IPAddressPoolStatus {
                assigned_ipv4: n(v4_used),
                assigned_ipv6: n(v6_used),
                available_ipv4: n(v4_all - v4_used),
                available_ipv6: n(v6_all - v6_used),
                conditions: Vec::new(),
            },
        );
    }
    out
}

/// The pools that are valid, in name order; the others land in `invalid` with the reason. Of
/// two overlapping pools, the one that comes later by name is refused; so is a pool that covers
/// a node's own address (handing it out would take the node's traffic).
fn valid_pools<P: Borrow<IPAddressPool>>(
    pools: &[P],
    nodes: &BTreeMap<String, Vec<IpAddr>>,
    invalid: &mut BTreeMap<String, String>,
) -> Vec<Pool> {
    let mut sorted: Vec<&IPAddressPool> = pools.iter().map(Borrow::borrow).collect();
    sorted.sort_by_key(|p| p.metadata.name.clone());
    let mut valid: Vec<Pool> = Vec::new();
    for p in sorted {
        let name = p.metadata.name.clone().unwrap_or_default();
        let covered = |pool: &Pool| {
            nodes.iter().find_map(|(node, ips)| {
                ips.iter().find(|ip| pool.contains(**ip)).map(|ip| (node.clone(), *ip))
            })
        };
        match Pool::from_spec(&name, &p.spec) {
            Ok(pool) if let Some((node, ip)) = covered(&pool) => {
                drop(invalid.insert(name, format!("covers {ip}, an address of node {node}")));
            }
            Ok(pool) => match valid
                .iter()
                .find(|v| v.ranges.iter().any(|a| pool.ranges.iter().any(|b| a.overlaps(b))))
            {
                Some(other) => drop(invalid.insert(name, format!("overlaps pool {:?}", other.name))),
                None => valid.push(pool),
            },
            Err(reason) => drop(invalid.insert(name, reason)),
        }
    }
    valid
}

fn clear(service: &str, current: &[IpAddr], why: &str) -> Event {
    let message = format!("Released IP {}: {why}", list(current));
    Event { service: service.to_owned(), reason: Reason::ClearAssignment, message }
}

fn same(a: &[IpAddr], b: &[IpAddr]) -> bool {
    a.iter().collect::<BTreeSet<_>>() == b.iter().collect::<BTreeSet<_>>()
}

fn list(ips: &[IpAddr]) -> String {
    ips.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
