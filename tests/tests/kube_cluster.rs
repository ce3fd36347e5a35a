//! The whole product in the lab: a control plane (kube-apiserver, kube-controller-manager for
//! Endpoints, herald-controller) on the LAN, three nodes running herald-speaker in Kubernetes
//! mode, and a client that only speaks ARP. Each phase changes the cluster the way a user or a
//! failure would and asserts what the client sees and what the API says.

use std::{
    collections::BTreeSet,
    net::{IpAddr, Ipv4Addr},
    time::{Duration, Instant},
};

use herald_kube::crd::{IPAddressPool, L2Advertisement, ServiceL2Status};
use herald_tests::{
    apiserver, cluster,
    kube_lab::{self, KubeLab, NAMESPACE, metric},
    objects, poll, probe, prometheus, rbac, root_or_skip,
};
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
};
use serde_json::json;

const NODES: [&str; 3] = ["node-a", "node-b", "node-c"];
/// Membership failover: detection, a 1 s dead-man bound for the killed node's program, and
/// room for a loaded CI machine (as in lab_cluster.rs).
const BOUND: Duration = Duration::from_secs(4);
/// Changes that travel through the API server: watches, a controller pass, the speakers' pass.
const API_BOUND: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "current_thread")]
async fn whole_cluster() {
    if !root_or_skip("whole_cluster")
        || !apiserver::available_or_skip("whole_cluster")
        || !prometheus::available_or_skip("whole_cluster")
    {
        return;
    }
    let mut kl = KubeLab::start(&NODES).expect("lab and control plane");
    let client = kl.enter().await.unwrap_or_else(|e| panic!("control plane: {e:#}\n{}", kl.logs()));
    for node in NODES {
        kl.start_speaker(node).unwrap_or_else(|e| panic!("speaker on {node}: {e:#}\n{}", kl.logs()));
    }
    // A real Prometheus on the control plane scrapes the speakers and the controller throughout,
    // with deploy/monitoring's rules.
    let speakers: Vec<Ipv4Addr> = NODES.iter().map(|n| kl.lab.node(n).addr).collect();
    let cp = kl.control_plane.clone();
    let prometheus = prometheus::Server::start(&mut kl.lab, &cp, &speakers, "127.0.0.1:7472").unwrap();
    let vip =
        kube_lab::web_service(&client, API_BOUND).await.unwrap_or_else(|e| panic!("{e:#}\n{}", kl.logs()));
    let ads: Api<L2Advertisement> = Api::namespaced(client.clone(), NAMESPACE);
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    assert!(vip.octets()[3] >= 240, "{vip} comes from the pool");
    let owner = cluster::elected(vip, &NODES);
    let t = answered_by(&kl, vip, owner, API_BOUND);
    eprintln!("{vip}: {owner} answers {t:?} after allocation");
    status_names(&kl, &client, owner).await;

    // kubectl herald: who answers, and the whole chain to it; an address no pool covers.
    let text = explains(&kl, &vip.to_string(), 0, &format!("{owner} answers for {vip} on eth0"));
    assert!(!text.contains("cause:"), "{text}");
    let (code, status) = kl.kubectl_herald(&["status"]);
    assert_eq!(code, 0, "{status}");
    assert!(
        status
            .lines()
            .any(|l| l.starts_with(&vip.to_string()) && l.contains("default/web") && l.contains(owner)),
        "{status}"
    );
    explains(&kl, "203.0.113.5", 1, "no pool covers 203.0.113.5, and no Service holds it");
    preflight_in_kubernetes_mode(&kl, owner);
    let assigned = objects::events(&client, "web", "nodeAssigned").await;
    assert!(
        assigned.iter().any(|n| n.contains(&format!("{owner:?}"))),
        "nodeAssigned names {owner}: {assigned:?}"
    );

    // The owner's speaker dies: the next in the sha256 order takes over, and the status follows.
    kl.kill_speaker(owner).unwrap();
    let rest: Vec<&str> = NODES.iter().copied().filter(|n| *n != owner).collect();
    let heir = cluster::elected(vip, &rest);
    let t = answered_by(&kl, vip, heir, BOUND);
    eprintln!("{vip}: {heir} took over {t:?} after {owner}'s speaker was killed");
    status_names(&kl, &client, heir).await;
    let metrics = kl.lab.node(heir).run("curl", &["-sf", "http://127.0.0.1:7472/metrics"]).unwrap();
    let labels = format!("ip=\"{vip}\",interface=\"eth0\",vlan=\"0\"");
    let answered = metric(&metrics, &format!("herald_replies_total{{protocol=\"arp\",{labels}}}"));
    assert!(answered >= 1.0, "the heir's XDP program answered, and /metrics shows it:\n{metrics}");
    // The deprecated name, kept for a release, counts the same.
    assert_eq!(metric(&metrics, &format!("herald_arp_replies_total{{{labels}}}")), answered, "{metrics}");
    let announced = format!("herald_announced{{protocol=\"arp\",{labels},node=\"{heir}\",hook=\"");
    let line = metrics
        .lines()
        .find(|l| l.starts_with(&announced))
        .unwrap_or_else(|| panic!("{announced}: {metrics}"));
    let value: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(value == 1.0 && !line.contains("hook=\"none\""), "the hook it answers at: {line}");
    assert!(metric(&metrics, "herald_takeover_seconds_count") >= 1.0, "a takeover was timed:\n{metrics}");
    assert_eq!(metric(&metrics, "herald_members_alive"), 2.0, "{metrics}");
    kl.start_speaker(owner).unwrap();
    answered_by(&kl, vip, owner, BOUND);
    status_names(&kl, &client, owner).await;

    dual_stack(&kl, &client).await;

    // externalTrafficPolicy: Local: only the endpoint's node, and it follows the endpoint.
    set_local(&services, true).await;
    answered_by(&kl, vip, "node-a", API_BOUND);
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.delete("web-1", &DeleteParams { grace_period_seconds: Some(0), ..Default::default() })
        .await
        .unwrap();
    kube_lab::ready_pod(&client, "web-2", "web", "node-b", Ipv4Addr::new(198, 51, 100, 2)).await.unwrap();
    answered_by(&kl, vip, "node-b", API_BOUND);
    status_names(&kl, &client, "node-b").await;
    // The endpoint's node excluded by label: nobody may announce it, and explain names why.
    let nodes: Api<Node> = Api::all(client.clone());
    let label = |value: serde_json::Value| json!({ "metadata": { "labels": { "node.kubernetes.io/exclude-from-external-load-balancers": value } } });
    nodes.patch("node-b", &PatchParams::default(), &Patch::Merge(label(json!("")))).await.unwrap();
    explains(
        &kl,
        "default/web",
        1,
        "node-b: labelled node.kubernetes.io/exclude-from-external-load-balancers",
    );
    nodes
        .patch("node-b", &PatchParams::default(), &Patch::Merge(label(serde_json::Value::Null)))
        .await
        .unwrap();
    set_local(&services, false).await;
    answered_by(&kl, vip, owner, API_BOUND);

    // An L2Advertisement's nodeSelectors keep the address off the nodes they leave out.
    let without_owner = cluster::elected(vip, &rest);
    let selector = json!({ "spec": { "nodeSelectors": [{ "matchExpressions": [
        { "key": "kubernetes.io/hostname", "operator": "NotIn", "values": [owner] }] }] } });
    ads.patch("lan", &PatchParams::default(), &Patch::Merge(selector)).await.unwrap();
    answered_by(&kl, vip, without_owner, API_BOUND);
    explains(
        &kl,
        &vip.to_string(),
        0,
        &format!("{owner}: the nodeSelectors of L2Advertisement lan leave it out"),
    );
    // Selecting no node at all.
    let nowhere = json!({ "spec": { "nodeSelectors": [{ "matchLabels": { "zone": "nowhere" } }] } });
    ads.patch("lan", &PatchParams::default(), &Patch::Merge(nowhere)).await.unwrap();
    explains(&kl, &vip.to_string(), 1, "no node may announce it");
    ads.patch("lan", &PatchParams::default(), &Patch::Merge(json!({ "spec": { "nodeSelectors": null } })))
        .await
        .unwrap();
    answered_by(&kl, vip, owner, API_BOUND);

    // The exclusion label does the same, whatever the advertisements say.
    nodes.patch(owner, &PatchParams::default(), &Patch::Merge(label(json!("")))).await.unwrap();
    answered_by(&kl, vip, without_owner, API_BOUND);
    status_names(&kl, &client, without_owner).await;
    nodes.patch(owner, &PatchParams::default(), &Patch::Merge(label(serde_json::Value::Null))).await.unwrap();
    answered_by(&kl, vip, owner, API_BOUND);
    status_names(&kl, &client, owner).await;

    // Interfaces the owner does not have: nobody answers, and an announceFailed Event says why.
    let named = |list: serde_json::Value| Patch::Merge(json!({ "spec": { "interfaces": list } }));
    ads.patch("lan", &PatchParams::default(), &named(json!(["bond7"]))).await.unwrap();
    silent(&kl, vip);
    let failed = eventually(async || {
        objects::events(&client, "web", "announceFailed").await.iter().any(|n| n.contains("bond7"))
    })
    .await;
    assert!(failed, "no announceFailed Event naming bond7\n{}", kl.logs());
    let text = explains(&kl, "default/web", 1, "its map holds no entry for");
    assert!(text.contains("bond7"), "the owner's announceFailed Event: {text}");
    ads.patch("lan", &PatchParams::default(), &named(serde_json::Value::Null)).await.unwrap();
    answered_by(&kl, vip, owner, API_BOUND);

    // The API server goes away and comes back: the client sees the same owner throughout.
    kl.server.stop_apiserver().unwrap();
    steady(&kl, vip, owner, Duration::from_secs(6));
    kl.server.restart_apiserver().unwrap();
    steady(&kl, vip, owner, Duration::from_secs(6));
    status_names(&kl, &client, owner).await;

    // Another host claims the address: the owner tells the Service, naming that host's MAC.
    let claim = herald_speaker::frame::Arp::gratuitous(kl.lab.client.mac, vip, 0).to_bytes();
    let claimed = k8s_openapi::jiff::Timestamp::now();
    herald_tests::probe::send_frames(&kl.lab.client, vec![claim]).unwrap();
    let intruder = herald_tests::lab::format_mac(kl.lab.client.mac);
    let mut told = None;
    eventually(async || {
        told = objects::events_about(&client, "web").await.into_iter().find(|e| {
            e.reason.as_deref() == Some("AddressConflict")
                && e.note.as_ref().is_some_and(|n| n.contains(&intruder))
        });
        told.is_some()
    })
    .await;
    let told = told.unwrap_or_else(|| panic!("no AddressConflict Event naming {intruder}\n{}", kl.logs()));
    monitoring_sees_it_all(&prometheus, &vip.to_string(), &intruder);
    explains(&kl, &vip.to_string(), 1, &format!("another host, {intruder}, claimed {vip}"));
    // A figure for the record (the speaker's clock is this host's), not a timed assertion.
    let written = told.event_time.map(|t| t.0.as_millisecond() - claimed.as_millisecond());
    eprintln!("AddressConflict Event written {written:?} ms after the claim was sent");
    steady(&kl, vip, owner, Duration::from_secs(2));

    // Deleting the Service withdraws the address everywhere, and its status with it.
    services.delete("web", &DeleteParams::default()).await.unwrap();
    silent(&kl, vip);
    let statuses: Api<ServiceL2Status> = Api::namespaced(client.clone(), NAMESPACE);
    let gone =
        eventually(async || statuses.list(&ListParams::default()).await.unwrap().items.is_empty()).await;
    assert!(gone, "ServiceL2Status left behind\n{}", kl.logs());

    // deploy/'s RBAC grants the speakers what they did through all of the above, and no more.
    assert_rbac_is_what_the_speakers_used(&kl);
}

