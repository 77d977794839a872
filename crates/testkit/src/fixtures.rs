//! The objects tests create, built one way: a pod, a node, a Deployment,
//! each with the defaults most tests want and builder methods for the rest.
//!
//! ```
//! use keelson_testkit::fixtures::{deployment, node, pod};
//! let p = pod("web").image("builtin/http-echo").label("app", "web").port("http", 8080).build();
//! let n = node("n1").cpu("2").build();
//! let d = deployment("web", 3).image("builtin/http-echo").rolling(1, 1).build();
//! # let _ = (p, n, d);
//! ```

use std::collections::BTreeMap;

use keelson_proto::v1;

/// `key=value` pairs as a label (or annotation) map.
pub fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Metadata with a name and labels (no namespace: the API's path gives it).
pub fn meta(name: &str, kv: &[(&str, &str)]) -> Option<v1::ObjectMeta> {
    Some(v1::ObjectMeta {
        name: name.into(),
        labels: labels(kv),
        ..Default::default()
    })
}

/// The node a pod is bound to ("" when unbound).
pub fn node_of(p: &v1::Pod) -> String {
    p.spec
        .as_ref()
        .map(|s| s.node_name.clone())
        .unwrap_or_default()
}

/// The first container's image.
pub fn image_of(p: &v1::Pod) -> String {
    p.spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .map(|c| c.image.clone())
        .unwrap_or_default()
}

/// The first container's restart count.
pub fn restarts(p: &v1::Pod) -> i32 {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.first())
        .map_or(0, |c| c.restart_count)
}

