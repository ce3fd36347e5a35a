//! The announcing speaker's word in the API: a ServiceL2Status per Service it announces (node,
//! interfaces), a `nodeAssigned` Event when it takes a Service, an `announceFailed` Event when
//! no interface here can carry an address it was given, or the datapath would not take it. A
//! task of its own writes them, so
//! that a slow or absent API server never holds up the datapath; what fails is retried.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use futures_util::{StreamExt as _, stream};
use herald_kube::{
    crd::{InterfaceInfo, MetalLBServiceL2Status, ServiceL2Status},
    events::{self, Events},
};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::{
    Api, Client, ResourceExt as _,
    api::{DeleteParams, ListParams, Patch, PatchParams, Preconditions},
};
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::{conflict::Conflict, frame::format_mac, metrics::Metrics, names::Names};

/// What the run loop tells the Services, beside the reports.
#[derive(Debug)]
pub enum Notice {
    /// Another host claims an address this node announces.
    Conflict(Conflict),
    /// This node should announce `addr` but the datapath did not take it (why); retried.
    NotAnnounced(IpAddr, String),
    /// This node withdrew everything (why), or announces again (`None`): see `quorum`.
    Isolated(Option<String>),
}

/// What this node announces and what it could not, by Service key (`namespace/name`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Services this node announces, with the interfaces it answers on.
    pub announced: BTreeMap<String, Names>,
    /// Services with an address given to this node that no interface here can carry, and why.
    pub failed: BTreeMap<String, String>,
    /// The Service of each address this node announces.
    pub services: BTreeMap<IpAddr, String>,
}

/// Labels every ServiceL2Status carries, as MetalLB's do.
const NODE_LABEL: &str = "metallb.io/node";
const SERVICE_NAME_LABEL: &str = "metallb.io/service-name";
const SERVICE_NAMESPACE_LABEL: &str = "metallb.io/service-namespace";
/// How soon failed writes are tried again.
const RETRY: Duration = Duration::from_secs(2);
/// Writes in flight at once.
const PARALLEL: usize = 16;
/// At most one AddressConflict Event per Service this often (each episode is told once anyway).
const CONFLICT_EVENT_EVERY: Duration = Duration::from_secs(60);

/// The ServiceL2Status object of Service `key`. Service and namespace names are DNS labels
/// (no dots), so the dot keeps names of different Services apart.
pub fn object_name(key: &str) -> String {
    format!("l2-{}", key.replacen('/', ".", 1))
}

pub struct Writer {
    api: Api<ServiceL2Status>,
    events: Events,
    node: String,
    metrics: Arc<Metrics>,
    /// ServiceL2Statuses as last written by this node (Service key to interfaces).
    written: BTreeMap<String, Names>,
    /// announceFailed Events sent, so each reason is told once.
    told: BTreeMap<String, String>,
    /// When each Service was last told of a conflict.
    conflicts_told: BTreeMap<String, Instant>,
}

impl Writer {
    pub fn new(client: Client, namespace: &str, node: &str, metrics: Arc<Metrics>) -> Self {
        Self {
            api: Api::namespaced(client.clone(), namespace),
            events: Events::new(client, "herald-speaker", node),
            node: node.to_owned(),
            metrics,
            written: BTreeMap::new(),
            told: BTreeMap::new(),
            conflicts_told: BTreeMap::new(),
        }
    }

