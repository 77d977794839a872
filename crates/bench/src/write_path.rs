//! `bench write-path`: where a lone write's time goes. Sequential puts (one
//! in flight) go to the leader, then to a follower, on a 3-replica Keelson
//! cluster and on a 3-member etcd cluster in the same run. For each, the
//! client's p50/p99, and the mean of every stage the servers time, read
//! from their `/metrics` before and after (Keelson: `keelson_store_*`, see
//! `keelson_store::stages`; etcd: its WAL fsync and backend commit).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use keelson_proto::etcdserverpb::kv_client::KvClient;
use keelson_proto::etcdserverpb::{PutRequest, RangeRequest};
use keelson_testkit::stats::percentile;
use keelson_testkit::{channel, ProcCluster, Program};

use crate::{keelson_cluster, num_cpus};

#[derive(Args)]
pub struct WritePathArgs {
    /// The etcd binary to compare against (Debian's etcd-server).
    #[arg(long, default_value = "/usr/bin/etcd")]
    pub etcd: PathBuf,
    /// Sequential puts per route (after 200 to warm up).
    #[arg(long, default_value_t = 2000)]
    pub puts: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 256)]
    pub value_size: usize,
    /// Run the replicas from this keelson binary instead of this one (to
    /// compare builds; stages it does not time are left out).
    #[arg(long)]
    pub server_bin: Option<PathBuf>,
}

/// One scrape of every member's `/metrics`.
type Scrape = Vec<String>;

/// `GET /metrics` over HTTP/1.0 (so the body is never chunked).
fn scrape_one(port: u16) -> anyhow::Result<String> {
    use std::io::{Read, Write};
    let addr = format!("127.0.0.1:{port}");
    let mut s = std::net::TcpStream::connect(&addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("no HTTP head from {addr}"))?;
    if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
        anyhow::bail!("/metrics on {addr}: {}", head.lines().next().unwrap_or(""));
    }
    Ok(body.to_string())
}

fn scrape(ports: &[u16]) -> anyhow::Result<Scrape> {
    ports.iter().map(|p| scrape_one(*p)).collect()
}

/// The sum of every sample of `name` whose labels contain `label` (empty:
/// any).
fn sample_sum(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, labels) = match series.split_once('{') {
                Some((m, rest)) => (m, rest),
                None => (series, ""),
            };
            (metric == name && labels.contains(label)).then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

/// A histogram's change between two scrapes of one member: (count, mean
/// in ms).
fn histogram_delta(before: &str, after: &str, name: &str, label: &str) -> (f64, Option<f64>) {
    let count = sample_sum(after, &format!("{name}_count"), label)
        - sample_sum(before, &format!("{name}_count"), label);
    let sum = sample_sum(after, &format!("{name}_sum"), label)
        - sample_sum(before, &format!("{name}_sum"), label);
    (count, (count > 0.0).then(|| sum / count * 1000.0))
}

/// Sequential puts to one endpoint; the latency of each in µs.
async fn lone_puts(
    endpoint: &str,
    puts: usize,
    value: &[u8],
    prefix: &str,
) -> anyhow::Result<Vec<u32>> {
    let mut kv = KvClient::new(channel(endpoint)?);
    let mut lat = Vec::with_capacity(puts);
    for i in 0..puts {
        let t = Instant::now();
        kv.put(PutRequest {
            key: format!("{prefix}/{:04}", i % 1000).into_bytes(),
            value: value.to_vec(),
            ..Default::default()
        })
        .await?;
        lat.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
    }
    Ok(lat)
}

/// Sequential serializable gets of one key: a client-to-member round trip
/// with next to no work behind it (µs each).
async fn lone_gets(endpoint: &str, gets: usize) -> anyhow::Result<Vec<u32>> {
    let mut kv = KvClient::new(channel(endpoint)?);
    let mut lat = Vec::with_capacity(gets);
    for _ in 0..gets {
        let t = Instant::now();
        kv.range(RangeRequest {
            key: b"lone/0000".to_vec(),
            serializable: true,
            ..Default::default()
        })
        .await?;
        lat.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
    }
    lat.sort_unstable();
    Ok(lat)
}

struct Stage {
    /// What it is and where it is timed.
    what: &'static str,
    /// The member the histogram is read from: the leader, or the client's
    /// member (a follower on that route), or every follower (averaged).
    at: At,
    metric: &'static str,
    label: &'static str,
}

#[derive(Clone, Copy, PartialEq)]
enum At {
    Leader,
    Client,
    Followers,
}

