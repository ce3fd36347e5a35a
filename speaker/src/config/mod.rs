//! The standalone speaker's configuration file: TOML, parsed and validated into typed values
//! once. Everything here is pure; checks against the host's interfaces live in [`crate::plan`].

use std::{
    collections::BTreeMap,
    net::IpAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;

pub(crate) mod cluster;
mod key;
pub use cluster::{Cluster, Timers};
pub use key::{Key, MIN_KEY};

/// A validated configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// This node's name, as membership and the election know it.
    pub node: String,
    pub gratuitous: Gratuitous,
    /// Membership with other speakers; `None`: this speaker announces every address alone.
    pub cluster: Option<Cluster>,
    pub vips: Vec<Vip>,
}

/// One address to announce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vip {
    pub address: IpAddr,
    /// The interface to answer on; `None`: every interface whose subnet holds the address.
    pub interface: Option<String>,
    /// 802.1Q VLAN id on `interface`, 0 for untagged.
    pub vlan: u16,
    /// The nodes that may announce it; empty: every member.
    pub nodes: Vec<String>,
}

/// Gratuitous ARP sent when the speaker starts announcing an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gratuitous {
    pub count: u32,
    pub interval: Duration,
    /// Also send one for every announced address this often (refreshes switch and router caches).
    pub refresh: Option<Duration>,
}

impl Default for Gratuitous {
    fn default() -> Self {
        Self { count: 3, interval: Duration::from_millis(200), refresh: None }
    }
}

/// What is wrong with a configuration, naming the field and its value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// TOML syntax, a missing or unknown key, or a value of the wrong type, on one line: where
    /// (line, column, the line's text) and the TOML parser's message.
    #[error("{0}")]
    Syntax(String),
    #[error("{field} = {value}: {reason}")]
    Field { field: String, value: String, reason: String },
}

/// A configuration file that could not be read or is not valid.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: {source}")]
    Invalid { path: PathBuf, source: ConfigError },
}

/// Most gratuitous ARPs per burst, and the interval bounds: a misconfigured burst must not
/// flood a LAN.
const MAX_GRATUITOUS: u32 = 100;
const INTERVAL_MS: std::ops::RangeInclusive<u64> = 10..=60_000;
const REFRESH_MS: std::ops::RangeInclusive<u64> = 1_000..=3_600_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    /// Default: the host's name (as keepalived's `router_id`).
    node: Option<String>,
    #[serde(default)]
    gratuitous: Option<RawGratuitous>,
    cluster: Option<cluster::RawCluster>,
    #[serde(default)]
    vip: Vec<RawVip>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGratuitous {
    count: Option<u32>,
    interval_ms: Option<u64>,
    refresh_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVip {
    address: String,
    interface: Option<String>,
    vlan: Option<u16>,
    nodes: Option<Vec<String>>,
}

/// Reads and validates the file at `path`.
pub fn load(path: &Path) -> Result<Config, LoadError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| LoadError::Read { path: path.to_owned(), source })?;
    parse(&text).map_err(|source| LoadError::Invalid { path: path.to_owned(), source })
}

/// Parses and validates a configuration; a `cluster.key_file` is read from the filesystem.
pub fn parse(text: &str) -> Result<Config, ConfigError> {
    parse_with(text, &|path| std::fs::read(path))
}

