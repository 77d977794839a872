//! `keelson bench jobs`: many Jobs run to completion on simulated nodes,
//! on a 3-replica loopback cluster, with etcd (the anchor) doing as many
//! store writes in the same run.
//!
//! - The replicas run without their embedded scheduler and controllers; a
//!   `keelson scheduler`, a `keelson controllers` and a `keelson agent
//!   --simulate N` process run beside them, so each one's CPU is its own.
//! - J Jobs of C completions (parallelism P) are created at once; their
//!   pods end `--pod-secs` after they start (the simulated nodes'
//!   `sim.keelson.dev/exit-after`). Timed from the first create to the last
//!   Job's `Complete` condition showing in a watch.
//! - **Anchor**: the store revisions the run took (every write of the run:
//!   pods, binds, statuses, finalizers, Job statuses, events) put to a
//!   3-member etcd 3.4 with 64 in flight, values of a pod's size: the time
//!   the store's share alone takes on etcd.

use crate::keelson_bin;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use futures::StreamExt;
use keelson_model::Resource;
use keelson_proto::etcdserverpb::kv_client::KvClient;
use keelson_proto::etcdserverpb::{PutRequest, RangeRequest};
use keelson_proto::v1;
use keelson_sdk::watcher::Event;
use keelson_sdk::{watcher, Api, Client, Config, ListParams};
use keelson_testkit::{channel, ProcCluster, Program};
use tokio::sync::Mutex;

#[derive(Args)]
pub struct JobsBenchArgs {
    /// Jobs created.
    #[arg(long, default_value_t = 1000)]
    pub jobs: usize,
    /// Completions per Job.
    #[arg(long, default_value_t = 10)]
    pub completions: i32,
    /// Pods of a Job running at once.
    #[arg(long, default_value_t = 5)]
    pub parallelism: i32,
    /// Simulated nodes.
    #[arg(long, default_value_t = 100)]
    pub nodes: usize,
    /// How long each pod runs.
    #[arg(long, default_value = "1s")]
    pub pod_secs: String,
    /// Job creates in flight at once.
    #[arg(long, default_value_t = 64)]
    pub in_flight: usize,
    /// The etcd binary for the anchor (Debian's etcd-server).
    #[arg(long, default_value = "/usr/bin/etcd")]
    pub etcd: PathBuf,
    /// Skip the etcd anchor.
    #[arg(long)]
    pub no_etcd: bool,
}

fn job(i: usize, a: &JobsBenchArgs) -> v1::Job {
    let v = serde_json::json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": format!("work-{i}"), "labels": {"bench": "jobs"}},
        "spec": {
            "completions": a.completions,
            "parallelism": a.parallelism,
            "template": {
                "metadata": {"annotations": {"sim.keelson.dev/exit-after": a.pod_secs}},
                "spec": {"restartPolicy": "Never",
                         "containers": [{"name": "main", "image": "builtin/sleep"}]}
            }
        }
    });
    serde_json::from_value(v).unwrap_or_default()
}

fn complete(j: &v1::Job) -> bool {
    j.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.r#type == "Complete" && c.status == "True")
    })
}

