//! Which speakers the API server says are running: each keeps a Lease of its own,
//! `herald-speaker-<node>` in the speaker's namespace, renewed every [`RENEW_EVERY`]. A speaker
//! whose Lease this node saw renewed within [`EXPIRES_AFTER`] (by this node's clock: another
//! node's clock may be off, which is what this is for) is expected to be heard in the
//! membership (see [`super::quorum`]). While the watch is down (an API server outage), the set
//! last known stands: an outage silences no one.
//!
//! The cost: one write per speaker every [`RENEW_EVERY`], and one watch event per renewal to
//! every speaker, as the kubelets' node Leases, at a third of their rate.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures_util::StreamExt as _;
use herald_kube::{cache::Retry, report::Chain};
use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff::Timestamp,
};
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
    runtime::{WatchStreamExt as _, watcher},
};
use tokio::sync::mpsc;
use tracing::{debug, warn};

/// How often a speaker renews its Lease.
pub const RENEW_EVERY: Duration = Duration::from_secs(10);
/// How long after its last renewal seen a speaker is still expected.
pub const EXPIRES_AFTER: Duration = Duration::from_secs(40);
/// The label every speaker's Lease carries, and the Leases watched.
const LABEL: (&str, &str) = ("app.kubernetes.io/name", "herald-speaker");
const PREFIX: &str = "herald-speaker-";

/// The speakers' Leases, as this node observes them.
#[derive(Clone, Default)]
pub struct Presence(Arc<Mutex<Observed>>);

#[derive(Default)]
struct Observed {
    /// Each speaker's last renewal as written, and when this node saw it change.
    renewed: BTreeMap<String, (Option<MicroTime>, Instant)>,
    /// Whether the watch is up (its last event was not an error), and has listed once.
    watching: bool,
    listed: bool,
    /// The set as it stood when the watch was last up.
    last: BTreeSet<String>,
}

impl Presence {
    /// Renews this node's Lease and watches everyone's in `namespace`; `changed` is signalled
    /// when a speaker appears or goes.
    pub fn start(client: &Client, namespace: &str, node: &str, changed: &mpsc::Sender<()>) -> Self {
        let api: Api<Lease> = Api::namespaced(client.clone(), namespace);
        tokio::spawn(renew(api.clone(), node.to_owned()));
        let presence = Self::default();
        let labels = format!("{}={}", LABEL.0, LABEL.1);
        let events = watcher(api, watcher::Config::default().labels(&labels)).backoff(Retry::default());
        let (observed, changed) = (presence.clone(), changed.clone());
        tokio::spawn(events.for_each(move |event| {
            if observed.observe(event, Instant::now()) {
                let _ = changed.try_send(());
            }
            std::future::ready(())
        }));
        presence
    }

    /// Takes in one watch event seen at `now`; returns whether a speaker appeared or went.
    fn observe(&self, event: Result<watcher::Event<Lease>, watcher::Error>, now: Instant) -> bool {
        let mut o = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let before: BTreeSet<String> = o.renewed.keys().cloned().collect();
        if matches!(event, Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_))) {
            o.watching = o.listed;
        }
        match event {
            Ok(watcher::Event::Apply(lease) | watcher::Event::InitApply(lease)) => {
                if let Some((node, renewed)) = holder(&lease) {
                    let entry = o.renewed.entry(node).or_insert((None, now));
                    if entry.0 != renewed {
                        *entry = (renewed, now);
                    }
                }
            }
            Ok(watcher::Event::Delete(lease)) => {
                if let Some((node, _)) = holder(&lease) {
                    o.renewed.remove(&node);
                }
            }
            // A re-list: the last set stands until it is whole.
            Ok(watcher::Event::Init) => {}
            Ok(watcher::Event::InitDone) => {
                // The first list is news: passes wait for it.
                let first = !o.listed;
                (o.watching, o.listed) = (true, true);
                if first {
                    return true;
                }
            }
            Err(e) => {
                debug!(error = %e, "watching the speakers' Leases");
                o.watching = false;
            }
        }
        o.renewed.keys().ne(before.iter())
    }

    /// The speakers expected alive at `now`: those seen renewing within [`EXPIRES_AFTER`], and
    /// `me`. While the watch is down, the set as it last stood; `None` before the first list.
    pub fn expected(&self, me: &str, now: Instant) -> Option<BTreeSet<String>> {
        let mut o = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if !o.listed {
            return None;
        }
        if o.watching {
            let live: BTreeSet<String> = o
                .renewed
                .iter()
                .filter(|(_, (_, seen))| now.saturating_duration_since(*seen) < EXPIRES_AFTER)
                .map(|(node, _)| node.clone())
                .collect();
            o.last = live;
        }
        let mut expected = o.last.clone();
        expected.insert(me.to_owned());
        Some(expected)
    }
}

/// The speakers whose Lease was renewed within [`EXPIRES_AFTER`] of `now` by the Leases' own
/// renewal times (a caller with no history of its own: `kubectl herald`).
pub fn renewed_lately(leases: &[Lease], now: Timestamp) -> BTreeSet<String> {
    let within = i64::try_from(EXPIRES_AFTER.as_millis()).unwrap_or(i64::MAX);
    leases
        .iter()
        .filter_map(holder)
        .filter(|(_, renewed)| {
            renewed.as_ref().is_some_and(|t| now.as_millisecond() - t.0.as_millisecond() < within)
        })
        .map(|(node, _)| node)
        .collect()
}

