//! Neighbor Discovery (RFC 4861) for the addresses in [`crate::maps::NDP`]: a Neighbor Solicitation for one,
//! on the interface and VLAN it came in on, is answered with a Neighbor Advertisement in place.
//! Only a solicitation valid by §7.1.1 is answered (hop limit 255, code 0, checksum right, at
//! least 24 bytes, target not multicast, no option of length 0, from `::` only to the target's
//! solicited-node group and without a source link-layer option); sent to the target's
//! solicited-node group, or to the target itself at our MAC (unreachability detection).
//! An Advertisement that gives such an address another host's MAC is counted as a conflict, as
//! ARP's claims are. Extension headers before ICMPv6 and everything else pass untouched.
//! Unlike ARP's, this path has no log statements yet: with them, the device-bound object
//! (`herald_xdp_meta`) compiled to a call the verifier refused (an argument register never
//! written on one path).

use core::ptr::read_volatile;

use speaker_common::AddressEntry;

use crate::{
    answer::{Answer, Kind},
    frame::{
        EthHdr, Frame, IPV6_HLEN, Ip6, Ipv6Hdr, LINK_ADDR_OPT_LEN, LinkAddrOpt, Mac, ND_LEN, NeighborMsg,
        bytes_eq, is_group,
    },
    maps::{count_claim, count_reply, heartbeat_fresh, is_peer, ndp_entry},
};

const NEXTHDR_ICMPV6: u8 = 58;
const ND_SOLICITATION: u8 = 135;
const ND_ADVERTISEMENT: u8 = 136;
const OPT_SOURCE_LINK_ADDR: u8 = 1;
const OPT_TARGET_LINK_ADDR: u8 = 2;
/// An Advertisement's Solicited and Override flags (§4.4); Router stays 0.
const FLAG_SOLICITED: u8 = 0x40;
const FLAG_OVERRIDE: u8 = 0x20;
/// The longest solicitation checked: the message and five 8-byte options. Longer ones pass.
const MAX_LEN: usize = 64;
/// The Advertisement sent: the message and the target link-layer option.
pub const ADVERTISEMENT_LEN: usize = ND_LEN + LINK_ADDR_OPT_LEN;
/// ff02::1, all nodes, and its MAC: where the answer to a DAD probe goes.
const ALL_NODES: [u8; 16] = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const ALL_NODES_MAC: [u8; 6] = [0x33, 0x33, 0, 0, 0, 1];

/// The IPv6 packet at `L2`, on VLAN `vlan`: answered if it is a valid solicitation for an
/// address announced here, while the speaker is alive.
#[inline(always)]
pub(crate) fn decide<const L2: usize>(frame: Frame, ifindex: u32, vlan: u16) -> Option<Answer> {
    // SAFETY (every dereference below): `at` checked the bounds; packet data is at least
    // 2-byte aligned and every field here is at most 2-byte aligned.
    let ip = unsafe { &*frame.at::<Ipv6Hdr>(L2)? };
    // Most IPv6 traffic leaves here; so do extension headers before ICMPv6.
    if ip.next_header != NEXTHDR_ICMPV6 {
        return None;
    }
    let msg = unsafe { &*frame.at::<NeighborMsg>(L2 + IPV6_HLEN)? };
    let eth = unsafe { &*frame.at::<EthHdr>(0)? };
    if msg.kind == ND_ADVERTISEMENT {
        claim::<L2>(frame, eth, ip, msg, ifindex, vlan);
        return None;
    }
    if msg.kind != ND_SOLICITATION {
        return None;
    }
    let target = &msg.target;
    if ip.vtc_flow[0] >> 4 != 6 || ip.hop_limit != 255 || msg.code != 0 || target[0] == 0xff {
        return None;
    }
    let len = u16::from_be(ip.payload_len) as usize;
    // Options come in units of 8 bytes, so a valid length is one of six.
    if !(ND_LEN..=MAX_LEN).contains(&len) || len % 8 != 0 {
        return None;
    }
    // The whole message lies inside the frame.
    if !holds::<L2>(frame, len) {
        return None;
    }
    let source_link_addr = options::<L2>(frame, len)?;
    let dad = bytes_eq(&ip.src, &[0; 16]);
    let to_group = is_solicited_node(&ip.dst, target) && is_solicited_node_mac(&eth.dst, target);
    if dad && (source_link_addr || !to_group) {
        return None;
    }
    let entry = ndp_entry(unsafe { Ip6::read(target) }, ifindex, vlan)?;
    // SAFETY: a live map value; `mac` is only written by the speaker.
    let to_us = !dad
        && bytes_eq(&ip.dst, target)
        && unsafe { Mac::read(&eth.dst) == Mac::read(&raw const (*entry).mac) };
    if !(to_group || to_us) || is_group(&eth.src) {
        return None;
    }
    if sum::<L2>(frame, len)? != 0xffff {
        return None;
    }
    // The dead-man switch.
    if !heartbeat_fresh() {
        return None;
    }
    // A solicitation without options leaves no room for the Advertisement's option.
    let grow =
        if frame.at::<[u8; ADVERTISEMENT_LEN]>(L2 + IPV6_HLEN).is_some() { 0 } else { LINK_ADDR_OPT_LEN };
    Some(Answer { entry, l2: L2, kind: Kind::Ndp { dad }, grow })
}

