//! What ethtool says about an interface, through the SIOCETHTOOL ioctl in the speaker's own
//! network namespace: its driver and bus (a device on a bus receives from a wire), and its rx
//! VLAN offload, which the speaker turns off on such devices so that 802.1Q tags stay in the
//! frames its XDP program reads.

use std::{ffi::c_void, io, os::fd::AsRawFd as _};

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GDRVINFO: u32 = 0x03;
const ETHTOOL_GFLAGS: u32 = 0x25;
const ETHTOOL_SFLAGS: u32 = 0x26;
/// `ETH_FLAG_RXVLAN`: rx VLAN offload (`rx-vlan-hw-parse`) in the flags word.
const ETH_FLAG_RXVLAN: u32 = 1 << 8;

/// An interface's driver, as `ethtool -i` shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Driver {
    pub name: String,
    /// Where the device sits (`0000:03:00.0`); empty for software devices (veth, bond, ...).
    pub bus_info: String,
}

impl Driver {
    /// A device on a bus: it receives from a wire, and its rx VLAN offload setting decides
    /// whether a tag stays in the frame. (On a veth the sending peer decides, whatever the
    /// receiver's setting says.)
    pub fn on_a_bus(&self) -> bool {
        !self.bus_info.is_empty()
    }

    /// A veth: the other end of the pair, in another namespace, decides whether an XDP reply
    /// arrives (see `datapath::hook`).
    pub fn is_veth(&self) -> bool {
        self.name == "veth"
    }
}

/// The driver of interface `ifname`.
pub fn driver(ifname: &str) -> io::Result<Driver> {
    #[repr(C)]
    struct DrvInfo {
        cmd: u32,
        driver: [u8; 32],
        version: [u8; 32],
        fw_version: [u8; 32],
        bus_info: [u8; 32],
        erom_version: [u8; 32],
        reserved2: [u8; 12],
        counts: [u32; 5],
    }
    // SAFETY: plain integers and byte arrays; all zeros is valid.
    let mut info: DrvInfo = unsafe { std::mem::zeroed() };
    info.cmd = ETHTOOL_GDRVINFO;
    ioctl(ifname, (&raw mut info).cast())?;
    let text = |bytes: &[u8]| {
        let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
        String::from_utf8_lossy(&bytes[..end]).into_owned()
    };
    Ok(Driver { name: text(&info.driver), bus_info: text(&info.bus_info) })
}

/// Whether rx VLAN offload is on: the device strips 802.1Q tags before any program sees them.
pub fn rx_vlan_offload(ifname: &str) -> io::Result<bool> {
    Ok(flags(ifname)? & ETH_FLAG_RXVLAN != 0)
}

/// Turns rx VLAN offload on or off. Fails (EOPNOTSUPP, EINVAL) where the driver fixes it.
pub fn set_rx_vlan_offload(ifname: &str, on: bool) -> io::Result<()> {
    let current = flags(ifname)?;
    let wanted = if on { current | ETH_FLAG_RXVLAN } else { current & !ETH_FLAG_RXVLAN };
    if wanted == current {
        return Ok(());
    }
    let mut value = [ETHTOOL_SFLAGS, wanted];
    ioctl(ifname, value.as_mut_ptr().cast())
}

/// The legacy flags word (LRO, rx and tx VLAN offload, ntuple, rxhash).
fn flags(ifname: &str) -> io::Result<u32> {
    let mut value = [ETHTOOL_GFLAGS, 0];
    ioctl(ifname, value.as_mut_ptr().cast())?;
    Ok(value[1])
}

/// SIOCETHTOOL on `ifname` with the command structure at `data`.
fn ioctl(ifname: &str, data: *mut c_void) -> io::Result<()> {
    #[repr(C)]
    struct IfReq {
        name: [u8; 16],
        data: *mut c_void,
        _rest: [u8; 16],
    }
    let bytes = ifname.as_bytes();
    if bytes.is_empty() || bytes.len() > 15 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not an interface name: {ifname:?}"),
        ));
    }
    let mut request = IfReq { name: [0; 16], data, _rest: [0; 16] };
    request.name[..bytes.len()].copy_from_slice(bytes);
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").or_else(|_| std::net::UdpSocket::bind("[::]:0"))?;
    // SAFETY: SIOCETHTOOL reads the request and the command structure it points to, both of
    // which outlive the call, and writes only within them.
    let result = unsafe { libc::ioctl(socket.as_raw_fd(), SIOCETHTOOL, &raw mut request) };
    if result < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_no_device_on_a_bus() {
        // lo answers GDRVINFO on some kernels and not on others; either way it is not on a bus.
        if let Ok(d) = driver("lo") {
            assert!(!d.on_a_bus(), "{d:?}");
        }
        assert_eq!(driver("").unwrap_err().kind(), io::ErrorKind::InvalidInput);
        assert_eq!(driver("no-such-if-x").unwrap_err().raw_os_error(), Some(libc::ENODEV));
    }
}
