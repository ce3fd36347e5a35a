//! What the speaker keeps of each cached Node, pool and L2Advertisement: the fields its decisions
//! read, nothing else (a Node's status carries its image list, capacities and versions: most of
//! the object, none of it read; a pool's, counts the controller rewrites). Applied to each object
//! as the watch delivers it, before the cache stores it. Services and endpoints, the kinds that
//! count in thousands, are not cached as objects at all (see `herald_kube::facts`).

use herald_kube::crd::{IPAddressPool, L2Advertisement};
use k8s_openapi::{
    api::core::v1::{Node, NodeAddress, NodeCondition, NodeStatus},
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};

/// A Node: its labels (nodeSelectors, the exclusion label), its NetworkUnavailable condition,
/// and its InternalIPs (membership).
pub fn node(node: &mut Node) {
    let old = std::mem::take(&mut node.metadata);
    node.metadata = ObjectMeta {
        name: old.name,
        uid: old.uid,
        resource_version: old.resource_version,
        labels: old.labels,
        ..Default::default()
    };
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

/// A pool without its status: the controller rewrites its counts as it gives addresses out, and
/// nothing here reads them (each rewrite would otherwise be a pass over every Service).
pub fn pool(pool: &mut IPAddressPool) {
    pool.status = None;
}

/// An L2Advertisement without its status, which nothing here reads.
pub fn advertisement(advertisement: &mut L2Advertisement) {
    advertisement.status = None;
}

#[cfg(test)]
#[path = "strip_tests.rs"]
mod tests;
