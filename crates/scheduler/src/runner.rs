//! The scheduler's loop, the IO shell around the pure core.
//!
//! One task owns the scheduler's state and is driven by events: the pod and
//! node watches, the results of binds, leadership changes and a timer.
//! - **Cache.** A [`NodeInfo`] per node with the pods bound (or assumed)
//!   on it, kept up to date incrementally from the watches.
//! - **Queue.** Unscheduled pods wait in a queue ordered by priority
//!   (highest first), then creation time, then arrival. A pod no node fits
//!   gets `PodScheduled=False` with the reasons and a `FailedScheduling`
//!   event, and waits out a backoff (1 s doubling to 10 s); any change to
//!   the nodes, or a bound pod going away, shortens every wait to a second
//!   after the pod's last try (so churn retries a pod at most once a
//!   second).
//! - **Decisions** run only while this instance holds the
//!   `kube-system/keelson-scheduler` leadership lease, once both watches
//!   have delivered their first list, over a sample of the nodes in large
//!   clusters ([`feasible_nodes_to_find`]).
//! - **Binds** are compare-and-swap updates of the pod on the resourceVersion
//!   it was read at (so a pod is never bound twice, even by two instances),
//!   up to [`Options::binds_in_flight`] at a time. The pod is *assumed* on its
//!   node as soon as it is decided, so the next decision sees it; a bind that
//!   fails forgets the assumption and requeues the pod. Each decision is
//!   numbered and a bind's result counts only for its own decision (a late
//!   result for a pod deleted and created again is ignored).

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use futures::StreamExt;
use keelson_proto::v1;
use keelson_sdk::watcher::Event;
use keelson_sdk::{
    watcher, Api, Client, Error, Involved, LeaderElector, ListParams, Recorder, Resource,
};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::node_info::NodeInfo;
use crate::schedule::{feasible_nodes_to_find, schedule_sampled};

/// The election every scheduler instance runs in.
pub const ELECTION: (&str, &str) = ("kube-system", "keelson-scheduler");
/// TTL of the leadership lease, in seconds: a dead leader is replaced
/// within about this long (plus a Raft election when it also led the
/// store, whose new leader gives every lease a full TTL).
pub const LEASE_TTL_SECS: i64 = 2;
/// The component name in events.
pub const COMPONENT: &str = "keelson-scheduler";
/// Backoff of an unschedulable pod: doubles from the first to the last.
const BACKOFF_FIRST_MS: u64 = 1_000;
const BACKOFF_MAX_MS: u64 = 10_000;
/// Backoff after a bind that failed (conflict or unavailable).
const BIND_RETRY_MS: u64 = 200;
/// Pods decided per turn of the loop before events are looked at again.
const DECISIONS_PER_TURN: usize = 64;
/// How often backoffs are checked.
const TICK_MS: u64 = 100;

/// Tuning of a scheduler instance.
#[derive(Clone, Debug)]
pub struct Options {
    /// Names this instance in the leadership lease.
    pub identity: String,
    /// Binds (and unschedulable-marks) in flight at once.
    pub binds_in_flight: usize,
}

impl Options {
    pub fn new(identity: &str) -> Options {
        Options {
            identity: identity.to_string(),
            binds_in_flight: 256,
        }
    }
}

/// A pod's key, `namespace/name` (the reflectors' key).
fn key_of(p: &v1::Pod) -> String {
    keelson_sdk::watcher::object_key(p)
}

fn node_of(p: &v1::Pod) -> &str {
    p.spec.as_ref().map_or("", |s| s.node_name.as_str())
}

fn is_terminal(p: &v1::Pod) -> bool {
    p.status
        .as_ref()
        .is_some_and(|s| s.phase == "Succeeded" || s.phase == "Failed")
}

/// A queued pod's place: priority (highest first), creation time, arrival.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct QueueKey {
    priority: Reverse<i32>,
    created: String,
    seq: u64,
    key: String,
}

