//! `keelson chaos`: a real 3-replica cluster on loopback (scheduler and
//! controllers in every replica) with simulated nodes, a seeded schedule of
//! faults (SIGKILL of the leader or of a random replica then a restart,
//! SIGSTOP/SIGCONT pauses, network partitions through a fault layer of
//! proxies between the replicas: one replica or the leader cut off both
//! ways, the leader unheard one way; on client traffic, through proxies
//! too: a replica cut off from its clients, every client connection to a
//! replica reset; SIGKILL of an agent process then a restart), and
//! meanwhile KV clients doing reads, writes and compare-and-swaps on a few
//! keys over the etcd API plus watchers, and an operator scaling and
//! rolling Deployments (see [`controlplane`]). Every KV operation is
//! recorded (invocation, completion, outcome: ok, failed, or
//! indeterminate); afterwards `keelson_chaos` judges the history:
//! linearizability per key, acknowledged writes all in every complete watch
//! stream, watch order, revisions never going backwards, no pod bound
//! twice, no ReplicaSet beyond its surge, no acknowledged spec change lost,
//! every Deployment back at its desired state within a bound. Prints a
//! report and fails, naming the seed, on any violation.

//!
//! # Layout
//! - [`faults`]: the seeded fault schedule.
//! - [`kv`]: the KV workload (clients, watchers, the recorder).
//! - [`controlplane`]: simulated nodes, the Deployment operator, watchers.
//! - [`report`]: the verdicts over the history and the printed report.
//! - this file: the run's phases (start the cluster and the fault layer,
//!   start the workloads, inject faults, wind down, judge).

mod controlplane;
mod faults;
mod kv;
mod report;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use keelson_testkit::faultnet::FaultNet;
use keelson_testkit::{ProcCluster, Program};
use tokio::task::JoinHandle;

use crate::history::{Op, OpKind, Outcome};
use crate::invariants::{Verdict, Watched};
use faults::{FaultKind, ALL_FAULTS};
use kv::Recorder;

/// Every Deployment must be back at its desired state this soon after the
/// faults and the spec changes stop.
const CONVERGENCE_BOUND: Duration = Duration::from_secs(60);
/// A watcher gets this long to catch up once the run is over.
const WATCH_CATCH_UP: Duration = Duration::from_secs(20);

#[derive(Args, Debug)]
pub struct ChaosArgs {
    /// How long the workload runs (faults stop a little before the end).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// The seed of the fault schedule and the workload (default: random,
    /// printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Concurrent KV clients.
    #[arg(long, default_value_t = 6)]
    pub clients: usize,
    /// Keys they share at a time.
    #[arg(long, default_value_t = 4)]
    pub keys: usize,
    /// Clients move to fresh keys this often (as Jepsen's independent
    /// keys): each key's history stays small enough to search.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub rotate: Duration,
    /// Mean time between faults.
    #[arg(long, default_value = "4s", value_parser = humantime::parse_duration)]
    pub fault_every: Duration,
    /// Fault kinds: kill-leader, kill-random, pause-leader, pause-random,
    /// partition-random, partition-leader, one-way-leader (peer traffic),
    /// clients-cut-random, clients-cut-leader, clients-reset (client
    /// traffic), kill-agent (a simulated agent process).
    #[arg(long, value_delimiter = ',', default_value = ALL_FAULTS)]
    pub faults: Vec<String>,
    /// Deployments the control-plane workload scales and rolls (0: a KV
    /// run only, scheduler and controllers off, no nodes).
    #[arg(long, default_value_t = 3)]
    pub deployments: usize,
    /// Simulated nodes (agent processes of 5 nodes each).
    #[arg(long, default_value_t = 10)]
    pub nodes: usize,
    /// Read with `serializable` (a replica's local state, possibly stale)
    /// instead of linearizable reads: not a guarantee the store makes, so
    /// the checker should catch it (a check of the checker).
    #[arg(long)]
    pub serializable_reads: bool,
    /// Keep the cluster's data and logs here (default: a temporary dir).
    #[arg(long)]
    pub dir: Option<std::path::PathBuf>,
}

impl ChaosArgs {
    /// The fault kinds, checked against the workloads asked for.
    fn fault_kinds(&self) -> anyhow::Result<Vec<FaultKind>> {
        let kinds: Vec<FaultKind> = self
            .faults
            .iter()
            .filter(|s| !s.trim().is_empty())
            .map(|s| FaultKind::parse(s))
            .collect::<anyhow::Result<_>>()?;
        if self.clients == 0 || self.keys == 0 {
            bail!("--clients and --keys must be at least 1");
        }
        if self.control_plane() && self.nodes == 0 {
            bail!("--deployments needs --nodes of at least 1");
        }
        if !self.control_plane() && kinds.contains(&FaultKind::KillAgent) {
            bail!("kill-agent needs the control-plane workload (--deployments of at least 1)");
        }
        Ok(kinds)
    }

