//! A LAN in network namespaces: a Linux bridge as the switch (in a namespace of its own), node
//! namespaces and a client namespace, each joined to it by a veth pair whose inside end is
//! `eth0`. Addresses come from 192.0.2.0/24 (documentation range).
//!
//! Every veth end on the switch side carries Herald's pass-through XDP program, because a reply
//! sent with XDP_TX in native mode on veth is dropped unless the peer has an XDP program; so the
//! datapath suites can run the responder at XDP (`--datapath xdp`). [`Lab::plain`] leaves the
//! switch side bare, as a node that is a container has it (kind, k3d, containerlab: the other
//! end of its eth0 sits in a bridge with no program): the speaker's defaults must answer there.
//!
//! The veths keep the kernel's default features, VLAN offloads on, as nearly every real NIC has
//! them: an 802.1Q tag then travels beside the frame (skb metadata), not in it, and a program
//! that looks for it in the frame does not see it. [`Lab::with_vlan_offload_off`] turns those
//! offloads off on every end, so tags travel in the frames: the other configuration a datapath
//! test must pass in.
//!
//! Dropping the [`Lab`] kills the processes it started and deletes its namespaces (which takes
//! the veths, the bridge and the attached programs with them).

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
};

use anyhow::{Context as _, bail, ensure};
use aya::{
    Ebpf,
    programs::{Xdp, XdpMode},
};
use speaker_common::PASS_PROGRAM;

pub use crate::host_bpffs::HostBpffs;

/// The subnet every lab host is on.
pub const PREFIX: u8 = 24;
pub const CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
/// The IPv6 subnet every lab host is also on (a /64, as LANs are).
pub const PREFIX6: u8 = 64;

/// A lab host's IPv6 address: the IPv4 one's last byte after 2001:db8::, as hex digits written
/// like the decimal ones (192.0.2.100 is 2001:db8::100), so both are easy to tell apart in logs.
pub fn addr6(addr: Ipv4Addr) -> Ipv6Addr {
    let last = addr.octets()[3];
    let digits = u16::from_str_radix(&last.to_string(), 16).expect("decimal digits are hex digits");
    Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, digits)
}

/// One host of the lab.
#[derive(Clone, Debug)]
pub struct Host {
    pub name: String,
    /// Network namespace, under /run/netns.
    pub netns: String,
    pub addr: Ipv4Addr,
    /// Its IPv6 address ([`addr6`]).
    pub addr6: Ipv6Addr,
    pub mac: [u8; 6],
    /// The switch-side end of its veth pair.
    pub port: String,
}

impl Host {
    /// A command that runs in this host's network namespace. `nsenter` (not `ip netns exec`)
    /// keeps the caller's mount namespace, so the bpffs stays visible.
    pub fn command(&self, program: &str) -> Command {
        netns_command(&self.netns, program)
    }

