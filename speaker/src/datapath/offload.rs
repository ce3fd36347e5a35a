//! rx VLAN offload, turned off so that a NIC leaves 802.1Q tags in the frames its XDP responder
//! reads, held off (something may turn it back on: NetworkManager's `ethtool.feature-rxvlan`, an
//! operator, a driver reset), and turned back on when the responder leaves the interface. Each interface whose
//! setting the speaker changed is also written down in a record file, so that a speaker started
//! after a crash still knows the setting is its to restore.

use std::{
    io,
    path::{Path, PathBuf},
};

use tracing::{info, warn};

use crate::ethtool;

/// rx VLAN offload held off on one interface; dropping it turns it back on.
#[derive(Debug)]
pub struct OffloadOff {
    ifname: String,
    record: PathBuf,
}

impl OffloadOff {
    /// Turns rx VLAN offload off on `ifname`. `None` when it was off before and the speaker did
    /// not turn it off (the record says whether an earlier speaker did): nothing to restore.
    pub fn take(ifname: &str, record: &Path) -> io::Result<Option<Self>> {
        let ours = recorded(record).iter().any(|n| n == ifname);
        if ethtool::rx_vlan_offload(ifname)? {
            ethtool::set_rx_vlan_offload(ifname, false)?;
            info!(interface = ifname, "rx VLAN offload turned off: 802.1Q tags stay in the frames XDP reads");
            if !ours {
                write_record(record, ifname, true)?;
            }
        } else if !ours {
            return Ok(None);
        }
        Ok(Some(Self { ifname: ifname.to_owned(), record: record.to_owned() }))
    }

    /// Turns it off again if something turned it back on; returns whether it had to.
    pub fn hold(&self) -> io::Result<bool> {
        let on = ethtool::rx_vlan_offload(&self.ifname)?;
        if on {
            ethtool::set_rx_vlan_offload(&self.ifname, false)?;
        }
        Ok(on)
    }
}

impl Drop for OffloadOff {
    fn drop(&mut self) {
        match ethtool::set_rx_vlan_offload(&self.ifname, true) {
            Ok(()) => info!(interface = self.ifname, "rx VLAN offload turned back on"),
            // The interface may be gone; then there is nothing to restore.
            Err(e) => warn!(interface = self.ifname, error = %e, "rx VLAN offload not turned back on"),
        }
        if let Err(e) = write_record(&self.record, &self.ifname, false) {
            warn!(path = %self.record.display(), error = %e, "offload record not updated");
        }
    }
}

/// Turns rx VLAN offload back on where the record says a speaker turned it off, and empties
/// the record; returns those interfaces.
pub fn restore_recorded(record: &Path) -> io::Result<Vec<String>> {
    let names = recorded(record);
    for ifname in &names {
        if let Err(e) = ethtool::set_rx_vlan_offload(ifname, true) {
            warn!(interface = ifname, error = %e, "rx VLAN offload not turned back on");
        }
        write_record(record, ifname, false)?;
    }
    Ok(names)
}

/// The interfaces in the record.
fn recorded(record: &Path) -> Vec<String> {
    std::fs::read_to_string(record).unwrap_or_default().lines().map(str::to_owned).collect()
}

/// Adds `ifname` to the record, or takes it out; an empty record is removed.
fn write_record(record: &Path, ifname: &str, add: bool) -> io::Result<()> {
    let mut names: Vec<String> = recorded(record).into_iter().filter(|n| n != ifname).collect();
    if add {
        names.push(ifname.to_owned());
    }
    if names.is_empty() {
        return match std::fs::remove_file(record) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
    }
    if let Some(dir) = record.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(record, names.join("\n") + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_adds_and_removes() {
        let dir = std::env::temp_dir().join(format!("herald-offload-{}", std::process::id()));
        let record = dir.join("x.offload");
        write_record(&record, "eth0", true).unwrap();
        write_record(&record, "eth1", true).unwrap();
        write_record(&record, "eth0", true).unwrap();
        assert_eq!(recorded(&record), ["eth1", "eth0"]);
        write_record(&record, "eth1", false).unwrap();
        write_record(&record, "eth0", false).unwrap();
        assert!(!record.exists(), "an empty record is removed");
        write_record(&record, "eth0", false).unwrap();
        let _ = std::fs::remove_dir_all(dir);
    }
}
