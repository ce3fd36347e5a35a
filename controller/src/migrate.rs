//! `herald-controller migrate`: MetalLB's L2 configuration (IPAddressPools and L2Advertisements)
//! as YAML to create again after the switch, in Herald's namespace, clean of everything the API
//! server and client tools wrote. `kubectl get -o yaml` keeps `uid`, `resourceVersion` and
//! `managedFields`, and creating such objects again fails; this keeps only what a user wrote.

use std::fmt::Write as _;

use kube::{
    Api, Client,
    api::{DynamicObject, ListParams},
    core::GroupVersionKind,
    discovery::ApiResource,
};
use serde_json::{Map, Value};

/// The kinds exported, in the order they are to be created (advertisements name pools).
pub const EXPORTED: [(&str, &str); 2] =
    [("IPAddressPool", "ipaddresspools"), ("L2Advertisement", "l2advertisements")];

/// MetalLB's kinds Herald does not read: counted, named on stderr, not exported.
pub const NOT_READ: [(&str, &str); 4] = [
    ("BGPPeer", "bgppeers"),
    ("BGPAdvertisement", "bgpadvertisements"),
    ("BFDProfile", "bfdprofiles"),
    ("Community", "communities"),
];

/// Written by `kubectl apply`; names the old namespace and would confuse the next apply.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// What `migrate` found: the YAML to apply, and what the user should know about.
#[derive(Debug)]
pub struct Export {
    pub yaml: String,
    pub notes: Vec<String>,
}

/// One object as it is to be created in `namespace`: apiVersion, kind, name, labels, the
/// annotations a user wrote, and spec. No status (Herald's components write their own), no server
/// fields, no owner references (their owners stay behind).
pub fn clean(kind: &str, obj: &Value, namespace: &str) -> Value {
    let meta = &obj["metadata"];
    let mut metadata = Map::new();
    metadata.insert("name".into(), meta["name"].clone());
    metadata.insert("namespace".into(), namespace.into());
    if let Some(labels) = meta["labels"].as_object().filter(|l| !l.is_empty()) {
        metadata.insert("labels".into(), labels.clone().into());
    }
    let annotations: Map<String, Value> = meta["annotations"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.as_str() != LAST_APPLIED)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !annotations.is_empty() {
        metadata.insert("annotations".into(), annotations.into());
    }
    let mut out = Map::new();
    out.insert("apiVersion".into(), "metallb.io/v1beta1".into());
    out.insert("kind".into(), kind.into());
    out.insert("metadata".into(), metadata.into());
    if !obj["spec"].is_null() {
        out.insert("spec".into(), obj["spec"].clone());
    }
    out.into()
}

/// The YAML stream for `objects` (kind, object as listed), pools first, each kind by name.
pub fn render(from: &str, to: &str, objects: &[(&str, Value)]) -> String {
    let mut out = format!(
        "# MetalLB's L2 configuration from namespace {from}, for {to} (herald-controller migrate).\n"
    );
    for (kind, _) in EXPORTED {
        let mut these: Vec<Value> =
            objects.iter().filter(|(k, _)| *k == kind).map(|(_, o)| clean(kind, o, to)).collect();
        these.sort_by(|a, b| a["metadata"]["name"].as_str().cmp(&b["metadata"]["name"].as_str()));
        for obj in these {
            let _ = write!(out, "---\n{}", serde_yaml_ng::to_string(&obj).expect("JSON values serialize"));
        }
    }
    out
}

/// Reads MetalLB's objects in `from` and renders them for `to`. Fails, saying why, when the
/// server does not serve MetalLB's kinds or `from` holds no pool: an empty export would
/// silently lose the configuration.
pub async fn export(client: &Client, from: &str, to: &str) -> anyhow::Result<Export> {
    let mut objects = Vec::new();
    for (kind, plural) in EXPORTED {
        let listed = list(client, from, kind, plural).await?.ok_or_else(|| {
            anyhow::anyhow!(
                "the API server does not serve {plural}.metallb.io: are MetalLB's CRDs (v0.13 or later) \
                 installed? An older MetalLB reads a ConfigMap; MetalLB's configmaptocrs tool turns it \
                 into these objects"
            )
        })?;
        objects.extend(listed.into_iter().map(|o| (kind, o)));
    }
    if !objects.iter().any(|(k, _)| *k == "IPAddressPool") {
        anyhow::bail!(
            "namespace {from} holds no IPAddressPool: is MetalLB's configuration in another namespace?"
        );
    }
    let mut notes = Vec::new();
    if !objects.iter().any(|(k, _)| *k == "L2Advertisement") {
        notes.push(format!(
            "namespace {from} holds no L2Advertisement: MetalLB announces these pools by BGP only, \
             and Herald will not announce them until one exists"
        ));
    }
    for (kind, plural) in NOT_READ {
        let n = list(client, from, kind, plural).await?.map_or(0, |l| l.len());
        if n > 0 {
            notes.push(format!(
                "{n} {kind} object(s) in {from} not exported: Herald does not read BGP configuration"
            ));
        }
    }
    Ok(Export { yaml: render(from, to, &objects), notes })
}

