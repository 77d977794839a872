//! The Raft log and vote in RocksDB.
//!
//! Column family `logs`: big-endian u64 index -> versioned bincode entry.
//! Column family `meta`: `vote`, `committed`, `last_purged`, `format`.
//! Every write that openraft relies on for safety (appended entries, the
//! vote, truncation, the purge marker) is fsynced before it is acknowledged.
//!
//! Appends are written at once (readable, so the leader's replication can
//! ship them) and flushed by a thread of their own, which fsyncs the
//! write-ahead log once for every append queued since its last flush and
//! then reports each flushed, in order. On the leader openraft does not
//! wait for that report before replicating (see `vendor/openraft`), so its
//! own fsync overlaps the followers'; on a follower the reply waits for it.

// openraft's storage traits fix the error type to its (large) StorageError;
// the helpers here return the same type rather than boxing and unboxing.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{mpsc, Arc, Weak};
use std::time::Instant;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    AnyError, Entry, ErrorSubject, ErrorVerb, OptionalSend, RaftLogReader, StorageIOError, Vote,
};
use rocksdb::{ColumnFamilyDescriptor, IteratorMode, Options, WriteBatch, WriteOptions, DB};

use super::{codec, LogId, NodeId, StorageError, TypeConfig};
use crate::stages::Stages;

const CF_LOGS: &str = "logs";
const CF_META: &str = "meta";
const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_LAST_PURGED: &[u8] = b"last_purged";
const KEY_FORMAT: &[u8] = b"format";
/// The on-disk layout version of this database.
const DB_FORMAT: u8 = 1;

#[derive(Clone)]
pub struct LogStore {
    db: Arc<DB>,
    /// Appends written and waiting for the flusher's next fsync.
    flushes: mpsc::Sender<LogFlushed<TypeConfig>>,
}

/// Fsync the write-ahead log for every batch of queued appends, then report
/// them flushed in the order they were appended. Ends when every
/// `LogStore` is gone; holds the database only while flushing, so closing
/// the store closes it.
fn run_flusher(db: Weak<DB>, rx: mpsc::Receiver<LogFlushed<TypeConfig>>, stages: Arc<Stages>) {
    while let Ok(first) = rx.recv() {
        let mut waiting = vec![first];
        while let Ok(more) = rx.try_recv() {
            waiting.push(more);
        }
        let started = Instant::now();
        let res = match db.upgrade() {
            Some(db) => db.flush_wal(true).map_err(|e| e.to_string()),
            None => Err("the raft log was closed".to_string()),
        };
        stages.wal_fsync.observe(started.elapsed().as_secs_f64());
        if let Err(e) = &res {
            tracing::error!(error = %e, "flush the raft log");
        }
        for callback in waiting {
            callback.log_io_completed(res.clone().map_err(std::io::Error::other));
        }
    }
}

