//! Simulated nodes (as kubemark and kwok do): N nodes in one process that
//! register, heartbeat and report the pods bound to them as Running and
//! Ready, without starting any process. For scale tests and benchmarks of
//! the control plane.
//!
//! - **Registration**: each node `<prefix>-<i>` is created (or its status
//!   refreshed) with the given capacity, `Ready=True`, and an address.
//! - **Heartbeats**: each node holds a store lease (TTL
//!   [`SimOptions::heartbeat_ttl_secs`]) with its Lease object
//!   `kube-node-lease/<node>` attached, renewed over one keep-alive stream
//!   for all nodes every [`SimOptions::heartbeat_every`]. When this process
//!   stops, the leases expire and the node lifecycle controller sees the
//!   nodes go silent. A lease found expired is granted again.
//! - **Pods** (when [`SimOptions::report_pods`]): a pod bound to one of the
//!   nodes is reported `Running` and `Ready` (podIP = the node's address);
//!   a pod being deleted is confirmed at once (grace 0).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use keelson_model::pod::is_ready;
use keelson_model::time::{format_rfc3339, parse_rfc3339};
use keelson_proto::v1;
use keelson_sdk::leases::{self, KeepAlive};
use keelson_sdk::watcher::Event;
use keelson_sdk::{watcher, Api, Client, DeleteParams, Error, ListParams, Resource};
use tokio::sync::Semaphore;

/// Namespace of the nodes' heartbeat Lease objects.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";
/// Writes in flight at once (registration, leases, pod status).
const WRITES_IN_FLIGHT: usize = 64;
/// How long a pod report is retried while no replica takes it.
const REPORT_RETRY_FOR: Duration = Duration::from_secs(60);

#[derive(Clone, Debug)]
pub struct SimOptions {
    /// Nodes are named `<prefix>-<i>`, i from 0.
    pub prefix: String,
    pub count: usize,
    pub cpu: String,
    pub memory: String,
    pub max_pods: String,
    pub labels: BTreeMap<String, String>,
    /// Node i's address: this plus i.
    pub first_address: Ipv4Addr,
    pub heartbeat_ttl_secs: i64,
    pub heartbeat_every: Duration,
    /// Report bound pods Running and Ready, and confirm deletions.
    pub report_pods: bool,
    /// Where to record heartbeat round trips (benchmarks).
    pub rtt: Option<RttSink>,
}

impl Default for SimOptions {
    fn default() -> SimOptions {
        SimOptions {
            prefix: "sim".into(),
            count: 1,
            cpu: "32".into(),
            memory: "128Gi".into(),
            max_pods: "110".into(),
            labels: BTreeMap::new(),
            first_address: Ipv4Addr::new(127, 0, 100, 1),
            heartbeat_ttl_secs: 10,
            heartbeat_every: Duration::from_secs(1),
            report_pods: true,
            rtt: None,
        }
    }
}

fn address(opts: &SimOptions, i: usize) -> String {
    let base = u32::from(opts.first_address);
    Ipv4Addr::from(base.wrapping_add(i as u32)).to_string()
}

