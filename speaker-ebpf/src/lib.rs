//! Herald's datapath: an ARP and Neighbor Discovery responder run by the kernel on every
//! received frame.
//!
//! [`respond`] decides and rewrites, with [`arp`] for IPv4 and [`ndp`] for IPv6, which answer
//! in the types of [`answer`] (neither imports `respond`); the programs in `src/bin` run it at
//! their hooks, each learning a frame's 802.1Q tag its own way (see [`answer::Tag`]):
//! - `herald_xdp` (XDP): for devices that leave tags in the frames.
//! - `herald_xdp_meta` (XDP, device-bound, object `herald-meta`): asks the driver for a tag it
//!   stripped, and puts it back in the reply.
//! - `herald_tc` (TC ingress): reads a stripped tag from `__sk_buff`.
//! - `herald_pass` (XDP): passes everything; the lab's peer program and the benches' baseline.
//!
//! All of them fail open: anything not fully understood is passed on untouched, never dropped.
//! They answer only while the speaker's heartbeat is fresh (the dead-man switch), so a killed
//! or hung speaker cannot keep an address alive.
#![no_std]
// `atomic_xadd`: BPF has an atomic add, but `core` offers `AtomicU64::fetch_add` only on targets
// with compare-and-swap.
#![feature(core_intrinsics)]
#![expect(internal_features, reason = "atomic_xadd is the BPF atomic add")]

pub mod answer;
pub mod arp;
pub mod frame;
pub mod log;
pub mod maps;
pub mod ndp;
pub mod respond;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // verifier: unreachable in a loaded program; the verifier rejects unbounded code.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
