//! [`NodeInfo`]: a node and the pods bound or assumed on it, with the
//! totals the filters and scores read, computed once.

use std::collections::BTreeMap;

use keelson_proto::v1;

use crate::resources::{
    node_allocatable, pod_requests, pod_requests_for_scoring, Allocatable, Resources,
};

/// Host IP a port without one binds: every address.
pub const BIND_ALL_HOST_IP: &str = "0.0.0.0";
/// Protocol of a port without one.
pub const DEFAULT_PROTOCOL: &str = "TCP";
/// Pod phases after which a pod holds no resources on its node.
const TERMINAL_PHASES: [&str; 2] = ["Succeeded", "Failed"];

/// A port a pod takes on its node's addresses (`hostPort`), with
/// Kubernetes' defaults filled in (IP `0.0.0.0`, protocol `TCP`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostPort {
    pub ip: String,
    pub protocol: String,
    pub port: i32,
}

impl HostPort {
    /// Whether two pods could not both bind these: same port and protocol,
    /// and the same IP or either one binding every IP.
    pub fn conflicts(&self, other: &HostPort) -> bool {
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip == other.ip || self.ip == BIND_ALL_HOST_IP || other.ip == BIND_ALL_HOST_IP)
    }
}

/// The host ports the pod asks for: its containers' ports with a
/// `hostPort` above 0.
pub fn host_ports(pod: &v1::Pod) -> Vec<HostPort> {
    pod.spec
        .iter()
        .flat_map(|s| &s.containers)
        .flat_map(|c| &c.ports)
        .filter(|p| p.host_port > 0)
        .map(|p| HostPort {
            ip: non_empty_or(&p.host_ip, BIND_ALL_HOST_IP),
            protocol: non_empty_or(&p.protocol, DEFAULT_PROTOCOL),
            port: p.host_port,
        })
        .collect()
}

fn non_empty_or(s: &str, default: &str) -> String {
    if s.is_empty() { default } else { s }.to_string()
}

/// A node with the pods bound or assumed on it (kube-scheduler's
/// `NodeInfo`). Pods in a terminal phase (Succeeded, Failed) hold nothing
/// and are left out; pods being deleted still count until they are gone.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    node: v1::Node,
    pods: Vec<v1::Pod>,
    allocatable: Allocatable,
    requested: Resources,
    requested_for_scoring: Resources,
    used_ports: Vec<HostPort>,
}

impl NodeInfo {
    pub fn new(node: v1::Node, pods: impl IntoIterator<Item = v1::Pod>) -> NodeInfo {
        let mut info = NodeInfo {
            allocatable: node_allocatable(&node),
            node,
            pods: Vec::new(),
            requested: Resources::default(),
            requested_for_scoring: Resources::default(),
            used_ports: Vec::new(),
        };
        for pod in pods {
            info.add_pod(pod);
        }
        info
    }

    /// Account for one more pod on the node (bound, or assumed while its
    /// binding is in flight). A terminal pod is ignored.
    pub fn add_pod(&mut self, pod: v1::Pod) {
        if is_terminal(&pod) {
            return;
        }
        self.requested = self.requested.saturating_add(pod_requests(&pod));
        self.requested_for_scoring = self
            .requested_for_scoring
            .saturating_add(pod_requests_for_scoring(&pod));
        self.used_ports.extend(host_ports(&pod));
        self.pods.push(pod);
    }

    /// Replace the node object (a watch update), keeping its pods.
    pub fn set_node(&mut self, node: v1::Node) {
        self.allocatable = node_allocatable(&node);
        self.node = node;
    }

    /// Stop accounting for the pod `namespace/name`; false if it was not
    /// here. Totals are recomputed from the pods that remain.
    pub fn remove_pod(&mut self, namespace: &str, name: &str) -> bool {
        let before = self.pods.len();
        self.pods.retain(|p| {
            let m = p.metadata.as_ref();
            !(m.is_some_and(|m| m.namespace == namespace && m.name == name))
        });
        if self.pods.len() == before {
            return false;
        }
        let pods = std::mem::take(&mut self.pods);
        self.requested = Resources::default();
        self.requested_for_scoring = Resources::default();
        self.used_ports.clear();
        for pod in pods {
            self.add_pod(pod);
        }
        true
    }

