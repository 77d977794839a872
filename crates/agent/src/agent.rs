//! The node agent's IO loop: `keelson agent --name n1 --address 127.0.0.11`.
//!
//! - Registers (or refreshes) its Node: capacity and allocatable from the
//!   machine (cpu count, MemTotal) unless given, labels, taints, its
//!   address, `Ready=True`.
//! - One session stream (`Nodes.Session`, [`crate::session`]) to any
//!   replica, reopened on another when it dies: heartbeats up (each renews
//!   the store lease the Lease `kube-node-lease/<node>` is attached to, in
//!   the store leader's memory: no Raft write per heartbeat; the node
//!   lifecycle controller watches that Lease), pod statuses up in batches,
//!   the pods bound to this node down (listed, then the changes, resumed
//!   from the last revision after a reconnect without missing a change).
//!   Every [`AgentOptions::sync_every`] (at once for a new pod or a
//!   deletion) the [`Kubelet`] syncs them with the runtime, and changed
//!   statuses, deletions to confirm and due
//!   probes are carried out concurrently.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keelson_model::time::format_rfc3339;
use keelson_proto::v1;
use keelson_sdk::watcher::Event;
use keelson_sdk::{Api, Client, DeleteParams, Error, Resource};
use tokio::sync::mpsc;

use crate::kubelet::{Config, Kubelet};
use crate::probe::{Outcome, ProbeKind};
use crate::process::ProcessRuntime;
use crate::runtime::Runtime;

#[derive(Clone, Debug)]
pub struct AgentOptions {
    pub name: String,
    pub address: Ipv4Addr,
    /// Port of the log endpoint on `address` (recorded in the Node).
    pub port: u16,
    pub data_dir: PathBuf,
    /// Capacity overrides (default: the machine's).
    pub cpu: Option<String>,
    pub memory: Option<String>,
    pub max_pods: String,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<v1::Taint>,
    pub heartbeat_ttl_secs: i64,
    pub heartbeat_every: Duration,
    pub sync_every: Duration,
    /// First restart back-off of a crashing container (doubles to 60 s).
    pub backoff_base: Duration,
}

impl AgentOptions {
    pub fn new(name: &str, address: Ipv4Addr, data_dir: PathBuf) -> AgentOptions {
        AgentOptions {
            name: name.to_string(),
            address,
            port: 10250,
            data_dir,
            cpu: None,
            memory: None,
            max_pods: "110".into(),
            labels: BTreeMap::new(),
            taints: Vec::new(),
            heartbeat_ttl_secs: 10,
            heartbeat_every: Duration::from_secs(1),
            sync_every: Duration::from_millis(100),
            backoff_base: Duration::from_secs(1),
        }
    }
}

