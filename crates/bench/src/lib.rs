//! `keelson bench`: load over the etcd v3 API, so the same code measures
//! Keelson and etcd.
//!
//! - `bench kv --endpoints ...`: sequential put latency, put throughput at
//!   64 and 256 in flight, linearizable and serializable range throughput.
//! - `bench compare`: starts a 3-replica Keelson cluster and a 3-member etcd
//!   cluster on loopback, runs `kv` against each, prints both and the ratio.
//! - `bench failover`: SIGKILLs the leader repeatedly and times how long
//!   until a write succeeds again, optionally under a background write
//!   load (`--load-rate`); optionally watches an idle cluster for leader
//!   changes.
//! - `bench api`: pod create latency at a fixed rate and watch fan-out
//!   through the API server, with etcd doing the same store work.
//! - `bench pods`: real images under runc: pull time, pod startup against
//!   the process runtime, per-pod overhead.
//! - `bench services`: how soon a node's Service rules follow an
//!   Endpoints change.
//! - `bench jobs`: 1,000 Jobs of 10 completions on simulated nodes: time
//!   to complete, the controllers' CPU.
//! - `bench write-path`: a lone write's latency, stage by stage, leader and
//!   follower routes, against etcd's.
//! - `bench scale`: memory, disk, snapshot, restart, catch-up and
//!   throughput at 10,000 and 1M keys, against etcd's.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Subcommand};
use keelson_proto::etcdserverpb::kv_client::KvClient;
use keelson_proto::etcdserverpb::{PutRequest, RangeRequest};
use keelson_testkit::stats::percentile;
use keelson_testkit::{channel, ProcCluster, Program};
use tonic::transport::Channel;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Run the KV phases against running endpoints.
    Kv(KvArgs),
    /// Start Keelson and etcd clusters side by side and compare them.
    Compare(CompareArgs),
    /// Kill the leader repeatedly; time until writes succeed again.
    Failover(FailoverArgs),
    /// The API server: pod create latency at a fixed rate and watch
    /// fan-out, with etcd doing the same store work as the anchor.
    Api(api::ApiBenchArgs),
    /// The scheduler: throughput with simulated nodes, end-to-end latency,
    /// and failover of the scheduler lease, with etcd's store work as the
    /// anchor.
    Schedule(schedule::ScheduleBenchArgs),
    /// Node agents: 10,000 simulated nodes heartbeating (etcd keeping as
    /// many leases alive as the anchor), and pod startup on real agents.
    Nodes(nodes::NodesBenchArgs),
    /// Real images under runc: pull time, pod startup (the process runtime
    /// in the same run), per-pod overhead.
    Pods(pods::PodsBenchArgs),
    /// A node's Service rules (runc runtime): the time from an Endpoints
    /// change to its nftables table having it.
    Services(services::ServicesBenchArgs),
    /// Jobs: many Jobs run to completion on simulated nodes, the
    /// controllers' CPU, with etcd doing as many store writes as the
    /// anchor.
    Jobs(jobs::JobsBenchArgs),
    /// Where a lone write's time goes: sequential puts to the leader and
    /// to a follower, the servers' stage timings, etcd in the same run.
    WritePath(write_path::WritePathArgs),
    /// The store as its data grows: memory, disk, snapshots, restart,
    /// catch-up and throughput at 10,000 and 1M keys, etcd in the same run.
    Scale(scale::ScaleArgs),
}

mod api;
mod jobs;
mod nodes;
mod pods;
mod scale;
mod schedule;
mod services;
mod write_path;

/// A 3-member etcd cluster (`bin`, data under `dir`) once healthy, and a
/// KV client of each member: the anchor of the benchmarks that compare
/// the store's share of their work.
async fn etcd_cluster(
    bin: &std::path::Path,
    dir: &std::path::Path,
) -> anyhow::Result<(ProcCluster, Vec<KvClient<Channel>>)> {
    let c = ProcCluster::start(
        Program::Etcd {
            bin: bin.to_path_buf(),
        },
        3,
        dir,
    )?;
    c.wait_healthy(Duration::from_secs(60)).await?;
    let kvs = c
        .endpoints()
        .iter()
        .map(|e| channel(e).map(KvClient::new))
        .collect::<anyhow::Result<_>>()?;
    Ok((c, kvs))
}

