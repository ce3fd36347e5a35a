//! What the speaker keeps of each cached object: the fields its decisions read, nothing else.
//! Every node's speaker caches every Service, EndpointSlice and Node of the cluster; whole
//! objects (annotations with last-applied configurations, ports, addresses, a Node's image list)
//! are most of its memory, and none of it is read. Applied to each object as the watch delivers
//! it, before the cache stores it.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        core::v1::{
            EndpointAddress, EndpointSubset, Endpoints, LoadBalancerIngress, LoadBalancerStatus, Node,
            NodeAddress, NodeCondition, NodeStatus, Service, ServiceSpec, ServiceStatus,
        },
        discovery::v1::{Endpoint, EndpointConditions, EndpointSlice},
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Name, namespace, identity and, if `labels`, the labels.
fn meta(meta: &mut ObjectMeta, labels: bool) {
    let old = std::mem::take(meta);
    *meta = ObjectMeta {
        name: old.name,
        namespace: old.namespace,
        uid: old.uid,
        resource_version: old.resource_version,
        labels: if labels { old.labels } else { None },
        ..Default::default()
    };
}

/// A Service: its labels (serviceSelectors), type and class (which Services Herald handles),
/// externalTrafficPolicy, and the addresses in its status.
pub fn service(svc: &mut Service) {
    meta(&mut svc.metadata, true);
    svc.spec = svc.spec.take().map(|spec| ServiceSpec {
        type_: spec.type_,
        load_balancer_class: spec.load_balancer_class,
        external_traffic_policy: spec.external_traffic_policy,
        ..Default::default()
    });
    let ingress = svc.status.take().and_then(|s| s.load_balancer?.ingress);
    svc.status = ingress.map(|ingress| ServiceStatus {
        load_balancer: Some(LoadBalancerStatus {
            ingress: Some(
                ingress.into_iter().map(|i| LoadBalancerIngress { ip: i.ip, ..Default::default() }).collect(),
            ),
        }),
        ..Default::default()
    });
}

/// An EndpointSlice: its Service, and each endpoint's node and readiness.
pub fn endpoint_slice(slice: &mut EndpointSlice) {
    let service = slice.metadata.labels.as_mut().and_then(|l| l.remove_entry(SERVICE_NAME_LABEL));
    meta(&mut slice.metadata, false);
    slice.metadata.labels = service.map(|(k, v)| BTreeMap::from([(k, v)]));
    slice.ports = None;
    for ep in &mut slice.endpoints {
        let conditions = ep.conditions.take().map(|c| EndpointConditions {
            ready: c.ready,
            serving: c.serving,
            terminating: None,
        });
        *ep = Endpoint { node_name: ep.node_name.take(), conditions, ..Default::default() };
    }
}

/// A core/v1 Endpoints: the nodes of its ready addresses.
pub fn endpoints(ep: &mut Endpoints) {
    meta(&mut ep.metadata, false);
    ep.subsets = ep.subsets.take().map(|subsets| {
        subsets
            .into_iter()
            .map(|s| EndpointSubset {
                addresses: s.addresses.map(|list| {
                    list.into_iter()
                        .map(|a| EndpointAddress { node_name: a.node_name, ..Default::default() })
                        .collect()
                }),
                ..Default::default()
            })
            .collect()
    });
}

/// A Node: its labels (nodeSelectors, the exclusion label), its NetworkUnavailable condition,
/// and its InternalIPs (membership).
pub fn node(node: &mut Node) {
    meta(&mut node.metadata, true);
    node.spec = None;
    let status = node.status.take().unwrap_or_default();
    let conditions: Vec<NodeCondition> = status
        .conditions
        .into_iter()
        .flatten()
        .filter(|c| c.type_ == "NetworkUnavailable")
        .map(|c| NodeCondition { type_: c.type_, status: c.status, ..Default::default() })
        .collect();
    let addresses: Vec<NodeAddress> =
        status.addresses.into_iter().flatten().filter(|a| a.type_ == "InternalIP").collect();
    node.status = Some(NodeStatus {
        conditions: (!conditions.is_empty()).then_some(conditions),
        addresses: (!addresses.is_empty()).then_some(addresses),
        ..Default::default()
    });
}

#[cfg(test)]
#[path = "strip_tests.rs"]
mod tests;
