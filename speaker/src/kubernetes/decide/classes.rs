//! A pass's candidates, worked out once per set of advertisements rather than once per Service:
//! the live nodes those advertisements select, without the exclusion label, with their network,
//! and their preference scores. A Service's candidates are its class's nodes (Cluster policy) or
//! those of them that hold one of its ready endpoints (Local).

use std::{
    cmp::Reverse,
    collections::{BTreeMap, BTreeSet, HashMap},
};

use herald_kube::crd::L2AdvertisementSpec;

use super::{Snapshot, any_or_empty, orders::Orders, preference};
use crate::candidates::{self, Node, Traffic};

/// The candidates of every set of advertisements a pass meets, numbered as [`Orders`] numbers
/// nodes.
pub struct Classes<'a> {
    snapshot: &'a Snapshot,
    live: &'a BTreeSet<String>,
    by_ads: HashMap<Vec<usize>, Class>,
}

/// The nodes a set of advertisements makes candidates.
pub struct Class {
    members: Bits,
    count: usize,
    /// Each member's preference score, when some advertisement of the set prefers nodes.
    scores: Option<HashMap<u32, i64>>,
    /// The members' scores, highest first, and how many members have each.
    tiers: Vec<(i64, usize)>,
}

/// One Service's candidates.
pub enum Candidates<'c> {
    /// All of its class's (Cluster policy).
    Class(&'c Class),
    /// Some of them, sorted (Local policy).
    Few(&'c Class, Vec<u32>),
    /// Those every Service of a group has, with their scores summed (shared addresses),
    /// sorted.
    Joint(Vec<(u32, i64)>),
}

impl<'a> Classes<'a> {
    pub fn new(snapshot: &'a Snapshot, live: &'a BTreeSet<String>) -> Self {
        Self { snapshot, live, by_ads: HashMap::new() }
    }

    /// The class of the advertisements numbered `ads` (in `snapshot.advertisements`).
    pub fn class(&mut self, ads: &[usize], orders: &Orders) -> &Class {
        let (snapshot, live) = (self.snapshot, self.live);
        self.by_ads.entry(ads.to_vec()).or_insert_with(|| Class::new(snapshot, live, ads, orders))
    }
}

impl Class {
    fn new(snapshot: &Snapshot, live: &BTreeSet<String>, ads: &[usize], orders: &Orders) -> Self {
        let ads: Vec<&L2AdvertisementSpec> = ads.iter().map(|&i| &snapshot.advertisements[i].1).collect();
        let selects = |node: &Node| ads.iter().any(|ad| any_or_empty(&ad.node_selectors, &node.labels));
        let prefers = ads.iter().any(|ad| !ad.preferred_node_selectors.is_empty());
        let mut members = Bits::new(orders.len());
        let mut scores = prefers.then(HashMap::new);
        let mut count = 0;
        for node in candidates::eligible(&snapshot.nodes, live, selects) {
            let id = orders.id(&node.name).expect("Orders::begin numbered every node");
            if members.insert(id) {
                count += 1;
                if let Some(scores) = &mut scores {
                    scores.insert(id, preference(&ads, Some(node)));
                }
            }
        }
        let tiers = match &scores {
            Some(scores) => tiers(scores.values().copied()),
            None => vec![(0, count)],
        };
        Self { members, count, scores, tiers }
    }

    fn score(&self, id: u32) -> i64 {
        self.scores.as_ref().and_then(|s| s.get(&id)).copied().unwrap_or(0)
    }

    /// A Service's candidates among the class: none without a ready endpoint, as MetalLB does.
    pub fn for_service<'c>(&'c self, traffic: &Traffic, orders: &Orders) -> Candidates<'c> {
        if traffic.ready_endpoint_nodes.is_empty() && !traffic.ready_off_node {
            return Candidates::Few(self, Vec::new());
        }
        if !traffic.local_traffic {
            return Candidates::Class(self);
        }
        let mut ids: Vec<u32> = traffic
            .ready_endpoint_nodes
            .iter()
            .filter_map(|name| orders.id(name))
            .filter(|&id| self.members.contains(id))
            .collect();
        ids.sort_unstable();
        Candidates::Few(self, ids)
    }
}

impl Candidates<'_> {
    pub fn count(&self) -> usize {
        match self {
            Self::Class(class) => class.count,
            Self::Few(_, ids) => ids.len(),
            Self::Joint(scored) => scored.len(),
        }
    }

    pub fn contains(&self, id: u32) -> bool {
        match self {
            Self::Class(class) => class.members.contains(id),
            Self::Few(_, ids) => ids.binary_search(&id).is_ok(),
            Self::Joint(scored) => scored.binary_search_by_key(&id, |&(id, _)| id).is_ok(),
        }
    }

    pub fn score(&self, id: u32) -> i64 {
        match self {
            Self::Class(class) | Self::Few(class, _) => class.score(id),
            Self::Joint(scored) => {
                scored.binary_search_by_key(&id, |&(id, _)| id).map_or(0, |at| scored[at].1)
            }
        }
    }

    /// The candidates' scores, highest first, and how many candidates have each.
    pub fn tiers(&self) -> Vec<(i64, usize)> {
        match self {
            Self::Class(class) => class.tiers.clone(),
            Self::Few(class, ids) if class.scores.is_none() => vec![(0, ids.len())],
            Self::Few(class, ids) => tiers(ids.iter().map(|&id| class.score(id))),
            Self::Joint(scored) => tiers(scored.iter().map(|&(_, score)| score)),
        }
    }

    /// Every candidate, with its score, in number order.
    pub fn scored(&self) -> Vec<(u32, i64)> {
        match self {
            Self::Class(class) => class.members.iter().map(|id| (id, class.score(id))).collect(),
            Self::Few(class, ids) => ids.iter().map(|&id| (id, class.score(id))).collect(),
            Self::Joint(scored) => scored.clone(),
        }
    }
}

/// Each score among `scores`, highest first, and how many times it comes.
fn tiers(scores: impl Iterator<Item = i64>) -> Vec<(i64, usize)> {
    let mut counts: BTreeMap<Reverse<i64>, usize> = BTreeMap::new();
    for score in scores {
        *counts.entry(Reverse(score)).or_default() += 1;
    }
    counts.into_iter().map(|(Reverse(score), n)| (score, n)).collect()
}

/// A set of node numbers.
struct Bits(Vec<u64>);

impl Bits {
    fn new(len: usize) -> Self {
        Self(vec![0; len.div_ceil(64)])
    }

    /// Adds `id`; false if it was in.
    fn insert(&mut self, id: u32) -> bool {
        let (word, bit) = (id as usize / 64, 1u64 << (id % 64));
        let fresh = self.0[word] & bit == 0;
        self.0[word] |= bit;
        fresh
    }

    fn contains(&self, id: u32) -> bool {
        self.0.get(id as usize / 64).is_some_and(|w| w & (1 << (id % 64)) != 0)
    }

    fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().enumerate().flat_map(|(i, &word)| {
            (0..64).filter(move |b| word & (1 << b) != 0).map(move |b| (i * 64 + b) as u32)
        })
    }
}