/// The keelson binary: the benchmarks run inside it (`keelson bench`) and
/// start replicas, agents and schedulers as processes of it.
fn keelson_bin() -> anyhow::Result<PathBuf> {
    std::env::current_exe().context("find the keelson binary")
}

/// A Keelson cluster of `members` replicas (not yet healthy) for the KV
/// benchmarks: the scheduler and controllers off, `extra` flags added,
/// run from `server_bin` (another build, to compare) or this binary.
fn keelson_cluster(
    server_bin: Option<&std::path::Path>,
    members: usize,
    extra: &[String],
    dir: &std::path::Path,
) -> anyhow::Result<ProcCluster> {
    let bin = match server_bin {
        Some(bin) => bin.to_path_buf(),
        None => keelson_bin()?,
    };
    ProcCluster::start(
        Program::Keelson {
            bin,
            extra_args: ["--disable-scheduler", "--disable-controllers"]
                .into_iter()
                .map(String::from)
                .chain(extra.iter().cloned())
                .collect(),
        },
        members,
        dir,
    )
}

#[derive(Args, Clone)]
pub struct LoadArgs {
    /// Seconds per throughput phase.
    #[arg(long, default_value_t = 10)]
    pub phase_secs: u64,
    /// Puts in the sequential-latency phase.
    #[arg(long, default_value_t = 500)]
    pub sequential_puts: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 256)]
    pub value_size: usize,
    /// Distinct keys written and read.
    #[arg(long, default_value_t = 10_000)]
    pub keys: usize,
}

#[derive(Args)]
pub struct KvArgs {
    /// Client URLs, comma separated.
    #[arg(long, default_value = "http://127.0.0.1:2379")]
    pub endpoints: String,
    #[command(flatten)]
    pub load: LoadArgs,
}

#[derive(Args)]
pub struct CompareArgs {
    /// The etcd binary to compare against (Debian's etcd-server).
    #[arg(long, default_value = "/usr/bin/etcd")]
    pub etcd: PathBuf,
    /// Members per cluster.
    #[arg(long, default_value_t = 3)]
    pub members: usize,
    /// Run the replicas from this keelson binary instead of this one (to
    /// compare builds).
    #[arg(long)]
    pub server_bin: Option<PathBuf>,
    #[command(flatten)]
    pub load: LoadArgs,
}

#[derive(Args)]
pub struct FailoverArgs {
    /// Leader kills to measure.
    #[arg(long, default_value_t = 10)]
    pub kills: usize,
    /// Also watch the idle cluster this many seconds for leader changes.
    #[arg(long, default_value_t = 0)]
    pub idle_secs: u64,
    /// Measure etcd (this binary) instead of Keelson.
    #[arg(long)]
    pub etcd: Option<PathBuf>,
    /// Writes per second to keep up in the background, spread over every
    /// member, while the leader is killed (0: no load).
    #[arg(long, default_value_t = 0)]
    pub load_rate: u64,
    /// Extra flags for every `keelson server`.
    #[arg(long, allow_hyphen_values = true, num_args = 0..)]
    pub server_args: Vec<String>,
}

