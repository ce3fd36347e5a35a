//! Membership at scale, simulated in process: the speakers' real protocol (foca with Herald's
//! settings, identities and codec, every datagram sealed as on the wire) over a simulated network
//! with delay and loss, from 3 to 500 nodes. One node is killed; the figure is the time until
//! every other node has declared it down, and the bytes each node sends per second.

use std::{
    cmp::Reverse,
    collections::{BTreeSet, BinaryHeap},
    net::{Ipv6Addr, SocketAddr},
    time::Duration,
};

use foca::{AccumulatingRuntime, Foca, Member as Record, OwnedNotification, PostcardCodec, Timer};
use herald_speaker::{
    cluster::{Member, auth::Sealer, protocol_config},
    config::Timers,
};
use rand::{RngExt as _, SeedableRng as _, rngs::StdRng};

const SIZES: [usize; 6] = [3, 10, 50, 100, 250, 500];
const LOSSES: [f64; 3] = [0.0, 0.01, 0.05];
/// One-way delay on the simulated LAN, uniform in this range (µs).
const DELAY_US: (u64, u64) = (100, 500);
/// Simulated time before the kill: the cluster settles, and traffic is counted.
const WARMUP: Duration = Duration::from_secs(5);
/// Kills per row (a different node each time).
const RUNS: usize = 3;

pub fn run() -> anyhow::Result<()> {
    println!("cargo xtask bench membership ({})", super::conditions());
    println!(
        "\nMembership simulated in process: foca with Herald's settings (probe {:?}, rtt {:?}, suspect {:?}),",
        Timers::default().probe_period,
        Timers::default().probe_rtt,
        Timers::default().suspect
    );
    println!(
        "sealed datagrams, one-way delay {}-{} µs, loss as given; one node killed after {} s, {RUNS} runs per row.",
        DELAY_US.0,
        DELAY_US.1,
        WARMUP.as_secs()
    );
    println!("Target: every member agrees within 1 s at 500 nodes, under 10 kB/s per node.\n");
    println!(
        "  {:>6} {:>6} {:>22} {:>22} {:>16}",
        "nodes", "loss", "all agree, median ms", "all agree, worst ms", "bytes/s per node"
    );
    for n in SIZES {
        for loss in LOSSES {
            let mut agree = Vec::new();
            let mut rate = Vec::new();
            for run in 0..RUNS {
                let seed = ((n as u64) << 16) | (loss * 1000.0) as u64 | ((run as u64) << 40);
                let outcome = Sim::new(n, loss, seed).kill_and_wait(run % n)?;
                agree.push(outcome.agreed.as_secs_f64() * 1e3);
                rate.push(outcome.bytes_per_node_per_s);
            }
            let worst = agree.iter().copied().fold(0.0, f64::max);
            println!(
                "  {n:>6} {:>5.0}% {:>22.0} {:>22.0} {:>16.0}",
                loss * 100.0,
                super::median(&mut agree),
                worst,
                super::median(&mut rate)
            );
        }
    }
    Ok(())
}

enum Event {
    Deliver { to: usize, data: Vec<u8> },
    Timer { node: usize, timer: Timer<Member> },
}

struct Node {
    foca: Foca<Member, PostcardCodec, StdRng, foca::NoCustomBroadcast>,
    sealer: Sealer,
    alive: bool,
    /// Bytes sent during the warmup.
    sent: u64,
}

struct Outcome {
    agreed: Duration,
    bytes_per_node_per_s: f64,
}

struct Sim {
    nodes: Vec<Node>,
    ids: Vec<Member>,
    /// Events by (time in µs, sequence): a deterministic order.
    queue: BinaryHeap<Reverse<(u64, u64, usize)>>,
    events: Vec<Option<Event>>,
    now_us: u64,
    rng: StdRng,
    loss: f64,
}

/// Node `i`'s address: its index in the last 32 bits of 2001:db8::/96.
fn addr(i: usize) -> SocketAddr {
    SocketAddr::new(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, (i >> 16) as u16, i as u16).into(), 7946)
}

/// The node at `addr` (see [`addr`]).
fn index(addr: SocketAddr) -> usize {
    let std::net::IpAddr::V6(ip) = addr.ip() else { unreachable!("simulated nodes are IPv6") };
    ip.to_bits() as u32 as usize
}

