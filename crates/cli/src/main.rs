//! The `keelson` binary: `keelson server` runs a control-plane replica,
//! `keelson agent` a node agent, `keelson up` a local cluster of both,
//! kubectl-like commands (`get`, `describe`, `apply`...) talk to the API;
//! `keelson chaos` and `keelson bench` hand off to their crates
//! (keelson-chaos, keelson-bench).

mod certs;
mod files;
mod image;
mod kubeconfig;
mod kubectl;
mod server_cmd;
mod snapshot;
mod up;

use anyhow::Context;
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
    /// This node's name (default: the host name).
    #[arg(long)]
    name: Option<String>,
    /// This node's address: pods get addresses of their own in
    /// 127.<last octet>.0.0/16, the log endpoint and Service ports listen here.
    #[arg(long, default_value = "127.0.0.1")]
    address: std::net::Ipv4Addr,
    /// Port of the agent's log endpoint on --address.
    #[arg(long, default_value_t = 10250)]
    port: u16,
    /// Where pods' files and logs go (default: ./<name>.agent).
    #[arg(long)]
    data_dir: Option<std::path::PathBuf>,
    /// Node taints, key[=value]:Effect (repeatable).
    #[arg(long = "taint")]
    taints: Vec<String>,
    /// First restart back-off of a crashing container, in seconds (doubles to 60).
    #[arg(long, default_value_t = 1.0)]
    crash_backoff: f64,
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
    /// Capacity (default: the machine's; simulated nodes: 32 cpus, 128Gi).
    #[arg(long)]
    cpu: Option<String>,
    #[arg(long)]
    memory: Option<String>,
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
    /// Simulated nodes: leave bound pods as they are (do not report them Running).
    #[arg(long)]
    no_pod_status: bool,
    /// On SIGTERM/SIGINT, stop this node's pods too (SIGTERM, then SIGKILL
    /// after 10 s) instead of leaving them running for the next agent to
    /// adopt (`keelson up` uses it, so `down` leaves nothing behind).
    #[arg(long)]
    stop_pods_on_exit: bool,
    /// How pods run: `runc` (OCI images, each pod in namespaces of its own
    /// on the node's bridge), `process` (host processes on loopback
    /// addresses), or `auto`: runc where runc and root are available.
    #[arg(long, default_value = "auto", value_parser = ["auto", "runc", "process"])]
    runtime: String,
    /// The cluster's pod CIDR (runc runtime: pod traffic to anything
    /// outside it is dropped).
    #[arg(long, default_value = "10.244.0.0/16")]
    cluster_cidr: String,
    /// The cluster's Service IP range (runc runtime: routed to the node's
    /// bridge, so nothing sent to it leaves the machine).
    #[arg(long, default_value = "10.96.0.0/16")]
    service_cidr: String,
    /// A registry (host[:port]) reached over plain HTTP (repeatable);
    /// registries on loopback addresses always are.
    #[arg(long = "insecure-registry")]
    insecure_registries: Vec<String>,
    /// Image garbage collection (runc runtime): unused images are removed
    /// when the image store's disk is at least this percent used...
    #[arg(long, default_value_t = 85, value_parser = clap::value_parser!(u8).range(0..=100))]
    image_gc_high_threshold: u8,
    /// ... until it would be at this percent.
    #[arg(long, default_value_t = 80, value_parser = clap::value_parser!(u8).range(0..=100))]
    image_gc_low_threshold: u8,
    /// Seconds between two checks of the image store's disk.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    image_gc_period: u64,
}

fn parse_taint(s: &str) -> anyhow::Result<keelson_proto::v1::Taint> {
    let (kv, effect) = s
        .rsplit_once(':')
        .ok_or_else(|| anyhow::anyhow!("--taint {s:?} is not key[=value]:Effect"))?;
    if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
        anyhow::bail!("--taint {s:?}: effect must be NoSchedule, PreferNoSchedule or NoExecute");
    }
    let (key, value) = kv.split_once('=').unwrap_or((kv, ""));
    if key.is_empty() {
        anyhow::bail!("--taint {s:?}: empty key");
    }
    Ok(keelson_proto::v1::Taint {
        key: key.into(),
        value: value.into(),
        effect: effect.into(),
        ..Default::default()
    })
}

