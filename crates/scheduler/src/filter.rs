//! The filters: may the pod run on this node at all? Each is a pure
//! function of the pod and the node's [`NodeInfo`] that returns the
//! [`Reason`] it may not, worded as Kubernetes words it.

use std::collections::BTreeMap;
use std::fmt;

use keelson_model::selector::LabelSelector;
use keelson_proto::v1;

use crate::node_info::{host_ports, NodeInfo};
use crate::resources::pod_requests;

/// Taint that stands for `spec.unschedulable` (cordoned): a pod that
/// tolerates it with effect `NoSchedule` may still land on the node.
pub const TAINT_NODE_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
/// Taint effect: new pods must tolerate it to be scheduled.
pub const EFFECT_NO_SCHEDULE: &str = "NoSchedule";
/// Taint effect: pods must tolerate it to be scheduled (and to stay).
pub const EFFECT_NO_EXECUTE: &str = "NoExecute";
/// The node condition a node must have with status [`CONDITION_TRUE`].
const CONDITION_READY: &str = "Ready";
const CONDITION_TRUE: &str = "True";

/// Why a pod may not run on a node. `Display` gives Kubernetes' wording,
/// which [`Unschedulable`](crate::Unschedulable) counts per reason.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// The node's `Ready` condition is missing or not `True`.
    NodeNotReady,
    /// The node is cordoned (`spec.unschedulable`) and the pod does not
    /// tolerate [`TAINT_NODE_UNSCHEDULABLE`].
    Unschedulable,
    /// The node's labels lack one of the pod's `nodeSelector` pairs.
    NodeSelectorMismatch,
    /// The node has a `NoSchedule` or `NoExecute` taint, this key the first
    /// of them, that the pod does not tolerate.
    UntoleratedTaint { key: String },
    /// The node already holds as many pods as it allows.
    TooManyPods,
    /// The pod requests more cpu than the node has left.
    InsufficientCpu,
    /// The pod requests more memory than the node has left.
    InsufficientMemory,
    /// One of the pod's host ports is taken on the node.
    HostPortConflict,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NodeNotReady => f.write_str("node(s) were not ready"),
            Reason::Unschedulable => f.write_str("node(s) were unschedulable"),
            Reason::NodeSelectorMismatch => {
                f.write_str("node(s) didn't match Pod's node affinity/selector")
            }
            Reason::UntoleratedTaint { key } => {
                write!(f, "node(s) had untolerated taint {{{key}}}")
            }
            Reason::TooManyPods => f.write_str("Too many pods"),
            Reason::InsufficientCpu => f.write_str("Insufficient cpu"),
            Reason::InsufficientMemory => f.write_str("Insufficient memory"),
            Reason::HostPortConflict => {
                f.write_str("node(s) didn't have free ports for the requested pod ports")
            }
        }
    }
}

/// A filter: `Ok` if the pod may run on the node as far as it can tell.
pub type Filter = fn(&v1::Pod, &NodeInfo) -> Result<(), Reason>;

/// Every filter, in the order [`filter()`] runs them (and lists reasons).
pub const FILTERS: [Filter; 8] = [
    node_ready,
    node_schedulable,
    node_selector_matches,
    taints_tolerated,
    pod_count_fits,
    cpu_fits,
    memory_fits,
    host_ports_free,
];

/// Run every filter; `Err` holds every reason the pod may not run on the
/// node, not just the first.
pub fn filter(pod: &v1::Pod, node: &NodeInfo) -> Result<(), Vec<Reason>> {
    filter_info(&PodInfo::new(pod), node)
}

/// What the filters and scores need of a pod, computed once per pod
/// rather than once per node: a decision looks at hundreds of nodes.
#[derive(Clone, Debug)]
pub struct PodInfo<'a> {
    pub pod: &'a v1::Pod,
    pub requests: crate::Resources,
    pub requests_for_scoring: crate::Resources,
    pub host_ports: Vec<crate::HostPort>,
    /// The nodeSelector as a selector; None when the pod has none.
    pub node_selector: Option<LabelSelector>,
}

