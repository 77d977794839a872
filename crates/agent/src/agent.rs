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
//! - Every [`AgentOptions::sync_every`] (at once for a new pod or a
//!   deletion, and again at once after a sync that started containers or
//!   left starts over) a sync round. The decisions are the [`Kubelet`]'s,
//!   pure; the IO is here, and whatever may block (the runtime's listing,
//!   the bind checks of new pods' addresses, process spawns, signals, file
//!   removals) runs on tokio's blocking pool, never on an async worker:
//!   1. `observe` (blocking pool): list the runtime, check the addresses
//!      the kubelet names for other listeners;
//!   2. [`Kubelet::sync`] (pure, on the loop): the
//!      [`Plan`](crate::kubelet::Plan);
//!   3. `execute` (blocking pool): the plan's runtime calls, up to
//!      `PARALLEL_STARTS` (4) starts at once; how the starts went goes back
//!      to the kubelet ([`Kubelet::started`]);
//!   4. the plan's API side, concurrently: changed statuses (one write in
//!      flight per pod, the newest last), deletion confirmations (once per
//!      pod, again after `CONFIRM_RETRY_MS`) and due probes.
//!
//!   The loop awaits steps 1 and 3, so the kubelet is never used by two
//!   steps at once; events that arrive meanwhile wait in their channels.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use keelson_model::time::format_rfc3339;
use keelson_proto::v1;
use keelson_sdk::watcher::Event;
use keelson_sdk::{Api, Client, DeleteParams, Error, Resource};
use tokio::sync::mpsc;

use crate::image::pull::PullOptions;
use crate::kubelet::{Config, Kubelet, Now, Observed, RuntimeCalls, Started};
use crate::network::{Cidr, Network};
use crate::probe::{Outcome, ProbeKind};
use crate::process::ProcessRuntime;
use crate::runc::{RuncOptions, RuncRuntime};
use crate::runtime::{ContainerSpec, Runtime, StartError};

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
    pub runtime: RuntimeKind,
    /// The cluster's pod addresses (the runc runtime's confinement rule).
    pub cluster_cidr: Cidr,
    /// Services' cluster IPs (routed to the node's bridge).
    pub service_cidr: Cidr,
    /// Registries reached over plain HTTP besides loopback ones.
    pub insecure_registries: Vec<String>,
    /// Image garbage collection (runc runtime).
    pub image_gc: ImageGc,
}

/// The kubelet's image garbage collection settings: every `period`, when
/// the image store's disk is at least `high` percent used, unused images
/// go, least recently used first, until it would be at `low` percent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageGc {
    pub high: u8,
    pub low: u8,
    pub period: Duration,
}

impl Default for ImageGc {
    /// The kubelet's defaults: 85%, 80%, every 5 minutes.
    fn default() -> ImageGc {
        ImageGc {
            high: 85,
            low: 80,
            period: Duration::from_secs(300),
        }
    }
}

/// Which runtime runs the pods.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuntimeKind {
    /// Host processes on loopback addresses ([`ProcessRuntime`]).
    Process,
    /// OCI images under runc, pods on the node's bridge ([`RuncRuntime`]).
    Runc,
}

