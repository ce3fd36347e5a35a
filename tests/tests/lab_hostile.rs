//! A hostile host on the LAN against a three-node cluster (standalone speakers, the real XDP
//! program): what it sends to the membership port moves no address. It captures members'
//! datagrams at their switch ports and replays them as if from another member, forges sealed
//! datagrams without the key, and floods the heir from one core. A client asks for the owner's
//! address every 20 ms throughout; every request must be answered by the owner alone. Needs
//! root.

use std::{
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    time::Duration,
};

use herald_speaker::cluster::auth::Sealer;
use herald_tests::{
    checker::Answers,
    cluster::{self, KEY, PORT, VIPS},
    forge::{self, Datagram, Flood},
    lab::{Host, Lab, format_mac},
    probe, root_or_skip,
    speaker::Speaker,
};

const NAMES: [&str; 3] = ["node-a", "node-b", "node-c"];
const MALLORY: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 66);
const BOUND: Duration = Duration::from_secs(4);
const EVERY: Duration = Duration::from_millis(20);

struct Cluster {
    lab: Lab,
    speakers: Vec<Speaker>,
    mallory: Host,
    /// [`VIPS`]`[0]`'s owner, its heir, and the third member.
    owner: Host,
    heir: Host,
    third: Host,
}

fn setup() -> Cluster {
    let mut lab = Lab::new(&NAMES).expect("lab");
    let mallory = lab.add_other("mallory", MALLORY).expect("mallory");
    let speakers = cluster::start(&mut lab, "", &["--dead-man-ms", "1000"]).expect("speakers");
    for vip in VIPS {
        let owner = lab.node(cluster::elected(vip, &NAMES)).mac;
        cluster::wait_for_owner(&lab, vip, owner, BOUND).expect("initial owner");
    }
    let owner = cluster::elected(VIPS[0], &NAMES);
    let rest: Vec<&str> = NAMES.iter().copied().filter(|n| *n != owner).collect();
    let heir = cluster::elected(VIPS[0], &rest);
    let third = rest.iter().find(|n| **n != heir).unwrap();
    let [owner, heir, third] = [owner, heir, third].map(|n| lab.node(n).clone());
    Cluster { lab, speakers, mallory, owner, heir, third }
}

impl Cluster {
    /// What the client saw asking for the owner's address every 20 ms for `seconds` while
    /// `attack` ran; fails on any request answered by another MAC or by two.
    fn assert_owner_alone_during(
        &self,
        what: &str,
        seconds: usize,
        attack: impl FnOnce() -> anyhow::Result<()>,
    ) {
        let count = seconds * 1000 / EVERY.as_millis() as usize;
        let probes = probe::series(&self.lab.client, VIPS[0], count, EVERY, attack).unwrap();
        let answers = Answers::of(&probes);
        let macs: Vec<String> = answers.answerers.iter().map(|m| format_mac(*m)).collect();
        eprintln!(
            "{what}: {} requests, answered by {macs:?}, {} two MACs, longest silence {:?}",
            probes.len(),
            answers.doubled.len(),
            answers.longest_silence()
        );
        assert!(answers.doubled.is_empty(), "{what}: two MACs: {:?}", answers.doubled);
        assert_eq!(answers.answerers, [self.owner.mac], "{what}: answered by {macs:?}");
        assert!(answers.longest_silence() < Duration::from_millis(200), "{what}: {answers:?}");
    }

    fn speaker(&self, host: &Host) -> &Speaker {
        self.speakers.iter().find(|s| s.host.name == host.name).unwrap()
    }

    fn counter(&self, host: &Host, name: &str) -> u64 {
        self.speaker(host).counter(name).unwrap()
    }

    fn failed_owners(&self) -> u64 {
        self.speakers.iter().map(|s| self.counter(&s.host, "owners_failed")).sum()
    }
}