/// Puts at a fixed rate over every member (open loop, at most
/// `LOAD_IN_FLIGHT_MAX` in flight), recording when each success
/// completed, for `bench failover --load-rate`.
struct BackgroundLoad {
    start: Instant,
    /// Completion times of successful puts, µs since `start`.
    successes: Arc<std::sync::Mutex<Vec<u64>>>,
    /// Puts not issued because too many were in flight.
    skipped: Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

const LOAD_IN_FLIGHT_MAX: usize = 1024;

impl BackgroundLoad {
    fn start(endpoints: &[String], rate: u64) -> anyhow::Result<BackgroundLoad> {
        let mut clients = Vec::new();
        for _ in 0..2 {
            for e in endpoints {
                clients.push(KvClient::new(channel(e)?));
            }
        }
        let start = Instant::now();
        let successes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let skipped = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let slots = Arc::new(tokio::sync::Semaphore::new(LOAD_IN_FLIGHT_MAX));
        let (ok, skip) = (successes.clone(), skipped.clone());
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut issued = 0u64;
            loop {
                tick.tick().await;
                // Catch up with the rate since the start (open loop).
                let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
                while issued < due {
                    issued += 1;
                    let Ok(permit) = slots.clone().try_acquire_owned() else {
                        skip.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        continue;
                    };
                    let mut c = clients[(issued as usize) % clients.len()].clone();
                    let ok = ok.clone();
                    tokio::spawn(async move {
                        let mut req = tonic::Request::new(PutRequest {
                            key: key((issued % 10_000) as usize),
                            value: vec![b'x'; 256],
                            ..Default::default()
                        });
                        req.set_timeout(Duration::from_secs(2));
                        if c.put(req).await.is_ok() {
                            let at = start.elapsed().as_micros() as u64;
                            ok.lock().unwrap_or_else(|p| p.into_inner()).push(at);
                        }
                        drop(permit);
                    });
                }
            }
        });
        Ok(BackgroundLoad {
            start,
            successes,
            skipped,
            task,
        })
    }

    /// Successful puts per second in the second before `at`, and the
    /// longest time after `at` (until `until`) with no put completing.
    fn around(&self, at: Instant, until: Instant) -> (f64, Duration) {
        let at_us = at.duration_since(self.start).as_micros() as u64;
        let until_us = until.duration_since(self.start).as_micros() as u64;
        let mut times = self
            .successes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        times.sort_unstable();
        let before = times
            .iter()
            .filter(|t| **t + 1_000_000 >= at_us && **t < at_us)
            .count() as f64;
        let mut last = at_us;
        let mut gap = 0;
        for t in times.iter().filter(|t| **t >= at_us && **t <= until_us) {
            gap = gap.max(t - last);
            last = *t;
        }
        gap = gap.max(until_us.saturating_sub(last));
        (before, Duration::from_micros(gap))
    }
}

impl Drop for BackgroundLoad {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Kv(a) => {
            let endpoints: Vec<String> = a
                .endpoints
                .split(',')
                .map(|s| s.trim().to_string())
                .collect();
            let results = run_kv(&endpoints, &a.load).await?;
            print_results("target", &results);
            Ok(())
        }
        BenchCommand::Compare(a) => compare(a).await,
        BenchCommand::Failover(a) => failover(a).await,
        BenchCommand::Api(a) => api::run(a).await,
        BenchCommand::Schedule(a) => schedule::run(a).await,
        BenchCommand::Nodes(a) => nodes::run(a).await,
        BenchCommand::Pods(a) => pods::run(a).await,
        BenchCommand::Services(a) => services::run(a).await,
        BenchCommand::Jobs(a) => jobs::run(a).await,
        BenchCommand::WritePath(a) => write_path::run(a).await,
        BenchCommand::Scale(a) => scale::run(a).await,
    }
}

#[derive(Clone, Debug)]
pub struct PhaseResult {
    pub name: &'static str,
    pub ops: usize,
    pub errors: usize,
    /// The first error seen, if any.
    pub first_error: Option<String>,
    pub ops_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// CPU time the servers spent per operation (when their pids are known).
    pub server_cpu_us_per_op: Option<f64>,
    /// CPU time this load generator spent per operation.
    pub client_cpu_us_per_op: f64,
}

#[derive(Clone, Copy)]
enum Op {
    Put,
    Get { serializable: bool },
}

struct Load {
    clients: Vec<KvClient<Channel>>,
    /// Server processes whose CPU time is accounted per phase.
    server_pids: Vec<u32>,
    value: Vec<u8>,
    keys: usize,
}

fn key(i: usize) -> Vec<u8> {
    format!("bench/{i:08}").into_bytes()
}

