//! Herald shares a node's eth0 with other loaders' programs (tests/src/foreign.rs), as real nodes
//! have it: one at XDP that passes everything (a DDoS filter), and at TC ingress one that passes
//! and one that ends the chain for every frame (Cilium returns TC_ACT_OK). TCX links from Linux
//! 6.6; before, a clsact filter at priority 1, where Cilium puts its own.
//!
//! Herald answers from TC ingress, before the one that ends the chain; theirs keep running; and
//! nothing of theirs is detached by any start or stop of Herald's (SIGTERM, SIGKILL). A killed
//! speaker's clsact filter is taken over by the next one, and one an earlier release left (under
//! the program's earlier name) is removed: one Herald program at the hook, never two. Needs
//! root.

use std::{net::Ipv4Addr, path::PathBuf};

use herald_tests::{
    foreign::{At, Foreign, Stats, TC_ACT_OK, TC_ACT_UNSPEC, XDP_PASS, pinned_tc_program},
    kernel_at_least,
    lab::{Host, Lab},
    probe::{assert_answers, assert_silent},
    root_or_skip,
    speaker::{self, Speaker},
    workspace_bin,
};
use nix::sys::signal::Signal;

const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 200);
const CONFIG: &str = "node = \"node-a\"\n[[vip]]\naddress = \"192.0.2.200\"\n";

/// The foreign programs on `node`'s eth0, pinned under `dir`.
struct Theirs {
    node: Host,
    dir: PathBuf,
    programs: Vec<Foreign>,
}

impl Theirs {
    fn attach(node: &Host) -> Self {
        let dir = PathBuf::from("/sys/fs/bpf").join(format!("{}-foreign", node.netns));
        std::fs::create_dir_all(&dir).unwrap();
        let mut theirs = Theirs { node: node.clone(), dir, programs: Vec::new() };
        let mut add = |name: &str, verdict, at| {
            let program = Foreign::attach(&theirs.node, &theirs.dir, name, verdict, at).expect(name);
            theirs.programs.push(program);
        };
        add("ddos_xdp", XDP_PASS, At::Xdp);
        if kernel_at_least(6, 6) {
            add("calico_tcx", TC_ACT_UNSPEC, At::Tcx);
            add("cilium_tcx_end", TC_ACT_OK, At::Tcx);
        } else {
            add("cilium_tc_end", TC_ACT_OK, At::Filter { priority: 1, handle: 1 });
        }
        theirs
    }

    /// Every one is still attached where it was put.
    fn assert_attached(&self, when: &str) {
        for program in &self.programs {
            assert!(program.is_attached(&self.node).unwrap(), "{when}: {} was detached", program.name);
        }
    }

    fn runs(&self) -> Vec<u64> {
        self.programs.iter().map(|p| p.runs().unwrap()).collect()
    }

    /// Every one runs: traffic to the node (ping, ARP for its own address) raises each count.
    fn assert_running(&self, lab: &Lab, when: &str) {
        let before = self.runs();
        lab.client.run("ping", &["-c", "3", "-i", "0.2", "-W", "1", "192.0.2.1"]).unwrap();
        let after = self.runs();
        for ((program, b), a) in self.programs.iter().zip(before).zip(after) {
            assert!(a > b, "{when}: {} did not run ({b} runs, then {a})", program.name);
        }
    }
}

