//! The simulated LAN: speakers (`node`), a queue of timed events, delay and loss; and what one
//! run measures: a node killed after a time at rest, the time until each of its heirs let it
//! go, live members found failed, and the bytes each node sends.

use std::{
    cmp::{Ordering, Reverse},
    collections::{BTreeSet, BinaryHeap},
    net::{Ipv6Addr, SocketAddr},
    time::{Duration, Instant},
};

use foca::{AccumulatingRuntime, Foca, Member as Record, PostcardCodec, Timer};
use herald_speaker::{
    cluster::{
        Member,
        auth::OVERHEAD,
        hearing::Hearing,
        liveness::{BEAT_EVERY, Liveness, Roles},
        protocol_config,
    },
    config::Timers,
    fence::FENCE_EVERY,
};
use rand::{RngExt as _, SeedableRng as _, rngs::StdRng};

use super::{
    node::{Effects, Node, Payload},
    succession::{Side, name},
};

/// One-way delay on the simulated LAN, uniform in this range (µs).
pub const DELAY_US: (u64, u64) = (100, 500);
/// What a datagram costs on the wire beside the sealed payload: UDP, IPv4 and Ethernet headers.
pub const FRAME: usize = 8 + 20 + 14;
/// How long the simulation may run after the kill before it gives up.
const GIVE_UP: Duration = Duration::from_secs(30);

/// Who beats to whom, and who judges a member failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Design {
    /// Before the ring: owners beat to the heirs of their addresses, which judge.
    Heirs,
    /// Each node beats to the next `k` on a ring of the nodes, which judge and send their
    /// verdict to its heirs (the speaker's, with `herald_speaker::election::WATCHERS`).
    Ring { k: usize },
}

/// One run's settings.
#[derive(Clone, Copy)]
pub struct Params {
    pub design: Design,
    pub loss: f64,
    pub seed: u64,
    /// Time at rest before the kill, over which the bytes at rest are counted.
    pub rest: Duration,
    /// Time after the kill over which the bytes during churn are counted.
    pub churn: Duration,
}

/// What one run measured.
#[derive(Debug)]
pub struct Outcome {
    /// For each heir of the victim: ms from the kill until its view let the victim go.
    pub takeovers: Vec<f64>,
    /// ms from the kill until every other member's SWIM declared the victim down (0 with none).
    pub swim_agreed: f64,
    /// Times a member found a live member failed: each a takeover no one should make.
    pub spurious: u64,
    /// Bytes per second each node sent at rest (mean over the nodes, and the busiest node's),
    /// and during the churn after the kill (mean).
    pub rest: f64,
    pub rest_busiest: f64,
    pub churn: f64,
    /// Datagrams per second each node sent at rest (mean over the nodes).
    pub rest_packets: f64,
}

enum Event {
    Deliver {
        to: usize,
        from: SocketAddr,
        payload: Payload,
    },
    Timer {
        node: usize,
        timer: Timer<Member>,
    },
    Poll {
        node: usize,
    },
    /// The fence's tick, on every node at once.
    Tick,
}

/// An event due at `at` (µs), in the order queued among those due at once.
struct Queued {
    at: u64,
    seq: u64,
    event: Event,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

pub struct Sim<'a> {
    nodes: Vec<Node>,
    sides: &'a [Side],
    queue: BinaryHeap<Reverse<Queued>>,
    seq: u64,
    now_us: u64,
    t0: Instant,
    rng: StdRng,
    params: Params,
    /// Links that carry nothing, both ways.
    cuts: BTreeSet<(usize, usize)>,
    /// When the victim is killed (µs): at the end of the rest, at a time of its own within a
    /// probe period, as beats and probes go.
    kill_at: u64,
    /// Bytes each node sent at rest, and during the churn.
    sent: Vec<[u64; 2]>,
    /// Datagrams each node sent at rest.
    sent_at_rest: Vec<u64>,
    spurious: u64,
}

/// Node `i`'s address: its index in the last 32 bits of 2001:db8::/96.
pub fn addr(i: usize) -> SocketAddr {
    SocketAddr::new(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, (i >> 16) as u16, i as u16).into(), 7946)
}

/// The node at `addr` (see [`addr`]).
fn index(addr: SocketAddr) -> usize {
    let std::net::IpAddr::V6(ip) = addr.ip() else { unreachable!("simulated nodes are IPv6") };
    ip.to_bits() as u32 as usize
}

