//! MetalLB's configuration, unchanged: the documented L2 configurations (tests/metallb/corpus,
//! written from what MetalLB's documentation describes, with documentation address ranges)
//! applied to a real API server with Herald's CRDs, read back through Herald's types, and run
//! through the controller's allocation and the speaker's election, against the allocation and
//! the announcing node MetalLB's rules give (worked out by hand: sha256sum of `node#address`).

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    path::Path,
};

use herald_controller::plan::{self, Cluster};
use herald_kube::crd::{IPAddressPool, L2Advertisement};
use herald_speaker::{
    carriers::Interfaces,
    kubernetes::{assign, snapshot_of},
};
use herald_tests::{apiserver, objects};
use k8s_openapi::api::core::v1::{Namespace, Node, Service};
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, PostParams},
};
use serde_json::json;

/// One documented configuration, the Service that asks for an address, and what MetalLB does.
struct Case {
    file: &'static str,
    /// The Service: its namespace, labels and annotations, and spec beyond type and ports.
    service: serde_json::Value,
    /// The addresses it is given (in its status order).
    allocated: &'static [&'static str],
    /// The node that announces them, with these nodes' speakers up; `None`: nobody.
    announcer: Option<&'static str>,
    live: &'static [&'static str],
    /// Where it is announced, when the advertisements name interfaces.
    interfaces: Option<&'static [&'static str]>,
}

const ALL: &[&str] = &["node-a", "node-b", "node-c"];

fn web(extra: serde_json::Value) -> serde_json::Value {
    let mut svc = json!({
        "metadata": { "name": "web", "namespace": "default", "labels": { "app": "web" } },
        "spec": { "type": "LoadBalancer", "ports": [{ "port": 80 }], "selector": { "app": "web" } },
    });
    merge(&mut svc, extra);
    svc
}

fn cases() -> Vec<Case> {
    let case = |file, service, allocated, announcer, live| Case {
        file,
        service,
        allocated,
        announcer,
        live,
        interfaces: None,
    };
    let pool_annotation =
        |pool: &str| json!({ "metadata": { "annotations": { "metallb.universe.tf/address-pool": pool } } });
    vec![
        // sha256 order for 192.0.2.240: node-b, node-a, node-c.
        case("l2-simple.yaml", web(json!({})), &["192.0.2.240"], Some("node-b"), ALL),
        case("l2-pools-by-name.yaml", web(pool_annotation("second-pool")), &["198.51.100.0"], None, ALL),
        // 203.0.113.87: node-b, node-c, node-a.
        case("l2-pool-selectors.yaml", web(json!({})), &["203.0.113.87"], Some("node-b"), ALL),
        // 192.0.2.0: node-a, node-c, node-b; first-pool only from node-a or node-b.
        case("l2-node-selectors.yaml", web(json!({})), &["192.0.2.0"], Some("node-a"), ALL),
        case("l2-node-selectors.yaml", web(json!({})), &["192.0.2.0"], Some("node-b"), &["node-b", "node-c"]),
        Case {
            interfaces: Some(&["eth3", "eth4"]),
            ..case("l2-interfaces.yaml", web(json!({})), &["192.0.2.0"], Some("node-a"), ALL)
        },
        case("pool-auto-assign.yaml", web(json!({})), &["192.0.2.0"], Some("node-a"), ALL),
        case(
            "pool-auto-assign.yaml",
            web(pool_annotation("expensive")),
            &["198.51.100.0"],
            Some("node-c"),
            ALL,
        ),
        // .0 is skipped; 198.51.100.1: node-c, node-a, node-b.
        case("pool-avoid-buggy-ips.yaml", web(json!({})), &["198.51.100.1"], Some("node-c"), ALL),
        // Both scoped pools admit it; the lower priority number (web-pool, 20) goes first.
        case(
            "pool-service-allocation.yaml",
            web(json!({ "metadata": { "namespace": "shop", "labels": { "tier": "frontend" } } })),
            &["198.51.100.0"],
            Some("node-c"),
            ALL,
        ),
        case("pool-service-allocation.yaml", web(json!({})), &["192.0.2.0"], Some("node-a"), ALL),
        // Priority 0 is none: b-ten (10) before a-zero.
        case("pool-priority-zero.yaml", web(json!({})), &["198.51.100.0"], Some("node-c"), ALL),
        case("pool-host-bits.yaml", web(json!({})), &["198.51.100.0"], Some("node-c"), ALL),
        // Dual-stack: both families from second-pool, both announced by the node the first
        // (IPv4) address elects.
        case(
            "faq-several-pools.yaml",
            web(json!({
                "metadata": { "annotations": { "metallb.universe.tf/address-pool": "second-pool" } },
                "spec": { "ipFamilies": ["IPv4", "IPv6"], "ipFamilyPolicy": "RequireDualStack" },
            })),
            &["198.51.100.1", "2001:db8:ccd:e799::"],
            Some("node-c"),
            ALL,
        ),
        case("migration-tool-output.yaml", web(json!({})), &["192.0.2.240"], Some("node-b"), ALL),
        // role=lb: node-b and node-c (hash order c, b); node-b is the edge node: preferred.
        case("l2-preferred-nodes.yaml", web(json!({})), &["192.0.2.0"], Some("node-b"), ALL),
        case(
            "l2-preferred-nodes.yaml",
            web(json!({})),
            &["192.0.2.0"],
            Some("node-c"),
            &["node-a", "node-c"],
        ),
        case("l2-service-selectors.yaml", web(json!({})), &["192.0.2.0"], None, ALL),
        case(
            "l2-service-selectors.yaml",
            web(json!({ "metadata": { "labels": { "tier": "frontend" } } })),
            &["192.0.2.0"],
            Some("node-a"),
            ALL,
        ),
    ]
}

