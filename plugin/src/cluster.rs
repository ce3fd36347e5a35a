//! The cluster as the speakers see it, read once, and each speaker's metrics through the API
//! server's node proxy.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use anyhow::Context as _;
use herald_speaker::kubernetes::{self, Snapshot};

/// How long reading every object may take.
const READ_WITHIN: Duration = Duration::from_secs(30);
/// The speakers' telemetry port (deploy/speaker.yaml's `metrics`).
pub const METRICS_PORT: u16 = 7472;

pub struct Cluster {
    pub snapshot: Snapshot,
    /// Nodes whose speaker renewed its Lease lately.
    pub live: BTreeSet<String>,
}

impl Cluster {
    pub async fn read(client: &kube::Client, namespace: &str, class: Option<String>) -> anyhow::Result<Self> {
        let read = kubernetes::read_once(client, namespace, class);
        let (snapshot, live) = tokio::time::timeout(READ_WITHIN, read)
            .await
            .with_context(|| format!("reading the cluster took over {READ_WITHIN:?} (can this user list Services, EndpointSlices, Nodes, and {namespace}'s pools, advertisements and Leases?)"))??;
        Ok(Self { snapshot, live })
    }
}

/// `node`'s speaker's /metrics, through the API server (`nodes/proxy`).
pub async fn speaker_metrics(client: &kube::Client, node: &str) -> anyhow::Result<String> {
    let path = format!("/api/v1/nodes/{node}:{METRICS_PORT}/proxy/metrics");
    let request = http::Request::get(&path).body(Vec::new())?;
    client.request_text(request).await.with_context(|| format!("reading {node}'s speaker metrics ({path})"))
}

/// One series of a metric: its labels and value.
pub type Series = (BTreeMap<String, String>, f64);

/// Every series of metric `name` in Prometheus text `text`.
pub fn series(text: &str, name: &str) -> Vec<Series> {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let (labels, value) = match rest.strip_prefix('{') {
                Some(rest) => rest.split_once("} ")?,
                None => ("", rest.strip_prefix(' ')?),
            };
            let labels = labels
                .split("\",")
                .filter(|pair| !pair.is_empty())
                .filter_map(|pair| {
                    let (key, value) = pair.split_once("=\"")?;
                    Some((key.to_owned(), value.trim_end_matches('"').to_owned()))
                })
                .collect();
            Some((labels, value.trim().parse().ok()?))
        })
        .collect()
}

/// "eth0 at xdp": an interface of a `herald_announced` series, and the hook the responder runs
/// at there.
pub fn placed(labels: &BTreeMap<String, String>) -> String {
    let interface = labels.get("interface").map_or("?", String::as_str);
    match labels.get("hook").map(String::as_str) {
        Some(hook) if hook != "none" => format!("{interface} at {hook}"),
        _ => interface.to_owned(),
    }
}

/// The series of `name` whose label `key` is `value`.
pub fn with<'a>(series: &'a [Series], key: &str, value: &str) -> impl Iterator<Item = &'a Series> {
    series.iter().filter(move |(labels, _)| labels.get(key).map(String::as_str) == Some(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_prometheus_text() {
        let text = "# HELP herald_announced x\n# TYPE herald_announced gauge\n\
                    herald_announced{protocol=\"arp\",ip=\"192.0.2.10\",interface=\"eth0\",vlan=\"0\",node=\"a\"} 1\n\
                    herald_announced_other 3\nherald_members_alive 3\n";
        let announced = series(text, "herald_announced");
        assert_eq!(announced.len(), 1);
        assert_eq!(announced[0].0["interface"], "eth0");
        assert_eq!(announced[0].0["node"], "a");
        assert_eq!(with(&announced, "ip", "192.0.2.10").count(), 1);
        assert_eq!(series(text, "herald_members_alive"), vec![(BTreeMap::new(), 3.0)]);
    }
}
