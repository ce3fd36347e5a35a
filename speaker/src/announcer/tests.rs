//! The announcer's rules over an in-memory datapath and frame sender: no root, no kernel.

use std::{
    collections::{BTreeMap, BTreeSet},
    io,
    sync::Mutex,
    time::Duration,
};

use super::*;
use crate::{
    datapath::{Hook, Placed},
    pinned::Entry,
};

/// A datapath in memory, whose operations fail where a test says.
#[derive(Default)]
struct FakeDatapath {
    map: BTreeMap<Key, [u8; 6]>,
    attached: BTreeSet<u32>,
    /// Removals of these keys fail this many more times.
    failing_removes: BTreeMap<Key, u32>,
    /// Inserts of these keys fail.
    failing_inserts: BTreeSet<Key>,
    /// These interfaces refuse the responder.
    failing_attaches: BTreeSet<u32>,
    /// Every key removed, in order.
    removed: Vec<Key>,
    peers: BTreeSet<[u8; 6]>,
    elsewhere: BTreeSet<std::net::Ipv4Addr>,
    /// Times the offloads were checked.
    offload_checks: u32,
}

fn refused() -> DatapathError {
    DatapathError::Missing("a test's refusal")
}

impl Responder for FakeDatapath {
    fn attach(&mut self, ifindex: u32, _: &str) -> Result<Hook, DatapathError> {
        if self.failing_attaches.contains(&ifindex) {
            return Err(refused());
        }
        self.attached.insert(ifindex);
        Ok(Hook::Tc)
    }
    fn detach(&mut self, ifindex: u32) -> Result<(), DatapathError> {
        self.attached.remove(&ifindex);
        Ok(())
    }
    fn is_attached(&self, ifindex: u32) -> bool {
        self.attached.contains(&ifindex)
    }
    fn hook(&self, ifindex: u32) -> Option<Placed> {
        self.attached.contains(&ifindex).then_some(Placed { hook: Hook::Tc, why: None })
    }
    fn insert(&mut self, key: &Key, mac: [u8; 6]) -> Result<(), DatapathError> {
        if self.failing_inserts.contains(key) {
            return Err(refused());
        }
        self.map.insert(*key, mac);
        Ok(())
    }
    fn remove(&mut self, key: &Key) -> Result<(), DatapathError> {
        if let Some(n) = self.failing_removes.get_mut(key).filter(|n| **n > 0) {
            *n -= 1;
            return Err(refused());
        }
        self.map.remove(key);
        self.removed.push(*key);
        Ok(())
    }
    fn set_peers(&mut self, macs: &PeerMacs) -> Result<(), DatapathError> {
        self.peers = macs.clone();
        Ok(())
    }
    fn entries(&self) -> Result<Vec<Entry>, DatapathError> {
        Ok(Vec::new())
    }
    fn conflicts_total(&self) -> Result<u64, DatapathError> {
        Ok(0)
    }
    fn set_elsewhere(&mut self, addresses: &BTreeSet<std::net::Ipv4Addr>) -> Result<(), DatapathError> {
        self.elsewhere = addresses.clone();
        Ok(())
    }
    fn hold_offloads(&mut self) -> Vec<String> {
        self.offload_checks += 1;
        Vec::new()
    }
}

/// Frames in memory: (interface, frame) in the order sent.
#[derive(Default)]
struct FakeFrames(Mutex<Vec<(u32, Vec<u8>)>>);

impl Frames for FakeFrames {
    fn send(&self, ifindex: u32, frame: &[u8]) -> io::Result<()> {
        self.0.lock().unwrap().push((ifindex, frame.to_vec()));
        Ok(())
    }
}

const MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const OTHER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const QUIET: Gratuitous =
    Gratuitous { count: 0, interval: std::time::Duration::from_millis(10), refresh: None };

fn a(last: u8, ifindex: u32) -> Announcement {
    Announcement {
        addr: [192, 0, 2, last].into(),
        ifindex,
        vlan: 0,
        mac: MAC,
        ifname: format!("eth{ifindex}"),
    }
}

