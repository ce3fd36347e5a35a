//! The controller's decisions, as one pure pass over what the cluster holds: which pools are
//! valid, which addresses each handled Service has, what changes, which Events say so, and each
//! pool's counts. The reconciler reads the cluster into it and writes its result back.
//!
//! Services that already have addresses go first, so that a pass (after a restart, or after any
//! change) keeps every address they hold; new Services then get what is left. No change of the
//! pools takes an address from a Service: which pools are in force is `herald_kube::pools`'
//! rule, and an address they no longer give stays with its Service (a warning Event says so).

use std::{
    borrow::Borrow,
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use k8s_openapi::api::core::v1::Service as KubeService;

use herald_kube::{
    crd::{IPAddressPool, IPAddressPoolStatus},
    pools::{self, LastValid},
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
    /// Pools refused, or in force only as last seen valid, with the reason (an Event and a
    /// condition on each).
    pub invalid_pools: BTreeMap<String, String>,
    /// Pools in force that hold a node's address, which they never give out: what to say so.
    pub pool_notes: BTreeMap<String, String>,
    pub pool_status: BTreeMap<String, IPAddressPoolStatus>,
    /// The pools' last valid versions, for the next pass's [`Cluster::last_valid`].
    pub last_valid: LastValid,
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
    /// A Service keeps addresses the pools in force would not give it now (a warning).
    AddressStranded,
}

/// What a pass reads from the cluster besides pools and Services.
#[derive(Debug, Default)]
pub struct Cluster {
    /// Labels of each namespace, for namespaceSelectors.
    pub namespaces: BTreeMap<String, Labels>,
    /// The nodes' own addresses, by node: never given out.
    pub node_addresses: BTreeMap<String, Vec<IpAddr>>,
    /// The controller's loadBalancerClass.
    pub class: Option<String>,
    /// What the previous pass returned in [`Plan::last_valid`].
    pub last_valid: LastValid,
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
    let in_force = pools::in_force(pools, &cluster.last_valid);
    out.invalid_pools = in_force.refused.iter().map(|(name, why)| (name.clone(), why.to_string())).collect();
    out.last_valid = in_force.last_valid;
    let valid: Vec<_> = in_force.pools.into_iter().map(|(pool, _)| pool).collect();
    let node_addresses: BTreeMap<IpAddr, String> = cluster
        .node_addresses
        .iter()
        .flat_map(|(node, ips)| ips.iter().map(move |ip| (*ip, node.clone())))
        .collect();
    for pool in &valid {
        let held: Vec<String> = node_addresses
            .iter()
            .filter(|(ip, _)| pool.contains(**ip))
            .map(|(ip, node)| format!("{ip} (node {node})"))
            .collect();
        if !held.is_empty() {
            let note = format!("in use; never gives out the node addresses {}", held.join(", "));
            out.pool_notes.insert(pool.name.clone(), note);
        }
    }
    let mut allocator = Allocator::new(valid.clone()).with_node_addresses(node_addresses);

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
                if let Some(why) = &a.stranded {
                    let message = format!(
                        "Keeps IP {} from pool {}, though the pools in force would not give it now: {why}",
                        list(&a.ips),
                        a.pool
                    );
                    out.events.push(Event { service: key.clone(), reason: Reason::AddressStranded, message });
                }
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