impl Load {
    async fn one(&self, worker: usize, n: usize, op: Op) -> Result<(), tonic::Status> {
        let mut c = self.clients[worker % self.clients.len()].clone();
        let k = key((worker * 7919 + n * 104_729) % self.keys);
        match op {
            Op::Put => c
                .put(PutRequest {
                    key: k,
                    value: self.value.clone(),
                    ..Default::default()
                })
                .await
                .map(|_| ()),
            Op::Get { serializable } => c
                .range(RangeRequest {
                    key: k,
                    serializable,
                    ..Default::default()
                })
                .await
                .map(|_| ()),
        }
    }

    /// `in_flight` workers issue `op` back to back for `secs` seconds (or
    /// until `max_ops` in total).
    async fn phase(
        self: &Arc<Self>,
        name: &'static str,
        op: Op,
        in_flight: usize,
        secs: u64,
        max_ops: usize,
    ) -> PhaseResult {
        let start = Instant::now();
        let cpu_before = (cpu_ticks(&self.server_pids), self_cpu_ticks());
        let deadline = start + Duration::from_secs(secs);
        let per_worker = max_ops.div_ceil(in_flight);
        let mut tasks = Vec::new();
        for w in 0..in_flight {
            let load = self.clone();
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut errors = 0usize;
                let mut first_error = None;
                for n in 0..per_worker {
                    if Instant::now() >= deadline {
                        break;
                    }
                    let t = Instant::now();
                    match load.one(w, n, op).await {
                        Ok(()) => {
                            lat.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32)
                        }
                        Err(e) => {
                            errors += 1;
                            first_error.get_or_insert_with(|| e.to_string());
                        }
                    }
                }
                (lat, errors, first_error)
            }));
        }
        let mut all = Vec::new();
        let mut errors = 0;
        let mut first_error = None;
        for t in tasks {
            if let Ok((lat, e, first)) = t.await {
                all.extend(lat);
                errors += e;
                first_error = first_error.or(first);
            }
        }
        let elapsed = start.elapsed().as_secs_f64();
        let server_ticks = cpu_ticks(&self.server_pids).saturating_sub(cpu_before.0);
        let client_ticks = self_cpu_ticks().saturating_sub(cpu_before.1);
        let ops = all.len().max(1) as f64;
        let per_op = |ticks: u64| ticks as f64 * 1e6 / clock_ticks_per_sec() / ops;
        all.sort_unstable();
        PhaseResult {
            server_cpu_us_per_op: (!self.server_pids.is_empty()).then(|| per_op(server_ticks)),
            client_cpu_us_per_op: per_op(client_ticks),
            name,
            ops: all.len(),
            errors,
            first_error,
            ops_per_sec: all.len() as f64 / elapsed,
            p50_ms: percentile(&all, 0.50) / 1000.0,
            p99_ms: percentile(&all, 0.99) / 1000.0,
        }
    }
}

/// utime + stime of a process, in clock ticks (0 if it is gone).
fn process_ticks(stat_path: &str) -> u64 {
    let Ok(stat) = std::fs::read_to_string(stat_path) else {
        return 0;
    };
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the whole line.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    get(11) + get(12)
}

fn cpu_ticks(pids: &[u32]) -> u64 {
    pids.iter()
        .map(|p| process_ticks(&format!("/proc/{p}/stat")))
        .sum()
}

fn self_cpu_ticks() -> u64 {
    process_ticks("/proc/self/stat")
}

fn clock_ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no memory effects.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

pub async fn run_kv(endpoints: &[String], a: &LoadArgs) -> anyhow::Result<Vec<PhaseResult>> {
    run_kv_measured(endpoints, Vec::new(), a).await
}

