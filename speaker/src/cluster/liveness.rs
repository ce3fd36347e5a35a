//! Fast takeover: an owner sends a heartbeat every [`BEAT_EVERY`] to the heirs of its addresses
//! (who inherits what is known to every node from the election), and an heir that has heard
//! nothing from an owner it inherits from for [`SUSPECT_AFTER`] probes it, directly and through
//! two other members. If no ack comes back within [`CONFIRM`], the owner has failed: the heir
//! leaves it out of its view of the live members and takes its addresses over, long before SWIM
//! would declare it down. A lossy link between two nodes costs a probe, not a takeover: the
//! other members' path answers for the owner.
//!
//! Silence alone is no evidence: the heir may be the one cut off, or its socket drowned by a
//! flood. The owner has failed only on a helper's word: each helper asked probes the owner
//! itself and, if no ack comes within [`HELPER_WAIT`], says so (`Unanswered`), in a datagram
//! sealed like every other. A flood can make datagrams get lost, not make that word: an heir
//! that hears neither beats nor acks nor any helper takes nothing over, and probes again later
//! (whether it may announce at all is the quorum's to say). It takes over at [`CONFIRM`] if a
//! helper said the owner was silent and no ack came. With no helper to ask (two members), the
//! heir cannot tell, and takes over on silence. A helper's word that comes late (a loaded
//! helper) is waited for as long again: the owner fails when it arrives.
//!
//! Anything authenticated heard from a member (a beat, an ack, a SWIM message) proves it alive
//! and brings it back into the view. The state machine is pure: time comes in, messages to
//! send go out.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    time::{Duration, Instant},
};

use super::wire::Message;

/// How often an owner beats to its heirs.
pub const BEAT_EVERY: Duration = Duration::from_millis(20);
/// How long an heir waits for a beat before it probes: three beats missed, and half a beat for
/// jitter.
pub const SUSPECT_AFTER: Duration = Duration::from_millis(70);
/// How long the probes have to be answered (a round trip through a helper on a LAN takes well
/// under a millisecond).
pub const CONFIRM: Duration = Duration::from_millis(15);
/// How long a helper waits for the owner's ack before it says the probe went unanswered: within
/// the prober's [`CONFIRM`], with a hop to spare.
pub const HELPER_WAIT: Duration = Duration::from_millis(10);
/// How many other members relay each probe.
const HELPERS: usize = 2;
/// How long a helper remembers whom to pass an ack on to.
const RELAY_FOR: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Watch {
    /// Heard from lately; probed at the deadline.
    Waiting { deadline: Instant },
    /// Probed with `nonce`, through `helpers` others (`unanswered`: one of them said the owner
    /// did not answer it either); failed at `until` if one did and no ack came.
    Confirming { nonce: u64, until: Instant, helpers: usize, unanswered: bool },
    /// Failed; waits to be heard from again.
    Failed,
}

/// One speaker's side of the liveness protocol.
#[derive(Debug)]
pub struct Liveness {
    me: SocketAddr,
    heirs: BTreeSet<SocketAddr>,
    next_beat: Option<Instant>,
    watched: BTreeMap<SocketAddr, Watch>,
    /// Members found failed and not heard from since, watched or not.
    failed: BTreeSet<SocketAddr>,
    /// Probes made for other members.
    relays: Vec<Relay>,
    nonce: u64,
    /// Probes whose time ran out with no helper's word that the owner was silent: each a
    /// takeover not made.
    pub unconfirmed: u64,
}

/// A probe made for another member.
#[derive(Debug)]
struct Relay {
    nonce: u64,
    /// Who asked: the ack goes on to it.
    prober: SocketAddr,
    /// When to tell the prober the owner did not answer, unless it did by then; `None` once told.
    tell_at: Option<Instant>,
    /// When to forget it (a late ack is still passed on until then).
    until: Instant,
}

/// A datagram to send.
pub type Out<'a> = (SocketAddr, Message<'a>);

impl Liveness {
    /// `seed` starts the nonces (random per run, so that a restart never answers old probes).
    pub fn new(me: SocketAddr, seed: u64) -> Self {
        Self {
            me,
            heirs: BTreeSet::new(),
            next_beat: None,
            watched: BTreeMap::new(),
            failed: BTreeSet::new(),
            relays: Vec::new(),
            nonce: seed,
            unconfirmed: 0,
        }
    }

