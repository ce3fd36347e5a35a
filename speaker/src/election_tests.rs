use rand::{RngExt as _, SeedableRng as _, rngs::StdRng};

use std::net::{IpAddr, Ipv4Addr};

use super::*;

fn vip(address: impl Into<std::net::IpAddr>, nodes: &[&str]) -> Vip {
    Vip {
        address: address.into(),
        interface: None,
        vlan: 0,
        nodes: nodes.iter().map(|n| n.to_string()).collect(),
    }
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| n.to_string()).collect()
}

#[test]
fn metallb_order() {
    // From `printf 'node-a#192.0.2.10' | sha256sum` and so on:
    //   node-c 39f2d7a8..., node-b 6e9fb809..., node-a d4b84135...  => node-c, then node-b.
    let address = Ipv4Addr::new(192, 0, 2, 10);
    let hex = |n: &str| rank(n, address.into()).iter().map(|b| format!("{b:02x}")).collect::<String>();
    assert_eq!(hex("node-a"), "d4b84135501a6622f43f01422f65d768d1a4637914be8add4e31f107336b8068");
    assert_eq!(hex("node-c"), "39f2d7a8f2401847a848a92e8435873a10a277cabe7bc275e797deb43bd7cd0c");
    assert_eq!(owner(address, ["node-a", "node-b", "node-c"]), Some("node-c"));
    assert_eq!(owner(address, ["node-a", "node-b"]), Some("node-b"));
    assert_eq!(owner(address, []), None);
}

#[test]
fn nodes_restrict_candidates() {
    let a: IpAddr = Ipv4Addr::new(192, 0, 2, 10).into();
    let alive = set(&["node-a", "node-b", "node-c"]);
    assert_eq!(owners(&[vip(a, &["node-c"])], &alive)[&a], "node-c");
    assert!(owners(&[vip(a, &["node-x"])], &alive).is_empty(), "no allowed member alive: no owner");
    assert_eq!(mine("node-c", &[vip(a, &["node-c"])], &alive), BTreeSet::from([a]));
    assert!(mine("node-b", &[vip(a, &["node-c"])], &alive).is_empty());
}

#[test]
fn quorum() {
    assert!(has_quorum(2, 3));
    assert!(!has_quorum(1, 3));
    assert!(!has_quorum(1, 2), "two nodes: one alone is not a majority");
    assert!(has_quorum(1, 1));
    assert!(has_quorum(3, 5) && !has_quorum(2, 4));
}

/// Seeded cases: a failure reproduces.
struct Gen(StdRng);

impl Gen {
    fn new(seed: u64) -> Self {
        Self(StdRng::seed_from_u64(seed))
    }

    fn below(&mut self, n: usize) -> usize {
        self.0.random_range(0..n)
    }

    /// 1 to 8 member names out of a pool of 12, and 1 to 40 addresses.
    fn case(&mut self) -> (BTreeSet<String>, Vec<Vip>) {
        let members: BTreeSet<String> =
            (0..1 + self.below(8)).map(|_| format!("node-{}", self.below(12))).collect();
        let vips = (0..1 + self.below(40)).map(|i| vip(Ipv4Addr::new(198, 51, 100, i as u8), &[])).collect();
        (members, vips)
    }
}

const CASES: usize = 2000;

#[test]
fn property_same_view_same_owner_everywhere() {
    let mut g = Gen::new(0x5eed_0001);
    for _ in 0..CASES {
        let (alive, vips) = g.case();
        // Every member computes its own share; together they cover each address exactly once.
        let mut claimed = BTreeMap::new();
        for me in &alive {
            for a in mine(me, &vips, &alive) {
                assert!(claimed.insert(a, me.clone()).is_none(), "{a} claimed twice in {alive:?}");
            }
        }
        let all: BTreeSet<_> = vips.iter().map(|v| v.address).collect();
        assert_eq!(claimed.keys().copied().collect::<BTreeSet<_>>(), all, "{alive:?}");
        // The order members are listed in does not matter.
        let reversed: Vec<&str> = alive.iter().rev().map(String::as_str).collect();
        for v in &vips {
            assert_eq!(owner(v.address, reversed.iter().copied()), Some(claimed[&v.address].as_str()));
        }
    }
}

