//! The host's bpffs, which the lab's speakers pin under: mounted for the labs of this process
//! when the machine has none, and unmounted with the last of them.

use anyhow::Context as _;

/// The host's bpffs at /sys/fs/bpf, as every node has it (its init system mounts it; the
/// DaemonSet mounts it into the speaker's pod, which has no CAP_SYS_ADMIN to mount one itself).
/// Mounted here when the machine has none, and unmounted when the last lab of this process that
/// holds it is dropped (labs run in parallel: the first one's drop must not pull it from under
/// the others' speakers); the lab's speakers would otherwise mount one themselves and leave it
/// behind.
pub struct HostBpffs(());

/// Labs holding the host's bpffs, and whether this process mounted it.
static HOST_BPFFS: std::sync::Mutex<(usize, bool)> = std::sync::Mutex::new((0, false));

impl HostBpffs {
    const PATH: &str = "/sys/fs/bpf";

    pub fn ensure() -> anyhow::Result<Self> {
        let mut held = HOST_BPFFS.lock().unwrap_or_else(|e| e.into_inner());
        if held.0 == 0 && !herald_speaker::bpffs::is_bpffs(std::path::Path::new(Self::PATH)) {
            nix::mount::mount(
                Some("bpf"),
                Self::PATH,
                Some("bpf"),
                nix::mount::MsFlags::empty(),
                None::<&str>,
            )
            .with_context(|| format!("mounting a bpffs on {}", Self::PATH))?;
            held.1 = true;
        }
        held.0 += 1;
        Ok(Self(()))
    }
}

impl Drop for HostBpffs {
    fn drop(&mut self) {
        let mut held = HOST_BPFFS.lock().unwrap_or_else(|e| e.into_inner());
        held.0 -= 1;
        if held.0 == 0 && held.1 {
            let _ = nix::mount::umount2(Self::PATH, nix::mount::MntFlags::MNT_DETACH);
            held.1 = false;
        }
    }
}