    /// Writes every report as it comes, until the sender is dropped, and tells each Service of
    /// the `notices` on its addresses. Starts from the statuses this node left behind (a
    /// restart), so that stale ones are removed.
    pub async fn run(
        mut self,
        mut reports: watch::Receiver<Arc<Report>>,
        mut notices: mpsc::Receiver<Notice>,
    ) {
        while let Err(e) = self.adopt().await {
            debug!(error = %e, "listing this node's ServiceL2Statuses; retrying");
            tokio::time::sleep(RETRY).await;
        }
        loop {
            let report = reports.borrow_and_update().clone();
            let settled = self.write(&report).await;
            let wait = if settled { Duration::MAX } else { RETRY };
            tokio::select! {
                changed = reports.changed() => if changed.is_err() { return },
                Some(notice) = notices.recv() => {
                    let report = reports.borrow().clone();
                    self.tell(&report, notice).await;
                }
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn adopt(&mut self) -> kube::Result<()> {
        let mine = ListParams::default().labels(&format!("{NODE_LABEL}={}", self.node));
        for s in self.api.list(&mine).await? {
            let Some(status) = s.status else { continue };
            let key = format!("{}/{}", status.service_namespace, status.service_name);
            self.written.insert(key, status.interfaces.into_iter().map(|i| i.name).collect());
        }
        Ok(())
    }

    /// Brings the API in line with `report`; `true` when everything was written. Writes go
    /// [`PARALLEL`] at a time: a node taking over thousands of Services is not held up by
    /// round trips.
    async fn write(&mut self, report: &Report) -> bool {
        let mut ok = true;
        // Owned, so that the futures borrow only `this` (and stay Send for the spawned task).
        let changed: Vec<(String, Names)> = report
            .announced
            .iter()
            .filter(|(key, ifs)| self.written.get(*key) != Some(*ifs))
            .map(|(key, ifs)| (key.clone(), ifs.clone()))
            .collect();
        let this = &*self;
        let results: Vec<_> = stream::iter(changed)
            .map(|(key, interfaces)| async move {
                let result = this.put(&key, &interfaces).await;
                (key, interfaces, result)
            })
            .buffer_unordered(PARALLEL)
            .collect()
            .await;
        let mut taken = Vec::new();
        for (key, interfaces, result) in results {
            match result {
                Ok(()) => {
                    debug!(service = key, ?interfaces, "ServiceL2Status written");
                    if self.written.insert(key.clone(), interfaces).is_none() {
                        taken.push(key);
                    }
                }
                Err(e) => {
                    warn!(service = key, error = %e, "ServiceL2Status not written");
                    self.metrics.kube_write_errors.inc();
                    ok = false;
                }
            }
        }
        // Events are news, not state: one that is lost is not sent again.
        let note = format!("announcing from node {:?} with protocol \"layer2\"", self.node);
        let this = &*self;
        stream::iter(taken)
            .for_each_concurrent(PARALLEL, |key: String| {
                let note = note.clone();
                async move {
                    this.tell_service(&key, events::Type::Normal, "nodeAssigned", note).await;
                }
            })
            .await;

        let gone: Vec<String> =
            self.written.keys().filter(|k| !report.announced.contains_key(*k)).cloned().collect();
        let this = &*self;
        let results: Vec<_> = stream::iter(gone)
            .map(|key| async move {
                let result = this.remove(&key).await;
                (key, result)
            })
            .buffer_unordered(PARALLEL)
            .collect()
            .await;
        for (key, result) in results {
            match result {
                Ok(()) => drop(self.written.remove(&key)),
                Err(e) => {
                    warn!(service = key, error = %e, "ServiceL2Status not removed");
                    self.metrics.kube_write_errors.inc();
                    ok = false;
                }
            }
        }

        self.told.retain(|key, _| report.failed.contains_key(key));
        let untold: Vec<(&String, &String)> =
            report.failed.iter().filter(|(key, reason)| self.told.get(*key) != Some(*reason)).collect();
        for (key, reason) in untold {
            if self.tell_service(key, events::Type::Warning, "announceFailed", reason.clone()).await {
                self.told.insert(key.clone(), reason.clone());
            }
        }
        ok && report.failed.keys().all(|k| self.told.contains_key(k))
    }

    /// Creates or updates the ServiceL2Status of `key`, naming this node.
    async fn put(&self, key: &str, interfaces: &Names) -> kube::Result<()> {
        let (namespace, name) = key.split_once('/').unwrap_or(("", key));
        let object = object_name(key);
        let params = PatchParams::apply("herald-speaker").force();
        let body = json!({
            "apiVersion": "metallb.io/v1beta1",
            "kind": "ServiceL2Status",
            "metadata": { "name": object, "labels": {
                NODE_LABEL: self.node, SERVICE_NAME_LABEL: name, SERVICE_NAMESPACE_LABEL: namespace,
            }},
            "spec": {},
        });
        self.api.patch(&object, &params, &Patch::Apply(&body)).await?;
        let status = MetalLBServiceL2Status {
            node: self.node.clone(),
            service_name: name.to_owned(),
            service_namespace: namespace.to_owned(),
            interfaces: interfaces.iter().map(|n| InterfaceInfo { name: n.clone() }).collect(),
        };
        let patch = Patch::Merge(json!({ "status": status }));
        self.api.patch_status(&object, &PatchParams::default(), &patch).await?;
        Ok(())
    }

    /// Deletes the ServiceL2Status of `key` if it still names this node (another node that took
    /// the Service over may have rewritten it already).
    async fn remove(&self, key: &str) -> kube::Result<()> {
        let object = object_name(key);
        let Some(current) = self.api.get_opt(&object).await? else { return Ok(()) };
        if current.status.as_ref().is_none_or(|s| s.node != self.node) {
            return Ok(());
        }
        let params = DeleteParams {
            preconditions: Some(Preconditions { resource_version: current.resource_version(), uid: None }),
            ..Default::default()
        };
        match self.api.delete(&object, &params).await {
            Ok(_) => {
                info!(service = key, "ServiceL2Status removed");
                Ok(())
            }
            // Gone, or changed by the new owner since: either way not this node's to remove.
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// An AddressConflict Event on Service `key`, unless one was sent in the last minute.
    async fn tell_conflict(&mut self, key: &str, conflict: &Conflict) {
        if self.conflicts_told.get(key).is_some_and(|at| at.elapsed() < CONFLICT_EVENT_EVERY) {
            return;
        }
        let vlan = if conflict.vlan == 0 { String::new() } else { format!(" on VLAN {}", conflict.vlan) };
        let note = format!(
            "{} is also claimed by {}{vlan}, seen from node {:?}: another host answers for it \
             (a MetalLB speaker still running? the address configured on a host?)",
            conflict.addr,
            format_mac(conflict.mac),
            self.node
        );
        if self.tell_service(key, events::Type::Warning, "AddressConflict", note).await {
            self.conflicts_told.insert(key.to_owned(), Instant::now());
        }
    }

    /// Tells `notice` to the Service of its address (as `report` has it) or to this Node.
    async fn tell(&mut self, report: &Report, notice: Notice) {
        let service = |addr: &IpAddr| report.services.get(addr).cloned();
        match notice {
            Notice::Conflict(conflict) => {
                if let Some(service) = service(&conflict.addr) {
                    self.tell_conflict(&service, &conflict).await;
                }
            }
            Notice::NotAnnounced(addr, why) => {
                if let Some(service) = service(&addr) {
                    let note = format!(
                        "{addr} not announced from node {}: {why}; trying again every second",
                        self.node
                    );
                    self.tell_service(&service, events::Type::Warning, "announceFailed", note).await;
                }
            }
            Notice::Isolated(why) => self.tell_node(why).await,
        }
    }

    /// An Event on this node's Node: it withdrew everything and why (`Isolated`), or it
    /// announces again (`Rejoined`).
    async fn tell_node(&self, why: Option<String>) {
        let regarding = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(self.node.clone()),
            ..Default::default()
        };
        let (type_, reason, note) = match why {
            Some(why) => (
                events::Type::Warning,
                "Isolated",
                format!("herald-speaker withdrew every address: it {why}"),
            ),
            None => {
                (events::Type::Normal, "Rejoined", "herald-speaker hears the other speakers again".to_owned())
            }
        };
        if let Err(e) = self.events.publish(&regarding, type_, reason, "Announce", note).await {
            warn!(error = %e, "Event not written");
            self.metrics.kube_write_errors.inc();
        }
    }

    /// Publishes an Event about Service `key`; `true` when it was written.
    async fn tell_service(&self, key: &str, type_: events::Type, reason: &str, note: String) -> bool {
        let (namespace, name) = key.split_once('/').unwrap_or(("", key));
        let regarding = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Service".into()),
            namespace: Some(namespace.into()),
            name: Some(name.into()),
            ..Default::default()
        };
        match self.events.publish(&regarding, type_, reason, "Announce", note).await {
            Ok(()) => true,
            Err(e) => {
                warn!(service = key, error = %e, "Event not written");
                self.metrics.kube_write_errors.inc();
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn object_names_keep_services_apart() {
        assert_eq!(super::object_name("default/web"), "l2-default.web");
        assert_ne!(super::object_name("a-b/c"), super::object_name("a/b-c"));
    }
}