    /// Runs a command here and returns its output, whatever its exit status.
    pub fn output(&self, program: &str, args: &[&str]) -> anyhow::Result<Output> {
        self.command(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {program} in {}", self.netns))
    }

    /// Runs a command here and fails unless it succeeds; returns its stdout.
    pub fn run(&self, program: &str, args: &[&str]) -> anyhow::Result<String> {
        let out = self.output(program, args)?;
        ensure!(
            out.status.success(),
            "{program} {args:?} in {}: {}\n{}",
            self.netns,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// eth0's interface index. (Not from /sys: `nsenter` keeps the caller's mount namespace,
    /// whose sysfs shows the caller's interfaces.)
    pub fn ifindex(&self) -> anyhow::Result<u32> {
        let out = self.run("ip", &["-o", "link", "show", "dev", "eth0"])?;
        out.split(':').next().context("ip link output")?.trim().parse().context("ifindex")
    }

    /// The MAC of this host's interface `ifname`.
    pub fn mac_of(&self, ifname: &str) -> anyhow::Result<[u8; 6]> {
        // `ip -br link`: "eth0@if3  UP  de:4b:ce:2f:f0:28 <...>"
        let brief = self.run("ip", &["-br", "link", "show", "dev", ifname])?;
        parse_mac(brief.split_whitespace().nth(2).context("no MAC in ip -br link")?)
    }

    /// Runs `f` in a thread that entered this host's network namespace.
    pub fn in_netns<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        in_netns(&self.netns, f)
    }
}

/// Runs `f` in a thread that entered network namespace `netns`.
pub fn in_netns<T: Send + 'static>(
    netns: &str,
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    let path = format!("/run/netns/{netns}");
    std::thread::spawn(move || {
        nix::sched::setns(std::fs::File::open(path)?, nix::sched::CloneFlags::CLONE_NEWNET)?;
        f()
    })
    .join()
    .map_err(|_| anyhow::anyhow!("netns thread panicked"))?
}

pub fn netns_command(netns: &str, program: &str) -> Command {
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net=/run/netns/{netns}")).arg("--").arg(program);
    cmd
}

pub struct Lab {
    pub nodes: Vec<Host>,
    pub client: Host,
    /// Scratch directory for configs and logs, removed on drop.
    pub workdir: std::path::PathBuf,
    /// Hosts on the LAN that are neither nodes nor the client (a control plane).
    pub others: Vec<Host>,
    id: String,
    switch: String,
    offload: VlanOffload,
    children: Vec<Child>,
    pass: Option<Ebpf>,
    // Dropped last: the lab's drop stops the speakers that pin there.
    _bpffs: HostBpffs,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Where an 802.1Q tag travels between the lab's veths.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VlanOffload {
    /// The kernel's default (rx and tx VLAN offload on): beside the frame, in skb metadata.
    On,
    /// In the frame.
    Off,
}

impl Lab {
    /// A lab with one node namespace per name, nodes at 192.0.2.1, .2, ... and the client at
    /// 192.0.2.100, with the kernel's default NIC features.
    pub fn new(node_names: &[&str]) -> anyhow::Result<Self> {
        Self::build(node_names, VlanOffload::On)
    }

    /// [`Lab::new`] without the pass program on the switch side: no XDP reply on the nodes'
    /// veths arrives.
    pub fn plain(node_names: &[&str]) -> anyhow::Result<Self> {
        Self::build_with(node_names, VlanOffload::On, false)
    }

    /// [`Lab::new`] with rx and tx VLAN offload off on every veth end: tags stay in the frames.
    pub fn with_vlan_offload_off(node_names: &[&str]) -> anyhow::Result<Self> {
        Self::build(node_names, VlanOffload::Off)
    }

    /// Either lab, by its VLAN offload setting.
    pub fn with_vlan_offload(node_names: &[&str], offload: VlanOffload) -> anyhow::Result<Self> {
        Self::build(node_names, offload)
    }

    fn build(node_names: &[&str], offload: VlanOffload) -> anyhow::Result<Self> {
        Self::build_with(node_names, offload, true)
    }

    /// The lab, with the pass program on the switch side (`pass`) or without.
    fn build_with(node_names: &[&str], offload: VlanOffload, pass: bool) -> anyhow::Result<Self> {
        crate::require_root()?;
        let id = format!("h{}-{}", std::process::id() % 100_000, NEXT.fetch_add(1, Ordering::Relaxed));
        let switch = format!("{id}-sw");
        // From here on, dropping `lab` cleans up whatever was made.
        let mut lab = Lab {
            nodes: Vec::new(),
            client: Host {
                name: String::new(),
                netns: String::new(),
                addr: CLIENT_ADDR,
                addr6: addr6(CLIENT_ADDR),
                mac: [0; 6],
                port: String::new(),
            },
            workdir: std::env::temp_dir().join(format!("herald-lab-{id}")),
            others: Vec::new(),
            id: id.clone(),
            switch: switch.clone(),
            offload,
            children: Vec::new(),
            pass: None,
            _bpffs: HostBpffs::ensure()?,
        };
        std::fs::create_dir_all(&lab.workdir)?;
        ip(&["netns", "add", &switch])?;
        ip(&["-n", &switch, "link", "add", "br0", "type", "bridge", "forward_delay", "0"])?;
        ip(&["-n", &switch, "link", "set", "br0", "up"])?;
        ip(&["-n", &switch, "link", "set", "lo", "up"])?;
        for (i, name) in node_names.iter().enumerate() {
            let addr = Ipv4Addr::new(192, 0, 2, 1 + i as u8);
            let host = lab.add_host(&id, name, addr, i)?;
            lab.nodes.push(host);
        }
        lab.client = lab.add_host(&id, "client", CLIENT_ADDR, node_names.len())?;
        if pass {
            lab.pass = Some(lab.attach_pass_programs()?);
        }
        Ok(lab)
    }

