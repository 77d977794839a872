//! The pure state machine: etcd's MVCC data model, leases and member
//! attributes, with no IO and no clock.
//!
//! Layout mirrors etcd: `revs` holds every stored version keyed by its
//! revision (etcd's bbolt bucket), `index` maps each key to its revisions in
//! ascending order (etcd's treeIndex). A write transaction gets the next main
//! revision; each change within it gets the next sub revision. Watchers read
//! events straight from `revs`, so history is the one source of truth for
//! both range reads at a revision and watch catch-up.

use std::collections::{BTreeMap, BTreeSet};

use imbl::OrdMap;
use std::ops::Bound;

use keelson_proto::etcdserverpb::{
    self as pb, compare, range_request, request_op, response_op, Compare,
};
use keelson_proto::mvccpb::{self, event::EventType};
use keelson_proto::raft::{command, command_result, Command, CommandResult};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// etcd's default limit on operations in one transaction.
pub const TXN_OPS_MAX: usize = 128;
/// The smallest lease TTL granted, in seconds: shorter leases would expire
/// during an ordinary leader election (etcd uses 1.5 election timeouts).
pub const LEASE_TTL_MIN_SECS: i64 = 2;
/// etcd's largest lease TTL, in seconds.
pub const LEASE_TTL_MAX_SECS: i64 = 9_000_000_000;
/// Most stored versions one `events_since` call looks at; the caller
/// continues from the returned revision.
const EVENTS_SCAN_MAX: usize = 10_000;
/// Per-version bookkeeping counted against the quota besides key and value.
const VERSION_OVERHEAD_BYTES: u64 = 48;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Revision {
    pub main: i64,
    pub sub: i64,
}

/// One stored version of a key. `version == 0` marks a tombstone (a delete).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Version {
    key: Vec<u8>,
    value: Vec<u8>,
    create_revision: i64,
    version: i64,
    lease: i64,
}

impl Version {
    fn is_tombstone(&self) -> bool {
        self.version == 0
    }
    fn size(&self) -> u64 {
        (self.key.len() + self.value.len()) as u64 + VERSION_OVERHEAD_BYTES
    }
    fn to_kv(&self, mod_revision: i64) -> mvccpb::KeyValue {
        mvccpb::KeyValue {
            key: self.key.clone(),
            create_revision: self.create_revision,
            mod_revision,
            version: self.version,
            value: self.value.clone(),
            lease: self.lease,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    pub ttl: i64,
    pub keys: BTreeSet<Vec<u8>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberAttrs {
    pub name: String,
    pub client_urls: Vec<String>,
}

/// Bounds for `BTreeMap::range` over keys.
type KeyBounds<'a> = (Bound<&'a [u8]>, Bound<&'a [u8]>);

/// A key range as etcd defines it from `key` and `range_end`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyRange {
    /// `range_end` empty: exactly `key`.
    Single(Vec<u8>),
    /// `range_end` is "\0": every key >= `key`.
    From(Vec<u8>),
    /// [key, range_end)
    Between(Vec<u8>, Vec<u8>),
}

impl KeyRange {
    pub fn new(key: &[u8], range_end: &[u8]) -> KeyRange {
        if range_end.is_empty() {
            KeyRange::Single(key.to_vec())
        } else if range_end == [0] {
            KeyRange::From(key.to_vec())
        } else {
            KeyRange::Between(key.to_vec(), range_end.to_vec())
        }
    }

    pub fn contains(&self, k: &[u8]) -> bool {
        match self {
            KeyRange::Single(key) => k == key.as_slice(),
            KeyRange::From(start) => k >= start.as_slice(),
            KeyRange::Between(start, end) => k >= start.as_slice() && k < end.as_slice(),
        }
    }

    fn bounds(&self) -> Option<KeyBounds<'_>> {
        match self {
            KeyRange::Single(key) => Some((Bound::Included(key), Bound::Included(key))),
            KeyRange::From(start) => Some((Bound::Included(start), Bound::Unbounded)),
            KeyRange::Between(start, end) if start < end => {
                Some((Bound::Included(start), Bound::Excluded(end)))
            }
            KeyRange::Between(..) => None,
        }
    }
}

/// The replicated state. Everything here is deterministic: the same commands
/// applied in the same order give the same state on every replica.
///
/// `revs` and `index` are persistent maps: cloning the state is O(1), so a
/// snapshot copies it under the lock and encodes the copy without it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mvcc {
    revs: OrdMap<Revision, Version>,
    index: OrdMap<Vec<u8>, Vec<Revision>>,
    current: i64,
    compacted: i64,
    leases: BTreeMap<i64, LeaseRecord>,
    members: BTreeMap<u64, MemberAttrs>,
    size: u64,
    /// Active alarms: (member id, etcd's `AlarmType`). NOSPACE refuses
    /// writes that add data, CORRUPT every write, on every replica alike.
    alarms: BTreeSet<(u64, i32)>,
}

