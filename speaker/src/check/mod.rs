//! The preflight: what this node gives Herald, each requirement judged ok, degraded or missing
//! with what to do. `herald-speaker check` prints it; the speaker logs it at start and refuses
//! to start, in one line naming the fix, when a requirement it cannot do without is missing.
//!
//! The judgement is a pure function over [`Facts`]; [`probe`] reads them from the host.

mod interfaces;
mod probe;
#[cfg(test)]
mod tests;

use std::fmt;

use self::interfaces::{interface, ipv6, service_proxy};
pub use self::probe::{Probe, api_server, at_start, probe};
use crate::datapath::hook::{self, Mode};

/// Linux 5.8: CAP_BPF, BPF ring buffers (the programs' log), bpf_link for XDP.
pub const MIN_KERNEL: (u32, u32) = (5, 8);

/// Capability numbers (linux/capability.h).
pub const CAP_NET_ADMIN: u32 = 12;
pub const CAP_NET_RAW: u32 = 13;
pub const CAP_SYS_ADMIN: u32 = 21;
pub const CAP_BPF: u32 = 39;

/// What the host says, read by [`probe`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Facts {
    /// `uname -r`.
    pub kernel: String,
    /// /sys/kernel/btf/vmlinux is there.
    pub btf: bool,
    /// The effective capability set.
    pub caps: u64,
    /// The `Seccomp:` mode of /proc/self/status (0 none, 1 strict, 2 filter).
    pub seccomp: u8,
    /// Whether bpf() creates a map for this process; the errno if not.
    pub bpf: Result<(), i32>,
    pub pin_dir: PinDir,
    pub mode: Mode,
    pub interfaces: Vec<Interface>,
    pub membership: Option<Membership>,
    /// Kubernetes mode: the API server's version, or why it could not be asked.
    pub api_server: Option<Result<String, String>>,
    pub proxy: ServiceProxy,
}

/// What a Service proxy does to this node's kernel.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceProxy {
    /// The dummy interface it binds Service addresses to: `kube-ipvs0` (kube-proxy in IPVS
    /// mode) or `kube-dummy-if` (kube-router); `None` for neither.
    pub dummy: Option<String>,
    /// The `arp_ignore` in force on the judged interfaces (the larger of `all` and the
    /// interface's own, as the kernel takes it): 0 answers ARP for any local address on any
    /// interface; 1 and up (kube-proxy's strictARP) only for the receiving interface's own.
    pub arp_ignore: Option<u8>,
}

/// The membership's UDP port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Membership {
    pub port: u16,
    /// Whether it could be bound, and why not.
    pub bound: Result<(), String>,
    /// The pid of a live speaker on this pin directory, which holds the port itself.
    pub speaker: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinDir {
    pub path: String,
    /// The directory or its parent is on a bpffs.
    pub on_bpffs: bool,
    /// Its parent exists (a bpffs can be mounted there).
    pub parent_exists: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    /// `None`: no such interface.
    pub hook: Option<hook::Facts>,
    /// IPv6 multicast joins (NDP's solicited-node groups); `Err` says why not.
    pub ipv6: Result<(), String>,
}

/// How a requirement stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum State {
    Ok,
    /// Herald works, with a fallback or a limit the detail names.
    Degraded,
    /// Herald cannot do this part; the fix says what to change.
    Missing,
}

/// One requirement, judged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub what: String,
    pub state: State,
    pub detail: String,
    pub fix: Option<String>,
    /// The speaker cannot start without it.
    pub fatal: bool,
}

impl Verdict {
    fn new(what: impl Into<String>, state: State, detail: impl Into<String>) -> Self {
        Self { what: what.into(), state, detail: detail.into(), fix: None, fatal: false }
    }

    fn fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }

    fn fatal(mut self) -> Self {
        self.fatal = self.state == State::Missing;
        self
    }

    /// `what: detail; fix`, for a log line or the speaker's refusal to start.
    pub fn line(&self) -> String {
        let mut line = format!("{}: {}", self.what, self.detail);
        if let Some(fix) = &self.fix {
            line.push_str("; ");
            line.push_str(fix);
        }
        line
    }
}

