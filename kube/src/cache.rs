//! Caches of the API server's objects, kept by kube's reflectors.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt as _;
use kube::{
    Api,
    runtime::{
        WatchStreamExt as _,
        reflector::{self, ObjectRef, Store},
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

/// A cache of `api`'s objects, kept by a watch that signals `changed` when an object changes
/// (more than its resourceVersion: see [`is_news`]). The watch retries with [`Retry`] while the
/// API server is away; the cache keeps the last state meanwhile, and a re-list replaces it whole
/// once complete. managedFields are dropped: nothing here reads them, and they are often most
/// of an object.
pub fn watch<K: Watched + PartialEq>(api: Api<K>, changed: &mpsc::Sender<()>) -> Store<K> {
    watch_stripped(api, changed, |_| {})
}

/// [`watch`], with `strip` applied to each object before it is cached: a cache of every object
/// of a kind need hold only what its reader reads, and an update of what it does not read
/// (a Node's heartbeat, images, capacities) wakes no one.
pub fn watch_stripped<K: Watched + PartialEq>(
    api: Api<K>,
    changed: &mpsc::Sender<()>,
    mut strip: impl FnMut(&mut K) + Send + 'static,
) -> Store<K> {
    let (store, mut writer) = reflector::store();
    let (reader, changed) = (store.clone(), changed.clone());
    let events = watcher(api, watcher::Config::default())
        .modify(move |obj| {
            obj.meta_mut().managed_fields = None;
            strip(obj);
        })
        .backoff(Retry::default());
    tokio::spawn(events.for_each(move |event| {
        match event {
            Ok(event) => {
                let news = is_news(&reader, &event);
                writer.apply_watcher_event(&event);
                if news {
                    let _ = changed.try_send(());
                }
            }
            Err(e) => warn!(error = %e, "watch"),
        }
        std::future::ready(())
    }));
    store
}

/// Whether `event` changes what `store` holds, the resourceVersion aside (it changes with every
/// write, also of fields a strip step removed). A completed list always counts: readers wait for
/// the first, and a re-list follows a gap in the watch.
fn is_news<K: Watched + PartialEq>(store: &Store<K>, event: &watcher::Event<K>) -> bool {
    match event {
        watcher::Event::Apply(obj) => {
            store.get(&ObjectRef::from_obj(obj)).is_none_or(|held| !same(&*held, obj))
        }
        watcher::Event::Delete(obj) => store.get(&ObjectRef::from_obj(obj)).is_some(),
        watcher::Event::Init | watcher::Event::InitApply(_) => false,
        watcher::Event::InitDone => true,
    }
}

/// `a` and `b` are equal but for their resourceVersions.
fn same<K: Watched + PartialEq>(a: &K, b: &K) -> bool {
    if a.meta().resource_version == b.meta().resource_version {
        return a == b;
    }
    let mut a = a.clone();
    a.meta_mut().resource_version.clone_from(&b.meta().resource_version);
    a == *b
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
    use k8s_openapi::api::core::v1::Node;

    use super::*;

    fn node(version: &str, label: &str) -> Node {
        let mut node = Node::default();
        node.metadata.name = Some("node-a".into());
        node.metadata.resource_version = Some(version.into());
        node.metadata.labels = Some([("zone".to_owned(), label.to_owned())].into());
        node
    }

    #[test]
    fn only_a_change_beyond_the_version_is_news() {
        let (store, mut writer) = reflector::store::<Node>();
        let apply = |n: Node| watcher::Event::Apply(n);
        assert!(is_news(&store, &apply(node("1", "a"))), "a new object");
        writer.apply_watcher_event(&apply(node("1", "a")));
        assert!(!is_news(&store, &apply(node("1", "a"))), "the same object again");
        assert!(!is_news(&store, &apply(node("2", "a"))), "only the version moved");
        assert!(is_news(&store, &apply(node("3", "b"))), "a label changed");
        assert!(is_news(&store, &watcher::Event::Delete(node("4", "a"))), "a held object deleted");
        writer.apply_watcher_event(&watcher::Event::Delete(node("4", "a")));
        assert!(!is_news(&store, &watcher::Event::Delete(node("4", "a"))), "nothing held");
        assert!(!is_news(&store, &watcher::Event::InitApply(node("5", "a"))), "a list in progress");
        assert!(is_news(&store, &watcher::Event::<Node>::InitDone), "a completed list");
    }

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
