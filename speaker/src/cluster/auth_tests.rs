use super::*;

const KEY: &[u8] = b"0123456789abcdef-shared";
const NOW: u64 = 1_800_000_000_000;

fn addr(last: u8) -> SocketAddr {
    SocketAddr::from(([192, 0, 2, last], 7946))
}

/// A sender at 192.0.2.2, and the receiver at 192.0.2.1.
fn pair(boot: u64) -> (Sealer, Opener) {
    (Sealer::new(KEY, addr(2), boot), Opener::new(KEY, addr(1)))
}

#[test]
fn round_trip() {
    let (mut sealer, mut opener) = pair(7);
    let d = sealer.seal(addr(1), NOW, b"hello");
    assert_eq!(d.len(), 5 + OVERHEAD, "what the membership simulation counts");
    assert_eq!(opener.open(addr(2), NOW + 5, &d), Ok(&b"hello"[..]));
    let d2 = sealer.seal(addr(1), NOW, b"");
    assert_eq!(opener.open(addr(2), NOW, &d2), Ok(&b""[..]));
    let v6: SocketAddr = "[2001:db8::2]:7946".parse().unwrap();
    let d3 = Sealer::new(KEY, v6, 1).seal("[2001:db8::1]:7946".parse().unwrap(), NOW, b"six");
    assert_eq!(Opener::new(KEY, "[2001:db8::1]:7946".parse().unwrap()).open(v6, NOW, &d3), Ok(&b"six"[..]));
}

#[test]
fn wrong_key_or_corruption_is_unauthenticated() {
    let d = Sealer::new(b"another-key-entirely", addr(2), 1).seal(addr(1), NOW, b"hello");
    assert_eq!(pair(1).1.open(addr(2), NOW, &d), Err(Reject::Unauthenticated));
    let good = pair(1).0.seal(addr(1), NOW, b"hello");
    for i in 0..good.len() {
        let mut bad = good.clone();
        bad[i] ^= 0x40;
        let refused = pair(1).1.open(addr(2), NOW, &bad);
        // Flipping the time may make it stale first: refused either way.
        assert!(refused.is_err(), "byte {i}");
    }
    for len in 0..good.len() {
        assert_eq!(pair(1).1.open(addr(2), NOW, &good[..len]), Err(Reject::Unauthenticated), "len {len}");
    }
}

#[test]
fn a_datagram_from_or_to_another_address_is_unauthenticated() {
    let (mut sealer, _) = pair(1);
    let d = sealer.seal(addr(1), NOW, b"probe");
    // Replayed as if from another member (a forged source address), or by another port.
    for from in
        [addr(3), SocketAddr::from(([192, 0, 2, 2], 7947)), "[::ffff:192.0.2.3]:7946".parse().unwrap()]
    {
        assert_eq!(pair(1).1.open(from, NOW, &d), Err(Reject::Unauthenticated), "from {from}");
    }
    // Replayed to another member.
    assert_eq!(Opener::new(KEY, addr(3)).open(addr(2), NOW, &d), Err(Reject::Unauthenticated));
    // Where it was sealed for, it is good.
    assert!(pair(1).1.open(addr(2), NOW, &d).is_ok());
}

#[test]
fn a_replay_from_a_forged_address_leaves_the_real_sender_alone() {
    // A captured datagram of one member, resent as if from another that is live: before the
    // sender was sealed, the receiver took it for that member restarted and refused its
    // genuine datagrams for the freshness window.
    let mut live = Sealer::new(KEY, addr(3), 30);
    let mut opener = Opener::new(KEY, addr(1));
    assert!(opener.open(addr(3), NOW, &live.seal(addr(1), NOW, b"a")).is_ok());
    let captured = Sealer::new(KEY, addr(2), 20).seal(addr(1), NOW + 100, b"x");
    assert_eq!(opener.open(addr(3), NOW + 200, &captured), Err(Reject::Unauthenticated));
    assert!(opener.open(addr(3), NOW + 300, &live.seal(addr(1), NOW + 300, b"b")).is_ok());
}

#[test]
fn replays_are_dropped() {
    let (mut sealer, mut opener) = pair(1);
    let (first, second) = (sealer.seal(addr(1), NOW, b"1"), sealer.seal(addr(1), NOW, b"2"));
    assert!(opener.open(addr(2), NOW, &second).is_ok());
    assert_eq!(opener.open(addr(2), NOW, &second), Err(Reject::Replayed));
    assert_eq!(opener.open(addr(2), NOW, &first), Err(Reject::Replayed), "older than the last");
    // Another sender has its own sequence.
    let mut other = Sealer::new(KEY, addr(3), 1);
    assert!(opener.open(addr(3), NOW, &other.seal(addr(1), NOW, b"1")).is_ok());
    // A restarted sender (new boot id) starts again at 1.
    let restarted = Sealer::new(KEY, addr(2), 2).seal(addr(1), NOW + 1, b"r");
    assert!(opener.open(addr(2), NOW + 1, &restarted).is_ok());
}

