//! `keelson bench nodes`: node agents against a 3-replica loopback cluster.
//!
//! - **heartbeats**: N simulated nodes (in this process) heartbeating every
//!   second over one keep-alive stream; for `--secs`: each replica's CPU
//!   and memory, heartbeat round trips (renewal sent -> reply), and nodes
//!   wrongly marked NotReady (the node lifecycle controller runs, with its
//!   default 5 s grace). Anchor: etcd 3.4 keeping the same number of leases
//!   alive at the same rate over its own LeaseKeepAlive stream.
//! - **pod startup**: 2 real agents; P `builtin/sleep` pods created at
//!   once; each pod's latency from its create's acknowledgement to the
//!   watch showing it Running.

use crate::keelson_bin;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use futures::StreamExt;
use keelson_model::Resource;
use keelson_proto::etcdserverpb::lease_client::LeaseClient;
use keelson_proto::etcdserverpb::{LeaseGrantRequest, LeaseKeepAliveRequest};
use keelson_proto::v1;
use keelson_sdk::watcher::Event;
use keelson_sdk::{watcher, Api, Client, Config, DeleteParams, ListParams};
use keelson_testkit::{channel, ProcCluster, Program};
use tokio::sync::Mutex;

#[derive(Args)]
pub struct NodesBenchArgs {
    /// Simulated nodes heartbeating.
    #[arg(long, default_value_t = 10000)]
    pub nodes: usize,
    /// Seconds of steady heartbeats measured.
    #[arg(long, default_value_t = 60)]
    pub secs: u64,
    /// Pods started on two real agents.
    #[arg(long, default_value_t = 100)]
    pub pods: usize,
    /// The etcd binary for the anchor (Debian's etcd-server).
    #[arg(long, default_value = "/usr/bin/etcd")]
    pub etcd: PathBuf,
    /// Skip the etcd anchor.
    #[arg(long)]
    pub no_etcd: bool,
}

use keelson_testkit::stats::percentile;

/// Per process of `pids`, over the next `secs`: cores used on average, and
/// RSS (MiB) at the end; and the window's length in seconds.
async fn replica_usage(pids: &[u32], secs: u64) -> (Vec<(f64, f64)>, f64) {
    let before: Vec<u64> = pids.iter().map(|p| super::cpu_ticks(&[*p])).collect();
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let wall = start.elapsed().as_secs_f64();
    let hz = super::clock_ticks_per_sec();
    let usage = pids
        .iter()
        .zip(before)
        .map(|(p, b)| {
            (
                (super::cpu_ticks(&[*p]).saturating_sub(b)) as f64 / hz / wall,
                rss_mib(*p),
            )
        })
        .collect();
    (usage, wall)
}

/// VmRSS of a process, in MiB.
pub(crate) fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

struct Heartbeats {
    /// Per replica: cores used on average, RSS at the end (MiB).
    replicas: Vec<(f64, f64)>,
    per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    not_ready: usize,
    not_ready_events: usize,
}

fn print_heartbeats(label: &str, h: &Heartbeats) {
    let cpu: Vec<String> = h.replicas.iter().map(|(c, _)| format!("{c:.2}")).collect();
    let mem: Vec<String> = h.replicas.iter().map(|(_, m)| format!("{m:.0}")).collect();
    println!(
        "| {label} | {:.0} | {:.1} | {:.1} | {:.1} | {} | {} | {} ({} events) |",
        h.per_sec,
        h.p50_ms,
        h.p99_ms,
        h.max_ms,
        cpu.join(" / "),
        mem.join(" / "),
        h.not_ready,
        h.not_ready_events
    );
}

