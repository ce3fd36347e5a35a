//! The standalone speaker end to end, in a lab of network namespaces: a real bridge, veth pairs,
//! the real XDP program, `arping`, `ping` and `tcpdump` on the client. Needs root.

use std::{net::Ipv4Addr, time::Duration};

use herald_tests::{
    lab::{Host, Lab, format_mac},
    poll,
    probe::{self, Capture, assert_answers, assert_silent},
    root_or_skip,
    speaker::{self, Speaker},
};
use nix::sys::signal::Signal;

const VIP_A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 200);
const VIP_B: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 201);
const VIP_C: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 202);
const DEAD_MAN_MS: u64 = 1000;

fn config(vips: &[Ipv4Addr]) -> String {
    let mut text = String::from("node = \"node-a\"\n[gratuitous]\ncount = 3\ninterval_ms = 50\n");
    for vip in vips {
        text += &format!("[[vip]]\naddress = \"{vip}\"\n");
    }
    text
}

fn lab() -> (Lab, Host) {
    let lab = Lab::new(&["node-a"]).expect("lab");
    let node = lab.node("node-a").clone();
    (lab, node)
}

fn start(lab: &mut Lab, node: &Host, vips: &[Ipv4Addr], datapath: &str) -> Speaker {
    let dead_man = DEAD_MAN_MS.to_string();
    Speaker::start(lab, node, &config(vips), &["--datapath", datapath, "--dead-man-ms", &dead_man])
        .expect("speaker")
}

/// A node that is a container (kind, k3d, containerlab): its eth0 is a veth whose other end sits
/// in a bridge with no XDP program. The speaker's defaults answer there (TC ingress), where a
/// native XDP reply reaches nobody (shown where the kernel can run XDP on a veth at all).
#[test]
fn a_plain_veth_answers_at_the_defaults() {
    if !root_or_skip("a_plain_veth_answers_at_the_defaults") {
        return;
    }
    let mut lab = Lab::plain(&["node-a"]).expect("lab");
    let node = lab.node("node-a").clone();
    let speaker = Speaker::start(&mut lab, &node, &config(&[VIP_A]), &[]).expect("speaker");
    let attached = speaker.attached().unwrap();
    assert!(
        attached.len() == 1 && attached[0].ends_with(speaker::TC),
        "defaults: expected {} on eth0, found {attached:?}\n{}",
        speaker::TC,
        speaker.log_text()
    );
    assert_answers(&lab, &node, VIP_A);
    let bin = herald_tests::workspace_bin("herald-speaker");
    let check = node.output(bin.to_str().unwrap(), &["check", "--interface", "eth0"]).unwrap();
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(report.contains("TC ingress: a veth"), "check says what it chose and why:\n{report}");
    assert!(speaker.stop(&mut lab).unwrap().success());
    if herald_tests::kernel_at_least(6, 8) {
        let xdp = start(&mut lab, &node, &[VIP_A], "xdp");
        assert!(xdp.attached().unwrap()[0].ends_with(speaker::XDP_BOUND));
        assert_silent(&lab, VIP_A);
    }
}

