//! herald-controller against a real kube-apiserver: pools and Services in, statuses,
//! annotations, Events and pool counts out.

use std::time::Duration;

use herald_kube::crd::IPAddressPool;
use herald_tests::{
    apiserver::{self, ApiServer},
    objects, poll, workspace_bin,
};
use k8s_openapi::api::{core::v1::Namespace, core::v1::Service, events::v1::Event};
use kube::{
    Api, Client,
    api::{ListParams, PostParams},
};

const POOLS: &str = "metallb-system";

/// The controller binary, running against `server` until dropped; `port` serves its telemetry.
struct Controller(std::process::Child, u16);

impl Controller {
    fn start(server: &ApiServer) -> Self {
        Self::start_as(server, "herald-controller-0")
    }

    /// A replica called `name`, with a 3 s leader Lease.
    fn start_as(server: &ApiServer, name: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = std::process::Command::new(workspace_bin("herald-controller"))
            .args(["--lease-seconds", "3", "--telemetry", &format!("127.0.0.1:{port}")])
            .env("KUBECONFIG", &server.kubeconfig)
            .env("POD_NAMESPACE", POOLS)
            .env("POD_NAME", name)
            .spawn()
            .expect("herald-controller");
        Self(child, port)
    }

    /// GET `path` on its telemetry endpoint: (HTTP status, body).
    fn get(&self, path: &str) -> (u16, String) {
        let out = std::process::Command::new("curl")
            .args(["-s", "-w", "\n%{http_code}", &format!("http://127.0.0.1:{}{path}", self.1)])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_owned())
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

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

#[tokio::test(flavor = "current_thread")]
async fn a_pool_edit_moves_what_it_dropped() {
    if !apiserver::available_or_skip("a_pool_edit_moves_what_it_dropped") {
        return;
    }
    let (_server, client, _controller) = cluster_with(&[("first", "  addresses: [192.0.2.0/30]\n")]).await;
    create_service(&client, "keep", "  loadBalancerIP: 192.0.2.3\n").await;
    create_service(&client, "move", "").await;
    assert_eq!(assigned(&client, "move").await, Some(vec!["192.0.2.0".to_string()]));
    assert_eq!(assigned(&client, "keep").await, Some(vec!["192.0.2.3".to_string()]));
    // The pool shrinks to .2-.3: "move" gets .2 with ClearAssignment; "keep" is untouched.
    let pools = Api::<IPAddressPool>::namespaced(client.clone(), POOLS);
    let patch =
        kube::api::Patch::Merge(serde_json::json!({ "spec": { "addresses": ["192.0.2.2-192.0.2.3"] } }));
    pools.patch("first", &Default::default(), &patch).await.unwrap();
    let moved =
        eventually(async || Some(ingress(&client, "move").await).filter(|i| i == &["192.0.2.2"])).await;
    assert!(moved.is_some(), "move: {:?}", ingress(&client, "move").await);
    let cleared =
        eventually(async || objects::events(&client, "move", "ClearAssignment").await.into_iter().next())
            .await;
    assert_eq!(cleared.as_deref(), Some("Released IP 192.0.2.0: no longer valid"));
    assert_eq!(ingress(&client, "keep").await, ["192.0.2.3"]);
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
