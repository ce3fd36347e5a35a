//! What a client on the LAN sees: `arping` replies, `tcpdump` captures, the neighbour table.

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    process::{Child, Stdio},
    time::Duration,
};

use anyhow::Context as _;

use crate::lab::{Host, Lab, format_mac, parse_mac};
pub use crate::series::{Probe, series, series_during};

/// The MAC of every ARP reply `from` got for `target` in `count` broadcast probes.
/// (`-b` keeps probing by broadcast, so every host that would answer is heard.)
pub fn arping(from: &Host, target: Ipv4Addr, count: u32) -> anyhow::Result<Vec<[u8; 6]>> {
    let (count_s, wait) = (count.to_string(), (count + 1).to_string());
    run_arping(from, &["-b", "-c", &count_s, "-w", &wait, "-I", "eth0", &target.to_string()])
}

/// Runs arping. Exit status 1 means no reply, but also a bad argument: only a run that printed
/// its "Sent N probes" summary counts, so that silence is never assumed from a failed run.
fn run_arping(from: &Host, args: &[&str]) -> anyhow::Result<Vec<[u8; 6]>> {
    let out = from.output("arping", args)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(
        matches!(out.status.code(), Some(0 | 1)) && stdout.lines().any(|l| l.starts_with("Sent ")),
        "arping {args:?} in {}: {}\n{}{}",
        from.netns,
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    parse_arping(&String::from_utf8_lossy(&out.stdout))
}

/// Every reply the lab's client gets for `vip` comes from `node`, and there are some.
#[track_caller]
pub fn assert_answers(lab: &Lab, node: &Host, vip: Ipv4Addr) {
    let macs = arping(&lab.client, vip, 2).unwrap();
    assert!(!macs.is_empty(), "no reply for {vip}");
    assert!(
        macs.iter().all(|m| *m == node.mac),
        "{vip}: replies from {macs:02x?}, node is {}",
        format_mac(node.mac)
    );
}

/// Nobody answers the lab's client for `vip`.
#[track_caller]
pub fn assert_silent(lab: &Lab, vip: Ipv4Addr) {
    let macs = arping(&lab.client, vip, 1).unwrap();
    assert!(macs.is_empty(), "{vip} is still answered by {macs:02x?}");
}

/// One probe, waiting at most `timeout` (whole seconds, at least 1: arping's unit) for replies.
pub fn arping_once(from: &Host, target: Ipv4Addr, timeout: Duration) -> anyhow::Result<Vec<[u8; 6]>> {
    let wait = timeout.as_secs().max(1).to_string();
    run_arping(from, &["-b", "-c", "1", "-w", &wait, "-I", "eth0", &target.to_string()])
}

/// Parses iputils arping output: `Unicast reply from 192.0.2.200 [72:07:08:34:82:64]  0.536ms`.
pub fn parse_arping(text: &str) -> anyhow::Result<Vec<[u8; 6]>> {
    text.lines()
        .filter(|l| l.contains(" reply from "))
        .map(|l| {
            let mac =
                l.split('[').nth(1).and_then(|r| r.split(']').next()).context("no MAC in arping line")?;
            parse_mac(mac)
        })
        .collect()
}

/// Resolves `target` with `from`'s own Neighbor Discovery, as any IPv6 host does: forgets what it
/// knew of it, pings it once (the kernel solicits the address first), and returns the MAC its
/// neighbour table then holds, if any.
pub fn resolve6(from: &Host, target: Ipv6Addr) -> anyhow::Result<Option<[u8; 6]>> {
    let target_s = target.to_string();
    from.run("ip", &["-6", "neigh", "flush", "to", &target_s, "dev", "eth0"])?;
    // No echo reply comes (the address is on no node's interface): only the solicitation counts.
    let _ = from.output("ping", &["-6", "-c", "1", "-W", "1", &target_s])?;
    neighbour6(from, target)
}

/// The MAC `from`'s neighbour table holds for `target` (none while unresolved or failed).
pub fn neighbour6(from: &Host, target: Ipv6Addr) -> anyhow::Result<Option<[u8; 6]>> {
    let out = from.run("ip", &["-6", "neigh", "show", &target.to_string(), "dev", "eth0"])?;
    out.split_whitespace().skip_while(|w| *w != "lladdr").nth(1).map(parse_mac).transpose()
}

/// Polls until `check` holds for the MACs answering `target`, or `timeout` passes.
pub fn wait_for_answer(
    from: &Host,
    target: Ipv4Addr,
    timeout: Duration,
    check: impl Fn(&[[u8; 6]]) -> bool,
) -> anyhow::Result<Vec<[u8; 6]>> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let macs = arping_once(from, target, Duration::from_secs(1))?;
        if check(&macs) || std::time::Instant::now() > deadline {
            return Ok(macs);
        }
    }
}

