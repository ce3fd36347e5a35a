//! Why an address is answered by the node that answers it, or by none: the chain the decisions
//! walk for one Service, link by link, over the same plain data and the same rules
//! ([`super::assign`]), so that what `kubectl herald explain` says is what the speakers decide.
//! The node-local links (the owner's interfaces and map, other hosts' claims) are the caller's:
//! they are read from the owner, not decided.

use std::{collections::BTreeSet, net::IpAddr};

use herald_kube::{crd::L2AdvertisementSpec, selector};

use super::{LoadBalancer, Snapshot, any_or_empty, assign, covers_pool, preference};
pub use crate::explain::{Link, render};
use crate::{candidates, carriers::Interfaces, election};

/// What to explain: an address, or a Service by `namespace/name`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Query {
    Address(IpAddr),
    Service(String),
}

/// The decided end of the chain: who answers, who would next, and on which interfaces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub service: String,
    pub addresses: Vec<IpAddr>,
    pub owner: String,
    pub heir: Option<String>,
    pub interfaces: Interfaces,
}

/// The chain for `query` with `live` the nodes whose speakers run, up to and including its first
/// broken link; and, if none broke, the outcome.
pub fn explain(snapshot: &Snapshot, live: &BTreeSet<String>, query: &Query) -> (Vec<Link>, Option<Outcome>) {
    let mut links = Vec::new();
    let svc = match service(snapshot, query) {
        Ok(svc) => svc,
        Err(link) => return (vec![link], None),
    };
    links.push(Link::holds("service", vec![format!("{} holds {}", svc.key, list(&svc.addresses))]));
    let Some(&first) = svc.addresses.first() else {
        links.push(Link::broken(
            "address",
            vec![format!(
                "{} has no address yet: no pool gave it one (see its AllocationFailed Events)",
                svc.key
            )],
        ));
        return (links, None);
    };
    let Some(pool) = push(&mut links, pool(snapshot, svc, first)) else { return (links, None) };
    let Some(ads) = push(&mut links, advertisements(snapshot, svc, &pool)) else { return (links, None) };
    let endpoints = endpoints(svc);
    let no_endpoint = !endpoints.holds;
    links.push(endpoints);
    if no_endpoint {
        return (links, None);
    }
    let (link, candidates) = candidacy(snapshot, live, svc, &ads, first);
    links.push(link);
    if candidates.is_empty() {
        return (links, None);
    }
    let decided = assign(snapshot, live);
    let Some(a) = decided.iter().find(|a| a.service == svc.key) else {
        links.push(Link::broken("election", vec!["the decisions give it no owner".into()]));
        return (links, None);
    };
    let shared: BTreeSet<&str> = decided
        .iter()
        .filter(|o| o.service != svc.key && svc.addresses.contains(&o.address))
        .map(|o| o.service.as_str())
        .collect();
    let mut lines =
        vec![format!("{} answers; were it gone, {}", a.owner, a.heir.as_deref().unwrap_or("nobody would"))];
    if !shared.is_empty() {
        lines.push(format!(
            "shares its address with {}: elected together, over the candidates they have in common",
            shared.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    let interfaces = match &a.interfaces {
        Interfaces::Subnet => "the interface whose subnet holds the address".to_owned(),
        Interfaces::Named(names) => {
            format!(
                "the interfaces its advertisements name: {}",
                names.iter().cloned().collect::<Vec<_>>().join(", ")
            )
        }
    };
    lines.push(format!("on {}", interfaces));
    links.push(Link::holds("election", lines));
    let outcome = Outcome {
        service: svc.key.clone(),
        addresses: svc.addresses.clone(),
        owner: a.owner.clone(),
        heir: a.heir.clone(),
        interfaces: a.interfaces.clone(),
    };
    (links, Some(outcome))
}

/// Adds a step's link to `links`; what it found, if it holds.
fn push<T>(links: &mut Vec<Link>, step: Result<(Link, T), Link>) -> Option<T> {
    let (link, found) = match step {
        Ok((link, found)) => (link, Some(found)),
        Err(link) => (link, None),
    };
    links.push(link);
    found
}

fn list(addresses: &[IpAddr]) -> String {
    if addresses.is_empty() {
        return "no address".into();
    }
    addresses.iter().map(IpAddr::to_string).collect::<Vec<_>>().join(", ")
}

/// The Service the query names, or the broken link that says why there is none.
fn service<'a>(snapshot: &'a Snapshot, query: &Query) -> Result<&'a LoadBalancer, Link> {
    match query {
        Query::Service(key) => snapshot.services.iter().find(|s| &s.key == key).ok_or_else(|| {
            Link::broken(
                "service",
                vec![format!("no LoadBalancer Service {key} that Herald handles (type LoadBalancer, its loadBalancerClass)")],
            )
        }),
        Query::Address(address) => {
            // The first in the list whose status holds it; shared addresses explain through it.
            if let Some(svc) = snapshot.services.iter().find(|s| s.addresses.contains(address)) {
                return Ok(svc);
            }
            let pool = snapshot.pools.iter().find(|(p, _)| p.contains(*address));
            let why = match pool {
                Some((p, _)) => format!("pool {} covers {address}, but no Service holds it", p.name),
                None => format!("no pool covers {address}, and no Service holds it"),
            };
            Err(Link::broken("service", vec![why]))
        }
    }
}

/// The pool the Service's first address comes from: the one the controller named, or (without
/// that annotation) the pool in force that holds it.
fn pool(snapshot: &Snapshot, svc: &LoadBalancer, first: IpAddr) -> Result<(Link, String), Link> {
    let in_force = |name: &str| snapshot.pools.iter().any(|(p, _)| p.name == name);
    match &svc.pool {
        Some(name) if in_force(name) => {
            Ok((Link::holds("pool", vec![format!("from pool {name}")]), name.clone()))
        }
        Some(name) => Ok((
            Link::holds(
                "pool",
                vec![format!(
                    "from pool {name}, which is not in force (refused or deleted): the address stays announced \
                     until the Service gives it up"
                )],
            ),
            name.clone(),
        )),
        None => match snapshot.pools.iter().find(|(p, _)| p.contains(first)) {
            Some((p, _)) => Ok((
                Link::holds("pool", vec![format!("pool {} holds {first} (no pool annotation)", p.name)]),
                p.name.clone(),
            )),
            None => Err(Link::broken(
                "pool",
                vec![format!("no pool covers {first}: Herald announces addresses from its pools only")],
            )),
        },
    }
}

/// An L2Advertisement by name, as the snapshot holds it.
type Advertisement = (String, L2AdvertisementSpec);

/// The L2Advertisements that cover the pool and select the Service; or why none does.
fn advertisements<'a>(
    snapshot: &'a Snapshot,
    svc: &LoadBalancer,
    pool: &str,
) -> Result<(Link, Vec<&'a Advertisement>), Link> {
    static NO_LABELS: selector::Labels = selector::Labels::new();
    let labels = snapshot.pool_labels.get(pool).unwrap_or(&NO_LABELS);
    let covering: Vec<_> =
        snapshot.advertisements.iter().filter(|(_, ad)| covers_pool(ad, pool, labels)).collect();
    let (selecting, leaving): (Vec<&Advertisement>, Vec<_>) =
        covering.iter().partition(|(_, ad)| any_or_empty(&ad.service_selectors, &svc.labels));
    let mut lines: Vec<String> = leaving
        .iter()
        .map(|(name, _)| {
            format!(
                "L2Advertisement {name} covers pool {pool}, but its serviceSelectors leave the Service out"
            )
        })
        .collect();
    if selecting.is_empty() {
        if covering.is_empty() {
            lines.push(format!(
                "no L2Advertisement covers pool {pool} (by ipAddressPools or ipAddressPoolSelectors)"
            ));
        }
        return Err(Link::broken("advertisements", lines));
    }
    let names: Vec<&str> = selecting.iter().map(|(name, _)| name.as_str()).collect();
    lines.insert(0, format!("advertised by L2Advertisement {}", names.join(", ")));
    Ok((Link::holds("advertisements", lines), selecting))
}

