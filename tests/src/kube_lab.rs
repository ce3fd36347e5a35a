//! A whole Kubernetes cluster in the lab: a control-plane host on the LAN runs etcd,
//! kube-apiserver, kube-controller-manager (Endpoints) and herald-controller; every lab node has
//! a Node object (InternalIP = its lab address) and runs herald-speaker in Kubernetes mode. No
//! kubelet: pods are created with a node and their status patched Ready.
//!
//! Clients of the API server must be on the LAN: [`KubeLab::enter`] moves the calling thread
//! into the control-plane namespace (a test's own thread; it ends with the test).

use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use k8s_openapi::api::core::v1::{Node, Pod, Secret};
use kube::{
    Api, Client,
    api::{Patch, PatchParams, PostParams},
};
use serde_json::json;

use crate::{
    apiserver::ApiServer,
    lab::{Host, Lab},
    objects, speaker, workspace_bin,
};

/// Where Herald's pools, advertisements and statuses live in the lab cluster.
pub const NAMESPACE: &str = "herald-system";
/// The control-plane host's address on the lab LAN.
pub const CONTROL_PLANE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 50);
/// The speakers' dead-man bound: a killed speaker's program goes quiet within it.
pub const DEAD_MAN_MS: &str = "1000";

pub struct KubeLab {
    pub lab: Lab,
    pub control_plane: Host,
    pub server: ApiServer,
    key_file: PathBuf,
    /// Running speakers by node name: (pid, log).
    speakers: BTreeMap<String, (u32, PathBuf)>,
    controller: Option<u32>,
}

impl KubeLab {
    /// The lab, its control plane (API server, controller-manager, herald-controller), and the
    /// Namespace and Node objects. Speakers are started with [`KubeLab::start_speaker`].
    pub fn start(nodes: &[&str]) -> anyhow::Result<Self> {
        // The nodes' veths as a node that is a container has them: nothing on the other end.
        let mut lab = Lab::plain(nodes)?;
        let control_plane = lab.add_other("cp", CONTROL_PLANE)?;
        let mut server = ApiServer::start_in(&control_plane.netns, CONTROL_PLANE)?;
        server.start_controller_manager()?;
        let key_file = lab.workdir.join("memberlist-key");
        Ok(Self { lab, control_plane, server, key_file, speakers: BTreeMap::new(), controller: None })
    }