    pub fn node(&self) -> &v1::Node {
        &self.node
    }

    /// The node's name (`metadata.name`).
    pub fn name(&self) -> &str {
        self.node.metadata.as_ref().map_or("", |m| m.name.as_str())
    }

    /// The pods that hold resources on the node.
    pub fn pods(&self) -> &[v1::Pod] {
        &self.pods
    }

    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }

    /// What the node can hold in total.
    pub fn allocatable(&self) -> Allocatable {
        self.allocatable
    }

    /// The sum of its pods' requests ([`pod_requests`]), for filtering.
    pub fn requested(&self) -> Resources {
        self.requested
    }

    /// The sum of its pods' requests for scoring
    /// ([`pod_requests_for_scoring`]).
    pub fn requested_for_scoring(&self) -> Resources {
        self.requested_for_scoring
    }

    /// The host ports its pods hold.
    pub fn used_ports(&self) -> &[HostPort] {
        &self.used_ports
    }
}

fn is_terminal(pod: &v1::Pod) -> bool {
    pod.status
        .as_ref()
        .is_some_and(|s| TERMINAL_PHASES.contains(&s.phase.as_str()))
}

/// A [`NodeInfo`] per node, sorted by node name, each with the pods whose
/// `spec.nodeName` names it. Pods bound to no node, or to a node not in
/// `nodes`, are left out.
pub fn snapshot(
    nodes: impl IntoIterator<Item = v1::Node>,
    pods: impl IntoIterator<Item = v1::Pod>,
) -> Vec<NodeInfo> {
    let mut by_node: BTreeMap<String, Vec<v1::Pod>> = BTreeMap::new();
    for pod in pods {
        let node_name = pod.spec.as_ref().map_or("", |s| s.node_name.as_str());
        if !node_name.is_empty() {
            by_node.entry(node_name.to_string()).or_default().push(pod);
        }
    }
    let mut infos: Vec<NodeInfo> = nodes
        .into_iter()
        .map(|n| {
            let name = n.metadata.as_ref().map_or("", |m| m.name.as_str());
            let pods = by_node.remove(name).unwrap_or_default();
            NodeInfo::new(n, pods)
        })
        .collect();
    infos.sort_by(|a, b| a.name().cmp(b.name()));
    infos
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{container, node, pod, pod_with};

    fn port(ip: &str, protocol: &str, port: i32) -> HostPort {
        HostPort {
            ip: ip.into(),
            protocol: protocol.into(),
            port,
        }
    }

    #[test]
    fn remove_pod_recomputes_totals() {
        let mut info = NodeInfo::new(
            node("n1", "4", "8Gi"),
            [pod("a", "500m", "1Gi"), pod("b", "1", "")],
        );
        assert!(info.remove_pod("default", "a"));
        assert!(!info.remove_pod("default", "a"), "already gone");
        assert!(!info.remove_pod("other", "b"), "namespace matters");
        assert_eq!(info.pod_count(), 1);
        assert_eq!(
            info.requested(),
            Resources {
                cpu_millis: 1000,
                memory_bytes: 0
            }
        );
        info.set_node(node("n1", "8", "8Gi"));
        assert_eq!(info.allocatable().cpu_millis, 8000);
        assert_eq!(info.pod_count(), 1, "pods survive a node update");
    }

    #[test]
    fn totals_of_bound_pods() {
        let info = NodeInfo::new(
            node("n1", "4", "8Gi"),
            [pod("a", "500m", "1Gi"), pod("b", "1", ""), pod("c", "", "")],
        );
        assert_eq!(info.name(), "n1");
        assert_eq!(info.pod_count(), 3);
        assert_eq!(
            info.requested(),
            Resources {
                cpu_millis: 1500,
                memory_bytes: 1 << 30
            }
        );
        assert_eq!(
            info.requested_for_scoring(),
            Resources {
                cpu_millis: 1600,
                memory_bytes: (1 << 30) + 2 * (200 << 20)
            }
        );
        assert_eq!(info.allocatable().cpu_millis, 4000);
    }

    #[test]
    fn terminal_pods_hold_nothing() {
        let mut done = pod("done", "2", "2Gi");
        done.status = Some(v1::PodStatus {
            phase: "Succeeded".into(),
            ..Default::default()
        });
        let mut failed = done.clone();
        if let Some(s) = failed.status.as_mut() {
            s.phase = "Failed".into();
        }
        let mut running = done.clone();
        if let Some(s) = running.status.as_mut() {
            s.phase = "Running".into();
        }
        let info = NodeInfo::new(node("n1", "4", "8Gi"), [done, failed, running]);
        assert_eq!(info.pod_count(), 1);
        assert_eq!(info.requested().cpu_millis, 2000);
    }

    #[test]
    fn add_pod_accumulates() {
        let mut info = NodeInfo::new(node("n1", "4", "8Gi"), []);
        assert_eq!(info.requested(), Resources::default());
        info.add_pod(pod_with("a", vec![container(&[("cpu", "1")], &[], &[80])]));
        info.add_pod(pod_with("b", vec![container(&[("cpu", "1")], &[], &[443])]));
        assert_eq!(info.pod_count(), 2);
        assert_eq!(info.requested().cpu_millis, 2000);
        assert_eq!(
            info.used_ports(),
            [port("0.0.0.0", "TCP", 80), port("0.0.0.0", "TCP", 443)]
        );
    }

    #[test]
    fn host_ports_with_defaults() {
        let mut p = pod_with("p", vec![container(&[], &[], &[0, 8080])]);
        if let Some(c) = p.spec.as_mut().and_then(|s| s.containers.first_mut()) {
            c.ports.push(v1::ContainerPort {
                host_port: 53,
                container_port: 53,
                protocol: "UDP".into(),
                host_ip: "127.0.0.2".into(),
                ..Default::default()
            });
        }
        assert_eq!(
            host_ports(&p),
            [port("0.0.0.0", "TCP", 8080), port("127.0.0.2", "UDP", 53)]
        );
    }

    #[test]
    fn host_port_conflicts() {
        for (a, b, want) in [
            (port("0.0.0.0", "TCP", 80), port("0.0.0.0", "TCP", 80), true),
            (
                port("0.0.0.0", "TCP", 80),
                port("127.0.0.2", "TCP", 80),
                true,
            ),
            (
                port("127.0.0.2", "TCP", 80),
                port("0.0.0.0", "TCP", 80),
                true,
            ),
            (
                port("127.0.0.2", "TCP", 80),
                port("127.0.0.2", "TCP", 80),
                true,
            ),
            (
                port("127.0.0.2", "TCP", 80),
                port("127.0.0.3", "TCP", 80),
                false,
            ),
            (
                port("0.0.0.0", "TCP", 80),
                port("0.0.0.0", "UDP", 80),
                false,
            ),
            (
                port("0.0.0.0", "TCP", 80),
                port("0.0.0.0", "TCP", 81),
                false,
            ),
        ] {
            assert_eq!(a.conflicts(&b), want, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn snapshot_groups_pods_by_node() {
        let bound = |name: &str, node_name: &str| {
            let mut p = pod(name, "1", "");
            if let Some(s) = p.spec.as_mut() {
                s.node_name = node_name.into();
            }
            p
        };
        let infos = snapshot(
            [node("n2", "4", "8Gi"), node("n1", "4", "8Gi")],
            [
                bound("a", "n1"),
                bound("b", "n2"),
                bound("c", "n1"),
                bound("pending", ""),
                bound("elsewhere", "gone"),
            ],
        );
        let summary: Vec<(&str, usize, i64)> = infos
            .iter()
            .map(|i| (i.name(), i.pod_count(), i.requested().cpu_millis))
            .collect();
        assert_eq!(summary, [("n1", 2, 2000), ("n2", 1, 1000)]);
    }
}
