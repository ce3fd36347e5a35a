//! The bpffs directory the maps are pinned under, and its ownership: a speaker holds an
//! exclusive `flock` on the directory for as long as it runs. The kernel drops the lock when the
//! process dies, however it dies, so a lock that can be taken means the pins are leftovers.

use std::{
    io,
    os::fd::OwnedFd,
    path::{Path, PathBuf},
};

use nix::{
    fcntl::{Flock, FlockArg, OFlag, open},
    mount::{MsFlags, mount},
    sys::{
        stat::Mode,
        statfs::{BPF_FS_MAGIC, statfs},
    },
};

use crate::pinned;

#[derive(Debug, thiserror::Error)]
pub enum BpffsError {
    #[error("{dir}: {source}")]
    Io { dir: String, source: io::Error },
    #[error("mounting bpffs on {dir}: {source}")]
    Mount { dir: String, source: nix::Error },
    #[error("{dir} is not on a bpffs, and its parent does not exist to mount one")]
    NoParent { dir: String },
    #[error(
        "{holder} holds the pin directory {dir}: another speaker runs with it; \
         give this one its own with --pin-dir (or stop that one)"
    )]
    InUse { dir: String, holder: String },
}

/// The pin directory, held for this speaker until dropped.
#[derive(Debug)]
pub struct PinDir {
    pub path: PathBuf,
    _lock: Flock<OwnedFd>,
}

/// Makes `dir` an empty directory on a bpffs that this speaker holds, mounting a bpffs on its
/// parent when neither is on one (a pod is given the host's `dir` alone, already on its bpffs).
/// Map pins left by a speaker that died are removed (links a speaker handed over, under
/// `links/`, are left for it to take over); a directory another live speaker holds, even a hung
/// one, is an error naming its process.
pub fn prepare(dir: &Path) -> Result<PinDir, BpffsError> {
    let name = dir.display().to_string();
    let parent = dir.parent().ok_or_else(|| BpffsError::NoParent { dir: name.clone() })?;
    let io = |source| BpffsError::Io { dir: name.clone(), source };
    if !is_bpffs(dir) && !is_bpffs(parent) {
        if !parent.is_dir() {
            return Err(BpffsError::NoParent { dir: name });
        }
        // Two speakers starting together would both mount one, the second hiding the first's
        // pins: the directory's lock makes the second one look again after the first mounted.
        let fd = open(parent, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|e| io(e.into()))?;
        let _mounting = Flock::lock(fd, FlockArg::LockExclusive).map_err(|(_, e)| io(e.into()))?;
        if !is_bpffs(parent) {
            mount(Some("bpf"), parent, Some("bpf"), MsFlags::empty(), None::<&str>)
                .map_err(|source| BpffsError::Mount { dir: parent.display().to_string(), source })?;
        }
    }
    std::fs::create_dir_all(dir).map_err(io)?;
    let fd = open(dir, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| io(e.into()))?;
    let lock = match Flock::lock(fd, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => lock,
        Err((_, nix::Error::EWOULDBLOCK)) => {
            // The kernel's lock table says who; failing that (another PID namespace), the
            // heartbeat the holder writes.
            let locks = std::fs::read_to_string("/proc/locks").unwrap_or_default();
            let pid = nix::sys::stat::stat(dir).ok().and_then(|st| lock_holder(&locks, st.st_dev, st.st_ino));
            let pid = pid.or_else(|| pinned::heartbeat(dir).ok().map(|b| b.pid).filter(|p| *p != 0));
            let holder = pid.map_or("another process".into(), |pid| format!("herald-speaker pid {pid}"));
            return Err(BpffsError::InUse { dir: name, holder });
        }
        Err((_, e)) => return Err(io(e.into())),
    };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        if !entry.file_type().map_err(io)?.is_dir() {
            std::fs::remove_file(entry.path()).map_err(io)?;
        }
    }
    Ok(PinDir { path: dir.to_owned(), _lock: lock })
}

pub fn is_bpffs(path: &Path) -> bool {
    statfs(path).is_ok_and(|s| s.filesystem_type() == BPF_FS_MAGIC)
}

/// The process holding a flock on the file (`dev`, `inode`), from `/proc/locks`, whose lines
/// read `1: FLOCK  ADVISORY  WRITE 2418 00:1c:13 0 EOF` (pid, then device major:minor in hex
/// and inode).
fn lock_holder(locks: &str, dev: u64, inode: u64) -> Option<u32> {
    let (major, minor) = (nix::sys::stat::major(dev), nix::sys::stat::minor(dev));
    let wanted = format!("{major:02x}:{minor:02x}:{inode}");
    locks.lines().find_map(|line| {
        let words: Vec<&str> = line.split_whitespace().collect();
        let at = words.iter().position(|w| *w == wanted)?;
        (words.get(1) == Some(&"FLOCK")).then(|| words.get(at.checked_sub(1)?)?.parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_the_holder_in_proc_locks() {
        let locks = "1: POSIX  ADVISORY  WRITE 77 00:1c:13 0 EOF\n\
                     2: FLOCK  ADVISORY  WRITE 2418 00:1c:13 0 EOF\n\
                     3: FLOCK  ADVISORY  WRITE 99 00:1c:14 0 EOF\n";
        let dev = nix::sys::stat::makedev(0, 0x1c);
        assert_eq!(super::lock_holder(locks, dev, 13), Some(2418));
        assert_eq!(super::lock_holder(locks, dev, 15), None);
    }
}