#[test]
fn a_restart_is_accepted_once_and_the_earlier_boot_refused() {
    let mut before = Sealer::new(KEY, addr(2), 1);
    let mut opener = Opener::new(KEY, addr(1));
    let (first, unseen) = (before.seal(addr(1), NOW, b"1"), before.seal(addr(1), NOW + 10, b"2"));
    assert!(opener.open(addr(2), NOW, &first).is_ok());
    let mut after = Sealer::new(KEY, addr(2), 2);
    let restart = after.seal(addr(1), NOW + 1000, b"a");
    assert!(opener.open(addr(2), NOW + 1000, &restart).is_ok());
    assert_eq!(opener.open(addr(2), NOW + 1001, &restart), Err(Reject::Replayed), "the restart, again");
    // The previous run's datagrams, seen or not, replayed within the freshness window.
    assert_eq!(opener.open(addr(2), NOW + 2000, &first), Err(Reject::Replayed));
    assert_eq!(opener.open(addr(2), NOW + 2000, &unseen), Err(Reject::Replayed));
    // A boot older than the current one, never seen: from before the restart too.
    let older = Sealer::new(KEY, addr(2), 3).seal(addr(1), NOW + 500, b"o");
    assert_eq!(opener.open(addr(2), NOW + 2000, &older), Err(Reject::Replayed));
    // The current boot goes on; a later restart is accepted.
    assert!(opener.open(addr(2), NOW + 2000, &after.seal(addr(1), NOW + 2000, b"b")).is_ok());
    let again = Sealer::new(KEY, addr(2), 4).seal(addr(1), NOW + 3000, b"c");
    assert!(opener.open(addr(2), NOW + 3000, &again).is_ok());
    assert_eq!(
        opener.open(addr(2), NOW + 3001, &after.seal(addr(1), NOW + 2500, b"d")),
        Err(Reject::Replayed)
    );
}

#[test]
fn stale_or_future_is_dropped() {
    let (mut sealer, _) = pair(1);
    let old = sealer.seal(addr(1), NOW - FRESH_MS - 1, b"x");
    assert_eq!(pair(1).1.open(addr(2), NOW, &old), Err(Reject::Stale));
    let future = sealer.seal(addr(1), NOW + FRESH_MS + 1, b"x");
    assert_eq!(pair(1).1.open(addr(2), NOW, &future), Err(Reject::Stale));
    let edge = sealer.seal(addr(1), NOW - FRESH_MS, b"x");
    assert!(pair(1).1.open(addr(2), NOW, &edge).is_ok());
}

#[test]
fn an_overlong_datagram_is_refused_before_the_hmac() {
    let (mut sealer, mut opener) = pair(1);
    let longest = sealer.seal(addr(1), NOW, &[0; MAX_PAYLOAD]);
    assert_eq!(longest.len(), MAX_DATAGRAM);
    assert!(opener.open(addr(2), NOW, &longest).is_ok());
    let overlong = sealer.seal(addr(1), NOW, &[0; MAX_PAYLOAD + 1]);
    assert_eq!(opener.open(addr(2), NOW, &overlong), Err(Reject::Unauthenticated));
}

#[test]
fn a_sender_gone_quiet_is_forgotten_and_its_datagrams_stay_refused() {
    let mut opener = Opener::new(KEY, addr(1));
    let mut gone = Sealer::new(KEY, addr(2), 1);
    let last = gone.seal(addr(1), NOW, b"bye");
    assert!(opener.open(addr(2), NOW, &last).is_ok());
    let later = NOW + FRESH_MS + 1;
    assert!(opener.open(addr(3), later, &Sealer::new(KEY, addr(3), 1).seal(addr(1), later, b"hi")).is_ok());
    assert_eq!(opener.senders.len(), 1, "the quiet sender was forgotten");
    // What it sent, replayed now: stale.
    assert_eq!(opener.open(addr(2), later, &last), Err(Reject::Stale));
    // Many senders, each heard once: only those heard within the window are kept.
    for i in 0..200u64 {
        let at = later + i * 1000;
        let from = SocketAddr::from(([192, 0, 2, 10], 10_000 + i as u16));
        assert!(opener.open(from, at, &Sealer::new(KEY, from, i).seal(addr(1), at, b"x")).is_ok());
    }
    assert!(opener.senders.len() <= 32, "{} senders kept", opener.senders.len());
}

#[test]
fn claims_of_unknown_boots_are_checked_a_few_times_a_second() {
    let (mut live, mut opener) = pair(1);
    assert!(opener.open(addr(2), NOW, &live.seal(addr(1), NOW, b"a")).is_ok());
    // A flood forged as if from the member, without the key: each claims a boot the receiver
    // does not know from it. A few are checked (and fail); the rest cost a lookup.
    let forged: Vec<Reject> = (0..1000u64)
        .map(|i| {
            let d = Sealer::new(b"not-the-key-at-all-0123", addr(2), 100 + i).seal(addr(1), NOW + 10, b"x");
            opener.open(addr(2), NOW + 10, &d).unwrap_err()
        })
        .collect();
    let checked = forged.iter().filter(|r| **r == Reject::Unauthenticated).count();
    assert_eq!(checked, NEW_BOOTS_PER_SECOND as usize - 1, "the member's own first datagram took one");
    assert!(forged.iter().all(|r| matches!(r, Reject::Unauthenticated | Reject::Throttled)));
    // The member's datagrams from its current boot go through all the while.
    assert!(opener.open(addr(2), NOW + 20, &live.seal(addr(1), NOW + 20, b"b")).is_ok());
    // The next second, a genuine restart is checked and accepted.
    let restart = Sealer::new(KEY, addr(2), 2).seal(addr(1), NOW + 1000, b"r");
    assert!(opener.open(addr(2), NOW + 1000, &restart).is_ok());
    // Another address has its own budget.
    let other = Sealer::new(KEY, addr(3), 1).seal(addr(1), NOW + 30, b"c");
    assert!(opener.open(addr(3), NOW + 30, &other).is_ok());
}