/// An Advertisement (`msg`, in `ip`), which claims its target for the MAC in its target
/// link-layer option (the first option), or for its sender without one: counted on the entry
/// when the target is one we announce here and the MAC is neither ours nor another Herald
/// speaker's. Only hop limit 255 and code 0 are checked (a claim is told, never acted on).
#[inline(always)]
fn claim<const L2: usize>(
    frame: Frame,
    eth: &EthHdr,
    ip: &Ipv6Hdr,
    msg: &NeighborMsg,
    ifindex: u32,
    vlan: u16,
) {
    if ip.hop_limit != 255 || msg.code != 0 {
        return;
    }
    // SAFETY: a read inside the bounds the caller checked.
    let Some(entry) = ndp_entry(unsafe { Ip6::read(&msg.target) }, ifindex, vlan) else {
        return;
    };
    let option = frame.at::<LinkAddrOpt>(L2 + IPV6_HLEN + ND_LEN);
    // SAFETY: `at` checked the bounds; a live map value.
    let (claimed, ours) = unsafe {
        let claimed = match option {
            Some(opt) if (*opt).kind == OPT_TARGET_LINK_ADDR && (*opt).len == 1 => Mac::read(&(*opt).mac),
            _ => Mac::read(&eth.src),
        };
        (claimed, Mac::read(&raw const (*entry).mac))
    };
    if claimed != ours && !is_peer(claimed) {
        count_claim(entry, claimed);
    }
}

// Every packet offset below is a constant: the verifier refuses a variable one to a speaker
// without CAP_PERFMON (Spectre v1 hardening), which is how the speaker runs. A message's length
// is one of six multiples of 8, so its end, each option's start and each word of the checksum
// are at one of a few constant places, each tried in turn.

/// Whether the `len`-byte message at `L2` lies inside the frame.
#[inline(always)]
fn holds<const L2: usize>(frame: Frame, len: usize) -> bool {
    let at = L2 + IPV6_HLEN;
    match len {
        24 => frame.at::<[u8; 24]>(at).is_some(),
        32 => frame.at::<[u8; 32]>(at).is_some(),
        40 => frame.at::<[u8; 40]>(at).is_some(),
        48 => frame.at::<[u8; 48]>(at).is_some(),
        56 => frame.at::<[u8; 56]>(at).is_some(),
        64 => frame.at::<[u8; 64]>(at).is_some(),
        _ => false,
    }
}

