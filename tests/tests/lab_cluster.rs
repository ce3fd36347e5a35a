//! Three speakers as a cluster, end to end in the lab: election, failure detection and takeover
//! with the real XDP program answering, as the client on the LAN sees it. Needs root.
//!
//! With the lab's names, 192.0.2.200 and .201 go to node-b (then node-a), .202 to node-c (then
//! node-b): see `cluster::elected`, which the tests use rather than hard-coding it.
//!
//! Every case asserts who answers, and that after `BOUND` exactly one node answers. The speakers
//! run with a 1 s dead-man bound; `BOUND` leaves room for it and for a loaded CI machine. The
//! times themselves are measured by `cargo xtask bench failover`, not asserted here.

use std::{collections::BTreeSet, net::Ipv4Addr, time::Duration};

use herald_tests::{
    cluster::{self, VIPS},
    lab::{Host, Lab, format_mac},
    poll, probe, root_or_skip,
    speaker::Speaker,
};
use nix::sys::signal::Signal;

const NAMES: [&str; 3] = ["node-a", "node-b", "node-c"];
const BOUND: Duration = Duration::from_secs(4);
const ARGS: &[&str] = &["--dead-man-ms", "1000"];

fn setup(extra: &str) -> (Lab, Vec<Speaker>) {
    let mut lab = Lab::new(&NAMES).expect("lab");
    let speakers = cluster::start(&mut lab, extra, ARGS).expect("speakers");
    for vip in VIPS {
        let owner = lab.node(cluster::elected(vip, &NAMES)).mac;
        cluster::wait_for_owner(&lab, vip, owner, BOUND).expect("initial owner");
    }
    (lab, speakers)
}

/// The lab's node names but `gone`.
fn without(gone: &str) -> Vec<&'static str> {
    NAMES.iter().copied().filter(|n| *n != gone).collect()
}

/// The node that owns `vip` among `alive`.
fn owner<'a>(lab: &'a Lab, vip: Ipv4Addr, alive: &[&str]) -> &'a Host {
    lab.node(cluster::elected(vip, alive))
}

fn assert_owner(lab: &Lab, vip: Ipv4Addr, alive: &[&str]) {
    let expected = owner(lab, vip, alive);
    cluster::wait_for_owner(lab, vip, expected.mac, BOUND)
        .unwrap_or_else(|e| panic!("{vip} should be {}'s with {alive:?} alive: {e:#}", expected.name));
}

/// The MAC the client's neighbour table holds for `vip`.
fn client_neighbour(lab: &Lab, vip: Ipv4Addr) -> Option<String> {
    let out = lab.client.run("ip", &["neigh", "show", &vip.to_string(), "dev", "eth0"]).unwrap();
    out.split_whitespace().skip_while(|w| *w != "lladdr").nth(1).map(str::to_owned)
}

fn speaker_of<'a>(speakers: &'a [Speaker], name: &str) -> &'a Speaker {
    speakers.iter().find(|s| s.host.name == name).unwrap()
}

#[test]
fn each_address_answered_by_its_elected_node() {
    if !root_or_skip("each_address_answered_by_its_elected_node") {
        return;
    }
    let (lab, speakers) = setup("");
    for s in &speakers {
        let status = s.status().unwrap();
        assert!(status.contains("members (3 alive): node-a node-b node-c"), "{status}");
    }
    let b = speaker_of(&speakers, "node-b").status().unwrap();
    assert!(b.contains("owns: 192.0.2.200 (eth0) 192.0.2.201 (eth0)\n"), "{b}");

    // `herald-speaker explain` on each node: the owner answers, the others name it.
    for vip in VIPS {
        let owner = cluster::elected(vip, &NAMES);
        for s in &speakers {
            let (code, text) = s.explain(&vip.to_string()).unwrap();
            let says = if s.host.name == owner {
                format!("{owner} answers for {vip} (")
            } else {
                format!("{owner} answers, not {}", s.host.name)
            };
            assert!(
                code == 0 && text.contains(&says),
                "{} on {vip}: exit {code}, expected {says:?}:\n{text}",
                s.host.name
            );
        }
    }
    let (code, text) = speakers[0].explain("192.0.2.99").unwrap();
    assert!(
        code == 1 && text.contains("cause: 192.0.2.99 is not among the [[vip]] addresses"),
        "exit {code}:\n{text}"
    );
    drop(lab);
}

