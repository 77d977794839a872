//! `keelson bench schedule`: the scheduler end to end on a 3-replica
//! loopback cluster, with etcd (the anchor) doing the store's share of
//! the same work in the same run.
//!
//! - **throughput**: N nodes (API objects, Ready) and M pods created while
//!   no scheduler runs; then a `keelson scheduler` process starts and binds
//!   them all. Pods bound per second, counted from the watch (so "bound"
//!   means persisted and visible), from the first bind to the last, and
//!   from the scheduler's start (its initial list of every pod and node
//!   included).
//! - **end to end**: M more pods created while the scheduler runs; each
//!   pod's latency from its create's acknowledgement to its bind showing in
//!   the watch, and pods per second from the first create to the last bind.
//! - **failover** (`--kills K`): the replicas' own schedulers (leader-
//!   elected, embedded in `keelson server`), a stream of pod creations at
//!   a fixed rate; the replica holding the scheduler lease is SIGKILLed,
//!   and the time until the first pod created after the kill is bound.
//! - **etcd anchor**: the same store writes on etcd 3.4: M puts of the pod
//!   bytes, then M compare-and-swap transactions (compare the key's mod
//!   revision, put the bound pod), as many in flight as the scheduler uses.

use crate::keelson_bin;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Child;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use futures::StreamExt;
use keelson_model::Resource;
use keelson_proto::etcdserverpb::{
    compare, request_op, Compare, PutRequest, RequestOp, TxnRequest,
};
use keelson_proto::v1;
use keelson_sdk::watcher::Event;
use keelson_sdk::{watcher, Api, Client, Config, ListParams};
use keelson_testkit::{ProcCluster, Program};
use prost::Message;
use tokio::sync::{Mutex, Semaphore};

#[derive(Args)]
pub struct ScheduleBenchArgs {
    /// Nodes registered (API objects; no agents).
    #[arg(long, default_value_t = 5000)]
    pub nodes: usize,
    /// Pods in each of the throughput and end-to-end phases.
    #[arg(long, default_value_t = 50000)]
    pub pods: usize,
    /// Creates in flight at once.
    #[arg(long, default_value_t = 256)]
    pub in_flight: usize,
    /// Failover measurements (SIGKILL of the scheduler lease holder).
    #[arg(long, default_value_t = 5)]
    pub kills: usize,
    /// Pod creations per second during the failover phase.
    #[arg(long, default_value_t = 100)]
    pub failover_rate: u64,
    /// The etcd binary for the anchor (Debian's etcd-server).
    #[arg(long, default_value = "/usr/bin/etcd")]
    pub etcd: PathBuf,
    /// Skip the etcd anchor.
    #[arg(long)]
    pub no_etcd: bool,
    /// Keep the clusters' data and logs in this directory (default: a
    /// temporary one, removed at the end).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

use keelson_testkit::fixtures;
use keelson_testkit::stats::percentile;

fn node(i: usize) -> v1::Node {
    let name = format!("node-{i}");
    fixtures::node(&name)
        .cpu("32")
        .memory("128Gi")
        .label("kubernetes.io/hostname", &name)
        .build()
}

fn pod(prefix: &str, i: usize) -> v1::Pod {
    fixtures::pod(&format!("{prefix}-{i}"))
        .label("app", prefix)
        .cpu("100m")
        .memory("64Mi")
        .build()
}

/// Run `f(i)` for i in 0..n with `in_flight` at once; (ok, first error).
async fn fan<F, Fut>(n: usize, in_flight: usize, f: F) -> (usize, Option<String>)
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let results: Vec<Result<(), String>> = futures::stream::iter((0..n).map(f))
        .buffer_unordered(in_flight)
        .collect()
        .await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    (ok, results.into_iter().find_map(|r| r.err()))
}

/// When each pod of app `prefix` was first seen bound, by name.
type Binds = Arc<Mutex<HashMap<String, Instant>>>;

/// Watch pods from `rv` and note each bind of a pod labelled `app=<prefix>`.
fn watch_binds(client: Client, prefix: &str) -> (Binds, tokio::task::JoinHandle<()>) {
    let binds: Binds = Arc::default();
    let b = binds.clone();
    let params = ListParams::default().labels(&format!("app={prefix}"));
    let task = tokio::spawn(async move {
        let mut events = Box::pin(watcher(Api::<v1::Pod>::all(client), params));
        while let Some(ev) = events.next().await {
            let now = Instant::now();
            let pods = match ev {
                Ok(Event::Applied(p)) => vec![p],
                Ok(Event::Restarted(ps)) => ps,
                _ => continue,
            };
            let mut g = b.lock().await;
            for p in pods {
                if p.spec.as_ref().is_some_and(|s| !s.node_name.is_empty()) {
                    g.entry(p.meta().name.clone()).or_insert(now);
                }
            }
        }
    });
    (binds, task)
}

