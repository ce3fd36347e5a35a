//! `kubectl herald status`: every Service address with its owner and heir as the speakers decide
//! them, what the owner's speaker says of it, and each node's speaker.

use std::{collections::BTreeMap, fmt::Write as _};

use herald_speaker::kubernetes;

use crate::cluster::{self, Cluster};

/// Each node's metrics text, or why it could not be read.
pub type NodeMetrics = BTreeMap<String, Result<String, String>>;

/// The metrics of every node with a running speaker.
pub async fn owner_metrics(client: &kube::Client, cluster: &Cluster) -> NodeMetrics {
    let mut out = BTreeMap::new();
    for node in &cluster.live {
        out.insert(node.clone(), cluster::speaker_metrics(client, node).await.map_err(|e| format!("{e:#}")));
    }
    out
}

pub fn render(cluster: &Cluster, metrics: &NodeMetrics) -> String {
    let assignments = kubernetes::assign(&cluster.snapshot, &cluster.live);
    let mut out = format!(
        "{:<26} {:<28} {:<14} {:<14} {:<16} {:>8} {:>9}\n",
        "ADDRESS", "SERVICE", "OWNER", "HEIR", "INTERFACES", "REPLIES", "CONFLICTS"
    );
    // Each owner's series, parsed once for all its addresses.
    let parsed: BTreeMap<&str, [Vec<cluster::Series>; 3]> = metrics
        .iter()
        .filter_map(|(node, text)| Some((node.as_str(), text.as_ref().ok()?)))
        .map(|(node, text)| {
            let [a, r, c] = ["herald_announced", "herald_replies_total", "herald_address_conflicts_total"];
            (node, [cluster::series(text, a), cluster::series(text, r), cluster::series(text, c)])
        })
        .collect();
    for a in &assignments {
        let ip = a.address.to_string();
        let (interfaces, replies, conflicts) = match parsed.get(a.owner.as_str()) {
            Some([announced, replies, claims]) => {
                let on: Vec<String> =
                    cluster::with(announced, "ip", &ip).map(|(l, _)| cluster::placed(l)).collect();
                let sum = |series| -> f64 { cluster::with(series, "ip", &ip).map(|(_, v)| v).sum() };
                let interfaces = if on.is_empty() { "(not in map)".to_owned() } else { on.join(",") };
                (interfaces, sum(replies).to_string(), sum(claims).to_string())
            }
            None => ("?".into(), "?".into(), "?".into()),
        };
        let heir = a.heir.as_deref().unwrap_or("-");
        let _ = writeln!(
            out,
            "{ip:<26} {:<28} {:<14} {heir:<14} {interfaces:<16} {replies:>8} {conflicts:>9}",
            a.service, a.owner
        );
    }
    // Addresses a Service holds that no node announces.
    for svc in &cluster.snapshot.services {
        for address in svc.addresses.iter().filter(|ad| !assignments.iter().any(|a| a.address == **ad)) {
            let _ = writeln!(
                out,
                "{:<26} {:<28} (nobody: `kubectl herald explain {address}`)",
                address.to_string(),
                svc.key
            );
        }
    }
    if assignments.is_empty() && cluster.snapshot.services.iter().all(|s| s.addresses.is_empty()) {
        out += "(no Service holds an address from Herald)\n";
    }
    out += &format!(
        "\n{:<14} {:<10} {:>9} {:>9} {:>6} {:>8} {:>7}\n",
        "NODE", "SPEAKER", "ANNOUNCES", "TAKEOVERS", "FENCES", "ISOLATED", "MEMBERS"
    );
    for node in &cluster.snapshot.nodes {
        let name = &node.name;
        let running = if cluster.live.contains(name) { "running" } else { "no Lease" };
        let figures = match metrics.get(name) {
            Some(Ok(text)) => {
                let value = |metric| cluster::series(text, metric).first().map_or(0.0, |(_, v)| *v);
                let announces: std::collections::BTreeSet<String> = cluster::series(text, "herald_announced")
                    .into_iter()
                    .filter_map(|(l, _)| l.get("ip").cloned())
                    .collect();
                format!(
                    "{:>9} {:>9} {:>6} {:>8} {:>7}",
                    announces.len(),
                    value("herald_takeover_seconds_count"),
                    value("herald_fences_total"),
                    if value("herald_isolated") > 0.0 { "yes" } else { "no" },
                    value("herald_members_alive")
                )
            }
            Some(Err(e)) => format!("  (metrics: {e})"),
            None => String::new(),
        };
        let _ = writeln!(out, "{name:<14} {running:<10} {figures}");
    }
    out
}
