//! Timed series of address requests from a lab host (ARP, or Neighbor Solicitations for IPv6),
//! each with the replies it got, read from a capture: what the failover measurements and the
//! no-gap tests count on.

use std::{
    net::{IpAddr, Ipv4Addr},
    time::Duration,
};

use anyhow::Context as _;

use crate::{
    lab::{Host, parse_mac},
    probe::Capture,
};

/// Now on the captures' clock: seconds since the epoch. When a fault began, to set against
/// the probes' times.
pub fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// One request of a [`series`] and the replies to it.
#[derive(Debug)]
pub struct Probe {
    /// When the request went out (capture time, seconds since the epoch).
    pub sent: f64,
    /// (capture time, MAC) of each reply before the next request.
    pub replies: Vec<(f64, [u8; 6])>,
}

/// Sends `count` requests for `target` (ARP, or Neighbor Solicitations for IPv6) from `host`,
/// one every `every`, and runs `during` at the same time; returns what each request got, from a
/// capture on `host`.
pub fn series(
    host: &Host,
    target: impl Into<IpAddr>,
    count: usize,
    every: Duration,
    during: impl FnOnce() -> anyhow::Result<()>,
) -> anyhow::Result<Vec<Probe>> {
    probes(host, target.into(), Some(count), every, during)
}

/// Like [`series`], for as long as `during` runs (and half a second more).
pub fn series_during(
    host: &Host,
    target: Ipv4Addr,
    every: Duration,
    during: impl FnOnce() -> anyhow::Result<()>,
) -> anyhow::Result<Vec<Probe>> {
    probes(host, target.into(), None, every, during)
}

/// What a series sends and how its capture reads: an ARP request, or a Neighbor Solicitation to
/// the target's solicited-node group.
struct Asking {
    request: Vec<u8>,
    filter: Vec<String>,
    /// In tcpdump's line for one of our requests.
    asks: String,
    /// In its line for an answer.
    answer: String,
}

impl Asking {
    fn new(host: &Host, target: IpAddr) -> Self {
        match target {
            IpAddr::V4(t) => Self {
                request: herald_speaker::frame::Arp::request(host.mac, host.addr, t).to_bytes(),
                filter: vec!["arp".into(), "and".into(), "host".into(), t.to_string()],
                asks: format!("Request who-has {t} tell {}", host.addr),
                answer: format!("Reply {t} is-at "),
            },
            IpAddr::V6(t) => Self {
                request: crate::ndp::solicitation(host.mac, host.addr6, t).to_bytes(),
                filter: ["icmp6", "and", "(ip6[40]", "==", "135", "or", "ip6[40]", "==", "136)"]
                    .map(String::from)
                    .to_vec(),
                asks: format!(
                    "{} > {}: ICMP6, neighbor solicitation, who has {t}",
                    host.addr6,
                    crate::ndp::solicited_node(t).0
                ),
                answer: format!("ICMP6, neighbor advertisement, tgt is {t}"),
            },
        }
    }

    /// The MAC an answer line comes from: ARP's is-at, or the Ethernet source (`-e`).
    fn mac_of<'a>(&self, line: &'a str) -> Option<&'a str> {
        if !line.contains(&self.answer) {
            return None;
        }
        match line.split(&self.answer).nth(1) {
            Some(rest) if self.answer.ends_with("is-at ") => rest.split([',', ' ']).next(),
            _ => line.split_whitespace().nth(1),
        }
    }
}

fn probes(
    host: &Host,
    target: IpAddr,
    count: Option<usize>,
    every: Duration,
    during: impl FnOnce() -> anyhow::Result<()>,
) -> anyhow::Result<Vec<Probe>> {
    use std::sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    };
    let asking = Asking::new(host, target);
    let filter: Vec<&str> = asking.filter.iter().map(String::as_str).collect();
    let capture = Capture::start(host, "inout", &filter)?;
    let request = asking.request.clone();
    let ifindex = host.ifindex()?;
    let (stop, sent) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
    let sender = std::thread::spawn({
        let netns = host.netns.clone();
        let (stop, sent) = (stop.clone(), sent.clone());
        move || {
            crate::lab::in_netns(&netns, move || {
                let socket = herald_speaker::garp::Sender::new()?;
                while count.is_none_or(|c| sent.load(Ordering::Relaxed) < c) && !stop.load(Ordering::Relaxed)
                {
                    socket.send(ifindex, &request)?;
                    sent.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(every);
                }
                Ok(())
            })
        }
    });
    let during = during();
    if count.is_none() {
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::Relaxed);
    }
    sender.join().map_err(|_| anyhow::anyhow!("prober panicked"))??;
    during?;
    let count = sent.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(200));
    let lines = capture.stop()?;
    let mut probes: Vec<Probe> = Vec::new();
    let time = |line: &str| {
        line.split_whitespace().next().and_then(|t| t.parse::<f64>().ok()).context("capture time")
    };
    for line in &lines {
        if line.contains(&asking.asks) {
            probes.push(Probe { sent: time(line)?, replies: Vec::new() });
        } else if let Some(mac) = asking.mac_of(line)
            && let Some(last) = probes.last_mut()
        {
            last.replies.push((time(line)?, parse_mac(mac)?));
        }
    }
    if probes.len() != count {
        let path = std::env::temp_dir().join(format!("herald-series-{}.txt", std::process::id()));
        std::fs::write(&path, lines.join("\n"))?;
        anyhow::bail!("captured {} of {count} requests (capture in {})", probes.len(), path.display());
    }
    Ok(probes)
}
