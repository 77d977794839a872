//! The `keelson` binary: `keelson server` runs a control-plane replica,
//! `keelson bench` measures it (and etcd) over the etcd v3 API, and
//! kubectl-like commands (`get`, `describe`, `apply`...) talk to the API.

mod bench;
mod certs;
mod kubectl;
mod server_cmd;

use clap::{Parser, Subcommand};

// glibc malloc's arena locks showed up in profiles of the server under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "keelson",
    version,
    about = "Keelson: a highly available, Kubernetes-style control plane"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct SchedulerArgs {
    #[command(flatten)]
    client: kubectl::ClientArgs,
    /// This instance's name in the leadership lease (default: host:pid).
    #[arg(long)]
    identity: Option<String>,
}

#[derive(clap::Args)]
struct ControllersArgs {
    #[command(flatten)]
    client: kubectl::ClientArgs,
    /// This instance's name in the leadership lease (default: controllers-<pid>).
    #[arg(long)]
    identity: Option<String>,
    #[command(flatten)]
    node_lifecycle: server_cmd::NodeLifecycleArgs,
}

#[derive(clap::Args)]
struct AgentArgs {
    #[command(flatten)]
    client: kubectl::ClientArgs,
    /// Run this many simulated nodes (register, heartbeat, report pods
    /// Running) instead of a real agent.
    #[arg(long)]
    simulate: Option<usize>,
    /// Simulated nodes are named <prefix>-0, <prefix>-1, ...
    #[arg(long, default_value = "sim")]
    name_prefix: String,
    /// First simulated node's address (the next ones count up from it).
    #[arg(long, default_value = "127.0.100.1")]
    first_address: std::net::Ipv4Addr,
    /// Capacity of each simulated node.
    #[arg(long, default_value = "32")]
    cpu: String,
    #[arg(long, default_value = "128Gi")]
    memory: String,
    #[arg(long, default_value = "110")]
    max_pods: String,
    /// Node labels, key=value (repeatable).
    #[arg(long = "label")]
    labels: Vec<String>,
    /// TTL of each node's heartbeat lease, in seconds.
    #[arg(long, default_value_t = 10)]
    heartbeat_ttl: i64,
    /// Seconds between heartbeats.
    #[arg(long, default_value_t = 1.0)]
    heartbeat_interval: f64,
    /// Leave bound pods as they are (do not report them Running).
    #[arg(long)]
    no_pod_status: bool,
}

async fn agent(a: AgentArgs) -> anyhow::Result<()> {
    let Some(count) = a.simulate else {
        anyhow::bail!("only simulated nodes are implemented so far: pass --simulate N");
    };
    if a.heartbeat_ttl < 1 {
        anyhow::bail!("--heartbeat-ttl must be at least 1 second");
    }
    let mut labels = std::collections::BTreeMap::new();
    for l in &a.labels {
        let (k, v) = l
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--label {l:?} is not key=value"))?;
        labels.insert(k.to_string(), v.to_string());
    }
    let opts = keelson_agent::sim::SimOptions {
        prefix: a.name_prefix,
        count,
        cpu: a.cpu,
        memory: a.memory,
        max_pods: a.max_pods,
        labels,
        first_address: a.first_address,
        heartbeat_ttl_secs: a.heartbeat_ttl,
        heartbeat_every: std::time::Duration::try_from_secs_f64(a.heartbeat_interval)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| anyhow::anyhow!("--heartbeat-interval must be a positive number"))?,
        report_pods: !a.no_pod_status,
    };
    let client = a.client.client()?;
    until_signal(async move {
        keelson_agent::sim::run(client, opts)
            .await
            .map_err(anyhow::Error::from)
    })
    .await
}

/// Run `f` until it ends or SIGINT/SIGTERM arrives.
async fn until_signal(
    f: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = f => r,
        _ = tokio::signal::ctrl_c() => Ok(()),
        _ = term.recv() => Ok(()),
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run one control-plane replica (with no flags: a single-replica cluster on 127.0.0.1:2379).
    Server(server_cmd::ServerArgs),
    /// Create a local CA and a certificate for the replicas (TLS).
    Certs(certs::CertsArgs),
    /// Benchmarks over the etcd v3 API (Keelson and etcd alike).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Show objects as a table (or YAML, JSON, names), and optionally watch them.
    Get(kubectl::GetArgs),
    /// Show an object in detail, with its events.
    Describe(kubectl::DescribeArgs),
    /// Create or update the objects in manifests (files, directories, stdin).
    Apply(kubectl::ApplyArgs),
    /// Create the objects in manifests; existing ones are errors.
    Create(kubectl::ApplyArgs),
    /// Delete objects by type and name, or those in manifests.
    Delete(kubectl::DeleteArgs),
    /// Set the replicas of a Deployment or ReplicaSet.
    Scale(kubectl::ScaleArgs),
    /// A Deployment's rollout: status, history, undo, restart.
    #[command(subcommand)]
    Rollout(kubectl::rollout::RolloutCommand),
    /// The cluster's replicas.
    #[command(subcommand)]
    Cluster(kubectl::ClusterCommand),
    /// Run a scheduler instance (leader-elected: one of many acts).
    Scheduler(SchedulerArgs),
    /// Run a controller-manager instance (leader-elected: one of many acts).
    Controllers(ControllersArgs),
    /// Run a node agent (so far: simulated nodes, `--simulate N`).
    Agent(AgentArgs),
    /// Who the token belongs to, and its role.
    Whoami(kubectl::ClientArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Server(args) => server_cmd::run(args).await,
            Command::Bench(cmd) => bench::run(cmd).await,
            Command::Certs(args) => certs::run(args),
            Command::Scheduler(a) => {
                let client = a.client.client()?;
                let identity = a
                    .identity
                    .unwrap_or_else(|| format!("scheduler-{}", std::process::id()));
                until_signal(async move {
                    keelson_scheduler::runner::run(client, identity).await;
                    Ok(())
                })
                .await
            }
            Command::Controllers(a) => {
                let client = a.client.client()?;
                let mut opts = keelson_controller_manager::Options::new(
                    &a.identity
                        .unwrap_or_else(|| format!("controllers-{}", std::process::id())),
                );
                opts.node = a.node_lifecycle.config()?;
                until_signal(async move {
                    keelson_controller_manager::run(client, opts).await;
                    Ok(())
                })
                .await
            }
            Command::Agent(a) => agent(a).await,
            Command::Get(a) => kubectl::exit_on_error(kubectl::get(a).await),
            Command::Describe(a) => kubectl::exit_on_error(kubectl::describe(a).await),
            Command::Apply(a) => kubectl::exit_on_error(kubectl::apply(a).await),
            Command::Create(a) => kubectl::exit_on_error(kubectl::create(a).await),
            Command::Delete(a) => kubectl::exit_on_error(kubectl::delete(a).await),
            Command::Scale(a) => kubectl::exit_on_error(kubectl::scale(a).await),
            Command::Rollout(c) => kubectl::exit_on_error(kubectl::rollout::run(c).await),
            Command::Cluster(c) => kubectl::exit_on_error(kubectl::cluster(c).await),
            Command::Whoami(c) => kubectl::exit_on_error(kubectl::whoami(c).await),
        }
    })
}