/// Runs `kubectl herald explain target`, and asserts its exit code (0: answered) and that it
/// says `says`; returns what it printed.
fn explains(kl: &KubeLab, target: &str, code: i32, says: &str) -> String {
    let (got, text) = kl.kubectl_herald(&["explain", target]);
    eprintln!("$ kubectl herald explain {target}\n{text}");
    assert!(
        got == code && text.contains(says),
        "kubectl herald explain {target}: exit {got} (wanted {code}), expected {says:?} in:\n{text}"
    );
    text
}

/// After a whole cluster's life on Prometheus: every target is scraped, every query of the
/// dashboard returns series, and the conflict alert fires for the claim just made.
fn monitoring_sees_it_all(prometheus: &prometheus::Server, vip: &str, intruder: &str) {
    assert!(prometheus.all_up().unwrap(), "a target is down: {:?}", prometheus.query("up").unwrap());
    let mut firing = Vec::new();
    let fired = poll::until(API_BOUND, || {
        firing = prometheus.firing("HeraldAddressConflict").unwrap();
        firing.iter().any(|a| a["ip"] == vip && a["mac"] == intruder)
    });
    assert!(fired.is_some(), "HeraldAddressConflict for {vip} by {intruder} never fired: {firing:?}");
    eprintln!("HeraldAddressConflict fired {fired:?} after the Event was seen");
    for (panel, expr) in prometheus::dashboard_queries().unwrap() {
        let series = prometheus.query(&expr).unwrap();
        assert!(!series.is_empty(), "dashboard panel {panel:?}: no series for {expr}");
    }
    for quiet in ["HeraldAddressTwoOwners", "HeraldDeadManTripped", "HeraldSpeakerIsolated"] {
        assert_eq!(prometheus.firing(quiet).unwrap(), Vec::<serde_json::Value>::new(), "{quiet}");
    }
}

