//! `cargo xtask bench xdp`: the responder's cost at each hook, with logging off and on, and a
//! flood in the lab (`xdp_lab.rs`).

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    time::Instant,
};

use herald_speaker::frame::Arp;
use herald_tests::{
    ndp,
    test_run::{Fixture, Hook, LO, Verdict},
};
use speaker_common::{ArpKey, NdpKey};

use super::{conditions, median, plot, xdp_lab};

const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 200);
/// An address another node announces: its requests are dropped.
const ELSEWHERE: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 240);
const ROUNDS: usize = 15;
const REPEAT: u32 = 1_000_000;
/// With logging on, the statements fill the ring buffer (128 KiB): runs are cut into batches
/// this small, and the buffer drained between them, so that every statement is written.
const LOGGED_BATCH: u32 = 500;
/// Calls per row of the answered paths, one run each.
const HIT_CALLS: usize = 3000;

pub fn run() -> anyhow::Result<()> {
    println!("cargo xtask bench xdp ({})\n", conditions());
    test_run_table()?;
    hit_table()?;
    xdp_lab::run()
}

/// One row: what runs, at which hook, with which log level, on which frame.
struct Row<'a> {
    label: &'static str,
    hook: Hook,
    logged: bool,
    /// Run where no address is announced elsewhere (standalone mode): the drop map is skipped.
    alone: bool,
    frame: &'a [u8],
}