impl RuntimeKind {
    /// runc where runc and root are available, else the process runtime
    /// (and why, for the log).
    pub fn detect() -> (RuntimeKind, Option<String>) {
        match crate::runc::available() {
            Ok(_) => (RuntimeKind::Runc, None),
            Err(why) => (RuntimeKind::Process, Some(why)),
        }
    }
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
            runtime: RuntimeKind::Process,
            cluster_cidr: DEFAULT_CLUSTER_CIDR,
            service_cidr: DEFAULT_SERVICE_CIDR,
            insecure_registries: Vec::new(),
            image_gc: ImageGc::default(),
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
            // The process runtime's pods live on loopback addresses of
            // their own; the runc runtime's get a subnet from the node
            // IPAM controller.
            pod_cidr: match o.runtime {
                RuntimeKind::Process => format!("127.{}.0.0/16", oct[3]),
                RuntimeKind::Runc => String::new(),
            },
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
                container_runtime_version: match o.runtime {
                    RuntimeKind::Process => "keelson-process://0.1".into(),
                    RuntimeKind::Runc => "runc://1".into(),
                },
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
    crate::sim::register(&client, node_object(&o))
        .await
        .map_err(|e| anyhow::anyhow!("register node {}: {e}", o.name))?;
    let mut cfg = Config::new(&o.name, o.address);
    let mut image_gc = None;
    let runtime: Arc<dyn Runtime> = match o.runtime {
        RuntimeKind::Process => Arc::new(
            ProcessRuntime::new(o.data_dir.clone(), exe)
                .map_err(|e| anyhow::anyhow!("runtime: {e}"))?,
        ),
        RuntimeKind::Runc => {
            let pod_cidr = wait_for_pod_cidr(&client, &o.name).await?;
            let mut network = Network::new(&o.name, pod_cidr, o.cluster_cidr);
            network.service_cidr = Some(o.service_cidr);
            let net = network.clone();
            tokio::task::spawn_blocking(move || net.setup())
                .await?
                .map_err(|e| anyhow::anyhow!("pod network: {e}"))?;
            tracing::info!(node = %o.name, %pod_cidr, bridge = %network.bridge, "pod network ready");
            cfg.pod_cidr = Some(pod_cidr);
            let runc = Arc::new(
                RuncRuntime::new(RuncOptions {
                    data_dir: o.data_dir.clone(),
                    node_name: o.name.clone(),
                    network: Some(network),
                    pull: PullOptions {
                        insecure_registries: o.insecure_registries.clone(),
                        auth: None,
                    },
                    pause: pause_command(&exe),
                    runc: crate::runc::available().unwrap_or_else(|_| PathBuf::from("runc")),
                })
                .map_err(|e| anyhow::anyhow!("runc runtime: {e}"))?,
            );
            image_gc = Some(tokio::spawn(collect_images(runc.clone(), o.image_gc)));
            runc
        }
    };
    let _image_gc = image_gc.map(AbortOnDrop);
    if let Err(why) = runtime.limits_supported() {
        tracing::warn!("{why}");
    }
    let logs = {
        let (runtime, addr) = (runtime.clone(), SocketAddr::from((o.address, o.port)));
        let authorization = client.authorization().map(str::to_string);
        tokio::spawn(async move {
            if let Err(e) = crate::logs::serve(runtime, addr, authorization).await {
                tracing::error!("{e}");
            }
        })
    };
    let _logs = AbortOnDrop(logs);
    // Services: the userspace proxy for host-process pods, nftables rules
    // for pods in namespaces of their own.
    let proxy = match o.runtime {
        RuntimeKind::Process => {
            tokio::spawn(crate::proxy::run(client.clone(), o.name.clone(), o.address))
        }
        RuntimeKind::Runc => {
            let (services, s_task) = keelson_sdk::reflector(
                Api::<v1::Service>::all(client.clone()),
                keelson_sdk::ListParams::default(),
            );
            let (endpoints, e_task) = keelson_sdk::reflector(
                Api::<v1::Endpoints>::all(client.clone()),
                keelson_sdk::ListParams::default(),
            );
            let (node, bridge) = (o.name.clone(), Network::bridge_name(&o.name));
            // Without br_netfilter, pods' Service traffic is masqueraded.
            let masquerade_from =
                (!std::path::Path::new("/proc/sys/net/bridge/bridge-nf-call-iptables").exists())
                    .then_some(o.cluster_cidr);
            if masquerade_from.is_some() {
                tracing::warn!("br_netfilter is not loaded: pods' Service traffic is masqueraded");
            }
            let dns = cfg.pod_cidr.and_then(|c| c.gateway()).map(|gw| {
                let (services, endpoints) = (services.clone(), endpoints.clone());
                tokio::spawn(async move {
                    let addr = SocketAddr::from((gw, 53));
                    if let Err(e) =
                        crate::dns::serve(addr, services, endpoints, crate::dns::upstreams()).await
                    {
                        tracing::error!(%addr, error = %e, "cluster DNS");
                    }
                })
            });
            tokio::spawn(async move {
                let _reflectors = AbortOnDrop(s_task);
                let _reflectors2 = AbortOnDrop(e_task);
                let _dns = dns.map(AbortOnDrop);
                crate::services::run(services, endpoints, node, bridge, masquerade_from).await
            })
        }
    };
    let _proxy = AbortOnDrop(proxy);
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

