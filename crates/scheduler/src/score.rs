//! The scores: where would the pod run best? Each is 0 to
//! [`MAX_NODE_SCORE`] for one feasible node; [`score()`] weighs them
//! together.

use keelson_proto::v1;

use crate::node_info::NodeInfo;
use crate::resources::pod_requests_for_scoring;

/// The best score one scoring function gives (Kubernetes' `MaxNodeScore`).
pub const MAX_NODE_SCORE: u32 = 100;
/// Weight of [`least_allocated`] in [`score()`]: Kubernetes' default weight
/// of its `NodeResourcesFit` plugin.
pub const LEAST_ALLOCATED_WEIGHT: u32 = 1;
/// Weight of [`spread`] in [`score()`]: Kubernetes' default weight of its
/// `PodTopologySpread` plugin, so spreading a workload's replicas for
/// availability outweighs packing by load.
pub const SPREAD_WEIGHT: u32 = 2;
/// The best combined score [`score()`] gives.
pub const MAX_COMBINED_SCORE: u32 = MAX_NODE_SCORE * (LEAST_ALLOCATED_WEIGHT + SPREAD_WEIGHT);
/// Resources [`least_allocated`] averages over (cpu and memory, weighted
/// equally as in Kubernetes' default).
const LEAST_ALLOCATED_RESOURCES: u32 = 2;

/// The pod's combined score on the node: the weighted sum of
/// [`least_allocated`] and [`spread`], 0 to [`MAX_COMBINED_SCORE`].
pub fn score(pod: &v1::Pod, node: &NodeInfo) -> u32 {
    score_info(&crate::filter::PodInfo::new(pod), node)
}

/// [`score()`] on a precomputed [`PodInfo`](crate::filter::PodInfo).
pub fn score_info(pi: &crate::filter::PodInfo<'_>, node: &NodeInfo) -> u32 {
    LEAST_ALLOCATED_WEIGHT * least_allocated_request(pi.requests_for_scoring, node)
        + SPREAD_WEIGHT * spread(pi.pod, node)
}

/// Kubernetes' `LeastAllocated`: the share of the node left free once the
/// pod is on it, averaged over cpu and memory, each
/// `(allocatable - requested) * 100 / allocatable` (0 when the node has none
/// of the resource or would be overcommitted). Requests are counted as for
/// scoring ([`pod_requests_for_scoring`]), so pods without requests count
/// as small ones rather than nothing.
pub fn least_allocated(pod: &v1::Pod, node: &NodeInfo) -> u32 {
    least_allocated_request(pod_requests_for_scoring(pod), node)
}

fn least_allocated_request(request: crate::Resources, node: &NodeInfo) -> u32 {
    let allocatable = node.allocatable();
    let after = node.requested_for_scoring().saturating_add(request);
    let cpu = least_requested_score(after.cpu_millis, allocatable.cpu_millis);
    let memory = least_requested_score(after.memory_bytes, allocatable.memory_bytes);
    (cpu + memory) / LEAST_ALLOCATED_RESOURCES
}

/// 0 to [`MAX_NODE_SCORE`]: the free share of `capacity` once `requested`
/// is taken.
fn least_requested_score(requested: i64, capacity: i64) -> u32 {
    if capacity <= 0 || requested > capacity {
        return 0;
    }
    // In i128: `free * 100` overflows i64 for capacities above ~9.2e16.
    let free = i128::from(capacity) - i128::from(requested);
    let score = free * i128::from(MAX_NODE_SCORE) / i128::from(capacity);
    u32::try_from(score).map_or(0, |s| s.min(MAX_NODE_SCORE))
}

/// Spread of a workload: [`MAX_NODE_SCORE`] divided by one more than the
/// number of pods on the node with the same controller as the pod (an
/// owner reference with `controller: true` and the same uid), so 100 with
/// none, 50 with one, 33 with two. A pod without a controller scores 100
/// everywhere.
pub fn spread(pod: &v1::Pod, node: &NodeInfo) -> u32 {
    let Some(owner) = controller_uid(pod) else {
        return MAX_NODE_SCORE;
    };
    let siblings = node
        .pods()
        .iter()
        .filter(|p| controller_uid(p) == Some(owner))
        .count();
    MAX_NODE_SCORE
        / u32::try_from(siblings)
            .unwrap_or(u32::MAX)
            .saturating_add(1)
}

