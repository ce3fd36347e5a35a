use std::net::Ipv4Addr;

use herald_kube::crd::IPAddressPoolSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::*;
use crate::kubernetes::decide::LoadBalancer;

/// sha256 order for this address: node-c, node-b, node-a (see election_tests.rs).
const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const ALL: [&str; 3] = ["node-a", "node-b", "node-c"];

fn labels(pairs: &[(&str, &str)]) -> selector::Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn cluster() -> Snapshot {
    let spec = IPAddressPoolSpec { addresses: vec!["192.0.2.0/28".into()], ..Default::default() };
    let pool = herald_kube::pool::Pool::from_spec("lan", &spec).unwrap();
    Snapshot {
        services: vec![LoadBalancer {
            key: "default/web".into(),
            labels: labels(&[("app", "web")]),
            addresses: vec![VIP.into()],
            pool: Some("lan".into()),
            traffic: candidates::Traffic {
                ready_endpoint_nodes: ["node-a".to_string()].into(),
                ..Default::default()
            },
        }],
        nodes: ALL
            .iter()
            .map(|n| candidates::Node {
                name: n.to_string(),
                labels: labels(&[("kubernetes.io/hostname", n)]),
                network_unavailable: false,
            })
            .collect(),
        pools: vec![(pool, selector::Labels::new())],
        pool_labels: [("lan".to_string(), selector::Labels::new())].into(),
        advertisements: vec![("lan".into(), L2AdvertisementSpec::default())],
    }
}

fn live() -> BTreeSet<String> {
    ALL.iter().map(|n| n.to_string()).collect()
}

fn by_address(s: &Snapshot, live: &BTreeSet<String>) -> (Vec<Link>, Option<Outcome>) {
    explain(s, live, &Query::Address(VIP.into()))
}

/// The first broken link, and its text.
fn cause(links: &[Link]) -> (&'static str, String) {
    let broken = links.iter().find(|l| !l.holds).expect("a broken link");
    (broken.what, broken.lines.join("\n"))
}

#[test]
fn a_healthy_chain_ends_in_the_owner_the_decisions_give() {
    let s = cluster();
    let (links, outcome) = by_address(&s, &live());
    assert!(links.iter().all(|l| l.holds), "{}", render(&links));
    let outcome = outcome.unwrap();
    let decided = assign(&s, &live());
    assert_eq!((outcome.owner.as_str(), outcome.heir.as_deref()), ("node-c", Some("node-b")));
    assert_eq!(outcome.owner, decided[0].owner);
    let text = render(&links);
    assert!(
        text.contains("1. node-c\n") && text.contains("2. node-b\n") && text.contains("3. node-a\n"),
        "{text}"
    );
    assert!(!text.contains("cause:"), "{text}");
    // By Service, the same.
    assert_eq!(explain(&s, &live(), &Query::Service("default/web".into())).1, Some(outcome));
}