    /// Moves the calling thread into the control plane's network namespace, where the API
    /// server is reachable, and sets the cluster up as `kubectl apply -k deploy/` would (CRDs,
    /// namespace, RBAC) plus a Node object per lab node; starts herald-controller as its
    /// ServiceAccount and waits for the membership key it creates. Returns an admin client.
    /// Call it from the test's own thread.
    pub async fn enter(&mut self) -> anyhow::Result<Client> {
        let ns = std::fs::File::open(format!("/run/netns/{}", self.control_plane.netns))?;
        nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET)?;
        let client = self.server.client().await?;
        objects::apply_crds(&client).await;
        let discovery = kube::discovery::Discovery::new(client.clone()).run().await?;
        let deploy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
        for file in ["namespace.yaml", "controller-rbac.yaml", "speaker-rbac.yaml"] {
            objects::create_from_file(&client, &discovery, &deploy.join(file)).await;
        }
        let nodes: Api<Node> = Api::all(client.clone());
        for host in &self.lab.nodes {
            let node: Node = serde_json::from_value(json!({
                "metadata": { "name": host.name, "labels": { "kubernetes.io/hostname": host.name } },
            }))?;
            nodes.create(&PostParams::default(), &node).await?;
            let status = json!({ "status": { "addresses": [
                { "type": "InternalIP", "address": host.addr.to_string() },
                { "type": "Hostname", "address": host.name },
            ]}});
            nodes.patch_status(&host.name, &PatchParams::default(), &Patch::Merge(status)).await?;
        }
        self.start_controller()?;
        let secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
        let deadline = Instant::now() + Duration::from_secs(30);
        let key = loop {
            let key = secrets.get_opt("herald-memberlist").await?.and_then(|s| s.data?.remove("secretkey"));
            if let Some(key) = key {
                break key;
            }
            anyhow::ensure!(Instant::now() < deadline, "no membership key Secret:\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        std::fs::write(&self.key_file, key.0)?;
        Ok(client)
    }

    /// herald-controller in the control plane, as its ServiceAccount.
    pub fn start_controller(&mut self) -> anyhow::Result<()> {
        let log = self.lab.workdir.join("controller.log");
        let cp = self.control_plane.clone();
        let kubeconfig = format!("KUBECONFIG={}", self.server.kubeconfig_as("herald-controller").display());
        let bin = workspace_bin("herald-controller");
        let args = [&kubeconfig, bin.to_str().context("path")?, "--pool-namespace", NAMESPACE];
        let args = [&args[..], &["--lease-seconds", "3", "--telemetry", "127.0.0.1:7472"]].concat();
        self.controller = Some(self.lab.spawn(&cp, "env", &args, Some(&log))?);
        Ok(())
    }

    /// Kills herald-controller (SIGKILL) and waits for it.
    pub fn stop_controller(&mut self) -> anyhow::Result<()> {
        let pid = self.controller.take().context("the controller is not running")?;
        let mut child = self.lab.take_child(pid).context("not a lab child")?;
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    /// The process id of herald-controller.
    pub fn controller_pid(&self) -> Option<u32> {
        self.controller
    }

    /// Starts herald-speaker in Kubernetes mode on `node`; waits until it has joined.
    pub fn start_speaker(&mut self, node: &str) -> anyhow::Result<()> {
        self.start_speaker_with(node, &[])
    }

    /// [`KubeLab::start_speaker`] with `env` (`NAME=value`) set besides.
    pub fn start_speaker_with(&mut self, node: &str, env: &[&str]) -> anyhow::Result<()> {
        let host = self.lab.node(node).clone();
        let log = self.lab.workdir.join(format!("speaker-{node}-{}.log", self.speakers.len()));
        let pin_dir = self.lab.pin_dir(&host);
        let kubeconfig = format!("KUBECONFIG={}", self.server.kubeconfig_as("herald-speaker").display());
        let bin = workspace_bin("herald-speaker");
        // The DaemonSet's capabilities, and no others.
        let setpriv = ["--bounding-set=-all,+bpf,+net_admin,+net_raw", "--inh-caps=-all", "env"];
        let pid = self.lab.spawn(
            &host,
            "setpriv",
            &[
                &setpriv[..],
                env,
                &[
                    &kubeconfig,
                    "HERALD_LOG=info,herald_speaker=debug",
                    bin.to_str().context("path")?,
                    "--node-name",
                    node,
                    "--namespace",
                    NAMESPACE,
                    "--cluster-key-file",
                    self.key_file.to_str().context("path")?,
                    "--pin-dir",
                    pin_dir.to_str().context("path")?,
                    "--dead-man-ms",
                    DEAD_MAN_MS,
                ],
            ]
            .concat(),
            Some(&log),
        )?;
        self.speakers.insert(node.to_owned(), (pid, log.clone()));
        speaker::wait_for_log(pid, &log, "membership members=", Duration::from_secs(30))
    }

    /// Runs `kubectl herald ARGS` as the cluster's admin, from the calling thread's network
    /// namespace (the control plane's, after [`KubeLab::enter`]): its exit code and output.
    pub fn kubectl_herald(&self, args: &[&str]) -> (i32, String) {
        plugin(&self.server.kubeconfig, args)
    }

    /// SIGKILLs `node`'s speaker: the node dies as far as Herald can tell.
    pub fn kill_speaker(&mut self, node: &str) -> anyhow::Result<()> {
        let (pid, _) = self.speakers.remove(node).context("no speaker on that node")?;
        let mut child = self.lab.take_child(pid).context("not a lab child")?;
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    /// The process id of `node`'s speaker.
    pub fn speaker_pid(&self, node: &str) -> Option<u32> {
        self.speakers.get(node).map(|(pid, _)| *pid)
    }

    /// The lines of `node`'s speaker log that contain `needle`.
    pub fn speaker_log(&self, node: &str, needle: &str) -> String {
        let Some((_, log)) = self.speakers.get(node) else { return String::new() };
        let text = std::fs::read_to_string(log).unwrap_or_default();
        text.lines().filter(|l| l.contains(needle)).map(|l| format!("{l}\n")).collect()
    }

    /// The last lines of every speaker's log and the controller's, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for (node, (_, log)) in &self.speakers {
            out += &format!("--- speaker on {node} (last lines)\n{}", tail(log, 40));
        }
        let controller = self.lab.workdir.join("controller.log");
        out += &format!("--- controller (last lines)\n{}", tail(&controller, 20));
        out
    }
}

/// The last `n` lines of the file at `path` (nothing if it cannot be read).
fn tail(path: &std::path::Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].iter().map(|l| format!("{l}\n")).collect()
}

