use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};
use herald_speaker::{datapath::AttachMode, standalone, status};

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
    #[command(subcommand)]
    command: Option<Command>,
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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HERALD_LOG").unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let Some(config) = cli.config else {
        anyhow::bail!("no --config given; the Kubernetes mode is not built yet");
    };
    let opts = standalone::Options {
        config,
        mode: cli.xdp_mode,
        dead_man: Duration::from_millis(cli.dead_man_ms),
        pin_dir: cli.pin_dir,
        state_dir: cli.state_dir,
    };
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(standalone::run(opts))
}
