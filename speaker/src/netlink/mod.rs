//! The one thing about links that getifaddrs does not tell: which interfaces are ports of a
//! bond or bridge (they have a master). Read with an RTM_GETLINK dump over rtnetlink, in the
//! current network namespace (sysfs may show another one).

use std::{collections::BTreeSet, io};

use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, send, socket,
};

const NLMSG_HDR: usize = 16;
const IFINFOMSG: usize = 16;
const NLMSG_DONE: u16 = 3;
const NLMSG_ERROR: u16 = 2;
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const IFLA_MASTER: u16 = 10;

/// Indexes of the interfaces that have a master (bond, bridge, team ports).
pub fn ports() -> io::Result<BTreeSet<u32>> {
    let fd =
        socket(AddressFamily::Netlink, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::NetlinkRoute)?;
    bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &NetlinkAddr::new(0, 0))?;
    let mut request = [0u8; NLMSG_HDR + IFINFOMSG];
    request[0..4].copy_from_slice(&((NLMSG_HDR + IFINFOMSG) as u32).to_ne_bytes());
    request[4..6].copy_from_slice(&RTM_GETLINK.to_ne_bytes());
    request[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    request[8..12].copy_from_slice(&1u32.to_ne_bytes());
    send(std::os::fd::AsRawFd::as_raw_fd(&fd), &request, MsgFlags::empty())?;

    let mut out = BTreeSet::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = recv(std::os::fd::AsRawFd::as_raw_fd(&fd), &mut buf, MsgFlags::empty())?;
        match parse(&buf[..n], &mut out) {
            Parsed::More => continue,
            Parsed::Done => return Ok(out),
            Parsed::Error(e) => return Err(e),
        }
    }
}

enum Parsed {
    More,
    Done,
    Error(io::Error),
}

/// Adds the indexes of links with a master in one datagram of the dump to `out`.
fn parse(mut data: &[u8], out: &mut BTreeSet<u32>) -> Parsed {
    let u16_at = |b: &[u8], i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
    let u32_at = |b: &[u8], i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    while data.len() >= NLMSG_HDR {
        let len = u32_at(data, 0) as usize;
        if len < NLMSG_HDR || len > data.len() {
            return Parsed::Error(io::Error::new(io::ErrorKind::InvalidData, "truncated netlink message"));
        }
        let msg = &data[..len];
        match u16_at(msg, 4) {
            NLMSG_DONE => return Parsed::Done,
            NLMSG_ERROR => {
                let errno = if len >= NLMSG_HDR + 4 { -(u32_at(msg, NLMSG_HDR) as i32) } else { 0 };
                return Parsed::Error(io::Error::from_raw_os_error(errno));
            }
            RTM_NEWLINK if len >= NLMSG_HDR + IFINFOMSG => {
                let index = u32_at(msg, NLMSG_HDR + 4);
                let mut attrs = &msg[NLMSG_HDR + IFINFOMSG..];
                while attrs.len() >= 4 {
                    let (alen, kind) = (u16_at(attrs, 0) as usize, u16_at(attrs, 2));
                    if alen < 4 || alen > attrs.len() {
                        break;
                    }
                    if kind == IFLA_MASTER && alen >= 8 && u32_at(attrs, 4) != 0 {
                        out.insert(index);
                    }
                    attrs = &attrs[(alen + 3) & !3..];
                    if attrs.is_empty() {
                        break;
                    }
                }
            }
            _ => {}
        }
        data = &data[((len + 3) & !3).min(data.len())..];
    }
    Parsed::More
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One RTM_NEWLINK for index `index`, with an IFLA_MASTER attribute when `master` is set.
    fn link(index: u32, master: Option<u32>) -> Vec<u8> {
        let mut attrs = Vec::new();
        // IFLA_MTU (4), then IFLA_MASTER.
        attrs.extend_from_slice(&8u16.to_ne_bytes());
        attrs.extend_from_slice(&4u16.to_ne_bytes());
        attrs.extend_from_slice(&1500u32.to_ne_bytes());
        if let Some(m) = master {
            attrs.extend_from_slice(&8u16.to_ne_bytes());
            attrs.extend_from_slice(&IFLA_MASTER.to_ne_bytes());
            attrs.extend_from_slice(&m.to_ne_bytes());
        }
        let len = NLMSG_HDR + IFINFOMSG + attrs.len();
        let mut msg = vec![0u8; NLMSG_HDR + IFINFOMSG];
        msg[0..4].copy_from_slice(&(len as u32).to_ne_bytes());
        msg[4..6].copy_from_slice(&RTM_NEWLINK.to_ne_bytes());
        msg[NLMSG_HDR + 4..NLMSG_HDR + 8].copy_from_slice(&index.to_ne_bytes());
        msg.extend(attrs);
        msg
    }

    #[test]
    fn finds_ports() {
        let mut data = link(2, None);
        data.extend(link(3, Some(5)));
        data.extend(link(4, Some(0)));
        let mut out = BTreeSet::new();
        assert!(matches!(parse(&data, &mut out), Parsed::More));
        assert_eq!(out, BTreeSet::from([3]));
        let mut done = vec![0u8; NLMSG_HDR];
        done[0..4].copy_from_slice(&(NLMSG_HDR as u32).to_ne_bytes());
        done[4..6].copy_from_slice(&NLMSG_DONE.to_ne_bytes());
        assert!(matches!(parse(&done, &mut out), Parsed::Done));
        // A length that runs past the datagram is an error, not a panic.
        let mut bad = link(9, Some(1));
        bad.truncate(20);
        assert!(matches!(parse(&bad, &mut out), Parsed::Error(_)));
    }

    #[test]
    fn reads_this_namespace() {
        // Whatever the links here, the dump ends cleanly.
        ports().expect("an RTM_GETLINK dump");
    }
}