/// Every requirement, judged from `facts`, in the order they are printed.
pub fn verdicts(facts: &Facts) -> Vec<Verdict> {
    let mut out = vec![kernel(&facts.kernel), btf(facts.btf), capabilities(facts.caps, &facts.kernel)];
    out.push(bpf_syscall(facts));
    out.push(bpffs(&facts.pin_dir, has(facts.caps, CAP_SYS_ADMIN)));
    for it in &facts.interfaces {
        out.push(interface(it, facts.mode, facts.btf));
        if it.hook.is_some() {
            out.push(ipv6(it));
        }
    }
    if let Some(m) = &facts.membership {
        out.push(membership(m));
    }
    out.push(service_proxy(&facts.proxy));
    if let Some(api) = &facts.api_server {
        out.push(match api {
            Ok(version) => Verdict::new("API server", State::Ok, format!("reachable, Kubernetes {version}")),
            Err(e) => Verdict::new("API server", State::Missing, format!("not reachable: {e}")).fix(
                "check KUBECONFIG (or the pod's ServiceAccount) and that the node reaches the API server",
            ),
        });
    }
    out
}

/// Whether any requirement is missing: `check` exits 1 then.
pub fn any_missing(verdicts: &[Verdict]) -> bool {
    verdicts.iter().any(|v| v.state == State::Missing)
}

fn has(caps: u64, cap: u32) -> bool {
    caps & (1 << cap) != 0
}

