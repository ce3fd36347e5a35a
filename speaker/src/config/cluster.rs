//! The `[cluster]` section: membership between speakers.

use std::{net::SocketAddr, path::Path, time::Duration};

use serde::Deserialize;

use super::{ConfigError, field, key::Key, quoted};

/// Membership settings, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cluster {
    /// Where this speaker listens, and the address the others know it by.
    pub bind: SocketAddr,
    pub peers: Vec<SocketAddr>,
    /// Shared secret that authenticates every membership message.
    pub key: Key,
    /// Withdraw every address while fewer than a majority of the configured members are seen.
    /// On by default from three members: a member cut off then withdraws instead of claiming
    /// every address beside the real owners. Off by default for two, where no side of a cut is a
    /// majority and the survivor of a failure must take over (keepalived's choice).
    pub quorum: bool,
    pub timers: Timers,
}

impl Cluster {
    /// Members the configuration names, this one included.
    pub fn configured_members(&self) -> usize {
        self.peers.len() + 1
    }
}

/// SWIM failure-detection timers, tuned for a LAN by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timers {
    /// How often each member probes another.
    pub probe_period: Duration,
    /// How long a direct probe may take before indirect probes are sent.
    pub probe_rtt: Duration,
    /// How long a suspected member has to refute before it is declared down.
    pub suspect: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Self {
            probe_period: Duration::from_millis(100),
            probe_rtt: Duration::from_millis(30),
            suspect: Duration::from_millis(150),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCluster {
    bind: String,
    #[serde(default)]
    peers: Vec<String>,
    key: Option<String>,
    key_file: Option<String>,
    quorum: Option<bool>,
    probe_period_ms: Option<u64>,
    probe_rtt_ms: Option<u64>,
    suspect_ms: Option<u64>,
}

impl RawCluster {
    /// Validates; `read` reads the key file (the only I/O, injected so parsing stays testable).
    pub(super) fn validate(
        self,
        read: &dyn Fn(&Path) -> std::io::Result<Vec<u8>>,
    ) -> Result<Cluster, ConfigError> {
        let bind = socket_addr("cluster.bind", &self.bind)?;
        if bind.ip().is_unspecified() {
            return Err(field(
                "cluster.bind",
                quoted(&self.bind),
                "must be this node's own address, which peers reach",
            ));
        }
        let mut peers = Vec::with_capacity(self.peers.len());
        for (i, text) in self.peers.iter().enumerate() {
            let name = format!("cluster.peers[{i}]");
            let peer = socket_addr(&name, text)?;
            if peer == bind {
                return Err(field(&name, quoted(text), "is this node's own bind address"));
            }
            if peers.contains(&peer) {
                return Err(field(&name, quoted(text), "is listed twice"));
            }
            peers.push(peer);
        }

        let key = match (self.key, self.key_file) {
            (Some(key), None) => {
                Key::from_bytes(key.as_bytes()).map_err(|e| field("cluster.key", "(hidden)", &e))?
            }
            (None, Some(path)) => {
                let bytes = read(Path::new(&path))
                    .map_err(|e| field("cluster.key_file", quoted(&path), &format!("cannot read: {e}")))?;
                Key::from_bytes(&bytes).map_err(|e| field("cluster.key_file", quoted(&path), &e))?
            }
            (Some(_), Some(_)) => {
                return Err(field("cluster.key", "(set)", "give `key` or `key_file`, not both"));
            }
            (None, None) => {
                return Err(field("cluster.key", "(missing)", "membership messages must be authenticated"));
            }
        };

        let ms = |name: &str, value: Option<u64>, default: Duration, range: std::ops::RangeInclusive<u64>| {
            let Some(ms) = value else { return Ok(default) };
            if !range.contains(&ms) {
                let reason = format!("must be {} to {}", range.start(), range.end());
                return Err(field(&format!("cluster.{name}"), ms, &reason));
            }
            Ok(Duration::from_millis(ms))
        };
        let d = Timers::default();
        let timers = Timers {
            probe_period: ms("probe_period_ms", self.probe_period_ms, d.probe_period, 20..=10_000)?,
            probe_rtt: ms("probe_rtt_ms", self.probe_rtt_ms, d.probe_rtt, 5..=10_000)?,
            suspect: ms("suspect_ms", self.suspect_ms, d.suspect, 20..=60_000)?,
        };
        if timers.probe_rtt >= timers.probe_period {
            let reason = "must be shorter than probe_period_ms";
            return Err(field("cluster.probe_rtt_ms", timers.probe_rtt.as_millis(), reason));
        }
        let quorum = self.quorum.unwrap_or(peers.len() + 1 >= 3);
        Ok(Cluster { bind, peers, key, quorum, timers })
    }
}

fn socket_addr(name: &str, text: &str) -> Result<SocketAddr, ConfigError> {
    text.trim().parse().map_err(|_| field(name, quoted(text), "not an address:port (e.g. 192.0.2.1:7946)"))
}
