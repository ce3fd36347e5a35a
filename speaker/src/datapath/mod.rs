//! The loaded responder and its maps: the one place that touches them. The speaker's main task
//! owns the one [`Datapath`]; dropping it detaches every program and restores what it changed
//! on the interfaces, or leaves them attached and idle for the next speaker ([`links`]), and
//! removes the map pins.
//!
//! Each interface gets the responder at the hook [`hook::plan`] picks: XDP in the driver where
//! it can know every request's 802.1Q tag, TC ingress elsewhere.

mod attach;
mod bound;
mod cleanup;
pub mod elsewhere;
mod facts;
mod groups;
mod heartbeat;
pub mod hook;
pub mod links;
mod logs;
mod mirror;
mod objects;
mod offload;

use std::{
    collections::BTreeMap,
    os::fd::{AsFd as _, OwnedFd},
    path::{Path, PathBuf},
    time::Duration,
};

use aya::{
    Ebpf,
    maps::{Array, HashMap, MapData, RingBuf},
    programs::{ProgramError, SchedClassifier, Xdp},
};
use herald_kube::report::Chain;
use speaker_common::{
    ARP_MAP, AddressEntry, ArpKey, CONFLICT_MAP, ELSEWHERE_MAP, HEARTBEAT_MAP, MacKey, NDP_MAP, NdpKey,
    PEER_MAP, TC_PROGRAM, XDP_PROGRAM,
};
use tracing::{debug, info, warn};

pub use self::{
    cleanup::cleanup,
    facts::hook_facts,
    heartbeat::Heartbeats,
    hook::{Hook, Mode, Placed},
    links::OnExit,
    logs::{LogLevel, forward as forward_logs},
    objects::{LOGGING, Objects, QUIET},
};
use self::{
    elsewhere::Elsewhere, links::Attached, mirror::Mirror, objects::load_programs, offload::OffloadOff,
};
use crate::{announcement::Key, bpffs, pinned};

/// aya-log's ring buffer, which both logging objects write to.
const LOG_MAP: &str = "AYA_LOGS";

/// How the datapath is set up.
#[derive(Clone, Debug)]
pub struct Options {
    /// How long the run loop may stall before the node stops answering (see
    /// [`crate::fence`]).
    pub dead_man: Duration,
    /// Where the maps are pinned.
    pub pin_dir: PathBuf,
    /// Where the record of the interfaces whose rx VLAN offload this speaker turned off is kept.
    pub state_dir: PathBuf,
    pub mode: Mode,
    /// What the programs log.
    pub log: LogLevel,
    /// What becomes of the programs when the speaker stops.
    pub on_exit: OnExit,
}

