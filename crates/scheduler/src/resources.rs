//! Resource accounting: what a pod requests and what a node can hold, in
//! millicores and bytes.
//!
//! A pod's request is the sum over its containers of `resources.requests`;
//! a container with a limit but no request for a resource requests its limit
//! (the default Kubernetes' API server applies). A node's allocatable amount
//! of a resource is `status.allocatable[name]`, else `status.capacity[name]`.
//! Unparsable quantities count as 0 (see the crate docs).

use keelson_model::quantity;
use keelson_proto::v1;

/// Resource name of CPU in requests, limits, capacity and allocatable.
pub const CPU: &str = "cpu";
/// Resource name of memory.
pub const MEMORY: &str = "memory";
/// Resource name of the number of pods a node holds.
pub const PODS: &str = "pods";

/// Pods a node holds when neither its allocatable nor its capacity says:
/// the kubelet's default `--max-pods`.
pub const DEFAULT_MAX_PODS: i64 = 110;
/// CPU, in millicores, that a container without a cpu request counts as
/// when scoring (never when filtering): Kubernetes' `DefaultMilliCPURequest`,
/// so that pods without requests still spread by load.
pub const DEFAULT_CPU_REQUEST_MILLIS: i64 = 100;
/// Memory, in bytes, that a container without a memory request counts as
/// when scoring (200 MiB, Kubernetes' `DefaultMemoryRequest`).
pub const DEFAULT_MEMORY_REQUEST_BYTES: i64 = 200 * 1024 * 1024;

/// Amounts of the resources the scheduler accounts for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    pub cpu_millis: i64,
    pub memory_bytes: i64,
}

impl Resources {
    /// The sum, saturating at `i64::MAX` rather than overflowing.
    pub fn saturating_add(self, other: Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis.saturating_add(other.cpu_millis),
            memory_bytes: self.memory_bytes.saturating_add(other.memory_bytes),
        }
    }
}

/// What a node can hold in total (not what is left).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Allocatable {
    pub cpu_millis: i64,
    pub memory_bytes: i64,
    pub pods: i64,
}

/// The pod's request, for filtering: containers' requests (or limits),
/// absent ones counting as 0.
pub fn pod_requests(pod: &v1::Pod) -> Resources {
    sum_containers(pod, |c| Resources {
        cpu_millis: amount(CPU, container_request(c, CPU)),
        memory_bytes: amount(MEMORY, container_request(c, MEMORY)),
    })
}

/// The pod's request, for scoring: as [`pod_requests`], but a container
/// that names no cpu (or memory) request or limit counts as
/// [`DEFAULT_CPU_REQUEST_MILLIS`] (or [`DEFAULT_MEMORY_REQUEST_BYTES`]), as
/// Kubernetes' `GetNonzeroRequests` does. An explicit `0` stays 0.
pub fn pod_requests_for_scoring(pod: &v1::Pod) -> Resources {
    sum_containers(pod, |c| Resources {
        cpu_millis: container_request(c, CPU)
            .map_or(DEFAULT_CPU_REQUEST_MILLIS, |q| amount(CPU, Some(q))),
        memory_bytes: container_request(c, MEMORY)
            .map_or(DEFAULT_MEMORY_REQUEST_BYTES, |q| amount(MEMORY, Some(q))),
    })
}

/// What the node can hold: allocatable, falling back to capacity per
/// resource; [`DEFAULT_MAX_PODS`] pods when neither names `pods`; 0 cpu or
/// memory when neither names them (so nothing that requests them fits).
pub fn node_allocatable(node: &v1::Node) -> Allocatable {
    let status = node.status.as_ref();
    let lookup = |name: &str| {
        status.and_then(|s| {
            s.allocatable
                .get(name)
                .or_else(|| s.capacity.get(name))
                .map(String::as_str)
        })
    };
    Allocatable {
        cpu_millis: amount(CPU, lookup(CPU)),
        memory_bytes: amount(MEMORY, lookup(MEMORY)),
        pods: lookup(PODS).map_or(DEFAULT_MAX_PODS, |q| amount(PODS, Some(q))),
    }
}

fn sum_containers(pod: &v1::Pod, per_container: impl Fn(&v1::Container) -> Resources) -> Resources {
    pod.spec
        .iter()
        .flat_map(|s| &s.containers)
        .map(per_container)
        .fold(Resources::default(), Resources::saturating_add)
}

/// The container's request for a resource, or its limit when it has no
/// request for it.
fn container_request<'a>(c: &'a v1::Container, name: &str) -> Option<&'a str> {
    let r = c.resources.as_ref()?;
    r.requests
        .get(name)
        .or_else(|| r.limits.get(name))
        .map(String::as_str)
}

