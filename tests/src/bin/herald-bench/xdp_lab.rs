//! `cargo xtask bench xdp`, in the lab: the responder under live traffic at each hook (ns per
//! packet from the kernel's own counters), an ARP flood against the Linux kernel answering, and
//! the neighbour table's growth.

use std::{
    net::Ipv4Addr,
    os::unix::process::CommandExt as _,
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use herald_speaker::frame::Arp;
use herald_tests::{
    lab::{Host, Lab},
    speaker::Speaker,
};
use speaker_common::PASS_PROGRAM;

use super::median;

const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 200);
const ROUNDS_LIVE: usize = 3;
const FLOOD: Duration = Duration::from_secs(3);
/// The last byte of the sender IPv4 address in an Ethernet + ARP frame.
const RANDOM_SENDER_BYTE: usize = 31;

/// One flood's figures.
struct Flood {
    requests_per_s: f64,
    replies_per_s: f64,
    cpu_us_per_request: f64,
}

impl Flood {
    /// Each figure's median over `runs`.
    fn median(runs: &[Flood]) -> Flood {
        let of = |f: fn(&Flood) -> f64| median(&mut runs.iter().map(f).collect::<Vec<_>>());
        Flood {
            requests_per_s: of(|f| f.requests_per_s),
            replies_per_s: of(|f| f.replies_per_s),
            cpu_us_per_request: of(|f| f.cpu_us_per_request),
        }
    }
}

