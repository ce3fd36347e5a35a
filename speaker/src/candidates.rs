//! Which nodes may announce a Service's address in Kubernetes mode: MetalLB's rules, over plain
//! data, so that a cluster behaves as it did under MetalLB. The Kubernetes mode
//! ([`crate::kubernetes`]) reads Nodes, endpoints and L2Advertisements into these types; the
//! winner among the candidates is then [`crate::election::owner`]'s.

use std::collections::{BTreeMap, BTreeSet};

/// The label that keeps a node out of every load balancer.
pub const EXCLUDE_LABEL: &str = "node.kubernetes.io/exclude-from-external-load-balancers";

/// A node, as the candidate rules see it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Its NetworkUnavailable condition is True.
    pub network_unavailable: bool,
}

/// How a Service takes traffic, as the candidate rules see it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// externalTrafficPolicy: Local.
    pub local_traffic: bool,
    /// Nodes with at least one ready (or serving) endpoint of the Service.
    pub ready_endpoint_nodes: BTreeSet<String>,
    /// Some ready endpoint has no node: a selector-less Service's hand-written endpoints (an
    /// external database, say). Enough for the Cluster policy, as in MetalLB.
    pub ready_off_node: bool,
}

/// The nodes that may announce `svc`: live speakers' nodes that an L2Advertisement selects
/// (`selected`), that carry no exclusion label and have their network, and, with
/// externalTrafficPolicy Local, that hold a ready endpoint. No ready endpoint at all (on a node
/// or off the nodes): nobody.
pub fn candidates<'a>(
    svc: &Traffic,
    nodes: &'a [Node],
    live: &BTreeSet<String>,
    selected: impl Fn(&Node) -> bool,
) -> Vec<&'a str> {
    if svc.ready_endpoint_nodes.is_empty() && !svc.ready_off_node {
        return Vec::new();
    }
    eligible(nodes, live, selected)
        .filter(|n| !svc.local_traffic || svc.ready_endpoint_nodes.contains(&n.name))
        .map(|n| n.name.as_str())
        .collect()
}

/// The nodes that may announce a Service whatever its endpoints: live, selected, without the
/// exclusion label, with their network.
pub fn eligible<'a>(
    nodes: &'a [Node],
    live: &BTreeSet<String>,
    selected: impl Fn(&Node) -> bool,
) -> impl Iterator<Item = &'a Node> {
    nodes
        .iter()
        .filter(move |n| live.contains(&n.name))
        .filter(move |n| selected(n))
        .filter(|n| !n.labels.contains_key(EXCLUDE_LABEL))
        .filter(|n| !n.network_unavailable)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::election::owner;

    fn node(name: &str) -> Node {
        Node { name: name.into(), ..Default::default() }
    }

    fn names(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|n| n.to_string()).collect()
    }

    /// One row: the situation, and the announcer MetalLB's rules give for 192.0.2.10
    /// (sha256 order there: node-c, node-b, node-a; see election_tests.rs).
    struct Case {
        what: &'static str,
        live: &'static [&'static str],
        local: bool,
        endpoints: &'static [&'static str],
        excluded: &'static [&'static str],
        unavailable: &'static [&'static str],
        unselected: &'static [&'static str],
        announcer: Option<&'static str>,
    }

    const ALL: &[&str] = &["node-a", "node-b", "node-c"];
    /// In `endpoints`: a ready endpoint without a nodeName.
    const OFF_NODE: &str = "(no node)";

    const CASES: &[Case] = &[
        Case {
            what: "all live, endpoint anywhere",
            live: ALL,
            local: false,
            endpoints: &["node-a"],
            excluded: &[],
            unavailable: &[],
            unselected: &[],
            announcer: Some("node-c"),
        },
        Case {
            what: "no ready endpoint",
            live: ALL,
            local: false,
            endpoints: &[],
            excluded: &[],
            unavailable: &[],
            unselected: &[],
            announcer: None,
        },
        Case {
            what: "Local: only nodes with an endpoint",
            live: ALL,
            local: true,
            endpoints: &["node-a", "node-b"],
            excluded: &[],
            unavailable: &[],
            unselected: &[],
            announcer: Some("node-b"),
        },
        Case {
            what: "Local: the endpoint's node is down",
            live: &["node-b", "node-c"],
            local: true,
            endpoints: &["node-a"],
            excluded: &[],
            unavailable: &[],
            unselected: &[],
            announcer: None,
        },
        Case {
            what: "exclusion label",
            live: ALL,
            local: false,
            endpoints: &["node-a"],
            excluded: &["node-c"],
            unavailable: &[],
            unselected: &[],
            announcer: Some("node-b"),
        },
        Case {
            what: "NetworkUnavailable",
            live: ALL,
            local: false,
            endpoints: &["node-a"],
            excluded: &[],
            unavailable: &["node-c", "node-b"],
            unselected: &[],
            announcer: Some("node-a"),
        },
        Case {
            what: "nodeSelectors leave node-c out",
            live: ALL,
            local: false,
            endpoints: &["node-c"],
            excluded: &[],
            unavailable: &[],
            unselected: &["node-c"],
            announcer: Some("node-b"),
        },
        Case {
            what: "owner's speaker gone",
            live: &["node-a", "node-b"],
            local: false,
            endpoints: &["node-c"],
            excluded: &[],
            unavailable: &[],
            unselected: &[],
            announcer: Some("node-b"),
        },
        Case {
            what: "selector-less, endpoints off the nodes (MetalLB: any serving endpoint)",
            live: ALL,
            local: false,
            endpoints: &[OFF_NODE],
            excluded: &[],
            unavailable: &[],
            unselected: &[],
            announcer: Some("node-c"),
        },
        Case {
            what: "Local, endpoints off the nodes: no node has one",
            live: ALL,
            local: true,
            endpoints: &[OFF_NODE],
            excluded: &[],
            unavailable: &[],
            unselected: &[],
            announcer: None,
        },
        Case {
            what: "nobody selected",
            live: ALL,
            local: false,
            endpoints: &["node-a"],
            excluded: &[],
            unavailable: &[],
            unselected: ALL,
            announcer: None,
        },
    ];

    #[test]
    fn picks_what_metallb_picks() {
        let address = Ipv4Addr::new(192, 0, 2, 10);
        for case in CASES {
            let nodes: Vec<Node> = ALL
                .iter()
                .map(|n| {
                    let mut node = node(n);
                    if case.excluded.contains(n) {
                        node.labels.insert(EXCLUDE_LABEL.into(), String::new());
                    }
                    node.network_unavailable = case.unavailable.contains(n);
                    node
                })
                .collect();
            let on_nodes: Vec<&str> = case.endpoints.iter().copied().filter(|e| *e != OFF_NODE).collect();
            let svc = Traffic {
                local_traffic: case.local,
                ready_endpoint_nodes: names(&on_nodes),
                ready_off_node: case.endpoints.contains(&OFF_NODE),
            };
            let chosen =
                candidates(&svc, &nodes, &names(case.live), |n| !case.unselected.contains(&n.name.as_str()));
            assert_eq!(owner(address, chosen), case.announcer, "{}", case.what);
        }
    }
}
