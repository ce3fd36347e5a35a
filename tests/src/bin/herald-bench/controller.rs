//! `cargo xtask bench controller`: the allocator in process, and the controller against a real
//! kube-apiserver.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use herald_controller::{
    allocator::{Allocator, Request},
    plan::{self, Cluster},
};
use herald_kube::{
    crd::{IPAddressPool, IPAddressPoolSpec},
    pool::Pool,
};
use herald_tests::{apiserver::ApiServer, workspace_bin};
use k8s_openapi::api::core::v1::{Namespace, Service as KubeService};
use kube::{
    Api,
    api::{ListParams, PostParams},
};

use super::conditions;

const SERVICES: usize = 100_000;
/// RFC 2544's benchmarking range: 65,536 addresses.
const POOL: &str = "198.18.0.0/16";
const THROUGH_API: usize = 1_000;

pub fn run() -> anyhow::Result<()> {
    println!("cargo xtask bench controller ({})\n", conditions());
    in_process()?;
    through_the_api()
}

fn in_process() -> anyhow::Result<()> {
    let spec = IPAddressPoolSpec { addresses: vec![POOL.into()], ..Default::default() };
    let pool = Pool::from_spec("bench", &spec).map_err(anyhow::Error::msg)?;
    let mut allocator = Allocator::new(vec![pool]);
    let services: Vec<Request> = (0..SERVICES)
        .map(|i| Request { namespace: "default".into(), name: format!("s{i}"), ..Default::default() })
        .collect();
    let start = Instant::now();
    let given = services.iter().filter(|s| allocator.allocate(s, &[]).is_ok()).count();
    let took = start.elapsed();
    println!("Allocator, in process: {SERVICES} Services over {POOL}");
    println!(
        "  {given} given an address, {} refused (pool full), in {:.0} ms: {:.0} Services/s",
        SERVICES - given,
        ms(took),
        SERVICES as f64 / took.as_secs_f64()
    );

    // A whole pass as after a restart: every Service already has its address in its status.
    let pools = [IPAddressPool::new("bench", spec)];
    let kube: Vec<KubeService> = (0..given)
        .map(|i| {
            let ip = allocator.assignment(&format!("default/s{i}")).expect("assigned").ips[0];
            serde_yaml_ng::from_str(&format!(
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: s{i}\n  namespace: default\nspec:\n  type: LoadBalancer\n\
                 status:\n  loadBalancer:\n    ingress:\n    - ip: {ip}\n"
            ))
            .expect("service")
        })
        .collect();
    let start = Instant::now();
    let plan = plan::plan(&pools, &kube, &Cluster::default());
    let took = start.elapsed();
    anyhow::ensure!(plan.assignments.is_empty(), "a settled cluster must not change");
    println!("  one pass over {given} settled Services: {:.0} ms, nothing to change\n", ms(took));
    Ok(())
}

fn through_the_api() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let server = ApiServer::start()?;
    runtime.block_on(async {
        let client = server.client().await?;
        herald_tests::objects::apply_crds(&client).await;
        let ns: Namespace = serde_yaml_ng::from_str("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: herald-system\n")?;
        Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &ns).await?;
        let spec = IPAddressPoolSpec { addresses: vec![POOL.into()], ..Default::default() };
        let mut pool = IPAddressPool::new("bench", spec);
        pool.metadata.namespace = Some("herald-system".into());
        Api::<IPAddressPool>::namespaced(client.clone(), "herald-system").create(&PostParams::default(), &pool).await?;
        let mut controller = std::process::Command::new(workspace_bin("herald-controller"))
            .args(["--telemetry", "127.0.0.1:0"])
            .env("KUBECONFIG", &server.kubeconfig)
            .env("POD_NAMESPACE", "herald-system")
            .env("HERALD_LOG", "warn")
            .spawn()
            .context("herald-controller")?;
        tokio::time::sleep(Duration::from_secs(2)).await;

        let services = Api::<KubeService>::namespaced(client.clone(), "default");
        let requests_before = server.requests_served()?;
        let start = Instant::now();
        for i in 0..THROUGH_API {
            let svc: KubeService = serde_yaml_ng::from_str(&format!(
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: s{i}\nspec:\n  type: LoadBalancer\n  ports:\n  - port: 80\n"
            ))?;
            services.create(&PostParams::default(), &svc).await?;
        }
        let created = start.elapsed();
        let all_given = loop {
            let list = services.list(&ListParams::default()).await?;
            let with = list.items.iter().filter(|s| !herald_kube::service::current(s).is_empty()).count();
            if with == THROUGH_API {
                break start.elapsed();
            }
            anyhow::ensure!(start.elapsed() < Duration::from_secs(300), "only {with} of {THROUGH_API} got an address");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let requests = server.requests_served()? - requests_before;
        let _ = controller.kill();
        let _ = controller.wait();
        println!("Against a real kube-apiserver v1.20.2 (etcd on loopback), one controller:");
        println!("  {THROUGH_API} Services created in {:.0} ms; all of them had an address after {:.0} ms", ms(created), ms(all_given));
        println!(
            "  the API server served {requests} requests meanwhile ({:.0}/s), creates and polls included",
            requests as f64 / all_given.as_secs_f64()
        );
        Ok(())
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
