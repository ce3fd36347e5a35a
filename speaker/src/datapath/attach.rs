//! Attaching the responder to one interface at one hook: the driver-bound XDP program (loaded
//! for the device, sharing the main object's maps through their pins), XDP with rx VLAN offload
//! held off, or TC ingress.
//!
//! At TC ingress other programs may run too (Cilium, Calico), and one may end the chain for
//! every frame. The responder runs first, and passes what it does not answer on to them:
//! - with TCX (Linux 6.6), it is attached before every other program;
//! - before, it is a clsact filter at priority 1 (the first that runs) under a handle of its
//!   own, [`TC_HANDLE`]. Such a filter outlives a speaker that is killed: the next one takes
//!   it over in place (its program replaced), so none leaks and none is stacked.
//!
//! No filter or qdisc of another is ever removed.

use std::{
    collections::HashMap as StdHashMap,
    os::fd::AsFd as _,
    path::{Path, PathBuf},
};

use aya::{
    maps::MapData,
    programs::{
        LinkOrder, SchedClassifier, TcAttachType, XdpMode,
        links::FdLink,
        tc::{NlOptions, SchedClassifierLink, SchedClassifierLinkId, TcAttach, TcError, TcHandle},
        xdp::XdpLink,
    },
};
use speaker_common::{
    ARP_MAP, CONFLICT_MAP, EARLIER_TC_PROGRAM, ELSEWHERE_MAP, HEARTBEAT_MAP, LOG_LEVEL_GLOBAL, NDP_MAP,
    PEER_MAP,
};
use tracing::{info, warn};

use super::{
    Datapath, DatapathError, Hook, LOG_MAP, LogLevel, bound,
    bound::BoundError,
    links::{self, Link, OnExit},
    offload::OffloadOff,
    offload_record,
};

impl Datapath {
    /// Attaches the responder to `ifindex` at `hook`, taking over the link pinned at `left` (a
    /// speaker that handed over, or was killed, left it) where it can: that link runs this
    /// speaker's program from now on, and nothing is attached anew. A link it cannot take over
    /// is let go first (its pin removed: it detaches), so that the hook is free.
    pub(super) fn attach_at(
        &mut self,
        hook: Hook,
        ifindex: u32,
        ifname: &str,
        left: Option<PathBuf>,
    ) -> Result<(Link, Option<OffloadOff>), DatapathError> {
        let failed = |source: Box<dyn std::error::Error + Send + Sync>| DatapathError::Attach {
            ifname: ifname.into(),
            hook,
            source,
        };
        let keep = self.options.on_exit == OnExit::Keep;
        let pin = links::link_pin(&self.options.pin_dir, ifindex);
        if let Some(path) = &left {
            info!(interface = ifname, path = %path.display(), "a link a stopped speaker left: taking it over");
        }
        let let_go = |left: &Path| {
            if let Err(e) = std::fs::remove_file(left) {
                warn!(interface = ifname, path = %left.display(), error = %e, "could not remove a left link's pin");
            }
        };
        match hook {
            Hook::XdpBound => {
                // The same maps, opened again from their pins.
                let pinned = [ARP_MAP, NDP_MAP, HEARTBEAT_MAP, PEER_MAP, CONFLICT_MAP, ELSEWHERE_MAP]
                    .map(|name| MapData::from_pin(self.options.pin_dir.join(name)).map(|m| (name, m)));
                let pinned = pinned.into_iter().collect::<Result<Vec<_>, _>>()?;
                let mut maps: StdHashMap<&str, _> =
                    pinned.iter().map(|(name, map)| (*name, map.fd().as_fd())).collect();
                if let Some(logs) = &self.log_map {
                    maps.insert(LOG_MAP, logs.as_fd());
                }
                let level = [self.log.value()];
                let mut globals: Vec<(&str, &[u8])> = Vec::new();
                if self.log != LogLevel::Off {
                    globals.push((LOG_LEVEL_GLOBAL, &level));
                }
                let program = bound::prepare(self.objects.meta, ifindex, &maps, &globals)
                    .map_err(|e: BoundError| failed(e.into()))?;
                let taken = take_over(left, let_go, |path| bound::take_over(path, program.as_fd()));
                let adopted = taken.is_some();
                let link = match taken {
                    Some(link) => bound::Link::taken(link, program),
                    None => {
                        bound::Link::attach(program, ifindex).map_err(|e: BoundError| failed(e.into()))?
                    }
                };
                let pinned = match (keep, adopted) {
                    (true, false) => {
                        std::fs::create_dir_all(links::links_dir(&self.options.pin_dir))
                            .map_err(|e| failed(e.into()))?;
                        link.pin(&pin).map_err(|e| failed(e.into()))?;
                        Some(pin)
                    }
                    _ => kept_pin(keep, adopted, pin),
                };
                Ok((Link::Bound(link, pinned), None))
            }
            Hook::XdpInFrame => {
                let record = offload_record(&self.options.state_dir, &self.options.pin_dir);
                let offload = OffloadOff::take(ifname, &record).map_err(|e| failed(e.into()))?;
                let xdp = self.xdp()?;
                let adopted = take_over(left, let_go, |path| {
                    xdp.attach_to_link(XdpLink::try_from(links::open(path)?).ok()?).ok()
                });
                let (id, adopted) = match adopted {
                    Some(id) => (id, true),
                    None => (xdp.attach(ifindex, XdpMode::Driver).map_err(|e| failed(e.into()))?, false),
                };
                if !links::xdp_has_links() {
                    // Over netlink (Linux 5.8): no bpf_link to hand over; the program keeps it.
                    return Ok((Link::XdpNetlink(id), offload));
                }
                let link = FdLink::try_from(xdp.take_link(id)?).map_err(|e| failed(e.into()))?;
                let (link, pinned) = fd_pinned(keep, adopted, pin, link).map_err(|e| failed(e.into()))?;
                Ok((Link::Fd(link, pinned), offload))
            }
            Hook::Tc => {
                // Filters an earlier release left (it let the kernel place them, and named the
                // program otherwise): removed, whichever way this one attaches.
                match remove_filters(ifindex, EARLIER_TC_PROGRAM) {
                    Ok(true) => info!(interface = ifname, "removed a TC filter an earlier release left"),
                    Ok(false) => {}
                    Err(e) => {
                        warn!(interface = ifname, error = %e, "looking for TC filters an earlier release left")
                    }
                }
                let tc = self.tc()?;
                let adopted = take_over(left, let_go, |path| {
                    tc.attach_to_link(SchedClassifierLink::try_from(links::open(path)?).ok()?).ok()
                });
                let first = TcAttach::Tcx { attach_type: TcAttachType::Ingress, order: LinkOrder::first() };
                let (id, adopted) = match adopted {
                    Some(id) => (id, true),
                    None => match tc.attach(ifindex, first) {
                        Ok(id) => (id, false),
                        // Before TCX (Linux 6.6): a clsact filter.
                        Err(_) => {
                            let id = attach_filter(tc, ifindex, ifname).map_err(|e| failed(e.into()))?;
                            return Ok((Link::Filter(tc.take_link(id)?), None));
                        }
                    },
                };
                let link = FdLink::try_from(tc.take_link(id)?).map_err(|e| failed(e.into()))?;
                let (link, pinned) = fd_pinned(keep, adopted, pin, link).map_err(|e| failed(e.into()))?;
                Ok((Link::Fd(link, pinned), None))
            }
        }
    }
}

