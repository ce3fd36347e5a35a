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
    let mut each = probes(host, &[target.into()], Some(count), every, during)?;
    Ok(each.pop().expect("one target, one series"))
}

/// Like [`series`] for several targets of one family at once: each round asks for every
/// target in turn; returns each target's probes, in the order of `targets`.
pub fn series_of(
    host: &Host,
    targets: &[IpAddr],
    count: usize,
    every: Duration,
    during: impl FnOnce() -> anyhow::Result<()>,
) -> anyhow::Result<Vec<Vec<Probe>>> {
    probes(host, targets, Some(count), every, during)
}

/// Like [`series`], for as long as `during` runs (and half a second more).
pub fn series_during(
    host: &Host,
    target: Ipv4Addr,
    every: Duration,
    during: impl FnOnce() -> anyhow::Result<()>,
) -> anyhow::Result<Vec<Probe>> {
    let mut each = probes(host, &[target.into()], None, every, during)?;
    Ok(each.pop().expect("one target, one series"))
}

/// What a series sends for one target and how its capture reads: an ARP request, or a Neighbor
/// Solicitation to the target's solicited-node group.
struct Asking {
    request: Vec<u8>,
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
                asks: format!("Request who-has {t} tell {}", host.addr),
                answer: format!("Reply {t} is-at "),
            },
            IpAddr::V6(t) => Self {
                request: crate::ndp::solicitation(host.mac, host.addr6, t).to_bytes(),
                // The comma ends the address, so that 2001:db8::2 is not read in 2001:db8::20.
                asks: format!(
                    "{} > {}: ICMP6, neighbor solicitation, who has {t},",
                    host.addr6,
                    crate::ndp::solicited_node(t).0
                ),
                answer: format!("ICMP6, neighbor advertisement, tgt is {t},"),
            },
        }
    }

    /// The capture filter for `targets`, all of one family.
    fn filter(targets: &[IpAddr]) -> anyhow::Result<Vec<String>> {
        let words = |w: &[&str]| w.iter().map(|w| w.to_string()).collect();
        match targets {
            [] => anyhow::bail!("a series needs a target"),
            [IpAddr::V4(t)] => Ok(words(&["arp", "and", "host", &t.to_string()])),
            _ if targets.iter().all(IpAddr::is_ipv4) => Ok(words(&["arp"])),
            _ if targets.iter().all(IpAddr::is_ipv6) => {
                Ok(words(&["icmp6", "and", "(ip6[40]", "==", "135", "or", "ip6[40]", "==", "136)"]))
            }
            _ => anyhow::bail!("a series asks for addresses of one family: {targets:?}"),
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
    targets: &[IpAddr],
    count: Option<usize>,
    every: Duration,
    during: impl FnOnce() -> anyhow::Result<()>,
) -> anyhow::Result<Vec<Vec<Probe>>> {
    use std::sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    };
    let filter = Asking::filter(targets)?;
    let asking: Vec<Asking> = targets.iter().map(|t| Asking::new(host, *t)).collect();
    let capture = Capture::start(host, "inout", &filter.iter().map(String::as_str).collect::<Vec<_>>())?;
    let requests: Vec<Vec<u8>> = asking.iter().map(|a| a.request.clone()).collect();
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
                    // A round's requests spread over its interval, as a client's would be:
                    // not a burst that outruns the capture.
                    for request in &requests {
                        socket.send(ifindex, request)?;
                        std::thread::sleep(every / requests.len() as u32);
                    }
                    sent.fetch_add(1, Ordering::Relaxed);
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
    // On a busy machine the capture lags behind what was sent: wait until it has every request
    // (the check below names any it never gets), then for the replies to the last ones.
    capture.wait_for(Duration::from_secs(5), |lines| {
        asking.iter().all(|a| lines.iter().filter(|l| l.contains(&a.asks)).count() >= count)
    });
    std::thread::sleep(Duration::from_millis(200));
    let lines = capture.stop()?;
    let probes = read(&lines, &asking)?;
    if let Some((target, short)) = targets.iter().zip(&probes).find(|(_, p)| p.len() != count) {
        let path = std::env::temp_dir().join(format!("herald-series-{}.txt", std::process::id()));
        std::fs::write(&path, lines.join("\n"))?;
        anyhow::bail!(
            "{target}: captured {} of {count} requests (capture in {})",
            short.len(),
            path.display()
        );
    }
    Ok(probes)
}