/// [`Mvcc`] as state format 1 laid it out (before alarms), read from old
/// snapshots and backups.
#[derive(Deserialize)]
pub(crate) struct MvccV1 {
    revs: OrdMap<Revision, Version>,
    index: OrdMap<Vec<u8>, Vec<Revision>>,
    current: i64,
    compacted: i64,
    leases: BTreeMap<i64, LeaseRecord>,
    members: BTreeMap<u64, MemberAttrs>,
    size: u64,
}

impl From<MvccV1> for Mvcc {
    fn from(v: MvccV1) -> Mvcc {
        Mvcc {
            revs: v.revs,
            index: v.index,
            current: v.current,
            compacted: v.compacted,
            leases: v.leases,
            members: v.members,
            size: v.size,
            alarms: BTreeSet::new(),
        }
    }
}

impl Default for Mvcc {
    fn default() -> Self {
        Mvcc {
            revs: OrdMap::new(),
            index: OrdMap::new(),
            // etcd's first revision is 1; the first write gets 2.
            current: 1,
            compacted: 0,
            leases: BTreeMap::new(),
            members: BTreeMap::new(),
            size: 0,
            alarms: BTreeSet::new(),
        }
    }
}

/// A watch event with the revision it happened at.
#[derive(Clone, Debug, PartialEq)]
pub struct WatchEvent {
    pub revision: i64,
    pub event: mvccpb::Event,
}

/// One write transaction in progress: changes get revision `current + 1`
/// and increasing sub revisions; reads see the changes made so far.
struct WriteTxn<'a> {
    mvcc: &'a mut Mvcc,
    sub: i64,
    /// What to undo, newest last, if the transaction fails part way.
    undo: Vec<Undo>,
}

enum Undo {
    Stored(Revision),
    LeaseAttached(i64, Vec<u8>),
    LeaseDetached(i64, Vec<u8>),
    LeaseRemoved(i64, LeaseRecord),
}

impl Mvcc {
    pub fn revision(&self) -> i64 {
        self.current
    }
    pub fn compacted_revision(&self) -> i64 {
        self.compacted
    }
    /// Bytes of stored versions (keys, values and bookkeeping).
    pub fn size_bytes(&self) -> u64 {
        self.size
    }
    pub fn key_count(&self) -> usize {
        self.index.len()
    }
    pub fn leases(&self) -> &BTreeMap<i64, LeaseRecord> {
        &self.leases
    }
    pub fn members(&self) -> &BTreeMap<u64, MemberAttrs> {
        &self.members
    }

    /// Active alarms as (member id, etcd's `AlarmType` number).
    pub fn alarms(&self) -> &BTreeSet<(u64, i32)> {
        &self.alarms
    }

    fn has_alarm(&self, alarm: pb::AlarmType) -> bool {
        self.alarms.iter().any(|(_, a)| *a == alarm as i32)
    }

    /// etcd's HashKV: a CRC-32 of every stored version at or below `rev`
    /// (0: the current revision), each with its revision, key, value,
    /// create revision, version and lease; returned with the revision
    /// hashed and the compaction point. Replicas that applied the same log agree on it;
    /// comparing it across replicas is the corruption check. Only
    /// replicas with the same compaction point are comparable.
    pub fn hash_kv(&self, rev: i64) -> Result<(u32, i64, i64)> {
        let rev = if rev <= 0 { self.current } else { rev };
        if rev > self.current {
            return Err(Error::FutureRevision);
        }
        if rev < self.compacted {
            return Err(Error::Compacted);
        }
        let mut h = crc32fast::Hasher::new();
        let upper = Revision {
            main: rev,
            sub: i64::MAX,
        };
        for (r, v) in self.revs.range(..=upper) {
            h.update(&r.main.to_le_bytes());
            h.update(&r.sub.to_le_bytes());
            h.update(&(v.key.len() as u64).to_le_bytes());
            h.update(&v.key);
            h.update(&(v.value.len() as u64).to_le_bytes());
            h.update(&v.value);
            h.update(&v.create_revision.to_le_bytes());
            h.update(&v.version.to_le_bytes());
            h.update(&v.lease.to_le_bytes());
        }
        Ok((h.finalize(), rev, self.compacted))
    }

    /// Keys whose latest version is not a deletion.
    pub fn live_key_count(&self) -> usize {
        self.index
            .values()
            .filter(|list| {
                list.last()
                    .and_then(|r| self.revs.get(r))
                    .is_some_and(|v| !v.is_tombstone())
            })
            .count()
    }