#[test]
fn owner_killed_client_follows_the_gratuitous_arp() {
    if !root_or_skip("owner_killed_client_follows_the_gratuitous_arp") {
        return;
    }
    let (mut lab, speakers) = setup("");
    let vip = VIPS[0];
    let old = owner(&lab, vip, &NAMES).clone();
    // The client talks to the address, so it has a neighbour entry for it.
    let _ = lab.client.output("ping", &["-c", "1", "-W", "1", &vip.to_string()]);
    assert_eq!(client_neighbour(&lab, vip), Some(format_mac(old.mac)));

    let victim = speaker_of(&speakers, &old.name);
    victim.signal(Signal::SIGKILL).unwrap();
    lab.take_child(victim.pid).unwrap().wait().unwrap();
    let alive = without(&old.name);
    assert_owner(&lab, vip, &alive);
    // The new owner's gratuitous ARP moved the client's entry: no waiting for it to expire.
    let new = owner(&lab, vip, &alive);
    assert_eq!(client_neighbour(&lab, vip), Some(format_mac(new.mac)));
    for vip in VIPS {
        assert_owner(&lab, vip, &alive);
    }
    // The heir found the owner failed from its heartbeats, not from SWIM.
    let status = speaker_of(&speakers, &new.name).status().unwrap();
    assert!(status.contains("owners_failed=1"), "{status}");
}

#[test]
fn owner_hangs_then_rejoins() {
    if !root_or_skip("owner_hangs_then_rejoins") {
        return;
    }
    let (lab, speakers) = setup("");
    let vip = VIPS[0];
    let old = owner(&lab, vip, &NAMES).clone();
    let hung = speaker_of(&speakers, &old.name);
    hung.signal(Signal::SIGSTOP).unwrap();
    // The others take over; the hung node's program goes quiet at its dead-man bound.
    let alive = without(&old.name);
    assert_owner(&lab, vip, &alive);
    hung.signal(Signal::SIGCONT).unwrap();
    // It rejoins and gets back what the election gives it.
    assert_owner(&lab, vip, &NAMES);
    for vip in VIPS {
        assert_owner(&lab, vip, &NAMES);
    }
    let status = hung.status().unwrap();
    assert!(status.contains("members (3 alive)"), "{status}");
    // While it hung, its entries stayed in its map, and the heir's gratuitous ARP for them came
    // in: a Herald peer taking over, not a conflict.
    std::thread::sleep(Duration::from_millis(500));
    assert!(!status.contains("conflict:") && !hung.log_text().contains("address conflict"), "{status}");
}

#[test]
fn owner_link_down_and_back() {
    if !root_or_skip("owner_link_down_and_back") {
        return;
    }
    let (lab, _speakers) = setup("");
    let vip = VIPS[0];
    let old = owner(&lab, vip, &NAMES).clone();
    let _ = lab.client.output("ping", &["-c", "1", "-W", "1", &vip.to_string()]);
    old.run("ip", &["link", "set", "eth0", "down"]).unwrap();
    let alive = without(&old.name);
    assert_owner(&lab, vip, &alive);
    old.run("ip", &["link", "set", "eth0", "up"]).unwrap();
    assert_owner(&lab, vip, &NAMES);
    // It never stopped announcing in its own view, yet the client follows it back.
    let back = wait_until(|| client_neighbour(&lab, vip) == Some(format_mac(old.mac)));
    assert!(back, "client's entry for {vip}: {:?}", client_neighbour(&lab, vip));
}

