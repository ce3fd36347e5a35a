//! Handing an address back without two nodes answering at once. When a member joins (a speaker
//! restarted, a node came back), addresses move to it from members that are alive and answering.
//! Every speaker sees the join within milliseconds of the others, in no fixed order: if the
//! gainer started at once, both would answer for a moment, and a client asking then gets two
//! MACs. So on a join, a speaker lets go of what it loses at once and takes what it gains only
//! after [`hold`]: a gap of tens of milliseconds instead of two answers. When a member leaves or
//! dies, the gainers take over at once (nobody else answers).
//!
//! After a partition heals, the views do not meet that fast: members that declared each other
//! down take each other in anew, each when it hears the other's new identity. A member back
//! from the cut may see one member again while another, which took its addresses over, is not
//! yet in its view, nor it in that one's. So the hold lasts while this speaker hears a member it
//! has not taken in yet, or one it knew before it was cut off is not back
//! (`cluster::hearing`), at most [`SETTLE_AT_MOST`] after the join ([`hold_on`]). A member it
//! knew stays in its view meanwhile, so that it claims nothing that member holds.

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use crate::{announcement::Announcement, cluster::Alive, config::Timers};

/// Whether the view `after` only adds members to `before` (`None`: the speaker's first view,
/// whose other members were there before it).
pub fn is_join(before: Option<&Alive>, after: &Alive) -> bool {
    match before {
        None => true,
        Some(before) => after.len() > before.len() && before.is_subset(after),
    }
}

/// How long a gainer waits on a join: two round trips, time for the giver to see the same view
/// and withdraw.
pub fn hold(timers: &Timers) -> Duration {
    timers.probe_rtt * 2
}

/// How long after a join gains may wait for the members heard to be taken in. A member heard
/// and never taken in (a one-way link) delays the hand-back this long, not for good.
pub const SETTLE_AT_MOST: Duration = Duration::from_secs(1);

/// At the end of a hold for a join `seen` then: whether to hold on, because a member is heard
/// that is not in the view yet (`strangers`).
pub fn hold_on(strangers: bool, seen: Instant, now: Instant) -> bool {
    strangers && now.saturating_duration_since(seen) < SETTLE_AT_MOST
}

/// What to announce while holding: `desired` without what `current` does not have yet.
pub fn holding(current: &BTreeSet<Announcement>, desired: BTreeSet<Announcement>) -> BTreeSet<Announcement> {
    desired.into_iter().filter(|a| current.contains(a)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(names: &[&str]) -> Alive {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn joins_and_departures() {
        type Case = (Option<&'static [&'static str]>, &'static [&'static str], bool);
        let cases: &[Case] = &[
            (None, &["a", "b"], true),
            (Some(&["a"]), &["a", "b"], true),
            (Some(&["a", "b"]), &["a"], false),
            (Some(&["a", "b"]), &["a", "b"], false),
            // One left and another came: the leaver's addresses must move at once.
            (Some(&["a", "b"]), &["a", "c"], false),
            (Some(&["a", "b"]), &["a", "c", "d"], false),
        ];
        for (before, after, join) in cases {
            let before = before.map(view);
            assert_eq!(is_join(before.as_ref(), &view(after)), *join, "{before:?} -> {after:?}");
        }
    }

    #[test]
    fn a_hold_lasts_while_a_stranger_is_heard_at_most_a_while() {
        let seen = Instant::now();
        assert!(!hold_on(false, seen, seen + Duration::from_millis(60)));
        assert!(hold_on(true, seen, seen + Duration::from_millis(60)));
        assert!(hold_on(true, seen, seen + SETTLE_AT_MOST - Duration::from_millis(1)));
        assert!(!hold_on(true, seen, seen + SETTLE_AT_MOST));
    }

    #[test]
    fn holding_keeps_what_stays_and_drops_what_goes() {
        let at = |last: u8| Announcement {
            addr: std::net::Ipv4Addr::new(192, 0, 2, last).into(),
            ifindex: 2,
            vlan: 0,
            mac: [2, 0, 0, 0, 0, 1],
            ifname: "eth0".into(),
        };
        let current = BTreeSet::from([at(10), at(11)]);
        let desired = BTreeSet::from([at(11), at(12)]);
        assert_eq!(holding(&current, desired), BTreeSet::from([at(11)]));
    }
}