/// A running `tcpdump` on `host`'s eth0, incoming frames only; [`Capture::stop`] returns the
/// lines it printed.
pub struct Capture {
    child: Child,
    // Kept open: tcpdump writes its summary there on exit.
    _stderr: std::process::ChildStderr,
    /// What tcpdump printed so far, read as it comes (a reader thread).
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Capture {
    /// Incoming ARP, untagged or behind one 802.1Q tag.
    pub fn arp(host: &Host) -> anyhow::Result<Self> {
        Self::start(host, "in", &["arp", "or", "(vlan", "and", "arp)"])
    }

    /// Incoming ARP as in [`Capture::arp`], each frame also printed whole in hex (read them with
    /// [`frames`]). A tag that travelled beside the frame is put back in its place, as on a wire.
    pub fn arp_frames(host: &Host) -> anyhow::Result<Self> {
        Self::start_with(host, "in", &["-xx"], &["arp", "or", "(vlan", "and", "arp)"])
    }

    /// Incoming ARP and ICMPv6 (Neighbor Discovery among it), untagged or behind one 802.1Q tag,
    /// each frame also printed whole in hex (see [`Capture::arp_frames`]).
    pub fn answer_frames(host: &Host) -> anyhow::Result<Self> {
        let filter = ["arp", "or", "icmp6", "or", "(vlan", "and", "(arp", "or", "icmp6))"];
        Self::start_with(host, "in", &["-xx"], &filter)
    }

    /// Incoming Neighbor Discovery and MLD (ICMPv6 types 130-143), each frame also printed whole
    /// in hex (read them with [`frames`]).
    pub fn ndp_frames(host: &Host) -> anyhow::Result<Self> {
        Self::start_with(
            host,
            "in",
            &["-xx"],
            &["icmp6", "and", "ip6[40]", ">=", "130", "and", "ip6[40]", "<=", "143"],
        )
    }

    /// Outgoing MLDv2 reports (to ff02::16, behind a hop-by-hop header), verbose: each names
    /// its groups (`gaddr ...`).
    pub fn mld_reports(host: &Host) -> anyhow::Result<Self> {
        Self::start_with(host, "out", &["-v"], &["ip6", "dst", "ff02::16"])
    }

    /// `direction`: in, out or inout; `filter`: a tcpdump expression.
    pub fn start(host: &Host, direction: &str, filter: &[&str]) -> anyhow::Result<Self> {
        Self::start_with(host, direction, &[], filter)
    }

    fn start_with(host: &Host, direction: &str, options: &[&str], filter: &[&str]) -> anyhow::Result<Self> {
        let child = host
            .command("tcpdump")
            .args(["-i", "eth0", "-n", "-e", "-l", "--immediate-mode", "-tt", "-Q", direction])
            // In immediate mode every frame takes a slot sized for the largest one in the
            // kernel's ring: at tcpdump's defaults (2 MiB) a few dozen slots, and a burst while
            // tcpdump waits for a CPU loses frames (6 of 500 sent at once on a veth here; none
            // with these). The lab's frames fit in 1,600 bytes.
            .args(["-s", "1600", "-B", "16384"])
            .args(options)
            .args(filter)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting tcpdump")?;
        let mut child = child;
        let mut stderr = child.stderr.take().context("tcpdump stderr")?;
        // tcpdump says "listening on eth0" on stderr once its socket is open.
        let mut reader = std::io::BufReader::new(&mut stderr);
        let mut line = String::new();
        loop {
            line.clear();
            use std::io::BufRead as _;
            if reader.read_line(&mut line)? == 0 {
                anyhow::bail!("tcpdump exited before it was listening");
            }
            if line.contains("listening on") {
                break;
            }
        }
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stdout = child.stdout.take().context("tcpdump stdout")?;
        std::thread::spawn({
            let lines = lines.clone();
            move || {
                use std::io::BufRead as _;
                for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(line);
                }
            }
        });
        Ok(Self { child, _stderr: stderr, lines })
    }

