//! The pod lifecycle, the kubelet's sync loop as a pure function: given the
//! pods bound to this node (as the API says), what the node showed just
//! before ([`Observed`]: the runtime's listing, and the addresses something
//! else listens on) and the time ([`Now`]: both clocks, read by the agent),
//! [`Kubelet::sync`] decides and returns a [`Plan`]: the runtime calls to
//! make, the statuses to write, the deletions to confirm and the probes to
//! run. It makes no call itself (no runtime, no network, no clock, no log),
//! so its tests need no processes and no sleeps: they keep a container
//! list of their own, apply each plan to it and move their own clock.
//!
//! The agent ([`crate::agent`]) is the IO around it: it lists the runtime,
//! syncs, makes the plan's runtime calls, then tells the kubelet how each
//! start went ([`Kubelet::started`]: the waiting reason and back-off of a
//! start that failed live here), and later each probe's outcome
//! ([`Kubelet::probe_result`]) and what the API shows
//! ([`Kubelet::observed`]).
//!
//! - **Start**: each container of a pod not being deleted is started when it
//!   has never run; an image the runtime cannot run leaves it waiting with
//!   the reason (the pod stays Pending), never an error of the agent. At
//!   most [`MAX_STARTS_PER_SYNC`] starts per plan, in `desired`'s order
//!   (the agent puts older pods first); the rest wait for the next sync
//!   ([`Plan::more_starts`]), and a pod waiting for its first start is not
//!   reported before it.
//! - **Restart**: an exited container restarts per `restartPolicy` (Always,
//!   the default; OnFailure: non-zero exits; Never) after a back-off that
//!   doubles from [`Config::backoff_base`] to [`Config::backoff_max`]
//!   (waiting reason `CrashLoopBackOff`), reset once it ran for
//!   [`Config::backoff_reset`]. A failed liveness or startup probe stops it
//!   (then the policy applies, as in Kubernetes).
//! - **Stop**: SIGTERM, then SIGKILL once the grace period
//!   (`terminationGracePeriodSeconds`, or the deletion's) has passed.
//! - **Delete**: a pod with a deletionTimestamp has its containers stopped;
//!   its deletion is confirmed once the listing the sync was given shows
//!   nothing of it running (and no start of it is planned: a pod being
//!   deleted never gets one). A pod that vanished from the API
//!   (force-deleted) is killed and then its files go, as do containers of
//!   pods this node does not know (after an agent restart), so no process is
//!   left behind.
//! - **Adoption**: containers the runtime reports as running when the agent
//!   starts (it re-adopts its processes) are taken as the pod's current
//!   containers; restart counts continue from the highest attempt, and pods
//!   that already have an address keep it before any new pod gets one.
//! - **Addresses**: each pod gets one of its own, `<prefix>.x.y`, on which
//!   nothing else listens on its ports (a stray process, e.g. another
//!   agent's orphan). Checking means binding, so the kubelet only names the
//!   addresses a new pod may get ([`Kubelet::addresses_to_check`]); the
//!   agent binds each and passes those in use in [`Observed::listening`].
//! - **Statuses after starts**: a pod with a start in the plan gets no
//!   status from that sync, as what the start did is not known yet. The
//!   agent syncs again as soon as it has made the plan's calls
//!   ([`Plan::resync`]), and that sync, from a fresh listing, reports the
//!   pod Running (or waiting with the start's error): one status write per
//!   start, as before the sync was pure, when it listed again after its
//!   starts. Every other status comes from the listing the sync was given,
//!   and only a status that changed (or that the API shows otherwise, see
//!   [`Kubelet::observed`]) is reported.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant, SystemTime};

use keelson_model::quantity;
use keelson_model::time::format_rfc3339;
use keelson_proto::v1;
use keelson_sdk::Resource;

use crate::config::{self, PodFields, Resolved};
use crate::probe::{self, ContainerProbes, Outcome, ProbeKind};
use crate::runtime::{Container, ContainerSpec, MountSpec, StartError, State, VolumeSource};
use crate::volume_files::ProjectedFile;

/// Tuning of the lifecycle.
#[derive(Clone, Debug)]
pub struct Config {
    pub node_name: String,
    /// The node's address (hostIP).
    pub address: String,
    /// Pod IPs are taken from here: `<prefix>.<i>.<j>` (j in 1..=254),
    /// unless `pod_cidr` is set.
    pub pod_ip_prefix: [u8; 2],
    /// The node's pod CIDR when its pods live on the node's bridge (the
    /// runc runtime): pod IPs are its host addresses after the gateway,
    /// and none is checked for strays (only this agent puts addresses
    /// there).
    pub pod_cidr: Option<crate::network::Cidr>,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// A container that ran this long has its back-off reset.
    pub backoff_reset: Duration,
}

impl Config {
    pub fn new(node_name: &str, address: Ipv4Addr) -> Config {
        let o = address.octets();
        Config {
            node_name: node_name.to_string(),
            address: address.to_string(),
            // 127.0.0.11 -> pods in 127.11.0.0/16.
            pod_ip_prefix: [127, o[3]],
            pod_cidr: None,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            backoff_reset: Duration::from_secs(120),
        }
    }
}

/// The time of a sync, read by the agent: the monotonic clock for
/// deadlines (back-offs, grace periods, probes), the wall clock for what
/// the API shows (a pod's `startTime`, its conditions'
/// `lastTransitionTime`).
#[derive(Clone, Copy, Debug)]
pub struct Now {
    pub instant: Instant,
    pub wall: SystemTime,
}

/// What the node showed just before a sync.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// The runtime's listing: running containers, and exited ones not yet
    /// removed.
    pub containers: Vec<Container>,
    /// Of the addresses [`Kubelet::addresses_to_check`] named, those
    /// something else listens on.
    pub listening: HashSet<SocketAddrV4>,
    /// The ConfigMaps and Secrets the pods use, as the node last read them.
    pub config: std::sync::Arc<config::Snapshot>,
}

/// SIGTERM to one container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stop {
    pub container_id: String,
    /// Its pod, `namespace/name` (for the log).
    pub pod: String,
    /// Why (for the log): the pod is being deleted, or a probe failed.
    pub reason: String,
}

/// A plan's runtime calls, made in this order: stops, kills, removals, pod
/// removals, then starts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuntimeCalls {
    pub stops: Vec<Stop>,
    /// SIGKILL (container ids): a grace period ran out, or the pod is gone
    /// from the API.
    pub kills: Vec<String>,
    /// Exited containers whose records go (ids): the older attempts of a
    /// container (the newest stays, for `lastState`).
    pub removals: Vec<String>,
    /// Pods whose files go (uids): gone from the API, nothing of them
    /// running.
    pub pod_removals: Vec<String>,
    /// ConfigMap and Secret volumes whose files are new or changed,
    /// written before the starts (a container mounting one starts after
    /// its files are there).
    pub volume_writes: Vec<VolumeWrite>,
    /// At most [`MAX_STARTS_PER_SYNC`], older pods first.
    pub starts: Vec<ContainerSpec>,
}

/// The files a ConfigMap or Secret volume of a pod is to hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeWrite {
    pub pod_uid: String,
    pub volume: String,
    pub files: Vec<ProjectedFile>,
}

impl RuntimeCalls {
    pub fn is_empty(&self) -> bool {
        self.stops.is_empty()
            && self.kills.is_empty()
            && self.removals.is_empty()
            && self.pod_removals.is_empty()
            && self.volume_writes.is_empty()
            && self.starts.is_empty()
    }
}

/// How one start of a plan went, as the agent hands it back.
pub type Started = (ContainerSpec, Result<Container, StartError>);

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

