//! What the speaker watches, and how the cached objects become the plain [`Snapshot`] the
//! decisions read.

use std::{
    borrow::Borrow,
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
};

use herald_kube::{
    cache::{watch, watch_stripped},
    crd::{IPAddressPool, L2Advertisement},
    pool::Pool,
    service,
};
use k8s_openapi::api::{
    core::v1::{Endpoints, Node, Service as KubeService},
    discovery::v1::EndpointSlice,
};
use kube::{Api, Client, ResourceExt as _, api::ListParams, runtime::reflector::Store};
use tokio::sync::mpsc;
use tracing::{debug, info};

use super::{
    decide::{LoadBalancer, Snapshot},
    strip,
};
use crate::candidates;

/// Where ready endpoints are read from: EndpointSlices (discovery.k8s.io/v1), or core/v1
/// Endpoints on a cluster that does not serve those.
pub enum EndpointSource {
    Slices(Store<EndpointSlice>),
    Endpoints(Store<Endpoints>),
}

pub struct Watches {
    pub services: Store<KubeService>,
    pub endpoints: EndpointSource,
    pub nodes: Store<Node>,
    pub pools: Store<IPAddressPool>,
    pub advertisements: Store<L2Advertisement>,
}

impl Watches {
    /// Starts every watch; `changed` is signalled on each update. Pools and advertisements are
    /// read from `namespace`.
    pub async fn start(client: &Client, namespace: &str, changed: &mpsc::Sender<()>) -> anyhow::Result<Self> {
        let slices: Api<EndpointSlice> = Api::all(client.clone());
        let endpoints = match slices.list(&ListParams::default().limit(1)).await {
            Ok(_) => EndpointSource::Slices(watch_stripped(slices, changed, strip::endpoint_slice)),
            Err(kube::Error::Api(status)) if status.code == 404 => {
                info!("discovery.k8s.io/v1 EndpointSlices not served; reading core/v1 Endpoints");
                EndpointSource::Endpoints(watch_stripped(Api::all(client.clone()), changed, strip::endpoints))
            }
            Err(e) => return Err(anyhow::Error::new(e).context("listing EndpointSlices")),
        };
        Ok(Self {
            services: watch_stripped(Api::all(client.clone()), changed, strip::service),
            endpoints,
            nodes: watch_stripped(Api::all(client.clone()), changed, strip::node),
            pools: watch(Api::namespaced(client.clone(), namespace), changed),
            advertisements: watch(Api::namespaced(client.clone(), namespace), changed),
        })
    }

    /// Waits until every cache has its first complete list.
    pub async fn ready(&self) -> anyhow::Result<()> {
        self.services.wait_until_ready().await?;
        match &self.endpoints {
            EndpointSource::Slices(s) => s.wait_until_ready().await?,
            EndpointSource::Endpoints(s) => s.wait_until_ready().await?,
        }
        self.nodes.wait_until_ready().await?;
        self.pools.wait_until_ready().await?;
        self.advertisements.wait_until_ready().await?;
        Ok(())
    }

    /// The cluster as the decisions see it, from the caches (see [`snapshot_of`]).
    pub fn snapshot(&self, class: Option<&str>) -> Snapshot {
        snapshot_of(
            &self.services.state(),
            &self.ready_endpoint_nodes(),
            &self.nodes.state(),
            &self.pools.state(),
            &self.advertisements.state(),
            class,
        )
    }

    /// Nodes with a ready (or, while terminating, still serving) endpoint, by Service key.
    fn ready_endpoint_nodes(&self) -> BTreeMap<String, BTreeSet<String>> {
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        match &self.endpoints {
            EndpointSource::Slices(store) => {
                for (key, nodes) in store.state().iter().filter_map(|s| slice_nodes(s)) {
                    out.entry(key).or_default().extend(nodes);
                }
            }
            EndpointSource::Endpoints(store) => out.extend(store.state().iter().map(|e| endpoints_nodes(e))),
        }
        out
    }
}

/// The cluster as the decisions see it: the Services Herald handles (`class` as the
/// controller's) with their addresses and the nodes of their `ready` endpoints (by Service key),
/// the Nodes, the valid pools, the advertisements. Pure, over the objects as the API serves them.
pub fn snapshot_of<S, N, P, A>(
    services: &[S],
    ready: &BTreeMap<String, BTreeSet<String>>,
    nodes: &[N],
    pools: &[P],
    advertisements: &[A],
    class: Option<&str>,
) -> Snapshot
where
    S: Borrow<KubeService>,
    N: Borrow<Node>,
    P: Borrow<IPAddressPool>,
    A: Borrow<L2Advertisement>,
{
    let services = services
        .iter()
        .map(Borrow::borrow)
        .filter(|svc| service::handled(svc, class))
        .map(|svc| {
            let key = service::key(svc);
            // All of them, in order: the first decides the owner, as in MetalLB.
            let addresses = service::current(svc);
            let local = svc.spec.as_ref().and_then(|s| s.external_traffic_policy.as_deref()) == Some("Local");
            LoadBalancer {
                traffic: candidates::Traffic {
                    local_traffic: local,
                    ready_endpoint_nodes: ready.get(&key).cloned().unwrap_or_default(),
                },
                labels: svc.labels().clone(),
                addresses,
                key,
            }
        })
        .collect();
    let nodes = nodes.iter().map(|n| candidate(n.borrow())).collect();
    let pools = pools
        .iter()
        .map(Borrow::borrow)
        .filter_map(|p| match Pool::from_spec(&p.name_any(), &p.spec) {
            Ok(pool) => Some((pool, p.labels().clone())),
            Err(e) => {
                // Every pass sees it; the controller reports it (pool condition, Event).
                debug!(pool = p.name_any(), error = e, "invalid IPAddressPool ignored");
                None
            }
        })
        .collect();
    let advertisements =
        advertisements.iter().map(Borrow::borrow).map(|a| (a.name_any(), a.spec.clone())).collect();
    Snapshot { services, nodes, pools, advertisements }
}

