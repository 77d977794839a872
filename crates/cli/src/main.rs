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
    /// The cluster's replicas.
    #[command(subcommand)]
    Cluster(kubectl::ClusterCommand),
    /// Run a scheduler instance (leader-elected: one of many acts).
    Scheduler(SchedulerArgs),
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
                let mut term =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
                tokio::select! {
                    _ = keelson_scheduler::runner::run(client, identity) => {}
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
                Ok(())
            }
            Command::Get(a) => kubectl::exit_on_error(kubectl::get(a).await),
            Command::Describe(a) => kubectl::exit_on_error(kubectl::describe(a).await),
            Command::Apply(a) => kubectl::exit_on_error(kubectl::apply(a).await),
            Command::Create(a) => kubectl::exit_on_error(kubectl::create(a).await),
            Command::Delete(a) => kubectl::exit_on_error(kubectl::delete(a).await),
            Command::Scale(a) => kubectl::exit_on_error(kubectl::scale(a).await),
            Command::Cluster(c) => kubectl::exit_on_error(kubectl::cluster(c).await),
            Command::Whoami(c) => kubectl::exit_on_error(kubectl::whoami(c).await),
        }
    })
}
