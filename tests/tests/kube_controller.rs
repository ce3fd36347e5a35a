//! herald-controller against a real kube-apiserver: pools and Services in, statuses,
//! annotations, Events and pool counts out.

use std::time::Duration;

use herald_controller::crd::IPAddressPool;
use herald_tests::{
    apiserver::{self, ApiServer},
    workspace_bin,
};
use k8s_openapi::api::{core::v1::Namespace, core::v1::Service, events::v1::Event};
use kube::{
    Api, Client,
    api::{ListParams, PostParams},
};

const POOLS: &str = "metallb-system";

/// The controller binary, running against `server` until dropped.
struct Controller(std::process::Child);

impl Controller {
    fn start(server: &ApiServer) -> Self {
        let child = std::process::Command::new(workspace_bin("herald-controller"))
            .env("KUBECONFIG", &server.kubeconfig)
            .env("POD_NAMESPACE", POOLS)
            .spawn()
            .expect("herald-controller");
        Self(child)
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

/// Polls `check` every 100 ms for up to 20 s; returns its last answer.
async fn eventually<T>(mut check: impl AsyncFnMut() -> Option<T>) -> Option<T> {
    for _ in 0..200 {
        if let Some(v) = check().await {
            return Some(v);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

async fn ingress(client: &Client, name: &str) -> Vec<String> {
    let svc = Api::<Service>::namespaced(client.clone(), "default").get(name).await.unwrap();
    let ingress = svc.status.and_then(|s| s.load_balancer).and_then(|lb| lb.ingress).unwrap_or_default();
    ingress.into_iter().filter_map(|i| i.ip).collect()
}

/// The notes of the Events with `reason` about Service `name`.
async fn events(client: &Client, name: &str, reason: &str) -> Vec<String> {
    let list =
        Api::<Event>::namespaced(client.clone(), "default").list(&ListParams::default()).await.unwrap();
    list.items
        .into_iter()
        .filter(|e| {
            e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
                && e.reason.as_deref() == Some(reason)
        })
        .filter_map(|e| e.note)
        .collect()
}

#[tokio::test(flavor = "current_thread")]
async fn allocates_reports_and_survives_a_restart() {
    if !apiserver::available_or_skip("allocates_reports_and_survives_a_restart") {
        return;
    }
    let server = ApiServer::start().unwrap();
    let client = server.client().await.unwrap();
    apiserver::apply_crds(&client).await;
    let ns: Namespace = yaml(&format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {POOLS}\n"));
    Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &ns).await.unwrap();
    let pool: IPAddressPool = yaml(&format!(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: first\n  namespace: {POOLS}\n\
         spec:\n  addresses: [192.0.2.0/30]\n"
    ));
    let pools = Api::<IPAddressPool>::namespaced(client.clone(), POOLS);
    pools.create(&PostParams::default(), &pool).await.unwrap();

    let controller = Controller::start(&server);
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

    let allocated =
        eventually(async || Some(events(&client, "web", "IPAllocated").await).filter(|e| !e.is_empty()))
            .await;
    assert_eq!(allocated, Some(vec!["Assigned IP 192.0.2.0 from pool first".to_string()]));
    let failed = eventually(async || {
        Some(events(&client, "outside", "AllocationFailed").await).filter(|e| !e.is_empty())
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
