//! What the speaker watches, and how the cached objects become the plain [`Snapshot`] the
//! decisions read.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
};

use herald_controller::{
    cache::watch,
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
use tracing::{info, warn};

use super::decide::{Service, Snapshot};
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
            Ok(_) => EndpointSource::Slices(watch(slices, changed)),
            Err(kube::Error::Api(status)) if status.code == 404 => {
                info!("discovery.k8s.io/v1 EndpointSlices not served; reading core/v1 Endpoints");
                EndpointSource::Endpoints(watch(Api::all(client.clone()), changed))
            }
            Err(e) => return Err(anyhow::Error::new(e).context("listing EndpointSlices")),
        };
        Ok(Self {
            services: watch(Api::all(client.clone()), changed),
            endpoints,
            nodes: watch(Api::all(client.clone()), changed),
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

    /// The cluster as the decisions see it: Services Herald handles (`class` as the
    /// controller's), their ready endpoints' nodes, Nodes, valid pools, advertisements.
    pub fn snapshot(&self, class: Option<&str>) -> Snapshot {
        let ready = self.ready_endpoint_nodes();
        let services = self
            .services
            .state()
            .iter()
            .filter(|svc| service::handled(svc, class))
            .map(|svc| {
                let key = service::key(svc);
                let addresses = service::current(svc)
                    .into_iter()
                    .filter_map(|ip| match ip {
                        std::net::IpAddr::V4(v4) => Some(v4),
                        // NDP comes with the IPv6 datapath; until then v6 addresses are not announced.
                        std::net::IpAddr::V6(_) => None,
                    })
                    .collect();
                let local =
                    svc.spec.as_ref().and_then(|s| s.external_traffic_policy.as_deref()) == Some("Local");
                Service {
                    traffic: candidates::Service {
                        local_traffic: local,
                        ready_endpoint_nodes: ready.get(&key).cloned().unwrap_or_default(),
                    },
                    labels: svc.labels().clone(),
                    addresses,
                    key,
                }
            })
            .collect();
        let nodes = self.nodes.state().iter().map(|n| candidate(n)).collect();
        let pools = self
            .pools
            .state()
            .iter()
            .filter_map(|p| match Pool::from_spec(&p.name_any(), &p.spec) {
                Ok(pool) => Some((pool, p.labels().clone())),
                Err(e) => {
                    warn!(pool = p.name_any(), error = e, "invalid IPAddressPool ignored");
                    None
                }
            })
            .collect();
        let advertisements =
            self.advertisements.state().iter().map(|a| (a.name_any(), a.spec.clone())).collect();
        Snapshot { services, nodes, pools, advertisements }
    }

    /// Nodes with a ready (or, while terminating, still serving) endpoint, by Service key.
    fn ready_endpoint_nodes(&self) -> BTreeMap<String, BTreeSet<String>> {
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        match &self.endpoints {
            EndpointSource::Slices(store) => {
                for slice in store.state() {
                    let Some(svc) = slice.labels().get("kubernetes.io/service-name") else { continue };
                    let key = format!("{}/{svc}", slice.namespace().unwrap_or_default());
                    let nodes = out.entry(key).or_default();
                    for ep in &slice.endpoints {
                        let c = ep.conditions.clone().unwrap_or_default();
                        // MetalLB's rule: serving counts; an unset `serving` means `ready`; unset
                        // `ready` means ready.
                        let serving = c.serving.unwrap_or(c.ready.unwrap_or(true));
                        if let (true, Some(node)) = (serving, &ep.node_name) {
                            nodes.insert(node.clone());
                        }
                    }
                }
            }
            EndpointSource::Endpoints(store) => {
                for ep in store.state() {
                    let key = format!("{}/{}", ep.namespace().unwrap_or_default(), ep.name_any());
                    let nodes = out.entry(key).or_default();
                    let ready = ep.subsets.iter().flatten().flat_map(|s| s.addresses.iter().flatten());
                    nodes.extend(ready.filter_map(|a| a.node_name.clone()));
                }
            }
        }
        out
    }
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