/// The machine's memory (MemTotal) as a quantity, if readable.
fn machine_memory() -> Option<String> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: u64 = text
        .lines()
        .find(|l| l.starts_with("MemTotal:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(format!("{kb}Ki"))
}

fn node_object(o: &AgentOptions) -> v1::Node {
    let cpu = o.cpu.clone().unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .to_string()
    });
    let memory = o
        .memory
        .clone()
        .or_else(machine_memory)
        .unwrap_or_else(|| "1Gi".into());
    let resources: BTreeMap<String, String> = [
        ("cpu", cpu),
        ("memory", memory),
        ("pods", o.max_pods.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let mut labels = o.labels.clone();
    labels.insert("kubernetes.io/hostname".into(), o.name.clone());
    labels.insert("kubernetes.io/os".into(), "linux".into());
    let now = format_rfc3339(std::time::SystemTime::now());
    let oct = o.address.octets();
    v1::Node {
        api_version: "v1".into(),
        kind: "Node".into(),
        metadata: Some(v1::ObjectMeta {
            name: o.name.clone(),
            labels,
            ..Default::default()
        }),
        spec: Some(v1::NodeSpec {
            taints: o.taints.clone(),
            pod_cidr: format!("127.{}.0.0/16", oct[3]),
            ..Default::default()
        }),
        status: Some(v1::NodeStatus {
            capacity: resources.clone(),
            allocatable: resources,
            conditions: vec![v1::NodeCondition {
                r#type: "Ready".into(),
                status: "True".into(),
                last_heartbeat_time: now.clone(),
                last_transition_time: now,
                reason: "KubeletReady".into(),
                message: "keelson agent is posting ready status".into(),
            }],
            addresses: vec![
                v1::NodeAddress {
                    r#type: "InternalIP".into(),
                    address: o.address.to_string(),
                },
                v1::NodeAddress {
                    r#type: "Hostname".into(),
                    address: o.name.clone(),
                },
            ],
            daemon_endpoints: Some(v1::NodeDaemonEndpoints {
                kubelet_endpoint: Some(v1::DaemonEndpoint {
                    port: i32::from(o.port),
                }),
            }),
            node_info: Some(v1::NodeSystemInfo {
                operating_system: "linux".into(),
                architecture: std::env::consts::ARCH.into(),
                kubelet_version: format!("keelson/{}", env!("CARGO_PKG_VERSION")),
                container_runtime_version: "keelson-process://0.1".into(),
                ..Default::default()
            }),
        }),
    }
}

enum Done {
    Probe {
        pod_uid: String,
        container: String,
        container_id: String,
        kind: ProbeKind,
        outcome: Outcome,
    },
}

/// Run the agent until the future is dropped (or registration fails).
pub async fn run(client: Client, o: AgentOptions) -> anyhow::Result<()> {
    std::fs::create_dir_all(&o.data_dir)
        .map_err(|e| anyhow::anyhow!("create {}: {e}", o.data_dir.display()))?;
    let exe =
        std::env::current_exe().map_err(|e| anyhow::anyhow!("find the keelson binary: {e}"))?;
    let runtime: Arc<dyn Runtime> = Arc::new(
        ProcessRuntime::new(o.data_dir.clone(), exe)
            .map_err(|e| anyhow::anyhow!("runtime: {e}"))?,
    );
    if let Err(why) = runtime.limits_supported() {
        tracing::warn!("{why}");
    }
    let logs = {
        let (runtime, addr) = (runtime.clone(), SocketAddr::from((o.address, o.port)));
        tokio::spawn(async move {
            if let Err(e) = crate::logs::serve(runtime, addr).await {
                tracing::error!("{e}");
            }
        })
    };
    let _logs = AbortOnDrop(logs);
    let proxy = tokio::spawn(crate::proxy::run(client.clone(), o.name.clone(), o.address));
    let _proxy = AbortOnDrop(proxy);
    crate::sim::register(&client, node_object(&o))
        .await
        .map_err(|e| anyhow::anyhow!("register node {}: {e}", o.name))?;
    // One session stream: heartbeats and statuses up, pods down.
    let session = crate::session::start(
        client.clone(),
        o.name.clone(),
        o.heartbeat_ttl_secs.max(1),
        o.heartbeat_every,
    );
    let crate::session::Channels {
        pods: mut pod_events,
        written: mut written_rx,
        statuses: status_tx,
    } = session;
    tracing::info!(node = %o.name, address = %o.address, "registered");

    let mut cfg = Config::new(&o.name, o.address);
    cfg.backoff_base = o.backoff_base;
    cfg.address_free = address_free;
    let mut kubelet = Kubelet::new(runtime, cfg);
    let mut desired: HashMap<String, v1::Pod> = HashMap::new();
    let mut listed = false;
    // Unbounded, and safe: one message per probe run, and a probe is not
    // started again while its last run is in flight (the tracker's
    // `in_flight`), so at most (containers x 3 kinds) messages can wait.
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
    let mut writing: std::collections::HashSet<String> = Default::default();
    let mut queued: HashMap<String, v1::Pod> = HashMap::new();
    let mut confirming: HashMap<String, Instant> = HashMap::new();
    let mut tick = tokio::time::interval(o.sync_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            ev = pod_events.recv() => match ev {
                Some(Event::Applied(p)) => {
                    // A new pod (or a deletion) is acted on at once, not at
                    // the next tick.
                    let urgent = desired.get(&p.meta().uid).is_none_or(|old| {
                        old.meta().deletion_timestamp != p.meta().deletion_timestamp
                    });
                    // A status other than ours with no write of ours in
                    // flight (an older write that landed last): redo it.
                    if !writing.contains(&p.meta().uid) {
                        kubelet.observed(&p);
                    }
                    desired.insert(p.meta().uid.clone(), p);
                    if urgent && listed {
                        tick.reset_immediately();
                    }
                }
                Some(Event::Deleted(p)) => { desired.remove(&p.meta().uid); }
                Some(Event::Restarted(ps)) => {
                    desired = ps.into_iter().map(|p| (p.meta().uid.clone(), p)).collect();
                    listed = true;
                }
                None => anyhow::bail!("the session task ended"),
            },
            Some(Done::Probe { pod_uid, container, container_id, kind, outcome }) = done_rx.recv() => {
                kubelet.probe_result(&pod_uid, &container, &container_id, kind, &outcome, Instant::now());
            }
            Some((uid, ok)) = written_rx.recv() => {
                writing.remove(&uid);
                if !ok {
                    kubelet.forget_reported(&uid);
                }
                if let Some(p) = queued.remove(&uid) {
                    writing.insert(uid);
                    let _ = status_tx.send(p);
                }
            }
            _ = tick.tick() => {
                // Oldest first: starts beyond one sync's share go to the
                // newest pods.
                let mut pods: Vec<v1::Pod> = desired.values().cloned().collect();
                pods.sort_by(|a, b| {
                    (&a.meta().creation_timestamp, &a.meta().name)
                        .cmp(&(&b.meta().creation_timestamp, &b.meta().name))
                });
                let began = Instant::now();
                let res = kubelet.sync(listed.then_some(pods.as_slice()), began);
                if began.elapsed() > Duration::from_millis(200) {
                    tracing::info!(pods = pods.len(), took_ms = began.elapsed().as_millis() as u64, "slow sync");
                }
                for p in res.statuses {
                    let uid = p.meta().uid.clone();
                    if writing.contains(&uid) {
                        // One write per pod at a time, the newest last: a
                        // status never lands after a newer one.
                        queued.insert(uid, p);
                    } else {
                        writing.insert(uid);
                        let _ = status_tx.send(p);
                    }
                }
                let now = Instant::now();
                confirming.retain(|_, at| now.duration_since(*at) < CONFIRM_RETRY);
                for (ns, name, uid) in res.confirm_deletions {
                    // Once per pod until the watch shows it gone (or a retry).
                    if confirming.contains_key(&uid) {
                        continue;
                    }
                    confirming.insert(uid.clone(), now);
                    let client = client.clone();
                    tokio::spawn(async move {
                        let api: Api<v1::Pod> = Api::namespaced(client, &ns);
                        let dp = DeleteParams {
                            grace_period_seconds: Some(0),
                            precondition_uid: uid,
                            ..Default::default()
                        };
                        match api.delete(&name, &dp).await {
                            Ok(_) | Err(Error::NotFound(_)) | Err(Error::Conflict(_)) => {}
                            Err(e) => tracing::debug!(pod = %name, error = %e, "confirm deletion"),
                        }
                    });
                }
                if res.more_starts {
                    tick.reset_immediately();
                }
                for r in res.probes {
                    let tx = done_tx.clone();
                    tokio::spawn(async move {
                        let outcome = crate::probe::run(&r.probe, &r.target).await;
                        let _ = tx.send(Done::Probe {
                            pod_uid: r.pod_uid,
                            container: r.container,
                            container_id: r.container_id,
                            kind: r.kind,
                            outcome,
                        });
                    });
                }
            }
        }
    }
}

