//! The election order of each address, kept from pass to pass. Ranking a node for an address
//! is a sha256 (MetalLB's rule), and a pass over 10,000 Services and 1,000 nodes would hash ten
//! million times. So each address keeps the first nodes of its order among every node seen: a
//! pass takes the first candidates there, ranks only the nodes that came since, and ranks every
//! candidate anew only when too few of those first are candidates (most of them gone at once, or
//! selectors that leave out most nodes).

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
};

use crate::{candidates::Node, election};

/// How many of each address's first nodes are kept. The two first candidates are among them
/// unless KEPT - 1 of them are gone or not candidates.
const KEPT: usize = 8;

/// Every node name seen, numbered in order of arrival, and each address's first nodes.
#[derive(Debug, Default)]
pub struct Orders {
    names: Vec<String>,
    ids: HashMap<String, u32>,
    by_address: HashMap<IpAddr, Order>,
    /// The pass under way: orders no pass reads are dropped at its end.
    pass: u64,
    /// Ranks computed, ever.
    ranks: usize,
}

#[derive(Debug)]
struct Order {
    /// The nodes numbered below this are ranked in `first`.
    through: u32,
    /// The first nodes of the order: the leading 16 bytes of their rank, and their number;
    /// ascending, at most [`KEPT`].
    first: Vec<(u128, u32)>,
    /// Two ranks share their leading 16 bytes: the order is decided on whole ranks instead.
    tied: bool,
    read: u64,
}

impl Orders {
    /// Starts a pass over `nodes`: new names are numbered. When a fifth more names than nodes
    /// are held (nodes replaced over time), the names of nodes gone are forgotten.
    pub fn begin(&mut self, nodes: &[Node]) {
        if self.names.len() > nodes.len() + nodes.len() / 4 + 16 {
            self.forget_gone(nodes);
        }
        for node in nodes {
            if !self.ids.contains_key(&node.name) {
                let id = u32::try_from(self.names.len()).expect("fewer than 2^32 nodes");
                self.ids.insert(node.name.clone(), id);
                self.names.push(node.name.clone());
            }
        }
        self.pass += 1;
    }

    /// Forgets the names of nodes gone and numbers the others anew, in the same order. Each
    /// order keeps those of its first nodes that remain: still the first among the nodes it
    /// ranked, fewer of them ([`Order::eroded`] ones are ranked again when next read).
    fn forget_gone(&mut self, nodes: &[Node]) {
        let present: HashSet<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
        let mut renumbered: Vec<Option<u32>> = Vec::with_capacity(self.names.len());
        let mut kept = 0;
        for name in &self.names {
            let stays = present.contains(name.as_str());
            renumbered.push(stays.then_some(kept));
            kept += u32::from(stays);
        }
        self.names.retain(|name| present.contains(name.as_str()));
        self.ids = self.names.iter().zip(0..).map(|(name, id)| (name.clone(), id)).collect();
        for order in self.by_address.values_mut() {
            let below = &renumbered[..order.through as usize];
            order.through = below.iter().flatten().count() as u32;
            order.first.retain_mut(|(_, id)| renumbered[*id as usize].map(|new| *id = new).is_some());
        }
    }

    /// Ends a pass: orders of addresses it did not elect are dropped.
    pub fn end(&mut self) {
        let pass = self.pass;
        self.by_address.retain(|_, order| order.read == pass);
    }

    pub fn id(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }

    pub fn name(&self, id: u32) -> &str {
        &self.names[id as usize]
    }

    /// How many nodes are numbered.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// The first two nodes in `address`'s order that `wanted` accepts, as far as its kept first
    /// nodes tell: `None` in a place means not among them (there may be such a node further on,
    /// unranked here). `None` in all: the order is not known exactly; rank directly.
    pub fn leading(&mut self, address: IpAddr, wanted: impl Fn(u32) -> bool) -> Option<[Option<u32>; 2]> {
        let (names, pass) = (&self.names, self.pass);
        let order = self.by_address.entry(address).or_insert_with(|| Order::new(pass));
        order.read = pass;
        if order.eroded() {
            *order = Order::new(pass);
        }
        self.ranks += order.rank_up_to(names, address);
        if order.tied {
            return None;
        }
        let mut found = order.first.iter().map(|&(_, id)| id).filter(|&id| wanted(id));
        Some([found.next(), found.next()])
    }

    /// Whether `address` has an order.
    pub fn has(&self, address: IpAddr) -> bool {
        self.by_address.contains_key(&address)
    }

    /// How many ranks were computed so far, ever.
    pub fn ranks(&self) -> usize {
        self.ranks
    }

    /// Keeps `address`'s order through this pass though it was not read (its candidates were
    /// ranked directly, as when this node asks what it could hold were it alone).
    pub fn keep(&mut self, address: IpAddr) {
        if let Some(order) = self.by_address.get_mut(&address) {
            order.read = self.pass;
        }
    }

    /// The bytes the orders hold (for the benchmark).
    pub fn footprint(&self) -> usize {
        let per_order =
            std::mem::size_of::<(IpAddr, Order)>() + (KEPT + 1) * std::mem::size_of::<(u128, u32)>();
        let names: usize = self.names.iter().map(|n| 2 * n.len() + 24 + 32).sum();
        self.by_address.capacity() * per_order + names
    }
}

