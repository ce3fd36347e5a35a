//! A speaker cut off from the others' membership (a host firewall drops UDP 7946, as a new
//! node's default firewalld zone does) while the API server says they run: it hears none of
//! them, and withdraws rather than claim every address beside the real owners; so does it after
//! a restart behind the cut. A client asking every 20 ms sees one MAC throughout. When the cut
//! is lifted the node is heard again, and takes part. An owner cut off answers beside its heir
//! only until it finds itself alone.

use std::time::Duration;

use herald_tests::{
    apiserver,
    checker::Answers,
    cluster,
    kube_lab::{self, KubeLab, metric},
    lab::Host,
    objects, probe, root_or_skip, soak,
};

const NODES: [&str; 3] = ["node-a", "node-b", "node-c"];
const API_BOUND: Duration = Duration::from_secs(20);
const EVERY: Duration = Duration::from_millis(20);

/// Drops the membership's datagrams to and from `host` (or stops dropping them).
fn cut(host: &Host, on: bool) {
    soak::faults::cut(host, on).unwrap();
}

fn isolated(host: &Host) -> f64 {
    let metrics = host.run("curl", &["-sf", "http://127.0.0.1:7472/metrics"]).unwrap();
    metric(&metrics, "herald_isolated")
}

#[tokio::test(flavor = "current_thread")]
async fn a_speaker_cut_off_from_the_others_claims_nothing() {
    if !root_or_skip("a_speaker_cut_off_from_the_others_claims_nothing")
        || !apiserver::available_or_skip("a_speaker_cut_off_from_the_others_claims_nothing")
    {
        return;
    }
    let mut kl = KubeLab::start(&NODES).expect("lab and control plane");
    let client = kl.enter().await.unwrap_or_else(|e| panic!("control plane: {e:#}\n{}", kl.logs()));
    for node in NODES {
        kl.start_speaker(node).unwrap_or_else(|e| panic!("speaker on {node}: {e:#}\n{}", kl.logs()));
    }
    let vip =
        kube_lab::web_service(&client, API_BOUND).await.unwrap_or_else(|e| panic!("{e:#}\n{}", kl.logs()));
    let owner = cluster::elected(vip, &NODES);
    let owner_mac = kl.lab.node(owner).mac;
    cluster::wait_for_owner(&kl.lab, vip, owner_mac, API_BOUND)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", kl.logs()));
    let cut_off = NODES.iter().copied().find(|n| *n != owner).unwrap();
    let host = kl.lab.node(cut_off).clone();

    // Cut: within a second it sees nobody, and would elect itself owner of everything.
    let probes = probe::series(&kl.lab.client, vip, 200, EVERY, || {
        std::thread::sleep(Duration::from_millis(500));
        cut(&host, true);
        Ok(())
    })
    .unwrap();
    let answers = Answers::of(&probes);
    println!("cut off: {answers}");
    assert!(answers.doubled.is_empty() && answers.silences.is_empty(), "{answers}\n{}", kl.logs());
    assert_eq!(answers.answerers, [owner_mac], "{answers}");
    assert_eq!(isolated(&host), 1.0, "{cut_off} says it is isolated\n{}", kl.logs());
    let told = node_event(&client, cut_off, "Isolated").await;
    assert!(
        told.as_deref().is_some_and(|n| n.contains("not a majority")),
        "an Isolated Event on Node {cut_off}: {told:?}\n{}",
        kl.speaker_log(cut_off, "kubernetes")
    );

    // Restarted behind the cut: it joins alone, and still claims nothing.
    kl.kill_speaker(cut_off).unwrap();
    let asker = kl.lab.client.clone();
    let probes = probe::series(&asker, vip, 200, EVERY, || kl.start_speaker(cut_off))
        .unwrap_or_else(|e| panic!("{e:#}\n{}", kl.logs()));
    let answers = Answers::of(&probes);
    println!("restarted behind the cut: {answers}");
    assert!(answers.doubled.is_empty() && answers.silences.is_empty(), "{answers}\n{}", kl.logs());
    assert_eq!(isolated(&host), 1.0);

    // The cut is lifted: heard again, it takes part (and the owner never stopped answering).
    let probes = probe::series(&kl.lab.client, vip, 150, EVERY, || {
        cut(&host, false);
        Ok(())
    })
    .unwrap();
    let answers = Answers::of(&probes);
    assert!(answers.doubled.is_empty() && answers.silences.is_empty(), "{answers}\n{}", kl.logs());
    let heard = herald_tests::poll::until(API_BOUND, || isolated(&host) == 0.0).is_some();
    assert!(heard, "{cut_off} still isolated after the cut was lifted\n{}", kl.logs());
    let told = node_event(&client, cut_off, "Rejoined").await;
    assert!(told.is_some(), "a Rejoined Event on Node {cut_off}\n{}", kl.logs());

    // The owner cut off: its heir takes over within a tenth of a second, and the owner answers
    // on until it finds itself alone (hearing::LONELY, 500 ms) and withdraws: the one window of
    // two answers a partition leaves. After it, the heir alone.
    let owner_host = kl.lab.node(owner).clone();
    let heir = cluster::elected(vip, &NODES.iter().copied().filter(|n| *n != owner).collect::<Vec<_>>());
    let heir_mac = kl.lab.node(heir).mac;
    let probes = probe::series(&kl.lab.client, vip, 150, EVERY, || {
        std::thread::sleep(Duration::from_millis(500));
        cut(&owner_host, true);
        Ok(())
    })
    .unwrap();
    let answers = Answers::of(&probes);
    println!("owner cut off: {answers}");
    let cut_at = probes[0].sent + 0.5;
    let window = answers.doubled.last().map_or(0.0, |(at, _)| at - cut_at);
    println!("two answers from the cut to {:.0} ms after it", window * 1000.0);
    assert!(window < 1.0, "two answers up to {:.0} ms after the cut: {answers}", window * 1000.0);
    assert_eq!(answers.answerers.last(), Some(&heir_mac), "{answers}");
    assert!(answers.silences.is_empty(), "{answers}");
    cut(&owner_host, false);
}