/// Where the Service's ready endpoints are.
fn endpoints(svc: &LoadBalancer) -> Link {
    let t = &svc.traffic;
    let policy = if t.local_traffic { "Local" } else { "Cluster" };
    if t.ready_endpoint_nodes.is_empty() && !t.ready_off_node {
        return Link::broken(
            "endpoints",
            vec![format!(
                "no ready endpoint (externalTrafficPolicy {policy}): as MetalLB, nobody announces a Service \
                 without one"
            )],
        );
    }
    let mut at: Vec<String> = t.ready_endpoint_nodes.iter().cloned().collect();
    if t.ready_off_node {
        at.push("off the nodes".into());
    }
    Link::holds(
        "endpoints",
        vec![format!("ready endpoints on {} (externalTrafficPolicy {policy})", at.join(", "))],
    )
}

/// Each node's candidacy, with the reason of each one left out, in election order; the
/// candidates.
fn candidacy(
    snapshot: &Snapshot,
    live: &BTreeSet<String>,
    svc: &LoadBalancer,
    ads: &[&Advertisement],
    first: IpAddr,
) -> (Link, Vec<String>) {
    let specs: Vec<&L2AdvertisementSpec> = ads.iter().map(|(_, ad)| ad).collect();
    let mut out: Vec<(String, Option<String>, i64)> = snapshot
        .nodes
        .iter()
        .map(|node| {
            let why = excluded(node, live, svc, &specs, ads);
            (node.name.clone(), why, preference(&specs, Some(node)))
        })
        .collect();
    out.sort_by_cached_key(|(name, why, score)| {
        (why.is_some(), std::cmp::Reverse(*score), election::rank(name, first))
    });
    let candidates: Vec<String> =
        out.iter().filter(|(_, why, _)| why.is_none()).map(|(n, _, _)| n.clone()).collect();
    let mut lines = Vec::new();
    let mut place = 0;
    for (name, why, score) in &out {
        lines.push(match why {
            None => {
                place += 1;
                let preferred = if *score > 0 { format!(", preference {score}") } else { String::new() };
                format!("{place}. {name}{preferred}")
            }
            Some(why) => format!("-  {name}: {why}"),
        });
    }
    if snapshot.nodes.is_empty() {
        lines.push("no Nodes".into());
    }
    if candidates.is_empty() {
        lines.insert(0, "no node may announce it:".into());
        return (Link::broken("candidates", lines), candidates);
    }
    lines.insert(0, format!("in election order (sha256 of node#{first}, preferences first):"));
    (Link::holds("candidates", lines), candidates)
}

