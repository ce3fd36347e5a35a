//! One simulated speaker's membership, glued as `herald_speaker::cluster`'s task glues it: SWIM
//! (foca), the liveness protocol (`Liveness`) and what the member heard (`Hearing`). Only the
//! socket, the timers and the clock are the simulation's.

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    time::{Duration, Instant},
};

use foca::{AccumulatingRuntime, Foca, OwnedNotification, PostcardCodec, Timer};
use herald_speaker::cluster::{Member, hearing::Hearing, liveness::Liveness, wire::Message};
use rand::rngs::StdRng;

/// What a datagram carries.
pub enum Payload {
    Swim(Vec<u8>),
    Liveness(Message<'static>),
}

impl Payload {
    /// Its length as the speaker encodes it (the kind byte included).
    pub fn len(&self) -> usize {
        match self {
            Payload::Swim(data) => Message::Membership(data).encode().len(),
            Payload::Liveness(message) => message.encode().len(),
        }
    }
}

/// What handling one event asked for.
#[derive(Default)]
pub struct Effects {
    pub send: Vec<(SocketAddr, Payload)>,
    pub timers: Vec<(Duration, Timer<Member>)>,
    /// Members the liveness protocol newly found failed.
    pub failed: Vec<SocketAddr>,
    /// Members SWIM declared down, whether the view let them go or kept them.
    pub swim_down: Vec<SocketAddr>,
}

pub struct Node {
    pub foca: Foca<Member, PostcardCodec, StdRng, foca::NoCustomBroadcast>,
    pub liveness: Liveness,
    pub hearing: Hearing,
    /// Killed: it handles nothing more.
    pub alive: bool,
    /// When a poll of the liveness protocol is queued.
    pub poll_at: Option<Instant>,
    /// The members' addresses, SWIM's and kept: the helpers the liveness protocol asks.
    members: Vec<SocketAddr>,
    /// The liveness protocol's failed set as last seen, to tell what it newly found.
    failed: BTreeSet<SocketAddr>,
}

impl Node {
    pub fn new(
        foca: Foca<Member, PostcardCodec, StdRng, foca::NoCustomBroadcast>,
        liveness: Liveness,
        hearing: Hearing,
    ) -> Self {
        let members = foca.iter_members().map(|m| m.id().addr).collect();
        Self { foca, liveness, hearing, alive: true, poll_at: None, members, failed: BTreeSet::new() }
    }

    /// An authenticated datagram from `from` (the task's `receive`).
    pub fn receive(&mut self, from: SocketAddr, payload: Payload, now: Instant) -> Effects {
        let mut effects = Effects::default();
        let mut rt = AccumulatingRuntime::new();
        self.liveness.heard(from, now);
        self.hearing.heard(from, now);
        match payload {
            Payload::Swim(data) => drop(self.foca.handle_data(&data, &mut rt)),
            Payload::Liveness(message) => {
                let (out, _) = self.liveness.receive(from, message, now);
                effects.send.extend(out.into_iter().map(|(to, m)| (to, Payload::Liveness(m))));
            }
        }
        self.flush(&mut rt, Some(from), now, &mut effects);
        effects
    }

    /// One of SWIM's timers fired.
    pub fn timer(&mut self, timer: Timer<Member>, now: Instant) -> Effects {
        let mut effects = Effects::default();
        let mut rt = AccumulatingRuntime::new();
        drop(self.foca.handle_timer(timer, &mut rt));
        self.flush(&mut rt, None, now, &mut effects);
        effects
    }

    /// The liveness protocol's wake: beats, probes, failures.
    pub fn poll(&mut self, now: Instant) -> Effects {
        let mut effects = Effects::default();
        let (out, _) = self.liveness.poll(now, &self.members);
        effects.send.extend(out.into_iter().map(|(to, m)| (to, Payload::Liveness(m))));
        self.newly_failed(&mut effects);
        effects
    }

    /// The fence's tick: kept members the others' words confirmed gone are let go.
    pub fn settle(&mut self) {
        if self.hearing.kept().next().is_some() {
            let liveness = &self.liveness;
            self.hearing.settle(|addr| liveness.vouches(addr));
            self.members = self.member_addrs();
        }
    }

    /// Whether `addr` is in this member's view of the live members (what its election counts).
    pub fn holds(&self, addr: SocketAddr) -> bool {
        !self.liveness.failed().contains(&addr)
            && (self.foca.iter_members().any(|m| m.id().addr == addr)
                || self.hearing.kept().any(|(_, kept)| *kept == addr))
    }

    /// Carries out what SWIM asked for, and takes in its verdicts as the task does.
    fn flush(
        &mut self,
        rt: &mut AccumulatingRuntime<Member>,
        told_by: Option<SocketAddr>,
        now: Instant,
        effects: &mut Effects,
    ) {
        while let Some((to, data)) = rt.to_send() {
            effects.send.push((to.addr, Payload::Swim(data.to_vec())));
        }
        while let Some((after, timer)) = rt.to_schedule() {
            effects.timers.push((after, timer));
        }
        let mut changed = false;
        while let Some(notification) = rt.to_notify() {
            match notification {
                OwnedNotification::MemberUp(s) => {
                    self.hearing.up(&s.name);
                    self.liveness.admitted(s.addr, now);
                }
                OwnedNotification::MemberDown(s) => {
                    let helpers = self.members.iter().any(|addr| *addr != s.addr);
                    let vouched = helpers && self.liveness.doubt(s.addr, now);
                    self.hearing.down(&s.name, s.addr, told_by, vouched, now);
                    effects.swim_down.push(s.addr);
                }
                _ => {}
            }
            changed = true;
        }
        if changed {
            self.members = self.member_addrs();
            self.liveness.retain_failed(&self.members);
        }
        self.newly_failed(effects);
    }

    fn member_addrs(&self) -> Vec<SocketAddr> {
        let kept = self.hearing.kept().map(|(_, addr)| *addr);
        self.foca.iter_members().map(|m| m.id().addr).chain(kept).collect()
    }

    fn newly_failed(&mut self, effects: &mut Effects) {
        if self.liveness.failed() != &self.failed {
            effects.failed.extend(self.liveness.failed().difference(&self.failed));
            self.failed = self.liveness.failed().clone();
        }
    }
}
