//! The pod lifecycle, the kubelet's sync loop without its IO: given the pods
//! bound to this node (as the API says) and what the [`Runtime`] runs,
//! start, restart, stop and clean up containers, and compute each pod's
//! status. The agent's loop ([`crate::agent`]) feeds it pods and probe
//! results and writes the statuses it returns; tests drive it with a fake
//! runtime and a clock of their own.
//!
//! - **Start**: each container of a pod not being deleted is started when it
//!   has never run; an image the runtime cannot run leaves it waiting with
//!   the reason (the pod stays Pending), never an error of the agent.
//! - **Restart**: an exited container restarts per `restartPolicy` (Always,
//!   the default; OnFailure: non-zero exits; Never) after a back-off that
//!   doubles from [`Config::backoff_base`] to [`Config::backoff_max`]
//!   (waiting reason `CrashLoopBackOff`), reset once it ran for
//!   [`Config::backoff_reset`]. A failed liveness or startup probe stops it
//!   (then the policy applies, as in Kubernetes).
//! - **Stop**: SIGTERM, then SIGKILL once the grace period
//!   (`terminationGracePeriodSeconds`, or the deletion's) has passed.
//! - **Delete**: a pod with a deletionTimestamp has its containers stopped;
//!   once all have exited its files go and its deletion is confirmed. A pod
//!   that vanished from the API (force-deleted) is killed and cleaned up the
//!   same way, as are containers of pods this node does not know (after an
//!   agent restart), so no process is left behind.
//! - **Adoption**: containers the runtime reports as running when the agent
//!   starts (it re-adopts its processes) are taken as the pod's current
//!   containers; restart counts continue from the highest attempt.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use keelson_model::quantity;
use keelson_model::time::format_rfc3339;
use keelson_proto::v1;
use keelson_sdk::Resource;

use crate::probe::{self, ContainerProbes, Outcome, ProbeKind};
use crate::runtime::{Container, ContainerSpec, Runtime, StartError, State};

/// Tuning of the lifecycle.
#[derive(Clone, Debug)]
pub struct Config {
    pub node_name: String,
    /// The node's address (hostIP).
    pub address: String,
    /// Pod IPs are taken from here: `<prefix>.<i>.<j>` (j in 1..=254).
    pub pod_ip_prefix: [u8; 2],
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// A container that ran this long has its back-off reset.
    pub backoff_reset: Duration,
    /// Whether nothing else listens on (ip, port) for each port: a new
    /// pod never gets an address a stray process (another agent's orphan)
    /// holds. The default says yes; the agent binds to check.
    pub address_free: fn(&str, &[u16]) -> bool,
}

impl Config {
    pub fn new(node_name: &str, address: Ipv4Addr) -> Config {
        let o = address.octets();
        Config {
            node_name: node_name.to_string(),
            address: address.to_string(),
            // 127.0.0.11 -> pods in 127.11.0.0/16.
            pod_ip_prefix: [127, o[3]],
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            backoff_reset: Duration::from_secs(120),
            address_free: |_, _| true,
        }
    }
}

/// One container's bookkeeping between syncs.
#[derive(Debug, Default)]
struct Track {
    /// Restarts so far (the next start's attempt number).
    restarts: u32,
    /// Not before this may it start again.
    backoff_until: Option<Instant>,
    /// The current back-off (for doubling).
    backoff: Option<Duration>,
    /// Why it cannot start (reason, message), until it does.
    waiting: Option<(String, String)>,
    /// Its probes, from its current start.
    probes: Option<(String, ContainerProbes)>,
    /// The stop we asked for: when, and kill after.
    stopping: Option<(String, Instant)>,
    /// The last exited attempt, for lastState.
    last_terminated: Option<Container>,
}

#[derive(Debug)]
struct PodTrack {
    ip: String,
    containers: HashMap<String, Track>,
    start_time: SystemTime,
}

/// A probe the agent should run now.
#[derive(Clone, Debug)]
pub struct ProbeRequest {
    pub pod_uid: String,
    pub container: String,
    pub container_id: String,
    pub kind: ProbeKind,
    pub probe: v1::Probe,
    pub target: probe::Target,
}

/// What a sync asks the agent to do with the API.
#[derive(Debug, Default)]
pub struct SyncResult {
    /// Pods whose status changed: the pod with its new status.
    pub statuses: Vec<v1::Pod>,
    /// Pods whose containers are all gone after a deletion: confirm it.
    pub confirm_deletions: Vec<(String, String, String)>,
    pub probes: Vec<ProbeRequest>,
    /// Starts were left for the next sync (more than
    /// [`MAX_STARTS_PER_SYNC`] were due): sync again at once.
    pub more_starts: bool,
}

/// What of a status must match for a report to count as landed.
fn status_gist(s: &v1::PodStatus) -> (String, String, bool, Vec<(String, bool, i32)>) {
    let ready = s
        .conditions
        .iter()
        .any(|c| c.r#type == "Ready" && c.status == "True");
    let containers = s
        .container_statuses
        .iter()
        .map(|c| (c.name.clone(), c.ready, c.restart_count))
        .collect();
    (s.phase.clone(), s.pod_ip.clone(), ready, containers)
}

/// Addresses checked for a stray listener before a new pod gets one.
const ADDRESS_PROBES: usize = 64;

/// Containers started by one sync at most: the pods started are reported
/// when it ends, so a burst of new pods is started (and reported) in
/// batches rather than all at the end of one long sync.
pub const MAX_STARTS_PER_SYNC: usize = 8;

pub struct Kubelet {
    runtime: Arc<dyn Runtime>,
    cfg: Config,
    pods: HashMap<String, PodTrack>,
    /// Statuses last computed, to report only changes.
    reported: HashMap<String, v1::PodStatus>,
}

fn container_spec_env(
    pod: &v1::Pod,
    c: &v1::Container,
    ip: &str,
    node: &str,
) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    if let Some(first) = c.ports.first() {
        env.insert("PORT".into(), first.container_port.to_string());
    }
    for p in &c.ports {
        if !p.name.is_empty() {
            let n = p.name.to_ascii_uppercase().replace('-', "_");
            env.insert(format!("PORT_{n}"), p.container_port.to_string());
        }
    }
    env.insert("POD_IP".into(), ip.to_string());
    env.insert("HOST".into(), ip.to_string());
    env.insert("POD_NAME".into(), pod.meta().name.clone());
    env.insert("POD_NAMESPACE".into(), pod.meta().namespace.clone());
    env.insert("NODE_NAME".into(), node.to_string());
    for e in &c.env {
        env.insert(e.name.clone(), e.value.clone());
    }
    env
}

