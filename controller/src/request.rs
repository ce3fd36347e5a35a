//! What a Service asks the allocator for, through MetalLB's annotations (the current
//! `metallb.io/` names and the deprecated `metallb.universe.tf/` ones) and its spec.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service as KubeService;

use herald_kube::selector::Labels;

use crate::allocator::{Families, Family, FamilyPolicy, Port, Request};

const LOADBALANCER_IPS: [&str; 2] = ["metallb.io/loadBalancerIPs", "metallb.universe.tf/loadBalancerIPs"];
const ADDRESS_POOL: [&str; 2] = ["metallb.io/address-pool", "metallb.universe.tf/address-pool"];
const ALLOW_SHARED_IP: [&str; 2] = ["metallb.io/allow-shared-ip", "metallb.universe.tf/allow-shared-ip"];

/// A Service's request, or what is wrong with its annotations (for an AllocationFailed Event).
pub fn from_kube(svc: &KubeService, namespace_labels: &Labels) -> Result<Request, String> {
    let meta = &svc.metadata;
    let spec = svc.spec.clone().unwrap_or_default();
    let annotations = meta.annotations.clone().unwrap_or_default();
    let annotation =
        |names: [&str; 2]| names.iter().find_map(|n| annotations.get(*n)).map(|v| v.trim().to_owned());

    let mut requested = Vec::new();
    if let Some(list) = annotation(LOADBALANCER_IPS) {
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            requested.push(
                item.parse::<IpAddr>()
                    .map_err(|_| format!("{}: {item:?} is not an IP address", LOADBALANCER_IPS[0]))?,
            );
        }
        if requested.len() > 2 || (requested.len() == 2 && requested[0].is_ipv4() == requested[1].is_ipv4()) {
            return Err(format!("{}: at most one address per IP family", LOADBALANCER_IPS[0]));
        }
    }
    if let Some(ip) = spec.load_balancer_ip.as_deref().filter(|s| !s.is_empty()) {
        if !requested.is_empty() {
            return Err(format!("give {} or spec.loadBalancerIP, not both", LOADBALANCER_IPS[0]));
        }
        requested.push(ip.parse().map_err(|_| format!("spec.loadBalancerIP: {ip:?} is not an IP address"))?);
    }

    let order: Vec<Family> = match spec.ip_families.as_deref() {
        Some(list) if !list.is_empty() => {
            list.iter().map(|f| if f == "IPv6" { Family::V6 } else { Family::V4 }).collect()
        }
        _ => vec![Family::V4],
    };
    let policy = match spec.ip_family_policy.as_deref() {
        Some("PreferDualStack") => FamilyPolicy::PreferDualStack,
        Some("RequireDualStack") => FamilyPolicy::RequireDualStack,
        _ => FamilyPolicy::SingleStack,
    };
    let ports = spec
        .ports
        .iter()
        .flatten()
        .map(|p| Port { protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()), port: p.port as u16 })
        .collect();
    let local = matches!(spec.external_traffic_policy.as_deref(), Some("Local"));
    Ok(Request {
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
        labels: meta.labels.clone().unwrap_or_default(),
        namespace_labels: namespace_labels.clone(),
        requested,
        pool: annotation(ADDRESS_POOL).filter(|p| !p.is_empty()),
        allocated_from: herald_kube::service::allocated_from(svc).map(str::to_owned),
        sharing_key: annotation(ALLOW_SHARED_IP).filter(|k| !k.is_empty()),
        families: Families { order, policy },
        ports,
        local_traffic: local.then(|| spec.selector.clone().unwrap_or_default()),
    })
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
