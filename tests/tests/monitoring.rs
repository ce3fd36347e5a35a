//! deploy/monitoring checked with Debian's Prometheus tools: the PrometheusRule's rules pass
//! `promtool check rules` and the cases in rules-test.yaml (`promtool test rules`), every query
//! of the dashboard is valid PromQL, and the component renders with kustomize beside deploy/.
//! That the queries return series and the conflict alert fires on a real server is shown in the
//! whole-cluster lab (kube_cluster.rs).

use std::{path::Path, process::Command};

use herald_tests::prometheus;

fn promtool(args: &[&str], dir: &Path) -> String {
    let out = Command::new("promtool").args(args).current_dir(dir).output().expect("promtool");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

#[test]
fn alert_rules_pass_promtool_and_their_cases() {
    if !prometheus::available_or_skip("alert_rules_pass_promtool_and_their_cases") {
        return;
    }
    let dir = tempdir("rules");
    std::fs::write(dir.join("rules.yaml"), prometheus::rules().unwrap()).unwrap();
    std::fs::copy(prometheus::dir().join("rules-test.yaml"), dir.join("rules-test.yaml")).unwrap();
    let checked = promtool(&["check", "rules", "rules.yaml"], &dir);
    assert!(checked.contains("SUCCESS: 13 rules found"), "{checked}");
    promtool(&["test", "rules", "rules-test.yaml"], &dir);

    // The cases can fail: with an alert's threshold changed, they do.
    let broken = prometheus::rules().unwrap().replace("< 300", "< 30");
    std::fs::write(dir.join("rules.yaml"), broken).unwrap();
    let out = Command::new("promtool")
        .args(["test", "rules", "rules-test.yaml"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(!out.status.success(), "a conflict alert that clears after 30 s passed the cases");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn every_dashboard_query_is_valid_promql() {
    if !prometheus::available_or_skip("every_dashboard_query_is_valid_promql") {
        return;
    }
    let queries = prometheus::dashboard_queries().unwrap();
    assert!(queries.len() >= 15, "{queries:?}");
    // promtool checks expressions in rule files: one recording rule per query.
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, (_, expr)) in queries.iter().enumerate() {
        assert!(!expr.contains('$'), "{expr}: the lab queries it as written, so no Grafana variables");
        rules += &format!(
            "      - record: dashboard:query{i}\n        expr: {}\n",
            serde_json::to_string(expr).unwrap()
        );
    }
    let dir = tempdir("dashboard");
    std::fs::write(dir.join("dashboard.yaml"), rules).unwrap();
    promtool(&["check", "rules", "dashboard.yaml"], &dir);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn the_component_renders_beside_deploy() {
    if !prometheus::available_or_skip("the_component_renders_beside_deploy") {
        return;
    }
    // A user's overlay beside deploy/: kustomize takes relative paths only.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/kustomize-monitoring");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("kustomization.yaml"),
        "resources: [../../deploy]\ncomponents: [../../deploy/monitoring]\n",
    )
    .unwrap();
    let out = Command::new("kubectl").args(["kustomize"]).arg(&dir).output().expect("kubectl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let objects: Vec<serde_yaml_ng::Value> = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    let find = |kind: &str, name: &str| {
        objects
            .iter()
            .find(|o| o["kind"].as_str() == Some(kind) && o["metadata"]["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("no {kind}/{name} in:\n{text}"))
    };
    assert!(objects.len() > 10, "deploy/ is there too:\n{text}");
    find("DaemonSet", "herald-speaker");
    let monitor = find("PodMonitor", "herald");
    assert_eq!(monitor["spec"]["podMetricsEndpoints"][0]["port"].as_str(), Some("metrics"));
    let rule = find("PrometheusRule", "herald");
    let rules: serde_yaml_ng::Value = serde_yaml_ng::from_str(&prometheus::rules().unwrap()).unwrap();
    assert_eq!(rule["spec"], rules, "the rules promtool tests are the ones deployed");
    let dashboard = find("ConfigMap", "herald-dashboard");
    assert_eq!(dashboard["metadata"]["namespace"].as_str(), Some("herald-system"));
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"].as_str(), Some("1"));
    let json = std::fs::read_to_string(prometheus::dir().join("herald.json")).unwrap();
    assert_eq!(dashboard["data"]["herald.json"].as_str(), Some(json.as_str()));
    // Both workloads expose the port the PodMonitor scrapes, and carry its selector's label.
    for kind in ["DaemonSet", "Deployment"] {
        let workload = objects.iter().find(|o| o["kind"].as_str() == Some(kind)).unwrap();
        let pod = &workload["spec"]["template"];
        assert_eq!(pod["metadata"]["labels"]["app.kubernetes.io/part-of"].as_str(), Some("herald"), "{kind}");
        let ports = pod["spec"]["containers"][0]["ports"].as_sequence().unwrap();
        assert!(ports.iter().any(|p| p["name"].as_str() == Some("metrics")), "{kind}: {ports:?}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

fn tempdir(what: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("herald-monitoring-{what}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
