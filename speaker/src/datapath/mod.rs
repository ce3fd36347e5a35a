//! The loaded XDP program and its maps: the one place that touches them. The speaker's main task
//! owns the one [`Datapath`]; dropping it detaches the program and removes the pins.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData},
    programs::{ProgramError, Xdp, XdpMode, xdp::XdpLinkId},
};
use speaker_common::{ARP_MAP, ARP_PROGRAM, ArpEntry, ArpKey, DEAD_MAN_GLOBAL, HEARTBEAT_MAP, Heartbeat};
use tracing::{info, warn};

use crate::{bpffs, clock};

/// Herald's BPF object, built by `cargo xtask build`.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(env!("HERALD_BPF_OBJECT"));

/// How to attach the program.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AttachMode {
    /// Native (driver) mode, falling back to generic mode where the driver refuses.
    Auto,
    /// Native (driver) mode only.
    Native,
    /// Generic (skb) mode only.
    Generic,
}

#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    #[error("loading the XDP object: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("the XDP object has no {0}")]
    Missing(&'static str),
    #[error("program {ARP_PROGRAM}: {0}")]
    Program(#[from] ProgramError),
    #[error("map: {0}")]
    Map(#[from] aya::maps::MapError),
    #[error("pinning {path}: {source}")]
    Pin { path: PathBuf, source: aya::pin::PinError },
    #[error("attaching to {ifname} in {mode:?} mode: {source}")]
    Attach { ifname: String, mode: AttachMode, source: ProgramError },
    #[error(transparent)]
    Bpffs(#[from] bpffs::BpffsError),
}

pub struct Datapath {
    ebpf: Ebpf,
    arp: HashMap<MapData, ArpKey, ArpEntry>,
    heartbeat: Array<MapData, Heartbeat>,
    dead_man: Duration,
    links: BTreeMap<u32, XdpLinkId>,
    // Dropped last: links detach when `ebpf` drops, then the pins go.
    _pins: Pins,
}

impl Datapath {
    /// Loads the program with `dead_man` as its bound and pins its maps under `pin_dir`.
    pub fn load(dead_man: Duration, pin_dir: &Path) -> Result<Self, DatapathError> {
        bpffs::prepare(pin_dir)?;
        let dead_man_ns = dead_man.as_nanos() as u64;
        let mut ebpf = EbpfLoader::new().override_global(DEAD_MAN_GLOBAL, &dead_man_ns, true).load(OBJECT)?;
        let program: &mut Xdp =
            ebpf.program_mut(ARP_PROGRAM).ok_or(DatapathError::Missing("program herald_arp"))?.try_into()?;
        program.load()?;

        let mut pins = Pins(Vec::new());
        let mut take = |name| -> Result<aya::maps::Map, DatapathError> {
            let map = ebpf.take_map(name).ok_or(DatapathError::Missing("map"))?;
            let path = pin_dir.join(name);
            map.pin(&path).map_err(|source| DatapathError::Pin { path: path.clone(), source })?;
            pins.0.push(path);
            Ok(map)
        };
        let arp = HashMap::try_from(take(ARP_MAP)?)?;
        let heartbeat = Array::try_from(take(HEARTBEAT_MAP)?)?;
        Ok(Self { ebpf, arp, heartbeat, dead_man, links: BTreeMap::new(), _pins: pins })
    }

    /// Tells the program the speaker is alive.
    pub fn beat(&mut self) -> Result<(), DatapathError> {
        let beat = Heartbeat {
            monotonic_ns: clock::monotonic_ns(),
            dead_man_ns: self.dead_man.as_nanos() as u64,
            pid: std::process::id(),
            _pad: 0,
        };
        Ok(self.heartbeat.set(0, &beat, 0)?)
    }

    pub fn is_attached(&self, ifindex: u32) -> bool {
        self.links.contains_key(&ifindex)
    }

    /// Attaches the program to `ifindex`; returns the mode that took.
    pub fn attach(
        &mut self,
        ifindex: u32,
        ifname: &str,
        mode: AttachMode,
    ) -> Result<AttachMode, DatapathError> {
        let program = self.program()?;
        let try_mode = |program: &mut Xdp, mode: AttachMode| {
            let xdp_mode = if mode == AttachMode::Generic { XdpMode::Skb } else { XdpMode::Driver };
            program.attach(ifindex, xdp_mode).map_err(|source| DatapathError::Attach {
                ifname: ifname.into(),
                mode,
                source,
            })
        };
        let (link, took) = match mode {
            AttachMode::Auto => match try_mode(program, AttachMode::Native) {
                Ok(link) => (link, AttachMode::Native),
                Err(e) => {
                    warn!(interface = ifname, error = %e, "native XDP refused; falling back to generic mode");
                    (try_mode(program, AttachMode::Generic)?, AttachMode::Generic)
                }
            },
            mode => (try_mode(program, mode)?, mode),
        };
        self.links.insert(ifindex, link);
        info!(interface = ifname, mode = ?took, "XDP program attached");
        Ok(took)
    }

    /// Detaches the program from `ifindex`, if attached.
    pub fn detach(&mut self, ifindex: u32) -> Result<(), DatapathError> {
        if let Some(link) = self.links.remove(&ifindex) {
            self.program()?.detach(link)?;
        }
        Ok(())
    }

    pub fn insert(&mut self, key: &ArpKey, mac: [u8; 6]) -> Result<(), DatapathError> {
        Ok(self.arp.insert(key, &ArpEntry::new(mac), 0)?)
    }

    /// Removes an entry; an entry that is already gone is not an error.
    pub fn remove(&mut self, key: &ArpKey) -> Result<(), DatapathError> {
        match self.arp.remove(key) {
            Err(aya::maps::MapError::KeyNotFound) | Ok(()) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn program(&mut self) -> Result<&mut Xdp, DatapathError> {
        Ok(self
            .ebpf
            .program_mut(ARP_PROGRAM)
            .ok_or(DatapathError::Missing("program herald_arp"))?
            .try_into()?)
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
