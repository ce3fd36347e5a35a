//! The Kubernetes cluster under soak: the lab's control plane (etcd, kube-apiserver,
//! kube-controller-manager, herald-controller), a speaker per node in Kubernetes mode, pool
//! `lan` (192.0.2.240/28) and three LoadBalancer Services, one per node's pod. Besides the node
//! faults, the control plane's: the API server or the controller down for a while, a Service
//! created and deleted beside the others, and pool `lan` edited so that it no longer holds the
//! addresses it gave, then edited back. Through all of them no Service's address may change.

use std::{collections::BTreeMap, net::Ipv4Addr, time::Duration};

use anyhow::Context as _;
use herald_kube::crd::{IPAddressPool, L2Advertisement};
use k8s_openapi::api::core::v1::Service;
use kube::{
    Api, Client,
    api::{DeleteParams, Patch, PatchParams, PostParams},
};
use serde_json::json;

use super::{
    Soaked,
    faults::{self, Kind, Speakers},
};
use crate::{
    cluster,
    kube_lab::{self, KubeLab, NAMESPACE},
    lab::Lab,
};

/// The pool, and what an edit shrinks it to: no address it gave is in it.
const POOL: &str = "192.0.2.240/28";
const SHRUNK: &str = "192.0.2.248/29";
/// The longest the control plane gets to give the Services their addresses, or to come back.
const API_BOUND: Duration = Duration::from_secs(30);

pub struct Kube {
    kl: KubeLab,
    rt: tokio::runtime::Runtime,
    client: Client,
    names: Vec<String>,
    /// Each Service's address as first given.
    given: BTreeMap<String, Ipv4Addr>,
    churned: usize,
}

impl Kube {
    /// The lab and its control plane, a speaker on each of `names`, the pool, the Services,
    /// and each Service's address answered by its owner. Moves the calling thread into the
    /// control plane's network namespace, where the API server is.
    pub fn start(names: &[String]) -> anyhow::Result<Self> {
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut kl = KubeLab::start(&refs)?;
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let client = rt.block_on(kl.enter())?;
        for node in names {
            kl.start_speaker(node).with_context(|| format!("the speaker on {node}\n{}", kl.logs()))?;
        }
        let given = rt.block_on(services(&client, names)).with_context(|| kl.logs())?;
        let cluster = Self { kl, rt, client, names: names.to_vec(), given, churned: 0 };
        for (vip, mac) in cluster.addresses() {
            cluster::wait_for_owner(&cluster.kl.lab, vip, mac, API_BOUND)
                .with_context(|| format!("the first owner of {vip}\n{}", cluster.kl.logs()))?;
        }
        Ok(cluster)
    }

    fn control_plane_fault(&mut self, kind: Kind, hold: Duration) -> anyhow::Result<()> {
        match kind {
            Kind::ApiServerRestart => {
                self.kl.server.stop_apiserver()?;
                std::thread::sleep(hold);
                self.kl.server.restart_apiserver()
            }
            Kind::ControllerRestart => {
                self.kl.stop_controller()?;
                std::thread::sleep(hold);
                self.kl.start_controller()
            }
            Kind::ServiceChurn => {
                self.churned += 1;
                let name = format!("churn-{}", self.churned);
                let services: Api<Service> = Api::namespaced(self.client.clone(), "default");
                let first = self.names.first().context("no node")?;
                self.rt.block_on(services.create(&PostParams::default(), &service(&name, first)?))?;
                std::thread::sleep(hold);
                self.rt.block_on(services.delete(&name, &DeleteParams::default()))?;
                Ok(())
            }
            Kind::PoolEdit => {
                let pools: Api<IPAddressPool> = Api::namespaced(self.client.clone(), NAMESPACE);
                let edit = |range: &str| {
                    let patch = json!({ "spec": { "addresses": [range] } });
                    self.rt.block_on(pools.patch("lan", &PatchParams::default(), &Patch::Merge(patch)))
                };
                edit(SHRUNK)?;
                std::thread::sleep(hold);
                edit(POOL)?;
                Ok(())
            }
            other => anyhow::bail!("{} is done to a node", other.name()),
        }
    }
}

impl Speakers for Kube {
    fn lab(&self) -> &Lab {
        &self.kl.lab
    }

    fn pid(&self, i: usize) -> u32 {
        self.kl.speaker_pid(&self.names[i]).unwrap_or(0)
    }