pub fn run() -> anyhow::Result<()> {
    let _stats = BpfStats::enable()?;
    let mut lab = Lab::new(&["node-a"])?;
    let node = lab.node("node-a").clone();
    let client = lab.client.clone();
    let request = Arp::request(client.mac, client.addr, VIP);
    let flood_conf = lab.workdir.join("flood.trafgen");
    std::fs::write(&flood_conf, trafgen_config(&request.to_bytes(), None))?;
    let config = format!("node = \"node-a\"\n[gratuitous]\ncount = 0\n[[vip]]\naddress = \"{VIP}\"\n");
    let vip_on_node = format!("{VIP}/32");

    // The cases in turn, ROUNDS_LIVE times, so that load elsewhere on the machine falls on all
    // of them alike. Herald at its default hook (auto) and at TC ingress.
    let (mut nobody, mut kernel, mut auto, mut tc) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut auto_ns, mut tc_ns, mut pass_ns) = (Vec::new(), Vec::new(), Vec::new());
    let mut auto_program = String::new();
    for _ in 0..ROUNDS_LIVE {
        nobody.push(flood(&client, &flood_conf, None)?);

        node.run("ip", &["addr", "add", &vip_on_node, "dev", "eth0"])?;
        kernel.push(flood(&client, &flood_conf, None)?);
        node.run("ip", &["addr", "del", &vip_on_node, "dev", "eth0"])?;

        for (datapath, floods, hit) in [("auto", &mut auto, &mut auto_ns), ("tc", &mut tc, &mut tc_ns)] {
            let speaker = Speaker::start(&mut lab, &node, &config, &["--datapath", datapath])?;
            let program = attached_program(&speaker)?;
            let before = (prog_stats(&program)?, prog_stats(PASS_PROGRAM)?);
            floods.push(flood(&client, &flood_conf, None)?);
            let after = (prog_stats(&program)?, prog_stats(PASS_PROGRAM)?);
            hit.push(after.0.ns_per_run_since(&before.0));
            if datapath == "auto" {
                pass_ns.push(after.1.ns_per_run_since(&before.1));
                auto_program = program;
            }
            speaker.stop(&mut lab)?;
        }
    }

    // The miss path under the same traffic: requests for an address not announced.
    let speaker = Speaker::start(&mut lab, &node, &config, &[])?;
    let miss_conf = lab.workdir.join("miss.trafgen");
    let other = Arp::request(client.mac, client.addr, Ipv4Addr::new(192, 0, 2, 222));
    std::fs::write(&miss_conf, trafgen_config(&other.to_bytes(), None))?;
    let before = prog_stats(&auto_program)?;
    flood(&client, &miss_conf, None)?;
    let miss_ns = prog_stats(&auto_program)?.ns_per_run_since(&before);
    speaker.stop(&mut lab)?;

    // With every decision logged: 1,000 requests a second (a flood would only fill the ring
    // buffer and drop statements), off and debug in turn.
    let mut logged = Vec::new();
    for level in ["off", "debug"] {
        let speaker = Speaker::start(&mut lab, &node, &config, &["--xdp-log", level])?;
        let before = prog_stats(&auto_program)?;
        flood(&client, &flood_conf, Some("1ms"))?;
        logged.push(prog_stats(&auto_program)?.ns_per_run_since(&before));
        speaker.stop(&mut lab)?;
    }

    println!(
        "Live traffic in the lab (veth, kernel.bpf_stats_enabled), ns per packet, median of {ROUNDS_LIVE}"
    );
    println!("  {:<60} {:>8}", "program and path", "ns/pkt");
    println!("  {:<60} {:>8.0}", "herald_pass on the switch ports (baseline)", median(&mut pass_ns));
    let auto_label = format!("{auto_program} (--datapath auto), hit path (request answered)");
    println!("  {auto_label:<60} {:>8.0}", median(&mut auto_ns));
    println!("  {:<60} {miss_ns:>8.0}", format!("{auto_program}, miss path (another address)"));
    println!("  {:<60} {:>8.0}", "herald_tc (--datapath tc), hit path", median(&mut tc_ns));
    println!("  {:<60} {:>8.0}", format!("{auto_program}, hit path, 1,000/s, --xdp-log off"), logged[0]);
    println!("  {:<60} {:>8.0}", format!("{auto_program}, hit path, 1,000/s, --xdp-log debug"), logged[1]);
    println!("  (target: hit path under 200 ns)\n");

    println!(
        "ARP flood from the client for {VIP} (trafgen, one CPU), {} s per case, median of {ROUNDS_LIVE} interleaved rounds",
        FLOOD.as_secs()
    );
    println!(
        "  {:<34} {:>12} {:>12} {:>16} {:>14}",
        "who answers", "requests/s", "replies/s", "CPU us/request", "minus flood"
    );
    let base = Flood::median(&nobody).cpu_us_per_request;
    for (label, runs) in [
        ("nobody (the flood's own cost)", &nobody),
        ("Linux kernel (VIP on the node)", &kernel),
        ("Herald, --datapath auto", &auto),
        ("Herald, --datapath tc", &tc),
    ] {
        let f = Flood::median(runs);
        println!(
            "  {label:<34} {:>12.0} {:>12.0} {:>16.2} {:>14.2}",
            f.requests_per_s,
            f.replies_per_s,
            f.cpu_us_per_request,
            f.cpu_us_per_request - base
        );
    }
    println!(
        "  On veth the figures are dominated by the generator and the path around the program: trafgen's\n  \
         sends, the bridge flooding each broadcast to every port, and veth's per-packet work on both\n  \
         sides. The program itself is the hit-path figure above; 'minus flood' is the CPU each request\n  \
         costs beyond the flood's own.\n"
    );

    // Neighbour entries learned from a flood of requests from random senders.
    let random_conf = lab.workdir.join("random.trafgen");
    std::fs::write(&random_conf, trafgen_config(&request.to_bytes(), Some(RANDOM_SENDER_BYTE)))?;
    let speaker = Speaker::start(&mut lab, &node, &config, &[])?;
    let herald_neigh = neighbour_growth(&node, &client, &random_conf)?;
    speaker.stop(&mut lab)?;
    node.run("ip", &["addr", "add", &vip_on_node, "dev", "eth0"])?;
    let kernel_neigh = neighbour_growth(&node, &client, &random_conf)?;
    println!(
        "Neighbour entries the node gained from {} s of requests from random senders (192.0.2.0/24)",
        FLOOD.as_secs()
    );
    println!("  {:<34} {:>8}", "who answers", "entries");
    println!("  {:<34} {kernel_neigh:>8}", "Linux kernel (VIP on the node)");
    println!("  {:<34} {herald_neigh:>8}", "Herald");
    println!("  (target: Herald adds none)");
    Ok(())
}

/// The responder program a speaker attached (its name, as bpftool knows it).
fn attached_program(speaker: &Speaker) -> anyhow::Result<String> {
    let attached = speaker.attached()?;
    let line = attached.first().context("no program attached")?;
    Ok(line.split_whitespace().last().context("program name")?.to_owned())
}

/// A trafgen packet config for `frame`; `random_at` makes that byte random per packet.
fn trafgen_config(frame: &[u8], random_at: Option<usize>) -> String {
    let bytes: Vec<String> = frame
        .iter()
        .enumerate()
        .map(|(i, b)| if Some(i) == random_at { "drnd()".to_owned() } else { format!("{b:#04x}") })
        .collect();
    format!("{{ {} }}\n", bytes.join(", "))
}

/// A running trafgen in a process group of its own, killed whole on drop: it forks a sender per
/// CPU, which outlives a kill of the parent alone.
struct Trafgen(Child);