#[test]
fn a_link_losing_everything_from_the_owner_moves_nothing() {
    if !root_or_skip("a_link_losing_everything_from_the_owner_moves_nothing") {
        return;
    }
    let (lab, speakers) = setup("");
    let vip = VIPS[0];
    let old = owner(&lab, vip, &NAMES).clone();
    let heir = owner(&lab, vip, &without(&old.name)).clone();
    // Each other node in turn (the heir, and the third; one of them the owner's watcher on the
    // ring) hears nothing of the owner, while the remaining one hears both.
    let others: Vec<Host> = lab.nodes.iter().filter(|n| n.name != old.name).cloned().collect();
    let moves = || -> Vec<(u64, u64)> {
        let counters =
            |s: &Speaker| (s.counter("owners_failed").unwrap(), s.counter("ownership_changes").unwrap());
        speakers.iter().map(counters).collect()
    };
    let before = moves();
    for cut in &others {
        let rule = ["INPUT", "-s", &old.addr.to_string(), "-j", "DROP"];
        cut.run("iptables", &[&["-A"], &rule[..]].concat()).unwrap();
        std::thread::sleep(Duration::from_secs(3));
        // Probed through the remaining node, the owner answered every time: it kept its
        // addresses, and nobody took one.
        assert_eq!(moves(), before, "{} cut from the owner", cut.name);
        let status = speaker_of(&speakers, &cut.name).status().unwrap();
        assert!(status.contains("members (3 alive)"), "{} cut: {status}", cut.name);
        assert_eq!(cluster::answering(&lab, vip).unwrap(), BTreeSet::from([old.mac]));
        cut.run("iptables", &[&["-D"], &rule[..]].concat()).unwrap();
    }
    heir.run("iptables", &["-A", "INPUT", "-s", &old.addr.to_string(), "-j", "DROP"]).unwrap();
    // Without the third node's path the heir hears nobody: no helper says it asks, so the heir
    // is the one cut off. It takes nothing over and, alone (no majority), claims nothing. (The
    // owner, which hears the heir but is not heard by it, and not the third node, has no
    // majority either: whether it answers on depends on when SWIM gives up on the others.)
    let third = lab.nodes.iter().find(|n| n.name != old.name && n.name != heir.name).unwrap();
    lab.set_port(third, false).unwrap();
    let status = || speaker_of(&speakers, &heir.name).status().unwrap();
    assert!(wait_until(|| status().contains("members (1 alive)")), "{}", status());
    assert!(status().contains("owners_failed=0") && status().contains("owns: nothing"), "{}", status());
    let answering = cluster::answering(&lab, vip).unwrap();
    assert!(!answering.contains(&heir.mac), "the heir cut off answers {vip}: {answering:02x?}");
}

fn partition(quorum: bool) {
    let (lab, speakers) = setup(if quorum { "" } else { "quorum = false" });
    let vip = VIPS[0];
    let cut = owner(&lab, vip, &NAMES).clone();
    lab.set_port(&cut, false).unwrap();
    let majority = without(&cut.name);
    for vip in VIPS {
        assert_owner(&lab, vip, &majority);
    }
    let status = || speaker_of(&speakers, &cut.name).status().unwrap();
    if quorum {
        // Alone, it is no majority: it withdraws everything.
        assert!(wait_until(|| status().contains("owns: nothing")), "{}", status());
        assert!(status().contains("(no addresses announced)"), "{}", status());
    } else {
        // Alone, it announces everything; nobody on the LAN hears it.
        assert!(wait_until(|| status().contains("members (1 alive)")), "{}", status());
        let owns = status();
        assert!(VIPS.iter().all(|v| owns.contains(&v.to_string())), "{owns}");
    }
    lab.set_port(&cut, true).unwrap();
    for vip in VIPS {
        assert_owner(&lab, vip, &NAMES);
    }
    let _ = lab.client.output("ping", &["-c", "1", "-W", "1", &vip.to_string()]);
    let back = wait_until(|| client_neighbour(&lab, vip) == Some(format_mac(cut.mac)));
    assert!(back, "client's entry for {vip}: {:?}", client_neighbour(&lab, vip));
}

#[test]
fn partition_and_heal_without_quorum() {
    if root_or_skip("partition_and_heal_without_quorum") {
        partition(false);
    }
}

/// Three members: quorum is on by default.
#[test]
fn partition_and_heal_with_quorum() {
    if root_or_skip("partition_and_heal_with_quorum") {
        partition(true);
    }
}