    /// Follows the election: beat to `heirs`, watch `owners`. An owner newly watched is given
    /// [`SUSPECT_AFTER`] from `now` to be heard from.
    pub fn follow(&mut self, heirs: BTreeSet<SocketAddr>, owners: BTreeSet<SocketAddr>, now: Instant) {
        if heirs.is_empty() {
            self.next_beat = None;
        } else if self.next_beat.is_none() || heirs.iter().any(|h| !self.heirs.contains(h)) {
            // A new heir hears at once that it has an owner to watch.
            self.next_beat = Some(now);
        }
        self.heirs = heirs;
        self.watched.retain(|owner, _| owners.contains(owner));
        for owner in owners {
            self.watched.entry(owner).or_insert_with(|| match self.failed.contains(&owner) {
                true => Watch::Failed,
                false => Watch::Waiting { deadline: now + SUSPECT_AFTER },
            });
        }
    }

    /// `from` sent something authenticated. Returns whether it had been found failed (and is
    /// now back in the view).
    pub fn heard(&mut self, from: SocketAddr, now: Instant) -> bool {
        if let Some(watch) = self.watched.get_mut(&from) {
            *watch = Watch::Waiting { deadline: now + SUSPECT_AFTER };
        }
        self.failed.remove(&from)
    }

    /// Handles a liveness message from `from` (already [`heard`](Self::heard)). Returns what to
    /// send, and whether the failed set changed.
    pub fn receive(
        &mut self,
        from: SocketAddr,
        message: Message<'_>,
        now: Instant,
    ) -> (Vec<Out<'static>>, bool) {
        match message {
            Message::Probe(nonce) => (vec![(from, Message::Ack(nonce))], false),
            Message::ProbeFor(nonce, target) => {
                self.relays.retain(|r| r.until > now);
                let tell_at = Some(now + HELPER_WAIT);
                self.relays.push(Relay { nonce, prober: from, tell_at, until: now + RELAY_FOR });
                (vec![(target, Message::Probe(nonce))], false)
            }
            Message::Unanswered(nonce) => {
                let mut changed = false;
                for (owner, watch) in &mut self.watched {
                    if let Watch::Confirming { nonce: n, until, unanswered, .. } = watch
                        && *n == nonce
                    {
                        *unanswered = true;
                        // Late (a loaded helper): the probes' time is up, the owner has failed.
                        if now >= *until {
                            *watch = Watch::Failed;
                            changed |= self.failed.insert(*owner);
                        }
                    }
                }
                (Vec::new(), changed)
            }
            Message::Ack(nonce) => {
                let relayed: Vec<Out> = self
                    .relays
                    .iter()
                    .filter(|r| r.nonce == nonce && r.prober != from)
                    .map(|r| (r.prober, Message::Ack(nonce)))
                    .collect();
                self.relays.retain(|r| r.nonce != nonce);
                // An ack for one of this member's probes, relayed or not, answers for its owner.
                let owner = self.watched.iter().find_map(|(owner, watch)| {
                    matches!(watch, Watch::Confirming { nonce: n, .. } if *n == nonce).then_some(*owner)
                });
                let back = owner.is_some_and(|owner| self.heard(owner, now));
                (relayed, back)
            }
            // An owner leaving (SIGTERM): its heirs take over now, not when SWIM's word of it
            // reaches them (in a large cluster, through others).
            Message::Leaving => match self.watched.get_mut(&from) {
                Some(watch) => {
                    *watch = Watch::Failed;
                    (Vec::new(), self.failed.insert(from))
                }
                None => (Vec::new(), false),
            },
            Message::Beat | Message::Membership(_) => (Vec::new(), false),
        }
    }

