//! What the speaker watches, and how the cached objects become the plain [`Snapshot`] the
//! decisions read.

use std::{
    borrow::Borrow,
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use herald_kube::{
    cache::watch_stripped,
    crd::{IPAddressPool, L2Advertisement},
    facts::{self, Facts},
    pools::{self, LastValid},
    selector, service,
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
use crate::{candidates, names::Names};

/// What the decisions read of a Service Herald handles, as its cache keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceFacts {
    pub labels: selector::Labels,
    /// In the order of its status: the first decides the owner, as in MetalLB.
    pub addresses: Vec<IpAddr>,
    /// The pool they were given from (`metallb.io/ip-allocated-from-pool`).
    pub pool: Option<String>,
    /// externalTrafficPolicy: Local.
    pub local_traffic: bool,
}

impl ServiceFacts {
    /// What the decisions read of `svc`, if Herald handles it (`class` as the controller's).
    pub fn of(svc: &KubeService, class: Option<&str>) -> Option<Self> {
        service::handled(svc, class).then(|| Self {
            labels: svc.labels().clone(),
            addresses: service::current(svc),
            pool: service::allocated_from(svc).map(str::to_owned),
            local_traffic: svc.spec.as_ref().and_then(|s| s.external_traffic_policy.as_deref())
                == Some("Local"),
        })
    }
}

/// Where a Service's ready endpoints are: the nodes they run on, and whether some have none (a
/// selector-less Service's hand-written endpoints, outside the cluster).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ready {
    pub nodes: Names,
    pub off_node: bool,
}

/// Where ready endpoints are read from: EndpointSlices (discovery.k8s.io/v1; by slice, the
/// Service key and where they are), or core/v1 Endpoints on a cluster that does not serve those
/// (by Service key).
pub enum EndpointSource {
    Slices(Facts<(String, Ready)>),
    Endpoints(Facts<Ready>),
}

/// The speaker's caches. Services and endpoints, which every node caches for the whole cluster,
/// keep only what the decisions read ([`facts`]); Nodes, pools and advertisements, a few of each,
/// are kept as objects without what nothing reads ([`strip`]): an update of only that wakes no one.
pub struct Watches {
    pub services: Facts<ServiceFacts>,
    pub endpoints: EndpointSource,
    pub nodes: Store<Node>,
    pub pools: Store<IPAddressPool>,
    pub advertisements: Store<L2Advertisement>,
}