/// The objects of `kind` in `namespace` as JSON, or `None` when the server does not serve it.
async fn list(
    client: &Client,
    namespace: &str,
    kind: &str,
    plural: &str,
) -> anyhow::Result<Option<Vec<Value>>> {
    let resource =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("metallb.io", "v1beta1", kind), plural);
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
    match api.list(&ListParams::default()).await {
        Ok(list) => Ok(Some(list.items.iter().map(serde_json::to_value).collect::<Result<_, _>>()?)),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
        Err(e) => Err(anyhow::Error::new(e).context(format!("listing {plural}.metallb.io in {namespace}"))),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// An advertisement as `kubectl get -o json` shows one MetalLB's users applied.
    fn listed(name: &str) -> Value {
        json!({
            "apiVersion": "metallb.io/v1beta1",
            "kind": "L2Advertisement",
            "metadata": {
                "name": name,
                "namespace": "metallb-system",
                "uid": "2b9f6c1e-0000-4000-8000-000000000001",
                "resourceVersion": "4711",
                "generation": 3,
                "creationTimestamp": "2026-01-02T03:04:05Z",
                "managedFields": [{ "manager": "kubectl", "operation": "Apply" }],
                "ownerReferences": [{ "apiVersion": "v1", "kind": "ConfigMap", "name": "config", "uid": "x" }],
                "finalizers": ["example.com/keep"],
                "labels": { "site": "east" },
                "annotations": { LAST_APPLIED: "{\"kind\":\"L2Advertisement\"}", "owner": "net-team" },
            },
            "spec": { "ipAddressPools": ["first-pool"], "interfaces": ["eth0"] },
            "status": {},
        })
    }

    #[test]
    fn keeps_what_a_user_wrote_and_nothing_the_server_did() {
        let want = json!({
            "apiVersion": "metallb.io/v1beta1",
            "kind": "L2Advertisement",
            "metadata": {
                "name": "east",
                "namespace": "herald-system",
                "labels": { "site": "east" },
                "annotations": { "owner": "net-team" },
            },
            "spec": { "ipAddressPools": ["first-pool"], "interfaces": ["eth0"] },
        });
        assert_eq!(clean("L2Advertisement", &listed("east"), "herald-system"), want);
    }

    #[test]
    fn a_spec_less_advertisement_stays_spec_less() {
        let obj =
            json!({ "metadata": { "name": "all", "annotations": { LAST_APPLIED: "{}" }, "labels": {} } });
        let want = json!({
            "apiVersion": "metallb.io/v1beta1",
            "kind": "L2Advertisement",
            "metadata": { "name": "all", "namespace": "herald-system" },
        });
        assert_eq!(clean("L2Advertisement", &obj, "herald-system"), want);
    }

    #[test]
    fn pools_come_first_and_each_kind_by_name() {
        let pool =
            |name: &str| json!({ "metadata": { "name": name }, "spec": { "addresses": ["192.0.2.0/24"] } });
        let objects = [
            ("L2Advertisement", listed("b")),
            ("IPAddressPool", pool("z")),
            ("L2Advertisement", listed("a")),
            ("IPAddressPool", pool("y")),
        ];
        let yaml = render("metallb-system", "herald-system", &objects);
        let docs: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&yaml)
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .collect();
        let names: Vec<String> = docs
            .iter()
            .map(|d| format!("{}/{}", d["kind"].as_str().unwrap(), d["metadata"]["name"].as_str().unwrap()))
            .collect();
        assert_eq!(names, ["IPAddressPool/y", "IPAddressPool/z", "L2Advertisement/a", "L2Advertisement/b"]);
        assert!(yaml.starts_with("# MetalLB's L2 configuration from namespace metallb-system"), "{yaml}");
    }
}