    /// The state a cluster restored from a backup starts from: every key,
    /// version and lease kept, the old cluster's member attributes dropped
    /// (each restored replica publishes its own), the revision moved
    /// `bump` ahead and, with `mark_compacted`, the history compacted at
    /// that new revision. Together they make a client holding a revision
    /// from after the backup (a watch, a cache) get "compacted" and relist,
    /// instead of waiting for revision numbers the new cluster would reuse
    /// for other writes (etcd's `--bump-revision` and `--mark-compacted`).
    pub fn restored(mut self, bump: i64, mark_compacted: bool) -> Result<Mvcc> {
        if bump < 0 {
            return Err(Error::InvalidArgument(
                "the revision bump must not be negative".into(),
            ));
        }
        self.members.clear();
        self.alarms.clear();
        self.current = self
            .current
            .checked_add(bump)
            .ok_or_else(|| Error::InvalidArgument("the revision bump overflows".into()))?;
        if mark_compacted && self.current > self.compacted {
            self.compact(self.current)?;
        }
        Ok(self)
    }

    /// Apply one replicated command. Errors are results, not failures: they
    /// are the same on every replica and go back to the client.
    pub fn apply(&mut self, cmd: &Command) -> CommandResult {
        let kind = match self.refused_by_alarm(cmd) {
            Some(e) => Err(e),
            None => self.apply_allowed(cmd),
        };
        let kind = kind.unwrap_or_else(|e| {
            command_result::Kind::Error(keelson_proto::raft::CommandError {
                code: e.code() as i32,
                message: e.to_string(),
            })
        });
        CommandResult {
            revision: self.current,
            kind: Some(kind),
        }
    }

    /// What the active alarms refuse, as etcd's appliers do: under CORRUPT
    /// every write, under NOSPACE puts (also inside txns) and lease grants.
    /// Alarm commands themselves always apply, so an alarm can be disarmed.
    fn refused_by_alarm(&self, cmd: &Command) -> Option<Error> {
        let kind = cmd.kind.as_ref()?;
        if matches!(kind, command::Kind::Alarm(_))
            || matches!(
                kind,
                command::Kind::MemberAttributes(_) | command::Kind::MemberForget(_)
            )
        {
            return None;
        }
        if self.has_alarm(pb::AlarmType::Corrupt) {
            return Some(Error::Corrupt);
        }
        if self.has_alarm(pb::AlarmType::Nospace) {
            let adds = match kind {
                command::Kind::Put(_) | command::Kind::LeaseGrant(_) => true,
                command::Kind::Txn(t) => txn_puts(t),
                _ => false,
            };
            if adds {
                return Some(Error::NoSpace);
            }
        }
        None
    }

    fn apply_allowed(&mut self, cmd: &Command) -> Result<command_result::Kind> {
        match &cmd.kind {
            Some(command::Kind::Put(req)) => {
                self.write(|t| t.put(req)).map(command_result::Kind::Put)
            }
            Some(command::Kind::DeleteRange(req)) => self
                .write(|t| t.delete_range(req))
                .map(command_result::Kind::DeleteRange),
            Some(command::Kind::Txn(req)) => {
                self.write(|t| t.txn(req)).map(command_result::Kind::Txn)
            }
            Some(command::Kind::Compact(req)) => self
                .compact(req.revision)
                .map(|()| command_result::Kind::Compact(pb::CompactionResponse { header: None })),
            Some(command::Kind::LeaseGrant(g)) => self
                .lease_grant(g.id, g.ttl)
                .map(command_result::Kind::LeaseGrant),
            Some(command::Kind::LeaseRevoke(r)) => self.write(|t| t.lease_revoke(r.id)).map(|()| {
                command_result::Kind::LeaseRevoke(pb::LeaseRevokeResponse { header: None })
            }),
            Some(command::Kind::MemberAttributes(a)) => {
                self.members.insert(
                    a.id,
                    MemberAttrs {
                        name: a.name.clone(),
                        client_urls: a.client_urls.clone(),
                    },
                );
                Ok(command_result::Kind::Done(true))
            }
            Some(command::Kind::MemberForget(id)) => {
                self.members.remove(id);
                self.alarms.retain(|(m, _)| m != id);
                Ok(command_result::Kind::Done(true))
            }
            Some(command::Kind::Alarm(req)) => {
                let key = (req.member_id, req.alarm);
                match pb::alarm_request::AlarmAction::try_from(req.action) {
                    Ok(pb::alarm_request::AlarmAction::Activate)
                        if req.alarm != pb::AlarmType::None as i32 =>
                    {
                        self.alarms.insert(key);
                    }
                    Ok(pb::alarm_request::AlarmAction::Deactivate) => {
                        if req.alarm == pb::AlarmType::None as i32 {
                            self.alarms.retain(|(m, _)| *m != req.member_id);
                        } else {
                            self.alarms.remove(&key);
                        }
                    }
                    _ => {
                        return Err(Error::InvalidArgument(
                            "an alarm command activates or deactivates an alarm".into(),
                        ))
                    }
                }
                Ok(command_result::Kind::Done(true))
            }
            None => Err(Error::InvalidArgument("empty command".into())),
        }
    }

