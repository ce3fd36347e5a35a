//! Herald's BPF objects, built twice by `cargo xtask build` (with log statements and without),
//! and the loading of the main one.

use aya::{Ebpf, EbpfLoader};
use speaker_common::{LOG_LEVEL_GLOBAL, TC_PROGRAM, XDP_PROGRAM};

use super::{DatapathError, LogLevel};

/// Herald's BPF objects, as one build of them made them.
#[derive(Clone, Copy, Debug)]
pub struct Objects {
    /// `herald_xdp`, `herald_tc`, `herald_pass`.
    pub main: &'static [u8],
    /// `herald_xdp_meta`, loaded per device where the driver reports stripped tags.
    pub meta: &'static [u8],
}

/// The objects with log statements, for `--xdp-log` error, info and debug.
pub static LOGGING: Objects = Objects {
    main: aya::include_bytes_aligned!(env!("HERALD_BPF_OBJECT")),
    meta: aya::include_bytes_aligned!(env!("HERALD_BPF_META_OBJECT")),
};
/// The objects without them, for `--xdp-log off`: the verifier has nothing of aya-log's to check
/// (older verifiers refuse some of it without CAP_PERFMON, even where the level prunes it).
pub static QUIET: Objects = Objects {
    main: aya::include_bytes_aligned!(env!("HERALD_BPF_QUIET_OBJECT")),
    meta: aya::include_bytes_aligned!(env!("HERALD_BPF_QUIET_META_OBJECT")),
};

impl Objects {
    /// The objects for programs that log at `level`.
    pub fn at(level: LogLevel) -> Self {
        if level == LogLevel::Off { QUIET } else { LOGGING }
    }
}

/// The main object for programs that log at `log`, its two responders verified.
pub(super) fn load_programs(log: LogLevel) -> Result<Ebpf, DatapathError> {
    let level = log.value();
    let mut loader = EbpfLoader::new();
    if log != LogLevel::Off {
        loader.override_global(LOG_LEVEL_GLOBAL, &level, true);
    }
    let mut ebpf = loader.load(Objects::at(log).main)?;
    for name in [XDP_PROGRAM, TC_PROGRAM] {
        let program = ebpf.program_mut(name).ok_or(DatapathError::Missing("a responder program"))?;
        match program {
            aya::programs::Program::Xdp(p) => p.load()?,
            aya::programs::Program::SchedClassifier(p) => p.load()?,
            _ => return Err(DatapathError::Missing("a responder program of the right type")),
        }
    }
    Ok(ebpf)
}
