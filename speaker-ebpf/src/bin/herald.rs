//! The main object: the responder at XDP for frames that carry their own tags, the responder at
//! TC ingress, and the pass-through program.
#![no_std]
#![no_main]
// The entry point aya's #[classifier] generates takes the kernel's context pointer as a plain
// argument (the lint cannot be set on the generated function alone).
#![expect(clippy::not_unsafe_ptr_arg_deref, reason = "aya's #[classifier] entry point")]

use aya_ebpf::{
    EbpfContext as _,
    bindings::{
        __sk_buff, TC_ACT_SHOT, TC_ACT_UNSPEC,
        xdp_action::{XDP_DROP, XDP_PASS, XDP_TX},
    },
    helpers::{bpf_redirect, bpf_skb_change_tail},
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};
use speaker_ebpf::{
    frame::{ETH_P_8021Q, Frame},
    respond::{self, Tag, Verdict},
};

/// Devices that leave 802.1Q tags in the frames (rx VLAN offload off): the tag, if any, is read
/// from the frame and stays in the reply.
#[xdp]
pub fn herald_xdp(ctx: XdpContext) -> u32 {
    let frame = Frame::new(ctx.data(), ctx.data_end());
    let answer = match respond::decide(&ctx, frame, ctx.ingress_ifindex() as u32, Tag::InFrame) {
        Verdict::Answer(answer) => answer,
        Verdict::Drop => return XDP_DROP,
        Verdict::Pass => return XDP_PASS,
    };
    match respond::grow_xdp(&ctx, answer.grow) {
        Some(frame) if respond::reply(frame, &answer).is_some() => XDP_TX,
        _ => XDP_PASS,
    }
}

/// TC ingress (clsact): the kernel has moved a frame's tag into `__sk_buff` by now, so it is
/// read there, and the reply, sent back out of the same device, keeps it.
#[classifier]
pub fn herald_tc(ctx: TcContext) -> i32 {
    let skb = ctx.as_ptr().cast::<__sk_buff>();
    // SAFETY: the context of a TC program is its `__sk_buff`.
    let (present, tci, proto, ifindex) =
        unsafe { ((*skb).vlan_present, (*skb).vlan_tci, (*skb).vlan_proto, (*skb).ingress_ifindex) };
    let tag = match (present, proto) {
        (0, _) => Tag::InFrame,
        (_, proto) if proto == u32::from(ETH_P_8021Q) => Tag::Beside(tci as u16),
        // An 802.1ad outer tag: not ours to answer.
        _ => return TC_ACT_UNSPEC,
    };
    let frame = Frame::new(ctx.data(), ctx.data_end());
    let answer = match respond::decide(&ctx, frame, ifindex, tag) {
        Verdict::Answer(answer) => answer,
        Verdict::Drop => return TC_ACT_SHOT,
        // Untouched, on to the next program or the stack.
        Verdict::Pass => return TC_ACT_UNSPEC,
    };
    // SAFETY: a helper on this program's own socket buffer; it moves the packet data, which is
    // read again below.
    if answer.grow > 0 && unsafe { bpf_skb_change_tail(skb.cast(), ctx.len() + answer.grow as u32, 0) } != 0 {
        return TC_ACT_UNSPEC;
    }
    // verifier: the context pointer goes through `black_box`, so that LLVM does not reuse an
    // address it derived from it for the first read (a modified context pointer is refused).
    let skb = core::hint::black_box(skb);
    // SAFETY: the context of a TC program is its `__sk_buff`.
    let frame = unsafe { Frame::new((*skb).data as usize, (*skb).data_end as usize) };
    match respond::reply(frame, &answer) {
        // SAFETY: a helper without preconditions; the kernel sends the skb once we return.
        Some(()) => unsafe { bpf_redirect(ifindex, 0) as i32 },
        None => TC_ACT_UNSPEC,
    }
}

#[xdp]
pub fn herald_pass(_ctx: XdpContext) -> u32 {
    XDP_PASS
}