/// The Node object of simulated node `i`.
pub fn node_object(opts: &SimOptions, i: usize) -> v1::Node {
    let name = format!("{}-{i}", opts.prefix);
    let mut labels = opts.labels.clone();
    labels.insert("kubernetes.io/hostname".into(), name.clone());
    labels.insert("keelson.dev/simulated".into(), "true".into());
    let resources: BTreeMap<String, String> = [
        ("cpu", opts.cpu.as_str()),
        ("memory", opts.memory.as_str()),
        ("pods", opts.max_pods.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let t = format_rfc3339(SystemTime::now());
    v1::Node {
        api_version: "v1".into(),
        kind: "Node".into(),
        metadata: Some(v1::ObjectMeta {
            name,
            labels,
            ..Default::default()
        }),
        // Its pods report the node's own address: that is its pod range
        // (so the node IPAM controller leaves the cluster CIDR to real
        // nodes).
        spec: Some(v1::NodeSpec {
            pod_cidr: format!("{}/32", address(opts, i)),
            ..Default::default()
        }),
        status: Some(v1::NodeStatus {
            capacity: resources.clone(),
            allocatable: resources,
            conditions: vec![v1::NodeCondition {
                r#type: "Ready".into(),
                status: "True".into(),
                last_heartbeat_time: t.clone(),
                last_transition_time: t,
                reason: "KubeletReady".into(),
                message: "simulated node is ready".into(),
            }],
            addresses: vec![v1::NodeAddress {
                r#type: "InternalIP".into(),
                address: address(opts, i),
            }],
            node_info: Some(v1::NodeSystemInfo {
                operating_system: "linux".into(),
                architecture: std::env::consts::ARCH.into(),
                kubelet_version: format!("keelson-sim/{}", env!("CARGO_PKG_VERSION")),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

/// Create the node, or bring an existing one's status back to Ready;
/// retried while the node changes under it or no replica answers.
pub(crate) async fn register(client: &Client, node: v1::Node) -> keelson_sdk::Result<()> {
    let api: Api<v1::Node> = Api::all(client.clone());
    let mut last = None;
    for attempt in 0..10u64 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
        }
        let r = match api.create(&node).await {
            Ok(_) => return Ok(()),
            Err(Error::AlreadyExists(_)) => match api.get(&node.meta().name).await {
                Ok(mut cur) => {
                    cur.status = node.status.clone();
                    api.update_status(&cur).await.map(drop)
                }
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        match r {
            Ok(()) => return Ok(()),
            Err(e @ (Error::Conflict(_) | Error::Unavailable(_) | Error::NotFound(_))) => {
                last = Some(e)
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| Error::Other("registration failed".into())))
}

/// Take a fresh heartbeat lease for `node` and attach its Lease object.
pub(crate) async fn take_lease(client: &Client, node: &str, ttl: i64) -> keelson_sdk::Result<i64> {
    let id = leases::grant(client, ttl).await?;
    let api: Api<v1::Lease> = Api::namespaced(client.clone(), NODE_LEASE_NAMESPACE);
    let obj = v1::Lease {
        api_version: "coordination.k8s.io/v1".into(),
        kind: "Lease".into(),
        metadata: Some(v1::ObjectMeta {
            name: node.to_string(),
            namespace: NODE_LEASE_NAMESPACE.into(),
            ..Default::default()
        }),
        spec: Some(v1::LeaseSpec {
            holder_identity: node.to_string(),
            lease_duration_seconds: i32::try_from(ttl).ok(),
            renew_time: format_rfc3339(std::time::SystemTime::now()),
            ..Default::default()
        }),
    };
    for attempt in 0..10u64 {
        match api.create_with_lease(&obj, id).await {
            Ok(_) => return Ok(id),
            Err(Error::AlreadyExists(_)) => {
                // A previous run's object (its lease still alive): replace.
                let _ = api.delete(node, &DeleteParams::default()).await;
            }
            Err(Error::Unavailable(_)) => {
                tokio::time::sleep(Duration::from_millis(100 * (attempt + 1))).await;
            }
            Err(e) => return Err(e),
        }
    }
    Err(Error::Other(format!(
        "could not take the heartbeat lease of {node}"
    )))
}

/// Run the simulated nodes until the future is dropped.
pub async fn run(client: Client, opts: SimOptions) -> keelson_sdk::Result<()> {
    let sem = Arc::new(Semaphore::new(WRITES_IN_FLIGHT));
    let names: Vec<String> = (0..opts.count)
        .map(|i| format!("{}-{i}", opts.prefix))
        .collect();
    // Register every node.
    let results = futures::stream::iter((0..opts.count).map(|i| {
        let client = client.clone();
        let node = node_object(&opts, i);
        async move { register(&client, node).await }
    }))
    .buffer_unordered(WRITES_IN_FLIGHT)
    .collect::<Vec<_>>()
    .await;
    if let Some(Err(e)) = results.into_iter().find(|r| r.is_err()) {
        return Err(e);
    }
    // Heartbeat leases.
    let ttl = opts.heartbeat_ttl_secs.max(1);
    let taken = futures::stream::iter(names.clone().into_iter().map(|n| {
        let client = client.clone();
        async move { take_lease(&client, &n, ttl).await.map(|id| (id, n)) }
    }))
    .buffer_unordered(WRITES_IN_FLIGHT)
    .collect::<Vec<_>>()
    .await;
    let mut by_id: HashMap<i64, String> = HashMap::new();
    for t in taken {
        let (id, n) = t?;
        by_id.insert(id, n);
    }
    tracing::info!(nodes = opts.count, "simulated nodes registered");
    let pods = if opts.report_pods {
        Some(tokio::spawn(report_pods(
            client.clone(),
            names.iter().cloned().collect(),
            opts.clone(),
            sem,
        )))
    } else {
        None
    };
    let r = heartbeat(&client, by_id, ttl, opts.heartbeat_every, opts.rtt.clone()).await;
    if let Some(p) = pods {
        p.abort();
    }
    r
}

/// Heartbeat round trips (send of a renewal to its reply), in microseconds.
pub type RttSink = Arc<std::sync::Mutex<Vec<u32>>>;

/// Renew every lease each period over one stream (sent from a task of its
/// own, so replies are read while a burst goes out); re-take expired ones.
pub(crate) async fn heartbeat(
    client: &Client,
    by_id: HashMap<i64, String>,
    ttl: i64,
    every: Duration,
    rtt: Option<RttSink>,
) -> keelson_sdk::Result<()> {
    // Unbounded, and safe: one message per expired lease taken again, and a
    // node's lease is re-taken by one task at a time (its id leaves `ids`
    // first), so at most one message per simulated node can wait.
    let (retaken_tx, mut retaken) = tokio::sync::mpsc::unbounded_channel::<(i64, String)>();
    let ids: Arc<std::sync::Mutex<HashMap<i64, String>>> = Arc::new(std::sync::Mutex::new(by_id));
    let sent: Arc<std::sync::Mutex<HashMap<i64, std::time::Instant>>> = Arc::default();
    loop {
        let mut ka = match KeepAlive::open(client).await {
            Ok(k) => k,
            Err(e) => {
                tracing::debug!(error = %e, "keep-alive stream");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let sender = {
            let (renewer, ids, sent) = (ka.renewer(), ids.clone(), sent.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                loop {
                    tick.tick().await;
                    let batch: Vec<i64> = ids
                        .lock()
                        .map(|m| m.keys().copied().collect())
                        .unwrap_or_default();
                    for id in batch {
                        if let Ok(mut s) = sent.lock() {
                            s.insert(id, std::time::Instant::now());
                        }
                        if renewer.renew(id).await.is_err() {
                            return;
                        }
                    }
                }
            })
        };
        loop {
            tokio::select! {
                Some((id, node)) = retaken.recv() => {
                    if let Ok(mut m) = ids.lock() {
                        m.insert(id, node);
                    }
                }
                reply = ka.next() => match reply {
                    Some(Ok((id, remaining))) => {
                        let at = sent.lock().ok().and_then(|mut s| s.remove(&id));
                        if let (Some(at), Some(sink)) = (at, rtt.as_ref()) {
                            let us = u32::try_from(at.elapsed().as_micros()).unwrap_or(u32::MAX);
                            if let Ok(mut v) = sink.lock() {
                                v.push(us);
                            }
                        }
                        if remaining > 0 {
                            continue;
                        }
                        // Expired: taken again in the background, so the
                        // other nodes' renewals go on meanwhile.
                        let node = ids.lock().ok().and_then(|mut m| m.remove(&id));
                        if let Some(node) = node {
                            tracing::warn!(node = %node, "heartbeat lease expired; taking a new one");
                            let (client, tx) = (client.clone(), retaken_tx.clone());
                            tokio::spawn(async move {
                                loop {
                                    match take_lease(&client, &node, ttl).await {
                                        Ok(new_id) => {
                                            let _ = tx.send((new_id, node));
                                            return;
                                        }
                                        Err(e) => {
                                            tracing::warn!(node = %node, error = %e, "heartbeat lease");
                                            tokio::time::sleep(Duration::from_millis(500)).await;
                                        }
                                    }
                                }
                            });
                        }
                    }
                    Some(Err(_)) | None => break,
                }
            }
        }
        sender.abort();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn is_running_and_ready(p: &v1::Pod) -> bool {
    p.status.as_ref().is_some_and(|s| s.phase == "Running") && is_ready(p)
}

/// A simulated pod with this annotation (a duration: `2s`, `500ms`) ends
/// that long after it started, as if its containers exited; with
/// [`EXIT_CODE`] non-zero it fails. Without it a pod runs until deleted.
/// Jobs' pods use it to finish on simulated nodes.
pub const EXIT_AFTER: &str = "sim.keelson.dev/exit-after";
/// The simulated containers' exit code (0 when absent).
pub const EXIT_CODE: &str = "sim.keelson.dev/exit-code";

fn finished(p: &v1::Pod) -> bool {
    p.status
        .as_ref()
        .is_some_and(|s| s.phase == "Succeeded" || s.phase == "Failed")
}

/// How long after its start the pod ends, if it does.
fn exit_after(p: &v1::Pod) -> Option<Duration> {
    let text = p.meta().annotations.get(EXIT_AFTER)?;
    humantime::parse_duration(text.trim()).ok()
}

/// Report pods bound to our nodes Running and Ready (and, with
/// [`EXIT_AFTER`], finished when their time comes); confirm deletions.
async fn report_pods(
    client: Client,
    nodes: HashSet<String>,
    opts: SimOptions,
    sem: Arc<Semaphore>,
) {
    let index: HashMap<String, usize> = (0..opts.count)
        .map(|i| (format!("{}-{i}", opts.prefix), i))
        .collect();
    // Pods (uid) whose end is scheduled.
    let mut ending: HashSet<String> = HashSet::new();
    let mut events = Box::pin(watcher(
        Api::<v1::Pod>::all(client.clone()),
        ListParams::default(),
    ));
    while let Some(ev) = events.next().await {
        let pods = match ev {
            Ok(Event::Applied(p)) => vec![p],
            Ok(Event::Restarted(ps)) => ps,
            Ok(Event::Deleted(p)) => {
                ending.remove(&p.meta().uid);
                continue;
            }
            Err(e) => {
                tracing::debug!(error = %e, "pod watch");
                continue;
            }
        };
        for p in pods {
            let node = p.spec.as_ref().map_or("", |s| s.node_name.as_str());
            let Some(&i) = index.get(node).filter(|_| nodes.contains(node)) else {
                continue;
            };
            let deleting = !p.meta().deletion_timestamp.is_empty();
            if !deleting && finished(&p) {
                continue;
            }
            let report = if deleting {
                Report::Delete
            } else if is_running_and_ready(&p) {
                let Some(after) = exit_after(&p) else {
                    continue;
                };
                if !ending.insert(p.meta().uid.clone()) {
                    continue;
                }
                let started = p
                    .status
                    .as_ref()
                    .and_then(|s| parse_rfc3339(&s.start_time))
                    .unwrap_or_else(SystemTime::now);
                let left = (started + after)
                    .duration_since(SystemTime::now())
                    .unwrap_or_default();
                Report::Exit(left)
            } else {
                Report::Running(address(&opts, i))
            };
            tracing::debug!(pod = %p.meta().name, node, rv = %p.meta().resource_version, deleting, "report pod");
            let Ok(permit) = sem.clone().acquire_owned().await else {
                return;
            };
            tokio::spawn(send_report(client.clone(), p, report, permit));
        }
    }
}

enum Report {
    Delete,
    Running(String),
    /// The containers exit after this long.
    Exit(Duration),
}

/// Send one pod report, again while no replica takes it (the pod may
/// change no more, so no event would bring it back); a conflict means a
/// newer version is on its way.
async fn send_report(
    client: Client,
    p: v1::Pod,
    report: Report,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let api: Api<v1::Pod> = Api::namespaced(client, &p.meta().namespace);
    let body = match &report {
        Report::Delete => None,
        Report::Running(ip) => Some(running(p.clone(), ip)),
        Report::Exit(left) => {
            // The permit bounds writes in flight, not waits.
            drop(permit);
            tokio::time::sleep(*left).await;
            Some(exited(p.clone()))
        }
    };
    let mut backoff = Duration::from_millis(200);
    let give_up = tokio::time::Instant::now() + REPORT_RETRY_FOR;
    loop {
        let r = match &body {
            None => {
                let dp = DeleteParams {
                    grace_period_seconds: Some(0),
                    precondition_uid: p.meta().uid.clone(),
                    ..Default::default()
                };
                api.delete(&p.meta().name, &dp).await.map(drop)
            }
            Some(b) => api.update_status(b).await.map(drop),
        };
        match r {
            Ok(()) | Err(Error::NotFound(_)) | Err(Error::Conflict(_)) => {
                tracing::debug!(pod = %p.meta().name, result = ?r.err(), "reported");
                return;
            }
            Err(e) if tokio::time::Instant::now() + backoff < give_up => {
                tracing::debug!(error = %e, "report pod; again");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            Err(e) => {
                tracing::warn!(pod = %p.meta().name, error = %e, "report pod: gave up");
                return;
            }
        }
    }
}

/// The pod once its containers exited with [`EXIT_CODE`]: Succeeded (0)
/// or Failed.
fn exited(mut p: v1::Pod) -> v1::Pod {
    let t = format_rfc3339(SystemTime::now());
    let code: i32 = p
        .meta()
        .annotations
        .get(EXIT_CODE)
        .and_then(|c| c.trim().parse().ok())
        .unwrap_or(0);
    let status = p.status.get_or_insert_with(Default::default);
    status.phase = if code == 0 { "Succeeded" } else { "Failed" }.into();
    for c in &mut status.conditions {
        if c.r#type == "Ready" || c.r#type == "ContainersReady" {
            c.status = "False".into();
            c.reason = "PodCompleted".into();
            c.last_transition_time = t.clone();
        }
    }
    for c in &mut status.container_statuses {
        let started_at = c
            .state
            .as_ref()
            .and_then(|s| s.running.as_ref())
            .map(|r| r.started_at.clone())
            .unwrap_or_default();
        c.ready = false;
        c.started = Some(false);
        c.state = Some(v1::ContainerState {
            terminated: Some(v1::ContainerStateTerminated {
                exit_code: code,
                reason: if code == 0 { "Completed" } else { "Error" }.into(),
                started_at,
                finished_at: t.clone(),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    p
}

/// The pod as a node reports it once its containers run and are ready.
fn running(mut p: v1::Pod, ip: &str) -> v1::Pod {
    let t = format_rfc3339(SystemTime::now());
    let containers: Vec<String> = p
        .spec
        .as_ref()
        .map(|s| s.containers.iter().map(|c| c.name.clone()).collect())
        .unwrap_or_default();
    let images: Vec<String> = p
        .spec
        .as_ref()
        .map(|s| s.containers.iter().map(|c| c.image.clone()).collect())
        .unwrap_or_default();
    let status = p.status.get_or_insert_with(Default::default);
    status.phase = "Running".into();
    status.host_ip = ip.to_string();
    status.pod_ip = ip.to_string();
    if status.start_time.is_empty() {
        status.start_time = t.clone();
    }
    let cond = |ty: &str| v1::PodCondition {
        r#type: ty.into(),
        status: "True".into(),
        last_transition_time: t.clone(),
        ..Default::default()
    };
    status.conditions = vec![
        cond("PodScheduled"),
        cond("Initialized"),
        cond("ContainersReady"),
        cond("Ready"),
    ];
    status.container_statuses = containers
        .into_iter()
        .zip(images)
        .map(|(name, image)| v1::ContainerStatus {
            name,
            image,
            ready: true,
            started: Some(true),
            state: Some(v1::ContainerState {
                running: Some(v1::ContainerStateRunning {
                    started_at: t.clone(),
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect();
    p
}