fn limit(c: &v1::Container, name: &str) -> Option<i64> {
    let q = c.resources.as_ref()?.limits.get(name)?;
    quantity::parse(name, q).ok()
}

fn restart_policy(pod: &v1::Pod) -> &str {
    match pod.spec.as_ref().map(|s| s.restart_policy.as_str()) {
        Some("OnFailure") => "OnFailure",
        Some("Never") => "Never",
        _ => "Always",
    }
}

/// Whether an exited container restarts under `policy`.
/// An unknown exit status (the container ended while the agent was down)
/// does not restart under OnFailure: re-running work that may have
/// succeeded is worse than reporting it.
pub fn restarts(policy: &str, exit_code: Option<i32>) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => exit_code.is_some_and(|c| c != 0),
        _ => true,
    }
}

/// The back-off after `previous` (None: the first).
pub fn next_backoff(previous: Option<Duration>, base: Duration, max: Duration) -> Duration {
    previous.map_or(base, |d| (d * 2).min(max)).max(base)
}

impl Kubelet {
    pub fn new(runtime: Arc<dyn Runtime>, cfg: Config) -> Kubelet {
        Kubelet {
            runtime,
            cfg,
            pods: HashMap::new(),
            reported: HashMap::new(),
        }
    }

    fn pod_ip(&mut self, pod: &v1::Pod) -> String {
        let [a, b] = self.cfg.pod_ip_prefix;
        let prefix = format!("{a}.{b}.");
        let used: HashSet<&str> = self.pods.values().map(|p| p.ip.as_str()).collect();
        // Keep the IP the pod already has (after an agent restart).
        if let Some(ip) = pod.status.as_ref().map(|s| s.pod_ip.as_str()) {
            if ip.starts_with(&prefix) && !used.contains(ip) {
                return ip.to_string();
            }
        }
        let ports: Vec<u16> = pod
            .spec
            .iter()
            .flat_map(|s| &s.containers)
            .flat_map(|c| &c.ports)
            .filter_map(|p| u16::try_from(p.container_port).ok())
            .collect();
        // The first free address; at most ADDRESS_PROBES of them are
        // checked for strays, after that the first unused one is taken.
        let mut probed = 0usize;
        let mut first_unused = None;
        for i in 0..=255u32 {
            for j in 1..=254u32 {
                let ip = format!("{prefix}{i}.{j}");
                if used.contains(ip.as_str()) {
                    continue;
                }
                if probed >= ADDRESS_PROBES {
                    return first_unused.unwrap_or(ip);
                }
                probed += 1;
                if (self.cfg.address_free)(&ip, &ports) {
                    return ip;
                }
                first_unused.get_or_insert(ip);
            }
        }
        first_unused.unwrap_or_else(|| self.cfg.address.clone())
    }

    /// One round: `desired` are the pods bound to this node (None before
    /// the first list: then nothing is cleaned up). Runs the runtime's
    /// operations and returns what to tell the API.
    pub fn sync(&mut self, desired: Option<&[v1::Pod]>, now: Instant) -> SyncResult {
        let mut out = SyncResult::default();
        let containers = self.runtime.list();
        let mut by_pod: HashMap<&str, Vec<&Container>> = HashMap::new();
        for c in &containers {
            by_pod.entry(c.pod_uid.as_str()).or_default().push(c);
        }
        let Some(desired) = desired else {
            return out;
        };
        let wanted: HashSet<&str> = desired.iter().map(|p| p.meta().uid.as_str()).collect();
        // Pods gone from the API, or never ours: stop, then clean up.
        let mut gone: HashSet<String> = self
            .pods
            .keys()
            .filter(|u| !wanted.contains(u.as_str()))
            .cloned()
            .collect();
        gone.extend(
            by_pod
                .keys()
                .filter(|u| !wanted.contains(*u))
                .map(|u| u.to_string()),
        );
        for uid in gone {
            let cs = by_pod.get(uid.as_str()).cloned().unwrap_or_default();
            let running: Vec<&&Container> = cs
                .iter()
                .filter(|c| matches!(c.state, State::Running { .. }))
                .collect();
            if running.is_empty() {
                self.runtime.remove_pod(&uid);
                self.pods.remove(&uid);
                self.reported.remove(&uid);
            } else {
                for c in running {
                    self.runtime.kill(&c.id);
                }
            }
        }
        // Pods already running here keep their addresses: reserve those
        // before any new pod gets one (after an agent restart).
        let [a, b] = self.cfg.pod_ip_prefix;
        let prefix = format!("{a}.{b}.");
        for pod in desired {
            let uid = &pod.meta().uid;
            let ip = pod.status.as_ref().map_or("", |s| s.pod_ip.as_str());
            if !self.pods.contains_key(uid)
                && ip.starts_with(&prefix)
                && !self.pods.values().any(|p| p.ip == ip)
            {
                let cs: Vec<Container> = by_pod
                    .get(uid.as_str())
                    .map(|v| v.iter().map(|c| (*c).clone()).collect())
                    .unwrap_or_default();
                let track = new_track(pod, &cs, ip.to_string());
                self.pods.insert(uid.clone(), track);
            }
        }
        let mut starts: Vec<ContainerSpec> = Vec::new();
        for pod in desired {
            let uid = pod.meta().uid.clone();
            let cs: Vec<Container> = by_pod
                .get(uid.as_str())
                .map(|v| v.iter().map(|c| (*c).clone()).collect())
                .unwrap_or_default();
            self.sync_pod(pod, &cs, now, &mut out, &mut starts);
        }
        // At most MAX_STARTS_PER_SYNC starts (in `desired`'s order: the
        // caller puts older pods first); pods left waiting are not reported
        // before their first start.
        let mut deferred: HashSet<String> = HashSet::new();
        if starts.len() > MAX_STARTS_PER_SYNC {
            for s in starts.drain(MAX_STARTS_PER_SYNC..) {
                deferred.insert(s.pod_uid);
            }
            out.more_starts = true;
        }
        // Starts run in parallel (each a process spawn), then every pod's
        // status is computed from what runs now.
        for (spec, r) in start_all(&*self.runtime, starts) {
            let Some(track) = self
                .pods
                .get_mut(&spec.pod_uid)
                .and_then(|p| p.containers.get_mut(&spec.name))
            else {
                continue;
            };
            started(track, &spec, r, now);
        }
        let confirming: HashSet<&str> = out
            .confirm_deletions
            .iter()
            .map(|(_, _, u)| u.as_str())
            .collect();
        // One look at the runtime for every status of this sync.
        let containers = self.runtime.list();
        let mut statuses = Vec::new();
        for pod in desired {
            let uid = &pod.meta().uid;
            if confirming.contains(uid.as_str()) || !self.pods.contains_key(uid) {
                continue;
            }
            if deferred.contains(uid.as_str()) && !self.reported.contains_key(uid) {
                continue;
            }
            let status = self.status(pod, &containers, now);
            if self.reported.get(uid) != Some(&status) {
                self.reported.insert(uid.clone(), status.clone());
                let mut p = pod.clone();
                p.status = Some(status);
                statuses.push(p);
            }
        }
        out.statuses = statuses;
        out
    }