fn set(list: &[Announcement]) -> BTreeSet<Announcement> {
    list.iter().cloned().collect()
}

fn announcer() -> Announcer<FakeDatapath, FakeFrames> {
    Announcer::new(FakeDatapath::default(), FakeFrames::default(), Arc::new(Metrics::default()))
}

#[tokio::test]
async fn a_failed_removal_is_kept_and_tried_again() {
    let mut ann = announcer();
    ann.apply(set(&[a(10, 2), a(11, 3)]), QUIET, None);
    ann.datapath.failing_removes.insert(a(11, 3).key(), 2);

    // The election gives .11 away, but its entry cannot be removed: it still answers, so it
    // is not forgotten, and its interface keeps the responder.
    ann.apply(set(&[a(10, 2)]), QUIET, None);
    assert!(ann.datapath.map.contains_key(&a(11, 3).key()));
    assert_eq!(ann.stale(), &set(&[a(11, 3)]));
    assert!(ann.datapath.is_attached(3), "the interface of a stale entry stays attached");

    assert!(!ann.settle(), "the second removal fails too");
    assert!(ann.datapath.is_attached(3));
    assert!(ann.settle(), "the third removes it");
    assert!(!ann.datapath.map.contains_key(&a(11, 3).key()));
    assert!(ann.stale().is_empty());
    assert!(!ann.datapath.is_attached(3), "then the responder leaves the interface");
    assert!(ann.datapath.is_attached(2));
}

#[tokio::test]
async fn a_stale_entry_announced_again_is_no_longer_stale() {
    let mut ann = announcer();
    ann.apply(set(&[a(10, 2)]), QUIET, None);
    ann.datapath.failing_removes.insert(a(10, 2).key(), 1);
    ann.apply(set(&[]), QUIET, None);
    assert_eq!(ann.stale().len(), 1);
    ann.apply(set(&[a(10, 2)]), QUIET, None);
    assert!(ann.stale().is_empty());
    assert!(ann.settle());
    assert!(ann.datapath.map.contains_key(&a(10, 2).key()), "settling left the wanted entry alone");
}

/// The node loses .10 and gains .11 (on eth3, which refuses the responder) and .12 (whose
/// insert fails) and .13: the loss and the good gain are applied, the others are left out,
/// reported and tried again, and nothing else waits for them.
#[tokio::test]
async fn losses_never_wait_for_gains() {
    let mut ann = announcer();
    ann.apply(set(&[a(10, 2)]), QUIET, None);
    ann.datapath.failing_attaches.insert(3);
    ann.datapath.failing_inserts.insert(a(12, 2).key());
    let changed = ann.apply(set(&[a(11, 3), a(12, 2), a(13, 2)]), QUIET, None);
    assert_eq!(changed, 2, "the loss of .10 and the gain of .13");
    assert_eq!(ann.datapath.map.keys().copied().collect::<Vec<_>>(), [a(13, 2).key()]);
    assert_eq!(ann.current(), &set(&[a(13, 2)]), "what the map holds, no more");
    assert_eq!(ann.failed().keys().cloned().collect::<BTreeSet<_>>(), set(&[a(11, 3), a(12, 2)]));
    assert!(ann.failed()[&a(11, 3)].contains("a test's refusal"), "{:?}", ann.failed());
    assert_eq!(ann.metrics.not_announced.get(), 2);
    assert!(!ann.datapath.is_attached(3));

    // Tried again at the next housekeeping after RETRY_EVERY: what works now goes in.
    ann.datapath.failing_attaches.clear();
    assert!(!ann.tidy(), "not yet");
    ann.retry_at = Some(Instant::now());
    assert!(ann.tidy());
    assert_eq!(ann.current(), &set(&[a(11, 3), a(13, 2)]));
    assert_eq!(ann.failed().keys().cloned().collect::<Vec<_>>(), [a(12, 2)]);
    ann.datapath.failing_inserts.clear();
    ann.retry_at = Some(Instant::now());
    assert!(ann.tidy());
    assert!(ann.failed().is_empty() && ann.retry_at.is_none());
    assert_eq!(ann.metrics.not_announced.get(), 0);
    assert_eq!(ann.current(), &set(&[a(11, 3), a(12, 2), a(13, 2)]));
}

