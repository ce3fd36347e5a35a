//! Lossy links in the lab, and what a node sends. tc's netem is not built into every kernel
//! these labs run on; iptables' `statistic` match is: each node drops a random share of the IP
//! packets it receives, as a lossy link to it would.

use anyhow::Context as _;

use crate::lab::Host;

/// Makes `host` drop `percent` of the IP packets it receives (0 takes the loss away).
pub fn set(host: &Host, percent: f64) -> anyhow::Result<()> {
    // The rule is the only one the lab's namespaces have: flushing removes the previous loss.
    host.run("iptables", &["-F", "INPUT"])?;
    if percent > 0.0 {
        let p = format!("{:.4}", percent / 100.0);
        host.run(
            "iptables",
            &["-A", "INPUT", "-m", "statistic", "--mode", "random", "--probability", &p, "-j", "DROP"],
        )?;
    }
    Ok(())
}

/// Packets `host` has sent on its LAN interface.
pub fn sent(host: &Host) -> anyhow::Result<u64> {
    Ok(sent_both(host)?.0)
}

/// Packets and bytes (Ethernet frames, without the FCS) `host` has sent on its LAN interface.
/// (From netlink: sysfs, entered with nsenter, shows the caller's interfaces.)
pub fn sent_both(host: &Host) -> anyhow::Result<(u64, u64)> {
    let text = host.run("ip", &["-s", "-j", "link", "show", "dev", "eth0"])?;
    let json: serde_json::Value = serde_json::from_str(&text)?;
    let tx = &json[0]["stats64"]["tx"];
    let packets = tx["packets"].as_u64().context("tx packets in `ip -s -j link`")?;
    Ok((packets, tx["bytes"].as_u64().context("tx bytes in `ip -s -j link`")?))
}