/// SIGTERM hands the address over with neither a gap nor two answers: the heir's responder
/// already stands by, and the leaver goes silent before it says it leaves.
#[test]
fn graceful_shutdown_leaves_no_gap() {
    if !root_or_skip("graceful_shutdown_leaves_no_gap") {
        return;
    }
    let (mut lab, speakers) = setup("");
    let vip = VIPS[0];
    let old = owner(&lab, vip, &NAMES).clone();
    let alive = without(&old.name);
    let new = owner(&lab, vip, &alive).clone();
    let leaving = speaker_of(&speakers, &old.name);
    let pid = leaving.pid;
    let probes = probe::series(&lab.client, vip, 150, Duration::from_millis(10), || {
        std::thread::sleep(Duration::from_millis(300));
        leaving.signal(Signal::SIGTERM)
    })
    .unwrap();
    let status = lab.take_child(pid).unwrap().wait().unwrap();
    assert!(status.success(), "{status}");
    let unanswered: Vec<f64> = probes.iter().filter(|p| p.replies.is_empty()).map(|p| p.sent).collect();
    assert!(
        unanswered.is_empty(),
        "{} of {} requests unanswered, at {unanswered:?}\nleaving:\n{}\nheir:\n{}",
        unanswered.len(),
        probes.len(),
        leaving.log_text(),
        speaker_of(&speakers, &new.name).log_text()
    );
    // Never both: the leaver is silent before the others hear it leave.
    for p in &probes {
        let macs: std::collections::BTreeSet<[u8; 6]> = p.replies.iter().map(|r| r.1).collect();
        assert!(macs.len() == 1, "the request at {:.3} was answered by {macs:02x?}", p.sent);
    }
    let first = probes.first().unwrap().replies.iter().map(|r| r.1).collect::<Vec<_>>();
    let last = probes.last().unwrap().replies.iter().map(|r| r.1).collect::<Vec<_>>();
    assert_eq!(
        (first, last),
        (vec![old.mac], vec![new.mac]),
        "the answer moved from {} to {}",
        old.name,
        new.name
    );
}

#[test]
fn restarted_node_gets_its_addresses_back_without_flapping() {
    if !root_or_skip("restarted_node_gets_its_addresses_back_without_flapping") {
        return;
    }
    let (mut lab, speakers) = setup("");
    let vip = VIPS[0];
    let old = owner(&lab, vip, &NAMES).clone();
    let victim = speaker_of(&speakers, &old.name);
    victim.signal(Signal::SIGKILL).unwrap();
    lab.take_child(victim.pid).unwrap().wait().unwrap();
    let alive = without(&old.name);
    assert_owner(&lab, vip, &alive);

    let config = cluster::config(&lab, &old, "");
    let restarted = Speaker::start(&mut lab, &old, &config, ARGS).unwrap();
    for vip in VIPS {
        assert_owner(&lab, vip, &NAMES);
    }
    // Settled: nobody changes owners any more, and the answers stay put.
    let changes = || -> Vec<String> {
        speakers
            .iter()
            .filter(|s| s.host.name != old.name)
            .chain([&restarted])
            .map(|s| s.status().unwrap().lines().find(|l| l.starts_with("counters:")).unwrap().to_owned())
            .map(|l| l.split_whitespace().find(|w| w.starts_with("ownership_changes=")).unwrap().to_owned())
            .collect()
    };
    let before = changes();
    for _ in 0..3 {
        for vip in VIPS {
            let expected = owner(&lab, vip, &NAMES).mac;
            assert_eq!(cluster::answering(&lab, vip).unwrap(), [expected].into(), "{vip} flapped");
        }
    }
    assert_eq!(changes(), before, "ownership changed while the cluster was settled");
    // Taking back its addresses, the restarted node sent gratuitous ARP for them while the
    // others still had them: a takeover by a Herald peer, not a conflict.
    for s in speakers.iter().filter(|s| s.host.name != old.name).chain([&restarted]) {
        let status = s.status().unwrap();
        assert!(
            !status.contains("conflict:"),
            "{}: a peer's takeover counted as a conflict:\n{status}",
            s.host.name
        );
    }
}

/// Whether `check` holds within `BOUND`.
fn wait_until(check: impl Fn() -> bool) -> bool {
    poll::until(BOUND, check).is_some()
}