fn io_err(
    subject: ErrorSubject<NodeId>,
    verb: ErrorVerb,
    e: impl std::fmt::Display,
) -> StorageError {
    StorageIOError::new(subject, verb, AnyError::error(e.to_string())).into()
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

impl LogStore {
    /// Open (or create) the log database under `dir`.
    pub fn open(dir: &Path, stages: Arc<Stages>) -> Result<LogStore, String> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        let cfs = vec![
            ColumnFamilyDescriptor::new(CF_LOGS, Options::default()),
            ColumnFamilyDescriptor::new(CF_META, Options::default()),
        ];
        let db = DB::open_cf_descriptors(&opts, dir, cfs)
            .map_err(|e| format!("open raft log at {}: {e}", dir.display()))?;
        let db = Arc::new(db);
        let (flushes, rx) = mpsc::channel();
        let weak = Arc::downgrade(&db);
        std::thread::Builder::new()
            .name("raft-log-flush".into())
            .spawn(move || run_flusher(weak, rx, stages))
            .map_err(|e| format!("start the raft log's flusher: {e}"))?;
        let store = LogStore { db, flushes };
        let meta = store.cf(CF_META).map_err(|e| e.to_string())?;
        match store
            .db
            .get_cf(meta, KEY_FORMAT)
            .map_err(|e| e.to_string())?
        {
            None => {
                let mut w = WriteOptions::default();
                w.set_sync(true);
                store
                    .db
                    .put_cf_opt(meta, KEY_FORMAT, [DB_FORMAT], &w)
                    .map_err(|e| format!("write log format: {e}"))?;
            }
            Some(v) if v.as_slice() == [DB_FORMAT] => {}
            Some(v) => {
                return Err(format!(
                    "raft log at {} has unknown format {v:?}",
                    dir.display()
                ))
            }
        }
        Ok(store)
    }

    fn cf(&self, name: &str) -> Result<&rocksdb::ColumnFamily, StorageError> {
        self.db.cf_handle(name).ok_or_else(|| {
            io_err(
                ErrorSubject::Store,
                ErrorVerb::Read,
                format!("missing column family {name}"),
            )
        })
    }

    fn get_meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &[u8],
        subject: ErrorSubject<NodeId>,
    ) -> Result<Option<T>, StorageError> {
        let cf = self.cf(CF_META)?;
        match self
            .db
            .get_cf(cf, key)
            .map_err(|e| io_err(subject.clone(), ErrorVerb::Read, e))?
        {
            None => Ok(None),
            Some(bytes) => codec::decode(&bytes)
                .map(Some)
                .map_err(|e| io_err(subject, ErrorVerb::Read, e)),
        }
    }

    /// Write one meta record; `sync` ones are fsynced off the async threads.
    async fn put_meta<T: serde::Serialize>(
        &self,
        key: &[u8],
        value: &T,
        sync: bool,
        subject: ErrorSubject<NodeId>,
    ) -> Result<(), StorageError> {
        let cf = self.cf(CF_META)?;
        let bytes =
            codec::encode(value).map_err(|e| io_err(subject.clone(), ErrorVerb::Write, e))?;
        if sync {
            let mut batch = WriteBatch::default();
            batch.put_cf(cf, key, bytes);
            return self.write_synced(batch, subject).await;
        }
        self.db
            .put_cf(cf, key, bytes)
            .map_err(|e| io_err(subject, ErrorVerb::Write, e))
    }

    /// Flush and compact the log's files (after a purge, this is what
    /// gives the space back). Returns the log's on-disk bytes before and
    /// after.
    pub fn compact(&self) -> Result<(u64, u64), String> {
        let cf = self.cf(CF_LOGS).map_err(|e| e.to_string())?;
        let size = |db: &DB| {
            db.property_int_value_cf(cf, "rocksdb.total-sst-files-size")
                .ok()
                .flatten()
                .unwrap_or(0)
        };
        self.db
            .flush_cf(cf)
            .map_err(|e| format!("flush the log: {e}"))?;
        let before = size(&self.db);
        self.db.compact_range_cf(cf, None::<&[u8]>, None::<&[u8]>);
        Ok((before, size(&self.db)))
    }

    /// Whether nothing was ever written: no vote and no log entries.
    pub fn is_pristine(&self) -> Result<bool, StorageError> {
        let vote: Option<Vote<NodeId>> = self.get_meta(KEY_VOTE, ErrorSubject::Vote)?;
        let cf = self.cf(CF_LOGS)?;
        let any_log = self
            .db
            .iterator_cf(cf, IteratorMode::Start)
            .next()
            .is_some();
        Ok(vote.is_none() && !any_log)
    }

    fn last_log_id(&self) -> Result<Option<LogId>, StorageError> {
        let cf = self.cf(CF_LOGS)?;
        match self.db.iterator_cf(cf, IteratorMode::End).next() {
            None => Ok(None),
            Some(Err(e)) => Err(io_err(ErrorSubject::Logs, ErrorVerb::Read, e)),
            Some(Ok((_, v))) => {
                let entry: Entry<TypeConfig> = codec::decode(&v)
                    .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e))?;
                Ok(Some(entry.log_id))
            }
        }
    }

    /// Write a batch with fsync, off the async threads.
    async fn write_synced(
        &self,
        batch: WriteBatch,
        subject: ErrorSubject<NodeId>,
    ) -> Result<(), StorageError> {
        let db = self.db.clone();
        let verb_subject = subject.clone();
        tokio::task::spawn_blocking(move || {
            let mut w = WriteOptions::default();
            w.set_sync(true);
            db.write_opt(batch, &w)
        })
        .await
        .map_err(|e| io_err(subject, ErrorVerb::Write, e))?
        .map_err(|e| io_err(verb_subject, ErrorVerb::Write, e))
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(&i) => i,
            Bound::Excluded(&i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let cf = self.cf(CF_LOGS)?;
        let mut out = Vec::new();
        let from = index_key(start);
        for item in self
            .db
            .iterator_cf(cf, IteratorMode::From(&from, rocksdb::Direction::Forward))
        {
            let (k, v) = item.map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e))?;
            let mut idx = [0u8; 8];
            if k.len() != 8 {
                return Err(io_err(
                    ErrorSubject::Logs,
                    ErrorVerb::Read,
                    "malformed log key",
                ));
            }
            idx.copy_from_slice(&k);
            let index = u64::from_be_bytes(idx);
            if !range.contains(&index) {
                break;
            }
            let entry: Entry<TypeConfig> = codec::decode(&v)
                .map_err(|e| io_err(ErrorSubject::LogIndex(index), ErrorVerb::Read, e))?;
            out.push(entry);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId> =
            self.get_meta(KEY_LAST_PURGED, ErrorSubject::Store)?;
        let last_log_id = self.last_log_id()?.or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        self.put_meta(KEY_VOTE, vote, true, ErrorSubject::Vote)
            .await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.get_meta(KEY_VOTE, ErrorSubject::Vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not fsynced: losing it only means re-learning the commit index
        // from the leader after a crash.
        self.put_meta(KEY_COMMITTED, &committed, false, ErrorSubject::Store)
            .await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self
            .get_meta::<Option<LogId>>(KEY_COMMITTED, ErrorSubject::Store)?
            .flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let cf = self.cf(CF_LOGS)?;
        let mut batch = WriteBatch::default();
        for entry in entries {
            let bytes = codec::encode(&entry)
                .map_err(|e| io_err(ErrorSubject::Log(entry.log_id), ErrorVerb::Write, e))?;
            batch.put_cf(cf, index_key(entry.log_id.index), bytes);
        }
        // Written here, not synced: a write to the OS's page cache and the
        // memtable, so the entries are readable when this returns. The
        // flusher acknowledges them once they are on disk.
        if let Err(e) = self.db.write(batch) {
            let err = io_err(ErrorSubject::Logs, ErrorVerb::Write, &e);
            callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
            return Err(err);
        }
        if let Err(mpsc::SendError(callback)) = self.flushes.send(callback) {
            let msg = "the raft log's flusher stopped";
            callback.log_io_completed(Err(std::io::Error::other(msg)));
            return Err(io_err(ErrorSubject::Logs, ErrorVerb::Write, msg));
        }
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let cf = self.cf(CF_LOGS)?;
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(cf, index_key(log_id.index), index_key(u64::MAX));
        batch.delete_cf(cf, index_key(u64::MAX));
        self.write_synced(batch, ErrorSubject::Logs).await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // Record the purge point first: a crash between the two writes must
        // not leave a hole that get_log_state cannot explain.
        self.put_meta(KEY_LAST_PURGED, &log_id, true, ErrorSubject::Store)
            .await?;
        let cf = self.cf(CF_LOGS)?;
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(cf, index_key(0), index_key(log_id.index.saturating_add(1)));
        self.write_synced(batch, ErrorSubject::Logs).await
    }
}