#[test]
fn each_broken_link_is_named() {
    let no_pool = {
        let mut s = cluster();
        s.services[0].pool = None;
        s.pools.clear();
        s
    };
    let nothing = {
        let mut s = cluster();
        s.services[0].addresses = vec![Ipv4Addr::new(192, 0, 2, 11).into()];
        s.pools.clear();
        s
    };
    let other_address = {
        let mut s = cluster();
        s.services[0].addresses = vec![Ipv4Addr::new(192, 0, 2, 11).into()];
        s
    };
    let no_advertisement = {
        let mut s = cluster();
        s.advertisements[0].1.ip_address_pools = vec!["elsewhere".into()];
        s
    };
    let service_left_out = {
        let mut s = cluster();
        let only_db = LabelSelector { match_labels: Some(labels(&[("app", "db")])), ..Default::default() };
        s.advertisements[0].1.service_selectors = vec![only_db];
        s
    };
    let no_endpoint = {
        let mut s = cluster();
        s.services[0].traffic.ready_endpoint_nodes.clear();
        s
    };
    let no_node_selected = {
        let mut s = cluster();
        let zone = LabelSelector { match_labels: Some(labels(&[("zone", "z")])), ..Default::default() };
        s.advertisements[0].1.node_selectors = vec![zone];
        s
    };
    let all_excluded = {
        let mut s = cluster();
        for n in &mut s.nodes {
            n.labels.insert(candidates::EXCLUDE_LABEL.into(), String::new());
        }
        s
    };
    let local_endpoint_excluded = {
        let mut s = cluster();
        s.services[0].traffic.local_traffic = true;
        s.nodes[0].labels.insert(candidates::EXCLUDE_LABEL.into(), String::new());
        s
    };
    let cases: Vec<(&str, Snapshot, &str, &str)> = vec![
        ("no pool covers it", no_pool, "pool", "no pool covers 192.0.2.10"),
        (
            "no pool covers it, no Service holds it",
            nothing,
            "service",
            "no pool covers 192.0.2.10, and no Service holds it",
        ),
        (
            "a pool covers it, no Service holds it",
            other_address,
            "service",
            "pool lan covers 192.0.2.10, but no Service holds it",
        ),
        (
            "no advertisement covers the pool",
            no_advertisement,
            "advertisements",
            "no L2Advertisement covers pool lan",
        ),
        (
            "serviceSelectors",
            service_left_out,
            "advertisements",
            "its serviceSelectors leave the Service out",
        ),
        ("no ready endpoint", no_endpoint, "endpoints", "no ready endpoint"),
        (
            "nodeSelectors select no node",
            no_node_selected,
            "candidates",
            "node-a: the nodeSelectors of L2Advertisement lan leave it out",
        ),
        (
            "every node excluded",
            all_excluded,
            "candidates",
            "node-c: labelled node.kubernetes.io/exclude-from-external-load-balancers",
        ),
        (
            "Local, the endpoint's node excluded",
            local_endpoint_excluded,
            "candidates",
            "node-a: labelled node.kubernetes.io/exclude-from-external-load-balancers",
        ),
    ];
    for (what, s, link, says) in cases {
        let (links, outcome) = by_address(&s, &live());
        assert_eq!(outcome, None, "{what}");
        let (broken, text) = cause(&links);
        assert_eq!(broken, link, "{what}: {}", render(&links));
        assert!(text.contains(says), "{what}: expected {says:?} in\n{}", render(&links));
        assert!(render(&links).contains("\ncause: "), "{what}");
        // The address is announced by nobody, as the decisions say.
        let vip: IpAddr = VIP.into();
        assert!(!assign(&s, &live()).iter().any(|a| a.address == vip), "{what}");
    }
}

#[test]
fn nodes_left_out_say_why_and_the_rest_keep_their_order() {
    let mut s = cluster();
    s.services[0].traffic.local_traffic = true;
    s.services[0].traffic.ready_endpoint_nodes = ["node-a".to_string(), "node-b".to_string()].into();
    s.nodes[1].network_unavailable = true;
    let live: BTreeSet<String> = ["node-a", "node-b"].iter().map(|n| n.to_string()).collect();
    let (links, outcome) = by_address(&s, &live);
    let text = render(&links);
    assert_eq!(outcome.unwrap().owner, "node-a", "{text}");
    assert!(text.contains("1. node-a\n"), "{text}");
    assert!(text.contains("node-b: its NetworkUnavailable condition is True"), "{text}");
    assert!(text.contains("node-c: no speaker running"), "{text}");
}

#[test]
fn a_service_without_an_address_says_so() {
    let mut s = cluster();
    s.services[0].addresses.clear();
    let (links, _) = explain(&s, &live(), &Query::Service("default/web".into()));
    assert_eq!(cause(&links).0, "address", "{}", render(&links));
    let (links, _) = explain(&s, &live(), &Query::Service("default/nope".into()));
    assert!(cause(&links).1.contains("no LoadBalancer Service default/nope"), "{}", render(&links));
}
