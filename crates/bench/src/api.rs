//! `keelson bench api`: the API server on a 3-replica loopback cluster,
//! with etcd (the anchor) doing the store's share of the same work in the
//! same run.
//!
//! - create latency: pods created open-loop at a fixed rate (1,000/s by
//!   default), latency measured from each create's scheduled start (so a
//!   stall counts against every request it delays). etcd: puts of the same
//!   protobuf bytes at the same rate.
//! - watch fan-out: 100 watchers started together from the revision before
//!   the creates, each receiving every one of them; events per second
//!   delivered to each watcher. etcd: 100 watchers on the same key range.
//! - list: every pod created (10,000 by default) in one list, the median of
//!   5; etcd: a range read of the same keys.
//!
//! Keelson does each twice in the run, on a fresh cluster each time: over
//! its gRPC API (the SDK) and over the Kubernetes HTTP API (JSON over TLS,
//! kube-rs as the client), so the cost of REST and JSON shows beside it.

use crate::keelson_bin;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use futures::StreamExt;
use keelson_model::Resource;
use keelson_proto::etcdserverpb::watch_client::WatchClient;
use keelson_proto::etcdserverpb::{
    watch_request, PutRequest, RangeRequest, WatchCreateRequest, WatchRequest,
};
use keelson_proto::v1;
use keelson_sdk::{Api, Client, Config, ListParams, WatchEvent};
use keelson_testkit::{channel, ProcCluster, Program};
use prost::Message;
use tokio::sync::Semaphore;

#[derive(Args)]
pub struct ApiBenchArgs {
    /// The etcd binary to compare against (Debian's etcd-server).
    #[arg(long, default_value = "/usr/bin/etcd")]
    pub etcd: PathBuf,
    /// Creates per second.
    #[arg(long, default_value_t = 1000)]
    pub rate: u64,
    /// Seconds of creates.
    #[arg(long, default_value_t = 10)]
    pub secs: u64,
    /// Concurrent watchers in the fan-out phase.
    #[arg(long, default_value_t = 100)]
    pub watchers: usize,
}

/// Requests in flight at most; past this the generator falls behind (and
/// the lateness shows in the latencies).
const IN_FLIGHT_MAX: usize = 4096;

/// The cost of listing every object: (median ms, min ms, objects).
struct ListCost {
    median_ms: f64,
    min_ms: f64,
    items: usize,
}

/// Lists made per measurement.
const LISTS: usize = 5;

