//! Caches of the API server's objects, kept by kube's reflectors.

use futures_util::StreamExt as _;
use kube::{
    Api,
    runtime::{
        WatchStreamExt as _,
        reflector::{self, Store},
        watcher,
    },
};
use tokio::sync::mpsc;
use tracing::warn;

/// A cache of `api`'s objects, kept by a watch that signals `changed` on every update. The
/// watch retries with backoff while the API server is away; the cache keeps the last state
/// meanwhile, and a re-list replaces it whole once complete. managedFields are dropped: nothing
/// here reads them, and they are often most of an object.
pub fn watch<K>(api: Api<K>, changed: &mpsc::Sender<()>) -> Store<K>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    let changed = changed.clone();
    let events = watcher(api, watcher::Config::default()).modify(|obj| obj.meta_mut().managed_fields = None);
    let stream = reflector::reflector(writer, events).default_backoff().touched_objects();
    tokio::spawn(stream.for_each(move |event| {
        if let Err(e) = event {
            warn!(error = %e, "watch");
        }
        let _ = changed.try_send(());
        std::future::ready(())
    }));
    store
}