/// A speaker whose clock is a minute ahead (libfaketime: the realtime clock only, as a node
/// without NTP has it): the others refuse its datagrams as stale, and it refuses theirs. It
/// claims nothing, and says why: its clock, not silence. The others, a majority, answer on.
#[tokio::test(flavor = "current_thread")]
async fn a_speaker_whose_clock_is_far_off_says_so_and_claims_nothing() {
    let test = "a_speaker_whose_clock_is_far_off_says_so_and_claims_nothing";
    if !root_or_skip(test) || !apiserver::available_or_skip(test) {
        return;
    }
    let mut kl = KubeLab::start(&NODES).expect("lab and control plane");
    let client = kl.enter().await.unwrap_or_else(|e| panic!("control plane: {e:#}\n{}", kl.logs()));
    let (skewed, rest) = (NODES[2], &NODES[..2]);
    for node in rest {
        kl.start_speaker(node).unwrap_or_else(|e| panic!("speaker on {node}: {e:#}\n{}", kl.logs()));
    }
    let preload = format!("LD_PRELOAD={}", libfaketime());
    let env = [preload.as_str(), "FAKETIME=+60s", "FAKETIME_DONT_FAKE_MONOTONIC=1", "FAKETIME_NO_CACHE=1"];
    kl.start_speaker_with(skewed, &env)
        .unwrap_or_else(|e| panic!("speaker on {skewed}: {e:#}\n{}", kl.logs()));
    let vip =
        kube_lab::web_service(&client, API_BOUND).await.unwrap_or_else(|e| panic!("{e:#}\n{}", kl.logs()));
    let owner = cluster::elected(vip, rest);
    let owner_mac = kl.lab.node(owner).mac;
    cluster::wait_for_owner(&kl.lab, vip, owner_mac, API_BOUND)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", kl.logs()));

    let host = kl.lab.node(skewed).clone();
    let probes = probe::series(&kl.lab.client, vip, 100, EVERY, || Ok(())).unwrap();
    let answers = Answers::of(&probes);
    println!("a clock a minute ahead on {skewed}: {answers}");
    assert!(answers.doubled.is_empty() && answers.silences.is_empty(), "{answers}\n{}", kl.logs());
    assert_eq!(answers.answerers, [owner_mac], "{answers}");
    let isolated = herald_tests::poll::until(API_BOUND, || isolated(&host) == 1.0).is_some();
    assert!(isolated, "{skewed} says it is isolated\n{}", kl.logs());
    let told = node_event(&client, skewed, "Isolated").await;
    assert!(
        told.as_deref().is_some_and(|n| n.contains("clock")),
        "the Isolated Event on Node {skewed} names the clock: {told:?}\n{}",
        kl.speaker_log(skewed, "kubernetes")
    );
    let metrics = kl.lab.node(owner).run("curl", &["-sf", "http://127.0.0.1:7472/metrics"]).unwrap();
    let stale = metric(&metrics, "herald_membership_rejected_total{reason=\"stale\"}");
    assert!(stale > 0.0, "{owner} refused {skewed}'s datagrams as stale:\n{metrics}");
}

/// libfaketime (Debian's `faketime` package), in the architecture's library directory.
fn libfaketime() -> String {
    let found = std::fs::read_dir("/usr/lib")
        .unwrap()
        .filter_map(|d| Some(d.ok()?.path().join("faketime/libfaketime.so.1")))
        .find(|p| p.exists());
    found.expect("libfaketime (cargo xtask setup --kube installs it)").display().to_string()
}

/// The first Event with `reason` about Node `node`, waiting for it up to [`API_BOUND`].
async fn node_event(client: &kube::Client, node: &str, reason: &str) -> Option<String> {
    let deadline = std::time::Instant::now() + API_BOUND;
    while std::time::Instant::now() < deadline {
        if let Some(note) = objects::node_events(client, node, reason).await.into_iter().next() {
            return Some(note);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}