impl Order {
    /// Nothing ranked yet; read in `pass`.
    fn new(pass: u64) -> Self {
        Self { through: 0, first: Vec::with_capacity(KEPT + 1), tied: false, read: pass }
    }

    /// Names forgotten took most of its first nodes: fewer than half of [`KEPT`] remain of
    /// more ranked, and a node or two gone would leave too few to elect from.
    fn eroded(&self) -> bool {
        self.first.len() < KEPT / 2 && self.through as usize >= KEPT
    }

    /// Ranks the nodes numbered since the last pass into `first`; says how many.
    fn rank_up_to(&mut self, names: &[String], address: IpAddr) -> usize {
        let upto = u32::try_from(names.len()).expect("fewer than 2^32 nodes");
        for id in self.through..upto {
            let rank = election::rank(&names[id as usize], address);
            let lead = u128::from_be_bytes(rank[..16].try_into().expect("16 of 32 bytes"));
            let at = self.first.partition_point(|&(r, _)| r < lead);
            if at < KEPT {
                self.tied |= self.first.get(at).is_some_and(|&(r, _)| r == lead);
                self.first.insert(at, (lead, id));
                self.first.truncate(KEPT);
            }
        }
        let ranked = (upto - self.through) as usize;
        self.through = upto;
        ranked
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn nodes(count: usize) -> Vec<Node> {
        (0..count).map(|i| Node { name: format!("node-{i}"), ..Default::default() }).collect()
    }

    /// The kept order agrees with ranking every candidate, as nodes come and candidates change.
    #[test]
    fn kept_orders_agree_with_ranking_every_candidate() {
        let mut orders = Orders::default();
        let mut all = nodes(5);
        let mut decided = 0;
        for step in 0..40usize {
            if step % 4 == 0 {
                all.extend(nodes(5 + step).into_iter().skip(all.len()));
            }
            orders.begin(&all);
            for a in 0..20u8 {
                let address = IpAddr::from([192, 0, 2, a]);
                // Every third node of a shifting pattern is no candidate.
                let candidates: BTreeSet<u32> = (0..all.len())
                    .filter(|i| (i + step + usize::from(a)) % 3 != 0)
                    .map(|i| orders.id(&all[i].name).unwrap())
                    .collect();
                let direct = election::succession_preferring(
                    address,
                    candidates.iter().map(|&id| (orders.name(id), 0)),
                )
                .map(|(o, h)| (orders.id(o).unwrap(), h.map(|h| orders.id(h).unwrap())));
                let kept = match orders.leading(address, |id| candidates.contains(&id)) {
                    Some([Some(owner), heir @ Some(_)]) => Some((owner, heir)),
                    Some([Some(owner), None]) if candidates.len() == 1 => Some((owner, None)),
                    _ => None,
                };
                if let Some(kept) = kept {
                    assert_eq!(Some(kept), direct, "step {step}, {address}");
                    decided += 1;
                }
            }
            orders.end();
        }
        assert!(decided > 700, "the kept orders decided only {decided} of 800 elections");
    }

    #[test]
    fn unread_orders_are_dropped() {
        let mut orders = Orders::default();
        orders.begin(&nodes(3));
        let address = IpAddr::from([192, 0, 2, 1]);
        orders.leading(address, |_| true).unwrap();
        orders.end();
        orders.begin(&nodes(3));
        orders.keep(address);
        orders.end();
        assert_eq!(orders.by_address.len(), 1, "an order kept through a pass that ranked directly");
        orders.begin(&nodes(3));
        orders.end();
        assert!(orders.by_address.is_empty(), "an address no pass elects keeps no order");
    }

    /// Nodes replaced two at a time, a hundred times over: the names of those gone are
    /// forgotten, and the kept orders, renumbered, still elect as ranking every candidate does.
    #[test]
    fn replaced_nodes_are_forgotten_and_the_orders_stay_right() {
        let mut orders = Orders::default();
        let mut present = nodes(24);
        let (mut decided, mut elections) = (0, 0);
        for round in 0..100usize {
            for i in 0..2 {
                present.remove((round * 7 + i) % present.len());
                present.push(Node { name: format!("round-{round}-{i}"), ..Default::default() });
            }
            orders.begin(&present);
            assert!(orders.len() <= 24 + 6 + 16 + 2, "round {round}: {} names held", orders.len());
            for a in 0..10u8 {
                let address = IpAddr::from([192, 0, 2, a]);
                let ids: BTreeSet<u32> = present.iter().map(|n| orders.id(&n.name).unwrap()).collect();
                let direct =
                    election::succession_preferring(address, ids.iter().map(|&id| (orders.name(id), 0)))
                        .map(|(o, h)| (orders.id(o).unwrap(), h.map(|h| orders.id(h).unwrap())));
                elections += 1;
                if let Some([Some(owner), heir @ Some(_)]) = orders.leading(address, |id| ids.contains(&id)) {
                    assert_eq!(Some((owner, heir)), direct, "round {round}, {address}");
                    decided += 1;
                }
            }
            orders.end();
        }
        assert!(decided * 10 > elections * 9, "the kept orders decided only {decided} of {elections}");
    }
}
