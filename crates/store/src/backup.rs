//! Backups: a replica's whole state machine in one file, and the restore
//! that seeds a new cluster from it (the way back after a quorum is lost
//! for good).
//!
//! # File layout
//! ```text
//! "KEELSNAP"            8 bytes, magic
//! body length           u64, little endian
//! body                  versioned bincode (`raft::codec`) of the backup
//! zero padding          to a multiple of 512 bytes
//! SHA-256               32 bytes, of everything before it
//! ```
//! The checksum trails the data as in etcd's snapshots, and the padding
//! makes the length 32 more than a multiple of 512, which is what
//! `etcdctl snapshot save` checks before it keeps a file. The body holds
//! every key with its history since the last compaction, the leases and
//! the revision counters; not the Raft log or membership (a restore names
//! the new members).
//!
//! A truncated or altered file fails the length, magic or checksum test
//! with an error that says which, before anything is decoded.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use openraft::BasicNode;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::mvcc::Mvcc;
use crate::raft::{codec, state_machine};
use crate::server::{member_id, STATE_DIR};

pub const MAGIC: &[u8; 8] = b"KEELSNAP";
const HEADER_LEN: usize = MAGIC.len() + 8;
const CHECKSUM_LEN: usize = 32;
const ALIGN: usize = 512;

/// Written at [`codec::FORMAT_V2`]; [`BodyV1`] is format 1's.
#[derive(Serialize, Deserialize)]
struct Body {
    /// Seconds since the Unix epoch when the backup was taken.
    taken_unix: i64,
    /// The replica it was taken from.
    member: String,
    cluster_id: u64,
    mvcc: Mvcc,
}

#[derive(Deserialize)]
struct BodyV1 {
    taken_unix: i64,
    member: String,
    cluster_id: u64,
    mvcc: crate::mvcc::MvccV1,
}

impl Body {
    fn decode(bytes: &[u8]) -> Result<Body, String> {
        match codec::split(bytes)? {
            (codec::FORMAT_V1, body) => {
                let v1: BodyV1 = codec::decode_body(body)?;
                Ok(Body {
                    taken_unix: v1.taken_unix,
                    member: v1.member,
                    cluster_id: v1.cluster_id,
                    mvcc: v1.mvcc.into(),
                })
            }
            (_, body) => codec::decode_body(body),
        }
    }
}

/// A decoded backup file.
pub struct Backup {
    body: Body,
    file_bytes: u64,
    sha256: String,
}

/// What `snapshot status` reports of a backup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub revision: i64,
    pub compacted_revision: i64,
    /// Keys with a live value.
    pub total_keys: usize,
    /// Keys in the index, deleted ones whose history is kept included.
    pub indexed_keys: usize,
    pub leases: usize,
    /// Active alarms (NOSPACE, CORRUPT) when it was taken; a restore
    /// clears them.
    pub alarms: usize,
    /// Bytes of stored versions (keys, values, bookkeeping).
    pub data_bytes: u64,
    /// Size of the file.
    pub total_size: u64,
    /// SHA-256 of the file's contents before the checksum, in hex.
    pub sha256: String,
    pub taken_unix: i64,
    pub member: String,
    pub cluster_id: String,
}

/// Encode `mvcc` as a backup file's bytes.
pub fn encode(
    mvcc: Mvcc,
    member: &str,
    cluster_id: u64,
    taken_unix: i64,
) -> Result<Vec<u8>, String> {
    let body = codec::encode_as(
        codec::FORMAT_V2,
        &Body {
            taken_unix,
            member: member.to_string(),
            cluster_id,
            mvcc,
        },
    )?;
    let unpadded = HEADER_LEN + body.len();
    let padded = unpadded.div_ceil(ALIGN) * ALIGN;
    let mut out = Vec::with_capacity(padded + CHECKSUM_LEN);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&body);
    out.resize(padded, 0);
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum);
    Ok(out)
}

