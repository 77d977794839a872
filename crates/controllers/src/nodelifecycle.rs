//! The node lifecycle controller, after Kubernetes' `NodeLifecycleController`
//! with taint-based eviction (its `NoExecuteTaintManager`).
//!
//! A node agent keeps a Lease `kube-node-lease/<node name>` alive; the runner
//! turns that into a `last_heartbeat` time per node (never earlier than when
//! the runner became leader or first saw the node, which is the grace after
//! a control-plane failover). [`reconcile`] compares that with the clock and
//! the nodes' taints and conditions and returns the [`Action`]s to take:
//!
//! - **Unreachable.** A node is unreachable when more than
//!   [`Config::monitor_grace`] has passed since its last heartbeat. A node
//!   missing from the heartbeat map counts as just seen (reachable), and so
//!   does a heartbeat later than `now`.
//! - **Marking.** An unreachable node gets the [`UNREACHABLE_TAINT`] with
//!   effect `NoExecute` (timeAdded = now) and its `Ready` condition set to
//!   `Unknown` (reason `NodeStatusUnknown`), each only when not already so,
//!   plus a `NodeNotReady` event whenever either is written. A node already
//!   marked gets nothing. A taint whose timeAdded cannot be read is
//!   stamped again with now, so that eviction can start counting.
//! - **Recovery.** A reachable node loses the taint, and its `Ready`
//!   condition goes back to `True` when it is the `Unknown` this controller
//!   wrote (reason `NodeStatusUnknown`); a `NodeReady` event goes with
//!   either write.
//! - **Eviction.** On a node that is unreachable now and carries the taint,
//!   each active pod (not being deleted, not `Succeeded`/`Failed`) bound to
//!   it is evicted once its toleration of the taint runs out: without a
//!   matching toleration after [`Config::eviction_timeout`], with
//!   `tolerationSeconds` after that long (zero or less: at once), with a
//!   matching toleration without `tolerationSeconds` never. With several
//!   matching tolerations the shortest limit wins, as in Kubernetes. Time is
//!   counted from the taint's timeAdded; an unreadable one counts as now
//!   (so only pods tolerating for zero seconds go this round).
//! - **Force deletion.** A pod on such a node that is being deleted and
//!   whose `deletionTimestamp` has passed is deleted with grace 0: its node
//!   cannot confirm the deletion.
//! - Pods on nodes that are reachable or not tainted are never touched.
//! - **Order.** Nodes by name; for each, its own updates and event, then its
//!   pods' actions by namespace, name and uid. Both node updates are based on
//!   the observed node, so they carry its resourceVersion.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use keelson_model::time::{format_rfc3339, parse_rfc3339};
use keelson_model::Resource;
use keelson_proto::v1;

/// The taint key of a node whose agent stopped heartbeating.
pub const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";

const NO_EXECUTE: &str = "NoExecute";
const READY: &str = "Ready";
/// The reason this controller writes on the `Ready` condition it marks
/// `Unknown`; recovery only undoes a condition with this reason.
const REASON_UNKNOWN: &str = "NodeStatusUnknown";
const MESSAGE_UNKNOWN: &str = "Kubelet stopped posting node status.";
const REASON_READY: &str = "KubeletReady";
const MESSAGE_READY: &str = "heartbeat resumed";

/// Tuning.
#[derive(Debug, Clone)]
pub struct Config {
    /// Heartbeat silence after which a node is marked unreachable.
    pub monitor_grace: Duration,
    /// How long a pod without a toleration of the unreachable taint stays
    /// on an unreachable node (Kubernetes' default toleration, there 300s).
    pub eviction_timeout: Duration,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            monitor_grace: Duration::from_secs(5),
            eviction_timeout: Duration::from_secs(30),
        }
    }
}

