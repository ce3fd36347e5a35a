//! Standalone mode: the addresses come from a config file (reloaded on SIGHUP), resolved on the
//! host's interfaces as they are (followed as the kernel reports changes), and, with a
//! `[cluster]` section, each is announced by the one live speaker the election picks.

mod desired;
pub mod explain;

use std::{collections::BTreeSet, path::PathBuf, time::Duration};

use anyhow::Context as _;
use herald_kube::report;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tracing::{error, info, warn};

pub use self::desired::{elected, resolve};
use crate::{
    announcement::{self, Announcement},
    cluster::Alive,
    config::{self, Config, Gratuitous},
    conflict::Conflict,
    election, host,
    netlink::HostEvents,
    runtime::{self, Changed, Desired, Runtime},
};

pub struct Options {
    pub config: PathBuf,
    pub runtime: runtime::Options,
}

/// Runs until SIGTERM or SIGINT (see [`Runtime::run`]).
pub async fn run(opts: Options) -> anyhow::Result<()> {
    // Everything that can be wrong with the file is found before anything is attached.
    let source = ConfigFile::load(opts.config)?;
    let cluster = source.wanted.config.cluster.clone();
    Runtime::start(opts.runtime).await?.run(source, cluster).await
}

/// The config file, as a source of what to announce.
struct ConfigFile {
    path: PathBuf,
    wanted: Wanted,
    hup: Signal,
    /// The kernel's word on link and address changes, and a slow resync should it be missing.
    host_events: Option<HostEvents>,
    resync: tokio::time::Interval,
}

/// How often the host is read again without news from the kernel.
const RESYNC: Duration = Duration::from_secs(10);
/// Changes that come together (a bond failover, an interface re-created) are read once.
const SETTLE: Duration = Duration::from_millis(50);

/// What the speaker works from: the config and what it asks of this host.
struct Wanted {
    config: Config,
    resolved: BTreeSet<Announcement>,
}

impl ConfigFile {
    fn load(path: PathBuf) -> anyhow::Result<Self> {
        let hup = signal(SignalKind::hangup())?;
        let wanted = read(&path)?;
        let host_events = HostEvents::open()
            .inspect_err(
                |e| warn!(error = %e, "no netlink news of host changes; reading the host every 10 s"),
            )
            .ok();
        let mut resync = tokio::time::interval(RESYNC);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Ok(Self { path, wanted, hup, host_events, resync })
    }

    /// Reads the host again and resolves the config on it: `true` when what is announced where
    /// changed (a MAC, an interface re-created, a subnet renumbered).
    fn follow_host(&mut self) -> bool {
        let resolved = host::discover(&Default::default())
            .map_err(anyhow::Error::from)
            .and_then(|host| Ok(desired::resolve(&self.wanted.config, &host)?));
        match resolved {
            Ok(resolved) if resolved != self.wanted.resolved => {
                info!(addresses = resolved.len(), "the host's interfaces changed: following them");
                self.wanted.resolved = resolved;
                true
            }
            Ok(_) => false,
            Err(e) => {
                error!(
                    "the host's interfaces changed, and the config no longer resolves on them; keeping what is announced: {}",
                    report::chain(&e)
                );
                false
            }
        }
    }

    /// Reads the file again; on any error keeps the previous config and says why. Membership
    /// settings need a restart: a changed `node` or `[cluster]` section is refused.
    fn reload(&mut self) {
        let result = read(&self.path).and_then(|new| {
            anyhow::ensure!(
                new.config.cluster == self.wanted.config.cluster
                    && new.config.node == self.wanted.config.node,
                "`node` and the [cluster] section change only with a restart"
            );
            Ok(new)
        });
        match result {
            Ok(new) => {
                info!(addresses = new.resolved.len(), "SIGHUP: config reloaded");
                self.wanted = new;
            }
            Err(e) => error!("SIGHUP: config not applied, keeping the previous one: {}", report::chain(&e)),
        }
    }
}

impl runtime::Source for ConfigFile {
    fn node(&self) -> &str {
        &self.wanted.config.node
    }

