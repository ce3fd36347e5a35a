//! ARP frames, as bytes on the wire. Used for gratuitous ARP, and by tests and benches to build
//! requests.

use std::net::Ipv4Addr;

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
        let mut f = Vec::with_capacity(46);
        f.extend_from_slice(&self.eth_dst);
        f.extend_from_slice(&self.eth_src);
        if let Some(vlan) = self.vlan {
            f.extend_from_slice(&0x8100u16.to_be_bytes());
            f.extend_from_slice(&(vlan & 0x0fff).to_be_bytes());
        }
        f.extend_from_slice(&0x0806u16.to_be_bytes());
        f.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4]);
        f.extend_from_slice(&self.op.to_be_bytes());
        f.extend_from_slice(&self.sha);
        f.extend_from_slice(&self.spa.octets());
        f.extend_from_slice(&self.tha);
        f.extend_from_slice(&self.tpa.octets());
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