impl<'a> Sim<'a> {
    /// The nodes of `sides`, knowing each other as after the joins, each following its side of
    /// the election.
    pub fn new(sides: &'a [Side], params: Params) -> Self {
        let n = sides.len();
        let config = protocol_config(n, Timers::default());
        let ids: Vec<Member> = (0..n)
            .map(|i| Member { name: name(i), addr: addr(i), generation: 1, macs: vec![[2, 0, 0, 0, 0, 1]] })
            .collect();
        let t0 = Instant::now();
        let mut rng = StdRng::seed_from_u64(params.seed);
        let kill_at = params.rest.as_micros() as u64 + rng.random_range(0..100_000);
        let mut sim = Self {
            nodes: Vec::with_capacity(n),
            sides,
            queue: BinaryHeap::new(),
            seq: 0,
            now_us: 0,
            t0,
            rng,
            params,
            kill_at,
            cuts: BTreeSet::new(),
            sent: vec![[0; 2]; n],
            sent_at_rest: vec![0; n],
            spurious: 0,
        };
        let mut applied = Vec::with_capacity(n);
        for (i, id) in ids.iter().enumerate() {
            let seed = params.seed ^ ((i as u64 + 1) * 0x9e37_79b9);
            let mut foca = Foca::new(id.clone(), config.clone(), StdRng::seed_from_u64(seed), PostcardCodec);
            let mut rt = AccumulatingRuntime::new();
            let others = ids.iter().filter(|m| m.addr != id.addr).map(|m| Record::alive(m.clone()));
            foca.apply_many(others, false, &mut rt).expect("known members");
            let mut node = Node::new(foca, Liveness::new(id.addr, seed), Hearing::new(&Timers::default()));
            let at = |set: &BTreeSet<usize>| set.iter().map(|&j| addr(j)).collect();
            // Each at its own phase, as speakers started apart are.
            let phase = Duration::from_micros(sim.rng.random_range(0..BEAT_EVERY.as_micros() as u64));
            let roles = match params.design {
                Design::Heirs => Roles::watching(at(&sides[i].heirs), at(&sides[i].owners)),
                Design::Ring { k } => {
                    let k = k.min(n - 1);
                    let heirs_of =
                        |j: usize| sides[j].heirs.iter().filter(|&&h| h != i).map(|&h| addr(h)).collect();
                    Roles {
                        beat_to: (1..=k).map(|d| addr((i + d) % n)).collect(),
                        heirs: at(&sides[i].heirs),
                        watch: (1..=k).map(|d| (i + n - d) % n).map(|j| (addr(j), heirs_of(j))).collect(),
                        inherit: at(&sides[i].owners),
                    }
                }
            };
            node.liveness.follow(roles, t0 + phase);
            sim.nodes.push(node);
            let mut effects = Effects::default();
            effects.timers.extend(std::iter::from_fn(|| rt.to_schedule()));
            applied.push(effects);
        }
        for (i, effects) in applied.into_iter().enumerate() {
            sim.apply(i, effects);
        }
        sim.schedule(FENCE_EVERY.as_micros() as u64, Event::Tick);
        sim
    }

    /// Cuts the link between `a` and `b`: nothing passes either way.
    #[cfg(test)]
    pub fn cut(&mut self, a: usize, b: usize) {
        self.cuts.extend([(a, b), (b, a)]);
    }

