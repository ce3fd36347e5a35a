use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use herald_speaker::{datapath::AttachMode, kubernetes, standalone, status};

/// Answers ARP for the addresses this node announces, from an XDP program.
#[derive(Parser)]
#[command(version, args_conflicts_with_subcommands = true)]
struct Cli {
    /// Standalone mode: announce the addresses listed in this TOML file (SIGHUP reloads it).
    #[arg(long, short, env = "HERALD_CONFIG")]
    config: Option<PathBuf>,
    /// XDP attach mode: native, falling back to generic (auto); or only one of them.
    #[arg(long, value_enum, default_value = "auto")]
    xdp_mode: AttachMode,
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
    /// UDP port of the membership, on the node's InternalIP.
    #[arg(long, env = "HERALD_MEMBERSHIP_PORT", default_value_t = 7946)]
    membership_port: u16,
    /// Where /metrics, /healthz and /readyz are served.
    #[arg(long, env = "HERALD_TELEMETRY_ADDR", default_value = "0.0.0.0:7472")]
    telemetry: std::net::SocketAddr,
}

#[derive(Subcommand)]
enum Command {
    /// Print what the running speaker announces, its reply counters and heartbeat age.
    Status,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Status) => {
            status::report(&cli.pin_dir, &cli.state_dir).map(|report| print!("{report}"))
        }
        None => run(cli),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("herald-speaker: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    herald_controller::telemetry::init_logs();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let dead_man = Duration::from_millis(cli.dead_man_ms);
    if let Some(config) = cli.config {
        let opts = standalone::Options {
            config,
            mode: cli.xdp_mode,
            dead_man,
            pin_dir: cli.pin_dir,
            state_dir: cli.state_dir,
        };
        return runtime.block_on(standalone::run(opts));
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
        membership_port: k.membership_port,
        telemetry: k.telemetry,
        mode: cli.xdp_mode,
        dead_man,
        pin_dir: cli.pin_dir,
        state_dir: cli.state_dir,
    };
    runtime.block_on(async {
        let client = kube::Client::try_default().await.context("connecting to the Kubernetes API")?;
        kubernetes::run(client, opts).await
    })
}