/// [`run_kv`], also accounting the CPU time of the given server processes.
pub async fn run_kv_measured(
    endpoints: &[String],
    server_pids: Vec<u32>,
    a: &LoadArgs,
) -> anyhow::Result<Vec<PhaseResult>> {
    // Two connections per endpoint; workers spread over them round-robin.
    let mut clients = Vec::new();
    for _ in 0..2 {
        for e in endpoints {
            clients.push(KvClient::new(channel(e)?));
        }
    }
    let load = Arc::new(Load {
        clients,
        server_pids,
        value: vec![b'x'; a.value_size],
        keys: a.keys.max(1),
    });
    // Preload every key so reads hit data.
    let preload = load.phase("preload", Op::Put, 64, 120, a.keys).await;
    if preload.errors > 0 {
        anyhow::bail!("preload failed: {} errors", preload.errors);
    }
    let s = a.phase_secs;
    Ok(vec![
        load.phase("put, 1 in flight", Op::Put, 1, s, a.sequential_puts)
            .await,
        load.phase("put, 64 in flight", Op::Put, 64, s, usize::MAX / 2)
            .await,
        load.phase("put, 256 in flight", Op::Put, 256, s, usize::MAX / 2)
            .await,
        load.phase(
            "get linearizable, 256 in flight",
            Op::Get {
                serializable: false,
            },
            256,
            s,
            usize::MAX / 2,
        )
        .await,
        load.phase(
            "get serializable, 256 in flight",
            Op::Get { serializable: true },
            256,
            s,
            usize::MAX / 2,
        )
        .await,
    ])
}

fn print_results(label: &str, results: &[PhaseResult]) {
    println!("{label}:");
    println!(
        "  {:<34} {:>9} {:>7} {:>11} {:>9} {:>9} {:>16} {:>16}",
        "phase",
        "ops",
        "errors",
        "ops/s",
        "p50 ms",
        "p99 ms",
        "server cpu us/op",
        "client cpu us/op"
    );
    for r in results {
        let server = r
            .server_cpu_us_per_op
            .map(|v| format!("{v:.1}"))
            .unwrap_or_else(|| "-".into());
        println!(
            "  {:<34} {:>9} {:>7} {:>11.0} {:>9.2} {:>9.2} {:>16} {:>16.1}",
            r.name,
            r.ops,
            r.errors,
            r.ops_per_sec,
            r.p50_ms,
            r.p99_ms,
            server,
            r.client_cpu_us_per_op
        );
        if let Some(e) = &r.first_error {
            println!("    first error: {e}");
        }
    }
}

