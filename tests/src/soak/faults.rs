//! The faults a node really has, done to a lab node and undone: its speaker killed (and
//! restarted), frozen whole (SIGSTOP), its run loop frozen alone (a ptrace stop of its main
//! thread), its link down, its membership port cut (a host firewall).

use std::time::Duration;

use anyhow::Context as _;
use nix::sys::signal::Signal;

use crate::{cluster, freeze::Frozen, lab::Lab, speaker::Speaker};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Kill,
    Stop,
    FrozenLoop,
    LinkDown,
    MembershipCut,
}

impl Kind {
    pub const ALL: [Kind; 5] =
        [Kind::Kill, Kind::Stop, Kind::FrozenLoop, Kind::LinkDown, Kind::MembershipCut];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Kill => "SIGKILL",
            Kind::Stop => "SIGSTOP",
            Kind::FrozenLoop => "frozen run loop",
            Kind::LinkDown => "link down",
            Kind::MembershipCut => "membership cut",
        }
    }

    /// Whether two answers are allowed at its start: a cut-off owner answers beside its heir
    /// until it finds itself alone.
    pub fn partition(self) -> bool {
        self == Kind::MembershipCut
    }
}

/// Does `kind` to `speakers[i]`'s node for `hold`, then undoes it. A fault on the calling
/// thread (a ptrace stop is bound to it).
pub fn inflict(
    lab: &mut Lab,
    speakers: &mut [Speaker],
    i: usize,
    kind: Kind,
    hold: Duration,
    args: &[&str],
) -> anyhow::Result<()> {
    let host = speakers[i].host.clone();
    match kind {
        Kind::Kill => {
            speakers[i].signal(Signal::SIGKILL)?;
            if let Some(mut child) = lab.take_child(speakers[i].pid) {
                child.wait()?;
            }
            std::thread::sleep(hold);
            let config = cluster::config(lab, &host, "");
            speakers[i] = Speaker::start(lab, &host, &config, args).context("restarting the speaker")?;
        }
        Kind::Stop => {
            speakers[i].signal(Signal::SIGSTOP)?;
            std::thread::sleep(hold);
            speakers[i].signal(Signal::SIGCONT)?;
        }
        Kind::FrozenLoop => {
            let frozen = Frozen::thread(speakers[i].pid)?;
            std::thread::sleep(hold);
            drop(frozen);
        }
        Kind::LinkDown => {
            lab.set_port(&host, false)?;
            std::thread::sleep(hold);
            lab.set_port(&host, true)?;
        }
        Kind::MembershipCut => {
            cut(&host, true)?;
            std::thread::sleep(hold);
            cut(&host, false)?;
        }
    }
    Ok(())
}

/// Drops the membership's datagrams to and from `host` (or stops dropping them).
pub fn cut(host: &crate::lab::Host, on: bool) -> anyhow::Result<()> {
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