/// What deploy/ grants that the lab cannot show used, and why.
const GRANTED_FOR_OTHER_SERVERS: [(&str, &str, &str, &str); 1] = [(
    "discovery.k8s.io",
    "endpointslices",
    "watch",
    "EndpointSlice v1 (Kubernetes 1.21+); the lab's 1.20 server has none, and the speaker watches Endpoints",
)];

fn assert_rbac_is_what_the_speakers_used(kl: &KubeLab) {
    let user = apiserver::account_user("herald-speaker");
    let (used, refused) = rbac::used(&kl.server.audit_log().unwrap(), &user);
    let rbac_yaml =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/speaker-rbac.yaml"));
    let granted = rbac::granted(&rbac_yaml.unwrap(), "herald-speaker").unwrap();
    let elsewhere: BTreeSet<rbac::Access> = GRANTED_FOR_OTHER_SERVERS
        .iter()
        .map(|(g, r, v, _)| ((*g).into(), (*r).into(), (*v).into()))
        .collect();
    let unused: Vec<_> = granted.iter().filter(|a| !used.contains(*a) && !elsewhere.contains(*a)).collect();
    assert!(unused.is_empty(), "deploy/ grants the speakers what they never did: {unused:?}\nused: {used:?}");
    // Refused what is granted: asked while the restarted server's authorizer was still reading
    // the grants. Refused anything else: deploy/ lacks it.
    let ungranted: Vec<_> = used.iter().chain(&refused).filter(|a| !granted.contains(*a)).collect();
    assert!(ungranted.is_empty(), "the speakers needed what deploy/ does not grant: {ungranted:?}");
}

