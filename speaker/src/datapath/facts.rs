//! What the kernel says about an interface, read for [`hook::plan`](super::hook::plan): what
//! its driver offers XDP, its rx VLAN offload, and whose program holds its XDP hook.

use super::hook;
use crate::{ethtool, netlink};

/// What the kernel says about interface `ifindex` (`ifname`), for [`hook::plan`]; what it cannot
/// say is `None`.
pub fn hook_facts(ifindex: u32, ifname: &str) -> hook::Facts {
    hook::Facts {
        xdp: netlink::xdp_features(ifindex).ok().flatten(),
        driver: ethtool::driver(ifname).ok(),
        rx_vlan_offload: ethtool::rx_vlan_offload(ifname).ok(),
        foreign_xdp: foreign_xdp(ifindex),
    }
}

/// The program at `ifindex`'s XDP hook, unless it is one of Herald's.
fn foreign_xdp(ifindex: u32) -> Option<hook::Foreign> {
    let id = netlink::xdp_program(ifindex).ok().flatten()?;
    let name = aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .find(|p| p.id() == id)
        .map(|p| String::from_utf8_lossy(p.name()).into_owned())
        .unwrap_or_default();
    (!speaker_common::is_herald_program(&name)).then_some(hook::Foreign { id, name })
}
