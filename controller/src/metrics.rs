//! The controller's metrics, served by [`herald_kube::telemetry::serve`].

use std::{
    borrow::Borrow,
    collections::BTreeSet,
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use herald_kube::{service, telemetry::Scrape};
use k8s_openapi::api::core::v1::Service;
use kube::ResourceExt as _;
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

use crate::plan::Plan;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    pub pool: String,
    pub family: String,
}

/// An address a Service holds, and where it came from.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct AddressLabels {
    pub ip: String,
    pub namespace: String,
    pub service: String,
    pub pool: String,
}

/// The controller's metrics.
pub struct Metrics {
    registry: Registry,
    /// 1 per address a Service holds from a pool: what some speaker should answer for.
    pub service_addresses: Family<AddressLabels, Gauge>,
    shown: Mutex<BTreeSet<AddressLabels>>,
    pub addresses_in_use: Family<PoolLabels, Gauge>,
    pub addresses_total: Family<PoolLabels, Gauge>,
    pub allocation_failures: Counter,
    pub reconcile_errors: Counter,
    pub reconcile_seconds: Histogram,
    pub leader: Gauge,
    /// The caches are filled: /readyz answers 200.
    pub ready: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("herald_controller");
        let m = Self {
            service_addresses: Family::default(),
            shown: Mutex::default(),
            addresses_in_use: Family::default(),
            addresses_total: Family::default(),
            allocation_failures: Counter::default(),
            reconcile_errors: Counter::default(),
            reconcile_seconds: Histogram::new([0.001, 0.005, 0.02, 0.1, 0.5, 2.0]),
            leader: Gauge::default(),
            ready: AtomicBool::new(false),
            registry: Registry::default(),
        };
        registry.register(
            "addresses_in_use",
            "Addresses given out, per pool and family",
            m.addresses_in_use.clone(),
        );
        registry.register("addresses", "Usable addresses, per pool and family", m.addresses_total.clone());
        registry.register(
            "allocation_failures",
            "Services that could not be given an address",
            m.allocation_failures.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Writes to the API server that failed",
            m.reconcile_errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time of one pass, plan and writes",
            m.reconcile_seconds.clone(),
        );
        registry.register(
            "service_address",
            "1 per address a Service holds from a pool (every replica reads it from its cache)",
            m.service_addresses.clone(),
        );
        registry.register("leader", "1 while this replica holds the Lease", m.leader.clone());
        Self { registry, ..m }
    }
}

impl Metrics {
    /// Records what a pass decided.
    pub fn observe(&self, plan: &Plan) {
        for (pool, status) in &plan.pool_status {
            for (family, used, available) in [
                ("ipv4", status.assigned_ipv4, status.available_ipv4),
                ("ipv6", status.assigned_ipv6, status.available_ipv6),
            ] {
                let labels = PoolLabels { pool: pool.clone(), family: family.into() };
                self.addresses_in_use.get_or_create(&labels).set(used);
                self.addresses_total.get_or_create(&labels).set(used.saturating_add(available));
            }
        }
        let failures =
            plan.events.iter().filter(|e| e.reason == crate::plan::Reason::AllocationFailed).count();
        self.allocation_failures.inc_by(failures as u64);
    }

    /// Shows the addresses `services` hold from pools (handled ones, with the pool the
    /// controller wrote), and no longer those they gave up.
    pub fn observe_services<S: Borrow<Service>>(&self, services: &[S], class: Option<&str>) {
        let now: BTreeSet<AddressLabels> = services
            .iter()
            .map(Borrow::borrow)
            .filter(|svc| service::handled(svc, class))
            .filter_map(|svc| Some((svc, service::allocated_from(svc)?)))
            .flat_map(|(svc, pool)| {
                let (namespace, name) = (svc.namespace().unwrap_or_default(), svc.name_any());
                service::current(svc).into_iter().map(move |ip| AddressLabels {
                    ip: ip.to_string(),
                    namespace: namespace.clone(),
                    service: name.clone(),
                    pool: pool.to_owned(),
                })
            })
            .collect();
        let mut shown = self.shown.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for gone in shown.difference(&now) {
            self.service_addresses.remove(gone);
        }
        for labels in &now {
            self.service_addresses.get_or_create(labels).set(1);
        }
        *shown = now;
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String");
        out
    }
}

impl Scrape for Metrics {
    fn render(&self) -> String {
        Metrics::render(self)
    }

    fn ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use herald_kube::crd::IPAddressPoolStatus;

    use super::*;

    #[test]
    fn renders_what_a_pass_decided() {
        let m = Metrics::default();
        let mut plan = Plan::default();
        plan.pool_status.insert(
            "first".into(),
            IPAddressPoolStatus { assigned_ipv4: 2, available_ipv4: 2, ..Default::default() },
        );
        m.observe(&plan);
        let text = m.render();
        assert!(
            text.contains("herald_controller_addresses_in_use{pool=\"first\",family=\"ipv4\"} 2"),
            "{text}"
        );
        assert!(text.contains("herald_controller_addresses{pool=\"first\",family=\"ipv4\"} 4"), "{text}");
        assert!(text.contains("herald_controller_allocation_failures_total 0"), "{text}");
    }

    fn service(name: &str, pool: Option<&str>, class: Option<&str>, ips: &[&str]) -> Service {
        serde_json::from_value(serde_json::json!({
            "metadata": {
                "namespace": "default", "name": name,
                "annotations": pool.map(|p| serde_json::json!({ service::ALLOCATED_FROM_POOL: p })),
            },
            "spec": { "type": "LoadBalancer", "loadBalancerClass": class },
            "status": { "loadBalancer": { "ingress": ips.iter().map(|ip| serde_json::json!({ "ip": ip })).collect::<Vec<_>>() } },
        }))
        .unwrap()
    }

    #[test]
    fn shows_the_addresses_services_hold_and_forgets_those_given_up() {
        let m = Metrics::default();
        let web = service("web", Some("first"), None, &["192.0.2.10", "2001:db8::10"]);
        let foreign = service("other", None, None, &["192.0.2.99"]);
        let classed = service("classed", Some("first"), Some("other.example/lb"), &["192.0.2.98"]);
        m.observe_services(&[web, foreign, classed], None);
        let text = m.render();
        let line = |ip: &str, name: &str| {
            format!(
                "herald_controller_service_address{{ip=\"{ip}\",namespace=\"default\",service=\"{name}\",pool=\"first\"}} 1"
            )
        };
        assert!(text.contains(&line("192.0.2.10", "web")), "{text}");
        assert!(text.contains(&line("2001:db8::10", "web")), "{text}");
        assert_eq!(text.matches("herald_controller_service_address{").count(), 2, "only web's: {text}");

        // web gives up its IPv6 address; another Service takes one.
        let web = service("web", Some("first"), None, &["192.0.2.10"]);
        let db = service("db", Some("first"), None, &["192.0.2.11"]);
        m.observe_services(&[web, db], None);
        let text = m.render();
        assert!(!text.contains("2001:db8::10"), "{text}");
        assert!(text.contains(&line("192.0.2.11", "db")), "{text}");
        assert_eq!(text.matches("herald_controller_service_address{").count(), 2, "{text}");
    }
}
