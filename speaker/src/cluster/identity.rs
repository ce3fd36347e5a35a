//! A speaker's identity in the membership protocol.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// A member: a speaker's node name, the address it gossips on, and a generation: the start time in ms,
/// plus one each time it rejoins after being declared down. A newer generation wins over an
/// older identity at the same address, so a restarted or rejoining speaker is never mistaken
/// for the one that went down. It also carries its node's MACs: another speaker's gratuitous
/// ARP for an address (a takeover) is then told apart from a foreign host's claim on it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Member {
    pub name: String,
    pub addr: SocketAddr,
    pub generation: u64,
    pub macs: Vec<[u8; 6]>,
}

impl Member {
    /// A stand-in for a configured peer whose name is not known yet: only its address is used,
    /// to send it an announce.
    pub fn at(addr: SocketAddr) -> Self {
        Self { name: String::new(), addr, generation: 0, macs: Vec::new() }
    }
}

impl foca::Identity for Member {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        Some(Self { generation: self.generation + 1, ..self.clone() })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.generation > adversary.generation
    }
}

#[cfg(test)]
mod tests {
    use foca::Identity as _;

    use super::*;

    #[test]
    fn newer_generation_wins() {
        let old = Member {
            name: "node-a".into(),
            addr: "192.0.2.1:7946".parse().unwrap(),
            generation: 1_000,
            macs: vec![],
        };
        let renewed = old.renew().unwrap();
        assert!(renewed.win_addr_conflict(&old) && !old.win_addr_conflict(&renewed));
        let restarted = Member { generation: 2_000, ..old.clone() };
        assert!(restarted.win_addr_conflict(&renewed));
        assert_eq!(renewed.addr(), old.addr);
    }
}
