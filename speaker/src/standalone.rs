//! Standalone mode: the announcements come from a config file, reloaded on SIGHUP.

use std::{path::PathBuf, time::Duration};

use anyhow::Context as _;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info};

use crate::{
    announcer::Announcer,
    config,
    datapath::{AttachMode, Datapath},
    garp, host, plan,
};

pub struct Options {
    pub config: PathBuf,
    pub mode: AttachMode,
    pub dead_man: Duration,
    pub pin_dir: PathBuf,
}

/// Runs until SIGTERM or SIGINT, then withdraws everything and detaches.
pub async fn run(opts: Options) -> anyhow::Result<()> {
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;

    // Everything that can be wrong with the file is found before anything is attached.
    let (cfg, desired) = load(&opts)?;
    let datapath = Datapath::load(opts.dead_man, &opts.pin_dir)?;
    let sender = garp::Sender::new().context("opening a packet socket for gratuitous ARP")?;
    let mut announcer = Announcer::new(datapath, opts.mode, sender);
    announcer.datapath.beat()?;
    announcer.apply(desired, cfg.gratuitous)?;
    info!(node = cfg.node, addresses = announcer.current().len(), pin_dir = %opts.pin_dir.display(), "speaker ready");

    // Beat four times per bound: one late beat never stops the answers.
    let mut heartbeat = tokio::time::interval(opts.dead_man / 4);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = heartbeat.tick() => {
                if let Err(e) = announcer.datapath.beat() {
                    error!(error = %e, "heartbeat not written");
                }
            }
            _ = hup.recv() => reload(&opts, &mut announcer),
            _ = term.recv() => { info!("SIGTERM: withdrawing"); break }
            _ = int.recv() => { info!("SIGINT: withdrawing"); break }
        }
    }
    announcer.withdraw_all();
    Ok(())
}

fn load(opts: &Options) -> anyhow::Result<(config::Config, std::collections::BTreeSet<plan::Announcement>)> {
    let cfg = config::load(&opts.config)?;
    let host = host::discover().context("reading the host's interfaces")?;
    let desired = plan::resolve(&cfg, &host)
        .map_err(|source| config::LoadError::Invalid { path: opts.config.clone(), source })?;
    Ok((cfg, desired))
}

/// Applies the file again; on any error keeps the previous announcements and says why.
fn reload(opts: &Options, announcer: &mut Announcer) {
    let result = load(opts).and_then(|(cfg, desired)| Ok(announcer.apply(desired, cfg.gratuitous)?));
    match result {
        Ok(()) => info!(addresses = announcer.current().len(), "SIGHUP: config reloaded"),
        Err(e) => error!("SIGHUP: config not applied, keeping the previous one: {e:#}"),
    }
}