enum Outcome {
    /// The bind of decision `attempt` landed.
    Bound(Box<v1::Pod>, u64),
    /// The bind of decision `attempt` failed; `conflict`: the pod changed
    /// or went away meanwhile (anything else backs off longer).
    BindFailed {
        key: String,
        attempt: u64,
        conflict: bool,
    },
    Marked,
}

/// A pod waiting out a backoff.
struct Waiting {
    /// When it goes back in the queue.
    until: Instant,
    /// When it was last tried.
    tried: Instant,
}

/// Everything the scheduler knows, owned by its one task. Pure bookkeeping:
/// no IO here, so it is tested directly.
#[derive(Default)]
struct State {
    nodes: Vec<NodeInfo>,
    node_index: HashMap<String, usize>,
    /// Where each bound or assumed pod is accounted.
    placed: HashMap<String, String>,
    /// Pods bound to a node not (yet) in the cache, by node.
    unplaced: HashMap<String, Vec<v1::Pod>>,
    /// Unbound pods, latest version seen.
    pending: HashMap<String, (v1::Pod, QueueKey)>,
    queue: BTreeSet<QueueKey>,
    /// Pods waiting out a backoff.
    waiting: HashMap<String, Waiting>,
    /// The last backoff of each pod that failed, for doubling; forgotten
    /// once the pod is bound or gone.
    last_backoff: HashMap<String, u64>,
    /// Pods decided and being bound: their node and the decision's number.
    assumed: HashMap<String, (String, u64)>,
    attempts: u64,
    seq: u64,
    next_start: usize,
    /// Both watches have delivered their first list: decisions may start.
    pods_synced: bool,
    nodes_synced: bool,
}

impl State {
    fn synced(&self) -> bool {
        self.pods_synced && self.nodes_synced
    }

    fn account(&mut self, key: &str, pod: v1::Pod) {
        let node = node_of(&pod).to_string();
        match self.node_index.get(&node) {
            Some(&i) => self.nodes[i].add_pod(pod),
            None => self.unplaced.entry(node.clone()).or_default().push(pod),
        }
        self.placed.insert(key.to_string(), node);
    }

    fn unaccount(&mut self, key: &str) {
        let Some(node) = self.placed.remove(key) else {
            return;
        };
        let (ns, name) = key.split_once('/').unwrap_or(("", key));
        match self.node_index.get(&node) {
            Some(&i) => {
                self.nodes[i].remove_pod(ns, name);
            }
            None => {
                if let Some(v) = self.unplaced.get_mut(&node) {
                    v.retain(|p| key_of(p) != key);
                }
            }
        }
    }

    fn dequeue(&mut self, key: &str) {
        if let Some((_, qk)) = self.pending.remove(key) {
            self.queue.remove(&qk);
        }
        self.waiting.remove(key);
        self.last_backoff.remove(key);
    }

    /// The cluster changed (a node came or changed, a bound pod went):
    /// pods waiting out a backoff may go back once a second has passed
    /// since they were last tried, however long their backoff. Their
    /// doubling is kept, so churn retries each pod at most once a second.
    fn cluster_changed(&mut self) {
        let soon = Duration::from_millis(BACKOFF_FIRST_MS);
        for w in self.waiting.values_mut() {
            w.until = w.until.min(w.tried + soon);
        }
    }

