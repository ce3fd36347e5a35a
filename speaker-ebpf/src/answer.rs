//! What the responder decides about a frame: the types [`arp`](crate::arp) and
//! [`ndp`](crate::ndp) answer with and [`respond`](crate::respond) acts on, in a module of their
//! own so that neither protocol imports the module that dispatches to it.

use speaker_common::AddressEntry;

/// Where a frame's 802.1Q tag is.
#[derive(Clone, Copy)]
pub enum Tag {
    /// In the frame, if it has one.
    InFrame,
    /// Beside it, with this TCI (host order): the device or the stack stripped it. The frame
    /// itself must then be untagged.
    Beside(u16),
}

/// What a request asked for.
#[derive(Clone, Copy)]
pub enum Kind {
    Arp,
    /// A Neighbor Solicitation; `dad`: from the unspecified address (Duplicate Address
    /// Detection), answered to all nodes.
    Ndp {
        dad: bool,
    },
}

/// What to do with a frame.
pub enum Verdict {
    /// On to the kernel, untouched.
    Pass,
    /// Rewrite it into its reply and send that back.
    Answer(Answer),
    /// Nobody here answers it: another node announces its address (the kernel would answer
    /// beside it; see `speaker_common::ELSEWHERE_MAP`).
    Drop,
}

/// A request this node answers: only the protocols' `decide` make one.
pub struct Answer {
    /// The entry it asked for: a live map value.
    pub(crate) entry: *mut AddressEntry,
    /// Where its body (ARP, or IPv6) starts: [`ETH_HLEN`](crate::frame::ETH_HLEN), or
    /// [`TAGGED_HLEN`](crate::frame::TAGGED_HLEN) behind a tag in the frame.
    pub(crate) l2: usize,
    pub(crate) kind: Kind,
    /// Bytes the frame must grow at its end to hold the reply (an Advertisement carries an
    /// option a solicitation without options has no room for).
    pub grow: usize,
}
