use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use herald_speaker::{
    check,
    datapath::{self, LogLevel, Mode},
    kubernetes, runtime, standalone, status_command,
};

/// Answers ARP for the addresses this node announces, from an XDP program.
#[derive(Parser)]
#[command(version, args_conflicts_with_subcommands = true)]
struct Cli {
    /// Standalone mode: announce the addresses listed in this TOML file (SIGHUP reloads it).
    #[arg(long, short, global = true, env = "HERALD_CONFIG")]
    config: Option<PathBuf>,
    /// Where the responder runs: XDP in the driver where it can know every request's VLAN, TC
    /// ingress elsewhere (auto); or only one of them.
    #[arg(long, global = true, env = "HERALD_DATAPATH", value_enum, default_value = "auto")]
    datapath: Mode,
    /// What the BPF programs log (into the speaker's log, target herald::xdp). Fixed when they
    /// load; off costs nothing.
    #[arg(long, env = "HERALD_XDP_LOG", value_enum, default_value = "off")]
    xdp_log: LogLevel,
    /// Stop answering when the speaker has not proved it is alive for this long (ms). Fixed when
    /// the program loads.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(100..=60_000))]
    dead_man_ms: u64,
    /// bpffs directory for the pinned maps (a bpffs is mounted on its parent if none is).
    #[arg(long, global = true, env = "HERALD_PIN_DIR", default_value = "/sys/fs/bpf/herald")]
    pin_dir: PathBuf,
    /// Directory of the state file that `status` reads (members, owned addresses, counters).
    #[arg(long, global = true, env = "HERALD_STATE_DIR", default_value = "/run/herald")]
    state_dir: PathBuf,
    /// What becomes of the BPF programs when the speaker stops: detached (the host as it was),
    /// or kept attached, idle, for the next speaker to take over in place (no re-attach, no NIC
    /// ring rebuilt, no gap at the hook; `herald-speaker cleanup` removes them).
    #[arg(long, env = "HERALD_ON_EXIT", value_enum, default_value = "detach")]
    on_exit: datapath::OnExit,
    /// Where /metrics, /healthz and /readyz are served.
    #[arg(long, env = "HERALD_TELEMETRY_ADDR", default_value = "0.0.0.0:7472")]
    telemetry: std::net::SocketAddr,
    #[command(flatten)]
    kube: KubeArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

/// Kubernetes mode (without --config): in-cluster config, or KUBECONFIG outside a cluster.
#[derive(clap::Args)]
struct KubeArgs {
    /// This node's name, as its Node object has it (the DaemonSet passes spec.nodeName).
    #[arg(long, env = "NODE_NAME")]
    node_name: Option<String>,
    /// The namespace of the IPAddressPools, L2Advertisements and ServiceL2Statuses.
    #[arg(long, env = "POD_NAMESPACE", default_value = "metallb-system")]
    namespace: String,
    /// Announce Services of this loadBalancerClass only; without it, Services that have none.
    #[arg(long, env = "HERALD_LB_CLASS")]
    lb_class: Option<String>,
    /// The membership key: a file (a mounted Secret) of at least 16 bytes.
    #[arg(long, env = "HERALD_CLUSTER_KEY_FILE", default_value = "/etc/herald/memberlist/secretkey")]
    cluster_key_file: PathBuf,
    /// MetalLB's interface exclusions: `excludel2.yaml` of the `metallb-excludel2` ConfigMap
    /// (regular expressions under `announcedInterfacesToExclude`), mounted; none when absent.
    #[arg(long, env = "HERALD_EXCLUDEL2_FILE", default_value = "/etc/herald/excludel2/excludel2.yaml")]
    exclude_interfaces_file: PathBuf,
    /// UDP port of the membership, on the node's InternalIP.
    #[arg(long, global = true, env = "HERALD_MEMBERSHIP_PORT", default_value_t = 7946)]
    membership_port: u16,
}

#[derive(Subcommand)]
enum Command {
    /// Print what the running speaker announces, its reply counters and heartbeat age.
    Status,
    /// Why ADDRESS is answered by this node, by another, or by none (standalone mode, with
    /// --config; in Kubernetes, `kubectl herald explain`). Exit 1 if a link is broken.
    Explain { address: std::net::IpAddr },
    /// Remove what speakers left attached for the next one (--on-exit keep): pinned links,
    /// the responder's TC filters, rx VLAN offload turned off. For an uninstall; refused while
    /// a speaker runs with the pin directory.
    Cleanup,
    /// Check what this node gives Herald (kernel, capabilities, seccomp, bpffs, each
    /// interface's hook, IPv6, the membership port, the API server); exit 1 if something is
    /// missing.
    Check {
        /// Judge this interface (repeatable); default: every one Herald could announce on.
        #[arg(long = "interface", value_name = "NAME")]
        interfaces: Vec<String>,
    },
}

/// `explain`: the report, and exit 1 (as `check`) when a link is broken.
fn explain(cli: &Cli, address: std::net::IpAddr) -> anyhow::Result<()> {
    let Some(config) = &cli.config else {
        anyhow::bail!(
            "explain reads the config file (--config); in Kubernetes, run `kubectl herald explain {address}`"
        );
    };
    let (report, answered) = standalone::explain_report(config, &cli.pin_dir, &cli.state_dir, address)?;
    print!("{report}");
    if answered { Ok(()) } else { Err(SomethingMissing.into()) }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Status) => {
            status_command::report(&cli.pin_dir, &cli.state_dir).map(|report| print!("{report}"))
        }
        Some(Command::Check { ref interfaces }) => check(&cli, interfaces),
        Some(Command::Explain { address }) => explain(&cli, address),
        Some(Command::Cleanup) => {
            datapath::cleanup(&cli.pin_dir, &cli.state_dir).map_err(Into::into).map(|done| {
                if done.is_empty() {
                    println!("nothing of Herald's left on this node");
                }
                for line in done {
                    println!("{line}");
                }
            })
        }
        None => run(cli),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<SomethingMissing>() => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("herald-speaker: {}", herald_kube::report::chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// `check` found a requirement missing (the report says which): exit 1 without more words.
#[derive(Debug, thiserror::Error)]
#[error("a requirement is missing")]
struct SomethingMissing;

fn check(cli: &Cli, interfaces: &[String]) -> anyhow::Result<()> {
    let kubernetes = cli.config.is_none();
    let membership_port = match &cli.config {
        Some(path) => herald_speaker::config::load(path)?.cluster.map(|c| c.bind.port()),
        None => Some(cli.kube.membership_port),
    };
    let probe = check::Probe {
        pin_dir: &cli.pin_dir,
        mode: cli.datapath,
        interfaces: (!interfaces.is_empty()).then(|| interfaces.to_vec()),
        membership_port,
    };
    let mut facts = check::probe(&probe);
    if kubernetes {
        let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        facts.api_server = Some(tokio.block_on(async {
            match kube::Client::try_default().await {
                Ok(client) => check::api_server(&client).await,
                Err(e) => Err(herald_kube::report::Chain(&e).to_string()),
            }
        }));
    }
    let verdicts = check::verdicts(&facts);
    println!("herald-speaker check ({} mode)", if kubernetes { "Kubernetes" } else { "standalone" });
    print!("{}", check::Report(&verdicts));
    if check::any_missing(&verdicts) {
        return Err(SomethingMissing.into());
    }
    Ok(())
}

fn run(cli: Cli) -> anyhow::Result<()> {
    // The programs' statements come at the level they were loaded with.
    let xdp = cli.xdp_log.filter().map(|level| format!("herald::xdp={level}"));
    herald_kube::telemetry::init_logs_with(&xdp.into_iter().collect::<Vec<_>>());
    check::at_start(&check::Probe {
        pin_dir: &cli.pin_dir,
        mode: cli.datapath,
        interfaces: None,
        membership_port: None,
    })?;
    let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let datapath = datapath::Options {
        dead_man: Duration::from_millis(cli.dead_man_ms),
        pin_dir: cli.pin_dir,
        state_dir: cli.state_dir,
        mode: cli.datapath,
        log: cli.xdp_log,
        on_exit: cli.on_exit,
    };
    let run_opts = runtime::Options { datapath, telemetry: cli.telemetry };
    if let Some(config) = cli.config {
        let opts = standalone::Options { config, runtime: run_opts };
        return tokio.block_on(standalone::run(opts));
    }
    let k = cli.kube;
    let Some(node) = k.node_name else {
        anyhow::bail!("give --config FILE (standalone), or NODE_NAME (Kubernetes mode)");
    };
    let opts = kubernetes::Options {
        node,
        namespace: k.namespace,
        class: k.lb_class,
        key_file: k.cluster_key_file,
        exclude_file: k.exclude_interfaces_file,
        membership_port: k.membership_port,
        runtime: run_opts,
    };
    tokio.block_on(async {
        let client = kube::Client::try_default().await.context("connecting to the Kubernetes API")?;
        kubernetes::run(client, opts).await
    })
}