    fn control_plane(&self) -> bool {
        self.deployments > 0
    }

    /// The command line that runs this again.
    fn reproduce(&self, seed: u64) -> String {
        format!(
            "keelson chaos --seed {seed} --duration {}ms --clients {} --keys {} --deployments {} --nodes {} --rotate {}ms --fault-every {}ms --faults {}{}",
            self.duration.as_millis(),
            self.clients,
            self.keys,
            self.deployments,
            self.nodes,
            self.rotate.as_millis(),
            self.fault_every.as_millis(),
            self.faults.join(","),
            if self.serializable_reads { " --serializable-reads" } else { "" }
        )
    }
}

/// The cluster under test and the fault layer in front of it.
struct Stage {
    cluster: ProcCluster,
    net: FaultNet,
    proxies: Vec<JoinHandle<()>>,
    /// The etcd ports, through the fault layer.
    endpoints: Vec<String>,
    /// The API ports, through the fault layer.
    api_endpoints: Vec<String>,
}

impl Stage {
    /// Three replicas on addresses of their own, their peer traffic through
    /// the fault layer's proxies; clients reach each replica (etcd and API
    /// ports) through a proxy on 127.0.(octet+2).(i+1).
    async fn start(bin: &Path, a: &ChaosArgs, dir: &Path) -> anyhow::Result<Stage> {
        let octet: u8 = rand::random_range(30..200);
        let extra_args = if a.control_plane() {
            Vec::new()
        } else {
            vec!["--disable-scheduler".into(), "--disable-controllers".into()]
        };
        let cluster = ProcCluster::start_proxied(
            Program::Keelson {
                bin: bin.to_path_buf(),
                extra_args,
            },
            3,
            dir,
            octet,
        )?;
        let net = FaultNet::new();
        let (pairs, sources) = cluster.peer_proxies();
        let sources = Arc::new(sources);
        let mut proxies = Vec::new();
        for (i, (listen, upstream)) in pairs.into_iter().enumerate() {
            proxies.push(
                net.proxy(i, listen, upstream, sources.clone())
                    .await
                    .with_context(|| format!("fault layer proxy on {listen}"))?,
            );
        }
        let mut endpoints = Vec::new();
        let mut api_endpoints = Vec::new();
        for (i, m) in cluster.members.iter().enumerate() {
            let host = std::net::Ipv4Addr::new(127, 0, octet + 2, u8::try_from(i + 1)?);
            for (port, list) in [
                (m.client_port, &mut endpoints),
                (m.api_port, &mut api_endpoints),
            ] {
                let listen = std::net::SocketAddr::from((host, port));
                proxies.push(
                    net.client_proxy(
                        i,
                        listen,
                        std::net::SocketAddr::from(([127, 0, 0, 1], port)),
                    )
                    .await
                    .with_context(|| format!("client proxy on {listen}"))?,
                );
                list.push(format!("http://{listen}"));
            }
        }
        cluster.wait_healthy(Duration::from_secs(60)).await?;
        Ok(Stage {
            cluster,
            net,
            proxies,
            endpoints,
            api_endpoints,
        })
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        for p in &self.proxies {
            p.abort();
        }
    }
}

/// How long each object took to reach its desired state (None: it did not).
type Converged = std::collections::BTreeMap<String, Option<Duration>>;

/// The control-plane workload while it runs.
struct ControlPlane {
    client: keelson_sdk::Client,
    agents: controlplane::Agents,
    rec: Arc<controlplane::CpRecord>,
    stop: Arc<Mutex<Option<i64>>>,
    watchers: Vec<(&'static str, JoinHandle<bool>)>,
}

impl ControlPlane {
    /// Simulated nodes, the Deployments at their desired state before the
    /// faults start, watchers of every change.
    async fn start(bin: &Path, a: &ChaosArgs, stage: &Stage, dir: &Path) -> anyhow::Result<Self> {
        let token = stage.cluster.token("admin", None);
        let client = controlplane::client(&stage.api_endpoints, &token)?;
        let agents = controlplane::Agents::start(
            bin.to_path_buf(),
            a.nodes,
            &stage.api_endpoints,
            &token,
            dir,
        )?;
        let rec = Arc::new(controlplane::CpRecord::default());
        let stop = Arc::new(Mutex::new(None));
        let from = controlplane::setup(&client, a.deployments).await?;
        let watchers = controlplane::spawn_watchers(&client, &from, stop.clone(), &rec);
        let took = controlplane::wait_converged(&client, a.deployments, CONVERGENCE_BOUND).await;
        if took.values().any(Option::is_none) {
            bail!("the deployments did not reach their desired state before the faults: {took:?}");
        }
        let set = controlplane::wait_workloads(&client, &[], CONVERGENCE_BOUND).await;
        if set.values().any(Option::is_none) {
            bail!("the StatefulSet did not reach its desired state before the faults: {set:?}");
        }
        println!(
            "{} deployments and a StatefulSet at their desired state on {} simulated nodes",
            a.deployments, a.nodes
        );
        Ok(ControlPlane {
            client,
            agents,
            rec,
            stop,
            watchers,
        })
    }

