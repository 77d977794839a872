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
//! rolling Deployments (see [`crate::chaos_cp`]). Every KV operation is
//! recorded (invocation, completion, outcome: ok, failed, or
//! indeterminate); afterwards `keelson_chaos` judges the history:
//! linearizability per key, acknowledged writes all in every complete watch
//! stream, watch order, revisions never going backwards, no pod bound
//! twice, no ReplicaSet beyond its surge, no acknowledged spec change lost,
//! every Deployment back at its desired state within a bound. Prints a
//! report and fails, naming the seed, on any violation.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use keelson::cluster::{channel, Kind as ClusterKind, ProcCluster};
use keelson::faultnet::FaultNet;

use crate::chaos_cp;
use keelson_chaos::history::{Kind, Op, Outcome};
use keelson_chaos::invariants::{self, Verdict, Watched};
use keelson_chaos::linearizability;
use keelson_proto::etcdserverpb::kv_client::KvClient;
use keelson_proto::etcdserverpb::watch_client::WatchClient;
use keelson_proto::etcdserverpb::{
    compare, request_op, watch_request, Compare, PutRequest, RangeRequest, RequestOp, TxnRequest,
    WatchCreateRequest, WatchRequest,
};
use rand::{Rng, SeedableRng};

/// Keys live under this prefix.
const PREFIX: &str = "chaos/";
/// A client gives an operation this long.
const OP_TIMEOUT: Duration = Duration::from_secs(1);
/// Watchers of the whole run.
const WATCHERS: usize = 2;
/// States the linearizability search may visit per key.
const SEARCH_BUDGET: usize = 5_000_000;
/// Every Deployment must be back at its desired state this soon after the
/// faults and the spec changes stop.
const CONVERGENCE_BOUND: Duration = Duration::from_secs(60);
/// Every fault kind.
const ALL_FAULTS: &str = "kill-leader,kill-random,pause-leader,pause-random,partition-random,partition-leader,one-way-leader,clients-cut-random,clients-cut-leader,clients-reset,kill-agent";

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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FaultKind {
    KillLeader,
    KillRandom,
    PauseLeader,
    PauseRandom,
    /// A replica cut off from the others, both ways.
    PartitionRandom,
    PartitionLeader,
    /// The leader's messages to the others lost (it still hears them).
    OneWayLeader,
    /// A replica unreachable for clients (held both ways).
    ClientsCutRandom,
    ClientsCutLeader,
    /// Every client connection to a replica closed.
    ClientsReset,
    /// SIGKILL of an agent process, then a restart.
    KillAgent,
}

impl FaultKind {
    fn parse(s: &str) -> anyhow::Result<FaultKind> {
        Ok(match s.trim() {
            "kill-leader" => FaultKind::KillLeader,
            "kill-random" => FaultKind::KillRandom,
            "pause-leader" => FaultKind::PauseLeader,
            "pause-random" => FaultKind::PauseRandom,
            "partition-random" => FaultKind::PartitionRandom,
            "partition-leader" => FaultKind::PartitionLeader,
            "one-way-leader" => FaultKind::OneWayLeader,
            "clients-cut-random" => FaultKind::ClientsCutRandom,
            "clients-cut-leader" => FaultKind::ClientsCutLeader,
            "clients-reset" => FaultKind::ClientsReset,
            "kill-agent" => FaultKind::KillAgent,
            other => bail!("unknown fault {other:?} (one of {ALL_FAULTS})"),
        })
    }
}

/// One fault injected: when, what, how long.
struct Fault {
    at: Duration,
    what: String,
    lasted: Duration,
}

/// The shared record of the run.
struct Recorder {
    t0: Instant,
    ops: Mutex<Vec<Op>>,
    watched: Mutex<Vec<Watched>>,
}