impl Sim {
    /// `n` nodes that know each other, as after the joins.
    fn new(n: usize, loss: f64, seed: u64) -> Self {
        let ids: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("node-{i}"),
                addr: addr(i),
                generation: 1,
                macs: vec![[2, 0, 0, 0, 0, 1]],
            })
            .collect();
        let config = protocol_config(n, Timers::default());
        let mut sim = Self {
            nodes: Vec::with_capacity(n),
            ids: ids.clone(),
            queue: BinaryHeap::new(),
            events: Vec::new(),
            now_us: 0,
            rng: StdRng::seed_from_u64(seed),
            loss,
        };
        for (i, id) in ids.iter().enumerate() {
            let rng = StdRng::seed_from_u64(seed ^ ((i as u64 + 1) * 0x9e37_79b9));
            let foca = Foca::new(id.clone(), config.clone(), rng, PostcardCodec);
            sim.nodes.push(Node {
                foca,
                sealer: Sealer::new(&[7; 32], id.addr, i as u64),
                alive: true,
                sent: 0,
            });
        }
        for i in 0..n {
            let mut rt = AccumulatingRuntime::new();
            let others =
                ids.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, m)| Record::alive(m.clone()));
            sim.nodes[i].foca.apply_many(others, false, &mut rt).expect("known members");
            sim.flush(i, &mut rt);
        }
        sim
    }

    fn schedule(&mut self, after_us: u64, event: Event) {
        self.events.push(Some(event));
        let seq = self.events.len() - 1;
        self.queue.push(Reverse((self.now_us + after_us, seq as u64, seq)));
    }

    /// What node `i`'s protocol asked for: datagrams onto the network, timers into the queue.
    /// Returns the members it declared down.
    fn flush(&mut self, i: usize, rt: &mut AccumulatingRuntime<Member>) -> Vec<String> {
        while let Some((to, data)) = rt.to_send() {
            let sealed = self.nodes[i].sealer.seal(to.addr, self.now_us / 1000, &data);
            if self.now_us < WARMUP.as_micros() as u64 {
                self.nodes[i].sent += sealed.len() as u64;
            }
            if self.rng.random::<f64>() < self.loss {
                continue;
            }
            let delay = self.rng.random_range(DELAY_US.0..=DELAY_US.1);
            // The receiver opens what was sealed: only the payload goes on.
            self.schedule(delay, Event::Deliver { to: index(to.addr), data: data.to_vec() });
        }
        while let Some((after, timer)) = rt.to_schedule() {
            self.schedule(after.as_micros() as u64, Event::Timer { node: i, timer });
        }
        let mut down = Vec::new();
        while let Some(notification) = rt.to_notify() {
            if let OwnedNotification::MemberDown(m) = notification {
                down.push(m.name);
            }
        }
        down
    }

    /// Runs to the warmup's end, kills `victim`, and runs until every other node has declared it
    /// down.
    fn kill_and_wait(mut self, victim: usize) -> anyhow::Result<Outcome> {
        let victim_name = self.ids[victim].name.clone();
        let mut killed_at = None;
        let mut told: BTreeSet<usize> = BTreeSet::new();
        let others = self.nodes.len() - 1;
        while let Some(Reverse((at, _, seq))) = self.queue.pop() {
            self.now_us = at;
            if killed_at.is_none() && at >= WARMUP.as_micros() as u64 {
                self.nodes[victim].alive = false;
                killed_at = Some(at);
                // A node that (wrongly) holds the victim down already has nothing more to learn.
                let victim_addr = self.ids[victim].addr;
                told.extend((0..self.nodes.len()).filter(|&i| {
                    i != victim && !self.nodes[i].foca.iter_members().any(|m| m.id().addr == victim_addr)
                }));
            }
            if let Some(killed) = killed_at {
                anyhow::ensure!(at - killed < 30_000_000, "{} of {others} agreed after 30 s", told.len());
            }
            let Some(event) = self.events[seq].take() else { continue };
            let node = match &event {
                Event::Deliver { to, .. } => *to,
                Event::Timer { node, .. } => *node,
            };
            if !self.nodes[node].alive {
                continue;
            }
            let mut rt = AccumulatingRuntime::new();
            let result = match event {
                Event::Deliver { data, .. } => self.nodes[node].foca.handle_data(&data, &mut rt),
                Event::Timer { timer, .. } => self.nodes[node].foca.handle_timer(timer, &mut rt),
            };
            drop(result);
            if self.flush(node, &mut rt).contains(&victim_name) && killed_at.is_some() {
                told.insert(node);
            }
            if killed_at.is_some() && told.len() == others {
                {
                    let warm = WARMUP.as_secs_f64();
                    let sent: u64 = self.nodes.iter().map(|n| n.sent).sum();
                    return Ok(Outcome {
                        agreed: Duration::from_micros(at - killed_at.unwrap_or(at)),
                        bytes_per_node_per_s: sent as f64 / self.nodes.len() as f64 / warm,
                    });
                }
            }
        }
        anyhow::bail!("the simulation ran out of events")
    }
}