    /// Run `f` as one write transaction: the revision advances only if it
    /// changed something, and an error undoes everything it did.
    fn write<T>(&mut self, f: impl FnOnce(&mut WriteTxn<'_>) -> Result<T>) -> Result<T> {
        let mut txn = WriteTxn {
            mvcc: self,
            sub: 0,
            undo: Vec::new(),
        };
        match f(&mut txn) {
            Ok(v) => {
                if txn.sub > 0 {
                    self.current += 1;
                }
                Ok(v)
            }
            Err(e) => {
                txn.rollback();
                Err(e)
            }
        }
    }

    /// The live version of `key` at `rev`, with its mod revision.
    fn get_at(&self, key: &[u8], rev: i64) -> Option<(Revision, &Version)> {
        let revs = self.index.get(key)?;
        let n = revs.partition_point(|r| r.main <= rev);
        if n == 0 {
            return None;
        }
        let r = revs[n - 1];
        let v = self.revs.get(&r)?;
        if v.is_tombstone() {
            None
        } else {
            Some((r, v))
        }
    }

    /// Live keys in `range` at `rev`, in key order.
    fn live_in_range(&self, range: &KeyRange, rev: i64) -> Vec<(Revision, &Version)> {
        let Some(bounds) = range.bounds() else {
            return Vec::new();
        };
        self.index
            .range::<_, [u8]>(bounds)
            .filter_map(|(k, _)| self.get_at(k, rev))
            .collect()
    }

    /// etcd's Range at a revision (`read_rev` is the newest one visible).
    fn range_at(&self, req: &pb::RangeRequest, read_rev: i64) -> Result<pb::RangeResponse> {
        let rev = if req.revision <= 0 {
            read_rev
        } else {
            req.revision
        };
        if rev > read_rev {
            return Err(Error::FutureRevision);
        }
        if rev < self.compacted {
            return Err(Error::Compacted);
        }
        let range = KeyRange::new(&req.key, &req.range_end);
        let live = self.live_in_range(&range, rev);
        // etcd counts every key in the range, before the revision filters.
        let count = live.len() as i64;
        let mut found: Vec<(Revision, &Version)> = live
            .into_iter()
            .filter(|(r, v)| {
                (req.min_mod_revision == 0 || r.main >= req.min_mod_revision)
                    && (req.max_mod_revision == 0 || r.main <= req.max_mod_revision)
                    && (req.min_create_revision == 0
                        || v.create_revision >= req.min_create_revision)
                    && (req.max_create_revision == 0
                        || v.create_revision <= req.max_create_revision)
            })
            .collect();
        if req.count_only {
            return Ok(pb::RangeResponse {
                header: None,
                kvs: Vec::new(),
                more: false,
                count,
            });
        }
        let target = range_request::SortTarget::try_from(req.sort_target)
            .unwrap_or(range_request::SortTarget::Key);
        let mut order = range_request::SortOrder::try_from(req.sort_order)
            .unwrap_or(range_request::SortOrder::None);
        if order == range_request::SortOrder::None && target != range_request::SortTarget::Key {
            // etcd: results are key-ordered already; any other target sorts ascending.
            order = range_request::SortOrder::Ascend;
        }
        if order != range_request::SortOrder::None {
            use range_request::SortTarget as T;
            found.sort_by(|(ra, a), (rb, b)| {
                let o = match target {
                    T::Key => a.key.cmp(&b.key),
                    T::Version => a.version.cmp(&b.version),
                    T::Create => a.create_revision.cmp(&b.create_revision),
                    T::Mod => ra.main.cmp(&rb.main),
                    T::Value => a.value.cmp(&b.value),
                };
                // Stable sort keeps key order among equal targets.
                if order == range_request::SortOrder::Descend {
                    o.reverse()
                } else {
                    o
                }
            });
        }
        let mut more = false;
        if req.limit > 0 && found.len() as i64 > req.limit {
            found.truncate(req.limit as usize);
            more = true;
        }
        let kvs = found
            .into_iter()
            .map(|(r, v)| {
                let mut kv = v.to_kv(r.main);
                if req.keys_only {
                    kv.value.clear();
                }
                kv
            })
            .collect();
        Ok(pb::RangeResponse {
            header: None,
            kvs,
            more,
            count,
        })
    }

    /// A read-only Range against the current state.
    pub fn range(&self, req: &pb::RangeRequest) -> Result<pb::RangeResponse> {
        if req.key.is_empty() {
            return Err(Error::EmptyKey);
        }
        self.range_at(req, self.current)
    }

    fn compact(&mut self, rev: i64) -> Result<()> {
        if rev <= self.compacted {
            return Err(Error::Compacted);
        }
        if rev > self.current {
            return Err(Error::FutureRevision);
        }
        // For each key keep every version at or after `rev`, plus the latest
        // one before it when it is live (it is the key's value at `rev`).
        let affected: Vec<Vec<u8>> = self
            .index
            .iter()
            .filter(|(_, list)| list.first().is_some_and(|r| r.main < rev))
            .map(|(k, _)| k.clone())
            .collect();
        for key in affected {
            let Some(list) = self.index.get_mut(&key) else {
                continue;
            };
            let n = list.partition_point(|r| r.main < rev);
            let keep_last = self
                .revs
                .get(&list[n - 1])
                .is_some_and(|v| !v.is_tombstone());
            let drop_to = if keep_last { n - 1 } else { n };
            for r in list.drain(..drop_to) {
                if let Some(v) = self.revs.remove(&r) {
                    self.size = self.size.saturating_sub(v.size());
                }
            }
            if list.is_empty() {
                self.index.remove(&key);
            }
        }
        self.compacted = rev;
        Ok(())
    }

    fn lease_grant(&mut self, id: i64, ttl: i64) -> Result<pb::LeaseGrantResponse> {
        if id <= 0 {
            return Err(Error::InvalidArgument(
                "etcdserver: lease ID must be positive".into(),
            ));
        }
        if ttl > LEASE_TTL_MAX_SECS {
            return Err(Error::LeaseTtlTooLarge);
        }
        if self.leases.contains_key(&id) {
            return Err(Error::LeaseExists);
        }
        let ttl = ttl.max(LEASE_TTL_MIN_SECS);
        self.leases.insert(
            id,
            LeaseRecord {
                ttl,
                keys: BTreeSet::new(),
            },
        );
        Ok(pb::LeaseGrantResponse {
            header: None,
            id,
            ttl,
            error: String::new(),
        })
    }

    /// Events with revision >= `from`, for keys in `range`, in revision
    /// order; stops at a revision boundary once `max_events` is reached.
    /// Returns the events and the next revision to read from.
    pub fn events_since(
        &self,
        from: i64,
        range: &KeyRange,
        with_prev_kv: impl Into<PrevKv>,
        max_events: usize,
    ) -> Result<(Vec<WatchEvent>, i64)> {
        let with_prev_kv = with_prev_kv.into();
        if from < self.compacted {
            return Err(Error::Compacted);
        }
        let mut out = Vec::new();
        let mut next = from.max(self.current + 1).min(self.current + 1);
        let start = Revision { main: from, sub: 0 };
        let mut last_main = None;
        for (scanned, (r, v)) in self.revs.range(start..).enumerate() {
            // Stop at a revision boundary once enough events matched, or
            // enough history was scanned (a watcher on a quiet key far
            // behind must not hold the state lock for the whole history).
            if last_main != Some(r.main) && (out.len() >= max_events || scanned >= EVENTS_SCAN_MAX)
            {
                next = r.main;
                return Ok((out, next));
            }
            last_main = Some(r.main);
            if !range.contains(&v.key) {
                continue;
            }
            let (typ, kv) = if v.is_tombstone() {
                (
                    EventType::Delete,
                    mvccpb::KeyValue {
                        key: v.key.clone(),
                        mod_revision: r.main,
                        ..Default::default()
                    },
                )
            } else {
                (EventType::Put, v.to_kv(r.main))
            };
            let prev_kv = match with_prev_kv {
                PrevKv::All => self.prev_version(&v.key, *r),
                PrevKv::Deletes if v.is_tombstone() => self.prev_version(&v.key, *r),
                _ => None,
            };
            out.push(WatchEvent {
                revision: r.main,
                event: mvccpb::Event {
                    r#type: typ as i32,
                    kv: Some(kv),
                    prev_kv,
                },
            });
        }
        next = next.max(from);
        Ok((out, next))
    }

    /// The live version of `key` just before revision `r`, if still stored.
    fn prev_version(&self, key: &[u8], r: Revision) -> Option<mvccpb::KeyValue> {
        let list = self.index.get(key)?;
        let i = list.partition_point(|x| *x < r);
        if i == 0 {
            return None;
        }
        let pr = list[i - 1];
        let v = self.revs.get(&pr)?;
        (!v.is_tombstone()).then(|| v.to_kv(pr.main))
    }
}

/// Which events carry the key's previous version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrevKv {
    None,
    /// Only deletions (the deleted object's last state).
    Deletes,
    All,
}

