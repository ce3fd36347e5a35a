use herald_kube::crd::{IPAddressPoolSpec, PreferredNodeSelector};

use std::net::{Ipv4Addr, Ipv6Addr};

use super::*;

const ALL: [&str; 3] = ["node-a", "node-b", "node-c"];
/// sha256 order for this address: node-c, node-b, node-a (see election_tests.rs).
const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);

fn labels(pairs: &[(&str, &str)]) -> selector::Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn selector(pairs: &[(&str, &str)]) -> LabelSelector {
    LabelSelector { match_labels: Some(labels(pairs)), ..Default::default() }
}

fn pool(name: &str, cidr: &str, pool_labels: &[(&str, &str)]) -> (Pool, selector::Labels) {
    let spec = IPAddressPoolSpec { addresses: vec![cidr.into()], ..Default::default() };
    (Pool::from_spec(name, &spec).unwrap(), labels(pool_labels))
}

fn snapshot(ads: Vec<L2AdvertisementSpec>) -> Snapshot {
    Snapshot {
        services: vec![LoadBalancer {
            key: "default/web".into(),
            labels: labels(&[("app", "web")]),
            addresses: vec![VIP.into()],
            pool: None,
            traffic: candidates::Traffic {
                local_traffic: false,
                ready_endpoint_nodes: ["node-a".to_string()].into(),
                ready_off_node: false,
            },
        }],
        nodes: ALL
            .iter()
            .map(|n| candidates::Node {
                name: n.to_string(),
                labels: labels(&[
                    ("zone", if *n == "node-c" { "b" } else { "a" }),
                    ("kubernetes.io/hostname", n),
                ]),
                network_unavailable: false,
            })
            .collect(),
        pools: vec![pool("lan", "192.0.2.0/28", &[("tier", "lan")]), pool("other", "198.51.100.0/28", &[])],
        pool_labels: [("lan".to_string(), labels(&[("tier", "lan")])), ("other".to_string(), labels(&[]))]
            .into(),
        advertisements: ads.into_iter().enumerate().map(|(i, ad)| (format!("ad-{i}"), ad)).collect(),
    }
}

fn live() -> BTreeSet<String> {
    ALL.iter().map(|n| n.to_string()).collect()
}

fn owner_and_interfaces(s: &Snapshot) -> Option<(String, Interfaces)> {
    let a = assign(s, &live());
    assert!(a.len() <= 1, "{a:?}");
    a.into_iter().next().map(|a| (a.owner, a.interfaces))
}

fn ad() -> L2AdvertisementSpec {
    L2AdvertisementSpec::default()
}

#[test]
fn advertisements_decide_what_is_announced_and_where() {
    let named = |list: &[&str]| Interfaces::Named(list.iter().map(|n| n.to_string()).collect());
    // (what, the L2Advertisements, the owner and its interfaces)
    type Case = (&'static str, Vec<L2AdvertisementSpec>, Option<(&'static str, Interfaces)>);
    let cases: Vec<Case> = vec![
        ("no L2Advertisement: not announced", vec![], None),
        ("an empty one covers every pool", vec![ad()], Some(("node-c", Interfaces::Subnet))),
        (
            "pool by name",
            vec![L2AdvertisementSpec { ip_address_pools: vec!["lan".into()], ..ad() }],
            Some(("node-c", Interfaces::Subnet)),
        ),
        (
            "another pool by name",
            vec![L2AdvertisementSpec { ip_address_pools: vec!["other".into()], ..ad() }],
            None,
        ),
        (
            "pool by label",
            vec![L2AdvertisementSpec {
                ip_address_pool_selectors: vec![selector(&[("tier", "lan")])],
                ..ad()
            }],
            Some(("node-c", Interfaces::Subnet)),
        ),
        (
            "nodeSelectors: zone a only",
            vec![L2AdvertisementSpec { node_selectors: vec![selector(&[("zone", "a")])], ..ad() }],
            Some(("node-b", Interfaces::Subnet)),
        ),
        (
            "serviceSelectors that do not match",
            vec![L2AdvertisementSpec { service_selectors: vec![selector(&[("app", "db")])], ..ad() }],
            None,
        ),
        (
            "serviceSelectors that match",
            vec![L2AdvertisementSpec { service_selectors: vec![selector(&[("app", "web")])], ..ad() }],
            Some(("node-c", Interfaces::Subnet)),
        ),
        (
            "interfaces of every advertisement that selects the owner",
            vec![
                L2AdvertisementSpec { interfaces: vec!["eth1".into()], ..ad() },
                L2AdvertisementSpec { interfaces: vec!["eth2".into()], ..ad() },
                L2AdvertisementSpec {
                    interfaces: vec!["eth9".into()],
                    node_selectors: vec![selector(&[("zone", "a")])],
                    ..ad()
                },
            ],
            Some(("node-c", named(&["eth1", "eth2"]))),
        ),
        (
            "one advertisement without interfaces: every subnet's",
            vec![L2AdvertisementSpec { interfaces: vec!["eth1".into()], ..ad() }, ad()],
            Some(("node-c", Interfaces::Subnet)),
        ),
    ];
    for (what, ads, want) in cases {
        let got = owner_and_interfaces(&snapshot(ads));
        assert_eq!(got, want.map(|(n, i)| (n.to_string(), i)), "{what}");
    }
}

