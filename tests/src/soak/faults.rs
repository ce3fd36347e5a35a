//! The faults a cluster really has. A node's: its speaker killed (and restarted), frozen whole
//! (SIGSTOP), its run loop frozen alone (a ptrace stop of its main thread), its link down, its
//! membership port cut (a host firewall). A Kubernetes control plane's: the API server or
//! herald-controller restarted, a Service created and deleted beside the others, a pool edited
//! so that it no longer holds the addresses it gave (see [`super::kube`]).

use std::time::Duration;

use nix::sys::signal::Signal;

use crate::{
    cluster,
    freeze::Frozen,
    lab::{Host, Lab},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Kill,
    Stop,
    FrozenLoop,
    LinkDown,
    MembershipCut,
    ApiServerRestart,
    ControllerRestart,
    ServiceChurn,
    PoolEdit,
}

impl Kind {
    /// What a node can have, in either mode.
    pub const NODE: [Kind; 5] =
        [Kind::Kill, Kind::Stop, Kind::FrozenLoop, Kind::LinkDown, Kind::MembershipCut];
    /// What a Kubernetes cluster can have besides.
    pub const KUBERNETES: [Kind; 9] = [
        Kind::Kill,
        Kind::Stop,
        Kind::FrozenLoop,
        Kind::LinkDown,
        Kind::MembershipCut,
        Kind::ApiServerRestart,
        Kind::ControllerRestart,
        Kind::ServiceChurn,
        Kind::PoolEdit,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Kill => "SIGKILL",
            Kind::Stop => "SIGSTOP",
            Kind::FrozenLoop => "frozen run loop",
            Kind::LinkDown => "link down",
            Kind::MembershipCut => "membership cut",
            Kind::ApiServerRestart => "API server down",
            Kind::ControllerRestart => "controller down",
            Kind::ServiceChurn => "Service churn",
            Kind::PoolEdit => "pool edit",
        }
    }

    /// Whether two answers are allowed at its start: a cut-off owner answers beside its heir
    /// until it finds itself alone.
    pub fn partition(self) -> bool {
        self == Kind::MembershipCut
    }

    /// Whether it is done to a node (else to the control plane).
    pub fn on_a_node(self) -> bool {
        Kind::NODE.contains(&self)
    }
}

/// What a node fault needs of a cluster's speakers.
pub trait Speakers {
    fn lab(&self) -> &Lab;
    /// The process id of speaker `i` (its main thread's, too).
    fn pid(&self, i: usize) -> u32;
    /// Kills speaker `i` (SIGKILL) and waits for it.
    fn kill(&mut self, i: usize) -> anyhow::Result<()>;
    /// Starts speaker `i` again, as it was started.
    fn restart(&mut self, i: usize) -> anyhow::Result<()>;
}

/// Does node fault `kind` to node `i` (`host`) for `hold`, then undoes it. On the calling
/// thread (a ptrace stop is bound to it).
pub fn on_node(
    speakers: &mut impl Speakers,
    i: usize,
    host: &Host,
    kind: Kind,
    hold: Duration,
) -> anyhow::Result<()> {
    let signal = |pid: u32, signal| {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal)
            .map_err(|e| anyhow::anyhow!("signalling the speaker: {e}"))
    };
    match kind {
        Kind::Kill => {
            speakers.kill(i)?;
            std::thread::sleep(hold);
            speakers.restart(i)?;
        }
        Kind::Stop => {
            signal(speakers.pid(i), Signal::SIGSTOP)?;
            std::thread::sleep(hold);
            signal(speakers.pid(i), Signal::SIGCONT)?;
        }
        Kind::FrozenLoop => {
            let frozen = Frozen::thread(speakers.pid(i))?;
            std::thread::sleep(hold);
            drop(frozen);
        }
        Kind::LinkDown => {
            speakers.lab().set_port(host, false)?;
            std::thread::sleep(hold);
            speakers.lab().set_port(host, true)?;
        }
        Kind::MembershipCut => {
            cut(host, true)?;
            std::thread::sleep(hold);
            cut(host, false)?;
        }
        other => anyhow::bail!("{} is not done to a node", other.name()),
    }
    Ok(())
}

/// Drops the membership's datagrams to and from `host` (or stops dropping them).
pub fn cut(host: &Host, on: bool) -> anyhow::Result<()> {
    for chain in ["INPUT", "OUTPUT"] {
        host.run("iptables", &["-F", chain])?;
        if on {
            for port in ["--dport", "--sport"] {
                let port_number = cluster::PORT.to_string();
                host.run("iptables", &["-A", chain, "-p", "udp", port, &port_number, "-j", "DROP"])?;
            }
        }
    }
    Ok(())
}
