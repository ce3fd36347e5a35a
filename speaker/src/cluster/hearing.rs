//! What this member has heard from the others, and when: so that it acts only on what it could
//! have checked. A member cut off from the rest (a firewall, a dead link) sees SWIM declare the
//! others down one by one; were it to believe each, it would take over the addresses of the
//! first ones gone while it still counted a majority. So:
//! - a member SWIM declares down is let go at once if it said so itself (it leaves), or if
//!   SWIM's own probes found it down while anyone was heard lately (within [`Hearing::recent`],
//!   shorter than SWIM's quickest verdict on a member cut off: a probe period and the suspicion
//!   time). Another member's word is not enough: a member cut off declares everyone down, and
//!   its word spreads when the cut heals. Otherwise the member is kept in the view until
//!   others are heard [`CORROBORATE`] after while it is not, or it comes back;
//! - a member whose addresses this one inherits is the liveness protocol's to judge, on the
//!   helpers' word ([`super::liveness`]): SWIM's verdict, which lost acks alone can bring (a
//!   flood at this member's socket), keeps it in the view for as long as that protocol vouches
//!   for it;
//! - a member that has heard nothing from anyone for [`Hearing::lonely`] (five probe periods:
//!   its own probes are acked each period, and others probe it as often) is alone: its view is
//!   itself, and the quorum takes it from there. Heard again, it keeps the members it kept until
//!   each is back, for [`SETTLE_AT_MOST`] at most, and they count as strangers meanwhile: the
//!   others take it in anew each at its own pace, and one that has not yet still answers for
//!   its own addresses and for those it took from this one;
//! - a member heard that SWIM has not admitted (a stranger: after a partition heals, members
//!   that declared each other down take each other in anew, each at its own pace) may hold
//!   addresses this one is about to take back: hand-backs wait while one is heard
//!   ([`Hearing::strangers`], and [`crate::handback`]).
//!
//! Pure: time comes in.

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    time::{Duration, Instant},
};

use crate::{config::Timers, handback::SETTLE_AT_MOST};

/// How long others must be heard after a member's unconfirmed death before it is let go.
pub const CORROBORATE: Duration = Duration::from_secs(2);

/// A member declared down and kept in the view.
#[derive(Debug)]
struct Kept {
    addr: SocketAddr,
    /// When it was declared down: heard from since, it is back.
    down: Instant,
    /// Others heard from then on confirm it gone.
    confirm_at: Instant,
    /// Kept while this member was alone: until back, it may not have taken this member in anew.
    across_cut: bool,
}

#[derive(Debug)]
pub struct Hearing {
    /// Another member heard this lately confirms a death.
    pub recent: Duration,
    /// Nothing heard for this long: alone.
    pub lonely: Duration,
    heard: HashMap<SocketAddr, Instant>,
    last_any: Option<Instant>,
    /// Members declared down with no one heard lately.
    kept: BTreeMap<String, Kept>,
    /// Addresses heard from that were not members then, and when last.
    strangers: BTreeMap<SocketAddr, Instant>,
}

impl Hearing {
    pub fn new(timers: &Timers) -> Self {
        Self {
            recent: (timers.probe_period + timers.suspect) * 4 / 5,
            lonely: timers.probe_period * 5,
            heard: HashMap::new(),
            last_any: None,
            kept: BTreeMap::new(),
            strangers: BTreeMap::new(),
        }
    }

    /// `from`, heard at `now`, is not a member (nor kept).
    pub fn stranger(&mut self, from: SocketAddr, now: Instant) {
        self.strangers.insert(from, now);
    }

    /// Whether a stranger was heard within [`Hearing::recent`] that is still no member (neither
    /// `swim`'s, nor kept), or a member kept since before this one was alone is not back yet
    /// (for [`SETTLE_AT_MOST`] after this one was heard again). Forgets the other strangers.
    pub fn strangers(&mut self, swim: impl Fn(&SocketAddr) -> bool, now: Instant) -> bool {
        let (recent, kept) = (self.recent, &self.kept);
        self.strangers.retain(|addr, at| {
            let member = swim(addr) || kept.values().any(|k| k.addr == *addr);
            now.saturating_duration_since(*at) <= recent && !member
        });
        let not_back = kept.values().any(|k| k.across_cut && now < k.confirm_at);
        !self.strangers.is_empty() || not_back
    }

    /// An authenticated datagram came from `from`. Returns whether this member was alone; if
    /// it was, the members it kept wait [`SETTLE_AT_MOST`] from now to be confirmed gone.
    pub fn heard(&mut self, from: SocketAddr, now: Instant) -> bool {
        let was_alone = self.alone(now);
        if was_alone {
            for k in self.kept.values_mut() {
                (k.confirm_at, k.across_cut) = (now + SETTLE_AT_MOST, true);
            }
        }
        self.heard.insert(from, now);
        self.last_any = Some(now);
        was_alone
    }

