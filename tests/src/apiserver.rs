//! A real Kubernetes control plane for tests: etcd and kube-apiserver v1.20.2 (built from
//! Debian's source package by tests/kube/build-kubernetes.sh, cached under /var/cache/herald-k8s)
//! on loopback, with a self-made CA, a static admin token and RBAC. Dropping the [`ApiServer`]
//! stops both and removes their state.

use std::{
    net::{Ipv4Addr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};

/// Where tests/kube/build-kubernetes.sh caches the binaries.
pub const BIN_DIR: &str = "/var/cache/herald-k8s/bin";
const TOKEN: &str = "herald-test-admin-token";
/// ServiceAccounts of deploy/ the server knows by static token.
pub const ACCOUNTS: [&str; 2] = ["herald-controller", "herald-speaker"];
const ACCOUNT_NAMESPACE: &str = "herald-system";

fn account_token(account: &str) -> String {
    format!("herald-test-{account}-token")
}

/// The user name the server knows `account` by (as the RBAC bindings and the audit log name it).
pub fn account_user(account: &str) -> String {
    format!("system:serviceaccount:{ACCOUNT_NAMESPACE}:{account}")
}

/// What the server records of [`ACCOUNTS`]' requests (who, what, the answer's code), and of
/// nobody else's.
fn audit_policy() -> String {
    let users: Vec<String> = ACCOUNTS.iter().map(|a| account_user(a)).collect();
    format!(
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n\
         - level: Metadata\n  users: {users:?}\n- level: None\n"
    )
}

pub struct ApiServer {
    pub url: String,
    pub kubeconfig: PathBuf,
    dir: PathBuf,
    /// The network namespace it runs in; `None`: the caller's.
    netns: Option<String>,
    /// Running processes, by name, in start order.
    children: Vec<(String, Child)>,
}

/// Who runs the pods: nobody (tests create them and set their status), or kubelets.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pods {
    Fake,
    Real,
}

/// etcd's client and peer ports.
struct Endpoints {
    client: u16,
    peer: u16,
}

/// Whether the API server binaries are built; without them, tests skip, or fail under CI.
pub fn available() -> bool {
    ["kube-apiserver", "kube-controller-manager"].iter().all(|b| Path::new(BIN_DIR).join(b).is_file())
        && which("etcd")
}

/// `true` when a test that needs the API server can run: otherwise it panics under CI and says
/// why it skips elsewhere.
pub fn available_or_skip(test: &str) -> bool {
    if available() {
        return true;
    }
    assert!(!crate::in_ci(), "{test}: no API server in {BIN_DIR}; CI=true forbids skipping");
    eprintln!("SKIPPED {test}: no API server; run `cargo xtask setup --kube`");
    false
}