    cfg.backoff_base = o.backoff_base;
    let mut kubelet = Kubelet::new(cfg);
    // No start begins once this future is dropped (see `Gate`).
    let gate = Gate::default();
    let _close = CloseOnDrop(gate.clone());
    let mut desired: HashMap<String, v1::Pod> = HashMap::new();
    let mut listed = false;
    // Unbounded, and safe: one message per probe run, and a probe is not
    // started again while its last run is in flight (the tracker's
    // `in_flight`), so at most (containers x 3 kinds) messages can wait.
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
    let mut writing: std::collections::HashSet<String> = Default::default();
    let mut queued: HashMap<String, v1::Pod> = HashMap::new();
    let mut confirming: HashMap<String, Instant> = HashMap::new();
    // The ConfigMaps and Secrets the pods use, read by a task of their own.
    let (config_wanted, wanted_rx) = tokio::sync::watch::channel(Default::default());
    let (snapshot_tx, mut config_snapshot) = tokio::sync::watch::channel(Default::default());
    let _config_cache = AbortOnDrop(tokio::spawn(crate::config::run_cache(
        client.clone(),
        wanted_rx,
        snapshot_tx,
    )));
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
            // A ConfigMap or Secret a pod uses was read, or changed.
            Ok(()) = config_snapshot.changed() => {
                if listed {
                    tick.reset_immediately();
                }
            }
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
                if !listed {
                    // Nothing is decided before the first list.
                    continue;
                }
                let began = Instant::now();
                // Oldest first: starts beyond one sync's share go to the
                // newest pods.
                let mut pods: Vec<v1::Pod> = desired.values().cloned().collect();
                pods.sort_by(|a, b| {
                    (&a.meta().creation_timestamp, &a.meta().name)
                        .cmp(&(&b.meta().creation_timestamp, &b.meta().name))
                });
                let check = kubelet.addresses_to_check(&pods);
                let rt = runtime.clone();
                let wanted = crate::config::wanted(&pods);
                if *config_wanted.borrow() != wanted {
                    config_wanted.send_replace(wanted);
                }
                let mut observed = match tokio::task::spawn_blocking(move || observe(&*rt, &check)).await {
                    Ok(observed) => observed,
                    Err(e) => {
                        tracing::error!(error = %e, "list the runtime");
                        continue;
                    }
                };
                observed.config = config_snapshot.borrow_and_update().clone();
                let now = Now { instant: Instant::now(), wall: SystemTime::now() };
                let mut res = kubelet.sync(Some(&pods), &observed, now);
                let resync = res.resync();
                let calls = std::mem::take(&mut res.runtime);
                if !calls.is_empty() {
                    let (rt, gate) = (runtime.clone(), gate.clone());
                    match tokio::task::spawn_blocking(move || execute(&*rt, calls, &gate)).await {
                        Ok((results, failed_writes)) => {
                            kubelet.started(&results, now.instant);
                            for (uid, volume) in failed_writes {
                                kubelet.volume_write_failed(&uid, &volume);
                            }
                        }
                        Err(e) => tracing::error!(error = %e, "make the sync's runtime calls"),
                    }
                }
                let took = began.elapsed();
                if took > Duration::from_millis(SLOW_SYNC_MS) {
                    tracing::info!(pods = pods.len(), took_ms = took.as_millis() as u64, "slow sync");
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
                confirming.retain(|_, at| now.duration_since(*at) < Duration::from_millis(CONFIRM_RETRY_MS));
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
                // The pods started are reported by the next sync, and starts
                // may be left over: at once.
                if resync {
                    tick.reset_immediately();
                }
                for mut r in res.probes {
                    if let Some(prefix) = runtime.exec_prefix(&r.container_id) {
                        r.target.exec_prefix = prefix;
                    }
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

/// What the node shows (blocking: run on tokio's blocking pool): the
/// runtime's listing, and which of `check` something else listens on.
fn observe(runtime: &dyn Runtime, check: &[SocketAddrV4]) -> Observed {
    Observed {
        containers: runtime.list(),
        listening: check.iter().copied().filter(|a| in_use(*a)).collect(),
        // The caller adds the snapshot of the ConfigMaps and Secrets.
        config: Default::default(),
    }
}

/// Whether something listens on `addr` (binding it fails with "in use";
/// any other error, e.g. an address this agent may not bind, is not a
/// listener).
fn in_use(addr: SocketAddrV4) -> bool {
    matches!(
        std::net::TcpListener::bind(addr),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse
    )
}

/// Starts run this many at a time: each is a process spawn plus a few files
/// (its directory, log and record), so a burst of new pods does not wait
/// for them one by one, and 4 leaves a 2-core node room for the rest.
const PARALLEL_STARTS: usize = 4;

/// Make a plan's runtime calls (blocking: run on tokio's blocking pool):
/// stops, kills, removals, pod removals, then the starts, up to
/// [`PARALLEL_STARTS`] at once. How each start went (a start skipped because
/// the agent is stopping fails with [`StartError::Io`]).
#[tracing::instrument(skip_all, fields(
    starts = calls.starts.len(),
    stops = calls.stops.len(),
    kills = calls.kills.len(),
))]
/// Make a plan's runtime calls in order; how the starts went, and the
/// volumes whose files could not be written `(pod uid, volume)`.
fn execute(
    runtime: &dyn Runtime,
    calls: RuntimeCalls,
    gate: &Gate,
) -> (Vec<Started>, Vec<(String, String)>) {
    for s in &calls.stops {
        let _pod = tracing::info_span!("sync_pod", pod = %s.pod).entered();
        tracing::info!(container = %s.container_id, reason = %s.reason, "stop the container");
        runtime.stop(&s.container_id);
    }
    for id in &calls.kills {
        runtime.kill(id);
    }
    for id in &calls.removals {
        runtime.remove(id);
    }
    for uid in &calls.pod_removals {
        runtime.remove_pod(uid);
    }
    let mut failed_writes = Vec::new();
    for w in &calls.volume_writes {
        if let Err(e) = runtime.write_volume(&w.pod_uid, &w.volume, &w.files) {
            tracing::warn!(pod_uid = %w.pod_uid, volume = %w.volume, error = %e, "cannot write a volume");
            failed_writes.push((w.pod_uid.clone(), w.volume.clone()));
        }
    }
    let results = start_all(runtime, calls.starts, gate);
    for (spec, r) in &results {
        if let Err(e) = r {
            let pod = format!("{}/{}", spec.pod_namespace, spec.pod_name);
            let _pod = tracing::info_span!("sync_pod", pod = %pod).entered();
            tracing::warn!(container = %spec.name, error = %e, "cannot start container");
        }
    }
    (results, failed_writes)
}