    fn sync_pod(
        &mut self,
        pod: &v1::Pod,
        cs: &[Container],
        now: Instant,
        out: &mut SyncResult,
        starts: &mut Vec<ContainerSpec>,
    ) {
        let meta = pod.meta();
        let uid = meta.uid.clone();
        if !self.pods.contains_key(&uid) {
            let ip = self.pod_ip(pod);
            let track = new_track(pod, cs, ip);
            self.pods.insert(uid.clone(), track);
        }
        let deleting = !meta.deletion_timestamp.is_empty();
        let grace = Duration::from_secs(
            u64::try_from(
                meta.deletion_grace_period_seconds
                    .or_else(|| {
                        pod.spec
                            .as_ref()
                            .and_then(|s| s.termination_grace_period_seconds)
                    })
                    .unwrap_or(30),
            )
            .unwrap_or(0),
        );
        let policy = restart_policy(pod).to_string();
        let spec_containers: Vec<v1::Container> = pod
            .spec
            .as_ref()
            .map(|s| s.containers.clone())
            .unwrap_or_default();
        let node = self.cfg.node_name.clone();
        let runtime = self.runtime.clone();
        let cfg = self.cfg.clone();
        let Some(pt) = self.pods.get_mut(&uid) else {
            return;
        };
        let ip = pt.ip.clone();
        let mut any_running = false;
        for c in &spec_containers {
            let track = pt.containers.entry(c.name.clone()).or_default();
            // The container's current attempt: the newest for this name.
            let current = cs
                .iter()
                .filter(|x| x.name == c.name)
                .max_by_key(|x| x.attempt)
                .cloned();
            // Forget older exited attempts (keep the newest for lastState).
            for old in cs.iter().filter(|x| {
                x.name == c.name
                    && Some(x.attempt) != current.as_ref().map(|c| c.attempt)
                    && matches!(x.state, State::Exited { .. })
            }) {
                runtime.remove(&old.id);
            }
            match current.as_ref().map(|x| &x.state) {
                Some(State::Running { .. }) => {
                    any_running = true;
                    let cur = current.as_ref().map(|x| x.id.clone()).unwrap_or_default();
                    if deleting {
                        stop(&*runtime, track, &cur, now, grace);
                        continue;
                    }
                    // Probes of this start.
                    if track.probes.as_ref().is_none_or(|(id, _)| *id != cur) {
                        track.probes = Some((cur.clone(), ContainerProbes::new(c, now)));
                    }
                    let failed = track
                        .probes
                        .as_ref()
                        .and_then(|(_, p)| p.liveness_failed().or_else(|| p.startup_failed()));
                    if let Some(why) = failed {
                        tracing::info!(pod = %meta.name, container = %c.name, reason = %why, "probe failed; restarting the container");
                        let g = Duration::from_secs(
                            u64::try_from(
                                pod.spec
                                    .as_ref()
                                    .and_then(|s| s.termination_grace_period_seconds)
                                    .unwrap_or(30),
                            )
                            .unwrap_or(0),
                        );
                        stop(&*runtime, track, &cur, now, g);
                        continue;
                    }
                    if let Some((_, probes)) = track.probes.as_mut() {
                        for kind in probes.due(now) {
                            if let Some(p) = probes.probe(kind).cloned() {
                                probes.sent(kind, now);
                                out.probes.push(ProbeRequest {
                                    pod_uid: uid.clone(),
                                    container: c.name.clone(),
                                    container_id: cur.clone(),
                                    kind,
                                    probe: p,
                                    target: probe::Target {
                                        pod_ip: ip.clone(),
                                        ports: c
                                            .ports
                                            .iter()
                                            .map(|p| (p.name.clone(), p.container_port))
                                            .collect(),
                                        working_dir: Default::default(),
                                        env: container_spec_env(pod, c, &ip, &node),
                                    },
                                });
                            }
                        }
                    }
                    // A stop we asked for that the grace ran out on.
                    if let Some((id, kill_at)) = &track.stopping {
                        if *id == cur && now >= *kill_at {
                            runtime.kill(&cur);
                        }
                    }
                }
                Some(State::Exited {
                    exit_code,
                    started_at,
                    finished_at,
                    ..
                }) => {
                    track.stopping = None;
                    track.probes = None;
                    if let Some(cur) = current.clone() {
                        if track
                            .last_terminated
                            .as_ref()
                            .is_none_or(|l| l.attempt != cur.attempt)
                        {
                            // A new exit: schedule the restart's back-off.
                            let ran = finished_at.duration_since(*started_at).unwrap_or_default();
                            if ran >= cfg.backoff_reset {
                                track.backoff = None;
                            }
                            let d = next_backoff(track.backoff, cfg.backoff_base, cfg.backoff_max);
                            track.backoff = Some(d);
                            track.backoff_until = Some(now + d);
                            track.restarts = track.restarts.max(cur.attempt + 1);
                            track.last_terminated = Some(cur);
                        }
                    }
                    if deleting || !restarts(&policy, *exit_code) {
                        continue;
                    }
                    if track.backoff_until.is_some_and(|t| now < t) {
                        continue;
                    }
                    starts.push(container_spec(pod, c, track, &ip, &node));
                    any_running = true;
                }
                None => {
                    if deleting {
                        continue;
                    }
                    if track.backoff_until.is_some_and(|t| now < t) {
                        continue;
                    }
                    starts.push(container_spec(pod, c, track, &ip, &node));
                    any_running = true;
                }
            }
        }
        if deleting && !any_running {
            // Re-list: a start above may have raced; only confirm when the
            // runtime shows nothing running for the pod.
            let still = self
                .runtime
                .list()
                .into_iter()
                .any(|c| c.pod_uid == uid && matches!(c.state, State::Running { .. }));
            if !still {
                out.confirm_deletions.push((
                    meta.namespace.clone(),
                    meta.name.clone(),
                    uid.clone(),
                ));
            }
        }
    }

    /// A status write failed: report this pod's status again next sync.
    pub fn forget_reported(&mut self, pod_uid: &str) {
        self.reported.remove(pod_uid);
    }

