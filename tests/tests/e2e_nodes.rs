//! Herald as users run it: three lab nodes with their own containerd and kubelet
//! (tests/src/nodes.rs), Herald set up by `kubectl herald init --range` (deploy/ as it is, with
//! the API server's address, as the lab has no kube-proxy), and a client on the LAN. The runtime enforces deploy/'s securityContext (RuntimeDefault seccomp, three
//! capabilities, read-only root) and the hostPath bpffs; the client sees who answers through a
//! speaker pod's deletion, a rolling restart (which attaches nothing anew: each speaker takes
//! over its predecessor's link) and a node that stops. Needs root and the API server.

use std::{net::Ipv4Addr, time::Duration};

use herald_kube::crd::ServiceL2Status;
use herald_tests::{
    apiserver,
    checker::Answers,
    cluster, kube_lab,
    lab::format_mac,
    nodes::{self, NodeLab},
    poll, probe, root_or_skip, speaker,
    workload::{self, NAMESPACE},
};
use k8s_openapi::api::core::v1::Pod;
use kube::{Api, Client};

const NODES: [&str; 3] = ["node-a", "node-b", "node-c"];

#[tokio::test(flavor = "current_thread")]
async fn deploy_on_real_nodes() {
    if !root_or_skip("deploy_on_real_nodes") || !apiserver::available_or_skip("deploy_on_real_nodes") {
        return;
    }
    let nl = NodeLab::start(&NODES).expect("nodes");
    let client = nl.enter().await.unwrap_or_else(|e| panic!("{e:#}"));
    let started = std::time::Instant::now();
    // From nothing, in one command: deploy/, a pool of the range and its advertisement, until
    // the speakers are Ready. The lab has no kube-proxy: pods reach the API server by address.
    let api_server = format!("{}:6443", nodes::CONTROL_PLANE);
    let init = ["init", "--range", "192.0.2.240/28", "--api-server", &api_server, "--timeout", "120"];
    let (code, said) = kube_lab::plugin(&nl.server.kubeconfig, &init);
    assert!(
        code == 0 && said.contains("ready: 3 speakers"),
        "kubectl herald init: exit {code}\n{said}\n{}",
        describe(&nl)
    );
    eprintln!("kubectl herald init: Ready in {:.1} s", started.elapsed().as_secs_f64());
    let running = workload::wait_for_herald(&client, NODES.len()).await;
    assert!(running.is_ok(), "{running:?}: {}\n{}", describe(&nl), nl.logs());

    // The runtime runs the image built, as deploy/ says.
    let built = nodes::image_id(&nodes::image("herald-speaker").unwrap()).unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    for pod in pods.list(&workload::speakers()).await.unwrap() {
        assert_runtime_kept_deploy_settings(&pod);
        let status = &pod.status.as_ref().and_then(|s| s.container_statuses.clone()).unwrap_or_default()[0];
        assert!(
            status.image_id.ends_with(&built),
            "{} runs {}, built {built}",
            status.image,
            status.image_id
        );
    }

    // Each speaker reaches one bpffs: the host's Herald directory, not the whole of it.
    let pids = std::process::Command::new("pgrep").args(["-x", "herald-speaker"]).output().unwrap();
    let pids: Vec<String> =
        String::from_utf8_lossy(&pids.stdout).split_whitespace().map(String::from).collect();
    assert_eq!(pids.len(), NODES.len(), "speaker processes: {pids:?}");
    for pid in pids {
        let mountinfo = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
        assert_eq!(
            bpffs_mounts(&mountinfo),
            [("/herald".to_owned(), "/bpf/herald".to_owned())],
            "{mountinfo}"
        );
    }

    // A Service gets an address; the node MetalLB's rule elects answers.
    let vip = workload::serve(&client, "node-a").await.unwrap();
    let owner = cluster::elected(vip, &NODES);
    let waited = cluster::wait_for_owner(&nl.lab, vip, nl.lab.node(owner).mac, Duration::from_secs(60));
    assert!(waited.is_ok(), "{owner} does not answer for {vip}: {waited:?}\n{}", describe(&nl));
    eprintln!("init to the first ARP answer for {vip}: {:.1} s", started.elapsed().as_secs_f64());
    // Through the API server alone (the node proxy to the speakers' metrics): who answers.
    let (code, said) = kube_lab::plugin(&nl.server.kubeconfig, &["explain", &vip.to_string()]);
    assert!(code == 0 && said.contains(&format!("{owner} answers for {vip} on eth0")), "exit {code}\n{said}");
    assert_eq!(status_names(&client, owner).await.as_deref(), Some(owner));

    // The owner's speaker pod is deleted: the next node in the sha256 order answers at once, and
    // the DaemonSet's new pod takes the address back.
    let rest: Vec<&str> = NODES.iter().copied().filter(|n| *n != owner).collect();
    let heir = cluster::elected(vip, &rest);
    let pod = workload::speaker_on(&client, owner).await.unwrap();
    let (probes, deleted) = watch(&nl, vip, Duration::from_secs(4), || {
        nl.kubectl(&["delete", "pod", "-n", NAMESPACE, &pod, "--wait=false"]).map(drop)
    });
    let moved = workload::first_answer_by(&probes, nl.lab.node(heir).mac, deleted);
    eprintln!("speaker pod of {owner} deleted: {heir} answers after {moved:?}");
    assert!(moved.is_some_and(|t| t < Duration::from_secs(1)), "{heir} took over after {moved:?}");
    assert_one_answer_each(&probes);
    let back = poll::until_async(Duration::from_secs(90), async || {
        let new = workload::speaker_on(&client, owner).await.ok();
        let list = pods.list(&workload::speakers()).await.map(|l| l.items).unwrap_or_default();
        new.is_some_and(|n| n != pod) && list.len() == NODES.len() && list.iter().all(workload::is_ready)
    })
    .await;
    assert!(back.is_some(), "the DaemonSet did not bring {owner}'s speaker back: {}", describe(&nl));
    cluster::wait_for_owner(&nl.lab, vip, nl.lab.node(owner).mac, Duration::from_secs(30)).unwrap();

    // A rolling restart, as every upgrade is: the client asks every 10 ms throughout. Each new
    // speaker takes over the link its predecessor left (--on-exit keep): nothing is attached
    // anew, the link keeps its id and runs the new program.
    let before: Vec<(u32, String)> = NODES
        .iter()
        .map(|n| speaker::at_tc(nl.lab.node(n)).unwrap_or_else(|e| panic!("{n}: {e:#}")))
        .collect();
    let probes = probe::series_during(&nl.lab.client, vip, Duration::from_millis(10), || {
        nl.kubectl(&["rollout", "restart", "daemonset/herald-speaker", "-n", NAMESPACE])?;
        nl.kubectl(&["rollout", "status", "daemonset/herald-speaker", "-n", NAMESPACE, "--timeout=120s"])
            .map(drop)
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", describe(&nl)));
    let gap = Answers::of(&probes).longest_silence();
    eprintln!("rollout restart: longest stretch without an answer {gap:?} ({} probes)", probes.len());
    assert!(gap < Duration::from_secs(1), "no answer for {gap:?} during the rollout\n{}", nl.logs());
    assert_one_answer_each(&probes);
    for (node, (program, holder)) in NODES.iter().zip(before) {
        let (now, held) = speaker::at_tc(nl.lab.node(node)).unwrap_or_else(|e| panic!("{node}: {e:#}"));
        assert_eq!(held, holder, "{node}: the rollout attached anew");
        assert_ne!(now, program, "{node}: the link still runs the old speaker's program");
    }

    // The owner's node stops whole (kubelet, containerd, every pod): the address moves.
    cluster::wait_for_owner(&nl.lab, vip, nl.lab.node(owner).mac, Duration::from_secs(30)).unwrap();
    let (probes, stopped) = watch(&nl, vip, Duration::from_secs(5), || nl.stop_node(owner));
    let moved = workload::first_answer_by(&probes, nl.lab.node(heir).mac, stopped);
    eprintln!("{owner} stopped: {heir} answers after {moved:?}");
    assert!(moved.is_some(), "nobody took {vip} over from the stopped {owner}");
    assert_one_answer_each(&probes);
}

/// deploy/'s securityContext, as the runtime ran it (the pod spec is what kubelet enforced).
fn assert_runtime_kept_deploy_settings(pod: &Pod) {
    let spec = pod.spec.as_ref().unwrap();
    let seccomp = spec.security_context.as_ref().and_then(|s| s.seccomp_profile.as_ref());
    assert_eq!(seccomp.map(|s| s.type_.as_str()), Some("RuntimeDefault"));
    let security = spec.containers[0].security_context.as_ref().unwrap();
    assert_eq!(security.read_only_root_filesystem, Some(true));
    let caps = security.capabilities.as_ref().unwrap();
    assert_eq!(caps.add.as_deref(), Some(&["BPF", "NET_ADMIN", "NET_RAW"].map(String::from)[..]));
    assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_owned()][..]));
}

