//! The replicated state machine: [`Mvcc`] in memory, made durable by the
//! Raft log plus snapshots written to `snapshot.bin` (fsynced, then renamed
//! into place). On start the newest snapshot is loaded and openraft replays
//! the log after it.
//!
//! Readers share the state through [`SmHandle`]; only openraft's apply and
//! snapshot installation write it.

use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard};

use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, BasicNode, EntryPayload, ErrorSubject, ErrorVerb, OptionalSend, RaftSnapshotBuilder,
    Snapshot, SnapshotMeta, StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{codec, LogId, NodeId, Response, StorageError, TypeConfig};
use crate::mvcc::Mvcc;
use crate::stages::Stages;

const SNAPSHOT_FILE: &str = "snapshot.bin";

/// What a snapshot holds, and what `snapshot.bin` stores.
#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta<NodeId, BasicNode>,
    /// The snapshot body as sent to peers: a versioned [`SnapshotBody`].
    data: Vec<u8>,
}

/// Written at [`codec::FORMAT_V2`]; [`SnapshotBodyV1`] is format 1's.
#[derive(Serialize, Deserialize)]
struct SnapshotBody {
    last_applied: Option<LogId>,
    membership: StoredMembership<NodeId, BasicNode>,
    mvcc: Mvcc,
}

#[derive(Deserialize)]
struct SnapshotBodyV1 {
    last_applied: Option<LogId>,
    membership: StoredMembership<NodeId, BasicNode>,
    mvcc: crate::mvcc::MvccV1,
}

impl SnapshotBody {
    fn encode(&self) -> Result<Vec<u8>, String> {
        codec::encode_as(codec::FORMAT_V2, self)
    }

    /// Either format's bytes.
    fn decode(bytes: &[u8]) -> Result<SnapshotBody, String> {
        match codec::split(bytes)? {
            (codec::FORMAT_V1, body) => {
                let v1: SnapshotBodyV1 = codec::decode_body(body)?;
                Ok(SnapshotBody {
                    last_applied: v1.last_applied,
                    membership: v1.membership,
                    mvcc: v1.mvcc.into(),
                })
            }
            (_, body) => codec::decode_body(body),
        }
    }
}

struct SmState {
    mvcc: Mvcc,
    last_applied: Option<LogId>,
    membership: StoredMembership<NodeId, BasicNode>,
}

struct Shared {
    state: RwLock<SmState>,
    /// Serializes writes of `snapshot.bin` and remembers the newest one
    /// written: a snapshot built from older state (encoding takes a while)
    /// must never replace one installed from the leader meanwhile.
    snapshot_file: std::sync::Mutex<Option<LogId>>,
    /// The store revision after the last apply; watchers wait on it.
    revision: watch::Sender<i64>,
    dir: PathBuf,
}

/// A cheap, cloneable read handle on the state machine.
#[derive(Clone)]
pub struct SmHandle {
    shared: Arc<Shared>,
}

/// Read access to the state (a read lock held while it lives).
pub struct SmRead<'a>(RwLockReadGuard<'a, SmState>);

impl std::ops::Deref for SmRead<'_> {
    type Target = Mvcc;
    fn deref(&self) -> &Mvcc {
        &self.0.mvcc
    }
}

impl SmRead<'_> {
    pub fn last_applied(&self) -> Option<LogId> {
        self.0.last_applied
    }
}

impl SmHandle {
    /// A copy of the state (cheap: the maps are persistent structures)
    /// and the log position it reflects.
    pub fn copy(&self) -> (Mvcc, Option<LogId>) {
        let st = self.shared.state.read().unwrap_or_else(|p| p.into_inner());
        (st.mvcc.clone(), st.last_applied)
    }

    pub fn read(&self) -> SmRead<'_> {
        // A poisoned lock means a panic during apply; the state is still the
        // last consistent one (apply does not panic part way by design).
        SmRead(self.shared.state.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Subscribe to revision changes.
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.shared.revision.subscribe()
    }
}

/// The openraft state machine.
pub struct StateMachine {
    shared: Arc<Shared>,
    stages: Arc<Stages>,
}

fn snap_err(verb: ErrorVerb, e: impl std::fmt::Display) -> StorageError {
    StorageIOError::new(
        ErrorSubject::Snapshot(None),
        verb,
        AnyError::error(e.to_string()),
    )
    .into()
}

