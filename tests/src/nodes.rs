//! Real Kubernetes nodes in the lab: each lab node runs its own containerd (Debian's) and
//! kubelet v1.20.2 inside the node's network namespace and a mount namespace of its own, so a
//! hostNetwork pod lives on that node's eth0, and the node's pins, pod logs, CNI state and
//! /run/herald (the speaker's state) are its own. A control-plane host on the LAN runs the API
//! server, kube-controller-manager and kube-scheduler. Images are imported from target/images (`cargo xtask image --lab`), the pod
//! sandbox included: nothing is pulled.
//!
//! Every process of a node lives in a cgroup of its own (containerd, its shims, the kubelet
//! and, under the kubelet's cgroup root, the pods), which is how a node is stopped whole and
//! how nothing outlives the lab.

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use k8s_openapi::api::core::v1::Node;
use kube::{Api, Client};

use crate::{
    apiserver::{ApiServer, BIN_DIR},
    lab::{Host, Lab},
};

/// The control plane's address on the LAN.
pub const CONTROL_PLANE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 250);

/// The v1 cgroup hierarchies a node's processes are put in (and the kubelet's cgroup root).
const HIERARCHIES: &[&str] =
    &["blkio", "cpu", "cpuacct", "cpuset", "devices", "freezer", "memory", "pids", "systemd"];

pub struct NodeLab {
    pub lab: Lab,
    pub control_plane: Host,
    pub server: ApiServer,
    nodes: Vec<KubeNode>,
}

/// One node's containerd and kubelet.
struct KubeNode {
    name: String,
    dir: PathBuf,
    /// The cgroup (under each hierarchy's root) that holds everything the node runs.
    cgroup: String,
}

impl NodeLab {
    /// The lab's LAN with a control plane and `names` as kubelet nodes (Ready when this
    /// returns), images imported on each.
    pub fn start(names: &[&str]) -> anyhow::Result<Self> {
        let mut lab = Lab::new(names)?;
        let control_plane = lab.add_other("cp", CONTROL_PLANE)?;
        let mut server = ApiServer::start_for_kubelets(&control_plane.netns, CONTROL_PLANE)?;
        server.start_node_controllers()?;
        let mut this = Self { lab, control_plane, server, nodes: Vec::new() };
        let images = images()?;
        for (i, name) in names.iter().enumerate() {
            this.start_node(name, i, &images)?;
        }
        Ok(this)
    }

    /// Moves the calling thread into the control plane's network namespace (where the API
    /// server is) and returns an admin client, once every node is Ready.
    pub async fn enter(&self) -> anyhow::Result<Client> {
        let ns = std::fs::File::open(format!("/run/netns/{}", self.control_plane.netns))?;
        nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET)?;
        let client = self.server.client().await?;
        let nodes: Api<Node> = Api::all(client.clone());
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let list = nodes.list(&Default::default()).await?;
            let ready = list.items.iter().filter(|n| is_ready(n)).count();
            if ready == self.nodes.len() {
                return Ok(client);
            }
            if Instant::now() > deadline {
                bail!("{ready} of {} nodes Ready after 120 s\n{}", self.nodes.len(), self.logs());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// `kubectl ARGS` as the admin, on the control plane; its stdout.
    pub fn kubectl(&self, args: &[&str]) -> anyhow::Result<String> {
        let kubectl = Path::new(BIN_DIR).join("kubectl");
        let kubeconfig = format!("--kubeconfig={}", self.server.kubeconfig.display());
        let mut argv = vec![kubeconfig.as_str()];
        argv.extend_from_slice(args);
        self.control_plane.run(kubectl.to_str().context("path")?, &argv)
    }

    /// Stops node `name` whole, as a power cut does: kubelet, containerd and every pod
    /// SIGKILLed at once.
    pub fn stop_node(&self, name: &str) -> anyhow::Result<()> {
        let node = self.nodes.iter().find(|n| n.name == name).with_context(|| format!("no node {name}"))?;
        kill_cgroup(&node.cgroup);
        Ok(())
    }

    /// Every node's kubelet and containerd log and its pods' containers' logs, for a failure
    /// message (their tails).
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for node in &self.nodes {
            let pod_logs = files_under(&node.dir.join("pods"));
            let logs = ["kubelet.log", "containerd.log", "node.log"].map(|l| node.dir.join(l));
            for log in logs.iter().chain(&pod_logs) {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                let name = log.strip_prefix(&node.dir).unwrap_or(log);
                out += &format!("--- {} {}\n", node.name, name.display());
                for line in tail.into_iter().rev() {
                    out += line;
                    out.push('\n');
                }
            }
        }
        out
    }

