//! What the membership socket carries inside an authenticated datagram ([`super::auth`]): a
//! kind byte, then the SWIM protocol's message or one of the liveness messages
//! ([`super::liveness`]).
//!
//! ```text
//! 0 | foca message            SWIM membership
//! 1                          heartbeat, owner to heir
//! 2 | nonce (8)              probe: answer with an ack
//! 3 | nonce (8)              ack of a probe
//! 4 | nonce (8) | address    probe that address for me, and pass its ack on
//! 5 | nonce (8)              helper to prober: probed as you asked, and no ack came
//! 6                          owner to heir: leaving, take over now
//! 7 | address                watcher to heir: the member at that address failed
//! ```
//!
//! An address is 4 or 16 bytes of IP then a 2-byte port, all big-endian.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Message<'a> {
    Membership(&'a [u8]),
    Beat,
    Probe(u64),
    Ack(u64),
    ProbeFor(u64, SocketAddr),
    Unanswered(u64),
    Leaving,
    Failed(SocketAddr),
}

impl Message<'_> {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32);
        let nonce = |out: &mut Vec<u8>, kind: u8, nonce: u64| {
            out.push(kind);
            out.extend_from_slice(&nonce.to_be_bytes());
        };
        match *self {
            Message::Membership(data) => {
                out.push(0);
                out.extend_from_slice(data);
            }
            Message::Beat => out.push(1),
            Message::Probe(n) => nonce(&mut out, 2, n),
            Message::Ack(n) => nonce(&mut out, 3, n),
            Message::Unanswered(n) => nonce(&mut out, 5, n),
            Message::Leaving => out.push(6),
            Message::ProbeFor(n, target) => {
                nonce(&mut out, 4, n);
                address(&mut out, target);
            }
            Message::Failed(member) => {
                out.push(7);
                address(&mut out, member);
            }
        }
        out
    }

    /// The message in `payload`, or `None` if it is none of the above.
    pub fn decode(payload: &[u8]) -> Option<Message<'_>> {
        let (&kind, rest) = payload.split_first()?;
        let nonce = || Some(u64::from_be_bytes(rest.get(..8)?.try_into().ok()?));
        match (kind, rest.len()) {
            (0, _) => Some(Message::Membership(rest)),
            (1, 0) => Some(Message::Beat),
            (2, 8) => Some(Message::Probe(nonce()?)),
            (3, 8) => Some(Message::Ack(nonce()?)),
            (5, 8) => Some(Message::Unanswered(nonce()?)),
            (6, 0) => Some(Message::Leaving),
            (4, 14 | 26) => Some(Message::ProbeFor(nonce()?, socket_addr(&rest[8..])?)),
            (7, 6 | 18) => Some(Message::Failed(socket_addr(rest)?)),
            _ => None,
        }
    }
}

/// Appends `addr`: its IP's 4 or 16 bytes, then its port.
fn address(out: &mut Vec<u8>, addr: SocketAddr) {
    match addr.ip() {
        IpAddr::V4(ip) => out.extend_from_slice(&ip.octets()),
        IpAddr::V6(ip) => out.extend_from_slice(&ip.octets()),
    }
    out.extend_from_slice(&addr.port().to_be_bytes());
}

/// The address in `bytes` (6 bytes for IPv4, 18 for IPv6), as [`address`] writes it.
fn socket_addr(bytes: &[u8]) -> Option<SocketAddr> {
    let (ip, port) = bytes.split_at_checked(bytes.len().checked_sub(2)?)?;
    let ip: IpAddr = match ip.len() {
        4 => Ipv4Addr::from(<[u8; 4]>::try_from(ip).ok()?).into(),
        16 => Ipv6Addr::from(<[u8; 16]>::try_from(ip).ok()?).into(),
        _ => return None,
    };
    Some(SocketAddr::new(ip, u16::from_be_bytes([port[0], port[1]])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let v4: SocketAddr = "192.0.2.3:7946".parse().unwrap();
        let v6: SocketAddr = "[2001:db8::3]:7946".parse().unwrap();
        let all = [
            Message::Membership(b"swim"),
            Message::Membership(b""),
            Message::Beat,
            Message::Probe(7),
            Message::Ack(u64::MAX),
            Message::ProbeFor(9, v4),
            Message::ProbeFor(10, v6),
            Message::Unanswered(11),
            Message::Leaving,
            Message::Failed(v4),
            Message::Failed(v6),
        ];
        for m in all {
            assert_eq!(Message::decode(&m.encode()), Some(m));
        }
        assert_eq!(Message::ProbeFor(1, v4).encode().len(), 1 + 8 + 6);
    }

    #[test]
    fn anything_else_is_refused() {
        assert_eq!(Message::decode(&[]), None);
        assert_eq!(Message::decode(&[8]), None, "unknown kind");
        assert_eq!(Message::decode(&[7]), None, "a verdict names its member");
        assert_eq!(Message::decode(&[1, 0]), None, "a beat carries nothing");
        let probe = Message::Probe(3).encode();
        for len in 1..probe.len() {
            assert_eq!(Message::decode(&probe[..len]), None, "probe cut at {len}");
        }
        let ask = Message::ProbeFor(3, "192.0.2.3:1".parse().unwrap()).encode();
        for len in 1..ask.len() {
            assert_eq!(Message::decode(&ask[..len]), None, "request cut at {len}");
        }
        let verdict = Message::Failed("192.0.2.3:1".parse().unwrap()).encode();
        for len in 1..verdict.len() {
            assert_eq!(Message::decode(&verdict[..len]), None, "verdict cut at {len}");
        }
        let mut long = ask.clone();
        long.push(0);
        assert_eq!(Message::decode(&long), None);
    }
}
