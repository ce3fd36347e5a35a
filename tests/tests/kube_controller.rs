//! herald-controller against a real kube-apiserver: pools and Services in, statuses,
//! annotations, Events and pool counts out.

use std::time::Duration;

use herald_kube::crd::IPAddressPool;
use herald_tests::{
    apiserver::{self, ApiServer},
    controller::{Controller, POOLS},
    objects, poll,
};
use k8s_openapi::api::{core::v1::Namespace, core::v1::Service, events::v1::Event};
use kube::{
    Api, Client,
    api::{ListParams, PostParams},
};

fn yaml<T: k8s_openapi::serde::de::DeserializeOwned>(text: &str) -> T {
    serde_yaml_ng::from_str(text).unwrap()
}

async fn create_service(client: &Client, name: &str, extra: &str) {
    let svc: Service = yaml(&format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: default\n\
         spec:\n  type: LoadBalancer\n  ports:\n  - port: 80\n{extra}"
    ));
    Api::<Service>::namespaced(client.clone(), "default").create(&PostParams::default(), &svc).await.unwrap();
}

/// `check`'s first answer within 20 s.
async fn eventually<T>(check: impl AsyncFnMut() -> Option<T>) -> Option<T> {
    poll::until_async(Duration::from_secs(20), check).await
}

async fn ingress(client: &Client, name: &str) -> Vec<String> {
    let svc = Api::<Service>::namespaced(client.clone(), "default").get(name).await.unwrap();
    let ingress = svc.status.and_then(|s| s.load_balancer).and_then(|lb| lb.ingress).unwrap_or_default();
    ingress.into_iter().filter_map(|i| i.ip).collect()
}

#[tokio::test(flavor = "current_thread")]
async fn allocates_reports_and_survives_a_restart() {
    if !apiserver::available_or_skip("allocates_reports_and_survives_a_restart") {
        return;
    }
    let (server, client, controller) = cluster_with(&[("first", "  addresses: [192.0.2.0/30]\n")]).await;
    let pools = Api::<IPAddressPool>::namespaced(client.clone(), POOLS);
    create_service(&client, "web", "").await;
    create_service(&client, "pinned", "  loadBalancerIP: 192.0.2.3\n").await;
    create_service(&client, "outside", "  loadBalancerIP: 203.0.113.5\n").await;

    let web = eventually(async || Some(ingress(&client, "web").await).filter(|i| !i.is_empty())).await;
    assert_eq!(web, Some(vec!["192.0.2.0".to_string()]));
    let pinned = eventually(async || Some(ingress(&client, "pinned").await).filter(|i| !i.is_empty())).await;
    assert_eq!(pinned, Some(vec!["192.0.2.3".to_string()]));
    let svc = Api::<Service>::namespaced(client.clone(), "default").get("web").await.unwrap();
    assert_eq!(
        svc.metadata
            .annotations
            .unwrap_or_default()
            .get("metallb.io/ip-allocated-from-pool")
            .map(String::as_str),
        Some("first")
    );

    let allocated = eventually(async || {
        Some(objects::events(&client, "web", "IPAllocated").await).filter(|e| !e.is_empty())
    })
    .await;
    assert_eq!(allocated, Some(vec!["Assigned IP 192.0.2.0 from pool first".to_string()]));
    let failed = eventually(async || {
        Some(objects::events(&client, "outside", "AllocationFailed").await).filter(|e| !e.is_empty())
    })
    .await;
    assert_eq!(failed.unwrap()[0], "203.0.113.5 is in no pool");
    assert!(ingress(&client, "outside").await.is_empty(), "a failed Service gets no address");

    let counted = eventually(async || {
        let status = pools.get("first").await.unwrap().status?;
        (status.assigned_ipv4 == 2).then_some(status)
    })
    .await
    .expect("pool status");
    assert_eq!((counted.assigned_ipv4, counted.available_ipv4), (2, 2));
    assert_eq!(controller.get("/readyz").0, 200);
    assert_eq!(controller.get("/healthz").0, 200);
    let (code, metrics) = controller.get("/metrics");
    assert_eq!(code, 200);
    assert!(
        metrics.contains("herald_controller_addresses_in_use{pool=\"first\",family=\"ipv4\"} 2"),
        "{metrics}"
    );
    assert!(metrics.contains("herald_controller_leader 1"), "{metrics}");

    // A restarted controller rebuilds its picture from the statuses and changes nothing.
    let services = Api::<Service>::namespaced(client.clone(), "default");
    let version = |s: Service| s.metadata.resource_version.unwrap();
    let before =
        (version(services.get("web").await.unwrap()), version(services.get("pinned").await.unwrap()));
    drop(controller);
    let _controller = Controller::start(&server);
    create_service(&client, "late", "").await;
    let late = eventually(async || Some(ingress(&client, "late").await).filter(|i| !i.is_empty())).await;
    assert_eq!(late, Some(vec!["192.0.2.1".to_string()]), "a new Service takes what is free");
    let after = (version(services.get("web").await.unwrap()), version(services.get("pinned").await.unwrap()));
    assert_eq!(before, after, "the restart rewrote a Service that was fine");
}

