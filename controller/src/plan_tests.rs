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
    assert_eq!(p.invalid_pools["b"], "overlaps pool \"a\"");
    assert_eq!(
        p.invalid_pools["c"],
        "spec.addresses[0] = \"nonsense\": neither a CIDR nor a first-last range"
    );
    assert_eq!(given(&p, "default/one"), Some(vec!["192.0.2.0".into()]));
    assert_eq!(p.pool_status.keys().collect::<Vec<_>>(), ["a"]);
}

#[test]
fn other_services_are_never_touched() {
    let cluster_ip: KubeService = serde_yaml_ng::from_str(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: db\n  namespace: default\nspec:\n  type: ClusterIP\n",
    )
    .unwrap();
    let classed = svc("other", "  loadBalancerClass: someone-else\n", &["203.0.113.1"]);
    let p = run(&[pool("a", &["192.0.2.0/30"])], &[cluster_ip, classed]);
    assert_eq!(p, Plan { pool_status: p.pool_status.clone(), ..Default::default() });
}

#[test]
fn a_pool_covering_a_node_address_is_refused() {
    let cluster = Cluster {
        node_addresses: BTreeMap::from([("node-a".to_string(), vec!["192.0.2.2".parse().unwrap()])]),
        ..Default::default()
    };
    let pools = [pool("a", &["192.0.2.0/30"]), pool("b", &["198.51.100.0/30"])];
    let p = plan(&pools, &[svc("one", "", &[])], &cluster);
    assert_eq!(p.invalid_pools["a"], "covers 192.0.2.2, an address of node node-a");
    assert_eq!(given(&p, "default/one"), Some(vec!["198.51.100.0".into()]), "the other pool keeps working");
}