    /// Adds a host on the LAN, beside the nodes and the client (a control plane, say).
    pub fn add_other(&mut self, name: &str, addr: Ipv4Addr) -> anyhow::Result<Host> {
        let index = self.nodes.len() + 1 + self.others.len();
        let id = self.id.clone();
        let host = self.add_host(&id, name, addr, index)?;
        self.others.push(host.clone());
        Ok(host)
    }

    fn add_host(&mut self, id: &str, name: &str, addr: Ipv4Addr, index: usize) -> anyhow::Result<Host> {
        let netns = format!("{id}-{name}");
        let port = format!("p{index}-{}", std::process::id() % 10_000);
        ip(&["netns", "add", &netns])?;
        self.plug(&netns, "eth0", &port, addr)?;
        // No duplicate address detection: the lab's addresses are unique by construction, and
        // a tentative address cannot be used for the first second.
        let v6 = format!("{}/{PREFIX6}", addr6(addr));
        ip(&["-n", &netns, "addr", "add", &v6, "dev", "eth0", "nodad"])?;
        ip(&["-n", &netns, "link", "set", "lo", "up"])?;
        let host = Host { name: name.into(), netns, addr, addr6: addr6(addr), mac: [0; 6], port };
        Ok(Host { mac: host.mac_of("eth0")?, ..host })
    }

    /// Gives `host` a second link to the LAN, `ifname`, with `addr` in the lab's subnet (two
    /// NICs on one LAN), its switch port set up as every other. Returns its MAC.
    pub fn add_link(&mut self, host: &Host, ifname: &str, addr: Ipv4Addr) -> anyhow::Result<[u8; 6]> {
        let port = format!("q{}-{}", NEXT.fetch_add(1, Ordering::Relaxed), std::process::id() % 10_000);
        self.plug(&host.netns, ifname, &port, addr)?;
        if let Some(mut ebpf) = self.pass.take() {
            self.pass = Some(self.in_switch(move || {
                let program: &mut Xdp =
                    ebpf.program_mut(PASS_PROGRAM).context("no pass program")?.try_into()?;
                let ifindex = nix::net::if_::if_nametoindex(port.as_str())?;
                program.attach(ifindex, XdpMode::Driver).with_context(|| format!("attaching to {port}"))?;
                Ok(ebpf)
            })?);
        }
        host.mac_of(ifname)
    }

    /// Plugs namespace `netns` into the LAN: a veth pair, `ifname` there with `addr` (IPv4, the
    /// lab's prefix) and up, `port` in the switch's bridge; both ends with the lab's VLAN
    /// offloads.
    fn plug(&self, netns: &str, ifname: &str, port: &str, addr: Ipv4Addr) -> anyhow::Result<()> {
        let tmp = format!("{port}-t");
        ip(&[
            "link",
            "add",
            &tmp,
            "netns",
            netns,
            "type",
            "veth",
            "peer",
            "name",
            port,
            "netns",
            &self.switch,
        ])?;
        ip(&["-n", netns, "link", "set", &tmp, "name", ifname])?;
        ip(&["-n", &self.switch, "link", "set", port, "master", "br0", "up"])?;
        ip(&["-n", netns, "addr", "add", &format!("{addr}/{PREFIX}"), "dev", ifname])?;
        ip(&["-n", netns, "link", "set", ifname, "up"])?;
        if self.offload == VlanOffload::Off {
            for (ns, dev) in [(netns, ifname), (self.switch.as_str(), port)] {
                run(netns_command(ns, "ethtool").args(["-K", dev, "rxvlan", "off", "txvlan", "off"]))?;
            }
        }
        Ok(())
    }

