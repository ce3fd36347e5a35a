//! `cargo xtask bench nodes`: Herald on three real lab nodes (kubelet, containerd), installed as
//! users install it: `kubectl apply -k deploy/` to the first ARP answer for a Service; each
//! speaker pod's memory and CPU as its kubelet reports them; what the client sees during
//! `kubectl rollout restart` (longest stretch without an answer, requests answered twice), over
//! several runs. The baseline for the rollout is the client's own probe interval (10 ms).

use std::time::{Duration, Instant};

use anyhow::Context as _;
use herald_tests::{
    checker::Answers,
    cluster,
    nodes::NodeLab,
    probe,
    workload::{self, NAMESPACE},
};

const NODES: [&str; 3] = ["node-a", "node-b", "node-c"];

pub fn run(runs: usize) -> anyhow::Result<()> {
    let nl = NodeLab::start(&NODES)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let client = nl.enter().await?;
        let started = Instant::now();
        workload::apply_deploy(&nl)?;
        workload::wait_for_herald(&client, NODES.len()).await?;
        let ready = started.elapsed();
        workload::give_addresses(&client).await?;
        let vip = workload::serve(&client, "node-a").await?;
        let owner = cluster::elected(vip, &NODES);
        cluster::wait_for_owner(&nl.lab, vip, nl.lab.node(owner).mac, Duration::from_secs(60))?;
        let answered = started.elapsed();

        // Settled, then what the kubelets see.
        tokio::time::sleep(Duration::from_secs(15)).await;
        let mut usage = Vec::new();
        for node in NODES {
            usage
                .push((node, workload::speaker_usage(&client, node).await.with_context(|| node.to_owned())?));
        }

        let mut rollouts = Vec::new();
        for _ in 0..runs {
            let probes = probe::series_during(&nl.lab.client, vip, Duration::from_millis(10), || {
                let ns = ["-n", NAMESPACE];
                nl.kubectl(&[&["rollout", "restart", "daemonset/herald-speaker"][..], &ns].concat())?;
                let status = ["rollout", "status", "daemonset/herald-speaker", "--timeout=120s"];
                nl.kubectl(&[&status[..], &ns].concat()).map(drop)
            })?;
            let took = Duration::from_secs_f64(probes.last().map_or(0.0, |p| p.sent) - probes[0].sent);
            let answers = Answers::of(&probes);
            rollouts.push((answers.longest_silence(), answers.doubled.len(), took));
            cluster::wait_for_owner(&nl.lab, vip, nl.lab.node(owner).mac, Duration::from_secs(30))?;
        }

        println!(
            "cargo xtask bench nodes ({}; 3 lab nodes: kubelet v1.20.2, containerd 1.6)",
            crate::conditions()
        );
        println!();
        println!("kubectl apply -k deploy/ (through the lab's overlay)");
        println!("  speaker pods Ready on 3 nodes, a controller leader   {:>7.1} s", ready.as_secs_f64());
        println!("  first ARP answer for a new Service's address         {:>7.1} s", answered.as_secs_f64());
        println!();
        println!("speaker pods, 15 s after, as the kubelets report them (1 Service)");
        println!("  node       working set    CPU");
        for (node, (memory, cpu)) in &usage {
            println!(
                "  {node:<10} {:>7.1} MiB  {:>5.1} mcores",
                *memory as f64 / 1048576.0,
                *cpu as f64 / 1e6
            );
        }
        println!();
        println!("kubectl rollout restart daemonset/herald-speaker, the client asking every 10 ms");
        println!("  run   rollout took   longest without an answer   requests answered twice");
        for (i, (gap, doubles, took)) in rollouts.iter().enumerate() {
            println!(
                "  {:<5} {:>10.1} s   {:>21.0} ms   {:>23}",
                i + 1,
                took.as_secs_f64(),
                gap.as_secs_f64() * 1000.0,
                doubles
            );
        }
        let mut gaps: Vec<f64> = rollouts.iter().map(|r| r.0.as_secs_f64() * 1000.0).collect();
        gaps.sort_by(f64::total_cmp);
        println!(
            "  median gap {:.0} ms, worst {:.0} ms (baseline: the probe interval, 10 ms; target under 1 s)",
            gaps[gaps.len() / 2],
            gaps[gaps.len() - 1]
        );
        Ok(())
    })
}