impl StateMachine {
    /// Open the state machine in `dir`, loading the newest snapshot.
    pub fn open(dir: &Path, stages: Arc<Stages>) -> Result<(StateMachine, SmHandle), String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let mut state = SmState {
            mvcc: Mvcc::default(),
            last_applied: None,
            membership: StoredMembership::default(),
        };
        let mut on_disk = None;
        if let Some(file) = read_snapshot_file(dir)? {
            on_disk = file.meta.last_log_id;
            let body = SnapshotBody::decode(&file.data)
                .map_err(|e| format!("decode {}: {e}", dir.join(SNAPSHOT_FILE).display()))?;
            state = SmState {
                mvcc: body.mvcc,
                last_applied: body.last_applied,
                membership: body.membership,
            };
        }
        let (revision, _) = watch::channel(state.mvcc.revision());
        let shared = Arc::new(Shared {
            state: RwLock::new(state),
            snapshot_file: std::sync::Mutex::new(on_disk),
            revision,
            dir: dir.to_path_buf(),
        });
        Ok((
            StateMachine {
                shared: shared.clone(),
                stages,
            },
            SmHandle { shared },
        ))
    }

    fn write_state(&self) -> std::sync::RwLockWriteGuard<'_, SmState> {
        self.shared.state.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// Seed a new replica's state directory with `mvcc` as if a snapshot
/// holding it had been installed (the restore of a backup): the snapshot
/// sits at index 1 of term 0, the log position of the membership entry
/// that initializing a cluster writes, with `members` (id -> peer URL) as
/// its voters. Every member seeded alike starts with the same log, so they
/// elect a leader among themselves with no initialization step.
pub fn seed(
    dir: &Path,
    mvcc: Mvcc,
    members: std::collections::BTreeMap<NodeId, BasicNode>,
) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    if read_snapshot_file(dir)?.is_some() {
        return Err(format!("{} already holds a snapshot", dir.display()));
    }
    let log_id = LogId::new(openraft::CommittedLeaderId::new(0, 0), 1);
    let voters = members.keys().copied().collect();
    let membership = StoredMembership::new(
        Some(log_id),
        openraft::Membership::new(vec![voters], members),
    );
    let body = SnapshotBody {
        last_applied: Some(log_id),
        membership: membership.clone(),
        mvcc,
    };
    let file = SnapshotFile {
        meta: SnapshotMeta {
            last_log_id: Some(log_id),
            last_membership: membership,
            snapshot_id: "restored".into(),
        },
        data: body.encode()?,
    };
    let (revision, _) = watch::channel(0);
    let shared = Shared {
        state: RwLock::new(SmState {
            mvcc: Mvcc::default(),
            last_applied: None,
            membership: StoredMembership::default(),
        }),
        snapshot_file: std::sync::Mutex::new(None),
        revision,
        dir: dir.to_path_buf(),
    };
    write_snapshot_file(&shared, &file)
}

