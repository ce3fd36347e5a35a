//! `cargo xtask bench xdp`: the XDP program's cost, and a flood in the lab.

use std::{
    net::Ipv4Addr,
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use aya::{
    EbpfLoader,
    maps::HashMap,
    programs::{TestRun, TestRunOptions, Xdp},
};
use herald_speaker::{datapath::OBJECT, frame::Arp};
use herald_tests::{
    lab::{Host, Lab},
    speaker::Speaker,
};
use speaker_common::{
    ARP_MAP, ARP_PROGRAM, ArpEntry, ArpKey, DEAD_MAN_GLOBAL, DEFAULT_DEAD_MAN_NS, PASS_PROGRAM,
};

use super::{conditions, median};

const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 200);
const ROUNDS: usize = 15;
const REPEAT: u32 = 1_000_000;
const ROUNDS_LIVE: usize = 3;
const FLOOD: Duration = Duration::from_secs(3);
/// The last byte of the sender IPv4 address in an Ethernet + ARP frame.
const RANDOM_SENDER_BYTE: usize = 31;

pub fn run() -> anyhow::Result<()> {
    println!("cargo xtask bench xdp ({})\n", conditions());
    test_run_table()?;
    lab_tables()
}

/// ns per packet through BPF_PROG_TEST_RUN, interleaved rounds, median of each.
fn test_run_table() -> anyhow::Result<()> {
    let mut ebpf =
        EbpfLoader::new().override_global(DEAD_MAN_GLOBAL, &DEFAULT_DEAD_MAN_NS, true).load(OBJECT)?;
    for name in [ARP_PROGRAM, PASS_PROGRAM] {
        let program: &mut Xdp = ebpf.program_mut(name).context("program")?.try_into()?;
        program.load()?;
    }
    // A populated map, so the miss path does a real lookup.
    let mut map: HashMap<_, ArpKey, ArpEntry> = HashMap::try_from(ebpf.map_mut(ARP_MAP).context("map")?)?;
    for i in 0..1000u32 {
        let addr = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 51, 100, 0)) + i);
        map.insert(&ArpKey::new(addr.octets(), 1, 0), &ArpEntry::new([2, 0, 0, 0, 0, 1]), 0)?;
    }
    let client = [2, 0, 0, 0, 0, 0x64];
    let miss = Arp::request(client, Ipv4Addr::new(192, 0, 2, 100), VIP).to_bytes();
    let mut ipv4 = miss.clone();
    ipv4[12..14].copy_from_slice(&[0x08, 0x00]);

    let runs: [(&str, &str, &[u8]); 3] = [
        ("trivial XDP_PASS program (baseline)", PASS_PROGRAM, &ipv4),
        ("herald_arp, pass path (IPv4 frame)", ARP_PROGRAM, &ipv4),
        ("herald_arp, miss path (ARP request, other address)", ARP_PROGRAM, &miss),
    ];
    // Two figures per run: the kernel's own (the program alone, in whole ns) and the wall time of
    // the call over its repeats (program plus the harness's loop, in fractions of a ns).
    let mut kernel = vec![Vec::new(); runs.len()];
    let mut wall = vec![Vec::new(); runs.len()];
    for _ in 0..ROUNDS {
        for (i, (_, name, frame)) in runs.iter().enumerate() {
            let program: &Xdp = ebpf.program(name).context("program")?.try_into()?;
            let options = TestRunOptions { data_in: Some(frame), repeat: REPEAT, ..Default::default() };
            let start = Instant::now();
            let result = program.test_run(options)?;
            wall[i].push(start.elapsed().as_nanos() as f64 / f64::from(REPEAT));
            kernel[i].push(result.duration.as_nanos() as f64);
        }
    }
    let (base_kernel, base_wall) = (median(&mut kernel[0].clone()), median(&mut wall[0].clone()));
    let pct = |x: f64, base: f64| (x / base - 1.0) * 100.0;
    println!("BPF_PROG_TEST_RUN, ns per packet (median of {ROUNDS} rounds x {REPEAT} repeats, interleaved)");
    println!("  {:<52} {:>7} {:>8} {:>8} {:>8}", "program and path", "kernel", "vs base", "wall", "vs base");
    for (i, (label, _, _)) in runs.iter().enumerate() {
        let (k, w) = (median(&mut kernel[i]), median(&mut wall[i]));
        println!(
            "  {label:<52} {k:>7.0} {:>+7.1}% {w:>8.2} {:>+7.1}%",
            pct(k, base_kernel),
            pct(w, base_wall)
        );
    }
    println!(
        "  kernel: the kernel's own per-run figure (whole ns); wall: the call's wall time over its repeats\n  \
         (adds the harness's loop). Target: pass path within 10% of the baseline.\n"
    );
    Ok(())
}

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

