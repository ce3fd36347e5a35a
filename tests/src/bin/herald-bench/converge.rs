//! `cargo xtask bench converge`: the whole cluster in the lab (tests/src/kube_lab.rs). How long
//! from a Service's creation to the client's first ARP reply, beside the controller's share of
//! it (the address in the Service's status); from an endpoint moving (externalTrafficPolicy:
//! Local) to the new node answering; a speaker's memory and CPU with 1,000 and 10,000 announced
//! addresses beside none; and the time to fill the map with 10,000 entries, from a cold start
//! and (the floor) as bare map updates.

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::Context as _;
use futures_util::{StreamExt as _, TryStreamExt as _};
use herald_kube::crd::ServiceL2Status;
use herald_speaker::{announcement::Key, datapath::Datapath};
use herald_tests::{
    kube_lab::{self, KubeLab, NAMESPACE},
    lab::Host,
    probe,
};
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use kube::{
    Api, Client,
    api::{DeleteParams, PostParams},
};
use serde_json::json;
use speaker_common::ArpKey;
use tokio::runtime::Runtime;

use super::{conditions, median, plot};

const RUNS: usize = 10;
const PROBE_EVERY: Duration = Duration::from_millis(10);
/// The scale pool: RFC 2544's benchmarking range, announced on eth0 inside the lab only.
const SCALE_POOL: &str = "198.18.0.0/18";
const SCALES: [usize; 2] = [1_000, 10_000];

pub fn run() -> anyhow::Result<()> {
    println!("cargo xtask bench converge ({})\n", conditions());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let mut kl = KubeLab::start(&["node-a", "node-b"])?;
    // The main thread joins the control plane's namespace; the runtime runs on it.
    let client = rt.block_on(kl.enter())?;
    rt.block_on(setup(&client))?;
    kl.start_speaker("node-a")?;
    kl.start_speaker("node-b")?;

    let mut status = Vec::new();
    let mut reply = Vec::new();
    for i in 0..RUNS {
        let vip = Ipv4Addr::new(192, 0, 2, 241 + i as u8);
        let (s, r) = service_to_reply(&rt, &kl, &client, &format!("svc-{i}"), vip)?;
        status.push(s);
        reply.push(r);
    }
    println!("Service created -> first ARP reply at the client ({RUNS} runs, one request every 10 ms):");
    println!("  {:<44} {:>8} {:>8}", "", "p50 ms", "max ms");
    row("address in the Service's status (controller)", &mut status);
    row("first ARP reply from the owner (end to end)", &mut reply);

    let mut moves = endpoint_moves(&rt, &kl, &client)?;
    println!("\nexternalTrafficPolicy: Local, the endpoint moved to the other node ({} moves):", moves.len());
    println!("  {:<44} {:>8} {:>8}", "", "p50 ms", "max ms");
    row("new endpoint Ready -> new node answers", &mut moves);

    scale(&rt, &mut kl, &client)
}

fn row(what: &str, values: &mut [f64]) {
    let max = values.iter().copied().fold(0.0, f64::max);
    println!("  {what:<44} {:>8.0} {:>8.0}", median(values), max);
}

async fn setup(client: &Client) -> anyhow::Result<()> {
    let pools = Api::<herald_kube::crd::IPAddressPool>::namespaced(client.clone(), NAMESPACE);
    let ads = Api::<herald_kube::crd::L2Advertisement>::namespaced(client.clone(), NAMESPACE);
    for (name, cidr, ad) in [
        ("lan", "192.0.2.240/28", json!({ "ipAddressPools": ["lan"] })),
        ("scale", SCALE_POOL, json!({ "ipAddressPools": ["scale"], "interfaces": ["eth0"] })),
    ] {
        let pool =
            json!({ "metadata": { "name": name }, "spec": { "addresses": [cidr], "autoAssign": false } });
        pools.create(&PostParams::default(), &serde_json::from_value(pool)?).await?;
        let ad = json!({ "metadata": { "name": name }, "spec": ad });
        ads.create(&PostParams::default(), &serde_json::from_value(ad)?).await?;
    }
    kube_lab::ready_pod(client, "web-a", "web", "node-a", Ipv4Addr::new(198, 51, 100, 1)).await
}

