//! Stripping keeps every answer the decisions get from a Node, at a fraction of its size.

use serde_json::json;

use super::*;
use crate::kubernetes::watches::{internal_ip, snapshot_of};

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

fn stripped(mut n: Node) -> Node {
    super::node(&mut n);
    n
}

#[test]
fn the_decisions_see_the_same_nodes() {
    let nodes = vec![node("node-a", "192.0.2.1", "False"), node("node-b", "192.0.2.2", "True")];
    let small: Vec<Node> = nodes.iter().cloned().map(stripped).collect();
    let none_s: &[k8s_openapi::api::core::v1::Service] = &[];
    let none_p: &[herald_kube::crd::IPAddressPool] = &[];
    let none_a: &[herald_kube::crd::L2Advertisement] = &[];
    let whole = snapshot_of(none_s, &Default::default(), &nodes, none_p, none_a, None);
    let kept = snapshot_of(none_s, &Default::default(), &small, none_p, none_a, None);
    assert_eq!(format!("{kept:?}"), format!("{whole:?}"));
    for (whole, small) in nodes.iter().zip(&small) {
        assert_eq!(internal_ip(small), internal_ip(whole));
    }
}

#[test]
fn what_is_kept_is_a_fraction() {
    let size = |n: &Node| serde_json::to_vec(n).unwrap().len();
    let whole = node("a", "192.0.2.1", "False");
    let small = stripped(whole.clone());
    assert!(size(&small) * 10 < size(&whole), "{} of {} bytes kept", size(&small), size(&whole));
}
