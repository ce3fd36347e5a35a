use super::*;

const MAC0: [u8; 6] = [2, 0, 0, 0, 0, 1];
const MAC1: [u8; 6] = [2, 0, 0, 0, 0, 2];

fn ann(addr: [u8; 4], ifindex: u32, vlan: u16, mac: [u8; 6], ifname: &str) -> Announcement {
    Announcement { addr: addr.into(), ifindex, vlan, mac, ifname: ifname.into() }
}

#[test]
fn diff_keeps_what_stays() {
    let a = ann([192, 0, 2, 10], 2, 0, MAC0, "eth0");
    let b = ann([192, 0, 2, 11], 2, 0, MAC0, "eth0");
    let c = ann([192, 0, 2, 12], 2, 0, MAC0, "eth0");
    let current = BTreeSet::from([a.clone(), b.clone()]);
    let desired = BTreeSet::from([b.clone(), c.clone()]);
    assert_eq!(diff(&current, &desired), Diff { withdraw: vec![a], announce: vec![c] });
    assert_eq!(diff(&desired, &desired), Diff::default());
    // A changed MAC (interface replaced) is a withdraw plus an announce.
    let b2 = Announcement { mac: MAC1, ..b.clone() };
    let d = diff(&BTreeSet::from([b.clone()]), &BTreeSet::from([b2.clone()]));
    assert_eq!(d, Diff { withdraw: vec![b], announce: vec![b2] });
}

#[test]
fn interfaces_in_use() {
    let set = BTreeSet::from([
        ann([192, 0, 2, 10], 2, 0, MAC0, "eth0"),
        ann([192, 0, 2, 11], 2, 0, MAC0, "eth0"),
        ann([198, 51, 100, 9], 3, 0, MAC1, "eth1"),
    ]);
    assert_eq!(interfaces(&set), BTreeSet::from([(2, "eth0".into()), (3, "eth1".into())]));
}
