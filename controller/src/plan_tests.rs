use super::*;
use herald_kube::{crd::IPAddressPoolSpec, service::ALLOCATED_FROM_POOL};

fn pool(name: &str, addresses: &[&str]) -> IPAddressPool {
    let spec = IPAddressPoolSpec {
        addresses: addresses.iter().map(|a| a.to_string()).collect(),
        ..Default::default()
    };
    IPAddressPool::new(name, spec)
}

/// A LoadBalancer Service `name` in `default`; `extra` is more spec, `status` its ingress IPs.
fn svc(name: &str, extra: &str, status: &[&str]) -> KubeService {
    let mut yaml = format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  type: LoadBalancer\n{extra}"
    );
    if !status.is_empty() {
        yaml += "status:\n  loadBalancer:\n    ingress:\n";
        for ip in status {
            yaml += &format!("    - ip: {ip}\n");
        }
    }
    serde_yaml_ng::from_str(&yaml).unwrap()
}

/// `svc` with the pool annotation the controller writes.
fn annotated(mut svc: KubeService, pool: &str) -> KubeService {
    svc.metadata.annotations.get_or_insert_default().insert(ALLOCATED_FROM_POOL.into(), pool.into());
    svc
}

fn run(pools: &[IPAddressPool], services: &[KubeService]) -> Plan {
    plan(pools, services, &Cluster::default())
}

fn given(p: &Plan, service: &str) -> Option<Vec<String>> {
    p.assignments
        .get(service)
        .map(|a| a.as_ref().map(|a| a.ips.iter().map(ToString::to_string).collect()).unwrap_or_default())
}

fn reasons(p: &Plan) -> Vec<(String, Reason)> {
    p.events.iter().map(|e| (e.service.clone(), e.reason)).collect()
}

#[test]
fn new_services_get_addresses_and_an_event() {
    let p = run(&[pool("a", &["192.0.2.0/30"])], &[svc("one", "", &[]), svc("two", "", &[])]);
    assert_eq!(given(&p, "default/one"), Some(vec!["192.0.2.0".into()]));
    assert_eq!(given(&p, "default/two"), Some(vec!["192.0.2.1".into()]));
    assert_eq!(p.events[0].message, "Assigned IP 192.0.2.0 from pool a");
    assert_eq!(
        p.pool_status["a"],
        IPAddressPoolStatus { assigned_ipv4: 2, available_ipv4: 2, ..Default::default() }
    );
}

#[test]
fn a_pass_over_a_settled_cluster_changes_nothing() {
    // Addresses taken in an order that a fresh allocation would not give: kept as they are.
    let services =
        [annotated(svc("one", "", &["192.0.2.3"]), "a"), annotated(svc("two", "", &["192.0.2.0"]), "a")];
    let p = run(&[pool("a", &["192.0.2.0/30"])], &services);
    assert!(p.assignments.is_empty() && p.events.is_empty() && p.annotations.is_empty(), "{p:?}");
    // A new Service beside them takes what is free, and the others stay put.
    let mut more = services.to_vec();
    more.push(svc("three", "", &[]));
    let p = run(&[pool("a", &["192.0.2.0/30"])], &more);
    assert_eq!(p.assignments.len(), 1);
    assert_eq!(given(&p, "default/three"), Some(vec!["192.0.2.1".into()]));
}

#[test]
fn an_annotation_that_disagrees_is_written_again() {
    // Its status is right, but the annotation's write failed (or someone changed it).
    let pools = [pool("a", &["192.0.2.0/30"])];
    let p = run(&pools, &[svc("one", "", &["192.0.2.1"])]);
    assert!(p.assignments.is_empty() && p.events.is_empty(), "{p:?}");
    assert_eq!(p.annotations, BTreeMap::from([("default/one".to_owned(), Some("a".to_owned()))]));
    let p = run(&pools, &[annotated(svc("one", "", &["192.0.2.1"]), "b")]);
    assert_eq!(p.annotations["default/one"], Some("a".to_owned()));
    // A Service with no address (none to give) keeps no annotation.
    let full = [pool("a", &["192.0.2.0/32"])];
    let p =
        run(&full, &[annotated(svc("one", "", &["192.0.2.0"]), "a"), annotated(svc("two", "", &[]), "a")]);
    assert_eq!(p.annotations, BTreeMap::from([("default/two".to_owned(), None)]));
}