async fn agent(a: AgentArgs) -> anyhow::Result<()> {
    let mut labels = std::collections::BTreeMap::new();
    for l in &a.labels {
        let (k, v) = l
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--label {l:?} is not key=value"))?;
        labels.insert(k.to_string(), v.to_string());
    }
    if a.heartbeat_ttl < 1 {
        anyhow::bail!("--heartbeat-ttl must be at least 1 second");
    }
    let heartbeat_every = std::time::Duration::try_from_secs_f64(a.heartbeat_interval)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| anyhow::anyhow!("--heartbeat-interval must be a positive number"))?;
    let client = a.client.client()?;
    if let Some(count) = a.simulate {
        let opts = keelson_agent::sim::SimOptions {
            prefix: a.name_prefix,
            count,
            cpu: a.cpu.unwrap_or_else(|| "32".into()),
            memory: a.memory.unwrap_or_else(|| "128Gi".into()),
            max_pods: a.max_pods,
            labels,
            first_address: a.first_address,
            heartbeat_ttl_secs: a.heartbeat_ttl,
            heartbeat_every,
            report_pods: !a.no_pod_status,
            rtt: None,
        };
        return until_signal(async move {
            keelson_agent::sim::run(client, opts)
                .await
                .map_err(anyhow::Error::from)
        })
        .await;
    }
    let name = match a.name {
        Some(n) => n,
        None => std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| anyhow::anyhow!("give the node a --name"))?,
    };
    let data_dir = a
        .data_dir
        .unwrap_or_else(|| std::path::PathBuf::from(format!("{name}.agent")));
    let mut opts = keelson_agent::agent::AgentOptions::new(&name, a.address, data_dir);
    opts.port = a.port;
    opts.cpu = a.cpu;
    opts.memory = a.memory;
    opts.max_pods = a.max_pods;
    opts.labels = labels;
    opts.taints = a
        .taints
        .iter()
        .map(|t| parse_taint(t))
        .collect::<anyhow::Result<_>>()?;
    opts.heartbeat_ttl_secs = a.heartbeat_ttl;
    opts.heartbeat_every = heartbeat_every;
    opts.backoff_base = std::time::Duration::try_from_secs_f64(a.crash_backoff)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| anyhow::anyhow!("--crash-backoff must be a positive number"))?;
    opts.runtime = match a.runtime.as_str() {
        "runc" => {
            keelson_agent::runc::available().map_err(|e| anyhow::anyhow!("--runtime runc: {e}"))?;
            keelson_agent::agent::RuntimeKind::Runc
        }
        "process" => keelson_agent::agent::RuntimeKind::Process,
        _ => {
            let (kind, why) = keelson_agent::agent::RuntimeKind::detect();
            match why {
                Some(why) => tracing::warn!("pods run as host processes: {why}"),
                None => tracing::info!("pods run under runc"),
            }
            kind
        }
    };
    opts.cluster_cidr = keelson_model::cidr::Cidr::parse(&a.cluster_cidr)
        .map_err(|e| anyhow::anyhow!("--cluster-cidr: {e}"))?;
    opts.service_cidr = keelson_model::cidr::Cidr::parse(&a.service_cidr)
        .map_err(|e| anyhow::anyhow!("--service-cidr: {e}"))?;
    opts.insecure_registries = a.insecure_registries;
    if a.image_gc_low_threshold > a.image_gc_high_threshold {
        anyhow::bail!(
            "--image-gc-low-threshold ({}) must not be above --image-gc-high-threshold ({})",
            a.image_gc_low_threshold,
            a.image_gc_high_threshold
        );
    }
    opts.image_gc = keelson_agent::agent::ImageGc {
        high: a.image_gc_high_threshold,
        low: a.image_gc_low_threshold,
        period: std::time::Duration::from_secs(a.image_gc_period),
    };
    let data_dir = opts.data_dir.clone();
    let kind = opts.runtime;
    let result = until_signal(keelson_agent::agent::run(client, opts)).await;
    if a.stop_pods_on_exit {
        let stopped = tokio::task::spawn_blocking(move || {
            keelson_agent::agent::stop_all_containers(
                &data_dir,
                std::time::Duration::from_secs(10),
                kind,
                &name,
            )
        })
        .await??;
        tracing::info!(stopped, "stopped this node's containers");
    }
    result
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
    /// Start a local HA cluster (3 replicas, 2 agents) and keep it running
    /// until Ctrl-C; started again, it resumes the same cluster.
    Up(up::UpArgs),
    /// Stop the cluster `keelson up` runs (from another terminal).
    Down(up::DownArgs),
    /// Run a seeded fault schedule against a local 3-replica cluster under
    /// a KV workload, then check the history (linearizability, lost writes,
    /// watch order); non-zero exit on any violation.
    Chaos(keelson_chaos::runner::ChaosArgs),
    /// Run one control-plane replica (with no flags: a single-replica cluster on 127.0.0.1:2379).
    Server(server_cmd::ServerArgs),
    /// Create a local CA and a certificate for the replicas (TLS).
    Certs(certs::CertsArgs),
    /// Benchmarks over the etcd v3 API (Keelson and etcd alike).
    #[command(subcommand)]
    Bench(keelson_bench::BenchCommand),
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
    /// Run a node agent: pods as processes (or `--simulate N` nodes).
    Agent(AgentArgs),
    /// Print a container's log.
    Logs(kubectl::logs::LogsArgs),
    /// Run a command in a container.
    Exec(kubectl::exec::ExecArgs),
    /// A node's images (the runc runtime's store): load, pull, ls, rm.
    #[command(subcommand)]
    Image(image::ImageCommand),
    /// Who the token belongs to, and its role.
    Whoami(kubectl::ClientArgs),
    /// Backups of the store: save one, check one, restore one into a new
    /// cluster (after a lost quorum).
    #[command(subcommand)]
    Snapshot(snapshot::SnapshotCommand),
    /// Run a built-in image (http-echo, sleep, crash-after): what the
    /// process runtime starts for `builtin/<name>` images.
    #[command(hide = true)]
    Builtin(BuiltinArgs),
}

