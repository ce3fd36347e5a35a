//! What the kernel says about links over netlink, in the speaker's own network namespace (sysfs
//! may show another one): which interfaces are ports of a bond or bridge ([`ports`], rtnetlink),
//! which program holds an interface's XDP hook ([`xdp_program`], rtnetlink) and what a driver
//! offers XDP programs ([`xdp_features`], the generic netlink family `netdev`). A request, its
//! answer read to the end, plain parsing: no client library.

mod events;
mod link;
mod netdev;

use std::{
    io,
    os::fd::{AsRawFd as _, OwnedFd},
};

use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, send, socket,
};

pub use self::{
    events::HostEvents,
    link::{ports, xdp_program},
    netdev::{XdpFeatures, xdp_features},
};

const NLMSG_HDR: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_DUMP: u16 = 0x300;

/// One netlink socket, bound for requests to the kernel.
struct Socket(OwnedFd);

impl Socket {
    fn open(protocol: SockProtocol) -> io::Result<Self> {
        let fd = socket(AddressFamily::Netlink, SockType::Raw, SockFlag::SOCK_CLOEXEC, protocol)?;
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0))?;
        Ok(Self(fd))
    }

    /// Sends a request of `kind` with `payload` and hands every message of the answer (type,
    /// payload) to `each`, until the kernel says it is done: the end of a dump (`dump`), or
    /// the acknowledgement of a single request.
    fn request(
        &self,
        kind: u16,
        dump: bool,
        payload: &[u8],
        mut each: impl FnMut(u16, &[u8]),
    ) -> io::Result<()> {
        let flags = NLM_F_REQUEST | if dump { NLM_F_DUMP } else { NLM_F_ACK };
        let mut msg = Vec::with_capacity(NLMSG_HDR + payload.len());
        msg.extend_from_slice(&((NLMSG_HDR + payload.len()) as u32).to_ne_bytes());
        msg.extend_from_slice(&kind.to_ne_bytes());
        msg.extend_from_slice(&flags.to_ne_bytes());
        msg.extend_from_slice(&1u32.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(payload);
        send(self.0.as_raw_fd(), &msg, MsgFlags::empty())?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = recv(self.0.as_raw_fd(), &mut buf, MsgFlags::empty())?;
            if messages(&buf[..n], &mut each)? {
                return Ok(());
            }
        }
    }
}

/// Hands the messages of one datagram to `each`; `true` once the answer is complete (done, or
/// acknowledged). An error message is the error.
fn messages(mut data: &[u8], each: &mut impl FnMut(u16, &[u8])) -> io::Result<bool> {
    while data.len() >= NLMSG_HDR {
        let len = u32_at(data, 0) as usize;
        if len < NLMSG_HDR || len > data.len() {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "truncated netlink message"));
        }
        let (kind, payload) = (u16_at(data, 4), &data[NLMSG_HDR..len]);
        match kind {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => {
                let errno = if payload.len() >= 4 { -(u32_at(payload, 0) as i32) } else { 0 };
                return if errno == 0 { Ok(true) } else { Err(io::Error::from_raw_os_error(errno)) };
            }
            _ => each(kind, payload),
        }
        data = &data[align(len).min(data.len())..];
    }
    Ok(false)
}

/// The attributes (type, value) in `data`, until one is malformed.
fn attributes(mut data: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if data.len() < 4 {
            return None;
        }
        let (len, kind) = (u16_at(data, 0) as usize, u16_at(data, 2));
        if len < 4 || len > data.len() {
            return None;
        }
        let value = &data[4..len];
        data = &data[align(len).min(data.len())..];
        // The top bits flag nesting and byte order; the type is the rest.
        Some((kind & 0x3fff, value))
    })
}

/// An attribute of `kind` holding `value`, padded.
fn attribute(kind: u16, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(align(4 + value.len()));
    out.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(value);
    out.resize(align(out.len()), 0);
    out
}

fn align(len: usize) -> usize {
    (len + 3) & !3
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_ne_bytes([b[i], b[i + 1]])
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A netlink message of `kind` with `payload`.
    pub(super) fn message(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut msg = vec![0u8; NLMSG_HDR];
        msg[0..4].copy_from_slice(&((NLMSG_HDR + payload.len()) as u32).to_ne_bytes());
        msg[4..6].copy_from_slice(&kind.to_ne_bytes());
        msg.extend_from_slice(payload);
        msg.resize(align(msg.len()), 0);
        msg
    }

    #[test]
    fn messages_until_done_or_error() {
        let mut seen = Vec::new();
        let mut data = message(16, b"ab");
        data.extend(message(16, b"cdef"));
        assert!(!messages(&data, &mut |k, p| seen.push((k, p.to_vec()))).unwrap());
        assert_eq!(seen, [(16, b"ab".to_vec()), (16, b"cdef".to_vec())]);
        assert!(messages(&message(NLMSG_DONE, &[]), &mut |_, _| {}).unwrap());
        let ack = message(NLMSG_ERROR, &0u32.to_ne_bytes());
        assert!(messages(&ack, &mut |_, _| {}).unwrap());
        let refused = message(NLMSG_ERROR, &(-(libc::ENOENT)).to_ne_bytes());
        assert_eq!(messages(&refused, &mut |_, _| {}).unwrap_err().raw_os_error(), Some(libc::ENOENT));
        // A length that runs past the datagram is an error, not a panic.
        let mut cut = message(16, b"abcdefgh");
        cut.truncate(20);
        assert!(messages(&cut, &mut |_, _| {}).is_err());
    }

    #[test]
    fn attributes_round_trip_and_stop_at_garbage() {
        let mut data = attribute(1, &7u32.to_ne_bytes());
        data.extend(attribute(2, b"netdev\0"));
        data.extend([9, 0, 1]); // too short to be one
        let attrs: Vec<(u16, Vec<u8>)> = attributes(&data).map(|(k, v)| (k, v.to_vec())).collect();
        assert_eq!(attrs, [(1, 7u32.to_ne_bytes().to_vec()), (2, b"netdev\0".to_vec())]);
    }
}