/// The lab's nodes as Node objects: hostnames, and the labels the corpus selects on.
fn nodes() -> Vec<Node> {
    let labels = |name: &str, extra: serde_json::Value| {
        let mut l = json!({ "kubernetes.io/hostname": name });
        merge(&mut l, extra);
        l
    };
    [
        ("node-a", json!({})),
        ("node-b", json!({ "role": "lb", "node-role": "edge" })),
        ("node-c", json!({ "role": "lb" })),
    ]
    .into_iter()
    .map(|(name, extra)| {
        serde_json::from_value(json!({ "metadata": { "name": name, "labels": labels(name, extra) } }))
            .unwrap()
    })
    .collect()
}

#[tokio::test(flavor = "current_thread")]
async fn documented_configurations_mean_what_they_mean_in_metallb() {
    if !herald_tests::root_or_skip("documented_configurations")
        || !apiserver::available_or_skip("documented_configurations")
    {
        return;
    }
    let (_server, client) = apiserver::start_with_crds().await;
    let discovery = kube::discovery::Discovery::new(client.clone()).run().await.unwrap();
    for ns in ["metallb-system", "shop"] {
        let namespace: Namespace = serde_json::from_value(json!({ "metadata": { "name": ns } })).unwrap();
        Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &namespace).await.unwrap();
    }
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("metallb/corpus");
    let mut checked = BTreeSet::new();
    for case in cases() {
        // Applied as a user would (kubectl create): the server's schema decides.
        objects::create_from_file(&client, &discovery, &corpus.join(case.file)).await;
        let (pools, ads) = read_back(&client, case.file).await;
        let mut svc: Service = serde_json::from_value(case.service.clone()).unwrap();
        let cluster = Cluster {
            namespaces: [("default", BTreeMap::new()), ("shop", BTreeMap::new())]
                .into_iter()
                .map(|(n, l)| (n.to_owned(), l))
                .collect(),
            ..Default::default()
        };
        let plan = plan::plan(&pools, &[svc.clone()], &cluster);
        let given = plan.assignments.values().flatten().flat_map(|a| a.ips.clone()).collect::<Vec<IpAddr>>();
        let want: Vec<IpAddr> = case.allocated.iter().map(|a| a.parse().unwrap()).collect();
        assert_eq!(given, want, "{}: allocation ({:?})", case.file, plan.events);

        // The speaker's election, with the addresses in the Service's status.
        let ingress: Vec<_> = given.iter().map(|ip| json!({ "ip": ip.to_string() })).collect();
        svc.status = Some(serde_json::from_value(json!({ "loadBalancer": { "ingress": ingress } })).unwrap());
        let key = format!("{}/web", svc.metadata.namespace.as_deref().unwrap());
        let ready = BTreeMap::from([(key, (BTreeSet::from(["node-a".to_owned()]), false))]);
        let snapshot = snapshot_of(&[svc], &ready, &nodes(), &pools, &ads, None);
        let live: BTreeSet<String> = case.live.iter().map(|n| n.to_string()).collect();
        let assignments = assign(&snapshot, &live);
        let owners: BTreeSet<&str> = assignments.iter().map(|a| a.owner.as_str()).collect();
        match case.announcer {
            None => assert!(assignments.is_empty(), "{}: announced: {assignments:?}", case.file),
            Some(node) => {
                assert_eq!(
                    owners,
                    BTreeSet::from([node]),
                    "{}: announcer with {:?} up",
                    case.file,
                    case.live
                );
                let announced: Vec<IpAddr> = assignments.iter().map(|a| a.address).collect();
                assert_eq!(announced, want, "{}: every address announced", case.file);
            }
        }
        if let Some(names) = case.interfaces {
            let named = Interfaces::Named(names.iter().map(|n| n.to_string()).collect());
            assert!(assignments.iter().all(|a| a.interfaces == named), "{}: {assignments:?}", case.file);
        }
        checked.insert(case.file);
        clear(&client).await;
    }
    let files = std::fs::read_dir(&corpus).unwrap().count();
    assert_eq!(checked.len(), files, "every file of the corpus has a case");
}

