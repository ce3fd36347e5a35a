//! A `herald-speaker` process in a lab node.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use nix::{sys::signal::Signal, unistd::Pid};

use crate::{
    lab::{Host, Lab},
    workspace_bin,
};

pub struct Speaker {
    pub pid: u32,
    pub config: PathBuf,
    pub log: PathBuf,
    pub pin_dir: PathBuf,
    pub host: Host,
}

impl Speaker {
    /// Writes `config` and starts a speaker on `node` with it and `args`; waits until it says
    /// it is ready. Stderr goes to a log in the lab's workdir.
    pub fn start(lab: &mut Lab, node: &Host, config: &str, args: &[&str]) -> anyhow::Result<Self> {
        let speaker = Self::spawn(lab, node, config, args)?;
        speaker.wait_log("speaker ready", Duration::from_secs(10))?;
        Ok(speaker)
    }

    /// Like [`Speaker::start`] without waiting.
    pub fn spawn(lab: &mut Lab, node: &Host, config: &str, args: &[&str]) -> anyhow::Result<Self> {
        let config_path = lab.workdir.join(format!("{}.toml", node.name));
        std::fs::write(&config_path, config)?;
        let log = lab.workdir.join(format!("{}-{}.log", node.name, Instant::now().elapsed().as_nanos()));
        let pin_dir = lab.pin_dir(node);
        let bin = workspace_bin("herald-speaker");
        let mut argv =
            vec!["--config", config_path.to_str().unwrap(), "--pin-dir", pin_dir.to_str().unwrap()];
        argv.extend_from_slice(args);
        let pid = lab.spawn(node, bin.to_str().unwrap(), &argv, Some(&log))?;
        Ok(Self { pid, config: config_path, log, pin_dir, host: node.clone() })
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `needle`; fails early if the speaker exited.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> anyhow::Result<()> {
        wait_for_log(self.pid, &self.log, needle, timeout)
    }

    pub fn signal(&self, signal: Signal) -> anyhow::Result<()> {
        nix::sys::signal::kill(Pid::from_raw(self.pid as i32), signal).context("signalling the speaker")
    }

    /// Rewrites the config file and sends SIGHUP; waits for the speaker's verdict on it.
    pub fn reload(&self, config: &str) -> anyhow::Result<()> {
        let before = self.log_text().matches("SIGHUP").count();
        std::fs::write(&self.config, config)?;
        self.signal(Signal::SIGHUP)?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.log_text().matches("SIGHUP").count() == before {
            if Instant::now() > deadline {
                bail!("no reaction to SIGHUP:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn stop(self, lab: &mut Lab) -> anyhow::Result<std::process::ExitStatus> {
        self.signal(Signal::SIGTERM)?;
        let mut child = lab.take_child(self.pid).context("not a lab child")?;
        Ok(child.wait()?)
    }

    /// `herald-speaker status` for this speaker's pins.
    pub fn status(&self) -> anyhow::Result<String> {
        let bin = workspace_bin("herald-speaker");
        self.host.run(bin.to_str().unwrap(), &["status", "--pin-dir", self.pin_dir.to_str().unwrap()])
    }

    /// The XDP program attached to the node's eth0, as `ip link` shows it (`None`: none).
    pub fn attached(&self) -> anyhow::Result<Option<String>> {
        let out = self.host.run("ip", &["link", "show", "dev", "eth0"])?;
        Ok(out.split_whitespace().skip_while(|w| *w != "prog/xdp").nth(4).map(str::to_owned))
    }
}

/// Waits until the log at `log` of speaker process `pid` contains `needle`; fails early, with
/// the log, if the process exited.
pub fn wait_for_log(pid: u32, log: &std::path::Path, needle: &str, timeout: Duration) -> anyhow::Result<()> {
    let text = || std::fs::read_to_string(log).unwrap_or_default();
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if text().contains(needle) {
            return Ok(());
        }
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            bail!("speaker exited before logging {needle:?}:\n{}", text());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("speaker did not log {needle:?} within {timeout:?}:\n{}", text())
}
