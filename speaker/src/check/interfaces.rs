//! The verdicts on the interfaces: the hook each gets, IPv6 joins, and what a Service proxy
//! makes their kernel answer.

use super::{Interface, ServiceProxy, State, Verdict};
use crate::datapath::hook::{self, Hook, Mode};

pub(super) fn interface(it: &Interface, mode: Mode, btf: bool) -> Verdict {
    let Some(facts) = &it.hook else {
        return Verdict::new(&it.name, State::Missing, "no such interface")
            .fix("name an interface of this host");
    };
    let offload = match facts.rx_vlan_offload {
        Some(true) => "rx VLAN offload on",
        Some(false) => "rx VLAN offload off",
        None => "rx VLAN offload unknown",
    };
    let hooks = match hook::plan(mode, facts) {
        Ok(hooks) => hooks,
        Err(why) => return Verdict::new(&it.name, State::Missing, why).fix("use --datapath auto"),
    };
    let first = hooks.iter().copied().find(|h| btf || *h != Hook::XdpBound).unwrap_or(Hook::Tc);
    match first {
        Hook::XdpBound => Verdict::new(
            &it.name,
            State::Ok,
            format!("XDP in the driver, which reports the VLAN tags it strips ({offload})"),
        ),
        Hook::XdpInFrame => Verdict::new(
            &it.name,
            State::Ok,
            format!("XDP in the driver ({offload}; turned off while Herald runs, so tags stay in the frames)"),
        ),
        Hook::Tc if mode == Mode::Tc => Verdict::new(&it.name, State::Ok, "TC ingress (--datapath tc)"),
        Hook::Tc if let Some(foreign) = &facts.foreign_xdp => Verdict::new(
            &it.name,
            State::Degraded,
            format!("TC ingress: {}, and Herald never replaces one", foreign.holding_xdp()),
        )
        .fix("answers are right either way, from TC ingress, which the frames that program passes reach"),
        // The right hook there, not a fallback.
        Hook::Tc if facts.driver.as_ref().is_some_and(crate::ethtool::Driver::is_veth) => {
            Verdict::new(&it.name, State::Ok, format!("TC ingress: {}", why_tc(facts, btf)))
        }
        Hook::Tc => Verdict::new(&it.name, State::Degraded, format!("TC ingress: {}", why_tc(facts, btf)))
            .fix("answers are right either way; XDP needs Linux 6.8 and a driver that reports stripped VLAN tags, or a NIC whose rx VLAN offload can be turned off"),
    }
}

/// Why an interface gets TC ingress rather than XDP.
fn why_tc(facts: &hook::Facts, btf: bool) -> String {
    if facts.driver.as_ref().is_some_and(crate::ethtool::Driver::is_veth) {
        return "a veth, whose XDP replies reach the other end only if it runs XDP, which this node \
                cannot see (a node that is a container: kind, k3d, containerlab); --datapath xdp if it does"
            .into();
    }
    match facts.xdp {
        None => "the kernel cannot say what the driver offers XDP (Linux < 6.3)".into(),
        Some(x) if !x.native => "the driver has no native XDP".into(),
        Some(x) if x.vlan_tag && !btf => "the kernel has no BTF to bind the program to the driver".into(),
        Some(_) => {
            "the driver does not report the VLAN tags it strips (bpf_xdp_metadata_rx_vlan_tag, Linux 6.8)"
                .into()
        }
    }
}

pub(super) fn service_proxy(p: &ServiceProxy) -> Verdict {
    const WHAT: &str = "Service proxy";
    let mode = match p.dummy.as_deref() {
        None => {
            return Verdict::new(
                WHAT,
                State::Ok,
                "no kube-ipvs0 or kube-dummy-if: no proxy binds Service addresses to this node",
            );
        }
        Some("kube-ipvs0") => "kube-proxy in IPVS mode (kube-ipvs0)",
        Some(_) => "kube-router (kube-dummy-if)",
    };
    match p.arp_ignore {
        Some(ignore) if ignore >= 1 => Verdict::new(
            WHAT,
            State::Ok,
            format!(
                "{mode} binds every Service address here; arp_ignore {ignore} (strictARP): this kernel never \
                 answers for them, the owner's responder does"
            ),
        ),
        ignore => Verdict::new(
            WHAT,
            State::Degraded,
            format!(
                "{mode} binds every Service address here; arp_ignore {}: this kernel would answer ARP for \
                 them all; the responder drops those requests where another node owns the address, while \
                 the speaker runs",
                ignore.map_or("unknown".into(), |i| i.to_string())
            ),
        )
        .fix(
            "nothing is needed while the speakers run; with kube-proxy's strictARP: true \
             (arp_ignore 1) a node whose speaker is down stays silent too",
        ),
    }
}

pub(super) fn ipv6(it: &Interface) -> Verdict {
    let what = format!("{} IPv6", it.name);
    match &it.ipv6 {
        Ok(()) => Verdict::new(what, State::Ok, "multicast joins work (NDP's solicited-node groups)"),
        Err(e) => Verdict::new(
            what,
            State::Degraded,
            format!("{e}: IPv6 addresses cannot be announced here"),
        )
        .fix("enable IPv6 on the interface (net.ipv6.conf.<if>.disable_ipv6=0) if it carries IPv6 addresses"),
    }
}
