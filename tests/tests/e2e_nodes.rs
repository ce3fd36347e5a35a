//! Herald as users run it: three lab nodes with their own containerd and kubelet
//! (tests/src/nodes.rs), `kubectl apply -k` of deploy/ as it is through an overlay that only
//! names the images built by `cargo xtask image` and the API server's address, and a client on
//! the LAN. The runtime enforces deploy/'s securityContext (RuntimeDefault seccomp, three
//! capabilities, read-only root) and the hostPath bpffs; the client sees who answers through a
//! speaker pod's deletion, a rolling restart and a node that stops. Needs root and the API server.

use std::{
    collections::BTreeSet,
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use herald_controller::crd::ServiceL2Status;
use herald_tests::{
    apiserver, cluster,
    lab::format_mac,
    nodes::{self, NodeLab},
    probe, root_or_skip,
};
use k8s_openapi::api::{
    coordination::v1::Lease,
    core::v1::{Pod, Service},
};
use kube::{
    Api, Client,
    api::{ListParams, PostParams},
};
use serde_json::json;

const NODES: [&str; 3] = ["node-a", "node-b", "node-c"];
const NAMESPACE: &str = "herald-system";

#[tokio::test(flavor = "current_thread")]
async fn deploy_on_real_nodes() {
    if !root_or_skip("deploy_on_real_nodes") || !apiserver::available_or_skip("deploy_on_real_nodes") {
        return;
    }
    let nl = NodeLab::start(&NODES).expect("nodes");
    let client = nl.enter().await.unwrap_or_else(|e| panic!("{e:#}"));
    let started = Instant::now();
    let overlay = nodes::overlay(&nl.lab.workdir).unwrap();
    nl.kubectl(&["apply", "-k", overlay.to_str().unwrap()]).unwrap_or_else(|e| panic!("{e:#}"));

    // Every speaker pod Ready, the controllers running with one leader.
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let speakers = ListParams::default().labels("app.kubernetes.io/name=herald-speaker");
    let ready = eventually(Duration::from_secs(120), async || {
        let list = pods.list(&speakers).await.unwrap();
        list.items.len() == NODES.len() && list.items.iter().all(is_ready)
    })
    .await;
    assert!(ready, "speakers not Ready: {}\n{}", describe(&nl), nl.logs());
    let leases: Api<Lease> = Api::namespaced(client.clone(), NAMESPACE);
    let led = eventually(Duration::from_secs(60), async || {
        leases.get_opt("herald-controller").await.unwrap().and_then(|l| l.spec?.holder_identity).is_some()
    })
    .await;
    assert!(led, "no controller leader: {}", describe(&nl));
    let built = nodes::image_id(&nodes::image("herald-speaker").unwrap()).unwrap();
    for pod in pods.list(&speakers).await.unwrap() {
        assert_runtime_kept_deploy_settings(&pod);
        let statuses = pod.status.as_ref().and_then(|s| s.container_statuses.clone()).unwrap_or_default();
        assert!(
            statuses[0].image_id.ends_with(&built),
            "{} runs {}, built {built}",
            statuses[0].image,
            statuses[0].image_id
        );
    }

    // A Service gets an address; the node MetalLB's rule elects answers.
    give_addresses(&client).await;
    serve(&client).await;
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let vip = allocated(&services).await;
    let owner = cluster::elected(vip, &NODES);
    let waited = cluster::wait_for_owner(&nl.lab, vip, nl.lab.node(owner).mac, Duration::from_secs(60));
    assert!(waited.is_ok(), "{owner} does not answer for {vip}: {waited:?}\n{}", describe(&nl));
    eprintln!("apply -k to the first ARP answer for {vip}: {:.1} s", started.elapsed().as_secs_f64());
    assert_eq!(status_names(&client, owner).await.as_deref(), Some(owner));

    // The owner's speaker pod is deleted: the next node in the sha256 order answers at once, and
    // the DaemonSet's new pod takes the address back.
    let rest: Vec<&str> = NODES.iter().copied().filter(|n| *n != owner).collect();
    let heir = cluster::elected(vip, &rest);
    let pod = speaker_on(&pods, owner).await;
    let (probes, deleted) = watch(&nl, vip, Duration::from_secs(4), || {
        nl.kubectl(&["delete", "pod", "-n", NAMESPACE, &pod, "--wait=false"]).map(drop)
    });
    let moved = first_answer_by(&probes, nl.lab.node(heir).mac, deleted);
    eprintln!("speaker pod of {owner} deleted: {heir} answers after {moved:?}");
    assert!(moved.is_some_and(|t| t < Duration::from_secs(1)), "{heir} took over after {moved:?}");
    assert_no_double_answers(&probes);
    let back = eventually(Duration::from_secs(90), async || {
        let list = pods.list(&speakers).await.unwrap();
        list.items.len() == NODES.len()
            && list.items.iter().all(is_ready)
            && speaker_on(&pods, owner).await != pod
    })
    .await;
    assert!(back, "the DaemonSet did not bring {owner}'s speaker back: {}", describe(&nl));
    cluster::wait_for_owner(&nl.lab, vip, nl.lab.node(owner).mac, Duration::from_secs(30)).unwrap();

    // A rolling restart, as every upgrade is: the client asks every 10 ms throughout.
    let probes = probe::series_during(&nl.lab.client, vip, Duration::from_millis(10), || {
        nl.kubectl(&["rollout", "restart", "daemonset/herald-speaker", "-n", NAMESPACE])?;
        nl.kubectl(&["rollout", "status", "daemonset/herald-speaker", "-n", NAMESPACE, "--timeout=120s"])
            .map(drop)
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", describe(&nl)));
    let gap = longest_silence(&probes);
    eprintln!("rollout restart: longest stretch without an answer {gap:?} ({} probes)", probes.len());
    assert!(gap < Duration::from_secs(1), "no answer for {gap:?} during the rollout");
    assert_no_double_answers(&probes);

    // The owner's node stops whole (kubelet, containerd, every pod): the address moves.
    cluster::wait_for_owner(&nl.lab, vip, nl.lab.node(owner).mac, Duration::from_secs(30)).unwrap();
    let (probes, stopped) = watch(&nl, vip, Duration::from_secs(5), || nl.stop_node(owner));
    let moved = first_answer_by(&probes, nl.lab.node(heir).mac, stopped);
    eprintln!("{owner} stopped: {heir} answers after {moved:?}");
    assert!(moved.is_some(), "nobody took {vip} over from the stopped {owner}");
    assert_no_double_answers(&probes);
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

/// How long after `since` the first reply from `mac` came.
fn first_answer_by(probes: &[probe::Probe], mac: [u8; 6], since: f64) -> Option<Duration> {
    probes
        .iter()
        .flat_map(|p| &p.replies)
        .find(|(t, m)| *t >= since && *m == mac)
        .map(|(t, _)| Duration::from_secs_f64(t - since))
}

/// The longest time between two answered requests.
fn longest_silence(probes: &[probe::Probe]) -> Duration {
    let answered: Vec<f64> = probes.iter().filter(|p| !p.replies.is_empty()).map(|p| p.sent).collect();
    let ends = [probes.first().map(|p| p.sent), probes.last().map(|p| p.sent)];
    let times: Vec<f64> =
        ends[..1].iter().flatten().chain(&answered).chain(ends[1..].iter().flatten()).copied().collect();
    let longest = times.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
    Duration::from_secs_f64(longest)
}

/// No request was answered by two MACs.
fn assert_no_double_answers(probes: &[probe::Probe]) {
    for p in probes {
        let macs: BTreeSet<String> = p.replies.iter().map(|(_, m)| format_mac(*m)).collect();
        assert!(macs.len() <= 1, "the request at {:.3} was answered by {macs:?}", p.sent);
    }
}

/// The name of the speaker pod on `node`.
async fn speaker_on(pods: &Api<Pod>, node: &str) -> String {
    let lp = ListParams::default().labels("app.kubernetes.io/name=herald-speaker");
    let list = pods.list(&lp).await.unwrap();
    let on = list.items.iter().find(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node));
    on.and_then(|p| p.metadata.name.clone()).unwrap_or_default()
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

fn is_ready(pod: &Pod) -> bool {
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions.is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// A pool and an advertisement in Herald's namespace.
async fn give_addresses(client: &Client) {
    let objects = [
        json!({ "apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
                "metadata": { "name": "lan", "namespace": NAMESPACE },
                "spec": { "addresses": ["192.0.2.240/28"] } }),
        json!({ "apiVersion": "metallb.io/v1beta1", "kind": "L2Advertisement",
                "metadata": { "name": "lan", "namespace": NAMESPACE } }),
    ];
    let discovery = kube::discovery::Discovery::new(client.clone()).run().await.unwrap();
    let objects = objects.into_iter().map(|o| serde_json::from_value(o).unwrap()).collect();
    herald_tests::objects::create_all(client, &discovery, objects).await;
}

/// A LoadBalancer Service `web` with one ready backend pod (the pause image) on node-a.
async fn serve(client: &Client) {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": { "name": "web-1", "labels": { "app": "web" } },
        "spec": { "nodeName": "node-a", "containers": [{ "name": "web",
                  "image": format!("docker.io/library/herald-pause:{}", env!("CARGO_PKG_VERSION")) }] },
    }))
    .unwrap();
    Api::<Pod>::namespaced(client.clone(), "default").create(&PostParams::default(), &pod).await.unwrap();
    let svc: Service = serde_json::from_value(json!({
        "metadata": { "name": "web" },
        "spec": { "type": "LoadBalancer", "selector": { "app": "web" }, "ports": [{ "port": 80 }] },
    }))
    .unwrap();
    Api::<Service>::namespaced(client.clone(), "default").create(&PostParams::default(), &svc).await.unwrap();
}

async fn allocated(services: &Api<Service>) -> Ipv4Addr {
    let mut vip = None;
    let found = eventually(Duration::from_secs(60), async || {
        let svc = services.get("web").await.unwrap();
        let ingress = svc.status.and_then(|s| s.load_balancer).and_then(|l| l.ingress).unwrap_or_default();
        vip = ingress.first().and_then(|i| i.ip.as_ref()).and_then(|ip| ip.parse().ok());
        vip.is_some()
    })
    .await;
    assert!(found, "web got no address");
    vip.unwrap()
}

/// Waits until the Service's ServiceL2Status names `node`; the node it names last.
async fn status_names(client: &Client, node: &str) -> Option<String> {
    let statuses: Api<ServiceL2Status> = Api::namespaced(client.clone(), NAMESPACE);
    let mut named = None;
    eventually(Duration::from_secs(30), async || {
        named = statuses.get_opt("l2-default.web").await.unwrap().and_then(|s| s.status).map(|s| s.node);
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

async fn eventually(timeout: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    false
}