fn service_json(name: &str, vip: Ipv4Addr, app: &str, local: bool) -> anyhow::Result<Service> {
    Ok(serde_json::from_value(json!({
        "metadata": { "name": name, "annotations": { "metallb.io/loadBalancerIPs": vip.to_string() } },
        "spec": {
            "type": "LoadBalancer", "selector": { "app": app }, "ports": [{ "port": 80 }],
            "externalTrafficPolicy": if local { "Local" } else { "Cluster" },
        },
    }))?)
}

fn epoch() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// Creates Service `name` asking for `vip` while the client probes it; returns (ms to the
/// address in its status, ms to the first ARP reply).
fn service_to_reply(
    rt: &Runtime,
    kl: &KubeLab,
    client: &Client,
    name: &str,
    vip: Ipv4Addr,
) -> anyhow::Result<(f64, f64)> {
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let mut created_at = 0.0;
    let mut in_status = 0.0;
    let probes = probe::series(&kl.lab.client, vip, 500, PROBE_EVERY, || {
        std::thread::sleep(Duration::from_millis(100));
        created_at = epoch();
        rt.block_on(async {
            services.create(&PostParams::default(), &service_json(name, vip, "web", false)?).await?;
            loop {
                let svc = services.get(name).await?;
                if !herald_kube::service::current(&svc).is_empty() {
                    in_status = epoch();
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    })?;
    let first = first_reply(&probes, created_at, None).with_context(|| format!("no reply for {vip}"))?;
    Ok(((in_status - created_at) * 1e3, (first - created_at) * 1e3))
}

/// Capture time of the first reply after `after` (from `mac`, if given).
fn first_reply(probes: &[probe::Probe], after: f64, mac: Option<[u8; 6]>) -> Option<f64> {
    probes
        .iter()
        .flat_map(|p| &p.replies)
        .filter(|(t, m)| *t >= after && mac.is_none_or(|want| *m == want))
        .map(|(t, _)| *t)
        .reduce(f64::min)
}

/// A Local Service whose only endpoint moves between the nodes; ms from the new endpoint's
/// Ready to the new node's first reply, per move.
fn endpoint_moves(rt: &Runtime, kl: &KubeLab, client: &Client) -> anyhow::Result<Vec<f64>> {
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let vip = Ipv4Addr::new(192, 0, 2, 254);
    rt.block_on(async {
        kube_lab::ready_pod(client, "mover-0", "mover", "node-a", Ipv4Addr::new(198, 51, 100, 10)).await?;
        services.create(&PostParams::default(), &service_json("mover", vip, "mover", true)?).await?;
        anyhow::Ok(())
    })?;
    herald_tests::cluster::wait_for_owner(&kl.lab, vip, kl.lab.node("node-a").mac, Duration::from_secs(20))?;
    let mut out = Vec::new();
    for i in 1..=RUNS / 2 {
        let to: &Host = kl.lab.node(if i % 2 == 1 { "node-b" } else { "node-a" });
        let mut ready_at = 0.0;
        let probes = probe::series(&kl.lab.client, vip, 300, PROBE_EVERY, || {
            rt.block_on(async {
                let gone = DeleteParams { grace_period_seconds: Some(0), ..Default::default() };
                pods.delete(&format!("mover-{}", i - 1), &gone).await?;
                ready_at = epoch();
                let ip = Ipv4Addr::new(198, 51, 100, 10 + i as u8);
                kube_lab::ready_pod(client, &format!("mover-{i}"), "mover", &to.name, ip).await
            })
        })?;
        let first = first_reply(&probes, ready_at, Some(to.mac))
            .with_context(|| format!("{} never answered", to.name))?;
        out.push((first - ready_at) * 1e3);
    }
    Ok(out)
}

/// One speaker (node-b's is stopped) announcing 0, 1,000 and 10,000 addresses.
fn scale(rt: &Runtime, kl: &mut KubeLab, client: &Client) -> anyhow::Result<()> {
    kl.kill_speaker("node-b")?;
    let pid = kl.speaker_pid("node-a").context("node-a's speaker")?;
    let controller = kl.controller_pid().context("herald-controller")?;
    let pin_dir = kl.lab.pin_dir(kl.lab.node("node-a"));
    println!(
        "\nOne speaker (node-a) announcing N addresses from {SCALE_POOL} (resident memory, CPU at rest over 10 s),\n\
         and the controller that gave them out:"
    );
    println!(
        "  {:>8} {:>12} {:>12} {:>12} {:>16} {:>16}",
        "N", "in the map", "RSS MiB", "CPU %", "controller MiB", "controller CPU %"
    );
    let statuses: Api<ServiceL2Status> = Api::namespaced(client.clone(), NAMESPACE);
    // Per N: the speaker's and the controller's memory and CPU.
    let mut measured: Vec<(usize, [f64; 4])> = Vec::new();
    let mut at_rest = |announced: usize| -> anyhow::Result<()> {
        // At rest: every address announced and every ServiceL2Status written.
        let deadline = Instant::now() + Duration::from_secs(600);
        let written = || -> anyhow::Result<usize> {
            let list = rt.block_on(statuses.list(&Default::default()))?.items;
            Ok(list
                .iter()
                .filter(|s| s.metadata.name.as_deref().is_some_and(|n| n.starts_with("l2-default.scale-")))
                .count())
        };
        while written()? < announced {
            anyhow::ensure!(Instant::now() < deadline, "ServiceL2Statuses not written");
            std::thread::sleep(Duration::from_millis(500));
        }
        let entries = herald_speaker::pinned::entries(&pin_dir)?.len();
        let cpu = cpu_percent(pid, Duration::from_secs(10))?;
        let controller_cpu = cpu_percent(controller, Duration::from_secs(10))?;
        let (rss, controller_rss) = (rss_mib(pid)?, rss_mib(controller)?);
        println!(
            "  {announced:>8} {entries:>12} {rss:>12.1} {cpu:>12.2} {controller_rss:>16.1} {controller_cpu:>16.2}"
        );
        measured.push((announced, [rss, cpu, controller_rss, controller_cpu]));
        Ok(())
    };
    let base = herald_speaker::pinned::entries(&pin_dir)?.len();
    at_rest(0)?;
    let mut created = 0;
    for n in SCALES {
        rt.block_on(create_services(client, created, n))?;
        created = n;
        wait_for_entries(&pin_dir, base + n, Duration::from_secs(600))?;
        at_rest(n)?;
    }

    plot_at_rest(&measured)?;

    // Cold start with every Service there: the speaker lists everything and fills the map.
    let n = created;
    kl.kill_speaker("node-a")?;
    // The killed speaker's pins (and its full map) go, so that only the new map is counted.
    std::fs::remove_dir_all(&pin_dir)?;
    let start = Instant::now();
    kl.start_speaker("node-a")?;
    wait_for_entries(&pin_dir, base + n, Duration::from_secs(600))?;
    let took = start.elapsed();
    println!("\nFilling the map with {n} entries:");
    println!(
        "  speaker cold start to a full map (load, list, join, one pass): {:>6.0} ms",
        took.as_secs_f64() * 1e3
    );
    println!(
        "  bare map updates, the floor (this process, {n} inserts):     {:>6.0} ms",
        bare_inserts(n)?.as_secs_f64() * 1e3
    );
    Ok(())
}

/// Memory and CPU against the number of Services, the speaker's beside the controller's.
fn plot_at_rest(measured: &[(usize, [f64; 4])]) -> anyhow::Result<()> {
    let rows = |speaker: usize, controller: usize| -> Vec<(String, f64)> {
        [("speaker", speaker), ("controller", controller)]
            .into_iter()
            .flat_map(|(who, i)| measured.iter().map(move |(n, v)| (format!("{who}, {n} Services"), v[i])))
            .collect()
    };
    let title = "Resident memory against Services announced (one speaker, the controller)";
    plot::save("converge-memory", &plot::bars(title, "MiB resident", &rows(0, 2)))?;
    let title = "CPU at rest against Services announced (over 10 s)";
    plot::save("converge-cpu", &plot::bars(title, "% of one CPU", &rows(1, 3)))
}

/// Services `from..to` in the scale pool, each with an Endpoints object on node-a (no selector:
/// the bench writes the endpoints, so that thousands need no Pods).
async fn create_services(client: &Client, from: usize, to: usize) -> anyhow::Result<()> {
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    futures_util::stream::iter(from..to)
        .map(|i| {
            let (services, endpoints) = (services.clone(), endpoints.clone());
            async move {
                let name = format!("scale-{i}");
                let vip = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 1)) + i as u32);
                let mut svc = service_json(&name, vip, "", false)?;
                svc.spec.as_mut().context("spec")?.selector = None;
                services.create(&PostParams::default(), &svc).await?;
                let ep: Endpoints = serde_json::from_value(json!({
                    "metadata": { "name": name },
                    "subsets": [{ "addresses": [{ "ip": "198.51.100.1", "nodeName": "node-a" }], "ports": [{ "port": 80 }] }],
                }))?;
                endpoints.create(&PostParams::default(), &ep).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(32)
        .try_collect::<()>()
        .await
}

fn wait_for_entries(pin_dir: &std::path::Path, n: usize, timeout: Duration) -> anyhow::Result<Duration> {
    let start = Instant::now();
    loop {
        let have = herald_speaker::pinned::entries(pin_dir).map_or(0, |e| e.len());
        if have >= n {
            return Ok(start.elapsed());
        }
        anyhow::ensure!(start.elapsed() < timeout, "{have} of {n} entries after {timeout:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn rss_mib(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("VmRSS")?;
    Ok(kb / 1024.0)
}

/// The process's CPU use over `window`, in percent of one CPU.
fn cpu_percent(pid: u32, window: Duration) -> anyhow::Result<f64> {
    let ticks = || -> anyhow::Result<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        let fields: Vec<&str> = stat.rsplit_once(')').context("stat")?.1.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
        Ok(fields[11].parse::<f64>()? + fields[12].parse::<f64>()?)
    };
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)?.unwrap_or(100) as f64;
    let before = ticks()?;
    std::thread::sleep(window);
    Ok((ticks()? - before) / hz / window.as_secs_f64() * 100.0)
}

/// `n` inserts into a freshly loaded responder map, timed.
fn bare_inserts(n: usize) -> anyhow::Result<Duration> {
    let pin_dir = std::path::PathBuf::from(format!("/sys/fs/bpf/herald-bench-{}", std::process::id()));
    let options = herald_speaker::datapath::Options {
        dead_man: Duration::from_secs(2),
        pin_dir: pin_dir.clone(),
        state_dir: std::env::temp_dir(),
        mode: herald_speaker::datapath::Mode::Auto,
        log: herald_speaker::datapath::LogLevel::Off,
        on_exit: herald_speaker::datapath::OnExit::Detach,
    };
    let mut datapath = Datapath::load(&options)?;
    let start = Instant::now();
    for i in 0..n {
        let addr = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 1)) + i as u32);
        datapath.insert(&Key::Arp(ArpKey::new(addr.octets(), 1, 0)), [2, 0, 0, 0, 0, 1])?;
    }
    let took = start.elapsed();
    drop(datapath);
    let _ = std::fs::remove_dir_all(&pin_dir);
    Ok(took)
}
