//! Reads the [`Facts`] the preflight judges: from /proc, the bpf() syscall itself, netlink,
//! ethtool, sockets and the API server. Nothing here changes the host.

use std::{
    net::{Ipv6Addr, UdpSocket},
    path::Path,
    time::Duration,
};

use super::{Facts, Interface, Membership, PinDir, ServiceProxy};
use crate::{bpffs, datapath, datapath::hook, host, pinned};

/// What to look at.
pub struct Probe<'a> {
    pub pin_dir: &'a Path,
    pub mode: hook::Mode,
    /// The interfaces to judge; `None`: every interface this host could announce on (up or not,
    /// with an IPv4 address, not loopback, not a container's, not a bond or bridge port).
    pub interfaces: Option<Vec<String>>,
    /// The membership's UDP port, to see that it is free.
    pub membership_port: Option<u16>,
}

/// Reads everything but the API server (see [`api_server`]).
pub fn probe(p: &Probe) -> Facts {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':').map(|v| v.trim().to_owned()))
    };
    let host = host::discover(&Default::default()).unwrap_or_default();
    let names = p.interfaces.clone().unwrap_or_else(|| {
        host.interfaces
            .iter()
            .filter(|i| !i.loopback && i.excluded.is_none() && !i.port && !i.addrs.is_empty())
            .map(|i| i.name.clone())
            .collect()
    });
    let arp_ignore = |name: &str| {
        let path = format!("/proc/sys/net/ipv4/conf/{name}/arp_ignore");
        std::fs::read_to_string(path).ok().and_then(|v| v.trim().parse::<u8>().ok())
    };
    let proxy = ServiceProxy {
        dummy: ["kube-ipvs0", "kube-dummy-if"]
            .into_iter()
            .find(|d| host.interface(d).is_some())
            .map(str::to_owned),
        arp_ignore: names.iter().map(|n| arp_ignore(n)).chain([arp_ignore("all")]).flatten().max(),
    };
    let interfaces = names
        .into_iter()
        .map(|name| {
            let index = nix::net::if_::if_nametoindex(name.as_str()).ok();
            let hook = index.map(|ifindex| datapath::hook_facts(ifindex, &name));
            let ipv6 = index.map_or(Err("no such interface".into()), |i| ipv6_joins(&name, i));
            Interface { name, hook, ipv6 }
        })
        .collect();
    Facts {
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_owned(),
        btf: Path::new("/sys/kernel/btf/vmlinux").exists(),
        caps: field("CapEff").and_then(|v| u64::from_str_radix(&v, 16).ok()).unwrap_or(0),
        seccomp: field("Seccomp").and_then(|v| v.parse().ok()).unwrap_or(0),
        bpf: bpf_map_create(),
        pin_dir: pin_dir(p.pin_dir),
        mode: p.mode,
        interfaces,
        membership: p.membership_port.map(|port| Membership {
            port,
            bound: UdpSocket::bind(("0.0.0.0", port)).map(drop).map_err(|e| e.to_string()),
            speaker: running_speaker(p.pin_dir),
        }),
        api_server: None,
        proxy,
    }
}

/// The API server's version, asked within 5 s, or why not.
pub async fn api_server(client: &kube::Client) -> Result<String, String> {
    match tokio::time::timeout(Duration::from_secs(5), client.apiserver_version()).await {
        Ok(Ok(info)) => Ok(info.git_version),
        Ok(Err(e)) => Err(herald_kube::report::Chain(&e).to_string()),
        Err(_) => Err("no answer within 5 s".into()),
    }
}

/// The pid of a live speaker that pins in `dir` (its heartbeat names it).
fn running_speaker(dir: &Path) -> Option<u32> {
    let pid = pinned::heartbeat(dir).ok()?.pid;
    (pid != 0 && Path::new(&format!("/proc/{pid}")).exists()).then_some(pid)
}

fn pin_dir(dir: &Path) -> PinDir {
    let parent = dir.parent();
    PinDir {
        path: dir.display().to_string(),
        on_bpffs: bpffs::is_bpffs(dir) || parent.is_some_and(bpffs::is_bpffs),
        parent_exists: parent.is_some_and(Path::is_dir),
    }
}

/// Creates (and closes) a one-entry array map: the real bpf() call, under this process's
/// capabilities and seccomp filter.
fn bpf_map_create() -> Result<(), i32> {
    const BPF_MAP_CREATE: libc::c_long = 0;
    const BPF_MAP_TYPE_ARRAY: u32 = 2;
    // union bpf_attr, map-create part: map_type, key_size, value_size, max_entries, the rest 0.
    let mut attr = [0u32; 30];
    attr[..4].copy_from_slice(&[BPF_MAP_TYPE_ARRAY, 4, 4, 1]);
    // SAFETY: attr is a zeroed, large enough bpf_attr that outlives the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_CREATE,
            attr.as_ptr(),
            std::mem::size_of_val(&attr) as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
    }
    // SAFETY: the kernel just returned this descriptor to us.
    unsafe { libc::close(fd as libc::c_int) };
    Ok(())
}

/// Whether a socket can join a solicited-node multicast group on the interface, as NDP needs.
fn ipv6_joins(name: &str, ifindex: u32) -> Result<(), String> {
    let disabled = std::fs::read_to_string(format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"));
    match disabled.as_deref().map(str::trim) {
        Err(_) => return Err("IPv6 is off in this kernel".into()),
        Ok("1") => return Err("IPv6 is disabled on the interface".into()),
        Ok(_) => {}
    }
    let socket = UdpSocket::bind((Ipv6Addr::UNSPECIFIED, 0)).map_err(|e| format!("no IPv6 socket: {e}"))?;
    let group: Ipv6Addr = "ff02::1:ff00:1".parse().expect("a multicast address");
    socket.join_multicast_v6(&group, ifindex).map_err(|e| format!("joining {group}: {e}"))
}

/// The preflight at start: fails with the fatal verdicts (`what: detail; fix`), or logs every
/// verdict (the DaemonSet's log shows the report).
pub fn at_start(p: &Probe) -> anyhow::Result<()> {
    let verdicts = super::verdicts(&probe(p));
    let fatal: Vec<String> = verdicts.iter().filter(|v| v.fatal).map(super::Verdict::line).collect();
    if !fatal.is_empty() {
        anyhow::bail!("{}", fatal.join("; "));
    }
    for v in &verdicts {
        match v.state {
            super::State::Ok => tracing::info!(requirement = v.what, "preflight: {}", v.detail),
            _ => tracing::warn!(requirement = v.what, "preflight: {}", v.line()),
        }
    }
    Ok(())
}
