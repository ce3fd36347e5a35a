//! Stripping keeps every answer the decisions get: the same snapshot, endpoints and addresses
//! from whole objects as from stripped ones, at less than half the size (as the objects are
//! served: what their controllers write).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;

use super::*;
use crate::kubernetes::watches::{endpoints_nodes, internal_ip, slice_nodes, snapshot_of};

fn service(name: &str, local: bool, class: Option<&str>) -> Service {
    serde_json::from_value(json!({
        "metadata": {
            "name": name, "namespace": "shop", "uid": "u-1", "resourceVersion": "7",
            "labels": { "app": name, "tier": "front" },
            "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": "x".repeat(2000),
                "metallb.io/loadBalancerIPs": "192.0.2.10",
            },
            "finalizers": ["service.kubernetes.io/load-balancer-cleanup"],
            "managedFields": [{ "manager": "kubectl", "operation": "Apply" }],
        },
        "spec": {
            "type": "LoadBalancer",
            "loadBalancerClass": class,
            "externalTrafficPolicy": if local { "Local" } else { "Cluster" },
            "selector": { "app": name },
            "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
            "ports": [{ "name": "http", "port": 80, "targetPort": 8080, "nodePort": 31000, "protocol": "TCP" }],
            "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
            "sessionAffinity": "None", "internalTrafficPolicy": "Cluster",
        },
        "status": { "loadBalancer": { "ingress": [
            { "ip": "192.0.2.10", "ipMode": "VIP", "ports": [{ "port": 80, "protocol": "TCP" }] },
            { "ip": "2001:db8::10" },
        ] } },
    }))
    .unwrap()
}

fn slice(service: &str) -> EndpointSlice {
    serde_json::from_value(json!({
        "metadata": {
            "name": format!("{service}-x1"), "namespace": "shop",
            "labels": { SERVICE_NAME_LABEL: service, "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io" },
            "ownerReferences": [{ "apiVersion": "v1", "kind": "Service", "name": service, "uid": "u-1" }],
        },
        "addressType": "IPv4",
        "ports": [{ "name": "http", "port": 8080, "protocol": "TCP" }],
        "endpoints": [
            { "addresses": ["198.51.100.1"], "nodeName": "node-a", "zone": "z1",
              "conditions": { "ready": true, "serving": true, "terminating": false },
              "targetRef": { "kind": "Pod", "name": "web-7d9f8-x1", "namespace": "shop", "uid": "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0" } },
            { "addresses": ["198.51.100.2"], "nodeName": "node-b", "zone": "z1",
              "conditions": { "ready": false, "serving": true, "terminating": true },
              "targetRef": { "kind": "Pod", "name": "web-7d9f8-x2", "namespace": "shop", "uid": "1b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0" } },
            { "addresses": ["198.51.100.3"], "nodeName": "node-c", "zone": "z2",
              "conditions": { "ready": false, "serving": false, "terminating": false },
              "targetRef": { "kind": "Pod", "name": "web-7d9f8-x3", "namespace": "shop", "uid": "2b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0" } },
        ],
    }))
    .unwrap()
}

fn node(name: &str, ip: &str, network: &str) -> Node {
    let images: Vec<_> = (0..40)
        .map(|i| json!({ "names": [format!("registry.example/image-{i}@sha256:{}", "0".repeat(64))], "sizeBytes": 1 }))
        .collect();
    serde_json::from_value(json!({
        "metadata": {
            "name": name, "labels": { "kubernetes.io/hostname": name, "zone": "z1" },
            "annotations": { "node.alpha.kubernetes.io/ttl": "0" },
        },
        "spec": { "podCIDR": "10.244.0.0/24", "taints": [{ "key": "k", "effect": "NoSchedule" }] },
        "status": {
            "addresses": [{ "type": "InternalIP", "address": ip }, { "type": "Hostname", "address": name }],
            "conditions": [
                { "type": "Ready", "status": "True", "reason": "KubeletReady", "message": "ready" },
                { "type": "NetworkUnavailable", "status": network, "reason": "RouteCreated" },
            ],
            "images": images,
            "nodeInfo": { "kubeletVersion": "v1.33.0", "machineID": "m", "systemUUID": "s", "bootID": "b",
                          "kernelVersion": "6.1", "osImage": "Debian", "containerRuntimeVersion": "containerd://1.6",
                          "kubeProxyVersion": "v1.33.0", "operatingSystem": "linux", "architecture": "amd64" },
        },
    }))
    .unwrap()
}