    fn gratuitous(&self) -> Gratuitous {
        self.wanted.config.gratuitous
    }

    fn stand_by(&mut self) -> BTreeSet<(u32, String)> {
        announcement::interfaces(&self.wanted.resolved)
    }

    fn desired(&mut self, alive: Option<&Alive>) -> Option<Desired> {
        let config = &self.wanted.config;
        let succession = alive.map(|alive| election::succession(&config.node, &config.vips, alive));
        Some(Desired {
            announce: elected(config, &self.wanted.resolved, alive),
            stand_by: Some(self.stand_by()),
            succession: succession.unwrap_or_default(),
            // No Service proxy binds a config file's addresses on the other nodes.
            elsewhere: Default::default(),
        })
    }

    async fn changed(&mut self) -> Changed {
        loop {
            tokio::select! {
                _ = self.hup.recv() => {
                    self.reload();
                    return Changed::default();
                }
                news = HostEvents::next(&mut self.host_events) => {
                    if let Err(e) = news {
                        warn!(error = %e, "netlink news of host changes lost; reading the host every 10 s");
                        self.host_events = None;
                    }
                    tokio::time::sleep(SETTLE).await;
                }
                _ = self.resync.tick() => {}
            }
            if self.follow_host() {
                return Changed::default();
            }
        }
    }

    /// The announcer's warning is all a config file's user gets.
    fn conflicts(&mut self, _: Vec<Conflict>) {}
}

fn read(path: &std::path::Path) -> anyhow::Result<Wanted> {
    let config = config::load(path)?;
    let host = host::discover(&Default::default()).context("reading the host's interfaces")?;
    let resolved = desired::resolve(&config, &host)
        .map_err(|source| config::LoadError::Invalid { path: path.to_owned(), source })?;
    Ok(Wanted { config, resolved })
}

/// `herald-speaker explain ADDRESS`: the chain for `address` on this node, from the config file
/// at `path`, the host, and the speaker that pins under `pin_dir` (with its state file under
/// `state_dir`); and whether every link holds.
pub fn explain_report(
    path: &std::path::Path,
    pin_dir: &std::path::Path,
    state_dir: &std::path::Path,
    address: std::net::IpAddr,
) -> anyhow::Result<(String, bool)> {
    let config = config::load(path)?;
    let host = host::discover(&Default::default()).map_err(|e| format!("reading the host's interfaces: {e}"));
    let running = running(pin_dir, state_dir);
    let file = path.display().to_string();
    let links = explain::explain(
        &config,
        &file,
        host.as_ref().map_err(Clone::clone),
        running.as_ref().map_err(Clone::clone),
        address,
    );
    Ok((crate::explain::render(&links), links.iter().all(|l| l.holds)))
}

/// What the speaker that pins under `pin_dir` says, or why there is none to ask.
fn running(pin_dir: &std::path::Path, state_dir: &std::path::Path) -> Result<explain::Running, String> {
    use crate::{clock, pinned, state_file, status_command};
    let beat =
        pinned::heartbeat(pin_dir).map_err(|_| format!("no speaker runs with {}", pin_dir.display()))?;
    if !pinned::speaker_alive(&beat) {
        return Err(format!(
            "the speaker (pid {}) is gone: its programs are detached, nothing is answered",
            beat.pid
        ));
    }
    let now_ns = clock::monotonic_ns();
    let silent = (!status_command::answering(&beat, now_ns)).then(|| {
        format!(
            "its XDP programs answer nothing: heartbeat {}",
            status_command::heartbeat_line(&beat, now_ns, true)
        )
    });
    let state = std::fs::read_to_string(state_file::path(state_dir, pin_dir)).unwrap_or_default();
    Ok(explain::Running {
        alive: state_file::alive(&state),
        entries: pinned::entries(pin_dir).map_err(|e| format!("reading {}: {e}", pin_dir.display()))?,
        silent,
        not_announced: state
            .lines()
            .filter(|l| l.starts_with("not announced: "))
            .map(str::to_owned)
            .collect(),
        now_ns,
    })
}
