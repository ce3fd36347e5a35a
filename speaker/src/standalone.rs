//! Standalone mode: the addresses come from a config file (reloaded on SIGHUP), and, with a
//! `[cluster]` section, each is announced by the one live speaker the election picks.

use std::{collections::BTreeSet, path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context as _;
use herald_kube::report;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info, warn};

use crate::{
    announcer::Announcer,
    cluster::{Alive, Membership, PeerMacs},
    config::{self, Config},
    conflict,
    datapath::{self, Datapath},
    garp, handback, host,
    metrics::{Endpoint, Metrics},
    plan::{self, Announcement},
    state,
};

pub struct Options {
    pub config: PathBuf,
    pub datapath: datapath::Options,
    /// Where /metrics, /healthz and /readyz are served.
    pub telemetry: std::net::SocketAddr,
}

/// How long a speaker with a cluster waits to see every configured member before it goes with
/// the members it sees (alone, if none answered).
const JOIN_TIMEOUT: Duration = Duration::from_secs(1);

/// What the speaker works from: the config and what it asks of this host.
struct Wanted {
    config: Config,
    resolved: BTreeSet<Announcement>,
}

/// Runs until SIGTERM or SIGINT; then withdraws everything, detaches, and leaves the cluster
/// (so the others take over at once).
pub async fn run(opts: Options) -> anyhow::Result<()> {
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;

    // Everything that can be wrong with the file is found before anything is attached.
    let mut wanted = load(&opts)?;
    let metrics = Arc::new(Metrics::default());
    let mut datapath = Datapath::load(&opts.datapath)?;
    if let Some(logs) = datapath.take_logs() {
        tokio::spawn(datapath::forward_logs(logs));
    }
    let sender = garp::Sender::new().context("opening a packet socket for gratuitous ARP")?;
    let mut announcer = Announcer::new(datapath, sender, metrics.clone());
    announcer.datapath.beat()?;
    // Ready on every interface an address may need, before any is taken over.
    announcer.stand_by(plan::interfaces(&wanted.resolved));
    let registry = metrics.registry(opts.datapath.pin_dir.clone(), announcer.names.clone());
    let endpoint = Endpoint::serve(opts.telemetry, registry).await?;
    let mut membership = match &wanted.config.cluster {
        Some(cluster) => {
            let own_macs = host::discover().context("reading the host's interfaces")?.own_macs();
            Some(
                Membership::start(&wanted.config.node, own_macs, cluster, metrics.clone())
                    .await
                    .with_context(|| format!("starting membership on {}", cluster.bind))?,
            )
        }
        None => None,
    };
    let mut peer_macs = membership.as_ref().map(|m| m.peer_macs.clone());
    let state_path = state::path(&opts.datapath.state_dir, &opts.datapath.pin_dir);
    // `None` until the speaker has joined (or found itself alone): announce nothing before.
    let mut joined: Option<Alive> = None;
    let join_deadline = tokio::time::Instant::now() + JOIN_TIMEOUT;
    if membership.is_none() {
        apply(&mut announcer, &wanted, None, None)?;
        endpoint.set_ready(true);
    }
    info!(node = wanted.config.node, pin_dir = %opts.datapath.pin_dir.display(), "speaker ready");

    // Beat four times per bound: one late beat never stops the answers.
    let mut heartbeat = tokio::time::interval(opts.datapath.dead_man / 4);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut refresh = wanted
        .config
        .gratuitous
        .refresh
        .map(|every| tokio::time::interval_at(tokio::time::Instant::now() + every, every));
    let mut conflicts = tokio::time::interval(conflict::POLL);
    loop {
        let hold = announcer.hold_deadline();
        tokio::select! {
            _ = conflicts.tick() => drop(announcer.poll_conflicts()),
            Some(macs) = peer_macs_change(&mut peer_macs) => {
                if let Err(e) = announcer.datapath.add_peers(macs) {
                    error!(error = %e, "the other speakers' MACs not written");
                }
            }
            _ = heartbeat.tick() => {
                if let Err(e) = announcer.datapath.beat() {
                    error!(error = %e, "heartbeat not written");
                }
                if !announcer.stale().is_empty() {
                    announcer.settle();
                }
                let report = state::render(&wanted.config.node, &announcer.interfaces(), joined.as_ref(), announcer.current(), &metrics);
                if let Err(e) = state::write(&state_path, &report) {
                    warn!(path = %state_path.display(), error = %e, "state file not written");
                }
            }
            _ = tick(&mut refresh) => announcer.refresh(),
            alive = membership_change(&mut membership, joined.is_none().then_some(join_deadline)) => {
                if let Some(cluster) = &wanted.config.cluster
                    && handback::is_join(joined.as_ref(), &alive)
                {
                    announcer.hold_gains(handback::hold(&cluster.timers), std::time::Instant::now());
                }
                // Joining is not a takeover; later views are.
                let takeover = joined.is_some().then(std::time::Instant::now);
                match apply(&mut announcer, &wanted, Some(&alive), takeover) {
                    Ok(changed) => {
                        // Joining is not a change of owner; later views are.
                        if joined.is_some() {
                            metrics.ownership_changes.inc_by(changed as u64);
                        }
                        announcer.reannounce(wanted.config.gratuitous);
                    }
                    Err(e) => error!("could not apply the election: {}", report::chain(&e)),
                }
                joined = Some(alive);
                endpoint.set_ready(true);
            }
            _ = until(hold), if hold.is_some() => {
                let seen = announcer.end_hold();
                match apply(&mut announcer, &wanted, joined.as_ref(), seen.filter(|_| joined.is_some())) {
                    Ok(changed) => {
                        metrics.ownership_changes.inc_by(changed as u64);
                        announcer.reannounce(wanted.config.gratuitous);
                    }
                    Err(e) => error!("could not apply the election: {}", report::chain(&e)),
                }
            }
            _ = hup.recv() => reload(&opts, &mut wanted, &mut announcer, joined.as_ref()),
            _ = term.recv() => { info!("SIGTERM: leaving and withdrawing"); break }
            _ = int.recv() => { info!("SIGINT: leaving and withdrawing"); break }
        }
    }
    // Silent first, then gone: the others take over when they hear this one leave, and never
    // answer beside it.
    endpoint.set_ready(false);
    announcer.silence();
    if let Some(membership) = membership {
        membership.leave().await;
    }
    announcer.withdraw_all();
    let _ = std::fs::remove_file(&state_path);
    Ok(())
}

