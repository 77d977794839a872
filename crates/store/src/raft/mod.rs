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
///
/// Format 1 is every record's first layout. A record whose layout changes
/// is written with a new format number ([`codec::encode_as`]) and read
/// with [`codec::split`], which hands its reader the number to pick the
/// old or new layout; records that never changed stay at format 1. A
/// number past [`codec::FORMAT_NEWEST`] is data a newer Keelson wrote, and
/// is refused as such.
pub mod codec {
    use serde::{de::DeserializeOwned, Serialize};

    pub const FORMAT_V1: u8 = 1;
    /// The state machine's state (snapshots, backups) once alarms joined it.
    pub const FORMAT_V2: u8 = 2;
    /// The newest format this build writes or reads.
    pub const FORMAT_NEWEST: u8 = FORMAT_V2;

    /// Encode at format 1 (records whose layout never changed).
    pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, String> {
        encode_as(FORMAT_V1, value)
    }

    pub fn encode_as<T: Serialize>(format: u8, value: &T) -> Result<Vec<u8>, String> {
        let mut out = vec![format];
        let body = bincode::serde::encode_to_vec(value, bincode::config::standard())
            .map_err(|e| e.to_string())?;
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// The format byte and the body, refusing formats this build does not know.
    pub fn split(bytes: &[u8]) -> Result<(u8, &[u8]), String> {
        match bytes.split_first() {
            Some((&v, body)) if (FORMAT_V1..=FORMAT_NEWEST).contains(&v) => Ok((v, body)),
            Some((0, _)) => Err("format 0 is not a Keelson format".into()),
            Some((v, _)) => Err(format!(
                "data of format {v}, newer than this Keelson reads (formats up to {FORMAT_NEWEST}): written by a newer version"
            )),
            None => Err("empty record".into()),
        }
    }

    /// Decode a body (after [`split`]) whole.
    pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
        let (value, used) = bincode::serde::decode_from_slice(body, bincode::config::standard())
            .map_err(|e| e.to_string())?;
        if used != body.len() {
            return Err(format!(
                "{} trailing bytes after the value",
                body.len() - used
            ));
        }
        Ok(value)
    }

    /// Decode a record whose layout never changed (format 1).
    pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
        match split(bytes)? {
            (FORMAT_V1, body) => decode_body(body),
            (v, _) => Err(format!("format {v} where format 1 was expected")),
        }
    }
}