    fn start_node(&mut self, name: &str, index: usize, images: &[PathBuf]) -> anyhow::Result<()> {
        let host = self.lab.node(name).clone();
        let dir = self.lab.workdir.join("nodes").join(name);
        let cgroup = format!("herald-{}-{name}", host.netns);
        for sub in ["cni", "run", "pods", "kubelet", "cni-state", "pki", "netns"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        for h in HIERARCHIES {
            std::fs::create_dir_all(format!("/sys/fs/cgroup/{h}/{cgroup}"))
                .with_context(|| format!("making cgroup {h}/{cgroup}"))?;
        }
        // A cpuset cgroup takes no process before it has CPUs and memory nodes: the root's.
        for file in ["cpuset.cpus", "cpuset.mems"] {
            let all = std::fs::read_to_string(format!("/sys/fs/cgroup/cpuset/{file}"))?;
            std::fs::write(format!("/sys/fs/cgroup/cpuset/{cgroup}/{file}"), all.trim())?;
        }
        let d = dir.display();
        // Pods that are not on the host network get an address from the node's own /26.
        let pods = Ipv4Addr::new(198, 51, 100, 64 * index as u8);
        std::fs::write(dir.join("containerd.toml"), containerd_config(&dir))?;
        std::fs::write(dir.join("kubelet.yaml"), kubelet_config(&cgroup))?;
        std::fs::write(
            dir.join("cni/10-pods.conflist"),
            format!(
                r#"{{"cniVersion":"0.4.0","name":"pods","plugins":[{{"type":"bridge","bridge":"cni0","isGateway":true,"ipMasq":true,"ipam":{{"type":"host-local","ranges":[[{{"subnet":"{pods}/26"}}]],"routes":[{{"dst":"0.0.0.0/0"}}]}}}},{{"type":"portmap","capabilities":{{"portMappings":true}}}}]}}"#
            ),
        )?;
        let imports: String = images
            .iter()
            // Every platform of the index, as a registry serving a mixed cluster holds them.
            .map(|i| {
                format!(
                    "ctr -a {d}/containerd.sock -n k8s.io images import --all-platforms {} >&2\n",
                    i.display()
                )
            })
            .collect();
        let cgroups: String = HIERARCHIES
            .iter()
            .map(|h| format!("echo $$ > /sys/fs/cgroup/{h}/{cgroup}/cgroup.procs\n"))
            .collect();
        let script = format!(
            "set -eu\n\
             {cgroups}\
             mkdir -p /run/containerd /var/log/pods /var/lib/cni /run/netns\n\
             mount --bind {d}/run /run/containerd\n\
             mount --bind {d}/netns /run/netns\n\
             mount --bind {d}/pods /var/log/pods\n\
             mount --bind {d}/cni-state /var/lib/cni\n\
             mount -t bpf bpf /sys/fs/bpf\n\
             mkdir -p /run/herald\n\
             mount -t tmpfs tmpfs /run/herald\n\
             containerd --config {d}/containerd.toml > {d}/containerd.log 2>&1 &\n\
             for i in $(seq 100); do [ -S {d}/containerd.sock ] && break; sleep 0.1; done\n\
             {imports}\
             exec {bin}/kubelet --container-runtime=remote --container-runtime-endpoint=unix://{d}/containerd.sock \
               --kubeconfig={kubeconfig} --config={d}/kubelet.yaml --root-dir={d}/kubelet --cert-dir={d}/pki \
               --hostname-override={name} --node-ip={addr} --v=1 > {d}/kubelet.log 2>&1\n",
            bin = BIN_DIR,
            kubeconfig = self.server.kubeconfig.display(),
            addr = host.addr,
        );
        std::fs::write(dir.join("node.sh"), script)?;
        let log = dir.join("node.log");
        let script = dir.join("node.sh");
        self.lab.spawn(
            &host,
            "unshare",
            &["--mount", "--propagation", "private", "sh", script.to_str().context("path")?],
            Some(&log),
        )?;
        self.nodes.push(KubeNode { name: name.to_owned(), dir, cgroup });
        Ok(())
    }
}

impl Drop for NodeLab {
    fn drop(&mut self) {
        for node in &self.nodes {
            kill_cgroup(&node.cgroup);
            remove_cgroup(&node.cgroup);
        }
    }
}

fn is_ready(node: &Node) -> bool {
    let conditions = node.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions.is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The image archives every node imports: Herald's and the lab's pause image.
fn images() -> anyhow::Result<Vec<PathBuf>> {
    ["herald-speaker", "herald-controller", "herald-pause"].iter().map(|name| image(name)).collect()
}

/// The archive `cargo xtask image --lab` made of image `name`.
pub fn image(name: &str) -> anyhow::Result<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/images");
    let path = dir.join(format!("{name}-{}.oci.tar", env!("CARGO_PKG_VERSION")));
    anyhow::ensure!(path.is_file(), "{} is not built: run `cargo xtask image --lab`", path.display());
    Ok(path)
}

/// A kustomize overlay of deploy/ in `dir`, as a user points deploy/ at their images: the images
/// by the full names `cargo xtask image` gave them (pods report the digests they run: see
/// [`image_id`]), and the API server's address in place of the
/// `kubernetes` Service's (the lab has no kube-proxy to carry it). Returns the overlay's
/// directory. Written for kubectl 1.20's kustomize (v2.0: `bases`).
pub fn overlay(dir: &Path) -> anyhow::Result<PathBuf> {
    let overlay = dir.join("overlay");
    std::fs::create_dir_all(&overlay)?;
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy").canonicalize()?;
    std::os::unix::fs::symlink(&deploy, overlay.join("deploy"))?;
    let mut images = String::new();
    for name in ["herald-speaker", "herald-controller"] {
        let version = env!("CARGO_PKG_VERSION");
        images += &format!("- name: {name}\n  newName: docker.io/library/{name}\n  newTag: \"{version}\"\n");
    }
    std::fs::write(
        overlay.join("kustomization.yaml"),
        format!("bases:\n- deploy\nimages:\n{images}patchesStrategicMerge:\n- api-server.yaml\n"),
    )?;
    let env = format!(
        "env:\n        - {{name: KUBERNETES_SERVICE_HOST, value: \"{CONTROL_PLANE}\"}}\n        - {{name: KUBERNETES_SERVICE_PORT, value: \"6443\"}}"
    );
    let patch = |kind: &str, name: &str, container: &str| {
        format!(
            "apiVersion: apps/v1\nkind: {kind}\nmetadata: {{name: {name}, namespace: herald-system}}\nspec:\n  template:\n    spec:\n      containers:\n      - name: {container}\n        {env}\n"
        )
    };
    let patches = [
        patch("DaemonSet", "herald-speaker", "speaker"),
        patch("Deployment", "herald-controller", "controller"),
    ];
    std::fs::write(overlay.join("api-server.yaml"), patches.join("---\n"))?;
    Ok(overlay)
}

/// An image archive's ID (its config's digest), as a container runtime reports what it runs.
pub fn image_id(archive: &Path) -> anyhow::Result<String> {
    let out = std::process::Command::new("tar").arg("-xOf").arg(archive).arg("manifest.json").output()?;
    anyhow::ensure!(out.status.success(), "no manifest.json in {}", archive.display());
    let manifest: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let config = manifest[0]["Config"].as_str().context("no config in manifest.json")?;
    Ok(config.replace("blobs/sha256/", "sha256:"))
}

/// The pid of every process in `cgroup` and below (the pids hierarchy).
fn processes(cgroup: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    let mut dirs = vec![PathBuf::from(format!("/sys/fs/cgroup/pids/{cgroup}"))];
    while let Some(dir) = dirs.pop() {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        pids.extend(procs.lines().filter_map(|l| l.parse::<i32>().ok()));
        if let Ok(entries) = std::fs::read_dir(&dir) {
            dirs.extend(entries.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_dir()));
        }
    }
    pids
}