/// A control plane with the CRDs, the pool namespace and `pools` (YAML documents' specs), and a
/// controller running against it.
async fn cluster_with(pools: &[(&str, &str)]) -> (ApiServer, Client, Controller) {
    let (server, client) = apiserver::start_with_crds().await;
    let ns: Namespace = yaml(&format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {POOLS}\n"));
    Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &ns).await.unwrap();
    let api = Api::<IPAddressPool>::namespaced(client.clone(), POOLS);
    for (name, spec) in pools {
        let pool: IPAddressPool = yaml(&format!(
            "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: {name}\n  namespace: {POOLS}\nspec:\n{spec}"
        ));
        api.create(&PostParams::default(), &pool).await.unwrap();
    }
    let controller = Controller::start(&server);
    (server, client, controller)
}

async fn assigned(client: &Client, name: &str) -> Option<Vec<String>> {
    eventually(async || Some(ingress(client, name).await).filter(|i| !i.is_empty())).await
}

async fn failure(client: &Client, name: &str) -> String {
    let e =
        eventually(async || objects::events(client, name, "AllocationFailed").await.into_iter().next()).await;
    e.unwrap_or_else(|| panic!("no AllocationFailed Event for {name}"))
}

fn annotated(key: &str, value: &str) -> String {
    format!("  annotations:\n    {key}: \"{value}\"\n")
}

/// A Service with annotations (inserted into its metadata) and extra spec.
async fn create_annotated(client: &Client, name: &str, annotations: &str, extra: &str) {
    let svc: Service = yaml(&format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: default\n{annotations}\
         spec:\n  type: LoadBalancer\n{extra}"
    ));
    Api::<Service>::namespaced(client.clone(), "default").create(&PostParams::default(), &svc).await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn pools_by_annotation_sharing_and_full() {
    if !apiserver::available_or_skip("pools_by_annotation_sharing_and_full") {
        return;
    }
    let (_server, client, _controller) = cluster_with(&[
        ("manual", "  addresses: [198.51.100.0/31]\n  autoAssign: false\n"),
        ("auto", "  addresses: [192.0.2.0/31]\n"),
        ("broken", "  addresses: [192.0.2.1-192.0.2.0]\n"),
    ])
    .await;
    // autoAssign: false is used only on request.
    create_service(&client, "plain", "").await;
    assert_eq!(assigned(&client, "plain").await, Some(vec!["192.0.2.0".to_string()]));
    create_annotated(
        &client,
        "asks",
        &annotated("metallb.io/address-pool", "manual"),
        "  ports:\n  - port: 80\n",
    )
    .await;
    assert_eq!(assigned(&client, "asks").await, Some(vec!["198.51.100.0".to_string()]));

    // Sharing: the same key and other ports share; a clashing port does not.
    let share = annotated("metallb.io/allow-shared-ip", "team");
    let on = |ip: &str, port: u16| format!("  loadBalancerIP: {ip}\n  ports:\n  - port: {port}\n");
    create_annotated(&client, "share-a", &share, &on("198.51.100.1", 80)).await;
    create_annotated(&client, "share-b", &share, &on("198.51.100.1", 443)).await;
    create_annotated(&client, "share-c", &share, &on("198.51.100.1", 443)).await;
    assert_eq!(assigned(&client, "share-a").await, Some(vec!["198.51.100.1".to_string()]));
    assert_eq!(assigned(&client, "share-b").await, Some(vec!["198.51.100.1".to_string()]));
    assert!(failure(&client, "share-c").await.contains("both use TCP/443"));

    // The automatic pool has two addresses: the third Service finds it full.
    create_service(&client, "second", "").await;
    assert_eq!(assigned(&client, "second").await, Some(vec!["192.0.2.1".to_string()]));
    create_service(&client, "third", "").await;
    assert!(failure(&client, "third").await.starts_with("no pool has a free address"));

    // The bad pool is reported and ignored; the others kept working above.
    let list = Api::<Event>::namespaced(client.clone(), POOLS).list(&ListParams::default()).await.unwrap();
    let invalid: Vec<_> = list
        .items
        .iter()
        .filter(|e| e.reason.as_deref() == Some("InvalidPool"))
        .filter_map(|e| e.note.clone())
        .collect();
    assert!(invalid.iter().any(|n| n.contains("192.0.2.1 comes after 192.0.2.0")), "{invalid:?}");
    let pools = Api::<IPAddressPool>::namespaced(client.clone(), POOLS);
    let ready = async |name: &str| {
        let status = pools.get(name).await.unwrap().status?;
        let c = status.conditions.into_iter().find(|c| c.type_ == "Ready")?;
        Some((c.status, c.message))
    };
    let broken = eventually(async || ready("broken").await).await.unwrap();
    assert_eq!(broken.0, "False");
    assert!(broken.1.contains("192.0.2.1 comes after 192.0.2.0"), "{broken:?}");
    assert_eq!(eventually(async || ready("auto").await).await.unwrap().0, "True");
}