/// Check and decode a backup file's bytes.
pub fn decode(bytes: &[u8]) -> Result<Backup, String> {
    if bytes.len() < HEADER_LEN + CHECKSUM_LEN || !bytes.starts_with(MAGIC) {
        return Err(if bytes.starts_with(MAGIC) {
            format!(
                "truncated: {} bytes is shorter than any snapshot",
                bytes.len()
            )
        } else {
            "not a Keelson snapshot (no KEELSNAP header)".into()
        });
    }
    let (content, sum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
    let mut len_bytes = [0u8; 8];
    len_bytes.copy_from_slice(&content[MAGIC.len()..HEADER_LEN]);
    let body_len = u64::from_le_bytes(len_bytes);
    let expected = (HEADER_LEN as u64)
        .checked_add(body_len)
        .and_then(|n| n.div_ceil(ALIGN as u64).checked_mul(ALIGN as u64));
    if expected != Some(content.len() as u64) {
        return Err(format!(
            "truncated or damaged: the header announces {body_len} bytes of data, the file has {} bytes in all",
            bytes.len()
        ));
    }
    let actual = Sha256::digest(content);
    if actual.as_slice() != sum {
        return Err(format!(
            "checksum mismatch: the file says sha256 {}, its contents hash to {}",
            hex::encode(sum),
            hex::encode(actual)
        ));
    }
    let body_end = HEADER_LEN + body_len as usize;
    let body = Body::decode(&content[HEADER_LEN..body_end])
        .map_err(|e| format!("decode the snapshot's data: {e}"))?;
    Ok(Backup {
        body,
        file_bytes: bytes.len() as u64,
        sha256: hex::encode(actual),
    })
}

/// Read and decode a backup file.
pub fn read(path: &Path) -> Result<Backup, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    decode(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

impl Backup {
    pub fn status(&self) -> Status {
        let m = &self.body.mvcc;
        Status {
            revision: m.revision(),
            compacted_revision: m.compacted_revision(),
            total_keys: m.live_key_count(),
            indexed_keys: m.key_count(),
            leases: m.leases().len(),
            alarms: m.alarms().len(),
            data_bytes: m.size_bytes(),
            total_size: self.file_bytes,
            sha256: self.sha256.clone(),
            taken_unix: self.body.taken_unix,
            member: self.body.member.clone(),
            cluster_id: format!("{:x}", self.body.cluster_id),
        }
    }
}

/// Where and how to restore a backup: one call per member of the new
/// cluster, each with its own name and data dir and the same cluster.
#[derive(Clone, Debug)]
pub struct RestoreOptions {
    pub data_dir: PathBuf,
    /// This member's name, one of `initial_cluster`'s.
    pub name: String,
    /// name -> peer URL of every member of the new cluster.
    pub initial_cluster: Vec<(String, String)>,
    /// How far to move the revision past the backup's.
    pub bump_revision: i64,
    /// Compact everything before the bumped revision.
    pub mark_compacted: bool,
}

/// What a restore wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restored {
    /// The revision the new cluster starts at.
    pub revision: i64,
    pub compacted_revision: i64,
    pub member_id: u64,
}

/// Seed `opts.data_dir` for one member of a new cluster holding the
/// backup's keys, revisions and leases. The data dir must not exist or be
/// empty: a restore never overwrites a replica's data.
pub fn restore(backup: Backup, opts: &RestoreOptions) -> Result<Restored, String> {
    let mut members: BTreeMap<u64, BasicNode> = BTreeMap::new();
    let mut names = std::collections::BTreeSet::new();
    for (name, url) in &opts.initial_cluster {
        if !names.insert(name.as_str()) {
            return Err(format!("--initial-cluster names {name:?} twice"));
        }
        if members
            .insert(member_id(url), BasicNode { addr: url.clone() })
            .is_some()
        {
            return Err(format!("--initial-cluster lists the peer URL {url} twice"));
        }
    }
    let own_url = opts
        .initial_cluster
        .iter()
        .find(|(n, _)| *n == opts.name)
        .map(|(_, url)| url.clone())
        .ok_or_else(|| format!("--initial-cluster has no member named {:?}", opts.name))?;
    match std::fs::read_dir(&opts.data_dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(format!(
                    "data dir {} is not empty; a restore never overwrites data",
                    opts.data_dir.display()
                ));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("read {}: {e}", opts.data_dir.display())),
    }
    let mvcc = backup
        .body
        .mvcc
        .restored(opts.bump_revision, opts.mark_compacted)
        .map_err(|e| e.to_string())?;
    let out = Restored {
        revision: mvcc.revision(),
        compacted_revision: mvcc.compacted_revision(),
        member_id: member_id(&own_url),
    };
    state_machine::seed(&opts.data_dir.join(STATE_DIR), mvcc, members)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keelson_proto::etcdserverpb as pb;
    use keelson_proto::raft::{command, Command};

    fn put(m: &mut Mvcc, key: &str, value: &str) {
        let cmd = Command {
            kind: Some(command::Kind::Put(pb::PutRequest {
                key: key.as_bytes().to_vec(),
                value: value.as_bytes().to_vec(),
                ..Default::default()
            })),
        };
        m.apply(&cmd);
    }

    fn sample() -> Mvcc {
        let mut m = Mvcc::default();
        put(&mut m, "/a", "1");
        put(&mut m, "/b", "2");
        put(&mut m, "/a", "3");
        m
    }

    #[test]
    fn round_trip_and_etcdctl_length_rule() {
        let bytes = encode(sample(), "r1", 7, 1_700_000_000).expect("encode");
        // etcdctl keeps a snapshot only when len % 512 == 32.
        assert_eq!(bytes.len() % 512, 32);
        let b = decode(&bytes).expect("decode");
        let s = b.status();
        assert_eq!(s.revision, 4);
        assert_eq!(s.total_keys, 2);
        assert_eq!(s.member, "r1");
        assert_eq!(s.cluster_id, "7");
        assert_eq!(s.total_size, bytes.len() as u64);
        assert_eq!(
            s.sha256,
            hex::encode(Sha256::digest(&bytes[..bytes.len() - 32]))
        );
    }

    #[test]
    fn damaged_files_are_refused_with_the_reason() {
        let bytes = encode(sample(), "r1", 7, 0).expect("encode");
        let err = |b: &[u8]| decode(b).err().expect("refused");
        assert!(err(&bytes[..bytes.len() - 1]).contains("truncated"));
        assert!(err(&bytes[..100]).contains("truncated"));
        assert!(err(&bytes[..10]).contains("truncated"));
        assert!(err(b"hello world, this is not a snapshot at all....").contains("KEELSNAP"));
        let mut flipped = bytes.clone();
        flipped[HEADER_LEN + 3] ^= 0x40;
        assert!(err(&flipped).contains("checksum mismatch"));
        for announced in [u64::MAX, u64::MAX - 20, u64::MAX - 500] {
            let mut long = bytes.clone();
            long[MAGIC.len()..HEADER_LEN].copy_from_slice(&announced.to_le_bytes());
            assert!(err(&long).contains("header announces"));
        }
    }

    /// A body of a format newer than this build's, checksummed as a real
    /// file would be: refused as such, not as damage.
    #[test]
    fn a_newer_body_format_is_refused_by_name() {
        let body = codec::encode_as(codec::FORMAT_NEWEST + 1, &0u8).expect("encode");
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(body.len() as u64).to_le_bytes());
        out.extend_from_slice(&body);
        out.resize((HEADER_LEN + body.len()).div_ceil(ALIGN) * ALIGN, 0);
        let sum = Sha256::digest(&out);
        out.extend_from_slice(&sum);
        let e = decode(&out).err().expect("refused");
        assert!(e.contains("newer"), "{e}");
    }

    #[test]
    fn restore_bumps_compacts_and_refuses_a_used_dir() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cluster = vec![
            ("a".to_string(), "http://127.0.0.1:1".to_string()),
            ("b".to_string(), "http://127.0.0.1:2".to_string()),
        ];
        let opts = RestoreOptions {
            data_dir: dir.path().join("b"),
            name: "b".into(),
            initial_cluster: cluster.clone(),
            bump_revision: 1000,
            mark_compacted: true,
        };
        let backup = || decode(&encode(sample(), "r1", 7, 0).expect("encode")).expect("decode");
        let r = restore(backup(), &opts).expect("restore");
        assert_eq!(r.revision, 1004);
        assert_eq!(r.compacted_revision, 1004);
        assert_eq!(r.member_id, member_id("http://127.0.0.1:2"));
        let again = restore(backup(), &opts).expect_err("refused");
        assert!(again.contains("not empty"), "{again}");
        let unknown = RestoreOptions {
            name: "c".into(),
            data_dir: dir.path().join("c"),
            ..opts.clone()
        };
        assert!(restore(backup(), &unknown)
            .expect_err("refused")
            .contains("no member named"));
        let dup = RestoreOptions {
            initial_cluster: vec![cluster[0].clone(), cluster[0].clone()],
            data_dir: dir.path().join("d"),
            name: "a".into(),
            ..opts
        };
        assert!(restore(backup(), &dup).is_err());
    }
}
