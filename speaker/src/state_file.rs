//! What a running speaker knows beyond its maps (members, owned addresses, counters), written
//! to a small text file that `herald-speaker status` prints.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    path::{Path, PathBuf},
};

use crate::{announcement::Announcement, datapath::Placed, metrics::Metrics};

/// The state file of the speaker that pins under `pin_dir`.
pub fn path(state_dir: &Path, pin_dir: &Path) -> PathBuf {
    let name = pin_dir.file_name().map_or_else(|| "herald".into(), |n| n.to_string_lossy().into_owned());
    state_dir.join(format!("{name}.state"))
}

/// One interface the responder runs on: index (in the speaker's network namespace), name, hook.
pub type InterfaceLine = (u32, String, Option<Placed>);

/// The report: this node, the interfaces the responder runs on, the members it sees, what it
/// announces, its counters.
pub fn render(
    node: &str,
    interfaces: &[InterfaceLine],
    alive: Option<&BTreeSet<String>>,
    owned: &BTreeSet<Announcement>,
    not_announced: &BTreeMap<Announcement, String>,
    metrics: &Metrics,
) -> String {
    let mut out = format!("node: {node}\n");
    for (index, name, hook) in interfaces {
        let at = hook.as_ref().map_or("not attached".to_owned(), |h| h.to_string());
        let _ = writeln!(out, "interface {index}: {name} at {at}");
    }
    match alive {
        Some(alive) => {
            let names: Vec<&str> = alive.iter().map(String::as_str).collect();
            let _ = writeln!(out, "members ({} alive): {}", names.len(), names.join(" "));
        }
        None => out.push_str("members: no cluster configured\n"),
    }
    let owns: Vec<String> = owned.iter().map(|a| format!("{} ({})", a.addr, a.ifname)).collect();
    let _ = writeln!(out, "owns: {}", if owns.is_empty() { "nothing".into() } else { owns.join(" ") });
    for (a, why) in not_announced {
        let _ = writeln!(out, "not announced: {} ({}): {why}; trying again", a.addr, a.ifname);
    }
    let counters: Vec<String> = metrics.snapshot().iter().map(|(k, v)| format!("{k}={v}")).collect();
    let _ = writeln!(out, "counters: {}", counters.join(" "));
    out
}

/// The live members a report names (`members (N alive): ...`), if it names them.
pub fn alive(text: &str) -> Option<BTreeSet<String>> {
    let line = text.lines().find(|l| l.starts_with("members ("))?;
    let (_, names) = line.split_once("): ")?;
    Some(names.split_whitespace().map(str::to_owned).collect())
}

/// Interface names by index, from the `interface N: NAME ...` lines of a report.
pub fn interface_names(text: &str) -> BTreeMap<u32, String> {
    text.lines()
        .filter_map(|line| {
            let (index, rest) = line.strip_prefix("interface ")?.split_once(": ")?;
            Some((index.parse().ok()?, rest.split_whitespace().next()?.to_owned()))
        })
        .collect()
}

/// Replaces the file at `path` with `text` (written aside, then renamed: readers never see half).
pub fn write(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders() {
        let metrics = Metrics::default();
        metrics.gratuitous_sent.inc_by(3);
        let owned = BTreeSet::from([Announcement {
            addr: [192, 0, 2, 200].into(),
            ifindex: 2,
            vlan: 0,
            mac: [2, 0, 0, 0, 0, 1],
            ifname: "eth0".into(),
        }]);
        let alive = BTreeSet::from(["node-a".to_string(), "node-b".to_string()]);
        let why = Some("another program, ddos_xdp (program id 7), holds the XDP hook".to_owned());
        let interfaces = [
            (2, "eth0".to_owned(), Some(Placed { hook: crate::datapath::Hook::Tc, why })),
            (7, "eth1".to_owned(), None),
        ];
        let eth1 = Announcement {
            addr: [192, 0, 2, 201].into(),
            ifindex: 7,
            ifname: "eth1".into(),
            ..owned.first().unwrap().clone()
        };
        let failed = BTreeMap::from([(eth1, "refused".to_owned())]);
        let text = render("node-a", &interfaces, Some(&alive), &owned, &failed, &metrics);
        assert_eq!(
            text,
            "node: node-a\ninterface 2: eth0 at TC ingress (another program, ddos_xdp (program id 7), holds the XDP hook)\ninterface 7: eth1 at not attached\n\
             members (2 alive): node-a node-b\nowns: 192.0.2.200 (eth0)\n\
             not announced: 192.0.2.201 (eth1): refused; trying again\n\
             counters: ownership_changes=0 owners_failed=0 fences=0 gratuitous_sent=3 members_alive=0 speakers_running=0 isolated=0 \
             rejected_unauthenticated=0 \
             rejected_stale=0 rejected_replayed=0 rejected_malformed=0 rejected_throttled=0\n"
        );
        assert_eq!(interface_names(&text), BTreeMap::from([(2, "eth0".into()), (7, "eth1".into())]));
        assert!(
            render("n", &[], None, &BTreeSet::new(), &BTreeMap::new(), &metrics)
                .contains("members: no cluster configured\nowns: nothing\n")
        );
        assert_eq!(
            path(Path::new("/run/herald"), Path::new("/sys/fs/bpf/herald")),
            Path::new("/run/herald/herald.state")
        );
    }
}
