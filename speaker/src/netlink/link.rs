//! What RTM_GETLINK says of links: the ports of bonds, bridges and teams (links with a master,
//! IFLA_MASTER, that is not a VRF: a VRF's members are routed interfaces of their own, not
//! ports, and answer for their link), and the program a link runs at its XDP hook.

use std::{
    collections::{BTreeMap, BTreeSet},
    io,
};

use nix::sys::socket::SockProtocol;

use super::{Socket, attributes, u32_at};

const IFINFOMSG: usize = 16;
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_XDP: u16 = 43;
const IFLA_XDP_PROG_ID: u16 = 4;

/// Indexes of the interfaces that are ports of a bond, bridge or team (a master that is not a
/// VRF).
pub fn ports() -> io::Result<BTreeSet<u32>> {
    let mut links = Vec::new();
    Socket::open(SockProtocol::NetlinkRoute)?.request(
        RTM_GETLINK,
        true,
        &[0u8; IFINFOMSG],
        |kind, link| {
            if kind == RTM_NEWLINK
                && let Some(parsed) = parse(link)
            {
                links.push(parsed);
            }
        },
    )?;
    Ok(ports_of(&links))
}

/// The id of the program at interface `ifindex`'s XDP hook, whoever attached it (a link, or
/// netlink as `ip link set xdp` does); `None` for an empty hook.
pub fn xdp_program(ifindex: u32) -> io::Result<Option<u32>> {
    let mut request = [0u8; IFINFOMSG];
    request[4..8].copy_from_slice(&ifindex.to_ne_bytes());
    let mut program = None;
    Socket::open(SockProtocol::NetlinkRoute)?.request(RTM_GETLINK, false, &request, |kind, link| {
        if kind == RTM_NEWLINK
            && let Some(parsed) = parse(link)
        {
            program = parsed.xdp_program;
        }
    })?;
    Ok(program)
}

/// What a link says of itself: its index, its master's (if any), its kind (`IFLA_INFO_KIND`),
/// the program at its XDP hook (`IFLA_XDP_PROG_ID`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Link {
    index: u32,
    master: Option<u32>,
    kind: Option<String>,
    xdp_program: Option<u32>,
}

/// The links whose master is not a VRF.
fn ports_of(links: &[Link]) -> BTreeSet<u32> {
    let kinds: BTreeMap<u32, Option<&str>> = links.iter().map(|l| (l.index, l.kind.as_deref())).collect();
    links
        .iter()
        .filter_map(|l| Some((l.index, l.master?)))
        .filter(|(_, master)| kinds.get(master).copied().flatten() != Some("vrf"))
        .map(|(index, _)| index)
        .collect()
}

/// An RTM_NEWLINK payload.
fn parse(link: &[u8]) -> Option<Link> {
    if link.len() < IFINFOMSG {
        return None;
    }
    let mut out = Link { index: u32_at(link, 4), ..Default::default() };
    for (kind, value) in attributes(&link[IFINFOMSG..]) {
        match kind {
            IFLA_MASTER if value.len() >= 4 && u32_at(value, 0) != 0 => out.master = Some(u32_at(value, 0)),
            IFLA_LINKINFO => {
                out.kind = attributes(value)
                    .find(|(k, _)| *k == IFLA_INFO_KIND)
                    .map(|(_, name)| String::from_utf8_lossy(name).trim_end_matches('\0').to_owned());
            }
            IFLA_XDP => {
                out.xdp_program = attributes(value)
                    .find(|(k, v)| *k == IFLA_XDP_PROG_ID && v.len() >= 4)
                    .map(|(_, id)| u32_at(id, 0))
                    .filter(|id| *id != 0);
            }
            _ => {}
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::{super::attribute, *};

    /// An RTM_NEWLINK payload for index `index`, with an IFLA_MASTER attribute when `master` is
    /// set and IFLA_LINKINFO's kind when `kind` is.
    fn link(index: u32, master: Option<u32>, kind: Option<&str>) -> Vec<u8> {
        link_with_xdp(index, master, kind, None)
    }

    fn link_with_xdp(index: u32, master: Option<u32>, kind: Option<&str>, xdp: Option<u32>) -> Vec<u8> {
        let mut msg = vec![0u8; IFINFOMSG];
        msg[4..8].copy_from_slice(&index.to_ne_bytes());
        msg.extend(attribute(4, &1500u32.to_ne_bytes())); // IFLA_MTU
        if let Some(m) = master {
            msg.extend(attribute(IFLA_MASTER, &m.to_ne_bytes()));
        }
        if let Some(kind) = kind {
            let name = [kind.as_bytes(), b"\0"].concat();
            msg.extend(attribute(IFLA_LINKINFO, &attribute(IFLA_INFO_KIND, &name)));
        }
        if let Some(id) = xdp {
            // IFLA_XDP_ATTACHED (XDP_ATTACHED_DRV), then the id.
            let nested = [attribute(2, &[1]), attribute(IFLA_XDP_PROG_ID, &id.to_ne_bytes())].concat();
            msg.extend(attribute(IFLA_XDP | 0x8000, &nested));
        }
        msg
    }

    #[test]
    fn reads_the_xdp_program() {
        assert_eq!(parse(&link_with_xdp(3, None, None, Some(41))).unwrap().xdp_program, Some(41));
        assert_eq!(parse(&link_with_xdp(3, None, None, Some(0))).unwrap().xdp_program, None, "id 0: none");
        assert_eq!(parse(&link(3, None, None)).unwrap().xdp_program, None);
        // The loopback interface of a fresh namespace or not, the request is answered.
        xdp_program(1).expect("an RTM_GETLINK request");
    }

    #[test]
    fn finds_ports_but_not_vrf_members() {
        let parsed = |bytes: &[u8]| parse(bytes).unwrap();
        assert_eq!(parsed(&link(2, None, None)), Link { index: 2, ..Default::default() });
        assert_eq!(parsed(&link(4, Some(0), None)).master, None, "master 0 is no master");
        assert_eq!(parsed(&link(7, None, Some("vrf"))).kind.as_deref(), Some("vrf"));
        assert_eq!(parse(&link(9, Some(1), None)[..10]), None, "a cut-off payload is no link");
        let links: Vec<Link> = [
            link(1, None, Some("bond")),
            link(2, None, Some("vrf")),
            link(3, Some(1), None),
            link(4, Some(2), None),
            link(5, None, None),
            link(6, Some(99), None),
        ]
        .iter()
        .map(|l| parsed(l))
        .collect();
        assert_eq!(ports_of(&links), BTreeSet::from([3, 6]), "the bond's port, and a master not listed");
    }

    #[test]
    fn reads_this_namespace() {
        // Whatever the links here, the dump ends cleanly.
        ports().expect("an RTM_GETLINK dump");
    }
}