/// A gain that failed is never reannounced: gratuitous ARP goes only for what the map holds.
#[tokio::test(start_paused = true)]
async fn only_what_is_held_is_reannounced() {
    let mut ann = announcer();
    let burst = Gratuitous { count: 1, interval: Duration::from_millis(10), refresh: None };
    ann.datapath.failing_inserts.insert(a(11, 2).key());
    ann.apply(set(&[a(10, 2), a(11, 2)]), burst, None);
    tokio::time::sleep(Duration::from_millis(50)).await;
    ann.reannounce(burst);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let frames = ann.bursts.sender.0.lock().unwrap().clone();
    assert_eq!(frames.len(), 2, "a burst and a reannounce, for .10 only");
    assert!(frames.iter().all(|(_, f)| *f == crate::frame::gratuitous(MAC, a(10, 2).addr, 0)));
}

/// A member joined: during the hold, what this node loses goes at once and what it gains waits
/// (the giver still answers); when the hold ends, the same election takes the gains.
#[tokio::test]
async fn gains_wait_out_a_hold_and_losses_do_not() {
    let mut ann = announcer();
    ann.apply(set(&[a(10, 2), a(11, 2)]), QUIET, None);
    let seen = Instant::now();
    ann.hold_gains(std::time::Duration::from_millis(60), seen);
    ann.apply(set(&[a(11, 2), a(12, 2)]), QUIET, None);
    assert_eq!(ann.current(), &set(&[a(11, 2)]));
    assert!(!ann.datapath.map.contains_key(&a(10, 2).key()), "a loss is let go at once");
    assert!(!ann.datapath.map.contains_key(&a(12, 2).key()), "a gain waits");

    tokio::time::sleep_until(ann.hold_deadline().unwrap()).await;
    assert_eq!(ann.end_hold(), Some(seen));
    assert_eq!(ann.hold_deadline(), None);
    ann.apply(set(&[a(11, 2), a(12, 2)]), QUIET, None);
    assert!(ann.datapath.map.contains_key(&a(12, 2).key()));
}

/// Where the node may take an address over, the responder is there before it has to answer:
/// announcing and withdrawing leave it, silence leaves it, and only leaving the set takes it
/// away. A speaker that stops withdraws everything and leaves the responder where it runs (the
/// datapath detaches it, or hands it over, when it drops).
#[tokio::test]
async fn the_responder_stands_by_where_addresses_may_come() {
    let mut ann = announcer();
    ann.stand_by(BTreeSet::from([(2, "eth2".to_owned()), (3, "eth3".to_owned())]));
    assert!(ann.datapath.is_attached(2) && ann.datapath.is_attached(3));
    assert!(ann.datapath.map.is_empty());
    ann.apply(set(&[a(10, 2), a(11, 4)]), QUIET, None);
    ann.silence();
    assert!(ann.datapath.map.is_empty(), "silence withdraws every entry");
    assert!(ann.datapath.is_attached(2) && ann.datapath.is_attached(3), "standing by still");
    assert!(!ann.datapath.is_attached(4), "eth4 only carried an address");
    ann.stand_by(BTreeSet::from([(2, "eth2".to_owned())]));
    assert!(!ann.datapath.is_attached(3));
    ann.apply(set(&[a(12, 5)]), QUIET, None);
    ann.leave();
    assert!(ann.datapath.map.is_empty(), "leaving withdraws every entry");
    assert_eq!(ann.datapath.attached, BTreeSet::from([2, 5]), "and detaches nothing");
}

