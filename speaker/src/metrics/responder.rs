//! What the XDP programs answer, read from the pinned maps at every scrape: the announced
//! addresses, the requests answered and dropped, other hosts' claims, and whether the dead-man
//! still lets the programs answer.
//!
//! Every series of an address has a `protocol` label, `arp` (IPv4) or `ndp` (IPv6). The names
//! that said ARP for both are kept for one release, marked deprecated in their help.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    path::PathBuf,
    sync::{Arc, OnceLock, RwLock},
    time::{SystemTime, UNIX_EPOCH},
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric as _},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
};

use crate::{clock, frame::format_mac, pinned};

/// An interface the responder runs on, as labels name it: its name, and the hook (see
/// [`crate::datapath::Hook::label`]) if the responder is attached there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Labelled {
    pub name: String,
    pub hook: Option<&'static str>,
}

/// The interfaces by index, for labels.
pub type InterfaceNames = Arc<RwLock<BTreeMap<u32, Labelled>>>;

/// `arp` for an IPv4 address, `ndp` for an IPv6 one: the protocol that announces it.
pub fn protocol(addr: IpAddr) -> &'static str {
    match addr {
        IpAddr::V4(_) => "arp",
        IpAddr::V6(_) => "ndp",
    }
}

type Labels = Vec<(&'static str, String)>;

#[derive(Debug)]
pub(super) struct Responder {
    pin_dir: PathBuf,
    names: InterfaceNames,
    node: Arc<OnceLock<String>>,
}

impl Responder {
    pub(super) fn new(pin_dir: PathBuf, names: InterfaceNames, node: Arc<OnceLock<String>>) -> Self {
        Self { pin_dir, names, node }
    }
}

/// One metric family: its descriptor, then a sample per item.
fn family<T>(
    encoder: &mut DescriptorEncoder,
    (name, help, kind): (&str, &str, MetricType),
    items: impl IntoIterator<Item = T>,
    sample: impl Fn(T) -> (Labels, f64),
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, kind)?;
    for item in items {
        let (labels, value) = sample(item);
        let series = family.encode_family(&labels)?;
        match kind {
            MetricType::Counter => ConstCounter::new(value as u64).encode(series)?,
            _ => ConstGauge::new(value).encode(series)?,
        }
    }
    Ok(())
}

impl Collector for Responder {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use MetricType::{Counter, Gauge};
        // No map (not loaded yet, or gone): no series, rather than a failed scrape.
        let entries = pinned::entries(&self.pin_dir).unwrap_or_default();
        let names = self.names.read().map(|n| n.clone()).unwrap_or_default();
        let node = self.node.get().cloned().unwrap_or_default();
        let labels = |e: &pinned::Entry| -> Labels {
            let interface = names.get(&e.ifindex).map_or_else(|| e.ifindex.to_string(), |i| i.name.clone());
            vec![
                ("protocol", protocol(e.addr).into()),
                ("ip", e.addr.to_string()),
                ("interface", interface),
                ("vlan", e.vlan.to_string()),
            ]
        };
        // The deprecated names had no protocol label.
        let unlabelled = |e: &pinned::Entry| labels(e).split_off(1);
        let e = &mut encoder;
        let replies = "Requests answered by the XDP program (ARP requests, Neighbor Solicitations), per \
                       announced address and interface";
        family(e, ("replies", replies, Counter), &entries, |en| (labels(en), en.replies as f64))?;
        family(
            e,
            ("arp_replies", "Deprecated, removed in 0.3: herald_replies_total{protocol}", Counter),
            &entries,
            |en| (unlabelled(en), en.replies as f64),
        )?;
        family(
            e,
            ("announced", "1 for each address and interface this node answers for", Gauge),
            &entries,
            |en| {
                let mut l = labels(en);
                l.push(("node", node.clone()));
                let hook = names.get(&en.ifindex).and_then(|i| i.hook).unwrap_or("none");
                l.push(("hook", hook.into()));
                (l, 1.0)
            },
        )?;
        family(
            e,
            (
                "address_conflicts",
                "ARP replies, gratuitous ARP and Neighbor Advertisements from another host claiming an \
                 announced address",
                Counter,
            ),
            &entries,
            |en| (labels(en), en.conflicts as f64),
        )?;
        // The last claim of each, by MAC: when it came, as Unix time.
        let (now_unix, now_ns) = (
            SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64()),
            clock::monotonic_ns(),
        );
        family(
            e,
            (
                "address_conflict_last_seconds",
                "When another host last claimed an announced address (Unix time), and the MAC it gave",
                Gauge,
            ),
            entries.iter().filter(|en| en.conflicts > 0),
            |en| {
                let mut l = labels(en);
                l.push(("mac", format_mac(en.conflict_mac)));
                (l, now_unix - now_ns.saturating_sub(en.conflict_ns) as f64 / 1e9)
            },
        )?;
        let elsewhere = pinned::elsewhere(&self.pin_dir).unwrap_or_default();
        let dropped = "Requests dropped by the XDP program for an address another node announces, so \
                       that this node's kernel does not answer them too (a Service proxy binds the \
                       address on every node)";
        family(e, ("requests_dropped", dropped, Counter), &elsewhere, |(addr, n)| {
            (vec![("protocol", "arp".into()), ("ip", addr.to_string())], *n as f64)
        })?;
        family(
            e,
            (
                "arp_requests_dropped",
                "Deprecated, removed in 0.3: herald_requests_dropped_total{protocol}",
                Counter,
            ),
            &elsewhere,
            |(addr, n)| (vec![("ip", addr.to_string())], *n as f64),
        )?;
        // The dead-man: past its bound the programs pass every frame, whatever the map holds.
        let beat = pinned::heartbeat(&self.pin_dir).ok().filter(|b| b.monotonic_ns != 0);
        family(
            e,
            (
                "heartbeat_age_seconds",
                "Since the speaker last proved alive to its XDP programs; past herald_dead_man_seconds \
                 they answer nothing",
                Gauge,
            ),
            &beat,
            |b| (vec![], now_ns.saturating_sub(b.monotonic_ns) as f64 / 1e9),
        )?;
        family(
            e,
            ("dead_man_seconds", "How long a heartbeat lets the XDP programs answer", Gauge),
            &beat,
            |b| (vec![], b.dead_man_ns as f64 / 1e9),
        )
    }
}
