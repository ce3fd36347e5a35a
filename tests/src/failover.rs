//! Measuring a takeover as the client sees it: from the moment the owner dies to the first ARP
//! reply (Neighbor Advertisement for IPv6) from the new owner, and to the client's neighbour
//! entry pointing at the new owner.

use std::{
    io::Read as _,
    net::IpAddr,
    process::Stdio,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::Context as _;

use crate::{
    lab::{Lab, format_mac},
    probe::{self, Probe},
};

/// How long after the owner's death the client saw the new owner.
#[derive(Clone, Copy, Debug)]
pub struct Takeover {
    /// First ARP reply from the new owner to the client's probes (one every 10 ms).
    pub reply: Option<Duration>,
    /// The client's neighbour entry for the address changed to the new owner's MAC.
    pub neighbour: Option<Duration>,
}

const PROBE_EVERY: Duration = Duration::from_millis(10);

/// Probes `vip` from the client for `window`, runs `kill` 200 ms in, and times the takeover by
/// `new_mac`. The client should have a neighbour entry for `vip` (see [`resolve`]).
pub fn measure(
    lab: &Lab,
    vip: IpAddr,
    new_mac: [u8; 6],
    window: Duration,
    kill: impl FnOnce() -> anyhow::Result<()>,
) -> anyhow::Result<Takeover> {
    let mut monitor = lab
        .client
        .command("ip")
        .args(["-ts", "monitor", "neigh", "dev", "eth0"])
        .env("TZ", "UTC")
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .context("starting ip monitor")?;
    std::thread::sleep(Duration::from_millis(100));
    let mut killed_at = 0.0;
    let count = (window.as_millis() / PROBE_EVERY.as_millis()) as usize;
    let probes = probe::series(&lab.client, vip, count, PROBE_EVERY, || {
        std::thread::sleep(Duration::from_millis(200));
        killed_at = now();
        kill()
    });
    let _ = monitor.kill();
    let mut events = String::new();
    monitor.stdout.take().context("monitor output")?.read_to_string(&mut events)?;
    let _ = monitor.wait();
    let probes = probes?;

    let after = |t: f64| (t > killed_at).then(|| Duration::from_secs_f64(t - killed_at));
    let reply = first_reply(&probes, new_mac, killed_at);
    let (vip_text, mac_text) = (format!("] {vip} "), format!("lladdr {} ", format_mac(new_mac)));
    let neighbour = events
        .lines()
        .filter(|l| l.contains(&vip_text) && l.contains(&mac_text))
        .filter_map(monitor_time)
        .find_map(after);
    Ok(Takeover { reply, neighbour })
}

/// Time from `since` (seconds since the epoch) to the first reply in `probes` from `mac` after it.
pub fn first_reply(probes: &[Probe], mac: [u8; 6], since: f64) -> Option<Duration> {
    probes
        .iter()
        .flat_map(|p| &p.replies)
        .find(|(t, m)| *m == mac && *t > since)
        .map(|(t, _)| Duration::from_secs_f64(t - since))
}

/// Makes the client resolve `vip` (as any client talking to it would) so it has an entry.
pub fn resolve(lab: &Lab, vip: IpAddr) {
    let family = if vip.is_ipv6() { "-6" } else { "-4" };
    let _ = lab.client.output("ping", &[family, "-c", "1", "-W", "1", &vip.to_string()]);
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// Seconds since the epoch of an `ip -ts monitor` line (`[2026-11-26T18:38:05.850238] ...`, UTC).
fn monitor_time(line: &str) -> Option<f64> {
    let stamp = line.strip_prefix('[')?.split(']').next()?;
    let (date, time) = stamp.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.split(':');
    let (h, min, s) =
        (t.next()?.parse::<f64>().ok()?, t.next()?.parse::<f64>().ok()?, t.next()?.parse::<f64>().ok()?);
    Some(days_from_civil(y, m, day) as f64 * 86_400.0 + h * 3600.0 + min * 60.0 + s)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monitor_times() {
        // date -u -d 2026-11-26T18:38:05 +%s => 1795718285
        let t = monitor_time("[2026-11-26T18:38:05.850238] 192.0.2.2 dev x lladdr 02:00:00:00:00:99 STALE")
            .unwrap();
        assert!((t - 1_795_718_285.850238).abs() < 1e-5, "{t}");
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert!(monitor_time("Deleted 192.0.2.2").is_none());
    }
}