fn read_snapshot_file(dir: &Path) -> Result<Option<SnapshotFile>, String> {
    let path = dir.join(SNAPSHOT_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => codec::decode(&bytes)
            .map(Some)
            .map_err(|e| format!("decode {}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("read {}: {e}", path.display())),
    }
}

/// Write the snapshot durably (temp file, fsync, rename, fsync the dir),
/// unless a newer one is already on disk.
fn write_snapshot_file(shared: &Shared, file: &SnapshotFile) -> Result<(), String> {
    let mut newest = shared
        .snapshot_file
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if newest.is_some() && file.meta.last_log_id <= *newest {
        return Ok(());
    }
    let dir = &shared.dir;
    let bytes = codec::encode(file)?;
    let tmp = dir.join(format!("{SNAPSHOT_FILE}.tmp"));
    let mut f =
        std::fs::File::create(&tmp).map_err(|e| format!("create {}: {e}", tmp.display()))?;
    f.write_all(&bytes)
        .map_err(|e| format!("write {}: {e}", tmp.display()))?;
    f.sync_all()
        .map_err(|e| format!("fsync {}: {e}", tmp.display()))?;
    drop(f);
    std::fs::rename(&tmp, dir.join(SNAPSHOT_FILE)).map_err(|e| format!("rename snapshot: {e}"))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| format!("fsync {}: {e}", dir.display()))?;
    *newest = file.meta.last_log_id;
    Ok(())
}

pub struct SnapshotBuilder {
    shared: Arc<Shared>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        // The state is a persistent structure: the copy taken under the
        // lock is O(1), and encoding it (a blocking thread, no lock held)
        // neither delays applies nor the async workers that send heartbeats.
        let (body, last_applied, membership) = {
            let st = self.shared.state.read().unwrap_or_else(|p| p.into_inner());
            let body = SnapshotBody {
                last_applied: st.last_applied,
                membership: st.membership.clone(),
                mvcc: st.mvcc.clone(),
            };
            (body, st.last_applied, st.membership.clone())
        };
        let shared = self.shared.clone();
        let file = tokio::task::spawn_blocking(move || -> Result<SnapshotFile, String> {
            let data = body.encode()?;
            let snapshot_id = match last_applied {
                Some(l) => format!("{}-{}-{}", l.leader_id.term, l.leader_id.node_id, l.index),
                None => "empty".to_string(),
            };
            let file = SnapshotFile {
                meta: SnapshotMeta {
                    last_log_id: last_applied,
                    last_membership: membership,
                    snapshot_id,
                },
                data,
            };
            write_snapshot_file(&shared, &file)?;
            Ok(file)
        })
        .await
        .map_err(|e| snap_err(ErrorVerb::Write, e))?
        .map_err(|e| snap_err(ErrorVerb::Write, e))?;
        Ok(Snapshot {
            meta: file.meta,
            snapshot: Box::new(Cursor::new(file.data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembership<NodeId, BasicNode>), StorageError> {
        let st = self.shared.state.read().unwrap_or_else(|p| p.into_inner());
        Ok((st.last_applied, st.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = openraft::Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let started = std::time::Instant::now();
        let mut out = Vec::new();
        let revision = {
            let mut st = self.write_state();
            for entry in entries {
                st.last_applied = Some(entry.log_id);
                match entry.payload {
                    EntryPayload::Blank => out.push(Response::default()),
                    EntryPayload::Normal(req) => {
                        let results = req.0.commands.iter().map(|c| st.mvcc.apply(c)).collect();
                        out.push(Response(results));
                    }
                    EntryPayload::Membership(m) => {
                        st.membership = StoredMembership::new(Some(entry.log_id), m);
                        out.push(Response::default());
                    }
                }
            }
            st.mvcc.revision()
        };
        self.shared.revision.send_replace(revision);
        self.stages.apply.observe(started.elapsed().as_secs_f64());
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            shared: self.shared.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let body = SnapshotBody::decode(&data).map_err(|e| snap_err(ErrorVerb::Read, e))?;
        let file = SnapshotFile {
            meta: meta.clone(),
            data,
        };
        let shared = self.shared.clone();
        let file =
            tokio::task::spawn_blocking(move || write_snapshot_file(&shared, &file).map(|()| file))
                .await
                .map_err(|e| snap_err(ErrorVerb::Write, e))?
                .map_err(|e| snap_err(ErrorVerb::Write, e))?;
        drop(file);
        let revision = {
            let mut st = self.write_state();
            st.mvcc = body.mvcc;
            st.last_applied = meta.last_log_id;
            st.membership = meta.last_membership.clone();
            st.mvcc.revision()
        };
        self.shared.revision.send_replace(revision);
        tracing::info!(snapshot = %meta.snapshot_id, revision, "installed snapshot from the leader");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let dir = self.shared.dir.clone();
        let file = tokio::task::spawn_blocking(move || read_snapshot_file(&dir))
            .await
            .map_err(|e| snap_err(ErrorVerb::Read, e))?
            .map_err(|e| snap_err(ErrorVerb::Read, e))?;
        Ok(file.map(|f| Snapshot {
            meta: f.meta,
            snapshot: Box::new(Cursor::new(f.data)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_of_a_newer_format_is_refused_by_name() {
        let bytes = codec::encode_as(codec::FORMAT_NEWEST + 1, &0u8).expect("encode");
        let e = SnapshotBody::decode(&bytes).err().expect("refused");
        assert!(e.contains("newer"), "{e}");
    }

    #[test]
    fn the_format_1_fixture_opens_with_its_keys_and_no_alarms() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::copy(
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/fixtures/v1/data/state/snapshot.bin"
            ),
            dir.path().join(SNAPSHOT_FILE),
        )
        .expect("copy the fixture");
        let (_sm, handle) =
            StateMachine::open(dir.path(), Default::default()).expect("open format 1");
        let state = handle.read();
        assert!(state.revision() > 20, "revision {}", state.revision());
        assert!(state.alarms().is_empty());
        assert!(state.last_applied().is_some());
    }
}
