use std::process::ExitCode;

use clap::{Parser, Subcommand};
use herald_controller::run::{self, Options};

/// Gives LoadBalancer Services addresses from MetalLB-compatible IPAddressPools.
#[derive(Parser)]
#[command(version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: Run,
}

#[derive(Subcommand)]
enum Command {
    /// Prints MetalLB's IPAddressPools and L2Advertisements as YAML to create in Herald's
    /// namespace, without the fields the API server wrote (run it before removing MetalLB).
    Migrate {
        /// MetalLB's namespace.
        #[arg(long, default_value = "metallb-system")]
        from: String,
        /// Herald's namespace.
        #[arg(long, default_value = "herald-system")]
        to: String,
    },
}

/// Runs the controller (the default).
#[derive(clap::Args)]
struct Run {
    /// Handle Services of this loadBalancerClass only; without it, Services that have none.
    #[arg(long, env = "HERALD_LB_CLASS")]
    lb_class: Option<String>,
    /// The namespace whose IPAddressPools are used (MetalLB's, for a drop-in switch).
    #[arg(long, env = "POD_NAMESPACE", default_value = "metallb-system")]
    pool_namespace: String,
    /// This replica's name, in Events and the leader election's Lease; unique per replica.
    #[arg(long, env = "POD_NAME", default_value = "herald-controller")]
    instance: String,
    /// Seconds a leader's Lease lasts without renewal (replicas renew every third of it).
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(3..=300))]
    lease_seconds: u64,
    /// The Secret holding the speakers' membership key; created with a random key if missing.
    /// Empty: the controller leaves the key to the user.
    #[arg(long, env = "HERALD_MEMBERLIST_SECRET", default_value = "herald-memberlist")]
    memberlist_secret: String,
    /// Where /metrics, /healthz and /readyz are served.
    #[arg(long, env = "HERALD_TELEMETRY_ADDR", default_value = "0.0.0.0:7472")]
    telemetry: std::net::SocketAddr,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    herald_kube::telemetry::init_logs();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    let result = runtime.block_on(async {
        match cli.command {
            Some(Command::Migrate { from, to }) => migrate(&from, &to).await,
            None => run(cli.run).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("herald-controller: {}", herald_kube::report::chain(&e));
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Run) -> anyhow::Result<()> {
    let client = kube::Client::try_default().await?;
    if !cli.memberlist_secret.is_empty() {
        herald_controller::secret::ensure(&client, &cli.pool_namespace, &cli.memberlist_secret)
            .await
            .map_err(|e| {
                e.context(format!("creating the membership key Secret {}", cli.memberlist_secret))
            })?;
    }
    let lease = std::time::Duration::from_secs(cli.lease_seconds);
    let opts = Options {
        class: cli.lb_class,
        pool_namespace: cli.pool_namespace,
        instance: cli.instance,
        lease,
        telemetry: cli.telemetry,
    };
    run::run(client, opts).await
}

async fn migrate(from: &str, to: &str) -> anyhow::Result<()> {
    let client = kube::Client::try_default().await?;
    let export = herald_controller::migrate::export(&client, from, to).await?;
    for note in &export.notes {
        eprintln!("herald-controller migrate: {note}");
    }
    print!("{}", export.yaml);
    Ok(())
}
