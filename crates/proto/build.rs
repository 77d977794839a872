fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Use the vendored protoc unless the user chose one, so a fresh machine
    // needs no protobuf-compiler package.
    if std::env::var_os("PROTOC").is_none() {
        std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);
    }
    // Resources read and write Kubernetes-style YAML/JSON: camelCase names,
    // missing fields default, unknown fields are an error that names them.
    let mut config = tonic_prost_build::configure()
        .btree_map(".keelson.v1")
        .type_attribute(
            ".keelson.v1",
            "#[derive(serde::Serialize, serde::Deserialize)] \
             #[serde(rename_all = \"camelCase\", deny_unknown_fields, default)]",
        );
    // Where Kubernetes' JSON names are not plain camelCase.
    for (field, name) in [
        ("PodStatus.host_ip", "hostIP"),
        ("PodStatus.pod_ip", "podIP"),
        ("ContainerPort.host_ip", "hostIP"),
        ("ServiceSpec.cluster_ip", "clusterIP"),
        ("NodeSpec.pod_cidr", "podCIDR"),
        ("ContainerStatus.container_id", "containerID"),
        ("NodeSystemInfo.machine_id", "machineID"),
        ("DaemonEndpoint.port", "Port"),
    ] {
        config = config.field_attribute(
            format!(".keelson.v1.{field}"),
            format!("#[serde(rename = \"{name}\")]"),
        );
    }
    // Kubernetes' IntOrString fields: stored as a string, read from either.
    for field in [
        "HTTPGetAction.port",
        "TCPSocketAction.port",
        "ServicePort.target_port",
        "RollingUpdateDeployment.max_unavailable",
        "RollingUpdateDeployment.max_surge",
    ] {
        config = config.field_attribute(
            format!(".keelson.v1.{field}"),
            "#[serde(with = \"crate::int_or_string\")]",
        );
    }
    config.compile_protos(
        &[
            "proto/etcd/kv.proto",
            "proto/etcd/rpc.proto",
            "proto/keelson/raft.proto",
            "proto/keelson/v1/resources.proto",
            "proto/keelson/api.proto",
        ],
        &["proto"],
    )?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