/// (major, minor) of a kernel release such as `6.1.0-57-amd64`.
pub fn kernel_version(release: &str) -> (u32, u32) {
    let mut parts = release.split(['.', '-']).map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

fn kernel(release: &str) -> Verdict {
    let (major, minor) = kernel_version(release);
    if (major, minor) < MIN_KERNEL {
        return Verdict::new("kernel", State::Missing, format!("Linux {release}; Herald needs 5.8 or later"))
            .fix("run a newer kernel (CAP_BPF, BPF ring buffers and XDP links came with 5.8)")
            .fatal();
    }
    Verdict::new("kernel", State::Ok, format!("Linux {release}"))
}

fn btf(present: bool) -> Verdict {
    if present {
        return Verdict::new("BTF", State::Ok, "/sys/kernel/btf/vmlinux");
    }
    Verdict::new(
        "BTF",
        State::Degraded,
        "no /sys/kernel/btf/vmlinux: the XDP program that asks the driver for VLAN tags cannot load; \
         interfaces that need it use TC ingress",
    )
    .fix("a kernel built with CONFIG_DEBUG_INFO_BTF (every major distribution's is)")
}

fn capabilities(caps: u64, release: &str) -> Verdict {
    // Before 5.8 there is no CAP_BPF: loading programs needs CAP_SYS_ADMIN.
    let bpf_cap = if kernel_version(release) >= MIN_KERNEL { CAP_BPF } else { CAP_SYS_ADMIN };
    let load = has(caps, bpf_cap) || has(caps, CAP_SYS_ADMIN);
    let mut missing = Vec::new();
    if !load {
        missing.push(if bpf_cap == CAP_BPF { "CAP_BPF" } else { "CAP_SYS_ADMIN" });
    }
    if !has(caps, CAP_NET_ADMIN) {
        missing.push("CAP_NET_ADMIN");
    }
    if !has(caps, CAP_NET_RAW) {
        missing.push("CAP_NET_RAW");
    }
    if missing.is_empty() {
        return Verdict::new("capabilities", State::Ok, "CAP_BPF, CAP_NET_ADMIN, CAP_NET_RAW");
    }
    Verdict::new("capabilities", State::Missing, format!("without {}", missing.join(", ")))
        .fix(
            "run as root, or grant CAP_BPF (load the program), CAP_NET_ADMIN (attach it) and CAP_NET_RAW \
             (gratuitous ARP); in a pod: securityContext.capabilities.add: [BPF, NET_ADMIN, NET_RAW]",
        )
        .fatal()
}

fn bpf_syscall(facts: &Facts) -> Verdict {
    const WHAT: &str = "bpf() syscall";
    let capable = has(facts.caps, CAP_BPF) || has(facts.caps, CAP_SYS_ADMIN);
    match facts.bpf {
        Ok(()) => Verdict::new(WHAT, State::Ok, "allowed"),
        Err(libc::EPERM) if capable && facts.seccomp == 2 => Verdict::new(
            WHAT,
            State::Missing,
            "refused (EPERM) by this process's seccomp filter, though it has CAP_BPF",
        )
        .fix(
            "run under a seccomp profile that allows bpf() with CAP_BPF (containerd's RuntimeDefault does; \
             podman's and CRI-O's defaults allow it only with CAP_SYS_ADMIN): in a pod, \
             securityContext.seccompProfile RuntimeDefault on containerd, else a Localhost profile that \
             allows bpf(), or Unconfined",
        )
        .fatal(),
        // A consequence of the capabilities' verdict, which is the fatal one.
        Err(libc::EPERM) if !capable => {
            Verdict::new(WHAT, State::Missing, "refused (EPERM): no CAP_BPF").fix("see capabilities")
        }
        Err(errno) => Verdict::new(
            WHAT,
            State::Missing,
            format!("refused: {}", nix::errno::Errno::from_raw(errno)),
        )
        .fix("a kernel with CONFIG_BPF_SYSCALL, and kernel.unprivileged_bpf_disabled does not apply to root")
        .fatal(),
    }
}

fn bpffs(dir: &PinDir, can_mount: bool) -> Verdict {
    const WHAT: &str = "bpffs";
    if dir.on_bpffs {
        return Verdict::new(WHAT, State::Ok, format!("pins go to {}", dir.path));
    }
    if !dir.parent_exists {
        return Verdict::new(WHAT, State::Missing, format!("the parent of {} does not exist", dir.path))
            .fix("choose --pin-dir inside a bpffs (e.g. /sys/fs/bpf/herald)")
            .fatal();
    }
    if can_mount {
        return Verdict::new(
            WHAT,
            State::Ok,
            format!("none mounted yet; the speaker mounts one for {}", dir.path),
        );
    }
    Verdict::new(
        WHAT,
        State::Missing,
        format!("{} is not on a bpffs, and mounting one needs CAP_SYS_ADMIN", dir.path),
    )
    .fix("mount -t bpf bpf /sys/fs/bpf on the host (in a pod: a hostPath volume of /sys/fs/bpf)")
    .fatal()
}

fn membership(m: &Membership) -> Verdict {
    const WHAT: &str = "membership port";
    match (&m.bound, m.speaker) {
        (Ok(()), _) => Verdict::new(WHAT, State::Ok, format!("UDP {} is free", m.port)),
        (Err(_), Some(pid)) => Verdict::new(
            WHAT,
            State::Ok,
            format!("UDP {} is held by the running speaker (pid {pid})", m.port),
        ),
        (Err(e), None) => Verdict::new(WHAT, State::Missing, format!("UDP {}: {e}", m.port))
            .fix("stop what holds it (MetalLB's memberlist?), or choose another port on every node"),
    }
}

/// The report as `herald-speaker check` prints it: a line per requirement, the fix under it.
pub struct Report<'a>(pub &'a [Verdict]);

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self.0.iter().map(|v| v.what.len()).max().unwrap_or(0);
        for v in self.0 {
            let state = match v.state {
                State::Ok => "ok",
                State::Degraded => "degraded",
                State::Missing => "missing",
            };
            writeln!(f, "{state:<9}{:<width$}  {}", v.what, v.detail)?;
            if let Some(fix) = &v.fix
                && v.state != State::Ok
            {
                writeln!(f, "{:<9}{:<width$}  -> {fix}", "", "")?;
            }
        }
        Ok(())
    }
}