#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    #[error("loading the BPF object: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("the BPF object has no {0}")]
    Missing(&'static str),
    #[error("program: {0}")]
    Program(#[from] ProgramError),
    #[error("map: {0}")]
    Map(#[from] aya::maps::MapError),
    #[error("pinning {path}: {source}")]
    Pin { path: PathBuf, source: aya::pin::PinError },
    #[error("{ifname}: {why}")]
    NoHook { ifname: String, why: String },
    #[error("attaching to {ifname} at {hook}: {source}")]
    Attach { ifname: String, hook: Hook, source: Box<dyn std::error::Error + Send + Sync> },
    #[error(transparent)]
    Bpffs(#[from] bpffs::BpffsError),
    #[error("cleaning up: {0}")]
    Cleanup(std::io::Error),
}

pub struct Datapath {
    ebpf: Ebpf,
    arp: HashMap<MapData, ArpKey, AddressEntry>,
    /// The IPv6 (Neighbor Discovery) entries.
    ndp: HashMap<MapData, NdpKey, AddressEntry>,
    /// Their solicited-node groups, joined while an entry needs one (`None`: the kernel has no
    /// IPv6, so no IPv6 address reaches the node anyway).
    needs: groups::Needs,
    memberships: Option<groups::Memberships>,
    heartbeat: Heartbeats,
    /// The other speakers' MACs.
    peers: Mirror<[u8; 6], MacKey, u32>,
    conflicts: Array<MapData, u64>,
    elsewhere: Elsewhere,
    /// The log ring buffer, for `herald_xdp_meta`'s relocations (none in the quiet objects).
    log_map: Option<OwnedFd>,
    /// The objects loaded, and what their programs log.
    objects: Objects,
    log: LogLevel,
    options: Options,
    attached: BTreeMap<u32, Attached>,
    // Dropped last: links detach when `ebpf` drops, then the pins go, then the directory is
    // let go (so that no speaker that takes it next sees its pins removed under it).
    _pins: Pins,
    _pin_dir: bpffs::PinDir,
}

impl Datapath {
    /// Loads the main object with the bound and log level of `options`, and pins its maps under
    /// the pin directory. Programs are attached per interface by [`Datapath::attach`].
    ///
    /// Where the verifier refuses the programs with log statements, they load without (the
    /// speaker says so): logging is a diagnosis, answering is the job.
    pub fn load(options: &Options) -> Result<Self, DatapathError> {
        let pin_dir = bpffs::prepare(&options.pin_dir)?;
        let (mut ebpf, log) = match load_programs(options.log) {
            Ok(ebpf) => (ebpf, options.log),
            Err(e) if options.log != LogLevel::Off => {
                warn!(
                    error = %Chain(&e),
                    "the kernel refused the programs with log statements (older verifiers do \
                     without CAP_PERFMON); loading them without: --xdp-log is off"
                );
                (load_programs(LogLevel::Off)?, LogLevel::Off)
            }
            Err(e) => return Err(e),
        };

        let mut pins = Pins(Vec::new());
        let mut take = |name| -> Result<aya::maps::Map, DatapathError> {
            let map = ebpf.take_map(name).ok_or(DatapathError::Missing(name))?;
            let path = options.pin_dir.join(name);
            map.pin(&path).map_err(|source| DatapathError::Pin { path: path.clone(), source })?;
            pins.0.push(path);
            Ok(map)
        };
        let arp = HashMap::try_from(take(ARP_MAP)?)?;
        let ndp = HashMap::try_from(take(NDP_MAP)?)?;
        let heartbeat = Heartbeats::new(Array::try_from(take(HEARTBEAT_MAP)?)?);
        let peers = Mirror::new(HashMap::try_from(take(PEER_MAP)?)?, MacKey::new, 1);
        let conflicts = Array::try_from(take(CONFLICT_MAP)?)?;
        let elsewhere = elsewhere::mirror(HashMap::try_from(take(ELSEWHERE_MAP)?)?);
        let log_map = match ebpf.map(LOG_MAP) {
            Some(logs) => Some(
                RingBuf::try_from(logs)?.as_fd().try_clone_to_owned().map_err(aya::maps::MapError::from)?,
            ),
            None => None,
        };
        Ok(Self {
            ebpf,
            arp,
            ndp,
            needs: groups::Needs::default(),
            memberships: groups::Memberships::new()
                .inspect_err(|e| warn!(error = %e, "no IPv6 sockets: no solicited-node group can be joined"))
                .ok(),
            heartbeat,
            peers,
            conflicts,
            elsewhere,
            log_map,
            objects: Objects::at(log),
            log,
            options: options.clone(),
            attached: BTreeMap::new(),
            _pins: pins,
            _pin_dir: pin_dir,
        })
    }

    /// The reader of the programs' log statements, once (`None` with `--xdp-log off`): hand it
    /// to [`forward_logs`].
    pub fn take_logs(&mut self) -> Option<aya_log::EbpfLogger<logs::Tracing>> {
        if self.log == LogLevel::Off {
            return None;
        }
        match aya_log::EbpfLogger::init_with_logger(&mut self.ebpf, logs::Tracing) {
            Ok(logger) => Some(logger),
            Err(e) => {
                warn!(error = %e, "the programs' log statements cannot be read");
                None
            }
        }
    }

    /// The programs' heartbeat slot, for whoever vouches for the speaker.
    pub fn heartbeats(&self) -> Heartbeats {
        self.heartbeat.clone()
    }

    pub fn is_attached(&self, ifindex: u32) -> bool {
        self.attached.contains_key(&ifindex)
    }

    /// The hook the responder runs at on `ifindex`, if attached.
    pub fn hook(&self, ifindex: u32) -> Option<Placed> {
        self.attached.get(&ifindex).map(|a| Placed { hook: a.hook, why: a.why.clone() })
    }

    /// Attaches the responder to `ifindex` at the best hook [`hook::plan`] allows, falling back
    /// to the next where the kernel refuses one; returns the hook that took.
    pub fn attach(&mut self, ifindex: u32, ifname: &str) -> Result<Hook, DatapathError> {
        let facts = hook_facts(ifindex, ifname);
        let mut why = facts.foreign_xdp.as_ref().map(|foreign| {
            info!(interface = ifname, program = %foreign, "another program holds the XDP hook: never replaced");
            foreign.holding_xdp()
        });
        let hooks = hook::plan(self.options.mode, &facts)
            .map_err(|why| DatapathError::NoHook { ifname: ifname.into(), why })?;
        let mut error = None;
        // Taken over by the first hook tried, or let go.
        let mut left = links::left(&self.options.pin_dir, ifindex);
        for hook in hooks {
            if let Some(e) = error.take() {
                warn!(interface = ifname, error = %Chain(&e), "trying the next hook");
                why = Some(format!("{}", Chain(&e)));
            }
            match self.attach_at(hook, ifindex, ifname, left.take()) {
                Ok((link, offload)) => {
                    info!(interface = ifname, hook = %hook, "responder attached");
                    let ifname = ifname.to_owned();
                    self.attached.insert(ifindex, Attached { hook, why, ifname, link, offload });
                    return Ok(hook);
                }
                Err(e) => error = Some(e),
            }
        }
        Err(error.expect("plan() gives at least one hook"))
    }

    /// Where the responder reads 802.1Q tags from the frames (XDP, rx VLAN offload off), turns
    /// the offload off again if something turned it back on: the NIC would strip the tags before
    /// the responder sees them, and tagged requests look untagged to it. Returns the interfaces
    /// where it had to.
    pub fn hold_offloads(&mut self) -> Vec<String> {
        let record = offload_record(&self.options.state_dir, &self.options.pin_dir);
        let mut again = Vec::new();
        for attached in self.attached.values_mut() {
            if attached.hook != Hook::XdpInFrame {
                continue;
            }
            let (ifname, offload) = (&attached.ifname, &mut attached.offload);
            let turned = match offload {
                Some(held) => held.hold(),
                // It was off when the responder came, not by this speaker's doing; now it is,
                // and it is this speaker's to turn back on when it leaves.
                None => OffloadOff::take(ifname, &record).map(|taken| {
                    *offload = taken;
                    offload.is_some()
                }),
            };
            match turned {
                Ok(true) => {
                    warn!(
                        interface = ifname,
                        "rx VLAN offload was turned back on (NetworkManager, ethtool, a driver reset): turned off again"
                    );
                    again.push(ifname.clone());
                }
                Ok(false) => {}
                Err(e) => warn!(interface = ifname, error = %e, "rx VLAN offload not read or not turned off"),
            }
        }
        again
    }

    /// Detaches the responder from `ifindex`, if attached (and restores its rx VLAN offload).
    pub fn detach(&mut self, ifindex: u32) -> Result<(), DatapathError> {
        let Some(attached) = self.attached.remove(&ifindex) else { return Ok(()) };
        if let Some(netlink) = attached.release(false) {
            self.xdp()?.detach(netlink)?;
        }
        Ok(())
    }

    pub fn insert(&mut self, key: &Key, mac: [u8; 6]) -> Result<(), DatapathError> {
        let entry = AddressEntry::new(mac);
        match key {
            Key::Arp(key) => self.arp.insert(key, &entry, 0)?,
            Key::Ndp(key) => {
                self.ndp.insert(key, &entry, 0)?;
                if let Some(group) = self.needs.add(key) {
                    self.membership(&group, true);
                }
            }
        }
        Ok(())
    }

    /// Joins or leaves `group`. A failure is told, not returned: the responder answers all the
    /// same wherever solicitations reach it (the NIC is promiscuous for the group, or a switch
    /// floods it).
    fn membership(&mut self, group: &groups::Group, join: bool) {
        let Some(memberships) = &mut self.memberships else { return };
        let done = if join { memberships.join(group) } else { memberships.leave(group) };
        match done {
            Ok(()) => debug!(
                group = %group.addr, ifindex = group.ifindex, vlan = group.vlan, join,
                sockets = memberships.sockets(), "solicited-node group"
            ),
            Err(e) => warn!(
                group = %group.addr, ifindex = group.ifindex, vlan = group.vlan, join, error = %e,
                "solicited-node group: the NIC may drop solicitations for the address"
            ),
        }
    }

    /// Removes an entry; an entry that is already gone is not an error.
    pub fn remove(&mut self, key: &Key) -> Result<(), DatapathError> {
        let removed = match key {
            Key::Arp(key) => self.arp.remove(key),
            Key::Ndp(key) => self.ndp.remove(key),
        };
        match removed {
            Err(aya::maps::MapError::KeyNotFound) | Ok(()) => {}
            Err(e) => return Err(e.into()),
        }
        if let Key::Ndp(key) = key
            && let Some(group) = self.needs.remove(key)
        {
            self.membership(&group, false);
        }
        Ok(())
    }

    /// Every entry of the responder maps, with its counters.
    pub fn entries(&self) -> Result<Vec<pinned::Entry>, DatapathError> {
        Ok(pinned::entries_of(&self.arp, &self.ndp)?)
    }

    /// Makes the programs drop ARP requests for exactly `addresses` (another node announces
    /// them), while the speaker is alive.
    pub fn set_elsewhere(
        &mut self,
        addresses: &std::collections::BTreeSet<std::net::Ipv4Addr>,
    ) -> Result<(), DatapathError> {
        let set = self.elsewhere.set(addresses);
        // The programs look the map up only while the heartbeat counts entries: tell them now,
        // whatever part of the change took.
        self.heartbeat.count_elsewhere(self.elsewhere.current().len())?;
        Ok(set?)
    }

    /// The conflicts the programs counted on any entry, ever: when it grows, read the entries.
    pub fn conflicts_total(&self) -> Result<u64, DatapathError> {
        Ok(self.conflicts.get(&0, 0)?)
    }

    /// Adds `macs` to the other speakers' MACs, whose claims on an address are takeovers, not
    /// conflicts. MACs are never taken out: a speaker that comes back keeps its MACs.
    /// Makes the peer map hold exactly `macs`: the other speakers' (see `cluster::peer_macs`).
    pub fn set_peers(&mut self, macs: &std::collections::BTreeSet<[u8; 6]>) -> Result<(), DatapathError> {
        Ok(self.peers.set(macs)?)
    }

    fn xdp(&mut self) -> Result<&mut Xdp, DatapathError> {
        Ok(self
            .ebpf
            .program_mut(XDP_PROGRAM)
            .ok_or(DatapathError::Missing("program herald_xdp"))?
            .try_into()?)
    }

    fn tc(&mut self) -> Result<&mut SchedClassifier, DatapathError> {
        Ok(self
            .ebpf
            .program_mut(TC_PROGRAM)
            .ok_or(DatapathError::Missing("program herald_tc"))?
            .try_into()?)
    }
}

impl Drop for Datapath {
    /// Detaches the responder everywhere, or leaves it attached for the next speaker (see
    /// [`links`]), before the programs and maps go.
    fn drop(&mut self) {
        // Idle from here on, whatever stays attached.
        if let Err(e) = self.heartbeat.stop() {
            warn!(error = %e, "the programs' heartbeat could not be stopped");
        }
        let keep = self.options.on_exit == OnExit::Keep;
        for attached in std::mem::take(&mut self.attached).into_values() {
            if let Some(netlink) = attached.release(keep)
                && let Ok(xdp) = self.xdp()
            {
                let _ = xdp.detach(netlink);
            }
        }
    }
}

/// Pinned map paths, removed on drop (also when loading fails half-way).
struct Pins(Vec<PathBuf>);

impl Drop for Pins {
    fn drop(&mut self) {
        for path in &self.0 {
            if let Err(e) = std::fs::remove_file(path) {
                warn!(path = %path.display(), error = %e, "could not remove pin");
            }
        }
    }
}

/// The record file of `pin_dir`'s speaker under `state_dir`.
pub fn offload_record(state_dir: &Path, pin_dir: &Path) -> PathBuf {
    let name = pin_dir.file_name().map_or("herald".into(), |n| n.to_string_lossy().into_owned());
    state_dir.join(format!("{name}.offload"))
}
