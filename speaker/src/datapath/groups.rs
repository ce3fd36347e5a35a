//! The solicited-node groups of the IPv6 addresses announced: a Neighbor Solicitation goes to
//! the target's group (ff02::1:ffXX:XXXX, MAC 33:33:ff:XX:XX:XX), which a NIC's multicast
//! filter drops and an MLD-snooping switch does not forward unless someone on the port joined
//! it. Herald's addresses are on no interface, so the kernel joins nothing for them: the speaker
//! does, on an IPv6 socket (IPV6_ADD_MEMBERSHIP programs the filter and sends MLD reports).
//! A group is joined with the first address that needs it and left with the last; closing the
//! sockets (the speaker exiting) leaves them all. The kernel bounds one socket's memberships
//! (by `net.core.optmem_max`: about 365 groups with 6.1's 20 kB, 2,340 with 128 kB), so they are
//! spread over as many sockets as it takes.
//!
//! Tagged addresses are answered on the device that carries the VLAN, which need not have an
//! interface of its own for that VLAN: there the group's MAC goes into the device's filter
//! (PACKET_ADD_MEMBERSHIP), and no MLD report is sent.

use std::{
    collections::{BTreeMap, BTreeSet},
    io,
    net::Ipv6Addr,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

use speaker_common::NdpKey;

/// The solicited-node group of `addr` (RFC 4291 section 2.7.1).
pub fn solicited_node(addr: Ipv6Addr) -> Ipv6Addr {
    let o = addr.octets();
    Ipv6Addr::from([0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, o[13], o[14], o[15]])
}

/// A group on one interface and VLAN.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Group {
    pub ifindex: u32,
    pub vlan: u16,
    pub addr: Ipv6Addr,
}

impl Group {
    pub fn of(key: &NdpKey) -> Self {
        Self { ifindex: key.ifindex, vlan: key.vlan, addr: solicited_node(key.addr.into()) }
    }

    /// Its Ethernet address: 33:33 and the group's last 32 bits.
    pub fn mac(&self) -> [u8; 6] {
        let o = self.addr.octets();
        [0x33, 0x33, o[12], o[13], o[14], o[15]]
    }
}

/// Which announced addresses need which group. Pure: says when a group is first needed and when
/// it is no longer; the socket calls are [`Memberships`]'.
#[derive(Debug, Default)]
pub struct Needs(BTreeMap<Group, BTreeSet<Ipv6Addr>>);

impl Needs {
    /// `key`'s address needs its group: `Some(group)` when nothing needed it before.
    pub fn add(&mut self, key: &NdpKey) -> Option<Group> {
        let group = Group::of(key);
        let addrs = self.0.entry(group).or_default();
        let first = addrs.is_empty();
        addrs.insert(key.addr.into());
        first.then_some(group)
    }

    /// `key`'s address no longer needs its group: `Some(group)` when nothing else does.
    pub fn remove(&mut self, key: &NdpKey) -> Option<Group> {
        let group = Group::of(key);
        let addrs = self.0.get_mut(&group)?;
        if !addrs.remove(&Ipv6Addr::from(key.addr)) || !addrs.is_empty() {
            return None;
        }
        self.0.remove(&group);
        Some(group)
    }
}

/// Untagged groups one IPv6 socket holds at most: below the kernel's bound with the smallest
/// `optmem_max` in use (6.1's).
const GROUPS_PER_SOCKET: usize = 256;

/// The sockets that hold the memberships.
pub struct Memberships {
    /// IPv6 datagram sockets: IPV6_ADD_MEMBERSHIP for untagged groups, and how many each holds.
    inet6: Vec<(OwnedFd, usize)>,
    /// Which of them holds each untagged group.
    held: BTreeMap<Group, usize>,
    /// Packet socket: PACKET_ADD_MEMBERSHIP for tagged groups' MACs.
    packet: OwnedFd,
}

impl Memberships {
    pub fn new() -> io::Result<Self> {
        Ok(Self {
            inet6: vec![(socket(libc::AF_INET6, libc::SOCK_DGRAM)?, 0)],
            held: BTreeMap::new(),
            packet: socket(libc::AF_PACKET, libc::SOCK_RAW)?,
        })
    }

