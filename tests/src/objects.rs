//! What tests create on the API server and read back: CRDs (deploy/'s or a fixture's), objects
//! from YAML as `kubectl create -f` makes them, and Events.

use std::{path::Path, time::Duration};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

/// Applies every CRD in deploy/crds and waits until the server serves them.
pub async fn apply_crds(client: &kube::Client) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/crds");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        names.extend(apply_crd_file(client, &entry.unwrap().path()).await);
    }
    assert_eq!(names.len(), 3, "{names:?}");
}

/// Creates every CRD in the YAML file at `path` and waits until the server serves them; returns
/// their names.
pub async fn apply_crd_file(client: &kube::Client, path: &Path) -> Vec<String> {
    use serde::Deserialize as _;
    let crds: kube::Api<CustomResourceDefinition> = kube::Api::all(client.clone());
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut names = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(&text) {
        let crd =
            CustomResourceDefinition::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        names.push(crd.metadata.name.clone().unwrap());
        crds.create(&kube::api::PostParams::default(), &crd)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    for name in &names {
        let established = async {
            loop {
                let crd = crds.get(name).await.unwrap();
                let conditions = crd.status.and_then(|s| s.conditions).unwrap_or_default();
                if conditions.iter().any(|c| c.type_ == "Established" && c.status == "True") {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(30), established)
            .await
            .unwrap_or_else(|_| panic!("{name} not established"));
    }
    names
}

/// Deletes the CRDs `names` (and with them every object of their kinds), and waits until they
/// are gone.
pub async fn delete_crds(client: &kube::Client, names: &[String]) {
    let crds: kube::Api<CustomResourceDefinition> = kube::Api::all(client.clone());
    for name in names {
        crds.delete(name, &Default::default()).await.unwrap_or_else(|e| panic!("deleting {name}: {e}"));
    }
    let gone = async {
        for name in names {
            while crds.get_opt(name).await.unwrap().is_some() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), gone).await.expect("CRDs deleted within 60 s");
}

/// Creates every object in the YAML file at `path`, as `kubectl create -f` would; returns them
/// as `Kind/name`. Panics, naming the object, on the first one the server refuses.
pub async fn create_from_file(
    client: &kube::Client,
    discovery: &kube::discovery::Discovery,
    path: &Path,
) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    create_all(client, discovery, documents(&text)).await
}

/// The objects of a YAML stream.
pub fn documents(text: &str) -> Vec<kube::api::DynamicObject> {
    use serde::Deserialize as _;
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|doc| kube::api::DynamicObject::deserialize(doc).unwrap_or_else(|e| panic!("{e}\n{text}")))
        .collect()
}

/// Creates `objects` in order, each as its kind says (discovery resolves it); returns them as
/// `Kind/name`. Panics, naming the object, on the first one the server refuses.
pub async fn create_all(
    client: &kube::Client,
    discovery: &kube::discovery::Discovery,
    objects: Vec<kube::api::DynamicObject>,
) -> Vec<String> {
    use kube::{
        Api,
        api::{DynamicObject, PostParams},
        core::GroupVersionKind,
        discovery::Scope,
    };
    let mut created = Vec::new();
    for obj in objects {
        let types = obj.types.clone().unwrap();
        let (group, version) = types.api_version.split_once('/').unwrap_or(("", &types.api_version));
        let gvk = GroupVersionKind::gvk(group, version, &types.kind);
        let (resource, caps) = discovery.resolve_gvk(&gvk).unwrap_or_else(|| panic!("unknown kind {gvk:?}"));
        let api: Api<DynamicObject> = match caps.scope {
            Scope::Namespaced => {
                Api::namespaced_with(client.clone(), obj.metadata.namespace.as_deref().unwrap(), &resource)
            }
            Scope::Cluster => Api::all_with(client.clone(), &resource),
        };
        api.create(&PostParams::default(), &obj).await.unwrap_or_else(|e| {
            panic!("{} {}: {e}", types.kind, obj.metadata.name.clone().unwrap_or_default())
        });
        created.push(format!("{}/{}", types.kind, obj.metadata.name.unwrap_or_default()));
    }
    created
}

/// The Events in `default` about Service `name`.
pub async fn events_about(client: &kube::Client, name: &str) -> Vec<k8s_openapi::api::events::v1::Event> {
    let api = kube::Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), "default");
    let list = api.list(&Default::default()).await.unwrap();
    list.items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .collect()
}

/// The notes of the Events with `reason` about Node `name` (in kube-system).
pub async fn node_events(client: &kube::Client, name: &str, reason: &str) -> Vec<String> {
    let api = kube::Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), "kube-system");
    let list = api.list(&Default::default()).await.unwrap();
    list.items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .filter(|e| e.reason.as_deref() == Some(reason))
        .filter_map(|e| e.note)
        .collect()
}

/// The notes of the Events with `reason` about Service `name` in `default`.
pub async fn events(client: &kube::Client, name: &str, reason: &str) -> Vec<String> {
    events_about(client, name)
        .await
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .filter_map(|e| e.note)
        .collect()
}