impl<'a> PodInfo<'a> {
    pub fn new(pod: &'a v1::Pod) -> PodInfo<'a> {
        let node_selector = pod
            .spec
            .as_ref()
            .filter(|s| !s.node_selector.is_empty())
            .map(|s| LabelSelector::from_map(&s.node_selector));
        PodInfo {
            pod,
            requests: pod_requests(pod),
            requests_for_scoring: crate::pod_requests_for_scoring(pod),
            host_ports: host_ports(pod),
            node_selector,
        }
    }
}

/// [`filter()`] on a precomputed [`PodInfo`]: the same filters, in the same
/// order, with the same reasons.
pub fn filter_info(pi: &PodInfo<'_>, node: &NodeInfo) -> Result<(), Vec<Reason>> {
    let pod = pi.pod;
    let checks = [
        node_ready(pod, node),
        node_schedulable(pod, node),
        selector_matches(pi.node_selector.as_ref(), node),
        taints_tolerated(pod, node),
        pod_count_fits(pod, node),
        cpu_fits_request(pi.requests.cpu_millis, node),
        memory_fits_request(pi.requests.memory_bytes, node),
        ports_free(&pi.host_ports, node),
    ];
    if checks.iter().all(Result::is_ok) {
        return Ok(());
    }
    Err(checks.into_iter().filter_map(Result::err).collect())
}

/// The node's `Ready` condition is `True`.
pub fn node_ready(_pod: &v1::Pod, node: &NodeInfo) -> Result<(), Reason> {
    let ready = node.node().status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.r#type == CONDITION_READY && c.status == CONDITION_TRUE)
    });
    if ready {
        Ok(())
    } else {
        Err(Reason::NodeNotReady)
    }
}

/// The node is not cordoned, or the pod tolerates
/// [`TAINT_NODE_UNSCHEDULABLE`]`:NoSchedule`.
pub fn node_schedulable(pod: &v1::Pod, node: &NodeInfo) -> Result<(), Reason> {
    let cordoned = node.node().spec.as_ref().is_some_and(|s| s.unschedulable);
    if !cordoned {
        return Ok(());
    }
    let taint = v1::Taint {
        key: TAINT_NODE_UNSCHEDULABLE.into(),
        effect: EFFECT_NO_SCHEDULE.into(),
        ..Default::default()
    };
    if tolerations(pod).iter().any(|t| tolerates(t, &taint)) {
        Ok(())
    } else {
        Err(Reason::Unschedulable)
    }
}

/// Every `nodeSelector` pair of the pod is a label of the node.
pub fn node_selector_matches(pod: &v1::Pod, node: &NodeInfo) -> Result<(), Reason> {
    let Some(wanted) = pod.spec.as_ref().map(|s| &s.node_selector) else {
        return Ok(());
    };
    selector_matches(Some(&LabelSelector::from_map(wanted)), node)
}

fn selector_matches(selector: Option<&LabelSelector>, node: &NodeInfo) -> Result<(), Reason> {
    let Some(selector) = selector else {
        return Ok(());
    };
    let empty = BTreeMap::new();
    let labels = node.node().metadata.as_ref().map_or(&empty, |m| &m.labels);
    if selector.matches(labels) {
        Ok(())
    } else {
        Err(Reason::NodeSelectorMismatch)
    }
}

/// The pod tolerates every `NoSchedule` and `NoExecute` taint of the node
/// (`PreferNoSchedule` taints never filter).
pub fn taints_tolerated(pod: &v1::Pod, node: &NodeInfo) -> Result<(), Reason> {
    let tolerations = tolerations(pod);
    let untolerated = node
        .node()
        .spec
        .iter()
        .flat_map(|s| &s.taints)
        .filter(|t| t.effect == EFFECT_NO_SCHEDULE || t.effect == EFFECT_NO_EXECUTE)
        .find(|taint| !tolerations.iter().any(|t| tolerates(t, taint)));
    match untolerated {
        Some(taint) => Err(Reason::UntoleratedTaint {
            key: taint.key.clone(),
        }),
        None => Ok(()),
    }
}

pub use keelson_model::pod::tolerates;

/// One more pod stays within the node's `pods` allocatable.
pub fn pod_count_fits(_pod: &v1::Pod, node: &NodeInfo) -> Result<(), Reason> {
    let after = i64::try_from(node.pod_count())
        .unwrap_or(i64::MAX)
        .saturating_add(1);
    if after > node.allocatable().pods {
        Err(Reason::TooManyPods)
    } else {
        Ok(())
    }
}