impl Drop for Theirs {
    fn drop(&mut self) {
        for program in self.programs.drain(..) {
            program.remove(&self.node);
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Herald's programs at `node`'s eth0, as [`speaker::attached`] lists them.
fn heralds(node: &Host) -> Vec<String> {
    speaker::attached(node)
        .unwrap()
        .into_iter()
        .filter(|a| a.split_whitespace().last().is_some_and(speaker_common::is_herald_program))
        .collect()
}

#[test]
fn beside_other_programs_at_xdp_and_tc() {
    if !root_or_skip("beside_other_programs_at_xdp_and_tc") {
        return;
    }
    let _stats = Stats::enable().unwrap();
    let mut lab = Lab::new(&["node-a"]).expect("lab");
    let node = lab.node("node-a").clone();
    let theirs = Theirs::attach(&node);
    theirs.assert_running(&lab, "before Herald");

    // The preflight names the program at XDP, and `--datapath xdp` cannot have the hook.
    let config = lab.workdir.join("check.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let bin = workspace_bin("herald-speaker");
    let check = node
        .output(
            bin.to_str().unwrap(),
            &["check", "--interface", "eth0", "--config", config.to_str().unwrap(), "--datapath", "xdp"],
        )
        .unwrap();
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(report.contains("another program, ddos_xdp (program id"), "{report}");

    let speaker = Speaker::start(&mut lab, &node, CONFIG, &[]).unwrap();
    assert!(speaker.log_text().contains("another program holds the XDP hook"), "{}", speaker.log_text());
    assert_answers(&lab, &node, VIP);
    assert_eq!(heralds(&node).len(), 1, "{:?}", speaker::attached(&node).unwrap());
    theirs.assert_attached("with Herald");
    theirs.assert_running(&lab, "with Herald");

    // SIGTERM: Herald's program goes, theirs stay.
    assert!(speaker.stop(&mut lab).unwrap().success());
    assert_eq!(heralds(&node), Vec::<String>::new(), "after SIGTERM");
    theirs.assert_attached("after SIGTERM");

    // SIGKILL, then a new speaker: still one program of Herald's (a clsact filter left by the
    // killed one is taken over), and theirs untouched throughout.
    let speaker = Speaker::start(&mut lab, &node, CONFIG, &[]).unwrap();
    speaker.signal(Signal::SIGKILL).unwrap();
    lab.take_child(speaker.pid).unwrap().wait().unwrap();
    theirs.assert_attached("after SIGKILL");
    let left = heralds(&node);
    let speaker = Speaker::start(&mut lab, &node, CONFIG, &[]).unwrap();
    if !left.is_empty() {
        assert!(speaker.log_text().contains("took over the TC filter"), "{}", speaker.log_text());
    }
    assert_eq!(heralds(&node).len(), 1, "after a restart: {:?}", speaker::attached(&node).unwrap());
    assert_answers(&lab, &node, VIP);
    theirs.assert_attached("after a restart");
    theirs.assert_running(&lab, "after a restart");
    assert!(speaker.stop(&mut lab).unwrap().success());
    assert_eq!(heralds(&node), Vec::<String>::new(), "after the last SIGTERM");
}

/// Before TCX, every SIGKILL left a clsact filter behind, and the next speaker added another.
#[test]
fn killed_speakers_leave_one_filter_at_most() {
    if !root_or_skip("killed_speakers_leave_one_filter_at_most") {
        return;
    }
    let mut lab = Lab::new(&["node-a"]).expect("lab");
    let node = lab.node("node-a").clone();
    for round in 0..3 {
        let speaker = Speaker::start(&mut lab, &node, CONFIG, &[]).unwrap();
        assert_answers(&lab, &node, VIP);
        assert_eq!(heralds(&node).len(), 1, "round {round}: {:?}", speaker::attached(&node).unwrap());
        speaker.signal(Signal::SIGKILL).unwrap();
        lab.take_child(speaker.pid).unwrap().wait().unwrap();
        assert!(heralds(&node).len() <= 1, "round {round}: {:?}", speaker::attached(&node).unwrap());
    }
    let speaker = Speaker::start(&mut lab, &node, CONFIG, &[]).unwrap();
    assert!(speaker.stop(&mut lab).unwrap().success());
    assert_eq!(heralds(&node), Vec::<String>::new(), "after SIGTERM");
}

/// With `--on-exit keep` (the DaemonSet's), a stopped speaker leaves its program attached and
/// idle, and the next one takes the link over in place: a restart attaches nothing anew.
/// `cleanup` then removes it.
#[test]
fn restarts_take_over_the_link() {
    if !root_or_skip("restarts_take_over_the_link") {
        return;
    }
    let mut lab = Lab::new(&["node-a"]).expect("lab");
    let node = lab.node("node-a").clone();
    let keep = ["--on-exit", "keep"];
    let speaker = Speaker::start(&mut lab, &node, CONFIG, &keep).unwrap();
    assert_answers(&lab, &node, VIP);
    let speaker = restarts_keep_the_link(&mut lab, &node, speaker, &keep, speaker::at_tc);
    assert_eq!(heralds(&node).len(), 1, "{:?}", speaker::attached(&node).unwrap());

    // An uninstall: `cleanup` removes it, and is refused while a speaker runs.
    let bin = workspace_bin("herald-speaker");
    let pin_dir = lab.pin_dir(&node);
    let cleanup =
        || node.output(bin.to_str().unwrap(), &["cleanup", "--pin-dir", pin_dir.to_str().unwrap()]).unwrap();
    let refused = cleanup();
    assert!(!refused.status.success(), "cleanup beside a running speaker");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("holds the pin directory"), "{refused:?}");
    assert!(speaker.stop(&mut lab).unwrap().success());
    let done = cleanup();
    assert!(done.status.success(), "{done:?}");
    assert_eq!(
        heralds(&node),
        Vec::<String>::new(),
        "after cleanup: {}",
        String::from_utf8_lossy(&done.stdout)
    );
    let left: Vec<_> =
        std::fs::read_dir(&pin_dir).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "pins left behind: {left:?}");
}

/// A filter an earlier release left (its program named `herald_arp_tc`, placed where the kernel
/// chose, as aya attaches it) is Herald's: the next speaker removes it and runs its own, one
/// program of Herald's at the hook.
#[test]
fn an_earlier_releases_filter_is_removed() {
    if !root_or_skip("an_earlier_releases_filter_is_removed") {
        return;
    }
    let mut lab = Lab::new(&["node-a"]).expect("lab");
    let node = lab.node("node-a").clone();
    let dir = PathBuf::from("/sys/fs/bpf").join(format!("{}-earlier", node.netns));
    std::fs::create_dir_all(&dir).unwrap();
    let pin = pinned_tc_program(&dir, speaker_common::EARLIER_TC_PROGRAM, TC_ACT_UNSPEC).unwrap();
    let _ = node.output("tc", &["qdisc", "add", "dev", "eth0", "clsact"]);
    let path = pin.clone();
    node.in_netns(move || {
        use aya::programs::{SchedClassifier, TcAttachType, tc::TcAttach};
        let mut tc = SchedClassifier::from_pin(&path)?;
        let link = tc.attach(
            c"eth0",
            TcAttach::Netlink { parent: TcAttachType::Ingress.into(), options: Default::default() },
        )?;
        // Left behind, as by a speaker that was killed.
        std::mem::forget(tc.take_link(link)?);
        Ok(())
    })
    .unwrap();
    let _ = std::fs::remove_file(&pin);
    let _ = std::fs::remove_dir(&dir);
    assert_eq!(heralds(&node), vec![format!("clsact/ingress {}", speaker_common::EARLIER_TC_PROGRAM)]);

    let speaker = Speaker::start(&mut lab, &node, CONFIG, &[]).unwrap();
    assert!(
        speaker.log_text().contains("removed a TC filter an earlier release left"),
        "{}",
        speaker.log_text()
    );
    let now = heralds(&node);
    assert_eq!(now.len(), 1, "{now:?}");
    assert!(now[0].ends_with(speaker_common::TC_PROGRAM), "{now:?}");
    assert_answers(&lab, &node, VIP);
    assert!(speaker.stop(&mut lab).unwrap().success());
    assert_eq!(heralds(&node), Vec::<String>::new(), "after SIGTERM");
}

/// The same hand-over at XDP, where the driver-bound program runs (`--datapath xdp`, Linux 6.8,
/// where the lab's veth reports stripped tags): a restart, after SIGTERM or SIGKILL, keeps the
/// XDP link and puts the new speaker's program in it.
#[test]
fn restarts_take_over_the_xdp_link() {
    if !root_or_skip("restarts_take_over_the_xdp_link") {
        return;
    }
    if !kernel_at_least(6, 8) {
        // No driver-bound program on this kernel: the TC test above is the hand-over here.
        return;
    }
    let mut lab = Lab::new(&["node-a"]).expect("lab");
    let node = lab.node("node-a").clone();
    let args = ["--datapath", "xdp", "--on-exit", "keep"];
    let speaker = Speaker::start(&mut lab, &node, CONFIG, &args).unwrap();
    assert_answers(&lab, &node, VIP);
    assert_eq!(heralds(&node), vec![speaker::XDP_BOUND.to_owned()]);
    let speaker = restarts_keep_the_link(&mut lab, &node, speaker, &args, speaker::at_xdp);

    let bin = workspace_bin("herald-speaker");
    let pin_dir = lab.pin_dir(&node);
    assert!(speaker.stop(&mut lab).unwrap().success());
    let done =
        node.output(bin.to_str().unwrap(), &["cleanup", "--pin-dir", pin_dir.to_str().unwrap()]).unwrap();
    assert!(done.status.success(), "{done:?}");
    assert_eq!(heralds(&node), Vec::<String>::new(), "after cleanup");
}

/// With `speaker` running and answering under `--on-exit keep` (in `args`): SIGTERM leaves its
/// program at the hook (`at`: the program's id, and what holds it there) and silent; the next
/// speaker runs its own program in the same holder; so does the one after a SIGKILL. Returns
/// that last speaker, running.
fn restarts_keep_the_link(
    lab: &mut Lab,
    node: &Host,
    speaker: Speaker,
    args: &[&str],
    at: fn(&Host) -> anyhow::Result<(u32, String)>,
) -> Speaker {
    let (first, held) = at(node).expect("Herald at the hook");

    // SIGTERM: left attached, idle.
    assert!(speaker.stop(lab).unwrap().success());
    assert_eq!(at(node).expect("Herald at the hook"), (first, held.clone()), "after SIGTERM");
    // A stopped speaker's program answers nothing.
    assert_silent(lab, VIP);

    // The next one takes it over: the same holder, its own program.
    let speaker = Speaker::start(lab, node, CONFIG, args).unwrap();
    let (second, again) = at(node).expect("Herald at the hook");
    assert_eq!(again, held, "a restart attached anew");
    assert_ne!(second, first, "the link runs the new speaker's program");
    assert_answers(lab, node, VIP);

    // SIGKILL, and the next one: the same holder again.
    speaker.signal(Signal::SIGKILL).unwrap();
    lab.take_child(speaker.pid).unwrap().wait().unwrap();
    let speaker = Speaker::start(lab, node, CONFIG, args).unwrap();
    let (third, again) = at(node).expect("Herald at the hook");
    assert_eq!(again, held, "a restart after SIGKILL attached anew");
    assert_ne!(third, second);
    assert_answers(lab, node, VIP);
    speaker
}
