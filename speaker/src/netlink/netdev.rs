//! What a driver offers XDP programs, from the generic netlink family `netdev` (kernel >= 6.3):
//! native XDP at all, and which RX metadata (the 802.1Q tag it stripped, kernel >= 6.8) a
//! program bound to the device can ask it for.

use std::io;

use nix::sys::socket::SockProtocol;

use super::{Socket, attribute, attributes, u16_at};

const GENL_ID_CTRL: u16 = 0x10;
const GENL_HDR: usize = 4;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
const NETDEV_CMD_DEV_GET: u8 = 1;
const NETDEV_A_DEV_IFINDEX: u16 = 1;
const NETDEV_A_DEV_XDP_FEATURES: u16 = 3;
const NETDEV_A_DEV_XDP_RX_METADATA_FEATURES: u16 = 5;
const NETDEV_XDP_ACT_BASIC: u64 = 1;
const NETDEV_XDP_RX_METADATA_VLAN_TAG: u64 = 4;

/// What the driver of one interface offers XDP programs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpFeatures {
    /// Native (driver) XDP: pass, drop, abort, TX.
    pub native: bool,
    /// It tells a program bound to the device about an 802.1Q tag it stripped
    /// (`bpf_xdp_metadata_rx_vlan_tag`).
    pub vlan_tag: bool,
}

/// The XDP features of interface `ifindex`; `None` on a kernel without the `netdev` family (or
/// that does not know the interface), which cannot say.
pub fn xdp_features(ifindex: u32) -> io::Result<Option<XdpFeatures>> {
    let socket = Socket::open(SockProtocol::NetlinkGeneric)?;
    let Some(family) = family_id(&socket, "netdev")? else { return Ok(None) };
    let request =
        [genl(NETDEV_CMD_DEV_GET), attribute(NETDEV_A_DEV_IFINDEX, &ifindex.to_ne_bytes())].concat();
    let mut features = None;
    match socket.request(family, false, &request, |_, payload| features = Some(parse(payload))) {
        Ok(()) => Ok(features),
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The id the kernel gave generic netlink family `name`, if it has one.
fn family_id(socket: &Socket, name: &str) -> io::Result<Option<u16>> {
    let mut value = name.as_bytes().to_vec();
    value.push(0);
    let request = [genl(CTRL_CMD_GETFAMILY), attribute(CTRL_ATTR_FAMILY_NAME, &value)].concat();
    let mut id = None;
    let answer = socket.request(GENL_ID_CTRL, false, &request, |_, payload| {
        id = payload
            .get(GENL_HDR..)
            .and_then(|attrs| {
                attributes(attrs).find(|(kind, v)| *kind == CTRL_ATTR_FAMILY_ID && v.len() >= 2)
            })
            .map(|(_, v)| u16_at(v, 0));
    });
    match answer {
        Ok(()) => Ok(id),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A generic netlink header for command `cmd`, version 1.
fn genl(cmd: u8) -> Vec<u8> {
    vec![cmd, 1, 0, 0]
}

/// The features in a NETDEV_CMD_DEV_GET answer.
fn parse(payload: &[u8]) -> XdpFeatures {
    let u64_of = |want: u16| {
        attributes(payload.get(GENL_HDR..).unwrap_or_default())
            .find(|(kind, v)| *kind == want && v.len() >= 8)
            .map_or(0, |(_, v)| u64::from_ne_bytes(v[..8].try_into().expect("8 bytes")))
    };
    XdpFeatures {
        native: u64_of(NETDEV_A_DEV_XDP_FEATURES) & NETDEV_XDP_ACT_BASIC != 0,
        vlan_tag: u64_of(NETDEV_A_DEV_XDP_RX_METADATA_FEATURES) & NETDEV_XDP_RX_METADATA_VLAN_TAG != 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_features() {
        let answer = |xdp: u64, meta: u64| {
            [
                genl(NETDEV_CMD_DEV_GET),
                attribute(NETDEV_A_DEV_IFINDEX, &2u32.to_ne_bytes()),
                attribute(NETDEV_A_DEV_XDP_FEATURES, &xdp.to_ne_bytes()),
                attribute(NETDEV_A_DEV_XDP_RX_METADATA_FEATURES, &meta.to_ne_bytes()),
            ]
            .concat()
        };
        assert_eq!(parse(&answer(0x7f, 0x7)), XdpFeatures { native: true, vlan_tag: true });
        assert_eq!(parse(&answer(0x7f, 0x3)), XdpFeatures { native: true, vlan_tag: false });
        assert_eq!(parse(&answer(0, 0)), XdpFeatures::default());
        assert_eq!(parse(&genl(NETDEV_CMD_DEV_GET)), XdpFeatures::default(), "attributes missing");
    }

    #[test]
    fn asks_this_kernel() {
        // Loopback has no native XDP; the answer (or the kernel's silence) must come cleanly.
        let lo = nix::net::if_::if_nametoindex("lo").expect("lo");
        let features = xdp_features(lo).expect("a netdev request");
        assert!(features.is_none_or(|f| !f.vlan_tag), "{features:?}");
    }
}