/// One change to make to the cluster.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Node spec change (add or remove the [`UNREACHABLE_TAINT`] with effect
    /// `NoExecute`, timeAdded = now in RFC 3339); based on the observed node
    /// (resourceVersion kept).
    UpdateNode(v1::Node),
    /// Node status change: the `Ready` condition set to `Unknown` when
    /// marking unreachable, or back to `True` when the heartbeat is back and
    /// the condition is the `Unknown` this controller set. Based on the
    /// observed node (resourceVersion kept).
    UpdateNodeStatus(v1::Node),
    /// Evict (delete, graceful) a pod on an unreachable node whose
    /// toleration ran out.
    EvictPod {
        namespace: String,
        name: String,
        uid: String,
        node: String,
    },
    /// A pod already being deleted on an unreachable node whose
    /// deletionTimestamp has passed: delete it with grace 0 (its node cannot
    /// confirm).
    ForceDeletePod {
        namespace: String,
        name: String,
        uid: String,
        node: String,
    },
    /// An event about the object `kind` ("Node" or "Pod") `namespace/name`.
    Event {
        kind: String,
        namespace: String,
        name: String,
        type_: String,
        reason: String,
        message: String,
    },
}

/// Decide what to do about `nodes`, given when each was last heard from,
/// the pods (of all namespaces) and the current time. Pure: the same inputs
/// always give the same actions.
pub fn reconcile(
    nodes: &[v1::Node],
    last_heartbeat: &HashMap<String, SystemTime>,
    pods: &[v1::Pod],
    now: SystemTime,
    cfg: &Config,
) -> Vec<Action> {
    let mut nodes: Vec<&v1::Node> = nodes.iter().filter(|n| !n.meta().name.is_empty()).collect();
    nodes.sort_by(|a, b| a.meta().name.cmp(&b.meta().name));
    nodes.dedup_by(|a, b| a.meta().name == b.meta().name);

    let mut pods_by_node: HashMap<&str, Vec<&v1::Pod>> = HashMap::new();
    for pod in pods {
        let node = pod.spec.as_ref().map_or("", |s| s.node_name.as_str());
        if !node.is_empty() {
            pods_by_node.entry(node).or_default().push(pod);
        }
    }

    let mut actions = Vec::new();
    for node in nodes {
        let name = node.meta().name.as_str();
        let unreachable = last_heartbeat.get(name).is_some_and(|&hb| {
            now.duration_since(hb)
                .is_ok_and(|silence| silence > cfg.monitor_grace)
        });
        if unreachable {
            mark_unreachable(node, now, &mut actions);
            // Eviction runs off the taint as observed: one written this
            // round counts from the next.
            if let Some(taint) = unreachable_taint(node) {
                let mut on_node = pods_by_node.get(name).cloned().unwrap_or_default();
                on_node.sort_by(|a, b| pod_order(a).cmp(&pod_order(b)));
                for pod in on_node {
                    evict(pod, name, taint, now, cfg, &mut actions);
                }
            }
        } else {
            mark_reachable(node, now, &mut actions);
        }
    }
    actions
}

fn pod_order(p: &v1::Pod) -> (&str, &str, &str) {
    let m = p.meta();
    (&m.namespace, &m.name, &m.uid)
}

fn is_unreachable_taint(t: &v1::Taint) -> bool {
    t.key == UNREACHABLE_TAINT && t.effect == NO_EXECUTE
}

fn unreachable_taint(node: &v1::Node) -> Option<&v1::Taint> {
    node.spec
        .as_ref()?
        .taints
        .iter()
        .find(|t| is_unreachable_taint(t))
}

fn ready_condition(node: &v1::Node) -> Option<&v1::NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.r#type == READY)
}

fn node_event(node: &v1::Node, reason: &str) -> Action {
    let name = &node.meta().name;
    Action::Event {
        kind: "Node".to_string(),
        namespace: String::new(),
        name: name.clone(),
        type_: "Normal".to_string(),
        reason: reason.to_string(),
        message: format!("Node {name} status is now: {reason}"),
    }
}

/// Set the first `Ready` condition (adding one when there is none).
fn set_ready(node: &v1::Node, status: &str, reason: &str, message: &str, now: &str) -> v1::Node {
    let mut updated = node.clone();
    let conditions = &mut updated
        .status
        .get_or_insert_with(Default::default)
        .conditions;
    if !conditions.iter().any(|c| c.r#type == READY) {
        conditions.push(v1::NodeCondition {
            r#type: READY.to_string(),
            ..Default::default()
        });
    }
    if let Some(c) = conditions.iter_mut().find(|c| c.r#type == READY) {
        c.status = status.to_string();
        c.reason = reason.to_string();
        c.message = message.to_string();
        c.last_transition_time = now.to_string();
    }
    updated
}