#[test]
fn an_address_left_outside_every_pool_is_replaced() {
    let p = run(&[pool("a", &["192.0.2.0/30"])], &[svc("one", "", &["198.51.100.9"])]);
    assert_eq!(given(&p, "default/one"), Some(vec!["192.0.2.0".into()]));
    assert_eq!(
        reasons(&p),
        [("default/one".into(), Reason::ClearAssignment), ("default/one".into(), Reason::IPAllocated)]
    );
}

#[test]
fn failures_are_events_and_clear_what_became_invalid() {
    let request = "  loadBalancerIP: 203.0.113.5\n";
    let p = run(&[pool("a", &["192.0.2.0/30"])], &[svc("new", request, &[])]);
    assert!(p.assignments.is_empty(), "nothing to clear for a Service that had nothing");
    assert_eq!(p.events[0].reason, Reason::AllocationFailed);
    assert_eq!(p.events[0].message, "203.0.113.5 is in no pool");
    // A request that cannot be met any more clears the old address.
    let p = run(&[pool("a", &["192.0.2.0/30"])], &[svc("old", request, &["192.0.2.1"])]);
    assert_eq!(p.assignments.get("default/old"), Some(&None));
    assert_eq!(
        reasons(&p),
        [("default/old".into(), Reason::ClearAssignment), ("default/old".into(), Reason::AllocationFailed)]
    );
}

#[test]
fn bad_pools_are_ignored_and_the_others_keep_working() {
    let pools = [pool("a", &["192.0.2.0/30"]), pool("b", &["192.0.2.2-192.0.2.9"]), pool("c", &["nonsense"])];
    let p = run(&pools, &[svc("one", "", &[])]);
    assert_eq!(p.invalid_pools["b"], "overlaps pool \"a\", which is older; refused, it gives out no address");
    assert_eq!(
        p.invalid_pools["c"],
        "spec.addresses[0] = \"nonsense\": neither a CIDR nor a first-last range; no valid version of it \
         is known, so it gives out no address"
    );
    assert_eq!(given(&p, "default/one"), Some(vec!["192.0.2.0".into()]));
    assert_eq!(p.pool_status.keys().collect::<Vec<_>>(), ["a"]);
}

/// The pass after `pools` were in force and `services` held their addresses from them, with
/// `now` the pools as edited.
fn after_edit(before: &[IPAddressPool], now: &[IPAddressPool], services: &[KubeService]) -> Plan {
    let first = run(before, services);
    assert!(first.assignments.is_empty() && first.events.is_empty(), "settled before the edit: {first:?}");
    plan(now, services, &Cluster { last_valid: first.last_valid, ..Default::default() })
}

#[test]
fn no_pool_edit_changes_a_services_address() {
    let prod = pool("prod", &["192.0.2.0/28"]);
    let services = [
        annotated(svc("web", "", &["192.0.2.1"]), "prod"),
        annotated(svc("dns", "", &["192.0.2.0"]), "prod"),
        annotated(svc("asked", "  loadBalancerIP: 192.0.2.9\n", &["192.0.2.9"]), "prod"),
    ];
    let mut invalid = prod.clone();
    invalid.spec.addresses.push("192.0.2.300/32".into());
    let mut shrunk = prod.clone();
    shrunk.spec.addresses = vec!["192.0.2.4/30".into()];
    let mut buggy = prod.clone();
    buggy.spec.avoid_buggy_ips = true;
    let edits: [(&str, Vec<IPAddressPool>); 5] = [
        ("an invalid edit", vec![invalid.clone()]),
        ("the pool shrunk", vec![shrunk]),
        ("avoidBuggyIPs turned on", vec![buggy]),
        ("the pool deleted", vec![]),
        ("a newer overlapping pool beside it", vec![prod.clone(), pool("zzz-lab", &["192.0.2.0/24"])]),
    ];
    for (what, now) in edits {
        let p = after_edit(std::slice::from_ref(&prod), &now, &services);
        assert!(p.assignments.is_empty(), "{what}: {:?}", p.assignments);
        assert!(p.events.iter().all(|e| e.reason == Reason::AddressStranded), "{what}: {:?}", p.events);
        assert_eq!(p.annotations, BTreeMap::new(), "{what}: the pool that gave them stays named");
    }
    // Deleted and made again under another name: the addresses are that pool's now.
    let mut renamed = prod.clone();
    renamed.metadata.name = Some("prod-2".into());
    let p = after_edit(std::slice::from_ref(&prod), &[renamed], &services);
    assert!(p.assignments.is_empty() && p.events.is_empty(), "{p:?}");
    assert_eq!(p.annotations.values().collect::<Vec<_>>(), [&Some("prod-2".to_owned()); 3]);
    // The invalid edit keeps the last valid version in force: nothing stranded, new Services are
    // given addresses from it, and the pool says why.
    let mut more = services.to_vec();
    more.push(svc("new", "", &[]));
    let p = after_edit(std::slice::from_ref(&prod), std::slice::from_ref(&invalid), &more[..3]);
    assert!(p.events.is_empty(), "{:?}", p.events);
    let p = plan(
        std::slice::from_ref(&invalid),
        &more,
        &Cluster { last_valid: p.last_valid, ..Default::default() },
    );
    assert_eq!(given(&p, "default/new"), Some(vec!["192.0.2.2".into()]));
    assert!(
        p.invalid_pools["prod"].ends_with("its last valid version stays in force"),
        "{:?}",
        p.invalid_pools
    );
    // After a restart (no memory of the valid version) the addresses still stay, each said once.
    let p = run(std::slice::from_ref(&invalid), &services);
    assert!(p.assignments.is_empty(), "{:?}", p.assignments);
    assert_eq!(
        p.events.iter().find(|e| e.service == "default/web").unwrap().message,
        "Keeps IP 192.0.2.1 from pool prod, though the pools in force would not give it now: 192.0.2.1 is \
         in no pool"
    );
    // Stranded addresses are not given to anyone else.
    let mut crowd = services.to_vec();
    crowd.push(svc("new", "", &[]));
    let p = run(&[pool("other", &["192.0.2.0/30"])], &crowd);
    assert_eq!(given(&p, "default/new"), Some(vec!["192.0.2.2".into()]));
}

