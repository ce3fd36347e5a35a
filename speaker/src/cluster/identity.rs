//! A speaker's identity in the membership protocol.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// A speaker: its node name, the address it gossips on, and a bump that changes when it has to
/// rejoin after being declared down (so the new identity wins over the old one).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Speaker {
    pub name: String,
    pub addr: SocketAddr,
    pub bump: u16,
}

impl Speaker {
    /// A stand-in for a configured peer whose name is not known yet: only its address is used,
    /// to send it an announce.
    pub fn at(addr: SocketAddr) -> Self {
        Self { name: String::new(), addr, bump: 0 }
    }
}

impl foca::Identity for Speaker {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        Some(Self { bump: self.bump.wrapping_add(1), ..self.clone() })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        // Newer wins; wrapping comparison, as the bump is a counter that may wrap.
        self.bump.wrapping_sub(adversary.bump) < u16::MAX / 2
    }
}
