//! Fast takeover. Each member beats every [`BEAT_EVERY`] to its watchers (the next members on a
//! ring, see [`crate::election::Succession`]: known to every node from the members alone), and a
//! watcher that has heard nothing from a member it watches for [`SUSPECT_AFTER`] probes it,
//! directly and through two other members. If no ack comes back within [`CONFIRM`], the member
//! has failed: the watcher leaves it out of its view of the live members and tells the heirs of
//! its addresses (`Failed`, sent [`VERDICT_COPIES`] times), which take them over, long before
//! SWIM would declare it down. A member's cost is thus a few beats whatever the cluster's size
//! and however its addresses spread. A lossy link between two nodes costs a probe, not a
//! takeover: the other members' path answers.
//!
//! Silence alone is no evidence: the watcher may be the one cut off, or its socket drowned by a
//! flood. The member has failed only on a helper's word: each helper asked probes the member
//! itself and, if no ack comes within [`HELPER_WAIT`], says so (`Unanswered`), in a datagram
//! sealed like every other. A flood can make datagrams get lost, not make that word: a watcher
//! that hears neither beats nor acks nor any helper finds nothing failed, and probes again later
//! (whether it may announce at all is the quorum's to say). It finds the member failed at
//! [`CONFIRM`] if every helper said the member was silent and no ack came; if only some did (a
//! helper cut from the member too, the other's ack lost), it probes again at once through
//! others. With no helper to ask (two members), the watcher cannot tell, and acts on silence. A
//! helper's word that comes late (a loaded helper) is waited for as long again: the member
//! fails when the last one arrives.
//!
//! An heir vouches for the owners it inherits from until a watcher's word (or the owner's own,
//! leaving) says otherwise; should SWIM declare one down first, the heir probes it itself
//! ([`Liveness::doubt`]), so that neither a lost verdict nor SWIM's word alone (which lost acks
//! can bring) decides.
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
/// How many times a verdict goes to each heir, and how far apart: an heir that missed them all
/// would wait for SWIM.
pub const VERDICT_COPIES: u32 = 3;
pub const VERDICT_EVERY: Duration = Duration::from_millis(5);

/// Whom a member beats to, whom it watches, and whom it inherits from, at addresses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Roles {
    /// Its watchers: it beats to them.
    pub beat_to: BTreeSet<SocketAddr>,
    /// The heirs of its addresses: told at once when it leaves.
    pub heirs: BTreeSet<SocketAddr>,
    /// The members it watches, each with the heirs its verdict goes to.
    pub watch: BTreeMap<SocketAddr, BTreeSet<SocketAddr>>,
    /// The owners whose addresses it inherits.
    pub inherit: BTreeSet<SocketAddr>,
}

