//! [`schedule()`]: filter every node, score the feasible ones, pick the best;
//! or, when none is feasible, [`Unschedulable`] with the count of nodes per
//! reason.

use std::collections::BTreeMap;
use std::fmt;

use keelson_proto::v1;

use crate::filter::filter;
use crate::node_info::NodeInfo;
use crate::score::score;

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
    let mut unschedulable = Unschedulable {
        reasons: BTreeMap::new(),
        nodes: nodes.len(),
    };
    let mut best: Option<(u32, &str)> = None;
    for node in nodes {
        match filter(pod, node) {
            Ok(()) => {
                let candidate = (score(pod, node), node.name());
                best = match best {
                    Some(b) if !is_better(candidate, b) => Some(b),
                    _ => Some(candidate),
                };
            }
            Err(reasons) => {
                for reason in reasons {
                    *unschedulable.reasons.entry(reason.to_string()).or_default() += 1;
                }
            }
        }
    }
    best.map(|(_, name)| name.to_string()).ok_or(unschedulable)
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