/// The addresses of Services `names`, in order.
async fn addresses(client: &Client, names: &[&str]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for name in names {
        out.push(ingress(client, name).await);
    }
    out
}

/// Pool `name`'s `Ready` condition: (status, message).
async fn ready(client: &Client, name: &str) -> Option<(String, String)> {
    let status = Api::<IPAddressPool>::namespaced(client.clone(), POOLS).get(name).await.ok()?.status?;
    let c = status.conditions.into_iter().find(|c| c.type_ == "Ready")?;
    Some((c.status, c.message))
}

/// Waits until pool `name`'s `Ready` message contains `text`; returns the condition.
async fn pool_says(client: &Client, name: &str, text: &str) -> (String, String) {
    let said = eventually(async || ready(client, name).await.filter(|(_, m)| m.contains(text))).await;
    said.unwrap_or_else(|| panic!("pool {name} never said {text:?}"))
}

/// MetalLB refuses a configuration that would strand an assigned address; Herald refuses the
/// pool (or keeps its last valid version) and never takes an address from a Service: an invalid
/// edit, a controller restart while it stands, an overlapping newer pool, a node whose address
/// lies in the pool.
#[tokio::test(flavor = "current_thread")]
async fn no_pool_edit_changes_a_services_address() {
    if !apiserver::available_or_skip("no_pool_edit_changes_a_services_address") {
        return;
    }
    let (server, client, controller) = cluster_with(&[("prod", "  addresses: [192.0.2.0/29]\n")]).await;
    let names = ["s0", "s1", "s2", "s3", "s4", "s5"];
    for name in names {
        create_service(&client, name, "").await;
    }
    for name in names {
        assert!(assigned(&client, name).await.is_some(), "{name} got no address");
    }
    let before = addresses(&client, &names).await;
    let pools = Api::<IPAddressPool>::namespaced(client.clone(), POOLS);
    let set = async |spec: serde_json::Value| {
        let patch = kube::api::Patch::Merge(serde_json::json!({ "spec": spec }));
        pools.patch("prod", &Default::default(), &patch).await.unwrap();
    };

    // An invalid edit: the last valid version stays in force, and still gives addresses out.
    set(serde_json::json!({ "addresses": ["192.0.2.0/29", "nonsense"] })).await;
    let (status, _) = pool_says(&client, "prod", "its last valid version stays in force").await;
    assert_eq!(status, "False");
    create_service(&client, "late", "").await;
    assert_eq!(assigned(&client, "late").await, Some(vec!["192.0.2.6".to_string()]));
    assert_eq!(addresses(&client, &names).await, before, "after an invalid edit");

    // A restart while it stands: no valid version is known, and every address stays (said once
    // per Service as a warning).
    drop(controller);
    let controller = Controller::start(&server);
    let stranded =
        eventually(async || objects::events(&client, "s0", "AddressStranded").await.into_iter().next())
            .await
            .expect("an AddressStranded Event for s0");
    assert!(stranded.starts_with("Keeps IP 192.0.2.0 from pool prod"), "{stranded}");
    pool_says(&client, "prod", "no valid version of it is known").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(addresses(&client, &names).await, before, "after a restart with the pool invalid");
    assert_eq!(ingress(&client, "late").await, ["192.0.2.6"]);

    // Mended, then a node whose address lies in the pool: the pool stays, the address is never
    // given out.
    set(serde_json::json!({ "addresses": ["192.0.2.0/29"] })).await;
    let node: k8s_openapi::api::core::v1::Node =
        yaml("apiVersion: v1\nkind: Node\nmetadata:\n  name: node-x\n");
    let nodes = Api::<k8s_openapi::api::core::v1::Node>::all(client.clone());
    nodes.create(&PostParams::default(), &node).await.unwrap();
    let status =
        serde_json::json!({ "status": { "addresses": [{ "type": "InternalIP", "address": "192.0.2.7" }] } });
    nodes.patch_status("node-x", &Default::default(), &kube::api::Patch::Merge(status)).await.unwrap();
    let (status, _) =
        pool_says(&client, "prod", "never gives out the node addresses 192.0.2.7 (node node-x)").await;
    assert_eq!(status, "True");
    create_service(&client, "after-node", "").await;
    assert!(failure(&client, "after-node").await.starts_with("no pool has a free address"));

    // A newer pool that overlaps it is refused; nothing moves.
    let lab: IPAddressPool = yaml(&format!(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: lab\n  namespace: {POOLS}\n\
         spec:\n  addresses: [192.0.2.4/30]\n"
    ));
    pools.create(&PostParams::default(), &lab).await.unwrap();
    let (status, _) = pool_says(&client, "lab", "overlaps pool \"prod\", which is older").await;
    assert_eq!(status, "False");
    // Each warning is told once, not at every pass (passes ran since: the lab pool's).
    assert_eq!(objects::events(&client, "after-node", "AllocationFailed").await.len(), 1);
    drop(controller);
    let _controller = Controller::start(&server);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(addresses(&client, &names).await, before, "with an overlapping pool, after a restart");
    assert_eq!(ingress(&client, "late").await, ["192.0.2.6"]);
    for name in names.iter().chain(&["late"]) {
        assert_eq!(objects::events(&client, name, "ClearAssignment").await, Vec::<String>::new(), "{name}");
    }
}

