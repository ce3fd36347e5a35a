use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::watcher::Event;

use super::*;

/// A ConfigMap whose fact is its "address" (none without one), at `version`.
fn object(name: &str, address: Option<&str>, version: &str) -> ConfigMap {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(name.into());
    cm.metadata.namespace = Some("default".into());
    cm.metadata.resource_version = Some(version.into());
    cm.data = address.map(|a| [("address".to_owned(), a.to_owned())].into());
    cm
}

fn fact(cm: &ConfigMap) -> Option<String> {
    cm.data.as_ref()?.get("address").cloned()
}

fn empty() -> State<String> {
    State { current: BTreeMap::new(), listing: None }
}

#[test]
fn an_update_that_leaves_the_fact_as_it_was_is_no_news() {
    let mut state = empty();
    assert!(state.apply(Event::Apply(object("a", Some("192.0.2.1"), "1")), fact));
    // Another field, another version: the same fact.
    let mut annotated = object("a", Some("192.0.2.1"), "2");
    annotated.metadata.annotations = Some([("note".to_owned(), "x".to_owned())].into());
    assert!(!state.apply(Event::Apply(annotated), fact));
    assert!(state.apply(Event::Apply(object("a", Some("192.0.2.2"), "3")), fact));
    assert_eq!(state.current.get("default/a").map(String::as_str), Some("192.0.2.2"));
}

#[test]
fn an_object_without_a_fact_is_news_only_when_it_had_one() {
    let mut state = empty();
    assert!(!state.apply(Event::Apply(object("a", None, "1")), fact));
    assert!(state.apply(Event::Apply(object("a", Some("192.0.2.1"), "2")), fact));
    assert!(state.apply(Event::Apply(object("a", None, "3")), fact));
    assert!(state.current.is_empty());
}

#[test]
fn a_delete_is_news_only_for_a_kept_object() {
    let mut state = empty();
    assert!(!state.apply(Event::Delete(object("a", Some("192.0.2.1"), "1")), fact));
    state.apply(Event::Apply(object("a", Some("192.0.2.1"), "1")), fact);
    assert!(state.apply(Event::Delete(object("a", Some("192.0.2.1"), "2")), fact));
    assert!(state.current.is_empty());
}

#[test]
fn a_relist_replaces_the_values_whole_once_complete() {
    let mut state = empty();
    state.apply(Event::Apply(object("gone", Some("192.0.2.1"), "1")), fact);
    assert!(!state.apply(Event::Init, fact));
    assert!(!state.apply(Event::InitApply(object("new", Some("192.0.2.2"), "5")), fact));
    // Readers see the old values until the list is complete.
    assert_eq!(state.current.keys().collect::<Vec<_>>(), ["default/gone"]);
    assert!(state.apply(Event::InitDone, fact));
    assert_eq!(state.current.keys().collect::<Vec<_>>(), ["default/new"]);
    // A completion without a list (never sent by kube) changes nothing.
    assert!(!state.apply(Event::<ConfigMap>::InitDone, fact));
}