    /// Loads the pass program and attaches it, in native mode, to every switch port.
    fn attach_pass_programs(&self) -> anyhow::Result<Ebpf> {
        let ports: Vec<String> = self.nodes.iter().chain([&self.client]).map(|h| h.port.clone()).collect();
        // Interface indexes are per namespace: attach from a thread that entered the switch's.
        self.in_switch(move || {
            let mut ebpf = Ebpf::load(herald_speaker::datapath::QUIET.main)?;
            let program: &mut Xdp = ebpf.program_mut(PASS_PROGRAM).context("no pass program")?.try_into()?;
            program.load()?;
            for port in &ports {
                let ifindex = nix::net::if_::if_nametoindex(port.as_str())?;
                program.attach(ifindex, XdpMode::Driver).with_context(|| format!("attaching to {port}"))?;
            }
            Ok(ebpf)
        })
    }

    /// Runs `f` in a thread in the switch's namespace (where each host's port is).
    pub fn in_switch<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        in_netns(&self.switch, f)
    }

    /// The bpffs directory a speaker in `host` pins its maps under.
    pub fn pin_dir(&self, host: &Host) -> std::path::PathBuf {
        std::path::Path::new("/sys/fs/bpf").join(&host.netns)
    }

    pub fn node(&self, name: &str) -> &Host {
        self.nodes.iter().find(|n| n.name == name).unwrap_or_else(|| panic!("no lab node {name}"))
    }

    /// Starts a long-running process in `host`'s namespace; it is killed when the lab drops.
    /// Its stderr goes to `log`, if given.
    pub fn spawn(
        &mut self,
        host: &Host,
        program: &str,
        args: &[&str],
        log: Option<&std::path::Path>,
    ) -> anyhow::Result<u32> {
        let stderr = match log {
            Some(path) => Stdio::from(std::fs::File::create(path)?),
            None => Stdio::inherit(),
        };
        let child = host
            .command(program)
            .args(args)
            .stdin(Stdio::null())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting {program} in {}", host.netns))?;
        let pid = child.id();
        self.children.push(child);
        Ok(pid)
    }

    /// Takes back a process started with [`Lab::spawn`], to wait for it.
    pub fn take_child(&mut self, pid: u32) -> Option<Child> {
        let i = self.children.iter().position(|c| c.id() == pid)?;
        Some(self.children.swap_remove(i))
    }

    /// Takes `host`'s switch port down (cut off from the LAN, its own link still up) or up.
    pub fn set_port(&self, host: &Host, up: bool) -> anyhow::Result<()> {
        ip(&["-n", &self.switch, "link", "set", &host.port, if up { "up" } else { "down" }])
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for child in &mut self.children {
            // nsenter execs the program, so this is the program itself. SIGCONT first, in case
            // a test left it stopped.
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT);
            let _ = child.kill();
            let _ = child.wait();
        }
        for host in self.nodes.iter().chain([&self.client]).chain(&self.others) {
            if !host.netns.is_empty() {
                let _ = ip(&["netns", "del", &host.netns]);
                // Pins and state file of a speaker that was killed (a clean exit removes its own).
                let _ = std::fs::remove_dir_all(self.pin_dir(host));
                let _ = std::fs::remove_file(format!("/run/herald/{}.state", host.netns));
            }
        }
        let _ = ip(&["netns", "del", &self.switch]);
        let _ = std::fs::remove_dir_all(&self.workdir);
    }
}

/// Runs `ip` with `args` in the caller's namespace.
pub fn ip(args: &[&str]) -> anyhow::Result<()> {
    run(Command::new("ip").args(args))
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd.stdin(Stdio::null()).output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?}: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

pub fn parse_mac(s: &str) -> anyhow::Result<[u8; 6]> {
    let bytes: Vec<u8> = s.split(':').map(|b| u8::from_str_radix(b, 16)).collect::<Result<_, _>>()?;
    bytes.try_into().map_err(|_| anyhow::anyhow!("not a MAC address: {s}"))
}

pub use herald_speaker::frame::format_mac;
