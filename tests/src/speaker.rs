//! A `herald-speaker` process in a lab node.

use std::{
    path::PathBuf,
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use nix::{sys::signal::Signal, unistd::Pid};
use speaker_common::TC_PROGRAM;

use crate::{
    lab::{Host, Lab},
    workspace_bin,
};

/// The program `--datapath xdp` puts on a lab veth where the kernel has the RX VLAN kfunc
/// (Linux 6.8), as [`attached`] lists it.
pub const XDP_BOUND: &str = "xdp/driver herald_xdp_meta";
/// The TC responder as [`attached`] lists it (`tcx/ingress` from Linux 6.6, `clsact/ingress`
/// before), to match the end of a line.
pub const TC: &str = "ingress herald_tc";

/// The `--datapath` values every datapath test runs with, and the program each puts on a lab
/// veth: TC ingress at the defaults (a veth's XDP replies need a program on its peer, which a
/// speaker cannot see), and asked for; XDP bound to the device where the kernel reports stripped
/// VLAN tags (Linux 6.8), asked for (the lab's switch ports run a pass program).
pub fn datapaths() -> Vec<(&'static str, &'static str)> {
    let mut modes = vec![("auto", TC), ("tc", TC)];
    if crate::kernel_at_least(6, 8) {
        modes.push(("xdp", XDP_BOUND));
    }
    modes
}

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
        // A bound on a failure, not a figure: the older kernels' suites run in an emulated VM,
        // where loading and verifying the programs alone can take several seconds.
        speaker.wait_log("speaker ready", Duration::from_secs(30))?;
        Ok(speaker)
    }

    /// Like [`Speaker::start`] without waiting.
    pub fn spawn(lab: &mut Lab, node: &Host, config: &str, args: &[&str]) -> anyhow::Result<Self> {
        let config_path = lab.workdir.join(format!("{}.toml", node.name));
        std::fs::write(&config_path, config)?;
        // A log per speaker: a second one on the node must not write over the first one's.
        static STARTED: AtomicU32 = AtomicU32::new(0);
        let log = lab.workdir.join(format!("{}-{}.log", node.name, STARTED.fetch_add(1, Ordering::Relaxed)));
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

    /// `herald-speaker explain ADDRESS` on its node, with its config and pins: the exit code and
    /// what it printed.
    pub fn explain(&self, address: &str) -> anyhow::Result<(i32, String)> {
        let bin = workspace_bin("herald-speaker");
        let args = [
            "explain",
            address,
            "--config",
            self.config.to_str().unwrap(),
            "--pin-dir",
            self.pin_dir.to_str().unwrap(),
        ];
        let out = self.host.output(bin.to_str().unwrap(), &args)?;
        let text =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        Ok((out.status.code().unwrap_or(-1), text))
    }

    /// A counter of its status (`counters: name=value ...`).
    pub fn counter(&self, name: &str) -> anyhow::Result<u64> {
        let status = self.status()?;
        let line = status.lines().find(|l| l.starts_with("counters:")).unwrap_or_default();
        let value = line.split_whitespace().find_map(|w| w.strip_prefix(name)?.strip_prefix('='));
        value.and_then(|v| v.parse().ok()).with_context(|| format!("no counter {name} in {status}"))
    }

    /// The CPU time its thread `name` has used (user and system).
    pub fn thread_cpu(&self, name: &str) -> anyhow::Result<Duration> {
        for task in std::fs::read_dir(format!("/proc/{}/task", self.pid))? {
            let dir = task?.path();
            if std::fs::read_to_string(dir.join("comm")).is_ok_and(|c| c.trim() == name) {
                return cpu_of(&dir.join("stat"));
            }
        }
        bail!("speaker {} has no thread {name}", self.pid)
    }

    /// The CPU time the whole process has used (user and system, all its threads).
    pub fn cpu(&self) -> anyhow::Result<Duration> {
        cpu_of(std::path::Path::new(&format!("/proc/{}/stat", self.pid)))
    }

    /// The programs attached to the node's eth0, as bpftool lists them: `xdp/driver NAME`,
    /// `tcx/ingress NAME` (or `clsact/ingress NAME` before Linux 6.6).
    pub fn attached(&self) -> anyhow::Result<Vec<String>> {
        attached(&self.host)
    }
}

/// When a speaker's log `line` was written (its RFC 3339 timestamp, UTC), in seconds since the
/// epoch: the captures' clock.
pub fn log_time(line: &str) -> Option<f64> {
    let at = line.get(..27)?.parse::<k8s_openapi::jiff::Timestamp>().ok()?;
    Some(at.as_microsecond() as f64 / 1e6)
}

