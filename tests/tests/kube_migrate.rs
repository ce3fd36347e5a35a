//! docs/migrating.md's migration from MetalLB, step by step on a real API server: MetalLB's CRDs (its
//! schema, tests/metallb/crds) with a user's configuration applied as `kubectl apply` leaves it
//! (last-applied annotation, server fields, a status MetalLB's controller wrote); then
//! `herald-controller migrate` (the real binary), MetalLB's CRDs deleted with everything in them,
//! Herald's CRDs applied, and the saved output created in herald-system. Every pool and
//! advertisement must come back with its name, labels, annotations and spec, decodable by
//! Herald's types.

use std::{collections::BTreeMap, path::Path, process::Command};

use herald_kube::crd::{IPAddressPool, L2Advertisement};
use herald_tests::{apiserver, objects, poll, workspace_bin};
use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api, Client,
    api::{DynamicObject, ListParams, Patch, PatchParams, PostParams},
    discovery::{ApiResource, Discovery},
};
use serde_json::{Value, json};

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

#[tokio::test(flavor = "current_thread")]
async fn migrate_carries_metallb_configuration_over_as_the_readme_says() {
    if !apiserver::available_or_skip("migrate_carries_metallb_configuration_over") {
        return;
    }
    let server = apiserver::ApiServer::start().expect("API server");
    let client = server.client().await.unwrap();
    let metallb = Path::new(env!("CARGO_MANIFEST_DIR")).join("metallb");
    let metallb_crds = objects::apply_crd_file(&client, &metallb.join("crds/metallb-v1beta1.yaml")).await;
    for ns in ["metallb-system", "herald-system"] {
        let namespace: Namespace = serde_json::from_value(json!({ "metadata": { "name": ns } })).unwrap();
        Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &namespace).await.unwrap();
    }

    // The user's configuration, applied the way `kubectl apply` does, and a status MetalLB wrote.
    let discovery = Discovery::new(client.clone()).run().await.unwrap();
    let text = std::fs::read_to_string(metallb.join("migrate/metallb-system.yaml")).unwrap();
    let applied = objects::documents(&text).into_iter().map(with_last_applied).collect();
    objects::create_all(&client, &discovery, applied).await;
    let pools = raw(&client, "metallb-system", "IPAddressPool", "ipaddresspools");
    let status = json!({ "status": { "assignedIPv4": 3, "availableIPv4": 136 } });
    pools.patch_status("production", &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
    let before = user_fields(&client, "metallb-system").await;
    assert_eq!(before.len(), 4, "{before:#?}");
    assert_eq!(before["IPAddressPool/production"]["spec"]["autoAssign"], true, "MetalLB's defaults stored");

    // Step 1: the export, before MetalLB goes.
    let out = Command::new(workspace_bin("herald-controller"))
        .args(["migrate", "--from", "metallb-system", "--to", "herald-system"])
        .env("KUBECONFIG", &server.kubeconfig)
        .output()
        .unwrap();
    let (yaml, stderr) = (String::from_utf8(out.stdout).unwrap(), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "migrate failed: {stderr}");
    assert!(stderr.contains("1 BGPPeer object(s) in metallb-system not exported"), "{stderr}");
    for server_field in
        ["uid:", "resourceVersion:", "managedFields:", "creationTimestamp:", "status:", LAST_APPLIED]
    {
        assert!(!yaml.contains(server_field), "{server_field} exported:\n{yaml}");
    }

    // Step 2: MetalLB removed; its CRDs take its objects with them.
    objects::delete_crds(&client, &metallb_crds).await;
    // Discovery may meet a group version while the server removes it (a 404): asked again.
    let gone = poll::until_async(std::time::Duration::from_secs(30), async || {
        let discovery = Discovery::new(client.clone()).run().await;
        discovery.is_ok_and(|d| d.groups().all(|g| g.name() != "metallb.io"))
    })
    .await;
    assert!(gone.is_some(), "metallb.io still served after its CRDs were deleted");

    // Step 3: Herald's CRDs, then the saved file, created as `kubectl create -f` would.
    objects::apply_crds(&client).await;
    let discovery = poll::until_async(std::time::Duration::from_secs(30), async || {
        Discovery::new(client.clone()).run().await.ok()
    })
    .await
    .expect("discovery after Herald's CRDs");
    let created = objects::create_all(&client, &discovery, objects::documents(&yaml)).await;
    assert_eq!(created.len(), 4, "{created:?}");
    let after = user_fields(&client, "herald-system").await;
    assert_eq!(after, before, "what the user wrote, carried over");

    // Herald reads them.
    let lp = ListParams::default();
    let pools = Api::<IPAddressPool>::namespaced(client.clone(), "herald-system").list(&lp).await.unwrap();
    let ads = Api::<L2Advertisement>::namespaced(client.clone(), "herald-system").list(&lp).await.unwrap();
    assert_eq!((pools.items.len(), ads.items.len()), (2, 2));
    let edge = ads.items.iter().find(|a| a.metadata.name.as_deref() == Some("edge")).unwrap();
    assert_eq!(edge.spec.preferred_node_selectors[0].weight, 80);
}

#[tokio::test(flavor = "current_thread")]
async fn migrate_refuses_to_export_nothing() {
    if !apiserver::available_or_skip("migrate_refuses_to_export_nothing") {
        return;
    }
    let server = apiserver::ApiServer::start().expect("API server");
    let migrate = || {
        let out = Command::new(workspace_bin("herald-controller"))
            .arg("migrate")
            .env("KUBECONFIG", &server.kubeconfig)
            .output()
            .unwrap();
        assert!(!out.status.success() && out.stdout.is_empty());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = migrate();
    assert!(err.contains("does not serve ipaddresspools.metallb.io"), "{err}");
    let client = server.client().await.unwrap();
    objects::apply_crds(&client).await;
    let err = migrate();
    assert!(err.contains("namespace metallb-system holds no IPAddressPool"), "{err}");
}

/// `obj` with the annotation `kubectl apply` adds: the object as applied.
fn with_last_applied(mut obj: DynamicObject) -> DynamicObject {
    let applied = serde_json::to_string(&obj).unwrap();
    obj.metadata.annotations.get_or_insert_default().insert(LAST_APPLIED.into(), applied);
    obj
}

fn raw(client: &Client, namespace: &str, kind: &str, plural: &str) -> Api<DynamicObject> {
    let gvk = kube::core::GroupVersionKind::gvk("metallb.io", "v1beta1", kind);
    Api::namespaced_with(client.clone(), namespace, &ApiResource::from_gvk_with_plural(&gvk, plural))
}

/// Every pool and advertisement in `namespace` as `Kind/name` -> labels, the annotations a user
/// wrote, and spec, as stored.
async fn user_fields(client: &Client, namespace: &str) -> BTreeMap<String, Value> {
    let mut fields = BTreeMap::new();
    for (kind, plural) in [("IPAddressPool", "ipaddresspools"), ("L2Advertisement", "l2advertisements")] {
        for obj in raw(client, namespace, kind, plural).list(&ListParams::default()).await.unwrap() {
            let mut annotations = obj.metadata.annotations.clone().unwrap_or_default();
            annotations.remove(LAST_APPLIED);
            let name = format!("{kind}/{}", obj.metadata.name.clone().unwrap());
            let value = json!({ "labels": obj.metadata.labels, "annotations": annotations, "spec": obj.data["spec"] });
            fields.insert(name, value);
        }
    }
    fields
}