/// The link pinned at `left`, pointed at this speaker's program by `update`; a link that does
/// not open or take it is let go (`let_go` removes its pin: it detaches), so that the hook is
/// free for a link anew.
fn take_over<T>(
    left: Option<PathBuf>,
    let_go: impl FnOnce(&Path),
    update: impl FnOnce(&Path) -> Option<T>,
) -> Option<T> {
    let path = left?;
    let taken = update(&path);
    if taken.is_none() {
        let_go(&path);
    }
    taken
}

/// The pin of a link taken over or attached anew, other than one attached anew to be kept:
/// with `keep`, a link taken over stays pinned where it was; without, its pin goes (this
/// speaker alone holds it, and it detaches with it).
fn kept_pin(keep: bool, adopted: bool, pin: PathBuf) -> Option<PathBuf> {
    match (keep, adopted) {
        (true, true) => Some(pin),
        (false, true) => {
            let _ = std::fs::remove_file(&pin);
            None
        }
        _ => None,
    }
}

/// `link` and its pin: pinned at `pin` if attached anew to be kept (see [`kept_pin`]).
fn fd_pinned(
    keep: bool,
    adopted: bool,
    pin: PathBuf,
    link: FdLink,
) -> Result<(FdLink, Option<PathBuf>), aya::pin::PinError> {
    if keep && !adopted {
        return Ok((links::pin(link, &pin)?, Some(pin)));
    }
    Ok((link, kept_pin(keep, adopted, pin)))
}

/// Removes `ifindex`'s clsact ingress filters whose program is named `name`; whether there
/// were any.
pub(super) fn remove_filters(ifindex: u32, name: &str) -> Result<bool, TcError> {
    match aya::programs::tc::qdisc_detach_program(ifindex, TcAttachType::Ingress.into(), name) {
        Ok(()) => Ok(true),
        Err(TcError::IoError(e)) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        // No clsact qdisc to hold any.
        Err(TcError::NetlinkError(e)) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOENT)) => {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// The priority of the responder's clsact filter before TCX: 1 runs first.
pub(super) const TC_PRIORITY: u16 = 1;
/// The handle of the responder's clsact filter before TCX ("HR"): where a speaker finds the
/// filter a killed one left.
pub(super) const TC_HANDLE: TcHandle = TcHandle::new(0, 0x4852);

/// Attaches `tc` as the responder's clsact filter on `ifindex`, taking over one a killed
/// speaker left there.
fn attach_filter(
    tc: &mut SchedClassifier,
    ifindex: u32,
    ifname: &str,
) -> Result<SchedClassifierLinkId, aya::programs::ProgramError> {
    let parent = TcHandle::from(TcAttachType::Ingress);
    let left = SchedClassifierLink::attached(ifindex, parent, TC_PRIORITY, TC_HANDLE, None)?;
    // Replaced in place: the hook is never without the responder.
    if let Ok(link) = tc.attach_to_link(left) {
        info!(interface = ifname, "took over the TC filter a stopped speaker left");
        return Ok(link);
    }
    // The qdisc that holds the filters; one already there (another's, or a predecessor's) is
    // used as it is.
    if let Err(e) = aya::programs::tc::qdisc_add_clsact(ifindex)
        && !matches!(&e, aya::programs::tc::TcError::NetlinkError(n) if n.raw_os_error() == Some(libc::EEXIST))
    {
        warn!(interface = ifname, error = %e, "adding a clsact qdisc");
    }
    let options = NlOptions { priority: TC_PRIORITY, handle: TC_HANDLE, classid: None };
    tc.attach(ifindex, TcAttach::Netlink { parent, options })
}
