//! deploy/monitoring on Debian's Prometheus: the alert rules taken out of the PrometheusRule, the
//! dashboard's queries, and a real server that scrapes a lab and evaluates the rules.

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context as _, ensure};
use serde_json::Value;

use crate::{
    lab::{Host, Lab},
    poll,
};

/// deploy/monitoring.
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/monitoring")
}

/// Whether promtool and prometheus are installed; under CI=true their absence fails the test.
pub fn available_or_skip(test: &str) -> bool {
    let found = ["promtool", "prometheus"]
        .iter()
        .all(|p| Command::new(p).arg("--version").output().is_ok_and(|o| o.status.success()));
    if found {
        return true;
    }
    assert!(!crate::in_ci(), "{test}: no promtool or prometheus; CI=true forbids skipping");
    eprintln!("SKIPPED {test}: no Prometheus; run `cargo xtask setup --kube`");
    false
}

/// The PrometheusRule's `spec`: a Prometheus rule file, as the Operator hands it to Prometheus.
pub fn rules() -> anyhow::Result<String> {
    let path = dir().join("prometheusrule.yaml");
    let rule: serde_yaml_ng::Value = serde_yaml_ng::from_str(&std::fs::read_to_string(&path)?)
        .with_context(|| format!("parsing {}", path.display()))?;
    ensure!(rule["kind"].as_str() == Some("PrometheusRule"), "{} is no PrometheusRule", path.display());
    Ok(serde_yaml_ng::to_string(&rule["spec"])?)
}

/// Every query of the dashboard: the panel's title and the expression.
pub fn dashboard_queries() -> anyhow::Result<Vec<(String, String)>> {
    let path = dir().join("herald.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)
        .with_context(|| format!("parsing {}", path.display()))?;
    let panels = dashboard["panels"].as_array().context("no panels")?;
    Ok(panels
        .iter()
        .flat_map(|p| {
            let title = p["title"].as_str().unwrap_or_default().to_owned();
            let targets = p["targets"].as_array().cloned().unwrap_or_default();
            targets.into_iter().filter_map(move |t| Some((title.clone(), t["expr"].as_str()?.to_owned())))
        })
        .collect())
}

/// A Prometheus server in a lab host's namespace, scraping every second and evaluating the
/// rules every second; killed with the lab.
pub struct Server {
    host: Host,
}

const LISTEN: &str = "127.0.0.1:9090";

impl Server {
    /// Starts one in `host`'s namespace that scrapes the speakers at `speakers` and the
    /// controller at `controller` (their /metrics), with the jobs the PodMonitor gives them.
    pub fn start(
        lab: &mut Lab,
        host: &Host,
        speakers: &[Ipv4Addr],
        controller: &str,
    ) -> anyhow::Result<Self> {
        let dir = lab.workdir.join("prometheus");
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("rules.yaml"), rules()?)?;
        let targets: Vec<String> = speakers.iter().map(|a| format!("'{a}:7472'")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files: [rules.yaml]\n\
             scrape_configs:\n\
             - job_name: herald-speaker\n  static_configs: [{{targets: [{}]}}]\n\
             - job_name: herald-controller\n  static_configs: [{{targets: ['{controller}']}}]\n",
            targets.join(", ")
        );
        std::fs::write(dir.join("prometheus.yml"), config)?;
        let (config, data) = (dir.join("prometheus.yml"), dir.join("data"));
        let args = [
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", data.display()),
            format!("--web.listen-address={LISTEN}"),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        lab.spawn(host, "prometheus", &args, Some(&dir.join("prometheus.log")))?;
        let server = Self { host: host.clone() };
        let ready = poll::until(Duration::from_secs(20), || {
            server.host.run("curl", &["-sf", &format!("http://{LISTEN}/-/ready")]).is_ok()
        });
        let log = || std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default();
        ensure!(ready.is_some(), "prometheus not ready in 20 s:\n{}", log());
        Ok(server)
    }

    /// The result of an instant query: its series (empty: none).
    pub fn query(&self, expr: &str) -> anyhow::Result<Vec<Value>> {
        let url = format!("http://{LISTEN}/api/v1/query");
        let query = format!("query={expr}");
        let body = self.host.run("curl", &["-sfG", "--data-urlencode", &query, &url])?;
        let answer: Value = serde_json::from_str(&body).with_context(|| format!("{expr}: {body}"))?;
        ensure!(answer["status"] == "success", "{expr}: {body}");
        Ok(answer["data"]["result"].as_array().cloned().unwrap_or_default())
    }

    /// The labels of each firing instance of `alert`.
    pub fn firing(&self, alert: &str) -> anyhow::Result<Vec<Value>> {
        let series = self.query(&format!("ALERTS{{alertname=\"{alert}\",alertstate=\"firing\"}}"))?;
        Ok(series.into_iter().map(|s| s["metric"].clone()).collect())
    }

    /// Whether every target was scraped successfully at the last try.
    pub fn all_up(&self) -> anyhow::Result<bool> {
        Ok(self.query("up == 0")?.is_empty() && !self.query("up")?.is_empty())
    }
}