#[test]
fn answers_arp_at_every_hook() {
    if !root_or_skip("answers_arp_at_every_hook") {
        return;
    }
    for (mode, program) in speaker::datapaths() {
        let (mut lab, node) = lab();
        let capture = Capture::arp(&lab.client).unwrap();
        let speaker = start(&mut lab, &node, &[VIP_A, VIP_B], mode);
        let attached = speaker.attached().unwrap();
        assert!(
            attached.len() == 1 && attached[0].ends_with(program),
            "--datapath {mode}: expected {program} on eth0, found {attached:?}\n{}",
            speaker.log_text()
        );

        assert_answers(&lab, &node, VIP_A);
        assert_answers(&lab, &node, VIP_B);
        // The node's own address is still the kernel's: ICMP passes through the program.
        lab.client.run("ping", &["-c", "2", "-W", "1", &node.addr.to_string()]).unwrap();

        // The gratuitous burst (3 x 50 ms) went out when the speaker started.
        let lines = capture.stop().unwrap();
        for vip in [VIP_A, VIP_B] {
            let garps = lines
                .iter()
                .filter(|l| source_mac(l) == Some(format_mac(node.mac).as_str()))
                .filter(|l| l.contains(&format!("who-has {vip} tell {vip}")))
                .count();
            assert_eq!(
                garps,
                3,
                "{mode}: gratuitous ARPs for {vip} seen by the client:\n{}",
                lines.join("\n")
            );
        }

        let status = speaker.status().unwrap();
        assert!(status.contains("answering"), "{status}");
        let counted = status.lines().find(|l| l.starts_with(&VIP_A.to_string())).expect("VIP_A in status");
        let replies: u64 = counted.split_whitespace().last().unwrap().parse().unwrap();
        assert!(replies >= 2, "{mode}: status counts {replies} replies for {VIP_A}:\n{status}");
        assert!(counted.split_whitespace().nth(1) == Some("eth0"), "{mode}: {counted}");
    }
}

/// `herald-speaker status` run from another network namespace (the host's) names the
/// speaker's interfaces as the speaker sees them: an index means something only in its own
/// namespace.
#[test]
fn status_names_interfaces_from_anywhere() {
    if !root_or_skip("status_names_interfaces_from_anywhere") {
        return;
    }
    let (mut lab, node) = lab();
    let speaker = start(&mut lab, &node, &[VIP_A], "auto");
    let bin = herald_tests::workspace_bin("herald-speaker");
    let out = std::process::Command::new(bin)
        .args(["status", "--pin-dir", speaker.pin_dir.to_str().unwrap()])
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{status}{}", String::from_utf8_lossy(&out.stderr));
    let line = status.lines().find(|l| l.starts_with(&VIP_A.to_string())).expect("VIP_A in status");
    assert_eq!(line.split_whitespace().nth(1), Some("eth0"), "{status}");
    assert!(status.contains(": eth0 at "), "the interface and its hook:\n{status}");
}

/// The source MAC of a `tcpdump -e` line (after the timestamp).
fn source_mac(line: &str) -> Option<&str> {
    line.split_whitespace().nth(1)
}

#[test]
fn sighup_adds_and_removes_without_touching_the_rest() {
    if !root_or_skip("sighup_adds_and_removes_without_touching_the_rest") {
        return;
    }
    let (mut lab, node) = lab();
    let speaker = start(&mut lab, &node, &[VIP_A, VIP_B], "auto");
    assert_answers(&lab, &node, VIP_A);
    assert_answers(&lab, &node, VIP_B);
    let replies_b = |s: &Speaker| -> u64 {
        let status = s.status().unwrap();
        let line = status.lines().find(|l| l.starts_with(&VIP_B.to_string())).expect("VIP_B in status");
        line.split_whitespace().last().unwrap().parse().unwrap()
    };
    let before = replies_b(&speaker);

    speaker.reload(&config(&[VIP_B, VIP_C])).unwrap();
    assert!(speaker.log_text().contains("SIGHUP: config reloaded"), "{}", speaker.log_text());
    assert_silent(&lab, VIP_A);
    assert_answers(&lab, &node, VIP_C);
    // VIP_B's entry was left alone: its counter kept counting.
    assert!(replies_b(&speaker) >= before, "VIP_B's entry was replaced");
    assert_answers(&lab, &node, VIP_B);

    // A bad file is refused whole; what was announced stays announced.
    speaker.reload("node = \"node-a\"\n[[vip]]\naddress = \"192.0.2.300\"\n").unwrap();
    let log = speaker.log_text();
    assert!(log.contains("config not applied") && log.contains("vip[0].address = \"192.0.2.300\""), "{log}");
    assert_answers(&lab, &node, VIP_B);
    assert_answers(&lab, &node, VIP_C);
    // So is one that asks for the node's own address, even beside a good address.
    speaker.reload(&config(&[VIP_A, node.addr])).unwrap();
    assert!(speaker.log_text().contains("is configured on interface eth0"), "{}", speaker.log_text());
    assert_silent(&lab, VIP_A);
    assert_answers(&lab, &node, VIP_C);

    let status = speaker.stop(&mut lab).unwrap();
    assert!(status.success(), "speaker exit: {status}");
    assert_silent(&lab, VIP_B);
}