    /// The API shows `pod` with a status other than the one last reported
    /// (in what matters: phase, address, readiness, restarts), e.g. an
    /// older write that landed last after a broken session: forget the
    /// report so the next sync writes it again. Only for pods with no
    /// write in flight (the caller knows).
    pub fn observed(&mut self, pod: &v1::Pod) {
        let uid = &pod.meta().uid;
        let Some(mine) = self.reported.get(uid) else {
            return;
        };
        let seen = pod.status.clone().unwrap_or_default();
        if status_gist(mine) != status_gist(&seen) {
            self.reported.remove(uid);
        }
    }

    /// A probe's outcome arrived.
    pub fn probe_result(
        &mut self,
        pod_uid: &str,
        container: &str,
        container_id: &str,
        kind: ProbeKind,
        outcome: &Outcome,
        now: Instant,
    ) {
        let Some(t) = self
            .pods
            .get_mut(pod_uid)
            .and_then(|p| p.containers.get_mut(container))
        else {
            return;
        };
        if let Some((id, probes)) = t.probes.as_mut() {
            if id == container_id {
                probes.record(kind, outcome, now);
            }
        }
    }

    /// The pod's status as the runtime (`containers`, its listing) and the
    /// probes say now.
    fn status(&self, pod: &v1::Pod, containers: &[Container], now: Instant) -> v1::PodStatus {
        let uid = &pod.meta().uid;
        let Some(pt) = self.pods.get(uid) else {
            return pod.status.clone().unwrap_or_default();
        };
        let policy = restart_policy(pod);
        let mut statuses = Vec::new();
        let (mut running, mut waiting, mut succeeded, mut failed) = (0, 0, 0, 0);
        let mut all_ready = true;
        let spec_containers: &[v1::Container] =
            pod.spec.as_ref().map_or(&[], |s| s.containers.as_slice());
        for c in spec_containers {
            let track = pt.containers.get(&c.name);
            let current = containers
                .iter()
                .filter(|x| x.pod_uid == *uid && x.name == c.name)
                .max_by_key(|x| x.attempt);
            let last_state = track
                .and_then(|t| t.last_terminated.as_ref())
                .filter(|l| current.is_none_or(|c| c.attempt != l.attempt))
                .map(terminated_state);
            let (state, ready, started) = match current.map(|x| &x.state) {
                Some(State::Running { started_at, .. }) => {
                    running += 1;
                    // The probes of this very start; before they exist (a
                    // container that started since the last sync), as
                    // they begin: not ready while a readiness or startup
                    // probe has yet to pass.
                    let probes = track
                        .and_then(|t| t.probes.as_ref())
                        .filter(|(id, _)| current.is_some_and(|x| x.id == *id))
                        .map(|(_, p)| p);
                    let (ready, started) = match probes {
                        Some(p) => (p.ready(), p.started()),
                        None => (
                            c.readiness_probe.is_none() && c.startup_probe.is_none(),
                            c.startup_probe.is_none(),
                        ),
                    };
                    (
                        v1::ContainerState {
                            running: Some(v1::ContainerStateRunning {
                                started_at: format_rfc3339(*started_at),
                            }),
                            ..Default::default()
                        },
                        ready,
                        started,
                    )
                }
                Some(State::Exited { exit_code, .. }) => {
                    let will_restart =
                        restarts(policy, *exit_code) && pod.meta().deletion_timestamp.is_empty();
                    if will_restart
                        && track.is_some_and(|t| t.backoff_until.is_some_and(|u| now < u))
                    {
                        waiting += 1;
                        let msg = format!(
                            "back-off restarting failed container {} in pod {}",
                            c.name,
                            pod.meta().name
                        );
                        (waiting_state("CrashLoopBackOff", &msg), false, false)
                    } else {
                        if *exit_code == Some(0) {
                            succeeded += 1;
                        } else {
                            failed += 1;
                        }
                        (
                            current.map(terminated_state).unwrap_or_default(),
                            false,
                            false,
                        )
                    }
                }
                None => {
                    waiting += 1;
                    let (reason, msg) = track
                        .and_then(|t| t.waiting.clone())
                        .unwrap_or_else(|| ("ContainerCreating".into(), String::new()));
                    (waiting_state(&reason, &msg), false, false)
                }
            };
            all_ready &= ready;
            // Waiting to restart: the instance that just ended is the last.
            let last_state = match current {
                Some(cur) if state.waiting.is_some() => Some(terminated_state(cur)),
                _ => last_state,
            };
            statuses.push(v1::ContainerStatus {
                name: c.name.clone(),
                state: Some(state),
                last_state,
                ready,
                // Restarts so far: earlier instances, counting an exited one
                // that is waiting to restart (as the kubelet counts dead
                // containers).
                restart_count: i32::try_from(match current {
                    Some(c) => match c.state {
                        State::Exited { exit_code, .. }
                            if restarts(policy, exit_code)
                                && pod.meta().deletion_timestamp.is_empty() =>
                        {
                            c.attempt + 1
                        }
                        _ => c.attempt,
                    },
                    None => track.map_or(0, |t| t.restarts),
                })
                .unwrap_or(i32::MAX),
                image: c.image.clone(),
                container_id: current
                    .map(|x| format!("keelson://{}", x.id))
                    .unwrap_or_default(),
                started: Some(started),
            });
        }
        let total = spec_containers.len();
        let phase = if total > 0 && succeeded == total {
            "Succeeded"
        } else if total > 0 && succeeded + failed == total && policy != "Always" {
            if failed > 0 && (policy == "Never" || policy == "OnFailure") {
                "Failed"
            } else {
                "Succeeded"
            }
        } else if running > 0
            || (waiting > 0 && pt.containers.values().any(|t| t.last_terminated.is_some()))
        {
            "Running"
        } else {
            "Pending"
        };
        let ready = phase == "Running" && all_ready && running == total;
        let prev = pod.status.clone().unwrap_or_default();
        let transition = |ty: &str, status: &str| -> String {
            prev.conditions
                .iter()
                .find(|c| c.r#type == ty && c.status == status)
                .map(|c| c.last_transition_time.clone())
                .unwrap_or_else(|| format_rfc3339(std::time::SystemTime::now()))
        };
        let cond = |ty: &str, ok: bool| {
            let status = if ok { "True" } else { "False" };
            v1::PodCondition {
                r#type: ty.into(),
                status: status.into(),
                last_transition_time: transition(ty, status),
                ..Default::default()
            }
        };
        v1::PodStatus {
            phase: phase.into(),
            conditions: vec![
                cond("PodScheduled", true),
                cond("Initialized", true),
                cond("ContainersReady", ready),
                cond("Ready", ready),
            ],
            host_ip: self.cfg.address.clone(),
            pod_ip: pt.ip.clone(),
            start_time: if prev.start_time.is_empty() {
                format_rfc3339(pt.start_time)
            } else {
                prev.start_time.clone()
            },
            container_statuses: statuses,
            ..Default::default()
        }
    }
}

/// A pod's bookkeeping when first seen: restart counts continue from what
/// the runtime and the pod say (adoption).
fn new_track(pod: &v1::Pod, cs: &[Container], ip: String) -> PodTrack {
    let mut containers: HashMap<String, Track> = HashMap::new();
    for c in pod.spec.iter().flat_map(|s| &s.containers) {
        let highest = cs
            .iter()
            .filter(|x| x.name == c.name)
            .map(|x| x.attempt)
            .max();
        let reported = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.iter().find(|x| x.name == c.name))
            .map_or(0, |x| u32::try_from(x.restart_count).unwrap_or(0));
        containers.insert(
            c.name.clone(),
            Track {
                restarts: highest.map_or(reported, |h| h.max(reported)),
                ..Default::default()
            },
        );
    }
    PodTrack {
        ip,
        containers,
        start_time: SystemTime::now(),
    }
}

