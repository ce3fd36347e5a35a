//! Events, as kube's `Recorder` writes them (events.k8s.io/v1, named `<object>.<time in ns>`),
//! without its cache. The recorder keeps every Event for six minutes, to turn repeats into a
//! series, and scans that whole cache on each publish: with thousands of Services, thousands of
//! Events held and a pass over them per Event. Herald's writers tell each thing once (and repeat
//! a conflict at most once a minute), so there is nothing to aggregate.

use k8s_openapi::{
    api::{core::v1::ObjectReference, events::v1::Event},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff::Timestamp,
};
use kube::{Api, Client, api::PostParams};

/// Normal or Warning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Type {
    Normal,
    Warning,
}

/// Publishes Events as one reporting controller and instance.
#[derive(Clone)]
pub struct Events {
    client: Client,
    controller: String,
    instance: String,
}

impl Events {
    pub fn new(client: Client, controller: &str, instance: &str) -> Self {
        Self { client, controller: controller.to_owned(), instance: instance.to_owned() }
    }

    /// Creates an Event about `regarding`, in its namespace; about a cluster-scoped object (a
    /// Node), in kube-system, where events.k8s.io/v1 wants those.
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        type_: Type,
        reason: &str,
        action: &str,
        note: String,
    ) -> Result<(), kube::Error> {
        let namespace = regarding.namespace.clone().unwrap_or_else(|| "kube-system".into());
        let now = Timestamp::now();
        let name = regarding.name.as_deref().unwrap_or(&self.controller);
        let event = Event {
            metadata: ObjectMeta {
                namespace: Some(namespace.clone()),
                name: Some(format!("{name}.{:x}", now.as_nanosecond())),
                ..Default::default()
            },
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            type_: Some(format!("{type_:?}")),
            reason: Some(reason.into()),
            note: Some(note),
            action: Some(action.into()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..Default::default()
        };
        Api::<Event>::namespaced(self.client.clone(), &namespace)
            .create(&PostParams::default(), &event)
            .await?;
        Ok(())
    }
}