#[test]
fn sigterm_withdraws_and_cleans_up() {
    if !root_or_skip("sigterm_withdraws_and_cleans_up") {
        return;
    }
    let (mut lab, node) = lab();
    let speaker = start(&mut lab, &node, &[VIP_A], "auto");
    assert_answers(&lab, &node, VIP_A);
    assert!(!speaker.attached().unwrap().is_empty());
    let pin_dir = speaker.pin_dir.clone();
    let status = speaker.stop(&mut lab).unwrap();
    assert!(status.success(), "speaker exit: {status}");
    let attached = herald_tests::speaker::attached(&node).unwrap();
    assert!(attached.is_empty(), "still attached: {attached:?}");
    let left: Vec<_> =
        std::fs::read_dir(&pin_dir).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "pins left behind: {left:?}");
    assert_silent(&lab, VIP_A);
}

#[test]
fn dead_man_switch_and_restart() {
    if !root_or_skip("dead_man_switch_and_restart") {
        return;
    }
    let (mut lab, node) = lab();
    let bound = Duration::from_millis(DEAD_MAN_MS);

    // SIGKILL: the kernel detaches the program with the speaker's last descriptor.
    let speaker = start(&mut lab, &node, &[VIP_A], "auto");
    assert_answers(&lab, &node, VIP_A);
    speaker.signal(Signal::SIGKILL).unwrap();
    let started = std::time::Instant::now();
    lab.take_child(speaker.pid).unwrap().wait().unwrap();
    std::thread::sleep(bound.saturating_sub(started.elapsed()));
    assert_silent(&lab, VIP_A);
    let status = speaker.status().unwrap();
    assert!(status.contains("is gone"), "status after SIGKILL:\n{status}");

    // A new speaker takes over the dead one's pin directory and answers again.
    let speaker = start(&mut lab, &node, &[VIP_A], "auto");
    assert_answers(&lab, &node, VIP_A);

    // SIGSTOP: the program stays attached but the heartbeat ages past the bound.
    speaker.signal(Signal::SIGSTOP).unwrap();
    std::thread::sleep(bound + Duration::from_millis(200));
    assert!(!speaker.attached().unwrap().is_empty(), "a stopped speaker's program stays attached");
    assert_silent(&lab, VIP_A);
    let status = speaker.status().unwrap();
    assert!(status.contains("NOT answering: the speaker is hung"), "status while stopped:\n{status}");
    // A second speaker cannot take the pins of one that is alive, even hung.
    speaker.signal(Signal::SIGCONT).unwrap();
    let answers =
        probe::wait_for_answer(&lab.client, VIP_A, Duration::from_secs(3), |m| !m.is_empty()).unwrap();
    assert_eq!(answers, vec![node.mac], "answers after SIGCONT");
    let second = Speaker::spawn(&mut lab, &node, &config(&[VIP_B]), &[]).unwrap();
    let exit = lab.take_child(second.pid).unwrap().wait().unwrap();
    assert!(!exit.success());
    let refused = format!("herald-speaker pid {} holds the pin directory", speaker.pid);
    assert!(second.log_text().contains(&refused), "{}", second.log_text());
    assert!(second.log_text().contains("--pin-dir"), "{}", second.log_text());
    // Each has a log of its own: the second did not write over the first one's.
    assert!(speaker.log_text().contains("speaker ready"), "{}", speaker.log_text());
    assert_answers(&lab, &node, VIP_A);
}

