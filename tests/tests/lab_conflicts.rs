//! Another host claiming an address the speaker announces (a MetalLB speaker left running, a
//! host with the address configured by hand), and the responder's log statements, in the lab.
//! Needs root.

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use herald_speaker::frame::Arp;
use herald_tests::{
    lab::{Lab, format_mac},
    poll, probe, root_or_skip,
    speaker::Speaker,
};

const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 200);
/// Room for a loaded CI machine; the figure itself is printed, and measured by the bench.
const BOUND: Duration = Duration::from_secs(5);

fn config() -> String {
    format!("node = \"node-a\"\n[gratuitous]\ncount = 1\n[[vip]]\naddress = \"{VIP}\"\n")
}

#[test]
fn a_foreign_claim_shows_in_status_metrics_and_the_log() {
    if !root_or_skip("a_foreign_claim_shows_in_status_metrics_and_the_log") {
        return;
    }
    let mut lab = Lab::new(&["node-a"]).expect("lab");
    let node = lab.node("node-a").clone();
    let speaker = Speaker::start(&mut lab, &node, &config(), &[]).expect("speaker");
    assert!(!speaker.status().unwrap().contains("conflict:"), "no claim yet");

    // The client claims the address: a gratuitous ARP with its own MAC.
    let intruder = format_mac(lab.client.mac);
    let claim = Arp::gratuitous(lab.client.mac, VIP, 0).to_bytes();
    let sent = Instant::now();
    probe::send_frames(&lab.client, vec![claim.clone()]).unwrap();
    let wanted = format!("conflict: {VIP} also claimed by {intruder}");
    let shown = poll::until(BOUND, || speaker.status().unwrap().contains(&wanted));
    assert!(shown.is_some(), "no conflict in status:\n{}", speaker.status().unwrap());
    eprintln!("the claim showed in status {:?} after it was sent", sent.elapsed());
    speaker.wait_log("address conflict", BOUND).unwrap();

    // More claims of the same episode: counted, not told again.
    probe::send_frames(&lab.client, vec![claim.clone(), claim.clone(), claim]).unwrap();
    let metrics = || node.run("curl", &["-sf", "http://127.0.0.1:7472/metrics"]).unwrap();
    let counter = format!(
        "herald_address_conflicts_total{{protocol=\"arp\",ip=\"{VIP}\",interface=\"eth0\",vlan=\"0\"}} 4"
    );
    let counted = poll::until(BOUND, || metrics().contains(&counter));
    assert!(counted.is_some(), "expected {counter}:\n{}", metrics());
    let last = format!(
        "herald_address_conflict_last_seconds{{protocol=\"arp\",ip=\"{VIP}\",interface=\"eth0\",vlan=\"0\",mac=\"{intruder}\"}}"
    );
    assert!(metrics().contains(&last), "expected {last}:\n{}", metrics());
    std::thread::sleep(Duration::from_millis(500));
    let told = speaker.log_text().matches("address conflict").count();
    assert_eq!(told, 1, "one warning per episode:\n{}", speaker.log_text());
    let status = speaker.status().unwrap();
    assert!(status.contains("(eth0, 4 claims)"), "{status}");
    // It is still this node that answers.
    assert_eq!(probe::arping(&lab.client, VIP, 1).unwrap(), vec![node.mac]);
}

/// The same for an IPv6 address: another host's unsolicited Advertisement for it.
#[test]
fn a_foreign_advertisement_shows_in_status_and_metrics() {
    if !root_or_skip("a_foreign_advertisement_shows_in_status_and_metrics") {
        return;
    }
    let vip6: std::net::Ipv6Addr = "2001:db8::200".parse().unwrap();
    let mut lab = Lab::new(&["node-a"]).expect("lab");
    let node = lab.node("node-a").clone();
    let config = format!("node = \"node-a\"\n[gratuitous]\ncount = 1\n[[vip]]\naddress = \"{vip6}\"\n");
    let speaker = Speaker::start(&mut lab, &node, &config, &[]).expect("speaker");
    let claim = herald_speaker::frame::unsolicited_advertisement(lab.client.mac, vip6, 0);
    probe::send_frames(&lab.client, vec![claim.clone(), claim]).unwrap();
    let intruder = format_mac(lab.client.mac);
    let wanted = format!("conflict: {vip6} also claimed by {intruder}");
    let shown = poll::until(BOUND, || speaker.status().unwrap().contains(&wanted));
    assert!(shown.is_some(), "no conflict in status:\n{}", speaker.status().unwrap());
    let metrics = || node.run("curl", &["-sf", "http://127.0.0.1:7472/metrics"]).unwrap();
    let counter = format!(
        "herald_address_conflicts_total{{protocol=\"ndp\",ip=\"{vip6}\",interface=\"eth0\",vlan=\"0\"}} 2"
    );
    let counted = poll::until(BOUND, || metrics().contains(&counter));
    assert!(counted.is_some(), "expected {counter}:\n{}", metrics());
    speaker.wait_log("address conflict", BOUND).unwrap();
    // It is still this node that answers.
    assert_eq!(probe::resolve6(&lab.client, vip6).unwrap(), Some(node.mac));
}

#[test]
fn xdp_log_debug_shows_each_decision() {
    if !root_or_skip("xdp_log_debug_shows_each_decision") {
        return;
    }
    let mut lab = Lab::new(&["node-a"]).expect("lab");
    let node = lab.node("node-a").clone();
    let speaker = Speaker::start(&mut lab, &node, &config(), &["--xdp-log", "debug"]).expect("speaker");
    probe::arping(&lab.client, VIP, 1).unwrap();
    let answered =
        format!("answer: {VIP} on VLAN 0 is at {}, to {}", format_mac(node.mac), format_mac(lab.client.mac));
    speaker.wait_log(&answered, BOUND).unwrap();
    let other = Ipv4Addr::new(192, 0, 2, 201);
    probe::arping(&lab.client, other, 1).unwrap();
    speaker.wait_log(&format!("pass: {other} on VLAN 0 is not announced"), BOUND).unwrap();
    assert!(speaker.log_text().contains("herald::xdp"), "{}", speaker.log_text());

    // Off (the default): not one statement.
    let mut quiet_lab = Lab::new(&["node-a"]).expect("lab");
    let node = quiet_lab.node("node-a").clone();
    let quiet = Speaker::start(&mut quiet_lab, &node, &config(), &[]).expect("speaker");
    probe::arping(&quiet_lab.client, VIP, 2).unwrap();
    assert!(!quiet.log_text().contains("herald::xdp"), "{}", quiet.log_text());
}