#[derive(clap::Args)]
struct BuiltinArgs {
    /// The image's name (`builtin/<name>`).
    name: String,
    /// Its command and args.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
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
    // The built-in images run as pods, many at once: a one-thread runtime
    // starts faster and weighs less than the multi-threaded one.
    let runtime = if matches!(cli.command, Command::Builtin(_)) {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
    };
    runtime.block_on(async move {
        match cli.command {
            Command::Server(args) => server_cmd::run(args).await,
            Command::Up(a) => up::up(a).await,
            Command::Chaos(a) => {
                let bin = std::env::current_exe().context("find the keelson binary")?;
                keelson_chaos::runner::run(bin, a).await
            }
            Command::Down(a) => up::down(a).await,
            Command::Bench(cmd) => keelson_bench::run(cmd).await,
            Command::Certs(args) => certs::run(args),
            Command::Image(cmd) => image::run(cmd).await,
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
            Command::Logs(a) => kubectl::exit_on_error(kubectl::logs::run(a).await),
            Command::Exec(a) => match kubectl::exec::run(a).await {
                Ok(0) => Ok(()),
                Ok(code) => std::process::exit(code),
                Err(e) => kubectl::exit_on_error(Err(e)),
            },
            Command::Get(a) => kubectl::exit_on_error(kubectl::get(a).await),
            Command::Describe(a) => kubectl::exit_on_error(kubectl::describe(a).await),
            Command::Apply(a) => kubectl::exit_on_error(kubectl::apply(a).await),
            Command::Create(a) => kubectl::exit_on_error(kubectl::create(a).await),
            Command::Delete(a) => kubectl::exit_on_error(kubectl::delete(a).await),
            Command::Scale(a) => kubectl::exit_on_error(kubectl::scale(a).await),
            Command::Rollout(c) => kubectl::exit_on_error(kubectl::rollout::run(c).await),
            Command::Cluster(c) => kubectl::exit_on_error(kubectl::cluster(c).await),
            Command::Whoami(c) => kubectl::exit_on_error(kubectl::whoami(c).await),
            Command::Snapshot(c) => kubectl::exit_on_error(snapshot::run(c).await),
            Command::Builtin(b) => {
                std::process::exit(keelson_agent::builtin::run(&b.name, &b.args).await)
            }
        }
    })
}
