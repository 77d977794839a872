//! openraft wiring: the type config, RocksDB log storage, the state machine
//! with its snapshots, and the gRPC network. openraft and RocksDB types stay
//! inside this module and the server; the rest of the crate sees
//! [`crate::mvcc`] and protobuf messages.

pub mod log_store;
pub mod network;
pub mod state_machine;

use std::io::Cursor;

use keelson_proto::raft::{CommandBatch, CommandResult, ResultBatch};
use prost::Message;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

openraft::declare_raft_types!(
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type NodeId = u64;
pub type LogId = openraft::LogId<NodeId>;
pub type StorageError = openraft::StorageError<NodeId>;

/// The payload of one Raft entry: a batch of client commands. It is kept as
/// protobuf inside the log (self-describing and evolvable), not as bincode.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Request(pub CommandBatch);

/// One result per command of the entry's batch.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Response(pub Vec<CommandResult>);

impl Serialize for Request {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0.encode_to_vec())
    }
}

impl<'de> Deserialize<'de> for Request {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes: Vec<u8> = serde_bytes_vec(d)?;
        CommandBatch::decode(bytes.as_slice())
            .map(Request)
            .map_err(serde::de::Error::custom)
    }
}

impl Serialize for Response {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let batch = ResultBatch {
            results: self.0.clone(),
        };
        s.serialize_bytes(&batch.encode_to_vec())
    }
}

impl<'de> Deserialize<'de> for Response {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes: Vec<u8> = serde_bytes_vec(d)?;
        ResultBatch::decode(bytes.as_slice())
            .map(|b| Response(b.results))
            .map_err(serde::de::Error::custom)
    }
}

fn serde_bytes_vec<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("bytes")
        }
        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }
        fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut out = Vec::new();
            while let Some(b) = seq.next_element::<u8>()? {
                out.push(b);
            }
            Ok(out)
        }
    }
    d.deserialize_bytes(V)
}

/// Versioned bincode, for everything the store writes to disk or sends to
/// peers: one format byte, then the bincode body. bincode is not
/// self-describing, so the byte is what lets a future version read old data.
pub mod codec {
    use serde::{de::DeserializeOwned, Serialize};

    pub const FORMAT_V1: u8 = 1;

    pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, String> {
        let mut out = vec![FORMAT_V1];
        let body = bincode::serde::encode_to_vec(value, bincode::config::standard())
            .map_err(|e| e.to_string())?;
        out.extend_from_slice(&body);
        Ok(out)
    }

    pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
        match bytes.split_first() {
            Some((&FORMAT_V1, body)) => {
                let (value, used) =
                    bincode::serde::decode_from_slice(body, bincode::config::standard())
                        .map_err(|e| e.to_string())?;
                if used != body.len() {
                    return Err(format!(
                        "{} trailing bytes after the value",
                        body.len() - used
                    ));
                }
                Ok(value)
            }
            Some((v, _)) => Err(format!("unknown format version {v}")),
            None => Err("empty record".into()),
        }
    }
}