impl Recorder {
    fn now_ns(&self) -> u64 {
        u64::try_from(self.t0.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
    fn push(&self, op: Op) {
        if let Ok(mut ops) = self.ops.lock() {
            ops.push(op);
        }
    }
}

/// Key `i` of generation `gen`: clients move to fresh keys every
/// `--rotate`, which bounds each key's history (and so the search).
fn key_name(gen: u64, i: usize) -> String {
    format!("{PREFIX}g{gen:05}-k{i}")
}

fn kv(endpoint: &str) -> anyhow::Result<KvClient<tonic::transport::Channel>> {
    Ok(KvClient::new(channel(endpoint)?))
}

fn timed<T>(msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.set_timeout(OP_TIMEOUT);
    r
}

/// One operation against `client`: (outcome, revision).
async fn perform(
    client: &mut KvClient<tonic::transport::Channel>,
    key: &str,
    kind: &Kind,
    serializable: bool,
) -> (Outcome, i64) {
    let rev = |h: Option<keelson_proto::etcdserverpb::ResponseHeader>| h.map_or(0, |h| h.revision);
    match kind {
        Kind::Read => match client
            .range(timed(RangeRequest {
                key: key.as_bytes().to_vec(),
                serializable,
                ..Default::default()
            }))
            .await
        {
            Ok(r) => {
                let r = r.into_inner();
                let v = r
                    .kvs
                    .first()
                    .map(|kv| String::from_utf8_lossy(&kv.value).to_string());
                (Outcome::Read(v), rev(r.header))
            }
            // A read that failed tells nothing.
            Err(_) => (Outcome::Failed, 0),
        },
        Kind::Write { value } => match client
            .put(timed(PutRequest {
                key: key.as_bytes().to_vec(),
                value: value.as_bytes().to_vec(),
                ..Default::default()
            }))
            .await
        {
            Ok(r) => (Outcome::Ok, rev(r.into_inner().header)),
            Err(_) => (Outcome::Unknown, 0),
        },
        Kind::Cas { expect, new } => {
            let compare = match expect {
                Some(v) => Compare {
                    result: compare::CompareResult::Equal as i32,
                    target: compare::CompareTarget::Value as i32,
                    key: key.as_bytes().to_vec(),
                    target_union: Some(compare::TargetUnion::Value(v.as_bytes().to_vec())),
                    ..Default::default()
                },
                None => Compare {
                    result: compare::CompareResult::Equal as i32,
                    target: compare::CompareTarget::Create as i32,
                    key: key.as_bytes().to_vec(),
                    target_union: Some(compare::TargetUnion::CreateRevision(0)),
                    ..Default::default()
                },
            };
            let put = RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest {
                    key: key.as_bytes().to_vec(),
                    value: new.as_bytes().to_vec(),
                    ..Default::default()
                })),
            };
            match client
                .txn(timed(TxnRequest {
                    compare: vec![compare],
                    success: vec![put],
                    failure: vec![],
                }))
                .await
            {
                Ok(r) => {
                    let r = r.into_inner();
                    (Outcome::Swapped(r.succeeded), rev(r.header))
                }
                Err(_) => (Outcome::Unknown, 0),
            }
        }
    }
}

/// What every KV client is told.
#[derive(Clone)]
struct Workload {
    endpoints: Vec<String>,
    keys: usize,
    rotate: Duration,
    serializable: bool,
    seed: u64,
    until: Instant,
}