fn waiting_state(reason: &str, message: &str) -> v1::ContainerState {
    v1::ContainerState {
        waiting: Some(v1::ContainerStateWaiting {
            reason: reason.into(),
            message: message.into(),
        }),
        ..Default::default()
    }
}

fn terminated_state(c: &Container) -> v1::ContainerState {
    match &c.state {
        State::Exited {
            exit_code,
            signal,
            started_at,
            finished_at,
        } => v1::ContainerState {
            terminated: Some(v1::ContainerStateTerminated {
                exit_code: exit_code.unwrap_or(137),
                signal: signal.unwrap_or(0),
                reason: match exit_code {
                    Some(0) => "Completed".into(),
                    Some(_) => "Error".into(),
                    None => "ContainerStatusUnknown".into(),
                },
                message: if exit_code.is_none() {
                    "the container's exit status was lost with the agent".into()
                } else {
                    String::new()
                },
                started_at: format_rfc3339(*started_at),
                finished_at: format_rfc3339(*finished_at),
            }),
            ..Default::default()
        },
        State::Running { started_at, .. } => v1::ContainerState {
            running: Some(v1::ContainerStateRunning {
                started_at: format_rfc3339(*started_at),
            }),
            ..Default::default()
        },
    }
}

fn stop(runtime: &dyn Runtime, track: &mut Track, id: &str, now: Instant, grace: Duration) {
    match track.stopping.as_mut() {
        Some((sid, kill_at)) if sid == id => {
            // A shorter grace (a deletion during a probe's stop) wins.
            *kill_at = (*kill_at).min(now + grace);
            if now >= *kill_at {
                runtime.kill(id);
            }
        }
        _ => {
            runtime.stop(id);
            if grace.is_zero() {
                runtime.kill(id);
            }
            track.stopping = Some((id.to_string(), now + grace));
        }
    }
}

/// What to start for container `c` of `pod` (its next attempt).
fn container_spec(
    pod: &v1::Pod,
    c: &v1::Container,
    track: &Track,
    ip: &str,
    node: &str,
) -> ContainerSpec {
    ContainerSpec {
        pod_uid: pod.meta().uid.clone(),
        pod_namespace: pod.meta().namespace.clone(),
        pod_name: pod.meta().name.clone(),
        name: c.name.clone(),
        attempt: track.restarts,
        image: c.image.clone(),
        command: c.command.clone(),
        args: c.args.clone(),
        env: container_spec_env(pod, c, ip, node),
        working_dir: c.working_dir.clone(),
        memory_limit_bytes: limit(c, "memory"),
        cpu_limit_millis: limit(c, "cpu"),
    }
}

/// Starts run this many at a time.
const PARALLEL_STARTS: usize = 4;