/// `preferredNodeSelectors`, as MetalLB's design has them: weights summed per node, each
/// advertisement scoring only the nodes its own `nodeSelectors` select; the highest score wins,
/// then the sha256 order (for 192.0.2.10: node-c, node-b, node-a).
#[test]
fn preferred_nodes_win_then_the_sha256_order() {
    let prefer = |pairs: &[(i32, &[(&str, &str)])]| -> Vec<PreferredNodeSelector> {
        pairs
            .iter()
            .map(|(weight, l)| PreferredNodeSelector { weight: *weight, preference: selector(l) })
            .collect()
    };
    let with = |p: Vec<PreferredNodeSelector>, nodes: Vec<LabelSelector>| L2AdvertisementSpec {
        preferred_node_selectors: p,
        node_selectors: nodes,
        ..ad()
    };
    // (what, advertisements, live nodes, owner)
    type Case = (&'static str, Vec<L2AdvertisementSpec>, &'static [&'static str], Option<&'static str>);
    let cases: Vec<Case> = vec![
        ("no preference: the sha256 order", vec![ad()], &ALL, Some("node-c")),
        (
            "zone a preferred: the first of a and b",
            vec![with(prefer(&[(100, &[("zone", "a")])]), vec![])],
            &ALL,
            Some("node-b"),
        ),
        (
            "weights add up: a 60 + 50 beats b's 60",
            vec![with(
                prefer(&[(60, &[("zone", "a")]), (50, &[("kubernetes.io/hostname", "node-a")])]),
                vec![],
            )],
            &ALL,
            Some("node-a"),
        ),
        (
            "and across advertisements",
            vec![
                with(prefer(&[(60, &[("zone", "a")])]), vec![]),
                with(prefer(&[(50, &[("kubernetes.io/hostname", "node-a")])]), vec![]),
            ],
            &ALL,
            Some("node-a"),
        ),
        (
            "a preferred node that is down: the next",
            vec![with(prefer(&[(100, &[("kubernetes.io/hostname", "node-a")])]), vec![])],
            &["node-b", "node-c"],
            Some("node-c"),
        ),
        (
            "an advertisement scores only the nodes it selects",
            vec![ad(), with(prefer(&[(100, &[("zone", "a")])]), vec![selector(&[("zone", "b")])])],
            &ALL,
            Some("node-c"),
        ),
        (
            "a preference is no selection: the others still stand in",
            vec![with(prefer(&[(100, &[("zone", "z")])]), vec![])],
            &["node-a"],
            Some("node-a"),
        ),
    ];
    for (what, ads, alive, want) in cases {
        let live: BTreeSet<String> = alive.iter().map(|n| n.to_string()).collect();
        let owner = assign(&snapshot(ads), &live).into_iter().next().map(|a| a.owner);
        assert_eq!(owner.as_deref(), want, "{what}");
    }
}

#[test]
fn addresses_outside_every_pool_are_never_announced() {
    let mut s = snapshot(vec![ad()]);
    s.services[0].addresses = vec![Ipv4Addr::new(203, 0, 113, 5).into()];
    assert!(assign(&s, &live()).is_empty());
}

/// The pool the controller names in the Service's annotation decides which advertisements
/// cover it, in force or not: every speaker reads the same name, and a stranded address (its
/// pool deleted, shrunk or refused) is still announced where its pool's advertisements say.
#[test]
fn the_pool_the_controller_names_decides() {
    let by_name = |pool: &str| vec![L2AdvertisementSpec { ip_address_pools: vec![pool.into()], ..ad() }];
    let by_label =
        vec![L2AdvertisementSpec { ip_address_pool_selectors: vec![selector(&[("tier", "lan")])], ..ad() }];
    let mut s = snapshot(by_name("lan"));
    s.services[0].pool = Some("other".into());
    assert!(assign(&s, &live()).is_empty(), "named other: lan's advertisement does not cover it");
    let mut s = snapshot(by_name("other"));
    s.services[0].pool = Some("other".into());
    assert_eq!(assign(&s, &live()).len(), 1);
    // Stranded: outside every pool in force, announced as its pool's.
    for (what, ads, pool, announced) in [
        ("by name", by_name("lan"), "lan", true),
        ("by the pool's labels", by_label.clone(), "lan", true),
        ("a deleted pool, no labels left", by_label, "gone", false),
        ("a deleted pool, every pool covered", vec![ad()], "gone", true),
    ] {
        let mut s = snapshot(ads);
        s.services[0].addresses = vec![Ipv4Addr::new(203, 0, 113, 5).into()];
        s.services[0].pool = Some(pool.into());
        assert_eq!(assign(&s, &live()).len(), usize::from(announced), "{what}");
    }
}

#[test]
fn candidate_rules_apply() {
    let mut s = snapshot(vec![ad()]);
    s.services[0].traffic.local_traffic = true;
    assert_eq!(owner_and_interfaces(&s).unwrap().0, "node-a", "Local: the endpoint's node");
    s.services[0].traffic.ready_endpoint_nodes.clear();
    assert_eq!(owner_and_interfaces(&s), None, "no ready endpoint");
}

/// MetalLB hashes every address of a Service with its first one (`toAnnounce[0]`): a Service's
/// addresses, whichever families, go to one node, the one its first address elects.
#[test]
fn all_of_a_services_addresses_go_where_the_first_one_elects() {
    let by_itself = |a: IpAddr| election::owner(a, ALL).unwrap();
    // An address of the pool that, hashed alone, would elect another node than VIP.
    let second: IpAddr = (1..15)
        .map(|i| IpAddr::from(Ipv4Addr::new(192, 0, 2, i)))
        .find(|a| by_itself(*a) != by_itself(VIP.into()))
        .expect("some address elects another node");
    let mut s = snapshot(vec![ad()]);
    s.services[0].addresses = vec![VIP.into(), second];
    let owners: Vec<(IpAddr, String)> =
        assign(&s, &live()).into_iter().map(|a| (a.address, a.owner)).collect();
    let first_owner = by_itself(VIP.into()).to_string();
    assert_eq!(owners, [(VIP.into(), first_owner.clone()), (second, first_owner)]);
    // The other order: the other node takes both.
    s.services[0].addresses = vec![second, VIP.into()];
    let owners: BTreeSet<String> = assign(&s, &live()).into_iter().map(|a| a.owner).collect();
    assert_eq!(owners, BTreeSet::from([by_itself(second).to_string()]));
    // Dual-stack, IPv6 first (in a pool the advertisement covers): its address elects.
    let v6: IpAddr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10).into();
    s.pools.push(pool("lan6", "2001:db8::/120", &[]));
    s.services[0].addresses = vec![v6, VIP.into()];
    let owners: BTreeSet<String> = assign(&s, &live()).into_iter().map(|a| a.owner).collect();
    assert_eq!(owners, BTreeSet::from([by_itself(v6).to_string()]));
}

