//! A cluster member's dead man's switch, one for the programs and for the other members. The
//! membership thread beats to the programs' heartbeat slot every [`FENCE_EVERY`], each beat
//! holding for [`FENCE_BOUND`], and it does so (and sends anything at all to the others) only
//! while the run loop has ticked its [`Pulse`] within the run loop's bound (`--dead-man-ms`).
//!
//! So whatever stops, the node falls silent before an heir takes over:
//! - the whole process frozen (SIGSTOP, a paused container): the programs stop answering
//!   [`FENCE_BOUND`] after the last beat; an heir hears no heartbeat and no ack, and takes over
//!   [`liveness::SUSPECT_AFTER`] + [`liveness::CONFIRM`] after the last one, later by a margin
//!   (the `const` assertion below);
//! - the run loop alone stuck (a blocking call, a long pass): past its bound the membership
//!   stops beating to the programs and falls mute to the others, so both of the above follow.
//!
//! A speaker whose membership was late, or mute, may have been replaced: it does not just go on.
//! The run loop sees the fence, withdraws everything, holds its gains for a hand-back's time
//! (the others hear it again and give its addresses back), and only then lifts the fence.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::sync::Notify;
use tracing::warn;

use crate::{clock, cluster::liveness, datapath::Heartbeats, metrics::Metrics};

/// How long a beat from the membership thread holds.
pub const FENCE_BOUND: Duration = Duration::from_millis(40);
/// How often the membership thread beats: three beats per bound, so that a thread scheduled up
/// to 30 ms late keeps the node answering.
pub const FENCE_EVERY: Duration = Duration::from_millis(10);

// The programs fall silent before an heir can take over. A frozen member's last heartbeat to its
// heirs went out at most one liveness beat before its last beat to the programs.
const _: () = assert!(
    FENCE_BOUND.as_millis() + FENCE_EVERY.as_millis()
        < (liveness::SUSPECT_AFTER.as_millis() + liveness::CONFIRM.as_millis())
            - liveness::BEAT_EVERY.as_millis()
);

/// `CLOCK_MONOTONIC` ns of the run loop's last tick, or [`FENCED`].
const FENCED: u64 = u64::MAX;

/// The run loop's pulse, read by the membership thread.
#[derive(Debug)]
pub struct Pulse {
    last: AtomicU64,
    fenced: Notify,
}

impl Default for Pulse {
    fn default() -> Self {
        Self { last: AtomicU64::new(clock::monotonic_ns()), fenced: Notify::new() }
    }
}

impl Pulse {
    /// The run loop is alive. `false` while fenced: only [`Pulse::lift`] ends a fence.
    pub fn tick(&self) -> bool {
        let now = clock::monotonic_ns();
        self.last
            .try_update(Ordering::AcqRel, Ordering::Acquire, |last| (last != FENCED).then_some(now))
            .is_ok()
    }

    pub fn is_fenced(&self) -> bool {
        self.last.load(Ordering::Acquire) == FENCED
    }

    /// Ends a fence: the run loop has withdrawn everything and holds its gains.
    pub fn lift(&self) {
        self.last.store(clock::monotonic_ns(), Ordering::Release);
    }

    /// Resolves when a fence may have gone up (now or since the last call).
    pub async fn fenced(&self) {
        self.fenced.notified().await
    }

    /// The last tick, if not fenced.
    fn read(&self) -> Option<u64> {
        Some(self.last.load(Ordering::Acquire)).filter(|last| *last != FENCED)
    }

    /// Fences, unless the run loop ticked since `seen`.
    fn fence(&self, seen: u64) -> bool {
        let fenced = self.last.compare_exchange(seen, FENCED, Ordering::AcqRel, Ordering::Acquire).is_ok();
        if fenced {
            self.fenced.notify_one();
        }
        fenced
    }
}

/// Whether a member may vouch for itself, and why not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Vouch,
    /// Fenced already: waiting for the run loop.
    Fenced,
    /// The run loop has not ticked within its bound.
    LoopStalled,
    /// The membership thread itself beat too late: the programs fell silent in between, and an
    /// heir may have taken over.
    Late,
}

