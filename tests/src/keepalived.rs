//! keepalived (VRRP) in the lab: the baseline Herald's failover is compared against.

use std::net::Ipv4Addr;

use crate::lab::{Host, Lab};

/// VRRP timing: keepalived's default (VRRPv2, 1 s adverts) or a tuned one (VRRPv3, 100 ms).
#[derive(Clone, Copy, Debug)]
pub enum Timing {
    Default,
    Tuned,
}

/// Starts keepalived on every node for `vip`, with priorities in `order` (first = master);
/// returns the process ids, in node order.
pub fn start(lab: &mut Lab, vip: Ipv4Addr, order: &[&str], timing: Timing) -> anyhow::Result<Vec<u32>> {
    let nodes = lab.nodes.clone();
    nodes.iter().map(|node| start_one(lab, node, vip, order, timing)).collect()
}

pub fn start_one(
    lab: &mut Lab,
    node: &Host,
    vip: Ipv4Addr,
    order: &[&str],
    timing: Timing,
) -> anyhow::Result<u32> {
    let rank = order.iter().position(|n| *n == node.name).unwrap_or(order.len());
    let priority = 200 - 50 * rank;
    let (version, advert) = match timing {
        Timing::Default => (2, "1"),
        Timing::Tuned => (3, "0.1"),
    };
    let conf = lab.workdir.join(format!("keepalived-{}.conf", node.name));
    std::fs::write(
        &conf,
        format!(
            "global_defs {{\n  router_id {name}\n  vrrp_version {version}\n}}\n\
             vrrp_instance herald {{\n  state BACKUP\n  interface eth0\n  virtual_router_id 51\n  \
             priority {priority}\n  advert_int {advert}\n  virtual_ipaddress {{\n    {vip}/32 dev eth0\n  }}\n}}\n",
            name = node.name
        ),
    )?;
    let pid_file =
        |kind: &str| lab.workdir.join(format!("keepalived-{}-{kind}.pid", node.name)).display().to_string();
    let (conf, main_pid, vrrp_pid) = (conf.display().to_string(), pid_file("main"), pid_file("vrrp"));
    let args = [
        "--vrrp",
        "--dont-fork",
        "--log-console",
        "--use-file",
        &conf,
        "--pid",
        &main_pid,
        "--vrrp_pid",
        &vrrp_pid,
    ];
    let log = lab.workdir.join(format!("keepalived-{}.log", node.name));
    lab.spawn(node, "keepalived", &args, Some(&log))
}

/// Kills node's keepalived processes (parent and VRRP child) with SIGKILL; the address it had
/// configured stays on the interface, as after any crash.
pub fn kill(lab: &Lab, node: &Host) -> anyhow::Result<()> {
    let conf = lab.workdir.join(format!("keepalived-{}.conf", node.name));
    let status = std::process::Command::new("pkill").args(["-KILL", "-f"]).arg(conf).status()?;
    anyhow::ensure!(status.success(), "no keepalived of {} to kill", node.name);
    Ok(())
}