/// [`parse`], with the key file read by `read`.
pub fn parse_with(
    text: &str,
    read: &dyn Fn(&Path) -> std::io::Result<Vec<u8>>,
) -> Result<Config, ConfigError> {
    let raw: RawConfig = toml::from_str(text).map_err(|e| syntax(text, &e))?;

    let named = raw.node.unwrap_or_else(hostname);
    let node = named.trim();
    if node.is_empty() {
        return Err(field("node", quoted(&named), "must not be empty"));
    }

    let mut gratuitous = Gratuitous::default();
    if let Some(g) = raw.gratuitous {
        if let Some(count) = g.count {
            if count > MAX_GRATUITOUS {
                return Err(field("gratuitous.count", count, &format!("at most {MAX_GRATUITOUS}")));
            }
            gratuitous.count = count;
        }
        if let Some(ms) = g.interval_ms {
            if !INTERVAL_MS.contains(&ms) {
                let reason = format!("must be {} to {}", INTERVAL_MS.start(), INTERVAL_MS.end());
                return Err(field("gratuitous.interval_ms", ms, &reason));
            }
            gratuitous.interval = Duration::from_millis(ms);
        }
        if let Some(ms) = g.refresh_ms {
            if !REFRESH_MS.contains(&ms) {
                let reason = format!("must be {} to {}", REFRESH_MS.start(), REFRESH_MS.end());
                return Err(field("gratuitous.refresh_ms", ms, &reason));
            }
            gratuitous.refresh = Some(Duration::from_millis(ms));
        }
    }
    let cluster = raw.cluster.map(|c| c.validate(read)).transpose()?;

    let mut vips = Vec::with_capacity(raw.vip.len());
    let mut seen = BTreeMap::new();
    for (i, v) in raw.vip.into_iter().enumerate() {
        let vip = parse_vip(i, v)?;
        let identity = (vip.address, vip.interface.clone(), vip.vlan);
        if let Some(first) = seen.insert(identity, i) {
            let reason = format!("already listed as vip[{first}]");
            return Err(field(&format!("vip[{i}].address"), vip.address, &reason));
        }
        vips.push(vip);
    }
    Ok(Config { node: node.to_owned(), gratuitous, cluster, vips })
}

/// The host's name, the node's name when the file gives none.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim().to_owned()
}

fn parse_vip(i: usize, raw: RawVip) -> Result<Vip, ConfigError> {
    let name = |key: &str| format!("vip[{i}].{key}");
    let Ok(address) = raw.address.trim().parse::<IpAddr>() else {
        return Err(field(&name("address"), quoted(&raw.address), "not an IP address"));
    };
    if !announceable(address) {
        let reason = "not a unicast address that can be announced on a LAN";
        return Err(field(&name("address"), quoted(&raw.address), reason));
    }
    if let Some(ifname) = &raw.interface
        && (ifname.is_empty() || ifname.len() > 15 || ifname.contains(['/', ' ']))
    {
        return Err(field(&name("interface"), quoted(ifname), "not an interface name"));
    }
    let vlan = raw.vlan.unwrap_or(0);
    if raw.vlan.is_some() {
        if !(1..=4094).contains(&vlan) {
            return Err(field(&name("vlan"), vlan, "must be 1 to 4094"));
        }
        if raw.interface.is_none() {
            let reason = "a tagged address needs `interface`, the device that carries the VLAN";
            return Err(field(&name("vlan"), vlan, reason));
        }
    }
    let nodes = raw.nodes.unwrap_or_default();
    if let Some(bad) = nodes.iter().find(|n| n.trim().is_empty()) {
        return Err(field(&name("nodes"), quoted(bad), "node names must not be empty"));
    }
    Ok(Vip { address, interface: raw.interface, vlan, nodes })
}

/// Whether `address` is one a LAN can reach a node at: not unspecified, loopback, multicast,
/// broadcast, or link-local (IPv6 link-local addresses belong to one link's hosts, not to a
/// Service).
pub fn announceable(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(a) => {
            !(a.is_unspecified()
                || a.is_loopback()
                || a.is_multicast()
                || a.is_broadcast()
                || a.is_link_local())
        }
        IpAddr::V6(a) => {
            !(a.is_unspecified() || a.is_loopback() || a.is_multicast() || a.is_unicast_link_local())
                && a.to_ipv4_mapped().is_none()
        }
    }
}

fn field(name: &str, value: impl std::fmt::Display, reason: &str) -> ConfigError {
    ConfigError::Field { field: name.into(), value: value.to_string(), reason: reason.into() }
}

fn quoted(s: &str) -> String {
    format!("{s:?}")
}

/// The TOML parser's error on one line, with where it is and that line's text, which names the
/// key (the parser's own rendering quotes the file over several lines).
fn syntax(text: &str, e: &toml::de::Error) -> ConfigError {
    let message = e.message().trim().replace('\n', "; ");
    let Some(span) = e.span() else { return ConfigError::Syntax(message) };
    let before = &text[..span.start.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |at| at + 1);
    let column = before.len() - start + 1;
    let source = text[start..].lines().next().unwrap_or_default().trim();
    ConfigError::Syntax(format!("line {line}, column {column} (`{source}`): {message}"))
}

#[cfg(test)]
mod tests;
