//! Pure decisions of standalone mode: the (address, interface, VLAN) entries the config asks of
//! this host, and the part of them this node announces among the live members.

use std::collections::BTreeSet;

use crate::{
    announcement::Announcement,
    carriers::{Interfaces, carriers},
    config::{Config, ConfigError},
    election,
    host::Host,
};

/// The announcements `config` asks for on `host`, or the first reason it cannot be served.
/// Addresses whose `nodes` leave this node out are skipped. Which interfaces may carry an
/// address is the rule both modes share ([`carriers`]).
pub fn resolve(config: &Config, host: &Host) -> Result<BTreeSet<Announcement>, ConfigError> {
    let mut out = BTreeSet::new();
    for (i, vip) in config.vips.iter().enumerate() {
        // An address this node may never announce needs nothing of this host: the same file
        // can then serve every node, whatever interfaces each has.
        if !vip.nodes.is_empty() && !vip.nodes.contains(&config.node) {
            continue;
        }
        let wanted = match &vip.interface {
            Some(name) => Interfaces::Named(BTreeSet::from([name.clone()])),
            None => Interfaces::Subnet,
        };
        let found = carriers(host, vip.address, vip.vlan, &wanted).map_err(|refusal| ConfigError::Field {
            field: format!("vip[{i}].address"),
            value: vip.address.to_string(),
            reason: refusal.to_string(),
        })?;
        out.extend(found);
    }
    Ok(out)
}

/// The part of `resolved` (every announcement the config asks of this host) that this node
/// makes. Without a cluster: all of it. With one: what it wins among the live members, nothing
/// before it has joined (`alive` is `None`), and in quorum mode nothing while fewer than a
/// majority of the configured members are alive.
pub fn elected(
    config: &Config,
    resolved: &BTreeSet<Announcement>,
    alive: Option<&BTreeSet<String>>,
) -> BTreeSet<Announcement> {
    let Some(cluster) = &config.cluster else {
        return resolved.clone();
    };
    let Some(alive) = alive else {
        return BTreeSet::new();
    };
    if cluster.quorum && !election::has_quorum(alive.len(), cluster.configured_members()) {
        return BTreeSet::new();
    }
    let mine = election::mine(&config.node, &config.vips, alive);
    resolved.iter().filter(|a| mine.contains(&a.addr)).cloned().collect()
}

#[cfg(test)]
#[path = "desired_tests.rs"]
mod tests;
