//! The preflight's judgement, a case per verdict, from made-up facts.

use super::*;
use crate::{ethtool::Driver, netlink::XdpFeatures};

const ALL_CAPS: u64 = (1 << CAP_BPF) | (1 << CAP_NET_ADMIN) | (1 << CAP_NET_RAW) | (1 << CAP_SYS_ADMIN);
const DEPLOY_CAPS: u64 = (1 << CAP_BPF) | (1 << CAP_NET_ADMIN) | (1 << CAP_NET_RAW);

fn veth(kernel_6_8: bool) -> hook::Facts {
    hook::Facts {
        xdp: Some(XdpFeatures { native: true, vlan_tag: kernel_6_8 }),
        driver: Some(Driver { name: "veth".into(), bus_info: String::new() }),
        rx_vlan_offload: Some(true),
        foreign_xdp: None,
    }
}

/// A NIC whose driver reports the VLAN tags it strips (Linux 6.8).
fn mlx5() -> hook::Facts {
    hook::Facts {
        xdp: Some(XdpFeatures { native: true, vlan_tag: true }),
        driver: Some(Driver { name: "mlx5_core".into(), bus_info: "0000:5e:00.0".into() }),
        rx_vlan_offload: Some(true),
        foreign_xdp: None,
    }
}

fn nic() -> hook::Facts {
    hook::Facts {
        xdp: Some(XdpFeatures { native: true, vlan_tag: false }),
        driver: Some(Driver { name: "ixgbe".into(), bus_info: "0000:03:00.0".into() }),
        rx_vlan_offload: Some(true),
        foreign_xdp: None,
    }
}

fn facts() -> Facts {
    Facts {
        kernel: "6.18.44".into(),
        btf: true,
        caps: ALL_CAPS,
        seccomp: 0,
        bpf: Ok(()),
        pin_dir: PinDir { path: "/sys/fs/bpf/herald".into(), on_bpffs: true, parent_exists: true },
        mode: Mode::Auto,
        interfaces: vec![Interface { name: "eth0".into(), hook: Some(mlx5()), ipv6: Ok(()) }],
        membership: None,
        api_server: None,
        proxy: ServiceProxy::default(),
    }
}

fn port(bound: Result<(), String>, speaker: Option<u32>) -> Membership {
    Membership { port: 7946, bound, speaker }
}

/// The verdict on `what` among `facts`' verdicts.
fn verdict(facts: &Facts, what: &str) -> Verdict {
    verdicts(facts).into_iter().find(|v| v.what == what).unwrap_or_else(|| panic!("no verdict on {what}"))
}

#[test]
fn a_capable_host_is_ok_throughout() {
    let all = verdicts(&facts());
    assert!(all.iter().all(|v| v.state == State::Ok), "{all:#?}");
    assert!(!any_missing(&all));
    let names: Vec<&str> = all.iter().map(|v| v.what.as_str()).collect();
    assert_eq!(
        names,
        ["kernel", "BTF", "capabilities", "bpf() syscall", "bpffs", "eth0", "eth0 IPv6", "Service proxy"]
    );
}

