//! The standalone cluster under soak: a speaker per lab node, each from a config file naming
//! the three addresses and its peers.

use std::{net::Ipv4Addr, time::Duration};

use anyhow::Context as _;

use super::{
    Soaked,
    faults::{self, Kind, Speakers},
};
use crate::{cluster, lab::Lab, speaker::Speaker};

/// The speakers' run-loop bound, as deploy/ sets it.
pub const ARGS: &[&str] = &["--dead-man-ms", "1000"];

pub struct Standalone {
    lab: Lab,
    speakers: Vec<Speaker>,
    names: Vec<String>,
}

impl Standalone {
    /// The lab, a speaker on each of `names`, and each address answered by its owner.
    pub fn start(names: &[String]) -> anyhow::Result<Self> {
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut lab = Lab::new(&refs)?;
        let speakers = cluster::start(&mut lab, "", ARGS)?;
        let cluster = Self { lab, speakers, names: names.to_vec() };
        for (vip, mac) in cluster.addresses() {
            cluster::wait_for_owner(&cluster.lab, vip, mac, Duration::from_secs(10))
                .context("the cluster's first owners")?;
        }
        Ok(cluster)
    }
}

impl Speakers for Standalone {
    fn lab(&self) -> &Lab {
        &self.lab
    }

    fn pid(&self, i: usize) -> u32 {
        self.speakers[i].pid
    }

    fn kill(&mut self, i: usize) -> anyhow::Result<()> {
        self.speakers[i].signal(nix::sys::signal::Signal::SIGKILL)?;
        if let Some(mut child) = self.lab.take_child(self.speakers[i].pid) {
            child.wait()?;
        }
        Ok(())
    }

    fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        let host = self.speakers[i].host.clone();
        let config = cluster::config(&self.lab, &host, "");
        self.speakers[i] =
            Speaker::start(&mut self.lab, &host, &config, ARGS).context("restarting the speaker")?;
        Ok(())
    }
}

impl Soaked for Standalone {
    fn describe(&self) -> &'static str {
        "standalone speakers in the lab (network namespaces, a bridge, the real XDP programs, \
         --dead-man-ms 1000)"
    }

    fn lab(&self) -> &Lab {
        &self.lab
    }

    fn names(&self) -> &[String] {
        &self.names
    }

    fn addresses(&self) -> Vec<(Ipv4Addr, [u8; 6])> {
        let names: Vec<&str> = self.names.iter().map(String::as_str).collect();
        cluster::VIPS.iter().map(|vip| (*vip, self.lab.node(cluster::elected(*vip, &names)).mac)).collect()
    }

    fn kinds(&self) -> &'static [Kind] {
        &Kind::NODE
    }

    fn inflict(&mut self, victim: usize, kind: Kind, hold: Duration) -> anyhow::Result<()> {
        let host = self.speakers[victim].host.clone();
        faults::on_node(self, victim, &host, kind, hold)
    }

    fn changed(&mut self) -> anyhow::Result<Vec<String>> {
        // The addresses are the config's: nothing can move them.
        Ok(Vec::new())
    }

    fn logs(&self) -> Vec<(String, String)> {
        self.speakers.iter().map(|s| (s.host.name.clone(), s.log_text())).collect()
    }
}