/// Two speakers started at once on one pin directory: exactly one runs, and the other says
/// which process holds the directory. (Nothing else held it before, so only the lock on the
/// directory tells them apart.)
#[test]
fn two_speakers_one_pin_directory() {
    if !root_or_skip("two_speakers_one_pin_directory") {
        return;
    }
    let (mut lab, node) = lab();
    let first = Speaker::spawn(&mut lab, &node, &config(&[VIP_A]), &[]).unwrap();
    let second = Speaker::spawn(&mut lab, &node, &config(&[VIP_A]), &[]).unwrap();
    // Whichever takes the directory first runs; the other stops, whenever it gets there.
    let ready = |s: &Speaker| s.log_text().contains("speaker ready");
    poll::until(Duration::from_secs(30), || ready(&first) || ready(&second));
    let (winner, loser) = if ready(&first) { (&first, &second) } else { (&second, &first) };
    let exit = lab.take_child(loser.pid).unwrap().wait().unwrap();
    assert!(!exit.success());
    assert!(ready(winner) && !ready(loser), "first:\n{}\nsecond:\n{}", first.log_text(), second.log_text());
    let refused = format!("herald-speaker pid {} holds the pin directory", winner.pid);
    assert!(loser.log_text().contains(&refused), "{}", loser.log_text());
    assert_answers(&lab, &node, VIP_A);
}

#[test]
fn bad_config_attaches_nothing() {
    if !root_or_skip("bad_config_attaches_nothing") {
        return;
    }
    let (mut lab, node) = lab();
    node.run("ip", &["route", "add", "default", "via", "192.0.2.254"]).unwrap();
    node.run("ip", &["-6", "route", "add", "default", "via", "2001:db8::fe"]).unwrap();
    let own6 = node.addr6.to_string();
    let own6_case = format!("node = \"a\"\n[[vip]]\naddress = \"{own6}\"\n");
    let own6_said = format!("vip[0].address = {own6}: it is configured on interface eth0");
    let cases = [
        (
            "node = \"a\"\n[[vip]]\naddress = \"192.0.2.300\"\n",
            "vip[0].address = \"192.0.2.300\": not an IP address",
        ),
        (own6_case.as_str(), own6_said.as_str()),
        (
            "node = \"a\"\n[[vip]]\naddress = \"2001:db8::fe\"\n",
            "vip[0].address = 2001:db8::fe: it is a gateway of interface eth0",
        ),
        (
            "node = \"a\"\n[[vip]]\naddress = \"fe80::200\"\n",
            "vip[0].address = \"fe80::200\": not a unicast address that can be announced on a LAN",
        ),
        ("node = \"a\"\n[[vip]]\naddress = \"2001:db8:9::1\"\n", "no interface has a subnet that holds it"),
        ("node = \"a\"\n[[vip]]\naddress = \"192.0.2.200\"\nport = 1\n", "unknown field `port`"),
        ("node = \"a\"\n[[vip]\n", "line 2"),
        (
            "node = \"a\"\n[[vip]]\naddress = \"192.0.2.200\"\ninterface = \"eth7\"\n",
            "vip[0].address = 192.0.2.200: none of the interfaces eth7 can carry it (eth7 does not exist)",
        ),
        (
            "node = \"a\"\n[[vip]]\naddress = \"192.0.2.1\"\n",
            "vip[0].address = 192.0.2.1: it is configured on interface eth0",
        ),
        (
            "node = \"a\"\n[[vip]]\naddress = \"192.0.2.254\"\n",
            "vip[0].address = 192.0.2.254: it is a gateway of interface eth0",
        ),
        ("node = \"a\"\n[[vip]]\naddress = \"203.0.113.9\"\n", "no interface has a subnet that holds it"),
    ];
    for (text, expected) in cases {
        let speaker = Speaker::spawn(&mut lab, &node, text, &[]).unwrap();
        let exit = lab.take_child(speaker.pid).unwrap().wait().unwrap();
        let log = speaker.log_text();
        assert!(!exit.success(), "accepted:\n{text}");
        assert!(log.contains(expected), "for\n{text}\nexpected {expected:?} in:\n{log}");
        assert_eq!(log.matches(expected).count(), 1, "said once:\n{log}");
        let error = log.lines().filter(|l| l.starts_with("herald-speaker: ")).count();
        assert_eq!(error, 1, "one line says what is wrong:\n{log}");
        assert!(log.contains(&speaker.config.display().to_string()), "the error names the file:\n{log}");
        assert!(speaker.attached().unwrap().is_empty(), "attached after a bad config");
    }
    assert_silent(&lab, Ipv4Addr::new(192, 0, 2, 200));
}