    fn schedule(&mut self, after_us: u64, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse(Queued { at: self.now_us + after_us, seq: self.seq, event }));
    }

    fn instant(&self) -> Instant {
        self.t0 + Duration::from_micros(self.now_us)
    }

    /// Node `i`'s effects: datagrams onto the network, timers and its next poll into the queue,
    /// live members found failed counted.
    fn apply(&mut self, i: usize, effects: Effects) {
        let window = match self.now_us {
            t if t < self.params.rest.as_micros() as u64 => Some(0),
            t if t >= self.kill_at && t < self.kill_at + self.params.churn.as_micros() as u64 => Some(1),
            _ => None,
        };
        self.send(i, effects.send, window);
        for (after, timer) in effects.timers {
            self.schedule(after.as_micros() as u64, Event::Timer { node: i, timer });
        }
        for failed in effects.failed.into_iter().map(index) {
            // An heir that lets a live owner go takes its addresses over.
            if self.nodes[failed].alive && self.sides[failed].heirs.contains(&i) {
                self.spurious += 1;
            }
        }
        let node = &mut self.nodes[i];
        if let Some(wake) = node.liveness.next_wake()
            && node.poll_at.is_none_or(|queued| wake < queued)
        {
            node.poll_at = Some(wake);
            // Rounded up: polled before its time, the protocol would have nothing to do.
            let at = wake.saturating_duration_since(self.t0).as_nanos().div_ceil(1000) as u64;
            self.schedule(at.saturating_sub(self.now_us), Event::Poll { node: i });
        }
    }

    /// Datagrams from node `i` onto the network, counted in `window`.
    fn send(&mut self, i: usize, datagrams: Vec<(SocketAddr, Payload)>, window: Option<usize>) {
        for (to, payload) in datagrams {
            if let Some(w) = window {
                self.sent[i][w] += (payload.len() + OVERHEAD + FRAME) as u64;
                self.sent_at_rest[i] += u64::from(w == 0);
            }
            let to = index(to);
            if self.cuts.contains(&(i, to)) || self.rng.random::<f64>() < self.params.loss {
                continue;
            }
            let delay = self.rng.random_range(DELAY_US.0..=DELAY_US.1);
            self.schedule(delay, Event::Deliver { to, from: addr(i), payload });
        }
    }

    /// Runs at rest for the params' `rest`, kills `victim` (if any), and runs until each of its
    /// heirs let it go, every other member's SWIM declared it down, and the churn window is over.
    pub fn run(mut self, victim: Option<usize>) -> anyhow::Result<Outcome> {
        let (kill_at, churn_end) = (self.kill_at, self.kill_at + self.params.churn.as_micros() as u64);
        // Once killed: the victim's heirs that still hold it, the members whose SWIM did not
        // declare it down yet, and the time all of them did.
        let mut pending: Option<(SocketAddr, BTreeSet<usize>, BTreeSet<usize>)> = None;
        let (mut takeovers, mut swim_agreed) = (Vec::new(), None);
        while let Some(Reverse(Queued { at, event, .. })) = self.queue.pop() {
            self.now_us = at;
            if let Some(victim) = victim.filter(|_| pending.is_none() && at >= kill_at) {
                self.nodes[victim].alive = false;
                let victim_addr = addr(victim);
                let swim = (0..self.nodes.len())
                    .filter(|&i| {
                        i != victim && self.nodes[i].foca.iter_members().any(|m| m.id().addr == victim_addr)
                    })
                    .collect();
                pending = Some((victim_addr, self.sides[victim].heirs.clone(), swim));
            }
            if let Some((_, heirs, swim)) = &pending {
                anyhow::ensure!(
                    at - kill_at < GIVE_UP.as_micros() as u64,
                    "{} heirs still hold the victim, {} members' SWIM has not declared it down, {} s after the kill",
                    heirs.len(),
                    swim.len(),
                    GIVE_UP.as_secs()
                );
            }
            let now = self.instant();
            let touched = match event {
                Event::Tick => {
                    self.nodes.iter_mut().filter(|n| n.alive).for_each(Node::settle);
                    self.schedule(FENCE_EVERY.as_micros() as u64, Event::Tick);
                    Some((None, Effects::default()))
                }
                Event::Deliver { to, from, payload } if self.nodes[to].alive => {
                    Some((Some(to), self.nodes[to].receive(from, payload, now)))
                }
                Event::Timer { node, timer } if self.nodes[node].alive => {
                    Some((Some(node), self.nodes[node].timer(timer, now)))
                }
                Event::Poll { node }
                    if self.nodes[node].alive && self.nodes[node].poll_at.is_some_and(|p| p <= now) =>
                {
                    self.nodes[node].poll_at = None;
                    Some((Some(node), self.nodes[node].poll(now)))
                }
                _ => None,
            };
            // The node whose view may have changed (all of them, at a tick).
            let Some((node, effects)) = touched else { continue };
            if let (Some(node), Some((victim_addr, _, swim))) = (node, &mut pending)
                && effects.swim_down.contains(victim_addr)
            {
                swim.remove(&node);
            }
            if let Some(node) = node {
                self.apply(node, effects);
            }
            if let Some((victim_addr, heirs, swim)) = &mut pending {
                let since_kill = (at - kill_at) as f64 / 1e3;
                let nodes = &self.nodes;
                heirs.retain(|&h| {
                    let holds = node.is_some_and(|n| n != h) || nodes[h].holds(*victim_addr);
                    if !holds {
                        takeovers.push(since_kill);
                    }
                    holds
                });
                if swim.is_empty() && swim_agreed.is_none() {
                    swim_agreed = Some(since_kill);
                }
            }
            let done = pending.as_ref().is_none_or(|(_, heirs, _)| heirs.is_empty()) && swim_agreed.is_some();
            if at >= churn_end && (done || victim.is_none()) {
                return Ok(self.outcome(takeovers, swim_agreed.unwrap_or(0.0)));
            }
        }
        anyhow::bail!("the simulation ran out of events")
    }

    fn outcome(&self, takeovers: Vec<f64>, swim_agreed: f64) -> Outcome {
        let n = self.nodes.len() as f64;
        let per_s = |bytes: u64, window: Duration| bytes as f64 / window.as_secs_f64();
        let rest = |i: usize| per_s(self.sent[i][0], self.params.rest);
        Outcome {
            takeovers,
            swim_agreed,
            spurious: self.spurious,
            rest: (0..self.nodes.len()).map(rest).sum::<f64>() / n,
            rest_busiest: (0..self.nodes.len()).map(rest).fold(0.0, f64::max),
            churn: self.sent.iter().map(|s| per_s(s[1], self.params.churn)).sum::<f64>() / n,
            rest_packets: self.sent_at_rest.iter().map(|&p| per_s(p, self.params.rest)).sum::<f64>() / n,
        }
    }
}
