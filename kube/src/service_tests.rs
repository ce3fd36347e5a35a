use super::*;

/// A Service from YAML, as users write them.
fn svc(yaml: &str) -> Service {
    serde_yaml_ng::from_str(&format!("apiVersion: v1\nkind: Service\n{yaml}")).unwrap()
}

const LB: &str = "metadata:\n  name: web\n  namespace: shop\nspec:\n  type: LoadBalancer\n";

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

#[test]
fn class_rule() {
    assert!(handled(&svc(LB), None));
    let classed = svc(&format!("{LB}  loadBalancerClass: herald\n"));
    assert!(!handled(&classed, None), "a class Herald was not given");
    assert!(handled(&classed, Some("herald")));
    assert!(!handled(&svc(LB), Some("herald")), "with --lb-class, only that class");
    assert!(!handled(&svc("metadata:\n  name: web\nspec:\n  type: ClusterIP\n"), None));
}

#[test]
fn current_addresses_from_status() {
    let with_status = svc(&format!(
        "{LB}status:\n  loadBalancer:\n    ingress:\n    - ip: 192.0.2.10\n    - hostname: lb.example\n    - ip: 2001:db8::10\n"
    ));
    assert_eq!(current(&with_status), ips(&["192.0.2.10", "2001:db8::10"]));
    assert!(current(&svc(LB)).is_empty());
}
