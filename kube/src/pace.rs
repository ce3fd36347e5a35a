//! When a watch change is handled: at once when it comes alone, at most once per interval when
//! changes come in bursts. A Service created alone is served without waiting; a burst of
//! EndpointSlice changes still costs one pass per interval.

use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Pace {
    interval: Duration,
    last: Option<Instant>,
}

impl Pace {
    pub fn new(interval: Duration) -> Self {
        Self { interval, last: None }
    }

    /// When a change that arrives at `now` is handled: then, unless the last pass began less
    /// than the interval before; then the interval after it.
    pub fn due(&self, now: Instant) -> Instant {
        match self.last {
            Some(last) if now < last + self.interval => last + self.interval,
            _ => now,
        }
    }

    /// A pass begins at `now`.
    pub fn pass(&mut self, now: Instant) {
        self.last = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alone_at_once_in_bursts_once_per_interval() {
        let interval = Duration::from_millis(100);
        let mut pace = Pace::new(interval);
        let t0 = Instant::now();
        assert_eq!(pace.due(t0), t0, "the first change waits for nothing");
        pace.pass(t0);
        let soon = t0 + Duration::from_millis(30);
        assert_eq!(pace.due(soon), t0 + interval, "a change soon after a pass waits for the interval");
        pace.pass(t0 + interval);
        let later = t0 + Duration::from_millis(500);
        assert_eq!(pace.due(later), later, "a change long after the last pass is handled at once");
    }
}
