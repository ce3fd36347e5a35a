//! The decisions as the rules read, with nothing kept and nothing indexed: every candidate of
//! every Service ranked on every pass. The tests hold [`super::Decider`] to it, and
//! `cargo xtask bench decide` times it beside the Decider.

use std::collections::{BTreeMap, BTreeSet};

use herald_kube::crd::L2AdvertisementSpec;

use super::{Assignment, LoadBalancer, Snapshot, any_or_empty, assignments, covering, preference, sharing};
use crate::{candidates, election};

/// [`super::assign`], computed directly.
pub fn assign(snapshot: &Snapshot, live: &BTreeSet<String>) -> Vec<Assignment> {
    let considered: Vec<(&LoadBalancer, Vec<&L2AdvertisementSpec>)> = snapshot
        .services
        .iter()
        .filter_map(|svc| {
            let ads = covering(snapshot, svc)?;
            Some((svc, ads.iter().map(|&i| &snapshot.advertisements[i].1).collect()))
        })
        .collect();
    let services: Vec<&LoadBalancer> = considered.iter().map(|(svc, _)| *svc).collect();
    let mut out = Vec::new();
    for group in sharing(&services) {
        // Candidates of every member, their preferences summed.
        let mut scored: Option<BTreeMap<&str, i64>> = None;
        for &i in &group.members {
            let (svc, ads) = &considered[i];
            let selects =
                |node: &candidates::Node| ads.iter().any(|ad| any_or_empty(&ad.node_selectors, &node.labels));
            let mine: BTreeMap<&str, i64> =
                candidates::candidates(&svc.traffic, &snapshot.nodes, live, selects)
                    .into_iter()
                    .map(|name| (name, preference(ads, node(snapshot, name))))
                    .collect();
            scored = Some(match scored {
                None => mine,
                Some(mut all) => {
                    all.retain(|node, _| mine.contains_key(node));
                    all.iter_mut().for_each(|(node, score)| *score += mine[node]);
                    all
                }
            });
        }
        let scored = scored.expect("a group has a member");
        let Some((owner, heir)) = election::succession_preferring(group.key, scored) else { continue };
        for &i in &group.members {
            let (svc, ads) = &considered[i];
            out.extend(assignments(snapshot, svc, ads, node(snapshot, owner), owner, heir));
        }
    }
    out
}

fn node<'a>(snapshot: &'a Snapshot, name: &str) -> Option<&'a candidates::Node> {
    snapshot.nodes.iter().find(|n| n.name == name)
}
