//! The responder at XDP for devices that may strip 802.1Q tags before XDP runs (rx VLAN offload
//! on, as on nearly every NIC): it asks the driver for a stripped tag with the RX-metadata kfunc
//! (kernel >= 6.8; veth, mlx5 and ice implement it), which only a program bound to its device
//! may call. An object of its own, so that the main one loads on kernels without the kfunc.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::{
        xdp_action::{XDP_DROP, XDP_PASS, XDP_TX},
        xdp_md,
    },
    helpers::bpf_xdp_adjust_head,
    macros::xdp,
    programs::XdpContext,
};
use speaker_ebpf::{
    frame::{ETH_P_8021Q, Frame, VLAN_HLEN},
    log::error,
    respond::{self, Tag, Verdict},
};

unsafe extern "C" {
    /// The tag the driver stripped: 0 with `vlan_proto` (wire order) and `vlan_tci` (host
    /// order) set; -ENODATA when it stripped none; -EOPNOTSUPP when it cannot tell.
    fn bpf_xdp_metadata_rx_vlan_tag(ctx: *const xdp_md, vlan_proto: *mut u16, vlan_tci: *mut u16) -> i32;
}

const ENODATA: i32 = 61;

#[xdp]
pub fn herald_xdp_meta(ctx: XdpContext) -> u32 {
    // Frames that cannot be requests (IPv4, ...) pass before the driver is asked anything.
    if !respond::may_be_request(Frame::new(ctx.data(), ctx.data_end())) {
        return XDP_PASS;
    }
    let (mut proto, mut tci) = (0u16, 0u16);
    // SAFETY: the kfunc writes the two values and reads nothing else.
    let stripped = unsafe { bpf_xdp_metadata_rx_vlan_tag(ctx.ctx, &mut proto, &mut tci) };
    let tag = match stripped {
        0 if proto == ETH_P_8021Q => Tag::Beside(tci),
        // None stripped: a tag, if any, is still in the frame.
        e if e == -ENODATA => Tag::InFrame,
        // An 802.1ad tag, or a driver that cannot tell: never guess.
        _ => return XDP_PASS,
    };
    let frame = Frame::new(ctx.data(), ctx.data_end());
    let answer = match respond::decide(&ctx, frame, ctx.ingress_ifindex() as u32, tag) {
        Verdict::Answer(answer) => answer,
        Verdict::Drop => return XDP_DROP,
        Verdict::Pass => return XDP_PASS,
    };
    let Some(frame) = respond::grow_xdp(&ctx, answer.grow) else {
        return XDP_PASS;
    };
    let Tag::Beside(tci) = tag else {
        return if respond::reply(frame, &answer).is_some() { XDP_TX } else { XDP_PASS };
    };
    // The request's tag was stripped: the reply carries it in the frame, 4 bytes longer.
    // SAFETY: a helper on this program's own context.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(VLAN_HLEN as i32)) } != 0 {
        error!(&ctx, "pass: no headroom for the reply's VLAN tag");
        return XDP_PASS;
    }
    let frame = Frame::new(ctx.data(), ctx.data_end());
    if respond::reply_tagged(frame, &answer, tci).is_some() {
        return XDP_TX;
    }
    // verifier: the frame only grew, so the check above holds; undo the room all the same.
    // SAFETY: as above.
    unsafe { bpf_xdp_adjust_head(ctx.ctx, VLAN_HLEN as i32) };
    XDP_PASS
}