impl Trafgen {
    /// Sends `conf`'s frame out of `host`'s eth0, as fast as it can or with `gap` between frames.
    fn start(host: &Host, conf: &std::path::Path, gap: Option<&str>) -> anyhow::Result<Self> {
        let conf = conf.to_str().context("path")?;
        let child = host
            .command("trafgen")
            .args(["--dev", "eth0", "--conf", conf, "--cpus", "1", "--no-sock-mem", "-q"])
            .args(gap.map(|g| ["--gap", g]).into_iter().flatten())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .context("starting trafgen")?;
        Ok(Self(child))
    }
}

impl Drop for Trafgen {
    fn drop(&mut self) {
        let group = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.0.wait();
    }
}

fn flood(client: &Host, conf: &std::path::Path, gap: Option<&str>) -> anyhow::Result<Flood> {
    let trafgen = Trafgen::start(client, conf, gap)?;
    // trafgen can take seconds to start sending: measure from when it does, after a warm-up.
    let deadline = Instant::now() + Duration::from_secs(10);
    let first = link_packets(client)?.tx;
    while link_packets(client)?.tx < first + 100 {
        if Instant::now() > deadline {
            bail!("trafgen sent nothing in 10 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    let (c0, cpu0, t0) = (link_packets(client)?, busy_ticks()?, Instant::now());
    std::thread::sleep(FLOOD);
    let (c1, cpu1, dt) = (link_packets(client)?, busy_ticks()?, t0.elapsed().as_secs_f64());
    drop(trafgen);
    std::thread::sleep(Duration::from_millis(300));
    let requests = (c1.tx - c0.tx) as f64;
    if requests == 0.0 {
        bail!("the flood of {} sent nothing in {FLOOD:?} (gap {gap:?})", conf.display());
    }
    let ticks_per_s = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)?.unwrap_or(100) as f64;
    let cpu_s = (cpu1 - cpu0) as f64 / ticks_per_s;
    Ok(Flood {
        requests_per_s: requests / dt,
        replies_per_s: (c1.rx - c0.rx) as f64 / dt,
        cpu_us_per_request: cpu_s * 1e6 / requests,
    })
}

/// How many neighbour entries `node` gains from a flood.
fn neighbour_growth(node: &Host, client: &Host, conf: &std::path::Path) -> anyhow::Result<usize> {
    let count = || -> anyhow::Result<usize> {
        Ok(node.run("ip", &["-4", "neigh", "show", "dev", "eth0"])?.lines().count())
    };
    let before = count()?;
    flood(client, conf, None)?;
    Ok(count()?.saturating_sub(before))
}

struct Packets {
    rx: u64,
    tx: u64,
}

/// eth0's packet counters in `host`'s namespace (/proc/net/dev follows the reader's namespace).
fn link_packets(host: &Host) -> anyhow::Result<Packets> {
    let text = host.run("cat", &["/proc/net/dev"])?;
    let line =
        text.lines().find(|l| l.trim_start().starts_with("eth0:")).context("no eth0 in /proc/net/dev")?;
    let cols: Vec<u64> = line
        .split(':')
        .nth(1)
        .context("columns")?
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    Ok(Packets { rx: cols[1], tx: cols[9] })
}

/// Busy CPU time of the whole machine, in clock ticks (all but idle and iowait).
fn busy_ticks() -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let cols: Vec<u64> = stat
        .lines()
        .next()
        .context("/proc/stat")?
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    Ok(cols.iter().sum::<u64>() - cols[3] - cols[4])
}

/// Run time and run count of every loaded program called `name` (bpftool's stats).
struct ProgStats {
    run_time_ns: u64,
    run_cnt: u64,
}

impl ProgStats {
    fn ns_per_run_since(&self, before: &ProgStats) -> f64 {
        (self.run_time_ns - before.run_time_ns) as f64 / (self.run_cnt - before.run_cnt).max(1) as f64
    }
}

fn prog_stats(name: &str) -> anyhow::Result<ProgStats> {
    let out = command_output("bpftool", &["prog", "show", "name", name])?;
    let words: Vec<&str> = out.split_whitespace().collect();
    let sum = |key: &str| -> u64 {
        words.windows(2).filter(|w| w[0] == key).filter_map(|w| w[1].parse::<u64>().ok()).sum()
    };
    Ok(ProgStats { run_time_ns: sum("run_time_ns"), run_cnt: sum("run_cnt") })
}

fn command_output(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = std::process::Command::new(program).args(args).output()?;
    anyhow::ensure!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8(out.stdout)?)
}

/// kernel.bpf_stats_enabled on for the bench, restored after.
struct BpfStats(String);

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

impl BpfStats {
    fn enable() -> anyhow::Result<Self> {
        let old = std::fs::read_to_string(BPF_STATS)?;
        std::fs::write(BPF_STATS, "1")?;
        Ok(Self(old))
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        let _ = std::fs::write(BPF_STATS, self.0.trim());
    }
}