/// ns per packet through BPF_PROG_TEST_RUN, interleaved rounds, median of each.
fn test_run_table() -> anyhow::Result<()> {
    let (mut quiet, mut verbose) = (Fixture::with_log_level(0), Fixture::with_log_level(4));
    let mut alone = Fixture::with_log_level(0);
    // Populated maps, so the miss path does real lookups; 1,001 addresses announced elsewhere
    // (Kubernetes mode) but on `alone` (standalone: none, and the drop map is skipped).
    for f in [&mut quiet, &mut verbose, &mut alone] {
        for i in 0..1000u32 {
            let addr = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 51, 100, 0)) + i);
            f.insert(ArpKey::new(addr.octets(), LO, 0), [2, 0, 0, 0, 0, 1]);
            let addr6 =
                Ipv6Addr::from(u128::from(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0xaa, 0)) + u128::from(i));
            f.insert_ndp(NdpKey::new(addr6.octets(), LO, 0), [2, 0, 0, 0, 0, 1]);
        }
    }
    for f in [&mut quiet, &mut verbose] {
        for i in 0..1000u32 {
            f.insert_elsewhere(Ipv4Addr::from(u32::from(Ipv4Addr::new(203, 0, 113, 0)) + 1000 + i));
        }
        f.insert_elsewhere(ELSEWHERE);
    }
    let client = [2, 0, 0, 0, 0, 0x64];
    let miss = Arp::request(client, Ipv4Addr::new(192, 0, 2, 100), VIP).to_bytes();
    // A request for an address another node announces: dropped, so that this kernel does not
    // answer it too (a Service proxy bound it here); the frame is left as it was, so it repeats.
    let elsewhere = Arp::request(client, Ipv4Addr::new(192, 0, 2, 100), ELSEWHERE).to_bytes();
    for hook in [Hook::Xdp, Hook::Tc] {
        anyhow::ensure!(
            quiet.run(hook, &elsewhere)?.0 == Verdict::Drop,
            "{hook:?}: the request is not dropped"
        );
    }
    let mut ipv4 = miss.clone();
    ipv4[12..14].copy_from_slice(&[0x08, 0x00]);
    // A valid solicitation for an address not announced: checked up to the map lookup, as every
    // solicitation on a LAN for the other hosts' addresses. And an IPv6 packet that is not
    // ICMPv6, as most IPv6 traffic.
    let client6 = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100);
    let solicitation = ndp::solicitation(client, client6, Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0xbb, 1));
    let ndp_miss = solicitation.to_bytes();
    let ipv6 = ndp::Packet { next_header: 17, ..solicitation }.to_bytes();

    let row = |label, hook, logged, frame| Row { label, hook, logged, alone: false, frame };
    let rows = [
        row("trivial XDP_PASS program (baseline)", Hook::Pass, false, &ipv4),
        row("herald_xdp (XDP), pass path (IPv4 frame)", Hook::Xdp, false, &ipv4),
        row("herald_xdp (XDP), miss path (ARP, other address)", Hook::Xdp, false, &miss),
        Row {
            alone: true,
            ..row("  same, nothing announced elsewhere (standalone)", Hook::Xdp, false, &miss)
        },
        row("herald_xdp (XDP), drop path (another node's address)", Hook::Xdp, false, &elsewhere),
        row("  same, --xdp-log debug: pass path", Hook::Xdp, true, &ipv4),
        row("  same, --xdp-log debug: miss path (one statement)", Hook::Xdp, true, &miss),
        row("herald_xdp (XDP), pass path (IPv6 UDP packet)", Hook::Xdp, false, &ipv6),
        row("herald_xdp (XDP), NDP miss (valid, other address)", Hook::Xdp, false, &ndp_miss),
        row("herald_tc (TC), pass path (IPv4 frame)", Hook::Tc, false, &ipv4),
        row("herald_tc (TC), miss path (ARP, other address)", Hook::Tc, false, &miss),
        Row {
            alone: true,
            ..row("  same, nothing announced elsewhere (standalone)", Hook::Tc, false, &miss)
        },
        row("herald_tc (TC), drop path (another node's address)", Hook::Tc, false, &elsewhere),
        row("herald_tc (TC), NDP miss (valid, other address)", Hook::Tc, false, &ndp_miss),
    ];
    // Two figures per row: the kernel's own (the program alone, in whole ns) and the wall time of
    // the call over its repeats (program plus the harness's loop, in fractions of a ns).
    let mut kernel = vec![Vec::new(); rows.len()];
    let mut wall = vec![Vec::new(); rows.len()];
    for _ in 0..ROUNDS {
        for (i, row) in rows.iter().enumerate() {
            let (batch, calls) =
                if row.logged { (LOGGED_BATCH, REPEAT / LOGGED_BATCH / 20) } else { (REPEAT, 1) };
            let (mut kernel_ns, mut wall_ns) = (0.0, 0.0);
            for _ in 0..calls {
                let f = match (row.logged, row.alone) {
                    (true, _) => &mut verbose,
                    (false, true) => &mut alone,
                    (false, false) => &mut quiet,
                };
                let start = Instant::now();
                let result = f.time(row.hook, row.frame, batch)?;
                wall_ns += start.elapsed().as_nanos() as f64 / f64::from(batch);
                kernel_ns += result.duration.as_nanos() as f64;
                f.drain_logs();
            }
            kernel[i].push(kernel_ns / f64::from(calls));
            wall[i].push(wall_ns / f64::from(calls));
        }
    }
    let (base_kernel, base_wall) = (median(&mut kernel[0].clone()), median(&mut wall[0].clone()));
    let pct = |x: f64, base: f64| (x / base - 1.0) * 100.0;
    println!("BPF_PROG_TEST_RUN, ns per packet (median of {ROUNDS} rounds of {REPEAT} runs, interleaved)");
    println!("  {:<52} {:>7} {:>8} {:>8} {:>8}", "program and path", "kernel", "vs base", "wall", "vs base");
    let mut plotted = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let (k, w) = (median(&mut kernel[i]), median(&mut wall[i]));
        if !row.logged {
            // "  same, ..." rows name the program of the row above them.
            let label = match row.label.trim().strip_prefix("same, ") {
                Some(rest) => {
                    let above = plotted.last().map_or("", |(l, _): &(String, f64)| l.as_str());
                    // Its last parenthesis says what differs: "(standalone)".
                    format!("{above}, {}", rest.rsplit('(').next().unwrap_or(rest).trim_end_matches(')'))
                }
                None => row.label.to_owned(),
            };
            plotted.push((label, k));
        }
        let wall = if row.logged {
            format!("{:>8} {:>8}", "-", "-")
        } else {
            format!("{w:>8.2} {:>+7.1}%", pct(w, base_wall))
        };
        println!("  {:<52} {k:>7.0} {:>+7.1}% {wall}", row.label, pct(k, base_kernel));
    }
    let size = |f: &Fixture, hook| f.translated_len(hook);
    println!(
        "  kernel: the kernel's own per-run figure (whole ns); wall: the call's wall time over its runs\n  \
         (adds the harness's loop, and a fixed ~15 ms per call here, which {REPEAT} runs amortize).\n  \
         Logged rows run {LOGGED_BATCH} at a time (the log ring buffer holds about 1,300 statements),\n  \
         drained between calls: their wall time is that fixed cost, not shown. The verifier leaves\n  \
         {} bytes of herald_xdp with logging off, {} with debug (off: the object built\n  \
         without them). Target: pass path within 10% of the baseline; logging off costs nothing.\n",
        size(&quiet, Hook::Xdp),
        size(&verbose, Hook::Xdp),
    );
    let title = "Requests not answered: ns per packet (BPF_PROG_TEST_RUN, median)";
    plot::save("xdp-paths", &plot::bars(title, "ns per packet (kernel's figure)", &plotted))
}