    /// SWIM declared `name` (at `addr`) down, on a datagram from `told_by` (`None`: its own
    /// verdict, at a timer): whether the view may let it go now.
    /// - The member said so itself: it leaves.
    /// - Another member said so: only this member's own evidence counts (its probes, or the
    ///   member's silence while others talk: [`Hearing::settle`]). A member that was cut off
    ///   declares everyone down, and its word reaches the others when the cut heals.
    /// - SWIM's own verdict: if anyone was heard lately (this member is not the one cut off).
    /// - `vouched`: the liveness protocol watches it and has not found it failed: kept.
    pub fn down(
        &mut self,
        name: &str,
        addr: SocketAddr,
        told_by: Option<SocketAddr>,
        vouched: bool,
        now: Instant,
    ) -> bool {
        let recent = self.recent;
        let believed = match told_by {
            Some(from) if from == addr => true,
            Some(_) => false,
            None => !vouched && self.heard.values().any(|at| now.saturating_duration_since(*at) <= recent),
        };
        if !believed {
            let kept = Kept { addr, down: now, confirm_at: now + CORROBORATE, across_cut: false };
            self.kept.insert(name.to_owned(), kept);
        }
        believed
    }

    /// `name` is a member again.
    pub fn up(&mut self, name: &str) {
        self.kept.remove(name);
    }

    /// Lets go of the kept members the others' words since have confirmed gone, but those
    /// `vouched` for (see [`Hearing::down`]); returns whether any was.
    pub fn settle(&mut self, vouched: impl Fn(&SocketAddr) -> bool) -> bool {
        let before = self.kept.len();
        let heard = &self.heard;
        self.kept.retain(|_, k| {
            let confirmed = heard.iter().any(|(a, at)| *a != k.addr && *at >= k.confirm_at);
            let back = heard.get(&k.addr).is_some_and(|at| *at > k.down);
            !confirmed || back || vouched(&k.addr)
        });
        self.kept.len() != before
    }

    /// The members declared down but kept in the view, and their addresses.
    pub fn kept(&self) -> impl Iterator<Item = (&String, &SocketAddr)> {
        self.kept.iter().map(|(name, k)| (name, &k.addr))
    }