/// Whether each (ip, port) can be bound now (nothing else listens there).
fn address_free(ip: &str, ports: &[u16]) -> bool {
    let Ok(ip) = ip.parse::<Ipv4Addr>() else {
        return false;
    };
    // Only "in use" means taken (not a port this agent may not bind).
    ports.iter().all(|p| {
        std::net::TcpListener::bind(SocketAddr::from((ip, *p)))
            .map_or_else(|e| e.kind() != std::io::ErrorKind::AddrInUse, |_| true)
    })
}

/// Stop every container recorded under an agent's data dir: SIGTERM, then
/// SIGKILL for those still running after `grace` (for an agent told to
/// leave nothing behind when it exits). Blocking; how many were running.
pub fn stop_all_containers(data_dir: &std::path::Path, grace: Duration) -> anyhow::Result<usize> {
    let exe =
        std::env::current_exe().map_err(|e| anyhow::anyhow!("find the keelson binary: {e}"))?;
    let runtime = ProcessRuntime::new(data_dir.to_path_buf(), exe)
        .map_err(|e| anyhow::anyhow!("runtime: {e}"))?;
    let running = |rt: &ProcessRuntime| -> Vec<String> {
        rt.list()
            .into_iter()
            .filter(|c| matches!(c.state, crate::runtime::State::Running { .. }))
            .map(|c| c.id)
            .collect()
    };
    let ids = running(&runtime);
    for id in &ids {
        runtime.stop(id);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && !running(&runtime).is_empty() {
        std::thread::sleep(Duration::from_millis(50));
    }
    for id in running(&runtime) {
        tracing::warn!(container = %id, "did not stop within {grace:?}: SIGKILL");
        runtime.kill(&id);
    }
    Ok(ids.len())
}

/// A deletion confirmation is sent again after this long without the pod
/// going away.
const CONFIRM_RETRY: Duration = Duration::from_secs(2);

struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
