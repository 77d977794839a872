include!("json_names.rs");

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
    for (field, name) in RENAMES {
        config = config.field_attribute(
            format!(".keelson.v1.{field}"),
            format!("#[serde(rename = \"{name}\")]"),
        );
    }
    for field in INT_OR_STRING {
        config = config.field_attribute(
            format!(".keelson.v1.{field}"),
            "#[serde(with = \"crate::int_or_string\")]",
        );
    }
    for field in BASE64_MAPS {
        config = config.field_attribute(
            format!(".keelson.v1.{field}"),
            "#[serde(with = \"crate::base64_map\")]",
        );
    }
    // The descriptors (with the .proto's comments) for the schema that
    // OpenAPI documents and strategic merge patches are built from.
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    config = config.file_descriptor_set_path(out.join("descriptors.bin"));
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
    // Kubernetes' own protobuf types (vendored, see proto/k8s.io/README.md):
    // descriptors only, for decoding protobuf request bodies.
    let protoc = std::env::var_os("PROTOC").ok_or("PROTOC is not set")?;
    let status = std::process::Command::new(protoc)
        .arg("--include_imports")
        .arg("-Iproto")
        .arg(format!(
            "--descriptor_set_out={}",
            out.join("kubernetes.bin").display()
        ))
        .args([
            "proto/k8s.io/api/core/v1/generated.proto",
            "proto/k8s.io/api/apps/v1/generated.proto",
            "proto/k8s.io/api/coordination/v1/generated.proto",
            "proto/k8s.io/api/authentication/v1/generated.proto",
            "proto/k8s.io/api/authorization/v1/generated.proto",
            "proto/k8s.io/api/policy/v1/generated.proto",
            "proto/k8s.io/api/batch/v1/generated.proto",
            "proto/k8s.io/api/rbac/v1/generated.proto",
        ])
        .status()?;
    if !status.success() {
        return Err(format!("protoc failed on Kubernetes' protos: {status}").into());
    }
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-changed=json_names.rs");
    Ok(())
}