/// A dual-stack Service from a pool of both families: both its addresses are answered (ARP and
/// the client kernel's own Neighbor Discovery) by the one node MetalLB's rule elects over the
/// Service's first address; deleted, neither is.
async fn dual_stack(kl: &KubeLab, client: &Client) {
    let pools: Api<IPAddressPool> = Api::namespaced(client.clone(), NAMESPACE);
    let pool = json!({ "metadata": { "name": "dual" },
                       "spec": { "addresses": ["192.0.2.232/29", "2001:db8::240/124"], "autoAssign": false } });
    pools.create(&PostParams::default(), &serde_json::from_value(pool).unwrap()).await.unwrap();
    let ads: Api<L2Advertisement> = Api::namespaced(client.clone(), NAMESPACE);
    let ad = json!({ "metadata": { "name": "dual" }, "spec": { "ipAddressPools": ["dual"] } });
    ads.create(&PostParams::default(), &serde_json::from_value(ad).unwrap()).await.unwrap();
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let svc = json!({
        "metadata": { "name": "dual", "annotations": { "metallb.io/address-pool": "dual" } },
        "spec": { "type": "LoadBalancer", "selector": { "app": "web" }, "ports": [{ "port": 80 }],
                  "ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv6", "IPv4"] } });
    services.create(&PostParams::default(), &serde_json::from_value(svc).unwrap()).await.unwrap();

    let addresses = allocated_all(&services, "dual", 2).await;
    let (IpAddr::V6(v6), IpAddr::V4(v4)) = (addresses[0], addresses[1]) else {
        panic!("expected an IPv6 then an IPv4 address: {addresses:?}");
    };
    let owner = herald_speaker::election::owner(addresses[0], NODES).expect("a candidate");
    let mac = kl.lab.node(owner).mac;
    let t = answered_by(kl, v4, owner, API_BOUND);
    let resolved = poll::until(API_BOUND, || probe::resolve6(&kl.lab.client, v6).unwrap() == Some(mac));
    assert!(resolved.is_some(), "{v6} not resolved to {owner}'s MAC\n{}", kl.logs());
    eprintln!("dual stack {v6} and {v4}: {owner} answers both, {t:?} after allocation");
    // The other nodes stay silent for the IPv6 address: the client's table holds the owner's MAC
    // after a fresh solicitation, again.
    assert_eq!(probe::resolve6(&kl.lab.client, v6).unwrap(), Some(mac));

    services.delete("dual", &DeleteParams::default()).await.unwrap();
    silent(kl, v4);
    let quiet = poll::until(API_BOUND, || probe::resolve6(&kl.lab.client, v6).unwrap().is_none());
    assert!(quiet.is_some(), "{v6} still answered after the Service went\n{}", kl.logs());
    ads.delete("dual", &DeleteParams::default()).await.unwrap();
    pools.delete("dual", &DeleteParams::default()).await.unwrap();
}

