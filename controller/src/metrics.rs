//! The controller's metrics, served by [`herald_kube::telemetry::serve`].

use std::sync::atomic::{AtomicBool, Ordering};

use herald_kube::telemetry::Scrape;
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

/// The controller's metrics.
pub struct Metrics {
    registry: Registry,
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
}
