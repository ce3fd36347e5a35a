//! The responder, whichever hook runs it: what to do with one frame. An ARP request ([`arp`])
//! or a Neighbor Solicitation ([`ndp`]) for an address announced on the interface and VLAN it
//! came in on is answered in place; an ARP request for an address another node announces is
//! dropped; everything else passes on untouched.

use aya_ebpf::{EbpfContext, helpers::bpf_xdp_adjust_tail, programs::XdpContext};

pub use crate::answer::{Answer, Kind, Tag, Verdict};
use crate::{
    arp,
    frame::{
        ETH_HLEN, ETH_P_8021Q, ETH_P_ARP, ETH_P_IPV6, ETH_SRC, EthHdr, Frame, TAGGED_HLEN, VLAN_HLEN,
        VLAN_VID_MASK, VlanHdr,
    },
    ndp,
};

/// Whether `frame` may be a request, whatever became of its tag: its EtherType is ARP, IPv6
/// (untagged, or its tag stripped) or 802.1Q. Everything else passes at once.
#[inline(always)]
pub fn may_be_request(frame: Frame) -> bool {
    // SAFETY: `at` checked the bounds; packet data is at least 2-byte aligned.
    frame
        .at::<EthHdr>(0)
        .is_some_and(|eth| matches!(unsafe { (*eth).proto }, ETH_P_ARP | ETH_P_IPV6 | ETH_P_8021Q))
}

/// What to do with `frame`, received on `ifindex` with its tag where `tag` says.
#[inline(always)]
pub fn decide<C: EbpfContext>(ctx: &C, frame: Frame, ifindex: u32, tag: Tag) -> Verdict {
    verdict(ctx, frame, ifindex, tag).unwrap_or(Verdict::Pass)
}

/// [`decide`]; `None` passes.
#[inline(always)]
fn verdict<C: EbpfContext>(ctx: &C, frame: Frame, ifindex: u32, tag: Tag) -> Option<Verdict> {
    // SAFETY: `at` checked the bounds; packet data is at least 2-byte aligned.
    let eth = unsafe { &*frame.at::<EthHdr>(0)? };
    match (tag, eth.proto) {
        (Tag::InFrame, ETH_P_ARP) => arp::decide::<ETH_HLEN, C>(ctx, frame, ifindex, 0),
        (Tag::InFrame, ETH_P_IPV6) => ndp::decide::<ETH_HLEN>(frame, ifindex, 0).map(Verdict::Answer),
        (Tag::InFrame, ETH_P_8021Q) => {
            // One 802.1Q tag. Behind a second tag (QinQ) the inner EtherType is neither: pass.
            // SAFETY: as above.
            let vlan = unsafe { &*frame.at::<VlanHdr>(ETH_HLEN)? };
            let id = u16::from_be(vlan.tci) & VLAN_VID_MASK;
            match vlan.proto {
                ETH_P_ARP => arp::decide::<TAGGED_HLEN, C>(ctx, frame, ifindex, id),
                ETH_P_IPV6 => ndp::decide::<TAGGED_HLEN>(frame, ifindex, id).map(Verdict::Answer),
                _ => None,
            }
        }
        // A stripped tag and an untagged frame; a stripped tag and one in the frame is QinQ.
        (Tag::Beside(tci), ETH_P_ARP) => arp::decide::<ETH_HLEN, C>(ctx, frame, ifindex, tci & VLAN_VID_MASK),
        (Tag::Beside(tci), ETH_P_IPV6) => {
            ndp::decide::<ETH_HLEN>(frame, ifindex, tci & VLAN_VID_MASK).map(Verdict::Answer)
        }
        // 802.1ad outer tags, IPv4 and everything else.
        _ => None,
    }
}

/// Grows an XDP frame at its end by `by` bytes (room for the reply: [`Answer::grow`]); the
/// frame as it now is, or `None` if the driver has no room.
#[inline(always)]
pub fn grow_xdp(ctx: &XdpContext, by: usize) -> Option<Frame> {
    // SAFETY: a helper on this program's own context; the frame is read again below.
    if by > 0 && unsafe { bpf_xdp_adjust_tail(ctx.ctx, by as i32) } != 0 {
        return None;
    }
    Some(Frame::new(ctx.data(), ctx.data_end()))
}

/// Rewrites the request of `answer` into its reply, in place (the frame grown by
/// `answer.grow` first), and counts it on the entry. `None` only where the frame is shorter than
/// the answer found it, which cannot happen, but the verifier needs the check.
#[inline(always)]
pub fn reply(frame: Frame, answer: &Answer) -> Option<()> {
    match (answer.kind, answer.l2 == ETH_HLEN) {
        (Kind::Arp, true) => arp::reply_at::<ETH_HLEN>(frame, answer.entry),
        (Kind::Arp, false) => arp::reply_at::<TAGGED_HLEN>(frame, answer.entry),
        (Kind::Ndp { dad }, true) => ndp::reply_at::<ETH_HLEN, ETH_SRC>(frame, answer.entry, dad),
        (Kind::Ndp { dad }, false) => ndp::reply_at::<TAGGED_HLEN, ETH_SRC>(frame, answer.entry, dad),
    }
}

/// [`reply`] for a request whose tag was stripped: the reply carries the tag in the frame.
/// The caller made room with `bpf_xdp_adjust_head(-4)`, so the frame now holds 4 free bytes, the
/// request's MACs and EtherType, and its body at [`TAGGED_HLEN`]; the MACs are rewritten
/// anyway (an Advertisement reads the soliciting node's MAC where it now is, 4 bytes further),
/// so only the EtherType 0x8100 and the TCI go in between. Nothing is written unless the whole
/// tagged reply fits.
#[inline(always)]
pub fn reply_tagged(frame: Frame, answer: &Answer, tci: u16) -> Option<()> {
    let eth = frame.at::<EthHdr>(0)?;
    let vlan = frame.at::<VlanHdr>(ETH_HLEN)?;
    match answer.kind {
        Kind::Arp => arp::reply_at::<TAGGED_HLEN>(frame, answer.entry)?,
        Kind::Ndp { dad } => ndp::reply_at::<TAGGED_HLEN, { VLAN_HLEN + ETH_SRC }>(frame, answer.entry, dad)?,
    }
    // SAFETY: `at` checked the bounds.
    unsafe {
        (*eth).proto = ETH_P_8021Q;
        (*vlan).tci = tci.to_be();
    }
    Some(())
}
