//! The standalone speaker's configuration file: TOML, parsed and validated into typed values
//! once. Everything here is pure; checks against the host's interfaces live in [`crate::plan`].

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr},
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;

/// A validated configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// This node's name (membership and election use it later).
    pub node: String,
    pub gratuitous: Gratuitous,
    pub vips: Vec<Vip>,
}

/// One address to announce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vip {
    pub address: Ipv4Addr,
    /// The interface to answer on; `None`: every interface whose subnet holds the address.
    pub interface: Option<String>,
    /// 802.1Q VLAN id on `interface`, 0 for untagged.
    pub vlan: u16,
}

/// Gratuitous ARP sent when the speaker starts announcing an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gratuitous {
    pub count: u32,
    pub interval: Duration,
}

impl Default for Gratuitous {
    fn default() -> Self {
        Self { count: 3, interval: Duration::from_millis(200) }
    }
}

/// What is wrong with a configuration, naming the field and its value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// TOML syntax, a missing or unknown key, or a value of the wrong type. The message comes
    /// from the TOML parser and names the line, column and key.
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    node: String,
    #[serde(default)]
    gratuitous: Option<RawGratuitous>,
    #[serde(default)]
    vip: Vec<RawVip>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGratuitous {
    count: Option<u32>,
    interval_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVip {
    address: String,
    interface: Option<String>,
    vlan: Option<u16>,
}

/// Reads and validates the file at `path`.
pub fn load(path: &Path) -> Result<Config, LoadError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| LoadError::Read { path: path.to_owned(), source })?;
    parse(&text).map_err(|source| LoadError::Invalid { path: path.to_owned(), source })
}

/// Parses and validates a configuration.
pub fn parse(text: &str) -> Result<Config, ConfigError> {
    let raw: RawConfig =
        toml::from_str(text).map_err(|e| ConfigError::Syntax(e.to_string().trim_end().into()))?;

    let node = raw.node.trim();
    if node.is_empty() {
        return Err(field("node", quoted(&raw.node), "must not be empty"));
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
    }

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
    Ok(Config { node: node.to_owned(), gratuitous, vips })
}

fn parse_vip(i: usize, raw: RawVip) -> Result<Vip, ConfigError> {
    let name = |key: &str| format!("vip[{i}].{key}");
    let address = match raw.address.trim().parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) => a,
        Ok(IpAddr::V6(_)) => {
            let reason = "IPv6 addresses (NDP) are not supported yet";
            return Err(field(&name("address"), quoted(&raw.address), reason));
        }
        Err(_) => {
            let reason = "not an IPv4 address";
            return Err(field(&name("address"), quoted(&raw.address), reason));
        }
    };
    if address.is_unspecified()
        || address.is_loopback()
        || address.is_multicast()
        || address.is_broadcast()
        || address.is_link_local()
    {
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
    Ok(Vip { address, interface: raw.interface, vlan })
}

fn field(name: &str, value: impl std::fmt::Display, reason: &str) -> ConfigError {
    ConfigError::Field { field: name.into(), value: value.to_string(), reason: reason.into() }
}

fn quoted(s: &str) -> String {
    format!("{s:?}")
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
