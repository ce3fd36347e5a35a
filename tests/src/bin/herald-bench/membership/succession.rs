//! Who inherits from whom: MetalLB's election (`herald_speaker::election`) over the simulated
//! cluster's addresses, every node a candidate for every address.

use std::{
    collections::{BTreeSet, HashMap},
    net::{IpAddr, Ipv6Addr},
};

use herald_speaker::election;

/// One node's side of the election, by node index.
#[derive(Clone, Debug, Default)]
pub struct Side {
    /// The heirs of the addresses it owns: it beats to them.
    pub heirs: BTreeSet<usize>,
    /// The owners of the addresses it is heir to: it watches them.
    pub owners: BTreeSet<usize>,
}

/// Node `i`'s name.
pub fn name(i: usize) -> String {
    format!("node-{i}")
}

/// Every node's side, for `addresses` addresses among `nodes` nodes.
pub fn sides(nodes: usize, addresses: usize) -> Vec<Side> {
    let addresses =
        (0..addresses).map(|a| Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, (a >> 16) as u16, a as u16));
    sides_of(nodes, addresses.map(IpAddr::from))
}

/// Every node's side, for `addresses` among `nodes` nodes.
pub fn sides_of(nodes: usize, addresses: impl IntoIterator<Item = IpAddr>) -> Vec<Side> {
    let names: Vec<String> = (0..nodes).map(name).collect();
    let index: HashMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (n.as_str(), i)).collect();
    let mut sides = vec![Side::default(); nodes];
    for address in addresses {
        let candidates = names.iter().map(|n| (n.as_str(), 0));
        if let Some((owner, Some(heir))) = election::succession_preferring(address, candidates) {
            let (owner, heir) = (index[owner], index[heir]);
            sides[owner].heirs.insert(heir);
            sides[heir].owners.insert(owner);
        }
    }
    sides
}
