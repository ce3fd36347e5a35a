//! Kubernetes mode's decisions, over plain data: which node announces each Service (MetalLB's
//! rules: pools an L2Advertisement covers, its node and service selectors, the candidate rules
//! of [`crate::candidates`], then the sha256 order of the Service's first address), and on
//! which interfaces. As in MetalLB, all of a Service's addresses go to one node: a dual-stack
//! Service is answered on both families by the same node.

mod classes;
pub mod explain;
mod orders;
#[cfg(any(test, feature = "reference"))]
pub mod reference;
#[cfg(any(test, feature = "reference"))]
pub mod synthetic;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    net::IpAddr,
};

use herald_kube::{crd::L2AdvertisementSpec, pool::Pool, selector};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use self::{
    classes::{Candidates, Classes},
    orders::Orders,
};
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
///
/// A [`Decider`] that remembers nothing: for one pass.
pub fn assign(snapshot: &Snapshot, live: &BTreeSet<String>) -> Vec<Assignment> {
    Decider::default().assign(snapshot, live)
}

/// Decides pass after pass, keeping the election orders between them ([`orders`]): a pass then
/// costs about one lookup per Service and advertisement set, plus one rank per Service for
/// each node that came since the last.
#[derive(Debug)]
pub struct Decider {
    orders: Orders,
    /// How many ranks a pass may spend on addresses new to it ([`Decider::paced`]).
    budget: usize,
    /// The Services that had an owner in the last pass: never deferred.
    owned: HashSet<String>,
    /// The last pass left Services new to it undecided.
    pending: bool,
}

impl Default for Decider {
    fn default() -> Self {
        Self { orders: Orders::default(), budget: usize::MAX, owned: HashSet::new(), pending: false }
    }
}

/// The ranks a paced pass spends on addresses new to it: about 150 ms of sha256 here, well
/// inside the 1 s a run loop may stall before the fence silences the node.
pub const NEW_RANKS_PER_PASS: usize = 1_000_000;

/// A Service new to the Decider whose election waits for a later pass.
struct Deferred;

/// At most this many candidates (of one score) are ranked directly: cheaper than the kept
/// orders, which fall back to ranking when few of the first nodes are candidates.
const RANKED_DIRECTLY: usize = 16;

impl Decider {
    /// A Decider whose passes rank at most [`NEW_RANKS_PER_PASS`] for addresses new to it (and
    /// at least one such address): at start, or when thousands of Services come at once, a
    /// thousand nodes' orders take seconds to rank, and a pass that long would silence the node.
    /// Services new to it past that wait for the next pass ([`Decider::pending`]); a Service that
    /// had an owner in the last pass never waits.
    pub fn paced() -> Self {
        Self { budget: NEW_RANKS_PER_PASS, ..Self::default() }
    }

    /// The last pass left Services new to it undecided: run another soon.
    pub fn pending(&self) -> bool {
        self.pending
    }

    /// [`assign`], reusing what earlier passes ranked; paced, it may leave out Services new to
    /// it (see [`Decider::paced`]).
    pub fn assign(&mut self, snapshot: &Snapshot, live: &BTreeSet<String>) -> Vec<Assignment> {
        self.orders.begin(&snapshot.nodes);
        let (mut owned, mut fresh) = (HashSet::new(), 0);
        self.pending = false;
        let nodes: HashMap<&str, &candidates::Node> =
            snapshot.nodes.iter().map(|n| (n.name.as_str(), n)).collect();
        let mut classes = Classes::new(snapshot, live);
        let considered: Vec<(&LoadBalancer, Vec<usize>)> =
            snapshot.services.iter().filter_map(|svc| Some((svc, covering(snapshot, svc)?))).collect();
        let mut out = Vec::new();
        let services: Vec<&LoadBalancer> = considered.iter().map(|(svc, _)| *svc).collect();
        for group in sharing(&services) {
            let members: Vec<(&LoadBalancer, &[usize])> =
                group.members.iter().map(|&i| (considered[i].0, considered[i].1.as_slice())).collect();
            let Ok(elected) = self.elect(group.key, &members, &mut classes, &mut fresh) else {
                self.pending = true;
                continue;
            };
            let Some((owner, heir)) = elected else { continue };
            let (owner, heir) = (self.orders.name(owner), heir.map(|h| self.orders.name(h)));
            owned.extend(members.iter().map(|(svc, _)| svc.key.clone()));
            for (svc, ads) in members {
                let ads: Vec<&L2AdvertisementSpec> =
                    ads.iter().map(|&i| &snapshot.advertisements[i].1).collect();
                let owner_node = nodes.get(owner).copied();
                out.extend(assignments(snapshot, svc, &ads, owner_node, owner, heir));
            }
        }
        self.orders.end();
        self.owned = owned;
        out
    }