    fn on_pod(&mut self, pod: v1::Pod) {
        let key = key_of(&pod);
        let deleting = !pod.meta().deletion_timestamp.is_empty();
        if !node_of(&pod).is_empty() {
            // Bound (by us or anyone): account it where it is.
            let was_held = self.placed.contains_key(&key) && !self.assumed.contains_key(&key);
            self.assumed.remove(&key);
            self.dequeue(&key);
            self.unaccount(&key);
            if is_terminal(&pod) {
                if was_held {
                    self.cluster_changed();
                }
            } else {
                self.account(&key, pod);
            }
            return;
        }
        if deleting || is_terminal(&pod) {
            self.forget(&key);
            return;
        }
        let priority = pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0);
        let qk = match self.pending.get(&key) {
            Some((_, qk)) => qk.clone(),
            None => {
                self.seq += 1;
                QueueKey {
                    priority: Reverse(priority),
                    created: pod.meta().creation_timestamp.clone(),
                    seq: self.seq,
                    key: key.clone(),
                }
            }
        };
        if !self.assumed.contains_key(&key) && !self.waiting.contains_key(&key) {
            self.queue.insert(qk.clone());
        }
        self.pending.insert(key, (pod, qk));
    }

    fn forget(&mut self, key: &str) {
        self.assumed.remove(key);
        self.dequeue(key);
        self.unaccount(key);
    }

    fn on_pod_deleted(&mut self, pod: &v1::Pod) {
        let key = key_of(pod);
        let held = self.placed.contains_key(&key) && !self.assumed.contains_key(&key);
        self.forget(&key);
        if held {
            self.cluster_changed();
        }
    }

    fn on_pods_relisted(&mut self, pods: Vec<v1::Pod>) {
        let assumed = std::mem::take(&mut self.assumed);
        for info in &mut self.nodes {
            *info = NodeInfo::new(info.node().clone(), []);
        }
        self.placed.clear();
        self.unplaced.clear();
        self.pending.clear();
        self.queue.clear();
        self.waiting.clear();
        self.last_backoff.clear();
        for p in pods {
            self.on_pod(p);
        }
        for (key, (node, attempt)) in assumed {
            if let Some((pod, qk)) = self.pending.get(&key) {
                let qk = qk.clone();
                let mut a = pod.clone();
                if let Some(s) = a.spec.as_mut() {
                    s.node_name = node.clone();
                }
                self.queue.remove(&qk);
                self.account(&key, a);
                self.assumed.insert(key, (node, attempt));
            }
        }
        self.pods_synced = true;
    }

    fn on_node(&mut self, node: v1::Node) {
        let name = node.meta().name.clone();
        match self.node_index.get(&name) {
            Some(&i) => self.nodes[i].set_node(node),
            None => {
                let pods = self.unplaced.remove(&name).unwrap_or_default();
                self.node_index.insert(name, self.nodes.len());
                self.nodes.push(NodeInfo::new(node, pods));
            }
        }
        self.cluster_changed();
    }

    fn on_node_deleted(&mut self, name: &str) {
        let Some(i) = self.node_index.remove(name) else {
            return;
        };
        let info = self.nodes.swap_remove(i);
        if let Some(moved) = self.nodes.get(i) {
            self.node_index.insert(moved.name().to_string(), i);
        }
        // Its pods stay known (they may come back with the node).
        self.unplaced.insert(name.to_string(), info.pods().to_vec());
        self.cluster_changed();
    }

    fn on_nodes_relisted(&mut self, nodes: Vec<v1::Node>) {
        let names: Vec<String> = self.nodes.iter().map(|n| n.name().to_string()).collect();
        for n in names {
            self.on_node_deleted(&n);
        }
        for n in nodes {
            self.on_node(n);
        }
        self.nodes_synced = true;
    }

    /// Wait out a doubling backoff (from `first_ms`) before trying again.
    fn back_off(&mut self, key: &str, first_ms: u64, now: Instant) {
        let ms = self
            .last_backoff
            .get(key)
            .map_or(first_ms, |d| (d * 2).clamp(first_ms, BACKOFF_MAX_MS));
        self.last_backoff.insert(key.to_string(), ms);
        self.waiting.insert(
            key.to_string(),
            Waiting {
                until: now + Duration::from_millis(ms),
                tried: now,
            },
        );
    }

    /// Decide the next queued pod: `Some(Ok((pod to bind, attempt)))`,
    /// `Some(Err((pod, message)))` when no node fits (the pod then waits
    /// out its backoff), `None` when the queue is empty.
    #[allow(clippy::type_complexity)]
    fn decide_next(&mut self, now: Instant) -> Option<Result<(v1::Pod, u64), (v1::Pod, String)>> {
        loop {
            let qk = self.queue.pop_first()?;
            let Some((pod, _)) = self.pending.get(&qk.key) else {
                continue;
            };
            let pod = pod.clone();
            let wanted = feasible_nodes_to_find(self.nodes.len());
            match schedule_sampled(&pod, &self.nodes, self.next_start, wanted) {
                Ok((node, next)) => {
                    self.next_start = next;
                    let mut bound = pod;
                    if let Some(s) = bound.spec.as_mut() {
                        s.node_name = node.clone();
                    }
                    self.account(&qk.key, bound.clone());
                    self.attempts += 1;
                    self.assumed.insert(qk.key.clone(), (node, self.attempts));
                    return Some(Ok((bound, self.attempts)));
                }
                Err(why) => {
                    self.back_off(&qk.key, BACKOFF_FIRST_MS, now);
                    return Some(Err((pod, why.to_string())));
                }
            }
        }
    }

    /// A bind failed. If it is the current decision for the pod, forget the
    /// assumption; the pod retries shortly (with the latest version the
    /// watch brings), or after a doubling backoff when the failure was not
    /// a conflict. Results of older decisions are ignored.
    fn bind_failed(&mut self, key: &str, attempt: u64, conflict: bool, now: Instant) {
        if self.assumed.get(key).is_none_or(|(_, a)| *a != attempt) {
            return;
        }
        self.assumed.remove(key);
        self.unaccount(key);
        if self.pending.contains_key(key) {
            if conflict {
                self.waiting.insert(
                    key.to_string(),
                    Waiting {
                        until: now + Duration::from_millis(BIND_RETRY_MS),
                        tried: now,
                    },
                );
            } else {
                self.back_off(key, BIND_RETRY_MS, now);
            }
        }
    }

    /// A bind landed: account it at once (if it is still the current
    /// decision; if the watch got there first it knows better).
    fn bound(&mut self, pod: v1::Pod, attempt: u64) {
        if self
            .assumed
            .get(&key_of(&pod))
            .is_some_and(|(_, a)| *a == attempt)
        {
            self.on_pod(pod);
        }
    }

    /// Pods whose backoff is over go back in the queue.
    fn requeue_due(&mut self, now: Instant) {
        let due: Vec<String> = self
            .waiting
            .iter()
            .filter(|(_, w)| w.until <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for k in due {
            self.waiting.remove(&k);
            if let Some((_, qk)) = self.pending.get(&k) {
                if !self.assumed.contains_key(&k) {
                    self.queue.insert(qk.clone());
                }
            }
        }
    }

    /// Leadership lost: drop what was assumed (binds in flight still land
    /// or fail on their own and the watch reports which).
    fn drop_assumed(&mut self) {
        for (k, _) in std::mem::take(&mut self.assumed) {
            self.unaccount(&k);
            if let Some((_, qk)) = self.pending.get(&k) {
                self.queue.insert(qk.clone());
            }
        }
    }
}

