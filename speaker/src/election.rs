//! Who announces each address: computed by every speaker alone, from its own view of the live
//! members, so that the same view gives the same answer everywhere. MetalLB's rule: the
//! candidates sorted by sha256(node name + "#" + address), the first one wins.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
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
    succession_preferring(address, candidates).map(|(owner, _)| owner)
}

/// The winner for `address` as [`owner_preferring`] picks it, and its heir: the one that wins
/// were the owner gone (the next in the same order).
pub fn succession_preferring<'a>(
    address: impl Into<IpAddr>,
    candidates: impl IntoIterator<Item = (&'a str, i64)>,
) -> Option<(&'a str, Option<&'a str>)> {
    let address = address.into();
    let key = |node: &'a str, score: i64| (std::cmp::Reverse(score), rank(node, address), node);
    let (mut first, mut second) = (None, None);
    for (node, score) in candidates {
        let k = key(node, score);
        if first.as_ref().is_none_or(|f| k < *f) {
            second = first.replace(k);
        } else if second.as_ref().is_none_or(|s| k < *s) {
            second = Some(k);
        }
    }
    first.map(|(_, _, owner)| (owner, second.map(|(_, _, heir)| heir)))
}

/// How many members watch each one for the others (see [`Succession::watchers`]).
pub const WATCHERS: usize = 1;

/// Who takes over from whom, and who watches whom, as far as one node is concerned, in one view
/// of the live members. The members watch each other on a ring (each one beats to the next
/// [`WATCHERS`]), so that a node's cost does not grow with the cluster or with how its
/// addresses spread; a watcher that finds a member failed tells the heirs of its addresses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Succession {
    /// The heirs of the addresses this node owns: told at once when it leaves.
    pub heirs: BTreeSet<String>,
    /// The owners of the addresses this node is heir to: a watcher's word that one failed is
    /// its cue to take over.
    pub owners: BTreeSet<String>,
    /// The members that watch this one: it beats to them.
    pub watchers: BTreeSet<String>,
    /// The members this one watches, each with the heirs of its addresses (its verdict goes to
    /// them).
    pub watched: BTreeMap<String, BTreeSet<String>>,
}

impl Succession {
    /// `me`'s place on the ring of `alive` (`me` among them), with no addresses noted yet. The
    /// ring orders the names by sha256, so that members close in name (often in a rack) are not
    /// close on it.
    pub fn on_ring(me: &str, alive: &BTreeSet<String>) -> Self {
        let mut ring: Vec<([u8; 32], &str)> =
            alive.iter().map(|name| (Sha256::digest(name).into(), name.as_str())).collect();
        ring.sort_unstable();
        let mut out = Self::default();
        let n = ring.len();
        let Some(at) = ring.iter().position(|(_, name)| *name == me) else { return out };
        for d in 1..=WATCHERS.min(n.saturating_sub(1)) {
            out.watchers.insert(ring[(at + d) % n].1.to_owned());
            out.watched.insert(ring[(at + n - d) % n].1.to_owned(), BTreeSet::new());
        }
        out
    }

    /// Takes in one address's `owner` and `heir`, as seen from `me`.
    pub fn note(&mut self, me: &str, owner: &str, heir: Option<&str>) {
        let Some(heir) = heir else { return };
        if owner == me {
            self.heirs.insert(heir.to_owned());
        } else if heir == me {
            self.owners.insert(owner.to_owned());
        }
        if let Some(heirs) = self.watched.get_mut(owner)
            && heir != me
            && !heirs.contains(heir)
        {
            heirs.insert(heir.to_owned());
        }
    }
}

/// A node's place in `address`'s order: sha256 of "node#address", compared as bytes (MetalLB's
/// rule). Hashed in pieces: a pass ranks up to a node count times a Service count.
pub fn rank(node: &str, address: IpAddr) -> [u8; 32] {
    use std::io::Write as _;
    // The longest address text (an IPv4-mapped IPv6 address) is 45 bytes.
    let mut text = [0u8; 48];
    let mut cursor = std::io::Cursor::new(&mut text[..]);
    write!(cursor, "{address}").expect("an address's text fits 48 bytes");
    let len = usize::try_from(cursor.position()).expect("at most 48");
    Sha256::new().chain_update(node).chain_update(b"#").chain_update(&text[..len]).finalize().into()
}

/// Whether `alive` members (this one included) are a strict majority of `configured`.
pub fn has_quorum(alive: usize, configured: usize) -> bool {
    alive * 2 > configured
}

/// The owner of every configured address, given the live members: candidates are the live
/// members the address's `nodes` allow (all of them when it names none). An address with no
/// candidate has no owner.
pub fn owners<'a>(vips: &[Vip], alive: &'a BTreeSet<String>) -> BTreeMap<IpAddr, &'a str> {
    successions(vips, alive).into_iter().map(|(address, (owner, _))| (address, owner)).collect()
}

/// The owner and the heir of every configured address (see [`owners`]).
fn successions<'a>(
    vips: &[Vip],
    alive: &'a BTreeSet<String>,
) -> BTreeMap<IpAddr, (&'a str, Option<&'a str>)> {
    let mut out = BTreeMap::new();
    for vip in vips {
        let allowed = alive
            .iter()
            .map(String::as_str)
            .filter(|n| vip.nodes.is_empty() || vip.nodes.iter().any(|a| a == n))
            .map(|n| (n, 0));
        if let Some(winners) = succession_preferring(vip.address, allowed) {
            // An address listed twice (on two interfaces) keeps the first entry's owner.
            out.entry(vip.address).or_insert(winners);
        }
    }
    out
}

/// `me`'s succession (see [`Succession`]) for the configured addresses.
pub fn succession(me: &str, vips: &[Vip], alive: &BTreeSet<String>) -> Succession {
    let mut out = Succession::on_ring(me, alive);
    for (owner, heir) in successions(vips, alive).into_values() {
        out.note(me, owner, heir);
    }
    out
}

/// The addresses `me` announces.
pub fn mine(me: &str, vips: &[Vip], alive: &BTreeSet<String>) -> BTreeSet<IpAddr> {
    owners(vips, alive).into_iter().filter(|(_, owner)| *owner == me).map(|(a, _)| a).collect()
}

#[cfg(test)]
#[path = "election_tests.rs"]
mod tests;
