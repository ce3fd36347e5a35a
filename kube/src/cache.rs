//! Caches of the API server's objects, kept by kube's reflectors.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt as _;
use kube::{
    Api,
    runtime::{
        WatchStreamExt as _,
        reflector::{self, Store},
        utils::Backoff,
        watcher,
    },
};
use tokio::sync::mpsc;
use tracing::warn;

/// A kind of object a watch can keep: any cluster-known Kubernetes kind.
pub trait Watched:
    kube::Resource<DynamicType = ()>
    + Clone
    + std::fmt::Debug
    + serde::de::DeserializeOwned
    + Send
    + Sync
    + 'static
{
}

impl<K> Watched for K where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static
{
}

/// A cache of `api`'s objects, kept by a watch that signals `changed` on every update. The
/// watch retries with [`Retry`] while the API server is away; the cache keeps the last state
/// meanwhile, and a re-list replaces it whole once complete. managedFields are dropped: nothing
/// here reads them, and they are often most of an object.
pub fn watch<K: Watched>(api: Api<K>, changed: &mpsc::Sender<()>) -> Store<K> {
    watch_stripped(api, changed, |_| {})
}

/// [`watch`], with `strip` applied to each object before it is cached: a cache of every object
/// of a kind need hold only what its reader reads.
pub fn watch_stripped<K: Watched>(
    api: Api<K>,
    changed: &mpsc::Sender<()>,
    mut strip: impl FnMut(&mut K) + Send + 'static,
) -> Store<K> {
    let (store, writer) = reflector::store();
    let changed = changed.clone();
    let events = watcher(api, watcher::Config::default()).modify(move |obj| {
        obj.meta_mut().managed_fields = None;
        strip(obj);
    });
    let stream = reflector::reflector(writer, events).backoff(Retry::default()).touched_objects();
    tokio::spawn(stream.for_each(move |event| {
        if let Err(e) = event {
            warn!(error = %e, "watch");
        }
        let _ = changed.try_send(());
        std::future::ready(())
    }));
    store
}

/// How a failed watch is retried: from 0.5 s, doubling to at most 5 s, each delay between half
/// and all of that (so that every node's speaker does not come back at the same instant).
/// kube's default goes up to 30 s, kind to a struggling API server but slow to catch up: after
/// an outage of a minute a change could wait half a minute more to be seen.
#[derive(Debug, Default)]
pub struct Retry {
    failures: u32,
}

impl Retry {
    const FIRST: Duration = Duration::from_millis(500);
    const MAX: Duration = Duration::from_secs(5);
}

impl Iterator for Retry {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let full = Self::FIRST.saturating_mul(1 << self.failures.min(16)).min(Self::MAX);
        self.failures = self.failures.saturating_add(1);
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let fraction = 0.5 + f64::from(nanos % 1000) / 2000.0;
        Some(full.mul_f64(fraction))
    }
}

impl Backoff for Retry {
    fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_grow_to_a_cap_and_reset() {
        let mut retry = Retry::default();
        let delays: Vec<Duration> = retry.by_ref().take(8).collect();
        for (i, d) in delays.iter().enumerate() {
            let full = Retry::FIRST.saturating_mul(1 << i).min(Retry::MAX);
            assert!(*d >= full / 2 && *d <= full, "attempt {i}: {d:?} not in [{:?}, {full:?}]", full / 2);
        }
        retry.reset();
        assert!(retry.next().unwrap() <= Retry::FIRST);
    }
}