fn mark_unreachable(node: &v1::Node, now: SystemTime, actions: &mut Vec<Action>) {
    let stamp = format_rfc3339(now);
    let taint = unreachable_taint(node);
    let needs_taint = taint.is_none_or(|t| parse_rfc3339(&t.time_added).is_none());
    let needs_status = ready_condition(node).is_none_or(|c| c.status != "Unknown");
    if needs_taint {
        let mut updated = node.clone();
        let taints = &mut updated.spec.get_or_insert_with(Default::default).taints;
        match taints.iter_mut().find(|t| is_unreachable_taint(t)) {
            Some(t) => t.time_added = stamp.clone(),
            None => taints.push(v1::Taint {
                key: UNREACHABLE_TAINT.to_string(),
                value: String::new(),
                effect: NO_EXECUTE.to_string(),
                time_added: stamp.clone(),
            }),
        }
        actions.push(Action::UpdateNode(updated));
    }
    if needs_status {
        actions.push(Action::UpdateNodeStatus(set_ready(
            node,
            "Unknown",
            REASON_UNKNOWN,
            MESSAGE_UNKNOWN,
            &stamp,
        )));
    }
    // Re-stamping an unreadable timeAdded on a node already marked is
    // housekeeping, not news.
    if (needs_taint && taint.is_none()) || needs_status {
        actions.push(node_event(node, "NodeNotReady"));
    }
}

fn mark_reachable(node: &v1::Node, now: SystemTime, actions: &mut Vec<Action>) {
    let tainted = unreachable_taint(node).is_some();
    let ours =
        ready_condition(node).is_some_and(|c| c.status == "Unknown" && c.reason == REASON_UNKNOWN);
    if tainted {
        let mut updated = node.clone();
        if let Some(spec) = updated.spec.as_mut() {
            spec.taints.retain(|t| !is_unreachable_taint(t));
        }
        actions.push(Action::UpdateNode(updated));
    }
    if ours {
        let stamp = format_rfc3339(now);
        actions.push(Action::UpdateNodeStatus(set_ready(
            node,
            "True",
            REASON_READY,
            MESSAGE_READY,
            &stamp,
        )));
    }
    if tainted || ours {
        actions.push(node_event(node, "NodeReady"));
    }
}

fn phase(pod: &v1::Pod) -> &str {
    pod.status.as_ref().map_or("", |s| s.phase.as_str())
}

/// Kubernetes' `Toleration.ToleratesTaint`, except that an empty key needs
/// operator `Exists` (as validation requires).
fn tolerates(t: &v1::Toleration, taint: &v1::Taint) -> bool {
    if !t.effect.is_empty() && t.effect != taint.effect {
        return false;
    }
    match t.operator.as_str() {
        "Exists" => t.key.is_empty() || t.key == taint.key,
        "" | "Equal" => !t.key.is_empty() && t.key == taint.key && t.value == taint.value,
        _ => false,
    }
}

/// How long a pod stays on a node with `taint`: None is forever.
fn toleration_time(pod: &v1::Pod, taint: &v1::Taint, cfg: &Config) -> Option<Duration> {
    let tolerations = pod.spec.as_ref().map_or(&[][..], |s| &s.tolerations);
    let matching: Vec<&v1::Toleration> =
        tolerations.iter().filter(|t| tolerates(t, taint)).collect();
    if matching.is_empty() {
        return Some(cfg.eviction_timeout);
    }
    // Kubernetes' getMinTolerationTime: the shortest limit; forever only
    // when no matching toleration has one.
    matching
        .iter()
        .filter_map(|t| t.toleration_seconds)
        .map(|s| Duration::from_secs(u64::try_from(s).unwrap_or(0)))
        .min()
}