/// The uid of the pod's controller, if it has one.
fn controller_uid(pod: &v1::Pod) -> Option<&str> {
    keelson_model::controller_of(pod.metadata.as_ref()?)
        .map(|r| r.uid.as_str())
        .filter(|uid| !uid.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{node, owned_by, pod};

    #[test]
    fn least_allocated_values() {
        let n = || node("n", "4", "8Gi");
        for (name, p, bound, want) in [
            ("empty node", pod("p", "1", "2Gi"), vec![], 75),
            (
                "half used",
                pod("p", "1", "2Gi"),
                vec![pod("a", "2", "4Gi")],
                25,
            ),
            ("cpu and memory averaged", pod("p", "4", "0"), vec![], 50),
            ("full", pod("p", "2", "4Gi"), vec![pod("a", "2", "4Gi")], 0),
            (
                "overcommitted counts as 0",
                pod("p", "3", "4Gi"),
                vec![pod("a", "2", "")],
                // cpu: 0 (5 > 4 cpus); memory: (8 - 4 - 0.2) / 8 = 47.
                23,
            ),
            (
                "no requests count as 100m and 200Mi",
                pod("p", "", ""),
                vec![],
                // cpu: 3900/4000 = 97; memory: (8192 - 200)/8192 = 97.
                97,
            ),
        ] {
            let info = NodeInfo::new(n(), bound);
            assert_eq!(least_allocated(&p, &info), want, "{name}");
        }
    }

    #[test]
    fn least_allocated_orders_nodes_by_free_share() {
        let p = pod("p", "500m", "512Mi");
        let empty_big = NodeInfo::new(node("a", "8", "16Gi"), []);
        let empty_small = NodeInfo::new(node("b", "2", "4Gi"), []);
        let busy_big = NodeInfo::new(node("c", "8", "16Gi"), [pod("x", "6", "12Gi")]);
        let full = NodeInfo::new(node("d", "2", "4Gi"), [pod("x", "2", "4Gi")]);
        let scores: Vec<u32> = [&empty_big, &empty_small, &busy_big, &full]
            .iter()
            .map(|n| least_allocated(&p, n))
            .collect();
        assert!(
            scores.windows(2).all(|w| w[0] > w[1]),
            "want strictly decreasing, got {scores:?}"
        );
    }

    #[test]
    fn least_allocated_without_resources_or_with_huge_ones() {
        let none = NodeInfo::new(node("n", "", ""), []);
        assert_eq!(least_allocated(&pod("p", "1", "1Gi"), &none), 0);
        let huge = NodeInfo::new(node("n", "9e15", "7Ei"), []);
        assert_eq!(least_allocated(&pod("p", "1", "1Gi"), &huge), 99);
        let greedy = pod("p", "9e15", "7Ei");
        assert_eq!(least_allocated(&greedy, &huge), 0);
    }

    #[test]
    fn spread_prefers_fewer_siblings() {
        let sibling = |name: &str| owned_by(pod(name, "", ""), "rs-1");
        let p = sibling("p");
        for (name, bound, want) in [
            ("none", vec![], 100),
            (
                "other pods only",
                vec![pod("x", "", ""), owned_by(pod("y", "", ""), "rs-2")],
                100,
            ),
            ("one sibling", vec![sibling("a"), pod("x", "", "")], 50),
            ("two siblings", vec![sibling("a"), sibling("b")], 33),
            (
                "four siblings",
                (0..4).map(|i| sibling(&format!("s{i}"))).collect(),
                20,
            ),
        ] {
            let info = NodeInfo::new(node("n", "4", "8Gi"), bound);
            assert_eq!(spread(&p, &info), want, "{name}");
        }
        // Not a controller: not a sibling.
        let mut loose = sibling("a");
        if let Some(m) = loose.metadata.as_mut() {
            m.owner_references[0].controller = Some(false);
        }
        let info = NodeInfo::new(node("n", "4", "8Gi"), [loose]);
        assert_eq!(spread(&p, &info), 100);
        // No controller: the same everywhere.
        let crowded = NodeInfo::new(node("n", "4", "8Gi"), [sibling("a"), sibling("b")]);
        assert_eq!(spread(&pod("p", "", ""), &crowded), 100);
    }

    #[test]
    fn combined_score_weighs_spread_over_load() {
        let p = owned_by(pod("p", "1", "1Gi"), "rs-1");
        let empty = NodeInfo::new(node("n", "4", "8Gi"), []);
        let busy = NodeInfo::new(node("n", "4", "8Gi"), [pod("x", "2", "4Gi")]);
        let sibling = NodeInfo::new(
            node("n", "4", "8Gi"),
            [owned_by(pod("a", "1", "1Gi"), "rs-1")],
        );
        assert_eq!(score(&p, &empty), least_allocated(&p, &empty) + 2 * 100);
        assert!(score(&p, &empty) > score(&p, &busy));
        assert!(score(&p, &busy) > score(&p, &sibling));
        assert!(score(&p, &empty) <= MAX_COMBINED_SCORE);
    }
}