async fn compare(a: CompareArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    println!(
        "machine: {} cores; {} members per cluster; fsync on for both",
        num_cpus(),
        a.members
    );

    let keelson = {
        let c = keelson_cluster(
            a.server_bin.as_deref(),
            a.members,
            &[],
            &dir.path().join("keelson"),
        )?;
        c.wait_healthy(Duration::from_secs(30)).await?;
        let r = run_kv_measured(&c.endpoints(), c.pids(), &a.load).await?;
        drop(c);
        r
    };
    print_results("keelson", &keelson);
    let etcd = {
        let c = ProcCluster::start(
            Program::Etcd {
                bin: a.etcd.clone(),
            },
            a.members,
            &dir.path().join("etcd"),
        )?;
        c.wait_healthy(Duration::from_secs(30)).await?;
        let r = run_kv_measured(&c.endpoints(), c.pids(), &a.load).await?;
        drop(c);
        r
    };
    print_results("etcd", &etcd);
    println!();
    println!(
        "| phase | keelson ops/s | etcd ops/s | ratio | keelson p50/p99 ms | etcd p50/p99 ms | servers' CPU per op, keelson / etcd (µs) | client CPU per op, keelson / etcd (µs) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let us = |v: Option<f64>| v.map(|v| format!("{v:.0}")).unwrap_or_else(|| "-".into());
    for (k, e) in keelson.iter().zip(etcd.iter()) {
        println!(
            "| {} | {:.0} | {:.0} | {:.2}x | {:.2} / {:.2} | {:.2} / {:.2} | {} / {} | {:.0} / {:.0} |",
            k.name,
            k.ops_per_sec,
            e.ops_per_sec,
            k.ops_per_sec / e.ops_per_sec.max(1e-9),
            k.p50_ms,
            k.p99_ms,
            e.p50_ms,
            e.p99_ms,
            us(k.server_cpu_us_per_op),
            us(e.server_cpu_us_per_op),
            k.client_cpu_us_per_op,
            e.client_cpu_us_per_op,
        );
    }
    Ok(())
}

fn num_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

async fn failover(a: FailoverArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let kind = match &a.etcd {
        Some(bin) => Program::Etcd { bin: bin.clone() },
        None => Program::Keelson {
            bin: keelson_bin()?,
            extra_args: ["--disable-scheduler", "--disable-controllers"]
                .into_iter()
                .map(String::from)
                .chain(a.server_args.iter().cloned())
                .collect(),
        },
    };
    let mut c = ProcCluster::start(kind, 3, dir.path())?;
    c.wait_healthy(Duration::from_secs(30)).await?;

    if a.idle_secs > 0 {
        let leader = c.leader().await.context("no leader")?;
        let (_, _, term) = c.status(leader).await?;
        println!(
            "idle: watching for {} s (leader m{}, term {term})",
            a.idle_secs,
            leader + 1
        );
        let end = Instant::now() + Duration::from_secs(a.idle_secs);
        let mut changes = 0;
        let mut last_term = term;
        while Instant::now() < end {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if let Ok((_, _, t)) = c.status(leader).await {
                if t != last_term {
                    changes += 1;
                    last_term = t;
                }
            }
        }
        println!("idle: term changes in {} s: {changes}", a.idle_secs);
    }

    let load = match a.load_rate {
        0 => None,
        rate => {
            let load = BackgroundLoad::start(&c.endpoints(), rate)?;
            // Let it reach its rate before the first kill.
            tokio::time::sleep(Duration::from_secs(2)).await;
            Some(load)
        }
    };
    let mut samples = Vec::new();
    let mut load_gaps = Vec::new();
    for round in 0..a.kills {
        let leader = loop {
            if let Some(l) = c.leader().await {
                break l;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let others: Vec<usize> = (0..c.members.len()).filter(|i| *i != leader).collect();
        let clients: Vec<KvClient<Channel>> = others
            .iter()
            .map(|i| channel(&c.members[*i].endpoint()).map(KvClient::new))
            .collect::<anyhow::Result<_>>()?;
        let killed_at = Instant::now();
        c.kill(leader);
        // Write through the survivors until one write succeeds.
        let mut n = 0u64;
        let recovered = loop {
            let mut client = clients[(n as usize) % clients.len()].clone();
            n += 1;
            let mut req = tonic::Request::new(PutRequest {
                key: format!("failover/{round}").into_bytes(),
                value: b"v".to_vec(),
                ..Default::default()
            });
            req.set_timeout(Duration::from_millis(200));
            if client.put(req).await.is_ok() {
                break killed_at.elapsed();
            }
            if killed_at.elapsed() > Duration::from_secs(30) {
                anyhow::bail!("no write succeeded within 30 s after killing the leader");
            }
        };
        println!(
            "kill {}: leader m{} killed, writes back after {:.0} ms",
            round + 1,
            leader + 1,
            recovered.as_secs_f64() * 1000.0
        );
        samples.push(recovered);
        if let Some(load) = &load {
            // Give writes in flight at the kill time to end (2 s timeout).
            tokio::time::sleep(Duration::from_secs(3)).await;
            let (rate, gap) = load.around(killed_at, killed_at + Duration::from_secs(3));
            println!(
                "  background load: {rate:.0} writes/s in the second before the kill; \
                 longest time with no write completing after it: {:.0} ms",
                gap.as_secs_f64() * 1000.0
            );
            load_gaps.push(gap);
        }
        c.restart(leader)?;
        c.wait_healthy(Duration::from_secs(30)).await?;
        if load.is_some() {
            // Back at its rate with every member before the next kill.
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
    if let Some(load) = &load {
        load_gaps.sort();
        if let Some(median) = load_gaps.get(load_gaps.len() / 2) {
            println!(
                "background load of {} writes/s: median longest gap {:.0} ms; {} puts not issued \
                 (over {LOAD_IN_FLIGHT_MAX} in flight)",
                a.load_rate,
                median.as_secs_f64() * 1000.0,
                load.skipped.load(std::sync::atomic::Ordering::Relaxed)
            );
        }
    }
    if !samples.is_empty() {
        samples.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "failover over {} kills: median {:.0} ms, min {:.0} ms, max {:.0} ms",
            samples.len(),
            ms(samples[samples.len() / 2]),
            ms(samples[0]),
            ms(samples[samples.len() - 1])
        );
    }
    Ok(())
}