    /// About how many bytes it keeps between passes.
    pub fn footprint(&self) -> usize {
        self.orders.footprint()
    }

    /// The owner and heir of a group's `key` address: among its one Service's candidates, or
    /// those every member of the group has, their preferences summed. `fresh`: the ranks this
    /// pass spent on addresses new to it so far.
    fn elect(
        &mut self,
        key: IpAddr,
        members: &[(&LoadBalancer, &[usize])],
        classes: &mut Classes,
        fresh: &mut usize,
    ) -> Result<Option<(u32, Option<u32>)>, Deferred> {
        let orders = &mut self.orders;
        orders.keep(key);
        let candidates = match members {
            [(svc, ads)] => classes.class(ads, orders).for_service(&svc.traffic, orders),
            _ => Candidates::Joint(joint(members, classes, orders)),
        };
        let count = candidates.count();
        if count == 0 {
            return Ok(None);
        }
        if count <= RANKED_DIRECTLY {
            return Ok(ranked(orders, key, candidates.scored()));
        }
        let new = !orders.has(key);
        if new
            && *fresh > 0
            && *fresh >= self.budget
            && !members.iter().any(|(svc, _)| self.owned.contains(&svc.key))
        {
            return Err(Deferred);
        }
        let before = orders.ranks();
        let found = from_kept(orders, key, &candidates);
        if new {
            *fresh += (orders.ranks() - before).max(1);
        }
        Ok(found.or_else(|| ranked(orders, key, candidates.scored())))
    }
}

/// The candidates every one of `members` has, their scores summed, in number order.
fn joint(members: &[(&LoadBalancer, &[usize])], classes: &mut Classes, orders: &Orders) -> Vec<(u32, i64)> {
    let mut scored: Option<Vec<(u32, i64)>> = None;
    for (svc, ads) in members {
        let mine = classes.class(ads, orders).for_service(&svc.traffic, orders).scored();
        scored = Some(match scored {
            None => mine,
            // Both in number order: one walk.
            Some(all) => {
                let mut theirs = mine.into_iter().peekable();
                all.into_iter()
                    .filter_map(|(id, score)| {
                        while theirs.next_if(|&(other, _)| other < id).is_some() {}
                        theirs.next_if(|&(other, _)| other == id).map(|(_, more)| (id, score + more))
                    })
                    .collect()
            }
        });
    }
    scored.unwrap_or_default()
}

/// The owner and heir by score tiers: the first two of the highest score, or the first of the
/// highest and of the next. A tier of a few is ranked directly, a larger one read from `key`'s
/// kept order; `None` when that order does not decide it.
fn from_kept(orders: &mut Orders, key: IpAddr, candidates: &Candidates) -> Option<(u32, Option<u32>)> {
    let tiers = candidates.tiers();
    let &(top, in_top) = tiers.first()?;
    let (owner, second) = leaders(orders, key, candidates, top, in_top)?;
    let heir = match tiers.get(1) {
        _ if in_top > 1 => second,
        Some(&(next, in_next)) => Some(leaders(orders, key, candidates, next, in_next)?.0),
        None => None,
    };
    Some((owner, heir))
}

/// The first two candidates scoring `score` (`count` of them, at least one).
fn leaders(
    orders: &mut Orders,
    key: IpAddr,
    candidates: &Candidates,
    score: i64,
    count: usize,
) -> Option<(u32, Option<u32>)> {
    if count <= RANKED_DIRECTLY {
        let tier = candidates.scored().into_iter().filter(|&(_, s)| s == score).collect();
        return ranked(orders, key, tier);
    }
    match orders.leading(key, |id| candidates.contains(id) && candidates.score(id) == score)? {
        [Some(first), second @ Some(_)] => Some((first, second)),
        _ => None,
    }
}

