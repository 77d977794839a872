//! `bench scale`: how the store's costs grow with its data. Loads 10,000
//! keys, then up to `--keys` (1M by default), on a 3-member Keelson
//! cluster and on a 3-member etcd cluster, and records at each size:
//! every member's RSS, the data dirs' size on disk, a snapshot's size and
//! the time to stream it, put and get throughput (256 in flight), and, at
//! the large size only, a member's restart time (SIGKILL, start, first
//! answered read) and a lagging member's catch-up (down while
//! `--lag-puts` puts land, then started: time until its revision is the
//! leader's).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use keelson_proto::etcdserverpb::kv_client::KvClient;
use keelson_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use keelson_proto::etcdserverpb::{PutRequest, RangeRequest, SnapshotRequest};
use keelson_testkit::{channel, ProcCluster, Program};
use tonic::transport::Channel;

use crate::nodes::rss_mib;
use crate::{keelson_cluster, num_cpus, Load, Op, PhaseResult};

#[derive(Args)]
pub struct ScaleArgs {
    /// The etcd binary to compare against (Debian's etcd-server).
    #[arg(long, default_value = "/usr/bin/etcd")]
    pub etcd: PathBuf,
    /// Keys at the large size.
    #[arg(long, default_value_t = 1_000_000)]
    pub keys: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 256)]
    pub value_size: usize,
    /// Seconds per throughput phase.
    #[arg(long, default_value_t = 5)]
    pub phase_secs: u64,
    /// Puts written while a member is down, before it catches up.
    #[arg(long, default_value_t = 120_000)]
    pub lag_puts: usize,
    /// Run the replicas from this keelson binary instead of this one.
    #[arg(long)]
    pub server_bin: Option<PathBuf>,
    /// Extra flags for every `keelson server` (e.g. `--snapshot-count`).
    #[arg(long, allow_hyphen_values = true, num_args = 0..)]
    pub server_args: Vec<String>,
}

const SMALL: usize = 10_000;
const LOAD_IN_FLIGHT: usize = 256;

fn key(i: usize) -> Vec<u8> {
    format!("scale/{i:09}").into_bytes()
}