/// A pod named `name` in `default` with one container `main` running
/// `builtin/sleep`.
pub fn pod(name: &str) -> PodBuilder {
    PodBuilder(v1::Pod {
        metadata: Some(v1::ObjectMeta {
            name: name.into(),
            namespace: "default".into(),
            ..Default::default()
        }),
        spec: Some(v1::PodSpec {
            containers: vec![v1::Container {
                name: "main".into(),
                image: "builtin/sleep".into(),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    })
}

pub struct PodBuilder(v1::Pod);

/// More changes to a pod built elsewhere.
impl From<v1::Pod> for PodBuilder {
    fn from(p: v1::Pod) -> Self {
        PodBuilder(p)
    }
}

impl PodBuilder {
    fn meta(&mut self) -> &mut v1::ObjectMeta {
        self.0.metadata.get_or_insert_with(Default::default)
    }
    fn spec(&mut self) -> &mut v1::PodSpec {
        self.0.spec.get_or_insert_with(Default::default)
    }
    fn main(&mut self) -> &mut v1::Container {
        let spec = self.spec();
        if spec.containers.is_empty() {
            spec.containers.push(v1::Container {
                name: "main".into(),
                ..Default::default()
            });
        }
        &mut spec.containers[0]
    }

    /// No namespace (the API path gives it).
    pub fn no_namespace(mut self) -> Self {
        self.meta().namespace.clear();
        self
    }
    pub fn namespace(mut self, ns: &str) -> Self {
        self.meta().namespace = ns.into();
        self
    }
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.meta().labels.insert(key.into(), value.into());
        self
    }
    pub fn labels(mut self, kv: &[(&str, &str)]) -> Self {
        self.meta().labels.extend(labels(kv));
        self
    }
    /// Bound to `node` already.
    pub fn node(mut self, node: &str) -> Self {
        self.spec().node_name = node.into();
        self
    }
    pub fn image(mut self, image: &str) -> Self {
        self.main().image = image.into();
        self
    }
    pub fn args(mut self, args: &[&str]) -> Self {
        self.main().args = args.iter().map(|s| s.to_string()).collect();
        self
    }
    /// A named container port.
    pub fn port(mut self, name: &str, port: i32) -> Self {
        self.main().ports.push(v1::ContainerPort {
            name: name.into(),
            container_port: port,
            ..Default::default()
        });
        self
    }
    /// A cpu request.
    pub fn cpu(mut self, cpu: &str) -> Self {
        self.main()
            .resources
            .get_or_insert_with(Default::default)
            .requests
            .insert("cpu".into(), cpu.into());
        self
    }
    /// A memory request.
    pub fn memory(mut self, memory: &str) -> Self {
        self.main()
            .resources
            .get_or_insert_with(Default::default)
            .requests
            .insert("memory".into(), memory.into());
        self
    }
    pub fn grace_seconds(mut self, secs: i64) -> Self {
        self.spec().termination_grace_period_seconds = Some(secs);
        self
    }
    pub fn readiness(mut self, probe: v1::Probe) -> Self {
        self.main().readiness_probe = Some(probe);
        self
    }
    pub fn liveness(mut self, probe: v1::Probe) -> Self {
        self.main().liveness_probe = Some(probe);
        self
    }
    pub fn build(self) -> v1::Pod {
        self.0
    }
}

/// An HTTP GET probe of `path` on the named `port`, every second, failing
/// after two misses.
pub fn http_probe(port: &str, path: &str) -> v1::Probe {
    v1::Probe {
        http_get: Some(v1::HttpGetAction {
            path: path.into(),
            port: port.into(),
            ..Default::default()
        }),
        period_seconds: 1,
        failure_threshold: 2,
        ..Default::default()
    }
}

/// A Ready node named `name` with 2 cpus, 4Gi of memory and room for 110
/// pods (capacity = allocatable).
pub fn node(name: &str) -> NodeBuilder {
    NodeBuilder {
        node: v1::Node {
            metadata: Some(v1::ObjectMeta {
                name: name.into(),
                ..Default::default()
            }),
            status: Some(v1::NodeStatus {
                conditions: vec![v1::NodeCondition {
                    r#type: "Ready".into(),
                    status: "True".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        },
        resources: labels(&[("cpu", "2"), ("memory", "4Gi"), ("pods", "110")]),
    }
}

pub struct NodeBuilder {
    node: v1::Node,
    resources: BTreeMap<String, String>,
}

impl NodeBuilder {
    pub fn cpu(mut self, cpu: &str) -> Self {
        self.resources.insert("cpu".into(), cpu.into());
        self
    }
    pub fn memory(mut self, memory: &str) -> Self {
        self.resources.insert("memory".into(), memory.into());
        self
    }
    pub fn pods(mut self, pods: &str) -> Self {
        self.resources.insert("pods".into(), pods.into());
        self
    }
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.node
            .metadata
            .get_or_insert_with(Default::default)
            .labels
            .insert(key.into(), value.into());
        self
    }
    pub fn build(mut self) -> v1::Node {
        let st = self.node.status.get_or_insert_with(Default::default);
        st.capacity = self.resources.clone();
        st.allocatable = self.resources;
        self.node
    }
}

/// A Deployment `name` in `default` of `replicas` pods labelled
/// `app=<name>` (its selector), one container `main` running
/// `builtin/sleep`, the default strategy.
pub fn deployment(name: &str, replicas: i32) -> DeploymentBuilder {
    let app = labels(&[("app", name)]);
    DeploymentBuilder {
        d: v1::Deployment {
            metadata: Some(v1::ObjectMeta {
                name: name.into(),
                namespace: "default".into(),
                labels: app.clone(),
                ..Default::default()
            }),
            spec: Some(v1::DeploymentSpec {
                replicas: Some(replicas),
                selector: Some(v1::LabelSelector {
                    match_labels: app.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        },
        template: pod("").no_namespace().labels(&[("app", name)]),
    }
}

pub struct DeploymentBuilder {
    d: v1::Deployment,
    template: PodBuilder,
}

impl DeploymentBuilder {
    pub fn image(mut self, image: &str) -> Self {
        self.template = self.template.image(image);
        self
    }
    pub fn port(mut self, name: &str, port: i32) -> Self {
        self.template = self.template.port(name, port);
        self
    }
    /// A RollingUpdate strategy with these maxSurge and maxUnavailable.
    pub fn rolling(mut self, max_surge: i32, max_unavailable: i32) -> Self {
        if let Some(spec) = self.d.spec.as_mut() {
            spec.strategy = Some(v1::DeploymentStrategy {
                r#type: "RollingUpdate".into(),
                rolling_update: Some(v1::RollingUpdateDeployment {
                    max_surge: max_surge.to_string(),
                    max_unavailable: max_unavailable.to_string(),
                }),
            });
        }
        self
    }
    pub fn build(self) -> v1::Deployment {
        let mut d = self.d;
        let p = self.template.build();
        if let Some(spec) = d.spec.as_mut() {
            spec.template = Some(v1::PodTemplateSpec {
                metadata: p.metadata,
                spec: p.spec,
            });
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_with_everything_set() {
        let p = pod("web")
            .image("builtin/http-echo")
            .args(&["--text", "hi"])
            .label("app", "web")
            .port("http", 8080)
            .cpu("500m")
            .node("n1")
            .grace_seconds(5)
            .build();
        let m = p.metadata.clone().unwrap_or_default();
        assert_eq!((m.name.as_str(), m.namespace.as_str()), ("web", "default"));
        assert_eq!(m.labels, labels(&[("app", "web")]));
        let spec = p.spec.clone().unwrap_or_default();
        assert_eq!(spec.node_name, "n1");
        assert_eq!(spec.termination_grace_period_seconds, Some(5));
        let c = &spec.containers[0];
        assert_eq!(
            (c.name.as_str(), c.image.as_str()),
            ("main", "builtin/http-echo")
        );
        assert_eq!(c.args, vec!["--text", "hi"]);
        assert_eq!(c.ports[0].container_port, 8080);
        assert_eq!(
            c.resources.clone().unwrap_or_default().requests["cpu"],
            "500m"
        );
        assert_eq!(
            (node_of(&p), image_of(&p)),
            ("n1".into(), "builtin/http-echo".into())
        );
    }

    #[test]
    fn a_node_has_its_resources_as_capacity_and_allocatable() {
        let n = node("n1").cpu("4").build();
        let st = n.status.unwrap_or_default();
        assert_eq!(st.capacity["cpu"], "4");
        assert_eq!(st.allocatable["memory"], "4Gi");
        assert_eq!(st.conditions[0].r#type, "Ready");
    }

    #[test]
    fn a_deployment_selects_its_template() {
        let d = deployment("web", 3)
            .image("builtin/http-echo")
            .rolling(1, 0)
            .build();
        let spec = d.spec.unwrap_or_default();
        assert_eq!(spec.replicas, Some(3));
        let template = spec.template.unwrap_or_default();
        let labels = template.metadata.unwrap_or_default().labels;
        assert_eq!(spec.selector.unwrap_or_default().match_labels, labels);
        assert_eq!(
            template.spec.unwrap_or_default().containers[0].image,
            "builtin/http-echo"
        );
        let ru = spec
            .strategy
            .unwrap_or_default()
            .rolling_update
            .unwrap_or_default();
        assert_eq!(
            (ru.max_surge.as_str(), ru.max_unavailable.as_str()),
            ("1", "0")
        );
    }
}