fn lab_tables() -> anyhow::Result<()> {
    let _stats = BpfStats::enable()?;
    let mut lab = Lab::new(&["node-a"])?;
    let node = lab.node("node-a").clone();
    let client = lab.client.clone();
    let request = Arp::request(client.mac, client.addr, VIP);
    let flood_conf = lab.workdir.join("flood.trafgen");
    std::fs::write(&flood_conf, trafgen_config(&request.to_bytes(), None))?;
    let config = format!("node = \"node-a\"\n[gratuitous]\ncount = 0\n[[vip]]\naddress = \"{VIP}\"\n");
    let vip_on_node = format!("{VIP}/32");

    // The three cases in turn, ROUNDS_LIVE times, so that load elsewhere on the machine falls on
    // all of them alike.
    let (mut nobody, mut kernel, mut herald) = (Vec::new(), Vec::new(), Vec::new());
    let (mut hit_ns, mut pass_ns) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS_LIVE {
        nobody.push(flood(&client, &flood_conf)?);

        node.run("ip", &["addr", "add", &vip_on_node, "dev", "eth0"])?;
        kernel.push(flood(&client, &flood_conf)?);
        node.run("ip", &["addr", "del", &vip_on_node, "dev", "eth0"])?;

        let speaker = Speaker::start(&mut lab, &node, &config, &["--xdp-mode", "native"])?;
        let before = (prog_stats(ARP_PROGRAM)?, prog_stats(PASS_PROGRAM)?);
        herald.push(flood(&client, &flood_conf)?);
        let after = (prog_stats(ARP_PROGRAM)?, prog_stats(PASS_PROGRAM)?);
        hit_ns.push(after.0.ns_per_run_since(&before.0));
        pass_ns.push(after.1.ns_per_run_since(&before.1));
        speaker.stop(&mut lab)?;
    }

    // Herald's miss path under the same traffic: requests for an address it does not hold.
    let speaker = Speaker::start(&mut lab, &node, &config, &["--xdp-mode", "native"])?;
    let miss_conf = lab.workdir.join("miss.trafgen");
    let other = Arp::request(client.mac, client.addr, Ipv4Addr::new(192, 0, 2, 222));
    std::fs::write(&miss_conf, trafgen_config(&other.to_bytes(), None))?;
    let before = prog_stats(ARP_PROGRAM)?;
    flood(&client, &miss_conf)?;
    let miss_ns = prog_stats(ARP_PROGRAM)?.ns_per_run_since(&before);

    println!(
        "Live traffic in the lab (native XDP on veth, kernel.bpf_stats_enabled), ns per packet, median of {ROUNDS_LIVE}"
    );
    println!("  {:<52} {:>8}", "program and path", "ns/pkt");
    println!("  {:<52} {:>8.0}", "herald_pass on the switch ports (baseline)", median(&mut pass_ns));
    println!("  {:<52} {:>8.0}", "herald_arp, hit path (request answered)", median(&mut hit_ns));
    println!("  {:<52} {miss_ns:>8.0}", "herald_arp, miss path (request for another address)");
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
        ("Herald (XDP)", &herald),
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
    println!("  {:<34} {herald_neigh:>8}", "Herald (XDP)");
    println!("  (target: Herald adds none)");
    Ok(())
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

/// A running trafgen; killed on drop.
struct Trafgen(Child);

impl Trafgen {
    fn start(host: &Host, conf: &std::path::Path) -> anyhow::Result<Self> {
        let conf = conf.to_str().context("path")?;
        let child = host
            .command("trafgen")
            .args(["--dev", "eth0", "--conf", conf, "--cpus", "1", "--no-sock-mem", "-q"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting trafgen")?;
        Ok(Self(child))
    }
}

impl Drop for Trafgen {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn flood(client: &Host, conf: &std::path::Path) -> anyhow::Result<Flood> {
    let trafgen = Trafgen::start(client, conf)?;
    // trafgen can take seconds to start sending: measure from when it does, after a warm-up.
    let deadline = Instant::now() + Duration::from_secs(10);
    let first = link_packets(client)?.tx;
    while link_packets(client)?.tx < first + 1000 {
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
        bail!("the flood sent nothing");
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
    flood(client, conf)?;
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