async fn list_cost<F, Fut>(list: F) -> anyhow::Result<ListCost>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<usize>>,
{
    let mut ms = Vec::new();
    let mut items = 0;
    for _ in 0..LISTS {
        let t = Instant::now();
        items = list().await?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(|a, b| a.total_cmp(b));
    Ok(ListCost {
        median_ms: percentile(&ms, 0.5),
        min_ms: ms[0],
        items,
    })
}

struct Latencies {
    ok: usize,
    errors: usize,
    first_error: Option<String>,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    achieved_per_sec: f64,
}

use keelson_testkit::stats::percentile;

fn bench_pod(i: u64) -> v1::Pod {
    v1::Pod {
        metadata: Some(v1::ObjectMeta {
            name: format!("bench-{i}"),
            namespace: "default".into(),
            labels: [("app".to_string(), "bench".to_string())].into(),
            ..Default::default()
        }),
        spec: Some(v1::PodSpec {
            containers: vec![v1::Container {
                name: "main".into(),
                image: "builtin/sleep".into(),
                resources: Some(v1::ResourceRequirements {
                    requests: [("cpu".to_string(), "10m".to_string())].into(),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Run `op(i)` for i in 0..n at `rate` per second, open-loop.
async fn open_loop<F, Fut>(n: u64, rate: u64, op: F) -> Latencies
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
{
    let sem = Arc::new(Semaphore::new(IN_FLIGHT_MAX));
    let start = Instant::now() + Duration::from_millis(50);
    let mut tasks = Vec::with_capacity(n as usize);
    for i in 0..n {
        let due = start + Duration::from_nanos(i * 1_000_000_000 / rate.max(1));
        tokio::time::sleep_until(due.into()).await;
        let permit = sem.clone().acquire_owned().await;
        let fut = op(i);
        tasks.push(tokio::spawn(async move {
            let r = fut.await;
            drop(permit);
            (due.elapsed().as_secs_f64() * 1000.0, r)
        }));
    }
    let mut lat = Vec::with_capacity(tasks.len());
    let (mut errors, mut first_error) = (0, None);
    for t in tasks {
        match t.await {
            Ok((ms, Ok(()))) => lat.push(ms),
            Ok((_, Err(e))) => {
                errors += 1;
                first_error.get_or_insert(e);
            }
            Err(e) => {
                errors += 1;
                first_error.get_or_insert(e.to_string());
            }
        }
    }
    let took = start.elapsed().as_secs_f64();
    lat.sort_by(|a, b| a.total_cmp(b));
    Latencies {
        ok: lat.len(),
        errors,
        first_error,
        p50_ms: percentile(&lat, 0.5),
        p99_ms: percentile(&lat, 0.99),
        max_ms: lat.last().copied().unwrap_or(0.0),
        achieved_per_sec: lat.len() as f64 / took,
    }
}

/// Per-watcher delivery rates (events/s), sorted ascending, and the
/// aggregate rate.
struct FanOut {
    per_watcher: Vec<f64>,
    aggregate: f64,
    incomplete: usize,
    /// CPU µs per delivered event: (servers, load generator).
    cpu: (f64, f64),
}

fn fan_out_summary(mut rates: Vec<Option<f64>>, events: u64, took: f64) -> FanOut {
    let incomplete = rates.iter().filter(|r| r.is_none()).count();
    let mut per: Vec<f64> = rates.drain(..).flatten().collect();
    per.sort_by(|a, b| a.total_cmp(b));
    FanOut {
        aggregate: (per.len() as f64 * events as f64) / took,
        per_watcher: per,
        incomplete,
        cpu: (0.0, 0.0),
    }
}

/// How long a watcher may take to receive everything.
const FAN_OUT_TIMEOUT_SECS: u64 = 300;

async fn keelson_phase(
    a: &ApiBenchArgs,
    dir: &std::path::Path,
) -> anyhow::Result<(Latencies, FanOut, ListCost)> {
    let me = keelson_bin()?;
    let c = ProcCluster::start(
        Program::Keelson {
            bin: me,
            extra_args: vec!["--disable-scheduler".into(), "--disable-controllers".into()],
        },
        3,
        dir,
    )?;
    c.wait_healthy(Duration::from_secs(30)).await?;
    let token = c.token("admin", None);
    // One client per replica, as many clients would spread.
    let clients: Vec<Client> = c
        .api_endpoints()
        .into_iter()
        .map(|e| Client::new(&Config::new(vec![e], token.clone())))
        .collect::<Result<_, _>>()?;
    let apis: Vec<Api<v1::Pod>> = clients
        .iter()
        .map(|cl| Api::namespaced(cl.clone(), "default"))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    let before = loop {
        match apis[0].list(&ListParams::default().limit(1)).await {
            Ok(l) => break l.resource_version,
            Err(e) if Instant::now() > deadline => anyhow::bail!("API not ready: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    let n = a.rate * a.secs;
    let apis = Arc::new(apis);
    let create = open_loop(n, a.rate, |i| {
        let apis = apis.clone();
        async move {
            let api = &apis[i as usize % apis.len()];
            api.create(&bench_pod(i))
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    })
    .await;

    // Fan-out: every watcher replays the creates from `before`.
    let cpu_before = (super::cpu_ticks(&c.pids()), super::self_cpu_ticks());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..a.watchers {
        let api = apis[w % apis.len()].clone();
        let before = before.clone();
        tasks.push(tokio::spawn(async move {
            let t0 = Instant::now();
            let stream = api.watch(&ListParams::default(), &before).await.ok()?;
            let who = format!("watcher {w}");
            count_additions(stream, n, t0, &who, |e| matches!(e, WatchEvent::Added(_))).await
        }));
    }
    let fan = collect_fan_out(tasks, n, started, cpu_before, &c.pids()).await;
    let list = list_cost(|| {
        let api = apis[0].clone();
        async move { Ok(api.list(&ListParams::default()).await?.items.len()) }
    })
    .await?;
    drop(c);
    Ok((create, fan, list))
}

/// A kube-rs client of member `i`'s Kubernetes API.
async fn kube_client(c: &ProcCluster, i: usize, token: &str) -> anyhow::Result<kube::Client> {
    let m = &c.members[i];
    let text = m.kubeconfig(token);
    let kc = kube::config::Kubeconfig::from_yaml(&text)?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    Ok(kube::Client::try_from(config)?)
}

/// The keelson phase's work over the Kubernetes HTTP API (JSON).
async fn rest_phase(
    a: &ApiBenchArgs,
    dir: &std::path::Path,
) -> anyhow::Result<(Latencies, FanOut, ListCost)> {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{PostParams, WatchEvent as KubeEvent, WatchParams};
    let c = ProcCluster::start(
        Program::Keelson {
            bin: keelson_bin()?,
            extra_args: vec!["--disable-scheduler".into(), "--disable-controllers".into()],
        },
        3,
        dir,
    )?;
    c.wait_healthy(Duration::from_secs(30)).await?;
    let token = c.token("admin", None);
    let mut apis: Vec<kube::Api<Pod>> = Vec::new();
    for i in 0..c.members.len() {
        apis.push(kube::Api::namespaced(
            kube_client(&c, i, &token).await?,
            "default",
        ));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let before = loop {
        match apis[0]
            .list(&kube::api::ListParams::default().limit(1))
            .await
        {
            Ok(l) => break l.metadata.resource_version.unwrap_or_default(),
            Err(e) if Instant::now() > deadline => anyhow::bail!("Kubernetes API not ready: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    let n = a.rate * a.secs;
    // The bodies, made before the clock starts.
    let pods: Vec<Pod> = (0..n)
        .map(|i| {
            serde_json::from_value(keelson_model::manifest::to_value(
                &bench_pod(i).into_object(),
            ))
        })
        .collect::<Result<_, _>>()?;
    let pods = Arc::new(pods);
    let apis = Arc::new(apis);
    let create = open_loop(n, a.rate, |i| {
        let (apis, pods) = (apis.clone(), pods.clone());
        async move {
            let api = &apis[i as usize % apis.len()];
            api.create(&PostParams::default(), &pods[i as usize])
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    })
    .await;

    let cpu_before = (super::cpu_ticks(&c.pids()), super::self_cpu_ticks());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..a.watchers {
        let api = apis[w % apis.len()].clone();
        let before = before.clone();
        tasks.push(tokio::spawn(async move {
            let t0 = Instant::now();
            // kube-rs allows at most 295 s (Kubernetes' watches end by then).
            let wp = WatchParams::default().timeout(290);
            let who = format!("REST watcher {w}");
            let stream = match api.watch(&wp, &before).await {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("{who}: {e}");
                    return None;
                }
            };
            count_additions(stream, n, t0, &who, |e| matches!(e, KubeEvent::Added(_))).await
        }));
    }
    let fan = collect_fan_out(tasks, n, started, cpu_before, &c.pids()).await;
    let list = list_cost(|| {
        let api = apis[0].clone();
        async move {
            Ok(api
                .list(&kube::api::ListParams::default())
                .await?
                .items
                .len())
        }
    })
    .await?;
    drop(c);
    Ok((create, fan, list))
}

/// Receive a watch's events until `n` are additions: the rate since `t0`,
/// or None (with why, on stderr) when the stream fails, ends or stalls
/// first.
async fn count_additions<S, T, E>(
    stream: S,
    n: u64,
    t0: Instant,
    who: &str,
    is_added: impl Fn(&T) -> bool,
) -> Option<f64>
where
    S: futures::Stream<Item = Result<T, E>>,
    E: std::fmt::Display,
{
    let mut stream = Box::pin(stream);
    let mut got = 0u64;
    while got < n {
        match tokio::time::timeout(Duration::from_secs(FAN_OUT_TIMEOUT_SECS), stream.next()).await {
            Ok(Some(Ok(e))) => {
                if is_added(&e) {
                    got += 1;
                }
            }
            Ok(Some(Err(e))) => {
                eprintln!("{who}: error after {got} events: {e}");
                return None;
            }
            Ok(None) => {
                eprintln!("{who}: stream ended after {got} events");
                return None;
            }
            Err(_) => {
                eprintln!("{who}: stalled after {got} events");
                return None;
            }
        }
    }
    Some(n as f64 / t0.elapsed().as_secs_f64())
}

/// Wait for the watchers and sum up their rates and the CPU they cost.
async fn collect_fan_out(
    tasks: Vec<tokio::task::JoinHandle<Option<f64>>>,
    events: u64,
    started: Instant,
    cpu_before: (u64, u64),
    pids: &[u32],
) -> FanOut {
    let watchers = tasks.len() as u64;
    let mut rates = Vec::new();
    for t in tasks {
        rates.push(t.await.ok().flatten());
    }
    let mut fan = fan_out_summary(rates, events, started.elapsed().as_secs_f64());
    fan.cpu = cpu_per_event(cpu_before, pids, events * watchers);
    fan
}

/// Servers' and this process's CPU time per delivered event, in µs.
fn cpu_per_event(before: (u64, u64), pids: &[u32], events: u64) -> (f64, f64) {
    let per = |ticks: u64| ticks as f64 / super::clock_ticks_per_sec() * 1e6 / events.max(1) as f64;
    (
        per(super::cpu_ticks(pids).saturating_sub(before.0)),
        per(super::self_cpu_ticks().saturating_sub(before.1)),
    )
}

async fn etcd_phase(
    a: &ApiBenchArgs,
    dir: &std::path::Path,
) -> anyhow::Result<(Latencies, FanOut, ListCost)> {
    let (c, kvs) = super::etcd_cluster(&a.etcd, dir).await?;
    let before = kvs[0]
        .clone()
        .range(RangeRequest {
            key: b"/".to_vec(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .header
        .map(|h| h.revision)
        .unwrap_or(0);
    let n = a.rate * a.secs;
    let kvs = Arc::new(kvs);
    let create = open_loop(n, a.rate, |i| {
        let mut kv = kvs[i as usize % kvs.len()].clone();
        async move {
            let pod = bench_pod(i);
            let req = PutRequest {
                key: format!("/registry/pods/default/{}", pod.meta().name).into_bytes(),
                value: pod.encode_to_vec(),
                ..Default::default()
            };
            kv.put(req).await.map(|_| ()).map_err(|e| e.to_string())
        }
    })
    .await;
    let cpu_before = (super::cpu_ticks(&c.pids()), super::self_cpu_ticks());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..a.watchers {
        let ch = channel(&c.endpoints()[w % c.members.len()])?;
        tasks.push(tokio::spawn(async move {
            let t0 = Instant::now();
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            tx.send(WatchRequest {
                request_union: Some(watch_request::RequestUnion::CreateRequest(
                    WatchCreateRequest {
                        key: b"/registry/pods/".to_vec(),
                        range_end: b"/registry/pods0".to_vec(),
                        start_revision: before + 1,
                        ..Default::default()
                    },
                )),
            })
            .await
            .ok()?;
            let mut stream = WatchClient::new(ch)
                .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
                .ok()?
                .into_inner();
            let mut got = 0u64;
            while got < n {
                match tokio::time::timeout(Duration::from_secs(FAN_OUT_TIMEOUT_SECS), stream.next())
                    .await
                {
                    Ok(Some(Ok(r))) => got += r.events.len() as u64,
                    _ => return None,
                }
            }
            drop(tx);
            Some(n as f64 / t0.elapsed().as_secs_f64())
        }));
    }
    let fan = collect_fan_out(tasks, n, started, cpu_before, &c.pids()).await;
    let kv = kvs[0].clone();
    let list = list_cost(|| {
        let mut kv = kv.clone();
        async move {
            let r = kv
                .range(RangeRequest {
                    key: b"/registry/pods/".to_vec(),
                    range_end: b"/registry/pods0".to_vec(),
                    ..Default::default()
                })
                .await?
                .into_inner();
            Ok(r.kvs.len())
        }
    })
    .await?;
    drop(c);
    Ok((create, fan, list))
}

pub async fn run(a: ApiBenchArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    println!(
        "machine: {} cores; 3 replicas each, fsync on; {} creates at {}/s; {} watchers",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        a.rate * a.secs,
        a.rate,
        a.watchers
    );
    let (kc, kf, kl) = keelson_phase(&a, &dir.path().join("keelson")).await?;
    let (rc, rf, rl) = rest_phase(&a, &dir.path().join("rest")).await?;
    let (ec, ef, el) = etcd_phase(&a, &dir.path().join("etcd")).await?;
    let row = |name: &str, l: &Latencies| {
        println!(
            "| {name} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {} |",
            l.achieved_per_sec,
            l.p50_ms,
            l.p99_ms,
            l.max_ms,
            l.ok,
            match &l.first_error {
                Some(e) => format!("{} ({e})", l.errors),
                None => "0".into(),
            }
        )
    };
    println!();
    println!(
        "| create at {}/s | achieved/s | p50 ms | p99 ms | max ms | ok | errors |",
        a.rate
    );
    println!("|---|---:|---:|---:|---:|---:|---|");
    row("keelson pod create (gRPC API)", &kc);
    row("keelson pod create (Kubernetes HTTP API, JSON)", &rc);
    row("etcd put of the same bytes", &ec);
    println!();
    let frow = |name: &str, f: &FanOut| {
        println!(
            "| {name} | {:.0} | {:.0} | {:.0} | {:.0} | {} | {:.2} / {:.2} |",
            percentile(&f.per_watcher, 0.0),
            percentile(&f.per_watcher, 0.5),
            percentile(&f.per_watcher, 1.0),
            f.aggregate,
            f.incomplete,
            f.cpu.0,
            f.cpu.1
        )
    };
    println!("| fan-out, {} watchers | min events/s per watcher | median | max | aggregate events/s | incomplete | CPU µs per event, servers / load generator |", a.watchers);
    println!("|---|---:|---:|---:|---:|---:|---:|");
    frow("keelson watch (typed pods, gRPC API)", &kf);
    frow("keelson watch (Kubernetes HTTP API, JSON)", &rf);
    frow("etcd watch (raw keys)", &ef);
    println!();
    println!("| list of every pod | median ms | min ms | objects |");
    println!("|---|---:|---:|---:|");
    for (name, l) in [
        ("keelson (gRPC API, protobuf)", &kl),
        ("keelson (Kubernetes HTTP API, JSON)", &rl),
        ("etcd range of the same keys", &el),
    ] {
        println!(
            "| {name} | {:.1} | {:.1} | {} |",
            l.median_ms, l.min_ms, l.items
        );
    }
    println!();
    println!(
        "REST/gRPC: create p99 {:.2}x, fan-out median per watcher {:.2}x, list median {:.2}x",
        rc.p99_ms / kc.p99_ms.max(1e-9),
        percentile(&rf.per_watcher, 0.5) / percentile(&kf.per_watcher, 0.5).max(1e-9),
        rl.median_ms / kl.median_ms.max(1e-9)
    );
    println!(
        "ratios keelson/etcd: create p99 {:.2}x (lower is better), fan-out median per watcher {:.2}x (higher is better)",
        kc.p99_ms / ec.p99_ms.max(1e-9),
        percentile(&kf.per_watcher, 0.5) / percentile(&ef.per_watcher, 0.5).max(1e-9)
    );
    Ok(())
}