    fn kill(&mut self, i: usize) -> anyhow::Result<()> {
        self.kl.kill_speaker(&self.names[i])
    }

    fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        self.kl.start_speaker(&self.names[i])
    }
}

impl Soaked for Kube {
    fn describe(&self) -> &'static str {
        "Kubernetes mode in the lab (etcd, kube-apiserver, kube-controller-manager, \
         herald-controller, a speaker per node with the DaemonSet's capabilities, \
         --dead-man-ms 1000), three LoadBalancer Services"
    }

    fn lab(&self) -> &Lab {
        &self.kl.lab
    }

    fn names(&self) -> &[String] {
        &self.names
    }

    fn addresses(&self) -> Vec<(Ipv4Addr, [u8; 6])> {
        let names: Vec<&str> = self.names.iter().map(String::as_str).collect();
        self.given.values().map(|vip| (*vip, self.kl.lab.node(cluster::elected(*vip, &names)).mac)).collect()
    }

    fn kinds(&self) -> &'static [Kind] {
        &Kind::KUBERNETES
    }

    fn inflict(&mut self, victim: usize, kind: Kind, hold: Duration) -> anyhow::Result<()> {
        if !kind.on_a_node() {
            return self.control_plane_fault(kind, hold);
        }
        let host = self.kl.lab.node(&self.names[victim]).clone();
        faults::on_node(self, victim, &host, kind, hold)
    }

    fn changed(&mut self) -> anyhow::Result<Vec<String>> {
        let services: Api<Service> = Api::namespaced(self.client.clone(), "default");
        let mut changed = Vec::new();
        for (name, given) in &self.given {
            let now = self.rt.block_on(services.get(name))?;
            match address(&now) {
                Some(ip) if ip == *given => {}
                now => changed.push(format!("{name}'s address changed from {given} to {now:?}")),
            }
        }
        Ok(changed)
    }

    fn logs(&self) -> Vec<(String, String)> {
        self.names.iter().map(|n| (n.clone(), self.kl.speaker_log(n, ""))).collect()
    }
}

/// Pool `lan` and its advertisement, a ready pod per node and a LoadBalancer Service
/// selecting each (`web-<node>`); the addresses the controller gives them, by Service.
async fn services(client: &Client, nodes: &[String]) -> anyhow::Result<BTreeMap<String, Ipv4Addr>> {
    let pools: Api<IPAddressPool> = Api::namespaced(client.clone(), NAMESPACE);
    let pool = json!({ "metadata": { "name": "lan" }, "spec": { "addresses": [POOL] } });
    pools.create(&PostParams::default(), &serde_json::from_value(pool)?).await?;
    let ads: Api<L2Advertisement> = Api::namespaced(client.clone(), NAMESPACE);
    let ad = json!({ "metadata": { "name": "lan" }, "spec": { "ipAddressPools": ["lan"] } });
    ads.create(&PostParams::default(), &serde_json::from_value(ad)?).await?;
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    for (i, node) in nodes.iter().enumerate() {
        let pod_ip = Ipv4Addr::new(198, 51, 100, 1 + i as u8);
        kube_lab::ready_pod(client, &format!("web-{node}-1"), &format!("web-{node}"), node, pod_ip).await?;
        services.create(&PostParams::default(), &service(&format!("web-{node}"), node)?).await?;
    }
    let deadline = std::time::Instant::now() + API_BOUND;
    loop {
        let mut given = BTreeMap::new();
        for node in nodes {
            let name = format!("web-{node}");
            if let Some(ip) = address(&services.get(&name).await?) {
                given.insert(name, ip);
            }
        }
        if given.len() == nodes.len() {
            return Ok(given);
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "addresses given within {API_BOUND:?}: {given:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A LoadBalancer Service `name` selecting the pods of app `web-<node>`.
fn service(name: &str, node: &str) -> anyhow::Result<Service> {
    let svc = json!({ "metadata": { "name": name }, "spec": {
        "type": "LoadBalancer", "selector": { "app": format!("web-{node}") }, "ports": [{ "port": 80 }] } });
    Ok(serde_json::from_value(svc)?)
}

/// The IPv4 address in a Service's status, if it has one.
fn address(svc: &Service) -> Option<Ipv4Addr> {
    let ingress = svc.status.as_ref()?.load_balancer.as_ref()?.ingress.as_ref()?;
    ingress.iter().find_map(|i| i.ip.as_deref()?.parse().ok())
}