/// Start every container, up to [`PARALLEL_STARTS`] at once (scoped
/// threads, inside the blocking task); in no particular order.
fn start_all(runtime: &dyn Runtime, specs: Vec<ContainerSpec>, gate: &Gate) -> Vec<Started> {
    let start = |s: ContainerSpec| {
        let r = gate.start(runtime, &s);
        (s, r)
    };
    if specs.len() <= 1 {
        return specs.into_iter().map(start).collect();
    }
    let mut lanes: Vec<Vec<ContainerSpec>> = (0..PARALLEL_STARTS).map(|_| Vec::new()).collect();
    for (i, s) in specs.into_iter().enumerate() {
        lanes[i % PARALLEL_STARTS].push(s);
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = lanes
            .into_iter()
            .filter(|l| !l.is_empty())
            .map(|lane| scope.spawn(move || lane.into_iter().map(start).collect::<Vec<_>>()))
            .collect();
        // A lane that panicked loses its results: those containers are
        // listed (or not) by the next sync, which decides again.
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

/// Whether the agent still runs, for the starts on the blocking pool: a
/// blocking task outlives the `run` future that spawned it, and its caller
/// may stop every container of the node as soon as `run` is dropped
/// (`--stop-pods-on-exit`). So a start holds a read lock while it runs, a
/// start that finds the gate closed is skipped, and [`CloseOnDrop`] takes
/// the write lock: dropping `run` waits for the starts under way (a few
/// milliseconds each) and no start begins after.
#[derive(Clone, Debug)]
struct Gate(Arc<RwLock<bool>>);

impl Default for Gate {
    fn default() -> Gate {
        Gate(Arc::new(RwLock::new(true)))
    }
}

impl Gate {
    fn start(
        &self,
        runtime: &dyn Runtime,
        spec: &ContainerSpec,
    ) -> Result<crate::runtime::Container, StartError> {
        // A read guard is never poisoned by a panicking reader; a poisoned
        // lock still says whether the gate is open.
        let open = self.0.read().unwrap_or_else(|e| e.into_inner());
        if !*open {
            return Err(StartError::Io("the agent is stopping".into()));
        }
        runtime.start(spec)
    }

    fn close(&self) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = false;
    }
}

/// Closes its [`Gate`] when dropped.
struct CloseOnDrop(Gate);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// The cluster CIDR when none is given (Kubernetes' flannel default).
pub const DEFAULT_CLUSTER_CIDR: Cidr = Cidr {
    net: Ipv4Addr::new(10, 244, 0, 0),
    len: 16,
};

/// The service CIDR when none is given (kube-apiserver's usual one).
pub const DEFAULT_SERVICE_CIDR: Cidr = Cidr {
    net: Ipv4Addr::new(10, 96, 0, 0),
    len: 16,
};

/// The node's pod CIDR, once the node IPAM controller has given one.
/// Image garbage collection, every `gc.period` (the first a period after
/// start).
async fn collect_images(runc: Arc<RuncRuntime>, gc: ImageGc) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + gc.period, gc.period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let runc = runc.clone();
        match tokio::task::spawn_blocking(move || runc.collect_images(gc.high, gc.low)).await {
            Ok(Ok(removed)) if !removed.is_empty() => {
                tracing::info!(images = ?removed, "image garbage collection removed unused images");
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "image garbage collection"),
            Err(e) => tracing::warn!(error = %e, "image garbage collection task"),
        }
    }
}