/// Run until the task is dropped.
pub async fn run(client: Client, identity: String) {
    run_with(client, Options::new(&identity)).await
}

/// Run with explicit options until the task is dropped.
#[tracing::instrument(name = "scheduler", skip_all, fields(identity = %opts.identity))]
pub async fn run_with(client: Client, opts: Options) {
    let (mut leadership, _elector) =
        LeaderElector::new(client.clone(), ELECTION.0, ELECTION.1, &opts.identity)
            .ttl(LEASE_TTL_SECS)
            .spawn();
    let recorder = Recorder::new(client.clone(), COMPONENT);
    let mut pod_events = Box::pin(watcher(
        Api::<v1::Pod>::all(client.clone()),
        ListParams::default(),
    ));
    let mut node_events = Box::pin(watcher(
        Api::<v1::Node>::all(client.clone()),
        ListParams::default(),
    ));
    // Unbounded, and safe: one outcome per write in flight, and no more
    // than `binds_in_flight` writes (binds and unschedulable marks) are
    // in flight at once, so at most that many outcomes can wait.
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Outcome>();
    let mut st = State::default();
    let mut in_flight = 0usize;
    let mut tick = tokio::time::interval(Duration::from_millis(TICK_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut leading = false;
    loop {
        let can_decide =
            leading && st.synced() && in_flight < opts.binds_in_flight && !st.queue.is_empty();
        tokio::select! {
            Some(ev) = pod_events.next() => match ev {
                Ok(Event::Applied(p)) => st.on_pod(p),
                Ok(Event::Deleted(p)) => st.on_pod_deleted(&p),
                Ok(Event::Restarted(ps)) => st.on_pods_relisted(ps),
                Err(e) => tracing::warn!(error = %e, "pod watch"),
            },
            Some(ev) = node_events.next() => match ev {
                Ok(Event::Applied(n)) => st.on_node(n),
                Ok(Event::Deleted(n)) => st.on_node_deleted(&n.meta().name),
                Ok(Event::Restarted(ns)) => st.on_nodes_relisted(ns),
                Err(e) => tracing::warn!(error = %e, "node watch"),
            },
            Some(outcome) = done_rx.recv() => {
                in_flight = in_flight.saturating_sub(1);
                match outcome {
                    Outcome::Bound(p, attempt) => st.bound(*p, attempt),
                    Outcome::BindFailed { key, attempt, conflict } => {
                        st.bind_failed(&key, attempt, conflict, Instant::now());
                    }
                    Outcome::Marked => {}
                }
            }
            r = leadership.changed() => {
                if r.is_err() {
                    return;
                }
                let now_leading = leadership.borrow().leading;
                if leading && !now_leading {
                    st.drop_assumed();
                }
                leading = now_leading;
            }
            _ = tick.tick() => st.requeue_due(Instant::now()),
            _ = std::future::ready(()), if can_decide => {}
        }
        if !leading || !st.synced() {
            continue;
        }
        let mut decided = 0;
        while in_flight < opts.binds_in_flight && decided < DECISIONS_PER_TURN {
            let Some(d) = st.decide_next(Instant::now()) else {
                break;
            };
            decided += 1;
            in_flight += 1;
            let tx = done_tx.clone();
            match d {
                Ok((pod, attempt)) => {
                    let api: Api<v1::Pod> = Api::namespaced(client.clone(), &pod.meta().namespace);
                    let recorder = recorder.clone();
                    tokio::spawn(async move {
                        let key = key_of(&pod);
                        let outcome = match api.update(&pod).await {
                            Ok(stored) => {
                                let node = node_of(&stored).to_string();
                                tracing::debug!(pod = %key, node = %node, "bound");
                                recorder.record(
                                    Involved::of(&stored),
                                    "Normal",
                                    "Scheduled",
                                    &format!("Successfully assigned {key} to {node}"),
                                );
                                Outcome::Bound(Box::new(stored), attempt)
                            }
                            Err(e) => {
                                let conflict = matches!(e, Error::Conflict(_) | Error::NotFound(_));
                                if !conflict {
                                    tracing::warn!(pod = %key, error = %e, "bind failed; backing off");
                                }
                                Outcome::BindFailed {
                                    key,
                                    attempt,
                                    conflict,
                                }
                            }
                        };
                        let _ = tx.send(outcome);
                    });
                }
                Err((pod, message)) => {
                    recorder.record(Involved::of(&pod), "Warning", "FailedScheduling", &message);
                    let api: Api<v1::Pod> = Api::namespaced(client.clone(), &pod.meta().namespace);
                    tokio::spawn(async move {
                        mark_unschedulable(&api, &pod, &message).await;
                        let _ = tx.send(Outcome::Marked);
                    });
                }
            }
        }
    }
}

/// Set `PodScheduled=False` with the reasons (if not already so).
async fn mark_unschedulable(api: &Api<v1::Pod>, pod: &v1::Pod, message: &str) {
    let mut p = pod.clone();
    let status = p.status.get_or_insert_with(Default::default);
    if status
        .conditions
        .iter()
        .any(|c| c.r#type == "PodScheduled" && c.status == "False" && c.message == message)
    {
        return;
    }
    let cond = v1::PodCondition {
        r#type: "PodScheduled".into(),
        status: "False".into(),
        reason: "Unschedulable".into(),
        message: message.to_string(),
        last_transition_time: keelson_model::time::format_rfc3339(std::time::SystemTime::now()),
        ..Default::default()
    };
    status.conditions.retain(|c| c.r#type != "PodScheduled");
    status.conditions.push(cond);
    if let Err(e) = api.update_status(&p).await {
        tracing::debug!(pod = %key_of(pod), error = %e, "mark unschedulable");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{node, pod};

    fn bound(mut p: v1::Pod, node: &str) -> v1::Pod {
        p.spec.get_or_insert_with(Default::default).node_name = node.into();
        p
    }

    fn with_priority(mut p: v1::Pod, prio: i32) -> v1::Pod {
        p.spec.get_or_insert_with(Default::default).priority = Some(prio);
        p
    }

    fn decide_at(st: &mut State, at: Instant) -> Option<Result<(String, String), String>> {
        st.decide_next(at).map(|r| match r {
            Ok((p, _)) => Ok((p.meta().name.clone(), node_of(&p).to_string())),
            Err((_, m)) => Err(m),
        })
    }

    fn decide(st: &mut State) -> Option<Result<(String, String), String>> {
        decide_at(st, Instant::now())
    }

    fn attempt_of(st: &State, key: &str) -> u64 {
        st.assumed.get(key).map_or(0, |(_, a)| *a)
    }

    #[test]
    fn queue_orders_by_priority_then_creation() {
        let mut st = State::default();
        st.on_node(node("a", "64", "64Gi"));
        let mut old = pod("old", "1", "1Gi");
        old.meta_mut().creation_timestamp = "2024-01-01T00:00:00Z".into();
        let mut new = pod("new", "1", "1Gi");
        new.meta_mut().creation_timestamp = "2024-01-02T00:00:00Z".into();
        st.on_pod(new.clone());
        st.on_pod(old.clone());
        st.on_pod(with_priority(pod("vip", "1", "1Gi"), 10));
        let order: Vec<String> = std::iter::from_fn(|| decide(&mut st))
            .map(|r| r.map(|(n, _)| n).unwrap_or_default())
            .collect();
        assert_eq!(order, ["vip", "old", "new"]);
    }

    #[test]
    fn assumed_pods_count_until_the_watch_confirms() {
        let mut st = State::default();
        st.on_node(node("a", "2", "8Gi"));
        st.on_node(node("b", "2", "8Gi"));
        st.on_pod(pod("p1", "2", "1Gi"));
        st.on_pod(pod("p2", "2", "1Gi"));
        st.on_pod(pod("p3", "2", "1Gi"));
        let first = decide(&mut st);
        let second = decide(&mut st);
        assert_eq!(first, Some(Ok(("p1".into(), "a".into()))));
        assert_eq!(
            second,
            Some(Ok(("p2".into(), "b".into()))),
            "a is assumed full"
        );
        let third = decide(&mut st);
        assert!(matches!(third, Some(Err(m)) if m.contains("2 Insufficient cpu")));
        // The watch confirms p1 on a: still accounted once.
        st.on_pod(bound(pod("p1", "2", "1Gi"), "a"));
        assert_eq!(st.nodes[st.node_index["a"]].pod_count(), 1);
        // A stale result (an older decision) changes nothing.
        let a2 = attempt_of(&st, "default/p2");
        st.bind_failed("default/p2", a2 - 1, true, Instant::now());
        assert_eq!(st.nodes[st.node_index["b"]].pod_count(), 1);
        // p2's bind fails: b frees up, and p2 waits a short retry.
        st.bind_failed("default/p2", a2, true, Instant::now());
        assert_eq!(st.nodes[st.node_index["b"]].pod_count(), 0);
        assert!(st.queue.is_empty());
        st.requeue_due(Instant::now() + Duration::from_secs(1));
        assert_eq!(
            st.queue.len(),
            2,
            "p2 after its retry delay, p3 after its backoff"
        );
    }

    #[test]
    fn unschedulable_pods_back_off_and_retry_sooner_when_the_cluster_changes() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut st = State::default();
        st.on_node(node("a", "1", "8Gi"));
        st.on_pod(bound(pod("hog", "1", "1Gi"), "a"));
        st.on_pod(pod("p", "1", "1Gi"));
        assert!(matches!(decide_at(&mut st, t0), Some(Err(_))));
        assert!(decide_at(&mut st, t0).is_none(), "p waits out its backoff");
        st.requeue_due(t0 + s(1));
        assert!(matches!(decide_at(&mut st, t0 + s(1)), Some(Err(_))));
        // Now backing off 2 s: nothing changes for 1.5 s.
        st.requeue_due(t0 + Duration::from_millis(2500));
        assert!(st.queue.is_empty(), "the doubled backoff holds");
        // A bound pod goes away: a second after its last try, it retries.
        st.on_pod_deleted(&bound(pod("hog", "1", "1Gi"), "a"));
        st.requeue_due(t0 + s(2));
        assert_eq!(
            decide_at(&mut st, t0 + s(2)),
            Some(Ok(("p".into(), "a".into())))
        );
        // A new node also shortens the wait.
        st.on_pod(pod("q", "1", "1Gi"));
        assert!(matches!(decide_at(&mut st, t0 + s(3)), Some(Err(_))));
        st.on_node(node("b", "1", "8Gi"));
        st.requeue_due(t0 + s(4));
        assert_eq!(
            decide_at(&mut st, t0 + s(4)),
            Some(Ok(("q".into(), "b".into())))
        );
    }

    #[test]
    fn deleted_and_bound_pods_leave_the_queue() {
        let mut st = State::default();
        st.on_node(node("a", "4", "8Gi"));
        st.on_pod(pod("x", "1", "1Gi"));
        st.on_pod(pod("y", "1", "1Gi"));
        st.on_pod_deleted(&pod("x", "1", "1Gi"));
        // y was bound by someone else.
        st.on_pod(bound(pod("y", "1", "1Gi"), "a"));
        assert!(decide(&mut st).is_none());
        assert_eq!(st.nodes[0].pod_count(), 1);
    }

    #[test]
    fn a_late_result_for_a_recreated_pod_is_ignored() {
        let mut st = State::default();
        st.on_node(node("a", "4", "8Gi"));
        st.on_pod(pod("x", "1", "1Gi"));
        let Some(Ok((bound_x, first))) = st.decide_next(Instant::now()) else {
            panic!("x is decided");
        };
        // x is deleted and created again under the same name.
        st.on_pod_deleted(&pod("x", "1", "1Gi"));
        st.on_pod(pod("x", "1", "1Gi"));
        assert!(matches!(decide(&mut st), Some(Ok(_))));
        // The first decision's bind result arrives late: ignored.
        st.bound(bound_x, first);
        st.bind_failed("default/x", first, false, Instant::now());
        assert_eq!(st.nodes[0].pod_count(), 1, "only the new decision");
        assert!(st.assumed.contains_key("default/x"));
    }

    #[test]
    fn relists_keep_assumed_pods_and_nodes_keep_their_pods() {
        let mut st = State::default();
        assert!(!st.synced());
        st.on_node(node("a", "4", "8Gi"));
        st.on_pod(pod("x", "1", "1Gi"));
        assert!(matches!(decide(&mut st), Some(Ok(_))));
        st.on_pods_relisted(vec![pod("x", "1", "1Gi"), bound(pod("z", "1", "1Gi"), "a")]);
        assert!(!st.synced(), "nodes not listed yet");
        assert_eq!(st.nodes[0].pod_count(), 2, "z bound, x still assumed");
        assert!(st.queue.is_empty());
        st.on_nodes_relisted(vec![node("a", "8", "8Gi"), node("b", "4", "8Gi")]);
        assert!(st.synced());
        assert_eq!(st.nodes[st.node_index["a"]].pod_count(), 2);
        assert_eq!(st.nodes.len(), 2);
        // A pod bound to a node not seen yet is accounted when it appears.
        st.on_pod(bound(pod("w", "1", "1Gi"), "c"));
        st.on_node(node("c", "4", "8Gi"));
        assert_eq!(st.nodes[st.node_index["c"]].pod_count(), 1);
        st.drop_assumed();
        assert_eq!(st.queue.len(), 1, "x is queued again");
    }
}