#[test]
fn each_requirement_judged() {
    type Case = (&'static str, fn(&mut Facts), &'static str, State, &'static str, bool);
    let cases: &[Case] = &[
        (
            "old kernel",
            |f| f.kernel = "5.4.0-150-generic".into(),
            "kernel",
            State::Missing,
            "needs 5.8",
            true,
        ),
        ("RHEL 9", |f| f.kernel = "5.14.0-427.el9.x86_64".into(), "kernel", State::Ok, "5.14.0", false),
        ("no BTF", |f| f.btf = false, "BTF", State::Degraded, "TC ingress", false),
        (
            "no caps",
            |f| f.caps = 0,
            "capabilities",
            State::Missing,
            "CAP_BPF, CAP_NET_ADMIN, CAP_NET_RAW",
            true,
        ),
        ("deploy/'s caps", |f| f.caps = DEPLOY_CAPS, "capabilities", State::Ok, "CAP_BPF", false),
        (
            "no NET_RAW",
            |f| f.caps = ALL_CAPS & !(1 << CAP_NET_RAW),
            "capabilities",
            State::Missing,
            "without CAP_NET_RAW",
            true,
        ),
        (
            "seccomp gates bpf()",
            |f| (f.caps, f.seccomp, f.bpf) = (DEPLOY_CAPS, 2, Err(libc::EPERM)),
            "bpf() syscall",
            State::Missing,
            "seccomp filter",
            true,
        ),
        (
            "no caps, no bpf()",
            |f| (f.caps, f.bpf) = (0, Err(libc::EPERM)),
            "bpf() syscall",
            State::Missing,
            "no CAP_BPF",
            false,
        ),
        ("no BPF syscall", |f| f.bpf = Err(libc::ENOSYS), "bpf() syscall", State::Missing, "ENOSYS", true),
        ("bpffs to mount", |f| f.pin_dir.on_bpffs = false, "bpffs", State::Ok, "mounts one", false),
        (
            "bpffs, cannot mount",
            |f| (f.pin_dir.on_bpffs, f.caps) = (false, DEPLOY_CAPS),
            "bpffs",
            State::Missing,
            "needs CAP_SYS_ADMIN",
            true,
        ),
        (
            "pin dir nowhere",
            |f| (f.pin_dir.on_bpffs, f.pin_dir.parent_exists) = (false, false),
            "bpffs",
            State::Missing,
            "does not exist",
            true,
        ),
        ("kfunc", |_| {}, "eth0", State::Ok, "reports the VLAN tags", false),
        (
            "a veth (a node that is a container), 6.8+",
            |f| f.interfaces[0].hook = Some(veth(true)),
            "eth0",
            State::Ok,
            "TC ingress: a veth, whose XDP replies reach the other end only if it runs XDP",
            false,
        ),
        (
            "a veth, Linux 6.1",
            |f| f.interfaces[0].hook = Some(veth(false)),
            "eth0",
            State::Ok,
            "a veth",
            false,
        ),
        (
            "a software device, 6.5",
            |f| {
                let bond = Driver { name: "bonding".into(), bus_info: String::new() };
                f.interfaces[0].hook = Some(hook::Facts { driver: Some(bond), ..veth(false) })
            },
            "eth0",
            State::Degraded,
            "TC ingress: the driver does not report",
            false,
        ),
        (
            "Linux 6.1 before netdev",
            |f| {
                let bond = Driver { name: "bonding".into(), bus_info: String::new() };
                f.interfaces[0].hook = Some(hook::Facts { xdp: None, driver: Some(bond), ..veth(false) })
            },
            "eth0",
            State::Degraded,
            "Linux < 6.3",
            false,
        ),
        ("kfunc without BTF", |f| f.btf = false, "eth0", State::Degraded, "no BTF", false),
        (
            "a NIC",
            |f| f.interfaces[0].hook = Some(nic()),
            "eth0",
            State::Ok,
            "turned off while Herald runs",
            false,
        ),
        ("tc asked for", |f| f.mode = Mode::Tc, "eth0", State::Ok, "--datapath tc", false),
        (
            "another program at XDP",
            |f| {
                let foreign = hook::Foreign { id: 7, name: "cil_xdp_entry".into() };
                f.interfaces[0].hook = Some(hook::Facts { foreign_xdp: Some(foreign), ..nic() })
            },
            "eth0",
            State::Degraded,
            "TC ingress: another program, cil_xdp_entry (program id 7), holds the XDP hook",
            false,
        ),
        (
            "xdp asked for, another program at XDP",
            |f| {
                let foreign = hook::Foreign { id: 7, name: String::new() };
                f.mode = Mode::Xdp;
                f.interfaces[0].hook = Some(hook::Facts { foreign_xdp: Some(foreign), ..nic() })
            },
            "eth0",
            State::Missing,
            "the XDP hook here is taken: another program, program id 7, holds it",
            false,
        ),
        (
            "xdp asked for, cannot",
            |f| (f.mode, f.interfaces[0].hook) = (Mode::Xdp, Some(veth(false))),
            "eth0",
            State::Missing,
            "",
            false,
        ),
        (
            "no such interface",
            |f| f.interfaces[0].hook = None,
            "eth0",
            State::Missing,
            "no such interface",
            false,
        ),
        (
            "IPv6 off",
            |f| f.interfaces[0].ipv6 = Err("IPv6 is disabled on the interface".into()),
            "eth0 IPv6",
            State::Degraded,
            "disabled",
            false,
        ),
        (
            "port free",
            |f| f.membership = Some(port(Ok(()), None)),
            "membership port",
            State::Ok,
            "UDP 7946 is free",
            false,
        ),
        (
            "port taken",
            |f| f.membership = Some(port(Err("Address in use (os error 98)".into()), None)),
            "membership port",
            State::Missing,
            "in use",
            false,
        ),
        (
            "port of the running speaker",
            |f| f.membership = Some(port(Err("Address in use (os error 98)".into()), Some(42))),
            "membership port",
            State::Ok,
            "held by the running speaker (pid 42)",
            false,
        ),
        (
            "kube-proxy IPVS, strictARP",
            |f| f.proxy = ServiceProxy { dummy: Some("kube-ipvs0".into()), arp_ignore: Some(1) },
            "Service proxy",
            State::Ok,
            "kube-proxy in IPVS mode (kube-ipvs0) binds every Service address here; arp_ignore 1 (strictARP): \
             this kernel never answers",
            false,
        ),
        (
            "kube-proxy IPVS, no strictARP",
            |f| f.proxy = ServiceProxy { dummy: Some("kube-ipvs0".into()), arp_ignore: Some(0) },
            "Service proxy",
            State::Degraded,
            "arp_ignore 0: this kernel would answer ARP for them all; the responder drops",
            false,
        ),
        (
            "kube-router",
            |f| f.proxy = ServiceProxy { dummy: Some("kube-dummy-if".into()), arp_ignore: Some(2) },
            "Service proxy",
            State::Ok,
            "kube-router (kube-dummy-if)",
            false,
        ),
        (
            "API server",
            |f| f.api_server = Some(Ok("v1.20.2".into())),
            "API server",
            State::Ok,
            "v1.20.2",
            false,
        ),
        (
            "no API server",
            |f| f.api_server = Some(Err("connection refused".into())),
            "API server",
            State::Missing,
            "refused",
            false,
        ),
    ];
    for (name, change, what, state, says, fatal) in cases {
        let mut f = facts();
        change(&mut f);
        let v = verdict(&f, what);
        assert_eq!((v.state, v.fatal), (*state, *fatal), "{name}: {v:#?}");
        assert!(v.detail.contains(says), "{name}: {:?} does not say {says:?}", v.detail);
        if v.state != State::Ok {
            assert!(v.fix.is_some(), "{name}: no fix");
        }
        assert_eq!(any_missing(&verdicts(&f)), *state == State::Missing, "{name}");
    }
}

#[test]
fn a_line_names_the_fix() {
    let mut f = facts();
    f.caps = 0;
    let line = verdict(&f, "capabilities").line();
    assert!(line.starts_with("capabilities: without CAP_BPF"), "{line}");
    assert!(line.contains("; run as root, or grant"), "{line}");
}

#[test]
fn the_report_puts_each_fix_under_its_requirement() {
    let mut f = facts();
    f.btf = false;
    let text = Report(&verdicts(&f)).to_string();
    let lines: Vec<&str> = text.lines().collect();
    let at = lines.iter().position(|l| l.starts_with("degraded BTF")).expect(&text);
    assert!(lines[at + 1].trim_start().starts_with("-> a kernel built with CONFIG_DEBUG_INFO_BTF"), "{text}");
    assert!(lines[0].starts_with("ok       kernel"), "{text}");
}