#[test]
fn owned_by_groups_per_service() {
    let mut s = snapshot(vec![ad()]);
    s.services[0].addresses.push(Ipv4Addr::new(192, 0, 2, 11).into());
    let all = assign(&s, &live());
    let owners: BTreeSet<&str> = all.iter().map(|a| a.owner.as_str()).collect();
    for node in ALL {
        let mine = owned_by(&all, node);
        let count: usize = mine.values().map(Vec::len).sum();
        assert_eq!(count, all.iter().filter(|a| a.owner == node).count());
        assert_eq!(mine.is_empty(), !owners.contains(node));
    }
}

/// Two Services that share an address (`allow-shared-ip`) give it one owner whatever their
/// families: a dual-stack one, IPv6 first, would alone be elected from its IPv6 address, and
/// an IPv4-only one from the shared address.
#[test]
fn services_that_share_an_address_have_one_owner() {
    let by_itself = |a: IpAddr| election::owner(a, ALL).unwrap();
    let shared: IpAddr = VIP.into();
    // An IPv6 address that, hashed alone, elects another node than the shared address.
    let v6: IpAddr = (1..200u16)
        .map(|i| IpAddr::from(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i)))
        .find(|a| by_itself(*a) != by_itself(shared))
        .expect("some address elects another node");
    let mut s = snapshot(vec![ad()]);
    s.pools.push(pool("lan6", "2001:db8::/120", &[]));
    let dual =
        LoadBalancer { key: "default/dual".into(), addresses: vec![v6, shared], ..s.services[0].clone() };
    s.services.push(dual);
    let owners = |s: &Snapshot| -> BTreeMap<(String, IpAddr), String> {
        assign(s, &live()).into_iter().map(|a| ((a.service, a.address), a.owner)).collect()
    };
    let want = by_itself(shared).to_string();
    assert_eq!(
        owners(&s),
        BTreeMap::from([
            (("default/dual".to_string(), v6), want.clone()),
            (("default/dual".to_string(), shared), want.clone()),
            (("default/web".to_string(), shared), want.clone()),
        ]),
        "elected from the shared address, both families on one node"
    );
    // One of them may only be announced from node-a and node-b: both are, by one of those.
    let mut narrow = s.clone();
    narrow.services[0].labels = labels(&[("app", "narrow")]);
    narrow.advertisements = vec![
        (
            "narrow".into(),
            L2AdvertisementSpec {
                service_selectors: vec![selector(&[("app", "narrow")])],
                node_selectors: vec![selector(&[("zone", "a")])],
                ..ad()
            },
        ),
        ("all".into(), L2AdvertisementSpec { service_selectors: vec![selector(&[("app", "web")])], ..ad() }),
    ];
    let got: BTreeSet<String> = owners(&narrow).into_values().collect();
    let in_zone_a = election::owner(shared, ["node-a", "node-b"]).unwrap().to_string();
    assert_eq!(got, BTreeSet::from([in_zone_a]));
    // Apart again, each is elected alone.
    s.services[1].addresses = vec![v6];
    assert_eq!(owners(&s)[&("default/dual".to_string(), v6)], by_itself(v6));
}

