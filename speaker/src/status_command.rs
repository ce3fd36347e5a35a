//! `herald-speaker status`: what a running speaker announces, read from its pinned maps.

use std::{collections::BTreeMap, fmt::Write, path::Path};

use speaker_common::Heartbeat;

use crate::{clock, frame::format_mac, pinned, state_file};

/// Renders the status report for the speaker that pins under `dir`: its maps, then, while it
/// runs, what it wrote to its state file under `state_dir`.
pub fn report(dir: &Path, state_dir: &Path) -> anyhow::Result<String> {
    use anyhow::Context as _;
    let beat = pinned::heartbeat(dir)
        .with_context(|| format!("no speaker state under {} (is a speaker running?)", dir.display()))?;
    let entries = pinned::entries(dir).with_context(|| format!("reading {}", dir.display()))?;
    let alive = pinned::speaker_alive(&beat);
    // Interfaces are named from the speaker's own state: indexes mean something only in the
    // speaker's network namespace, which need not be the caller's.
    let state = if alive { std::fs::read_to_string(state_file::path(state_dir, dir)).ok() } else { None };
    let names = state.as_deref().map(state_file::interface_names).unwrap_or_default();
    let now = clock::monotonic_ns();
    let mut out = format!("heartbeat: {}\n", heartbeat_line(&beat, now, alive));
    out += &table(&entries, &names, now);
    // Absent from a speaker of an older build: no lines.
    out += &elsewhere_lines(&pinned::elsewhere(dir).unwrap_or_default());
    out += &state.unwrap_or_default();
    Ok(out)
}

/// The entries, one line each, then a line per address another host claims.
pub fn table(entries: &[pinned::Entry], names: &BTreeMap<u32, String>, now_ns: u64) -> String {
    let name = |ifindex: u32| names.get(&ifindex).cloned().unwrap_or_else(|| format!("#{ifindex}"));
    let mut out =
        format!("{:<16} {:<16} {:>4}  {:<17} {:>10}\n", "ADDRESS", "INTERFACE", "VLAN", "MAC", "REPLIES");
    for e in entries {
        let (mac, ifname) = (format_mac(e.mac), name(e.ifindex));
        let _ = writeln!(out, "{:<16} {:<16} {:>4}  {:<17} {:>10}", e.addr, ifname, e.vlan, mac, e.replies);
    }
    if entries.is_empty() {
        out += "(no addresses announced)\n";
    }
    for e in entries.iter().filter(|e| e.conflicts > 0) {
        let ago = now_ns.saturating_sub(e.conflict_ns) / 1_000_000_000;
        let vlan = if e.vlan == 0 { String::new() } else { format!(" VLAN {}", e.vlan) };
        let claims = if e.conflicts == 1 { "1 claim".to_owned() } else { format!("{} claims", e.conflicts) };
        let _ = writeln!(
            out,
            "conflict: {} also claimed by {} {ago} s ago ({}{vlan}, {claims})",
            e.addr,
            format_mac(e.conflict_mac),
            name(e.ifindex),
        );
    }
    out
}

/// A line per address another node announces, whose requests are dropped here.
pub fn elsewhere_lines(elsewhere: &[(std::net::Ipv4Addr, u64)]) -> String {
    let mut out = String::new();
    for (addr, dropped) in elsewhere {
        let _ = writeln!(
            out,
            "elsewhere: {addr} is announced by another node; {dropped} ARP requests dropped here"
        );
    }
    out
}

/// "400 ms ago (bound 2.0 s): answering", or why the program is not answering.
pub fn heartbeat_line(beat: &Heartbeat, now_ns: u64, speaker_alive: bool) -> String {
    let bound = span(beat.dead_man_ns);
    if !speaker_alive {
        return format!("speaker (pid {}) is gone: its program is detached, nothing is answered", beat.pid);
    }
    if beat.monotonic_ns == 0 {
        return format!("never (bound {bound}): NOT answering");
    }
    let age = now_ns.saturating_sub(beat.monotonic_ns);
    let state = if answering(beat, now_ns) {
        "answering"
    } else {
        "NOT answering: the speaker is hung, or silenced itself (its log says which)"
    };
    format!("{} ago (bound {bound}): {state}", span(age))
}

/// Whether `beat` still lets the programs answer at `now_ns`: it came, within its bound.
pub fn answering(beat: &Heartbeat, now_ns: u64) -> bool {
    beat.monotonic_ns != 0 && now_ns.saturating_sub(beat.monotonic_ns) <= beat.dead_man_ns
}

/// A span of `ns`: in ms below a second (a cluster member's beats hold 40 ms), else in s.
fn span(ns: u64) -> String {
    if ns < 1_000_000_000 { format!("{} ms", ns / 1_000_000) } else { format!("{:.1} s", ns as f64 / 1e9) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_states() {
        let beat =
            Heartbeat { monotonic_ns: 10_000_000_000, dead_man_ns: 2_000_000_000, pid: 7, elsewhere: 0 };
        assert_eq!(heartbeat_line(&beat, 10_400_000_000, true), "400 ms ago (bound 2.0 s): answering");
        assert_eq!(
            heartbeat_line(&beat, 13_000_000_000, true),
            "3.0 s ago (bound 2.0 s): NOT answering: the speaker is hung, or silenced itself (its log says which)"
        );
        let member = Heartbeat { dead_man_ns: 40_000_000, ..beat };
        assert_eq!(heartbeat_line(&member, 10_012_000_000, true), "12 ms ago (bound 40 ms): answering");
        let never = Heartbeat { monotonic_ns: 0, ..beat };
        assert_eq!(heartbeat_line(&never, 1, true), "never (bound 2.0 s): NOT answering");
        assert_eq!(
            heartbeat_line(&beat, 10_400_000_000, false),
            "speaker (pid 7) is gone: its program is detached, nothing is answered"
        );
    }
}
