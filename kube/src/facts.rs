//! A cache of what a reader needs of each object, not the objects: a watch (with the same retry
//! as [`crate::cache`]) turns each object into a small value as it arrives and keeps only that,
//! by `namespace/name`. For the kinds every node caches whole-cluster (Services, endpoints):
//! Kubernetes' types are hundreds of bytes before their first field is set, and a reflector keeps
//! a key and an `Arc` of one per object besides.

use std::{
    collections::BTreeMap,
    sync::{Arc, RwLock},
};

use futures_util::StreamExt as _;
use kube::{
    Api, ResourceExt as _,
    runtime::{WatchStreamExt as _, watcher},
};
use tokio::sync::{mpsc, watch as signal};
use tracing::warn;

use crate::cache::{Retry, Watched};

/// The values made from a kind's objects, by `namespace/name`.
pub struct Facts<T> {
    state: Arc<RwLock<State<T>>>,
    ready: signal::Receiver<bool>,
}

struct State<T> {
    current: BTreeMap<String, T>,
    /// A re-list in progress: it replaces `current` whole once complete.
    listing: Option<BTreeMap<String, T>>,
}

impl<T> Facts<T> {
    /// What `read` makes of the values as they are now.
    pub fn read<R>(&self, read: impl FnOnce(&BTreeMap<String, T>) -> R) -> R {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        read(&state.current)
    }

    /// Waits for the first complete list.
    pub async fn wait_until_ready(&self) -> Result<(), signal::error::RecvError> {
        self.ready.clone().wait_for(|ready| *ready).await.map(drop)
    }
}

/// Keeps what `fact` makes of each of `api`'s objects (`None`: nothing to keep), signalling
/// `changed` when what a reader sees changes: most updates of an object (its status, an
/// annotation, another controller's field) leave its fact as it was, and wake no one. While the
/// API server is away the values stay as they were.
pub fn watch<K: Watched, T: PartialEq + Send + Sync + 'static>(
    api: Api<K>,
    changed: &mpsc::Sender<()>,
    fact: impl Fn(&K) -> Option<T> + Send + 'static,
) -> Facts<T> {
    let state = Arc::new(RwLock::new(State { current: BTreeMap::new(), listing: None }));
    let (ready_tx, ready) = signal::channel(false);
    let (writer, changed) = (state.clone(), changed.clone());
    let events = watcher(api, watcher::Config::default()).backoff(Retry::default());
    tokio::spawn(events.for_each(move |event| {
        let news = match event {
            Ok(event) => {
                let listed = matches!(event, watcher::Event::InitDone);
                let news = writer.write().unwrap_or_else(|e| e.into_inner()).apply(event, &fact);
                if listed {
                    ready_tx.send_replace(true);
                }
                news
            }
            Err(e) => {
                warn!(error = %e, "watch");
                false
            }
        };
        if news {
            let _ = changed.try_send(());
        }
        std::future::ready(())
    }));
    Facts { state, ready }
}

impl<T: PartialEq> State<T> {
    /// Applies one watch event; true if what readers see changed. A completed list always
    /// counts: readers wait for the first, and a re-list follows a gap in the watch.
    fn apply<K: kube::Resource>(&mut self, event: watcher::Event<K>, fact: impl Fn(&K) -> Option<T>) -> bool {
        let key = |obj: &K| format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any());
        match event {
            watcher::Event::Apply(obj) => match fact(&obj) {
                Some(value) => {
                    let key = key(&obj);
                    if self.current.get(&key) == Some(&value) {
                        return false;
                    }
                    self.current.insert(key, value);
                    true
                }
                None => self.current.remove(&key(&obj)).is_some(),
            },
            watcher::Event::Delete(obj) => self.current.remove(&key(&obj)).is_some(),
            watcher::Event::Init => {
                self.listing = Some(BTreeMap::new());
                false
            }
            watcher::Event::InitApply(obj) => {
                if let (Some(listing), Some(value)) = (self.listing.as_mut(), fact(&obj)) {
                    listing.insert(key(&obj), value);
                }
                false
            }
            watcher::Event::InitDone => match self.listing.take() {
                Some(listing) => {
                    self.current = listing;
                    true
                }
                None => false,
            },
        }
    }
}

#[cfg(test)]
#[path = "facts_tests.rs"]
mod tests;
