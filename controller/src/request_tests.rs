use super::*;

/// A Service from YAML, as users write them.
fn svc(yaml: &str) -> KubeService {
    serde_yaml_ng::from_str(&format!("apiVersion: v1\nkind: Service\n{yaml}")).unwrap()
}

const LB: &str = "metadata:\n  name: web\n  namespace: shop\nspec:\n  type: LoadBalancer\n";

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

#[test]
fn plain_service() {
    let s = from_kube(
        &svc(&format!("{LB}  ports:\n  - port: 80\n  - port: 53\n    protocol: UDP\n")),
        &Labels::new(),
    )
    .unwrap();
    assert_eq!(s.key(), "shop/web");
    assert!(
        s.requested.is_empty() && s.pool.is_none() && s.sharing_key.is_none() && s.local_traffic.is_none()
    );
    assert_eq!(s.families, Families::default());
    assert_eq!(
        s.ports,
        [Port { protocol: "TCP".into(), port: 80 }, Port { protocol: "UDP".into(), port: 53 }]
    );
}

#[test]
fn annotations_current_and_deprecated() {
    for prefix in ["metallb.io", "metallb.universe.tf"] {
        let yaml = format!(
            "metadata:\n  name: web\n  namespace: shop\n  annotations:\n    {prefix}/loadBalancerIPs: \"192.0.2.10, 2001:db8::10\"\n\
             \x20   {prefix}/address-pool: first\n    {prefix}/allow-shared-ip: team\nspec:\n  type: LoadBalancer\n"
        );
        let s = from_kube(&svc(&yaml), &Labels::new()).unwrap();
        assert_eq!(s.requested, ips(&["192.0.2.10", "2001:db8::10"]), "{prefix}");
        assert_eq!((s.pool.as_deref(), s.sharing_key.as_deref()), (Some("first"), Some("team")), "{prefix}");
    }
}

#[test]
fn load_balancer_ip_field() {
    let s = from_kube(&svc(&format!("{LB}  loadBalancerIP: 192.0.2.7\n")), &Labels::new()).unwrap();
    assert_eq!(s.requested, ips(&["192.0.2.7"]));
}

#[test]
fn bad_requests_are_named() {
    let with = |annotation: &str| {
        svc(&format!(
            "metadata:\n  name: web\n  annotations:\n    metallb.io/loadBalancerIPs: \"{annotation}\"\nspec:\n  type: LoadBalancer\n"
        ))
    };
    assert_eq!(
        from_kube(&with("192.0.2.300"), &Labels::new()).unwrap_err(),
        "metallb.io/loadBalancerIPs: \"192.0.2.300\" is not an IP address"
    );
    assert_eq!(
        from_kube(&with("192.0.2.1,192.0.2.2"), &Labels::new()).unwrap_err(),
        "metallb.io/loadBalancerIPs: at most one address per IP family"
    );
    let both = svc(
        "metadata:\n  name: web\n  annotations:\n    metallb.io/loadBalancerIPs: 192.0.2.1\nspec:\n  type: LoadBalancer\n  loadBalancerIP: 192.0.2.2\n",
    );
    assert_eq!(
        from_kube(&both, &Labels::new()).unwrap_err(),
        "give metallb.io/loadBalancerIPs or spec.loadBalancerIP, not both"
    );
    assert_eq!(
        from_kube(&svc(&format!("{LB}  loadBalancerIP: nope\n")), &Labels::new()).unwrap_err(),
        "spec.loadBalancerIP: \"nope\" is not an IP address"
    );
}

#[test]
fn families_traffic_and_labels() {
    let yaml = format!(
        "{LB}  ipFamilies: [IPv6, IPv4]\n  ipFamilyPolicy: RequireDualStack\n  externalTrafficPolicy: Local\n  selector:\n    app: web\n"
    );
    let ns = Labels::from([("team".to_string(), "shop".to_string())]);
    let s = from_kube(&svc(&yaml), &ns).unwrap();
    assert_eq!(
        s.families,
        Families { order: vec![Family::V6, Family::V4], policy: FamilyPolicy::RequireDualStack }
    );
    assert_eq!(s.local_traffic, Some(Labels::from([("app".to_string(), "web".to_string())])));
    assert_eq!(s.namespace_labels, ns);
}