/// The reporting instances of the Events about Service `name`.
async fn reporters(client: &Client, name: &str) -> Vec<String> {
    objects::events_about(client, name).await.into_iter().filter_map(|e| e.reporting_instance).collect()
}

#[tokio::test(flavor = "current_thread")]
async fn two_replicas_only_the_leader_writes() {
    if !apiserver::available_or_skip("two_replicas_only_the_leader_writes") {
        return;
    }
    let (server, client, first) = cluster_with(&[("first", "  addresses: [192.0.2.0/30]\n")]).await;
    let mut replicas = std::collections::BTreeMap::from([
        ("herald-controller-0", first),
        ("herald-controller-1", Controller::start_as(&server, "herald-controller-1")),
    ]);
    let leases = Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(client.clone(), POOLS);
    let holder = async || leases.get_opt("herald-controller").await.unwrap()?.spec?.holder_identity;
    // Whichever replica is ready first takes the Lease.
    let leader = eventually(async || holder().await).await.expect("a leader");
    let other = replicas.keys().find(|n| **n != leader).unwrap().to_string();

    create_service(&client, "one", "").await;
    assert_eq!(assigned(&client, "one").await, Some(vec!["192.0.2.0".to_string()]));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(reporters(&client, "one").await, std::slice::from_ref(&leader), "only the leader writes");

    // The leader dies; once its Lease runs out the other replica takes over.
    drop(replicas.remove(leader.as_str()));
    let taken = eventually(async || holder().await.filter(|h| *h == other)).await;
    assert!(taken.is_some(), "the Lease did not move to {other}");
    create_service(&client, "two", "").await;
    assert_eq!(assigned(&client, "two").await, Some(vec!["192.0.2.1".to_string()]));
    // The Event follows the status write: wait for it, then for who wrote it.
    let reported = eventually(async || Some(reporters(&client, "two").await).filter(|r| !r.is_empty())).await;
    assert_eq!(reported, Some(vec![other]));
    assert_eq!(ingress(&client, "one").await, ["192.0.2.0"], "the new leader kept what was given");
}

#[tokio::test(flavor = "current_thread")]
async fn dual_stack() {
    if !apiserver::available_or_skip("dual_stack") {
        return;
    }
    let (_server, client, _controller) =
        cluster_with(&[("dual", "  addresses: [192.0.2.0/30, 2001:db8::/126]\n")]).await;
    let families = |policy: &str, list: &str| format!("  ipFamilyPolicy: {policy}\n  ipFamilies: [{list}]\n");
    create_service(&client, "both", &families("RequireDualStack", "IPv6, IPv4")).await;
    create_service(&client, "six", &families("SingleStack", "IPv6")).await;
    assert_eq!(
        assigned(&client, "both").await,
        Some(vec!["2001:db8::".to_string(), "192.0.2.0".to_string()])
    );
    assert_eq!(assigned(&client, "six").await, Some(vec!["2001:db8::1".to_string()]));
}