/// The corpus objects as Herald's types decode them (a list fails whole if one does not), with
/// MetalLB's schema defaults stored by the server.
async fn read_back(client: &Client, file: &str) -> (Vec<IPAddressPool>, Vec<L2Advertisement>) {
    let pools = Api::<IPAddressPool>::namespaced(client.clone(), "metallb-system")
        .list(&ListParams::default())
        .await
        .unwrap_or_else(|e| panic!("{file}: the pools do not decode: {e}"))
        .items;
    let ads = Api::<L2Advertisement>::namespaced(client.clone(), "metallb-system")
        .list(&ListParams::default())
        .await
        .unwrap_or_else(|e| panic!("{file}: the advertisements do not decode: {e}"))
        .items;
    // The defaults are in the stored objects, as with MetalLB's CRDs.
    let raw: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client.clone(),
        "metallb-system",
        &kube::discovery::ApiResource::erase::<IPAddressPool>(&()),
    );
    for p in raw.list(&ListParams::default()).await.unwrap() {
        let spec = &p.data["spec"];
        assert!(spec["autoAssign"].is_boolean() && spec["avoidBuggyIPs"].is_boolean(), "{file}: {spec}");
    }
    (pools, ads)
}

/// Deletes every pool and advertisement of metallb-system.
async fn clear(client: &Client) {
    let dp = DeleteParams::default();
    let lp = ListParams::default();
    Api::<IPAddressPool>::namespaced(client.clone(), "metallb-system")
        .delete_collection(&dp, &lp)
        .await
        .unwrap();
    Api::<L2Advertisement>::namespaced(client.clone(), "metallb-system")
        .delete_collection(&dp, &lp)
        .await
        .unwrap();
}

/// Merges `patch` into `base` (objects key by key; anything else replaced).
fn merge(base: &mut serde_json::Value, patch: serde_json::Value) {
    match (base, patch) {
        (serde_json::Value::Object(b), serde_json::Value::Object(p)) => {
            for (k, v) in p {
                merge(b.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (b, p) => *b = p,
    }
}