/// Walks the options of the `len`-byte message at `L2` (which the frame holds): `Some(true)` if
/// one is a source link-layer address, `None` if one has length 0 or they do not end with the
/// message.
#[inline(always)]
fn options<const L2: usize>(frame: Frame, len: usize) -> Option<bool> {
    // Where the next option starts, and whether a source link-layer address was seen.
    let mut walk = (ND_LEN, false);
    option::<L2, 24>(frame, len, &mut walk)?;
    option::<L2, 32>(frame, len, &mut walk)?;
    option::<L2, 40>(frame, len, &mut walk)?;
    option::<L2, 48>(frame, len, &mut walk)?;
    option::<L2, 56>(frame, len, &mut walk)?;
    (walk.0 == len).then_some(walk.1)
}

/// One step of [`options`]: the option at `AT`, if one starts there.
#[inline(always)]
fn option<const L2: usize, const AT: usize>(
    frame: Frame,
    len: usize,
    walk: &mut (usize, bool),
) -> Option<()> {
    if walk.0 != AT || AT >= len {
        return Some(());
    }
    // SAFETY: `at` checked the bounds.
    let opt = unsafe { &*frame.at::<LinkAddrOpt>(L2 + IPV6_HLEN + AT)? };
    if opt.len == 0 {
        return None;
    }
    walk.1 |= opt.kind == OPT_SOURCE_LINK_ADDR;
    walk.0 = AT + opt.len as usize * 8;
    Some(())
}

/// The one's complement sum (RFC 1071) of what the ICMPv6 checksum of the `len`-byte message at
/// `L2` covers (RFC 8200 §8.1): the pseudo-header (addresses, length, next header) and the
/// message, folded to 16 bits. 0xffff for a message whose checksum is right. Words are added as
/// they lie in memory, which gives the same sum in either byte order. `None` only where the
/// frame is shorter than checked before.
#[inline(always)]
fn sum<const L2: usize>(frame: Frame, len: usize) -> Option<u16> {
    let mut sum = u32::from((len as u16).to_be()) + u32::from(u16::from(NEXTHDR_ICMPV6).to_be());
    // The source and destination addresses (at 8 in the IPv6 header), then the message.
    sum += words::<4>(frame, L2 + 8)?;
    sum += words::<4>(frame, L2 + 16)?;
    sum += words::<4>(frame, L2 + 24)?;
    sum += words::<4>(frame, L2 + 32)?;
    let at = L2 + IPV6_HLEN;
    sum += words::<12>(frame, at)?;
    // Each option's 8 bytes, written out (a loop LLVM left rolled would be a variable offset).
    sum += if len > 24 { words::<4>(frame, at + 24)? } else { 0 };
    sum += if len > 32 { words::<4>(frame, at + 32)? } else { 0 };
    sum += if len > 40 { words::<4>(frame, at + 40)? } else { 0 };
    sum += if len > 48 { words::<4>(frame, at + 48)? } else { 0 };
    sum += if len > 56 { words::<4>(frame, at + 56)? } else { 0 };
    let sum = (sum & 0xffff) + (sum >> 16);
    Some(((sum & 0xffff) + (sum >> 16)) as u16)
}

/// The sum of the `N` 16-bit words at `at`.
#[inline(always)]
fn words<const N: usize>(frame: Frame, at: usize) -> Option<u32> {
    // SAFETY: `at` checked the bounds; packet data is 2-byte aligned.
    let words = unsafe { read_volatile(frame.at::<[u16; N]>(at)?) };
    let mut sum = 0;
    for word in words {
        sum += u32::from(word);
    }
    Some(sum)
}