/// The bpffs mounts in a `/proc/PID/mountinfo`: the directory of the bpffs mounted, and where.
fn bpffs_mounts(mountinfo: &str) -> Vec<(String, String)> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (mount, fs) = line.split_once(" - ")?;
            let fields: Vec<&str> = mount.split_whitespace().collect();
            (fs.split_whitespace().next() == Some("bpf"))
                .then(|| (fields[3].to_owned(), fields[4].to_owned()))
        })
        .collect()
}

/// Probes `vip` from the client every 10 ms for `window` and runs `action` 300 ms in; returns
/// the probes and when the action began (capture time).
fn watch(
    nl: &NodeLab,
    vip: Ipv4Addr,
    window: Duration,
    action: impl FnOnce() -> anyhow::Result<()>,
) -> (Vec<probe::Probe>, f64) {
    let mut at = 0.0;
    let count = (window.as_millis() / 10) as usize;
    let probes = probe::series(&nl.lab.client, vip, count, Duration::from_millis(10), || {
        std::thread::sleep(Duration::from_millis(300));
        at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        action()
    })
    .unwrap_or_else(|e| panic!("{e:#}"));
    (probes, at)
}

fn assert_one_answer_each(probes: &[probe::Probe]) {
    let doubles = Answers::of(probes).doubled;
    let shown: Vec<(f64, Vec<String>)> =
        doubles.iter().map(|(t, macs)| (*t, macs.iter().map(|m| format_mac(*m)).collect())).collect();
    assert!(shown.is_empty(), "requests answered by two MACs: {shown:?}");
}

/// Waits until the Service's ServiceL2Status names `node`; the node it names last.
async fn status_names(client: &Client, node: &str) -> Option<String> {
    let statuses: Api<ServiceL2Status> = Api::namespaced(client.clone(), NAMESPACE);
    let mut named = None;
    poll::until_async(Duration::from_secs(30), async || {
        named =
            statuses.get_opt("l2-default.web").await.ok().flatten().and_then(|s| s.status).map(|s| s.node);
        named.as_deref() == Some(node)
    })
    .await;
    named
}

/// `kubectl get pods -A -o wide` and the Events, for a failure message.
fn describe(nl: &NodeLab) -> String {
    let pods = nl.kubectl(&["get", "pods", "-A", "-o", "wide"]).unwrap_or_else(|e| e.to_string());
    let events = nl.kubectl(&["get", "events", "-A"]).unwrap_or_else(|e| e.to_string());
    format!("{pods}\n{events}")
}
