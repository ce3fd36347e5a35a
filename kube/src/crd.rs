//! MetalLB's L2 configuration API, `metallb.io/v1beta1`, with the same kinds, field names,
//! schema defaults, optional parts, status subresources and printer columns, so that every
//! object MetalLB's CRDs accept is accepted here, and decodes: the pools and advertisements
//! users keep in git work unchanged. BGP kinds are out of scope.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// (De)serialization of a spec that may be left out: a missing or null spec is the default
/// one. The type derives its own (de)serializers with `#[serde(remote = "Self")]`, which turns
/// them into inherent functions; these impls wrap them.
macro_rules! optional_spec {
    ($spec:ident) => {
        impl<'de> Deserialize<'de> for $spec {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct Present($spec);
                impl<'de> Deserialize<'de> for Present {
                    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                        $spec::deserialize(deserializer).map(Present)
                    }
                }
                Ok(Option::<Present>::deserialize(deserializer)?.map(|p| p.0).unwrap_or_default())
            }
        }

        impl Serialize for $spec {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                $spec::serialize(self, serializer)
            }
        }
    };
}

/// A pool of addresses LoadBalancer Services can be given.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "metallb.io",
    version = "v1beta1",
    kind = "IPAddressPool",
    namespaced,
    status = "IPAddressPoolStatus",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Auto Assign","type":"boolean","jsonPath":".spec.autoAssign"}"#,
    printcolumn = r#"{"name":"Avoid Buggy IPs","type":"boolean","jsonPath":".spec.avoidBuggyIPs"}"#,
    printcolumn = r#"{"name":"Addresses","type":"string","jsonPath":".spec.addresses"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct IPAddressPoolSpec {
    /// CIDRs (`192.0.2.0/28`, `2001:db8::/124`) or inclusive ranges (`192.0.2.10-192.0.2.20`).
    pub addresses: Vec<String>,
    /// Whether addresses are given to Services that did not ask for this pool or an address in
    /// it. Default true (the API server stores it, as MetalLB's schema has it).
    #[serde(default = "yes")]
    pub auto_assign: bool,
    /// Never give out IPv4 addresses ending in .0 or .255 (some old clients drop them).
    #[serde(default, rename = "avoidBuggyIPs")]
    pub avoid_buggy_ips: bool,
    /// Which Services may be given addresses from this pool, and in what order of pools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_allocation: Option<ServiceAllocation>,
}

impl Default for IPAddressPoolSpec {
    fn default() -> Self {
        Self { addresses: Vec::new(), auto_assign: true, avoid_buggy_ips: false, service_allocation: None }
    }
}

fn yes() -> bool {
    true
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAllocation {
    /// Pools with a lower number are tried first; pools without one (or with 0, which MetalLB
    /// reads as none) come last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespace_selectors: Vec<LabelSelector>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_selectors: Vec<LabelSelector>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IPAddressPoolStatus {
    #[serde(rename = "assignedIPv4")]
    pub assigned_ipv4: i64,
    #[serde(rename = "assignedIPv6")]
    pub assigned_ipv6: i64,
    #[serde(rename = "availableIPv4")]
    pub available_ipv4: i64,
    #[serde(rename = "availableIPv6")]
    pub available_ipv6: i64,
    /// Herald's addition to MetalLB's status: `Ready`, False with the reason when the pool is
    /// invalid and ignored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>,
}

/// Which pools are announced at layer 2, from which nodes and interfaces. The spec may be left
/// out (MetalLB's main example): every pool, every node, every interface.
// A spec-less object decodes as the empty spec (`optional_spec!`), and the CRD does not require
// one (`definitions()`).
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
// The derived (de)serializers become inherent functions, wrapped by the impls below.
#[serde(remote = "Self")]
#[kube(
    group = "metallb.io",
    version = "v1beta1",
    kind = "L2Advertisement",
    namespaced,
    status = "L2AdvertisementStatus",
    derive = "Default",
    derive = "PartialEq",
    printcolumn = r#"{"name":"IPAddressPools","type":"string","jsonPath":".spec.ipAddressPools"}"#,
    printcolumn = r#"{"name":"IPAddressPool Selectors","type":"string","jsonPath":".spec.ipAddressPoolSelectors"}"#,
    printcolumn = r#"{"name":"Interfaces","type":"string","jsonPath":".spec.interfaces"}"#,
    printcolumn = r#"{"name":"Node Selectors","type":"string","jsonPath":".spec.nodeSelectors","priority":10}"#
)]
#[serde(rename_all = "camelCase")]
pub struct L2AdvertisementSpec {
    /// Pools by name; with neither this nor selectors, every pool.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_address_pools: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_address_pool_selectors: Vec<LabelSelector>,
    /// Nodes that may announce; empty: every node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_selectors: Vec<LabelSelector>,
    /// Interfaces to announce on; empty: the one whose subnet holds the address (of several, the
    /// one its route uses).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<String>,
    /// Services to announce; empty: every Service with an address from the pools.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_selectors: Vec<LabelSelector>,
    /// Nodes to prefer as announcers, with weights: among the candidates, those with the
    /// highest sum of matching weights win (then the sha256 order), as in MetalLB.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preferred_node_selectors: Vec<PreferredNodeSelector>,
}