    /// Waits (up to `timeout`) until `done` holds for the lines printed so far.
    pub fn wait_for(&self, timeout: Duration, done: impl Fn(&[String]) -> bool) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if done(&self.lines.lock().unwrap()) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        done(&self.lines.lock().unwrap())
    }

    /// How many lines tcpdump printed so far: a mark for [`Capture::lines_from`].
    pub fn mark(&self) -> usize {
        self.lines.lock().unwrap().len()
    }

    /// The lines printed since the first `from`.
    pub fn lines_from(&self, from: usize) -> Vec<String> {
        self.lines.lock().unwrap().get(from..).unwrap_or_default().to_vec()
    }

    /// Stops tcpdump; returns every line it printed.
    pub fn stop(mut self) -> anyhow::Result<Vec<String>> {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT)?;
        self.child.wait()?;
        // The reader thread ends with tcpdump's output; give it a moment to take the last lines.
        std::thread::sleep(Duration::from_millis(50));
        Ok(std::mem::take(&mut *self.lines.lock().unwrap()))
    }
}

/// The frames in the output of a capture started with `-xx` ([`Capture::arp_frames`]): each is
/// a summary line followed by lines of `\t0x0010:  0800 0604 ...`.
pub fn frames(lines: &[String]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for line in lines {
        let Some(hex) = line.strip_prefix('\t').and_then(|l| l.split_once(":  ")).map(|(_, h)| h) else {
            out.push(Vec::new());
            continue;
        };
        let Some(frame) = out.last_mut() else { continue };
        for group in hex.split_whitespace() {
            for pair in group.as_bytes().chunks(2) {
                if let Ok(byte) = u8::from_str_radix(std::str::from_utf8(pair).unwrap_or(""), 16) {
                    frame.push(byte);
                }
            }
        }
    }
    out.retain(|f| !f.is_empty());
    out
}

/// Sends whole Ethernet frames out of `host`'s eth0 through a packet socket.
pub fn send_frames(host: &Host, frames: Vec<Vec<u8>>) -> anyhow::Result<()> {
    let ifindex = host.ifindex()?;
    host.in_netns(move || {
        let sender = herald_speaker::garp::Sender::new()?;
        for frame in &frames {
            sender.send(ifindex, frame)?;
        }
        Ok(())
    })
}

/// The neighbour entries (IPv4) of `host`, as `ip neigh` prints them.
pub fn neighbours(host: &Host) -> anyhow::Result<Vec<String>> {
    Ok(host.run("ip", &["-4", "neigh", "show", "dev", "eth0"])?.lines().map(str::to_owned).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hex_frames() {
        let lines: Vec<String> = [
            "1.0 02:00:00:00:00:01 > ff:ff:ff:ff:ff:ff, ethertype ARP (0x0806), length 42: Request",
            "\t0x0000:  ffff ffff ffff 0200 0000 0001 0806 0001",
            "\t0x0010:  08",
            "2.0 02:00:00:00:00:02 > 02:00:00:00:00:01, ethertype 802.1Q (0x8100), length 46: vlan 42",
            "\t0x0000:  0200 0000 0001 0200 0000 0002 8100 002a",
        ]
        .map(String::from)
        .to_vec();
        let f = frames(&lines);
        assert_eq!(f.len(), 2);
        assert_eq!(f[0], [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 8, 6, 0, 1, 8]);
        assert_eq!(&f[1][12..], [0x81, 0, 0, 42]);
    }

    #[test]
    fn parses_arping() {
        let text = "ARPING 192.0.2.200 from 192.0.2.100 eth0\n\
                    Unicast reply from 192.0.2.200 [72:07:08:34:82:64]  0.536ms\n\
                    Unicast reply from 192.0.2.200 [02:00:00:00:00:01]  0.549ms\n\
                    Sent 2 probes (2 broadcast(s))\nReceived 2 response(s)\n";
        assert_eq!(parse_arping(text).unwrap(), vec![[0x72, 7, 8, 0x34, 0x82, 0x64], [2, 0, 0, 0, 0, 1]]);
        assert!(parse_arping("Sent 1 probes\nReceived 0 response(s)\n").unwrap().is_empty());
    }
}
