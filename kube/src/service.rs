//! Kubernetes Services as both binaries read them: which ones Herald handles, their key, the
//! addresses in their status, and the pool the controller wrote they came from.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;

/// Written by the controller: the pool a Service's addresses come from.
pub const ALLOCATED_FROM_POOL: &str = "metallb.io/ip-allocated-from-pool";

/// Whether Herald handles `svc`: type LoadBalancer, and no loadBalancerClass, or exactly
/// `class` when one is configured.
pub fn handled(svc: &Service, class: Option<&str>) -> bool {
    let Some(spec) = &svc.spec else { return false };
    spec.type_.as_deref() == Some("LoadBalancer") && spec.load_balancer_class.as_deref() == class
}

/// A Service's `namespace/name`, the key plans and Events use (as the allocator's `Service::key`).
pub fn key(svc: &Service) -> String {
    format!(
        "{}/{}",
        svc.metadata.namespace.as_deref().unwrap_or(""),
        svc.metadata.name.as_deref().unwrap_or("")
    )
}

/// The pool the controller last wrote into `metallb.io/ip-allocated-from-pool`, if any.
pub fn allocated_from(svc: &Service) -> Option<&str> {
    svc.metadata.annotations.as_ref()?.get(ALLOCATED_FROM_POOL).map(String::as_str)
}

/// The addresses in a Service's status (what it was given before).
pub fn current(svc: &Service) -> Vec<IpAddr> {
    let ingress =
        svc.status.as_ref().and_then(|s| s.load_balancer.as_ref()).and_then(|lb| lb.ingress.as_ref());
    ingress.into_iter().flatten().filter_map(|i| i.ip.as_deref()?.parse().ok()).collect()
}

#[cfg(test)]
#[path = "service_tests.rs"]
mod tests;