/// Pass after pass over made-up clusters that change (nodes die, come back, join; endpoints
/// move; Services come and go), one Decider decides what the rules, computed directly, do.
#[test]
fn kept_orders_decide_what_the_rules_do() {
    use super::synthetic::{Dice, Shape, cluster};
    let mut elections = 0;
    for seed in 0..12u64 {
        let mut dice = Dice::new(seed);
        let shape = Shape { nodes: 5 + dice.below(40), services: 1 + dice.below(80), mixed: seed % 3 != 0 };
        let mut snapshot = cluster(shape, &mut dice);
        let mut live: BTreeSet<String> = snapshot.nodes.iter().map(|n| n.name.clone()).collect();
        let mut decider = Decider::default();
        for step in 0..60 {
            match dice.below(6) {
                0 => drop(live.remove(&snapshot.nodes[dice.below(snapshot.nodes.len())].name)),
                1 => drop(live.insert(snapshot.nodes[dice.below(snapshot.nodes.len())].name.clone())),
                2 => {
                    let grown = cluster(Shape { nodes: snapshot.nodes.len() + 3, ..shape }, &mut dice);
                    live.extend(grown.nodes[snapshot.nodes.len()..].iter().map(|n| n.name.clone()));
                    snapshot.nodes = grown.nodes;
                }
                3 if snapshot.nodes.len() > 2 => {
                    // A node replaced by one of a new name.
                    let gone = dice.below(snapshot.nodes.len());
                    let mut node = snapshot.nodes.swap_remove(gone);
                    node.name = format!("replaced-{seed}-{step}");
                    live.insert(node.name.clone());
                    snapshot.nodes.push(node);
                }
                4 => {
                    let i = dice.below(snapshot.services.len());
                    let node = snapshot.nodes[dice.below(snapshot.nodes.len())].name.clone();
                    snapshot.services[i].traffic.ready_endpoint_nodes = [node].into();
                }
                _ => {
                    let i = dice.below(snapshot.services.len());
                    snapshot.services.swap_remove(i);
                    if snapshot.services.is_empty() {
                        snapshot.services = cluster(shape, &mut dice).services;
                    }
                }
            }
            let expected = super::reference::assign(&snapshot, &live);
            assert_eq!(decider.assign(&snapshot, &live), expected, "seed {seed}, step {step}");
            elections += expected.len();
        }
    }
    assert!(elections > 5_000, "only {elections} assignments compared");
}