impl From<bool> for PrevKv {
    fn from(all: bool) -> PrevKv {
        if all {
            PrevKv::All
        } else {
            PrevKv::None
        }
    }
}

/// Whether a txn (either branch, nested txns included) holds a put.
fn txn_puts(t: &pb::TxnRequest) -> bool {
    t.success
        .iter()
        .chain(t.failure.iter())
        .any(|op| match &op.request {
            Some(request_op::Request::RequestPut(_)) => true,
            Some(request_op::Request::RequestTxn(inner)) => txn_puts(inner),
            _ => false,
        })
}

/// Checks a request needs no state for: key rules, txn size and duplicates.
/// Run before proposing, so bad requests never reach the Raft log.
pub fn validate(cmd: &Command) -> Result<()> {
    match &cmd.kind {
        Some(command::Kind::Put(p)) => validate_put(p),
        Some(command::Kind::DeleteRange(d)) => {
            if d.key.is_empty() {
                Err(Error::EmptyKey)
            } else {
                Ok(())
            }
        }
        Some(command::Kind::Txn(t)) => validate_txn(t),
        Some(_) => Ok(()),
        None => Err(Error::InvalidArgument("empty command".into())),
    }
}

fn validate_put(p: &pb::PutRequest) -> Result<()> {
    if p.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    if p.ignore_value && !p.value.is_empty() {
        return Err(Error::ValueProvided);
    }
    if p.ignore_lease && p.lease != 0 {
        return Err(Error::LeaseProvided);
    }
    Ok(())
}