async fn revision(kv: &mut KvClient<tonic::transport::Channel>) -> anyhow::Result<i64> {
    Ok(kv
        .range(RangeRequest {
            key: b"/".to_vec(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .header
        .map(|h| h.revision)
        .unwrap_or(0))
}

struct Run {
    secs: f64,
    create_secs: f64,
    writes: i64,
    cpu: Vec<(&'static str, f64)>,
}

async fn keelson_run(a: &JobsBenchArgs, dir: &std::path::Path) -> anyhow::Result<Run> {
    let c = ProcCluster::start(
        Program::Keelson {
            bin: keelson_bin()?,
            extra_args: vec!["--disable-scheduler".into(), "--disable-controllers".into()],
        },
        3,
        dir,
    )?;
    c.wait_healthy(Duration::from_secs(60)).await?;
    let spawn = |args: &[&str], name: &str| {
        c.keelson(args)
            .map(|s| s.named(name).log(&dir.join(format!("{name}.log"))))
            .and_then(|s| s.spawn())
    };
    let nodes = a.nodes.to_string();
    let procs = keelson_testkit::Procs(vec![
        spawn(&["scheduler", "--identity", "bench"], "scheduler")?,
        spawn(&["controllers", "--identity", "bench"], "controllers")?,
        spawn(
            &["agent", "--simulate", &nodes, "--name-prefix", "sim"],
            "agent",
        )?,
    ]);
    let client = Client::new(&Config::new(c.api_endpoints(), c.token("admin", None)))?;
    let node_api: Api<v1::Node> = Api::all(client.clone());
    let t0 = Instant::now();
    while node_api
        .list(&ListParams::default())
        .await
        .map_or(0, |l| l.items.len())
        < a.nodes
    {
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(120),
            "the simulated nodes did not register"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Settle: the controllers' and scheduler's caches are warm.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let done: Arc<Mutex<HashSet<String>>> = Arc::default();
    let watch = {
        let (done, client) = (done.clone(), client.clone());
        tokio::spawn(async move {
            let params = ListParams::default().labels("bench=jobs");
            let mut events = Box::pin(watcher(Api::<v1::Job>::all(client), params));
            while let Some(ev) = events.next().await {
                let jobs = match ev {
                    Ok(Event::Applied(j)) => vec![j],
                    Ok(Event::Restarted(js)) => js,
                    _ => continue,
                };
                let mut g = done.lock().await;
                for j in jobs.iter().filter(|j| complete(j)) {
                    g.insert(j.meta().name.clone());
                }
            }
        })
    };
    let mut kv = KvClient::new(channel(&c.endpoints()[0])?);
    let rev0 = revision(&mut kv).await?;
    let pids = |i: usize| procs.0.get(i).map(|p| vec![p.id()]).unwrap_or_default();
    let before: Vec<u64> = (0..3).map(|i| super::cpu_ticks(&pids(i))).collect();
    let replicas_before = super::cpu_ticks(&c.pids());
    let jobs_api: Api<v1::Job> = Api::namespaced(client.clone(), "default");
    let started = Instant::now();
    let results: Vec<Result<(), String>> = futures::stream::iter((0..a.jobs).map(|i| {
        let (api, j) = (jobs_api.clone(), job(i, a));
        async move { api.create(&j).await.map(drop).map_err(|e| e.to_string()) }
    }))
    .buffer_unordered(a.in_flight)
    .collect()
    .await;
    let create_secs = started.elapsed().as_secs_f64();
    if let Some(e) = results.iter().find_map(|r| r.as_ref().err()) {
        anyhow::bail!("creating Jobs: {e}");
    }
    println!("{} Jobs created in {create_secs:.1} s", a.jobs);
    let deadline = started + Duration::from_secs(1800);
    let mut last_report = Instant::now();
    loop {
        let n = done.lock().await.len();
        if n >= a.jobs {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {n} of {} Jobs completed in 30 minutes",
            a.jobs
        );
        if last_report.elapsed() > Duration::from_secs(10) {
            println!(
                "  {n} Jobs complete after {:.0} s",
                started.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    watch.abort();
    let hz = super::clock_ticks_per_sec();
    let after = |i: usize| (super::cpu_ticks(&pids(i)) - before[i]) as f64 / hz;
    let cpu = vec![
        ("scheduler", after(0)),
        ("controllers", after(1)),
        ("simulated nodes", after(2)),
        (
            "replicas (3)",
            (super::cpu_ticks(&c.pids()) - replicas_before) as f64 / hz,
        ),
    ];
    let writes = revision(&mut kv).await? - rev0;
    Ok(Run {
        secs,
        create_secs,
        writes,
        cpu,
    })
}

/// etcd putting `writes` values of a pod's size, 64 in flight.
async fn etcd_anchor(a: &JobsBenchArgs, dir: &std::path::Path, writes: i64) -> anyhow::Result<f64> {
    let (_etcd, kvs) = super::etcd_cluster(&a.etcd, dir).await?;
    let value = vec![b'x'; 1024];
    let n = usize::try_from(writes.max(0)).unwrap_or(0);
    let t0 = Instant::now();
    let results: Vec<bool> = futures::stream::iter((0..n).map(|i| {
        let mut kv = kvs[i % kvs.len()].clone();
        let value = value.clone();
        async move {
            kv.put(PutRequest {
                key: format!("/registry/pods/default/work-{}", i % 10_000).into_bytes(),
                value,
                ..Default::default()
            })
            .await
            .is_ok()
        }
    }))
    .buffer_unordered(64)
    .collect()
    .await;
    anyhow::ensure!(results.iter().all(|ok| *ok), "etcd puts failed");
    Ok(t0.elapsed().as_secs_f64())
}

pub async fn run(a: JobsBenchArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    println!(
        "{} Jobs x {} completions (parallelism {}), pods running {} each, {} simulated nodes",
        a.jobs, a.completions, a.parallelism, a.pod_secs, a.nodes
    );
    let r = keelson_run(&a, &dir.path().join("keelson")).await?;
    let pods = a.jobs as f64 * f64::from(a.completions);
    println!(
        "keelson: all {} Jobs complete {:.1} s after the first create ({:.0} pods/s run to completion; creates took {:.1} s); {} store writes ({:.0}/s)",
        a.jobs,
        r.secs,
        pods / r.secs,
        r.create_secs,
        r.writes,
        r.writes as f64 / r.secs
    );
    let cpu: Vec<String> = r
        .cpu
        .iter()
        .map(|(who, s)| format!("{who} {s:.1} s"))
        .collect();
    println!("CPU over the run: {}", cpu.join(", "));
    if let Some((_, ctrl)) = r.cpu.iter().find(|(w, _)| *w == "controllers") {
        println!(
            "controller CPU per pod: {:.0} us",
            ctrl * 1e6 / pods.max(1.0)
        );
    }
    if !a.no_etcd {
        let secs = etcd_anchor(&a, &dir.path().join("etcd"), r.writes).await?;
        println!(
            "etcd anchor: the same {} writes as puts (64 in flight) take {secs:.1} s ({:.0}/s)",
            r.writes,
            r.writes as f64 / secs
        );
    }
    Ok(())
}
