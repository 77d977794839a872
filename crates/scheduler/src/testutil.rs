//! Builders for the unit tests: nodes and pods with only the fields the
//! scheduler reads.

use keelson_proto::v1;

fn map(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

/// A Ready node with this allocatable cpu and memory.
pub fn node(name: &str, cpu: &str, memory: &str) -> v1::Node {
    v1::Node {
        metadata: Some(v1::ObjectMeta {
            name: name.into(),
            ..Default::default()
        }),
        spec: Some(v1::NodeSpec::default()),
        status: Some(v1::NodeStatus {
            allocatable: map(&[("cpu", cpu), ("memory", memory)]),
            conditions: vec![v1::NodeCondition {
                r#type: "Ready".into(),
                status: "True".into(),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn taint(key: &str, value: &str, effect: &str) -> v1::Taint {
    v1::Taint {
        key: key.into(),
        value: value.into(),
        effect: effect.into(),
        ..Default::default()
    }
}

pub fn toleration(key: &str, operator: &str, value: &str, effect: &str) -> v1::Toleration {
    v1::Toleration {
        key: key.into(),
        operator: operator.into(),
        value: value.into(),
        effect: effect.into(),
        ..Default::default()
    }
}

pub fn with_taints(mut n: v1::Node, taints: Vec<v1::Taint>) -> v1::Node {
    n.spec.get_or_insert_with(Default::default).taints = taints;
    n
}

pub fn with_labels(mut n: v1::Node, labels: &[(&str, &str)]) -> v1::Node {
    n.metadata.get_or_insert_with(Default::default).labels = map(labels);
    n
}

/// A container with these requests, limits and host ports (TCP, any IP).
pub fn container(
    requests: &[(&str, &str)],
    limits: &[(&str, &str)],
    host_ports: &[i32],
) -> v1::Container {
    v1::Container {
        name: "c".into(),
        resources: Some(v1::ResourceRequirements {
            requests: map(requests),
            limits: map(limits),
        }),
        ports: host_ports
            .iter()
            .map(|&p| v1::ContainerPort {
                host_port: p,
                container_port: p,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

pub fn pod_with(name: &str, containers: Vec<v1::Container>) -> v1::Pod {
    v1::Pod {
        metadata: Some(v1::ObjectMeta {
            name: name.into(),
            namespace: "default".into(),
            uid: format!("uid-{name}"),
            ..Default::default()
        }),
        spec: Some(v1::PodSpec {
            containers,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A pod with one container requesting this cpu and memory ("" = none).
pub fn pod(name: &str, cpu: &str, memory: &str) -> v1::Pod {
    let requests: Vec<(&str, &str)> = [("cpu", cpu), ("memory", memory)]
        .into_iter()
        .filter(|(_, q)| !q.is_empty())
        .collect();
    pod_with(name, vec![container(&requests, &[], &[])])
}

pub fn with_tolerations(mut p: v1::Pod, tolerations: Vec<v1::Toleration>) -> v1::Pod {
    p.spec.get_or_insert_with(Default::default).tolerations = tolerations;
    p
}

/// The pod, controlled by the object with this uid.
pub fn owned_by(mut p: v1::Pod, uid: &str) -> v1::Pod {
    p.metadata
        .get_or_insert_with(Default::default)
        .owner_references
        .push(v1::OwnerReference {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: format!("rs-{uid}"),
            uid: uid.into(),
            controller: Some(true),
            ..Default::default()
        });
    p
}