fn validate_txn(t: &pb::TxnRequest) -> Result<()> {
    if t.compare.len() > TXN_OPS_MAX
        || t.success.len() > TXN_OPS_MAX
        || t.failure.len() > TXN_OPS_MAX
    {
        return Err(Error::TooManyOps);
    }
    for c in &t.compare {
        if c.key.is_empty() {
            return Err(Error::EmptyKey);
        }
    }
    for branch in [&t.success, &t.failure] {
        for op in branch.iter() {
            match &op.request {
                Some(request_op::Request::RequestRange(r)) => {
                    if r.key.is_empty() {
                        return Err(Error::EmptyKey);
                    }
                }
                Some(request_op::Request::RequestPut(p)) => validate_put(p)?,
                Some(request_op::Request::RequestDeleteRange(d)) => {
                    if d.key.is_empty() {
                        return Err(Error::EmptyKey);
                    }
                }
                Some(request_op::Request::RequestTxn(inner)) => validate_txn(inner)?,
                None => {
                    return Err(Error::InvalidArgument(
                        "etcdserver: empty request op".into(),
                    ))
                }
            }
        }
        branch_writes(branch)?;
    }
    Ok(())
}

/// Put keys and delete ranges one txn branch may write (nested txns count
/// with both branches, since either may run). A key put twice, or put and
/// deleted, in one branch is etcd's "duplicate key" error.
fn branch_writes(ops: &[pb::RequestOp]) -> Result<(BTreeSet<Vec<u8>>, Vec<KeyRange>)> {
    let mut puts = BTreeSet::new();
    let mut dels = Vec::new();
    for op in ops {
        match &op.request {
            Some(request_op::Request::RequestPut(p)) => {
                let first_put_of_key = puts.insert(p.key.clone());
                if !first_put_of_key {
                    return Err(Error::DuplicateKey);
                }
            }
            Some(request_op::Request::RequestDeleteRange(d)) => {
                dels.push(KeyRange::new(&d.key, &d.range_end))
            }
            Some(request_op::Request::RequestTxn(t)) => {
                let (ps, ds) = branch_writes(&t.success)?;
                let (pf, df) = branch_writes(&t.failure)?;
                for p in ps.iter().chain(pf.iter()) {
                    if puts.contains(p) {
                        return Err(Error::DuplicateKey);
                    }
                }
                puts.extend(ps);
                puts.extend(pf);
                dels.extend(ds);
                dels.extend(df);
            }
            _ => {}
        }
    }
    if puts.iter().any(|p| dels.iter().any(|d| d.contains(p))) {
        return Err(Error::DuplicateKey);
    }
    Ok((puts, dels))
}

