//! The speaker image under podman with runc, as CRI-O and podman run it: their default seccomp
//! profile refuses bpf() without CAP_SYS_ADMIN, so deploy/'s capabilities alone do not run it;
//! with the profile deploy/seccomp/ ships (their default, plus bpf() with CAP_BPF) the speaker
//! answers ARP on a lab node. (containerd's default allows bpf() with CAP_BPF: e2e_nodes runs
//! deploy/ there.) Needs root and the images (`cargo xtask image --lab`).

use std::{path::PathBuf, time::Duration};

use herald_tests::{
    cluster,
    lab::Lab,
    podman::{Podman, archive},
    root_or_skip,
};

const VIP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(192, 0, 2, 200);

fn profile() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/seccomp/herald-speaker.json"))
}

#[test]
fn the_image_answers_under_podman_with_the_shipped_profile_and_not_without() {
    if !root_or_skip("the_image_answers_under_podman_with_the_shipped_profile_and_not_without") {
        return;
    }
    let lab = Lab::new(&["node-a"]).expect("lab");
    let node = lab.node("node-a").clone();
    let podman = Podman::new();
    podman.run(&["load", "-i", archive("herald-speaker").to_str().unwrap()]).unwrap();
    let image = format!("docker.io/library/herald-speaker:{}", env!("CARGO_PKG_VERSION"));
    let config = lab.workdir.join("herald.toml");
    std::fs::write(&config, format!("node = \"node-a\"\n[[vip]]\naddress = \"{VIP}\"\n")).unwrap();
    // The host's pin directory for this node, on its bpffs, as deploy/ mounts it.
    let pins = lab.pin_dir(&node);
    std::fs::create_dir_all(&pins).unwrap();
    let limit = |name: &str, resource| {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit(2) writes the struct given.
        assert_eq!(unsafe { libc::getrlimit(resource, &mut limit) }, 0);
        format!("{name}={}:{}", limit.rlim_cur, limit.rlim_max)
    };
    // Processes: a few threads are all the speaker runs, and the sandbox's runtime may hand its
    // container process fewer than this one has.
    let (nofile, nproc) = (limit("nofile", libc::RLIMIT_NOFILE), "nproc=4096:4096");
    let run = |name: &str, seccomp: Option<&str>| {
        let (network, volume) =
            (format!("ns:/run/netns/{}", node.netns), format!("{}:/bpf/herald", pins.display()));
        let conf = format!("{}:/etc/herald/herald.toml:ro", config.display());
        let mut args = vec![
            "run",
            "-d",
            "--log-driver",
            "k8s-file",
            "--name",
            name,
            "--network",
            &network,
            "--read-only",
            "--tmpfs",
            "/run/herald",
        ];
        // This process's limits: podman's defaults are more than it may give.
        args.extend(["--ulimit", &nofile, "--ulimit", nproc]);
        args.extend(["--cap-drop", "all", "--cap-add", "CAP_BPF,CAP_NET_ADMIN,CAP_NET_RAW"]);
        args.extend(["--security-opt", "no-new-privileges", "-v", &volume, "-v", &conf]);
        let opt;
        if let Some(profile) = seccomp {
            opt = format!("seccomp={profile}");
            args.extend(["--security-opt", &opt]);
        }
        args.extend([image.as_str(), "--config", "/etc/herald/herald.toml", "--pin-dir", "/bpf/herald"]);
        podman.run(&args)
    };

    // The runtime's default profile: refused, and the speaker says why.
    run("refused", None).unwrap();
    let code = podman.run(&["wait", "refused"]).unwrap();
    let logs = podman.run(&["logs", "refused"]).unwrap();
    assert_ne!(code.trim(), "0", "{logs}");
    assert!(logs.contains("seccomp"), "the speaker does not name seccomp:\n{logs}");

    // The shipped profile: it runs, and answers.
    run("speaker", Some(profile().to_str().unwrap())).unwrap();
    let answered = cluster::wait_for_owner(&lab, VIP, node.mac, Duration::from_secs(20));
    let logs = podman.run(&["logs", "speaker"]).unwrap_or_else(|e| format!("{e:#}"));
    let state = podman.run(&["inspect", "speaker", "--format", "{{.State.Status}} {{.State.ExitCode}}"]);
    assert!(answered.is_ok(), "{answered:?}\ncontainer: {state:?}\n{logs}");
    podman.run(&["stop", "--time", "5", "speaker"]).unwrap();
    let code = podman.run(&["wait", "speaker"]).unwrap();
    assert_eq!(
        code.trim(),
        "0",
        "a clean stop on SIGTERM:\n{}",
        podman.run(&["logs", "speaker"]).unwrap_or_default()
    );
}

/// The shipped profile is the runtime's default (containers-common's, as this machine has it)
/// with bpf() allowed under CAP_BPF, and nothing else changed.
#[test]
fn the_shipped_profile_is_the_default_plus_bpf_under_cap_bpf() {
    let read = |path: &std::path::Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    let default = std::path::Path::new("/usr/share/containers/seccomp.json");
    if !default.is_file() {
        assert!(!herald_tests::in_ci(), "no {} (podman's containers-common)", default.display());
        eprintln!("SKIPPED: no {}", default.display());
        return;
    }
    let (shipped, default) = (read(&profile()), read(default));
    let rules =
        |p: &serde_json::Value| -> Vec<serde_json::Value> { p["syscalls"].as_array().unwrap().clone() };
    // Everything but the syscall rules is the default's.
    let strip = |p: &serde_json::Value| {
        let mut p = p.clone();
        p["syscalls"] = serde_json::Value::Null;
        p
    };
    assert_eq!(strip(&shipped), strip(&default));
    // Taking bpf out of every rule of both leaves the same rules.
    let without_bpf = |rules: Vec<serde_json::Value>| -> Vec<serde_json::Value> {
        rules
            .into_iter()
            .filter_map(|mut r| {
                let names: Vec<serde_json::Value> =
                    r["names"].as_array().unwrap().iter().filter(|n| *n != "bpf").cloned().collect();
                (!names.is_empty()).then(|| {
                    r["names"] = names.into();
                    r
                })
            })
            .collect()
    };
    assert_eq!(without_bpf(rules(&shipped)), without_bpf(rules(&default)));
    // And bpf: allowed with CAP_SYS_ADMIN (as before) or CAP_BPF, refused with neither.
    let shipped_rules = rules(&shipped);
    let bpf: Vec<&serde_json::Value> =
        shipped_rules.iter().filter(|r| r["names"].as_array().unwrap().contains(&"bpf".into())).collect();
    let allowed_with: Vec<&serde_json::Value> =
        bpf.iter().filter(|r| r["action"] == "SCMP_ACT_ALLOW").map(|r| &r["includes"]["caps"]).collect();
    assert_eq!(allowed_with, [&serde_json::json!(["CAP_SYS_ADMIN"]), &serde_json::json!(["CAP_BPF"])]);
    let refused: Vec<&serde_json::Value> =
        bpf.iter().filter(|r| r["action"] == "SCMP_ACT_ERRNO").map(|r| &r["excludes"]["caps"]).collect();
    assert_eq!(refused, [&serde_json::json!(["CAP_SYS_ADMIN", "CAP_BPF"])]);
}
