//! [`schedule()`]: filter every node, score the feasible ones, pick the best;
//! or, when none is feasible, [`Unschedulable`] with the count of nodes per
//! reason.

use std::collections::BTreeMap;
use std::fmt;

use keelson_proto::v1;

use crate::filter::{filter_info, PodInfo};
use crate::node_info::NodeInfo;
use crate::score::score_info;

/// No node may run the pod: how many nodes failed for each reason. This is
/// an ordinary outcome (it becomes the pod's `PodScheduled=False` condition
/// and an event), not an internal error.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Unschedulable {
    /// Each reason's text ([`Reason`](crate::Reason)'s `Display`) and the
    /// number of nodes that failed for it. A node failing for several
    /// reasons counts toward each.
    pub reasons: BTreeMap<String, usize>,
    /// The number of nodes considered.
    pub nodes: usize,
}

impl fmt::Display for Unschedulable {
    /// Kubernetes' wording: `0/3 nodes are available: 2 Insufficient cpu, 1
    /// node(s) had untolerated taint {node.kubernetes.io/unreachable}.`,
    /// reasons by count, most first, then by text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0/{} nodes are available", self.nodes)?;
        let mut reasons: Vec<(&String, &usize)> = self.reasons.iter().collect();
        reasons.sort_by(|(a_text, a_count), (b_text, b_count)| {
            b_count.cmp(a_count).then_with(|| a_text.cmp(b_text))
        });
        for (i, (text, count)) in reasons.into_iter().enumerate() {
            let separator = if i == 0 { ": " } else { ", " };
            write!(f, "{separator}{count} {text}")?;
        }
        f.write_str(".")
    }
}

/// The node to bind the pod to: the feasible node (every filter passes)
/// with the highest [`score()`], ties going to the first node name in
/// byte order. `Err` when no node is feasible, with every node's reasons.
pub fn schedule(pod: &v1::Pod, nodes: &[NodeInfo]) -> Result<String, Unschedulable> {
    schedule_sampled(pod, nodes, 0, nodes.len()).map(|(name, _)| name)
}

/// How many feasible nodes to find before scoring, out of `total`:
/// kube-scheduler's adaptive `percentageOfNodesToScore` (50% of the nodes
/// less 1% per 125 nodes, at least 5%, and never fewer than 100 nodes).
/// Large clusters score a sample; small ones every node.
pub fn feasible_nodes_to_find(total: usize) -> usize {
    const MIN_FEASIBLE: usize = 100;
    const MIN_PERCENT: usize = 5;
    if total <= MIN_FEASIBLE {
        return total;
    }
    let percent = 50usize.saturating_sub(total / 125).max(MIN_PERCENT);
    (total * percent / 100).max(MIN_FEASIBLE)
}

/// [`schedule()`] over a sample: filter nodes from index `start` on
/// (wrapping around) until `wanted` feasible nodes are found, then pick the
/// best of those. Returns the node and the index to start the next pod's
/// search at, so successive pods look at different nodes, as
/// kube-scheduler does. When no node is feasible every node has been
/// filtered, so the reasons count the whole cluster.
pub fn schedule_sampled(
    pod: &v1::Pod,
    nodes: &[NodeInfo],
    start: usize,
    wanted: usize,
) -> Result<(String, usize), Unschedulable> {
    let mut unschedulable = Unschedulable {
        reasons: BTreeMap::new(),
        nodes: nodes.len(),
    };
    let pi = PodInfo::new(pod);
    let mut best: Option<(u32, &str)> = None;
    let mut found = 0usize;
    let n = nodes.len();
    let start = if n == 0 { 0 } else { start % n };
    let mut next = start;
    for i in 0..n {
        let idx = (start + i) % n;
        next = (idx + 1) % n;
        let node = &nodes[idx];
        match filter_info(&pi, node) {
            Ok(()) => {
                let candidate = (score_info(&pi, node), node.name());
                best = match best {
                    Some(b) if !is_better(candidate, b) => Some(b),
                    _ => Some(candidate),
                };
                found += 1;
                if found >= wanted.max(1) {
                    break;
                }
            }
            Err(reasons) => {
                for reason in reasons {
                    *unschedulable.reasons.entry(reason.to_string()).or_default() += 1;
                }
            }
        }
    }
    best.map(|(_, name)| (name.to_string(), next))
        .ok_or(unschedulable)
}