    /// Whether nothing was heard from anyone for [`Hearing::lonely`] (or ever). A member alone
    /// keeps the members it kept (its view is itself meanwhile): heard again, it must not take
    /// what they hold before they take it in anew (see [`Hearing::heard`]).
    pub fn alone(&self, now: Instant) -> bool {
        self.last_any.is_none_or(|at| now.saturating_duration_since(at) > self.lonely)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(last: u8) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, last], 7946))
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn hearing() -> Hearing {
        Hearing::new(&Timers::default())
    }

    /// `from` heard every 100 ms from `start` to `end`.
    fn chatter(h: &mut Hearing, from: SocketAddr, start: Instant, end: Instant) {
        let mut at = start;
        while at <= end {
            h.heard(from, at);
            at += ms(100);
        }
    }

    #[test]
    fn a_death_nobody_could_have_checked_is_not_believed() {
        let t0 = Instant::now();
        let mut h = hearing();
        assert_eq!((h.recent, h.lonely), (ms(200), ms(500)));
        h.heard(addr(2), t0);
        h.heard(addr(3), t0 + ms(5));
        // Cut off: nothing heard from anyone since. SWIM downs b, then c: both kept.
        assert!(!h.down("b", addr(2), None, false, t0 + ms(300)));
        assert!(!h.down("c", addr(3), None, false, t0 + ms(400)));
        assert_eq!(h.kept().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["b", "c"]);
        assert!(!h.settle(|_| false), "nothing heard since: nothing confirmed");
        assert!(h.alone(t0 + ms(506)));
        assert!(h.heard(addr(3), t0 + ms(900)), "it was alone");
        // Not alone this time: c is heard again, b never, and b is let go once c has been heard
        // long enough after.
        let mut h = hearing();
        h.heard(addr(2), t0);
        h.heard(addr(3), t0 + ms(5));
        assert!(!h.down("b", addr(2), None, false, t0 + ms(300)));
        chatter(&mut h, addr(3), t0 + ms(400), t0 + ms(300) + CORROBORATE - ms(1));
        assert!(!h.settle(|_| false));
        h.heard(addr(3), t0 + ms(300) + CORROBORATE);
        assert!(h.settle(|_| false));
        assert_eq!(h.kept().count(), 0);
    }

    #[test]
    fn back_from_alone_it_keeps_whom_it_kept_until_they_are_back() {
        let t0 = Instant::now();
        let mut h = hearing();
        let nobody = |_: &SocketAddr| false;
        h.heard(addr(1), t0);
        h.heard(addr(3), t0);
        // Cut off: SWIM downs a and c, both kept; then this member is alone.
        assert!(!h.down("a", addr(1), None, false, t0 + ms(300)));
        assert!(!h.down("c", addr(3), None, false, t0 + ms(400)));
        assert!(h.alone(t0 + ms(600)));
        // Three seconds later the cut heals and a is heard first (SWIM takes it in anew); c
        // has not taken this member in yet and still answers for what it holds. The others'
        // words would confirm c gone at once: not across the cut.
        let back = t0 + ms(3000);
        assert!(h.heard(addr(1), back));
        h.up("a");
        chatter(&mut h, addr(1), back, back + SETTLE_AT_MOST - ms(1));
        assert!(!h.settle(|_| false), "c may not have taken this member in yet");
        assert_eq!(h.kept().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["c"]);
        assert!(h.strangers(nobody, back + SETTLE_AT_MOST - ms(1)), "gains wait for c");
        // c never comes back: gone, once the others have been heard that long.
        h.heard(addr(1), back + SETTLE_AT_MOST);
        assert!(!h.strangers(nobody, back + SETTLE_AT_MOST));
        assert!(h.settle(|_| false));
        assert_eq!(h.kept().count(), 0);
        // c comes back in time: SWIM takes it in, and gains wait no longer.
        let mut h = hearing();
        h.heard(addr(3), t0);
        assert!(!h.down("c", addr(3), None, false, t0 + ms(400)));
        assert!(h.alone(t0 + ms(1000)));
        h.heard(addr(1), back);
        assert!(h.strangers(nobody, back + ms(50)));
        h.up("c");
        assert!(!h.strangers(nobody, back + ms(60)));
    }

    #[test]
    fn a_death_others_outlived_is_believed_at_once() {
        let t0 = Instant::now();
        let mut h = hearing();
        h.heard(addr(2), t0);
        h.heard(addr(3), t0 + ms(100));
        assert!(h.down("b", addr(2), None, false, t0 + ms(300)), "c was heard lately");
        assert!(!h.alone(t0 + ms(600)));
        assert!(h.alone(t0 + ms(601)));
        // A member that says it leaves was heard this instant.
        h.heard(addr(4), t0 + ms(900));
        assert!(h.down("d", addr(4), Some(addr(4)), false, t0 + ms(900)));
        // Another's word that a member is down: kept, whoever was heard.
        h.heard(addr(3), t0 + ms(950));
        assert!(!h.down("e", addr(5), Some(addr(3)), false, t0 + ms(950)));
        assert!(hearing().alone(t0), "never heard anyone");
    }

    #[test]
    fn a_member_the_liveness_protocol_vouches_for_is_kept_until_it_does_not() {
        let t0 = Instant::now();
        let mut h = hearing();
        h.heard(addr(2), t0);
        h.heard(addr(3), t0 + ms(100));
        // SWIM's own verdict, others heard lately: believed, unless vouched for.
        assert!(!h.down("b", addr(2), None, true, t0 + ms(300)), "vouched for: kept");
        chatter(&mut h, addr(3), t0 + ms(400), t0 + ms(300) + CORROBORATE + ms(500));
        assert!(!h.settle(|a| *a == addr(2)), "still vouched for: kept however long");
        assert_eq!(h.kept().count(), 1);
        assert!(h.settle(|_| false), "no longer vouched for: the others' word confirms it");
        // Its own word that it leaves is believed all the same.
        h.heard(addr(4), t0 + ms(900));
        assert!(h.down("d", addr(4), Some(addr(4)), true, t0 + ms(900)));
    }

    #[test]
    fn a_kept_member_heard_again_stays() {
        let t0 = Instant::now();
        let mut h = hearing();
        h.heard(addr(2), t0);
        assert!(!h.down("b", addr(2), None, false, t0 + ms(300)));
        h.heard(addr(2), t0 + ms(400));
        chatter(&mut h, addr(3), t0 + ms(400), t0 + ms(300) + CORROBORATE);
        assert!(!h.settle(|_| false), "b spoke after it was declared down");
        assert_eq!(h.kept().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["b"]);
        h.up("b");
        assert_eq!(h.kept().count(), 0);
    }

    #[test]
    fn a_stranger_counts_until_admitted_or_quiet() {
        let t0 = Instant::now();
        let mut h = hearing();
        let nobody = |_: &SocketAddr| false;
        assert!(!h.strangers(nobody, t0));
        h.stranger(addr(2), t0);
        h.stranger(addr(3), t0);
        assert!(h.strangers(|a| *a == addr(2), t0 + ms(10)), "c is not admitted yet");
        assert!(h.strangers(nobody, t0 + ms(200)), "b, admitted, was forgotten; c was heard lately");
        assert!(!h.strangers(nobody, t0 + ms(201)), "c, quiet since, no longer counts");
        // A member kept in the view is no stranger.
        h.heard(addr(4), t0 + ms(250));
        assert!(!h.down("d", addr(4), None, false, t0 + ms(500)));
        h.stranger(addr(4), t0 + ms(500));
        assert!(!h.strangers(nobody, t0 + ms(500)));
    }
}
