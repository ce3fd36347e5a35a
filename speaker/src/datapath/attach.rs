//! Attaching the responder to one interface at one hook: the driver-bound XDP program (loaded
//! for the device, sharing the main object's maps through their pins), XDP with rx VLAN offload
//! held off, or TC ingress.

use std::{collections::HashMap as StdHashMap, os::fd::AsFd as _};

use aya::{
    maps::MapData,
    programs::{TcAttachType, XdpMode},
};
use speaker_common::{
    ARP_MAP, CONFLICT_MAP, ELSEWHERE_MAP, HEARTBEAT_MAP, LOG_LEVEL_GLOBAL, NDP_MAP, PEER_MAP,
};
use tracing::warn;

use super::{
    Datapath, DatapathError, Hook, LOG_MAP, Link, LogLevel, bound, bound::BoundError, offload::OffloadOff,
    offload_record,
};

impl Datapath {
    pub(super) fn attach_at(
        &mut self,
        hook: Hook,
        ifindex: u32,
        ifname: &str,
    ) -> Result<Link, DatapathError> {
        let failed = |source: Box<dyn std::error::Error + Send + Sync>| DatapathError::Attach {
            ifname: ifname.into(),
            hook,
            source,
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
                bound::attach(self.objects.meta, ifindex, &maps, &globals)
                    .map(Link::Bound)
                    .map_err(|e: BoundError| failed(e.into()))
            }
            Hook::XdpInFrame => {
                let record = offload_record(&self.options.state_dir, &self.options.pin_dir);
                let offload = OffloadOff::take(ifname, &record).map_err(|e| failed(e.into()))?;
                let link = self.xdp()?.attach(ifindex, XdpMode::Driver).map_err(|e| failed(e.into()))?;
                Ok(Link::Xdp(link, offload))
            }
            Hook::Tc => {
                let tc = self.tc()?;
                let link = match tc.attach(ifindex, TcAttachType::Ingress) {
                    Ok(link) => link,
                    // Before TCX (Linux 6.6), a clsact qdisc must hold the filter.
                    Err(_) => {
                        if let Err(e) = aya::programs::tc::qdisc_add_clsact(ifindex) {
                            warn!(interface = ifname, error = %e, "adding a clsact qdisc");
                        }
                        tc.attach(ifindex, TcAttachType::Ingress).map_err(|e| failed(e.into()))?
                    }
                };
                Ok(Link::Tc(link))
            }
        }
    }
}