async fn keelson_heartbeats(
    a: &NodesBenchArgs,
    dir: &std::path::Path,
) -> anyhow::Result<Heartbeats> {
    let me = keelson_bin()?;
    let c = ProcCluster::start(
        Program::Keelson {
            bin: me,
            extra_args: vec![],
        },
        3,
        dir,
    )?;
    c.wait_healthy(Duration::from_secs(60)).await?;
    let client = Client::new(&Config::new(c.api_endpoints(), c.token("admin", None)))?;
    let rtt: keelson_agent::sim::RttSink = Arc::default();
    let opts = keelson_agent::sim::SimOptions {
        count: a.nodes,
        report_pods: false,
        rtt: Some(rtt.clone()),
        ..Default::default()
    };
    let sim = tokio::spawn(keelson_agent::sim::run(client.clone(), opts));
    let leases: Api<v1::Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let t0 = Instant::now();
    loop {
        let n = leases
            .list(&ListParams::default().limit(1))
            .await
            .map(|l| l.items.len())
            .unwrap_or(0);
        // Count all pages only once the first page is non-empty.
        if n > 0 {
            let mut p = ListParams::default().limit(5000);
            let mut total = 0;
            loop {
                let page = leases.list(&p).await?;
                total += page.items.len();
                if page.continue_token.is_empty() {
                    break;
                }
                p.continue_token = page.continue_token;
            }
            if total >= a.nodes {
                break;
            }
        }
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(600),
            "the simulated nodes did not all register in 10 minutes"
        );
        if sim.is_finished() {
            anyhow::bail!("the simulated nodes stopped");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    println!(
        "{} simulated nodes registered and heartbeating after {:.1} s",
        a.nodes,
        t0.elapsed().as_secs_f64()
    );
    // Settle, then measure a steady window.
    tokio::time::sleep(Duration::from_secs(5)).await;
    if let Ok(mut v) = rtt.lock() {
        v.clear();
    }
    let (replicas, wall) = replica_usage(&c.pids(), a.secs).await;
    let mut samples = rtt.lock().map(|v| v.clone()).unwrap_or_default();
    samples.sort_unstable();
    let nodes: Api<v1::Node> = Api::all(client.clone());
    let mut not_ready = 0;
    let mut p = ListParams::default().limit(5000);
    loop {
        let page = nodes.list(&p).await?;
        not_ready += page
            .items
            .iter()
            .filter(|n| {
                !n.status.as_ref().is_some_and(|s| {
                    s.conditions
                        .iter()
                        .any(|c| c.r#type == "Ready" && c.status == "True")
                })
            })
            .count();
        if page.continue_token.is_empty() {
            break;
        }
        p.continue_token = page.continue_token;
    }
    let events: Api<v1::Event> = Api::namespaced(client.clone(), "default");
    let not_ready_events = events
        .list(&ListParams::default())
        .await
        .map(|l| {
            l.items
                .iter()
                .filter(|e| e.reason == "NodeNotReady")
                .count()
        })
        .unwrap_or(0);
    sim.abort();
    Ok(Heartbeats {
        replicas,
        per_sec: samples.len() as f64 / wall,
        p50_ms: percentile(&samples, 0.5) / 1000.0,
        p99_ms: percentile(&samples, 0.99) / 1000.0,
        max_ms: percentile(&samples, 1.0) / 1000.0,
        not_ready,
        not_ready_events,
    })
}

async fn etcd_heartbeats(a: &NodesBenchArgs, dir: &std::path::Path) -> anyhow::Result<Heartbeats> {
    let c = ProcCluster::start(
        Program::Etcd {
            bin: a.etcd.clone(),
        },
        3,
        dir,
    )?;
    c.wait_healthy(Duration::from_secs(60)).await?;
    let endpoints = c.endpoints();
    let leases = LeaseClient::new(channel(&endpoints[0])?);
    // The keep-alive stream lives for the whole window: no request timeout.
    let stream_channel = tonic::transport::Endpoint::from_shared(endpoints[0].clone())?
        .tcp_nodelay(true)
        .connect_lazy();
    let ids: Vec<i64> = futures::stream::iter(0..a.nodes)
        .map(|_| {
            let mut l = leases.clone();
            async move {
                l.lease_grant(LeaseGrantRequest { ttl: 10, id: 0 })
                    .await
                    .map(|r| r.into_inner().id)
            }
        })
        .buffer_unordered(256)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()
        .context("etcd lease grants")?;
    let (tx, rx) = tokio::sync::mpsc::channel::<LeaseKeepAliveRequest>(1024);
    let sent: Arc<std::sync::Mutex<HashMap<i64, Instant>>> = Arc::default();
    let sender = {
        let (ids, sent) = (ids.clone(), sent.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                for id in &ids {
                    if let Ok(mut s) = sent.lock() {
                        s.insert(*id, Instant::now());
                    }
                    if tx.send(LeaseKeepAliveRequest { id: *id }).await.is_err() {
                        return;
                    }
                }
            }
        })
    };
    // etcd sends the stream's headers with its first reply: the call
    // returns only once renewals flow, so the sender starts first.
    let mut replies = LeaseClient::new(stream_channel)
        .lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    let samples: Arc<Mutex<Vec<u32>>> = Arc::default();
    let reader = {
        let (sent, samples) = (sent.clone(), samples.clone());
        tokio::spawn(async move {
            while let Some(Ok(r)) = replies.next().await {
                let at = sent.lock().ok().and_then(|mut s| s.remove(&r.id));
                if let Some(at) = at {
                    samples
                        .lock()
                        .await
                        .push(u32::try_from(at.elapsed().as_micros()).unwrap_or(u32::MAX));
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(5)).await;
    samples.lock().await.clear();
    let (replicas, wall) = replica_usage(&c.pids(), a.secs).await;
    let mut s = samples.lock().await.clone();
    s.sort_unstable();
    sender.abort();
    reader.abort();
    Ok(Heartbeats {
        replicas,
        per_sec: s.len() as f64 / wall,
        p50_ms: percentile(&s, 0.5) / 1000.0,
        p99_ms: percentile(&s, 0.99) / 1000.0,
        max_ms: percentile(&s, 1.0) / 1000.0,
        not_ready: 0,
        not_ready_events: 0,
    })
}

/// Pod startup latency on two real agents: (p50 ms, p99 ms, max ms).
/// What [`pod_startup`] runs: `pods` pods of `image` (with `args`) on two
/// agents of `runtime`, whose data dirs get `archive` loaded first (an
/// image present on the nodes).
pub(crate) struct Startup<'a> {
    pub pods: usize,
    pub runtime: &'a str,
    pub image: &'a str,
    pub args: &'a [&'a str],
    pub archive: Option<&'a std::path::Path>,
}

/// Per-pod costs on the nodes once every pod runs (MiB of RSS): the pause
/// processes, the `runc run` supervisors, and the agents' growth.
pub(crate) struct Overhead {
    pub pause_mib: f64,
    pub runc_mib: f64,
    pub agent_mib: f64,
}

/// The machine's CPU time so far, from `/proc/stat`: (busy, all) ticks.
fn machine_cpu() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let v: Vec<u64> = text
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let all: u64 = v.iter().sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    Some((all.saturating_sub(idle), all))
}

/// RSS in MiB of the processes whose command line contains `needle`.
fn rss_of(needle: &str) -> Vec<f64> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let p = e.path();
        let cmd = std::fs::read(p.join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if !cmd.contains(needle) {
            continue;
        }
        if let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) {
            out.push(rss_mib(pid));
        }
    }
    out
}