fn evict(
    pod: &v1::Pod,
    node: &str,
    taint: &v1::Taint,
    now: SystemTime,
    cfg: &Config,
    actions: &mut Vec<Action>,
) {
    let meta = pod.meta();
    if !meta.deletion_timestamp.is_empty() {
        if parse_rfc3339(&meta.deletion_timestamp).is_some_and(|t| t <= now) {
            actions.push(Action::ForceDeletePod {
                namespace: meta.namespace.clone(),
                name: meta.name.clone(),
                uid: meta.uid.clone(),
                node: node.to_string(),
            });
        }
        return;
    }
    if matches!(phase(pod), "Succeeded" | "Failed") {
        return;
    }
    let Some(toleration) = toleration_time(pod, taint, cfg) else {
        return;
    };
    let since = parse_rfc3339(&taint.time_added).unwrap_or(now);
    if since.checked_add(toleration).is_some_and(|t| t <= now) {
        actions.push(Action::EvictPod {
            namespace: meta.namespace.clone(),
            name: meta.name.clone(),
            uid: meta.uid.clone(),
            node: node.to_string(),
        });
        actions.push(Action::Event {
            kind: "Pod".to_string(),
            namespace: meta.namespace.clone(),
            name: meta.name.clone(),
            type_: "Normal".to_string(),
            reason: "TaintManagerEviction".to_string(),
            message: format!("Marking for deletion Pod {}/{}", meta.namespace, meta.name),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    /// 2024-05-01T10:00:00Z
    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_714_557_600)
    }
    fn ago(secs: u64) -> SystemTime {
        now() - Duration::from_secs(secs)
    }
    fn stamp(t: SystemTime) -> String {
        format_rfc3339(t)
    }

    /// A healthy node: Ready True, no taints, resourceVersion 5.
    fn node(name: &str) -> v1::Node {
        v1::Node {
            api_version: "v1".into(),
            kind: "Node".into(),
            metadata: Some(v1::ObjectMeta {
                name: name.into(),
                uid: format!("uid-{name}"),
                resource_version: "5".into(),
                ..Default::default()
            }),
            spec: Some(v1::NodeSpec::default()),
            status: Some(v1::NodeStatus {
                conditions: vec![v1::NodeCondition {
                    r#type: "Ready".into(),
                    status: "True".into(),
                    reason: "KubeletReady".into(),
                    last_heartbeat_time: "2024-05-01T09:00:00Z".into(),
                    last_transition_time: "2024-05-01T09:00:00Z".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        }
    }
    fn tainted(mut n: v1::Node, time_added: &str) -> v1::Node {
        n.spec
            .get_or_insert_with(Default::default)
            .taints
            .push(v1::Taint {
                key: UNREACHABLE_TAINT.into(),
                effect: NO_EXECUTE.into(),
                time_added: time_added.into(),
                ..Default::default()
            });
        n
    }
    fn ready(mut n: v1::Node, status: &str, reason: &str) -> v1::Node {
        if let Some(c) = n
            .status
            .as_mut()
            .and_then(|s| s.conditions.iter_mut().find(|c| c.r#type == "Ready"))
        {
            c.status = status.into();
            c.reason = reason.into();
        }
        n
    }
    /// Tainted `secs` ago and Ready Unknown by this controller.
    fn marked(n: v1::Node, secs: u64) -> v1::Node {
        ready(
            tainted(n, &stamp(ago(secs))),
            "Unknown",
            "NodeStatusUnknown",
        )
    }

    fn pod(name: &str, node: &str) -> v1::Pod {
        v1::Pod {
            api_version: "v1".into(),
            kind: "Pod".into(),
            metadata: Some(v1::ObjectMeta {
                name: name.into(),
                namespace: "default".into(),
                uid: format!("uid-{name}"),
                ..Default::default()
            }),
            spec: Some(v1::PodSpec {
                node_name: node.into(),
                ..Default::default()
            }),
            status: Some(v1::PodStatus {
                phase: "Running".into(),
                ..Default::default()
            }),
        }
    }
    fn tolerating(mut p: v1::Pod, t: v1::Toleration) -> v1::Pod {
        p.spec
            .get_or_insert_with(Default::default)
            .tolerations
            .push(t);
        p
    }
    /// A toleration of the unreachable taint (Exists, NoExecute).
    fn unreachable_for(secs: Option<i64>) -> v1::Toleration {
        v1::Toleration {
            key: UNREACHABLE_TAINT.into(),
            operator: "Exists".into(),
            effect: "NoExecute".into(),
            toleration_seconds: secs,
            ..Default::default()
        }
    }
    fn deleting(mut p: v1::Pod, at: &str) -> v1::Pod {
        p.meta_mut().deletion_timestamp = at.into();
        p
    }
    fn phase_of(mut p: v1::Pod, phase: &str) -> v1::Pod {
        p.status.get_or_insert_with(Default::default).phase = phase.into();
        p
    }

    fn beats(kv: &[(&str, SystemTime)]) -> HashMap<String, SystemTime> {
        kv.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    /// Actions as short strings, so cases read as tables.
    fn summarize(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .map(|a| match a {
                Action::UpdateNode(n) => {
                    let taints: Vec<String> = n
                        .spec
                        .as_ref()
                        .map(|s| {
                            s.taints
                                .iter()
                                .map(|t| format!("{}:{}@{}", t.key, t.effect, t.time_added))
                                .collect()
                        })
                        .unwrap_or_default();
                    format!("node {} taints [{}]", n.meta().name, taints.join(","))
                }
                Action::UpdateNodeStatus(n) => {
                    let c = ready_condition(n).cloned().unwrap_or_default();
                    format!(
                        "status {} Ready={} {} {:?} @{}",
                        n.meta().name,
                        c.status,
                        c.reason,
                        c.message,
                        c.last_transition_time
                    )
                }
                Action::EvictPod {
                    namespace,
                    name,
                    node,
                    ..
                } => format!("evict {namespace}/{name} on {node}"),
                Action::ForceDeletePod {
                    namespace,
                    name,
                    node,
                    ..
                } => format!("force-delete {namespace}/{name} on {node}"),
                Action::Event {
                    kind,
                    namespace,
                    name,
                    type_,
                    reason,
                    message,
                } => format!("event {kind} {namespace}/{name} {type_} {reason}: {message}"),
            })
            .collect()
    }

    fn strs(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    const T: &str = "2024-05-01T10:00:00Z";
    const MARK: [&str; 3] = [
        "node n1 taints [node.kubernetes.io/unreachable:NoExecute@2024-05-01T10:00:00Z]",
        "status n1 Ready=Unknown NodeStatusUnknown \"Kubelet stopped posting node status.\" @2024-05-01T10:00:00Z",
        "event Node /n1 Normal NodeNotReady: Node n1 status is now: NodeNotReady",
    ];
    const RECOVER: [&str; 3] = [
        "node n1 taints []",
        "status n1 Ready=True KubeletReady \"heartbeat resumed\" @2024-05-01T10:00:00Z",
        "event Node /n1 Normal NodeReady: Node n1 status is now: NodeReady",
    ];
    fn evicted(name: &str) -> Vec<String> {
        vec![
            format!("evict default/{name} on n1"),
            format!(
                "event Pod default/{name} Normal TaintManagerEviction: \
                 Marking for deletion Pod default/{name}"
            ),
        ]
    }
    fn cat(parts: &[Vec<String>]) -> Vec<String> {
        parts.concat()
    }

    type Case = (
        &'static str,
        Vec<v1::Node>,
        HashMap<String, SystemTime>,
        Vec<v1::Pod>,
        Vec<String>,
    );

    #[test]
    fn node_marking_table() {
        let cases: Vec<Case> = vec![
            (
                "heartbeat within grace: nothing",
                vec![node("n1")],
                beats(&[("n1", ago(5))]),
                vec![pod("p", "n1")],
                vec![],
            ),
            (
                "silent past grace: tainted, Unknown, event",
                vec![node("n1")],
                beats(&[("n1", ago(6))]),
                vec![],
                strs(&MARK),
            ),
            (
                "already marked: nothing more",
                vec![marked(node("n1"), 1)],
                beats(&[("n1", ago(6))]),
                vec![],
                vec![],
            ),
            (
                "tainted but still Ready True: status only",
                vec![tainted(node("n1"), "2024-05-01T09:59:59Z")],
                beats(&[("n1", ago(6))]),
                vec![],
                strs(&[MARK[1], MARK[2]]),
            ),
            (
                "Unknown (set by someone else) but not tainted: taint only",
                vec![ready(node("n1"), "Unknown", "Other")],
                beats(&[("n1", ago(6))]),
                vec![],
                strs(&[MARK[0], MARK[2]]),
            ),
            (
                "Ready False is marked Unknown too",
                vec![ready(node("n1"), "False", "KubeletNotReady")],
                beats(&[("n1", ago(60))]),
                vec![],
                strs(&MARK),
            ),
            (
                "no Ready condition: one is added",
                vec![{
                    let mut n = node("n1");
                    n.status = None;
                    n
                }],
                beats(&[("n1", ago(60))]),
                vec![],
                strs(&MARK),
            ),
            (
                "missing from the heartbeat map: not marked",
                vec![node("n1")],
                beats(&[]),
                vec![pod("p", "n1")],
                vec![],
            ),
            (
                "heartbeat in the future: not marked",
                vec![node("n1")],
                beats(&[("n1", now() + Duration::from_secs(60))]),
                vec![],
                vec![],
            ),
            (
                "recovery: taint removed, Ready restored, event",
                vec![marked(node("n1"), 60)],
                beats(&[("n1", ago(1))]),
                vec![pod("p", "n1")],
                strs(&RECOVER),
            ),
            (
                "recovery: an Unknown not set by this controller stays",
                vec![ready(tainted(node("n1"), T), "Unknown", "Other")],
                beats(&[("n1", ago(1))]),
                vec![],
                strs(&[RECOVER[0], RECOVER[2]]),
            ),
            (
                "recovery: status only when the taint is already gone",
                vec![ready(node("n1"), "Unknown", "NodeStatusUnknown")],
                beats(&[("n1", ago(1))]),
                vec![],
                strs(&[RECOVER[1], RECOVER[2]]),
            ),
            (
                "missing from the map counts as just seen: recovery",
                vec![marked(node("n1"), 60)],
                beats(&[]),
                vec![],
                strs(&RECOVER),
            ),
            (
                "nodes in name order",
                vec![node("n2"), node("n1"), node("n3")],
                beats(&[("n1", ago(10)), ("n2", ago(1)), ("n3", ago(10))]),
                vec![],
                cat(&[
                    strs(&MARK),
                    strs(&MARK)
                        .into_iter()
                        .map(|s| s.replace("n1", "n3"))
                        .collect(),
                ]),
            ),
        ];
        run(cases);
    }

    #[test]
    fn eviction_table() {
        let unreachable = || beats(&[("n1", ago(600))]);
        let cases: Vec<Case> = vec![
            (
                "default toleration: not yet at 29s",
                vec![marked(node("n1"), 29)],
                unreachable(),
                vec![pod("p", "n1")],
                vec![],
            ),
            (
                "default toleration: evicted at 30s",
                vec![marked(node("n1"), 30)],
                unreachable(),
                vec![pod("p", "n1")],
                evicted("p"),
            ),
            (
                "tolerationSeconds 0: evicted at once",
                vec![marked(node("n1"), 0)],
                unreachable(),
                vec![tolerating(pod("p", "n1"), unreachable_for(Some(0)))],
                evicted("p"),
            ),
            (
                "negative tolerationSeconds: evicted at once",
                vec![marked(node("n1"), 0)],
                unreachable(),
                vec![tolerating(pod("p", "n1"), unreachable_for(Some(-5)))],
                evicted("p"),
            ),
            (
                "tolerationSeconds 10: kept at 9s",
                vec![marked(node("n1"), 9)],
                unreachable(),
                vec![tolerating(pod("p", "n1"), unreachable_for(Some(10)))],
                vec![],
            ),
            (
                "tolerationSeconds 10: evicted at 10s, before the default",
                vec![marked(node("n1"), 10)],
                unreachable(),
                vec![
                    tolerating(pod("p", "n1"), unreachable_for(Some(10))),
                    pod("q", "n1"),
                ],
                evicted("p"),
            ),
            (
                "tolerationSeconds 60 outlasts the default",
                vec![marked(node("n1"), 59)],
                unreachable(),
                vec![
                    tolerating(pod("p", "n1"), unreachable_for(Some(60))),
                    pod("q", "n1"),
                ],
                evicted("q"),
            ),
            (
                "toleration without seconds: forever",
                vec![marked(node("n1"), 86_400)],
                unreachable(),
                vec![tolerating(pod("p", "n1"), unreachable_for(None))],
                vec![],
            ),
            (
                "wildcard toleration (Exists, no key, no effect): forever",
                vec![marked(node("n1"), 86_400)],
                unreachable(),
                vec![tolerating(
                    pod("p", "n1"),
                    v1::Toleration {
                        operator: "Exists".into(),
                        ..Default::default()
                    },
                )],
                vec![],
            ),
            (
                "wildcard toleration with seconds",
                vec![marked(node("n1"), 5)],
                unreachable(),
                vec![tolerating(
                    pod("p", "n1"),
                    v1::Toleration {
                        operator: "Exists".into(),
                        toleration_seconds: Some(5),
                        ..Default::default()
                    },
                )],
                evicted("p"),
            ),
            (
                "several matching tolerations: the shortest wins",
                vec![marked(node("n1"), 20)],
                unreachable(),
                vec![tolerating(
                    tolerating(pod("p", "n1"), unreachable_for(None)),
                    unreachable_for(Some(20)),
                )],
                evicted("p"),
            ),
            (
                "Equal with the value matches; empty operator is Equal",
                vec![marked(node("n1"), 3600)],
                unreachable(),
                vec![
                    tolerating(
                        pod("p", "n1"),
                        v1::Toleration {
                            key: UNREACHABLE_TAINT.into(),
                            operator: "Equal".into(),
                            ..Default::default()
                        },
                    ),
                    tolerating(
                        pod("q", "n1"),
                        v1::Toleration {
                            key: UNREACHABLE_TAINT.into(),
                            ..Default::default()
                        },
                    ),
                ],
                vec![],
            ),
            (
                "tolerations that do not match: the default applies",
                vec![marked(node("n1"), 30)],
                unreachable(),
                vec![
                    tolerating(
                        pod("a", "n1"),
                        v1::Toleration {
                            key: UNREACHABLE_TAINT.into(),
                            operator: "Equal".into(),
                            value: "x".into(),
                            ..Default::default()
                        },
                    ),
                    tolerating(
                        pod("b", "n1"),
                        v1::Toleration {
                            effect: "NoSchedule".into(),
                            ..unreachable_for(None)
                        },
                    ),
                    tolerating(
                        pod("c", "n1"),
                        v1::Toleration {
                            key: "other".into(),
                            ..unreachable_for(None)
                        },
                    ),
                    tolerating(
                        pod("d", "n1"),
                        v1::Toleration {
                            operator: "Equal".into(),
                            ..Default::default()
                        },
                    ),
                    tolerating(
                        pod("e", "n1"),
                        v1::Toleration {
                            operator: "Bogus".into(),
                            ..unreachable_for(None)
                        },
                    ),
                ],
                cat(&[
                    evicted("a"),
                    evicted("b"),
                    evicted("c"),
                    evicted("d"),
                    evicted("e"),
                ]),
            ),
            (
                "terminal pods are not evicted",
                vec![marked(node("n1"), 3600)],
                unreachable(),
                vec![
                    phase_of(pod("s", "n1"), "Succeeded"),
                    phase_of(pod("f", "n1"), "Failed"),
                ],
                vec![],
            ),
            (
                "deleting pods: force-deleted once deletionTimestamp has passed",
                vec![marked(node("n1"), 3600)],
                unreachable(),
                vec![
                    deleting(pod("past", "n1"), "2024-05-01T09:59:00Z"),
                    deleting(pod("exact", "n1"), T),
                    deleting(pod("future", "n1"), "2024-05-01T10:00:30Z"),
                    deleting(pod("garbage", "n1"), "soon"),
                    phase_of(deleting(pod("done", "n1"), T), "Succeeded"),
                ],
                strs(&[
                    "force-delete default/done on n1",
                    "force-delete default/exact on n1",
                    "force-delete default/past on n1",
                ]),
            ),
            (
                "pods on other nodes or unbound are untouched",
                vec![marked(node("n1"), 3600), node("n2")],
                beats(&[("n1", ago(600)), ("n2", ago(1))]),
                vec![
                    pod("a", "n2"),
                    deleting(pod("b", "n2"), "2024-05-01T09:00:00Z"),
                    pod("c", ""),
                    pod("d", "gone"),
                ],
                vec![],
            ),
            (
                "reachable node with a stale taint: untainted, pods untouched",
                vec![marked(node("n1"), 3600)],
                beats(&[("n1", ago(1))]),
                vec![
                    pod("a", "n1"),
                    deleting(pod("b", "n1"), "2024-05-01T09:00:00Z"),
                ],
                strs(&RECOVER),
            ),
            (
                "node being marked now: eviction counts from the next round",
                vec![node("n1")],
                unreachable(),
                vec![tolerating(pod("p", "n1"), unreachable_for(Some(0)))],
                strs(&MARK),
            ),
            (
                "unreadable timeAdded: re-stamped, counts as now",
                vec![ready(
                    tainted(node("n1"), "last tuesday"),
                    "Unknown",
                    "NodeStatusUnknown",
                )],
                unreachable(),
                vec![
                    pod("a", "n1"),
                    tolerating(pod("b", "n1"), unreachable_for(Some(10))),
                    tolerating(pod("z", "n1"), unreachable_for(Some(0))),
                ],
                cat(&[strs(&[MARK[0]]), evicted("z")]),
            ),
            (
                "empty timeAdded: re-stamped",
                vec![ready(
                    tainted(node("n1"), ""),
                    "Unknown",
                    "NodeStatusUnknown",
                )],
                unreachable(),
                vec![pod("a", "n1")],
                strs(&[MARK[0]]),
            ),
            (
                "pods sorted by namespace and name",
                vec![marked(node("n1"), 30)],
                unreachable(),
                vec![pod("b", "n1"), pod("a", "n1"), {
                    let mut p = pod("c", "n1");
                    p.meta_mut().namespace = "aaa".into();
                    p
                }],
                cat(&[
                    vec![
                        "evict aaa/c on n1".to_string(),
                        "event Pod aaa/c Normal TaintManagerEviction: \
                         Marking for deletion Pod aaa/c"
                            .to_string(),
                    ],
                    evicted("a"),
                    evicted("b"),
                ]),
            ),
        ];
        run(cases);
    }

    fn run(cases: Vec<Case>) {
        let cfg = Config::default();
        for (name, nodes, beats, pods, want) in cases {
            let got = summarize(&reconcile(&nodes, &beats, &pods, now(), &cfg));
            assert_eq!(got, want, "case: {name}");
        }
    }

    #[test]
    fn config_defaults() {
        let cfg = Config::default();
        assert_eq!(cfg.monitor_grace, Duration::from_secs(5));
        assert_eq!(cfg.eviction_timeout, Duration::from_secs(30));
    }

    #[test]
    fn updates_start_from_the_observed_node() {
        let mut n = node("n1");
        n.meta_mut().labels.insert("zone".into(), "a".into());
        if let Some(s) = n.spec.as_mut() {
            s.pod_cidr = "10.1.0.0/24".into();
            s.taints.push(v1::Taint {
                key: "dedicated".into(),
                value: "db".into(),
                effect: "NoSchedule".into(),
                time_added: String::new(),
            });
        }
        let actions = reconcile(
            std::slice::from_ref(&n),
            &beats(&[("n1", ago(60))]),
            &[],
            now(),
            &Config::default(),
        );
        let [Action::UpdateNode(spec), Action::UpdateNodeStatus(status), Action::Event { .. }] =
            actions.as_slice()
        else {
            panic!("expected taint, status and event, got {actions:?}");
        };

        let mut want = n.clone();
        if let Some(s) = want.spec.as_mut() {
            s.taints.push(v1::Taint {
                key: UNREACHABLE_TAINT.into(),
                value: String::new(),
                effect: "NoExecute".into(),
                time_added: T.into(),
            });
        }
        assert_eq!(spec, &want);

        let mut want = n.clone();
        if let Some(c) = want.status.as_mut().map(|s| &mut s.conditions[0]) {
            c.status = "Unknown".into();
            c.reason = "NodeStatusUnknown".into();
            c.message = "Kubelet stopped posting node status.".into();
            c.last_transition_time = T.into();
        }
        assert_eq!(status, &want);
        assert_eq!(status.meta().resource_version, "5");

        // Recovery removes only the unreachable taint.
        let marked = [spec.clone()];
        let back = reconcile(
            &marked,
            &beats(&[("n1", ago(0))]),
            &[],
            now(),
            &Config::default(),
        );
        let Some(Action::UpdateNode(untainted)) = back.first() else {
            panic!("expected the taint removed, got {back:?}");
        };
        assert_eq!(untainted, &n);
    }

    #[test]
    fn custom_config() {
        let cfg = Config {
            monitor_grace: Duration::from_secs(40),
            eviction_timeout: Duration::from_secs(300),
        };
        let nodes = [marked(node("n1"), 299), node("n2")];
        let hb = beats(&[("n1", ago(100)), ("n2", ago(40))]);
        let pods = [pod("p", "n1")];
        assert!(reconcile(&nodes, &hb, &pods, now(), &cfg).is_empty());
        let nodes = [marked(node("n1"), 300)];
        assert_eq!(
            summarize(&reconcile(&nodes, &hb, &pods, now(), &cfg)),
            evicted("p")
        );
    }
}