const KEELSON_STAGES: &[Stage] = &[
    Stage {
        what: "client's replica: queued to answered (forwarded to the leader)",
        at: At::Client,
        metric: "keelson_store_propose_duration_seconds",
        label: "route=\"forwarded\"",
    },
    Stage {
        what: "leader: a forwarded batch, received to answered",
        at: At::Leader,
        metric: "keelson_store_forwarded_propose_duration_seconds",
        label: "",
    },
    Stage {
        what: "leader: proposed to answered (append, replicate, commit, apply)",
        at: At::Leader,
        metric: "keelson_store_propose_duration_seconds",
        label: "route=\"leader\"",
    },
    Stage {
        what: "leader: its log's fsync (overlapping replication)",
        at: At::Leader,
        metric: "keelson_store_wal_fsync_duration_seconds",
        label: "",
    },
    Stage {
        what: "leader: AppendEntries round trip to a follower",
        at: At::Leader,
        metric: "keelson_store_peer_append_duration_seconds",
        label: "",
    },
    Stage {
        what: "follower: AppendEntries received to answered",
        at: At::Followers,
        metric: "keelson_store_peer_append_handle_duration_seconds",
        label: "",
    },
    Stage {
        what: "follower: its log's fsync",
        at: At::Followers,
        metric: "keelson_store_wal_fsync_duration_seconds",
        label: "",
    },
    Stage {
        what: "leader: apply to the state machine",
        at: At::Leader,
        metric: "keelson_store_apply_duration_seconds",
        label: "",
    },
];

const ETCD_STAGES: &[Stage] = &[
    Stage {
        what: "leader: WAL fsync",
        at: At::Leader,
        metric: "etcd_disk_wal_fsync_duration_seconds",
        label: "",
    },
    Stage {
        what: "follower: WAL fsync",
        at: At::Followers,
        metric: "etcd_disk_wal_fsync_duration_seconds",
        label: "",
    },
    Stage {
        what: "leader: backend (bbolt) commit",
        at: At::Leader,
        metric: "etcd_disk_backend_commit_duration_seconds",
        label: "",
    },
];

/// Run the two routes on a healthy cluster and print them.
async fn measure(
    system: &str,
    c: &ProcCluster,
    metrics_ports: &[u16],
    stages: &[Stage],
    a: &WritePathArgs,
) -> anyhow::Result<()> {
    let leader = c
        .leader()
        .await
        .ok_or_else(|| anyhow::anyhow!("{system}: no leader"))?;
    let follower = (0..c.members.len())
        .find(|i| *i != leader)
        .ok_or_else(|| anyhow::anyhow!("{system}: no follower"))?;
    let value = vec![b'x'; a.value_size];
    for (route, at) in [("leader", leader), ("follower", follower)] {
        let endpoint = c.members[at].endpoint();
        lone_puts(&endpoint, 200, &value, "warm").await?;
        let before = scrape(metrics_ports)?;
        let mut lat = lone_puts(&endpoint, a.puts, &value, "lone").await?;
        let after = scrape(metrics_ports)?;
        if c.leader().await != Some(leader) {
            anyhow::bail!("{system}: the leader changed during the run; run it again");
        }
        lat.sort_unstable();
        let mean = lat.iter().map(|v| f64::from(*v)).sum::<f64>() / lat.len().max(1) as f64;
        println!(
            "{system}, {} lone puts to the {route}: p50 {:.3} ms, p99 {:.3} ms, mean {:.3} ms",
            lat.len(),
            percentile(&lat, 0.50) / 1000.0,
            percentile(&lat, 0.99) / 1000.0,
            mean / 1000.0
        );
        for s in stages {
            let members: Vec<usize> = match s.at {
                At::Leader => vec![leader],
                At::Client => vec![at],
                At::Followers => (0..c.members.len()).filter(|i| *i != leader).collect(),
            };
            let mut count = 0.0;
            let mut means = Vec::new();
            for m in members {
                let (n, mean) = histogram_delta(&before[m], &after[m], s.metric, s.label);
                count += n;
                means.extend(mean);
            }
            if means.is_empty() {
                continue;
            }
            let mean = means.iter().sum::<f64>() / means.len() as f64;
            println!(
                "  {:<66} {:>8.3} ms  ({:.2} per put)",
                s.what,
                mean,
                count / lat.len().max(1) as f64 / if s.at == At::Followers { 2.0 } else { 1.0 }
            );
        }
    }
    let gets = lone_gets(&c.members[follower].endpoint(), a.puts).await?;
    println!(
        "{system}, {} lone serializable gets (a client round trip, no Raft): p50 {:.3} ms, p99 {:.3} ms",
        gets.len(),
        percentile(&gets, 0.50) / 1000.0,
        percentile(&gets, 0.99) / 1000.0,
    );
    Ok(())
}

pub async fn run(a: WritePathArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    println!(
        "machine: {} cores; 3 members per cluster on loopback; fsync on for both; {} B values",
        num_cpus(),
        a.value_size
    );
    {
        let c = keelson_cluster(a.server_bin.as_deref(), 3, &[], &dir.path().join("keelson"))?;
        c.wait_healthy(Duration::from_secs(30)).await?;
        let ports: Vec<u16> = c.members.iter().map(|m| m.metrics_port).collect();
        measure("keelson", &c, &ports, KEELSON_STAGES, &a).await?;
    }
    {
        let c = ProcCluster::start(
            Program::Etcd {
                bin: a.etcd.clone(),
            },
            3,
            &dir.path().join("etcd"),
        )?;
        c.wait_healthy(Duration::from_secs(30)).await?;
        let ports: Vec<u16> = c.members.iter().map(|m| m.client_port).collect();
        measure("etcd", &c, &ports, ETCD_STAGES, &a).await?;
    }
    Ok(())
}
