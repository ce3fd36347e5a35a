//! `herald-speaker cleanup`: removes what speakers left on this node for the next one (see
//! [`super::links`]): pinned links, the responder's clsact filters, rx VLAN offload turned off,
//! map pins. For an uninstall, or a node leaving Herald; refused while a speaker runs with the
//! pin directory. Nothing of another loader's is touched: filters are found by the responder's
//! program name, links under Herald's pin directory.

use std::path::Path;

use speaker_common::{EARLIER_TC_PROGRAM, TC_PROGRAM};

use super::{DatapathError, attach::remove_filters, links, offload, offload_record};
use crate::bpffs;

/// What was removed, a line each.
pub fn cleanup(pin_dir: &Path, state_dir: &Path) -> Result<Vec<String>, DatapathError> {
    // Taken like a speaker takes it: refused while one runs; the map pins go.
    let _held = bpffs::prepare(pin_dir)?;
    let mut done = Vec::new();
    let dir = links::links_dir(pin_dir);
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for entry in entries.flatten() {
            // The last reference: the link detaches.
            match std::fs::remove_file(entry.path()) {
                Ok(()) => done.push(format!(
                    "link of interface index {} detached",
                    entry.file_name().to_string_lossy()
                )),
                Err(e) => done.push(format!("{}: {e}", entry.path().display())),
            }
        }
        let _ = std::fs::remove_dir(&dir);
    }
    for interface in nix::net::if_::if_nameindex().map_err(|e| DatapathError::Cleanup(e.into()))?.iter() {
        let ifname = interface.name().to_string_lossy();
        for name in [TC_PROGRAM, EARLIER_TC_PROGRAM] {
            match remove_filters(interface.index(), name) {
                Ok(true) => done.push(format!("{ifname}: TC filter {name} removed")),
                Ok(false) => {}
                Err(e) => done.push(format!("{ifname}: TC filters not read: {e}")),
            }
        }
    }
    let record = offload_record(state_dir, pin_dir);
    for ifname in offload::restore_recorded(&record).map_err(DatapathError::Cleanup)? {
        done.push(format!("{ifname}: rx VLAN offload turned back on"));
    }
    Ok(done)
}