/// Creates pod `name` (labels `app: <app>`) on `node` and makes it Running and Ready with
/// `ip`, as a kubelet would.
pub async fn ready_pod(
    client: &Client,
    name: &str,
    app: &str,
    node: &str,
    ip: Ipv4Addr,
) -> anyhow::Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": { "name": name, "labels": { "app": app } },
        "spec": { "nodeName": node, "containers": [{ "name": "app", "image": "registry.invalid/app" }] },
    }))?;
    pods.create(&PostParams::default(), &pod).await?;
    let status = json!({ "status": {
        "phase": "Running",
        "podIP": ip.to_string(),
        "podIPs": [{ "ip": ip.to_string() }],
        "conditions": [
            { "type": "Ready", "status": "True" },
            { "type": "ContainersReady", "status": "True" },
        ],
    }});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(status)).await?;
    Ok(())
}

/// The cluster both whole-cluster suites start from: pool `lan` (192.0.2.240/28), an
/// L2Advertisement of it, a ready endpoint on node-a and the LoadBalancer Service `default/web`
/// selecting it; the address the controller gives `web`, within `within`.
pub async fn web_service(client: &Client, within: Duration) -> anyhow::Result<Ipv4Addr> {
    use herald_kube::crd::{IPAddressPool, L2Advertisement};
    use k8s_openapi::api::core::v1::Service;
    let pools: Api<IPAddressPool> = Api::namespaced(client.clone(), NAMESPACE);
    let pool = json!({ "metadata": { "name": "lan" }, "spec": { "addresses": ["192.0.2.240/28"] } });
    pools.create(&PostParams::default(), &serde_json::from_value(pool)?).await?;
    let ads: Api<L2Advertisement> = Api::namespaced(client.clone(), NAMESPACE);
    let ad = json!({ "metadata": { "name": "lan" }, "spec": { "ipAddressPools": ["lan"] } });
    ads.create(&PostParams::default(), &serde_json::from_value(ad)?).await?;
    ready_pod(client, "web-1", "web", "node-a", Ipv4Addr::new(198, 51, 100, 1)).await?;
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let svc = json!({ "metadata": { "name": "web" }, "spec": {
        "type": "LoadBalancer", "selector": { "app": "web" }, "ports": [{ "port": 80 }] } });
    services.create(&PostParams::default(), &serde_json::from_value(svc)?).await?;
    let deadline = Instant::now() + within;
    loop {
        let svc = services.get("web").await?;
        let ingress = svc.status.and_then(|s| s.load_balancer).and_then(|lb| lb.ingress).unwrap_or_default();
        if let Some(ip) = ingress.iter().find_map(|i| i.ip.as_deref()?.parse().ok()) {
            return Ok(ip);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no IPv4 address allocated to default/web within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The value of the series `name` (with its labels) in Prometheus text; 0 when absent.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok()).unwrap_or(0.0)
}

/// Runs the workspace's `kubectl-herald` with `kubeconfig`: its exit code, and its stdout and
/// stderr.
pub fn plugin(kubeconfig: &std::path::Path, args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(workspace_bin("kubectl-herald"))
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .output()
        .expect("running kubectl-herald (built by `cargo xtask build`)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}
