//! Who announces each address: computed by every speaker alone, from its own view of the live
//! members, so that the same view gives the same answer everywhere. MetalLB's rule: the
//! candidates sorted by sha256(node name + "#" + address), the first one wins.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, Ipv4Addr},
};

use sha2::{Digest, Sha256};

use crate::config::Vip;

/// The winner among `candidates` for `address`, if there is any candidate.
pub fn owner<'a>(
    address: impl Into<IpAddr>,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    owner_preferring(address, candidates.into_iter().map(|node| (node, 0)))
}

/// The winner among `candidates` (with their preference scores) for `address`: the highest
/// score first, then the sha256 order (MetalLB's `preferredNodeSelectors`).
pub fn owner_preferring<'a>(
    address: impl Into<IpAddr>,
    candidates: impl IntoIterator<Item = (&'a str, i64)>,
) -> Option<&'a str> {
    let address = address.into();
    candidates
        .into_iter()
        .min_by_key(|(node, score)| (std::cmp::Reverse(*score), rank(node, address), *node))
        .map(|(node, _)| node)
}

fn rank(node: &str, address: IpAddr) -> [u8; 32] {
    Sha256::digest(format!("{node}#{address}")).into()
}

/// Whether `alive` members (this one included) are a strict majority of `configured`.
pub fn has_quorum(alive: usize, configured: usize) -> bool {
    alive * 2 > configured
}

/// The owner of every configured address, given the live members: candidates are the live
/// members the address's `nodes` allow (all of them when it names none). An address with no
/// candidate has no owner.
pub fn owners<'a>(vips: &[Vip], alive: &'a BTreeSet<String>) -> BTreeMap<Ipv4Addr, &'a str> {
    let mut out = BTreeMap::new();
    for vip in vips {
        let allowed = alive
            .iter()
            .map(String::as_str)
            .filter(|n| vip.nodes.is_empty() || vip.nodes.iter().any(|a| a == n));
        if let Some(winner) = owner(vip.address, allowed) {
            // An address listed twice (on two interfaces) keeps the first entry's owner.
            out.entry(vip.address).or_insert(winner);
        }
    }
    out
}

/// The addresses `me` announces.
pub fn mine(me: &str, vips: &[Vip], alive: &BTreeSet<String>) -> BTreeSet<Ipv4Addr> {
    owners(vips, alive).into_iter().filter(|(_, owner)| *owner == me).map(|(a, _)| a).collect()
}

#[cfg(test)]
#[path = "election_tests.rs"]
mod tests;