/// What one sync decided.
#[derive(Debug, Default)]
pub struct Plan {
    /// What the runtime is to do.
    pub runtime: RuntimeCalls,
    /// Starts were left for the next sync (more than
    /// [`MAX_STARTS_PER_SYNC`] were due).
    pub more_starts: bool,
    /// Pods whose status changed: the pod with its new status.
    pub statuses: Vec<v1::Pod>,
    /// Pods being deleted with nothing of them left running: confirm the
    /// deletion, `(namespace, name, uid)`.
    pub confirm_deletions: Vec<(String, String, String)>,
    /// Probes due now (each marked in flight until its outcome arrives).
    pub probes: Vec<ProbeRequest>,
}

impl Plan {
    /// Whether the agent should sync again at once: the pods of the starts
    /// made are reported by the next sync, and starts were left over.
    pub fn resync(&self) -> bool {
        !self.runtime.starts.is_empty() || self.more_starts
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
    /// The files last handed out per ConfigMap or Secret volume.
    volumes_written: HashMap<String, Vec<ProjectedFile>>,
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

/// Addresses checked for a stray listener before a new pod gets one; past
/// them the first one no pod of this node has is taken (a node full of
/// strays is not worth a scan of the whole /16).
const ADDRESS_PROBES: usize = 64;

/// Containers started by one sync at most: the pods started are reported
/// by the sync right after, so a burst of new pods is started (and
/// reported) in batches rather than all at the end of one long round.
pub const MAX_STARTS_PER_SYNC: usize = 8;

/// Kubernetes' default `terminationGracePeriodSeconds`.
const DEFAULT_GRACE_SECS: i64 = 30;

/// Back-off after a start that failed (the image, the spec, the machine):
/// first and longest, whatever the crash back-off is.
const START_ERROR_BACKOFF_BASE: Duration = Duration::from_secs(1);
const START_ERROR_BACKOFF_MAX: Duration = Duration::from_secs(60);

const ERR_IMAGE_PULL: &str = "ErrImagePull";
/// A failed pull is reported as `ErrImagePull` this long, then as
/// `ImagePullBackOff` until the next try.
const PULL_ERROR_SHOWN: Duration = Duration::from_secs(1);

pub struct Kubelet {
    cfg: Config,
    pods: HashMap<String, PodTrack>,
    /// Statuses last computed, to report only changes.
    reported: HashMap<String, v1::PodStatus>,
}

/// The container's environment: what the agent adds, then `resolved`
/// (its `envFrom` and `env`, see [`config::env`]).
fn container_spec_env(
    pod: &v1::Pod,
    c: &v1::Container,
    ip: &str,
    node: &str,
    resolved: &[(String, String)],
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
    for (k, v) in resolved {
        env.insert(k.clone(), v.clone());
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

/// The ports a pod's containers declare (those a u16 holds).
fn pod_ports(pod: &v1::Pod) -> Vec<u16> {
    pod.spec
        .iter()
        .flat_map(|s| &s.containers)
        .flat_map(|c| &c.ports)
        .filter_map(|p| u16::try_from(p.container_port).ok())
        .collect()
}

/// A number of seconds from the API as a duration (negative: none).
fn seconds(s: i64) -> Duration {
    Duration::from_secs(u64::try_from(s).unwrap_or(0))
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
    pub fn new(cfg: Config) -> Kubelet {
        Kubelet {
            cfg,
            pods: HashMap::new(),
            reported: HashMap::new(),
        }
    }

    /// Every pod address, in the order they are given out.
    fn addresses(&self) -> Box<dyn Iterator<Item = Ipv4Addr> + '_> {
        if let Some(cidr) = &self.cfg.pod_cidr {
            return Box::new(cidr.pod_addresses());
        }
        let [a, b] = self.cfg.pod_ip_prefix;
        Box::new((0..=255u8).flat_map(move |i| (1..=254u8).map(move |j| Ipv4Addr::new(a, b, i, j))))
    }

    /// Whether `ip` is one of this node's pod addresses.
    fn owns(&self, ip: &str) -> bool {
        let Ok(ip) = ip.parse::<Ipv4Addr>() else {
            return false;
        };
        match &self.cfg.pod_cidr {
            Some(cidr) => cidr.contains(ip) && cidr.gateway() != Some(ip) && cidr.network() != ip,
            None => ip.octets()[..2] == self.cfg.pod_ip_prefix,
        }
    }

    /// The addresses a new pod of `desired` may be given by the next sync,
    /// with the ports of the new pods: the agent checks each for a listener
    /// and passes those in use in [`Observed::listening`]. Empty when no
    /// new pod declares a port (the usual case between arrivals).
    ///
    /// Covers every address the sync may check: the first `ADDRESS_PROBES`
    /// (64) that no pod it keeps has, plus one for every other pod that may
    /// hold one when a new pod is given its own (a new or adopted pod given
    /// one before, a pod gone from the API still being stopped).
    pub fn addresses_to_check(&self, desired: &[v1::Pod]) -> Vec<SocketAddrV4> {
        let wanted: HashSet<&str> = desired.iter().map(|p| p.meta().uid.as_str()).collect();
        let new: Vec<&v1::Pod> = desired
            .iter()
            .filter(|p| !self.pods.contains_key(&p.meta().uid))
            .collect();
        let ports: BTreeSet<u16> = new.iter().flat_map(|p| pod_ports(p)).collect();
        if ports.is_empty() || self.cfg.pod_cidr.is_some() {
            return Vec::new();
        }
        let kept: HashSet<&str> = self
            .pods
            .iter()
            .filter(|(uid, _)| wanted.contains(uid.as_str()))
            .map(|(_, p)| p.ip.as_str())
            .collect();
        let gone = self
            .pods
            .keys()
            .filter(|uid| !wanted.contains(uid.as_str()))
            .count();
        self.addresses()
            .filter(|ip| !kept.contains(ip.to_string().as_str()))
            .take(ADDRESS_PROBES + gone + new.len())
            .flat_map(|ip| ports.iter().map(move |p| SocketAddrV4::new(ip, *p)))
            .collect()
    }

    /// A new pod's address: the one it has when this node gave it one
    /// (after an agent restart), else the first no pod has and nothing else
    /// listens on for the pod's ports (`listening`).
    fn pod_ip(&self, pod: &v1::Pod, listening: &HashSet<SocketAddrV4>) -> String {
        let used: HashSet<&str> = self.pods.values().map(|p| p.ip.as_str()).collect();
        // Keep the IP the pod already has (after an agent restart).
        if let Some(ip) = pod.status.as_ref().map(|s| s.pod_ip.as_str()) {
            if self.owns(ip) && !used.contains(ip) {
                return ip.to_string();
            }
        }
        let ports = pod_ports(pod);
        let free = |ip: Ipv4Addr| {
            ports
                .iter()
                .all(|p| !listening.contains(&SocketAddrV4::new(ip, *p)))
        };
        // The first free address; at most ADDRESS_PROBES of them are
        // checked for strays, after that the first unused one is taken.
        let mut probed = 0usize;
        let mut first_unused = None;
        for ip in self.addresses() {
            let text = ip.to_string();
            if used.contains(text.as_str()) {
                continue;
            }
            if probed >= ADDRESS_PROBES {
                return first_unused.unwrap_or(text);
            }
            probed += 1;
            if free(ip) {
                return text;
            }
            first_unused.get_or_insert(text);
        }
        first_unused.unwrap_or_else(|| self.cfg.address.clone())
    }

    /// One round: `desired` are the pods bound to this node (None before
    /// the first list: then nothing is decided at all), `observed` what the
    /// node showed just before. Pure: the plan says what to do.
    pub fn sync(&mut self, desired: Option<&[v1::Pod]>, observed: &Observed, now: Now) -> Plan {
        let mut plan = Plan::default();
        let Some(desired) = desired else {
            return plan;
        };
        let mut by_pod: HashMap<&str, Vec<&Container>> = HashMap::new();
        for c in &observed.containers {
            by_pod.entry(c.pod_uid.as_str()).or_default().push(c);
        }
        let wanted: HashSet<&str> = desired.iter().map(|p| p.meta().uid.as_str()).collect();
        // Pods gone from the API, or never ours: stop, then clean up (in
        // uid order, for a plan that does not depend on a hash).
        let mut gone: BTreeSet<String> = self
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
            let running: Vec<&Container> = cs
                .into_iter()
                .filter(|c| matches!(c.state, State::Running { .. }))
                .collect();
            if running.is_empty() {
                self.pods.remove(&uid);
                self.reported.remove(&uid);
                plan.runtime.pod_removals.push(uid);
            } else {
                plan.runtime
                    .kills
                    .extend(running.into_iter().map(|c| c.id.clone()));
            }
        }
        // Pods already running here keep their addresses: reserve those
        // before any new pod gets one (after an agent restart).
        for pod in desired {
            let uid = &pod.meta().uid;
            let ip = pod.status.as_ref().map_or("", |s| s.pod_ip.as_str());
            if !self.pods.contains_key(uid)
                && self.owns(ip)
                && !self.pods.values().any(|p| p.ip == ip)
            {
                let cs: Vec<Container> = by_pod
                    .get(uid.as_str())
                    .map(|v| v.iter().map(|c| (*c).clone()).collect())
                    .unwrap_or_default();
                let track = new_track(pod, &cs, ip.to_string(), now.wall);
                self.pods.insert(uid.clone(), track);
            }
        }
        let mut starts: Vec<ContainerSpec> = Vec::new();
        for pod in desired {
            let cs: Vec<Container> = by_pod
                .get(pod.meta().uid.as_str())
                .map(|v| v.iter().map(|c| (*c).clone()).collect())
                .unwrap_or_default();
            self.sync_pod(
                pod,
                &cs,
                (&observed.listening, &observed.config),
                now,
                &mut plan,
                &mut starts,
            );
        }
        // At most MAX_STARTS_PER_SYNC starts (in `desired`'s order: the
        // caller puts older pods first); pods left waiting are not reported
        // before their first start.
        let mut deferred: HashSet<String> = HashSet::new();
        if starts.len() > MAX_STARTS_PER_SYNC {
            for s in starts.drain(MAX_STARTS_PER_SYNC..) {
                deferred.insert(s.pod_uid);
            }
            plan.more_starts = true;
        }
        // Pods with a start in the plan are reported by the next sync,
        // which sees what the start did.
        let starting: HashSet<&str> = starts.iter().map(|s| s.pod_uid.as_str()).collect();
        let confirming: HashSet<&str> = plan
            .confirm_deletions
            .iter()
            .map(|(_, _, u)| u.as_str())
            .collect();
        let mut statuses = Vec::new();
        for pod in desired {
            let uid = &pod.meta().uid;
            if confirming.contains(uid.as_str())
                || starting.contains(uid.as_str())
                || !self.pods.contains_key(uid)
            {
                continue;
            }
            if deferred.contains(uid.as_str()) && !self.reported.contains_key(uid) {
                continue;
            }
            let status = self.status(pod, &observed.containers, now);
            if self.reported.get(uid) != Some(&status) {
                self.reported.insert(uid.clone(), status.clone());
                let mut p = pod.clone();
                p.status = Some(status);
                statuses.push(p);
            }
        }
        plan.statuses = statuses;
        plan.runtime.starts = starts;
        plan
    }

    fn sync_pod(
        &mut self,
        pod: &v1::Pod,
        cs: &[Container],
        (listening, snapshot): (&HashSet<SocketAddrV4>, &config::Snapshot),
        now: Now,
        plan: &mut Plan,
        starts: &mut Vec<ContainerSpec>,
    ) {
        let meta = pod.meta();
        let uid = meta.uid.clone();
        if !self.pods.contains_key(&uid) {
            let ip = self.pod_ip(pod, listening);
            let track = new_track(pod, cs, ip, now.wall);
            self.pods.insert(uid.clone(), track);
        }
        let deleting = !meta.deletion_timestamp.is_empty();
        let spec_grace = pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(DEFAULT_GRACE_SECS);
        let deletion_grace = seconds(meta.deletion_grace_period_seconds.unwrap_or(spec_grace));
        let pod_key = format!("{}/{}", meta.namespace, meta.name);
        let policy = restart_policy(pod);
        let spec_containers: &[v1::Container] =
            pod.spec.as_ref().map_or(&[], |s| s.containers.as_slice());
        let node = self.cfg.node_name.clone();
        let cfg = self.cfg.clone();
        let Some(pt) = self.pods.get_mut(&uid) else {
            return;
        };
        let ip = pt.ip.clone();
        let t = now.instant;
        // ConfigMap and Secret volumes: files written when new or changed
        // (in place while containers run); one not readable holds every
        // start of the pod back.
        let mut volumes: Resolved<()> = Resolved::Ready(());
        if !deleting {
            for v in pod.spec.iter().flat_map(|s| &s.volumes) {
                match config::volume_files(pod, v, snapshot) {
                    Some(Resolved::Ready(files))
                        if pt.volumes_written.get(&v.name) != Some(&files) =>
                    {
                        pt.volumes_written.insert(v.name.clone(), files.clone());
                        plan.runtime.volume_writes.push(VolumeWrite {
                            pod_uid: uid.clone(),
                            volume: v.name.clone(),
                            files,
                        });
                    }
                    Some(Resolved::NotYet) if volumes == Resolved::Ready(()) => {
                        volumes = Resolved::NotYet;
                    }
                    Some(Resolved::Refused(r, m)) => volumes = Resolved::Refused(r, m),
                    // Not a ConfigMap or Secret volume, its files already
                    // handed out, or a refusal already known.
                    _ => {}
                }
            }
        }
        let fields = PodFields {
            pod,
            pod_ip: &ip,
            host_ip: &cfg.address,
        };
        // Whether container `c` may start now: its volumes and
        // environment resolved (else it waits, with the reason when one is
        // known); its environment if so.
        let ready = |c: &v1::Container, track: &mut Track| -> Option<Vec<(String, String)>> {
            let r = match &volumes {
                Resolved::Ready(()) => config::env(c, &fields, snapshot),
                Resolved::NotYet => Resolved::NotYet,
                Resolved::Refused(reason, msg) => Resolved::Refused(reason.clone(), msg.clone()),
            };
            match r {
                Resolved::Ready(env) => Some(env),
                Resolved::NotYet => None,
                Resolved::Refused(reason, msg) => {
                    track.waiting = Some((reason, msg));
                    None
                }
            }
        };
        for c in spec_containers {
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
                plan.runtime.removals.push(old.id.clone());
            }
            match current.as_ref().map(|x| &x.state) {
                Some(State::Running { .. }) => {
                    let cur = current.as_ref().map(|x| x.id.clone()).unwrap_or_default();
                    if deleting {
                        let why = "the pod is being deleted";
                        stop(plan, track, &cur, &pod_key, why, t, deletion_grace);
                        continue;
                    }
                    // Probes of this start.
                    if track.probes.as_ref().is_none_or(|(id, _)| *id != cur) {
                        track.probes = Some((cur.clone(), ContainerProbes::new(c, t)));
                    }
                    let failed = track.probes.as_ref().and_then(|(_, p)| {
                        let liveness = p.liveness_failed().map(|w| (ProbeKind::Liveness, w));
                        liveness.or_else(|| p.startup_failed().map(|w| (ProbeKind::Startup, w)))
                    });
                    if let Some((kind, why)) = failed {
                        let why = format!("{kind} probe failed: {why}");
                        stop(plan, track, &cur, &pod_key, &why, t, seconds(spec_grace));
                        continue;
                    }
                    if let Some((_, probes)) = track.probes.as_mut() {
                        for kind in probes.due(t) {
                            if let Some(p) = probes.probe(kind).cloned() {
                                probes.sent(kind, t);
                                plan.probes.push(ProbeRequest {
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
                                        env: container_spec_env(
                                            pod,
                                            c,
                                            &ip,
                                            &node,
                                            &match config::env(c, &fields, snapshot) {
                                                Resolved::Ready(env) => env,
                                                _ => Vec::new(),
                                            },
                                        ),
                                        // The agent fills it from the runtime.
                                        exec_prefix: Vec::new(),
                                    },
                                });
                            }
                        }
                    }
                    // A stop we asked for that the grace ran out on.
                    if let Some((id, kill_at)) = &track.stopping {
                        if *id == cur && t >= *kill_at {
                            plan.runtime.kills.push(cur);
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
                            track.backoff_until = Some(t + d);
                            track.restarts = track.restarts.max(cur.attempt + 1);
                            track.last_terminated = Some(cur);
                        }
                    }
                    if deleting || !restarts(policy, *exit_code) {
                        continue;
                    }
                    if track.backoff_until.is_some_and(|u| t < u) {
                        continue;
                    }
                    if let Some(env) = ready(c, track) {
                        starts.push(container_spec(pod, c, track, &ip, &node, &env));
                    }
                }
                None => {
                    if deleting {
                        continue;
                    }
                    if track.backoff_until.is_some_and(|u| t < u) {
                        continue;
                    }
                    if let Some(env) = ready(c, track) {
                        starts.push(container_spec(pod, c, track, &ip, &node, &env));
                    }
                }
            }
        }
        // Confirmed from the listing alone: nothing of the pod runs (any
        // container, in the spec or not) and no start of it is planned.
        let running = cs.iter().any(|c| matches!(c.state, State::Running { .. }));
        if deleting && !running && !starts.iter().any(|s| s.pod_uid == uid) {
            plan.confirm_deletions
                .push((meta.namespace.clone(), meta.name.clone(), uid));
        }
    }