    /// After the spec changes stopped: wait for convergence (started as
    /// soon as the operator stopped), let the watchers catch up, report,
    /// and judge.
    async fn finish(
        self,
        converging: JoinHandle<(Converged, Converged)>,
        deployments: usize,
    ) -> anyhow::Result<Vec<Verdict>> {
        let (took, others) = converging.await.unwrap_or_default();
        let seqs = controlplane::final_seqs(&self.client, deployments).await;
        // The watchers catch up to the present, then stop.
        let now = controlplane::current_revision(&self.client).await?;
        if let Ok(mut s) = self.stop.lock() {
            *s = Some(now);
        }
        let mut complete = Vec::new();
        for (name, h) in self.watchers {
            match tokio::time::timeout(WATCH_CATCH_UP, h).await {
                Ok(Ok(true)) => complete.push(name),
                _ => eprintln!("the {name} watcher did not see the whole run"),
            }
        }
        report::print_control_plane(&self.rec, &took, &others);
        for (d, _) in took.iter().filter(|(_, t)| t.is_none()) {
            println!(
                "  {d} now: {}",
                controlplane::describe(&self.client, d).await
            );
        }
        Ok(controlplane::verdicts(
            &self.rec,
            &complete,
            &took,
            &others,
            CONVERGENCE_BOUND,
            &seqs,
        ))
    }
}

/// The KV workload while it runs.
struct KvRun {
    rec: Arc<Recorder>,
    t0: Instant,
    watch_end: Arc<Mutex<Option<i64>>>,
    watchers: Vec<JoinHandle<bool>>,
    clients: Vec<JoinHandle<()>>,
}

impl KvRun {
    /// Watchers from the current revision, then the clients, until `until`.
    async fn start(
        a: &ChaosArgs,
        seed: u64,
        endpoints: &[String],
        run: Duration,
    ) -> anyhow::Result<KvRun> {
        let rec = Arc::new(Recorder::new());
        // Keys start absent; the watchers start after the current revision.
        let mut first = kv::kv(&endpoints[0])?;
        let start_rev =
            match kv::perform(&mut first, &kv::key_name(0, 0), &OpKind::Read, false).await {
                (Outcome::Read(_), r) if r > 0 => r + 1,
                _ => bail!("a first read failed on a healthy cluster"),
            };
        let t0 = Instant::now();
        let watch_end = Arc::new(Mutex::new(None));
        let watchers = (0..kv::WATCHERS)
            .map(|w| {
                tokio::spawn(kv::watch_loop(
                    w,
                    endpoints.to_vec(),
                    start_rev,
                    watch_end.clone(),
                    rec.clone(),
                ))
            })
            .collect();
        let workload = kv::Workload {
            endpoints: endpoints.to_vec(),
            keys: a.keys,
            rotate: a.rotate,
            serializable: a.serializable_reads,
            seed,
            until: t0 + run,
        };
        let clients = (0..a.clients)
            .map(|i| tokio::spawn(kv::client_loop(i, workload.clone(), rec.clone())))
            .collect();
        Ok(KvRun {
            rec,
            t0,
            watch_end,
            watchers,
            clients,
        })
    }

    async fn wait_clients(&mut self) {
        for h in self.clients.drain(..) {
            let _ = h.await;
        }
    }