/// The `count` addresses the controller gives Service `name`, in its status's order.
async fn allocated_all(services: &Api<Service>, name: &str, count: usize) -> Vec<IpAddr> {
    let deadline = Instant::now() + API_BOUND;
    loop {
        let svc = services.get(name).await.unwrap();
        let ingress = svc.status.and_then(|s| s.load_balancer).and_then(|lb| lb.ingress).unwrap_or_default();
        let ips: Vec<IpAddr> = ingress.iter().filter_map(|i| i.ip.as_deref()?.parse().ok()).collect();
        if ips.len() == count {
            return ips;
        }
        assert!(Instant::now() < deadline, "{name}: {ips:?} allocated, not {count} addresses");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until `node` alone answers ARP for `vip`; returns how long that took.
fn answered_by(kl: &KubeLab, vip: Ipv4Addr, node: &str, bound: Duration) -> Duration {
    let mac = kl.lab.node(node).mac;
    cluster::wait_for_owner(&kl.lab, vip, mac, bound).unwrap_or_else(|e| panic!("{e:#}\n{}", kl.logs()))
}

/// Waits until nobody answers for `vip`.
fn silent(kl: &KubeLab, vip: Ipv4Addr) {
    let deadline = Instant::now() + API_BOUND;
    while !cluster::answering(&kl.lab, vip).unwrap().is_empty() {
        assert!(Instant::now() < deadline, "{vip} still answered after {API_BOUND:?}\n{}", kl.logs());
    }
}

/// Asserts that `node` alone answers for `vip` at every probe for `period`.
fn steady(kl: &KubeLab, vip: Ipv4Addr, node: &str, period: Duration) {
    let want = BTreeSet::from([kl.lab.node(node).mac]);
    let end = Instant::now() + period;
    while Instant::now() < end {
        let seen = cluster::answering(&kl.lab, vip).unwrap();
        assert_eq!(seen, want, "{vip}: answered by {seen:02x?}, expected {node} alone\n{}", kl.logs());
    }
}

/// Waits until the ServiceL2Status of `default/web` names `node`.
async fn status_names(kl: &KubeLab, client: &Client, node: &str) {
    let statuses: Api<ServiceL2Status> = Api::namespaced(client.clone(), NAMESPACE);
    let names = eventually(async || {
        let s = statuses.get_opt("l2-default.web").await.ok()??.status?;
        Some(s.node == node && s.service_name == "web" && s.interfaces.iter().any(|i| i.name == "eth0"))
            .filter(|ok| *ok)
    })
    .await;
    let current = statuses.get_opt("l2-default.web").await.ok().flatten().and_then(|s| s.status);
    assert!(names, "ServiceL2Status does not name {node} on eth0: {current:?}\n{}", kl.logs());
}

async fn set_local(services: &Api<Service>, local: bool) {
    let policy = if local { "Local" } else { "Cluster" };
    let patch = Patch::Merge(json!({ "spec": { "externalTrafficPolicy": policy } }));
    services.patch("web", &PatchParams::default(), &patch).await.unwrap();
}

/// Polls `check` every 200 ms until it holds, for up to [`API_BOUND`].
/// `herald-speaker check` beside a running speaker, as the speaker's ServiceAccount: the API
/// server answers, and the membership port is the speaker's own.
fn preflight_in_kubernetes_mode(kl: &KubeLab, node: &str) {
    let host = kl.lab.node(node);
    let kubeconfig = format!("KUBECONFIG={}", kl.server.kubeconfig_as("herald-speaker").display());
    let bin = herald_tests::workspace_bin("herald-speaker");
    let pin_dir = kl.lab.pin_dir(host);
    let args = [
        &kubeconfig,
        bin.to_str().unwrap(),
        "check",
        "--interface",
        "eth0",
        "--pin-dir",
        pin_dir.to_str().unwrap(),
    ];
    let out = host.output("env", &args).unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{report}{}", String::from_utf8_lossy(&out.stderr));
    assert!(report.contains("(Kubernetes mode)"), "{report}");
    let line =
        |what: &str| report.lines().find(|l| l[9..].starts_with(what)).unwrap_or_else(|| panic!("{report}"));
    assert!(line("API server").starts_with("ok ") && line("API server").contains("v1.20.2"), "{report}");
    assert!(line("membership port").contains("held by the running speaker"), "{report}");
}

/// Whether `check` answers within [`API_BOUND`].
async fn eventually<A: poll::Answer>(check: impl AsyncFnMut() -> A) -> bool {
    poll::until_async(API_BOUND, check).await.is_some()
}
