//! A hostile host's tools: what a switch port carries between two members (as a host that
//! spoofed its way onto the path would see it), and UDP sent from any source address through a
//! raw socket, one datagram at a time or as a flood from one core.

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    time::{Duration, Instant},
};

use anyhow::Context as _;

use crate::lab::{Host, Lab};

/// A UDP datagram as it crossed the wire.
#[derive(Clone, Debug)]
pub struct Datagram {
    pub from: SocketAddrV4,
    pub to: SocketAddrV4,
    pub payload: Vec<u8>,
}

/// The IPv4 UDP datagrams to `port` that `host` sends onto the LAN during `window`, read at its
/// switch port.
pub fn capture(lab: &Lab, host: &Host, port: u16, window: Duration) -> anyhow::Result<Vec<Datagram>> {
    let ifname = host.port.clone();
    lab.in_switch(move || {
        let ifindex = nix::net::if_::if_nametoindex(ifname.as_str())?;
        // SAFETY: a plain socket(2); the descriptor is owned at once.
        let fd =
            unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, (libc::ETH_P_ALL as u16).to_be() as i32) };
        anyhow::ensure!(fd >= 0, "packet socket: {}", std::io::Error::last_os_error());
        // SAFETY: fd was just returned by socket(2) and is owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: sll is a valid sockaddr_ll of the size given.
        let bound = unsafe {
            libc::bind(fd.as_raw_fd(), (&raw const sll).cast(), size_of::<libc::sockaddr_ll>() as u32)
        };
        anyhow::ensure!(bound == 0, "binding to {ifname}: {}", std::io::Error::last_os_error());
        let timeout = libc::timeval { tv_sec: 0, tv_usec: 50_000 };
        // SAFETY: a timeval of the size given.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const timeout).cast(),
                size_of::<libc::timeval>() as u32,
            )
        };
        let (mut seen, end, mut frame) = (Vec::new(), Instant::now() + window, [0u8; 2048]);
        while Instant::now() < end {
            // SAFETY: frame is writable for its length.
            let n = unsafe { libc::recv(fd.as_raw_fd(), frame.as_mut_ptr().cast(), frame.len(), 0) };
            if n > 0
                && let Some(d) = parse_udp(&frame[..n as usize])
                && d.to.port() == port
            {
                seen.push(d);
            }
        }
        Ok(seen)
    })
}

/// The IPv4 UDP datagram in an untagged Ethernet frame.
fn parse_udp(frame: &[u8]) -> Option<Datagram> {
    let ip = frame.get(14..).filter(|_| frame.get(12..14) == Some(&[0x08, 0x00]))?;
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    if ip.first()? >> 4 != 4 || ip.get(9) != Some(&17) {
        return None;
    }
    let addr = |at: usize| Some(Ipv4Addr::new(*ip.get(at)?, ip[at + 1], ip[at + 2], ip[at + 3]));
    let udp = ip.get(ihl..)?;
    let port = |at: usize| Some(u16::from_be_bytes([*udp.get(at)?, *udp.get(at + 1)?]));
    let len = usize::from(port(4)?);
    Some(Datagram {
        from: SocketAddrV4::new(addr(12)?, port(0)?),
        to: SocketAddrV4::new(addr(16)?, port(2)?),
        payload: udp.get(8..len)?.to_vec(),
    })
}

/// A raw IPv4 socket in the calling thread's namespace: it sends what [`packet`] builds.
pub struct Raw(OwnedFd);

