//! Who may do what, and who did: the grants deploy/'s RBAC gives a ServiceAccount, and the
//! requests it made, from the API server's audit log. A test compares the two, so that RBAC
//! grants what the code calls and nothing more.

use std::collections::BTreeSet;

use anyhow::Context as _;
use serde_json::Value;

/// An API group (`""` for the core group), a resource (`resource/subresource` for one), a verb.
pub type Access = (String, String, String);

/// What the ClusterRole and the Role named `role` in `rbac` (deploy/'s YAML, several documents)
/// grant.
pub fn granted(rbac: &str, role: &str) -> anyhow::Result<BTreeSet<Access>> {
    let mut out = BTreeSet::new();
    for doc in serde_yaml_ng::Deserializer::from_str(rbac) {
        let doc: Value = serde::Deserialize::deserialize(doc).context("RBAC YAML")?;
        let kind = doc["kind"].as_str().unwrap_or_default();
        if !matches!(kind, "ClusterRole" | "Role") || doc["metadata"]["name"] != role {
            continue;
        }
        for rule in doc["rules"].as_array().context("rules")? {
            let list = |key: &str| -> Vec<String> {
                rule[key]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            };
            for group in list("apiGroups") {
                for resource in list("resources") {
                    for verb in list("verbs") {
                        out.insert((group.clone(), resource.clone(), verb));
                    }
                }
            }
        }
    }
    Ok(out)
}

/// What `user` did, from an audit log (JSON lines), and what it was refused (403: not granted,
/// or granted but asked while the server's authorizer was still reading the grants, after a
/// restart). An apply that created its object (201) needed `create` as well as `patch`.
pub fn used(audit: &str, user: &str) -> (BTreeSet<Access>, BTreeSet<Access>) {
    let (mut done, mut refused) = (BTreeSet::new(), BTreeSet::new());
    for event in audit.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()) {
        let object = &event["objectRef"];
        if event["user"]["username"] != user || object.is_null() {
            continue;
        }
        let group = object["apiGroup"].as_str().unwrap_or_default().to_owned();
        let mut resource = object["resource"].as_str().unwrap_or_default().to_owned();
        if let Some(sub) = object["subresource"].as_str() {
            resource = format!("{resource}/{sub}");
        }
        let verb = event["verb"].as_str().unwrap_or_default().to_owned();
        let code = event["responseStatus"]["code"].as_i64().unwrap_or_default();
        if code == 403 {
            refused.insert((group, resource, verb));
            continue;
        }
        if verb == "patch" && code == 201 {
            done.insert((group.clone(), resource.clone(), "create".to_owned()));
        }
        done.insert((group, resource, verb));
    }
    (done, refused)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_and_uses() {
        let rbac = "kind: ClusterRole\nmetadata: {name: s}\nrules:\n- apiGroups: [\"\"]\n  resources: [nodes, services]\n  verbs: [list]\n---\nkind: Role\nmetadata: {name: other}\nrules:\n- apiGroups: [x]\n  resources: [y]\n  verbs: [get]\n";
        let g = granted(rbac, "s").unwrap();
        let a = |g: &str, r: &str, v: &str| (g.to_owned(), r.to_owned(), v.to_owned());
        assert_eq!(g, [a("", "nodes", "list"), a("", "services", "list")].into());
        let audit = [
            r#"{"verb":"list","user":{"username":"u"},"objectRef":{"resource":"nodes"},"responseStatus":{"code":200}}"#,
            r#"{"verb":"patch","user":{"username":"u"},"objectRef":{"resource":"leases","apiGroup":"coordination.k8s.io"},"responseStatus":{"code":201}}"#,
            r#"{"verb":"patch","user":{"username":"u"},"objectRef":{"resource":"s","subresource":"status","apiGroup":"g"},"responseStatus":{"code":200}}"#,
            r#"{"verb":"get","user":{"username":"u"},"objectRef":{"resource":"secrets"},"responseStatus":{"code":403}}"#,
            r#"{"verb":"get","user":{"username":"someone"},"objectRef":{"resource":"pods"},"responseStatus":{"code":200}}"#,
        ]
        .join("\n");
        let (done, refused) = used(&audit, "u");
        let want = [
            a("", "nodes", "list"),
            a("coordination.k8s.io", "leases", "patch"),
            a("coordination.k8s.io", "leases", "create"),
            a("g", "s/status", "patch"),
        ];
        assert_eq!(done, want.into());
        assert_eq!(refused, [a("", "secrets", "get")].into());
    }
}