/// Paced, a pass ranks a bounded number of addresses new to it: each pass decides part of what
/// the rules decide and nothing else (no other owner, ever), and a few passes decide it all. A
/// Service that had an owner in the last pass is decided even when its order is new.
#[test]
fn paced_passes_leave_only_new_services_for_later() {
    use super::synthetic::{Dice, Shape, all_live, cluster};
    let snapshot = cluster(Shape { nodes: 60, services: 200, mixed: false }, &mut Dice::new(7));
    let live = all_live(&snapshot);
    let expected = super::reference::assign(&snapshot, &live);
    // About five new addresses of 60 nodes per pass.
    let mut decider = Decider { budget: 300, ..Decider::paced() };
    let mut passes = 0;
    loop {
        let got = decider.assign(&snapshot, &live);
        passes += 1;
        assert!(
            got.iter().all(|a| expected.contains(a)),
            "pass {passes}: an assignment the rules do not make"
        );
        if !decider.pending() {
            assert_eq!(got, expected, "pass {passes}: done, but not all decided");
            break;
        }
        assert!(got.len() < expected.len(), "pass {passes}: pending with everything decided");
        assert!(passes < 500, "still pending after {passes} passes");
    }
    assert!(passes > 5, "paced at 300 ranks, 200 Services of 60 nodes took only {passes} passes");

    // Ten nodes live: at most ten candidates each, ranked directly, no order kept. Then all 60:
    // orders for every address, which the budget would defer, but each Service had an owner.
    let few: BTreeSet<String> = live.iter().take(10).cloned().collect();
    let mut decider = Decider { budget: 1, ..Decider::paced() };
    let before = decider.assign(&snapshot, &few);
    assert_eq!(before, super::reference::assign(&snapshot, &few));
    let owned: BTreeSet<&str> = before.iter().map(|a| a.service.as_str()).collect();
    let got = decider.assign(&snapshot, &live);
    for a in expected.iter().filter(|a| owned.contains(a.service.as_str())) {
        assert!(got.contains(a), "{} had an owner and was left for later", a.service);
    }
}
