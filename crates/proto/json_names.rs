// Where Kubernetes' JSON for a `keelson.v1` field is not what serde's
// camelCase (and protoc's json_name) makes of the proto name. Included by
// build.rs (serde attributes on the generated types) and by lib.rs (the
// schema that OpenAPI documents and strategic merge patches are built
// from), so the two cannot disagree.

/// `(Message.field, JSON name)`.
pub const RENAMES: &[(&str, &str)] = &[
    ("PodStatus.host_ip", "hostIP"),
    ("PodStatus.pod_ip", "podIP"),
    ("ContainerPort.host_ip", "hostIP"),
    ("ServiceSpec.cluster_ip", "clusterIP"),
    ("NodeSpec.pod_cidr", "podCIDR"),
    ("ContainerStatus.container_id", "containerID"),
    ("ContainerStatus.image_id", "imageID"),
    ("NodeSystemInfo.machine_id", "machineID"),
    ("DaemonEndpoint.port", "Port"),
    ("RevisionTemplate.patch", "$patch"),
    ("PolicyRule.non_resource_urls", "nonResourceURLs"),
];

/// Kubernetes' IntOrString fields (`Message.field`): held in a string, read
/// from a number or a string, written as a number when it is one.
pub const INT_OR_STRING: &[&str] = &[
    "HTTPGetAction.port",
    "TCPSocketAction.port",
    "ServicePort.target_port",
    "RollingUpdateDeployment.max_unavailable",
    "RollingUpdateDeployment.max_surge",
    "RollingUpdateDaemonSet.max_unavailable",
    "RollingUpdateDaemonSet.max_surge",
    "RollingUpdateStatefulSetStrategy.max_unavailable",
];

/// Fields of Kubernetes' `map<string, []byte>` type (`Message.field`):
/// values written as base64 strings in JSON.
pub const BASE64_MAPS: &[&str] = &["ConfigMap.binary_data", "Secret.data"];