optional_spec!(L2AdvertisementSpec);

/// A weighted preference for nodes (Kubernetes' PreferredSchedulingTerm, with a label selector).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct PreferredNodeSelector {
    /// 1 to 100.
    #[schemars(range(min = 1, max = 100))]
    pub weight: i32,
    /// The nodes it applies to.
    pub preference: LabelSelector,
}

/// Empty, as MetalLB's: objects written with `status: {}` (MetalLB's migration tool writes them)
/// are accepted.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct L2AdvertisementStatus {}

/// Where a Service is announced at layer 2, kept by the announcing speaker.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(remote = "Self")]
#[kube(
    group = "metallb.io",
    version = "v1beta1",
    kind = "ServiceL2Status",
    namespaced,
    status = "MetalLBServiceL2Status",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Allocated Node","type":"string","jsonPath":".status.node"}"#,
    printcolumn = r#"{"name":"Service Name","type":"string","jsonPath":".status.serviceName"}"#,
    printcolumn = r#"{"name":"Service Namespace","type":"string","jsonPath":".status.serviceNamespace"}"#
)]
pub struct ServiceL2StatusSpec {}

optional_spec!(ServiceL2StatusSpec);

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetalLBServiceL2Status {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service_namespace: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<InterfaceInfo>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct InterfaceInfo {
    pub name: String,
}

/// The CRDs, in the order `deploy/crds/` lists them, with their file names.
pub fn definitions() -> Vec<(
    &'static str,
    k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
)> {
    use kube::CustomResourceExt as _;
    vec![
        ("ipaddresspools.yaml", IPAddressPool::crd()),
        ("l2advertisements.yaml", spec_optional(L2Advertisement::crd())),
        ("servicel2statuses.yaml", spec_optional(ServiceL2Status::crd())),
    ]
}

/// `crd` with `spec` taken out of the required properties: MetalLB's schema leaves it optional
/// for these kinds.
fn spec_optional(
    mut crd: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) -> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    for version in &mut crd.spec.versions {
        let root = version.schema.as_mut().and_then(|s| s.open_api_v3_schema.as_mut());
        if let Some(root) = root {
            root.required = root.required.take().map(|r| r.into_iter().filter(|p| p != "spec").collect());
            root.required = root.required.take().filter(|r: &Vec<String>| !r.is_empty());
        }
    }
    crd
}

/// A CRD as the YAML file in `deploy/crds/`.
pub fn to_yaml(crd: &impl Serialize) -> String {
    let body = serde_yaml_ng::to_string(crd).expect("a CRD serialises");
    format!("# Generated from kube/src/crd.rs by `cargo xtask crds`; do not edit.\n{body}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CI fails when the committed YAML drifts from the types.
    #[test]
    fn deploy_crds_match_the_types() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/crds");
        for (file, crd) in definitions() {
            let committed = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
            assert!(committed == to_yaml(&crd), "deploy/crds/{file} is out of date: run `cargo xtask crds`");
        }
    }

    #[test]
    fn reads_metallb_yaml() {
        let pool: IPAddressPool = serde_yaml_ng::from_str(
            "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: first\n  namespace: metallb-system\n\
             spec:\n  addresses:\n  - 192.0.2.0/28\n  - 198.51.100.10-198.51.100.20\n  autoAssign: false\n  avoidBuggyIPs: true\n\
             \x20 serviceAllocation:\n    priority: 50\n    namespaces: [a]\n    serviceSelectors:\n    - matchLabels: {app: web}\n",
        )
        .unwrap();
        assert_eq!(pool.spec.addresses.len(), 2);
        assert!(!pool.spec.auto_assign && pool.spec.avoid_buggy_ips);
        let allocation = pool.spec.service_allocation.unwrap();
        assert_eq!((allocation.priority, allocation.namespaces), (Some(50), vec!["a".to_owned()]));
        assert_eq!(allocation.service_selectors.len(), 1);
        let adv: L2Advertisement = serde_yaml_ng::from_str(
            "apiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata:\n  name: l2\nspec:\n  ipAddressPools: [first]\n  interfaces: [eth0]\n",
        )
        .unwrap();
        assert_eq!(adv.spec.ip_address_pools, ["first"]);
        let defaults: IPAddressPoolSpec = serde_yaml_ng::from_str("addresses: []").unwrap();
        assert!(defaults.auto_assign && !defaults.avoid_buggy_ips, "MetalLB's defaults");
    }
}
