//! The writer against kube's tower-test mock: the exact requests a pass sends. The test server
//! (v1.20) drops spec.loadBalancerClass, so a Service of another class is shown here.

use http::{Request, Response};
use kube::client::Body;
use tower_test::mock;

use super::*;
use crate::plan::{Cluster, plan};

fn service(yaml_spec: &str) -> Service {
    serde_yaml_ng::from_str(&format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: default\n  uid: u1\nspec:\n{yaml_spec}"
    ))
    .unwrap()
}

fn pool() -> IPAddressPool {
    let spec =
        herald_kube::crd::IPAddressPoolSpec { addresses: vec!["192.0.2.0/30".into()], ..Default::default() };
    let mut pool = IPAddressPool::new("first", spec);
    pool.metadata.namespace = Some("herald-system".into());
    pool
}

/// Answers each request the writer sends with an object of the kind it asked for, recording
/// "METHOD path".
async fn serve(mut handle: mock::Handle<Request<Body>, Response<Body>>, svc: Service) -> Vec<String> {
    let mut seen = Vec::new();
    while let Some((request, respond)) = handle.next_request().await {
        let path = request.uri().path().to_owned();
        let body = if path.contains("/events") {
            serde_json::json!({ "apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": { "name": "e" }, "eventTime": null })
        } else if path.contains("/ipaddresspools/") {
            serde_json::to_value(pool()).unwrap()
        } else {
            serde_json::to_value(&svc).unwrap()
        };
        seen.push(format!("{} {path}", request.method()));
        respond.send_response(Response::builder().body(Body::from(body.to_string().into_bytes())).unwrap());
    }
    seen
}

async fn requests_for(services: Vec<Service>, class: Option<&str>) -> Vec<String> {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let pools = vec![Arc::new(pool())];
    let cluster = Cluster { class: class.map(str::to_owned), ..Default::default() };
    let plan = plan(&pools, &services, &cluster);
    let mut writer =
        Writer::new(client.clone(), Events::new(client, "herald-controller", "test"), "herald-system");
    let server = tokio::spawn(serve(handle, services[0].clone()));
    let services: Vec<Arc<Service>> = services.into_iter().map(Arc::new).collect();
    let errors = writer.write(&plan, &services, &pools).await;
    drop(writer);
    let seen = server.await.unwrap();
    assert_eq!(errors, 0, "writes failed: {seen:?}");
    seen
}

#[tokio::test]
async fn writes_status_annotation_event_and_pool_status_for_a_handled_service() {
    let seen = requests_for(vec![service("  type: LoadBalancer\n")], None).await;
    assert_eq!(
        seen,
        [
            "PATCH /api/v1/namespaces/default/services/web/status",
            "PATCH /api/v1/namespaces/default/services/web",
            "POST /apis/events.k8s.io/v1/namespaces/default/events",
            "PATCH /apis/metallb.io/v1beta1/namespaces/herald-system/ipaddresspools/first/status",
        ]
    );
}

#[tokio::test]
async fn never_touches_a_service_of_another_class() {
    let other = service("  type: LoadBalancer\n  loadBalancerClass: someone-else\n");
    let seen = requests_for(vec![other.clone()], None).await;
    assert_eq!(
        seen,
        ["PATCH /apis/metallb.io/v1beta1/namespaces/herald-system/ipaddresspools/first/status"],
        "only the pool's own status"
    );
    // Given that class, the controller handles it.
    let seen = requests_for(vec![other], Some("someone-else")).await;
    assert_eq!(seen[0], "PATCH /api/v1/namespaces/default/services/web/status");
}