fn stripped<T>(mut obj: T, strip: fn(&mut T)) -> T {
    strip(&mut obj);
    obj
}

fn size<T: serde::Serialize>(obj: &T) -> usize {
    serde_json::to_vec(obj).unwrap().len()
}

fn ready(slices: &[EndpointSlice]) -> BTreeMap<String, BTreeSet<String>> {
    slices.iter().filter_map(slice_nodes).collect()
}

#[test]
fn the_decisions_see_the_same_cluster() {
    let services =
        vec![service("web", false, None), service("db", true, None), service("other", false, Some("x"))];
    let slices = vec![slice("web"), slice("db")];
    let nodes = vec![node("node-a", "192.0.2.1", "False"), node("node-b", "192.0.2.2", "True")];
    let small_services: Vec<_> = services.iter().cloned().map(|s| stripped(s, super::service)).collect();
    let small_slices: Vec<_> = slices.iter().cloned().map(|s| stripped(s, endpoint_slice)).collect();
    let small_nodes: Vec<_> = nodes.iter().cloned().map(|n| stripped(n, super::node)).collect();

    assert_eq!(ready(&small_slices), ready(&slices));
    for class in [None, Some("x")] {
        let whole = snapshot_of(
            &services,
            &ready(&slices),
            &nodes,
            &[] as &[herald_kube::crd::IPAddressPool],
            &[] as &[herald_kube::crd::L2Advertisement],
            class,
        );
        let small = snapshot_of(
            &small_services,
            &ready(&small_slices),
            &small_nodes,
            &[] as &[herald_kube::crd::IPAddressPool],
            &[] as &[herald_kube::crd::L2Advertisement],
            class,
        );
        assert_eq!(format!("{small:?}"), format!("{whole:?}"));
    }
    for (whole, small) in nodes.iter().zip(&small_nodes) {
        assert_eq!(internal_ip(small), internal_ip(whole));
    }
    assert_eq!(small_services[0].metadata.name.as_deref(), Some("web"));
}

#[test]
fn core_endpoints_keep_their_ready_nodes() {
    let ep: Endpoints = serde_json::from_value(json!({
        "metadata": { "name": "web", "namespace": "shop", "annotations": { "a": "b" } },
        "subsets": [{
            "addresses": [{ "ip": "198.51.100.1", "nodeName": "node-a",
                            "targetRef": { "kind": "Pod", "name": "web-1" } }, { "ip": "198.51.100.9" }],
            "notReadyAddresses": [{ "ip": "198.51.100.2", "nodeName": "node-b" }],
            "ports": [{ "port": 8080 }],
        }],
    }))
    .unwrap();
    assert_eq!(endpoints_nodes(&stripped(ep.clone(), endpoints)), endpoints_nodes(&ep));
}

#[test]
fn what_is_kept_is_a_fraction() {
    let cases = [
        (
            "Service",
            size(&service("web", false, None)),
            size(&stripped(service("web", false, None), super::service)),
        ),
        ("EndpointSlice", size(&slice("web")), size(&stripped(slice("web"), endpoint_slice))),
        (
            "Node",
            size(&node("a", "192.0.2.1", "False")),
            size(&stripped(node("a", "192.0.2.1", "False"), super::node)),
        ),
    ];
    for (kind, whole, small) in cases {
        assert!(small * 2 < whole, "{kind}: {small} of {whole} bytes kept");
    }
}