#[test]
fn a_service_that_asks_for_something_else_is_renumbered() {
    let pools = [pool("a", &["192.0.2.0/30"]), pool("b", &["198.51.100.0/30"])];
    // It asks for pool b now, but holds an address from a.
    let moved = annotated(svc("web", "  selector: {}\n", &["192.0.2.1"]), "a");
    let mut moved_to_b = moved.clone();
    moved_to_b.metadata.annotations.as_mut().unwrap().insert("metallb.io/address-pool".into(), "b".into());
    let p = run(&pools, &[moved_to_b]);
    assert_eq!(given(&p, "default/web"), Some(vec!["198.51.100.0".into()]));
    // An address no controller gave (no pool annotation), outside every pool: replaced.
    let p = run(&pools, &[svc("by-hand", "", &["203.0.113.7"])]);
    assert_eq!(given(&p, "default/by-hand"), Some(vec!["192.0.2.0".into()]));
}

#[test]
fn other_services_are_never_touched() {
    let cluster_ip: KubeService = serde_yaml_ng::from_str(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: db\n  namespace: default\nspec:\n  type: ClusterIP\n",
    )
    .unwrap();
    let classed = svc("other", "  loadBalancerClass: someone-else\n", &["203.0.113.1"]);
    let p = run(&[pool("a", &["192.0.2.0/30"])], &[cluster_ip, classed]);
    assert_eq!(
        p,
        Plan { pool_status: p.pool_status.clone(), last_valid: p.last_valid.clone(), ..Default::default() }
    );
}

#[test]
fn a_node_address_inside_a_pool_is_never_given_out_and_the_pool_stays() {
    let cluster = Cluster {
        node_addresses: BTreeMap::from([("node-a".to_string(), vec!["192.0.2.0".parse().unwrap()])]),
        ..Default::default()
    };
    let pools = [pool("a", &["192.0.2.0/30"])];
    let held = annotated(svc("held", "", &["192.0.2.1"]), "a");
    let p = plan(&pools, &[held.clone(), svc("one", "", &[]), svc("two", "", &[])], &cluster);
    assert!(p.invalid_pools.is_empty(), "{:?}", p.invalid_pools);
    assert_eq!(p.pool_notes["a"], "in use; never gives out the node addresses 192.0.2.0 (node node-a)");
    assert_eq!(given(&p, "default/one"), Some(vec!["192.0.2.2".into()]));
    assert_eq!(given(&p, "default/two"), Some(vec!["192.0.2.3".into()]));
    // Asked for: refused, naming the node.
    let p = plan(&pools, &[svc("asks", "  loadBalancerIP: 192.0.2.0\n", &[])], &cluster);
    assert_eq!(p.events[0].message, "192.0.2.0 is an address of node node-a");
    // A node that comes to hold a Service's address does not take it from the Service.
    let p = plan(&pools, &[annotated(svc("held", "", &["192.0.2.0"]), "a")], &cluster);
    assert!(p.assignments.is_empty(), "{:?}", p.assignments);
    assert_eq!(p.events[0].reason, Reason::AddressStranded);
}