/// The pod's cpu request fits in what the node's pods leave; a pod that
/// requests no cpu always fits.
pub fn cpu_fits(pod: &v1::Pod, node: &NodeInfo) -> Result<(), Reason> {
    cpu_fits_request(pod_requests(pod).cpu_millis, node)
}

fn cpu_fits_request(wanted: i64, node: &NodeInfo) -> Result<(), Reason> {
    let free = node
        .allocatable()
        .cpu_millis
        .saturating_sub(node.requested().cpu_millis);
    if wanted > 0 && wanted > free {
        Err(Reason::InsufficientCpu)
    } else {
        Ok(())
    }
}

/// The pod's memory request fits in what the node's pods leave; a pod that
/// requests no memory always fits.
pub fn memory_fits(pod: &v1::Pod, node: &NodeInfo) -> Result<(), Reason> {
    memory_fits_request(pod_requests(pod).memory_bytes, node)
}

fn memory_fits_request(wanted: i64, node: &NodeInfo) -> Result<(), Reason> {
    let free = node
        .allocatable()
        .memory_bytes
        .saturating_sub(node.requested().memory_bytes);
    if wanted > 0 && wanted > free {
        Err(Reason::InsufficientMemory)
    } else {
        Ok(())
    }
}

/// None of the pod's host ports conflicts with one the node's pods hold.
pub fn host_ports_free(pod: &v1::Pod, node: &NodeInfo) -> Result<(), Reason> {
    ports_free(&host_ports(pod), node)
}

fn ports_free(wanted: &[crate::HostPort], node: &NodeInfo) -> Result<(), Reason> {
    let taken = wanted
        .iter()
        .any(|want| node.used_ports().iter().any(|used| used.conflicts(want)));
    if taken {
        Err(Reason::HostPortConflict)
    } else {
        Ok(())
    }
}

