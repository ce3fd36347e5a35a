//! Kubernetes mode's decisions, over plain data: which node announces each Service (MetalLB's
//! rules: pools an L2Advertisement covers, its node and service selectors, the candidate rules
//! of [`crate::candidates`], then the sha256 order of the Service's first address), and on
//! which interfaces. As in MetalLB, all of a Service's addresses go to one node: a dual-stack
//! Service is answered on both families by the same node.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use herald_kube::{crd::L2AdvertisementSpec, pool::Pool, selector};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::{candidates, carriers::Interfaces, election};

/// What the cluster says, as the decisions need it.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub services: Vec<LoadBalancer>,
    pub nodes: Vec<candidates::Node>,
    /// The IPAddressPools in force (`herald_kube::pools`), oldest first, with their labels
    /// (L2Advertisements select pools by label).
    pub pools: Vec<(Pool, selector::Labels)>,
    /// The labels of every IPAddressPool, in force or not, by name.
    pub pool_labels: BTreeMap<String, selector::Labels>,
    /// L2Advertisements by name.
    pub advertisements: Vec<(String, L2AdvertisementSpec)>,
}

/// A LoadBalancer Service Herald handles, with the addresses in its status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadBalancer {
    /// `namespace/name`.
    pub key: String,
    pub labels: selector::Labels,
    /// In the order of its status: the first decides the owner.
    pub addresses: Vec<IpAddr>,
    /// The pool the controller gave them from (`metallb.io/ip-allocated-from-pool`).
    pub pool: Option<String>,
    pub traffic: candidates::Traffic,
}

/// One Service address, the node that announces it, and the node that would were the owner
/// gone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assignment {
    pub service: String,
    pub address: IpAddr,
    pub owner: String,
    pub heir: Option<String>,
    pub interfaces: Interfaces,
}

/// The owner of every Service address that some L2Advertisement covers, among the `live`
/// speakers. Per Service, as MetalLB decides: the pool of its addresses, the advertisements that
/// cover that pool and select the Service, their candidates, and the sha256 order of the first
/// address; its other addresses go to the same node. Services that share an address
/// (`allow-shared-ip`) are elected together, so that the address has one owner whatever their
/// families: from the smallest address they share, among the nodes that are candidates for each
/// of them. Services outside every pool, not advertised, or without a candidate have no owner
/// (and are not in the result): nobody announces them.
pub fn assign(snapshot: &Snapshot, live: &BTreeSet<String>) -> Vec<Assignment> {
    let considered: Vec<Considered> =
        snapshot.services.iter().filter_map(|svc| consider(snapshot, svc, live)).collect();
    let mut out = Vec::new();
    for group in sharing(&considered) {
        let members: Vec<&Considered> = group.members.iter().map(|i| &considered[*i]).collect();
        // Candidates of every member, their preferences summed.
        let mut scored: BTreeMap<&str, i64> = members[0].scored.clone();
        for m in &members[1..] {
            scored.retain(|node, _| m.scored.contains_key(node));
            for (node, score) in scored.iter_mut() {
                *score += m.scored[node];
            }
        }
        let Some((owner, heir)) = election::succession_preferring(group.key, scored) else { continue };
        for m in members {
            out.extend(assignments(snapshot, m, owner, heir));
        }
    }
    out
}

/// A Service with its advertisements and scored candidates: what its election needs.
struct Considered<'a> {
    svc: &'a LoadBalancer,
    ads: Vec<&'a L2AdvertisementSpec>,
    scored: BTreeMap<&'a str, i64>,
}

/// `svc`'s pool, advertisements and candidates; `None` when it has no address, no pool, or no
/// advertisement covers it.
fn consider<'a>(
    snapshot: &'a Snapshot,
    svc: &'a LoadBalancer,
    live: &BTreeSet<String>,
) -> Option<Considered<'a>> {
    static NO_LABELS: selector::Labels = selector::Labels::new();
    let &first = svc.addresses.first()?;
    // The pool the controller names, in force or not: a stranded address keeps the pool that
    // gave it, and every speaker reads the same name whatever it knows of the pools' history.
    // Without the name, MetalLB's rule: the pool (in force) that holds the first address.
    let (pool, pool_labels) = match &svc.pool {
        Some(name) => (name.as_str(), snapshot.pool_labels.get(name).unwrap_or(&NO_LABELS)),
        None => snapshot.pools.iter().find(|(p, _)| p.contains(first)).map(|(p, l)| (p.name.as_str(), l))?,
    };
    let ads: Vec<&L2AdvertisementSpec> = snapshot
        .advertisements
        .iter()
        .map(|(_, ad)| ad)
        .filter(|ad| covers_pool(ad, pool, pool_labels) && any_or_empty(&ad.service_selectors, &svc.labels))
        .collect();
    if ads.is_empty() {
        return None;
    }
    let selects =
        |node: &candidates::Node| ads.iter().any(|ad| any_or_empty(&ad.node_selectors, &node.labels));
    let candidates = candidates::candidates(&svc.traffic, &snapshot.nodes, live, selects);
    let scored = candidates.into_iter().map(|name| (name, preference(&ads, snapshot.node(name)))).collect();
    Some(Considered { svc, ads, scored })
}