/// SIGKILLs everything in `cgroup` until it is empty (forks race the first pass).
fn kill_cgroup(cgroup: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pids = processes(cgroup);
        if pids.is_empty() || Instant::now() > deadline {
            return;
        }
        for pid in pids {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Removes `cgroup` and what the kubelet and runc made under it, in every hierarchy; and in the
/// unified one, where runc makes its namesake on a hybrid host.
fn remove_cgroup(cgroup: &str) {
    for h in HIERARCHIES.iter().chain(&["unified"]) {
        let root = PathBuf::from(format!("/sys/fs/cgroup/{h}/{cgroup}"));
        let mut dirs = Vec::new();
        let mut stack = vec![root];
        while let Some(dir) = stack.pop() {
            if let Ok(entries) = std::fs::read_dir(&dir) {
                stack.extend(entries.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_dir()));
            }
            dirs.push(dir);
        }
        // Children before parents.
        for dir in dirs.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// containerd for one node: its own root, state and socket; the CRI with the lab's pause image,
/// runc with cgroupfs (as the kubelet), CNI from Debian's plugins. `restrict_oom_score_adj`:
/// these machines withhold CAP_SYS_RESOURCE, so the sandbox's -998 would fail; scores below
/// containerd's own are raised to it.
fn containerd_config(dir: &Path) -> String {
    let d = dir.display();
    let pause = format!("docker.io/library/herald-pause:{}", env!("CARGO_PKG_VERSION"));
    format!(
        r#"version = 2
root = "{d}/containerd/root"
state = "{d}/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "{d}/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{d}/cni"
"#
    )
}

/// The kubelet: cgroupfs under the node's cgroup, no swap check, nothing evicted for the host's
/// disk (it sees the whole machine's), its API open on the lab LAN only.
fn kubelet_config(cgroup: &str) -> String {
    format!(
        r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
cgroupRoot: /{cgroup}
failSwapOn: false
imageGCHighThresholdPercent: 100
evictionHard:
  imagefs.available: "0%"
  nodefs.available: "0%"
  nodefs.inodesFree: "0%"
authentication:
  anonymous: {{enabled: true}}
  webhook: {{enabled: false}}
authorization: {{mode: AlwaysAllow}}
readOnlyPort: 0
makeIPTablesUtilChains: false
resolvConf: /etc/resolv.conf
"#
    )
}

/// Every file under `dir`, at any depth (a pod's logs are `<pod>/<container>/<n>.log`).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out = Vec::new();
    for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out.sort();
    out
}