/// ns per answered request through BPF_PROG_TEST_RUN, one run per call (an answer rewrites the
/// frame, so runs cannot repeat on it); the kernel's figure for one run includes its timing
/// around that run, as the baseline's does.
fn hit_table() -> anyhow::Result<()> {
    let mut f = Fixture::with_log_level(0);
    let (node, client) = ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 0x64]);
    let vip6 = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0xaa, 1);
    f.insert(ArpKey::new(VIP.octets(), LO, 0), node);
    f.insert_ndp(NdpKey::new(vip6.octets(), LO, 0), node);
    let arp = Arp::request(client, Ipv4Addr::new(192, 0, 2, 100), VIP).to_bytes();
    let solicitation = ndp::solicitation(client, Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100), vip6);
    let dad = ndp::Packet { src: Ipv6Addr::UNSPECIFIED, options: vec![], ..solicitation.clone() }.to_bytes();
    let ns = solicitation.to_bytes();
    let rows: [(&str, Hook, &[u8]); 6] = [
        ("trivial XDP_PASS program (baseline)", Hook::Pass, &arp),
        ("herald_xdp (XDP), ARP request answered", Hook::Xdp, &arp),
        ("herald_xdp (XDP), solicitation answered", Hook::Xdp, &ns),
        ("herald_xdp (XDP), DAD probe answered (frame grows)", Hook::Xdp, &dad),
        ("herald_tc (TC), ARP request answered", Hook::Tc, &arp),
        ("herald_tc (TC), solicitation answered", Hook::Tc, &ns),
    ];
    for (label, hook, frame) in &rows[1..] {
        anyhow::ensure!(f.run(*hook, frame)?.0 == Verdict::Answer, "{label}: not answered");
    }
    let mut kernel = vec![Vec::new(); rows.len()];
    for _ in 0..HIT_CALLS {
        for (i, (_, hook, frame)) in rows.iter().enumerate() {
            kernel[i].push(f.time(*hook, frame, 1)?.duration.as_nanos() as f64);
        }
    }
    let base = median(&mut kernel[0].clone());
    println!(
        "BPF_PROG_TEST_RUN, answered requests, ns for one run (median of {HIT_CALLS} calls, interleaved)"
    );
    println!("  {:<52} {:>7} {:>8}", "program and path", "kernel", "minus base");
    let mut plotted = Vec::new();
    for (i, (label, _, _)) in rows.iter().enumerate() {
        let k = median(&mut kernel[i]);
        println!("  {label:<52} {k:>7.0} {:>8.0}", k - base);
        plotted.push((label.to_string(), k));
    }
    println!();
    let title = "Requests answered: ns for one run (BPF_PROG_TEST_RUN, median)";
    plot::save("xdp-answers", &plot::bars(title, "ns per run, the kernel's timing included", &plotted))
}
