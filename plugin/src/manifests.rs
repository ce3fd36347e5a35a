//! What `init` applies: deploy/ as kustomization.yaml lists it (embedded at build time), and a
//! pool and an L2Advertisement made from the command line.

use anyhow::{Context as _, ensure};
use herald_kube::{crd::IPAddressPoolSpec, pool::Pool};
use kube::api::DynamicObject;
use serde::Deserialize as _;
use serde_json::json;

/// deploy/'s namespace.
pub const NAMESPACE: &str = "herald-system";
/// The names `init` gives the pool and the advertisement.
pub const NAME: &str = "default";

/// deploy/'s resources, in kustomization.yaml's order (a test holds them to it).
pub const DEPLOY: &[(&str, &str)] = &[
    ("crds/ipaddresspools.yaml", include_str!("../../deploy/crds/ipaddresspools.yaml")),
    ("crds/l2advertisements.yaml", include_str!("../../deploy/crds/l2advertisements.yaml")),
    ("crds/servicel2statuses.yaml", include_str!("../../deploy/crds/servicel2statuses.yaml")),
    ("namespace.yaml", include_str!("../../deploy/namespace.yaml")),
    ("controller-rbac.yaml", include_str!("../../deploy/controller-rbac.yaml")),
    ("controller.yaml", include_str!("../../deploy/controller.yaml")),
    ("speaker-rbac.yaml", include_str!("../../deploy/speaker-rbac.yaml")),
    ("speaker.yaml", include_str!("../../deploy/speaker.yaml")),
];

/// Every object of deploy/.
pub fn deploy() -> anyhow::Result<Vec<DynamicObject>> {
    let mut out = Vec::new();
    for (file, text) in DEPLOY {
        for doc in serde_yaml_ng::Deserializer::from_str(text) {
            let value = serde_yaml_ng::Value::deserialize(doc).with_context(|| format!("deploy/{file}"))?;
            if value.is_null() {
                continue;
            }
            out.push(serde_yaml_ng::from_value(value).with_context(|| format!("deploy/{file}"))?);
        }
    }
    Ok(out)
}

/// The pool of `ranges` (`A-B` or CIDRs), checked as the controller checks pools, so that a
/// typo fails here, before anything is applied.
pub fn pool(ranges: &[String]) -> anyhow::Result<DynamicObject> {
    let spec = IPAddressPoolSpec { addresses: ranges.to_vec(), ..Default::default() };
    Pool::from_spec(NAME, &spec).map_err(|e| anyhow::anyhow!("--range {}: {e}", ranges.join(" ")))?;
    Ok(serde_json::from_value(json!({
        "apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
        "metadata": { "name": NAME, "namespace": NAMESPACE },
        "spec": { "addresses": ranges },
    }))?)
}

/// The L2Advertisement of the pool, on `interfaces` if any are named.
pub fn advertisement(interfaces: &[String]) -> anyhow::Result<DynamicObject> {
    let mut spec = json!({ "ipAddressPools": [NAME] });
    if !interfaces.is_empty() {
        spec["interfaces"] = json!(interfaces);
    }
    Ok(serde_json::from_value(json!({
        "apiVersion": "metallb.io/v1beta1", "kind": "L2Advertisement",
        "metadata": { "name": NAME, "namespace": NAMESPACE },
        "spec": spec,
    }))?)
}

/// Points both workloads at the API server `address` (`HOST:PORT`) rather than the
/// `kubernetes` Service, as clusters without kube-proxy need.
pub fn with_api_server(objects: &mut [DynamicObject], address: &str) -> anyhow::Result<()> {
    let (host, port) = address
        .rsplit_once(':')
        .filter(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
        .with_context(|| format!("--api-server {address:?}: expected HOST:PORT"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let mut patched = 0;
    for o in objects.iter_mut() {
        let kind = o.types.as_ref().map(|t| t.kind.as_str());
        if !matches!(kind, Some("DaemonSet" | "Deployment")) {
            continue;
        }
        let containers =
            o.data["spec"]["template"]["spec"]["containers"].as_array_mut().context("no containers")?;
        for container in containers {
            let env = container["env"].as_array_mut().context("a container without env")?;
            env.retain(|e| {
                !matches!(e["name"].as_str(), Some("KUBERNETES_SERVICE_HOST" | "KUBERNETES_SERVICE_PORT"))
            });
            env.push(json!({ "name": "KUBERNETES_SERVICE_HOST", "value": host }));
            env.push(json!({ "name": "KUBERNETES_SERVICE_PORT", "value": port }));
        }
        patched += 1;
    }
    ensure!(patched == 2, "deploy/ has {patched} workloads, expected the DaemonSet and the Deployment");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeds_what_kustomization_yaml_lists() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/kustomization.yaml");
        let kustomization: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let listed: Vec<&str> =
            kustomization["resources"].as_sequence().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
        let embedded: Vec<&str> = DEPLOY.iter().map(|(file, _)| *file).collect();
        assert_eq!(embedded, listed);
        let kinds: Vec<String> = deploy().unwrap().iter().map(|o| o.types.clone().unwrap().kind).collect();
        for kind in ["CustomResourceDefinition", "Namespace", "DaemonSet", "Deployment"] {
            assert!(kinds.iter().any(|k| k == kind), "{kind} in {kinds:?}");
        }
    }

    #[test]
    fn a_bad_range_fails_before_anything_is_applied() {
        assert!(pool(&["192.0.2.240-192.0.2.250".into()]).is_ok());
        assert!(pool(&["192.0.2.240/28".into(), "2001:db8::/124".into()]).is_ok());
        let e = pool(&["192.0.2.250-192.0.2.240".into()]).unwrap_err().to_string();
        assert!(e.contains("--range 192.0.2.250-192.0.2.240"), "{e}");
        assert!(pool(&["not-an-address".into()]).is_err());
    }

    #[test]
    fn the_api_server_goes_into_both_workloads() {
        let mut objects = deploy().unwrap();
        with_api_server(&mut objects, "192.0.2.1:6443").unwrap();
        let workloads: Vec<&DynamicObject> = objects
            .iter()
            .filter(|o| matches!(o.types.as_ref().unwrap().kind.as_str(), "DaemonSet" | "Deployment"))
            .collect();
        assert_eq!(workloads.len(), 2);
        for w in workloads {
            let env = &w.data["spec"]["template"]["spec"]["containers"][0]["env"];
            assert!(
                env.as_array()
                    .unwrap()
                    .contains(&json!({ "name": "KUBERNETES_SERVICE_HOST", "value": "192.0.2.1" })),
                "{env}"
            );
        }
        assert!(with_api_server(&mut deploy().unwrap(), "192.0.2.1").is_err());
    }
}