impl Raw {
    pub fn new() -> anyhow::Result<Self> {
        // SAFETY: a plain socket(2); IPPROTO_RAW implies IP_HDRINCL.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
        anyhow::ensure!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
        // SAFETY: fd was just returned by socket(2).
        Ok(Self(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Sends `d` as it says, whatever its source. Returns whether the kernel took it (a full
    /// queue refuses some of a flood).
    pub fn send(&self, d: &Datagram) -> bool {
        let packet = packet(d);
        let mut to: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        to.sin_family = libc::AF_INET as u16;
        to.sin_addr.s_addr = u32::from(*d.to.ip()).to_be();
        // SAFETY: packet and to are valid for the lengths given.
        let sent = unsafe {
            libc::sendto(
                self.0.as_raw_fd(),
                packet.as_ptr().cast(),
                packet.len(),
                0,
                (&raw const to).cast(),
                size_of::<libc::sockaddr_in>() as u32,
            )
        };
        sent == packet.len() as isize
    }
}

/// An IPv4 packet carrying `d` (the kernel fills in the IP checksum; the UDP one is left out,
/// as IPv4 allows).
pub fn packet(d: &Datagram) -> Vec<u8> {
    let total = 20 + 8 + d.payload.len();
    let mut p = Vec::with_capacity(total);
    p.extend_from_slice(&[0x45, 0, (total >> 8) as u8, total as u8, 0, 0, 0x40, 0, 64, 17, 0, 0]);
    p.extend_from_slice(&d.from.ip().octets());
    p.extend_from_slice(&d.to.ip().octets());
    p.extend_from_slice(&d.from.port().to_be_bytes());
    p.extend_from_slice(&d.to.port().to_be_bytes());
    p.extend_from_slice(&((8 + d.payload.len()) as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(&d.payload);
    p
}

/// Sends `datagrams` from `host`, each as it says.
pub fn send(host: &Host, datagrams: Vec<Datagram>) -> anyhow::Result<usize> {
    host.in_netns(move || {
        let raw = Raw::new()?;
        Ok(datagrams.iter().filter(|d| raw.send(d)).count())
    })
}

/// What a flood sent.
#[derive(Clone, Copy, Debug)]
pub struct Flooded {
    pub sent: u64,
    pub seconds: f64,
}

impl Flooded {
    pub fn rate(&self) -> f64 {
        self.sent as f64 / self.seconds
    }
}

/// Sends from `host`, for `window`, as fast as one thread can: datagram `i` is `make(i)`.
/// Runs on a thread of its own; join it for the count.
pub fn flood(
    host: &Host,
    window: Duration,
    make: impl Fn(u64) -> Datagram + Send + 'static,
) -> std::thread::JoinHandle<anyhow::Result<Flooded>> {
    let host = host.clone();
    std::thread::spawn(move || {
        host.in_netns(move || {
            let raw = Raw::new().context("flood")?;
            let (start, mut sent, mut i) = (Instant::now(), 0u64, 0u64);
            while start.elapsed() < window {
                // A batch between clock reads.
                for _ in 0..64 {
                    sent += u64::from(raw.send(&make(i)));
                    i += 1;
                }
            }
            Ok(Flooded { sent, seconds: start.elapsed().as_secs_f64() })
        })
    })
}

/// The floods a hostile host sends to a member's membership port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flood {
    /// Junk of every length up to a full frame, from ever-changing addresses.
    Junk,
    /// Sealed datagrams that look right, without the key, from a member's address: each costs
    /// the target an HMAC (a boot it has not seen, sent now, a sequence counting up).
    Forged,
    /// The same from addresses the members do not know.
    Strangers,
}

impl Flood {
    pub const ALL: [Flood; 3] = [Flood::Junk, Flood::Forged, Flood::Strangers];

    pub fn describe(self) -> &'static str {
        match self {
            Flood::Junk => "junk from random sources",
            Flood::Forged => "sealed without the key, from a member's address",
            Flood::Strangers => "sealed without the key, from unknown addresses",
        }
    }

    /// Datagram `i` of this flood at `target`, as if from `member` where it forges a member,
    /// from `attacker` otherwise.
    pub fn maker(
        self,
        target: SocketAddrV4,
        member: SocketAddrV4,
        attacker: Ipv4Addr,
    ) -> Box<dyn Fn(u64) -> Datagram + Send> {
        let sealed = |from: SocketAddrV4| -> Vec<Vec<u8>> {
            let key = b"not-the-cluster-key-0123456789";
            let mut sealer = herald_speaker::cluster::auth::Sealer::new(key, from.into(), 7);
            // Sent a little ahead, so that they stay fresh through a flood of a minute.
            let at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            let at = at.as_millis() as u64 + 10_000;
            (0..4096).map(|_| sealer.seal(target.into(), at, &[0u8; 200])).collect()
        };
        let port = |i: u64| 1024 + (i % 60_000) as u16;
        match self {
            Flood::Junk => Box::new(move |i| Datagram {
                from: SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, (i % 250) as u8 + 1), port(i)),
                to: target,
                payload: vec![(i % 256) as u8; (i % 1472) as usize],
            }),
            Flood::Forged => {
                let sealed = sealed(member);
                Box::new(move |i| Datagram {
                    from: member,
                    to: target,
                    payload: sealed[i as usize % 4096].clone(),
                })
            }
            Flood::Strangers => {
                let sealed = sealed(SocketAddrV4::new(attacker, member.port()));
                Box::new(move |i| Datagram {
                    from: SocketAddrV4::new(attacker, port(i)),
                    to: target,
                    payload: sealed[i as usize % 4096].clone(),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_built_packet_parses_back() {
        let d = Datagram {
            from: "192.0.2.2:7946".parse().unwrap(),
            to: "192.0.2.1:7946".parse().unwrap(),
            payload: b"sealed".to_vec(),
        };
        let mut frame = vec![0u8; 12];
        frame.extend_from_slice(&[0x08, 0x00]);
        frame.extend_from_slice(&packet(&d));
        let back = parse_udp(&frame).unwrap();
        assert_eq!((back.from, back.to, back.payload), (d.from, d.to, d.payload));
        frame[12] = 0x86;
        assert!(parse_udp(&frame).is_none(), "not IPv4");
    }
}