/// Rewrites the solicitation with its IPv6 header at `L2` into the Advertisement (§7.2.4), in
/// place: from the target, with the entry's MAC in the target link-layer option, Override set;
/// to the soliciting node with Solicited set, or for a DAD probe (`dad`) to all nodes without.
/// The frame holds [`ADVERTISEMENT_LEN`] bytes after the header (the caller grew it); any
/// bytes after those stay as link padding. The soliciting node's MAC is read at `PEER_MAC`
/// (the Ethernet source, unless the caller moved the header to make room for a tag).
#[inline(always)]
pub(crate) fn reply_at<const L2: usize, const PEER_MAC: usize>(
    frame: Frame,
    entry: *mut AddressEntry,
    dad: bool,
) -> Option<()> {
    let eth = frame.at::<EthHdr>(0)?;
    let peer_mac_at = frame.at::<[u8; 6]>(PEER_MAC)?;
    let ip = frame.at::<Ipv6Hdr>(L2)?;
    let msg_at = frame.at::<NeighborMsg>(L2 + IPV6_HLEN)?;
    let opt = frame.at::<LinkAddrOpt>(L2 + IPV6_HLEN + ND_LEN)?;
    // SAFETY: `at` checked that all lie inside the packet; they do not overlap. Map values stay
    // valid for the whole program run.
    let (eth, ip, msg, opt) = unsafe { (&mut *eth, &mut *ip, &mut *msg_at, &mut *opt) };
    // Addresses are read first (the rewrite overwrites them), into registers: see [`Mac`].
    // SAFETY: plain reads of fields inside the bounds checked above, and of a live map value.
    let (mac, peer_mac, peer_ip, target) = unsafe {
        (
            Mac::read(&raw const (*entry).mac),
            Mac::read(peer_mac_at),
            Ip6::read(&ip.src),
            Ip6::read(&msg.target),
        )
    };
    let (to_mac, to_ip, flags) = if dad {
        (Mac::new(ALL_NODES_MAC), Ip6::new(ALL_NODES), FLAG_OVERRIDE)
    } else {
        (peer_mac, peer_ip, FLAG_SOLICITED | FLAG_OVERRIDE)
    };
    // SAFETY: fields inside the bounds checked above.
    unsafe {
        to_mac.write(&mut eth.dst);
        mac.write(&mut eth.src);
        target.write(&mut ip.src);
        to_ip.write(&mut ip.dst);
        mac.write(&mut opt.mac);
    }
    ip.vtc_flow = [0x60, 0, 0, 0];
    ip.payload_len = (ADVERTISEMENT_LEN as u16).to_be();
    ip.hop_limit = 255;
    msg.kind = ND_ADVERTISEMENT;
    msg.code = 0;
    msg.flags = [flags, 0, 0, 0];
    opt.kind = OPT_TARGET_LINK_ADDR;
    opt.len = 1;
    msg.checksum = 0;
    // Summed over the Advertisement as written; the references above are done with.
    let checksum = !sum::<L2>(frame, ADVERTISEMENT_LEN)?;
    // SAFETY: `at` checked the bounds.
    unsafe { (*msg_at).checksum = checksum };
    count_reply(entry);
    Some(())
}

/// Whether `dst` is the solicited-node group of `target`: ff02::1:ffXX:XXXX with its last 24 bits.
#[inline(always)]
fn is_solicited_node(dst: &[u8; 16], target: &[u8; 16]) -> bool {
    let prefix = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff];
    let mut differ = 0;
    for i in 0..13 {
        differ |= dst[i] ^ prefix[i];
    }
    differ | (dst[13] ^ target[13]) | (dst[14] ^ target[14]) | (dst[15] ^ target[15]) == 0
}

/// Whether `mac` is that of `target`'s solicited-node group: 33:33:ff and its last 24 bits.
#[inline(always)]
fn is_solicited_node_mac(mac: &[u8; 6], target: &[u8; 16]) -> bool {
    (mac[0] ^ 0x33)
        | (mac[1] ^ 0x33)
        | (mac[2] ^ 0xff)
        | (mac[3] ^ target[13])
        | (mac[4] ^ target[14])
        | (mac[5] ^ target[15])
        == 0
}