impl Roles {
    /// Beats to `beat_to` (told when it leaves); watches `watched` and inherits from them,
    /// with no verdict to send: heirs that watch their owners themselves.
    pub fn watching(beat_to: BTreeSet<SocketAddr>, watched: BTreeSet<SocketAddr>) -> Self {
        Self {
            heirs: beat_to.clone(),
            beat_to,
            watch: watched.iter().map(|w| (*w, BTreeSet::new())).collect(),
            inherit: watched,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Watch {
    /// Heard from lately; probed at the deadline.
    Waiting { deadline: Instant },
    /// Probed with `nonce`, through `helpers` others (`unanswered`: how many said the owner
    /// did not answer it either); failed at `until` if all did and no ack came.
    Confirming { nonce: u64, until: Instant, helpers: usize, unanswered: usize },
    /// Failed; waits to be heard from again.
    Failed,
}

/// One speaker's side of the liveness protocol.
#[derive(Debug)]
pub struct Liveness {
    me: SocketAddr,
    roles: Roles,
    next_beat: Option<Instant>,
    watched: BTreeMap<SocketAddr, Watch>,
    /// Inherited owners SWIM declared down that no watcher's word covered: watched here until
    /// heard from.
    doubted: BTreeSet<SocketAddr>,
    /// Verdicts to send: when, to whom, on whom.
    verdicts: Vec<(Instant, SocketAddr, SocketAddr)>,
    /// Members found failed and not heard from since, watched or not.
    failed: BTreeSet<SocketAddr>,
    /// Probes made for other members.
    relays: Vec<Relay>,
    nonce: u64,
    /// Probes whose time ran out with no helper's word that the owner was silent: each a
    /// takeover not made.
    pub unconfirmed: u64,
    /// Owners this member inherits from found failed (by its probes, their watcher's word or
    /// their own), since last taken ([`Liveness::take_owners_failed`]).
    owners_failed: u64,
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
            roles: Roles::default(),
            next_beat: None,
            watched: BTreeMap::new(),
            doubted: BTreeSet::new(),
            verdicts: Vec::new(),
            failed: BTreeSet::new(),
            relays: Vec::new(),
            nonce: seed,
            unconfirmed: 0,
            owners_failed: 0,
        }
    }

    /// Follows the election and the ring: beat to the watchers, watch the members watched (and
    /// those doubted, while inherited). A member newly watched is given [`SUSPECT_AFTER`] from
    /// `now` to be heard from.
    pub fn follow(&mut self, roles: Roles, now: Instant) {
        if roles.beat_to.is_empty() {
            self.next_beat = None;
        } else if self.next_beat.is_none() || roles.beat_to.iter().any(|w| !self.roles.beat_to.contains(w)) {
            // A new watcher hears at once that it has a member to watch.
            self.next_beat = Some(now);
        }
        self.doubted.retain(|d| roles.inherit.contains(d));
        let keep = |m: &SocketAddr| roles.watch.contains_key(m) || self.doubted.contains(m);
        self.watched.retain(|m, _| keep(m));
        for member in roles.watch.keys() {
            self.watched.entry(*member).or_insert_with(|| match self.failed.contains(member) {
                true => Watch::Failed,
                false => Watch::Waiting { deadline: now + SUSPECT_AFTER },
            });
        }
        self.roles = roles;
    }

    /// SWIM declared `owner` down. If this member inherits from it, watches it not, and has no
    /// word that it failed, it probes it now: its own probes through the others decide, not
    /// SWIM's word (which lost acks alone can bring), nor a verdict that may have been lost.
    /// Returns whether this member vouches for it meanwhile.
    pub fn doubt(&mut self, owner: SocketAddr, now: Instant) -> bool {
        if self.roles.inherit.contains(&owner)
            && !self.failed.contains(&owner)
            && !self.watched.contains_key(&owner)
        {
            self.doubted.insert(owner);
            self.watched.insert(owner, Watch::Waiting { deadline: now });
        }
        self.vouches(&owner)
    }

    /// `member` failed, at `now`: out of the view, and its heirs told.
    fn fail(&mut self, member: SocketAddr, now: Instant) -> bool {
        if let Some(heirs) = self.roles.watch.get(&member) {
            let copies = (0..VERDICT_COPIES).map(|c| now + VERDICT_EVERY * c);
            self.verdicts.extend(copies.flat_map(|at| heirs.iter().map(move |heir| (at, *heir, member))));
        }
        self.mark_failed(member)
    }

    /// Marks `member` failed; counts it if this member inherits from it. Returns whether it was
    /// not already.
    fn mark_failed(&mut self, member: SocketAddr) -> bool {
        if let Some(watch) = self.watched.get_mut(&member) {
            *watch = Watch::Failed;
        }
        let newly = self.failed.insert(member);
        if newly && self.roles.inherit.contains(&member) {
            self.owners_failed += 1;
        }
        newly
    }

    /// `from` sent something authenticated. Returns whether it had been found failed (and is
    /// now back in the view).
    pub fn heard(&mut self, from: SocketAddr, now: Instant) -> bool {
        if self.doubted.remove(&from) && !self.roles.watch.contains_key(&from) {
            // The doubt is lifted: its watcher's beats are not this member's to wait for.
            self.watched.remove(&from);
        } else if let Some(watch) = self.watched.get_mut(&from) {
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
                let mut late = None;
                for (member, watch) in &mut self.watched {
                    if let Watch::Confirming { nonce: n, until, helpers, unanswered } = watch
                        && *n == nonce
                    {
                        *unanswered += 1;
                        // Late (a loaded helper): the probes' time is up, the member has failed.
                        late = (now >= *until && *unanswered >= *helpers).then_some(*member);
                    }
                }
                (Vec::new(), late.is_some_and(|member| self.fail(member, now)))
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
            // reaches them (in a large cluster, through others). Its watchers stop watching.
            Message::Leaving => (Vec::new(), self.gone(from)),
            // A watcher's verdict on an owner this member inherits from. It takes over at once,
            // and asks the owner itself: an owner cut from its watcher and the helpers but not
            // from this heir answers, and is back in the view within a round trip.
            Message::Failed(member) if member != self.me && self.roles.inherit.contains(&member) => {
                let changed = self.gone(member);
                self.nonce = self.nonce.wrapping_add(1);
                let ask = changed.then_some((member, Message::Probe(self.nonce)));
                (ask.into_iter().collect(), changed)
            }
            Message::Failed(_) | Message::Beat | Message::Membership(_) => (Vec::new(), false),
        }
    }

    /// `member` is gone by its own word or its watcher's: failed, if watched or inherited from.
    fn gone(&mut self, member: SocketAddr) -> bool {
        if !self.watched.contains_key(&member) && !self.roles.inherit.contains(&member) {
            return false;
        }
        self.mark_failed(member)
    }

    /// What is due at `now`: beats, probes of the owners not heard from (through `members`, the
    /// live members' addresses, as helpers), and failures. Returns what to send, and whether the
    /// failed set changed.
    pub fn poll(&mut self, now: Instant, members: &[SocketAddr]) -> (Vec<Out<'static>>, bool) {
        let mut out = Vec::new();
        if let Some(at) = self.next_beat.filter(|at| *at <= now) {
            out.extend(self.roles.beat_to.iter().map(|watcher| (*watcher, Message::Beat)));
            // On schedule, unless far behind: never a burst to catch up.
            self.next_beat = Some(if now - at < BEAT_EVERY { at + BEAT_EVERY } else { now + BEAT_EVERY });
        }
        for relay in self.relays.iter_mut().filter(|r| r.tell_at.is_some_and(|at| at <= now)) {
            out.push((relay.prober, Message::Unanswered(relay.nonce)));
            relay.tell_at = None;
        }
        let mut failed = Vec::new();
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
                    *watch = Watch::Confirming { nonce, until: now + CONFIRM, helpers, unanswered: 0 };
                }
                // Every helper said the owner was silent (or there was none to ask), and no ack
                // came: failed.
                Watch::Confirming { until, helpers, unanswered, .. }
                    if until <= now && unanswered >= helpers =>
                {
                    failed.push(*owner);
                }
                // Not every helper said so, even given as long again (a loaded helper's word
                // may come late). Some did: one of them may be cut from the owner too, or the
                // other's ack lost; another round at once, through other helpers. None did:
                // this member may be the one cut off, or the one whose datagrams get lost.
                Watch::Confirming { until, unanswered, .. } if until + CONFIRM <= now => {
                    if unanswered == 0 {
                        self.unconfirmed += 1;
                    }
                    let wait = if unanswered > 0 { Duration::ZERO } else { SUSPECT_AFTER };
                    *watch = Watch::Waiting { deadline: now + wait };
                }
                _ => {}
            }
        }
        let mut changed = false;
        for member in failed {
            changed |= self.fail(member, now);
        }
        let (due, later) = std::mem::take(&mut self.verdicts).into_iter().partition(|(at, ..)| *at <= now);
        self.verdicts = later;
        out.extend(
            due.into_iter()
                .map(|(_, heir, member): (Instant, SocketAddr, SocketAddr)| (heir, Message::Failed(member))),
        );
        (out, changed)
    }

    /// When [`poll`](Self::poll) has something to do next.
    pub fn next_wake(&self) -> Option<Instant> {
        let watches = self.watched.values().filter_map(|w| match *w {
            Watch::Waiting { deadline } => Some(deadline),
            Watch::Confirming { until, helpers, unanswered, .. } if unanswered >= helpers => Some(until),
            Watch::Confirming { until, .. } => Some(until + CONFIRM),
            Watch::Failed => None,
        });
        let tells = self.relays.iter().filter_map(|r| r.tell_at);
        let verdicts = self.verdicts.iter().map(|(at, ..)| *at);
        watches.chain(tells).chain(verdicts).chain(self.next_beat).min()
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

    /// What to send when this member leaves: a word to each heir, and to its watchers.
    pub fn leaving(&self) -> Vec<Out<'static>> {
        let told: BTreeSet<&SocketAddr> = self.roles.heirs.iter().chain(&self.roles.beat_to).collect();
        told.into_iter().map(|to| (*to, Message::Leaving)).collect()
    }

    /// Whether this member watches `addr` or inherits from it, and has not found it failed (nor
    /// been told so): its word on `addr` outweighs SWIM's.
    pub fn vouches(&self, addr: &SocketAddr) -> bool {
        match self.watched.get(addr) {
            Some(watch) => !matches!(watch, Watch::Failed),
            None => self.roles.inherit.contains(addr) && !self.failed.contains(addr),
        }
    }

    /// How many owners this member inherits from were found failed since the last call.
    pub fn take_owners_failed(&mut self) -> u64 {
        std::mem::take(&mut self.owners_failed)
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