fn tolerations(pod: &v1::Pod) -> &[v1::Toleration] {
    pod.spec.as_ref().map_or(&[], |s| s.tolerations.as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{
        container, node, pod, pod_with, taint, toleration, with_labels, with_taints,
        with_tolerations,
    };

    fn info(n: v1::Node, pods: Vec<v1::Pod>) -> NodeInfo {
        NodeInfo::new(n, pods)
    }

    fn not_ready(mut n: v1::Node, status: &str) -> v1::Node {
        if let Some(s) = n.status.as_mut() {
            for c in &mut s.conditions {
                c.status = status.into();
            }
        }
        n
    }

    fn cordoned(mut n: v1::Node) -> v1::Node {
        n.spec.get_or_insert_with(Default::default).unschedulable = true;
        n
    }

    fn with_node_selector(mut p: v1::Pod, pairs: &[(&str, &str)]) -> v1::Pod {
        if let Some(s) = p.spec.as_mut() {
            s.node_selector = pairs
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect();
        }
        p
    }

    fn with_max_pods(mut n: v1::Node, max: &str) -> v1::Node {
        if let Some(s) = n.status.as_mut() {
            s.allocatable.insert("pods".into(), max.into());
        }
        n
    }

    fn with_host_port(port: i32) -> v1::Pod {
        pod_with("p", vec![container(&[], &[], &[port])])
    }

    #[test]
    fn each_filter_passes_and_fails() {
        let n = || node("n1", "4", "8Gi");
        let p = || pod("p", "1", "1Gi");
        let untainted_key = |key: &str| Reason::UntoleratedTaint { key: key.into() };
        /// (case, filter, pod, node, expected)
        type Case = (&'static str, Filter, v1::Pod, NodeInfo, Result<(), Reason>);
        let cases: Vec<Case> = vec![
            ("ready", node_ready, p(), info(n(), vec![]), Ok(())),
            (
                "ready False",
                node_ready,
                p(),
                info(not_ready(n(), "False"), vec![]),
                Err(Reason::NodeNotReady),
            ),
            (
                "ready Unknown",
                node_ready,
                p(),
                info(not_ready(n(), "Unknown"), vec![]),
                Err(Reason::NodeNotReady),
            ),
            (
                "no status",
                node_ready,
                p(),
                info(
                    v1::Node {
                        status: None,
                        ..n()
                    },
                    vec![],
                ),
                Err(Reason::NodeNotReady),
            ),
            (
                "schedulable",
                node_schedulable,
                p(),
                info(n(), vec![]),
                Ok(()),
            ),
            (
                "cordoned",
                node_schedulable,
                p(),
                info(cordoned(n()), vec![]),
                Err(Reason::Unschedulable),
            ),
            (
                "cordoned, tolerated",
                node_schedulable,
                with_tolerations(
                    p(),
                    vec![toleration(
                        TAINT_NODE_UNSCHEDULABLE,
                        "Exists",
                        "",
                        "NoSchedule",
                    )],
                ),
                info(cordoned(n()), vec![]),
                Ok(()),
            ),
            (
                "cordoned, tolerated for NoExecute only",
                node_schedulable,
                with_tolerations(
                    p(),
                    vec![toleration(
                        TAINT_NODE_UNSCHEDULABLE,
                        "Exists",
                        "",
                        "NoExecute",
                    )],
                ),
                info(cordoned(n()), vec![]),
                Err(Reason::Unschedulable),
            ),
            (
                "no node selector",
                node_selector_matches,
                p(),
                info(with_labels(n(), &[("zone", "a")]), vec![]),
                Ok(()),
            ),
            (
                "node selector matches",
                node_selector_matches,
                with_node_selector(p(), &[("zone", "a"), ("disk", "ssd")]),
                info(
                    with_labels(n(), &[("zone", "a"), ("disk", "ssd"), ("x", "y")]),
                    vec![],
                ),
                Ok(()),
            ),
            (
                "node selector value differs",
                node_selector_matches,
                with_node_selector(p(), &[("zone", "b")]),
                info(with_labels(n(), &[("zone", "a")]), vec![]),
                Err(Reason::NodeSelectorMismatch),
            ),
            (
                "node selector label missing",
                node_selector_matches,
                with_node_selector(p(), &[("zone", "a"), ("disk", "ssd")]),
                info(with_labels(n(), &[("zone", "a")]), vec![]),
                Err(Reason::NodeSelectorMismatch),
            ),
            (
                "no taints",
                taints_tolerated,
                p(),
                info(n(), vec![]),
                Ok(()),
            ),
            (
                "NoSchedule taint",
                taints_tolerated,
                p(),
                info(
                    with_taints(n(), vec![taint("gpu", "true", "NoSchedule")]),
                    vec![],
                ),
                Err(untainted_key("gpu")),
            ),
            (
                "NoExecute taint",
                taints_tolerated,
                p(),
                info(
                    with_taints(
                        n(),
                        vec![taint("node.kubernetes.io/unreachable", "", "NoExecute")],
                    ),
                    vec![],
                ),
                Err(untainted_key("node.kubernetes.io/unreachable")),
            ),
            (
                "PreferNoSchedule taint never filters",
                taints_tolerated,
                p(),
                info(
                    with_taints(n(), vec![taint("soft", "", "PreferNoSchedule")]),
                    vec![],
                ),
                Ok(()),
            ),
            (
                "first untolerated taint is reported",
                taints_tolerated,
                with_tolerations(p(), vec![toleration("a", "Exists", "", "")]),
                info(
                    with_taints(
                        n(),
                        vec![
                            taint("a", "", "NoSchedule"),
                            taint("soft", "", "PreferNoSchedule"),
                            taint("b", "", "NoSchedule"),
                            taint("c", "", "NoExecute"),
                        ],
                    ),
                    vec![],
                ),
                Err(untainted_key("b")),
            ),
            (
                "every taint tolerated",
                taints_tolerated,
                with_tolerations(
                    p(),
                    vec![
                        toleration("gpu", "Equal", "true", "NoSchedule"),
                        toleration("node.kubernetes.io/unreachable", "Exists", "", ""),
                    ],
                ),
                info(
                    with_taints(
                        n(),
                        vec![
                            taint("gpu", "true", "NoSchedule"),
                            taint("node.kubernetes.io/unreachable", "", "NoExecute"),
                        ],
                    ),
                    vec![],
                ),
                Ok(()),
            ),
            (
                "room for a pod",
                pod_count_fits,
                p(),
                info(with_max_pods(n(), "2"), vec![pod("a", "", "")]),
                Ok(()),
            ),
            (
                "pods full",
                pod_count_fits,
                p(),
                info(
                    with_max_pods(n(), "2"),
                    vec![pod("a", "", ""), pod("b", "", "")],
                ),
                Err(Reason::TooManyPods),
            ),
            (
                "zero pods allowed",
                pod_count_fits,
                p(),
                info(with_max_pods(n(), "0"), vec![]),
                Err(Reason::TooManyPods),
            ),
            ("cpu fits", cpu_fits, p(), info(n(), vec![]), Ok(())),
            (
                "cpu fits exactly",
                cpu_fits,
                pod("p", "1", ""),
                info(n(), vec![pod("a", "2500m", ""), pod("b", "500m", "")]),
                Ok(()),
            ),
            (
                "cpu taken by bound pods",
                cpu_fits,
                pod("p", "1", ""),
                info(n(), vec![pod("a", "2500m", ""), pod("b", "501m", "")]),
                Err(Reason::InsufficientCpu),
            ),
            (
                "cpu beyond the node",
                cpu_fits,
                pod("p", "5", ""),
                info(n(), vec![]),
                Err(Reason::InsufficientCpu),
            ),
            (
                "no cpu request fits an overcommitted node",
                cpu_fits,
                pod("p", "", "1Gi"),
                info(n(), vec![pod("a", "8", "")]),
                Ok(()),
            ),
            (
                "cpu limit counts as the request",
                cpu_fits,
                pod_with("p", vec![container(&[], &[("cpu", "5")], &[])]),
                info(n(), vec![]),
                Err(Reason::InsufficientCpu),
            ),
            ("memory fits", memory_fits, p(), info(n(), vec![]), Ok(())),
            (
                "memory fits exactly",
                memory_fits,
                pod("p", "", "4Gi"),
                info(n(), vec![pod("a", "", "4Gi")]),
                Ok(()),
            ),
            (
                "memory taken by bound pods",
                memory_fits,
                pod("p", "", "4Gi"),
                info(n(), vec![pod("a", "", "4097Mi")]),
                Err(Reason::InsufficientMemory),
            ),
            (
                "memory on a node without memory",
                memory_fits,
                pod("p", "", "1"),
                info(node("n1", "4", ""), vec![]),
                Err(Reason::InsufficientMemory),
            ),
            (
                "host port free",
                host_ports_free,
                with_host_port(80),
                info(n(), vec![with_host_port(443), pod("a", "", "")]),
                Ok(()),
            ),
            (
                "host port taken",
                host_ports_free,
                with_host_port(80),
                info(n(), vec![with_host_port(443), with_host_port(80)]),
                Err(Reason::HostPortConflict),
            ),
            (
                "no host port never conflicts",
                host_ports_free,
                with_host_port(0),
                info(n(), vec![with_host_port(0)]),
                Ok(()),
            ),
        ];
        for (name, f, pod, node, want) in cases {
            assert_eq!(f(&pod, &node), want, "{name}");
        }
    }

    #[test]
    fn toleration_matching() {
        // (toleration: key, operator, value, effect), (taint: key, value, effect), tolerated
        let cases = [
            (("k", "Exists", "", ""), ("k", "v", "NoSchedule"), true),
            (("k", "Exists", "", ""), ("k", "", "NoExecute"), true),
            (("k", "Exists", "", ""), ("other", "v", "NoSchedule"), false),
            (("", "Exists", "", ""), ("anything", "v", "NoExecute"), true),
            (
                ("", "Exists", "", "NoSchedule"),
                ("anything", "v", "NoSchedule"),
                true,
            ),
            (
                ("", "Exists", "", "NoSchedule"),
                ("anything", "v", "NoExecute"),
                false,
            ),
            (("k", "Equal", "v", ""), ("k", "v", "NoSchedule"), true),
            (("k", "Equal", "v", ""), ("k", "w", "NoSchedule"), false),
            (("k", "", "v", "NoSchedule"), ("k", "v", "NoSchedule"), true),
            (("k", "", "", ""), ("k", "", "NoSchedule"), true),
            (("k", "", "", ""), ("k", "v", "NoSchedule"), false),
            (
                ("k", "Equal", "v", "NoSchedule"),
                ("k", "v", "NoExecute"),
                false,
            ),
            (
                ("k", "Equal", "v", "NoExecute"),
                ("k", "v", "NoExecute"),
                true,
            ),
            (
                ("k", "Exists", "", "NoExecute"),
                ("k", "v", "NoSchedule"),
                false,
            ),
            (
                ("k", "Exists", "", "PreferNoSchedule"),
                ("k", "", "PreferNoSchedule"),
                true,
            ),
            (("k", "Like", "v", ""), ("k", "v", "NoSchedule"), false),
        ];
        for ((tk, op, tv, te), (k, v, e), want) in cases {
            assert_eq!(
                tolerates(&toleration(tk, op, tv, te), &taint(k, v, e)),
                want,
                "toleration {tk}:{op}:{tv}:{te} vs taint {k}={v}:{e}"
            );
        }
    }

    #[test]
    fn prefer_no_schedule_ignored_even_untolerated() {
        let n = with_taints(
            node("n1", "4", "8Gi"),
            vec![
                taint("a", "", "PreferNoSchedule"),
                taint("b", "", "NoSchedule"),
            ],
        );
        let tolerant = with_tolerations(
            pod("p", "", ""),
            vec![toleration("b", "Exists", "", "NoSchedule")],
        );
        assert_eq!(taints_tolerated(&tolerant, &info(n, vec![])), Ok(()));
    }

    #[test]
    fn filter_collects_every_reason() {
        let n = cordoned(with_max_pods(
            with_taints(node("n1", "1", "1Gi"), vec![taint("gpu", "", "NoSchedule")]),
            "1",
        ));
        let bound = pod_with("a", vec![container(&[], &[], &[80])]);
        let p = pod_with(
            "p",
            vec![container(&[("cpu", "2"), ("memory", "2Gi")], &[], &[80])],
        );
        assert_eq!(
            filter(&p, &info(n, vec![bound])),
            Err(vec![
                Reason::Unschedulable,
                Reason::UntoleratedTaint { key: "gpu".into() },
                Reason::TooManyPods,
                Reason::InsufficientCpu,
                Reason::InsufficientMemory,
                Reason::HostPortConflict,
            ])
        );
        assert_eq!(
            filter(&pod("p", "1", "1Gi"), &info(node("n1", "1", "1Gi"), vec![])),
            Ok(())
        );
    }

    #[test]
    fn reasons_read_as_kubernetes_words_them() {
        for (reason, want) in [
            (Reason::NodeNotReady, "node(s) were not ready"),
            (Reason::Unschedulable, "node(s) were unschedulable"),
            (
                Reason::NodeSelectorMismatch,
                "node(s) didn't match Pod's node affinity/selector",
            ),
            (
                Reason::UntoleratedTaint {
                    key: "node.kubernetes.io/unreachable".into(),
                },
                "node(s) had untolerated taint {node.kubernetes.io/unreachable}",
            ),
            (Reason::TooManyPods, "Too many pods"),
            (Reason::InsufficientCpu, "Insufficient cpu"),
            (Reason::InsufficientMemory, "Insufficient memory"),
            (
                Reason::HostPortConflict,
                "node(s) didn't have free ports for the requested pod ports",
            ),
        ] {
            assert_eq!(reason.to_string(), want);
        }
    }

    #[test]
    fn garbage_quantities_do_not_panic() {
        let garbage = [
            "",
            "-1",
            "lots",
            "1e999",
            "99999999999999999999Ei",
            "1.2.3",
            "0.0001",
        ];
        for q in garbage {
            let mut n = node("n1", q, q);
            if let Some(s) = n.status.as_mut() {
                s.allocatable.insert("pods".into(), q.into());
                s.capacity = s.allocatable.clone();
            }
            let p = pod_with(
                "p",
                vec![container(
                    &[("cpu", q), ("memory", q)],
                    &[("cpu", q), ("memory", q)],
                    &[],
                )],
            );
            let node_info = info(n, vec![p.clone()]);
            // Garbage counts as 0: the pod requests nothing, so only the
            // pod count (0 allowed) can fail.
            assert_eq!(
                filter(&p, &node_info),
                Err(vec![Reason::TooManyPods]),
                "{q:?}"
            );
            assert!(crate::score(&p, &node_info) <= crate::score::MAX_COMBINED_SCORE);
        }
    }
}