/// Put keys `from..to` (each once), `LOAD_IN_FLIGHT` at a time over the
/// given members. Returns puts per second.
async fn load_keys(
    clients: &[KvClient<Channel>],
    from: usize,
    to: usize,
    value: &[u8],
) -> anyhow::Result<f64> {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..LOAD_IN_FLIGHT {
        let mut c = clients[w % clients.len()].clone();
        let value = value.to_vec();
        tasks.push(tokio::spawn(async move {
            let mut i = from + w;
            while i < to {
                let mut tries = 0;
                loop {
                    let req = PutRequest {
                        key: key(i),
                        value: value.clone(),
                        ..Default::default()
                    };
                    match c.put(req).await {
                        Ok(_) => break,
                        Err(e) if tries >= 5 => return Err(anyhow::anyhow!("put: {e}")),
                        Err(_) => {
                            tries += 1;
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
                i += LOAD_IN_FLIGHT;
            }
            Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok((to - from) as f64 / start.elapsed().as_secs_f64())
}

fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Stream a snapshot from `endpoint`: (bytes, seconds).
async fn snapshot(endpoint: &str) -> anyhow::Result<(u64, f64)> {
    let mut m = MaintenanceClient::new(channel(endpoint)?).max_decoding_message_size(64 << 20);
    let start = Instant::now();
    let mut stream = m.snapshot(SnapshotRequest {}).await?.into_inner();
    let mut bytes = 0u64;
    while let Some(chunk) = stream.message().await? {
        bytes += chunk.blob.len() as u64;
    }
    Ok((bytes, start.elapsed().as_secs_f64()))
}

/// The revision member `endpoint` serves (a serializable read).
async fn revision(endpoint: &str) -> anyhow::Result<i64> {
    let mut kv = KvClient::new(channel(endpoint)?);
    let mut req = tonic::Request::new(RangeRequest {
        key: b"scale/none".to_vec(),
        serializable: true,
        ..Default::default()
    });
    req.set_timeout(Duration::from_millis(500));
    let r = kv.range(req).await?.into_inner();
    Ok(r.header.map(|h| h.revision).unwrap_or(0))
}

/// Until member `endpoint` answers a serializable read (or `limit`).
async fn until_serving(endpoint: &str, limit: Duration) -> anyhow::Result<Duration> {
    let start = Instant::now();
    loop {
        if revision(endpoint).await.is_ok() {
            return Ok(start.elapsed());
        }
        if start.elapsed() > limit {
            anyhow::bail!("{endpoint} not serving after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The leader's index and a follower's.
async fn leader_and_follower(c: &ProcCluster) -> anyhow::Result<(usize, usize)> {
    let leader = c
        .leader()
        .await
        .ok_or_else(|| anyhow::anyhow!("no leader"))?;
    let follower = (0..c.members.len())
        .find(|i| *i != leader)
        .ok_or_else(|| anyhow::anyhow!("no follower"))?;
    Ok((leader, follower))
}

struct SizeReport {
    keys: usize,
    load_rate: f64,
    rss_mib: Vec<f64>,
    /// The leader's RSS right after it streamed a snapshot.
    leader_rss_after_snapshot_mib: f64,
    disk_mib: f64,
    snapshot_mib: f64,
    snapshot_secs: f64,
    put: PhaseResult,
    get: PhaseResult,
}

async fn measure_size(
    c: &ProcCluster,
    keys: usize,
    load_rate: f64,
    value: &[u8],
    a: &ScaleArgs,
) -> anyhow::Result<SizeReport> {
    let mut clients = Vec::new();
    for _ in 0..2 {
        for e in c.endpoints() {
            clients.push(KvClient::new(channel(&e)?));
        }
    }
    let load = Arc::new(Load {
        clients,
        server_pids: c.pids(),
        value: value.to_vec(),
        keys,
    });
    // Overwrites of the loaded keys (`Load` spreads over `keys`).
    let put = load
        .phase(
            "put, 256 in flight",
            Op::Put,
            256,
            a.phase_secs,
            usize::MAX / 2,
        )
        .await;
    let get = load
        .phase(
            "get linearizable, 256 in flight",
            Op::Get {
                serializable: false,
            },
            256,
            a.phase_secs,
            usize::MAX / 2,
        )
        .await;
    let rss: Vec<f64> = c.pids().into_iter().map(rss_mib).collect();
    let leader = c.leader().await.unwrap_or(0);
    let (snap_bytes, snapshot_secs) = snapshot(&c.members[leader].endpoint()).await?;
    Ok(SizeReport {
        keys,
        load_rate,
        rss_mib: rss,
        leader_rss_after_snapshot_mib: c.members[leader].pid().map_or(0.0, rss_mib),
        disk_mib: c
            .members
            .iter()
            .map(|m| dir_bytes(&m.data_dir))
            .sum::<u64>() as f64
            / 3.0
            / 1048576.0,
        snapshot_mib: snap_bytes as f64 / 1048576.0,
        snapshot_secs,
        put,
        get,
    })
}

fn print_size(system: &str, r: &SizeReport, value_size: usize) {
    let live_mib = r.keys as f64 * (value_size + 15) as f64 / 1048576.0;
    let rss: Vec<String> = r.rss_mib.iter().map(|m| format!("{m:.0}")).collect();
    println!(
        "{system}, {} keys (about {live_mib:.0} MiB of keys and values; loaded at {:.0} puts/s):",
        r.keys, r.load_rate
    );
    println!("  RSS per member: {} MiB", rss.join(" / "));
    println!("  data dir per member (mean): {:.0} MiB", r.disk_mib);
    println!(
        "  snapshot from the leader: {:.0} MiB in {:.2} s (leader's RSS after it: {:.0} MiB)",
        r.snapshot_mib, r.snapshot_secs, r.leader_rss_after_snapshot_mib
    );
    for p in [&r.put, &r.get] {
        println!(
            "  {}: {:.0} ops/s, p50 {:.2} ms, p99 {:.2} ms, {} errors",
            p.name, p.ops_per_sec, p.p50_ms, p.p99_ms, p.errors
        );
    }
}

async fn run_one(system: &str, mut c: ProcCluster, a: &ScaleArgs) -> anyhow::Result<()> {
    c.wait_healthy(Duration::from_secs(60)).await?;
    let value = vec![b'x'; a.value_size];
    let mut clients = Vec::new();
    for e in c.endpoints() {
        clients.push(KvClient::new(channel(&e)?));
    }
    let rate = load_keys(&clients, 0, SMALL, &value).await?;
    let small = measure_size(&c, SMALL, rate, &value, a).await?;
    print_size(system, &small, a.value_size);
    let rate = load_keys(&clients, SMALL, a.keys, &value).await?;
    let large = measure_size(&c, a.keys, rate, &value, a).await?;
    print_size(system, &large, a.value_size);
    println!(
        "  throughput at {} keys vs {SMALL}: put {:.2}x, get {:.2}x",
        a.keys,
        large.put.ops_per_sec / small.put.ops_per_sec.max(1e-9),
        large.get.ops_per_sec / small.get.ops_per_sec.max(1e-9)
    );

    // Restart: a follower killed and started again on its data.
    let (_, follower) = leader_and_follower(&c).await?;
    c.kill(follower);
    c.restart(follower)?;
    let took = until_serving(&c.members[follower].endpoint(), Duration::from_secs(300)).await?;
    println!(
        "  restart of a member ({} keys on disk): serving after {:.2} s",
        a.keys,
        took.as_secs_f64()
    );

    // Catch-up: a follower down while puts land, then started.
    c.wait_healthy(Duration::from_secs(120)).await?;
    let (leader, follower) = leader_and_follower(&c).await?;
    c.kill(follower);
    let up: Vec<KvClient<Channel>> = (0..3)
        .filter(|i| *i != follower)
        .map(|i| channel(&c.members[i].endpoint()).map(KvClient::new))
        .collect::<anyhow::Result<_>>()?;
    load_keys(&up, 0, a.lag_puts, &value).await?;
    let target = revision(&c.members[leader].endpoint()).await?;
    let start = Instant::now();
    c.restart(follower)?;
    let endpoint = c.members[follower].endpoint();
    loop {
        if let Ok(rev) = revision(&endpoint).await {
            if rev >= target {
                break;
            }
        }
        if start.elapsed() > Duration::from_secs(300) {
            anyhow::bail!("{system}: the lagging member did not catch up in 300 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "  a member down for {} puts: caught up {:.2} s after its start",
        a.lag_puts,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

pub async fn run(a: ScaleArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    println!(
        "machine: {} cores; 3 members per cluster on loopback; fsync on for both; {} B values",
        num_cpus(),
        a.value_size
    );
    let keelson = keelson_cluster(
        a.server_bin.as_deref(),
        3,
        &a.server_args,
        &dir.path().join("keelson"),
    )?;
    run_one("keelson", keelson, &a).await?;
    let etcd = ProcCluster::start(
        Program::Etcd {
            bin: a.etcd.clone(),
        },
        3,
        &dir.path().join("etcd"),
    )?;
    run_one("etcd", etcd, &a).await?;
    Ok(())
}