/// User and system CPU time from a `/proc/.../stat` file.
fn cpu_of(stat: &std::path::Path) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(stat).with_context(|| stat.display().to_string())?;
    // After the command's closing parenthesis: utime and stime are fields 14 and 15.
    let fields: Vec<&str> = stat.rsplit_once(')').context("stat")?.1.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    // SAFETY: sysconf(3) reads a constant.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap_or(100).max(1);
    Ok(Duration::from_millis(ticks * 1000 / hz))
}

/// The programs attached to `host`'s eth0 (see [`Speaker::attached`]): XDP as `ip link` shows
/// it, TCX links as the kernel lists them, clsact filters as `tc` shows them. (Debian's bpftool
/// predates TCX.)
pub fn attached(host: &Host) -> anyhow::Result<Vec<String>> {
    let mut found = Vec::new();
    // "prog/xdp id 7 name herald_xdp_meta" (native) or "prog/xdpgeneric id 7 name ..."
    let link = host.run("ip", &["-d", "link", "show", "dev", "eth0"])?;
    let words: Vec<&str> = link.split_whitespace().collect();
    for w in words.windows(5) {
        if let [kind, "id", _, "name", name] = w
            && let Some(mode) = kind.strip_prefix("prog/")
        {
            found.push(format!("{} {name}", if mode == "xdp" { "xdp/driver" } else { "xdp/generic" }));
        }
    }
    let tcx = host.in_netns(|| {
        use aya::programs::{SchedClassifier, TcAttachType};
        match SchedClassifier::query_tcx(c"eth0", TcAttachType::Ingress) {
            Ok((_, programs)) => Ok(programs
                .iter()
                .filter_map(|p| p.name_as_str().map(|n| format!("tcx/ingress {n}")))
                .collect::<Vec<_>>()),
            // No TCX on this kernel.
            Err(_) => Ok(Vec::new()),
        }
    })?;
    found.extend(tcx);
    // "filter protocol all pref 49152 bpf chain 0 handle 0x1 herald_tc direct-action ..."
    let filters = host.run("tc", &["filter", "show", "dev", "eth0", "ingress"]).unwrap_or_default();
    for line in filters.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if let Some(i) = words.iter().position(|w| *w == "direct-action") {
            found.push(format!("clsact/ingress {}", words[i - 1].split(':').next().unwrap_or("?")));
        }
    }
    Ok(found)
}

/// Herald's program at `host`'s eth0 TC ingress: its id, and what holds it there (the TCX
/// link, by id; before Linux 6.6, the clsact filter, by priority and handle). A speaker that
/// hands over (`--on-exit keep`) leaves the holder to the next one, which runs its own program
/// in it.
pub fn at_tc(host: &Host) -> anyhow::Result<(u32, String)> {
    let tcx = host.in_netns(|| {
        use aya::programs::{SchedClassifier, TcAttachType};
        Ok(SchedClassifier::query_tcx(c"eth0", TcAttachType::Ingress)
            .map(|(_, programs)| programs)
            .unwrap_or_default()
            .iter()
            .find(|p| p.name_as_str().is_some_and(speaker_common::is_herald_program))
            .map(|p| p.id()))
    })?;
    if let Some(program) = tcx {
        let link = link_of(program).context("no TCX link runs Herald's program")?;
        return Ok((program, format!("TCX link {link}")));
    }
    // "filter protocol all pref 1 bpf chain 0 handle 0x4852 herald_tc direct-action not_in_hw id 41 ..."
    let filters = host.run("tc", &["filter", "show", "dev", "eth0", "ingress"])?;
    let line = filters
        .lines()
        .find(|l| l.contains(&format!(" {TC_PROGRAM}")))
        .with_context(|| format!("no Herald program at TC ingress:\n{filters}"))?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let after = |w: &str| words.iter().position(|x| *x == w).and_then(|i| words.get(i + 1)).copied();
    let (Some(id), Some(pref), Some(handle)) = (after("id"), after("pref"), after("handle")) else {
        bail!("a filter line unlike tc's: {line}");
    };
    Ok((id.parse()?, format!("clsact filter pref {pref} handle {handle}")))
}

/// The program at `host`'s eth0 XDP hook, and the id of the link that holds it.
pub fn at_xdp(host: &Host) -> anyhow::Result<(u32, String)> {
    let shown = host.run("ip", &["-d", "link", "show", "dev", "eth0"])?;
    let words: Vec<&str> = shown.split_whitespace().collect();
    let program: u32 = words
        .windows(3)
        .find_map(|w| (w[0] == "prog/xdp" && w[1] == "id").then(|| w[2].parse()))
        .with_context(|| {
            format!(
                "no XDP program:
{shown}"
            )
        })??;
    let link = link_of(program).context("no XDP link runs the program")?;
    Ok((program, format!("XDP link {link}")))
}

/// The id of the BPF link that runs `program`, if one does.
fn link_of(program: u32) -> Option<u32> {
    aya::programs::loaded_links().filter_map(Result::ok).find(|l| l.program_id() == program).map(|l| l.id())
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
