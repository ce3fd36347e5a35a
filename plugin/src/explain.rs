//! `kubectl herald explain`: the decided chain (the speakers' own code, over the cluster as they
//! read it), then what only the owner knows, from its metrics: whether its map holds the
//! address, on which interfaces, whether its XDP programs answer, and other hosts' claims.

use std::time::{SystemTime, UNIX_EPOCH};

use herald_speaker::{
    explain::CLAIM_RECENT,
    kubernetes::decide::explain::{self, Link, Outcome, Query},
};
use k8s_openapi::api::events::v1::Event;
use kube::Api;

use crate::cluster::{self, Cluster};

/// The chain as text, and whether every link holds.
pub async fn run(client: &kube::Client, cluster: &Cluster, query: &Query) -> (String, bool) {
    let (mut links, outcome) = explain::explain(&cluster.snapshot, &cluster.live, query);
    if let Some(outcome) = &outcome {
        let metrics = cluster::speaker_metrics(client, &outcome.owner).await;
        let failed = announce_failed(client, &outcome.service).await;
        links.extend(on_the_owner(
            outcome,
            metrics.as_deref().map_err(|e| format!("{e:#}")),
            failed.as_deref(),
        ));
    }
    let answered = links.iter().all(|l| l.holds);
    (explain::render(&links), answered)
}

/// The owner's links, from its metrics text (or why it could not be read) and the last
/// announceFailed Event on the Service.
pub fn on_the_owner(outcome: &Outcome, metrics: Result<&str, String>, failed: Option<&str>) -> Vec<Link> {
    let owner = &outcome.owner;
    let metrics = match metrics {
        Ok(text) => text,
        Err(e) => {
            return vec![Link::holds(
                "owner",
                vec![format!("not checked: could not read {owner}'s metrics: {e}")],
            )];
        }
    };
    let mut links = Vec::new();
    let value = |name| cluster::series(metrics, name).first().map(|(_, v)| *v);
    if let (Some(age), Some(bound)) =
        (value("herald_heartbeat_age_seconds"), value("herald_dead_man_seconds"))
        && age > bound
    {
        links.push(Link::broken(
            "owner",
            vec![format!("{owner}'s XDP programs answer nothing: its last heartbeat is {age:.1} s old (bound {bound:.1} s); its speaker is stuck")],
        ));
        return links;
    }
    let announced = cluster::series(metrics, "herald_announced");
    let replies = cluster::series(metrics, "herald_replies_total");
    for address in &outcome.addresses {
        let ip = address.to_string();
        let on: Vec<String> =
            cluster::with(&announced, "ip", &ip).map(|(labels, _)| cluster::placed(labels)).collect();
        if on.is_empty() {
            let mut lines = vec![format!("{owner} was elected, but its map holds no entry for {ip}")];
            lines.push(match failed {
                Some(note) => format!("its last announceFailed Event: {note}"),
                None => "no announceFailed Event on the Service: the speaker may still be taking it".into(),
            });
            links.push(Link::broken("owner", lines));
            continue;
        }
        let answered: f64 = cluster::with(&replies, "ip", &ip).map(|(_, v)| v).sum();
        links.push(Link::holds(
            "owner",
            vec![format!("{owner} answers for {ip} on {} ({answered} requests answered)", on.join(", "))],
        ));
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    let claims = cluster::series(metrics, "herald_address_conflict_last_seconds");
    for address in &outcome.addresses {
        let ip = address.to_string();
        for (labels, at) in
            cluster::with(&claims, "ip", &ip).filter(|(_, at)| now - at < CLAIM_RECENT.as_secs_f64())
        {
            let mac = labels.get("mac").map_or("?", String::as_str);
            let interface = labels.get("interface").map_or("?", String::as_str);
            links.push(Link::broken(
                "other hosts",
                vec![format!(
                    "another host, {mac}, claimed {ip} {:.0} s ago on {owner}'s {interface}: clients may follow it",
                    (now - at).max(0.0)
                )],
            ));
        }
    }
    links
}

/// The note of the last announceFailed Event on Service `key` (`namespace/name`).
async fn announce_failed(client: &kube::Client, key: &str) -> Option<String> {
    let (namespace, name) = key.split_once('/')?;
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    let list = events.list(&Default::default()).await.ok()?;
    list.items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .filter(|e| e.reason.as_deref() == Some("announceFailed"))
        .max_by_key(|e| e.event_time.as_ref().map(|t| t.0))
        .and_then(|e| e.note)
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_speaker::carriers::Interfaces;

    fn outcome() -> Outcome {
        Outcome {
            service: "default/web".into(),
            addresses: vec!["192.0.2.10".parse().unwrap()],
            owner: "node-c".into(),
            heir: Some("node-b".into()),
            interfaces: Interfaces::Subnet,
        }
    }

    const HEALTHY: &str = "herald_heartbeat_age_seconds 0.1\nherald_dead_man_seconds 2\n\
        herald_announced{protocol=\"arp\",ip=\"192.0.2.10\",interface=\"eth0\",vlan=\"0\",node=\"node-c\",hook=\"xdp\"} 1\n\
        herald_replies_total{protocol=\"arp\",ip=\"192.0.2.10\",interface=\"eth0\",vlan=\"0\"} 7\n";

    #[test]
    fn the_owner_answering_holds() {
        let links = on_the_owner(&outcome(), Ok(HEALTHY), None);
        assert!(links.iter().all(|l| l.holds), "{links:?}");
        assert!(links[0].lines[0].contains("on eth0 at xdp (7 requests answered)"), "{links:?}");
    }

    #[test]
    fn what_the_owner_says_breaks_the_chain() {
        let unmapped = HEALTHY.replace("ip=\"192.0.2.10\",interface", "ip=\"192.0.2.99\",interface");
        let links = on_the_owner(&outcome(), Ok(&unmapped), Some("no interface here carries 192.0.2.10"));
        assert_eq!(links[0].what, "owner");
        assert!(!links[0].holds && links[0].lines[1].contains("no interface here carries"), "{links:?}");

        let stuck = HEALTHY.replace("herald_heartbeat_age_seconds 0.1", "herald_heartbeat_age_seconds 9");
        let links = on_the_owner(&outcome(), Ok(&stuck), None);
        assert!(!links[0].holds && links[0].lines[0].contains("answer nothing"), "{links:?}");

        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
        let claimed = format!(
            "{HEALTHY}herald_address_conflict_last_seconds{{protocol=\"arp\",ip=\"192.0.2.10\",interface=\"eth0\",vlan=\"0\",mac=\"02:00:00:00:00:99\"}} {}\n",
            now - 12.0
        );
        let links = on_the_owner(&outcome(), Ok(&claimed), None);
        let claim = links.iter().find(|l| l.what == "other hosts").expect("the claim");
        assert!(!claim.holds && claim.lines[0].contains("02:00:00:00:00:99"), "{links:?}");
        // An old claim is history, not a cause.
        let old = claimed.replace(&format!("{}", now - 12.0), &format!("{}", now - 3600.0));
        assert!(on_the_owner(&outcome(), Ok(&old), None).iter().all(|l| l.holds));

        let unread = on_the_owner(&outcome(), Err("forbidden".into()), None);
        assert!(unread[0].lines[0].starts_with("not checked"), "{unread:?}");
    }
}