/// Lists the speakers' Leases in `namespace`.
pub async fn leases(client: &Client, namespace: &str) -> kube::Result<Vec<Lease>> {
    let api: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let params = kube::api::ListParams::default().labels(&format!("{}={}", LABEL.0, LABEL.1));
    Ok(api.list(&params).await?.items)
}

/// The speaker a Lease stands for, and its last renewal.
fn holder(lease: &Lease) -> Option<(String, Option<MicroTime>)> {
    let spec = lease.spec.as_ref()?;
    let node = spec.holder_identity.clone().filter(|n| !n.is_empty())?;
    Some((node, spec.renew_time.clone()))
}

/// Renews `node`'s Lease every [`RENEW_EVERY`], for as long as the speaker runs.
async fn renew(api: Api<Lease>, node: String) {
    let name = format!("{PREFIX}{node}");
    let params = PatchParams::apply("herald-speaker").force();
    let mut every = tokio::time::interval(RENEW_EVERY);
    loop {
        every.tick().await;
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some([(LABEL.0.to_owned(), LABEL.1.to_owned())].into()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(node.clone()),
                lease_duration_seconds: Some(EXPIRES_AFTER.as_secs() as i32),
                renew_time: Some(MicroTime(Timestamp::now())),
                ..Default::default()
            }),
        };
        let mut body = serde_json::to_value(&lease).unwrap_or_default();
        body["apiVersion"] = "coordination.k8s.io/v1".into();
        body["kind"] = "Lease".into();
        if let Err(e) = api.patch(&name, &params, &Patch::Apply(body)).await {
            warn!(lease = name, error = %Chain(&e), "this speaker's Lease not renewed; the others may count it gone");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(node: &str, second: i64) -> Lease {
        Lease {
            metadata: ObjectMeta { name: Some(format!("{PREFIX}{node}")), ..Default::default() },
            spec: Some(LeaseSpec {
                holder_identity: Some(node.into()),
                renew_time: Some(MicroTime(Timestamp::from_second(second).unwrap())),
                ..Default::default()
            }),
        }
    }

    fn names(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn a_speaker_is_expected_while_it_renews_by_this_nodes_clock() {
        let p = Presence::default();
        let t0 = Instant::now();
        assert!(p.observe(Ok(watcher::Event::InitApply(lease("b", 100))), t0));
        assert!(p.observe(Ok(watcher::Event::InitApply(lease("c", 100))), t0));
        assert_eq!(p.expected("a", t0), None, "not listed yet");
        assert!(p.observe(Ok(watcher::Event::InitDone), t0), "the first list is news");
        assert_eq!(p.expected("a", t0), Some(names(&["a", "b", "c"])));
        // b renews; c's Lease is written again unchanged (a re-list): c is not renewed by it.
        let later = t0 + Duration::from_secs(30);
        assert!(!p.observe(Ok(watcher::Event::Apply(lease("b", 130))), later));
        assert!(!p.observe(Ok(watcher::Event::InitApply(lease("c", 100))), later));
        assert_eq!(p.expected("a", t0 + EXPIRES_AFTER).unwrap(), names(&["a", "b"]), "c expired");
        // Whatever c's clock says: a renewal is when this node sees it.
        assert!(!p.observe(Ok(watcher::Event::Apply(lease("c", 5))), t0 + EXPIRES_AFTER));
        assert_eq!(p.expected("a", t0 + EXPIRES_AFTER).unwrap(), names(&["a", "b", "c"]));
        assert!(p.observe(Ok(watcher::Event::Delete(lease("c", 5))), t0 + EXPIRES_AFTER));
        assert_eq!(p.expected("a", t0 + EXPIRES_AFTER).unwrap(), names(&["a", "b"]));
    }

    #[test]
    fn while_the_watch_is_down_the_last_set_stands() {
        let p = Presence::default();
        let t0 = Instant::now();
        p.observe(Ok(watcher::Event::InitApply(lease("b", 100))), t0);
        p.observe(Ok(watcher::Event::InitDone), t0);
        assert_eq!(p.expected("a", t0).unwrap(), names(&["a", "b"]));
        p.observe(Err(watcher::Error::NoResourceVersion), t0);
        let much_later = t0 + EXPIRES_AFTER * 10;
        assert_eq!(
            p.expected("a", much_later).unwrap(),
            names(&["a", "b"]),
            "no renewal seen, but none could be"
        );
        p.observe(Ok(watcher::Event::Init), much_later);
        assert_eq!(p.expected("a", much_later).unwrap(), names(&["a", "b"]), "until the re-list is whole");
        p.observe(Ok(watcher::Event::InitApply(lease("b", 100))), much_later);
        p.observe(Ok(watcher::Event::InitDone), much_later);
        assert_eq!(p.expected("a", much_later).unwrap(), names(&["a"]), "b renewed nothing meanwhile");
    }
}