#[test]
fn property_leaving_moves_only_its_own() {
    let mut g = Gen::new(0x5eed_0002);
    for _ in 0..CASES {
        let (alive, vips) = g.case();
        if alive.len() < 2 {
            continue;
        }
        let gone = alive.iter().nth(g.below(alive.len())).unwrap().clone();
        let mut after = alive.clone();
        after.remove(&gone);
        let (before, now) = (owners(&vips, &alive), owners(&vips, &after));
        for (a, owner) in &before {
            if *owner != gone {
                assert_eq!(now[a], *owner, "{a} moved off {owner} when {gone} left");
            } else {
                assert_ne!(now[a], gone);
            }
        }
    }
}

#[test]
fn property_joining_takes_only_what_it_wins() {
    let mut g = Gen::new(0x5eed_0003);
    for _ in 0..CASES {
        let (alive, vips) = g.case();
        let joiner = format!("node-{}", 100 + g.below(5));
        let mut after = alive.clone();
        after.insert(joiner.clone());
        let (before, now) = (owners(&vips, &alive), owners(&vips, &after));
        for (a, owner) in &now {
            if *owner != joiner {
                assert_eq!(before[a], *owner, "{a} moved between old members when {joiner} joined");
            }
        }
    }
}

#[test]
fn property_the_heir_is_who_owns_once_the_owner_is_gone() {
    let mut g = Gen::new(0x5eed_0004);
    for _ in 0..CASES {
        let (alive, vips) = g.case();
        for (address, (owner, heir)) in successions(&vips, &alive) {
            let mut after = alive.clone();
            after.remove(owner);
            assert_eq!(owners(&vips, &after).get(&address).copied(), heir, "{address} in {alive:?}");
        }
        // What one member's heirs are, they inherit from it.
        for me in &alive {
            for heir in succession(me, &vips, &alive).heirs {
                assert!(succession(&heir, &vips, &alive).owners.contains(me), "{heir} inherits from {me}");
            }
        }
    }
}

#[test]
fn property_every_member_is_watched_by_those_it_beats_to_who_know_its_heirs() {
    let mut g = Gen::new(0x5eed_0005);
    for _ in 0..CASES {
        let (alive, vips) = g.case();
        let all: BTreeMap<&String, Succession> =
            alive.iter().map(|me| (me, succession(me, &vips, &alive))).collect();
        for (me, mine) in &all {
            // Beats go where they are watched for, and every member is watched (but one alone).
            assert_eq!(mine.watchers.len(), WATCHERS.min(alive.len() - 1), "{me} in {alive:?}");
            for watcher in &mine.watchers {
                let theirs = &all[watcher].watched;
                assert!(theirs.contains_key(*me), "{watcher} watches {me}");
                // The watcher's verdict reaches every heir of the member's addresses but itself.
                let heirs: BTreeSet<String> = mine.heirs.iter().filter(|h| *h != watcher).cloned().collect();
                assert_eq!(theirs[*me], heirs, "{watcher} knows {me}'s heirs");
            }
            for watched in mine.watched.keys() {
                assert!(all[watched].watchers.contains(*me), "{watched} beats to {me}");
            }
        }
    }
}

#[test]
fn the_heir_follows_preferences_too() {
    // sha256 order for 192.0.2.10: node-c, node-b, node-a.
    let a = Ipv4Addr::new(192, 0, 2, 10);
    assert_eq!(
        succession_preferring(a, [("node-a", 0), ("node-b", 0), ("node-c", 0)]),
        Some(("node-c", Some("node-b")))
    );
    assert_eq!(
        succession_preferring(a, [("node-a", 5), ("node-b", 0), ("node-c", 0)]),
        Some(("node-a", Some("node-c")))
    );
    assert_eq!(succession_preferring(a, [("node-b", 0), ("node-a", 1)]), Some(("node-a", Some("node-b"))));
    assert_eq!(succession_preferring(a, [("node-b", 0)]), Some(("node-b", None)));
    assert_eq!(succession_preferring(a, std::iter::empty()), None);
    let mut s = Succession::default();
    s.note("node-c", "node-c", Some("node-b"));
    s.note("node-c", "node-a", Some("node-c"));
    s.note("node-c", "node-a", Some("node-b"));
    s.note("node-c", "node-c", None);
    assert_eq!(s.heirs, set(&["node-b"]));
    assert_eq!(s.owners, set(&["node-a"]));
}