impl WriteTxn<'_> {
    /// The revision reads see: the store's, or the new one once this
    /// transaction changed something.
    fn read_rev(&self) -> i64 {
        if self.sub > 0 {
            self.mvcc.current + 1
        } else {
            self.mvcc.current
        }
    }

    fn next_rev(&mut self) -> Revision {
        let r = Revision {
            main: self.mvcc.current + 1,
            sub: self.sub,
        };
        self.sub += 1;
        r
    }

    fn store(&mut self, r: Revision, v: Version) {
        self.mvcc.size += v.size();
        self.mvcc.index.entry(v.key.clone()).or_default().push(r);
        self.mvcc.revs.insert(r, v);
        self.undo.push(Undo::Stored(r));
    }

    fn attach_lease(&mut self, lease: i64, key: &[u8]) {
        if let Some(l) = self.mvcc.leases.get_mut(&lease) {
            if l.keys.insert(key.to_vec()) {
                self.undo.push(Undo::LeaseAttached(lease, key.to_vec()));
            }
        }
    }

    fn detach_lease(&mut self, lease: i64, key: &[u8]) {
        if let Some(l) = self.mvcc.leases.get_mut(&lease) {
            if l.keys.remove(key) {
                self.undo.push(Undo::LeaseDetached(lease, key.to_vec()));
            }
        }
    }

    /// Undo every change, newest first, leaving the store as it was.
    fn rollback(&mut self) {
        while let Some(u) = self.undo.pop() {
            match u {
                Undo::Stored(r) => {
                    if let Some(v) = self.mvcc.revs.remove(&r) {
                        self.mvcc.size = self.mvcc.size.saturating_sub(v.size());
                        if let Some(list) = self.mvcc.index.get_mut(&v.key) {
                            list.retain(|x| *x != r);
                            if list.is_empty() {
                                self.mvcc.index.remove(&v.key);
                            }
                        }
                    }
                }
                Undo::LeaseAttached(id, key) => {
                    if let Some(l) = self.mvcc.leases.get_mut(&id) {
                        l.keys.remove(&key);
                    }
                }
                Undo::LeaseDetached(id, key) => {
                    if let Some(l) = self.mvcc.leases.get_mut(&id) {
                        l.keys.insert(key);
                    }
                }
                Undo::LeaseRemoved(id, record) => {
                    self.mvcc.leases.insert(id, record);
                }
            }
        }
        self.sub = 0;
    }

    /// Checks a put's preconditions without changing anything.
    fn check_put(&self, req: &pb::PutRequest) -> Result<()> {
        validate_put(req)?;
        let prev = self.mvcc.get_at(&req.key, self.read_rev());
        if (req.ignore_value || req.ignore_lease) && prev.is_none() {
            return Err(Error::KeyNotFound);
        }
        let lease = if req.ignore_lease {
            prev.map(|(_, v)| v.lease).unwrap_or(0)
        } else {
            req.lease
        };
        if lease != 0 && !self.mvcc.leases.contains_key(&lease) {
            return Err(Error::LeaseNotFound);
        }
        Ok(())
    }

    fn put(&mut self, req: &pb::PutRequest) -> Result<pb::PutResponse> {
        self.check_put(req)?;
        let prev = self
            .mvcc
            .get_at(&req.key, self.read_rev())
            .map(|(r, v)| (r, v.clone()));
        let value = match (&prev, req.ignore_value) {
            (Some((_, p)), true) => p.value.clone(),
            _ => req.value.clone(),
        };
        let lease = match (&prev, req.ignore_lease) {
            (Some((_, p)), true) => p.lease,
            _ => req.lease,
        };
        let r = self.next_rev();
        let (create_revision, version) = match &prev {
            Some((_, p)) => (p.create_revision, p.version + 1),
            None => (r.main, 1),
        };
        if let Some((_, p)) = &prev {
            if p.lease != lease {
                self.detach_lease(p.lease, &req.key);
            }
        }
        if lease != 0 {
            self.attach_lease(lease, &req.key);
        }
        self.store(
            r,
            Version {
                key: req.key.clone(),
                value,
                create_revision,
                version,
                lease,
            },
        );
        Ok(pb::PutResponse {
            header: None,
            prev_kv: if req.prev_kv {
                prev.map(|(pr, p)| p.to_kv(pr.main))
            } else {
                None
            },
        })
    }

    fn delete_range(&mut self, req: &pb::DeleteRangeRequest) -> Result<pb::DeleteRangeResponse> {
        if req.key.is_empty() {
            return Err(Error::EmptyKey);
        }
        let range = KeyRange::new(&req.key, &req.range_end);
        let victims: Vec<(Revision, Version)> = self
            .mvcc
            .live_in_range(&range, self.read_rev())
            .into_iter()
            .map(|(r, v)| (r, v.clone()))
            .collect();
        let deleted = victims.len() as i64;
        let mut prev_kvs = Vec::new();
        for (pr, v) in victims {
            self.tombstone(&v);
            if req.prev_kv {
                prev_kvs.push(v.to_kv(pr.main));
            }
        }
        Ok(pb::DeleteRangeResponse {
            header: None,
            deleted,
            prev_kvs,
        })
    }

    fn tombstone(&mut self, v: &Version) {
        let r = self.next_rev();
        self.detach_lease(v.lease, &v.key);
        self.store(
            r,
            Version {
                key: v.key.clone(),
                value: Vec::new(),
                create_revision: 0,
                version: 0,
                lease: 0,
            },
        );
    }

    fn lease_revoke(&mut self, id: i64) -> Result<()> {
        let Some(lease) = self.mvcc.leases.get(&id) else {
            return Err(Error::LeaseNotFound);
        };
        let keys: Vec<Vec<u8>> = lease.keys.iter().cloned().collect();
        for k in keys {
            let live = self
                .mvcc
                .get_at(&k, self.read_rev())
                .map(|(_, v)| v.clone());
            if let Some(v) = live {
                self.tombstone(&v);
            }
        }
        if let Some(record) = self.mvcc.leases.remove(&id) {
            self.undo.push(Undo::LeaseRemoved(id, record));
        }
        Ok(())
    }

    fn compare(&self, c: &Compare) -> bool {
        let range = KeyRange::new(&c.key, &c.range_end);
        let rev = self.read_rev();
        let kvs: Vec<(Revision, &Version)> = match &range {
            KeyRange::Single(k) => self.mvcc.get_at(k, rev).into_iter().collect(),
            _ => self.mvcc.live_in_range(&range, rev),
        };
        let target =
            compare::CompareTarget::try_from(c.target).unwrap_or(compare::CompareTarget::Version);
        if kvs.is_empty() {
            // etcd compares a missing key as a zero KeyValue, except on value.
            if target == compare::CompareTarget::Value {
                return false;
            }
            return compare_one(
                c,
                target,
                0,
                &Version {
                    key: Vec::new(),
                    value: Vec::new(),
                    create_revision: 0,
                    version: 0,
                    lease: 0,
                },
            );
        }
        kvs.iter().all(|(r, v)| compare_one(c, target, r.main, v))
    }

    fn txn(&mut self, req: &pb::TxnRequest) -> Result<pb::TxnResponse> {
        validate_txn(req)?;
        let succeeded = req.compare.iter().all(|c| self.compare(c));
        let ops = if succeeded {
            &req.success
        } else {
            &req.failure
        };
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            let resp = match &op.request {
                Some(request_op::Request::RequestRange(r)) => {
                    response_op::Response::ResponseRange(self.mvcc.range_at(r, self.read_rev())?)
                }
                Some(request_op::Request::RequestPut(p)) => {
                    response_op::Response::ResponsePut(self.put(p)?)
                }
                Some(request_op::Request::RequestDeleteRange(d)) => {
                    response_op::Response::ResponseDeleteRange(self.delete_range(d)?)
                }
                Some(request_op::Request::RequestTxn(t)) => {
                    response_op::Response::ResponseTxn(self.txn(t)?)
                }
                None => {
                    return Err(Error::InvalidArgument(
                        "etcdserver: empty request op".into(),
                    ))
                }
            };
            responses.push(pb::ResponseOp {
                response: Some(resp),
            });
        }
        Ok(pb::TxnResponse {
            header: None,
            succeeded,
            responses,
        })
    }
}