    pub fn join(&mut self, group: &Group) -> io::Result<()> {
        if group.vlan != 0 {
            return self.change_tagged(group, true);
        }
        if self.held.contains_key(group) {
            return Ok(());
        }
        let at = match self.inet6.iter().position(|(_, n)| *n < GROUPS_PER_SOCKET) {
            Some(at) => at,
            None => {
                self.inet6.push((socket(libc::AF_INET6, libc::SOCK_DGRAM)?, 0));
                self.inet6.len() - 1
            }
        };
        let (fd, count) = &mut self.inet6[at];
        setsockopt(fd, libc::IPPROTO_IPV6, libc::IPV6_ADD_MEMBERSHIP, &request(group))?;
        *count += 1;
        self.held.insert(*group, at);
        Ok(())
    }

    pub fn leave(&mut self, group: &Group) -> io::Result<()> {
        if group.vlan != 0 {
            return self.change_tagged(group, false);
        }
        let Some(at) = self.held.remove(group) else { return Ok(()) };
        let (fd, count) = &mut self.inet6[at];
        *count -= 1;
        setsockopt(fd, libc::IPPROTO_IPV6, libc::IPV6_DROP_MEMBERSHIP, &request(group))
    }

    /// How many IPv6 sockets hold groups.
    pub fn sockets(&self) -> usize {
        self.inet6.len()
    }

    /// A tagged group: its MAC in the device's filter.
    fn change_tagged(&self, group: &Group, join: bool) -> io::Result<()> {
        let mut address = [0u8; 8];
        address[..6].copy_from_slice(&group.mac());
        let request = libc::packet_mreq {
            mr_ifindex: group.ifindex as i32,
            mr_type: libc::PACKET_MR_MULTICAST as u16,
            mr_alen: 6,
            mr_address: address,
        };
        let option = if join { libc::PACKET_ADD_MEMBERSHIP } else { libc::PACKET_DROP_MEMBERSHIP };
        setsockopt(&self.packet, libc::SOL_PACKET, option, &request)
    }
}

fn request(group: &Group) -> libc::ipv6_mreq {
    libc::ipv6_mreq {
        ipv6mr_multiaddr: libc::in6_addr { s6_addr: group.addr.octets() },
        ipv6mr_interface: group.ifindex,
    }
}

fn socket(domain: i32, kind: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; the result is checked before use. Protocol 0: a packet socket that
    // receives nothing.
    let fd = unsafe { libc::socket(domain, kind | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn setsockopt<T>(fd: &OwnedFd, level: i32, option: i32, value: &T) -> io::Result<()> {
    // SAFETY: `value` is a live `T` of the size given, as `option` expects.
    let ret = unsafe {
        libc::setsockopt(fd.as_raw_fd(), level, option, (value as *const T).cast(), size_of::<T>() as u32)
    };
    if ret < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(addr: &str, ifindex: u32) -> NdpKey {
        NdpKey::new(addr.parse::<Ipv6Addr>().unwrap().octets(), ifindex, 0)
    }

    #[test]
    fn solicited_node_group_and_mac() {
        let group = Group::of(&key("2001:db8::abcd:1234", 2));
        assert_eq!(group.addr, "ff02::1:ffcd:1234".parse::<Ipv6Addr>().unwrap());
        assert_eq!(group.mac(), [0x33, 0x33, 0xff, 0xcd, 0x12, 0x34]);
    }

    /// Two addresses sharing a group (same last 24 bits): joined with the first, left with the
    /// last; adding an address twice (its MAC changed) counts once; other interfaces apart.
    #[test]
    fn a_group_is_held_while_an_address_needs_it() {
        let mut needs = Needs::default();
        let (a, b) = (key("2001:db8::10", 2), key("2001:db8:1::10", 2));
        let group = Group::of(&a);
        assert_eq!(needs.add(&a), Some(group));
        assert_eq!(needs.add(&a), None);
        assert_eq!(needs.add(&b), None);
        assert_eq!(needs.add(&key("2001:db8::10", 3)).map(|g| g.ifindex), Some(3));
        assert_eq!(needs.remove(&a), None);
        assert_eq!(needs.remove(&a), None);
        assert_eq!(needs.remove(&b), Some(group));
        assert_eq!(needs.remove(&b), None);
    }
}