/// Higher score wins; on a tie, the smaller name.
fn is_better((score, name): (u32, &str), (best_score, best_name): (u32, &str)) -> bool {
    score > best_score || (score == best_score && name < best_name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{node, owned_by, pod, taint, with_labels, with_taints};

    fn reasons(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
        pairs.iter().map(|(k, v)| ((*k).to_string(), *v)).collect()
    }

    #[test]
    fn feasible_nodes_to_find_follows_kube_scheduler() {
        for (total, want) in [
            (0, 0),
            (3, 3),
            (100, 100),
            (101, 100),
            (500, 230),
            (1_000, 420),
            (5_000, 500),
            (6_000, 300),
            (100_000, 5_000),
        ] {
            assert_eq!(feasible_nodes_to_find(total), want, "{total} nodes");
        }
    }

    #[test]
    fn sampled_search_stops_early_and_rotates() {
        let nodes: Vec<NodeInfo> = ["a", "b", "c", "d"]
            .iter()
            .map(|n| NodeInfo::new(node(n, "4", "8Gi"), []))
            .collect();
        let p = pod("p", "1", "1Gi");
        // Two wanted from index 1: b and c are looked at; b wins the tie.
        assert_eq!(schedule_sampled(&p, &nodes, 1, 2), Ok(("b".into(), 3)));
        // From index 3 wrapping: d and a; a wins the tie by name.
        assert_eq!(schedule_sampled(&p, &nodes, 3, 2), Ok(("a".into(), 1)));
        // A start past the end wraps.
        assert_eq!(schedule_sampled(&p, &nodes, 9, 1), Ok(("b".into(), 2)));
        // Nothing feasible: every node counted.
        let big = pod("p", "64", "1Gi");
        let err = schedule_sampled(&big, &nodes, 2, 1).unwrap_err();
        assert_eq!(err.nodes, 4);
        assert_eq!(err.reasons.get("Insufficient cpu"), Some(&4));
        assert!(schedule_sampled(&p, &[], 0, 5).is_err());
    }

    #[test]
    fn picks_the_expected_node() {
        let p = || pod("p", "1", "1Gi");
        let cases: Vec<(&str, v1::Pod, Vec<NodeInfo>, &str)> = vec![
            (
                "the emptiest node",
                p(),
                vec![
                    NodeInfo::new(node("a", "4", "8Gi"), [pod("x", "2", "4Gi")]),
                    NodeInfo::new(node("b", "4", "8Gi"), []),
                    NodeInfo::new(node("c", "4", "8Gi"), [pod("x", "1", "1Gi")]),
                ],
                "b",
            ),
            (
                "the only feasible node, though fuller",
                p(),
                vec![
                    NodeInfo::new(
                        with_taints(node("a", "4", "8Gi"), vec![taint("t", "", "NoSchedule")]),
                        [],
                    ),
                    NodeInfo::new(node("b", "4", "8Gi"), [pod("x", "3", "6Gi")]),
                    NodeInfo::new(node("c", "64", "256Gi"), [pod("x", "64", "")]),
                ],
                "b",
            ),
            (
                "a tie goes to the first name",
                p(),
                vec![
                    NodeInfo::new(node("c", "4", "8Gi"), []),
                    NodeInfo::new(node("a", "4", "8Gi"), []),
                    NodeInfo::new(node("b", "4", "8Gi"), []),
                ],
                "a",
            ),
            (
                "the node without a sibling",
                owned_by(p(), "rs-1"),
                vec![
                    NodeInfo::new(
                        node("a", "4", "8Gi"),
                        [owned_by(pod("s", "1", "1Gi"), "rs-1")],
                    ),
                    NodeInfo::new(node("b", "4", "8Gi"), [pod("x", "1", "1Gi")]),
                ],
                "b",
            ),
            (
                "the node the selector names",
                {
                    let mut p = p();
                    if let Some(s) = p.spec.as_mut() {
                        s.node_selector.insert("disk".into(), "ssd".into());
                    }
                    p
                },
                vec![
                    NodeInfo::new(node("a", "4", "8Gi"), []),
                    NodeInfo::new(
                        with_labels(node("b", "4", "8Gi"), &[("disk", "ssd")]),
                        [pod("x", "2", "")],
                    ),
                ],
                "b",
            ),
        ];
        for (name, pod, nodes, want) in cases {
            assert_eq!(schedule(&pod, &nodes), Ok(want.to_string()), "{name}");
        }
    }

    #[test]
    fn replicas_spread_across_nodes() {
        let mut nodes: Vec<NodeInfo> = ["a", "b", "c"]
            .into_iter()
            .map(|n| NodeInfo::new(node(n, "4", "8Gi"), []))
            .collect();
        let mut placed = Vec::new();
        for i in 0..6 {
            let replica = owned_by(pod(&format!("web-{i}"), "100m", "128Mi"), "rs-web");
            let Ok(name) = schedule(&replica, &nodes) else {
                panic!("replica {i} unschedulable");
            };
            if let Some(n) = nodes.iter_mut().find(|n| n.name() == name) {
                n.add_pod(replica);
            }
            placed.push(name);
        }
        assert_eq!(placed, ["a", "b", "c", "a", "b", "c"]);
    }

    #[test]
    fn unschedulable_message_is_kubernetes_style() {
        let unreachable = taint("node.kubernetes.io/unreachable", "", "NoExecute");
        let nodes = vec![
            NodeInfo::new(node("n1", "1", "8Gi"), []),
            NodeInfo::new(node("n2", "4", "8Gi"), [pod("x", "3500m", "")]),
            NodeInfo::new(with_taints(node("n3", "4", "8Gi"), vec![unreachable]), []),
        ];
        let got = schedule(&pod("p", "2", "1Gi"), &nodes);
        let want = Unschedulable {
            reasons: reasons(&[
                ("Insufficient cpu", 2),
                (
                    "node(s) had untolerated taint {node.kubernetes.io/unreachable}",
                    1,
                ),
            ]),
            nodes: 3,
        };
        assert_eq!(got, Err(want.clone()));
        assert_eq!(
            want.to_string(),
            "0/3 nodes are available: 2 Insufficient cpu, \
             1 node(s) had untolerated taint {node.kubernetes.io/unreachable}."
        );
    }

    #[test]
    fn a_node_counts_toward_each_of_its_reasons() {
        let mut cordoned = node("n2", "1", "1Gi");
        cordoned
            .spec
            .get_or_insert_with(Default::default)
            .unschedulable = true;
        let nodes = vec![
            NodeInfo::new(node("n1", "1", "1Gi"), []),
            NodeInfo::new(cordoned, []),
        ];
        let Err(got) = schedule(&pod("p", "2", "2Gi"), &nodes) else {
            panic!("should not fit");
        };
        assert_eq!(
            got.to_string(),
            "0/2 nodes are available: 2 Insufficient cpu, 2 Insufficient memory, \
             1 node(s) were unschedulable."
        );
    }

    #[test]
    fn message_orders_by_count_then_text() {
        for (counts, want) in [
            (vec![], "0/0 nodes are available."),
            (
                vec![("b", 1), ("a", 1), ("c", 3)],
                "0/5 nodes are available: 3 c, 1 a, 1 b.",
            ),
            (
                vec![("Too many pods", 10)],
                "0/5 nodes are available: 10 Too many pods.",
            ),
        ] {
            let u = Unschedulable {
                reasons: reasons(&counts),
                nodes: if counts.is_empty() { 0 } else { 5 },
            };
            assert_eq!(u.to_string(), want);
        }
    }

    #[test]
    fn no_nodes_is_unschedulable() {
        assert_eq!(
            schedule(&pod("p", "", ""), &[]),
            Err(Unschedulable::default())
        );
    }
}
