//! How the responder is held on each interface, and what becomes of it when the speaker stops.
//!
//! With `--on-exit detach` (the default), a stopping speaker detaches everything it attached
//! and restores what it changed. With `--on-exit keep` (the DaemonSet's), it hands over: its
//! links stay attached, pinned under `links/` in the pin directory, with the program idle (it
//! answers nothing once the heartbeat stops, and passes every frame), and the next speaker
//! takes each over in place (`BPF_LINK_UPDATE`): a restart or a rollout attaches nothing anew,
//! rebuilds no NIC ring (native XDP attach does on ixgbe, i40e, mlx5) and leaves no moment
//! without a program at the hook. A killed speaker's pinned links are taken over the same way.
//! `herald-speaker cleanup` removes what a speaker handed over (an uninstall).
//!
//! A clsact filter (TC before Linux 6.6) is no descriptor: it stays unless removed, and is taken
//! over at its priority and handle (see `attach.rs`) in either mode.

use std::path::{Path, PathBuf};

use aya::programs::{
    links::{FdLink, PinnedLink},
    tc::SchedClassifierLink,
    xdp::XdpLinkId,
};
use tracing::{info, warn};

use super::{bound, hook::Hook, offload::OffloadOff};

/// What a stopping speaker does with its programs (`--on-exit`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OnExit {
    /// Detach them and restore what was changed (rx VLAN offload).
    #[default]
    Detach,
    /// Leave them attached, idle, for the next speaker to take over.
    Keep,
}

/// The directory of the pinned links under `pin_dir`.
pub fn links_dir(pin_dir: &Path) -> PathBuf {
    pin_dir.join("links")
}

/// Where the link on interface `ifindex` is pinned.
pub fn link_pin(pin_dir: &Path, ifindex: u32) -> PathBuf {
    links_dir(pin_dir).join(ifindex.to_string())
}

/// The responder on one interface.
pub(super) struct Attached {
    pub hook: Hook,
    /// Why at this hook, where a better one was passed over.
    pub why: Option<String>,
    pub ifname: String,
    pub link: Link,
    /// rx VLAN offload, held off for `herald_xdp`.
    pub offload: Option<OffloadOff>,
}

/// One attachment of the responder.
pub(super) enum Link {
    /// A bpf_link (XDP, TCX), and its pin where it is handed over.
    Fd(FdLink, Option<PathBuf>),
    /// The driver-bound program's link, and its pin.
    Bound(bound::Link, Option<PathBuf>),
    /// A clsact filter (TC before Linux 6.6).
    Filter(SchedClassifierLink),
    /// XDP attached over netlink (Linux 5.8, before bpf_link for XDP): detached with the
    /// program.
    XdpNetlink(XdpLinkId),
}

impl Attached {
    /// Lets go of the responder: leaves it attached (`keep`, where it can be) or detaches it,
    /// restoring rx VLAN offload. Returns the netlink XDP link for the caller to detach.
    pub fn release(self, keep: bool) -> Option<XdpLinkId> {
        let Attached { ifname, link, offload, .. } = self;
        if keep {
            match link {
                // The pin holds the link.
                Link::Fd(_, Some(_)) | Link::Bound(_, Some(_)) => drop(link),
                // Nothing holds a filter: it stays until removed.
                Link::Filter(filter) => std::mem::forget(filter),
                link => return detach(&ifname, link, offload),
            }
            // Still off, for the program left attached; the record says so to the next speaker.
            std::mem::forget(offload);
            info!(interface = ifname, "responder left attached for the next speaker (--on-exit keep)");
            return None;
        }
        detach(&ifname, link, offload)
    }
}

/// Detaches `link` (its pin removed) and drops `offload`.
fn detach(ifname: &str, link: Link, offload: Option<OffloadOff>) -> Option<XdpLinkId> {
    let unpin = |pin: Option<PathBuf>| {
        if let Some(pin) = pin
            && let Err(e) = std::fs::remove_file(&pin)
        {
            warn!(interface = ifname, path = %pin.display(), error = %e, "could not remove the link's pin");
        }
    };
    let netlink = match link {
        Link::Fd(link, pin) => {
            unpin(pin);
            drop(link);
            None
        }
        Link::Bound(link, pin) => {
            unpin(pin);
            drop(link);
            None
        }
        Link::Filter(filter) => {
            drop(filter);
            None
        }
        Link::XdpNetlink(id) => Some(id),
    };
    drop(offload);
    netlink
}

/// The pin of the link a speaker that handed over (or was killed) left on `ifindex`, if any.
pub(super) fn left(pin_dir: &Path, ifindex: u32) -> Option<PathBuf> {
    Some(link_pin(pin_dir, ifindex)).filter(|pin| pin.exists())
}

/// The link pinned at `pin`, opened.
pub(super) fn open(pin: &Path) -> Option<FdLink> {
    PinnedLink::from_pin(pin)
        .inspect_err(|e| warn!(path = %pin.display(), error = %e, "a pinned link that does not open"))
        .ok()
        .map(Into::into)
}

/// Pins `link` at `pin`, creating the directory.
pub(super) fn pin(link: FdLink, pin: &Path) -> Result<FdLink, aya::pin::PinError> {
    if let Some(dir) = pin.parent() {
        std::fs::create_dir_all(dir).map_err(|io_error| {
            aya::pin::PinError::SyscallError(aya::sys::SyscallError { call: "mkdir", io_error })
        })?;
    }
    Ok(link.pin(pin)?.into())
}

/// Whether XDP is attached through bpf_link (Linux 5.9), which can be handed over.
pub(super) fn xdp_has_links() -> bool {
    use aya::util::KernelVersion;
    KernelVersion::current().map_or(true, |v| v >= KernelVersion::new(5, 9, 0))
}
