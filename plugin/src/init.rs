//! `kubectl herald init --range A-B`: from nothing to speakers that answer. Applies deploy/ (CRDs
//! first, until the server serves them), then the pool and the advertisement, with server-side
//! apply (so running it again changes only what differs), and waits until every speaker is Ready
//! and a controller is available.

use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use k8s_openapi::{
    api::apps::v1::{DaemonSet, Deployment},
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client, ResourceExt as _,
    api::{DynamicObject, GroupVersionKind, Patch, PatchParams},
    discovery::{Discovery, Scope},
};

use crate::manifests::{self, NAMESPACE};

/// What `init` was asked for.
pub struct Plan {
    pub ranges: Vec<String>,
    pub interfaces: Vec<String>,
    pub api_server: Option<String>,
    pub namespace: String,
}

const MANAGER: &str = "kubectl-herald";
const POLL: Duration = Duration::from_millis(500);

pub async fn run(client: &Client, plan: &Plan, timeout: Duration) -> anyhow::Result<()> {
    ensure!(
        plan.namespace == NAMESPACE,
        "init deploys into {NAMESPACE} (deploy/'s namespace), not {}",
        plan.namespace
    );
    // Everything is checked before anything is applied.
    let pool = manifests::pool(&plan.ranges)?;
    let advertisement = manifests::advertisement(&plan.interfaces)?;
    let mut objects = manifests::deploy()?;
    if let Some(address) = &plan.api_server {
        manifests::with_api_server(&mut objects, address)?;
    }
    let (crds, rest): (Vec<_>, Vec<_>) = objects
        .into_iter()
        .partition(|o| o.types.as_ref().is_some_and(|t| t.kind == "CustomResourceDefinition"));
    apply(client, &crds).await?;
    established(client, &crds, timeout).await?;
    apply(client, &rest).await?;
    apply(client, &[pool, advertisement]).await?;
    println!(
        "applied deploy/ ({} objects), IPAddressPool {NAMESPACE}/{} ({}) and its L2Advertisement",
        crds.len() + rest.len(),
        manifests::NAME,
        plan.ranges.join(", ")
    );
    println!("waiting for the speakers and the controller (up to {} s)...", timeout.as_secs());
    let (speakers, controllers) = ready(client, timeout).await?;
    println!(
        "ready: {speakers} speakers, {controllers} controller replicas available. Services of type LoadBalancer now get an address from {} and are answered; `kubectl herald status` lists them",
        plan.ranges.join(", ")
    );
    Ok(())
}

/// Server-side applies `objects`, each where discovery says its kind lives.
async fn apply(client: &Client, objects: &[DynamicObject]) -> anyhow::Result<()> {
    let discovery =
        Discovery::new(client.clone()).run().await.context("discovering the API server's kinds")?;
    let params = PatchParams::apply(MANAGER).force();
    for o in objects {
        let types = o.types.as_ref().context("an object without apiVersion and kind")?;
        let gvk = GroupVersionKind::try_from(types)?;
        let what = format!("{}/{}", types.kind, o.name_any());
        let (resource, caps) = discovery
            .resolve_gvk(&gvk)
            .with_context(|| format!("{what}: the server does not serve {}", types.api_version))?;
        let api: Api<DynamicObject> = match caps.scope {
            Scope::Cluster => Api::all_with(client.clone(), &resource),
            Scope::Namespaced => {
                Api::namespaced_with(client.clone(), o.namespace().as_deref().unwrap_or(NAMESPACE), &resource)
            }
        };
        api.patch(&o.name_any(), &params, &Patch::Apply(o))
            .await
            .with_context(|| format!("applying {what}"))?;
    }
    Ok(())
}

/// Waits until the server serves every CRD of `crds`.
async fn established(client: &Client, crds: &[DynamicObject], timeout: Duration) -> anyhow::Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let until = tokio::time::Instant::now() + timeout;
    for crd in crds {
        loop {
            let got = api.get(&crd.name_any()).await?;
            let conditions = got.status.and_then(|s| s.conditions).unwrap_or_default();
            if conditions.iter().any(|c| c.type_ == "Established" && c.status == "True") {
                break;
            }
            if tokio::time::Instant::now() > until {
                bail!(
                    "CustomResourceDefinition {} not established after {} s",
                    crd.name_any(),
                    timeout.as_secs()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }
    Ok(())
}

/// Waits until the speaker DaemonSet is Ready on every node it is scheduled to, and a
/// controller replica is available; returns how many of each.
async fn ready(client: &Client, timeout: Duration) -> anyhow::Result<(i32, i32)> {
    let daemonsets: Api<DaemonSet> = Api::namespaced(client.clone(), NAMESPACE);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
    let until = tokio::time::Instant::now() + timeout;
    let mut last = String::new();
    loop {
        let speaker = daemonsets.get("herald-speaker").await?.status.unwrap_or_default();
        let controller = deployments.get("herald-controller").await?.status.unwrap_or_default();
        let available = controller.available_replicas.unwrap_or(0);
        let scheduled = speaker.desired_number_scheduled;
        let updated = speaker.updated_number_scheduled.unwrap_or(0);
        if scheduled > 0 && speaker.number_ready == scheduled && updated == scheduled && available > 0 {
            return Ok((speaker.number_ready, available));
        }
        let now =
            format!("speakers Ready {}/{scheduled}, controllers available {available}", speaker.number_ready);
        if now != last {
            println!("  {now}");
            last = now;
        }
        if tokio::time::Instant::now() > until {
            bail!(
                "not ready after {} s: {last} (`kubectl -n {NAMESPACE} get pods` and their events say why)",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(POLL).await;
    }
}
