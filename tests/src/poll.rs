//! Waiting for what the lab, the nodes or the API server do in their own time: one helper, for
//! sync and async checks, that asks every [`EVERY`] until an answer or the timeout. (A timeout
//! here is a bound on a failure, never a measurement: figures come from the benches.)

use std::time::{Duration, Instant};

/// How often a check is asked again.
pub const EVERY: Duration = Duration::from_millis(50);

/// What a check answers: `true`, or `Some(value)`, when what it waits for has happened.
pub trait Answer {
    type Value;
    fn value(self) -> Option<Self::Value>;
}

impl Answer for bool {
    type Value = ();
    fn value(self) -> Option<()> {
        self.then_some(())
    }
}

impl<T> Answer for Option<T> {
    type Value = T;
    fn value(self) -> Option<T> {
        self
    }
}

/// `check`'s first answer within `timeout` (asked at least once), or `None`.
pub fn until<A: Answer>(timeout: Duration, mut check: impl FnMut() -> A) -> Option<A::Value> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().value() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(EVERY);
    }
}

/// [`until`] for a check that awaits.
pub async fn until_async<A: Answer>(
    timeout: Duration,
    mut check: impl AsyncFnMut() -> A,
) -> Option<A::Value> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await.value() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_answer_or_none() {
        let mut asked = 0;
        assert_eq!(
            until(Duration::from_secs(5), || {
                asked += 1;
                (asked == 3).then_some(asked)
            }),
            Some(3)
        );
        assert_eq!(until(Duration::ZERO, || false), None);
        let mut asked = 0;
        assert_eq!(
            until(Duration::ZERO, || {
                asked += 1;
                false
            }),
            None
        );
        assert_eq!(asked, 1, "asked once even without time");
    }
}
