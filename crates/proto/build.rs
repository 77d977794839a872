fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Use the vendored protoc unless the user chose one, so a fresh machine
    // needs no protobuf-compiler package.
    if std::env::var_os("PROTOC").is_none() {
        std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);
    }
    tonic_prost_build::configure().compile_protos(
        &[
            "proto/etcd/kv.proto",
            "proto/etcd/rpc.proto",
            "proto/keelson/raft.proto",
        ],
        &["proto"],
    )?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
