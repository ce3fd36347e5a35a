//! ARP frames and unsolicited Neighbor Advertisements, as bytes on the wire: what a node sends
//! when it takes an address over. ARP requests too, for the tests and benches.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const BROADCAST: [u8; 6] = [0xff; 6];
pub const ARP_REQUEST: u16 = 1;
pub const ARP_REPLY: u16 = 2;

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: [u8; 6]) -> String {
    mac.map(|b| format!("{b:02x}")).join(":")
}

/// The fields of an Ethernet + ARP (IPv4) frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arp {
    pub eth_dst: [u8; 6],
    pub eth_src: [u8; 6],
    /// 802.1Q VLAN id, `None` for an untagged frame.
    pub vlan: Option<u16>,
    pub op: u16,
    pub sha: [u8; 6],
    pub spa: Ipv4Addr,
    pub tha: [u8; 6],
    pub tpa: Ipv4Addr,
}

impl Arp {
    /// A request from `mac`/`ip` asking who has `target`, sent to broadcast.
    pub fn request(mac: [u8; 6], ip: Ipv4Addr, target: Ipv4Addr) -> Self {
        Self {
            eth_dst: BROADCAST,
            eth_src: mac,
            vlan: None,
            op: ARP_REQUEST,
            sha: mac,
            spa: ip,
            tha: [0; 6],
            tpa: target,
        }
    }

    /// A gratuitous ARP announcement (RFC 5227 section 2.3): a broadcast request whose sender
    /// and target address are both `ip`, so every host with a cache entry for `ip` updates it.
    pub fn gratuitous(mac: [u8; 6], ip: Ipv4Addr, vlan: u16) -> Self {
        Self { vlan: (vlan != 0).then_some(vlan), ..Self::request(mac, ip, ip) }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut f = ethernet(self.eth_dst, self.eth_src, self.vlan, 0x0806, 28);
        f.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4]);
        f.extend_from_slice(&self.op.to_be_bytes());
        f.extend_from_slice(&self.sha);
        f.extend_from_slice(&self.spa.octets());
        f.extend_from_slice(&self.tha);
        f.extend_from_slice(&self.tpa.octets());
        f
    }
}

/// An Ethernet header from `src` to `dst`, behind an 802.1Q tag of `vlan` if any, for a payload
/// of `payload` bytes and type `ethertype` (which the caller appends).
fn ethernet(dst: [u8; 6], src: [u8; 6], vlan: Option<u16>, ethertype: u16, payload: usize) -> Vec<u8> {
    let mut f = Vec::with_capacity(18 + payload);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    if let Some(vlan) = vlan {
        f.extend_from_slice(&0x8100u16.to_be_bytes());
        f.extend_from_slice(&(vlan & 0x0fff).to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

/// The frame that tells the LAN `addr` is now at `mac`: a gratuitous ARP for an IPv4 address, an
/// unsolicited Neighbor Advertisement for an IPv6 one.
pub fn gratuitous(mac: [u8; 6], addr: IpAddr, vlan: u16) -> Vec<u8> {
    match addr {
        IpAddr::V4(ip) => Arp::gratuitous(mac, ip, vlan).to_bytes(),
        IpAddr::V6(ip) => unsolicited_advertisement(mac, ip, vlan),
    }
}

/// ff02::1 and its MAC.
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
const ALL_NODES_MAC: [u8; 6] = [0x33, 0x33, 0, 0, 0, 1];

/// An unsolicited Neighbor Advertisement (RFC 4861 section 7.2.6): from `target` to all nodes,
/// Override set and Solicited not, with `mac` in the target link-layer option, so that every
/// host with a cache entry for `target` takes the new MAC at once.
pub fn unsolicited_advertisement(mac: [u8; 6], target: Ipv6Addr, vlan: u16) -> Vec<u8> {
    let mut icmp = Vec::with_capacity(32);
    icmp.extend_from_slice(&[136, 0, 0, 0]); // type, code, checksum (below)
    icmp.extend_from_slice(&[0x20, 0, 0, 0]); // Override
    icmp.extend_from_slice(&target.octets());
    icmp.extend_from_slice(&[2, 1]); // target link-layer address, 8 bytes
    icmp.extend_from_slice(&mac);
    let checksum = icmpv6_checksum(target, ALL_NODES, &icmp);
    icmp[2..4].copy_from_slice(&checksum.to_be_bytes());

    let mut f = ethernet(ALL_NODES_MAC, mac, (vlan != 0).then_some(vlan), 0x86dd, 40 + icmp.len());
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
    f.extend_from_slice(&[58, 255]); // ICMPv6, hop limit 255
    f.extend_from_slice(&target.octets());
    f.extend_from_slice(&ALL_NODES.octets());
    f.extend_from_slice(&icmp);
    f
}

/// The ICMPv6 checksum (RFC 4443 section 2.3) of `message`, whose checksum field is zero.
fn icmpv6_checksum(src: Ipv6Addr, dst: Ipv6Addr, message: &[u8]) -> u16 {
    let mut pseudo = Vec::with_capacity(40 + message.len());
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&(message.len() as u32).to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, 58]);
    pseudo.extend_from_slice(message);
    let mut sum: u32 =
        pseudo.chunks(2).map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The layout, flags and option of RFC 4861 section 4.4; the checksum as computed apart from
    /// this code (RFC 1071 over the pseudo-header and message, in Python). The lab checks that
    /// Linux hosts take it (`lab_ndp`).
    #[test]
    fn unsolicited_advertisement_bytes() {
        let mac = [2, 0, 0, 0, 0, 1];
        let target: Ipv6Addr = "2001:db8::10".parse().unwrap();
        let f = unsolicited_advertisement(mac, target, 0);
        assert_eq!(&f[..14], &[0x33, 0x33, 0, 0, 0, 1, 2, 0, 0, 0, 0, 1, 0x86, 0xdd]);
        assert_eq!(&f[14..22], &[0x60, 0, 0, 0, 0, 32, 58, 255]);
        assert_eq!(&f[22..38], &target.octets());
        assert_eq!(&f[38..54], &ALL_NODES.octets());
        assert_eq!(&f[54..58], &[136, 0, 0xf9, 0x0c]);
        assert_eq!(&f[58..62], &[0x20, 0, 0, 0]);
        assert_eq!(&f[62..78], &target.octets());
        assert_eq!(&f[78..], &[2, 1, 2, 0, 0, 0, 0, 1]);
        let tagged = unsolicited_advertisement(mac, target, 42);
        assert_eq!(&tagged[12..18], &[0x81, 0x00, 0, 42, 0x86, 0xdd]);
        assert_eq!(&tagged[18..], &f[14..]);
    }

    #[test]
    fn gratuitous_bytes() {
        let mac = [2, 0, 0, 0, 0, 1];
        let f = Arp::gratuitous(mac, [192, 0, 2, 10].into(), 0).to_bytes();
        assert_eq!(
            f,
            [
                255, 255, 255, 255, 255, 255, 2, 0, 0, 0, 0, 1, 8, 6, // Ethernet
                0, 1, 8, 0, 6, 4, 0, 1, // Ethernet/IPv4, request
                2, 0, 0, 0, 0, 1, 192, 0, 2, 10, // sender
                0, 0, 0, 0, 0, 0, 192, 0, 2, 10, // target
            ]
        );
        let tagged = Arp::gratuitous(mac, [192, 0, 2, 10].into(), 42).to_bytes();
        assert_eq!(&tagged[12..18], &[0x81, 0x00, 0, 42, 8, 6]);
        assert_eq!(&tagged[18..], &f[14..]);
    }
}
