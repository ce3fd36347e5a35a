//! The kernel's word when the host's interfaces change: a netlink socket joined to the link and
//! address groups. A link that comes or goes, is renamed, changes its MAC (a bond's failover)
//! or its flags, or an address added or removed: each wakes the reader, who reads the host
//! again. What changed is not parsed: reading the host is cheap, and it is the one truth.

use std::{io, os::fd::AsRawFd as _};

use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, socket,
};
use tokio::io::unix::AsyncFd;

const RTMGRP_LINK: u32 = 0x1;
const RTMGRP_IPV4_IFADDR: u32 = 0x10;
const RTMGRP_IPV6_IFADDR: u32 = 0x100;

/// Wakes on every change of the host's links and addresses.
pub struct HostEvents(AsyncFd<std::os::fd::OwnedFd>);

impl HostEvents {
    /// Joins the groups; needs a tokio runtime.
    pub fn open() -> io::Result<Self> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            SockProtocol::NetlinkRoute,
        )?;
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR))?;
        // SAFETY: the descriptor is the OwnedFd's, open for as long as it lives, and the AsyncFd
        // owns it.
        let fd = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }?;
        Ok(Self(fd))
    }

    /// Resolves when something changed since the last call (all news read at once). An
    /// overflowing socket (a storm of changes) is news too.
    pub async fn changed(&mut self) -> io::Result<()> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let mut ready = self.0.readable_mut().await?;
            let mut news = false;
            loop {
                match recv(ready.get_inner().as_raw_fd(), &mut buf, MsgFlags::empty()) {
                    Ok(0) => break,
                    Ok(_) => news = true,
                    Err(nix::errno::Errno::EAGAIN) => {
                        ready.clear_ready();
                        break;
                    }
                    Err(nix::errno::Errno::ENOBUFS) => news = true,
                    Err(e) => return Err(e.into()),
                }
            }
            if news {
                return Ok(());
            }
        }
    }

    /// The next news from `events`; never, without a socket.
    pub async fn next(events: &mut Option<Self>) -> io::Result<()> {
        match events {
            Some(events) => events.changed().await,
            None => std::future::pending().await,
        }
    }
}