    /// How the starts of the last plan went: a container that could not
    /// start waits with the reason and is tried again after a back-off.
    pub fn started(&mut self, results: &[Started], now: Instant) {
        for (spec, r) in results {
            let Some(track) = self
                .pods
                .get_mut(&spec.pod_uid)
                .and_then(|p| p.containers.get_mut(&spec.name))
            else {
                continue;
            };
            match r {
                Ok(_) => {
                    track.waiting = None;
                    track.backoff_until = None;
                }
                Err(e) => {
                    let reason = match e {
                        StartError::ImageNotSupported(_) => "ImageNotSupported",
                        StartError::InvalidSpec(_) => "CreateContainerError",
                        StartError::Io(_) => "RunContainerError",
                        StartError::InvalidImageName(_) => "InvalidImageName",
                        StartError::ImagePull(_) => ERR_IMAGE_PULL,
                        StartError::ImageNeverPull(_) => "ErrImageNeverPull",
                    };
                    track.waiting = Some((reason.to_string(), e.to_string()));
                    // Try again later, backing off like a crash.
                    let d = next_backoff(
                        track.backoff,
                        START_ERROR_BACKOFF_BASE,
                        START_ERROR_BACKOFF_MAX,
                    );
                    track.backoff = Some(d);
                    track.backoff_until = Some(now + d);
                }
            }
        }
    }