/// The Service an EndpointSlice belongs to (`namespace/name`), and the nodes of its serving
/// endpoints. MetalLB's rule: `serving` counts (a terminating endpoint may still serve); unset
/// `serving` means `ready`; unset `ready` means ready.
pub(super) fn slice_nodes(slice: &EndpointSlice) -> Option<(String, BTreeSet<String>)> {
    let service = slice.labels().get(strip::SERVICE_NAME_LABEL)?;
    let key = format!("{}/{service}", slice.namespace().unwrap_or_default());
    let nodes = slice
        .endpoints
        .iter()
        .filter(|ep| {
            let c = ep.conditions.clone().unwrap_or_default();
            c.serving.unwrap_or(c.ready.unwrap_or(true))
        })
        .filter_map(|ep| ep.node_name.clone())
        .collect();
    Some((key, nodes))
}

/// The Service of a core/v1 Endpoints object (same name), and the nodes of its ready addresses
/// (`notReadyAddresses` do not count).
pub(super) fn endpoints_nodes(ep: &Endpoints) -> (String, BTreeSet<String>) {
    let key = format!("{}/{}", ep.namespace().unwrap_or_default(), ep.name_any());
    let ready = ep.subsets.iter().flatten().flat_map(|s| s.addresses.iter().flatten());
    (key, ready.filter_map(|a| a.node_name.clone()).collect())
}

/// A Node as the candidate rules see it.
fn candidate(node: &Node) -> candidates::Node {
    let conditions = node.status.as_ref().and_then(|s| s.conditions.as_ref());
    let network_unavailable =
        conditions.into_iter().flatten().any(|c| c.type_ == "NetworkUnavailable" && c.status == "True");
    candidates::Node { name: node.name_any(), labels: node.labels().clone(), network_unavailable }
}

/// A Node's InternalIP (IPv4): where its speaker's membership listens.
pub fn internal_ip(node: &Node) -> Option<Ipv4Addr> {
    let addresses = node.status.as_ref().and_then(|s| s.addresses.as_ref());
    addresses.into_iter().flatten().filter(|a| a.type_ == "InternalIP").find_map(|a| a.address.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn serving_endpoints_count_by_node() {
        let slice: EndpointSlice = serde_json::from_value(serde_json::json!({
            "metadata": { "name": "web-x1", "namespace": "shop",
                          "labels": { "kubernetes.io/service-name": "web" } },
            "addressType": "IPv4",
            "endpoints": [
                { "addresses": ["198.51.100.1"], "nodeName": "ready", "conditions": { "ready": true } },
                { "addresses": ["198.51.100.2"], "nodeName": "unready", "conditions": { "ready": false } },
                { "addresses": ["198.51.100.3"], "nodeName": "unset" },
                { "addresses": ["198.51.100.4"], "nodeName": "terminating",
                  "conditions": { "ready": false, "serving": true, "terminating": true } },
                { "addresses": ["198.51.100.5"], "nodeName": "not-serving",
                  "conditions": { "ready": true, "serving": false } },
                { "addresses": ["198.51.100.6"] },
            ],
        }))
        .unwrap();
        let (key, nodes) = slice_nodes(&slice).unwrap();
        assert_eq!(key, "shop/web");
        assert_eq!(nodes, names(&["ready", "terminating", "unset"]));
        let mut orphan = slice.clone();
        orphan.metadata.labels = None;
        assert!(slice_nodes(&orphan).is_none(), "a slice of no Service is ignored");
    }

    #[test]
    fn ready_addresses_count_by_node() {
        let ep: Endpoints = serde_json::from_value(serde_json::json!({
            "metadata": { "name": "web", "namespace": "shop" },
            "subsets": [{
                "addresses": [{ "ip": "198.51.100.1", "nodeName": "node-a" }, { "ip": "198.51.100.9" }],
                "notReadyAddresses": [{ "ip": "198.51.100.2", "nodeName": "node-b" }],
            }],
        }))
        .unwrap();
        assert_eq!(endpoints_nodes(&ep), ("shop/web".to_string(), names(&["node-a"])));
    }
}
