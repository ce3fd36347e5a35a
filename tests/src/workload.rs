//! What the end-to-end test and the nodes bench do on a [`NodeLab`]: apply deploy/ as a user
//! does, wait for Herald to run, give it addresses and a Service to announce, and read what the
//! client and the kubelets see.

use std::{net::Ipv4Addr, time::Duration};

use anyhow::{Context as _, bail};
use k8s_openapi::api::{
    coordination::v1::Lease,
    core::v1::{Pod, Service},
};
use kube::{
    Api, Client,
    api::{ListParams, PostParams},
};
use serde_json::json;

use crate::{
    nodes::{self, NodeLab},
    poll,
    probe::Probe,
};

/// Herald's namespace in deploy/.
pub const NAMESPACE: &str = "herald-system";

/// The speaker pods' label in deploy/.
pub fn speakers() -> ListParams {
    ListParams::default().labels("app.kubernetes.io/name=herald-speaker")
}

/// `kubectl apply -k` of deploy/ through the lab's overlay (the built images, the API server's
/// address).
pub fn apply_deploy(nl: &NodeLab) -> anyhow::Result<()> {
    let overlay = nodes::overlay(&nl.lab.workdir)?;
    nl.kubectl(&["apply", "-k", overlay.to_str().context("path")?]).map(drop)
}

/// Waits until a speaker pod is Ready on each of `count` nodes and a controller holds the lease.
pub async fn wait_for_herald(client: &Client, count: usize) -> anyhow::Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let ready = poll::until_async(Duration::from_secs(120), async || {
        let list = pods.list(&speakers()).await.map(|l| l.items).unwrap_or_default();
        list.len() == count && list.iter().all(is_ready)
    })
    .await;
    if ready.is_none() {
        bail!("the speakers are not Ready on {count} nodes after 120 s");
    }
    let leases: Api<Lease> = Api::namespaced(client.clone(), NAMESPACE);
    let led = poll::until_async(Duration::from_secs(60), async || {
        let lease = leases.get_opt("herald-controller").await.ok().flatten();
        lease.and_then(|l| l.spec?.holder_identity).is_some()
    })
    .await;
    if led.is_none() {
        bail!("no controller holds the lease after 60 s");
    }
    Ok(())
}

pub fn is_ready(pod: &Pod) -> bool {
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions.is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// A pool (192.0.2.240/28) and an advertisement of every pool, in Herald's namespace.
pub async fn give_addresses(client: &Client) -> anyhow::Result<()> {
    let objects = [
        json!({ "apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
                "metadata": { "name": "lan", "namespace": NAMESPACE },
                "spec": { "addresses": ["192.0.2.240/28"] } }),
        json!({ "apiVersion": "metallb.io/v1beta1", "kind": "L2Advertisement",
                "metadata": { "name": "lan", "namespace": NAMESPACE } }),
    ];
    let discovery = kube::discovery::Discovery::new(client.clone()).run().await?;
    let objects = objects.into_iter().map(serde_json::from_value).collect::<Result<_, _>>()?;
    crate::objects::create_all(client, &discovery, objects).await;
    Ok(())
}

/// A LoadBalancer Service `web` in `default` with one backend pod (the pause image) on `node`;
/// returns its address once it has one.
pub async fn serve(client: &Client, node: &str) -> anyhow::Result<Ipv4Addr> {
    let image = format!("docker.io/library/herald-pause:{}", env!("CARGO_PKG_VERSION"));
    let pod: Pod = serde_json::from_value(json!({
        "metadata": { "name": "web-1", "labels": { "app": "web" } },
        "spec": { "nodeName": node, "containers": [{ "name": "web", "image": image }] },
    }))?;
    Api::<Pod>::namespaced(client.clone(), "default").create(&PostParams::default(), &pod).await?;
    let svc: Service = serde_json::from_value(json!({
        "metadata": { "name": "web" },
        "spec": { "type": "LoadBalancer", "selector": { "app": "web" }, "ports": [{ "port": 80 }] },
    }))?;
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    services.create(&PostParams::default(), &svc).await?;
    let mut vip = None;
    poll::until_async(Duration::from_secs(60), async || {
        let svc = services.get("web").await.ok();
        let ingress = svc.and_then(|s| s.status?.load_balancer?.ingress).unwrap_or_default();
        vip = ingress.first().and_then(|i| i.ip.as_ref()).and_then(|ip| ip.parse().ok());
        vip.is_some()
    })
    .await;
    vip.context("the Service got no address in 60 s")
}

/// The name of the speaker pod on `node`.
pub async fn speaker_on(client: &Client, node: &str) -> anyhow::Result<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let list = pods.list(&speakers()).await?;
    let on = list.items.iter().find(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node));
    on.and_then(|p| p.metadata.name.clone()).with_context(|| format!("no speaker pod on {node}"))
}

/// (working set bytes, CPU nanocores) of the speaker container on `node`, as its kubelet's
/// summary API reports them through the API server.
pub async fn speaker_usage(client: &Client, node: &str) -> anyhow::Result<(u64, u64)> {
    let request = http::Request::get(format!("/api/v1/nodes/{node}/proxy/stats/summary")).body(Vec::new())?;
    let summary: serde_json::Value = client.request(request).await?;
    let pods = summary["pods"].as_array().context("no pods in the summary")?;
    let speaker = pods
        .iter()
        .find(|p| {
            p["podRef"]["namespace"] == NAMESPACE
                && p["podRef"]["name"].as_str().is_some_and(|n| n.starts_with("herald-speaker"))
        })
        .context("no speaker pod in the kubelet's summary")?;
    let container = &speaker["containers"][0];
    let memory = container["memory"]["workingSetBytes"].as_u64().context("no working set")?;
    let cpu = container["cpu"]["usageNanoCores"].as_u64().unwrap_or(0);
    Ok((memory, cpu))
}

/// How long after `since` the first reply from `mac` came.
pub fn first_answer_by(probes: &[Probe], mac: [u8; 6], since: f64) -> Option<Duration> {
    probes
        .iter()
        .flat_map(|p| &p.replies)
        .find(|(t, m)| *t >= since && *m == mac)
        .map(|(t, _)| Duration::from_secs_f64(t - since))
}