    /// What is due at `now`: beats, probes of the owners not heard from (through `members`, the
    /// live members' addresses, as helpers), and failures. Returns what to send, and whether the
    /// failed set changed.
    pub fn poll(&mut self, now: Instant, members: &[SocketAddr]) -> (Vec<Out<'static>>, bool) {
        let mut out = Vec::new();
        if let Some(at) = self.next_beat.filter(|at| *at <= now) {
            out.extend(self.heirs.iter().map(|heir| (*heir, Message::Beat)));
            // On schedule, unless far behind: never a burst to catch up.
            self.next_beat = Some(if now - at < BEAT_EVERY { at + BEAT_EVERY } else { now + BEAT_EVERY });
        }
        for relay in self.relays.iter_mut().filter(|r| r.tell_at.is_some_and(|at| at <= now)) {
            out.push((relay.prober, Message::Unanswered(relay.nonce)));
            relay.tell_at = None;
        }
        let mut changed = false;
        for (owner, watch) in &mut self.watched {
            match *watch {
                Watch::Waiting { deadline } if deadline <= now => {
                    self.nonce = self.nonce.wrapping_add(1);
                    let nonce = self.nonce;
                    out.push((*owner, Message::Probe(nonce)));
                    let others: Vec<&SocketAddr> =
                        members.iter().filter(|m| **m != *owner && **m != self.me).collect();
                    let helpers = HELPERS.min(others.len());
                    let chosen = others.iter().cycle().skip(nonce as usize % others.len().max(1));
                    out.extend(chosen.take(helpers).map(|h| (**h, Message::ProbeFor(nonce, *owner))));
                    *watch = Watch::Confirming { nonce, until: now + CONFIRM, helpers, unanswered: false };
                }
                // No helper said the owner was silent, even given as long again (a loaded
                // helper's word may come late): this member may be the one cut off, or the one
                // whose datagrams get lost.
                Watch::Confirming { until, helpers, unanswered: false, .. }
                    if until + CONFIRM <= now && helpers > 0 =>
                {
                    *watch = Watch::Waiting { deadline: now + SUSPECT_AFTER };
                    self.unconfirmed += 1;
                }
                Watch::Confirming { until, helpers, unanswered, .. }
                    if until <= now && (unanswered || helpers == 0) =>
                {
                    *watch = Watch::Failed;
                    changed |= self.failed.insert(*owner);
                }
                _ => {}
            }
        }
        (out, changed)
    }

    /// When [`poll`](Self::poll) has something to do next.
    pub fn next_wake(&self) -> Option<Instant> {
        let watches = self.watched.values().filter_map(|w| match *w {
            Watch::Waiting { deadline } => Some(deadline),
            Watch::Confirming { until, helpers, unanswered, .. } if unanswered || helpers == 0 => Some(until),
            Watch::Confirming { until, .. } => Some(until + CONFIRM),
            Watch::Failed => None,
        });
        let tells = self.relays.iter().filter_map(|r| r.tell_at);
        watches.chain(tells).chain(self.next_beat).min()
    }

    /// Starts every watch afresh at `now`, after a time this member was mute (see
    /// [`crate::fence`]): what it did not hear then says nothing of the owners it watches.
    pub fn resume(&mut self, now: Instant) {
        for watch in self.watched.values_mut() {
            if !matches!(watch, Watch::Failed) {
                *watch = Watch::Waiting { deadline: now + SUSPECT_AFTER };
            }
        }
        self.next_beat = self.next_beat.map(|_| now);
    }

    /// What to send when this member leaves: a word to each heir.
    pub fn leaving(&self) -> Vec<Out<'static>> {
        self.heirs.iter().map(|heir| (*heir, Message::Leaving)).collect()
    }

    /// Whether this member watches `addr` (it inherits from it) and has not found it failed:
    /// its word on `addr` outweighs SWIM's.
    pub fn vouches(&self, addr: &SocketAddr) -> bool {
        self.watched.get(addr).is_some_and(|w| !matches!(w, Watch::Failed))
    }

    /// Members found failed and not heard from since.
    pub fn failed(&self) -> &BTreeSet<SocketAddr> {
        &self.failed
    }

    /// SWIM admitted the member at `addr` (anew, after it renewed its identity): it is no longer
    /// failed, as if heard. Returns whether it was.
    pub fn admitted(&mut self, addr: SocketAddr, now: Instant) -> bool {
        self.heard(addr, now)
    }

    /// Forgets failures of members SWIM no longer lists (it caught up). Returns whether any
    /// was forgotten.
    pub fn retain_failed(&mut self, members: &[SocketAddr]) -> bool {
        let before = self.failed.len();
        self.failed.retain(|f| members.contains(f));
        self.failed.len() != before
    }
}

#[cfg(test)]
#[path = "liveness_tests.rs"]
mod tests;