    /// Final reads of every key used on every replica (recorded as clients
    /// after the workload's), then the watchers catch up to the last
    /// revision: the history, the watched events, the complete watchers.
    async fn finish(
        mut self,
        endpoints: &[String],
        clients: usize,
    ) -> anyhow::Result<(Vec<Op>, Vec<Watched>, Vec<usize>)> {
        self.wait_clients().await;
        let rec = &self.rec;
        let used: std::collections::BTreeSet<String> = rec
            .ops
            .lock()
            .map(|o| o.iter().map(|op| op.key.clone()).collect())
            .unwrap_or_default();
        let mut last_rev = 0;
        for (i, e) in endpoints.iter().enumerate() {
            let mut cl = kv::kv(e)?;
            for key in &used {
                let invoke_ns = rec.now_ns();
                let (outcome, revision) = kv::perform(&mut cl, key, &OpKind::Read, false).await;
                last_rev = last_rev.max(revision);
                rec.push(Op {
                    client: clients + 1 + i,
                    key: key.clone(),
                    kind: OpKind::Read,
                    invoke_ns,
                    complete_ns: Some(rec.now_ns()),
                    outcome,
                    revision,
                });
            }
        }
        if let Ok(mut e) = self.watch_end.lock() {
            *e = Some(last_rev);
        }
        let mut complete = Vec::new();
        for (w, h) in self.watchers.into_iter().enumerate() {
            match tokio::time::timeout(WATCH_CATCH_UP, h).await {
                Ok(Ok(true)) => complete.push(w),
                _ => eprintln!("watcher {w} did not see the whole run (compacted or stuck)"),
            }
        }
        let ops = rec.ops.lock().map(|o| o.clone()).unwrap_or_default();
        let watched = rec.watched.lock().map(|w| w.clone()).unwrap_or_default();
        Ok((ops, watched, complete))
    }
}

/// Run `keelson chaos` with the keelson binary `bin` (replicas and agents
/// are processes of it): Ok when no invariant was violated.
pub async fn run(bin: PathBuf, a: ChaosArgs) -> anyhow::Result<()> {
    let seed = a.seed.unwrap_or_else(rand::random);
    let kinds = a.fault_kinds()?;
    println!(
        "chaos: seed {seed}, {} s, {} clients on {} keys, {} deployments on {} simulated nodes, faults {:?} every ~{:?}",
        a.duration.as_secs(),
        a.clients,
        a.keys,
        a.deployments,
        if a.control_plane() { a.nodes } else { 0 },
        a.faults,
        a.fault_every
    );
    let tmp = tempfile::tempdir()?;
    let dir = a.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    let mut stage = Stage::start(&bin, &a, &dir).await?;
    let mut cp = match a.control_plane() {
        true => Some(ControlPlane::start(&bin, &a, &stage, &dir).await?),
        false => None,
    };
    let mut kv_run = KvRun::start(&a, seed, &stage.endpoints, a.duration).await?;
    let t0 = kv_run.t0;
    let until = t0 + a.duration;
    // Faults and spec changes stop a quarter of the run (at most 10 s)
    // before the end, so the end of the history shows the cluster back to
    // normal.
    let quiet = (a.duration / 4).min(Duration::from_secs(10));
    let operator = cp.as_ref().map(|cp| {
        tokio::spawn(controlplane::operator(
            cp.client.clone(),
            a.deployments,
            seed,
            until - quiet,
            cp.rec.clone(),
        ))
    });
    let mut agents = cp.as_mut().map(|cp| &mut cp.agents);
    let faults = if kinds.is_empty() {
        Vec::new()
    } else {
        faults::faults_loop(
            &mut stage.cluster,
            &stage.net,
            &mut agents,
            &kinds,
            a.fault_every,
            seed,
            t0,
            until - quiet,
        )
        .await
    };
    stage.net.heal();
    if let Some(op) = operator {
        let _ = op.await;
    }
    // From here on nothing changes specs: each Deployment has the bound to
    // get back to its desired state.
    let converging = cp.as_ref().map(|cp| {
        let cl = cp.client.clone();
        let n = a.deployments;
        let jobs = cp.rec.jobs.lock().map(|j| j.clone()).unwrap_or_default();
        tokio::spawn(async move {
            tokio::join!(
                controlplane::wait_converged(&cl, n, CONVERGENCE_BOUND),
                controlplane::wait_workloads(&cl, &jobs, CONVERGENCE_BOUND)
            )
        })
    });
    kv_run.wait_clients().await;
    stage.cluster.wait_healthy(Duration::from_secs(30)).await?;
    let mut verdicts = Vec::new();
    if let (Some(cp), Some(converging)) = (cp, converging) {
        verdicts = cp.finish(converging, a.deployments).await?;
    }
    let offset = t0.duration_since(kv_run.rec.t0);
    let (ops, watched, complete) = kv_run.finish(&stage.endpoints, a.clients).await?;
    drop(stage);

    let mut all = report::judge(&ops, &watched, &complete);
    all.extend(verdicts);
    report::print_report(&faults, &ops, &all, offset, a.duration);
    let violations = all.iter().filter(|v| !v.ok).count();
    if violations == 0 {
        println!("\nviolations: 0 (seed {seed})");
        Ok(())
    } else {
        bail!(
            "{violations} invariant(s) violated; reproduce with: {}",
            a.reproduce(seed)
        )
    }
}