/// Start every container, up to [`PARALLEL_STARTS`] at once.
fn start_all(
    runtime: &dyn Runtime,
    specs: Vec<ContainerSpec>,
) -> Vec<(ContainerSpec, Result<Container, StartError>)> {
    if specs.len() <= 1 {
        return specs
            .into_iter()
            .map(|s| {
                let r = runtime.start(&s);
                (s, r)
            })
            .collect();
    }
    let mut lanes: Vec<Vec<ContainerSpec>> = (0..PARALLEL_STARTS).map(|_| Vec::new()).collect();
    for (i, s) in specs.into_iter().enumerate() {
        lanes[i % PARALLEL_STARTS].push(s);
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = lanes
            .into_iter()
            .filter(|l| !l.is_empty())
            .map(|lane| {
                scope.spawn(move || {
                    lane.into_iter()
                        .map(|s| {
                            let r = runtime.start(&s);
                            (s, r)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

/// Record how a start went.
fn started(
    track: &mut Track,
    spec: &ContainerSpec,
    r: Result<Container, StartError>,
    now: Instant,
) {
    match r {
        Ok(_) => {
            track.waiting = None;
            track.backoff_until = None;
        }
        Err(e) => {
            let reason = match &e {
                StartError::ImageNotSupported(_) => "ImageNotSupported",
                StartError::InvalidSpec(_) => "CreateContainerError",
                StartError::Io(_) => "RunContainerError",
            };
            tracing::warn!(pod = %spec.pod_name, container = %spec.name, error = %e, "cannot start container");
            track.waiting = Some((reason.to_string(), e.to_string()));
            // Try again later, backing off like a crash.
            let d = next_backoff(
                track.backoff,
                Duration::from_secs(1),
                Duration::from_secs(60),
            );
            track.backoff = Some(d);
            track.backoff_until = Some(now + d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::sync::Mutex;

    /// A runtime that records calls; containers exit when told to.
    #[derive(Default)]
    struct Fake {
        containers: Mutex<Vec<Container>>,
        calls: Mutex<Vec<String>>,
        /// Images it refuses.
        unsupported: Vec<String>,
        /// Whether SIGTERM ends a container (else only SIGKILL does).
        obeys_term: bool,
    }

    impl Fake {
        fn exit(&self, id: &str, code: i32) {
            for c in self.containers.lock().unwrap().iter_mut() {
                if c.id == id {
                    if let State::Running { started_at, .. } = c.state {
                        c.state = State::Exited {
                            exit_code: Some(code),
                            signal: None,
                            started_at,
                            finished_at: started_at,
                        };
                    }
                }
            }
        }
        fn calls(&self) -> Vec<String> {
            std::mem::take(&mut *self.calls.lock().unwrap())
        }
        fn running(&self) -> Vec<String> {
            self.containers
                .lock()
                .unwrap()
                .iter()
                .filter(|c| matches!(c.state, State::Running { .. }))
                .map(|c| c.id.clone())
                .collect()
        }
    }

    impl Runtime for Fake {
        fn start(&self, spec: &ContainerSpec) -> Result<Container, StartError> {
            if self.unsupported.contains(&spec.image) {
                return Err(StartError::ImageNotSupported(format!(
                    "image {:?} cannot run here",
                    spec.image
                )));
            }
            let c = Container {
                id: format!("{}-{}-{}", spec.pod_uid, spec.name, spec.attempt),
                pod_uid: spec.pod_uid.clone(),
                name: spec.name.clone(),
                attempt: spec.attempt,
                image: spec.image.clone(),
                state: State::Running {
                    pid: 1000 + spec.attempt,
                    started_at: SystemTime::UNIX_EPOCH,
                },
            };
            self.calls.lock().unwrap().push(format!("start {}", c.id));
            self.containers.lock().unwrap().push(c.clone());
            Ok(c)
        }
        fn stop(&self, id: &str) {
            self.calls.lock().unwrap().push(format!("stop {id}"));
            if self.obeys_term {
                self.exit(id, 143);
            }
        }
        fn kill(&self, id: &str) {
            self.calls.lock().unwrap().push(format!("kill {id}"));
            self.exit(id, 137);
        }
        fn list(&self) -> Vec<Container> {
            self.containers.lock().unwrap().clone()
        }
        fn remove(&self, id: &str) {
            self.containers.lock().unwrap().retain(|c| c.id != id);
        }
        fn remove_pod(&self, pod_uid: &str) {
            self.calls
                .lock()
                .unwrap()
                .push(format!("remove_pod {pod_uid}"));
            self.containers
                .lock()
                .unwrap()
                .retain(|c| c.pod_uid != pod_uid);
        }
        fn log_paths(&self, _: &str, _: &str, _: u32) -> (PathBuf, PathBuf) {
            (PathBuf::new(), PathBuf::new())
        }
        fn limits_supported(&self) -> Result<(), String> {
            Ok(())
        }
    }

    fn pod(uid: &str, policy: &str, image: &str) -> v1::Pod {
        v1::Pod {
            metadata: Some(v1::ObjectMeta {
                name: format!("p-{uid}"),
                namespace: "default".into(),
                uid: uid.into(),
                ..Default::default()
            }),
            spec: Some(v1::PodSpec {
                node_name: "n1".into(),
                restart_policy: policy.into(),
                termination_grace_period_seconds: Some(5),
                containers: vec![v1::Container {
                    name: "main".into(),
                    image: image.into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn kubelet(fake: Arc<Fake>) -> Kubelet {
        Kubelet::new(fake, Config::new("n1", Ipv4Addr::new(127, 0, 0, 11)))
    }

    fn status_of(r: &SyncResult) -> Option<&v1::PodStatus> {
        r.statuses.last().and_then(|p| p.status.as_ref())
    }

    fn waiting_reason(s: &v1::PodStatus) -> String {
        s.container_statuses[0]
            .state
            .as_ref()
            .and_then(|st| st.waiting.as_ref())
            .map(|w| w.reason.clone())
            .unwrap_or_default()
    }

    fn ready(s: &v1::PodStatus) -> bool {
        s.conditions
            .iter()
            .any(|c| c.r#type == "Ready" && c.status == "True")
    }

    #[test]
    fn nothing_happens_before_the_first_list() {
        let fake = Arc::new(Fake::default());
        fake.start(&ContainerSpec {
            pod_uid: "old".into(),
            pod_namespace: "default".into(),
            pod_name: "x".into(),
            name: "main".into(),
            attempt: 0,
            image: "i".into(),
            command: vec![],
            args: vec![],
            env: BTreeMap::new(),
            working_dir: String::new(),
            memory_limit_bytes: None,
            cpu_limit_millis: None,
        })
        .unwrap();
        fake.calls();
        let mut k = kubelet(fake.clone());
        let r = k.sync(None, Instant::now());
        assert!(r.statuses.is_empty() && fake.calls().is_empty());
        // Once listed, a container of an unknown pod is an orphan: killed,
        // then its files removed.
        k.sync(Some(&[]), Instant::now());
        assert_eq!(fake.calls(), ["kill old-main-0"]);
        k.sync(Some(&[]), Instant::now());
        assert_eq!(fake.calls(), ["remove_pod old"]);
    }

    #[test]
    fn a_pod_starts_runs_and_is_ready_with_an_ip_of_its_own() {
        let fake = Arc::new(Fake::default());
        let mut k = kubelet(fake.clone());
        let t0 = Instant::now();
        let p = pod("u1", "", "builtin/sleep");
        let r = k.sync(Some(std::slice::from_ref(&p)), t0);
        assert_eq!(fake.calls(), ["start u1-main-0"]);
        let s = status_of(&r).expect("a status");
        assert_eq!(s.phase, "Running");
        assert!(ready(s));
        assert_eq!(s.pod_ip, "127.11.0.1");
        assert_eq!(s.host_ip, "127.0.0.11");
        // Nothing changed: nothing to report.
        let r = k.sync(Some(std::slice::from_ref(&p)), t0);
        assert!(r.statuses.is_empty());
        // A second pod gets the next address.
        let q = pod("u2", "", "builtin/sleep");
        let r = k.sync(Some(&[p, q]), t0);
        assert_eq!(status_of(&r).map(|s| s.pod_ip.as_str()), Some("127.11.0.2"));
    }

    #[test]
    fn a_new_pod_skips_addresses_something_else_listens_on() {
        let fake = Arc::new(Fake::default());
        let mut cfg = Config::new("n1", Ipv4Addr::new(127, 0, 0, 11));
        // A stray process holds 127.11.0.1:8080 and 127.11.0.2:8080.
        cfg.address_free =
            |ip, ports| !(ports.contains(&8080) && (ip == "127.11.0.1" || ip == "127.11.0.2"));
        let mut k = Kubelet::new(fake, cfg);
        let mut p = pod("u1", "", "builtin/http-echo");
        p.spec.as_mut().unwrap().containers[0].ports = vec![v1::ContainerPort {
            container_port: 8080,
            ..Default::default()
        }];
        let r = k.sync(Some(std::slice::from_ref(&p)), Instant::now());
        assert_eq!(status_of(&r).map(|s| s.pod_ip.as_str()), Some("127.11.0.3"));
        // A pod without ports takes the first address.
        let q = pod("u2", "", "builtin/sleep");
        let r = k.sync(Some(&[p, q]), Instant::now());
        assert_eq!(status_of(&r).map(|s| s.pod_ip.as_str()), Some("127.11.0.1"));
    }

    #[test]
    fn a_stale_status_seen_in_the_api_is_reported_again() {
        let fake = Arc::new(Fake::default());
        let mut k = kubelet(fake.clone());
        let t0 = Instant::now();
        let p = pod("u1", "", "builtin/sleep");
        let r = k.sync(Some(std::slice::from_ref(&p)), t0);
        let written = r.statuses[0].clone();
        // The API shows what was written: nothing to do.
        k.observed(&written);
        assert!(k
            .sync(Some(std::slice::from_ref(&p)), t0)
            .statuses
            .is_empty());
        // It shows an older status (Pending, no address): written again.
        let mut stale = written.clone();
        stale.status = Some(v1::PodStatus {
            phase: "Pending".into(),
            ..Default::default()
        });
        k.observed(&stale);
        let r = k.sync(Some(std::slice::from_ref(&p)), t0);
        assert_eq!(status_of(&r).map(|s| s.phase.as_str()), Some("Running"));
    }

    #[test]
    fn a_burst_of_pods_starts_in_batches_reported_as_they_start() {
        let fake = Arc::new(Fake::default());
        let mut k = kubelet(fake.clone());
        let t0 = Instant::now();
        let pods: Vec<v1::Pod> = (0..MAX_STARTS_PER_SYNC + 2)
            .map(|i| pod(&format!("u{i:02}"), "", "builtin/sleep"))
            .collect();
        let r = k.sync(Some(&pods), t0);
        assert!(r.more_starts, "starts were left for the next sync");
        assert_eq!(fake.calls().len(), MAX_STARTS_PER_SYNC);
        // Only the pods started are reported (Running), the first ones.
        let reported: Vec<&str> = r.statuses.iter().map(|p| p.meta().uid.as_str()).collect();
        let first: Vec<String> = (0..MAX_STARTS_PER_SYNC)
            .map(|i| format!("u{i:02}"))
            .collect();
        assert_eq!(reported, first);
        assert!(r
            .statuses
            .iter()
            .all(|p| p.status.as_ref().is_some_and(|s| s.phase == "Running")));
        let r = k.sync(Some(&pods), t0);
        assert!(!r.more_starts);
        // Started concurrently: in either order.
        let mut calls = fake.calls();
        calls.sort();
        assert_eq!(calls, ["start u08-main-0", "start u09-main-0"]);
        let reported: Vec<&str> = r.statuses.iter().map(|p| p.meta().uid.as_str()).collect();
        assert_eq!(reported, ["u08", "u09"]);
    }

    #[test]
    fn a_crashing_container_restarts_with_a_growing_back_off() {
        let fake = Arc::new(Fake::default());
        let mut k = kubelet(fake.clone());
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let p = [pod("u1", "Always", "img")];
        k.sync(Some(&p), t0);
        fake.calls();
        fake.exit("u1-main-0", 1);
        let r = k.sync(Some(&p), t0);
        let st = status_of(&r).expect("status");
        assert_eq!(waiting_reason(st), "CrashLoopBackOff");
        assert_eq!(st.container_statuses[0].restart_count, 1);
        let last = st.container_statuses[0]
            .last_state
            .as_ref()
            .and_then(|l| l.terminated.as_ref())
            .map(|t| t.exit_code);
        assert_eq!(last, Some(1));
        assert!(fake.calls().is_empty(), "backing off 1 s");
        k.sync(Some(&p), t0 + s(1));
        assert_eq!(fake.calls(), ["start u1-main-1"]);
        fake.exit("u1-main-1", 1);
        k.sync(Some(&p), t0 + s(1));
        k.sync(Some(&p), t0 + s(2));
        assert!(fake.calls().is_empty(), "now 2 s");
        k.sync(Some(&p), t0 + s(3));
        assert_eq!(fake.calls(), ["start u1-main-2"]);
    }

    #[test]
    fn restart_policies_and_terminal_phases() {
        for (policy, code, restarts_, phase) in [
            ("Never", 0, false, "Succeeded"),
            ("Never", 3, false, "Failed"),
            ("OnFailure", 0, false, "Succeeded"),
            ("OnFailure", 3, true, "Running"),
            ("Always", 0, true, "Running"),
        ] {
            let fake = Arc::new(Fake::default());
            let mut k = kubelet(fake.clone());
            let t0 = Instant::now();
            let p = [pod("u", policy, "img")];
            k.sync(Some(&p), t0);
            fake.calls();
            fake.exit("u-main-0", code);
            let r = k.sync(Some(&p), t0);
            assert_eq!(
                status_of(&r).map(|s| s.phase.as_str()),
                Some(phase),
                "{policy} exit {code}"
            );
            k.sync(Some(&p), t0 + Duration::from_secs(2));
            let started = fake.calls().iter().any(|c| c.starts_with("start"));
            assert_eq!(started, restarts_, "{policy} exit {code}");
        }
    }

    #[test]
    fn an_image_it_cannot_run_leaves_the_pod_waiting() {
        let fake = Arc::new(Fake {
            unsupported: vec!["nginx".into()],
            ..Default::default()
        });
        let mut k = kubelet(fake.clone());
        let r = k.sync(Some(&[pod("u", "", "nginx")]), Instant::now());
        let st = status_of(&r).expect("status");
        assert_eq!(st.phase, "Pending");
        assert_eq!(waiting_reason(st), "ImageNotSupported");
        assert!(!ready(st));
    }

    #[test]
    fn deletion_stops_gracefully_then_kills_then_confirms() {
        let fake = Arc::new(Fake::default());
        let mut k = kubelet(fake.clone());
        let t0 = Instant::now();
        let mut p = pod("u", "", "img");
        k.sync(Some(std::slice::from_ref(&p)), t0);
        fake.calls();
        p.meta_mut().deletion_timestamp = "2024-01-01T00:00:00Z".into();
        p.meta_mut().deletion_grace_period_seconds = Some(5);
        let r = k.sync(Some(std::slice::from_ref(&p)), t0);
        assert_eq!(fake.calls(), ["stop u-main-0"]);
        assert!(r.confirm_deletions.is_empty());
        k.sync(Some(std::slice::from_ref(&p)), t0 + Duration::from_secs(4));
        assert!(fake.calls().is_empty(), "within the grace period");
        k.sync(Some(std::slice::from_ref(&p)), t0 + Duration::from_secs(5));
        assert_eq!(fake.calls(), ["kill u-main-0"]);
        let r = k.sync(Some(std::slice::from_ref(&p)), t0 + Duration::from_secs(6));
        assert_eq!(
            r.confirm_deletions,
            [("default".to_string(), "p-u".to_string(), "u".to_string())]
        );
        assert!(fake.running().is_empty());
    }

    #[test]
    fn a_pod_gone_from_the_api_is_killed_and_cleaned_up() {
        let fake = Arc::new(Fake::default());
        let mut k = kubelet(fake.clone());
        let t0 = Instant::now();
        k.sync(Some(&[pod("u", "", "img")]), t0);
        fake.calls();
        k.sync(Some(&[]), t0);
        assert_eq!(fake.calls(), ["kill u-main-0"]);
        k.sync(Some(&[]), t0);
        assert_eq!(fake.calls(), ["remove_pod u"]);
    }

    #[test]
    fn running_containers_are_adopted_after_a_restart() {
        let fake = Arc::new(Fake::default());
        // The runtime already runs attempt 2 of the pod's container.
        fake.containers.lock().unwrap().push(Container {
            id: "u-main-2".into(),
            pod_uid: "u".into(),
            name: "main".into(),
            attempt: 2,
            image: "img".into(),
            state: State::Running {
                pid: 7,
                started_at: SystemTime::UNIX_EPOCH,
            },
        });
        let mut k = kubelet(fake.clone());
        let mut p = pod("u", "", "img");
        p.status = Some(v1::PodStatus {
            pod_ip: "127.11.0.9".into(),
            ..Default::default()
        });
        let r = k.sync(Some(&[p]), Instant::now());
        assert!(fake.calls().is_empty(), "nothing started or stopped");
        let st = status_of(&r).expect("status");
        assert_eq!(st.container_statuses[0].restart_count, 2);
        assert_eq!(st.pod_ip, "127.11.0.9", "the pod keeps its address");
        assert_eq!(st.phase, "Running");
    }

    /// A tcpSocket probe of port 8080 (0: the default failure threshold).
    fn tcp_probe(period_seconds: i32, failure_threshold: i32) -> v1::Probe {
        v1::Probe {
            tcp_socket: Some(v1::TcpSocketAction {
                port: "8080".into(),
                ..Default::default()
            }),
            period_seconds,
            failure_threshold,
            ..Default::default()
        }
    }

    #[test]
    fn a_container_with_a_readiness_probe_is_not_ready_until_it_passes() {
        let fake = Arc::new(Fake::default());
        let mut k = kubelet(fake.clone());
        let t0 = Instant::now();
        let mut p = pod("u", "", "img");
        p.spec.as_mut().unwrap().containers[0].readiness_probe = Some(tcp_probe(1, 0));
        let p = [p];
        // The sync that starts it reports it Running, not Ready.
        let r = k.sync(Some(&p), t0);
        assert_eq!(fake.calls(), ["start u-main-0"]);
        let st = status_of(&r).expect("a status");
        assert_eq!(st.phase, "Running");
        assert!(!ready(st), "not ready before its readiness probe passed");
        assert!(!st.container_statuses[0].ready);
        let r = k.sync(Some(&p), t0);
        assert_eq!(r.probes.len(), 1, "the readiness probe is due");
        let rq = &r.probes[0];
        k.probe_result(
            &rq.pod_uid,
            &rq.container,
            &rq.container_id,
            rq.kind,
            &Outcome::Success,
            t0,
        );
        let r = k.sync(Some(&p), t0);
        assert!(status_of(&r).is_some_and(ready), "ready once it passed");
    }

    #[test]
    fn a_failing_liveness_probe_restarts_the_container() {
        let fake = Arc::new(Fake {
            obeys_term: true,
            ..Default::default()
        });
        let mut k = kubelet(fake.clone());
        let t0 = Instant::now();
        let mut p = pod("u", "", "img");
        p.spec.as_mut().unwrap().containers[0].liveness_probe = Some(tcp_probe(1, 2));
        let p = [p];
        k.sync(Some(&p), t0);
        fake.calls();
        let mut t = t0;
        for _ in 0..2 {
            let r = k.sync(Some(&p), t);
            assert_eq!(r.probes.len(), 1, "a liveness probe is due");
            let rq = &r.probes[0];
            k.probe_result(
                &rq.pod_uid,
                &rq.container,
                &rq.container_id,
                rq.kind,
                &Outcome::Failure("refused".into()),
                t,
            );
            t += Duration::from_secs(1);
        }
        k.sync(Some(&p), t);
        assert_eq!(fake.calls(), ["stop u-main-0"]);
        // It exited on SIGTERM; the restart waits out the first back-off.
        k.sync(Some(&p), t + Duration::from_secs(1));
        assert!(fake.calls().is_empty());
        k.sync(Some(&p), t + Duration::from_secs(2));
        assert_eq!(fake.calls(), ["start u-main-1"]);
    }

    #[test]
    fn adopted_pods_keep_their_addresses_before_new_pods_get_one() {
        let fake = Arc::new(Fake::default());
        let mut k = kubelet(fake.clone());
        let new = pod("a", "", "img");
        let mut old = pod("b", "", "img");
        old.status = Some(v1::PodStatus {
            pod_ip: "127.11.0.1".into(),
            ..Default::default()
        });
        // The new pod comes first in the list; the old one keeps .1.
        let r = k.sync(Some(&[new, old]), Instant::now());
        let ips: BTreeMap<String, String> = r
            .statuses
            .iter()
            .map(|p| {
                (
                    p.meta().uid.clone(),
                    p.status
                        .as_ref()
                        .map(|s| s.pod_ip.clone())
                        .unwrap_or_default(),
                )
            })
            .collect();
        assert_eq!(ips.get("b").map(String::as_str), Some("127.11.0.1"));
        assert_eq!(ips.get("a").map(String::as_str), Some("127.11.0.2"));
    }

    #[test]
    fn backoff_and_policy_helpers() {
        let s = Duration::from_secs;
        assert_eq!(next_backoff(None, s(1), s(60)), s(1));
        assert_eq!(next_backoff(Some(s(1)), s(1), s(60)), s(2));
        assert_eq!(next_backoff(Some(s(40)), s(1), s(60)), s(60));
        assert!(restarts("Always", Some(0)));
        assert!(!restarts("OnFailure", Some(0)));
        assert!(!restarts("OnFailure", None));
        assert!(restarts("OnFailure", Some(2)));
        assert!(!restarts("Never", Some(1)));
    }
}