impl Watches {
    /// Starts every watch; `changed` is signalled on each update. Pools and advertisements are
    /// read from `namespace`; Services of `class` (as the controller's) are kept.
    pub async fn start(
        client: &Client,
        namespace: &str,
        class: Option<String>,
        changed: &mpsc::Sender<()>,
    ) -> anyhow::Result<Self> {
        let slices: Api<EndpointSlice> = Api::all(client.clone());
        let endpoints = match slices.list(&ListParams::default().limit(1)).await {
            Ok(_) => EndpointSource::Slices(facts::watch(slices, changed, slice_nodes)),
            Err(kube::Error::Api(status)) if status.code == 404 => {
                info!("discovery.k8s.io/v1 EndpointSlices not served; reading core/v1 Endpoints");
                EndpointSource::Endpoints(facts::watch(Api::all(client.clone()), changed, |ep| {
                    Some(endpoints_nodes(ep).1)
                }))
            }
            Err(e) => return Err(anyhow::Error::new(e).context("listing EndpointSlices")),
        };
        Ok(Self {
            services: facts::watch(Api::all(client.clone()), changed, move |svc| {
                ServiceFacts::of(svc, class.as_deref())
            }),
            endpoints,
            nodes: watch_stripped(Api::all(client.clone()), changed, strip::node),
            pools: watch_stripped(Api::namespaced(client.clone(), namespace), changed, strip::pool),
            advertisements: watch_stripped(
                Api::namespaced(client.clone(), namespace),
                changed,
                strip::advertisement,
            ),
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

    /// The cluster as the decisions see it, from the caches.
    pub fn snapshot(&self) -> Snapshot {
        // Built for this snapshot: each Service takes its nodes out, rather than a copy.
        let mut ready = self.ready_endpoints();
        let services = self.services.read(|services| {
            services
                .iter()
                .map(|(key, facts)| {
                    let (nodes, off_node) = ready.remove(key).unwrap_or_default();
                    load_balancer(key.clone(), facts, nodes, off_node)
                })
                .collect()
        });
        snapshot(services, &self.nodes.state(), &self.pools.state(), &self.advertisements.state())
    }

    /// Nodes with a ready (or, while terminating, still serving) endpoint, and whether one has
    /// no node, by Service key.
    fn ready_endpoints(&self) -> BTreeMap<String, (BTreeSet<String>, bool)> {
        let mut out: BTreeMap<String, (BTreeSet<String>, bool)> = BTreeMap::new();
        let mut add = |key: &String, ready: &Ready| {
            let (nodes, off_node) = out.entry(key.clone()).or_default();
            nodes.extend(ready.nodes.iter().cloned());
            *off_node |= ready.off_node;
        };
        match &self.endpoints {
            EndpointSource::Slices(slices) => slices.read(|slices| {
                for (key, ready) in slices.values() {
                    add(key, ready);
                }
            }),
            EndpointSource::Endpoints(endpoints) => endpoints.read(|endpoints| {
                for (key, ready) in endpoints {
                    add(key, ready);
                }
            }),
        }
        out
    }
}

/// A Service as the decisions see it: its facts and where its ready endpoints are.
fn load_balancer(
    key: String,
    facts: &ServiceFacts,
    ready_endpoint_nodes: BTreeSet<String>,
    ready_off_node: bool,
) -> LoadBalancer {
    LoadBalancer {
        traffic: candidates::Traffic {
            local_traffic: facts.local_traffic,
            ready_endpoint_nodes,
            ready_off_node,
        },
        labels: facts.labels.clone(),
        addresses: facts.addresses.clone(),
        pool: facts.pool.clone(),
        key,
    }
}

/// The cluster as the decisions see it: the Services Herald handles (`class` as the
/// controller's) with their addresses and the nodes of their `ready` endpoints (by Service key:
/// the nodes, and whether one has none), the Nodes, the pools in force, the advertisements.
/// Pure, over the objects as the API serves them.
pub fn snapshot_of<S, N, P, A>(
    services: &[S],
    ready: &BTreeMap<String, (BTreeSet<String>, bool)>,
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
        .filter_map(|svc| {
            let facts = ServiceFacts::of(svc, class)?;
            let key = service::key(svc);
            let (nodes, off_node) = ready.get(&key).cloned().unwrap_or_default();
            Some(load_balancer(key, &facts, nodes, off_node))
        })
        .collect();
    snapshot(services, nodes, pools, advertisements)
}

/// [`snapshot_of`] with the Services already made plain.
fn snapshot<N, P, A>(services: Vec<LoadBalancer>, nodes: &[N], pools: &[P], advertisements: &[A]) -> Snapshot
where
    N: Borrow<Node>,
    P: Borrow<IPAddressPool>,
    A: Borrow<L2Advertisement>,
{
    let nodes = nodes.iter().map(|n| candidate(n.borrow())).collect();
    let pool_labels = pools.iter().map(Borrow::borrow).map(|p| (p.name_any(), p.labels().clone())).collect();
    // Without the controller's memory of last valid versions: what a speaker needs of a refused
    // pool is its name and labels, which a Service's pool annotation and `pool_labels` give.
    let in_force = pools::in_force(pools, &LastValid::default());
    for (pool, why) in &in_force.refused {
        // Every pass sees it; the controller reports it (pool condition, Event).
        debug!(pool, %why, "IPAddressPool not in force");
    }
    let advertisements =
        advertisements.iter().map(Borrow::borrow).map(|a| (a.name_any(), a.spec.clone())).collect();
    Snapshot { services, nodes, pools: in_force.pools, pool_labels, advertisements }
}

/// The Service an EndpointSlice belongs to (`namespace/name`), and where its serving endpoints
/// are. MetalLB's rule: `serving` counts (a terminating endpoint may still serve); unset
/// `serving` means `ready`; unset `ready` means ready.
pub(super) fn slice_nodes(slice: &EndpointSlice) -> Option<(String, Ready)> {
    let service = slice.labels().get("kubernetes.io/service-name")?;
    let key = format!("{}/{service}", slice.namespace().unwrap_or_default());
    let serving = slice.endpoints.iter().filter(|ep| {
        let c = ep.conditions.clone().unwrap_or_default();
        c.serving.unwrap_or(c.ready.unwrap_or(true))
    });
    Some((key, ready(serving.map(|ep| ep.node_name.as_ref()))))
}

/// The Service of a core/v1 Endpoints object (same name), and where its ready addresses are
/// (`notReadyAddresses` do not count).
pub(super) fn endpoints_nodes(ep: &Endpoints) -> (String, Ready) {
    let key = format!("{}/{}", ep.namespace().unwrap_or_default(), ep.name_any());
    let addresses = ep.subsets.iter().flatten().flat_map(|s| s.addresses.iter().flatten());
    (key, ready(addresses.map(|a| a.node_name.as_ref())))
}

/// Where endpoints are, from each one's node (if it has one).
fn ready<'a>(nodes: impl Iterator<Item = Option<&'a String>>) -> Ready {
    let mut off_node = false;
    let nodes = nodes
        .filter_map(|node| {
            off_node |= node.is_none();
            node.cloned()
        })
        .collect();
    Ready { nodes, off_node }
}

/// A Node as the candidate rules see it.
fn candidate(node: &Node) -> candidates::Node {
    let conditions = node.status.as_ref().and_then(|s| s.conditions.as_ref());
    let network_unavailable =
        conditions.into_iter().flatten().any(|c| c.type_ == "NetworkUnavailable" && c.status == "True");
    candidates::Node { name: node.name_any(), labels: node.labels().clone(), network_unavailable }
}

/// A Node's InternalIP, where its speaker's membership listens: its IPv4 one, or on an IPv6-only
/// node its IPv6 one (a dual-stack node lists both; every node then picks IPv4).
pub fn internal_ip(node: &Node) -> Option<IpAddr> {
    let addresses = node.status.as_ref().and_then(|s| s.addresses.as_ref());
    let internal: Vec<IpAddr> = addresses
        .into_iter()
        .flatten()
        .filter(|a| a.type_ == "InternalIP")
        .filter_map(|a| a.address.parse().ok())
        .collect();
    internal.iter().find(|ip| ip.is_ipv4()).or(internal.first()).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Names {
        list.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn internal_ip_prefers_ipv4() {
        let node = |addresses: serde_json::Value| -> Node {
            serde_json::from_value(serde_json::json!({
                "metadata": { "name": "a" }, "status": { "addresses": addresses },
            }))
            .unwrap()
        };
        let dual = node(serde_json::json!([
            { "type": "InternalIP", "address": "2001:db8::a" },
            { "type": "Hostname", "address": "a" },
            { "type": "InternalIP", "address": "192.0.2.10" },
        ]));
        assert_eq!(internal_ip(&dual), Some("192.0.2.10".parse().unwrap()));
        let v6 = node(serde_json::json!([{ "type": "InternalIP", "address": "2001:db8::a" }]));
        assert_eq!(internal_ip(&v6), Some("2001:db8::a".parse().unwrap()));
        assert_eq!(
            internal_ip(&node(serde_json::json!([{ "type": "ExternalIP", "address": "192.0.2.1" }]))),
            None
        );
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
        let (key, ready) = slice_nodes(&slice).unwrap();
        assert_eq!(key, "shop/web");
        assert_eq!(ready, Ready { nodes: names(&["ready", "terminating", "unset"]), off_node: true });
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
        let ready = Ready { nodes: names(&["node-a"]), off_node: true };
        assert_eq!(endpoints_nodes(&ep), ("shop/web".to_string(), ready));
    }
}