async fn wait_bound(binds: &Binds, n: usize, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if binds.lock().await.len() >= n {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

fn start_scheduler(c: &ProcCluster, dir: &std::path::Path) -> anyhow::Result<Child> {
    c.keelson(["scheduler", "--identity", "bench"])?
        .named("keelson scheduler")
        .log(&dir.join("scheduler.log"))
        .spawn()
}

struct Throughput {
    create_per_sec: f64,
    e2e_create_per_sec: f64,
    bound: usize,
    first_to_last_per_sec: f64,
    from_start_per_sec: f64,
    e2e_per_sec: f64,
    e2e_p50_ms: f64,
    e2e_p99_ms: f64,
    e2e_max_ms: f64,
    errors: Option<String>,
}

async fn keelson_throughput(
    a: &ScheduleBenchArgs,
    dir: &std::path::Path,
) -> anyhow::Result<Throughput> {
    let me = keelson_bin()?;
    let c = ProcCluster::start(
        Program::Keelson {
            bin: me,
            extra_args: vec!["--disable-scheduler".into(), "--disable-controllers".into()],
        },
        3,
        dir,
    )?;
    c.wait_healthy(Duration::from_secs(60)).await?;
    let client = Client::new(&Config::new(c.api_endpoints(), c.token("admin", None)))?;
    let nodes: Api<v1::Node> = Api::all(client.clone());
    let (ok, err) = fan(a.nodes, 128, |i| {
        let nodes = nodes.clone();
        async move {
            nodes
                .create(&node(i))
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        }
    })
    .await;
    anyhow::ensure!(ok == a.nodes, "registering nodes: {err:?}");
    println!("{} nodes registered", a.nodes);

    // Throughput: every pod pending, then the scheduler starts.
    let pods: Api<v1::Pod> = Api::namespaced(client.clone(), "default");
    let t0 = Instant::now();
    let (ok, err) = fan(a.pods, a.in_flight, |i| {
        let pods = pods.clone();
        async move {
            pods.create(&pod("tp", i))
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        }
    })
    .await;
    let create_secs = t0.elapsed().as_secs_f64();
    let create_per_sec = a.pods as f64 / create_secs;
    anyhow::ensure!(ok == a.pods, "creating pods: {err:?}");
    println!(
        "{} pending pods created in {create_secs:.1} s ({:.0}/s)",
        a.pods,
        a.pods as f64 / create_secs
    );
    let (binds, watch) = watch_binds(client.clone(), "tp");
    let started = Instant::now();
    let mut sched = start_scheduler(&c, dir)?;
    let servers_before = super::cpu_ticks(&c.pids());
    let self_before = super::self_cpu_ticks();
    let done = wait_bound(&binds, a.pods, Duration::from_secs(600)).await;
    let hz = super::clock_ticks_per_sec();
    let servers_cpu = (super::cpu_ticks(&c.pids()) - servers_before) as f64 / hz;
    let sched_cpu = super::cpu_ticks(&[sched.id()]) as f64 / hz;
    let self_cpu = (super::self_cpu_ticks() - self_before) as f64 / hz;
    println!(
        "CPU while binding ({:.1} s wall): replicas {servers_cpu:.1} s, scheduler {sched_cpu:.1} s, bench watcher {self_cpu:.1} s",
        started.elapsed().as_secs_f64()
    );
    let g = binds.lock().await;
    let bound = g.len();
    let first = g.values().min().copied().unwrap_or(started);
    let last = g.values().max().copied().unwrap_or(started);
    drop(g);
    if !done {
        println!("warning: only {bound} of {} pods bound in 600 s", a.pods);
    }
    let first_to_last = bound as f64 / last.duration_since(first).as_secs_f64().max(1e-9);
    let from_start = bound as f64 / last.duration_since(started).as_secs_f64().max(1e-9);
    println!(
        "throughput: {bound} bound; {first_to_last:.0}/s first to last bind, {from_start:.0}/s from the scheduler's start"
    );
    watch.abort();

    // End to end: creates while the scheduler runs.
    let (binds, watch) = watch_binds(client.clone(), "e2e");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let acked: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let t0 = Instant::now();
    let (ok, err) = fan(a.pods, a.in_flight, |i| {
        let pods = pods.clone();
        let acked = acked.clone();
        async move {
            let p = pod("e2e", i);
            pods.create(&p).await.map_err(|e| e.to_string())?;
            acked
                .lock()
                .await
                .insert(p.meta().name.clone(), Instant::now());
            Ok(())
        }
    })
    .await;
    let create_secs = t0.elapsed().as_secs_f64();
    wait_bound(&binds, ok, Duration::from_secs(600)).await;
    let g = binds.lock().await;
    let acked = acked.lock().await;
    let mut lat: Vec<f64> = acked
        .iter()
        .filter_map(|(name, at)| {
            g.get(name)
                .map(|b| b.saturating_duration_since(*at).as_secs_f64() * 1000.0)
        })
        .collect();
    lat.sort_by(f64::total_cmp);
    let last = g.values().max().copied().unwrap_or(t0);
    let e2e_per_sec = g.len() as f64 / last.duration_since(t0).as_secs_f64().max(1e-9);
    drop(g);
    watch.abort();
    let _ = sched.kill();
    let _ = sched.wait();
    Ok(Throughput {
        create_per_sec,
        e2e_create_per_sec: a.pods as f64 / create_secs,
        bound,
        first_to_last_per_sec: first_to_last,
        from_start_per_sec: from_start,
        e2e_per_sec,
        e2e_p50_ms: percentile(&lat, 0.5),
        e2e_p99_ms: percentile(&lat, 0.99),
        e2e_max_ms: percentile(&lat, 1.0),
        errors: err,
    })
}

/// Failover: the replicas' own schedulers; SIGKILL the lease holder while
/// pods are created; seconds until the first pod created after it is bound.
async fn keelson_failover(
    a: &ScheduleBenchArgs,
    dir: &std::path::Path,
) -> anyhow::Result<Vec<f64>> {
    let me = keelson_bin()?;
    let mut c = ProcCluster::start(
        Program::Keelson {
            bin: me,
            extra_args: vec!["--disable-controllers".into()],
        },
        3,
        dir,
    )?;
    c.wait_healthy(Duration::from_secs(60)).await?;
    let client = Client::new(&Config::new(c.api_endpoints(), c.token("admin", None)))?;
    let nodes: Api<v1::Node> = Api::all(client.clone());
    // Room for every pod the stream creates (110 per node).
    for i in 0..100 {
        nodes.create(&node(i)).await?;
    }
    let (binds, watch) = watch_binds(client.clone(), "fo");
    let created: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let generator = {
        let (client, created, stop) = (client.clone(), created.clone(), stop.clone());
        let every = Duration::from_secs_f64(1.0 / a.failover_rate.max(1) as f64);
        let sem = Arc::new(Semaphore::new(64));
        tokio::spawn(async move {
            let pods: Api<v1::Pod> = Api::namespaced(client, "default");
            let mut tick = tokio::time::interval(every);
            let mut i = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                tick.tick().await;
                let Ok(permit) = sem.clone().acquire_owned().await else {
                    return;
                };
                let (pods, created) = (pods.clone(), created.clone());
                let p = pod("fo", i);
                i += 1;
                tokio::spawn(async move {
                    let _permit = permit;
                    let start = Instant::now();
                    if pods.create(&p).await.is_ok() {
                        created.lock().await.push((p.meta().name.clone(), start));
                    }
                });
            }
        })
    };
    let leases: Api<v1::Lease> = Api::namespaced(client.clone(), "kube-system");
    let mut gaps = Vec::new();
    for k in 0..a.kills {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let holder = leases
            .get("keelson-scheduler")
            .await
            .ok()
            .and_then(|l| l.spec.map(|s| s.holder_identity))
            .unwrap_or_default();
        let Some(i) = c.members.iter().position(|m| m.name == holder) else {
            println!("kill {k}: no scheduler lease holder found; skipping");
            continue;
        };
        c.kill(i);
        let killed = Instant::now();
        // The first pod whose create started after the kill, once bound.
        let deadline = killed + Duration::from_secs(30);
        let mut gap = None;
        while Instant::now() < deadline && gap.is_none() {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let after: Vec<String> = created
                .lock()
                .await
                .iter()
                .filter(|(_, t)| *t >= killed)
                .map(|(n, _)| n.clone())
                .collect();
            let g = binds.lock().await;
            gap = after
                .iter()
                .filter_map(|n| g.get(n))
                .min()
                .map(|b| b.duration_since(killed).as_secs_f64());
        }
        match gap {
            Some(s) => {
                println!(
                    "kill {k}: {holder} killed; first pod created after it bound {s:.3} s later"
                );
                gaps.push(s);
            }
            None => println!("kill {k}: no pod created after the kill was bound within 30 s"),
        }
        c.restart(i)?;
        c.wait_healthy(Duration::from_secs(60)).await?;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = generator.await;
    watch.abort();
    Ok(gaps)
}

/// etcd doing the store's share: puts of the pod bytes, then
/// compare-and-swap transactions writing the bound pod.
async fn etcd_anchor(a: &ScheduleBenchArgs, dir: &std::path::Path) -> anyhow::Result<(f64, f64)> {
    let (_etcd, kvs) = super::etcd_cluster(&a.etcd, dir).await?;
    let key = |i: usize| format!("/registry/pods/default/tp-{i}").into_bytes();
    let bytes = |i: usize, bound: bool| {
        let mut p = pod("tp", i);
        if bound {
            p.spec.get_or_insert_with(Default::default).node_name =
                format!("node-{}", i % a.nodes.max(1));
        }
        p.encode_to_vec()
    };
    let t0 = Instant::now();
    let (ok, err) = fan(a.pods, a.in_flight, |i| {
        let mut kv = kvs[i % kvs.len()].clone();
        async move {
            kv.put(PutRequest {
                key: key(i),
                value: bytes(i, false),
                ..Default::default()
            })
            .await
            .map(drop)
            .map_err(|e| e.to_string())
        }
    })
    .await;
    anyhow::ensure!(ok == a.pods, "etcd puts: {err:?}");
    let puts = a.pods as f64 / t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    let (ok, err) = fan(a.pods, a.in_flight, |i| {
        let mut kv = kvs[i % kvs.len()].clone();
        async move {
            let cur = kv
                .range(keelson_proto::etcdserverpb::RangeRequest {
                    key: key(i),
                    serializable: true,
                    ..Default::default()
                })
                .await
                .map_err(|e| e.to_string())?
                .into_inner();
            let rev = cur.kvs.first().map_or(0, |k| k.mod_revision);
            let r = kv
                .txn(TxnRequest {
                    compare: vec![Compare {
                        result: compare::CompareResult::Equal as i32,
                        target: compare::CompareTarget::Mod as i32,
                        key: key(i),
                        target_union: Some(compare::TargetUnion::ModRevision(rev)),
                        ..Default::default()
                    }],
                    success: vec![RequestOp {
                        request: Some(request_op::Request::RequestPut(PutRequest {
                            key: key(i),
                            value: bytes(i, true),
                            ..Default::default()
                        })),
                    }],
                    failure: vec![],
                })
                .await
                .map_err(|e| e.to_string())?
                .into_inner();
            if r.succeeded {
                Ok(())
            } else {
                Err("compare failed".into())
            }
        }
    })
    .await;
    anyhow::ensure!(ok == a.pods, "etcd txns: {err:?}");
    Ok((puts, a.pods as f64 / t0.elapsed().as_secs_f64()))
}

pub async fn run(a: ScheduleBenchArgs) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = match &a.dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            tempfile::Builder::new()
                .prefix("schedule-")
                .tempdir_in(d)?
                .keep()
        }
        None => tmp.path().to_path_buf(),
    };
    println!(
        "machine: {} cores; 3 replicas, fsync on; {} nodes, {} pods per phase, {} creates in flight",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        a.nodes,
        a.pods,
        a.in_flight
    );
    let t = keelson_throughput(&a, &dir.join("keelson")).await?;
    let gaps = if a.kills > 0 {
        keelson_failover(&a, &dir.join("failover")).await?
    } else {
        Vec::new()
    };
    let anchor = if a.no_etcd {
        None
    } else {
        Some(etcd_anchor(&a, &dir.join("etcd")).await?)
    };
    println!();
    println!("| phase | pods/s | notes |");
    println!("|---|---:|---|");
    println!(
        "| pending pods created (API) | {:.0} | {} pods, {} in flight |",
        t.create_per_sec, a.pods, a.in_flight
    );
    println!(
        "| scheduler throughput, first to last bind | {:.0} | {} of {} bound |",
        t.first_to_last_per_sec, t.bound, a.pods
    );
    println!(
        "| scheduler throughput, from its process start | {:.0} | includes listing {} pods and {} nodes |",
        t.from_start_per_sec, a.pods, a.nodes
    );
    println!(
        "| end to end (create -> bound), first create to last bind | {:.0} | creates at {:.0}/s; latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms{} |",
        t.e2e_per_sec,
        t.e2e_create_per_sec,
        t.e2e_p50_ms,
        t.e2e_p99_ms,
        t.e2e_max_ms,
        t.errors.as_deref().map(|e| format!("; error: {e}")).unwrap_or_default()
    );
    if let Some((puts, txns)) = anchor {
        println!("| etcd: puts of the pod bytes | {puts:.0} | anchor, same in-flight |");
        println!("| etcd: compare-and-swap binds (read + txn) | {txns:.0} | anchor |");
        println!();
        println!(
            "ratios: keelson scheduler binds / etcd CAS txns {:.2}x; keelson creates / etcd puts {:.2}x",
            t.first_to_last_per_sec / txns.max(1e-9),
            t.create_per_sec / puts.max(1e-9)
        );
    }
    if !gaps.is_empty() {
        let mut g = gaps.clone();
        g.sort_by(f64::total_cmp);
        println!(
            "failover: scheduler lease holder SIGKILLed {} times; first bind of a pod created after the kill: median {:.2} s, max {:.2} s",
            g.len(),
            percentile(&g, 0.5),
            percentile(&g, 1.0)
        );
    }
    Ok(())
}