pub(crate) async fn pod_startup(
    a: &Startup<'_>,
    dir: &std::path::Path,
) -> anyhow::Result<((f64, f64, f64), Option<Overhead>)> {
    let me = keelson_bin()?;
    let c = ProcCluster::start(
        Program::Keelson {
            bin: me.clone(),
            extra_args: vec![],
        },
        3,
        &dir.join("cluster"),
    )?;
    c.wait_healthy(Duration::from_secs(60)).await?;
    let mut agents = Vec::new();
    for (name, addr) in [("b1", "127.0.0.21"), ("b2", "127.0.0.22")] {
        if let Some(archive) = a.archive {
            let out = std::process::Command::new(&me)
                .args(["image", "load"])
                .arg(archive)
                .arg("--data-dir")
                .arg(dir.join(name))
                .output()?;
            anyhow::ensure!(
                out.status.success(),
                "keelson image load: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        agents.push(
            c.keelson([
                "agent",
                "--runtime",
                a.runtime,
                "--name",
                name,
                "--address",
                addr,
            ])?
            .args(["--stop-pods-on-exit", "--data-dir"])
            .args([dir.join(name)])
            .named(format!("agent {name}"))
            .log(&dir.join(format!("agent-{name}.log")))
            .spawn()?,
        );
    }
    let agent_rss =
        |agents: &Vec<std::process::Child>| -> f64 { agents.iter().map(|c| rss_mib(c.id())).sum() };
    let client = Client::new(&Config::new(c.api_endpoints(), c.token("admin", None)))?;
    let nodes: Api<v1::Node> = Api::all(client.clone());
    let t0 = Instant::now();
    while nodes
        .list(&ListParams::default())
        .await
        .map_or(0, |l| l.items.len())
        < 2
    {
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(30),
            "agents did not register"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let running: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let bound: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let watch = {
        let (client, running, bound) = (client.clone(), running.clone(), bound.clone());
        tokio::spawn(async move {
            let mut events = Box::pin(watcher(
                Api::<v1::Pod>::namespaced(client, "default"),
                ListParams::default().labels("app=startup"),
            ));
            while let Some(ev) = events.next().await {
                let now = Instant::now();
                let pods = match ev {
                    Ok(Event::Applied(p)) => vec![p],
                    Ok(Event::Restarted(ps)) => ps,
                    _ => continue,
                };
                let mut g = running.lock().await;
                let mut b = bound.lock().await;
                for p in pods {
                    if p.spec.as_ref().is_some_and(|s| !s.node_name.is_empty()) {
                        b.entry(p.meta().name.clone()).or_insert(now);
                    }
                    if p.status.as_ref().is_some_and(|s| s.phase == "Running") {
                        g.entry(p.meta().name.clone()).or_insert(now);
                    }
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let agents_before = agent_rss(&agents);
    let pods: Api<v1::Pod> = Api::namespaced(client.clone(), "default");
    let acked: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let cpu_before = machine_cpu();
    let burst = Instant::now();
    let results = futures::stream::iter(0..a.pods)
        .map(|i| {
            let (pods, acked) = (pods.clone(), acked.clone());
            async move {
                let p = keelson_testkit::fixtures::pod(&format!("startup-{i}"))
                    .no_namespace()
                    .image(a.image)
                    .args(a.args)
                    .label("app", "startup")
                    .grace_seconds(1)
                    .build();
                pods.create(&p).await?;
                acked
                    .lock()
                    .await
                    .insert(p.meta().name.clone(), Instant::now());
                Ok::<(), keelson_sdk::Error>(())
            }
        })
        .buffer_unordered(a.pods.max(1))
        .collect::<Vec<_>>()
        .await;
    if let Some(Err(e)) = results.into_iter().find(|r| r.is_err()) {
        anyhow::bail!("create pods: {e}");
    }
    let t0 = Instant::now();
    while running.lock().await.len() < a.pods && t0.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // How busy the machine was from the first create to the last pod
    // Running: all of it (control plane, agents, runtimes).
    if let (Some((busy0, all0)), Some((busy1, all1))) = (cpu_before, machine_cpu()) {
        let ticks = all1.saturating_sub(all0).max(1) as f64;
        let busy = busy1.saturating_sub(busy0) as f64;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let secs = burst.elapsed().as_secs_f64();
        println!(
            "{} runtime, create -> all Running: {:.1} s with the machine {:.0}% busy, {:.0} ms of CPU per pod",
            a.runtime,
            secs,
            100.0 * busy / ticks,
            1000.0 * secs * cores * (busy / ticks) / a.pods.max(1) as f64
        );
    }
    let mut lat: Vec<f64> = {
        let r = running.lock().await;
        let k = acked.lock().await;
        k.iter()
            .filter_map(|(n, at)| {
                r.get(n)
                    .map(|t| t.saturating_duration_since(*at).as_secs_f64() * 1000.0)
            })
            .collect()
    };
    lat.sort_by(f64::total_cmp);
    anyhow::ensure!(
        lat.len() == a.pods,
        "only {} of {} pods ran",
        lat.len(),
        a.pods
    );
    {
        let b = bound.lock().await;
        let k = acked.lock().await;
        let r = running.lock().await;
        let ms = |from: &Instant, to: &Instant| {
            to.saturating_duration_since(*from).as_secs_f64() * 1000.0
        };
        let mut to_bind: Vec<f64> = k
            .iter()
            .filter_map(|(n, at)| b.get(n).map(|t| ms(at, t)))
            .collect();
        let mut to_run: Vec<f64> = b
            .iter()
            .filter_map(|(n, at)| r.get(n).map(|t| ms(at, t)))
            .collect();
        to_bind.sort_by(f64::total_cmp);
        to_run.sort_by(f64::total_cmp);
        println!(
            "pod startup split: created -> bound p50 {:.0} ms, p99 {:.0} ms; bound -> Running p50 {:.0} ms, p99 {:.0} ms",
            percentile(&to_bind, 0.5),
            percentile(&to_bind, 0.99),
            percentile(&to_run, 0.5),
            percentile(&to_run, 0.99)
        );
    }
    watch.abort();
    let overhead = (a.runtime == "runc").then(|| {
        let n = a.pods.max(1) as f64;
        Overhead {
            pause_mib: rss_of("builtin pause").iter().sum::<f64>() / n,
            runc_mib: rss_of("runc --root").iter().sum::<f64>() / n,
            agent_mib: (agent_rss(&agents) - agents_before) / n,
        }
    });
    // Clean up: delete the pods (the agents stop their processes).
    for i in 0..a.pods {
        let _ = pods
            .delete(&format!("startup-{i}"), &DeleteParams::default())
            .await;
    }
    let t0 = Instant::now();
    while pods
        .list(&ListParams::default().labels("app=startup"))
        .await
        .map_or(0, |l| l.items.len())
        > 0
        && t0.elapsed() < Duration::from_secs(30)
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // SIGTERM: agents with --stop-pods-on-exit leave nothing behind.
    for ag in &agents {
        keelson_testkit::signal(ag.id(), libc::SIGTERM);
    }
    for mut ag in agents {
        let t0 = Instant::now();
        while ag.try_wait().ok().flatten().is_none() && t0.elapsed() < Duration::from_secs(30) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = ag.kill();
        let _ = ag.wait();
    }
    if std::env::var_os("KEELSON_BENCH_SHOW_AGENT_LOG").is_some() {
        for name in ["b1", "b2"] {
            let log =
                std::fs::read_to_string(dir.join(format!("agent-{name}.log"))).unwrap_or_default();
            eprintln!("---- agent {name} ----\n{log}");
        }
    }
    Ok((
        (
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
            percentile(&lat, 1.0),
        ),
        overhead,
    ))
}

pub async fn run(a: NodesBenchArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    println!(
        "machine: {} cores; 3 replicas each, fsync on; {} simulated nodes heartbeating every second for {} s; {} pods on 2 agents",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        a.nodes,
        a.secs,
        a.pods
    );
    let k = keelson_heartbeats(&a, &dir.path().join("keelson")).await?;
    let e = if a.no_etcd {
        None
    } else {
        Some(etcd_heartbeats(&a, &dir.path().join("etcd")).await?)
    };
    let startup = Startup {
        pods: a.pods,
        runtime: "process",
        image: "builtin/sleep",
        args: &[],
        archive: None,
    };
    let ((p50, p99, max), _) = pod_startup(&startup, &dir.path().join("startup")).await?;
    println!();
    println!("| heartbeats, {} nodes | renewals/s | p50 ms | p99 ms | max ms | CPU cores per replica | RSS MiB per replica | nodes not Ready at the end |", a.nodes);
    println!("|---|---:|---:|---:|---:|---|---|---|");
    print_heartbeats("keelson (Lease objects, store lease keep-alives)", &k);
    if let Some(e) = &e {
        print_heartbeats("etcd (lease keep-alives)", e);
        let kc: f64 = k.replicas.iter().map(|r| r.0).sum();
        let ec: f64 = e.replicas.iter().map(|r| r.0).sum();
        println!();
        println!(
            "ratios keelson/etcd: heartbeat p99 {:.2}x (lower is better), CPU of the replicas {:.2}x (lower is better)",
            k.p99_ms / e.p99_ms.max(1e-9),
            kc / ec.max(1e-9)
        );
    }
    println!();
    println!(
        "pod startup ({} builtin/sleep pods on 2 agents, created at once): created -> Running p50 {p50:.0} ms, p99 {p99:.0} ms, max {max:.0} ms",
        a.pods
    );
    Ok(())
}