/// Services elected together, and the address they are elected from.
struct Group {
    key: IpAddr,
    members: Vec<usize>,
}

/// The Services of `considered` (by index) grouped by the addresses they share: a Service alone
/// is elected from its first address (MetalLB's rule), a group from the smallest address two of
/// its members share.
fn sharing(considered: &[Considered]) -> Vec<Group> {
    let mut holders: BTreeMap<IpAddr, Vec<usize>> = BTreeMap::new();
    for (i, c) in considered.iter().enumerate() {
        for address in &c.svc.addresses {
            holders.entry(*address).or_default().push(i);
        }
    }
    holders.retain(|_, list| list.len() > 1);
    // Union-find over the Services, joined by every shared address.
    let mut parent: Vec<usize> = (0..considered.len()).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    for list in holders.values() {
        for &i in &list[1..] {
            let (a, b) = (root(&mut parent, list[0]), root(&mut parent, i));
            parent[b] = a;
        }
    }
    let mut groups: BTreeMap<usize, Group> = BTreeMap::new();
    for (i, c) in considered.iter().enumerate() {
        let key = c.svc.addresses[0];
        groups
            .entry(root(&mut parent, i))
            .or_insert_with(|| Group { key, members: Vec::new() })
            .members
            .push(i);
    }
    // In address order: a group's first shared address is its smallest.
    let mut keyed = BTreeSet::new();
    for (address, list) in &holders {
        let r = root(&mut parent, list[0]);
        if keyed.insert(r) {
            groups.get_mut(&r).expect("every Service is in a group").key = *address;
        }
    }
    groups.into_values().collect()
}

/// The assignments of `c`'s advertised addresses to `owner`, on the interfaces its
/// advertisements name on the owner.
fn assignments(snapshot: &Snapshot, c: &Considered, owner: &str, heir: Option<&str>) -> Vec<Assignment> {
    let Some(owner_node) = snapshot.node(owner) else { return Vec::new() };
    let on_owner = c.ads.iter().filter(|ad| any_or_empty(&ad.node_selectors, &owner_node.labels));
    let interfaces = on_owner.fold(Interfaces::Named(BTreeSet::new()), |acc, ad| match acc {
        Interfaces::Named(mut names) if !ad.interfaces.is_empty() => {
            names.extend(ad.interfaces.iter().cloned());
            Interfaces::Named(names)
        }
        _ => Interfaces::Subnet,
    });
    // A named pool gave all of them; otherwise each is in a pool the advertisements cover.
    let advertised = |address: IpAddr| {
        c.svc.pool.is_some()
            || snapshot.pools.iter().any(|(p, labels)| {
                p.contains(address) && c.ads.iter().any(|ad| covers_pool(ad, &p.name, labels))
            })
    };
    c.svc
        .addresses
        .iter()
        .filter(|a| advertised(**a))
        .map(|&address| Assignment {
            service: c.svc.key.clone(),
            address,
            owner: owner.to_owned(),
            heir: heir.map(str::to_owned),
            interfaces: interfaces.clone(),
        })
        .collect()
}

/// A node's score from the advertisements' `preferredNodeSelectors`, as MetalLB sums it: each
/// advertisement adds the weights of its preferences that match the node, if its own
/// `nodeSelectors` select the node.
fn preference(ads: &[&L2AdvertisementSpec], node: Option<&candidates::Node>) -> i64 {
    let Some(node) = node else { return 0 };
    ads.iter()
        .filter(|ad| any_or_empty(&ad.node_selectors, &node.labels))
        .flat_map(|ad| &ad.preferred_node_selectors)
        .filter(|p| selector::matches(&p.preference, &node.labels))
        .map(|p| i64::from(p.weight))
        .sum()
}

impl Snapshot {
    fn node(&self, name: &str) -> Option<&candidates::Node> {
        self.nodes.iter().find(|n| n.name == name)
    }
}

/// The assignments `node` owns, by Service.
pub fn owned_by<'a>(assignments: &'a [Assignment], node: &str) -> BTreeMap<&'a str, Vec<&'a Assignment>> {
    let mut out: BTreeMap<&str, Vec<&Assignment>> = BTreeMap::new();
    for a in assignments.iter().filter(|a| a.owner == node) {
        out.entry(a.service.as_str()).or_default().push(a);
    }
    out
}

/// Whether an L2Advertisement covers a pool: by name, by label selector, or (naming and
/// selecting none) every pool.
fn covers_pool(ad: &L2AdvertisementSpec, pool: &str, labels: &selector::Labels) -> bool {
    if ad.ip_address_pools.is_empty() && ad.ip_address_pool_selectors.is_empty() {
        return true;
    }
    ad.ip_address_pools.iter().any(|p| p == pool)
        || ad.ip_address_pool_selectors.iter().any(|s| selector::matches(s, labels))
}

/// MetalLB's selector lists: any one matching is enough; an empty list matches everything.
fn any_or_empty(selectors: &[LabelSelector], labels: &selector::Labels) -> bool {
    selectors.is_empty() || selectors.iter().any(|s| selector::matches(s, labels))
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