/// Why `node` may not announce `svc`, if it may not: the first rule it fails, in the order the
/// candidate rules apply them ([`candidates::candidates`]).
fn excluded(
    node: &candidates::Node,
    live: &BTreeSet<String>,
    svc: &LoadBalancer,
    specs: &[&L2AdvertisementSpec],
    ads: &[&Advertisement],
) -> Option<String> {
    if !live.contains(&node.name) {
        return Some("no speaker running (no Lease renewed lately)".into());
    }
    if !specs.iter().any(|ad| any_or_empty(&ad.node_selectors, &node.labels)) {
        let names: Vec<&str> = ads.iter().map(|(name, _)| name.as_str()).collect();
        return Some(format!("the nodeSelectors of L2Advertisement {} leave it out", names.join(", ")));
    }
    if node.labels.contains_key(candidates::EXCLUDE_LABEL) {
        return Some(format!("labelled {}", candidates::EXCLUDE_LABEL));
    }
    if node.network_unavailable {
        return Some("its NetworkUnavailable condition is True".into());
    }
    if svc.traffic.local_traffic && !svc.traffic.ready_endpoint_nodes.contains(&node.name) {
        return Some("externalTrafficPolicy Local, and no ready endpoint here".into());
    }
    None
}

#[cfg(test)]
#[path = "explain_tests.rs"]
mod tests;