/// An interface whose MAC changed (replaced, or a bond's new active port): the entry is
/// overwritten in place, never absent, and a failed overwrite leaves the old MAC answering.
#[tokio::test]
async fn a_mac_change_overwrites_the_entry_in_place() {
    let mut ann = announcer();
    ann.apply(set(&[a(10, 2)]), QUIET, None);
    let moved = Announcement { mac: OTHER_MAC, ..a(10, 2) };
    assert_eq!(ann.apply(set(std::slice::from_ref(&moved)), QUIET, None), 1, "an overwrite");
    assert_eq!(ann.datapath.map.get(&a(10, 2).key()), Some(&OTHER_MAC));
    assert!(ann.datapath.removed.is_empty(), "the entry was never removed");
    assert_eq!(ann.current(), &set(std::slice::from_ref(&moved)));

    ann.datapath.failing_inserts.insert(a(10, 2).key());
    assert_eq!(ann.apply(set(&[a(10, 2)]), QUIET, None), 0);
    assert_eq!(ann.datapath.map.get(&a(10, 2).key()), Some(&OTHER_MAC), "the old entry still answers");
    assert_eq!(ann.current(), &set(&[moved]));
    assert_eq!(ann.failed().len(), 1);
}

/// Ownership lost in the middle of a gratuitous burst: the burst stops, so this node never
/// claims an address another node now announces.
#[tokio::test(start_paused = true)]
async fn a_burst_stops_when_the_address_is_lost() {
    let mut ann = announcer();
    let burst = Gratuitous { count: 5, interval: Duration::from_millis(100), refresh: None };
    ann.apply(set(&[a(10, 2)]), burst, None);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let sent = |ann: &Announcer<FakeDatapath, FakeFrames>| ann.bursts.sender.0.lock().unwrap().len();
    assert_eq!(sent(&ann), 2, "at 0 and 100 ms");
    ann.apply(set(&[]), burst, None);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(sent(&ann), 2, "nothing after the loss");

    // One that is kept runs to its end.
    ann.apply(set(&[a(11, 2)]), burst, None);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(sent(&ann), 7);
    assert!(ann.bursts.sender.0.lock().unwrap().iter().all(|(ifindex, _)| *ifindex == 2));
}

/// The other speakers' MACs go to the datapath, and leave it.
#[tokio::test]
async fn peers_reach_the_datapath() {
    let mut ann = announcer();
    ann.set_peers(&BTreeSet::from([OTHER_MAC])).unwrap();
    assert_eq!(ann.datapath.peers, BTreeSet::from([OTHER_MAC]));
    ann.set_peers(&BTreeSet::new()).unwrap();
    assert!(ann.datapath.peers.is_empty());
}

/// The state file is rendered again only when the generation moves: it moves with what is
/// announced, not with passes that change nothing or with stand-by.
#[tokio::test]
async fn the_generation_moves_with_what_is_announced() {
    let mut ann = announcer();
    let start = ann.generation();
    ann.stand_by(BTreeSet::from([(2, "eth2".to_owned())]));
    ann.apply(set(&[]), QUIET, None);
    assert_eq!(ann.generation(), start, "nothing announced, nothing changed");
    ann.apply(set(&[a(10, 2)]), QUIET, None);
    let announced = ann.generation();
    assert_ne!(announced, start);
    ann.apply(set(&[a(10, 2)]), QUIET, None);
    assert_eq!(ann.generation(), announced, "the same again");
    ann.apply(set(&[]), QUIET, None);
    assert_ne!(ann.generation(), announced);
}

/// Housekeeping holds the rx VLAN offloads off, at most once per RETRY_EVERY: it is an ioctl per
/// interface, under the kernel's RTNL lock.
#[tokio::test]
async fn offloads_are_held_off_once_a_period() {
    let mut ann = announcer();
    ann.tidy();
    ann.tidy();
    assert_eq!(ann.datapath.offload_checks, 1);
    ann.offloads_at = Instant::now();
    ann.tidy();
    assert_eq!(ann.datapath.offload_checks, 2);
}