/// The verdict, from the age of the run loop's last tick (`None`: fenced), the time since the
/// membership's last beat to the programs (`None`: none since the last fence), and the run
/// loop's bound.
pub fn verdict(loop_age: Option<Duration>, since_beat: Option<Duration>, loop_bound: Duration) -> Verdict {
    match loop_age {
        None => Verdict::Fenced,
        Some(age) if age > loop_bound => Verdict::LoopStalled,
        Some(_) if since_beat.is_some_and(|since| since > FENCE_BOUND) => Verdict::Late,
        Some(_) => Verdict::Vouch,
    }
}

/// The membership thread's side: beats to the programs while the member may vouch for itself.
pub struct Fence {
    heartbeats: Heartbeats,
    pulse: Arc<Pulse>,
    loop_bound: Duration,
    /// `CLOCK_MONOTONIC` ns of the last beat to the programs since the last fence.
    beaten: Option<u64>,
    metrics: Arc<Metrics>,
}

impl Fence {
    pub fn new(
        heartbeats: Heartbeats,
        pulse: Arc<Pulse>,
        loop_bound: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self { heartbeats, pulse, loop_bound, beaten: None, metrics }
    }

    /// Whether this member may vouch for itself now; fences it when not.
    pub fn check(&mut self) -> bool {
        let now = clock::monotonic_ns();
        let seen = self.pulse.read();
        let age = |at: u64| Duration::from_nanos(now.saturating_sub(at));
        match verdict(seen.map(age), self.beaten.map(age), self.loop_bound) {
            Verdict::Vouch => true,
            Verdict::Fenced => false,
            why => {
                // The run loop may have ticked since: it is judged again at the next check.
                if let Some(seen) = seen
                    && self.pulse.fence(seen)
                {
                    self.beaten = None;
                    self.metrics.fences.inc();
                    warn!(
                        ?why,
                        run_loop_silent_ms = age(seen).as_millis() as u64,
                        "silenced: this node stops answering and falls silent to the others until its run loop has caught up"
                    );
                }
                false
            }
        }
    }

    /// Beats to the programs if this member may vouch for itself; returns whether it may.
    pub fn beat(&mut self) -> bool {
        if !self.check() {
            return false;
        }
        match self.heartbeats.beat(FENCE_BOUND) {
            Ok(()) => self.beaten = Some(clock::monotonic_ns()),
            Err(e) => warn!(error = %herald_kube::report::Chain(&e), "heartbeat not written"),
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUND: Duration = Duration::from_secs(1);

    fn ms(n: u64) -> Option<Duration> {
        Some(Duration::from_millis(n))
    }

    #[test]
    fn vouches_only_while_the_loop_ticks_and_the_beats_come_in_time() {
        assert_eq!(verdict(ms(10), ms(5), BOUND), Verdict::Vouch);
        // The first beat after a start or a fence.
        assert_eq!(verdict(ms(10), None, BOUND), Verdict::Vouch);
        assert_eq!(verdict(ms(1000), ms(5), BOUND), Verdict::Vouch);
        assert_eq!(verdict(ms(1001), ms(5), BOUND), Verdict::LoopStalled);
        assert_eq!(verdict(ms(10), ms(40), BOUND), Verdict::Vouch);
        assert_eq!(verdict(ms(10), ms(41), BOUND), Verdict::Late);
        assert_eq!(verdict(None, ms(5), BOUND), Verdict::Fenced);
        assert_eq!(verdict(None, None, BOUND), Verdict::Fenced);
    }

    #[test]
    fn a_fence_holds_until_lifted_and_a_tick_since_prevents_it() {
        let pulse = Pulse::default();
        let seen = pulse.read().unwrap();
        assert!(pulse.tick());
        // The run loop ticked after `seen`: no fence on a stale reading.
        let ticked = pulse.read().unwrap();
        if ticked != seen {
            assert!(!pulse.fence(seen));
        }
        assert!(pulse.fence(pulse.read().unwrap()));
        assert!(pulse.is_fenced());
        assert!(!pulse.tick(), "a tick does not end a fence");
        assert!(pulse.is_fenced());
        pulse.lift();
        assert!(!pulse.is_fenced());
        assert!(pulse.tick());
    }

    #[tokio::test]
    async fn a_fence_wakes_the_run_loop_even_when_it_was_not_waiting() {
        let pulse = Pulse::default();
        assert!(pulse.fence(pulse.read().unwrap()));
        tokio::time::timeout(Duration::from_secs(1), pulse.fenced()).await.expect("woken");
    }
}