/// A KV client: one operation at a time until `until`, moving to the next
/// replica after an error.
async fn client_loop(id: usize, w: Workload, rec: Arc<Recorder>) {
    let Workload {
        endpoints,
        keys,
        rotate,
        serializable,
        seed,
        until,
    } = w;
    let rotate_ns = u64::try_from(rotate.as_nanos()).unwrap_or(u64::MAX).max(1);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ (id as u64).wrapping_mul(0x9e37_79b9));
    let mut at = id % endpoints.len();
    let mut client = kv(&endpoints[at]).ok();
    let mut last_read: Vec<Option<String>> = vec![None; keys];
    let mut gen = 0u64;
    let mut n = 0u64;
    while Instant::now() < until {
        let now_gen = rec.now_ns() / rotate_ns;
        if now_gen != gen {
            gen = now_gen;
            last_read = vec![None; keys];
        }
        let k = rng.random_range(0..keys);
        let key = key_name(gen, k);
        n += 1;
        let kind = match rng.random_range(0..10) {
            0..=3 => Kind::Read,
            4..=6 => Kind::Write {
                value: format!("c{id}-{n}"),
            },
            _ => Kind::Cas {
                expect: last_read[k].clone(),
                new: format!("c{id}-{n}"),
            },
        };
        let invoke_ns = rec.now_ns();
        let (outcome, revision) = match client.as_mut() {
            Some(c) => perform(c, &key, &kind, serializable).await,
            // No channel to this replica: nothing was sent.
            None => (Outcome::Failed, 0),
        };
        let complete_ns = rec.now_ns();
        if let Outcome::Read(v) = &outcome {
            last_read[k] = v.clone();
        }
        let failed = matches!(outcome, Outcome::Failed | Outcome::Unknown);
        rec.push(Op {
            client: id,
            key,
            kind,
            invoke_ns,
            complete_ns: (!matches!(outcome, Outcome::Unknown)).then_some(complete_ns),
            outcome,
            revision,
        });
        if failed {
            at = (at + 1) % endpoints.len();
            client = kv(&endpoints[at]).ok();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A watcher of the prefix from `from` until `until`, resuming on the next
/// replica after an error; false if it could not resume (compacted).
async fn watch_loop(
    id: usize,
    endpoints: Vec<String>,
    from: i64,
    until: Arc<Mutex<Option<i64>>>,
    rec: Arc<Recorder>,
) -> bool {
    let mut at = id % endpoints.len();
    let mut next = from;
    let deadline = || until.lock().ok().and_then(|u| *u);
    loop {
        if deadline().is_some_and(|last| next > last) {
            return true;
        }
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let create = WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(
                WatchCreateRequest {
                    key: PREFIX.as_bytes().to_vec(),
                    range_end: prefix_end(PREFIX.as_bytes()),
                    start_revision: next,
                    ..Default::default()
                },
            )),
        };
        if tx.send(create).await.is_err() {
            return false;
        }
        let opened = match channel(&endpoints[at]) {
            Ok(ch) => {
                WatchClient::new(ch)
                    .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
                    .await
            }
            Err(e) => Err(tonic::Status::unavailable(e.to_string())),
        };
        let mut stream = match opened {
            Ok(s) => s.into_inner(),
            Err(_) => {
                at = (at + 1) % endpoints.len();
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        loop {
            let msg = tokio::time::timeout(Duration::from_millis(500), stream.message()).await;
            let resp = match msg {
                Err(_) => {
                    // Idle: done if past the end, else keep waiting.
                    if deadline().is_some_and(|last| next > last) {
                        return true;
                    }
                    continue;
                }
                Ok(Ok(Some(r))) => r,
                Ok(_) => break,
            };
            if resp.compact_revision > 0 {
                return false;
            }
            if resp.canceled {
                break;
            }
            for ev in resp.events {
                let Some(kv) = ev.kv else { continue };
                let value =
                    (ev.r#type == 0).then(|| String::from_utf8_lossy(&kv.value).to_string());
                if let Ok(mut w) = rec.watched.lock() {
                    w.push(Watched {
                        watcher: id,
                        revision: kv.mod_revision,
                        key: String::from_utf8_lossy(&kv.key).to_string(),
                        value,
                    });
                }
                next = next.max(kv.mod_revision + 1);
            }
        }
        // The stream broke: resume on the next replica.
        drop(tx);
        at = (at + 1) % endpoints.len();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn prefix_end(p: &[u8]) -> Vec<u8> {
    let mut end = p.to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    end
}

/// Inject faults until `until`: one at a time, each undone (restart,
/// SIGCONT) before the next.
#[allow(clippy::too_many_arguments)]
async fn faults_loop(
    c: &mut ProcCluster,
    net: &FaultNet,
    agents: &mut Option<chaos_cp::Agents>,
    kinds: &[FaultKind],
    every: Duration,
    seed: u64,
    t0: Instant,
    until: Instant,
) -> Vec<Fault> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0xfa17);
    let mut done = Vec::new();
    loop {
        let wait = every.mul_f64(rng.random_range(0.5..1.5));
        if Instant::now() + wait >= until {
            return done;
        }
        tokio::time::sleep(wait).await;
        let kind = kinds[rng.random_range(0..kinds.len())];
        let n = c.members.len();
        let target = match kind {
            FaultKind::KillLeader
            | FaultKind::PauseLeader
            | FaultKind::PartitionLeader
            | FaultKind::OneWayLeader
            | FaultKind::ClientsCutLeader => match c.leader().await {
                Some(i) => i,
                None => rng.random_range(0..n),
            },
            FaultKind::KillAgent => rng.random_range(0..agents.as_ref().map_or(1, |a| a.count())),
            _ => rng.random_range(0..n),
        };
        let mut lasted = Duration::from_millis(rng.random_range(500..3000));
        let at = t0.elapsed();
        let name = match kind {
            FaultKind::KillAgent => format!("agent {target}"),
            _ => c.members[target].name.clone(),
        };
        match kind {
            FaultKind::KillLeader | FaultKind::KillRandom => {
                c.kill(target);
                tokio::time::sleep(lasted).await;
                if let Err(e) = c.restart(target) {
                    eprintln!("restart {name}: {e:#}");
                }
            }
            FaultKind::PauseLeader | FaultKind::PauseRandom => {
                c.pause(target, true);
                tokio::time::sleep(lasted).await;
                c.pause(target, false);
            }
            FaultKind::PartitionRandom | FaultKind::PartitionLeader => {
                net.isolate(target, n);
                tokio::time::sleep(lasted).await;
                net.heal();
            }
            FaultKind::OneWayLeader => {
                for j in (0..n).filter(|j| *j != target) {
                    net.block(target, j);
                }
                tokio::time::sleep(lasted).await;
                net.heal();
            }
            FaultKind::ClientsCutRandom | FaultKind::ClientsCutLeader => {
                net.cut_clients(target);
                tokio::time::sleep(lasted).await;
                net.heal();
            }
            FaultKind::ClientsReset => {
                net.reset(target);
                lasted = Duration::ZERO;
            }
            FaultKind::KillAgent => {
                if let Some(a) = agents.as_mut() {
                    a.kill(target);
                    tokio::time::sleep(lasted).await;
                    if let Err(e) = a.restart(target) {
                        eprintln!("restart agent {target}: {e:#}");
                    }
                }
            }
        }
        let what = match kind {
            FaultKind::KillLeader => format!("SIGKILL leader {name}, restarted"),
            FaultKind::KillRandom => format!("SIGKILL {name}, restarted"),
            FaultKind::PauseLeader => format!("SIGSTOP leader {name}, SIGCONT"),
            FaultKind::PauseRandom => format!("SIGSTOP {name}, SIGCONT"),
            FaultKind::PartitionRandom => format!("partition: {name} cut off, healed"),
            FaultKind::PartitionLeader => format!("partition: leader {name} cut off, healed"),
            FaultKind::OneWayLeader => {
                format!("one-way: leader {name} not heard by the others, healed")
            }
            FaultKind::ClientsCutRandom => format!("clients cut off from {name}, healed"),
            FaultKind::ClientsCutLeader => format!("clients cut off from leader {name}, healed"),
            FaultKind::ClientsReset => format!("every client connection to {name} reset"),
            FaultKind::KillAgent => format!("SIGKILL {name} (simulated nodes), restarted"),
        };
        done.push(Fault { at, what, lasted });
    }
}

pub async fn run(a: ChaosArgs) -> anyhow::Result<()> {
    let seed = a.seed.unwrap_or_else(rand::random);
    let kinds: Vec<FaultKind> = a
        .faults
        .iter()
        .filter(|s| !s.trim().is_empty())
        .map(|s| FaultKind::parse(s))
        .collect::<anyhow::Result<_>>()?;
    if a.clients == 0 || a.keys == 0 {
        bail!("--clients and --keys must be at least 1");
    }
    let control_plane = a.deployments > 0;
    if control_plane && a.nodes == 0 {
        bail!("--deployments needs --nodes of at least 1");
    }
    if !control_plane && kinds.contains(&FaultKind::KillAgent) {
        bail!("kill-agent needs the control-plane workload (--deployments of at least 1)");
    }
    println!(
        "chaos: seed {seed}, {} s, {} clients on {} keys, {} deployments on {} simulated nodes, faults {:?} every ~{:?}",
        a.duration.as_secs(),
        a.clients,
        a.keys,
        a.deployments,
        if control_plane { a.nodes } else { 0 },
        a.faults,
        a.fault_every
    );
    let tmp = tempfile::tempdir()?;
    let dir = a.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    let exe = std::env::current_exe().context("find the keelson binary")?;
    // Replicas on addresses of their own, their peer traffic through the
    // fault layer's proxies.
    let octet: u8 = rand::random_range(30..200);
    let extra_args = if control_plane {
        Vec::new()
    } else {
        vec!["--disable-scheduler".into(), "--disable-controllers".into()]
    };
    let mut c = ProcCluster::start_proxied(
        ClusterKind::Keelson {
            bin: exe.clone(),
            extra_args,
        },
        3,
        &dir,
        octet,
    )?;
    let net = FaultNet::new();
    let (pairs, sources) = c.peer_proxies();
    let sources = Arc::new(sources);
    let mut proxies = Vec::new();
    for (i, (listen, upstream)) in pairs.into_iter().enumerate() {
        proxies.push(
            net.proxy(i, listen, upstream, sources.clone())
                .await
                .with_context(|| format!("fault layer proxy on {listen}"))?,
        );
    }
    // Clients reach each replica (etcd and API ports) through a proxy of
    // the fault layer on 127.0.(octet+2).(i+1).
    let mut endpoints = Vec::new();
    let mut api_endpoints = Vec::new();
    for (i, m) in c.members.iter().enumerate() {
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
    c.wait_healthy(Duration::from_secs(60)).await?;
    // The control-plane workload: simulated nodes, Deployments at their
    // desired state before the faults start, watchers of every change.
    let token = c.token("admin", None);
    let cp_rec = Arc::new(chaos_cp::CpRecord::default());
    let cp_stop = Arc::new(Mutex::new(None));
    let mut agents = None;
    let mut cp_watchers = Vec::new();
    let cp_client = chaos_cp::client(&api_endpoints, &token)?;
    if control_plane {
        agents = Some(chaos_cp::Agents::start(
            exe.clone(),
            a.nodes,
            &api_endpoints,
            &token,
            &dir,
        )?);
        let from = chaos_cp::setup(&cp_client, a.deployments).await?;
        cp_watchers = chaos_cp::spawn_watchers(&cp_client, &from, cp_stop.clone(), &cp_rec);
        let took = chaos_cp::wait_converged(&cp_client, a.deployments, CONVERGENCE_BOUND).await;
        if took.values().any(Option::is_none) {
            bail!("the deployments did not reach their desired state before the faults: {took:?}");
        }
        println!(
            "{} deployments at their desired state on {} simulated nodes",
            a.deployments, a.nodes
        );
    }
    let rec = Arc::new(Recorder {
        t0: Instant::now(),
        ops: Mutex::new(Vec::new()),
        watched: Mutex::new(Vec::new()),
    });
    // Keys start absent; the watchers start after the current revision.
    let mut first = kv(&endpoints[0])?;
    let start_rev = match perform(&mut first, &key_name(0, 0), &Kind::Read, false).await {
        (Outcome::Read(_), r) if r > 0 => r + 1,
        _ => bail!("a first read failed on a healthy cluster"),
    };
    let t0 = Instant::now();
    let until = t0 + a.duration;
    let watch_end = Arc::new(Mutex::new(None));
    let watchers: Vec<_> = (0..WATCHERS)
        .map(|w| {
            tokio::spawn(watch_loop(
                w,
                endpoints.clone(),
                start_rev,
                watch_end.clone(),
                rec.clone(),
            ))
        })
        .collect();
    let workload = Workload {
        endpoints: endpoints.clone(),
        keys: a.keys,
        rotate: a.rotate,
        serializable: a.serializable_reads,
        seed,
        until,
    };
    let clients: Vec<_> = (0..a.clients)
        .map(|i| tokio::spawn(client_loop(i, workload.clone(), rec.clone())))
        .collect();
    // Faults and spec changes stop a quarter of the run (at most 10 s)
    // before the end, so the end of the history shows the cluster back to
    // normal.
    let quiet = (a.duration / 4).min(Duration::from_secs(10));
    let operator = control_plane.then(|| {
        tokio::spawn(chaos_cp::operator(
            cp_client.clone(),
            a.deployments,
            seed,
            until - quiet,
            cp_rec.clone(),
        ))
    });
    let faults = if kinds.is_empty() {
        Vec::new()
    } else {
        faults_loop(
            &mut c,
            &net,
            &mut agents,
            &kinds,
            a.fault_every,
            seed,
            t0,
            until - quiet,
        )
        .await
    };
    net.heal();
    if let Some(op) = operator {
        let _ = op.await;
    }
    // From here on nothing changes specs: each Deployment has the bound to
    // get back to its desired state.
    let converging = control_plane.then(|| {
        let cl = cp_client.clone();
        let n = a.deployments;
        tokio::spawn(async move { chaos_cp::wait_converged(&cl, n, CONVERGENCE_BOUND).await })
    });
    for h in clients {
        let _ = h.await;
    }
    c.wait_healthy(Duration::from_secs(30)).await?;
    let mut cp_verdicts = Vec::new();
    if let Some(conv) = converging {
        let took = conv.await.unwrap_or_default();
        let seqs = chaos_cp::final_seqs(&cp_client, a.deployments).await;
        // The watchers catch up to the present, then stop.
        let now = chaos_cp::current_revision(&cp_client).await?;
        if let Ok(mut s) = cp_stop.lock() {
            *s = Some(now);
        }
        let mut complete = Vec::new();
        for (name, h) in cp_watchers {
            match tokio::time::timeout(Duration::from_secs(20), h).await {
                Ok(Ok(true)) => complete.push(name),
                _ => eprintln!("the {name} watcher did not see the whole run"),
            }
        }
        print_control_plane(&cp_rec, &took);
        for (d, _) in took.iter().filter(|(_, t)| t.is_none()) {
            println!("  {d} now: {}", chaos_cp::describe(&cp_client, d).await);
        }
        cp_verdicts = chaos_cp::verdicts(&cp_rec, &complete, &took, CONVERGENCE_BOUND, &seqs);
    }
    drop(agents);
    // Final reads of every key used on every replica, then the watchers
    // catch up to the last revision.
    let used: std::collections::BTreeSet<String> = rec
        .ops
        .lock()
        .map(|o| o.iter().map(|op| op.key.clone()).collect())
        .unwrap_or_default();
    let mut last_rev = 0;
    for (i, e) in endpoints.iter().enumerate() {
        let mut cl = kv(e)?;
        for key in &used {
            let invoke_ns = rec.now_ns();
            let (outcome, revision) = perform(&mut cl, key, &Kind::Read, false).await;
            last_rev = last_rev.max(revision);
            rec.push(Op {
                client: a.clients + 1 + i,
                key: key.clone(),
                kind: Kind::Read,
                invoke_ns,
                complete_ns: Some(rec.now_ns()),
                outcome,
                revision,
            });
        }
    }
    if let Ok(mut e) = watch_end.lock() {
        *e = Some(last_rev);
    }
    let mut complete = Vec::new();
    for (w, h) in watchers.into_iter().enumerate() {
        match tokio::time::timeout(Duration::from_secs(20), h).await {
            Ok(Ok(true)) => complete.push(w),
            _ => eprintln!("watcher {w} did not see the whole run (compacted or stuck)"),
        }
    }
    let ops = rec.ops.lock().map(|o| o.clone()).unwrap_or_default();
    let watched = rec.watched.lock().map(|w| w.clone()).unwrap_or_default();
    drop(c);
    for p in proxies {
        p.abort();
    }

    let mut report = judge(&ops, &watched, &complete);
    report.extend(cp_verdicts);
    print_report(
        &faults,
        &ops,
        &report,
        t0.duration_since(rec.t0),
        a.duration,
    );
    let violations: Vec<&Verdict> = report.iter().filter(|v| !v.ok).collect();
    if violations.is_empty() {
        println!("\nviolations: 0 (seed {seed})");
        Ok(())
    } else {
        bail!(
            "{} invariant(s) violated; reproduce with: keelson chaos --seed {seed} --duration {}ms --clients {} --keys {} --deployments {} --nodes {} --rotate {}ms --fault-every {}ms --faults {}{}",
            violations.len(),
            a.duration.as_millis(),
            a.clients,
            a.keys,
            a.deployments,
            a.nodes,
            a.rotate.as_millis(),
            a.fault_every.as_millis(),
            a.faults.join(","),
            if a.serializable_reads { " --serializable-reads" } else { "" }
        )
    }
}

/// Every verdict over the history.
fn judge(ops: &[Op], watched: &[Watched], complete: &[usize]) -> Vec<Verdict> {
    let mut verdicts = Vec::new();
    let mut bad = Vec::new();
    let mut unknown = Vec::new();
    let mut by_key: std::collections::BTreeMap<&str, Vec<&Op>> = Default::default();
    for op in ops {
        by_key.entry(op.key.as_str()).or_default().push(op);
    }
    let keys = by_key.len();
    let largest = by_key.values().map(Vec::len).max().unwrap_or(0);
    for (key, of_key) in &by_key {
        match linearizability::check(&None, of_key, SEARCH_BUDGET) {
            Some(true) => {}
            Some(false) => bad.push(format!("{key} ({} operations)", of_key.len())),
            None => unknown.push(key.to_string()),
        }
    }
    verdicts.push(Verdict {
        name: "linearizable per key".into(),
        ok: bad.is_empty(),
        detail: if bad.is_empty() {
            format!(
                "{keys} keys, up to {largest} operations each{}",
                if unknown.is_empty() {
                    String::new()
                } else {
                    format!("; search budget ran out for {unknown:?} (not judged)")
                }
            )
        } else {
            format!(
                "not linearizable: {} of {keys} keys: {}{}",
                bad.len(),
                bad.iter().take(5).cloned().collect::<Vec<_>>().join(", "),
                if bad.len() > 5 { ", ..." } else { "" }
            )
        },
    });
    verdicts.push(Verdict {
        name: "every watcher saw the whole run".into(),
        ok: complete.len() == WATCHERS,
        detail: format!("{} of {WATCHERS} complete", complete.len()),
    });
    verdicts.push(invariants::watch_gap_free(ops, watched, complete));
    verdicts.push(invariants::watch_ordered(watched));
    verdicts.push(invariants::revisions_monotonic(ops));
    verdicts
}

fn print_control_plane(
    rec: &chaos_cp::CpRecord,
    took: &std::collections::BTreeMap<String, Option<Duration>>,
) {
    let writes = rec.writes.lock().map(|w| w.clone()).unwrap_or_default();
    let acked = writes.iter().filter(|w| w.acked == Some(true)).count();
    let unknown = writes.iter().filter(|w| w.acked.is_none()).count();
    let pods: std::collections::BTreeSet<String> = rec
        .pods
        .lock()
        .map(|p| p.iter().map(|p| p.uid.clone()).collect())
        .unwrap_or_default();
    println!(
        "\ncontrol plane: {} spec changes ({} scales, {} rollouts; acknowledged {acked}, unknown {unknown}), {} pods seen",
        writes.len(),
        rec.scaled.load(std::sync::atomic::Ordering::Relaxed),
        rec.rolled.load(std::sync::atomic::Ordering::Relaxed),
        pods.len()
    );
    for (d, t) in took {
        match t {
            Some(t) => println!(
                "  {d}: at its desired state {:.1} s after the faults",
                t.as_secs_f64()
            ),
            None => println!("  {d}: NOT at its desired state"),
        }
    }
}

fn print_report(
    faults: &[Fault],
    ops: &[Op],
    verdicts: &[Verdict],
    offset: Duration,
    run: Duration,
) {
    println!("\nfaults injected: {}", faults.len());
    for f in faults {
        println!(
            "  {:>6.1}s  {} ({:.1}s)",
            f.at.as_secs_f64(),
            f.what,
            f.lasted.as_secs_f64()
        );
    }
    let count = |label: &str| ops.iter().filter(|o| o.outcome.label() == label).count();
    println!(
        "\noperations: {} (ok {}, failed {}, indeterminate {})",
        ops.len(),
        count("ok"),
        count("failed"),
        count("indeterminate")
    );
    // Availability: successful operations per second of the run.
    let secs = run.as_secs().max(1) as usize;
    let mut ok = vec![0usize; secs + 1];
    let mut err = vec![0usize; secs + 1];
    for o in ops {
        let t = Duration::from_nanos(o.invoke_ns)
            .saturating_sub(offset)
            .as_secs() as usize;
        if t > secs {
            continue;
        }
        if o.outcome.label() == "ok" {
            ok[t] += 1;
        } else {
            err[t] += 1;
        }
    }
    println!("\navailability (ok/not ok operations per second):");
    for (chunk_start, (oks, errs)) in ok.chunks(10).zip(err.chunks(10)).enumerate() {
        let cells: Vec<String> = oks
            .iter()
            .zip(errs)
            .map(|(o, e)| format!("{o:>4}/{e:<3}"))
            .collect();
        println!("  {:>4}s {}", chunk_start * 10, cells.join(" "));
    }
    println!("\ninvariants:");
    for v in verdicts {
        println!(
            "  [{}] {}: {}",
            if v.ok { "ok" } else { "VIOLATED" },
            v.name,
            v.detail
        );
    }
}
