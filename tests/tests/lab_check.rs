//! The preflight on a lab node: `herald-speaker check` judges the node as it is (the verdict on
//! eth0 follows the kernel: XDP bound to the driver from Linux 6.8, TC ingress before), and a
//! speaker that cannot run refuses to start in one line naming the fix: without capabilities,
//! and under a seccomp filter that refuses bpf() (tests/src/bin/herald-deny-bpf.rs). Needs root.

use std::process::Output;

use herald_tests::{kernel_at_least, lab::Lab, root_or_skip, workspace_bin};

const CONFIG: &str = "node = \"node-a\"\n[[vip]]\naddress = \"192.0.2.200\"\n";

/// Runs `herald-speaker ARGS` on `node-a`, through `wrapper` (argv before the binary), with
/// the lab's config and pin directory.
fn speaker(lab: &Lab, wrapper: &[&str], args: &[&str]) -> Output {
    let node = lab.node("node-a");
    let config = lab.workdir.join("node-a.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let bin = workspace_bin("herald-speaker");
    let pin_dir = lab.pin_dir(node);
    let mut argv: Vec<&str> = wrapper.to_vec();
    argv.push(bin.to_str().unwrap());
    argv.extend_from_slice(args);
    argv.extend_from_slice(&["--config", config.to_str().unwrap(), "--pin-dir", pin_dir.to_str().unwrap()]);
    node.output(argv[0], &argv[1..]).unwrap()
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

/// The line of `report` about `what`, and its state.
fn verdict<'a>(report: &'a str, what: &str) -> (&'a str, &'a str) {
    report
        .lines()
        .find_map(|l| {
            let mut words = l.split_whitespace();
            let state = words.next()?;
            l[9..].starts_with(&format!("{what}  ")).then_some((state, l))
        })
        .unwrap_or_else(|| panic!("no verdict on {what}:\n{report}"))
}

#[test]
fn check_judges_a_lab_node() {
    if !root_or_skip("check_judges_a_lab_node") {
        return;
    }
    let lab = Lab::new(&["node-a"]).expect("lab");
    let out = speaker(&lab, &[], &["check", "--interface", "eth0"]);
    let report = text(&out.stdout);
    assert!(out.status.success(), "{report}{}", text(&out.stderr));
    for what in ["kernel", "BTF", "capabilities", "bpf() syscall", "bpffs", "eth0 IPv6"] {
        assert_eq!(verdict(&report, what).0, "ok", "{report}");
    }
    // A veth: TC ingress at the defaults, on every kernel (its XDP replies need a program on
    // the other end, which the node cannot see), and that is no fallback.
    let (state, line) = verdict(&report, "eth0");
    assert_eq!(state, "ok", "{report}");
    assert!(line.contains("TC ingress: a veth"), "{report}");
    assert_eq!(verdict(&report, "Service proxy").0, "ok", "{report}");

    // An interface the node does not have, and XDP asked for where it cannot know every VLAN.
    let out = speaker(&lab, &[], &["check", "--interface", "eth0", "--interface", "nope0"]);
    let report = text(&out.stdout);
    assert!(!out.status.success(), "{report}");
    assert_eq!(verdict(&report, "nope0").0, "missing", "{report}");
    let out = speaker(&lab, &[], &["check", "--interface", "eth0", "--datapath", "xdp"]);
    let report = text(&out.stdout);
    assert_eq!(out.status.success(), kernel_at_least(6, 8), "{report}");
    if kernel_at_least(6, 8) {
        assert!(
            verdict(&report, "eth0").1.contains("XDP in the driver, which reports the VLAN tags"),
            "{report}"
        );
    }
}

#[test]
fn a_speaker_that_cannot_run_says_why_in_one_line() {
    if !root_or_skip("a_speaker_that_cannot_run_says_why_in_one_line") {
        return;
    }
    let lab = Lab::new(&["node-a"]).expect("lab");
    let deny_bpf = workspace_bin("herald-deny-bpf");
    let nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"];
    let cases: [(&[&str], &str, &str); 2] = [
        (
            &nobody,
            "herald-speaker: capabilities: without CAP_BPF, CAP_NET_ADMIN, CAP_NET_RAW",
            "run as root, or grant",
        ),
        (
            &[deny_bpf.to_str().unwrap()],
            "herald-speaker: bpf() syscall: refused (EPERM) by this process's seccomp filter",
            "seccompProfile",
        ),
    ];
    for (wrapper, says, fix) in cases {
        let out = speaker(&lab, wrapper, &[]);
        let stderr = text(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line:\n{stderr}");
        assert!(stderr.starts_with(says) && stderr.contains(fix), "{stderr}");
        assert_eq!(stderr.matches(says).count(), 1, "said once:\n{stderr}");

        // `check` under the same conditions: the same verdict, exit status 1.
        let out = speaker(&lab, wrapper, &["check", "--interface", "eth0"]);
        let report = text(&out.stdout);
        assert!(!out.status.success(), "{report}");
        let what = if says.contains("capabilities") { "capabilities" } else { "bpf() syscall" };
        assert_eq!(verdict(&report, what).0, "missing", "{report}");
    }
}
