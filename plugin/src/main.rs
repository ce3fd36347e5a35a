//! `kubectl herald`: a kubectl plugin (an executable `kubectl-herald` on PATH).
//!
//! - `init --range A-B`: deploy/ (embedded at build time), a pool and an L2Advertisement, then
//!   waits until the speakers are Ready;
//! - `status`: every announced address, its Service, owner and heir, and what the owner's
//!   speaker says of it;
//! - `explain ADDRESS|NAMESPACE/SERVICE`: the chain from the Service to the answer, with the
//!   first link that breaks named.
//!
//! It reads the cluster with the speakers' own watches and decides with their own code
//! (`herald_speaker::kubernetes`), and reads each owner's metrics through the API server's node
//! proxy: no SSH to nodes.

mod cluster;
mod explain;
mod init;
mod manifests;
mod status;

use std::{net::IpAddr, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};
use herald_speaker::kubernetes::decide::explain::Query;

#[derive(Parser)]
#[command(name = "kubectl herald", version, about = "Herald's L2 announcements, from kubectl")]
struct Cli {
    /// Where Herald runs: its pools, advertisements and speakers' Leases.
    #[arg(long, short = 'n', global = true, default_value = manifests::NAMESPACE)]
    namespace: String,
    /// The loadBalancerClass Herald handles (as the controller's --lb-class); none by default.
    #[arg(long, global = true)]
    lb_class: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Deploys Herald, gives it a range of addresses to hand out and announce, and waits until
    /// its speakers are Ready.
    Init {
        /// The addresses to give out: `A-B`, or a CIDR (repeat for more, of both families).
        #[arg(long, required = true)]
        range: Vec<String>,
        /// Announce on this interface only (else: the interface whose subnet holds the address).
        #[arg(long)]
        interface: Vec<String>,
        /// The API server as `HOST:PORT`, for clusters where pods cannot reach it through the
        /// `kubernetes` Service (no kube-proxy).
        #[arg(long)]
        api_server: Option<String>,
        /// How long to wait for the speakers and the controller.
        #[arg(long, default_value = "180", value_name = "SECONDS")]
        timeout: u64,
    },
    /// Every address Herald announces: its Service, owner, heir, and the owner's counters.
    Status,
    /// Why ADDRESS (or NAMESPACE/SERVICE) is answered by its node, or by none.
    Explain {
        /// An address, or a Service as NAMESPACE/NAME.
        target: String,
    },
}

fn query(target: &str) -> anyhow::Result<Query> {
    if let Ok(address) = target.parse::<IpAddr>() {
        return Ok(Query::Address(address));
    }
    match target.split_once('/') {
        Some((namespace, name)) if !namespace.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok(Query::Service(target.to_owned()))
        }
        _ => anyhow::bail!("{target:?} is neither an address nor NAMESPACE/SERVICE"),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kubectl herald: {}", herald_kube::report::chain(&e));
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let client = kube::Client::try_default()
        .await
        .map_err(|e| anyhow::anyhow!(e).context("connecting to the cluster (kubeconfig)"))?;
    let (namespace, class) = (cli.namespace, cli.lb_class);
    match cli.command {
        Command::Init { range, interface, api_server, timeout } => {
            let plan = init::Plan { ranges: range, interfaces: interface, api_server, namespace };
            init::run(&client, &plan, Duration::from_secs(timeout)).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Status => {
            let cluster = cluster::Cluster::read(&client, &namespace, class).await?;
            print!("{}", status::render(&cluster, &status::owner_metrics(&client, &cluster).await));
            Ok(ExitCode::SUCCESS)
        }
        Command::Explain { target } => {
            let query = query(&target)?;
            let cluster = cluster::Cluster::read(&client, &namespace, class).await?;
            let (text, answered) = explain::run(&client, &cluster, &query).await;
            print!("{text}");
            // Scripts can tell: 0 answered, 1 not.
            Ok(if answered { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn targets_are_addresses_or_services() {
        use super::{Query, query};
        assert_eq!(query("192.0.2.10").unwrap(), Query::Address("192.0.2.10".parse().unwrap()));
        assert_eq!(query("2001:db8::1").unwrap(), Query::Address("2001:db8::1".parse().unwrap()));
        assert_eq!(query("default/web").unwrap(), Query::Service("default/web".into()));
        for bad in ["web", "/web", "default/", "a/b/c", "192.0.2.300"] {
            assert!(query(bad).is_err(), "{bad}");
        }
    }
}
