//! Kubernetes mode's decision pass, in process, over made-up clusters of 3 to 1,000 nodes and
//! 1,000 to 100,000 Services: the speaker's Decider (election orders kept from pass to pass)
//! beside the rules computed directly (every candidate of every Service ranked on every pass).

use std::{
    alloc::{GlobalAlloc, Layout, System},
    collections::BTreeSet,
    sync::atomic::{AtomicUsize, Ordering::Relaxed},
    time::Instant,
};

use herald_speaker::kubernetes::decide::{
    Decider, Snapshot, reference,
    synthetic::{Dice, Shape, all_live, cluster, node_name},
};

const NODES: [usize; 3] = [3, 100, 1_000];
const SERVICES: [usize; 3] = [1_000, 10_000, 100_000];
/// The direct computation is timed over at most this many (Services x nodes x nodes), then
/// scaled to the whole: it grows with the square of the nodes.
const DIRECT_BUDGET: usize = 400_000_000;

pub fn run() -> anyhow::Result<()> {
    println!("cargo xtask bench decide ({})", super::conditions());
    println!("\nOne decision pass (decide::assign), in process, one thread. Made-up clusters: one plain");
    println!("L2Advertisement, one Service in five with Local traffic (a few replicas, or a DaemonSet);");
    println!("\"mixed\": node and Service selectors, preferences, exclusions, shared addresses.");
    println!("direct: today's rules computed directly (every candidate ranked every pass; ~ = timed");
    println!("over a share of the Services and scaled). Decider: the first pass (cold), then a pass");
    println!("after nothing changed, after the node owning most addresses died, after a node joined,");
    println!("after one Service's endpoints moved. Kept: what the Decider holds between passes; peak:");
    println!("the most heap in use during the cold pass, beyond the snapshot. Paced: the speaker's");
    println!("Decider from cold, which ranks at most 1,000,000 times a pass for new addresses: passes");
    println!("until all is decided, and the longest.");
    println!("Target: a pass under 100 ms at 1,000 nodes x 10,000 Services, under 1 s at 100,000.\n");
    println!(
        "  {:>6} {:>8} {:>6} {:>11} {:>9} {:>8} {:>8} {:>8} {:>9} {:>8} {:>8} {:>7} {:>11}",
        "nodes",
        "Services",
        "shape",
        "direct ms",
        "cold ms",
        "same ms",
        "died ms",
        "join ms",
        "moved ms",
        "kept MB",
        "peak MB",
        "paced",
        "longest ms"
    );
    for nodes in NODES {
        for services in SERVICES {
            row(Shape { nodes, services, mixed: false })?;
        }
    }
    row(Shape { nodes: 1_000, services: 10_000, mixed: true })?;
    Ok(())
}

fn row(shape: Shape) -> anyhow::Result<()> {
    let mut dice = Dice::new((shape.nodes * 1_000_003 + shape.services) as u64);
    let mut snapshot = cluster(shape, &mut dice);
    let mut live = all_live(&snapshot);
    let direct = direct_ms(&snapshot, &live);

    let mut decider = Decider::default();
    let base = IN_USE.load(Relaxed);
    PEAK.store(base, Relaxed);
    let (cold, assignments) = timed(|| decider.assign(&snapshot, &live));
    let peak = PEAK.load(Relaxed) - base;
    let (paced, longest) = paced(&snapshot, &live)?;
    let (same, again) = timed(|| decider.assign(&snapshot, &live));
    anyhow::ensure!(again == assignments, "a pass over the same cluster decided otherwise");

    // The node that owns most: the heaviest takeover.
    let owner = most_owning(&assignments);
    live.remove(&owner);
    let (died, _) = timed(|| decider.assign(&snapshot, &live));
    live.insert(owner);

    let joined = cluster(Shape { nodes: shape.nodes + 1, services: 0, ..shape }, &mut dice).nodes;
    snapshot.nodes.push(joined[shape.nodes].clone());
    live.insert(node_name(shape.nodes));
    let (join, _) = timed(|| decider.assign(&snapshot, &live));

    let moved = dice.below(snapshot.services.len());
    snapshot.services[moved].traffic.ready_endpoint_nodes = [node_name(dice.below(shape.nodes))].into();
    let (moved_ms, last) = timed(|| decider.assign(&snapshot, &live));
    if shape.services * shape.nodes <= 1_000_000 {
        anyhow::ensure!(last == reference::assign(&snapshot, &live), "the Decider and the rules disagree");
    }

    println!(
        "  {:>6} {:>8} {:>6} {:>11} {:>9.1} {:>8.1} {:>8.1} {:>8.1} {:>9.1} {:>8.1} {:>8.1} {:>7} {:>11.1}",
        shape.nodes,
        shape.services,
        if shape.mixed { "mixed" } else { "plain" },
        direct,
        cold,
        same,
        died,
        join,
        moved_ms,
        decider.footprint() as f64 / 1e6,
        peak as f64 / 1e6,
        paced,
        longest,
    );
    Ok(())
}

/// A paced Decider from cold: passes until nothing is pending, and the longest (ms).
fn paced(snapshot: &Snapshot, live: &BTreeSet<String>) -> anyhow::Result<(usize, f64)> {
    let mut decider = Decider::paced();
    let (mut passes, mut longest) = (0, 0f64);
    loop {
        let (ms, _) = timed(|| decider.assign(snapshot, live));
        passes += 1;
        longest = longest.max(ms);
        if !decider.pending() {
            return Ok((passes, longest));
        }
        anyhow::ensure!(passes < 10_000, "a paced Decider still pending after {passes} passes");
    }
}

/// The direct computation's pass, in ms, as text: scaled (with ~) when timed over a share.
fn direct_ms(snapshot: &Snapshot, live: &BTreeSet<String>) -> String {
    let n = snapshot.nodes.len();
    let share = (DIRECT_BUDGET / (n * n)).clamp(1, snapshot.services.len());
    let part = Snapshot { services: snapshot.services[..share].to_vec(), ..snapshot.clone() };
    let (ms, _) = timed(|| reference::assign(&part, live));
    if share == snapshot.services.len() {
        format!("{ms:.1}")
    } else {
        format!("~{:.0}", ms * snapshot.services.len() as f64 / share as f64)
    }
}

fn most_owning(assignments: &[herald_speaker::kubernetes::Assignment]) -> String {
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    for a in assignments {
        *counts.entry(a.owner.as_str()).or_default() += 1;
    }
    counts.into_iter().max_by_key(|(_, c)| *c).map(|(n, _)| n.to_owned()).unwrap_or_default()
}

fn timed<T>(f: impl FnOnce() -> T) -> (f64, T) {
    let start = Instant::now();
    let out = f();
    (start.elapsed().as_secs_f64() * 1e3, out)
}

/// The system allocator, counting the bytes in use and their peak.
struct Counting;

static IN_USE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

#[global_allocator]
static ALLOCATOR: Counting = Counting;

// SAFETY: every call is passed to the system allocator unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = IN_USE.fetch_add(layout.size(), Relaxed) + layout.size();
        PEAK.fetch_max(now, Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        IN_USE.fetch_sub(layout.size(), Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let now = IN_USE.fetch_add(new_size, Relaxed) + new_size;
        PEAK.fetch_max(now, Relaxed);
        IN_USE.fetch_sub(layout.size(), Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
