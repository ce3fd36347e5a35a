//! deploy/ against a real kube-apiserver: every manifest that kustomization.yaml lists is
//! created (the server validates each), as `kubectl apply -k deploy/` would.

use herald_tests::apiserver::{self, ApiServer};
use k8s_openapi::api::apps::v1::Deployment;
use kube::{
    Api,
    api::{DynamicObject, PostParams},
    core::GroupVersionKind,
    discovery::{Discovery, Scope},
};
use serde::Deserialize as _;

#[tokio::test(flavor = "current_thread")]
async fn kustomization_applies_to_a_real_apiserver() {
    if !apiserver::available_or_skip("kustomization_applies_to_a_real_apiserver") {
        return;
    }
    let server = ApiServer::start().unwrap();
    let client = server.client().await.unwrap();
    let discovery = Discovery::new(client.clone()).run().await.unwrap();

    let deploy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    let kustomization: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(deploy.join("kustomization.yaml")).unwrap())
            .unwrap();
    let mut created = Vec::new();
    for file in kustomization["resources"].as_sequence().unwrap() {
        let path = deploy.join(file.as_str().unwrap());
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let obj = DynamicObject::deserialize(doc).unwrap();
            let types = obj.types.clone().unwrap();
            let (group, version) = types.api_version.split_once('/').unwrap_or(("", &types.api_version));
            let gvk = GroupVersionKind::gvk(group, version, &types.kind);
            let (resource, caps) = discovery
                .resolve_gvk(&gvk)
                .unwrap_or_else(|| panic!("{}: unknown kind {gvk:?}", path.display()));
            let api: Api<DynamicObject> = match caps.scope {
                Scope::Namespaced => Api::namespaced_with(
                    client.clone(),
                    obj.metadata.namespace.as_deref().unwrap(),
                    &resource,
                ),
                Scope::Cluster => Api::all_with(client.clone(), &resource),
            };
            api.create(&PostParams::default(), &obj).await.unwrap_or_else(|e| {
                panic!("{} {}: {e}", types.kind, obj.metadata.name.clone().unwrap_or_default())
            });
            created.push(format!("{}/{}", types.kind, obj.metadata.name.unwrap_or_default()));
        }
    }
    for expected in [
        "CustomResourceDefinition/ipaddresspools.metallb.io",
        "Namespace/herald-system",
        "ClusterRole/herald-controller",
        "Role/herald-controller",
        "Deployment/herald-controller",
    ] {
        assert!(created.iter().any(|c| c == expected), "{expected} not in {created:?}");
    }
    let deployment =
        Api::<Deployment>::namespaced(client, "herald-system").get("herald-controller").await.unwrap();
    let spec = deployment.spec.unwrap();
    assert_eq!(spec.replicas, Some(2));
    let container = &spec.template.spec.unwrap().containers[0];
    let security = container.security_context.clone().unwrap();
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(security.capabilities.unwrap().drop, Some(vec!["ALL".to_string()]));
}
