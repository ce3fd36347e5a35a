//! Clusters made up from a seed, for the tests that hold the [`super::Decider`] to the rules and
//! for `cargo xtask bench decide`: nodes in zones, Services with Cluster or Local traffic, and
//! either one plain L2Advertisement (what most clusters have) or a mix of selectors,
//! preferences, interfaces and shared addresses.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, Ipv6Addr},
};

use herald_kube::{
    crd::{IPAddressPoolSpec, L2AdvertisementSpec, PreferredNodeSelector},
    pool::Pool,
    selector,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::{LoadBalancer, Snapshot};
use crate::candidates::{EXCLUDE_LABEL, Node, Traffic};

/// A small deterministic generator (xorshift64*): the same seed makes the same cluster.
pub struct Dice(u64);

impl Dice {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n.max(1)
    }

    /// True one time in `n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }
}

/// What the made-up cluster holds.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub nodes: usize,
    pub services: usize,
    /// Selectors, preferences, interfaces, exclusions, Local traffic and shared addresses,
    /// rather than one plain advertisement and Cluster traffic for four Services in five.
    pub mixed: bool,
}

/// The `i`th Service address: IPv6 documentation addresses, as many as wanted.
pub fn address(i: usize) -> IpAddr {
    let i = u32::try_from(i).expect("fewer than 2^32 Services");
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, (i >> 16) as u16, i as u16))
}

pub fn node_name(i: usize) -> String {
    format!("node-{i:04}")
}

/// A cluster of `shape`, drawn with `dice`.
pub fn cluster(shape: Shape, dice: &mut Dice) -> Snapshot {
    let nodes = (0..shape.nodes).map(|i| node(i, shape.mixed, dice)).collect();
    let spec = IPAddressPoolSpec { addresses: vec!["2001:db8::/96".into()], ..Default::default() };
    let pool = Pool::from_spec("lan", &spec).expect("a valid pool");
    let advertisements =
        if shape.mixed { mixed_advertisements() } else { vec![("plain".into(), Default::default())] };
    let mut snapshot = Snapshot {
        services: Vec::new(),
        nodes,
        pools: vec![(pool, labels(&[("tier", "lan")]))],
        pool_labels: BTreeMap::from([("lan".into(), labels(&[("tier", "lan")]))]),
        advertisements,
    };
    snapshot.services = (0..shape.services).map(|i| service(i, &snapshot, shape.mixed, dice)).collect();
    snapshot
}

fn node(i: usize, mixed: bool, dice: &mut Dice) -> Node {
    let zone = ["a", "b", "c"][i % 3];
    let mut node_labels = labels(&[("zone", zone), ("kubernetes.io/hostname", &node_name(i))]);
    if mixed && dice.one_in(10) {
        node_labels.insert(EXCLUDE_LABEL.into(), String::new());
    }
    Node { name: node_name(i), labels: node_labels, network_unavailable: mixed && dice.one_in(20) }
}

fn service(i: usize, snapshot: &Snapshot, mixed: bool, dice: &mut Dice) -> LoadBalancer {
    let local_traffic = dice.one_in(if mixed { 2 } else { 5 });
    // Local traffic: a few replicas, or (one time in four) a DaemonSet on every node.
    let replicas = if local_traffic && dice.one_in(4) { snapshot.nodes.len() } else { 1 + dice.below(3) };
    let ready_endpoint_nodes: BTreeSet<String> =
        (0..replicas).map(|_| snapshot.nodes[dice.below(snapshot.nodes.len())].name.clone()).collect();
    let mut addresses = vec![address(i)];
    if mixed && dice.one_in(6) && i > 0 {
        // allow-shared-ip: another Service's address, first or second.
        let shared = address(dice.below(i));
        if dice.one_in(2) { addresses.insert(0, shared) } else { addresses.push(shared) }
    }
    LoadBalancer {
        key: format!("default/svc-{i}"),
        labels: labels(&[("app", ["web", "db", "cache"][i % 3])]),
        addresses,
        pool: (!mixed || dice.one_in(2)).then(|| "lan".into()),
        traffic: Traffic { local_traffic, ready_endpoint_nodes, ready_off_node: mixed && dice.one_in(10) },
    }
}

fn mixed_advertisements() -> Vec<(String, L2AdvertisementSpec)> {
    let by_zone =
        |zone: &str| LabelSelector { match_labels: Some(labels(&[("zone", zone)])), ..Default::default() };
    let by_host = |host: &str| LabelSelector {
        match_labels: Some(labels(&[("kubernetes.io/hostname", host)])),
        ..Default::default()
    };
    let by_app =
        |app: &str| LabelSelector { match_labels: Some(labels(&[("app", app)])), ..Default::default() };
    vec![
        (
            "web-in-a".into(),
            L2AdvertisementSpec {
                node_selectors: vec![by_zone("a")],
                service_selectors: vec![by_app("web")],
                interfaces: vec!["eth1".into()],
                ..Default::default()
            },
        ),
        (
            "db-prefers-b".into(),
            L2AdvertisementSpec {
                service_selectors: vec![by_app("db")],
                // Zone b, and above all one node of it.
                preferred_node_selectors: vec![
                    PreferredNodeSelector { weight: 50, preference: by_zone("b") },
                    PreferredNodeSelector { weight: 80, preference: by_host(&node_name(1)) },
                ],
                ..Default::default()
            },
        ),
        (
            "cache-in-c".into(),
            L2AdvertisementSpec {
                node_selectors: vec![by_zone("c")],
                service_selectors: vec![by_app("cache")],
                ..Default::default()
            },
        ),
        (
            "web-anywhere".into(),
            L2AdvertisementSpec { service_selectors: vec![by_app("web")], ..Default::default() },
        ),
    ]
}

fn labels(pairs: &[(&str, &str)]) -> selector::Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// The names of every node of `snapshot`.
pub fn all_live(snapshot: &Snapshot) -> BTreeSet<String> {
    snapshot.nodes.iter().map(|n| n.name.clone()).collect()
}