    /// A volume's files could not be written: write them again next sync.
    pub fn volume_write_failed(&mut self, pod_uid: &str, volume: &str) {
        if let Some(p) = self.pods.get_mut(pod_uid) {
            p.volumes_written.remove(volume);
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
    fn status(&self, pod: &v1::Pod, containers: &[Container], now: Now) -> v1::PodStatus {
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
                        && track.is_some_and(|t| t.backoff_until.is_some_and(|u| now.instant < u))
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
                    let (mut reason, mut msg) = track
                        .and_then(|t| t.waiting.clone())
                        .unwrap_or_else(|| ("ContainerCreating".into(), String::new()));
                    // A failed pull shows as such for a while, then as
                    // the back-off before the next (as the kubelet does).
                    let failed_at = track.and_then(|t| Some(t.backoff_until? - t.backoff?));
                    if reason == ERR_IMAGE_PULL
                        && failed_at.is_some_and(|f| now.instant >= f + PULL_ERROR_SHOWN)
                    {
                        reason = "ImagePullBackOff".into();
                        msg = format!("Back-off pulling image {:?}", c.image);
                    }
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
                image_id: current.map(|x| x.image_id.clone()).unwrap_or_default(),
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
                .unwrap_or_else(|| format_rfc3339(now.wall))
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

/// A pod's bookkeeping when first seen (at `wall`): restart counts continue
/// from what the runtime and the pod say (adoption).
fn new_track(pod: &v1::Pod, cs: &[Container], ip: String, wall: SystemTime) -> PodTrack {
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
        start_time: wall,
        volumes_written: HashMap::new(),
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
            reason,
            started_at,
            finished_at,
        } => v1::ContainerState {
            terminated: Some(v1::ContainerStateTerminated {
                exit_code: exit_code.unwrap_or(137),
                signal: signal.unwrap_or(0),
                reason: match (reason, exit_code) {
                    (Some(r), _) => r.clone(),
                    (None, Some(0)) => "Completed".into(),
                    (None, Some(_)) => "Error".into(),
                    (None, None) => "ContainerStatusUnknown".into(),
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

/// Stop container `id` of `pod` (SIGTERM, SIGKILL once `grace` from the
/// first stop has passed; at once for no grace).
fn stop(
    plan: &mut Plan,
    track: &mut Track,
    id: &str,
    pod: &str,
    reason: &str,
    now: Instant,
    grace: Duration,
) {
    match track.stopping.as_mut() {
        Some((sid, kill_at)) if sid == id => {
            // A shorter grace (a deletion during a probe's stop) wins.
            *kill_at = (*kill_at).min(now + grace);
            if now >= *kill_at {
                plan.runtime.kills.push(id.to_string());
            }
        }
        _ => {
            plan.runtime.stops.push(Stop {
                container_id: id.to_string(),
                pod: pod.to_string(),
                reason: reason.to_string(),
            });
            if grace.is_zero() {
                plan.runtime.kills.push(id.to_string());
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
    env: &[(String, String)],
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
        env: container_spec_env(pod, c, ip, node, env),
        working_dir: c.working_dir.clone(),
        memory_limit_bytes: limit(c, "memory"),
        cpu_limit_millis: limit(c, "cpu"),
        cpu_request_millis: c
            .resources
            .as_ref()
            .and_then(|r| r.requests.get("cpu"))
            .and_then(|q| quantity::parse("cpu", q).ok()),
        pod_ip: ip.to_string(),
        hostname: pod
            .spec
            .as_ref()
            .map(|s| s.hostname.clone())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| pod.meta().name.clone()),
        subdomain: pod
            .spec
            .as_ref()
            .map(|s| s.subdomain.clone())
            .unwrap_or_default(),
        image_pull_policy: c.image_pull_policy.clone(),
        dns_policy: pod
            .spec
            .as_ref()
            .map(|s| s.dns_policy.clone())
            .unwrap_or_default(),
        mounts: c
            .volume_mounts
            .iter()
            .filter_map(|m| {
                let v = pod
                    .spec
                    .as_ref()?
                    .volumes
                    .iter()
                    .find(|v| v.name == m.name)?;
                let source = match (&v.empty_dir, &v.host_path) {
                    _ if v.config_map.is_some() || v.secret.is_some() => VolumeSource::Config,
                    (_, Some(h)) => VolumeSource::HostPath {
                        path: h.path.clone(),
                        kind: h.r#type.clone().unwrap_or_default(),
                    },
                    (d, None) => VolumeSource::EmptyDir {
                        memory: d.as_ref().is_some_and(|d| d.medium == "Memory"),
                        size_limit: d
                            .as_ref()
                            .filter(|d| !d.size_limit.is_empty())
                            .and_then(|d| quantity::parse("memory", &d.size_limit).ok()),
                    },
                };
                Some(MountSpec {
                    volume: m.name.clone(),
                    source,
                    container_path: m.mount_path.clone(),
                    read_only: m.read_only,
                    sub_path: m.sub_path.clone(),
                })
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::slice::from_ref;

    const NOTHING: [&str; 0] = [];

    /// The tests' clock: whole seconds since the test's start, on both
    /// clocks (the wall clock starts at 2023-11-14T22:13:20Z).
    struct Clock {
        base: Instant,
    }

    impl Clock {
        fn at(&self, secs: u64) -> Now {
            Now {
                instant: self.base + Duration::from_secs(secs),
                wall: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs),
            }
        }
    }

    /// What a runtime on the node keeps, changed only by applying plans and
    /// by the tests (a container exits when told to).
    #[derive(Default)]
    struct Node {
        containers: Vec<Container>,
        /// Every (address, port) something else listens on.
        listening: HashSet<SocketAddrV4>,
        /// Images it refuses.
        unsupported: Vec<String>,
        /// Whether SIGTERM ends a container (else only SIGKILL does).
        obeys_term: bool,
    }

    impl Node {
        fn running(&mut self, pod_uid: &str, name: &str, attempt: u32) {
            self.containers.push(Container {
                id: format!("{pod_uid}-{name}-{attempt}"),
                pod_uid: pod_uid.into(),
                name: name.into(),
                attempt,
                image: "img".into(),
                image_id: String::new(),
                state: State::Running {
                    pid: 1000 + attempt,
                    started_at: SystemTime::UNIX_EPOCH,
                },
            });
        }

        fn exit(&mut self, id: &str, code: i32) {
            for c in self.containers.iter_mut().filter(|c| c.id == id) {
                if let State::Running { started_at, .. } = c.state {
                    c.state = State::Exited {
                        exit_code: Some(code),
                        signal: None,
                        reason: None,
                        started_at,
                        finished_at: started_at,
                    };
                }
            }
        }

        /// Make a plan's runtime calls, as the agent does; how the starts
        /// went.
        fn apply(&mut self, calls: &RuntimeCalls) -> Vec<Started> {
            for s in &calls.stops {
                if self.obeys_term {
                    self.exit(&s.container_id, 143);
                }
            }
            for id in &calls.kills {
                self.exit(id, 137);
            }
            self.containers.retain(|c| {
                !calls.removals.contains(&c.id) && !calls.pod_removals.contains(&c.pod_uid)
            });
            let mut results = Vec::new();
            for spec in &calls.starts {
                let r = if self.unsupported.contains(&spec.image) {
                    Err(StartError::ImageNotSupported(format!(
                        "image {:?} cannot run here",
                        spec.image
                    )))
                } else {
                    self.running(&spec.pod_uid, &spec.name, spec.attempt);
                    Ok(self.containers[self.containers.len() - 1].clone())
                };
                results.push((spec.clone(), r));
            }
            results
        }
    }

    /// A kubelet of node n1 (127.0.0.11), its node and its clock, run as
    /// the agent runs them. Every status reported lands before the next
    /// round: the pods a test passes are seen with the status last written
    /// (as the watch delivers it).
    struct Harness {
        kubelet: Kubelet,
        node: Node,
        clock: Clock,
        written: HashMap<String, v1::PodStatus>,
        /// The ConfigMaps and Secrets the node has read.
        config: std::sync::Arc<config::Snapshot>,
    }

    impl Harness {
        fn new() -> Harness {
            Harness {
                kubelet: Kubelet::new(Config::new("n1", Ipv4Addr::new(127, 0, 0, 11))),
                node: Node::default(),
                clock: Clock {
                    base: Instant::now(),
                },
                written: HashMap::new(),
                config: Default::default(),
            }
        }

        /// One round at `secs`: check the addresses the kubelet names,
        /// sync, apply the plan to the node, hand back how the starts went.
        fn round(&mut self, desired: Option<&[v1::Pod]>, secs: u64) -> Plan {
            let desired: Option<Vec<v1::Pod>> = desired.map(|pods| {
                pods.iter()
                    .map(|p| {
                        let mut p = p.clone();
                        if let Some(s) = self.written.get(&p.meta().uid) {
                            p.status = Some(s.clone());
                        }
                        p
                    })
                    .collect()
            });
            let desired = desired.as_deref();
            let check = desired.map_or_else(Vec::new, |d| self.kubelet.addresses_to_check(d));
            let observed = Observed {
                containers: self.node.containers.clone(),
                listening: check
                    .into_iter()
                    .filter(|a| self.node.listening.contains(a))
                    .collect(),
                config: self.config.clone(),
            };
            let now = self.clock.at(secs);
            let plan = self.kubelet.sync(desired, &observed, now);
            let results = self.node.apply(&plan.runtime);
            self.kubelet.started(&results, now.instant);
            for p in &plan.statuses {
                let status = p.status.clone().unwrap_or_default();
                self.written.insert(p.meta().uid.clone(), status);
            }
            plan
        }

        /// One round; the plan, summarized.
        fn sync(&mut self, desired: &[v1::Pod], secs: u64) -> Vec<String> {
            summary(&self.round(Some(desired), secs))
        }

        /// A probe's outcome arrives at `secs`.
        fn probe_result(&mut self, r: &ProbeRequest, outcome: Outcome, secs: u64) {
            let at = self.clock.at(secs).instant;
            self.kubelet.probe_result(
                &r.pod_uid,
                &r.container,
                &r.container_id,
                r.kind,
                &outcome,
                at,
            );
        }
    }

    /// A plan as lines: runtime calls in the order they are made, then
    /// statuses, confirmations and probes.
    fn summary(plan: &Plan) -> Vec<String> {
        let r = &plan.runtime;
        let mut out: Vec<String> = Vec::new();
        out.extend(
            r.stops
                .iter()
                .map(|s| format!("stop {} ({})", s.container_id, s.reason)),
        );
        out.extend(r.kills.iter().map(|id| format!("kill {id}")));
        out.extend(r.removals.iter().map(|id| format!("remove {id}")));
        out.extend(r.pod_removals.iter().map(|uid| format!("remove_pod {uid}")));
        out.extend(r.volume_writes.iter().map(|w| {
            let files: Vec<&str> = w.files.iter().map(|f| f.path.as_str()).collect();
            format!(
                "write_volume {}/{} [{}]",
                w.pod_uid,
                w.volume,
                files.join(",")
            )
        }));
        out.extend(
            r.starts
                .iter()
                .map(|s| format!("start {}-{}-{}", s.pod_uid, s.name, s.attempt)),
        );
        if plan.more_starts {
            out.push("more_starts".into());
        }
        out.extend(plan.statuses.iter().map(status_line));
        out.extend(
            plan.confirm_deletions
                .iter()
                .map(|(ns, name, _)| format!("confirm {ns}/{name}")),
        );
        out.extend(
            plan.probes
                .iter()
                .map(|p| format!("probe {} {}/{}", p.kind, p.pod_uid, p.container)),
        );
        out
    }

    /// `status <uid> <phase> Ready|NotReady ip=<ip> <container>=<state>,...`
    fn status_line(p: &v1::Pod) -> String {
        let s = p.status.clone().unwrap_or_default();
        let containers: Vec<String> = s
            .container_statuses
            .iter()
            .map(|c| {
                let st = c.state.clone().unwrap_or_default();
                let state = match (&st.running, &st.waiting, &st.terminated) {
                    (Some(_), _, _) => "running".to_string(),
                    (_, Some(w), _) => format!("waiting:{}", w.reason),
                    (_, _, Some(t)) => format!("exited:{}", t.exit_code),
                    _ => "none".to_string(),
                };
                let ready = if c.ready { ",ready" } else { "" };
                format!("{}={state}{ready},restarts={}", c.name, c.restart_count)
            })
            .collect();
        format!(
            "status {} {} {} ip={} {}",
            p.meta().uid,
            s.phase,
            if ready(&s) { "Ready" } else { "NotReady" },
            s.pod_ip,
            containers.join(" ")
        )
    }

    fn ready(s: &v1::PodStatus) -> bool {
        s.conditions
            .iter()
            .any(|c| c.r#type == "Ready" && c.status == "True")
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

    fn with_port(mut p: v1::Pod, port: i32) -> v1::Pod {
        if let Some(spec) = p.spec.as_mut() {
            spec.containers[0].ports = vec![v1::ContainerPort {
                container_port: port,
                ..Default::default()
            }];
        }
        p
    }

    fn with_ip(mut p: v1::Pod, ip: &str) -> v1::Pod {
        p.status = Some(v1::PodStatus {
            pod_ip: ip.into(),
            ..Default::default()
        });
        p
    }

    fn pod_ips(plan: &Plan) -> Vec<(String, String)> {
        plan.runtime
            .starts
            .iter()
            .map(|s| {
                let ip = s.env.get("POD_IP").cloned().unwrap_or_default();
                (s.pod_uid.clone(), ip)
            })
            .collect()
    }

    fn pair(a: &str, b: &str) -> (String, String) {
        (a.to_string(), b.to_string())
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
    fn nothing_happens_before_the_first_list() {
        let mut h = Harness::new();
        h.node.running("old", "main", 0);
        assert_eq!(summary(&h.round(None, 0)), NOTHING);
        // Once listed, a container of an unknown pod is an orphan: killed,
        // then its files removed.
        assert_eq!(h.sync(&[], 0), ["kill old-main-0"]);
        assert_eq!(h.sync(&[], 0), ["remove_pod old"]);
        assert!(h.node.containers.is_empty());
        assert_eq!(h.sync(&[], 0), NOTHING);
    }

    #[test]
    fn a_pod_starts_runs_and_is_ready_with_an_ip_of_its_own() {
        let mut h = Harness::new();
        let p = pod("u1", "", "builtin/sleep");
        let plan = h.round(Some(from_ref(&p)), 0);
        // The start's status waits for the sync that sees what it did.
        assert_eq!(summary(&plan), ["start u1-main-0"]);
        assert!(plan.resync(), "the next sync reports the pod");
        assert_eq!(pod_ips(&plan), [pair("u1", "127.11.0.1")]);
        let plan = h.round(Some(from_ref(&p)), 1);
        assert_eq!(
            summary(&plan),
            ["status u1 Running Ready ip=127.11.0.1 main=running,ready,restarts=0"]
        );
        assert!(!plan.resync());
        let st = plan.statuses[0].status.clone().unwrap_or_default();
        assert_eq!(st.host_ip, "127.0.0.11");
        // Wall times from the sync's clock: the pod's start when first
        // seen, a condition's transition when it was computed.
        assert_eq!(st.start_time, format_rfc3339(h.clock.at(0).wall));
        for c in &st.conditions {
            assert_eq!(c.last_transition_time, format_rfc3339(h.clock.at(1).wall));
        }
        // Nothing changed: nothing to report.
        assert_eq!(h.sync(from_ref(&p), 2), NOTHING);
        // A second pod gets the next address.
        let q = pod("u2", "", "builtin/sleep");
        let both = [p, q];
        let plan = h.round(Some(&both), 2);
        assert_eq!(summary(&plan), ["start u2-main-0"]);
        assert_eq!(pod_ips(&plan), [pair("u2", "127.11.0.2")]);
        assert_eq!(
            h.sync(&both, 2),
            ["status u2 Running Ready ip=127.11.0.2 main=running,ready,restarts=0"]
        );
    }

    #[test]
    fn a_new_pod_skips_addresses_something_else_listens_on() {
        let mut h = Harness::new();
        // A stray process holds 127.11.0.1:8080 and 127.11.0.2:8080.
        h.node.listening = ["127.11.0.1:8080", "127.11.0.2:8080"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        let p = with_port(pod("u1", "", "builtin/http-echo"), 8080);
        // The addresses to check: the first ADDRESS_PROBES, and one more
        // for the new pod, on its port.
        let check = h.kubelet.addresses_to_check(from_ref(&p));
        assert_eq!(check.len(), ADDRESS_PROBES + 1);
        let addr = |a: &str| a.parse::<SocketAddrV4>().unwrap();
        assert_eq!(check[0], addr("127.11.0.1:8080"));
        assert_eq!(check[ADDRESS_PROBES], addr("127.11.0.65:8080"));
        let plan = h.round(Some(from_ref(&p)), 0);
        assert_eq!(pod_ips(&plan), [pair("u1", "127.11.0.3")]);
        // A pod without ports takes the first address; nothing to check.
        let q = pod("u2", "", "builtin/sleep");
        let both = [p, q];
        assert!(h.kubelet.addresses_to_check(&both).is_empty());
        let plan = h.round(Some(&both), 0);
        assert_eq!(
            summary(&plan),
            [
                "start u2-main-0",
                "status u1 Running Ready ip=127.11.0.3 main=running,ready,restarts=0"
            ]
        );
        assert_eq!(pod_ips(&plan), [pair("u2", "127.11.0.1")]);
    }

    #[test]
    fn adopted_pods_keep_their_addresses_before_new_pods_get_one() {
        let mut h = Harness::new();
        let new = pod("a", "", "img");
        let old = with_ip(pod("b", "", "img"), "127.11.0.1");
        // The new pod comes first in the list; the old one keeps .1.
        let plan = h.round(Some(&[new, old]), 0);
        assert_eq!(
            pod_ips(&plan),
            [pair("a", "127.11.0.2"), pair("b", "127.11.0.1")]
        );
    }

    #[test]
    fn a_stale_status_seen_in_the_api_is_reported_again() {
        let mut h = Harness::new();
        let p = pod("u1", "", "builtin/sleep");
        h.round(Some(from_ref(&p)), 0);
        let plan = h.round(Some(from_ref(&p)), 0);
        let written = plan.statuses[0].clone();
        // The API shows what was written: nothing to do.
        h.kubelet.observed(&written);
        assert_eq!(h.sync(from_ref(&p), 0), NOTHING);
        // It shows an older status (Pending, no address): written again.
        let mut stale = written.clone();
        stale.status = Some(v1::PodStatus {
            phase: "Pending".into(),
            ..Default::default()
        });
        h.kubelet.observed(&stale);
        assert_eq!(
            h.sync(from_ref(&p), 0),
            ["status u1 Running Ready ip=127.11.0.1 main=running,ready,restarts=0"]
        );
    }

    #[test]
    fn a_burst_of_pods_starts_in_batches_reported_as_they_start() {
        let mut h = Harness::new();
        let pods: Vec<v1::Pod> = (0..MAX_STARTS_PER_SYNC + 2)
            .map(|i| pod(&format!("u{i:02}"), "", "builtin/sleep"))
            .collect();
        let start = |i: usize| format!("start u{i:02}-main-0");
        let running = |i: usize| {
            format!(
                "status u{i:02} Running Ready ip=127.11.0.{} main=running,ready,restarts=0",
                i + 1
            )
        };
        // The oldest MAX_STARTS_PER_SYNC first; none reported yet.
        let mut want: Vec<String> = (0..MAX_STARTS_PER_SYNC).map(start).collect();
        want.push("more_starts".into());
        assert_eq!(h.sync(&pods, 0), want);
        // The rest start while the first batch is reported, Running.
        let mut want: Vec<String> = (MAX_STARTS_PER_SYNC..pods.len()).map(start).collect();
        want.extend((0..MAX_STARTS_PER_SYNC).map(running));
        assert_eq!(h.sync(&pods, 0), want);
        let want: Vec<String> = (MAX_STARTS_PER_SYNC..pods.len()).map(running).collect();
        assert_eq!(h.sync(&pods, 0), want);
        assert_eq!(h.sync(&pods, 0), NOTHING);
    }

    #[test]
    fn a_crashing_container_restarts_with_a_growing_back_off() {
        let mut h = Harness::new();
        let p = [pod("u1", "Always", "img")];
        assert_eq!(h.sync(&p, 0), ["start u1-main-0"]);
        assert_eq!(
            h.sync(&p, 0),
            ["status u1 Running Ready ip=127.11.0.1 main=running,ready,restarts=0"]
        );
        h.node.exit("u1-main-0", 1);
        let plan = h.round(Some(&p), 0);
        assert_eq!(
            summary(&plan),
            ["status u1 Running NotReady ip=127.11.0.1 main=waiting:CrashLoopBackOff,restarts=1"]
        );
        let last = plan.statuses[0]
            .status
            .as_ref()
            .and_then(|s| s.container_statuses[0].last_state.as_ref())
            .and_then(|l| l.terminated.as_ref())
            .map(|t| t.exit_code);
        assert_eq!(last, Some(1));
        // Backing off 1 s.
        assert_eq!(h.sync(&p, 0), NOTHING);
        assert_eq!(h.sync(&p, 1), ["start u1-main-1"]);
        assert_eq!(
            h.sync(&p, 1),
            [
                "remove u1-main-0",
                "status u1 Running Ready ip=127.11.0.1 main=running,ready,restarts=1"
            ]
        );
        h.node.exit("u1-main-1", 1);
        assert_eq!(
            h.sync(&p, 1),
            ["status u1 Running NotReady ip=127.11.0.1 main=waiting:CrashLoopBackOff,restarts=2"]
        );
        // Now 2 s.
        assert_eq!(h.sync(&p, 2), NOTHING);
        assert_eq!(h.sync(&p, 3), ["start u1-main-2"]);
    }

    #[test]
    fn restart_policies_and_terminal_phases() {
        for (policy, code, status, restarted) in [
            (
                "Never",
                0,
                "status u Succeeded NotReady ip=127.11.0.1 main=exited:0,restarts=0",
                false,
            ),
            (
                "Never",
                3,
                "status u Failed NotReady ip=127.11.0.1 main=exited:3,restarts=0",
                false,
            ),
            (
                "OnFailure",
                0,
                "status u Succeeded NotReady ip=127.11.0.1 main=exited:0,restarts=0",
                false,
            ),
            (
                "OnFailure",
                3,
                "status u Running NotReady ip=127.11.0.1 main=waiting:CrashLoopBackOff,restarts=1",
                true,
            ),
            (
                "Always",
                0,
                "status u Running NotReady ip=127.11.0.1 main=waiting:CrashLoopBackOff,restarts=1",
                true,
            ),
        ] {
            let mut h = Harness::new();
            let p = [pod("u", policy, "img")];
            h.sync(&p, 0);
            h.sync(&p, 0);
            h.node.exit("u-main-0", code);
            assert_eq!(h.sync(&p, 0), [status], "{policy} exit {code}");
            let want: &[&str] = if restarted { &["start u-main-1"] } else { &[] };
            assert_eq!(h.sync(&p, 2), want, "{policy} exit {code}");
        }
    }

    #[test]
    fn config_maps_and_secrets_gate_starts_and_feed_env_and_volumes() {
        let mut h = Harness::new();
        let mut p = pod("u", "", "img");
        if let Some(spec) = p.spec.as_mut() {
            spec.volumes.push(v1::Volume {
                name: "cfg".into(),
                config_map: Some(v1::ConfigMapVolumeSource {
                    name: "app".into(),
                    ..Default::default()
                }),
                ..Default::default()
            });
            let c = &mut spec.containers[0];
            c.env.push(v1::EnvVar {
                name: "PASSWORD".into(),
                value_from: Some(v1::EnvVarSource {
                    secret_key_ref: Some(v1::SecretKeySelector {
                        name: "db".into(),
                        key: "pw".into(),
                        optional: None,
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            });
            c.volume_mounts.push(v1::VolumeMount {
                name: "cfg".into(),
                mount_path: "/etc/app".into(),
                ..Default::default()
            });
        }
        let p = [p];
        let key = |kind, name: &str| (kind, "default".to_string(), name.to_string());
        let data = |k: &str, v: &str| config::Data {
            text: [(k.to_string(), v.to_string())].into(),
            binary: BTreeMap::new(),
        };
        use keelson_model::Kind;
        // Nothing read yet: nothing decided, no start.
        let plan = h.round(Some(&p), 0);
        assert!(plan.runtime.starts.is_empty(), "{:?}", summary(&plan));
        // The ConfigMap read, the Secret missing: the volume is written,
        // the container waits with the kubelet's reason.
        let mut snap = config::Snapshot::new();
        snap.insert(key(Kind::ConfigMap, "app"), Some(data("mode", "prod")));
        snap.insert(key(Kind::Secret, "db"), None);
        h.config = std::sync::Arc::new(snap.clone());
        let plan = h.round(Some(&p), 1);
        assert_eq!(
            summary(&plan),
            [
                "write_volume u/cfg [mode]",
                "status u Pending NotReady ip=127.11.0.1 main=waiting:CreateContainerConfigError,restarts=0"
            ]
        );
        let waiting = plan.statuses[0]
            .status
            .as_ref()
            .and_then(|s| s.container_statuses[0].state.as_ref())
            .and_then(|s| s.waiting.as_ref())
            .map(|w| w.message.clone());
        assert_eq!(waiting.as_deref(), Some("secret \"db\" not found"));
        // The Secret appears: the container starts with it in its env, the
        // volume mounted from the pod's ConfigMap directory.
        snap.insert(
            key(Kind::Secret, "db"),
            Some(config::Data {
                text: BTreeMap::new(),
                binary: [("pw".to_string(), b"hunter2".to_vec())].into(),
            }),
        );
        h.config = std::sync::Arc::new(snap.clone());
        let plan = h.round(Some(&p), 2);
        assert_eq!(summary(&plan), ["start u-main-0"]);
        let spec = &plan.runtime.starts[0];
        assert_eq!(
            spec.env.get("PASSWORD").map(String::as_str),
            Some("hunter2")
        );
        assert_eq!(spec.mounts[0].source, VolumeSource::Config);
        assert_eq!(spec.mounts[0].container_path, "/etc/app");
        // The ConfigMap changes while the container runs: written in
        // place, once, and the container is not restarted.
        snap.insert(key(Kind::ConfigMap, "app"), Some(data("level", "3")));
        h.config = std::sync::Arc::new(snap);
        let plan = h.round(Some(&p), 3);
        let lines = summary(&plan);
        assert_eq!(lines[0], "write_volume u/cfg [level]", "{lines:?}");
        assert!(
            !lines
                .iter()
                .any(|l| l.starts_with("start") || l.starts_with("stop")),
            "{lines:?}"
        );
        assert_eq!(h.sync(&p, 4), NOTHING);
    }

    #[test]
    fn an_image_it_cannot_run_leaves_the_pod_waiting() {
        let mut h = Harness::new();
        h.node.unsupported = vec!["nginx".into()];
        let p = [pod("u", "", "nginx")];
        assert_eq!(h.sync(&p, 0), ["start u-main-0"]);
        let plan = h.round(Some(&p), 0);
        assert_eq!(
            summary(&plan),
            ["status u Pending NotReady ip=127.11.0.1 main=waiting:ImageNotSupported,restarts=0"]
        );
        let message = plan.statuses[0]
            .status
            .as_ref()
            .and_then(|s| s.container_statuses[0].state.as_ref())
            .and_then(|s| s.waiting.as_ref())
            .map(|w| w.message.clone());
        assert_eq!(message.as_deref(), Some("image \"nginx\" cannot run here"));
        // Tried again after a back-off (1 s, then 2 s).
        assert_eq!(h.sync(&p, 0), NOTHING);
        assert_eq!(h.sync(&p, 1), ["start u-main-0"]);
        assert_eq!(h.sync(&p, 2), NOTHING);
        assert_eq!(h.sync(&p, 3), ["start u-main-0"]);
    }

    #[test]
    fn deletion_stops_gracefully_then_kills_then_confirms() {
        let mut h = Harness::new();
        let mut p = pod("u", "", "img");
        h.sync(from_ref(&p), 0);
        h.sync(from_ref(&p), 0);
        p.meta_mut().deletion_timestamp = "2024-01-01T00:00:00Z".into();
        p.meta_mut().deletion_grace_period_seconds = Some(5);
        let p = [p];
        assert_eq!(h.sync(&p, 0), ["stop u-main-0 (the pod is being deleted)"]);
        // Within the grace period.
        assert_eq!(h.sync(&p, 4), NOTHING);
        assert_eq!(h.sync(&p, 5), ["kill u-main-0"]);
        // Confirmed once the listing shows nothing running (every sync,
        // until the pod is gone: the agent sends it once).
        assert_eq!(h.sync(&p, 6), ["confirm default/p-u"]);
        assert_eq!(h.sync(&p, 7), ["confirm default/p-u"]);
        // Gone from the API: its files go.
        assert_eq!(h.sync(&[], 8), ["remove_pod u"]);
        assert!(h.node.containers.is_empty());
    }

    #[test]
    fn a_deletion_without_grace_kills_at_once_and_confirms_from_the_next_listing() {
        let mut h = Harness::new();
        let mut p = pod("u", "", "img");
        h.sync(from_ref(&p), 0);
        h.sync(from_ref(&p), 0);
        p.meta_mut().deletion_timestamp = "2024-01-01T00:00:00Z".into();
        p.meta_mut().deletion_grace_period_seconds = Some(0);
        let p = [p];
        // The listing this sync was given shows it running: no
        // confirmation yet.
        assert_eq!(
            h.sync(&p, 0),
            ["stop u-main-0 (the pod is being deleted)", "kill u-main-0"]
        );
        assert_eq!(h.sync(&p, 0), ["confirm default/p-u"]);
    }

    #[test]
    fn a_pod_gone_from_the_api_is_killed_and_cleaned_up() {
        let mut h = Harness::new();
        h.sync(&[pod("u", "", "img")], 0);
        assert_eq!(h.sync(&[], 0), ["kill u-main-0"]);
        assert_eq!(h.sync(&[], 0), ["remove_pod u"]);
        assert_eq!(h.sync(&[], 0), NOTHING);
    }

    #[test]
    fn running_containers_are_adopted_after_a_restart() {
        let mut h = Harness::new();
        // The runtime already runs attempt 2 of the pod's container.
        h.node.running("u", "main", 2);
        let p = [with_ip(pod("u", "", "img"), "127.11.0.9")];
        // Nothing started or stopped; the pod keeps its address.
        assert_eq!(
            h.sync(&p, 0),
            ["status u Running Ready ip=127.11.0.9 main=running,ready,restarts=2"]
        );
    }

    #[test]
    fn a_container_with_a_readiness_probe_is_not_ready_until_it_passes() {
        let mut h = Harness::new();
        let mut p = pod("u", "", "img");
        if let Some(s) = p.spec.as_mut() {
            s.containers[0].readiness_probe = Some(tcp_probe(1, 0));
        }
        let p = [p];
        assert_eq!(h.sync(&p, 0), ["start u-main-0"]);
        // Reported Running, not Ready, before its readiness probe passed.
        let plan = h.round(Some(&p), 0);
        assert_eq!(
            summary(&plan),
            [
                "status u Running NotReady ip=127.11.0.1 main=running,restarts=0",
                "probe Readiness u/main"
            ]
        );
        assert_eq!(plan.probes[0].target.pod_ip, "127.11.0.1");
        h.probe_result(&plan.probes[0], Outcome::Success, 0);
        assert_eq!(
            h.sync(&p, 0),
            ["status u Running Ready ip=127.11.0.1 main=running,ready,restarts=0"]
        );
        // Not again before its period, nor while one is in flight.
        assert_eq!(h.sync(&p, 1), ["probe Readiness u/main"]);
        assert_eq!(h.sync(&p, 2), NOTHING);
    }

    #[test]
    fn a_failing_liveness_probe_restarts_the_container() {
        let mut h = Harness::new();
        h.node.obeys_term = true;
        let mut p = pod("u", "", "img");
        if let Some(s) = p.spec.as_mut() {
            s.containers[0].liveness_probe = Some(tcp_probe(1, 2));
        }
        let p = [p];
        assert_eq!(h.sync(&p, 0), ["start u-main-0"]);
        let plan = h.round(Some(&p), 0);
        assert_eq!(
            summary(&plan),
            [
                "status u Running Ready ip=127.11.0.1 main=running,ready,restarts=0",
                "probe Liveness u/main"
            ]
        );
        let refused = || Outcome::Failure("refused".into());
        h.probe_result(&plan.probes[0], refused(), 0);
        let plan = h.round(Some(&p), 1);
        assert_eq!(summary(&plan), ["probe Liveness u/main"]);
        h.probe_result(&plan.probes[0], refused(), 1);
        // The failure threshold (2) is reached: stopped with the pod's grace.
        assert_eq!(
            h.sync(&p, 2),
            ["stop u-main-0 (Liveness probe failed: refused)"]
        );
        // It exited on SIGTERM; the restart waits out the first back-off.
        assert_eq!(
            h.sync(&p, 3),
            ["status u Running NotReady ip=127.11.0.1 main=waiting:CrashLoopBackOff,restarts=1"]
        );
        assert_eq!(h.sync(&p, 4), ["start u-main-1"]);
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