/// Each target's probes in a capture's `lines`: its requests, each with the replies before the
/// next one.
fn read(lines: &[String], asking: &[Asking]) -> anyhow::Result<Vec<Vec<Probe>>> {
    let mut probes: Vec<Vec<Probe>> = asking.iter().map(|_| Vec::new()).collect();
    let time = |line: &str| {
        line.split_whitespace().next().and_then(|t| t.parse::<f64>().ok()).context("capture time")
    };
    for line in lines {
        for (asking, probes) in asking.iter().zip(&mut probes) {
            if line.contains(&asking.asks) {
                probes.push(Probe { sent: time(line)?, replies: Vec::new() });
                break;
            } else if let Some(mac) = asking.mac_of(line) {
                if let Some(last) = probes.last_mut() {
                    last.replies.push((time(line)?, parse_mac(mac)?));
                }
                break;
            }
        }
    }
    Ok(probes)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;

    use super::*;

    fn client() -> Host {
        let addr = crate::lab::CLIENT_ADDR;
        Host {
            name: "client".into(),
            netns: "client".into(),
            addr,
            addr6: crate::lab::addr6(addr),
            mac: [2, 0, 0, 0, 0, 0x64],
            port: "p0".into(),
        }
    }

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect()
    }

    #[test]
    fn replies_go_to_their_own_target_of_a_round() {
        let host = client();
        let targets: Vec<IpAddr> = ["198.51.100.1", "198.51.100.10"].map(|t| t.parse().unwrap()).to_vec();
        let asking: Vec<Asking> = targets.iter().map(|t| Asking::new(&host, *t)).collect();
        let capture = lines(
            "
            1.000 02:00:00:00:00:64 > ff:ff:ff:ff:ff:ff, ethertype ARP (0x0806), length 42: Request who-has 198.51.100.1 tell 192.0.2.100, length 28
            1.001 02:00:00:00:00:64 > ff:ff:ff:ff:ff:ff, ethertype ARP (0x0806), length 42: Request who-has 198.51.100.10 tell 192.0.2.100, length 28
            1.002 02:00:00:00:00:0a > 02:00:00:00:00:64, ethertype ARP (0x0806), length 42: Reply 198.51.100.10 is-at 02:00:00:00:00:0a, length 28
            1.003 02:00:00:00:00:01 > ff:ff:ff:ff:ff:ff, ethertype ARP (0x0806), length 42: Request who-has 198.51.100.1 tell 198.51.100.1, length 28
            1.004 02:00:00:00:00:01 > 02:00:00:00:00:64, ethertype ARP (0x0806), length 42: Reply 198.51.100.1 is-at 02:00:00:00:00:01, length 28
            1.010 02:00:00:00:00:64 > ff:ff:ff:ff:ff:ff, ethertype ARP (0x0806), length 42: Request who-has 198.51.100.1 tell 192.0.2.100, length 28
            1.011 02:00:00:00:00:64 > ff:ff:ff:ff:ff:ff, ethertype ARP (0x0806), length 42: Request who-has 198.51.100.10 tell 192.0.2.100, length 28
            ",
        );
        let probes = read(&capture, &asking).unwrap();
        let replies = |t: usize| probes[t].iter().map(|p| p.replies.len()).collect::<Vec<_>>();
        assert_eq!(replies(0), [1, 0], "198.51.100.1: its reply, not .10's, and not the gratuitous request");
        assert_eq!(replies(1), [1, 0]);
        assert_eq!(probes[0][0].replies[0], (1.004, [2, 0, 0, 0, 0, 1]));
        assert_eq!(probes[1][0].replies[0], (1.002, [2, 0, 0, 0, 0, 0x0a]));
        assert_eq!(probes[1][1].sent, 1.011);
    }

    #[test]
    fn solicitations_for_addresses_that_prefix_each_other_stay_apart() {
        let host = client();
        let targets: Vec<IpAddr> =
            [0x2, 0x20].map(|last| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, last))).to_vec();
        let asking: Vec<Asking> = targets.iter().map(|t| Asking::new(&host, *t)).collect();
        let capture = lines(
            "
            1.000 02:00:00:00:00:64 > 33:33:ff:00:00:02, ethertype IPv6 (0x86dd), length 86: 2001:db8::100 > ff02::1:ff00:2: ICMP6, neighbor solicitation, who has 2001:db8::2, length 32
            1.001 02:00:00:00:00:64 > 33:33:ff:00:00:20, ethertype IPv6 (0x86dd), length 86: 2001:db8::100 > ff02::1:ff00:20: ICMP6, neighbor solicitation, who has 2001:db8::20, length 32
            1.002 02:00:00:00:00:20 > 02:00:00:00:00:64, ethertype IPv6 (0x86dd), length 86: 2001:db8::20 > 2001:db8::100: ICMP6, neighbor advertisement, tgt is 2001:db8::20, length 32
            ",
        );
        let probes = read(&capture, &asking).unwrap();
        assert_eq!(probes[0].len(), 1);
        assert!(probes[0][0].replies.is_empty(), "2001:db8::2 took 2001:db8::20's reply");
        assert_eq!(probes[1][0].replies, [(1.002, [2, 0, 0, 0, 0, 0x20])]);
    }

    #[test]
    fn a_series_asks_for_one_family() {
        let mixed: Vec<IpAddr> = ["192.0.2.1", "2001:db8::1"].map(|t| t.parse().unwrap()).to_vec();
        assert!(Asking::filter(&mixed).is_err());
        assert!(Asking::filter(&[]).is_err());
    }
}