/// The owner and heir among `scored` candidates, each ranked.
fn ranked(orders: &Orders, key: IpAddr, scored: Vec<(u32, i64)>) -> Option<(u32, Option<u32>)> {
    let named = scored.into_iter().map(|(id, score)| (orders.name(id), score));
    let (owner, heir) = election::succession_preferring(key, named)?;
    let id = |name| orders.id(name).expect("a numbered node");
    Some((id(owner), heir.map(id)))
}

/// The advertisements (by number in `snapshot.advertisements`) that cover `svc`'s pool and
/// select it; `None` when it has no address, no pool, or no advertisement covers it.
fn covering(snapshot: &Snapshot, svc: &LoadBalancer) -> Option<Vec<usize>> {
    static NO_LABELS: selector::Labels = selector::Labels::new();
    let &first = svc.addresses.first()?;
    // The pool the controller names, in force or not: a stranded address keeps the pool that
    // gave it, and every speaker reads the same name whatever it knows of the pools' history.
    // Without the name, MetalLB's rule: the pool (in force) that holds the first address.
    let (pool, pool_labels) = match &svc.pool {
        Some(name) => (name.as_str(), snapshot.pool_labels.get(name).unwrap_or(&NO_LABELS)),
        None => snapshot.pools.iter().find(|(p, _)| p.contains(first)).map(|(p, l)| (p.name.as_str(), l))?,
    };
    let ads: Vec<usize> = snapshot
        .advertisements
        .iter()
        .enumerate()
        .filter(|(_, (_, ad))| {
            covers_pool(ad, pool, pool_labels) && any_or_empty(&ad.service_selectors, &svc.labels)
        })
        .map(|(i, _)| i)
        .collect();
    (!ads.is_empty()).then_some(ads)
}

/// Services elected together, and the address they are elected from.
struct Group {
    key: IpAddr,
    members: Vec<usize>,
}

/// The Services of `considered` (by index) grouped by the addresses they share: a Service alone
/// is elected from its first address (MetalLB's rule), a group from the smallest address two of
/// its members share.
fn sharing(services: &[&LoadBalancer]) -> Vec<Group> {
    let mut holders: BTreeMap<IpAddr, Vec<usize>> = BTreeMap::new();
    for (i, svc) in services.iter().enumerate() {
        for address in &svc.addresses {
            holders.entry(*address).or_default().push(i);
        }
    }
    holders.retain(|_, list| list.len() > 1);
    // Union-find over the Services, joined by every shared address.
    let mut parent: Vec<usize> = (0..services.len()).collect();
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
    for (i, svc) in services.iter().enumerate() {
        let key = svc.addresses[0];
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

/// The assignments of `svc`'s addresses that `ads` advertise to `owner`, on the interfaces
/// they name on the owner.
fn assignments(
    snapshot: &Snapshot,
    svc: &LoadBalancer,
    ads: &[&L2AdvertisementSpec],
    owner_node: Option<&candidates::Node>,
    owner: &str,
    heir: Option<&str>,
) -> Vec<Assignment> {
    let Some(owner_node) = owner_node else { return Vec::new() };
    let on_owner = ads.iter().filter(|ad| any_or_empty(&ad.node_selectors, &owner_node.labels));
    let interfaces = on_owner.fold(Interfaces::Named(BTreeSet::new()), |acc, ad| match acc {
        Interfaces::Named(mut names) if !ad.interfaces.is_empty() => {
            names.extend(ad.interfaces.iter().cloned());
            Interfaces::Named(names)
        }
        _ => Interfaces::Subnet,
    });
    // A named pool gave all of them; otherwise each is in a pool the advertisements cover.
    let advertised = |address: IpAddr| {
        svc.pool.is_some()
            || snapshot.pools.iter().any(|(p, labels)| {
                p.contains(address) && ads.iter().any(|ad| covers_pool(ad, &p.name, labels))
            })
    };
    svc.addresses
        .iter()
        .filter(|a| advertised(**a))
        .map(|&address| Assignment {
            service: svc.key.clone(),
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
mod tests;