fn compare_one(c: &Compare, target: compare::CompareTarget, mod_rev: i64, v: &Version) -> bool {
    use compare::CompareTarget as T;
    use compare::TargetUnion as U;
    // As etcd: a target whose value is missing, or given for another
    // target, compares against the zero value.
    let ord = match target {
        T::Version => v.version.cmp(match &c.target_union {
            Some(U::Version(x)) => x,
            _ => &0,
        }),
        T::Create => v.create_revision.cmp(match &c.target_union {
            Some(U::CreateRevision(x)) => x,
            _ => &0,
        }),
        T::Mod => mod_rev.cmp(match &c.target_union {
            Some(U::ModRevision(x)) => x,
            _ => &0,
        }),
        T::Value => v.value.as_slice().cmp(match &c.target_union {
            Some(U::Value(x)) => x.as_slice(),
            _ => &[][..],
        }),
        T::Lease => v.lease.cmp(match &c.target_union {
            Some(U::Lease(x)) => x,
            _ => &0,
        }),
    };
    use std::cmp::Ordering::*;
    match compare::CompareResult::try_from(c.result).unwrap_or(compare::CompareResult::Equal) {
        compare::CompareResult::Equal => ord == Equal,
        compare::CompareResult::NotEqual => ord != Equal,
        compare::CompareResult::Greater => ord == Greater,
        compare::CompareResult::Less => ord == Less,
    }
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
