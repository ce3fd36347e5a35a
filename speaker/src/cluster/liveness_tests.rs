use super::*;

fn addr(last: u8) -> SocketAddr {
    SocketAddr::from(([192, 0, 2, last], 7946))
}

fn set(members: &[u8]) -> BTreeSet<SocketAddr> {
    members.iter().map(|m| addr(*m)).collect()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Polls every millisecond from `from` to `to`, collecting what is sent and when the failed
/// set changed. The helpers asked say at once that the owner did not answer them (they are
/// reachable; the owner answers nobody).
fn run(
    l: &mut Liveness,
    members: &[SocketAddr],
    from: Instant,
    to: Instant,
) -> (Vec<Out<'static>>, Vec<Instant>) {
    run_with(l, members, from, to, true)
}

fn run_with(
    l: &mut Liveness,
    members: &[SocketAddr],
    from: Instant,
    to: Instant,
    helpers_answer: bool,
) -> (Vec<Out<'static>>, Vec<Instant>) {
    let (mut sent, mut changes) = (Vec::new(), Vec::new());
    let mut now = from;
    while now <= to {
        let (out, changed) = l.poll(now, members);
        for (helper, message) in &out {
            if let (true, Message::ProbeFor(nonce, _)) = (helpers_answer, message) {
                l.receive(*helper, Message::Unanswered(*nonce), now);
            }
        }
        sent.extend(out);
        if changed {
            changes.push(now);
        }
        now += ms(1);
    }
    (sent, changes)
}

/// The nonce of the probe `sent` asked `helper` to make.
fn asked(sent: &[Out<'static>], helper: SocketAddr) -> u64 {
    match sent.iter().find(|(to, _)| *to == helper) {
        Some((_, Message::ProbeFor(nonce, _))) => *nonce,
        _ => panic!("no request to the helper {helper}: {sent:?}"),
    }
}

#[test]
fn an_owner_beats_to_its_heirs_on_schedule() {
    let t0 = Instant::now();
    let mut l = Liveness::new(addr(1), 0);
    assert_eq!(l.next_wake(), None, "nothing to do without heirs or owners");
    l.follow(Roles::watching(set(&[2, 3]), set(&[])), t0);
    let (sent, _) = run(&mut l, &[], t0, t0 + ms(99));
    let beats_to = |n| sent.iter().filter(|(to, m)| *to == addr(n) && *m == Message::Beat).count();
    assert_eq!((beats_to(2), beats_to(3)), (5, 5), "at 0, 20, 40, 60, 80 ms: {sent:?}");
    // A new heir is beaten to at once; losing every heir stops the beats.
    l.follow(Roles::watching(set(&[2, 3, 4]), set(&[])), t0 + ms(100));
    assert_eq!(l.poll(t0 + ms(100), &[]).0.len(), 3);
    l.follow(Roles::watching(set(&[]), set(&[])), t0 + ms(101));
    assert_eq!(l.next_wake(), None);
    // Far behind (the thread was not scheduled): one beat, then the schedule from now.
    l.follow(Roles::watching(set(&[2]), set(&[])), t0);
    assert_eq!(l.poll(t0 + ms(500), &[]).0.len(), 1);
    assert_eq!(l.next_wake(), Some(t0 + ms(520)));
}

#[test]
fn an_heir_fails_a_silent_owner_after_the_probes_go_unanswered() {
    let t0 = Instant::now();
    let members = [addr(1), addr(2), addr(3), addr(4)];
    let mut l = Liveness::new(addr(2), 0);
    l.follow(Roles::watching(set(&[]), set(&[1])), t0);
    l.heard(addr(1), t0);
    // Beats every 20 ms keep it quiet.
    for i in 1..=10 {
        let (out, changed) = l.poll(t0 + ms(20 * i), &members);
        assert!(out.is_empty() && !changed);
        l.heard(addr(1), t0 + ms(20 * i));
    }
    // Then silence: probed 90 ms after the last beat, directly and through two others.
    let last = t0 + ms(200);
    let (sent, changes) = run(&mut l, &members, last, last + ms(200));
    let probes: Vec<_> =
        sent.iter().filter(|(to, m)| *to == addr(1) && matches!(m, Message::Probe(_))).collect();
    let asks: BTreeSet<SocketAddr> = sent
        .iter()
        .filter_map(|(to, m)| matches!(m, Message::ProbeFor(_, target) if *target == addr(1)).then_some(*to))
        .collect();
    assert_eq!(probes.len(), 1, "{sent:?}");
    assert_eq!(asks, set(&[3, 4]), "helpers: neither the owner nor this node");
    assert_eq!(changes, vec![last + SUSPECT_AFTER + CONFIRM], "failed once, when the probes timed out");
    assert_eq!(l.failed(), &set(&[1]));
    assert_eq!(l.next_wake(), None, "no more probes of a failed owner");
    // Heard again (it was alive after all, or restarted): back in the view.
    assert!(l.heard(addr(1), last + ms(300)));
    assert!(l.failed().is_empty());
    assert!(!l.heard(addr(1), last + ms(301)), "only once");
    // Failed again, then admitted anew by SWIM (it renewed its identity; another member heard
    // it first): back in the view as well, and watched afresh.
    let (_, changes) = run(&mut l, &members, last + ms(301), last + ms(600));
    assert_eq!(changes.len(), 1);
    assert_eq!(l.failed(), &set(&[1]));
    assert!(l.admitted(addr(1), last + ms(700)));
    assert!(l.failed().is_empty());
    assert_eq!(l.next_wake(), Some(last + ms(700) + SUSPECT_AFTER));
}

#[test]
fn an_ack_relayed_by_a_helper_keeps_the_owner() {
    let t0 = Instant::now();
    let members = [addr(1), addr(2), addr(3)];
    let mut l = Liveness::new(addr(2), 0);
    l.follow(Roles::watching(set(&[]), set(&[1])), t0);
    let (sent, _) = l.poll(t0 + SUSPECT_AFTER, &members);
    let nonce = asked(&sent, addr(3));
    // The owner's direct answer is lost; the helper's comes back.
    let at = t0 + SUSPECT_AFTER + ms(5);
    l.heard(addr(3), at);
    let (out, back) = l.receive(addr(3), Message::Ack(nonce), at);
    assert!(out.is_empty() && !back);
    let (_, changes) = run(&mut l, &members, at, at + SUSPECT_AFTER - ms(1));
    assert!(changes.is_empty() && l.failed().is_empty(), "confirmed alive: {changes:?}");
    // A stale or foreign nonce answers for nobody.
    let (sent, _) = l.poll(at + SUSPECT_AFTER, &members);
    let nonce = asked(&sent, addr(3));
    l.receive(addr(3), Message::Unanswered(nonce), at + SUSPECT_AFTER);
    l.receive(addr(3), Message::Ack(nonce.wrapping_add(100)), at + SUSPECT_AFTER + ms(1));
    let (_, changes) = run(&mut l, &members, at + SUSPECT_AFTER + ms(1), at + SUSPECT_AFTER + ms(40));
    assert_eq!(changes.len(), 1);
}

#[test]
fn a_helper_probes_and_passes_the_ack_on() {
    let t0 = Instant::now();
    let mut helper = Liveness::new(addr(3), 0);
    let (out, _) = helper.receive(addr(2), Message::ProbeFor(42, addr(1)), t0);
    assert_eq!(out, vec![(addr(1), Message::Probe(42))]);
    assert_eq!(helper.next_wake(), Some(t0 + HELPER_WAIT));
    let (out, _) = helper.receive(addr(1), Message::Ack(42), t0 + ms(1));
    assert_eq!(out, vec![(addr(2), Message::Ack(42))]);
    let (out, _) = helper.receive(addr(1), Message::Ack(42), t0 + ms(2));
    assert!(out.is_empty(), "once");
    assert_eq!(helper.next_wake(), None, "answered: nothing more to say");
    assert!(helper.poll(t0 + HELPER_WAIT, &[]).0.is_empty());
    // No ack in time: the prober hears so, once; an ack after it is still passed on.
    helper.receive(addr(2), Message::ProbeFor(50, addr(1)), t0);
    assert!(helper.poll(t0 + HELPER_WAIT - ms(1), &[]).0.is_empty());
    assert_eq!(helper.poll(t0 + HELPER_WAIT, &[]).0, vec![(addr(2), Message::Unanswered(50))]);
    assert!(helper.poll(t0 + HELPER_WAIT + ms(1), &[]).0.is_empty());
    assert_eq!(helper.receive(addr(1), Message::Ack(50), t0 + ms(30)).0, vec![(addr(2), Message::Ack(50))]);
    // Anyone probed answers.
    assert_eq!(helper.receive(addr(2), Message::Probe(7), t0).0, vec![(addr(2), Message::Ack(7))]);
    // A relay is forgotten after a while.
    helper.receive(addr(2), Message::ProbeFor(43, addr(1)), t0);
    helper.receive(addr(4), Message::ProbeFor(44, addr(1)), t0 + RELAY_FOR + ms(1));
    assert!(helper.receive(addr(1), Message::Ack(43), t0 + RELAY_FOR + ms(2)).0.is_empty());
}

#[test]
fn the_election_decides_whom_to_watch() {
    let t0 = Instant::now();
    let members = [addr(1), addr(2), addr(3)];
    let mut l = Liveness::new(addr(2), 0);
    l.follow(Roles::watching(set(&[]), set(&[1])), t0);
    // No longer heir to it: no probe, ever.
    l.follow(Roles::watching(set(&[]), set(&[])), t0 + ms(10));
    let (sent, changes) = run(&mut l, &members, t0, t0 + ms(500));
    assert!(sent.is_empty() && changes.is_empty());
    // A failure outlives the watch until heard from or dropped by SWIM.
    l.follow(Roles::watching(set(&[]), set(&[3])), t0);
    run(&mut l, &members, t0, t0 + ms(200));
    assert_eq!(l.failed(), &set(&[3]));
    l.follow(Roles::watching(set(&[]), set(&[])), t0 + ms(201));
    assert_eq!(l.failed(), &set(&[3]));
    l.follow(Roles::watching(set(&[]), set(&[3])), t0 + ms(202));
    assert_eq!(l.next_wake(), None, "watched again, still failed: not probed again");
    assert!(!l.retain_failed(&members));
    assert!(l.retain_failed(&[addr(1), addr(2)]));
    assert!(l.failed().is_empty());
}

#[test]
fn after_a_mute_spell_the_watches_start_afresh() {
    let t0 = Instant::now();
    let members = [addr(1), addr(2), addr(3)];
    let mut l = Liveness::new(addr(2), 0);
    l.follow(Roles::watching(set(&[3]), set(&[1])), t0);
    l.heard(addr(1), t0);
    // Probed just before this member fell mute; the probe's time runs out while it is.
    let (sent, _) = l.poll(t0 + SUSPECT_AFTER, &members);
    assert!(sent.iter().any(|(to, m)| *to == addr(1) && matches!(m, Message::Probe(_))));
    let back = t0 + ms(500);
    l.resume(back);
    // Not failed for a silence it could not have heard the end of: probed again in due time.
    let (out, changed) = l.poll(back, &members);
    assert!(!changed && l.failed().is_empty(), "{out:?}");
    assert!(out.iter().any(|(to, m)| *to == addr(3) && *m == Message::Beat), "beats at once: {out:?}");
    assert_eq!(l.next_wake(), Some(back + BEAT_EVERY));
    let (_, changes) = run(&mut l, &members, back, back + ms(200));
    assert_eq!(changes, vec![back + SUSPECT_AFTER + CONFIRM], "and failed if it stays silent");
}

#[test]
fn an_heir_no_helper_speaks_to_takes_nothing_over() {
    let t0 = Instant::now();
    let members = [addr(1), addr(2), addr(3), addr(4)];
    let mut l = Liveness::new(addr(2), 0);
    l.follow(Roles::watching(set(&[]), set(&[1])), t0);
    // Cut off from everyone, or its datagrams lost in a flood: neither the owner nor a helper
    // is heard, probe after probe.
    let (sent, changes) = run_with(&mut l, &members, t0, t0 + ms(499), false);
    assert!(changes.is_empty() && l.failed().is_empty(), "{changes:?}");
    let probes = sent.iter().filter(|(_, m)| matches!(m, Message::Probe(_))).count();
    assert!(probes >= 5, "probed again and again: {probes}");
    assert_eq!(l.unconfirmed, probes as u64 - 1, "each probe but the last ran out");
    // A helper says the owner did not answer it either: the owner's silence counts.
    let (_, changes) = run(&mut l, &members, t0 + ms(501), t0 + ms(700));
    assert_eq!(changes.len(), 1);
    assert_eq!(l.failed(), &set(&[1]));
    // With no helper to ask (two members), an heir cannot tell, and takes over.
    let mut two = Liveness::new(addr(2), 0);
    two.follow(Roles::watching(set(&[]), set(&[1])), t0);
    let (_, changes) = run_with(&mut two, &[addr(1), addr(2)], t0, t0 + ms(200), false);
    assert_eq!(changes, vec![t0 + SUSPECT_AFTER + CONFIRM]);
}

#[test]
fn a_helpers_late_word_still_counts() {
    let t0 = Instant::now();
    let members = [addr(1), addr(2), addr(3)];
    let mut l = Liveness::new(addr(2), 0);
    l.follow(Roles::watching(set(&[]), set(&[1])), t0);
    let (sent, _) = l.poll(t0 + SUSPECT_AFTER, &members);
    let nonce = asked(&sent, addr(3));
    // Nothing by the probes' time: not yet given up, not yet failed.
    let due = t0 + SUSPECT_AFTER + CONFIRM;
    assert_eq!(l.poll(due, &members), (Vec::new(), false));
    assert_eq!(l.next_wake(), Some(due + CONFIRM));
    // The helper's word comes late: failed at once.
    let (out, changed) = l.receive(addr(3), Message::Unanswered(nonce), due + ms(3));
    assert!(out.is_empty() && changed);
    assert_eq!(l.failed(), &set(&[1]));
    assert_eq!(l.unconfirmed, 0);
    // A word for a probe that is not this member's: nothing.
    let mut other = Liveness::new(addr(2), 0);
    other.follow(Roles::watching(set(&[]), set(&[1])), t0);
    assert_eq!(other.receive(addr(3), Message::Unanswered(nonce), due), (Vec::new(), false));
}

#[test]
fn an_owner_leaving_is_taken_over_at_once() {
    let t0 = Instant::now();
    let mut owner = Liveness::new(addr(1), 0);
    owner.follow(Roles::watching(set(&[2, 3]), set(&[])), t0);
    assert_eq!(owner.leaving(), vec![(addr(2), Message::Leaving), (addr(3), Message::Leaving)]);
    let mut heir = Liveness::new(addr(2), 0);
    heir.follow(Roles::watching(set(&[]), set(&[1])), t0);
    heir.heard(addr(1), t0);
    let (out, changed) = heir.receive(addr(1), Message::Leaving, t0);
    assert!(out.is_empty() && changed);
    assert_eq!(heir.failed(), &set(&[1]));
    // From a member it does not inherit from: nothing.
    let (_, changed) = heir.receive(addr(3), Message::Leaving, t0);
    assert!(!changed);
}

/// A watcher on the ring (1 watches 2 for the heirs 3 and 4).
fn watcher() -> Liveness {
    let mut l = Liveness::new(addr(1), 0);
    let roles = Roles {
        beat_to: set(&[5]),
        heirs: set(&[]),
        watch: BTreeMap::from([(addr(2), set(&[3, 4]))]),
        inherit: set(&[]),
    };
    l.follow(roles, Instant::now());
    l
}

#[test]
fn a_watcher_tells_the_heirs_and_they_take_over() {
    let t0 = Instant::now();
    let members = [addr(1), addr(2), addr(3), addr(4), addr(5)];
    let mut l = watcher();
    l.heard(addr(2), t0);
    let (sent, changes) = run(&mut l, &members, t0, t0 + ms(200));
    let failed_at = t0 + SUSPECT_AFTER + CONFIRM;
    assert_eq!(changes, vec![failed_at]);
    // Each heir hears it VERDICT_COPIES times, VERDICT_EVERY apart; nobody else does.
    let verdicts: Vec<&SocketAddr> =
        sent.iter().filter(|(_, m)| *m == Message::Failed(addr(2))).map(|(to, _)| to).collect();
    assert_eq!(verdicts.len(), 2 * VERDICT_COPIES as usize, "{sent:?}");
    assert!(verdicts.iter().all(|to| [addr(3), addr(4)].contains(to)));
    // An heir takes over on the word; a member that does not inherit from it does nothing.
    let mut heir = Liveness::new(addr(3), 0);
    heir.follow(Roles { inherit: set(&[2]), ..Roles::default() }, t0);
    assert!(heir.vouches(&addr(2)), "an heir vouches for its owner until told");
    let (asked, changed) = heir.receive(addr(1), Message::Failed(addr(2)), failed_at);
    assert!(changed && matches!(asked[..], [(to, Message::Probe(_))] if to == addr(2)), "{asked:?}");
    assert_eq!(heir.failed(), &set(&[2]));
    assert!(!heir.vouches(&addr(2)));
    assert_eq!((heir.take_owners_failed(), l.take_owners_failed()), (1, 0), "counted where inherited");
    // Told again (the next copy): nothing more to do.
    assert_eq!(
        heir.receive(addr(1), Message::Failed(addr(2)), failed_at + VERDICT_EVERY),
        (Vec::new(), false)
    );
    let mut other = Liveness::new(addr(5), 0);
    assert_eq!(other.receive(addr(1), Message::Failed(addr(2)), failed_at), (Vec::new(), false));
    // Heard from again (its ack, if it was only cut from its watcher and the helpers), the owner
    // is back.
    assert!(heir.heard(addr(2), failed_at + ms(1)));
}

#[test]
fn some_helpers_silent_is_another_round_not_a_failure() {
    let t0 = Instant::now();
    let members = [addr(1), addr(2), addr(3), addr(4)];
    let mut l = watcher();
    l.heard(addr(2), t0);
    let probed = t0 + SUSPECT_AFTER;
    let (sent, _) = l.poll(probed, &members);
    let nonce = sent.iter().find_map(|(_, m)| if let Message::ProbeFor(n, _) = m { Some(*n) } else { None });
    // One helper (cut from the owner too) says it was silent; the other's ack was lost.
    let helper = sent.iter().find(|(_, m)| matches!(m, Message::ProbeFor(..))).map(|(to, _)| *to).unwrap();
    assert_eq!(l.receive(helper, Message::Unanswered(nonce.unwrap()), probed + ms(2)), (Vec::new(), false));
    assert_eq!(l.poll(probed + CONFIRM, &members), (Vec::new(), false), "not every helper said so");
    let (again, changed) = l.poll(probed + CONFIRM * 2, &members);
    assert!(!changed && l.failed().is_empty(), "{again:?}");
    assert!(!again.iter().any(|(_, m)| matches!(m, Message::Failed(_))), "{again:?}");
    assert_eq!(l.next_wake(), Some(probed + CONFIRM * 2), "probed again at once");
    let (again, _) = l.poll(probed + CONFIRM * 2, &members);
    assert!(again.iter().any(|(to, m)| *to == addr(2) && matches!(m, Message::Probe(_))), "{again:?}");
    assert_eq!(l.unconfirmed, 0, "a helper did speak");
}

#[test]
fn an_heir_doubts_swims_word_and_probes_the_owner_itself() {
    let t0 = Instant::now();
    let members = [addr(1), addr(2), addr(3), addr(4)];
    let mut heir = Liveness::new(addr(3), 0);
    heir.follow(Roles { inherit: set(&[2]), ..Roles::default() }, t0);
    assert_eq!(heir.next_wake(), None, "it watches nobody");
    // SWIM declares the owner down: the heir vouches for it and probes it at once.
    assert!(heir.doubt(addr(2), t0 + ms(500)));
    assert_eq!(heir.next_wake(), Some(t0 + ms(500)));
    let (sent, _) = heir.poll(t0 + ms(500), &members);
    assert!(sent.iter().any(|(to, m)| *to == addr(2) && matches!(m, Message::Probe(_))), "{sent:?}");
    // It answers: the doubt is lifted, and its watcher's beats are not this member's to wait for.
    assert!(!heir.heard(addr(2), t0 + ms(501)));
    assert_eq!(heir.next_wake(), None);
    assert!(heir.vouches(&addr(2)));
    // Doubted again, and silent this time: failed by the heir's own probes.
    assert!(heir.doubt(addr(2), t0 + ms(900)));
    let (_, changes) = run(&mut heir, &members, t0 + ms(900), t0 + ms(1000));
    assert_eq!(changes, vec![t0 + ms(900) + CONFIRM]);
    // A member it neither watches nor inherits from: no doubt, no vouching.
    assert!(!heir.doubt(addr(4), t0 + ms(1000)));
}