async fn wait_for_pod_cidr(client: &Client, node: &str) -> anyhow::Result<Cidr> {
    let api: Api<v1::Node> = Api::all(client.clone());
    let mut said = false;
    loop {
        match api.get(node).await {
            Ok(n) => {
                let cidr = n.spec.map(|s| s.pod_cidr).unwrap_or_default();
                if !cidr.is_empty() {
                    return Cidr::parse(&cidr)
                        .map_err(|e| anyhow::anyhow!("node {node}: spec.podCIDR: {e}"));
                }
            }
            Err(e) => tracing::debug!(error = %e, "read the node"),
        }
        if !said {
            tracing::info!(
                node,
                "waiting for the controller manager to give the node a pod CIDR"
            );
            said = true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The pause program: the small `keelson-builtin` beside keelson when it
/// is there, else `keelson builtin pause`.
fn pause_command(exe: &std::path::Path) -> Vec<String> {
    let small = exe.with_file_name(crate::process::SMALL_BUILTIN_EXE);
    if small.is_file() {
        vec![small.to_string_lossy().into_owned(), "pause".into()]
    } else {
        vec![
            exe.to_string_lossy().into_owned(),
            "builtin".into(),
            "pause".into(),
        ]
    }
}

/// Stop every container recorded under an agent's data dir: SIGTERM, then
/// SIGKILL for those still running after `grace` (for an agent told to
/// leave nothing behind when it exits). With the runc runtime the pods'
/// sandboxes, the node's bridge and its rules go too. Blocking (inside a
/// tokio runtime); how many were running.
pub fn stop_all_containers(
    data_dir: &std::path::Path,
    grace: Duration,
    kind: RuntimeKind,
    node: &str,
) -> anyhow::Result<usize> {
    let exe =
        std::env::current_exe().map_err(|e| anyhow::anyhow!("find the keelson binary: {e}"))?;
    if kind == RuntimeKind::Runc {
        let runtime = RuncRuntime::new(RuncOptions {
            data_dir: data_dir.to_path_buf(),
            node_name: node.to_string(),
            network: None,
            pull: PullOptions::default(),
            pause: pause_command(&exe),
            runc: crate::runc::available().unwrap_or_else(|_| PathBuf::from("runc")),
        })
        .map_err(|e| anyhow::anyhow!("runc runtime: {e}"))?;
        let n = stop_then_kill(&runtime, grace);
        runtime.teardown();
        crate::services::remove(&Network::bridge_name(node));
        Network::teardown_node(node);
        return Ok(n);
    }
    let runtime = ProcessRuntime::new(data_dir.to_path_buf(), exe)
        .map_err(|e| anyhow::anyhow!("runtime: {e}"))?;
    Ok(stop_then_kill(&runtime, grace))
}

fn stop_then_kill(runtime: &dyn Runtime, grace: Duration) -> usize {
    let running = |rt: &dyn Runtime| -> Vec<String> {
        rt.list()
            .into_iter()
            .filter(|c| matches!(c.state, crate::runtime::State::Running { .. }))
            .map(|c| c.id)
            .collect()
    };
    let ids = running(runtime);
    for id in &ids {
        runtime.stop(id);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && !running(runtime).is_empty() {
        std::thread::sleep(Duration::from_millis(50));
    }
    for id in running(runtime) {
        tracing::warn!(container = %id, "did not stop within {grace:?}: SIGKILL");
        runtime.kill(&id);
    }
    ids.len()
}

/// A deletion confirmation is sent again after this long without the pod
/// going away (a confirmation lost with a replica, or one that raced a
/// write to the pod).
const CONFIRM_RETRY_MS: u64 = 2_000;

/// A sync round (list, decide, runtime calls) slower than this is logged:
/// twice the default sync period, long enough to mean a busy machine or a
/// slow runtime.
const SLOW_SYNC_MS: u64 = 200;

struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubelet::Stop;
    use crate::runtime::{Container, State};
    use std::sync::Mutex;

    /// A runtime that records its calls; it cannot run the image "bad".
    #[derive(Default)]
    struct Recorder {
        calls: Mutex<Vec<String>>,
    }

    impl Recorder {
        fn record(&self, call: String) {
            self.calls.lock().unwrap().push(call);
        }
        fn calls(&self) -> Vec<String> {
            std::mem::take(&mut *self.calls.lock().unwrap())
        }
    }

    impl Runtime for Recorder {
        fn start(&self, spec: &ContainerSpec) -> Result<Container, StartError> {
            let id = format!("{}-{}-{}", spec.pod_uid, spec.name, spec.attempt);
            self.record(format!("start {id}"));
            if spec.image == "bad" {
                return Err(StartError::ImageNotSupported("bad".into()));
            }
            Ok(Container {
                id,
                pod_uid: spec.pod_uid.clone(),
                name: spec.name.clone(),
                attempt: spec.attempt,
                image: spec.image.clone(),
                image_id: String::new(),
                state: State::Running {
                    pid: 1,
                    started_at: SystemTime::UNIX_EPOCH,
                },
            })
        }
        fn stop(&self, id: &str) {
            self.record(format!("stop {id}"));
        }
        fn kill(&self, id: &str) {
            self.record(format!("kill {id}"));
        }
        fn list(&self) -> Vec<Container> {
            Vec::new()
        }
        fn remove(&self, id: &str) {
            self.record(format!("remove {id}"));
        }
        fn remove_pod(&self, pod_uid: &str) {
            self.record(format!("remove_pod {pod_uid}"));
        }
        fn log_paths(&self, _: &str, _: &str, _: u32) -> (PathBuf, PathBuf) {
            (PathBuf::new(), PathBuf::new())
        }
        fn limits_supported(&self) -> Result<(), String> {
            Ok(())
        }
        fn write_volume(
            &self,
            pod_uid: &str,
            volume: &str,
            _: &[crate::volume_files::ProjectedFile],
        ) -> Result<(), String> {
            self.record(format!("write_volume {pod_uid}/{volume}"));
            Ok(())
        }
    }

    fn spec(pod_uid: &str, image: &str) -> ContainerSpec {
        ContainerSpec {
            pod_uid: pod_uid.into(),
            pod_namespace: "default".into(),
            pod_name: format!("p-{pod_uid}"),
            name: "main".into(),
            attempt: 0,
            image: image.into(),
            command: Vec::new(),
            args: Vec::new(),
            env: BTreeMap::new(),
            working_dir: String::new(),
            memory_limit_bytes: None,
            cpu_limit_millis: None,
            cpu_request_millis: None,
            pod_ip: String::new(),
            hostname: String::new(),
            image_pull_policy: String::new(),
            mounts: Vec::new(),
            dns_policy: String::new(),
            subdomain: String::new(),
        }
    }

    fn calls(starts: Vec<ContainerSpec>) -> RuntimeCalls {
        RuntimeCalls {
            stops: vec![Stop {
                container_id: "a-main-0".into(),
                pod: "default/p-a".into(),
                reason: "the pod is being deleted".into(),
            }],
            kills: vec!["b-main-0".into()],
            removals: vec!["c-main-0".into()],
            pod_removals: vec!["d".into()],
            volume_writes: vec![crate::kubelet::VolumeWrite {
                pod_uid: "e0".into(),
                volume: "cfg".into(),
                files: Vec::new(),
            }],
            starts,
        }
    }

    #[test]
    fn a_plan_runs_in_order_with_the_starts_last() {
        let rt = Recorder::default();
        let mut starts: Vec<ContainerSpec> =
            (0..6).map(|i| spec(&format!("e{i}"), "img")).collect();
        starts.push(spec("f", "bad"));
        let (results, failed_writes) = execute(&rt, calls(starts), &Gate::default());
        assert!(failed_writes.is_empty());
        let log = rt.calls();
        assert_eq!(
            log[..5],
            [
                "stop a-main-0",
                "kill b-main-0",
                "remove c-main-0",
                "remove_pod d",
                "write_volume e0/cfg"
            ]
        );
        // Started in lanes: in any order, each once.
        let mut started = log[5..].to_vec();
        started.sort();
        assert_eq!(
            started,
            [
                "start e0-main-0",
                "start e1-main-0",
                "start e2-main-0",
                "start e3-main-0",
                "start e4-main-0",
                "start e5-main-0",
                "start f-main-0"
            ]
        );
        let mut outcomes: Vec<(String, bool)> = results
            .iter()
            .map(|(s, r)| (s.pod_uid.clone(), r.is_ok()))
            .collect();
        outcomes.sort();
        let mut want: Vec<(String, bool)> = (0..6).map(|i| (format!("e{i}"), true)).collect();
        want.push(("f".into(), false));
        assert_eq!(outcomes, want);
    }

    #[test]
    fn no_start_begins_once_the_agent_is_dropped() {
        let rt = Recorder::default();
        let gate = Gate::default();
        drop(CloseOnDrop(gate.clone()));
        let (results, _) = execute(&rt, calls(vec![spec("e", "img"), spec("f", "img")]), &gate);
        // Stops, kills, removals and volume writes still run; no start.
        assert_eq!(
            rt.calls(),
            [
                "stop a-main-0",
                "kill b-main-0",
                "remove c-main-0",
                "remove_pod d",
                "write_volume e0/cfg"
            ]
        );
        assert!(results
            .iter()
            .all(|(_, r)| matches!(r, Err(StartError::Io(_)))));
    }

    #[test]
    fn observe_finds_what_listens_on_the_addresses_to_check() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let Ok(SocketAddr::V4(taken)) = held.local_addr() else {
            panic!("an IPv4 address");
        };
        let free = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let Ok(SocketAddr::V4(a)) = l.local_addr() else {
                panic!("an IPv4 address");
            };
            a
        };
        let observed = observe(&Recorder::default(), &[taken, free]);
        assert_eq!(observed.listening, [taken].into_iter().collect());
    }
}