fn member(host: &Host) -> SocketAddrV4 {
    SocketAddrV4::new(host.addr, PORT)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

#[test]
fn captured_datagrams_replayed_as_from_the_owner_move_nothing() {
    if !root_or_skip("captured_datagrams_replayed_as_from_the_owner_move_nothing") {
        return;
    }
    let c = setup();
    // The third member's datagrams to the heir, and the owner's own, as they crossed the wire.
    let to_heir = |d: &Datagram| *d.to.ip() == c.heir.addr;
    let third: Vec<Datagram> = forge::capture(&c.lab, &c.third, PORT, Duration::from_secs(1))
        .unwrap()
        .into_iter()
        .filter(to_heir)
        .collect();
    // (The owner beats to its watcher on the ring, which may be the third: to the heir it sends
    // SWIM's messages, a few a second.)
    let own: Vec<Datagram> = forge::capture(&c.lab, &c.owner, PORT, Duration::from_secs(2))
        .unwrap()
        .into_iter()
        .filter(to_heir)
        .collect();
    assert!(third.len() >= 5 && own.len() >= 5, "captured {} and {}", third.len(), own.len());
    // Resent to the heir as if from the owner (once, before the sender was sealed, this made the
    // heir take the owner for restarted and drop its datagrams for 30 s: it took over), and the
    // owner's own resent as they were.
    let forged: Vec<Datagram> = third
        .iter()
        .take(20)
        .map(|d| Datagram { from: member(&c.owner), ..d.clone() })
        .chain(own.iter().take(20).cloned())
        .collect();
    let forged_count = forged.len() as u64;
    let own_count = own.len().min(20) as u64;
    let refused =
        || c.counter(&c.heir, "rejected_unauthenticated") + c.counter(&c.heir, "rejected_throttled");
    let (unauthenticated, replayed) = (refused(), c.counter(&c.heir, "rejected_replayed"));
    c.assert_owner_alone_during("replayed as from the owner", 3, || {
        std::thread::sleep(Duration::from_millis(300));
        let sent = forge::send(&c.mallory, forged)?;
        anyhow::ensure!(sent as u64 == forged_count, "sent {sent} of {forged_count}");
        Ok(())
    });
    // Resent as if from the owner: refused, checked (unauthenticated) or past the budget for a
    // boot unknown from that address (throttled).
    assert_eq!(refused() - unauthenticated, forged_count - own_count);
    assert_eq!(c.counter(&c.heir, "rejected_replayed") - replayed, own_count);
    assert_eq!(c.failed_owners(), 0, "an owner was found failed");
}

#[test]
fn floods_at_the_heir_move_nothing() {
    if !root_or_skip("floods_at_the_heir_move_nothing") {
        return;
    }
    let c = setup();
    let window = Duration::from_secs(4);
    for flood in Flood::ALL {
        let (what, make) = (flood.describe(), flood.maker(member(&c.heir), member(&c.owner), MALLORY));
        let before = c.failed_owners();
        let mut rate = 0.0;
        c.assert_owner_alone_during(what, 5, || {
            std::thread::sleep(Duration::from_millis(500));
            let flooded = forge::flood(&c.mallory, window, make).join().expect("flood thread")?;
            rate = flooded.rate();
            Ok(())
        });
        eprintln!(
            "{what}: {rate:.0} datagrams/s for {window:?}; heir counters: unauthenticated {} throttled {}",
            c.counter(&c.heir, "rejected_unauthenticated"),
            c.counter(&c.heir, "rejected_throttled")
        );
        assert!(rate > 10_000.0, "{what}: a flood of {rate:.0}/s proves little");
        assert_eq!(c.failed_owners(), before, "{what}: an owner was found failed");
    }
    let status = c.speaker(&c.heir).status().unwrap();
    assert!(status.contains("members (3 alive)"), "{status}");
}

#[test]
fn forged_corrupt_and_replayed_messages_are_dropped_and_counted() {
    if !root_or_skip("forged_corrupt_and_replayed_messages_are_dropped_and_counted") {
        return;
    }
    let c = setup();
    let (from, to) = (SocketAddr::from((MALLORY, PORT)), SocketAddr::V4(member(&c.heir)));
    // A host holding the key, at an address that is no member's.
    let mut good = Sealer::new(KEY.as_bytes(), from, 42);
    let authentic_garbage = good.seal(to, now_ms(), b"\xff\xfenot a membership message");
    let datagrams: Vec<Vec<u8>> = vec![
        b"hello".to_vec(), // unauthenticated
        vec![0u8; 2000],   // unauthenticated
        Sealer::new(b"some-other-cluster-key", from, 1).seal(to, now_ms(), b"forged"), // unauthenticated
        authentic_garbage.clone(), // malformed
        authentic_garbage, // replayed
        good.seal(to, now_ms() - 10 * 60 * 1000, b"old"), // stale
    ];
    c.mallory
        .in_netns(move || {
            let socket = std::net::UdpSocket::bind(from)?;
            for d in &datagrams {
                socket.send_to(d, to)?;
            }
            Ok(())
        })
        .unwrap();
    let counted = herald_tests::poll::until(BOUND, || {
        let status = c.speaker(&c.heir).status().unwrap();
        ["rejected_unauthenticated=3", "rejected_malformed=1", "rejected_replayed=1", "rejected_stale=1"]
            .iter()
            .all(|counter| status.contains(counter))
    });
    assert!(counted.is_some(), "{}", c.speaker(&c.heir).status().unwrap());
    // Nothing moved.
    for vip in VIPS {
        let owner = c.lab.node(cluster::elected(vip, &NAMES)).mac;
        cluster::wait_for_owner(&c.lab, vip, owner, BOUND).unwrap();
    }
    assert!(c.speaker(&c.heir).status().unwrap().contains("members (3 alive)"));
    assert_eq!(c.failed_owners(), 0);
}
