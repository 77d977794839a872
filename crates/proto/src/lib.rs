//! Wire types and gRPC services, generated from `proto/`.
//!
//! - [`mvccpb`] and [`etcdserverpb`]: the subset of etcd's v3 API that the
//!   store serves on the client port, with etcd's package names and field
//!   numbers so etcd clients work unchanged.
//! - [`raft`]: Keelson's internal peer protocol (Raft RPCs, forwarded writes
//!   and reads, lease keep-alives), never used by clients.
//! - [`v1`]: the resources (Pod, Node, Deployment...) in Kubernetes' shape,
//!   with serde derives for Kubernetes-style YAML/JSON.
//! - [`api`]: the API server's gRPC services (Resources, Leases, Cluster).
//!
//! This crate depends on nothing else in the workspace.

#![allow(clippy::all, clippy::pedantic)]

pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}

pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}

pub mod keelson {
    pub mod raft {
        tonic::include_proto!("keelson.raft");
    }
    pub mod v1 {
        tonic::include_proto!("keelson.v1");
    }
    pub mod api {
        tonic::include_proto!("keelson.api");
    }
}

pub use keelson::{api, raft, v1};

/// Field names and shapes where Kubernetes' JSON differs from the proto's.
pub mod json_names {
    include!("../json_names.rs");
}

/// The compiled descriptors of every `.proto` here (a
/// `google.protobuf.FileDescriptorSet`, comments included).
pub const DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptors.bin"));

/// Kubernetes' own protobuf types (`k8s.io.api.core.v1`, `apps/v1`,
/// `coordination/v1`, `authentication/v1`, `authorization/v1`, `policy/v1`, `batch/v1`
/// and what they import), as compiled descriptors: what
/// `application/vnd.kubernetes.protobuf` bodies are decoded with.
pub const KUBERNETES_DESCRIPTORS: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/kubernetes.bin"));

/// Kubernetes' IntOrString in JSON/YAML (`port: 8080` or `port: http`,
/// `maxSurge: 25%`), held in a string field.
pub mod int_or_string {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &str, s: S) -> Result<S::Ok, S::Error> {
        match v.parse::<i64>() {
            Ok(n) => s.serialize_i64(n),
            Err(_) => s.serialize_str(v),
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Int(i64),
        Str(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        Ok(match Either::deserialize(d)? {
            Either::Int(n) => n.to_string(),
            Either::Str(s) => s,
        })
    }
}

/// Kubernetes' `map[string][]byte` in JSON/YAML (a Secret's `data`, a
/// ConfigMap's `binaryData`): each value a base64 string (standard
/// alphabet, padded), as Go's encoding/json writes `[]byte`.
pub mod base64_map {
    use base64::Engine;
    use serde::de::Error;
    use serde::{Deserialize, Deserializer, Serializer};
    use std::collections::BTreeMap;

    pub fn serialize<S: Serializer>(
        v: &BTreeMap<String, Vec<u8>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_map(
            v.iter()
                .map(|(k, b)| (k, base64::engine::general_purpose::STANDARD.encode(b))),
        )
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<String, Vec<u8>>, D::Error> {
        let raw = Option::<BTreeMap<String, String>>::deserialize(d)?.unwrap_or_default();
        raw.into_iter()
            .map(|(k, v)| {
                base64::engine::general_purpose::STANDARD
                    .decode(v.as_bytes())
                    .map(|b| (k.clone(), b))
                    .map_err(|e| D::Error::custom(format!("{k}: illegal base64 data: {e}")))
            })
            .collect()
    }
}
