//! The bpffs directory the maps are pinned under.

use std::{io, path::Path};

use crate::{clock, pinned};
use nix::{
    mount::{MsFlags, mount},
    sys::statfs::{BPF_FS_MAGIC, statfs},
};

#[derive(Debug, thiserror::Error)]
pub enum BpffsError {
    #[error("{dir}: {source}")]
    Io { dir: String, source: io::Error },
    #[error("mounting bpffs on {dir}: {source}")]
    Mount { dir: String, source: nix::Error },
    #[error("{dir} is not on a bpffs, and its parent does not exist to mount one")]
    NoParent { dir: String },
    #[error(
        "another speaker is running with pin directory {dir} (its heartbeat is {age_ms} ms old); \
         give this one its own --pin-dir"
    )]
    InUse { dir: String, age_ms: u64 },
}

/// Makes `dir` an empty directory on a bpffs, mounting a bpffs on its parent when none is
/// mounted there. Pins left by a speaker that was killed are removed; pins of a live speaker
/// (fresh heartbeat) are an error.
pub fn prepare(dir: &Path) -> Result<(), BpffsError> {
    let name = dir.display().to_string();
    let parent = dir.parent().ok_or_else(|| BpffsError::NoParent { dir: name.clone() })?;
    if !is_bpffs(parent) {
        if !parent.is_dir() {
            return Err(BpffsError::NoParent { dir: name });
        }
        mount(Some("bpf"), parent, Some("bpf"), MsFlags::empty(), None::<&str>)
            .map_err(|source| BpffsError::Mount { dir: parent.display().to_string(), source })?;
    }
    if let Ok(beat) = pinned::heartbeat(dir) {
        let age_ns = clock::monotonic_ns().saturating_sub(beat.monotonic_ns);
        if pinned::speaker_alive(&beat) && beat.monotonic_ns != 0 && age_ns <= beat.dead_man_ns {
            return Err(BpffsError::InUse { dir: name, age_ms: age_ns / 1_000_000 });
        }
    }
    let io = |source| BpffsError::Io { dir: name.clone(), source };
    if dir.exists() {
        for entry in std::fs::read_dir(dir).map_err(io)? {
            std::fs::remove_file(entry.map_err(io)?.path()).map_err(io)?;
        }
    }
    std::fs::create_dir_all(dir).map_err(io)?;
    Ok(())
}

pub fn is_bpffs(path: &Path) -> bool {
    statfs(path).is_ok_and(|s| s.filesystem_type() == BPF_FS_MAGIC)
}