/// Resolves at `deadline`; never without one.
pub(crate) async fn until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The other speakers' MACs, each time more are seen; never, without a cluster.
async fn peer_macs_change(macs: &mut Option<tokio::sync::watch::Receiver<PeerMacs>>) -> Option<PeerMacs> {
    match macs {
        Some(rx) => {
            rx.changed().await.ok()?;
            Some(rx.borrow_and_update().clone())
        }
        None => std::future::pending().await,
    }
}

/// The next tick of an optional interval; never, without one.
async fn tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(interval) => drop(interval.tick().await),
        None => std::future::pending().await,
    }
}

/// The next view of the live members (see [`Membership::next_view`]); never, without a cluster.
async fn membership_change(
    membership: &mut Option<Membership>,
    join_deadline: Option<tokio::time::Instant>,
) -> Alive {
    match membership {
        Some(m) => m.next_view(join_deadline).await,
        None => std::future::pending().await,
    }
}

fn load(opts: &Options) -> anyhow::Result<Wanted> {
    let config = config::load(&opts.config)?;
    let host = host::discover().context("reading the host's interfaces")?;
    let resolved = plan::resolve(&config, &host)
        .map_err(|source| config::LoadError::Invalid { path: opts.config.clone(), source })?;
    Ok(Wanted { config, resolved })
}

/// Applies what this node should announce now.
fn apply(
    announcer: &mut Announcer,
    wanted: &Wanted,
    alive: Option<&Alive>,
    takeover: Option<std::time::Instant>,
) -> anyhow::Result<usize> {
    let desired = plan::elected(&wanted.config, &wanted.resolved, alive);
    Ok(announcer.apply(desired, wanted.config.gratuitous, takeover)?)
}

/// Applies the file again; on any error keeps the previous config and says why. Membership
/// settings need a restart: a changed `[cluster]` section is refused.
fn reload(opts: &Options, wanted: &mut Wanted, announcer: &mut Announcer, alive: Option<&Alive>) {
    let result = load(opts).and_then(|new| {
        anyhow::ensure!(
            new.config.cluster == wanted.config.cluster && new.config.node == wanted.config.node,
            "`node` and the [cluster] section change only with a restart"
        );
        let membership_ready = alive.is_some() || new.config.cluster.is_none();
        if membership_ready {
            apply(announcer, &new, alive, None)?;
        }
        announcer.stand_by(plan::interfaces(&new.resolved));
        *wanted = new;
        Ok(())
    });
    match result {
        Ok(()) => info!(addresses = announcer.current().len(), "SIGHUP: config reloaded"),
        Err(e) => error!("SIGHUP: config not applied, keeping the previous one: {}", report::chain(&e)),
    }
}