/// A quantity in the resource's unit; absent or unparsable is 0.
fn amount(name: &str, q: Option<&str>) -> i64 {
    q.and_then(|q| quantity::parse(name, q).ok()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{container, node, pod_with};

    #[test]
    fn pod_requests_sum_containers_and_default_to_limits() {
        // (containers as (requests, limits) lists, want cpu, want memory)
        type Case = (
            &'static str,
            Vec<(
                Vec<(&'static str, &'static str)>,
                Vec<(&'static str, &'static str)>,
            )>,
            i64,
            i64,
        );
        let cases: Vec<Case> = vec![
            ("no containers", vec![], 0, 0),
            ("no resources", vec![(vec![], vec![])], 0, 0),
            (
                "requests",
                vec![(vec![("cpu", "250m"), ("memory", "64Mi")], vec![])],
                250,
                64 << 20,
            ),
            (
                "summed",
                vec![
                    (vec![("cpu", "250m"), ("memory", "64Mi")], vec![]),
                    (vec![("cpu", "1"), ("memory", "1Gi")], vec![]),
                ],
                1250,
                (64 << 20) + (1 << 30),
            ),
            (
                "limits stand in for missing requests",
                vec![(vec![], vec![("cpu", "2"), ("memory", "1Gi")])],
                2000,
                1 << 30,
            ),
            (
                "request preferred over limit, per resource",
                vec![(vec![("cpu", "100m")], vec![("cpu", "2"), ("memory", "1Gi")])],
                100,
                1 << 30,
            ),
            (
                "garbage counts as 0",
                vec![(vec![("cpu", "lots"), ("memory", "-1Gi")], vec![])],
                0,
                0,
            ),
            (
                "garbage request does not fall back to the limit",
                vec![(vec![("cpu", "x")], vec![("cpu", "1")])],
                0,
                0,
            ),
        ];
        for (name, containers, cpu, memory) in cases {
            let p = pod_with(
                "p",
                containers
                    .iter()
                    .map(|(req, lim)| container(req, lim, &[]))
                    .collect(),
            );
            assert_eq!(
                pod_requests(&p),
                Resources {
                    cpu_millis: cpu,
                    memory_bytes: memory
                },
                "{name}"
            );
        }
    }

    #[test]
    fn scoring_requests_default_missing_ones() {
        let mib = 1 << 20;
        for (name, requests, cpu, memory) in [
            ("none", vec![], 100, 200 * mib),
            ("cpu only", vec![("cpu", "1")], 1000, 200 * mib),
            ("memory only", vec![("memory", "1Mi")], 100, mib),
            ("explicit zero", vec![("cpu", "0"), ("memory", "0")], 0, 0),
        ] {
            let p = pod_with("p", vec![container(&requests, &[], &[])]);
            assert_eq!(
                pod_requests_for_scoring(&p),
                Resources {
                    cpu_millis: cpu,
                    memory_bytes: memory
                },
                "{name}"
            );
        }
        let two = pod_with(
            "p",
            vec![container(&[], &[], &[]), container(&[], &[], &[])],
        );
        assert_eq!(pod_requests_for_scoring(&two).cpu_millis, 200);
    }

    #[test]
    fn allocatable_falls_back_to_capacity() {
        let mut n = node("n", "4", "8Gi");
        assert_eq!(
            node_allocatable(&n),
            Allocatable {
                cpu_millis: 4000,
                memory_bytes: 8 << 30,
                pods: DEFAULT_MAX_PODS
            }
        );
        let status = n.status.get_or_insert_with(Default::default);
        status.capacity = status.allocatable.clone();
        status.capacity.insert("pods".into(), "20".into());
        status.allocatable.clear();
        status.allocatable.insert("cpu".into(), "3500m".into());
        assert_eq!(
            node_allocatable(&n),
            Allocatable {
                cpu_millis: 3500,
                memory_bytes: 8 << 30,
                pods: 20
            }
        );
        n.status = None;
        assert_eq!(
            node_allocatable(&n),
            Allocatable {
                cpu_millis: 0,
                memory_bytes: 0,
                pods: DEFAULT_MAX_PODS
            }
        );
        let garbage = node("n", "many", "1.5.5Gi");
        assert_eq!(
            node_allocatable(&garbage),
            Allocatable {
                cpu_millis: 0,
                memory_bytes: 0,
                pods: DEFAULT_MAX_PODS
            }
        );
    }

    #[test]
    fn sums_saturate() {
        let big = Resources {
            cpu_millis: i64::MAX,
            memory_bytes: i64::MAX,
        };
        assert_eq!(big.saturating_add(big), big);
        let p = pod_with(
            "p",
            vec![
                container(&[("cpu", "9e15"), ("memory", "7Ei")], &[], &[]),
                container(&[("cpu", "9e15"), ("memory", "7Ei")], &[], &[]),
            ],
        );
        assert_eq!(pod_requests(&p), big);
    }
}