fn which(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl ApiServer {
    /// Starts etcd and the API server on free loopback ports; returns once /readyz answers.
    pub fn start() -> anyhow::Result<Self> {
        let etcd = Endpoints { client: free_port()?, peer: free_port()? };
        Self::start_at(None, Ipv4Addr::LOCALHOST, etcd, free_port()?, Pods::Fake)
    }

    /// Starts etcd (on the namespace's loopback) and the API server (on `addr`, port 6443) in
    /// network namespace `netns`: a control-plane host on a lab LAN, which nodes reach as
    /// real nodes reach theirs. Clients must run in that namespace or on the LAN.
    pub fn start_in(netns: &str, addr: Ipv4Addr) -> anyhow::Result<Self> {
        Self::start_at(Some(netns.to_owned()), addr, Endpoints { client: 2379, peer: 2380 }, 6443, Pods::Fake)
    }

    /// [`ApiServer::start_in`] for a cluster whose pods kubelets run: pods get their
    /// ServiceAccount's token (the ServiceAccount admission plugin, which the other tests turn
    /// off to create pods without tokens). See [`ApiServer::start_node_controllers`].
    pub fn start_for_kubelets(netns: &str, addr: Ipv4Addr) -> anyhow::Result<Self> {
        Self::start_at(Some(netns.to_owned()), addr, Endpoints { client: 2379, peer: 2380 }, 6443, Pods::Real)
    }

    fn start_at(
        netns: Option<String>,
        bind: Ipv4Addr,
        etcd: Endpoints,
        api_port: u16,
        pods: Pods,
    ) -> anyhow::Result<Self> {
        let dir =
            std::env::temp_dir().join(format!("herald-apiserver-{}-{}", std::process::id(), free_port()?));
        std::fs::create_dir_all(dir.join("etcd"))?;
        let mut server = Self {
            url: format!("https://{bind}:{api_port}"),
            kubeconfig: dir.join("kubeconfig"),
            dir,
            netns,
            children: Vec::new(),
        };
        server.certificates(bind)?;
        std::fs::write(server.dir.join("audit-policy.yaml"), audit_policy())?;
        let d = server.dir.display().to_string();
        let (etcd_port, peer_port) = (etcd.client, etcd.peer);
        server.spawn(
            "etcd",
            "etcd",
            &[
                "--name=test",
                &format!("--data-dir={d}/etcd"),
                &format!("--listen-client-urls=http://127.0.0.1:{etcd_port}"),
                &format!("--advertise-client-urls=http://127.0.0.1:{etcd_port}"),
                &format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"),
                &format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"),
                &format!("--initial-cluster=test=http://127.0.0.1:{peer_port}"),
            ],
        )?;
        let args = [
            format!("--etcd-servers=http://127.0.0.1:{etcd_port}"),
            format!("--bind-address={bind}"),
            format!("--advertise-address={bind}"),
            format!("--secure-port={api_port}"),
            format!("--tls-cert-file={d}/apiserver.crt"),
            format!("--tls-private-key-file={d}/apiserver.key"),
            format!("--client-ca-file={d}/ca.crt"),
            format!("--token-auth-file={d}/tokens.csv"),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            format!("--service-account-key-file={d}/sa.pub"),
            format!("--service-account-signing-key-file={d}/sa.key"),
            "--authorization-mode=RBAC".into(),
            format!("--audit-policy-file={d}/audit-policy.yaml"),
            format!("--audit-log-path={d}/audit.log"),
            // Dual-stack Services (ipFamilies, ipFamilyPolicy) are alpha in v1.20: on here.
            "--feature-gates=IPv6DualStack=true".into(),
            "--service-cluster-ip-range=10.96.0.0/16,fd00:10:96::/112".into(),
            // Every LoadBalancer Service takes a node port: room for the converge bench's 10,000.
            "--service-node-port-range=20000-42767".into(),
            "--profiling=false".into(),
        ];
        // Nodes by address (kubelets, and `kubectl herald`'s reads of the speakers' metrics
        // through the node proxy): the lab has no DNS for node names.
        let mut args = args.to_vec();
        args.push("--kubelet-preferred-address-types=InternalIP".into());
        if pods == Pods::Fake {
            args.push("--disable-admission-plugins=ServiceAccount".into());
        }
        std::fs::write(server.dir.join("kube-apiserver.args"), args.join("\n"))?;
        server.start_apiserver()?;
        server.write_kubeconfig()?;
        server.wait_ready()?;
        Ok(server)
    }

    /// Starts (again) the API server, with the arguments it was first given.
    fn start_apiserver(&mut self) -> anyhow::Result<()> {
        let args = std::fs::read_to_string(self.dir.join("kube-apiserver.args"))?;
        let args: Vec<&str> = args.lines().collect();
        let bin = Path::new(BIN_DIR).join("kube-apiserver");
        self.spawn("kube-apiserver", bin.to_str().context("path")?, &args)
    }

    /// Stops the API server alone (etcd and the rest keep running): an outage.
    pub fn stop_apiserver(&mut self) -> anyhow::Result<()> {
        let (name, mut child) = self.take("kube-apiserver").context("the API server is not running")?;
        drop(name);
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    /// Starts the API server again after [`ApiServer::stop_apiserver`]; returns once ready.
    pub fn restart_apiserver(&mut self) -> anyhow::Result<()> {
        self.start_apiserver()?;
        self.wait_ready()
    }

    /// Starts kube-controller-manager with the Endpoints and EndpointSlice controllers (and
    /// garbage collection), nothing that needs a kubelet (no node lifecycle, which would mark
    /// the lab's Nodes NotReady and their pods unready).
    pub fn start_controller_manager(&mut self) -> anyhow::Result<()> {
        self.spawn_controller_manager(&[
            "--controllers=endpoint,endpointslice,garbagecollector",
            // Thousands of Services' Endpoints (the converge bench) in seconds, not minutes.
            "--kube-api-qps=500",
            "--kube-api-burst=1000",
            "--concurrent-endpoint-syncs=10",
        ])
    }

    /// kube-controller-manager on this server's credentials, no leader election, no ports, with
    /// `extra` flags (which controllers).
    fn spawn_controller_manager(&mut self, extra: &[&str]) -> anyhow::Result<()> {
        let d = self.dir.display().to_string();
        let bin = Path::new(BIN_DIR).join("kube-controller-manager");
        let mut args = vec![
            format!("--kubeconfig={d}/kubeconfig"),
            "--bind-address=127.0.0.1".into(),
            "--secure-port=0".into(),
            "--port=0".into(),
            "--leader-elect=false".into(),
            "--use-service-account-credentials=false".into(),
            format!("--service-account-private-key-file={d}/sa.key"),
            format!("--root-ca-file={d}/ca.crt"),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.spawn("kube-controller-manager", bin.to_str().context("path")?, &args)
    }

    /// What a cluster with kubelets needs beside the API server: kube-controller-manager with
    /// every controller that runs without a cloud (workloads, ServiceAccount tokens, Endpoints,
    /// node lifecycle, garbage collection) and kube-scheduler.
    pub fn start_node_controllers(&mut self) -> anyhow::Result<()> {
        self.spawn_controller_manager(&[
            "--controllers=*,-nodeipam,-route,-cloud-node-lifecycle,-service,-bootstrapsigner,-tokencleaner",
        ])?;
        let d = self.dir.display().to_string();
        let scheduler = Path::new(BIN_DIR).join("kube-scheduler");
        self.spawn(
            "kube-scheduler",
            scheduler.to_str().context("path")?,
            &[
                &format!("--kubeconfig={d}/kubeconfig"),
                "--bind-address=127.0.0.1",
                "--port=0",
                "--leader-elect=false",
            ],
        )
    }

    fn take(&mut self, name: &str) -> Option<(String, Child)> {
        let i = self.children.iter().position(|(n, _)| n == name)?;
        Some(self.children.remove(i))
    }

    /// Starts `program` (in the server's namespace, if it has one), logging to `<name>.log`.
    fn spawn(&mut self, name: &str, program: &str, args: &[&str]) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{name}.log")))?;
        let child = self
            .command(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        self.children.push((name.to_owned(), child));
        Ok(())
    }

    /// A command in the server's network namespace.
    fn command(&self, program: &str) -> Command {
        match &self.netns {
            Some(netns) => crate::lab::netns_command(netns, program),
            None => Command::new(program),
        }
    }

    /// CA, serving certificate (a leaf with IP SAN 127.0.0.1, as rustls wants), service-account
    /// key pair, and the admin token in system:masters.
    fn certificates(&self, bind: Ipv4Addr) -> anyhow::Result<()> {
        let d = self.dir.display().to_string();
        // The deploy/ ServiceAccounts, as static-token users the RBAC bindings name.
        let accounts: String = ACCOUNTS
            .iter()
            .map(|a| {
                format!(
                    "echo '{}',system:serviceaccount:{ACCOUNT_NAMESPACE}:{a},{a}-uid,'\"system:serviceaccounts,system:serviceaccounts:{ACCOUNT_NAMESPACE}\"' >> tokens.csv; ",
                    account_token(a)
                )
            })
            .collect();
        let script = format!(
            "set -e; cd {d}
             openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=herald-test-ca -keyout ca.key -out ca.crt \
               -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign,digitalSignature
             openssl req -newkey rsa:2048 -nodes -subj /CN=kube-apiserver -keyout apiserver.key -out apiserver.csr
             printf 'basicConstraints=critical,CA:FALSE\\nkeyUsage=critical,digitalSignature,keyEncipherment\\nextendedKeyUsage=serverAuth\\nsubjectAltName=IP:127.0.0.1,IP:{bind},DNS:localhost\\n' > apiserver.ext
             openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 -extfile apiserver.ext -out apiserver.crt
             openssl genrsa -out sa.key 2048; openssl rsa -in sa.key -pubout -out sa.pub
             echo '{TOKEN},admin,admin-uid,\"system:masters\"' > tokens.csv
             {accounts}"
        );
        let out = Command::new("sh").args(["-c", &script]).output()?;
        ensure!(out.status.success(), "making certificates: {}", String::from_utf8_lossy(&out.stderr));
        Ok(())
    }

    fn write_kubeconfig(&self) -> anyhow::Result<()> {
        self.write_kubeconfig_to(&self.kubeconfig, TOKEN)?;
        for account in ACCOUNTS {
            self.write_kubeconfig_to(&self.kubeconfig_as(account), &account_token(account))?;
        }
        Ok(())
    }

    /// A kubeconfig that authenticates as ServiceAccount `account` of herald-system (one of
    /// [`ACCOUNTS`]): what deploy/'s RBAC grants it, and nothing more.
    pub fn kubeconfig_as(&self, account: &str) -> PathBuf {
        self.dir.join(format!("kubeconfig-{account}"))
    }

    fn write_kubeconfig_to(&self, path: &Path, token: &str) -> anyhow::Result<()> {
        let ca = self.dir.join("ca.crt");
        std::fs::write(
            path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\n    \
                 certificate-authority: {}\nusers:\n- name: admin\n  user:\n    token: {token}\n\
                 contexts:\n- name: test\n  context:\n    cluster: test\n    user: admin\n    namespace: default\n\
                 current-context: test\n",
                self.url,
                ca.display()
            ),
        )?;
        Ok(())
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let ca = self.dir.join("ca.crt");
        while Instant::now() < deadline {
            let ready = self
                .command("curl")
                .args(["-sf", "--cacert"])
                .arg(&ca)
                .args(["-H", &format!("Authorization: Bearer {TOKEN}"), &format!("{}/readyz", self.url)])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()?;
            if ready.success() {
                return Ok(());
            }
            for (_, child) in &mut self.children {
                if let Some(status) = child.try_wait()? {
                    let logs = ["etcd", "kube-apiserver", "kube-controller-manager"].map(|n| {
                        std::fs::read_to_string(self.dir.join(format!("{n}.log"))).unwrap_or_default()
                    });
                    bail!("a control-plane process exited ({status}):\n{}", logs.join("\n"));
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        bail!("kube-apiserver not ready after 60 s")
    }

    /// The sum of the server's `apiserver_request_total` counters (every request it served).
    pub fn requests_served(&self) -> anyhow::Result<u64> {
        let out = self
            .command("curl")
            .args(["-sf", "--cacert"])
            .arg(self.dir.join("ca.crt"))
            .args(["-H", &format!("Authorization: Bearer {TOKEN}"), &format!("{}/metrics", self.url)])
            .output()?;
        ensure!(out.status.success(), "GET /metrics failed");
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(text
            .lines()
            .filter(|l| l.starts_with("apiserver_request_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64)
    }

    /// The audit log: one JSON event per line, for [`ACCOUNTS`]' requests (see
    /// [`crate::rbac::used`]).
    pub fn audit_log(&self) -> anyhow::Result<String> {
        Ok(std::fs::read_to_string(self.dir.join("audit.log")).unwrap_or_default())
    }

    /// A client for this server, as an admin.
    pub async fn client(&self) -> anyhow::Result<kube::Client> {
        let kubeconfig = kube::config::Kubeconfig::read_from(&self.kubeconfig)?;
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
        Ok(kube::Client::try_from(config)?)
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        // The API server first, then its store.
        for (_, child) in self.children.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A port nobody listens on right now.
fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A started server with deploy/'s CRDs established, and an admin client for it.
pub async fn start_with_crds() -> (ApiServer, kube::Client) {
    let server = ApiServer::start().expect("API server");
    let client = server.client().await.expect("client");
    crate::objects::apply_crds(&client).await;
    (server, client)
}
