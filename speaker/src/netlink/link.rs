//! Ports of bonds and bridges: links with a master (RTM_GETLINK dump, IFLA_MASTER).

use std::{collections::BTreeSet, io};

use nix::sys::socket::SockProtocol;

use super::{Socket, attributes, u32_at};

const IFINFOMSG: usize = 16;
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const IFLA_MASTER: u16 = 10;

/// Indexes of the interfaces that have a master (bond, bridge, team ports).
pub fn ports() -> io::Result<BTreeSet<u32>> {
    let mut out = BTreeSet::new();
    Socket::open(SockProtocol::NetlinkRoute)?.request(
        RTM_GETLINK,
        true,
        &[0u8; IFINFOMSG],
        |kind, link| {
            if kind == RTM_NEWLINK
                && let Some(index) = port(link)
            {
                out.insert(index);
            }
        },
    )?;
    Ok(out)
}

/// The index of the link in an RTM_NEWLINK payload, if it has a master.
fn port(link: &[u8]) -> Option<u32> {
    if link.len() < IFINFOMSG {
        return None;
    }
    let index = u32_at(link, 4);
    attributes(&link[IFINFOMSG..])
        .any(|(kind, value)| kind == IFLA_MASTER && value.len() >= 4 && u32_at(value, 0) != 0)
        .then_some(index)
}

#[cfg(test)]
mod tests {
    use super::{super::attribute, *};

    /// An RTM_NEWLINK payload for index `index`, with an IFLA_MASTER attribute when `master` is set.
    fn link(index: u32, master: Option<u32>) -> Vec<u8> {
        let mut msg = vec![0u8; IFINFOMSG];
        msg[4..8].copy_from_slice(&index.to_ne_bytes());
        msg.extend(attribute(4, &1500u32.to_ne_bytes())); // IFLA_MTU
        if let Some(m) = master {
            msg.extend(attribute(IFLA_MASTER, &m.to_ne_bytes()));
        }
        msg
    }

    #[test]
    fn finds_ports() {
        assert_eq!(port(&link(2, None)), None);
        assert_eq!(port(&link(3, Some(5))), Some(3));
        assert_eq!(port(&link(4, Some(0))), None, "master 0 is no master");
        assert_eq!(port(&link(9, Some(1))[..10]), None, "a cut-off payload is nobody's port");
    }

    #[test]
    fn reads_this_namespace() {
        // Whatever the links here, the dump ends cleanly.
        ports().expect("an RTM_GETLINK dump");
    }
}