/// The host changes under a running speaker (a bond's failover gives eth0 its new port's MAC):
/// the speaker hears of it from the kernel and answers with the new MAC at once, without a
/// SIGHUP.
#[test]
fn a_changed_mac_is_followed_without_a_reload() {
    if !root_or_skip("a_changed_mac_is_followed_without_a_reload") {
        return;
    }
    let (mut lab, node) = lab();
    let speaker = start(&mut lab, &node, &[VIP_A], "auto");
    assert_answers(&lab, &node, VIP_A);
    let new_mac = [0x02, 0, 0, 0, 0x0b, 0x0d];
    let probes = probe::series(&lab.client, VIP_A, 100, Duration::from_millis(20), || {
        std::thread::sleep(Duration::from_millis(300));
        node.run("ip", &["link", "set", "dev", "eth0", "address", &format_mac(new_mac)]).map(drop)
    })
    .unwrap();
    let answers = herald_tests::checker::Answers::of(&probes);
    println!("{answers}");
    // The figure, where the new MAC answered within the series; the assertion waits longer (an
    // emulated kernel in the matrix is slow).
    let changed = probes[0].sent + 0.3;
    if let Some(first) = probes.iter().find(|p| p.replies.iter().any(|(_, m)| *m == new_mac)) {
        println!("answered with the new MAC {:.0} ms after the change", (first.sent - changed) * 1000.0);
    }
    let moved = herald_tests::cluster::wait_for_owner(&lab, VIP_A, new_mac, Duration::from_secs(20));
    assert!(moved.is_ok(), "{VIP_A} still answered with the old MAC: {moved:?}\n{}", speaker.log_text());
    assert!(speaker.log_text().contains("the host's interfaces changed"), "{}", speaker.log_text());
    assert!(answers.doubled.is_empty(), "{answers}");
}

/// A node with two interfaces on one LAN (two NICs in one subnet) answers for an address with
/// one MAC, that of the interface its route to the address uses, not with both (ARP flux). The
/// route is made to go through the second one (eth0's at a higher metric): not the first found.
#[test]
fn two_interfaces_on_one_subnet_answer_with_one_mac() {
    if !root_or_skip("two_interfaces_on_one_subnet_answer_with_one_mac") {
        return;
    }
    let (mut lab, node) = lab();
    let second = lab.add_link(&node, "eth1", Ipv4Addr::new(192, 0, 2, 51)).expect("second link");
    node.run("ip", &["route", "del", "192.0.2.0/24", "dev", "eth0"]).unwrap();
    node.run("ip", &["route", "add", "192.0.2.0/24", "dev", "eth0", "metric", "100"]).unwrap();
    let speaker = Speaker::start(&mut lab, &node, &config(&[VIP_A]), &[]).expect("speaker");
    let route = node.run("ip", &["-o", "route", "get", &VIP_A.to_string()]).unwrap();
    let dev = route.split_whitespace().skip_while(|w| *w != "dev").nth(1).expect("dev in ip route get");
    assert_eq!(dev, "eth1", "{route}");
    let (routed, other) = (second, node.mac);
    let macs = probe::arping(&lab.client, VIP_A, 5).unwrap();
    assert!(!macs.is_empty(), "no reply for {VIP_A}\n{}", speaker.log_text());
    assert!(
        macs.iter().all(|m| *m == routed),
        "{VIP_A}: replies from {macs:02x?}; the route uses {dev} ({}), the other link is {}\n{}",
        format_mac(routed),
        format_mac(other),
        speaker.log_text()
    );
    println!("{VIP_A}: the route uses {dev}; {} replies, all from it", macs.len());
    let status = speaker.status().unwrap();
    assert!(status.contains(&format!("owns: {VIP_A} ({dev})")), "status names {dev} alone:\n{status}");
}
